/*
 * failsync.c — an LD_PRELOAD shim for black-box tests of `evstore serve`
 * when the disk fails: while the file named by $EVS_FAILSYNC_TRIGGER
 * exists, fdatasync(2) fails with EIO without syncing (as a disk or the
 * kernel reporting lost writes would make it); otherwise it is the real
 * call.  Only tests load it (tests/integration/test_server.py).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

int fdatasync(int fd) {
    static int (*real)(int);
    const char *trigger = getenv("EVS_FAILSYNC_TRIGGER");
    if (trigger && access(trigger, F_OK) == 0) {
        errno = EIO;
        return -1;
    }
    if (!real) *(void **)&real = dlsym(RTLD_NEXT, "fdatasync");
    if (!real) {
        errno = ENOSYS;
        return -1;
    }
    return real(fd);
}
