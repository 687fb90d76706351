/*
 * failsync.c — an LD_PRELOAD shim for black-box tests of the evstore
 * command when the disk fails.  Two ways to use it:
 *
 *   - while the file named by $EVS_FAILSYNC_TRIGGER exists, fdatasync(2)
 *     fails with EIO without syncing (as a disk or the kernel reporting lost
 *     writes would make it); otherwise it is the real call
 *     (tests/integration/test_server.py);
 *   - counting: every fdatasync, fsync and msync(MS_SYNC) of the process is
 *     numbered from 1; $EVS_FAILSYNC_COUNT names a file that receives the
 *     number of the latest one, and with $EVS_FAILSYNC_FROM=N the N-th and
 *     every later one fail with EIO.  A test counts the syncs of a command
 *     once, then runs it again failing only the last one: the sync made at
 *     close (tests/integration/test_cli.py).
 *
 * Only tests load it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static unsigned long sync_no;

/* Number this sync; 1 when it must fail.  The log's zero-ahead thread ("evs-zero") syncs zeros
   ahead of the writer whenever it gets to run: its syncs are neither numbered nor failed, so the
   numbering of the others is the same from run to run (a failure there only stops zeroing). */
static int counted_fail(void) {
    char name[16] = "";
    if (pthread_getname_np(pthread_self(), name, sizeof name) == 0 && strcmp(name, "evs-zero") == 0) return 0;
    unsigned long n = __atomic_add_fetch(&sync_no, 1, __ATOMIC_SEQ_CST);
    const char *path = getenv("EVS_FAILSYNC_COUNT");
    if (path) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd >= 0) {
            char buf[32];
            int len = snprintf(buf, sizeof buf, "%lu\n", n);
            if (write(fd, buf, (size_t)len) < 0) { /* the count is lost: the test notices */
            }
            close(fd);
        }
    }
    const char *from = getenv("EVS_FAILSYNC_FROM");
    return from && n >= strtoul(from, NULL, 10);
}

static void *real_fn(const char *name) { return dlsym(RTLD_NEXT, name); }

int fdatasync(int fd) {
    static int (*real)(int);
    const char *trigger = getenv("EVS_FAILSYNC_TRIGGER");
    if ((trigger && access(trigger, F_OK) == 0) || counted_fail()) {
        errno = EIO;
        return -1;
    }
    if (!real) *(void **)&real = real_fn("fdatasync");
    if (!real) {
        errno = ENOSYS;
        return -1;
    }
    return real(fd);
}

int fsync(int fd) {
    static int (*real)(int);
    if (counted_fail()) {
        errno = EIO;
        return -1;
    }
    if (!real) *(void **)&real = real_fn("fsync");
    if (!real) {
        errno = ENOSYS;
        return -1;
    }
    return real(fd);
}

int msync(void *addr, size_t len, int flags) {
    static int (*real)(void *, size_t, int);
    if ((flags & MS_SYNC) && counted_fail()) {
        errno = EIO;
        return -1;
    }
    if (!real) *(void **)&real = real_fn("msync");
    if (!real) {
        errno = ENOSYS;
        return -1;
    }
    return real(addr, len, flags);
}
