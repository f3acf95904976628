#define MSG "continued \
literal"
#define BEGIN { \
    int saved;
#define END }
static int n;
void f(void)
{
    BEGIN
    n++;
    END
}
