/*
 * backup.c — online backup, restore and verification of a store directory
 * (include/evstore_backup.h).  Sits above the store and the bus: it copies
 * their directories and, for a cut restore, drops the consumers the cut
 * leaves ahead of the log through the bus's public API.
 *
 * WHY THE BACKUP IS CONSISTENT WHILE ANOTHER PROCESS APPENDS.  The backup
 * point is the index snapshot's checkpoint (the log location and the global
 * position of the next append).  The writer commits an append's index
 * entries only after the log's write, and acknowledges it only after that
 * commit; so every byte of the log before the checkpoint is in the files
 * (page cache at least) when the snapshot is taken, and every acknowledged
 * append before the backup started is below it.  The copies are taken in
 * this order:
 *   1. the other state directories (consumers/, schemas/, sagas/, app/),
 *      each LMDB environment through its own read transaction
 *      (mdb_env_copyfd2, MDB_CP_COMPACT): every checkpoint in them is at or
 *      below the head at that moment, so at or below the backup point;
 *   2. the index (mdb_env_copyfd2 again): its checkpoint is the backup point;
 *   3. the log: sealed segments whole, the segment holding the checkpoint up
 *      to it.  Bytes there never change while the writer runs (frames are
 *      written once, recovery and repair need the store's lock), and bytes
 *      after the checkpoint are not read: they become a hole, which the
 *      restored store sees as the clean end of its log.
 * So the backup is exactly the store as it was at the backup point, plus
 * consumer checkpoints that may lag it (they catch up after a restore).
 *
 * FILES.  Every file is written to NAME.tmp and renamed into place,
 * so a file in a backup is never an inode of the store (a hard link made by
 * an earlier --link backup is replaced, not written through).  Blocks that
 * are all zero are skipped (holes), so the backup's real size follows the
 * data, not the preallocated segment size.  The manifest records, per file,
 * its size, how many leading bytes were copied (the rest is zero) and the
 * CRC32C of every 1 MiB block of those: verify and restore name the block
 * that differs.  One syncfs makes them all durable before the manifest is
 * written, last (backup.json.tmp, synced, renamed);
 * EVS_BACKUP_PARTIAL marks a backup in progress.
 *
 * STORE ID.  The salt of segment 1 (random, chosen when the store was
 * created): an incremental backup into a backup of another store is refused.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <jansson.h>
#include <lmdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "evstore_backup.h"
#include "evstore_bus.h"
#include "log/log.h"
#include "log/record.h"

#define BK_BLOCK (1u << 20)   /* checksum granularity, and the copy buffer */
#define BK_CHUNK (64u << 10)  /* holes are made at this granularity */
#define BK_PATH 4096
#define BK_SEG_HDR 64u
#define BK_LOG_FORMAT 1

/* ------------------------------------------------------------ file records */

typedef struct bk_file {
    char path[256];            /* relative to the backup: "log/00000001.seg" */
    uint64_t size;             /* the file's size */
    uint64_t data_size;        /* bytes copied; the rest is zero */
    uint32_t *crc;             /* one per BK_BLOCK of [0, data_size) */
    size_t ncrc;
    const char *how;           /* "copied", "linked", "reused", "snapshot" */
    int64_t src_mtime_ns;      /* the source's, for reuse by a later incremental backup */
    uint64_t src_size;
} bk_file;

typedef struct bk_list {
    bk_file *v;
    size_t n, cap;
} bk_list;

static void list_free(bk_list *l) {
    for (size_t i = 0; i < l->n; i++) free(l->v[i].crc);
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* A new zeroed entry at the end of l; NULL when out of memory (error set). */
static bk_file *list_add(bk_list *l, const char *path) {
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 32;
        bk_file *nv = realloc(l->v, nc * sizeof *nv);
        if (!nv) {
            evs__err(EVS_ENOMEM, "backup: out of memory");
            return NULL;
        }
        l->v = nv;
        l->cap = nc;
    }
    bk_file *f = &l->v[l->n++];
    memset(f, 0, sizeof *f);
    snprintf(f->path, sizeof f->path, "%s", path);
    return f;
}

static const bk_file *list_find(const bk_list *l, const char *path) {
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i].path, path) == 0) return &l->v[i];
    return NULL;
}

