/*
 * scavenge.c — gives back the log space of events that stream metadata
 * hides (evs_scavenge in include/evstore.h), one sealed segment at a time,
 * while the store takes appends and reads.
 *
 * It sits in the store layer, next to meta.c (which says what is hidden)
 * and on top of the log's segment versions (SCAVENGE in src/log/log.c,
 * which keep readers that took their index snapshot before a swap on the
 * bytes they started with).
 *
 * ONE SEGMENT, IN ORDER (the step numbers are the crash points of the
 * EVS_SCAVENGE_CRASH_AT test hook; each is an _exit right after the step):
 *   plan   walk the segment's frames; a record is removed when every event
 *          in it is hidden (evs_event_visible) and its stream's name does
 *          not start with '$'; each run of removed records becomes one
 *          SCAVENGED frame (flags LOST|SCAVENGED, a LOST payload naming the
 *          streams and stream positions it keeps taken).  Nothing removed:
 *          the segment is left alone.
 *   1.     write the new segment to log/NNNNNNNN.seg.scav and fsync it;
 *   2.     write DIR/scavenge.json {"segment": N, "version": V} (temp name,
 *          fsync, rename, fsync DIR): V is the new segment's header version;
 *   3.     rename the new file over log/NNNNNNNN.seg, fsync log/;
 *   4.     in the writer's place (evs__store_exclusive: no group commit
 *          runs), one index transaction moves the entries of moved records
 *          to their new locations, deletes every entry of removed events,
 *          and points their stream positions at the SCAVENGED frame (as
 *          for a LOST frame); commit and publishing the new segment version
 *          happen together under the log's `pub` lock;
 *   5.     sync the index;
 *   6.     remove scavenge.json, fsync DIR.
 *
 * RECOVERY at open (evs__scavenge_recover, before the log is opened), from
 * what is on disk alone:
 *   - no scavenge.json: a leftover .seg.scav is from before step 2: removed;
 *   - scavenge.json and segment N's header version is not V (before step
 *     3): the .seg.scav is removed, then scavenge.json: rolled back, the
 *     index never saw the new segment;
 *   - scavenge.json and version V (step 3 done): the index may or may not
 *     hold step 4 (it is synced only at step 5), so it is emptied and the
 *     store rebuilds it from the log; then scavenge.json goes.  Rolled
 *     forward.  A rebuild gives the same index step 4 gives, apart from
 *     the stream records of streams whose first record was scavenged
 *     (their creation time and type are then the SCAVENGED frame's).
 * Either way every event readable before is readable after, at the same
 * positions with the same bytes.
 *
 * Which segments: those below the segment of the synced point recorded in
 * the last indexed frame.  Open verifies the log from that point (log.c,
 * RECOVERY): the frames it starts from must never move.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"
#include "log/record.h"
#include "store/store_internal.h"

#define MARKER "scavenge.json"

/* One frame of the segment, as planned. */
typedef struct item {
    evs_frame f;              /* the old frame (kept or removed) */
    int removed;
    evs_lsn synced_to;
    evs_lsn new_at;           /* kept: its new location */
} item;

/* A run of removed records: one SCAVENGED frame. */
typedef struct run {
    size_t first_item, n_items;
    uint64_t first_gpos;
    uint32_t count;
    uint8_t *payload;
    size_t plen;
    evs_lsn new_at;
} run;

typedef struct scav {
    evs_store *s;
    const evs_scavenge_options *opt;
    evs_scavenge_progress *p;
    int crash_at;
    int64_t t0;
    uint64_t paced;           /* bytes counted against the rate */
    int64_t now;              /* the time recorded in SCAVENGED frames */
    /* the segment in progress */
    uint32_t no;
    item *items;
    size_t nitems, capitems;
    run *runs;
    size_t nruns, capruns;
    evs_log_segw *w;
    char err[512];            /* the exclusive step's error (it may run on another thread) */
    int err_rc;
} scav;

static void crash_point(const scav *c, int step) {
    if (c->crash_at == step) _exit(86);
}

