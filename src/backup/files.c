/*
 * files.c — the pieces every backup command uses (backup_internal.h):
 * copying a file with a CRC32C per 1 MiB block and holes for zero chunks,
 * compact LMDB snapshots through a read transaction, the manifest
 * (backup.json) written and read with jansson (off the hot path), the
 * store id, and directory helpers.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backup/backup_internal.h"
#include "core/core.h"

void evs__bk_list_free(evs__bk_list *l) {
    for (size_t i = 0; i < l->n; i++) free(l->v[i].crc);
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* A new zeroed entry at the end of l; NULL when out of memory (error set). */
evs__bk_file *evs__bk_list_add(evs__bk_list *l, const char *path) {
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 32;
        evs__bk_file *nv = realloc(l->v, nc * sizeof *nv);
        if (!nv) {
            evs__err(EVS_ENOMEM, "backup: out of memory");
            return NULL;
        }
        l->v = nv;
        l->cap = nc;
    }
    evs__bk_file *f = &l->v[l->n++];
    memset(f, 0, sizeof *f);
    snprintf(f->path, sizeof f->path, "%s", path);
    return f;
}

const evs__bk_file *evs__bk_list_find(const evs__bk_list *l, const char *path) {
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i].path, path) == 0) return &l->v[i];
    return NULL;
}

int64_t evs__bk_mtime_ns(const struct stat *st) {
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

int evs__bk_fsync_dir(const char *path) {
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
int evs__bk_sync_dest(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return evs__err_errno(-errno, "cannot open directory %s", dir);
    int rc = syncfs(fd) ? evs__err_errno(-errno, "cannot sync the filesystem of %s", dir) : EVS_OK;
    close(fd);
    return rc;
}

/*
 * A directory of a destination (a backup's DEST or below it, a restore's
 * parent or sibling) that cannot be made is an I/O error, EVS_EIO, whatever
 * the OS said: a raw -ENOENT would read as "not found" to every caller (the
 * CLI's exit 2, "no store" / "no backup"), though it is the destination
 * that is wrong.  The message keeps the path and the OS's reason.
 */
int evs__bk_mkdir_p1(const char *path) {
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return evs__err(EVS_EIO, "cannot create directory %s: %s", path, strerror(errno));
    return EVS_OK;
}

/* mkdir -p path. */
int evs__bk_mkdir_all(const char *path) {
    char p[BK_PATH];
    if ((size_t)snprintf(p, sizeof p, "%s", path) >= sizeof p) return evs__err(EVS_EINVAL, "path too long: %s", path);
    for (char *s = p + 1; (s = strchr(s, '/')); s++) {
        *s = 0;
        int rc = evs__bk_mkdir_p1(p);
        *s = '/';
        if (rc) return rc;
    }
    return evs__bk_mkdir_p1(p);
}

/* Create every directory of rel's parent path under root. */
int evs__bk_mkdirs_for(const char *root, const char *rel) {
    char p[BK_PATH];
    int k = snprintf(p, sizeof p, "%s/%s", root, rel);
    if (k < 0 || (size_t)k >= sizeof p) return evs__err(EVS_EINVAL, "path too long: %s/%s", root, rel);
    for (char *s = p + strlen(root) + 1; (s = strchr(s, '/')); s++) {
        *s = 0;
        int rc = evs__bk_mkdir_p1(p);
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
int evs__bk_copy_range(const char *src, const char *label, const char *dst_tmp, uint64_t limit, const evs__bk_file *expect,
                      evs__bk_file *f, uint64_t *read_bytes, uint64_t *written) {
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
    f->src_mtime_ns = evs__bk_mtime_ns(&st);
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
    /* sized first: no write extends the file, so no filesystem preallocates
       past the data it is given (XFS does for extending writes) and the
       skipped zero chunks stay holes */
    if (out >= 0 && ftruncate(out, (off_t)size)) {
        rc = evs__err_errno(-errno, "cannot size %s", dst_tmp);
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
int evs__bk_copy_into(const char *src, const char *root, const char *rel, uint64_t limit, const evs__bk_file *expect,
                     evs__bk_file *f, uint64_t *rd, uint64_t *wr) {
    char dst[BK_PATH], tmp[BK_PATH + 8];
    int rc;
    if ((rc = evs__bk_mkdirs_for(root, rel))) return rc;
    snprintf(dst, sizeof dst, "%s/%s", root, rel);
    snprintf(tmp, sizeof tmp, "%s.tmp", dst);
    if ((rc = evs__bk_copy_range(src, rel, tmp, limit, expect, f, rd, wr))) return rc;
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
int evs__bk_env_snapshot(const char *env_dir, const char *out) {
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
int evs__bk_index_point(const char *file, evs_lsn *end, uint64_t *next_gpos, uint32_t *format) {
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


int evs__bk_manifest_write(const char *dest, const evs__bk_manifest *m, const evs_backup_report *r) {
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
        const evs__bk_file *f = &m->files.v[i];
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
int evs__bk_manifest_read(const char *backup, evs__bk_manifest *m) {
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
        evs__bk_file *f = evs__bk_list_add(&m->files, p);
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
    if (rc) evs__bk_list_free(&m->files);
    return rc;
}

/* ------------------------------------------------------------------ helpers */

/* 16 hex digits of segment 1's salt, after checking its magic. */
int evs__bk_store_id(const char *dir, char out[17]) {
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
int evs__bk_dir_empty(const char *dir) {
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
void evs__bk_rm_contents(const char *dir) { evs__bk_rm_contents_but(dir, NULL); }

/* The same, keeping dir's entry named keep (NULL: none). */
void evs__bk_rm_contents_but(const char *dir, const char *keep) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || (keep && !strcmp(e->d_name, keep))) continue;
        char p[BK_PATH];
        if ((size_t)snprintf(p, sizeof p, "%s/%s", dir, e->d_name) >= sizeof p) continue;
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
            evs__bk_rm_contents(p);
            rmdir(p);
        } else {
            unlink(p);
        }
    }
    closedir(d);
}

/* A complete backup's manifest: no partial marker, a manifest that reads. */
int evs__bk_open_backup(const char *backup, evs__bk_manifest *m) {
    char p[BK_PATH];
    snprintf(p, sizeof p, "%s/" EVS_BACKUP_PARTIAL, backup);
    struct stat st;
    if (stat(backup, &st) || !S_ISDIR(st.st_mode)) return evs__err(EVS_ENOTFOUND, "no backup at %s", backup);
    if (access(p, F_OK) == 0)
        return evs__err(EVS_EINVAL, "%s is an incomplete backup (%s is present: a backup into it failed or is "
                        "running); run evstore backup into it again", backup, EVS_BACKUP_PARTIAL);
    return evs__bk_manifest_read(backup, m);
}
