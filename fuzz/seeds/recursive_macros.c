#define SELF SELF
#define A B
#define B A
#define OPEN { OPEN
#define CLOSE CLOSE }
#define LOOP(x) LOOP(x) x = 1;
static int n;
void f(void)
{
    SELF
    A;
    OPEN
    LOOP(n)
    CLOSE
}
PyMODINIT_FUNC PyInit_r(void) { return PyModule_Create(&d); }
