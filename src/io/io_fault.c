/*
 * io_fault.c — the fault-injecting, crash-simulating I/O table (io_fault.h).
 *
 * Every call goes to the POSIX table after the bookkeeping below, done under
 * one mutex so that tests may drive a multi-threaded store through it:
 *
 *   count[op]        calls so far; rules compare against it.
 *   rule[op]         fail call number `at` (or every call from `at` on).
 *   short_at/k       the pwrite numbered short_at writes only k bytes.
 *   files[]          with tracking on: per file (device + inode, so renames
 *                    and closes do not lose it), a dup'd descriptor and the
 *                    list of pwrites since its last successful sync, each
 *                    with the bytes it replaced.  A sync forgets the list.
 *
 * A crash rewinds each tracked file by writing the replaced bytes back in
 * reverse order, then replays a seeded random subset of the writes forward.
 * Half of the seeds keep or drop whole writes; the other half decide per
 * 4 KiB page, which is what a kernel writing back dirty pages in any order
 * can leave behind.  One kept piece is torn at a random byte.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/io_fault.h"

typedef struct fault_rule {
    int armed;
    uint64_t at;          /* absolute call number that fails */
    int every_after;
    int err;
} fault_rule;

typedef struct fault_write {
    uint64_t off;
    size_t len;           /* bytes written */
    uint8_t *newb;        /* what was written */
    uint8_t *oldb;        /* what was there before (old_len bytes; the rest was past EOF) */
    size_t old_len;
    off_t old_size;       /* file size before the write */
} fault_write;

typedef struct fault_file {
    dev_t dev;
    ino_t ino;
    int fd;               /* our own dup, valid after the caller closes its descriptor */
    fault_write *w;
    size_t n, cap;
} fault_file;

struct evs_fault {
    evs_io io;
    pthread_mutex_t mu;
    uint64_t count[EVS_FOP_COUNT];
    fault_rule rule[EVS_FOP_COUNT];
    int short_armed;
    uint64_t short_at;
    size_t short_k;
    int track;
    int crashed;
    fault_file *files;
    size_t nfiles, capfiles;
};

static const char *const fault_op_names[EVS_FOP_COUNT] = {
    "open",     "close",     "pwrite", "pread",  "fdatasync", "fsync", "fallocate",
    "ftruncate", "size",     "unlink", "rename", "sync_dir",  "map",   "unmap",
};

const char *evs__fault_op_name(evs_fault_op op) {
    return (unsigned)op < EVS_FOP_COUNT ? fault_op_names[op] : "?";
}

/* ------------------------------------------------------------ bookkeeping */

/* Count a call of op; returns -err if a rule fails it, else 0.  Lock held. */
static int fault_enter(evs_fault *f, evs_fault_op op) {
    uint64_t c = ++f->count[op];
    fault_rule *r = &f->rule[op];
    if (r->armed && (c == r->at || (r->every_after && c > r->at))) return -r->err;
    return 0;
}

static void fault_file_forget(fault_file *ff) {
    for (size_t i = 0; i < ff->n; i++) {
        free(ff->w[i].newb);
        free(ff->w[i].oldb);
    }
    ff->n = 0;
}

static void fault_files_free(evs_fault *f) {
    for (size_t i = 0; i < f->nfiles; i++) {
        fault_file_forget(&f->files[i]);
        free(f->files[i].w);
        close(f->files[i].fd);
    }
    free(f->files);
    f->files = NULL;
    f->nfiles = f->capfiles = 0;
}

static fault_file *fault_file_find(evs_fault *f, int fd, int create) {
    struct stat st;
    if (fstat(fd, &st) < 0) return NULL;
    for (size_t i = 0; i < f->nfiles; i++)
        if (f->files[i].dev == st.st_dev && f->files[i].ino == st.st_ino) return &f->files[i];
    if (!create) return NULL;
    if (f->nfiles == f->capfiles) {
        size_t cap = f->capfiles ? f->capfiles * 2 : 16;
        fault_file *nf = realloc(f->files, cap * sizeof *nf);
        if (!nf) return NULL;
        f->files = nf;
        f->capfiles = cap;
    }
    int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dfd < 0) return NULL;
    fault_file *ff = &f->files[f->nfiles++];
    memset(ff, 0, sizeof *ff);
    ff->dev = st.st_dev;
    ff->ino = st.st_ino;
    ff->fd = dfd;
    return ff;
}