static int64_t mtime_ns(const struct stat *st) {
    return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

static int all_zero(const uint8_t *p, size_t n) {
    static const uint8_t z[256];
    while (n >= sizeof z) {
        if (memcmp(p, z, sizeof z)) return 0;
        p += sizeof z;
        n -= sizeof z;
    }
    return n == 0 || memcmp(p, z, n) == 0;
}

static int fsync_dir(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return evs__err_errno(-errno, "backup: cannot open directory %s", path);
    int rc = fsync(fd) ? evs__err_errno(-errno, "backup: cannot sync directory %s", path) : EVS_OK;
    close(fd);
    return rc;
}

/*
 * Make everything written under dir durable: one syncfs instead of an
 * fdatasync per file, so the disk writes while the next file is read
 * (copy_range starts each file's writeback as it finishes).  Called before
 * the manifest is written, so a crash before it leaves the partial marker.
 */
static int sync_dest(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return evs__err_errno(-errno, "cannot open directory %s", dir);
    int rc = syncfs(fd) ? evs__err_errno(-errno, "cannot sync the filesystem of %s", dir) : EVS_OK;
    close(fd);
    return rc;
}

static int mkdir_p1(const char *path) {
    if (mkdir(path, 0755) != 0 && errno != EEXIST) return evs__err_errno(-errno, "cannot create directory %s", path);
    return EVS_OK;
}

/* mkdir -p path. */
static int mkdir_all(const char *path) {
    char p[BK_PATH];
    if ((size_t)snprintf(p, sizeof p, "%s", path) >= sizeof p) return evs__err(EVS_EINVAL, "path too long: %s", path);
    for (char *s = p + 1; (s = strchr(s, '/')); s++) {
        *s = 0;
        int rc = mkdir_p1(p);
        *s = '/';
        if (rc) return rc;
    }
    return mkdir_p1(p);
}

/* Create every directory of rel's parent path under root. */
static int mkdirs_for(const char *root, const char *rel) {
    char p[BK_PATH];
    int k = snprintf(p, sizeof p, "%s/%s", root, rel);
    if (k < 0 || (size_t)k >= sizeof p) return evs__err(EVS_EINVAL, "path too long: %s/%s", root, rel);
    for (char *s = p + strlen(root) + 1; (s = strchr(s, '/')); s++) {
        *s = 0;
        int rc = mkdir_p1(p);
        *s = '/';
        if (rc) return rc;
    }
    return EVS_OK;
}

/*
 * Read src's first `limit` bytes (all of it when limit exceeds its size)
 * into dst_tmp, skipping all-zero chunks, then size dst_tmp like src and
 * sync it.  f gets size, data_size and the block checksums; when `expect`
 * is given, each whole block read is compared with it and a difference is
 * EVS_ECORRUPT naming the file (label) and block.  dst_tmp NULL: read and
 * checksum only.  Ownership: f->crc is malloc'd into f (freed by list_free).
 */
static int copy_range(const char *src, const char *label, const char *dst_tmp, uint64_t limit, const bk_file *expect,
                      bk_file *f, uint64_t *read_bytes, uint64_t *written) {
    int rc = EVS_OK, in = -1, out = -1;
    uint8_t *buf = NULL;
    struct stat st;
    if ((in = open(src, O_RDONLY | O_CLOEXEC)) < 0) return evs__err_errno(-errno, "cannot open %s", src);
    if (fstat(in, &st)) {
        rc = evs__err_errno(-errno, "cannot stat %s", src);
        goto cleanup;
    }
    uint64_t size = (uint64_t)st.st_size, n = limit < size ? limit : size;
    f->size = size;
    f->data_size = n;
    f->src_mtime_ns = mtime_ns(&st);
    f->src_size = size;
    f->ncrc = (size_t)((n + BK_BLOCK - 1) / BK_BLOCK);
    if (!(f->crc = calloc(f->ncrc ? f->ncrc : 1, sizeof *f->crc)) || !(buf = malloc(BK_BLOCK))) {
        rc = evs__err(EVS_ENOMEM, "backup: out of memory");
        goto cleanup;
    }
    if (dst_tmp && (out = open(dst_tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0) {
        rc = evs__err_errno(-errno, "cannot create %s", dst_tmp);
        goto cleanup;
    }
    posix_fadvise(in, 0, (off_t)n, POSIX_FADV_SEQUENTIAL);
    for (uint64_t off = 0, b = 0; off < n; off += BK_BLOCK, b++) {
        size_t want = n - off < BK_BLOCK ? (size_t)(n - off) : BK_BLOCK, got = 0;
        while (got < want) {
            ssize_t r = pread(in, buf + got, want - got, (off_t)(off + got));
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) {
                rc = evs__err_errno(-errno, "cannot read %s at offset %" PRIu64, src, off + got);
                goto cleanup;
            }
            if (r == 0) {
                rc = evs__err(EVS_EIO, "%s: shorter than expected (%" PRIu64 " bytes)", src, off + got);
                goto cleanup;
            }
            got += (size_t)r;
        }
        f->crc[b] = evs__crc32c(0, buf, want);
        if (read_bytes) *read_bytes += want;
        if (expect && b < expect->ncrc && (want == BK_BLOCK || n == expect->data_size) &&
            f->crc[b] != expect->crc[b]) {
            rc = evs__err(EVS_ECORRUPT, "%s offset %" PRIu64 ": the block of %zu bytes there does not match the "
                          "backup's manifest (crc32c %08x, expected %08x); the backup is damaged",
                          label, off, want, f->crc[b], expect->crc[b]);
            goto cleanup;
        }
        for (size_t c = 0; out >= 0 && c < want; c += BK_CHUNK) {
            size_t len = want - c < BK_CHUNK ? want - c : BK_CHUNK;
            if (all_zero(buf + c, len)) continue; /* a hole */
            for (size_t w = 0; w < len;) {
                ssize_t r = pwrite(out, buf + c + w, len - w, (off_t)(off + c + w));
                if (r < 0 && errno == EINTR) continue;
                if (r < 0) {
                    rc = evs__err_errno(-errno, "cannot write %s", dst_tmp);
                    goto cleanup;
                }
                w += (size_t)r;
            }
            if (written) *written += len;
        }
    }
    if (out >= 0) {
        if (ftruncate(out, (off_t)size)) {
            rc = evs__err_errno(-errno, "cannot size %s", dst_tmp);
            goto cleanup;
        }
        /* start the writeback now, wait for all of it once (sync_dest) */
        sync_file_range(out, 0, 0, SYNC_FILE_RANGE_WRITE);
    }
cleanup:
    free(buf);
    if (in >= 0) close(in);
    if (out >= 0 && close(out) && !rc) rc = evs__err_errno(-errno, "cannot close %s", dst_tmp);
    if (rc && dst_tmp) unlink(dst_tmp);
    return rc;
}

/* Copy src's first limit bytes to root/rel (through rel.tmp and a rename). */
static int copy_into(const char *src, const char *root, const char *rel, uint64_t limit, const bk_file *expect,
                     bk_file *f, uint64_t *rd, uint64_t *wr) {
    char dst[BK_PATH], tmp[BK_PATH + 8];
    int rc;
    if ((rc = mkdirs_for(root, rel))) return rc;
    snprintf(dst, sizeof dst, "%s/%s", root, rel);
    snprintf(tmp, sizeof tmp, "%s.tmp", dst);
    if ((rc = copy_range(src, rel, tmp, limit, expect, f, rd, wr))) return rc;
    if (rename(tmp, dst)) {
        rc = evs__err_errno(-errno, "cannot rename %s", tmp);
        unlink(tmp);
    }
    return rc;
}

/* --------------------------------------------------------------- LMDB copies */

static int mdb_fail(int rc, const char *what, const char *path) {
    if (rc > 0) return evs__err_errno(-rc, "%s %s", what, path);
    return evs__err(EVS_EIO, "%s %s: %s", what, path, mdb_strerror(rc));
}

/*
 * A compact, transactionally consistent copy of the LMDB environment in
 * env_dir into the file `out` (opened read-only: the writer may be another
 * process).  A writer that grows the map meanwhile makes LMDB answer
 * MDB_MAP_RESIZED: adopt its size and copy again.
 */
static int env_snapshot(const char *env_dir, const char *out) {
    MDB_env *env = NULL;
    int rc, fd = -1;
    if ((rc = mdb_env_create(&env))) return mdb_fail(rc, "cannot open LMDB environment", env_dir);
    mdb_env_set_maxdbs(env, 64);
    if ((rc = mdb_env_open(env, env_dir, MDB_RDONLY | MDB_NOTLS, 0644))) {
        rc = mdb_fail(rc, "cannot open LMDB environment", env_dir);
        goto cleanup;
    }
    if ((fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0) {
        rc = evs__err_errno(-errno, "cannot create %s", out);
        goto cleanup;
    }
    for (int tries = 0;; tries++) {
        rc = mdb_env_copyfd2(env, fd, MDB_CP_COMPACT);
        if (rc != MDB_MAP_RESIZED || tries == 8) break;
        mdb_env_set_mapsize(env, 0);
        if (ftruncate(fd, 0) || lseek(fd, 0, SEEK_SET) < 0) {
            rc = errno;
            break;
        }
    }
    if (rc) {
        rc = mdb_fail(rc, "cannot copy LMDB environment", env_dir);
        goto cleanup;
    }
cleanup:
    if (fd >= 0) close(fd);
    if (rc && fd >= 0) unlink(out);
    mdb_env_close(env);
    return rc;
}

/* The checkpoint and format of an index file (a snapshot: no lock file, read-only). */
static int index_point(const char *file, evs_lsn *end, uint64_t *next_gpos, uint32_t *format) {
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi meta;
    MDB_val k = {10, "checkpoint"}, v;
    int rc;
    *end = EVS_LSN(1, BK_SEG_HDR);
    *next_gpos = 1;
    *format = 1;
    if ((rc = mdb_env_create(&env))) return mdb_fail(rc, "cannot open index snapshot", file);
    mdb_env_set_maxdbs(env, 64);
    if ((rc = mdb_env_open(env, file, MDB_RDONLY | MDB_NOSUBDIR | MDB_NOLOCK, 0644)) ||
        (rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn))) {
        rc = mdb_fail(rc, "cannot open index snapshot", file);
        goto cleanup;
    }
    if ((rc = mdb_dbi_open(txn, "meta", 0, &meta))) {
        /* an index that never held a checkpoint: an empty store */
        rc = rc == MDB_NOTFOUND ? EVS_OK : mdb_fail(rc, "cannot read index snapshot", file);
        goto cleanup;
    }
    rc = mdb_get(txn, meta, &k, &v);
    if (rc == MDB_NOTFOUND) {
        rc = EVS_OK;
    } else if (rc) {
        rc = mdb_fail(rc, "cannot read the checkpoint of", file);
        goto cleanup;
    } else if (v.mv_size != 16) {
        rc = evs__err(EVS_EINDEX, "%s: checkpoint has %zu bytes, expected 16", file, v.mv_size);
        goto cleanup;
    } else {
        *end = evs__get64(v.mv_data);
        *next_gpos = evs__get64((uint8_t *)v.mv_data + 8);
    }
    MDB_val fk = {6, "format"}, fv;
    if (mdb_get(txn, meta, &fk, &fv) == 0 && fv.mv_size == 4) *format = evs__get32(fv.mv_data);
cleanup:
    if (txn) mdb_txn_abort(txn);
    mdb_env_close(env);
    return rc;
}

/* --------------------------------------------------------------- manifest */

typedef struct bk_manifest {
    char store_id[17];
    uint64_t head, next_gpos;
    evs_lsn end;
    uint32_t index_format;
    int64_t time_ns;
    bk_list files;
} bk_manifest;

static int manifest_write(const char *dest, const bk_manifest *m, const evs_backup_report *r) {
    char path[BK_PATH], tmp[BK_PATH + 8], ts[40];
    int rc = EVS_OK;
    json_t *o = json_object(), *files = json_array();
    if (!o || !files) {
        json_decref(o);
        json_decref(files);
        return evs__err(EVS_ENOMEM, "backup: out of memory");
    }
    evs_time_format(m->time_ns, ts);
    json_object_set_new(o, "kind", json_string("evstore-backup"));
    json_object_set_new(o, "version", json_integer(1));
    json_object_set_new(o, "store_id", json_string(m->store_id));
    json_object_set_new(o, "log_format", json_integer(BK_LOG_FORMAT));
    json_object_set_new(o, "index_format", json_integer(m->index_format));
    json_object_set_new(o, "time", json_string(ts));
    json_object_set_new(o, "time_ns", json_integer(m->time_ns));
    json_object_set_new(o, "head", json_integer((json_int_t)m->head));
    json_object_set_new(o, "end_segment", json_integer(EVS_LSN_SEG(m->end)));
    json_object_set_new(o, "end_offset", json_integer(EVS_LSN_OFF(m->end)));
    json_object_set_new(o, "incremental", json_boolean(r->incremental));
    json_object_set_new(o, "previous_head", json_integer((json_int_t)r->previous_head));
    json_object_set_new(o, "block_size", json_integer(BK_BLOCK));
    json_object_set_new(o, "apparent_bytes", json_integer((json_int_t)r->apparent_bytes));
    json_object_set_new(o, "real_bytes", json_integer((json_int_t)r->real_bytes));
    for (size_t i = 0; i < m->files.n; i++) {
        const bk_file *f = &m->files.v[i];
        json_t *fo = json_object(), *crc = json_array();
        for (size_t b = 0; b < f->ncrc; b++) json_array_append_new(crc, json_integer(f->crc[b]));
        json_object_set_new(fo, "path", json_string(f->path));
        json_object_set_new(fo, "size", json_integer((json_int_t)f->size));
        json_object_set_new(fo, "data_size", json_integer((json_int_t)f->data_size));
        json_object_set_new(fo, "crc32c", crc);
        json_object_set_new(fo, "how", json_string(f->how));
        json_object_set_new(fo, "src_mtime_ns", json_integer(f->src_mtime_ns));
        json_object_set_new(fo, "src_size", json_integer((json_int_t)f->src_size));
        json_array_append_new(files, fo);
    }
    json_object_set_new(o, "files", files);
    snprintf(path, sizeof path, "%s/" EVS_BACKUP_MANIFEST, dest);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    char *text = json_dumps(o, JSON_INDENT(1));
    json_decref(o);
    if (!text) return evs__err(EVS_ENOMEM, "backup: out of memory");
    FILE *fp = fopen(tmp, "w");
    if (!fp) {
        rc = evs__err_errno(-errno, "cannot create %s", tmp);
    } else {
        int bad = fputs(text, fp) < 0 || fputc('\n', fp) == EOF || fflush(fp) || fdatasync(fileno(fp));
        if (fclose(fp) || bad) rc = evs__err_errno(-errno, "cannot write %s", tmp);
        else if (rename(tmp, path)) rc = evs__err_errno(-errno, "cannot rename %s", tmp);
    }
    free(text);
    return rc;
}

static uint64_t jnum(json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) && json_integer_value(v) >= 0 ? (uint64_t)json_integer_value(v) : 0;
}

/*
 * Read backup/backup.json.  EVS_ENOTFOUND when there is none, EVS_EINVAL
 * when it is not a backup manifest (message names what is wrong).
 * Ownership: m->files is the caller's (list_free).
 */
static int manifest_read(const char *backup, bk_manifest *m) {
    char path[BK_PATH];
    json_error_t je;
    memset(m, 0, sizeof *m);
    snprintf(path, sizeof path, "%s/" EVS_BACKUP_MANIFEST, backup);
    if (access(path, F_OK) != 0) return evs__err(EVS_ENOTFOUND, "%s holds no backup (no %s)", backup, EVS_BACKUP_MANIFEST);
    json_t *o = json_load_file(path, 0, &je);
    if (!o) return evs__err(EVS_EINVAL, "%s: not a backup manifest: line %d: %s", path, je.line, je.text);
    int rc = EVS_OK;
    json_t *kind = json_object_get(o, "kind"), *files = json_object_get(o, "files");
    const char *sid = json_string_value(json_object_get(o, "store_id"));
    if (!json_is_string(kind) || strcmp(json_string_value(kind), "evstore-backup") || !json_is_array(files) || !sid ||
        strlen(sid) != 16) {
        rc = evs__err(EVS_EINVAL, "%s: not an evstore backup manifest (kind, store_id or files missing)", path);
        goto cleanup;
    }
    if (jnum(o, "version") != 1 || jnum(o, "log_format") != BK_LOG_FORMAT || jnum(o, "block_size") != BK_BLOCK) {
        rc = evs__err(EVS_EFORMAT, "%s: backup version %" PRIu64 ", log format %" PRIu64 ", block size %" PRIu64
                      " (this program writes 1, %d, %u)", path, jnum(o, "version"), jnum(o, "log_format"),
                      jnum(o, "block_size"), BK_LOG_FORMAT, BK_BLOCK);
        goto cleanup;
    }
    snprintf(m->store_id, sizeof m->store_id, "%s", sid);
    m->head = jnum(o, "head");
    m->next_gpos = m->head + 1;
    m->end = EVS_LSN(jnum(o, "end_segment"), jnum(o, "end_offset"));
    m->index_format = (uint32_t)jnum(o, "index_format");
    m->time_ns = (int64_t)jnum(o, "time_ns");
    size_t i;
    json_t *fo;
    json_array_foreach(files, i, fo) {
        const char *p = json_string_value(json_object_get(fo, "path"));
        json_t *crc = json_object_get(fo, "crc32c");
        if (!p || !*p || strlen(p) >= sizeof m->files.v[0].path || p[0] == '/' || strstr(p, "..") ||
            !json_is_array(crc)) {
            rc = evs__err(EVS_EINVAL, "%s: file entry %zu is malformed", path, i + 1);
            goto cleanup;
        }
        bk_file *f = list_add(&m->files, p);
        if (!f) {
            rc = EVS_ENOMEM;
            goto cleanup;
        }
        f->size = jnum(fo, "size");
        f->data_size = jnum(fo, "data_size");
        f->src_mtime_ns = (int64_t)jnum(fo, "src_mtime_ns");
        f->src_size = jnum(fo, "src_size");
        const char *how = json_string_value(json_object_get(fo, "how"));
        f->how = how && strcmp(how, "linked") == 0 ? "linked" : "copied";
        f->ncrc = json_array_size(crc);
        if (f->data_size > f->size || f->ncrc != (f->data_size + BK_BLOCK - 1) / BK_BLOCK) {
            rc = evs__err(EVS_EINVAL, "%s: file entry %s has inconsistent sizes", path, p);
            goto cleanup;
        }
        if (!(f->crc = calloc(f->ncrc ? f->ncrc : 1, sizeof *f->crc))) {
            rc = evs__err(EVS_ENOMEM, "backup: out of memory");
            goto cleanup;
        }
        for (size_t b = 0; b < f->ncrc; b++) f->crc[b] = (uint32_t)json_integer_value(json_array_get(crc, b));
    }
cleanup:
    json_decref(o);
    if (rc) list_free(&m->files);
    return rc;
}

/* ------------------------------------------------------------------ helpers */

/* 16 hex digits of segment 1's salt, after checking its magic. */
static int store_id(const char *dir, char out[17]) {
    char path[BK_PATH];
    uint8_t h[BK_SEG_HDR];
    snprintf(path, sizeof path, "%s/log/00000001.seg", dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return evs__err_errno(-errno, "%s is not a store: cannot open %s", dir, path);
    ssize_t r = pread(fd, h, sizeof h, 0);
    close(fd);
    if (r != (ssize_t)sizeof h || memcmp(h, "EVSLOG01", 8) ||
        evs__crc32c(0, h, 60) != evs__get32(h + 60))
        return evs__err(EVS_ECORRUPT, "%s: not a valid segment header", path);
    snprintf(out, 17, "%016" PRIx64, evs__get64(h + 24));
    return EVS_OK;
}

/* 1 when dir does not exist or is empty, 0 when it has entries; <0 on error. */
static int dir_empty(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT) return 1;
        return evs__err_errno(-errno, "cannot open %s", dir);
    }
    struct dirent *e;
    int empty = 1;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) empty = 0;
    closedir(d);
    return empty;
}

