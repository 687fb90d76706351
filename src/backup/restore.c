/*
 * restore.c — evs_restore: a new store from a backup, whole or cut between
 * appends at a position or a time.  A cut store is a new store: its index
 * is rebuilt from the cut log, derived state of later events is left out,
 * and the consumers whose checkpoint lies beyond the cut are removed
 * through the bus's public API.  Every block copied is checked against the
 * manifest, and the store is opened once before returning, so recovery has
 * checked the log against the index.
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
#include <limits.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backup/backup_internal.h"
#include "core/core.h"
#include "evstore_crypt.h"
#include "store/crypt.h"
#include "store/store_engine.h"
#include "evstore_bus.h"
#include "log/record.h"

/* Where to cut the backup's log: the first append that falls after the point. */
static int find_cut(const char *backup, const evs__bk_manifest *m, const evs_restore_opts *o, evs_lsn *cut,
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

/* ------------------------------------------------ the temporary sibling */

/*
 * WHY A TEMPORARY SIBLING.  A store is a directory with a log/ in it, so a
 * restore written straight into DIR looks like a store (a damaged one) from
 * its first file on, and a rerun finds DIR not empty.  So the store is built
 * in PARENT/.BASE.restoring-PID, on DIR's filesystem, made durable, and
 * renamed onto DIR: rename(2) replaces an empty directory (or creates DIR)
 * atomically, so a crash at any point leaves DIR as it was or complete.
 * The sibling carries RESTORE_MARKER from its creation, locked (flock) for
 * as long as its restore runs: a later restore into DIR removes a sibling
 * only when its name matches and its marker is there and not locked (or
 * it is empty), so neither a running restore nor anything it did not make
 * is removed.
 */
#define RESTORE_MARKER ".evstore-restoring"
#define RESTORE_INFIX ".restoring-"
#define RESTORE_BASE_MAX 200 /* of DIR's name in the sibling's, so that it fits NAME_MAX */

/* The test hook of the crash tests (tests/integration/test_backup.py): _exit right after step n. */
static void crash_point(int n) {
    const char *at = getenv("EVS_RESTORE_CRASH_AT");
    if (at && atoi(at) == n) _exit(86);
}

/*
 * dir resolved (realpath, when it exists) and split into its parent
 * (created when missing, as restore always did) and its last name; target
 * gets parent/base, the path every later step uses.  dir as typed may be
 * ".", "x/." or a symlink to the empty directory: rename(2) onto those
 * fails (EBUSY, ENOTDIR) or would replace the link itself, while the real
 * path names the directory they lead to.
 */
static int split_target(const char *dir, char *parent, size_t pcap, char *base, size_t bcap, char *target,
                        size_t tcap) {
    char p[BK_PATH], real[PATH_MAX];
    struct stat st;
    if ((size_t)snprintf(p, sizeof p, "%s", dir) >= sizeof p) return evs__err(EVS_EINVAL, "restore: path too long: %s", dir);
    for (size_t n = strlen(p); n > 1 && p[n - 1] == '/'; n--) p[n - 1] = 0;
    if (realpath(p, real)) snprintf(p, sizeof p, "%s", real);
    else if (lstat(p, &st) == 0) /* a symlink to nothing: the rename would replace the link */
        return evs__err(EVS_EINVAL, "restore: %s is a symbolic link to a directory that does not exist", dir);
    char *slash = strrchr(p, '/');
    const char *b = slash ? slash + 1 : p;
    if (!*b || !strcmp(b, ".") || !strcmp(b, ".."))
        return evs__err(EVS_EINVAL, "restore: %s does not name a directory to restore into", dir);
    snprintf(base, bcap, "%s", b);
    if (!slash) snprintf(parent, pcap, ".");
    else if (slash == p) snprintf(parent, pcap, "/");
    else snprintf(parent, pcap, "%.*s", (int)(slash - p), p);
    if ((size_t)snprintf(target, tcap, "%s/%s", strcmp(parent, "/") ? parent : "", base) >= tcap)
        return evs__err(EVS_EINVAL, "restore: path too long: %s", dir);
    int rc = evs__bk_mkdir_all(parent);
    return rc ? evs__err_prefix(rc, "restore: ") : EVS_OK;
}

/* Remove the siblings interrupted restores into base left in parent (see above). */
static void remove_stale(const char *parent, const char *base) {
    char prefix[RESTORE_BASE_MAX + 32];
    snprintf(prefix, sizeof prefix, ".%.*s" RESTORE_INFIX, RESTORE_BASE_MAX, base);
    size_t pl = strlen(prefix);
    DIR *d = opendir(parent);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *tail = e->d_name + pl;
        if (strncmp(e->d_name, prefix, pl) || !*tail || strspn(tail, "0123456789") != strlen(tail)) continue;
        char sib[BK_PATH], mark[BK_PATH + 32];
        struct stat st;
        if ((size_t)snprintf(sib, sizeof sib, "%s/%s", parent, e->d_name) >= sizeof sib) continue;
        if (lstat(sib, &st) || !S_ISDIR(st.st_mode)) continue;
        snprintf(mark, sizeof mark, "%s/" RESTORE_MARKER, sib);
        int fd = open(mark, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
            rmdir(sib); /* killed before its marker was made: empty, or not ours and then kept */
            continue;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
            evs__bk_rm_contents(sib);
            rmdir(sib);
        }
        close(fd);
    }
    closedir(d);
}

