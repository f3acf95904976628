#include <Python.h>
#ifndef WITH_X
#define WITH_X 0
#endif
#define SELF SELF
#define A (B)
#define B A
#define if 1
#define while while
#define HUGE 99999999999999999999999999
#define MAX 0x7fffffffffffffff
#if PY_VERSION_HEX >= 0x030B0000
#define V 1
#else
#define V 0
#endif
#undef V
#if SELF
static PyObject *a;
#endif
#if A || B
static PyObject *b;
#endif
#if 1/0
static PyObject *c;
#elif 1 % 0
#endif
#if HUGE > MAX
static PyObject *d;
#endif
#if 99999999999999999999999999 && WITH_X
#endif
#if WITH_X
static PyObject *e;
#endif
#if V
#endif
static void
touch(void)
{
    a = PyDict_New();
    b = PyDict_New();
    c = PyDict_New();
    d = PyDict_New();
    e = PyDict_New();
}
static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "m", NULL, -1, NULL};
PyMODINIT_FUNC
PyInit_m(void)
{
    touch();
    return PyModule_Create(&def);
}
#endif
#else
#elif 1
#if WITH_X
static PyObject *e;
static PyObject *f;
