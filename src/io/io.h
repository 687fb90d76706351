/*
 * io.h — the table of functions through which every file operation of the
 * store passes.
 *
 * The engine never calls open/pwrite/fdatasync directly: it calls these
 * pointers, so tests can swap in a table that fails the Nth fdatasync, cuts a
 * write short, reports ENOSPC, or remembers unsynced writes and on a
 * simulated crash keeps only a random subset of them (see io_fault.h).
 *
 * Every function returns 0 (or a byte count) on success and -errno on
 * failure, never -1 with errno, so a failure code can be passed on as is.
 * Reads go through mmap of whole segments (evs_io.map), which lets the
 * reader hand out zero-copy views.
 */
#ifndef EVS_IO_H
#define EVS_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct evs_io {
    void *ctx;
    /* open(2); returns fd >= 0 or -errno */
    int (*open)(void *ctx, const char *path, int flags, int mode);
    int (*close)(void *ctx, int fd);
    /* full write: loops over short writes; returns bytes written (== n) or -errno.
       A fault table may return fewer bytes than n to simulate a short write. */
    ssize_t (*pwrite)(void *ctx, int fd, const void *buf, size_t n, off_t off);
    /* full read; returns bytes read (may be < n at EOF) or -errno */
    ssize_t (*pread)(void *ctx, int fd, void *buf, size_t n, off_t off);
    int (*fdatasync)(void *ctx, int fd);
    int (*fsync)(void *ctx, int fd);
    /* reserve blocks so later overwrites need no metadata sync */
    int (*fallocate)(void *ctx, int fd, off_t off, off_t len);
    int (*ftruncate)(void *ctx, int fd, off_t len);
    /* returns file size or -errno */
    off_t (*size)(void *ctx, int fd);
    int (*unlink)(void *ctx, const char *path);
    int (*rename)(void *ctx, const char *from, const char *to);
    /* fsync a directory so a created/renamed/unlinked name is durable */
    int (*sync_dir)(void *ctx, const char *path);
    /* read-only shared mapping of [0, len) of fd; *out receives the address */
    int (*map)(void *ctx, int fd, size_t len, void **out);
    int (*unmap)(void *ctx, void *addr, size_t len);
} evs_io;

/* The plain POSIX table.  Static storage; never freed. */
const evs_io *evs__io_posix(void);

#endif