/*
 * The sibling, with its marker created and locked (*mark_fd) before
 * anything else.  On failure nothing of it is left: the caller cleans up
 * only after a success.
 */
static int make_sibling(const char *parent, const char *base, char *tmp, size_t cap, int *mark_fd) {
    char mark[BK_PATH + 32];
    if ((size_t)snprintf(tmp, cap, "%s/.%.*s" RESTORE_INFIX "%ld", parent, RESTORE_BASE_MAX, base, (long)getpid()) >= cap)
        return evs__err(EVS_EINVAL, "restore: path too long: %s/%s", parent, base);
    if (mkdir(tmp, 0755)) return evs__err(EVS_EIO, "restore: cannot create directory %s: %s", tmp, strerror(errno));
    snprintf(mark, sizeof mark, "%s/" RESTORE_MARKER, tmp);
    int rc = EVS_OK, fd = open(mark, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 || flock(fd, LOCK_EX)) rc = evs__err(EVS_EIO, "restore: cannot create %s: %s", mark, strerror(errno));
    if (!rc) rc = evs__bk_fsync_dir(tmp);
    if (!rc) rc = evs__bk_fsync_dir(parent);
    if (rc) {
        if (fd >= 0) close(fd);
        unlink(mark);
        rmdir(tmp);
        return rc;
    }
    *mark_fd = fd;
    return EVS_OK;
}

/*
 * --keys-from must name a store, checked before anything is written (its
 * keys are copied by evs_subject_keys_copy at the end, from the key store as
 * it is then).
 */
static int keys_source(const char *live) {
    char p[BK_PATH];
    struct stat st;
    if (evs__engine_for(live))
        return evs__engine_unsupported(evs__engine_for(live), "copying subject keys between store directories");
    snprintf(p, sizeof p, "%s/log", live);
    if (stat(live, &st) || !S_ISDIR(st.st_mode) || stat(p, &st))
        return evs__err(EVS_ENOTFOUND, "restore: no store at %s to copy keys from (no %s)", live, p);
    return EVS_OK;
}

