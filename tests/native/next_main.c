#include <stdio.h>
int call_next(void);
int main(void)
{
    printf("%d\n", call_next());
    return 0;
}