static int cancelled(const scav *c) { return c->opt->cancel && __atomic_load_n(c->opt->cancel, __ATOMIC_RELAXED); }

/* Rate limit: sleep until `bytes` more fit the budget since the start. */
static void pace(scav *c, uint64_t bytes) {
    c->paced += bytes;
    uint64_t rate = c->opt->rate_bytes_per_sec;
    if (!rate) return;
    int64_t due = c->t0 + (int64_t)((double)c->paced * 1e9 / (double)rate);
    int64_t now = evs__mono_ns();
    if (due > now) {
        int64_t d = due - now;
        struct timespec ts = {(time_t)(d / 1000000000), (long)(d % 1000000000)};
        nanosleep(&ts, NULL);
    }
}

/* ------------------------------------------------------------ plan */

static int plan_frame(void *arg, const evs_frame *f) {
    scav *c = arg;
    if (c->nitems == c->capitems) {
        size_t cap = c->capitems ? c->capitems * 2 : 256;
        item *ni = realloc(c->items, cap * sizeof *ni);
        if (!ni) return evs__err(EVS_ENOMEM, "scavenge: out of memory planning segment %08u.seg", c->no);
        c->items = ni;
        c->capitems = cap;
    }
    item *it = &c->items[c->nitems++];
    memset(it, 0, sizeof *it);
    it->f = *f;
    it->synced_to = evs__log_frame_synced_to(f);
    pace(c, evs__log_frame_size(f->len));
    if (f->flags) return EVS_OK; /* LOST and SCAVENGED frames stay as they are */
    const char *stream;
    size_t slen;
    if (evs__record_stream(f->payload, f->len, &stream, &slen)) return EVS_OK;
    if (slen && stream[0] == '$') return EVS_OK;
    size_t off = evs__record_first_event(f->payload, f->len);
    for (uint32_t i = 0; i < f->count; i++) {
        evs_event ev;
        size_t nx = off ? evs__record_decode(f->payload, f->len, off, f->first_gpos, i, &ev) : 0;
        if (!nx || evs_event_visible(c->s, &ev)) return EVS_OK;
        off = nx;
    }
    it->removed = 1;
    return EVS_OK;
}

/* The SCAVENGED payload of items [a, b): one entry per stream stretch. */
static int run_payload(scav *c, run *r) {
    evs_lost_stream *e = calloc(r->n_items, sizeof *e);
    size_t n = 0;
    if (!e) return evs__err(EVS_ENOMEM, "scavenge: out of memory");
    for (size_t i = r->first_item; i < r->first_item + r->n_items; i++) {
        const evs_frame *f = &c->items[i].f;
        const char *stream;
        size_t slen;
        (void)evs__record_stream(f->payload, f->len, &stream, &slen);
        uint64_t sp = evs__record_first_stream_pos(f->payload);
        if (n && e[n - 1].stream_len == slen && !memcmp(e[n - 1].stream, stream, slen) &&
            e[n - 1].first + e[n - 1].count == sp) {
            e[n - 1].count += f->count;
            continue;
        }
        e[n++] = (evs_lost_stream){.stream = stream, .stream_len = slen, .first = sp, .count = f->count};
    }
    r->plen = evs__lost_size(e, n);
    r->payload = calloc(1, r->plen);
    if (!r->payload) {
        free(e);
        return evs__err(EVS_ENOMEM, "scavenge: out of memory");
    }
    evs__lost_encode(r->payload, c->now, e, n);
    free(e);
    return EVS_OK;
}

static void segment_free(scav *c) {
    for (size_t i = 0; i < c->nruns; i++) free(c->runs[i].payload);
    c->nruns = 0;
    c->nitems = 0;
    evs__log_segw_abort(c->w);
    c->w = NULL;
}