int evs_restore(const char *backup, const char *dir, const evs_restore_opts *o, evs_restore_report *rep) {
    evs_restore_report r;
    evs_restore_opts none;
    evs__bk_manifest m;
    char src[BK_PATH], parent[BK_PATH], base[256], target[BK_PATH], tmp[BK_PATH], mark[BK_PATH + 32];
    int rc, made = 0, mark_fd = -1;
    struct stat dst;
    evs_store *s = NULL;
    memset(&r, 0, sizeof r);
    memset(&none, 0, sizeof none);
    if (!o) o = &none;
    if (!backup || !dir) return evs__err(EVS_EINVAL, "restore: NULL directory");
    if ((rc = evs__bk_open_backup(backup, &m))) return rc;
    if (o->keys_from && (rc = keys_source(o->keys_from))) goto cleanup;
    int empty = evs__bk_dir_empty(dir);
    if (empty <= 0) {
        rc = empty < 0 ? empty
                       : evs__err(EVS_EINVAL, "restore: %s is not empty; restore creates a new store and never "
                                  "writes over one (choose a new directory)", dir);
        goto cleanup;
    }
    if ((rc = split_target(dir, parent, sizeof parent, base, sizeof base, target, sizeof target))) goto cleanup;
    /* from here on target, not dir: "." or a symlink as typed is not what the rename replaces.
       target is a directory when it exists: evs__bk_dir_empty refused anything else */
    int existed = stat(target, &dst) == 0;
    if (existed) {
        struct stat pst;
        if (stat(parent, &pst) == 0 && pst.st_dev != dst.st_dev) {
            rc = evs__err(EVS_EINVAL, "restore: %s is a mount point; the store is renamed into place from a "
                          "directory beside it, so restore into a new directory below it", dir);
            goto cleanup;
        }
    }
    remove_stale(parent, base);
    if ((rc = make_sibling(parent, base, tmp, sizeof tmp, &mark_fd))) goto cleanup;
    made = 1;
    crash_point(1);
    r.backup_head = m.head;
    evs_lsn cut;
    if ((rc = find_cut(backup, &m, o, &cut, &r.head))) goto cleanup;
    int cutting = cut != m.end;

    for (size_t i = 0; i < m.files.n; i++) {
        const evs__bk_file *f = &m.files.v[i];
        evs__bk_file got;
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
        rc = evs__bk_copy_into(src, tmp, f->path, limit, f, &got, NULL, NULL);
        free(got.crc);
        if (rc) goto cleanup;
    }
    char ld[BK_PATH + 8];
    snprintf(ld, sizeof ld, "%s/log", tmp);
    /* no sync here: until the rename the sibling is hidden and a crash discards it; the sync
       before the rename makes all of it durable */
    if ((rc = evs__bk_mkdir_p1(ld))) goto cleanup;
    crash_point(2);

    /* open it: recovery checks the log against the index (or rebuilds the index of a cut log) */
    if ((rc = evs_store_create(&s)) || (rc = evs_store_open(s, tmp, 0))) goto cleanup;
    if (evs_head(s) != r.head) {
        rc = evs__err(EVS_ECORRUPT, "restore: the restored store's head is %" PRIu64 ", expected %" PRIu64,
                      evs_head(s), r.head);
        goto cleanup;
    }
    char cd[BK_PATH + 16];
    struct stat st;
    snprintf(cd, sizeof cd, "%s/consumers", tmp);
    if (cutting && stat(cd, &st) == 0 && (rc = trim_consumers(s, &r))) goto cleanup;
    rc = evs_store_close(s);
    s = NULL;
    if (rc) goto cleanup;
    size_t nkeys = 0;
    if (o->keys_from && (rc = evs_subject_keys_copy(o->keys_from, tmp, &nkeys))) {
        /* tmp is there (ours), so EVS_ENOTFOUND is "keys_from has no key store" as it is now: no keys */
        if (rc != EVS_ENOTFOUND) goto cleanup;
        evs__err_clear();
        rc = EVS_OK;
        nkeys = 0;
    }
    r.key_files = nkeys;
    r.dropped_events = r.backup_head - r.head;

    /* durable, then into place: DIR is as it was (absent or empty) or complete */
    if (existed && chmod(tmp, dst.st_mode & 07777)) {
        rc = evs__err_errno(-errno, "restore: cannot set the mode of %s", tmp);
        goto cleanup;
    }
    if ((rc = evs__bk_sync_dest(tmp)) || (rc = evs__bk_fsync_dir(ld)) || (rc = evs__bk_fsync_dir(tmp))) goto cleanup;
    crash_point(3);
    if (rename(tmp, target)) {
        rc = errno == ENOTEMPTY || errno == EEXIST
                 ? evs__err(EVS_EINVAL, "restore: %s is not empty (written to while the restore ran); restore "
                            "never writes over a store", dir)
                 : evs__err_errno(-errno, "restore: cannot rename %s to %s", tmp, target);
        goto cleanup;
    }
    made = 0;
    if ((rc = evs__bk_fsync_dir(parent))) goto cleanup;
    crash_point(4);
    /* the marker goes last: removed before the rename, a crash in between would leave a sibling no
       rerun may remove; left in the complete store by a crash here, it is a file nothing reads
       (and a backup skips, as every name starting with a dot) */
    snprintf(mark, sizeof mark, "%s/" RESTORE_MARKER, target);
    if (unlink(mark) == 0) rc = evs__bk_fsync_dir(target);
cleanup:
    if (s) evs_store_close(s);
    if (made) { /* DIR was never touched */
        int keep = rc;
        evs__bk_rm_contents(tmp);
        rmdir(tmp);
        rc = keep;
    }
    if (mark_fd >= 0) close(mark_fd);
    evs__bk_list_free(&m.files);
    if (rep) *rep = r;
    return rc;
}