/* Remember a write about to happen.  Lock held.  Returns -ENOMEM on failure. */
static int fault_remember(evs_fault *f, int fd, const void *buf, size_t n, off_t off) {
    fault_file *ff = fault_file_find(f, fd, 1);
    if (!ff) return -ENOMEM;
    if (ff->n == ff->cap) {
        size_t cap = ff->cap ? ff->cap * 2 : 16;
        fault_write *nw = realloc(ff->w, cap * sizeof *nw);
        if (!nw) return -ENOMEM;
        ff->w = nw;
        ff->cap = cap;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) return -errno;
    fault_write w = {.off = (uint64_t)off, .len = n, .old_size = st.st_size};
    w.newb = malloc(n ? n : 1);
    w.oldb = malloc(n ? n : 1);
    if (!w.newb || !w.oldb) {
        free(w.newb);
        free(w.oldb);
        return -ENOMEM;
    }
    memcpy(w.newb, buf, n);
    ssize_t r = evs__io_posix()->pread(NULL, fd, w.oldb, n, off);
    w.old_len = r > 0 ? (size_t)r : 0;
    ff->w[ff->n++] = w;
    return 0;
}

/* A sync of fd succeeded: its writes are durable now.  Lock held. */
static void fault_synced(evs_fault *f, int fd) {
    fault_file *ff = fault_file_find(f, fd, 0);
    if (ff) fault_file_forget(ff);
}

/* ------------------------------------------------------------ the table */

static int ft_open(void *ctx, const char *path, int flags, int mode) {
    evs_fault *f = ctx;
    pthread_mutex_lock(&f->mu);
    int rc = f->crashed ? -EIO : fault_enter(f, EVS_FOP_OPEN);
    pthread_mutex_unlock(&f->mu);
    return rc ? rc : evs__io_posix()->open(NULL, path, flags, mode);
}

static int ft_close(void *ctx, int fd) {
    evs_fault *f = ctx;
    pthread_mutex_lock(&f->mu);
    int rc = fault_enter(f, EVS_FOP_CLOSE);
    pthread_mutex_unlock(&f->mu);
    /* The descriptor is released even when the close "fails", as with close(2). */
    int rc2 = evs__io_posix()->close(NULL, fd);
    return rc ? rc : rc2;
}

static ssize_t ft_pwrite(void *ctx, int fd, const void *buf, size_t n, off_t off) {
    evs_fault *f = ctx;
    pthread_mutex_lock(&f->mu);
    ssize_t rc = f->crashed ? -EIO : fault_enter(f, EVS_FOP_PWRITE);
    size_t todo = n;
    if (!rc && f->short_armed && f->count[EVS_FOP_PWRITE] == f->short_at) {
        f->short_armed = 0;
        if (f->short_k < n) todo = f->short_k;
    }
    if (!rc && f->track && todo > 0) rc = fault_remember(f, fd, buf, todo, off);
    if (!rc) rc = todo ? evs__io_posix()->pwrite(NULL, fd, buf, todo, off) : 0;
    pthread_mutex_unlock(&f->mu);
    return rc;
}

static ssize_t ft_pread(void *ctx, int fd, void *buf, size_t n, off_t off) {
    evs_fault *f = ctx;
    pthread_mutex_lock(&f->mu);
    int rc = fault_enter(f, EVS_FOP_PREAD);
    pthread_mutex_unlock(&f->mu);
    return rc ? rc : evs__io_posix()->pread(NULL, fd, buf, n, off);
}

static int ft_sync_common(evs_fault *f, int fd, evs_fault_op op) {
    pthread_mutex_lock(&f->mu);
    int rc = f->crashed ? -EIO : fault_enter(f, op);
    if (!rc) {
        rc = op == EVS_FOP_FSYNC ? evs__io_posix()->fsync(NULL, fd) : evs__io_posix()->fdatasync(NULL, fd);
        if (!rc && f->track) fault_synced(f, fd);
    }
    pthread_mutex_unlock(&f->mu);
    return rc;
}

static int ft_fdatasync(void *ctx, int fd) { return ft_sync_common(ctx, fd, EVS_FOP_FDATASYNC); }
static int ft_fsync(void *ctx, int fd) { return ft_sync_common(ctx, fd, EVS_FOP_FSYNC); }

static int ft_fallocate(void *ctx, int fd, off_t off, off_t len) {
    evs_fault *f = ctx;
    pthread_mutex_lock(&f->mu);
    int rc = f->crashed ? -EIO : fault_enter(f, EVS_FOP_FALLOCATE);
    pthread_mutex_unlock(&f->mu);
    return rc ? rc : evs__io_posix()->fallocate(NULL, fd, off, len);
}