/* Group removed items into runs; the new segment's size into *size. */
static int plan_runs(scav *c, uint64_t *size) {
    uint64_t total = evs__log_header_size();
    for (size_t i = 0; i < c->nitems;) {
        if (!c->items[i].removed) {
            total += evs__log_frame_size(c->items[i].f.len);
            i++;
            continue;
        }
        if (c->nruns == c->capruns) {
            size_t cap = c->capruns ? c->capruns * 2 : 16;
            run *nr = realloc(c->runs, cap * sizeof *nr);
            if (!nr) return evs__err(EVS_ENOMEM, "scavenge: out of memory");
            c->runs = nr;
            c->capruns = cap;
        }
        run *r = &c->runs[c->nruns];
        memset(r, 0, sizeof *r);
        r->first_item = i;
        r->first_gpos = c->items[i].f.first_gpos;
        uint64_t count = 0;
        while (i < c->nitems && c->items[i].removed && count + c->items[i].f.count <= UINT32_MAX) {
            count += c->items[i].f.count;
            r->n_items++;
            i++;
        }
        r->count = (uint32_t)count;
        c->nruns++;
        int rc = run_payload(c, r);
        if (rc) return rc;
        total += evs__log_frame_size((uint32_t)r->plen);
    }
    *size = total;
    return EVS_OK;
}

/* ------------------------------------------------------------ marker */

static int marker_path(const evs_store *s, char *b, size_t n, const char *suffix) {
    int k = snprintf(b, n, "%s/" MARKER "%s", s->dir, suffix);
    return k < 0 || (size_t)k >= n ? evs__err(EVS_EINVAL, "scavenge: store path too long") : EVS_OK;
}

static int fsync_path(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return evs__err_errno(-errno, "scavenge: open %s", path);
    int rc = fsync(fd) ? evs__err_errno(-errno, "scavenge: fsync %s", path) : EVS_OK;
    close(fd);
    return rc;
}

static int marker_write(const evs_store *s, uint32_t no, uint32_t ver) {
    char tmp[4096], path[4096], b[128];
    int rc;
    if ((rc = marker_path(s, tmp, sizeof tmp, ".tmp")) || (rc = marker_path(s, path, sizeof path, ""))) return rc;
    int n = snprintf(b, sizeof b, "{\"segment\": %u, \"version\": %u}\n", no, ver);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return evs__err_errno(-errno, "scavenge: creating %s", tmp);
    if (write(fd, b, (size_t)n) != n || fsync(fd)) {
        rc = evs__err_errno(-errno, "scavenge: writing %s", tmp);
        close(fd);
        unlink(tmp);
        return rc;
    }
    close(fd);
    if (rename(tmp, path)) return evs__err_errno(-errno, "scavenge: renaming %s", tmp);
    return fsync_path(s->dir);
}

static int marker_remove(const evs_store *s) {
    char path[4096];
    int rc = marker_path(s, path, sizeof path, "");
    if (rc) return rc;
    if (unlink(path) && errno != ENOENT) return evs__err_errno(-errno, "scavenge: removing %s", path);
    return fsync_path(s->dir);
}

/* Header version of DIR/log/NNNNNNNN.seg (bytes 48..51), or -1 when unreadable. */
static int64_t segment_version(const char *dir, uint32_t no) {
    char path[4096];
    uint8_t h[64];
    snprintf(path, sizeof path, "%s/log/%08u.seg", dir, no);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    ssize_t r = pread(fd, h, sizeof h, 0);
    close(fd);
    if (r != (ssize_t)sizeof h || memcmp(h, "EVSLOG01", 8) || evs__crc32c(0, h, 60) != evs__get32(h + 60)) return -1;
    return evs__get32(h + 48);
}