/* Remove everything below dir (not dir itself). */
static void rm_contents(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[BK_PATH];
        if ((size_t)snprintf(p, sizeof p, "%s/%s", dir, e->d_name) >= sizeof p) continue;
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
            rm_contents(p);
            rmdir(p);
        } else {
            unlink(p);
        }
    }
    closedir(d);
}

static int is_skipped_top(const char *name) {
    return !strcmp(name, "log") || !strcmp(name, "index") || !strcmp(name, "LOCK") || !strcmp(name, "SERVE") ||
           !strcmp(name, "REPAIRING");
}

/*
 * Copy the state directory src (relative name rel) into dest: an LMDB
 * environment (data.mdb) through a read transaction, other files as they
 * are, subdirectories likewise.  lock.mdb and *.tmp are never copied.
 */
static int copy_state(const char *src, const char *dest, const char *rel, bk_manifest *m, evs_backup_report *r) {
    DIR *d = opendir(src);
    if (!d) return evs__err_errno(-errno, "cannot open %s", src);
    int rc = EVS_OK;
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        const char *nm = e->d_name;
        size_t nl = strlen(nm);
        if (!strcmp(nm, ".") || !strcmp(nm, "..") || !strcmp(nm, "lock.mdb") ||
            (nl > 4 && !strcmp(nm + nl - 4, ".tmp")))
            continue;
        char sp[BK_PATH], rp[512];
        if ((size_t)snprintf(sp, sizeof sp, "%s/%s", src, nm) >= sizeof sp ||
            (size_t)snprintf(rp, sizeof rp, "%s%s%s", rel, *rel ? "/" : "", nm) >= 256) {
            rc = evs__err(EVS_EINVAL, "path too long: %s/%s", src, nm);
            break;
        }
        struct stat st;
        if (lstat(sp, &st)) {
            if (errno == ENOENT) continue; /* removed meanwhile */
            rc = evs__err_errno(-errno, "cannot stat %s", sp);
            break;
        }
        if (S_ISDIR(st.st_mode)) {
            rc = copy_state(sp, dest, rp, m, r);
            continue;
        }
        if (!S_ISREG(st.st_mode)) continue;
        bk_file *f = list_add(&m->files, rp);
        if (!f) {
            rc = EVS_ENOMEM;
            break;
        }
        if (!strcmp(nm, "data.mdb")) {
            char tmp[BK_PATH + 8], snap[BK_PATH + 8], dst[BK_PATH];
            if ((rc = mkdirs_for(dest, rp))) break;
            snprintf(dst, sizeof dst, "%s/%s", dest, rp);
            snprintf(snap, sizeof snap, "%s.snap", dst);
            snprintf(tmp, sizeof tmp, "%s.tmp", dst);
            if ((rc = env_snapshot(src, snap))) break;
            /* the snapshot is ours already: checksum it (and drop its zero blocks) on the way in */
            rc = copy_range(snap, rp, tmp, UINT64_MAX, NULL, f, NULL, &r->bytes_written);
            unlink(snap);
            if (!rc && rename(tmp, dst)) rc = evs__err_errno(-errno, "cannot rename %s", tmp);
            f->how = "snapshot";
            r->bytes_read += f->size;
        } else {
            rc = copy_into(sp, dest, rp, UINT64_MAX, NULL, f, &r->bytes_read, &r->bytes_written);
            f->how = "copied";
        }
        if (!rc) r->files_copied++;
    }
    closedir(d);
    return rc;
}

