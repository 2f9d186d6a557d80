/* RTLD_NEXT check, first library: defines next_target and asks for the *next* definition. */
#define _GNU_SOURCE
#include <dlfcn.h>
int next_target(void);
int call_next(void);
int next_target(void) { return 1; }
int call_next(void)
{
    int (*f)(void) = (int (*)(void))dlsym(RTLD_NEXT, "next_target");
    return f ? f() : -1;
}