int evs__scavenge_recover(evs_store *s, int *rebuild) {
    char path[4096], b[256];
    *rebuild = 0;
    int rc = marker_path(s, path, sizeof path, "");
    if (rc) return rc;
    FILE *fp = fopen(path, "r");
    unsigned no = 0, ver = 0;
    int have = 0;
    if (fp) {
        size_t n = fread(b, 1, sizeof b - 1, fp);
        fclose(fp);
        b[n] = 0;
        have = sscanf(b, " {\"segment\": %u, \"version\": %u}", &no, &ver) == 2 && no > 0;
        if (!have)
            return evs__err(EVS_ECORRUPT, "store %s: %s is not a scavenge marker (%.60s); remove it by hand if "
                            "no scavenge ran", s->dir, path, b);
    } else if (errno != ENOENT) {
        return evs__err_errno(-errno, "scavenge: reading %s", path);
    }
    /* a .seg.scav without a marker (step 1) or beside one rolled back */
    if (have && segment_version(s->dir, no) == (int64_t)ver) {
        /* rolled forward: the index may not hold step 4 */
        if ((rc = evs__index_clear(&s->ix))) return rc;
        mdb_env_sync(s->ix.env, 1);
        *rebuild = 1;
    }
    char logdir[4096];
    snprintf(logdir, sizeof logdir, "%s/log", s->dir);
    DIR *d = opendir(logdir);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            size_t l = strlen(de->d_name);
            if (l == 17 && !strcmp(de->d_name + 8, ".seg.scav")) unlinkat(dirfd(d), de->d_name, 0);
        }
        closedir(d);
        fsync_path(logdir);
    }
    if (have && (rc = marker_remove(s))) return rc;
    return EVS_OK;
}

/* ------------------------------------------------------------ index */

typedef struct sid_cache {
    char name[EVS_MAX_STREAM_NAME + 1];
    size_t len;
    uint64_t id;
} sid_cache;

static int stream_id(evs_store *s, MDB_txn *txn, sid_cache *sc, const char *name, size_t len, uint64_t *id) {
    *id = 0; /* written first: GCC -O3 cannot tell that evs__err() returns non-zero */
    if (sc->len == len && !memcmp(sc->name, name, len)) {
        *id = sc->id;
        return EVS_OK;
    }
    evs_ix_stream st;
    int rc = evs__index_stream_get(&s->ix, txn, name, len, &st);
    if (rc == EVS_ENOTFOUND) return evs__err(EVS_EINDEX, "scavenge: stream \"%.*s\" is not in the index", (int)len, name);
    if (rc) return rc;
    memcpy(sc->name, name, len);
    sc->len = len;
    sc->id = *id = st.id;
    return EVS_OK;
}

static int put(MDB_txn *txn, MDB_dbi dbi, const void *k, size_t kn, const void *v, size_t vn, const char *what) {
    MDB_val key = {kn, (void *)k}, val = {vn, (void *)v};
    int rc = mdb_put(txn, dbi, &key, &val, 0);
    return rc ? evs__index_err(rc, what) : EVS_OK;
}

/* Delete (k) or, for a dup database, (k, v); an entry already gone is fine. */
static int del(MDB_txn *txn, MDB_dbi dbi, const void *k, size_t kn, const void *v, size_t vn, const char *what) {
    MDB_val key = {kn, (void *)k}, val = {vn, (void *)v};
    int rc = mdb_del(txn, dbi, &key, v ? &val : NULL);
    return rc && rc != MDB_NOTFOUND ? evs__index_err(rc, what) : EVS_OK;
}

static int sev_put(evs_store *s, MDB_txn *txn, uint64_t sid, uint64_t spos, evs_lsn lsn, uint32_t idx) {
    uint8_t kb[16], vb[12];
    evs__put64be(kb, sid);
    evs__put64be(kb + 8, spos);
    evs__put64(vb, lsn);
    evs__put32(vb + 8, idx);
    return put(txn, s->ix.stream_ev, kb, 16, vb, 12, "scavenge: stream entry");
}

static int rec_put(evs_store *s, MDB_txn *txn, uint64_t first, evs_lsn lsn, uint32_t count) {
    uint8_t kb[8], vb[12];
    evs__put64be(kb, first);
    evs__put64(vb, lsn);
    evs__put32(vb + 8, count);
    return put(txn, s->ix.records, kb, 8, vb, 12, "scavenge: record entry");
}

typedef struct tag_del {
    MDB_txn *txn;
    MDB_dbi dbi;
    uint8_t *gbe;
    int rc;
} tag_del;

static int del_tag(void *arg, const char *tag, size_t n) {
    tag_del *t = arg;
    t->rc = del(t->txn, t->dbi, tag, n, t->gbe, 8, "scavenge: tag entry");
    return t->rc ? 1 : 0;
}