static uint32_t last_segment(const char *logdir) {
    DIR *d = opendir(logdir);
    uint32_t hi = 0;
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        unsigned n;
        char tail[8];
        if (strlen(e->d_name) == 12 && sscanf(e->d_name, "%8u.%3s", &n, tail) == 2 && !strcmp(tail, "seg") && n > hi)
            hi = n;
    }
    closedir(d);
    return hi;
}

/* ------------------------------------------------------------------- backup */

int evs_backup(const char *dir, const char *dest, unsigned flags, evs_backup_report *rep) {
    evs_backup_report r;
    bk_manifest m, old;
    char path[BK_PATH], dpath[BK_PATH], partial[BK_PATH];
    int rc, have_old = 0, marked = 0;
    struct stat st;
    memset(&r, 0, sizeof r);
    memset(&m, 0, sizeof m);
    memset(&old, 0, sizeof old);
    if (!dir || !dest) return evs__err(EVS_EINVAL, "backup: NULL directory");

    /* the store */
    snprintf(path, sizeof path, "%s/index/data.mdb", dir);
    if (stat(dir, &st) || !S_ISDIR(st.st_mode)) return evs__err(EVS_ENOTFOUND, "backup: no store at %s", dir);
    if (stat(path, &st)) return evs__err(EVS_ENOTFOUND, "backup: %s is not a store (no index/data.mdb)", dir);
    snprintf(path, sizeof path, "%s/REPAIRING", dir);
    if (access(path, F_OK) == 0)
        return evs__err(EVS_EINVAL, "backup: %s is in the middle of a repair (run evstore repair first)", dir);
    if ((rc = store_id(dir, m.store_id))) return rc;

    /* the destination: absent, empty, or a backup of this store */
    int empty = dir_empty(dest);
    if (empty < 0) return empty;
    if (!empty) {
        rc = manifest_read(dest, &old);
        if (rc == EVS_ENOTFOUND)
            return evs__err(EVS_EINVAL, "backup: %s is not empty and holds no backup (no %s); nothing was written",
                            dest, EVS_BACKUP_MANIFEST);
        if (rc) return rc;
        have_old = 1;
        if (strcmp(old.store_id, m.store_id)) {
            rc = evs__err(EVS_EINVAL, "backup: %s holds a backup of another store (store id %s, this one is %s); "
                          "nothing was written", dest, old.store_id, m.store_id);
            goto cleanup;
        }
        r.incremental = 1;
        r.previous_head = old.head;
    } else if (flags & EVS_BACKUP_INCREMENTAL) {
        return evs__err(EVS_EINVAL, "backup --incremental: %s holds no backup to update", dest);
    } else if ((rc = mkdir_all(dest))) {
        return evs__err_prefix(rc, "backup: ");
    }
    {
        /* a backup inside the store would copy itself as part of the store's state */
        char rd[PATH_MAX], rb[PATH_MAX];
        if (realpath(dir, rd) && realpath(dest, rb) && !strncmp(rb, rd, strlen(rd)) &&
            (rb[strlen(rd)] == '/' || rb[strlen(rd)] == 0)) {
            if (!have_old) rmdir(dest);
            rc = evs__err(EVS_EINVAL, "backup: %s lies inside the store %s; choose a directory outside it", dest, dir);
            goto cleanup;
        }
    }
    snprintf(partial, sizeof partial, "%s/" EVS_BACKUP_PARTIAL, dest);
    int pfd = open(partial, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (pfd < 0) {
        rc = evs__err_errno(-errno, "backup: cannot write %s", partial);
        goto cleanup;
    }
    close(pfd);
    marked = 1;
    if ((rc = fsync_dir(dest))) goto cleanup;

    /* 1. the other state directories, before the index (see the top of the file) */
    DIR *d = opendir(dir);
    if (!d) {
        rc = evs__err_errno(-errno, "backup: cannot open %s", dir);
        goto cleanup;
    }
    char names[64][256];
    size_t nn = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.' && !is_skipped_top(e->d_name)) {
            if (nn == 64 || strlen(e->d_name) >= 256) {
                closedir(d);
                rc = evs__err(EVS_EINVAL, "backup: %s holds more than 64 entries (or one with a name of 256 bytes "
                              "or more): not a store directory?", dir);
                goto cleanup;
            }
            snprintf(names[nn++], 256, "%s", e->d_name);
        }
    closedir(d);
    for (size_t i = 0; i < nn && !rc; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (lstat(path, &st)) continue;
        if (S_ISDIR(st.st_mode)) {
            rc = copy_state(path, dest, names[i], &m, &r);
        } else if (S_ISREG(st.st_mode)) {
            bk_file *f = list_add(&m.files, names[i]);
            if (!f) rc = EVS_ENOMEM;
            else if (!(rc = copy_into(path, dest, names[i], UINT64_MAX, NULL, f, &r.bytes_read, &r.bytes_written)))
                f->how = "copied", r.files_copied++;
        }
    }
    if (rc) goto cleanup;

    /* 2. the index: its checkpoint is the backup point */
    {
        char idir[BK_PATH], snap[BK_PATH];
        bk_file *f = list_add(&m.files, "index/data.mdb");
        if (!f) {
            rc = EVS_ENOMEM;
            goto cleanup;
        }
        snprintf(idir, sizeof idir, "%s/index", dir);
        snprintf(dpath, sizeof dpath, "%s/index", dest);
        if ((rc = mkdir_p1(dpath))) goto cleanup;
        snprintf(snap, sizeof snap, "%s/index/data.mdb.snap", dest);
        m.time_ns = evs_now_ns();
        if ((rc = env_snapshot(idir, snap))) goto cleanup;
        rc = index_point(snap, &m.end, &m.next_gpos, &m.index_format);
        if (!rc) {
            char tmp[BK_PATH + 8], dst[BK_PATH];
            snprintf(dst, sizeof dst, "%s/index/data.mdb", dest);
            snprintf(tmp, sizeof tmp, "%s.tmp", dst);
            rc = copy_range(snap, f->path, tmp, UINT64_MAX, NULL, f, NULL, &r.bytes_written);
            if (!rc && rename(tmp, dst)) rc = evs__err_errno(-errno, "cannot rename %s", tmp);
            f->how = "snapshot";
            r.bytes_read += f->size;
            r.files_copied++;
        }
        unlink(snap);
        if (rc) goto cleanup;
        m.head = m.next_gpos - 1;
        if (have_old && m.head < old.head) {
            rc = evs__err(EVS_EINVAL, "backup: the backup in %s is ahead of the store (head %" PRIu64 " > %" PRIu64
                          "): a store restored from an older point? Back up into a new directory", dest, old.head,
                          m.head);
            goto cleanup;
        }
    }

    /* 3. the log, up to the backup point */
    snprintf(dpath, sizeof dpath, "%s/log", dest);
    if ((rc = mkdir_p1(dpath))) goto cleanup;
    uint32_t end_seg = EVS_LSN_SEG(m.end), have = 0;
    snprintf(path, sizeof path, "%s/log", dir);
    have = last_segment(path);
    if (end_seg == 0 || end_seg > have) {
        rc = evs__err(EVS_ECORRUPT, "backup: the index's checkpoint is in segment %u, but %s/log has %u segments",
                      end_seg, dir, have);
        goto cleanup;
    }
    for (uint32_t s = 1; s <= end_seg; s++) {
        char rel[32], src[BK_PATH];
        snprintf(rel, sizeof rel, "log/%08u.seg", s);
        snprintf(src, sizeof src, "%s/%s", dir, rel);
        int sealed = s < end_seg;
        if (stat(src, &st)) {
            rc = evs__err_errno(-errno, "backup: cannot stat %s", src);
            goto cleanup;
        }
        const bk_file *of = have_old ? list_find(&old.files, rel) : NULL;
        bk_file *f = list_add(&m.files, rel);
        if (!f) {
            rc = EVS_ENOMEM;
            goto cleanup;
        }
        struct stat ds;
        snprintf(dpath, sizeof dpath, "%s/%s", dest, rel);
        /* incremental: a whole segment already in the backup, unchanged in the store since */
        if (sealed && of && of->data_size == of->size && of->src_size == (uint64_t)st.st_size &&
            of->src_mtime_ns == mtime_ns(&st) && stat(dpath, &ds) == 0 && (uint64_t)ds.st_size == of->size) {
            uint32_t *crc = malloc((of->ncrc ? of->ncrc : 1) * sizeof *crc);
            if (!crc) {
                rc = evs__err(EVS_ENOMEM, "backup: out of memory");
                goto cleanup;
            }
            memcpy(crc, of->crc, of->ncrc * sizeof *crc);
            *f = *of;
            f->crc = crc;
            f->how = "reused";
            r.files_reused++;
            continue;
        }
        if (sealed && (flags & EVS_BACKUP_LINK)) {
            char tmp[BK_PATH + 8];
            snprintf(tmp, sizeof tmp, "%s.tmp", dpath);
            unlink(tmp);
            if (link(src, tmp) == 0) {
                /* checksum what was linked, so verify can tell later damage */
                rc = copy_range(src, rel, NULL, UINT64_MAX, NULL, f, &r.bytes_read, NULL);
                if (!rc && rename(tmp, dpath)) rc = evs__err_errno(-errno, "cannot rename %s", tmp);
                if (rc) {
                    unlink(tmp);
                    goto cleanup;
                }
                f->how = "linked";
                r.files_linked++;
                continue;
            }
            if (errno != EXDEV && errno != EPERM && errno != EMLINK) {
                rc = evs__err_errno(-errno, "backup: cannot link %s", src);
                goto cleanup;
            }
        }
        uint64_t limit = sealed ? UINT64_MAX : EVS_LSN_OFF(m.end);
        if ((rc = copy_into(src, dest, rel, limit, NULL, f, &r.bytes_read, &r.bytes_written))) goto cleanup;
        f->how = "copied";
        r.files_copied++;
    }
    snprintf(dpath, sizeof dpath, "%s/log", dest);
    if ((rc = fsync_dir(dpath))) goto cleanup;
    snprintf(dpath, sizeof dpath, "%s/index", dest);
    if ((rc = fsync_dir(dpath)) || (rc = sync_dest(dest))) goto cleanup;

    /* sizes, then the manifest, then the marker goes */
    for (size_t i = 0; i < m.files.n; i++) {
        snprintf(dpath, sizeof dpath, "%s/%s", dest, m.files.v[i].path);
        if (stat(dpath, &st) == 0) {
            r.apparent_bytes += (uint64_t)st.st_size;
            r.real_bytes += (uint64_t)st.st_blocks * 512;
        }
    }
    r.files = m.files.n;
    r.head = m.head;
    r.time_ns = m.time_ns;
    memcpy(r.store_id, m.store_id, sizeof r.store_id);
    if ((rc = manifest_write(dest, &m, &r))) goto cleanup;
    if (unlink(partial)) {
        rc = evs__err_errno(-errno, "backup: cannot remove %s", partial);
        goto cleanup;
    }
    marked = 0;
    rc = fsync_dir(dest);
cleanup:
    (void)marked; /* a failed backup keeps the marker: restore and verify refuse it */
    list_free(&m.files);
    list_free(&old.files);
    if (rep) *rep = r;
    return rc;
}

