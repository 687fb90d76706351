/*
 * io_posix.c — the plain POSIX implementation of the I/O table (io.h).
 *
 * Each function is a thin wrapper that turns the "-1 and errno" convention
 * into a returned -errno, retries EINTR, and loops over short reads and
 * writes, so that callers see either the whole transfer or an error code
 * they can pass on.  Nothing here allocates or keeps state: the table is a
 * constant and may be used from any thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/io.h"

static int px_open(void *ctx, const char *path, int flags, int mode) {
    int fd;
    /* O_CLOEXEC always: a store embedded in a program that forks must not
       leak segment descriptors into children. */
    do fd = open(path, flags | O_CLOEXEC, (mode_t)mode);
    while (fd < 0 && errno == EINTR);
    return fd < 0 ? -errno : fd;
}

static int px_close(void *ctx, int fd) {
    /* No EINTR retry: on Linux the descriptor is released even when close
       is interrupted, and retrying could close a descriptor another thread
       just received. */
    return close(fd) < 0 && errno != EINTR ? -errno : 0;
}

static ssize_t px_pwrite(void *ctx, int fd, const void *buf, size_t n, off_t off) {
    const char *p = buf;
    size_t done = 0;
    while (done < n) {
        ssize_t w = pwrite(fd, p + done, n - done, off + (off_t)done);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (w == 0) return -EIO; /* a regular file never accepts zero bytes of a non-empty write */
        done += (size_t)w;
    }
    return (ssize_t)done;
}

static ssize_t px_pread(void *ctx, int fd, void *buf, size_t n, off_t off) {
    char *p = buf;
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(fd, p + done, n - done, off + (off_t)done);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (r == 0) break; /* end of file */
        done += (size_t)r;
    }
    return (ssize_t)done;
}

static int px_fdatasync(void *ctx, int fd) {
    /* Deliberately no retry on EINTR or anything else: after a failed
       fdatasync the kernel may have dropped the dirty pages, so a second
       call can succeed without the data being on disk.  The caller treats
       any failure as final. */
    return fdatasync(fd) < 0 ? -errno : 0;
}

static int px_fsync(void *ctx, int fd) { return fsync(fd) < 0 ? -errno : 0; }

static int px_fallocate(void *ctx, int fd, off_t off, off_t len) {
    int rc;
    do rc = fallocate(fd, 0, off, len);
    while (rc < 0 && errno == EINTR);
    if (rc == 0) return 0;
    if (errno != EOPNOTSUPP && errno != ENOSYS) return -errno;
    /* Filesystems without fallocate: glibc writes zeros instead. */
    rc = posix_fallocate(fd, off, len);
    return -rc;
}

static int px_ftruncate(void *ctx, int fd, off_t len) {
    int rc;
    do rc = ftruncate(fd, len);
    while (rc < 0 && errno == EINTR);
    return rc < 0 ? -errno : 0;
}

static off_t px_size(void *ctx, int fd) {
    struct stat st;
    if (fstat(fd, &st) < 0) return -errno;
    return st.st_size;
}

static int px_unlink(void *ctx, const char *path) { return unlink(path) < 0 ? -errno : 0; }

static int px_rename(void *ctx, const char *from, const char *to) {
    return rename(from, to) < 0 ? -errno : 0;
}

static int px_sync_dir(void *ctx, const char *path) {
    int fd = px_open(ctx, path, O_RDONLY | O_DIRECTORY, 0);
    if (fd < 0) return fd;
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

static int px_map(void *ctx, int fd, size_t len, void **out) {
    void *p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) return -errno;
    *out = p;
    return 0;
}

static int px_unmap(void *ctx, void *addr, size_t len) { return munmap(addr, len) < 0 ? -errno : 0; }

static const evs_io evs_io_posix_table = {
    .ctx = NULL,
    .open = px_open,
    .close = px_close,
    .pwrite = px_pwrite,
    .pread = px_pread,
    .fdatasync = px_fdatasync,
    .fsync = px_fsync,
    .fallocate = px_fallocate,
    .ftruncate = px_ftruncate,
    .size = px_size,
    .unlink = px_unlink,
    .rename = px_rename,
    .sync_dir = px_sync_dir,
    .map = px_map,
    .unmap = px_unmap,
};

const evs_io *evs__io_posix(void) { return &evs_io_posix_table; }
