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
#include <sys/stat.h>
#include <unistd.h>

#include "backup/backup_internal.h"
#include "core/core.h"
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

int evs_restore(const char *backup, const char *dir, const evs_restore_opts *o, evs_restore_report *rep) {
    evs_restore_report r;
    evs_restore_opts none;
    evs__bk_manifest m;
    char src[BK_PATH];
    int rc, made = 0;
    evs_store *s = NULL;
    memset(&r, 0, sizeof r);
    memset(&none, 0, sizeof none);
    if (!o) o = &none;
    if (!backup || !dir) return evs__err(EVS_EINVAL, "restore: NULL directory");
    if ((rc = evs__bk_open_backup(backup, &m))) return rc;
    int empty = evs__bk_dir_empty(dir), existed = access(dir, F_OK) == 0;
    if (empty <= 0) {
        evs__bk_list_free(&m.files);
        return empty < 0 ? empty
                         : evs__err(EVS_EINVAL, "restore: %s is not empty; restore creates a new store and never "
                                    "writes over one (choose a new directory)", dir);
    }
    if ((rc = evs__bk_mkdir_all(dir))) {
        evs__err_prefix(rc, "restore: ");
        evs__bk_list_free(&m.files);
        return rc;
    }
    made = 1;
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
        rc = evs__bk_copy_into(src, dir, f->path, limit, f, &got, NULL, NULL);
        free(got.crc);
        if (rc) goto cleanup;
    }
    char ld[BK_PATH];
    snprintf(ld, sizeof ld, "%s/log", dir);
    if ((rc = evs__bk_mkdir_p1(ld)) || (rc = evs__bk_sync_dest(dir)) || (rc = evs__bk_fsync_dir(ld)) || (rc = evs__bk_fsync_dir(dir))) goto cleanup;

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
        evs__bk_rm_contents(dir);
        if (!existed) rmdir(dir); /* an empty directory given to us stays */
        rc = keep;
    }
    evs__bk_list_free(&m.files);
    if (rep) *rep = r;
    return rc;
}