/* ------------------------------------------------------------------ restore */

/* A complete backup's manifest: no partial marker, a manifest that reads. */
static int open_backup(const char *backup, bk_manifest *m) {
    char p[BK_PATH];
    snprintf(p, sizeof p, "%s/" EVS_BACKUP_PARTIAL, backup);
    struct stat st;
    if (stat(backup, &st) || !S_ISDIR(st.st_mode)) return evs__err(EVS_ENOTFOUND, "no backup at %s", backup);
    if (access(p, F_OK) == 0)
        return evs__err(EVS_EINVAL, "%s is an incomplete backup (%s is present: a backup into it failed or is "
                        "running); run evstore backup into it again", backup, EVS_BACKUP_PARTIAL);
    return manifest_read(backup, m);
}

/* Where to cut the backup's log: the first append that falls after the point. */
static int find_cut(const char *backup, const bk_manifest *m, const evs_restore_opts *o, evs_lsn *cut,
                    uint64_t *head) {
    char p[BK_PATH];
    evs_log *log = NULL;
    evs_log_recovery rec;
    evs_log_config cfg = {.scan_only = 1, .readonly = 1};
    snprintf(p, sizeof p, "%s", backup);
    *cut = m->end;
    *head = m->head;
    int rc = evs__log_open(p, &cfg, 0, 0, &log, &rec);
    if (rc) return rc;
    evs_lsn at = evs__log_start(log);
    uint64_t last = 0;
    while (at < m->end) {
        evs_frame f;
        if ((rc = evs__log_read(log, at, m->end, &f))) {
            if (rc == EVS_DONE) rc = EVS_OK;
            break;
        }
        uint64_t lastpos = f.first_gpos + f.count - 1;
        int after = o->has_position && lastpos > o->to_position;
        if (o->has_time && !(f.flags & EVS_FRAME_LOST) && f.len >= 16 && evs__record_recorded_at(f.payload) > o->to_time_ns)
            after = 1;
        if (after) {
            *cut = f.at;
            break;
        }
        last = lastpos;
        at = f.next;
    }
    if (!rc) *head = last;
    else if (rc == EVS_ECORRUPT) evs__err_prefix(rc, "the backup %s is damaged: ", backup);
    evs__log_close(log);
    return rc;
}

