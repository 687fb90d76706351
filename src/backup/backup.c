/*
 * backup.c — online backup of a store directory (include/evstore_backup.h);
 * restore.c restores and verify.c checks what it writes, files.c has the rest.  Sits above the store and the bus: it copies
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store_engine.h"
#include "backup/backup_internal.h"
#include "core/core.h"

static int is_skipped_top(const char *name) {
    return !strcmp(name, "log") || !strcmp(name, "index") || !strcmp(name, "LOCK") || !strcmp(name, "SERVE") ||
           !strcmp(name, "REPAIRING") || !strcmp(name, "scavenge.json") ||
           !strcmp(name, "subject-keys") /* keys never leave the store */;
}

/*
 * Copy the state directory src (relative name rel) into dest: an LMDB
 * environment (data.mdb) through a read transaction, other files as they
 * are, subdirectories likewise.  lock.mdb and *.tmp are never copied.
 */
static int copy_state(const char *src, const char *dest, const char *rel, evs__bk_manifest *m, evs_backup_report *r) {
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
        evs__bk_file *f = evs__bk_list_add(&m->files, rp);
        if (!f) {
            rc = EVS_ENOMEM;
            break;
        }
        if (!strcmp(nm, "data.mdb")) {
            char tmp[BK_PATH + 8], snap[BK_PATH + 8], dst[BK_PATH];
            if ((rc = evs__bk_mkdirs_for(dest, rp))) break;
            snprintf(dst, sizeof dst, "%s/%s", dest, rp);
            snprintf(snap, sizeof snap, "%s.snap", dst);
            snprintf(tmp, sizeof tmp, "%s.tmp", dst);
            if ((rc = evs__bk_env_snapshot(src, snap))) break;
            /* the snapshot is ours already: checksum it (and drop its zero blocks) on the way in */
            rc = evs__bk_copy_range(snap, rp, tmp, UINT64_MAX, NULL, f, NULL, &r->bytes_written);
            unlink(snap);
            if (!rc && rename(tmp, dst)) rc = evs__err_errno(-errno, "cannot rename %s", tmp);
            f->how = "snapshot";
            r->bytes_read += f->size;
        } else {
            rc = evs__bk_copy_into(sp, dest, rp, UINT64_MAX, NULL, f, &r->bytes_read, &r->bytes_written);
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

/*
 * The absolute path `path` will have once created: realpath of its deepest
 * existing ancestor, then the components that do not exist yet (no links
 * among them, so "." and ".." are taken lexically, as mkdir -p meets them).
 * 0 when even that cannot be resolved.
 */
static int resolve_to_be(const char *path, char out[PATH_MAX]) {
    char p[PATH_MAX];
    if (realpath(path, out)) return 1;
    if ((size_t)snprintf(p, sizeof p, "%s", path) >= sizeof p) return 0;
    char *rest = NULL;
    for (;;) {
        char *slash = strrchr(p, '/');
        if (rest) rest[-1] = '/';
        if (!slash) {
            rest = p;
            if (!realpath(".", out)) return 0;
            break;
        }
        *slash = 0;
        rest = slash + 1;
        if (realpath(slash == p ? "/" : p, out)) break;
    }
    char *save = NULL;
    for (char *c = strtok_r(rest, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        size_t n = strlen(out);
        if (!strcmp(c, ".")) continue;
        if (!strcmp(c, "..")) {
            char *up = strrchr(out, '/');
            if (up) up[up == out ? 1 : 0] = 0;
            continue;
        }
        if (n + 1 + strlen(c) >= PATH_MAX) return 0;
        snprintf(out + n, PATH_MAX - n, "%s%s", out[n - 1] == '/' ? "" : "/", c);
    }
    return 1;
}

/* EVS_OK when dest holds nothing but the partial marker; else EVS_EIO naming what is left. */
static int only_marker(const char *dest) {
    DIR *d = opendir(dest);
    if (!d) return evs__err_errno(-errno, "backup: cannot open %s", dest);
    int rc = EVS_OK;
    struct dirent *e;
    while (!rc && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, EVS_BACKUP_PARTIAL))
            rc = evs__err(EVS_EIO, "backup: cannot remove %s/%s, left by the interrupted backup into %s; remove "
                          "it and run the backup again", dest, e->d_name, dest);
    closedir(d);
    return rc;
}

/* ------------------------------------------------------------------- backup */

int evs_backup(const char *dir, const char *dest, unsigned flags, evs_backup_report *rep) {
    if (evs__engine_for(dir)) return evs__engine_unsupported(evs__engine_for(dir), "backup (PostgreSQL has its own: pg_dump, base backups)");
    evs_backup_report r;
    evs__bk_manifest m, old;
    char path[BK_PATH], dpath[BK_PATH], partial[BK_PATH];
    int rc, have_old = 0, marked = 0, swap_lock = -1, retake = 0;
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
    if ((rc = evs__bk_store_id(dir, m.store_id))) return rc;

    /* the destination: absent, empty, a backup of this store, or what a first backup into it left */
    int empty = evs__bk_dir_empty(dest);
    if (empty < 0) return empty;
    snprintf(partial, sizeof partial, "%s/" EVS_BACKUP_PARTIAL, dest);
    if (!empty) {
        rc = evs__bk_manifest_read(dest, &old);
        if (rc == EVS_ENOTFOUND && access(partial, F_OK) == 0) {
            /* an interrupted first backup (a directory that was not empty without a manifest is
               refused, so it began empty): taken again from the start, what it wrote removed
               first (below), so nothing of it (nor of another store) survives into the backup */
            evs__err_clear();
            empty = 1;
            retake = 1;
        } else if (rc == EVS_ENOTFOUND) {
            return evs__err(EVS_EINVAL, "backup: %s is not empty and holds no backup (no %s); nothing was written",
                            dest, EVS_BACKUP_MANIFEST);
        } else if (rc) {
            return rc;
        }
    }
    {
        /* a backup inside the store would copy itself as part of the store's state; checked
           before dest or its parents are created, so a refusal leaves nothing behind */
        char rd[PATH_MAX], rb[PATH_MAX];
        if (realpath(dir, rd) && resolve_to_be(dest, rb) && !strncmp(rb, rd, strlen(rd)) &&
            (rb[strlen(rd)] == '/' || rb[strlen(rd)] == 0)) {
            rc = evs__err(EVS_EINVAL, "backup: %s lies inside the store %s; choose a directory outside it", dest, dir);
            goto cleanup;
        }
        /* a retake empties DEST: never with the store below it */
        if (retake && realpath(dir, rd) && realpath(dest, rb) && !strncmp(rd, rb, strlen(rb)) &&
            (rd[strlen(rb)] == '/' || rd[strlen(rb)] == 0 || !strcmp(rb, "/"))) {
            rc = evs__err(EVS_EINVAL, "backup: the store %s lies inside %s, an interrupted backup that a rerun "
                          "would empty; choose another directory", dir, dest);
            goto cleanup;
        }
    }
    if (!empty) {
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
    } else if (retake) {
        /* the marker stays while the rest goes: a crash meanwhile leaves a DEST a rerun takes again */
        evs__bk_rm_contents_but(dest, EVS_BACKUP_PARTIAL);
        if ((rc = only_marker(dest))) goto cleanup;
    } else if ((rc = evs__bk_mkdir_all(dest))) {
        return evs__err_prefix(rc, "backup: ");
    }
    int pfd = open(partial, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (pfd < 0) {
        rc = evs__err_errno(-errno, "backup: cannot write %s", partial);
        goto cleanup;
    }
    close(pfd);
    marked = 1;
    if ((rc = evs__bk_fsync_dir(dest))) goto cleanup;

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
            evs__bk_file *f = evs__bk_list_add(&m.files, names[i]);
            if (!f) rc = EVS_ENOMEM;
            else if (!(rc = evs__bk_copy_into(path, dest, names[i], UINT64_MAX, NULL, f, &r.bytes_read, &r.bytes_written)))
                f->how = "copied", r.files_copied++;
        }
    }
    if (rc) goto cleanup;

    /* 2. the index: its checkpoint is the backup point.  From its snapshot
       to the end of the log's copy no scavenge may swap a segment in
       (src/store/scavenge.c takes this lock alone around each swap), or
       the copy could pair the old index with a new segment. */
    snprintf(path, sizeof path, "%s/log", dir);
    swap_lock = open(path, O_RDONLY | O_DIRECTORY);
    if (swap_lock < 0 || flock(swap_lock, LOCK_SH)) {
        rc = evs__err_errno(-errno, "backup: cannot lock %s against a scavenge", path);
        goto cleanup;
    }
    {
        char idir[BK_PATH], snap[BK_PATH];
        evs__bk_file *f = evs__bk_list_add(&m.files, "index/data.mdb");
        if (!f) {
            rc = EVS_ENOMEM;
            goto cleanup;
        }
        snprintf(idir, sizeof idir, "%s/index", dir);
        snprintf(dpath, sizeof dpath, "%s/index", dest);
        if ((rc = evs__bk_mkdir_p1(dpath))) goto cleanup;
        snprintf(snap, sizeof snap, "%s/index/data.mdb.snap", dest);
        m.time_ns = evs_now_ns();
        if ((rc = evs__bk_env_snapshot(idir, snap))) goto cleanup;
        rc = evs__bk_index_point(snap, &m.end, &m.next_gpos, &m.index_format);
        if (!rc) {
            char tmp[BK_PATH + 8], dst[BK_PATH];
            snprintf(dst, sizeof dst, "%s/index/data.mdb", dest);
            snprintf(tmp, sizeof tmp, "%s.tmp", dst);
            rc = evs__bk_copy_range(snap, f->path, tmp, UINT64_MAX, NULL, f, NULL, &r.bytes_written);
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
    if ((rc = evs__bk_mkdir_p1(dpath))) goto cleanup;
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
        const evs__bk_file *of = have_old ? evs__bk_list_find(&old.files, rel) : NULL;
        evs__bk_file *f = evs__bk_list_add(&m.files, rel);
        if (!f) {
            rc = EVS_ENOMEM;
            goto cleanup;
        }
        struct stat ds;
        snprintf(dpath, sizeof dpath, "%s/%s", dest, rel);
        /* incremental: a whole segment already in the backup, unchanged in the store since */
        if (sealed && of && of->data_size == of->size && of->src_size == (uint64_t)st.st_size &&
            of->src_mtime_ns == evs__bk_mtime_ns(&st) && stat(dpath, &ds) == 0 && (uint64_t)ds.st_size == of->size) {
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
                rc = evs__bk_copy_range(src, rel, NULL, UINT64_MAX, NULL, f, &r.bytes_read, NULL);
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
        if ((rc = evs__bk_copy_into(src, dest, rel, limit, NULL, f, &r.bytes_read, &r.bytes_written))) goto cleanup;
        f->how = "copied";
        r.files_copied++;
    }
    snprintf(dpath, sizeof dpath, "%s/log", dest);
    if ((rc = evs__bk_fsync_dir(dpath))) goto cleanup;
    snprintf(dpath, sizeof dpath, "%s/index", dest);
    if ((rc = evs__bk_fsync_dir(dpath)) || (rc = evs__bk_sync_dest(dest))) goto cleanup;

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
    if ((rc = evs__bk_manifest_write(dest, &m, &r))) goto cleanup;
    if (unlink(partial)) {
        rc = evs__err_errno(-errno, "backup: cannot remove %s", partial);
        goto cleanup;
    }
    marked = 0;
    rc = evs__bk_fsync_dir(dest);
cleanup:
    if (swap_lock >= 0) close(swap_lock);
    (void)marked; /* a failed backup keeps the marker: restore and verify refuse it */
    evs__bk_list_free(&m.files);
    evs__bk_list_free(&old.files);
    if (rep) *rep = r;
    return rc;
}