/* A kept frame moved: its record entry and its stream entries follow it. */
static int index_moved(scav *c, MDB_txn *txn, sid_cache *sc, const item *it) {
    evs_store *s = c->s;
    const evs_frame *f = &it->f;
    int rc;
    if ((rc = rec_put(s, txn, f->first_gpos, it->new_at, f->count))) return rc;
    uint64_t sid;
    if (f->flags & EVS_FRAME_LOST) {
        evs_lost_iter li = {0, 0};
        evs_lost_stream e;
        while ((rc = evs__lost_next(f->payload, f->len, &li, &e, NULL)) == EVS_OK) {
            if ((rc = stream_id(s, txn, sc, e.stream, e.stream_len, &sid))) return rc;
            for (uint32_t i = 0; i < e.count; i++)
                if ((rc = sev_put(s, txn, sid, e.first + i, it->new_at, EVS_IX_LOST))) return rc;
        }
        return rc == EVS_DONE ? EVS_OK : evs__err(EVS_ECORRUPT, "scavenge: malformed lost-record at %llu",
                                                  (unsigned long long)f->first_gpos);
    }
    const char *stream;
    size_t slen;
    if ((rc = evs__record_stream(f->payload, f->len, &stream, &slen))) return rc;
    if ((rc = stream_id(s, txn, sc, stream, slen, &sid))) return rc;
    uint64_t sp = evs__record_first_stream_pos(f->payload);
    for (uint32_t i = 0; i < f->count; i++)
        if ((rc = sev_put(s, txn, sid, sp + i, it->new_at, i))) return rc;
    return EVS_OK;
}

/* A removed record: every entry of its events goes; its stream positions point at the run's frame. */
static int index_removed(scav *c, MDB_txn *txn, sid_cache *sc, const item *it, evs_lsn run_at) {
    evs_store *s = c->s;
    const evs_frame *f = &it->f;
    uint8_t kb[16], gbe[8];
    int rc;
    evs__put64be(kb, f->first_gpos);
    if ((rc = del(txn, s->ix.records, kb, 8, NULL, 0, "scavenge: record entry"))) return rc;
    int64_t rec_at = evs__record_recorded_at(f->payload);
    evs__put64be(kb, (uint64_t)(rec_at < 0 ? 0 : rec_at));
    evs__put64be(kb + 8, f->first_gpos);
    if ((rc = del(txn, s->ix.times, kb, 16, NULL, 0, "scavenge: time entry"))) return rc;
    const char *stream;
    size_t slen;
    uint64_t sid;
    if ((rc = evs__record_stream(f->payload, f->len, &stream, &slen))) return rc;
    if ((rc = stream_id(s, txn, sc, stream, slen, &sid))) return rc;
    size_t off = evs__record_first_event(f->payload, f->len);
    for (uint32_t i = 0; i < f->count; i++) {
        evs_event ev;
        size_t nx = off ? evs__record_decode(f->payload, f->len, off, f->first_gpos, i, &ev) : 0;
        if (!nx) return evs__err(EVS_ECORRUPT, "scavenge: record at %llu: event %u is malformed",
                                 (unsigned long long)f->first_gpos, i + 1);
        evs__put64be(gbe, ev.global_position);
        if ((rc = del(txn, s->ix.event_ids, ev.event_id.b, 16, NULL, 0, "scavenge: event id")) ||
            (rc = del(txn, s->ix.types, ev.event_type, ev.event_type_len, gbe, 8, "scavenge: type entry")) ||
            (rc = del(txn, s->ix.stypes, ev.stream_type, ev.stream_type_len, gbe, 8, "scavenge: stream type entry")))
            return rc;
        if (ev.has_correlation_id &&
            (rc = del(txn, s->ix.corr, ev.correlation_id.b, 16, gbe, 8, "scavenge: correlation entry")))
            return rc;
        if (ev.tags_len && s->ix.tags) {
            tag_del t = {txn, s->ix.tags, gbe, 0};
            (void)evs__index_each_tag(ev.tags, ev.tags_len, del_tag, &t);
            if (t.rc) return t.rc;
        }
        if ((rc = sev_put(s, txn, sid, ev.stream_position, run_at, EVS_IX_LOST))) return rc;
        off = nx;
    }
    return EVS_OK;
}