static void note(evs_restore_report *r, const char *fmt, const char *a) {
    size_t n = strlen(r->notes);
    if (n + 2 >= sizeof r->notes) return;
    snprintf(r->notes + n, sizeof r->notes - n, "%s", n ? "; " : "");
    n = strlen(r->notes);
    snprintf(r->notes + n, sizeof r->notes - n, fmt, a);
}

/* A cut store: drop the consumers whose checkpoint lies beyond what exists now. */
static int trim_consumers(evs_store *s, evs_restore_report *r) {
    evs_bus *bus = NULL;
    int rc = evs_bus_open(s, &bus);
    if (rc) return rc;
    evs_consumer_info *ci = malloc(16 * sizeof *ci);
    char after[EVS_BUS_MAX_NAME + 1] = "";
    if (!ci) {
        evs_bus_close(bus);
        return evs__err(EVS_ENOMEM, "restore: out of memory");
    }
    for (;;) {
        size_t n = 0;
        if ((rc = evs_consumer_list(bus, after[0] ? after : NULL, ci, 16, &n)) || n == 0) break;
        for (size_t i = 0; i < n && !rc; i++) {
            uint64_t limit = evs_head(s);
            if (ci[i].stream[0]) {
                evs_stream_info si;
                int src = evs_stream_get_info(s, ci[i].stream, &si);
                limit = src == EVS_OK ? si.version : 0;
                evs__err_clear();
            }
            if (ci[i].checkpoint > limit) {
                if ((rc = evs_consumer_delete(bus, ci[i].name))) break;
                r->consumers_removed++;
                note(r, "consumer \"%s\" removed: its checkpoint lay beyond the restored head", ci[i].name);
            }
        }
        snprintf(after, sizeof after, "%s", ci[n - 1].name);
        if (n < 16) break;
    }
    evs_bus_check_report brep;
    if (!rc && (rc = evs_bus_check(bus, &brep)) == EVS_ECORRUPT)
        rc = evs__err(EVS_ECORRUPT, "restore: the consumers do not fit the cut log: %s", brep.first_error);
    free(ci);
    evs_bus_close(bus);
    return rc;
}

