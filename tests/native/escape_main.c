/* escape MODE LIB BYTES: a process that tries to hold BYTES of device memory past fcsp, then waits for end of
 * input. First it uses the driver the ordinary way (dlopen libcuda.so.1, 1 MiB through whatever is preloaded:
 * with libfcsp, this attaches the process to its tenant). Then, by MODE:
 *   plain     dlopen(LIB): LIB's calls bind to the preloaded libfcsp (the control: capped like any call)
 *   deepbind  dlopen(LIB, RTLD_DEEPBIND): LIB's calls bind to libcuda first, past libfcsp
 *   dlmopen   dlmopen(LM_ID_NEWLM, LIB): LIB and its libcuda in a namespace libfcsp is not loaded in
 *   direct    the BYTES through the ordinary path too (run it without LD_PRELOAD: no fcsp at all)
 * Prints `attach ok pid=N`, `escape ok|fail rc=N bytes=N mode=M`, `hold ok`. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int (*init_fn)(unsigned int);
typedef int (*dev_fn)(int *, int);
typedef int (*retain_fn)(void **, int);
typedef int (*set_fn)(void *);
typedef int (*alloc_fn)(unsigned long long *, size_t);
typedef int (*escape_fn)(unsigned long long);

static int ordinary_alloc(unsigned long long bytes)
{
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
    if (h == NULL) {
        fprintf(stderr, "escape: %s\n", dlerror());
        return -1;
    }
    init_fn init = (init_fn)dlsym(h, "cuInit");
    dev_fn get = (dev_fn)dlsym(h, "cuDeviceGet");
    retain_fn retain = (retain_fn)dlsym(h, "cuDevicePrimaryCtxRetain");
    set_fn set = (set_fn)dlsym(h, "cuCtxSetCurrent");
    alloc_fn alloc = (alloc_fn)dlsym(h, "cuMemAlloc_v2");
    if (!init || !get || !retain || !set || !alloc)
        return -1;
    int dev;
    void *ctx;
    unsigned long long ptr;
    int rc = init(0);
    if (rc == 0)
        rc = get(&dev, 0);
    if (rc == 0)
        rc = retain(&ctx, dev);
    if (rc == 0)
        rc = set(ctx);
    if (rc == 0)
        rc = alloc(&ptr, (size_t)bytes);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: escape plain|deepbind|dlmopen|direct LIB BYTES\n");
        return 2;
    }
    const char *mode = argv[1];
    unsigned long long bytes = strtoull(argv[3], NULL, 10);
    setvbuf(stdout, NULL, _IOLBF, 0);
    int rc = ordinary_alloc(1 << 20);
    printf("attach %s rc=%d pid=%d\n", rc == 0 ? "ok" : "fail", rc, (int)getpid());
    if (strcmp(mode, "direct") == 0) {
        rc = ordinary_alloc(bytes);
    } else {
        void *h = NULL;
        if (strcmp(mode, "plain") == 0)
            h = dlopen(argv[2], RTLD_NOW | RTLD_LOCAL);
        else if (strcmp(mode, "deepbind") == 0)
            h = dlopen(argv[2], RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
        else if (strcmp(mode, "dlmopen") == 0)
            h = dlmopen(LM_ID_NEWLM, argv[2], RTLD_NOW | RTLD_LOCAL);
        if (h == NULL) {
            fprintf(stderr, "escape: cannot load %s (%s): %s\n", argv[2], mode, dlerror());
            return 1;
        }
        escape_fn fn = (escape_fn)dlsym(h, "escape_alloc");
        rc = fn ? fn(bytes) : -1;
    }
    printf("escape %s rc=%d bytes=%llu mode=%s\n", rc == 0 ? "ok" : "fail", rc, bytes, mode);
    char buf[256];
    while (fread(buf, 1, sizeof buf, stdin) > 0)
        ;
    printf("hold ok\n");
    return 0;
}