static int index_apply(scav *c, MDB_txn *txn) {
    sid_cache sc;
    memset(&sc, 0, sizeof sc);
    int rc;
    size_t r = 0;
    for (size_t i = 0; i < c->nitems; i++) {
        const item *it = &c->items[i];
        if (!it->removed) {
            if (it->new_at != it->f.at && (rc = index_moved(c, txn, &sc, it))) return rc;
            continue;
        }
        while (r < c->nruns && c->runs[r].first_item + c->runs[r].n_items <= i) r++;
        if ((rc = index_removed(c, txn, &sc, it, c->runs[r].new_at))) return rc;
    }
    for (size_t k = 0; k < c->nruns; k++) {
        const run *ru = &c->runs[k];
        uint8_t kb[8], vb[16];
        if ((rc = rec_put(c->s, txn, ru->first_gpos, ru->new_at, ru->count))) return rc;
        evs__put64be(kb, ru->first_gpos);
        evs__put64(vb, ru->count);
        evs__put64(vb + 8, (uint64_t)c->now);
        if ((rc = put(txn, c->s->ix.lost, kb, 8, vb, 16, "scavenge: lost entry"))) return rc;
    }
    return EVS_OK;
}

/* Step 4, run in the writer's place (evs__store_exclusive). */
static int commit_step(void *arg) {
    scav *c = arg;
    evs_store *s = c->s;
    int rc = EVS_OK;
    if (atomic_load(&s->failed)) {
        rc = evs__err(EVS_EFAILED, "scavenge: the store refuses writes after an earlier failure");
        goto out;
    }
    if (!evs__log_gen_room(s->log)) {
        rc = EVS_DONE; /* a reader from long ago holds the pin slot: try again later */
        goto out;
    }
    for (int attempt = 0;; attempt++) {
        if ((rc = evs__index_room(&s->ix, EVS_IX_MAP_MIN / 2))) goto out;
        evs__index_was_full();
        MDB_txn *txn;
        int mrc = mdb_txn_begin(s->ix.env, NULL, 0, &txn);
        if (mrc) {
            rc = evs__index_err(mrc, "scavenge: begin");
            goto out;
        }
        rc = index_apply(c, txn);
        if (rc) {
            mdb_txn_abort(txn);
            if (evs__index_was_full() && attempt < 4 && evs__index_grow(&s->ix) == EVS_OK) continue;
            goto out;
        }
        evs__log_pub_wlock(s->log);
        mrc = mdb_txn_commit(txn);
        if (!mrc) evs__log_segw_publish(c->w);
        evs__log_pub_wunlock(s->log);
        if (mrc) {
            rc = evs__index_err(mrc, "scavenge: commit");
            if (evs__index_was_full() && attempt < 4 && evs__index_grow(&s->ix) == EVS_OK) continue;
            goto out;
        }
        break;
    }
    crash_point(c, 4);
out:
    c->err_rc = rc;
    if (rc && rc != EVS_DONE) snprintf(c->err, sizeof c->err, "%s", evs_errmsg());
    return rc;
}

/* ------------------------------------------------------------ one segment */