int evs_restore(const char *backup, const char *dir, const evs_restore_opts *o, evs_restore_report *rep) {
    evs_restore_report r;
    evs_restore_opts none;
    bk_manifest m;
    char src[BK_PATH];
    int rc, made = 0;
    evs_store *s = NULL;
    memset(&r, 0, sizeof r);
    memset(&none, 0, sizeof none);
    if (!o) o = &none;
    if (!backup || !dir) return evs__err(EVS_EINVAL, "restore: NULL directory");
    if ((rc = open_backup(backup, &m))) return rc;
    int empty = dir_empty(dir);
    if (empty <= 0) {
        list_free(&m.files);
        return empty < 0 ? empty
                         : evs__err(EVS_EINVAL, "restore: %s is not empty; restore creates a new store and never "
                                    "writes over one (choose a new directory)", dir);
    }
    if ((rc = mkdir_all(dir))) {
        evs__err_prefix(rc, "restore: ");
        list_free(&m.files);
        return rc;
    }
    made = 1;
    r.backup_head = m.head;
    evs_lsn cut;
    if ((rc = find_cut(backup, &m, o, &cut, &r.head))) goto cleanup;
    int cutting = cut != m.end;

    for (size_t i = 0; i < m.files.n; i++) {
        const bk_file *f = &m.files.v[i];
        bk_file got;
        memset(&got, 0, sizeof got);
        uint64_t limit = UINT64_MAX;
        unsigned segno;
        char tail[8];
        snprintf(src, sizeof src, "%s/%s", backup, f->path);
        if (sscanf(f->path, "log/%8u.%3s", &segno, tail) == 2) {
            if (segno > EVS_LSN_SEG(cut)) continue;
            if (segno == EVS_LSN_SEG(cut)) limit = EVS_LSN_OFF(cut);
        } else if (cutting && !strcmp(f->path, "index/data.mdb")) {
            continue; /* rebuilt from the cut log at open */
        } else if (cutting && (!strcmp(f->path, "app/data.mdb") || !strcmp(f->path, "sagas/data.mdb"))) {
            /* derived state (snapshots and command results; the saga catalog) that may reflect
               events after the cut: its layer rebuilds it.  Definitions beside it are kept. */
            note(&r, "%s left out: derived, partly from events after the cut; its layer rebuilds it", f->path);
            continue;
        }
        rc = copy_into(src, dir, f->path, limit, f, &got, NULL, NULL);
        free(got.crc);
        if (rc) goto cleanup;
    }
    char ld[BK_PATH];
    snprintf(ld, sizeof ld, "%s/log", dir);
    if ((rc = mkdir_p1(ld)) || (rc = sync_dest(dir)) || (rc = fsync_dir(ld)) || (rc = fsync_dir(dir))) goto cleanup;

    /* open it: recovery checks the log against the index (or rebuilds the index of a cut log) */
    if ((rc = evs_store_create(&s)) || (rc = evs_store_open(s, dir, 0))) goto cleanup;
    if (evs_head(s) != r.head) {
        rc = evs__err(EVS_ECORRUPT, "restore: the restored store's head is %" PRIu64 ", expected %" PRIu64,
                      evs_head(s), r.head);
        goto cleanup;
    }
    char cd[BK_PATH];
    struct stat st;
    snprintf(cd, sizeof cd, "%s/consumers", dir);
    if (cutting && stat(cd, &st) == 0 && (rc = trim_consumers(s, &r))) goto cleanup;
    rc = evs_store_close(s);
    s = NULL;
    r.dropped_events = r.backup_head - r.head;
cleanup:
    if (s) evs_store_close(s);
    if (rc && made) {
        int keep = rc;
        rm_contents(dir);
        if (empty == 1) rmdir(dir);
        rc = keep;
    }
    list_free(&m.files);
    if (rep) *rep = r;
    return rc;
}