static int ft_ftruncate(void *ctx, int fd, off_t len) {
    evs_fault *f = ctx;
    pthread_mutex_lock(&f->mu);
    int rc = f->crashed ? -EIO : fault_enter(f, EVS_FOP_FTRUNCATE);
    pthread_mutex_unlock(&f->mu);
    return rc ? rc : evs__io_posix()->ftruncate(NULL, fd, len);
}

static off_t ft_size(void *ctx, int fd) {
    evs_fault *f = ctx;
    pthread_mutex_lock(&f->mu);
    int rc = fault_enter(f, EVS_FOP_SIZE);
    pthread_mutex_unlock(&f->mu);
    return rc ? rc : evs__io_posix()->size(NULL, fd);
}

static int ft_unlink(void *ctx, const char *path) {
    evs_fault *f = ctx;
    pthread_mutex_lock(&f->mu);
    int rc = f->crashed ? -EIO : fault_enter(f, EVS_FOP_UNLINK);
    pthread_mutex_unlock(&f->mu);
    return rc ? rc : evs__io_posix()->unlink(NULL, path);
}

static int ft_rename(void *ctx, const char *from, const char *to) {
    evs_fault *f = ctx;
    pthread_mutex_lock(&f->mu);
    int rc = f->crashed ? -EIO : fault_enter(f, EVS_FOP_RENAME);
    pthread_mutex_unlock(&f->mu);
    return rc ? rc : evs__io_posix()->rename(NULL, from, to);
}

static int ft_sync_dir(void *ctx, const char *path) {
    evs_fault *f = ctx;
    pthread_mutex_lock(&f->mu);
    int rc = f->crashed ? -EIO : fault_enter(f, EVS_FOP_SYNC_DIR);
    pthread_mutex_unlock(&f->mu);
    return rc ? rc : evs__io_posix()->sync_dir(NULL, path);
}

static int ft_map(void *ctx, int fd, size_t len, void **out) {
    evs_fault *f = ctx;
    pthread_mutex_lock(&f->mu);
    int rc = fault_enter(f, EVS_FOP_MAP);
    pthread_mutex_unlock(&f->mu);
    return rc ? rc : evs__io_posix()->map(NULL, fd, len, out);
}

static int ft_unmap(void *ctx, void *addr, size_t len) {
    evs_fault *f = ctx;
    pthread_mutex_lock(&f->mu);
    int rc = fault_enter(f, EVS_FOP_UNMAP);
    pthread_mutex_unlock(&f->mu);
    /* Always unmap: a failing rule must not leak the mapping in tests. */
    int rc2 = evs__io_posix()->unmap(NULL, addr, len);
    return rc ? rc : rc2;
}

/* ------------------------------------------------------------ public API */

int evs__fault_create(evs_fault **out) {
    evs_fault *f = calloc(1, sizeof *f);
    if (!f) return -ENOMEM;
    pthread_mutex_init(&f->mu, NULL);
    f->io = (evs_io){
        .ctx = f,
        .open = ft_open,
        .close = ft_close,
        .pwrite = ft_pwrite,
        .pread = ft_pread,
        .fdatasync = ft_fdatasync,
        .fsync = ft_fsync,
        .fallocate = ft_fallocate,
        .ftruncate = ft_ftruncate,
        .size = ft_size,
        .unlink = ft_unlink,
        .rename = ft_rename,
        .sync_dir = ft_sync_dir,
        .map = ft_map,
        .unmap = ft_unmap,
    };
    *out = f;
    return 0;
}