static int scavenge_segment(scav *c, uint32_t no) {
    evs_store *s = c->s;
    int rc, swap_lock = -1;
    c->no = no;
    uint64_t old_size = evs__log_segment_size(s->log, no);
    if ((rc = evs__log_seg_frames(s->log, no, plan_frame, c))) goto out;
    c->p->bytes_examined += old_size;
    uint64_t size = 0;
    if ((rc = plan_runs(c, &size))) goto out;
    if (!c->nruns || size >= old_size) goto out; /* nothing to give back */
    uint64_t removed_events = 0, removed_records = 0;
    for (size_t i = 0; i < c->nitems; i++)
        if (c->items[i].removed) removed_events += c->items[i].f.count, removed_records++;
    if (c->p->dry_run) {
        c->p->segments_rewritten++;
        c->p->bytes_reclaimed += old_size - size;
        c->p->records_removed += removed_records;
        c->p->events_removed += removed_events;
        goto out;
    }
    /* 1. the new segment */
    if ((rc = evs__log_segw_begin(s->log, no, size, &c->w))) goto out;
    size_t r = 0;
    for (size_t i = 0; i < c->nitems;) {
        item *it = &c->items[i];
        if (!it->removed) {
            if ((rc = evs__log_segw_frame(c->w, it->f.payload, it->f.len, it->f.first_gpos, it->f.count, it->f.flags,
                                          it->synced_to, &it->new_at)))
                goto out;
            pace(c, evs__log_frame_size(it->f.len));
            i++;
            continue;
        }
        run *ru = &c->runs[r++];
        if ((rc = evs__log_segw_frame(c->w, ru->payload, (uint32_t)ru->plen, ru->first_gpos, ru->count,
                                      EVS_FRAME_LOST | EVS_FRAME_SCAVENGED, 0, &ru->new_at)))
            goto out;
        pace(c, evs__log_frame_size((uint32_t)ru->plen));
        i += ru->n_items;
    }
    if ((rc = evs__log_segw_finish(c->w))) goto out;
    crash_point(c, 1);
    /* 2. the marker */
    if ((rc = marker_write(s, no, evs__log_segw_version(c->w)))) goto out;
    crash_point(c, 2);
    /* 3. swap the file, with no backup between its index snapshot and its copy of the log
       (src/backup/backup.c takes the same lock shared) */
    char logdir[4200];
    snprintf(logdir, sizeof logdir, "%s/log", s->dir);
    swap_lock = open(logdir, O_RDONLY | O_DIRECTORY);
    if (swap_lock < 0 || flock(swap_lock, LOCK_EX)) {
        rc = evs__err_errno(-errno, "scavenge: cannot lock %s against a backup", logdir);
        goto out;
    }
    if ((rc = evs__log_segw_install(c->w))) goto out; /* the marker stays: open finishes the job */
    crash_point(c, 3);
    /* 4. the index and the readers, in the writer's place */
    for (;;) {
        rc = evs__store_exclusive(s, commit_step, c);
        if (rc != EVS_DONE) break;
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    if (rc) {
        if (c->err_rc) rc = evs__err(rc, "%s (segment %08u.seg is swapped on disk: the next open rebuilds the index)",
                                     c->err, no);
        goto out;
    }
    close(swap_lock);
    swap_lock = -1;
    /* 5. the index made durable, 6. the marker goes */
    if ((rc = mdb_env_sync(s->ix.env, 1))) {
        rc = evs__index_err(rc, "scavenge: sync the index");
        goto out;
    }
    crash_point(c, 5);
    if ((rc = marker_remove(s))) goto out;
    crash_point(c, 6);
    c->p->segments_rewritten++;
    c->p->bytes_reclaimed += old_size - size;
    c->p->records_removed += removed_records;
    c->p->events_removed += removed_events;
    evs__log_reap(s->log);
out:
    if (swap_lock >= 0) close(swap_lock);
    segment_free(c);
    return rc;
}

/* ------------------------------------------------------------ API */

static void stats_note(evs_store *s, const evs_scavenge_progress *p, int running) {
    pthread_mutex_lock(&s->scav_mu);
    s->scav_stats.running = running;
    s->scav_stats.last = *p;
    pthread_mutex_unlock(&s->scav_mu);
}

/* The first segment scavenge must leave alone: see "Which segments" above. */
static int first_unsafe_segment(evs_store *s, uint32_t *out) {
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = evs__index_rbegin(&s->ix, &txn);
    if (rc) return rc;
    evs_lsn ck = 0, last = 0;
    uint64_t next = 1;
    if (evs__index_checkpoint_get(&s->ix, txn, &ck, &next)) ck = 0;
    if (!(rc = mdb_cursor_open(txn, s->ix.records, &cur))) {
        if (!mdb_cursor_get(cur, &k, &v, MDB_LAST) && v.mv_size == 12) last = evs__get64(v.mv_data);
        mdb_cursor_close(cur);
    }
    evs__index_rend(&s->ix, txn);
    if (rc) return evs__index_err(rc, "scavenge: records cursor");
    *out = 1;
    if (!ck || !last) return EVS_OK;
    evs_frame f;
    if ((rc = evs__log_read(s->log, last, atomic_load(&s->pub_end), &f))) return rc == EVS_DONE ? EVS_OK : rc;
    evs_lsn synced = evs__log_frame_synced_to(&f);
    uint32_t lim = EVS_LSN_SEG(synced) < EVS_LSN_SEG(ck) ? EVS_LSN_SEG(synced) : EVS_LSN_SEG(ck);
    *out = lim ? lim : 1;
    return EVS_OK;
}

int evs_scavenge(evs_store *s, const evs_scavenge_options *opt, evs_scavenge_progress *out) {
    evs_scavenge_options none;
    evs_scavenge_progress p;
    memset(&p, 0, sizeof p);
    if (s && s->engine) return evs__engine_unsupported(s->engine, "scavenge"); /* the log is the embedded engine's */
    if (!s || !s->dir || !s->log) return evs__err(EVS_ECLOSED, "scavenge: the store is not open");
    if (s->readonly) return evs__err(EVS_ECLOSED, "scavenge: the store is open read-only");
    if (!opt) {
        memset(&none, 0, sizeof none);
        opt = &none;
    }
    if (opt->flags & ~EVS_SCAVENGE_DRY_RUN) return evs__err(EVS_EINVAL, "scavenge: unknown flags 0x%x", opt->flags);
    int expected = 0;
    if (!atomic_compare_exchange_strong(&s->scav_running, &expected, 1))
        return evs__err(EVS_ELOCKED, "scavenge: another scavenge of %s is running", s->dir);
    scav c;
    memset(&c, 0, sizeof c);
    c.s = s;
    c.opt = opt;
    c.p = &p;
    c.t0 = evs__mono_ns();
    c.now = evs_now_ns();
    const char *ca = getenv("EVS_SCAVENGE_CRASH_AT"); /* test hook: crash tests (tests/crash) */
    c.crash_at = ca ? atoi(ca) : 0;
    p.dry_run = (opt->flags & EVS_SCAVENGE_DRY_RUN) != 0;
    uint32_t lim = 1;
    int rc = first_unsafe_segment(s, &lim);
    if (!rc) {
        p.segments_total = lim - 1;
        stats_note(s, &p, 1);
        for (uint32_t no = 1; no < lim; no++) {
            if (cancelled(&c)) {
                p.cancelled = 1;
                break;
            }
            if ((rc = scavenge_segment(&c, no))) break;
            p.segments_done++;
            stats_note(s, &p, 1);
            if (opt->progress) opt->progress(opt->progress_arg, &p);
        }
    }
    free(c.items);
    free(c.runs);
    pthread_mutex_lock(&s->scav_mu);
    s->scav_stats.running = 0;
    s->scav_stats.last = p;
    s->scav_stats.runs++;
    if (!p.dry_run) {
        s->scav_stats.bytes_reclaimed += p.bytes_reclaimed;
        s->scav_stats.segments_rewritten += p.segments_rewritten;
        s->scav_stats.events_removed += p.events_removed;
    }
    pthread_mutex_unlock(&s->scav_mu);
    atomic_store(&s->scav_running, 0);
    if (out) *out = p;
    return rc;
}

int evs_scavenge_get_stats(evs_store *s, evs_scavenge_stats *out) {
    if (s && s->engine) return evs__engine_unsupported(s->engine, "scavenge");
    if (!s || !out) return evs__err(EVS_EINVAL, "scavenge stats: NULL argument");
    if (!s->dir) return evs__err(EVS_ECLOSED, "scavenge stats: the store is not open");
    pthread_mutex_lock(&s->scav_mu);
    *out = s->scav_stats;
    pthread_mutex_unlock(&s->scav_mu);
    return EVS_OK;
}