/* ------------------------------------------------------------------- verify */

static void vproblem(evs_verify_report *r, const char *fmt, ...) EVS_PRINTF(2, 3);
static void vproblem(evs_verify_report *r, const char *fmt, ...) {
    if (r->errors++ == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->first_error, sizeof r->first_error, fmt, ap);
        va_end(ap);
    }
}

/* A file's presence and size: 0 when both are as the manifest says. */
static int verify_present(const char *backup, const bk_file *f, evs_verify_report *r) {
    char p[BK_PATH];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", backup, f->path);
    if (stat(p, &st)) {
        vproblem(r, "%s: missing (%s)", f->path, strerror(errno));
        return -1;
    }
    if ((uint64_t)st.st_size != f->size) {
        vproblem(r, "%s: %" PRIu64 " bytes, the manifest says %" PRIu64, f->path, (uint64_t)st.st_size, f->size);
        return -1;
    }
    return 0;
}

/* A present file's blocks against the manifest, and zeros after the copied data. */
static int verify_file(const char *backup, const bk_file *f, evs_verify_report *r) {
    char p[BK_PATH];
    snprintf(p, sizeof p, "%s/%s", backup, f->path);
    bk_file got;
    memset(&got, 0, sizeof got);
    int rc = copy_range(p, f->path, NULL, f->data_size, f, &got, &r->bytes, NULL);
    free(got.crc);
    if (rc == EVS_ECORRUPT) {
        vproblem(r, "%s", evs_errmsg());
        return EVS_OK;
    }
    if (rc) return rc;
    /* after the copied data only zeros (holes are skipped with SEEK_DATA) */
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return evs__err_errno(-errno, "cannot open %s", p);
    uint8_t *buf = malloc(BK_BLOCK);
    if (!buf) {
        close(fd);
        return evs__err(EVS_ENOMEM, "verify: out of memory");
    }
    for (uint64_t off = f->data_size; off < f->size;) {
        off_t data = lseek(fd, (off_t)off, SEEK_DATA);
        if (data < 0) break; /* only a hole is left */
        off = (uint64_t)data;
        ssize_t n = pread(fd, buf, BK_BLOCK, (off_t)off);
        if (n <= 0) break;
        for (ssize_t i = 0; i < n; i++)
            if (buf[i]) {
                vproblem(r, "%s offset %" PRIu64 ": a non-zero byte after the backup's data (which ends at %" PRIu64
                         ")", f->path, off + (uint64_t)i, f->data_size);
                off = f->size;
                break;
            }
        r->bytes += (uint64_t)n;
        off += (uint64_t)n;
    }
    free(buf);
    close(fd);
    return EVS_OK;
}

int evs_verify_backup(const char *backup, evs_verify_report *rep) {
    evs_verify_report r;
    bk_manifest m;
    memset(&r, 0, sizeof r);
    if (!backup) return evs__err(EVS_EINVAL, "verify-backup: NULL directory");
    int rc = open_backup(backup, &m);
    if (rc) return rc;
    r.head = m.head;
    /* first every file's presence and size, then the records (which name the
       offset of a damaged one), then every block of every file */
    int *ok = calloc(m.files.n ? m.files.n : 1, sizeof *ok), log_ok = 1;
    if (!ok) {
        list_free(&m.files);
        return evs__err(EVS_ENOMEM, "verify: out of memory");
    }
    for (size_t i = 0; i < m.files.n; i++) {
        r.files++;
        ok[i] = verify_present(backup, &m.files.v[i], &r) == 0;
        if (!ok[i] && !strncmp(m.files.v[i].path, "log/", 4)) log_ok = 0;
    }
    /* every record's checksum up to the backup point */
    if (log_ok) {
        char p[BK_PATH];
        evs_log *log = NULL;
        evs_log_recovery rec;
        evs_log_config cfg = {.scan_only = 1, .readonly = 1};
        snprintf(p, sizeof p, "%s", backup);
        int lrc = evs__log_open(p, &cfg, 0, 0, &log, &rec);
        if (lrc == EVS_OK) {
            evs_lsn at = evs__log_start(log);
            uint64_t expect = 1;
            while (at < m.end) {
                evs_frame f;
                char why[160];
                lrc = evs__log_read(log, at, m.end, &f);
                if (lrc == EVS_OK && f.first_gpos != expect)
                    lrc = evs__err(EVS_ECORRUPT, "segment %08u.seg offset %u: position %" PRIu64 ", expected %" PRIu64,
                                   EVS_LSN_SEG(at), EVS_LSN_OFF(at), f.first_gpos, expect);
                if (lrc == EVS_OK && evs__frame_payload_check(NULL, &f, why, sizeof why))
                    lrc = evs__err(EVS_ECORRUPT, "segment %08u.seg offset %u: %s", EVS_LSN_SEG(at), EVS_LSN_OFF(at),
                                   why);
                if (lrc) break;
                r.records++;
                r.events += f.count;
                expect = f.first_gpos + f.count;
                at = f.next;
            }
            if (lrc == EVS_DONE) lrc = EVS_OK;
            if (lrc == EVS_ECORRUPT) vproblem(&r, "%s", evs_errmsg());
            else if (lrc) rc = lrc;
            else if (expect != m.next_gpos)
                vproblem(&r, "log: the records end at position %" PRIu64 ", the manifest's head is %" PRIu64,
                         expect - 1, m.head);
            evs__log_close(log);
        } else if (lrc == EVS_ECORRUPT || lrc == EVS_EFORMAT || lrc == -ENOENT) {
            vproblem(&r, "%s", evs_errmsg());
        } else {
            rc = lrc;
        }
    }
    for (size_t i = 0; i < m.files.n && !rc; i++)
        if (ok[i]) rc = verify_file(backup, &m.files.v[i], &r);
    free(ok);
    list_free(&m.files);
    if (!rc && r.errors) rc = evs__err(EVS_ECORRUPT, "backup %s is damaged: %s", backup, r.first_error);
    if (rep) *rep = r;
    return rc;
}
