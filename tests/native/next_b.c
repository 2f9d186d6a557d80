/* RTLD_NEXT check, second library: the definition RTLD_NEXT from next_a must find. */
int next_target(void);
int next_target(void) { return 2; }