void evs__fault_destroy(evs_fault *f) {
    if (!f) return;
    fault_files_free(f);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

const evs_io *evs__fault_io(evs_fault *f) { return &f->io; }

void evs__fault_fail(evs_fault *f, evs_fault_op op, uint64_t nth, int every_after, int err) {
    if ((unsigned)op >= EVS_FOP_COUNT) return;
    pthread_mutex_lock(&f->mu);
    f->rule[op] = (fault_rule){.armed = nth > 0, .at = f->count[op] + nth, .every_after = every_after,
                               .err = err ? err : EIO};
    pthread_mutex_unlock(&f->mu);
}

void evs__fault_short_write(evs_fault *f, uint64_t nth, size_t k) {
    pthread_mutex_lock(&f->mu);
    f->short_armed = nth > 0;
    f->short_at = f->count[EVS_FOP_PWRITE] + nth;
    f->short_k = k;
    pthread_mutex_unlock(&f->mu);
}

void evs__fault_clear_rules(evs_fault *f) {
    pthread_mutex_lock(&f->mu);
    memset(f->rule, 0, sizeof f->rule);
    f->short_armed = 0;
    pthread_mutex_unlock(&f->mu);
}

uint64_t evs__fault_count(evs_fault *f, evs_fault_op op) {
    if ((unsigned)op >= EVS_FOP_COUNT) return 0;
    pthread_mutex_lock(&f->mu);
    uint64_t c = f->count[op];
    pthread_mutex_unlock(&f->mu);
    return c;
}

void evs__fault_track(evs_fault *f, int on) {
    pthread_mutex_lock(&f->mu);
    f->track = on;
    if (!on) fault_files_free(f);
    pthread_mutex_unlock(&f->mu);
}

void evs__fault_reset(evs_fault *f) {
    pthread_mutex_lock(&f->mu);
    fault_files_free(f);
    memset(f->count, 0, sizeof f->count);
    memset(f->rule, 0, sizeof f->rule);
    f->short_armed = 0;
    f->track = 0;
    f->crashed = 0;
    pthread_mutex_unlock(&f->mu);
}

/* splitmix64: a small, seedable generator so that a failing seed can be replayed. */
static uint64_t fault_rand(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

#define FAULT_PAGE 4096u

/* The pieces a write is cut into for the crash: whole, or 4 KiB file pages. */
static size_t fault_piece_end(const fault_write *w, size_t at, int by_page) {
    if (!by_page) return w->len;
    uint64_t next_page = ((w->off + at) / FAULT_PAGE + 1) * FAULT_PAGE;
    size_t end = (size_t)(next_page - w->off);
    return end < w->len ? end : w->len;
}

int evs__fault_crash(evs_fault *f, uint64_t seed) {
    const evs_io *px = evs__io_posix();
    int rc = 0;
    pthread_mutex_lock(&f->mu);
    uint64_t rs = seed * 0x2545F4914F6CDD1Dull + 1;
    int by_page = (int)(fault_rand(&rs) & 1);

    /* 1. Rewind every file to its last synced image. */
    for (size_t i = 0; i < f->nfiles && !rc; i++) {
        fault_file *ff = &f->files[i];
        for (size_t j = ff->n; j-- > 0 && !rc;) {
            fault_write *w = &ff->w[j];
            if (w->old_len) {
                ssize_t r = px->pwrite(NULL, ff->fd, w->oldb, w->old_len, (off_t)w->off);
                if (r < 0) rc = (int)r;
            }
            if (!rc && (uint64_t)w->old_size < w->off + w->len) rc = px->ftruncate(NULL, ff->fd, w->old_size);
        }
    }

    /* 2. Decide which pieces survive, counting them to pick the torn one. */
    uint64_t kept = 0;
    uint64_t rs_keep = fault_rand(&rs);
    uint64_t s = rs_keep;
    for (size_t i = 0; i < f->nfiles; i++)
        for (size_t j = 0; j < f->files[i].n; j++) {
            const fault_write *w = &f->files[i].w[j];
            for (size_t a = 0; a < w->len; a = fault_piece_end(w, a, by_page))
                if (fault_rand(&s) & 1) kept++;
        }
    uint64_t torn = kept ? fault_rand(&rs) % kept : UINT64_MAX;

    /* 3. Replay the survivors in their original order, with the same draws. */
    s = rs_keep;
    uint64_t k = 0;
    for (size_t i = 0; i < f->nfiles && !rc; i++) {
        fault_file *ff = &f->files[i];
        for (size_t j = 0; j < ff->n && !rc; j++) {
            const fault_write *w = &ff->w[j];
            for (size_t a = 0; a < w->len && !rc;) {
                size_t b = fault_piece_end(w, a, by_page);
                if (fault_rand(&s) & 1) {
                    size_t n = b - a;
                    if (k++ == torn) n = (size_t)(fault_rand(&rs) % n);
                    if (n) {
                        ssize_t r = px->pwrite(NULL, ff->fd, w->newb + a, n, (off_t)(w->off + a));
                        if (r < 0) rc = (int)r;
                    }
                }
                a = b;
            }
        }
    }
    fault_files_free(f);
    f->crashed = 1;
    pthread_mutex_unlock(&f->mu);
    return rc;
}
