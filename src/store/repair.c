/*
 * repair.c — `evstore repair`: the explicit way out of a damaged log.
 *
 * Open never cuts acknowledged events: when the log does not verify up to
 * the index's head it fails with EVS_ECORRUPT and changes nothing (see
 * store.c).  This module is what a user runs then.  It
 *
 *   1. scans the whole log for damaged stretches (evs__log_damage_scan);
 *   2. works out which global positions each stretch held: up to the next
 *      valid record, or for the damaged tail, up to the floor (the index's
 *      head, or the one an interrupted repair wrote down);
 *   3. names every event it will remove, from the index when it can be
 *      trusted (stream, stream position, event id), else by position;
 *   4. unless it is a dry run: writes REPAIRING (the floor), overwrites
 *      each damaged stretch in place with LOST frames (record.h) that keep
 *      those global and stream positions taken, zeroes the damaged tail and
 *      appends LOST frames for acknowledged positions it held, syncs, then
 *      rebuilds the index from the log and removes REPAIRING.
 *
 * Positions are never reused: LOST frames occupy them, and the stream
 * versions they record keep every stream above its lost positions.  A crash
 * at any step leaves REPAIRING behind; open refuses the store and the next
 * repair finishes the job from the floor written there.
 *
 * A torn tail past the floor (bytes of an append that was never
 * acknowledged) is cut as recovery would cut it, and is not an event loss.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "log/record.h"
#include "store/store_internal.h"

/* One record the index knew inside a lost range. */
typedef struct lrec {
    uint64_t first;       /* global position */
    uint32_t count;
    evs_lsn lsn;
    uint64_t sid, spos;   /* stream id and first stream position (sid 0: unknown) */
    const char *name;     /* points into names[] */
    size_t nlen;
} lrec;

/* One lost global position, for the listing. */
typedef struct lpos {
    uint64_t gpos;
    evs_uuid id;
    int have_id;
} lpos;

typedef struct sname {
    uint64_t sid;
    char *name;
    size_t len;
} sname;

/* A damaged stretch that valid records follow, or the tail. */
typedef struct span {
    const evs_log_damage *d;   /* NULL: the log just ends early (no damaged bytes) */
    int tail;
    uint64_t first, end;       /* lost global positions [first, end) */
} span;

typedef struct rp {
    evs_store *s;
    const char *dir;
    int dry;
    int have_index;            /* the index is open and can be trusted */
    evs_log *log;
    evs_log_damage *dmg;
    size_t ndmg;
    span *spans;
    size_t nspans;
    lrec *recs;                /* sorted by position (and so by location) */
    size_t nrecs;
    lpos *pos;                 /* every lost position, sorted */
    size_t npos;
    sname *names;
    size_t nnames;
    evs_lsn log_end;           /* where the valid records end */
    int plan;                  /* fix_middle only checks that every write would be taken, writes nothing */
} rp;

static void rp_free(rp *r) {
    free(r->dmg);
    free(r->spans);
    free(r->recs);
    free(r->pos);
    for (size_t i = 0; i < r->nnames; i++) free(r->names[i].name);
    free(r->names);
}

/* ------------------------------------------------------------ REPAIRING */

static int repairing_path(const char *dir, char *buf, size_t n) {
    int k = snprintf(buf, n, "%s/" EVS_REPAIRING_FILE, dir);
    return k > 0 && (size_t)k < n ? EVS_OK : evs__err(EVS_EINVAL, "repair: path too long");
}

/* The floor an interrupted repair wrote down; 0 when there was none. */
static int repairing_read(const char *dir, uint64_t *floor_next) {
    char path[PATH_MAX], buf[64];
    *floor_next = 0;
    int rc = repairing_path(dir, path, sizeof path);
    if (rc) return rc;
    FILE *f = fopen(path, "r");
    if (!f) return errno == ENOENT ? EVS_OK : evs__err_errno(-errno, "repair: reading %s", path);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    unsigned long long v;
    if (sscanf(buf, "next_global_position %llu", &v) != 1 || v == 0)
        return evs__err(EVS_ECORRUPT, "repair: %s is not a repair record (\"%.40s\")", path, buf);
    *floor_next = v;
    return EVS_OK;
}

static int repairing_write(const char *dir, uint64_t floor_next) {
    char path[PATH_MAX], tmp[PATH_MAX + 8], buf[64];
    int rc = repairing_path(dir, path, sizeof path);
    if (rc) return rc;
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int n = snprintf(buf, sizeof buf, "next_global_position %llu\n", (unsigned long long)floor_next);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return evs__err_errno(-errno, "repair: creating %s", tmp);
    if (write(fd, buf, (size_t)n) != n || fsync(fd) != 0) {
        rc = evs__err_errno(-errno, "repair: writing %s", tmp);
        close(fd);
        unlink(tmp);
        return rc;
    }
    close(fd);
    if (rename(tmp, path) != 0) return evs__err_errno(-errno, "repair: renaming %s", tmp);
    return evs__io_posix()->sync_dir(evs__io_posix()->ctx, dir) ? evs__err(EVS_EIO, "repair: syncing %s", dir)
                                                                 : EVS_OK;
}

static int repairing_remove(const char *dir) {
    char path[PATH_MAX];
    int rc = repairing_path(dir, path, sizeof path);
    if (rc) return rc;
    if (unlink(path) != 0 && errno != ENOENT) return evs__err_errno(-errno, "repair: removing %s", path);
    return evs__io_posix()->sync_dir(evs__io_posix()->ctx, dir) ? evs__err(EVS_EIO, "repair: syncing %s", dir)
                                                                 : EVS_OK;
}

/* ------------------------------------------------------------ what the index knew */

static lrec *rec_by_lsn(rp *r, evs_lsn lsn) {
    size_t lo = 0, hi = r->nrecs;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (r->recs[mid].lsn < lsn) lo = mid + 1;
        else hi = mid;
    }
    return lo < r->nrecs && r->recs[lo].lsn == lsn ? &r->recs[lo] : NULL;
}

static lpos *pos_of(rp *r, uint64_t g) {
    size_t lo = 0, hi = r->npos;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (r->pos[mid].gpos < g) lo = mid + 1;
        else hi = mid;
    }
    return lo < r->npos && r->pos[lo].gpos == g ? &r->pos[lo] : NULL;
}

/*
 * From the index: the records inside lost ranges, their streams and stream
 * positions, and their events' ids.  Full scans of stream_ev and event_ids:
 * a repair is rare and must not miss anything.
 */
static int learn(rp *r) {
    evs_index *ix = &r->s->ix;
    MDB_txn *txn;
    MDB_cursor *c = NULL;
    MDB_val k, v;
    int rc = mdb_txn_begin(ix->env, NULL, MDB_RDONLY, &txn);
    if (rc) return evs__index_err(rc, "begin repair scan");
    size_t cap = 0;
    /* records */
    if ((rc = mdb_cursor_open(txn, ix->records, &c))) goto mdb_fail;
    for (size_t i = 0; i < r->nspans; i++) {
        uint8_t kb[8];
        evs__put64be(kb, r->spans[i].first);
        k.mv_size = 8;
        k.mv_data = kb;
        for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
            uint64_t g = evs__get64be(k.mv_data);
            if (g >= r->spans[i].end) break;
            if (v.mv_size != 12) continue;
            if (r->nrecs == cap) {
                cap = cap ? cap * 2 : 64;
                lrec *n = realloc(r->recs, cap * sizeof *n);
                if (!n) {
                    rc = evs__err(EVS_ENOMEM, "repair: out of memory");
                    goto fail;
                }
                r->recs = n;
            }
            lrec *e = &r->recs[r->nrecs++];
            memset(e, 0, sizeof *e);
            e->first = g;
            e->lsn = evs__get64(v.mv_data);
            e->count = evs__get32((uint8_t *)v.mv_data + 8);
        }
        if (rc && rc != MDB_NOTFOUND) goto mdb_fail;
    }
    mdb_cursor_close(c);
    c = NULL;
    /* positions, with ids from event_ids */
    r->npos = 0;
    size_t total = 0;
    for (size_t i = 0; i < r->nspans; i++) total += (size_t)(r->spans[i].end - r->spans[i].first);
    if (total && !(r->pos = calloc(total, sizeof *r->pos))) {
        rc = evs__err(EVS_ENOMEM, "repair: out of memory for %zu lost positions", total);
        goto fail;
    }
    for (size_t i = 0; i < r->nspans; i++)
        for (uint64_t g = r->spans[i].first; g < r->spans[i].end; g++) r->pos[r->npos++].gpos = g;
    if (r->nrecs == 0) goto done; /* nothing the index knew: no need to scan */
    if ((rc = mdb_cursor_open(txn, ix->event_ids, &c))) goto mdb_fail;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 16 || v.mv_size != 24) continue;
        lpos *p = pos_of(r, evs__get64(v.mv_data));
        if (!p) continue;
        memcpy(p->id.b, k.mv_data, 16);
        p->have_id = 1;
    }
    if (rc != MDB_NOTFOUND) goto mdb_fail;
    mdb_cursor_close(c);
    c = NULL;
    /* streams: which stream and stream positions each lost record held */
    if ((rc = mdb_cursor_open(txn, ix->stream_ev, &c))) goto mdb_fail;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 16 || v.mv_size != 12) continue;
        uint32_t idx = evs__get32((uint8_t *)v.mv_data + 8);
        lrec *e = idx == EVS_IX_LOST ? NULL : rec_by_lsn(r, evs__get64(v.mv_data));
        if (!e || idx >= e->count) continue;
        uint64_t sp = evs__get64be((uint8_t *)k.mv_data + 8) - idx;
        if (!e->sid || sp < e->spos) {
            e->sid = evs__get64be(k.mv_data);
            e->spos = sp;
        }
    }
    if (rc != MDB_NOTFOUND) goto mdb_fail;
    mdb_cursor_close(c);
    c = NULL;
    if ((rc = mdb_cursor_open(txn, ix->streams, &c))) goto mdb_fail;
    cap = 0;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        evs_ix_stream st;
        if (evs__index_stream_decode(&v, &st)) continue;
        int needed = 0;
        for (size_t i = 0; i < r->nrecs && !needed; i++) needed = r->recs[i].sid == st.id;
        if (!needed) continue;
        if (r->nnames == cap) {
            cap = cap ? cap * 2 : 16;
            sname *n = realloc(r->names, cap * sizeof *n);
            if (!n) {
                rc = evs__err(EVS_ENOMEM, "repair: out of memory");
                goto fail;
            }
            r->names = n;
        }
        sname *n = &r->names[r->nnames];
        if (!(n->name = malloc(k.mv_size + 1))) {
            rc = evs__err(EVS_ENOMEM, "repair: out of memory");
            goto fail;
        }
        memcpy(n->name, k.mv_data, k.mv_size);
        n->name[k.mv_size] = 0;
        n->len = k.mv_size;
        n->sid = st.id;
        r->nnames++;
        for (size_t i = 0; i < r->nrecs; i++)
            if (r->recs[i].sid == st.id) {
                r->recs[i].name = n->name;
                r->recs[i].nlen = n->len;
            }
    }
    if (rc != MDB_NOTFOUND) goto mdb_fail;
done:
    rc = EVS_OK;
    goto out;
mdb_fail:
    rc = evs__index_err(rc, "repair scan");
fail:
out:
    if (c) mdb_cursor_close(c);
    mdb_txn_abort(txn);
    return rc;
}

/* The record the index knew at global position g (its first), or NULL. */
static const lrec *rec_at(const rp *r, uint64_t g) {
    for (size_t i = 0; i < r->nrecs; i++)
        if (g >= r->recs[i].first && g < r->recs[i].first + r->recs[i].count) return &r->recs[i];
    return NULL;
}

/* ------------------------------------------------------------ the listing */

static void span_where(const rp *r, const span *sp, char *buf, size_t n) {
    if (sp->d)
        snprintf(buf, n, "segment %08" PRIu32 ".seg offset %" PRIu32 ": %s", EVS_LSN_SEG(sp->d->at),
                 EVS_LSN_OFF(sp->d->at), sp->d->why);
    else
        snprintf(buf, n, "segment %08" PRIu32 ".seg offset %" PRIu32 ": the log ends here, before the index's head",
                 EVS_LSN_SEG(r->log_end), EVS_LSN_OFF(r->log_end));
}

static int list_lost(rp *r, evs_lost_cb cb, void *arg, evs_repair_report *out) {
    for (size_t i = 0; i < r->nspans; i++) {
        const span *sp = &r->spans[i];
        char where[160];
        span_where(r, sp, where, sizeof where);
        for (uint64_t g = sp->first; g < sp->end; g++) {
            evs_lost_event ev;
            memset(&ev, 0, sizeof ev);
            ev.global_position = g;
            snprintf(ev.where, sizeof ev.where, "%s", where);
            const lrec *e = rec_at(r, g);
            const lpos *p = pos_of(r, g);
            if (e && e->name && p && p->have_id) {
                ev.known = 1;
                memcpy(ev.stream, e->name, e->nlen);
                ev.stream_position = e->spos + (g - e->first);
                ev.event_id = p->id;
            } else {
                out->unknown_events++;
            }
            out->lost_events++;
            if (cb && cb(arg, &ev))
                return evs__err(EVS_EINVAL, "repair stopped by the caller at global position %llu; nothing was "
                                "changed", (unsigned long long)g);
        }
    }
    return EVS_OK;
}

/* ------------------------------------------------------------ writing */

/* Stream entries for the known records among global positions [from, to), merged per stream run. */
static size_t entries_for(const rp *r, uint64_t from, uint64_t to, evs_lost_stream *e, size_t max) {
    size_t n = 0;
    for (size_t i = 0; i < r->nrecs; i++) {
        const lrec *x = &r->recs[i];
        if (x->first < from || x->first >= to || !x->name) continue;
        if (n && e[n - 1].stream_len == x->nlen && !memcmp(e[n - 1].stream, x->name, x->nlen) &&
            e[n - 1].first + e[n - 1].count == x->spos) {
            e[n - 1].count += x->count;
            continue;
        }
        if (n == max) break;
        e[n++] = (evs_lost_stream){x->name, x->nlen, x->spos, x->count};
    }
    return n;
}

/* One LOST frame filling exactly [at, at + size), for positions [from, to). */
static int put_lost(rp *r, evs_lsn at, uint64_t size, uint64_t from, uint64_t to, int64_t now) {
    size_t max = r->nrecs ? r->nrecs : 1;
    evs_lost_stream *e = calloc(max, sizeof *e);
    if (!e) return evs__err(EVS_ENOMEM, "repair: out of memory");
    size_t n = entries_for(r, from, to, e, max);
    size_t plen = evs__lost_size(e, n);
    uint8_t *p = calloc(1, plen);
    int rc;
    if (!p) {
        rc = evs__err(EVS_ENOMEM, "repair: out of memory");
    } else if (size < 32 + plen) {
        rc = evs__err(EVS_ELIMIT, "segment %08" PRIu32 ".seg offset %" PRIu32 ": %llu bytes of damage cannot hold the "
                      "record of what they held (%zu bytes)", EVS_LSN_SEG(at), EVS_LSN_OFF(at),
                      (unsigned long long)size, 32 + plen);
    } else if (r->plan) {
        rc = evs__log_repair_frame_fits(r->log, at, size, (uint32_t)(to - from), plen);
    } else {
        evs__lost_encode(p, now, e, n);
        rc = evs__log_repair_frame(r->log, at, size, from, (uint32_t)(to - from), EVS_FRAME_LOST, p, plen);
    }
    free(p);
    free(e);
    return rc;
}

/*
 * A damaged stretch with valid records after it: overwrite it in place.
 * The stretch may run over segment ends; each segment's part ("piece")
 * either holds a LOST frame filling it or is zeroed (a segment's data may
 * end early).  Every piece that starts a segment must hold a frame unless
 * it is empty (the walk never crosses an all-zero segment), and so must a
 * lone piece.  Records the index knew go in the piece of the segment that
 * held them; without the index, the pieces that need a frame share the
 * positions, the first taking all but one for each of the others.
 */
static int fix_middle(rp *r, const span *sp, int64_t now) {
    const evs_log_damage *d = sp->d;
    uint32_t s0 = EVS_LSN_SEG(d->at), s1 = EVS_LSN_SEG(d->resume);
    if (sp->first == sp->end) /* held no position (classify): zeros where zeros belong */
        return r->plan ? EVS_OK : evs__log_repair_zero(r->log, d->at, evs__log_segment_size(r->log, s0));
    size_t np = s1 - s0 + 1;
    typedef struct piece {
        evs_lsn start;
        uint64_t end_off, first; /* first: the first position it holds, 0 if none */
    } piece;
    piece *pc = calloc(np, sizeof *pc);
    if (!pc) return evs__err(EVS_ENOMEM, "repair: out of memory");
    for (size_t i = 0; i < np; i++) {
        uint32_t no = s0 + (uint32_t)i;
        pc[i].start = EVS_LSN(no, no == s0 ? EVS_LSN_OFF(d->at) : 64);
        pc[i].end_off = no == s1 ? EVS_LSN_OFF(d->resume) : evs__log_segment_size(r->log, no);
    }
    int rc = EVS_OK;
    int known = 0;
    for (size_t i = 0; i < r->nrecs; i++) {
        const lrec *x = &r->recs[i];
        if (x->first < sp->first || x->first >= sp->end) continue;
        size_t k = EVS_LSN_SEG(x->lsn) - s0;
        if (EVS_LSN_SEG(x->lsn) < s0 || k >= np || x->lsn < pc[k].start || EVS_LSN_OFF(x->lsn) >= pc[k].end_off) {
            known = 0; /* the index disagrees with the log's layout: do without it */
            for (size_t j = 0; j < np; j++) pc[j].first = 0;
            break;
        }
        if (!pc[k].first) pc[k].first = x->first;
        known = 1;
    }
    /* Pieces that must hold a frame: every non-empty one that starts a
       segment (a segment left all zero ends the log before the records after
       it), and a lone piece (zeros right before the next record in the same
       segment end that segment's data there).  The first piece may end in
       zeros: its segment's data then ends cleanly where the damage began. */
    size_t need = 0;
    for (size_t i = 0; i < np; i++)
        if (pc[i].end_off > EVS_LSN_OFF(pc[i].start) && (i > 0 || np == 1)) need++;
    if (known) {
        /* the first frame starts at the stretch's first position */
        for (size_t i = 0; i < np; i++)
            if (pc[i].first) {
                pc[i].first = sp->first;
                break;
            }
        for (size_t i = 0; i < np && known; i++)
            if (pc[i].end_off > EVS_LSN_OFF(pc[i].start) && (i > 0 || np == 1) && !pc[i].first) known = 0;
        if (!known)
            for (size_t i = 0; i < np; i++) pc[i].first = 0;
    }
    if (!known && need) {
        /* the first piece that must hold a frame takes the stretch's first
           positions, every later one the least it can: one position each */
        uint64_t held = sp->end - sp->first;
        if (need > held) {
            rc = evs__err(EVS_ELIMIT, "segment %08" PRIu32 ".seg offset %" PRIu32 ": the damage runs over %zu "
                          "segments but held only %llu positions, too few to fill each with a lost-record", s0,
                          EVS_LSN_OFF(d->at), np, (unsigned long long)held);
            goto out;
        }
        size_t j = 0;
        for (size_t i = 0; i < np; i++)
            if (pc[i].end_off > EVS_LSN_OFF(pc[i].start) && (i > 0 || np == 1)) {
                pc[i].first = j == 0 ? sp->first : sp->end - (need - j);
                j++;
            }
    } else if (!known) {
        size_t k = np;
        for (size_t i = 0; i < np && k == np; i++)
            if (pc[i].end_off - EVS_LSN_OFF(pc[i].start) >= 64) k = i;
        if (k == np) {
            rc = evs__err(EVS_ELIMIT, "segment %08" PRIu32 ".seg offset %" PRIu32 ": no room to record the lost "
                          "positions %llu..%llu", s0, EVS_LSN_OFF(d->at), (unsigned long long)sp->first,
                          (unsigned long long)(sp->end - 1));
            goto out;
        }
        pc[k].first = sp->first;
    }
    for (size_t i = 0; i < np && !rc; i++) {
        uint64_t size = pc[i].end_off - EVS_LSN_OFF(pc[i].start);
        if (!size) continue;
        if (!pc[i].first) {
            if (!r->plan) rc = evs__log_repair_zero(r->log, pc[i].start, pc[i].end_off);
            continue;
        }
        uint64_t to = sp->end;
        for (size_t j = i + 1; j < np; j++)
            if (pc[j].first) {
                to = pc[j].first;
                break;
            }
        rc = put_lost(r, pc[i].start, size, pc[i].first, to, now);
    }
out:
    free(pc);
    return rc;
}

/* The damaged tail: zero it, then append LOST frames for the acknowledged positions it held. */
static int fix_tail(rp *r, const span *sp, int64_t now) {
    int rc = EVS_OK;
    if (sp->d) {
        /* zero from the damage to the end of every segment; the open below drops empty ones */
        for (uint32_t no = EVS_LSN_SEG(sp->d->at); no <= evs__log_segments(r->log) && !rc; no++)
            rc = evs__log_repair_zero(r->log, no == EVS_LSN_SEG(sp->d->at) ? sp->d->at : EVS_LSN(no, 64),
                                      evs__log_segment_size(r->log, no));
        if (!rc) rc = evs__log_repair_sync(r->log);
        if (rc) return rc;
    }
    evs__log_close(r->log);
    r->log = NULL;
    evs_log_config cfg = {.io = r->s->io, .segment_size = r->s->segment_size};
    evs_log_recovery rec;
    if ((rc = evs__log_open(r->dir, &cfg, 0, 1, &r->log, &rec))) return rc;
    if (evs__log_next_gpos(r->log) != sp->first) {
        return evs__err(EVS_ECORRUPT, "repair: after cutting the tail the log ends at global position %llu, "
                        "expected %llu", (unsigned long long)(evs__log_next_gpos(r->log) - 1),
                        (unsigned long long)(sp->first - 1));
    }
    /* one LOST frame per record the index knew, one for any stretch it did not */
    uint64_t g = sp->first;
    while (g < sp->end) {
        const lrec *x = rec_at(r, g);
        uint64_t to = sp->end;
        if (x && x->first == g) to = x->first + x->count;
        else
            for (size_t i = 0; i < r->nrecs; i++)
                if (r->recs[i].first > g && r->recs[i].first < to) to = r->recs[i].first;
        if (to > sp->end) to = sp->end;
        if (to - g > UINT32_MAX / 2) to = g + UINT32_MAX / 2;
        evs_lost_stream e[1];
        size_t n = entries_for(r, g, to, e, 1);
        size_t plen = evs__lost_size(e, n);
        uint8_t p[EVS_LOST_HEADER + 16 + EVS_MAX_STREAM_NAME + 8];
        memset(p, 0, sizeof p);
        evs__lost_encode(p, now, e, n);
        if ((rc = evs__log_append_flags(r->log, p, (uint32_t)plen, g, (uint32_t)(to - g), EVS_FRAME_LOST, NULL)))
            return rc;
        g = to;
    }
    return evs__log_flush(r->log, 1);
}

/* ------------------------------------------------------------ the whole repair */

static int classify(rp *r, uint64_t floor_next, uint64_t log_next) {
    if (!(r->spans = calloc(r->ndmg + 1, sizeof *r->spans))) return evs__err(EVS_ENOMEM, "repair: out of memory");
    for (size_t i = 0; i < r->ndmg; i++) {
        const evs_log_damage *d = &r->dmg[i];
        span *sp = &r->spans[r->nspans];
        sp->d = d;
        sp->first = d->expected;
        /* a checksummed record that does not decode was written whole: never a torn tail */
        if (d->resume && (d->expected < floor_next || d->synced_beyond || d->held_end)) {
            if (d->resume_gpos < d->expected)
                return evs__err(EVS_ECORRUPT, "segment %08" PRIu32 ".seg offset %" PRIu32 ": the next valid record "
                                "carries global position %llu, below %llu; this log cannot be repaired safely",
                                EVS_LSN_SEG(d->resume), EVS_LSN_OFF(d->resume), (unsigned long long)d->resume_gpos,
                                (unsigned long long)d->expected);
            if (d->resume_gpos == d->expected) {
                /* The stretch held no position.  Bytes after a segment's last
                   record, where only zeros belong, are zeroed; anything else
                   (bytes between two records, a segment without records
                   between two with) is no layout the writer makes. */
                if (EVS_LSN_SEG(d->resume) != EVS_LSN_SEG(d->at) + 1 || EVS_LSN_OFF(d->resume) != 64)
                    return evs__err(EVS_ECORRUPT, "segment %08" PRIu32 ".seg offset %" PRIu32 ": damaged bytes that "
                                    "held no position, up to a valid record at segment %08" PRIu32 ".seg offset %"
                                    PRIu32 "; this log cannot be repaired safely", EVS_LSN_SEG(d->at),
                                    EVS_LSN_OFF(d->at), EVS_LSN_SEG(d->resume), EVS_LSN_OFF(d->resume));
                sp->end = sp->first;
                r->nspans++;
                continue;
            }
            sp->end = d->resume_gpos;
            r->nspans++;
            continue;
        }
        sp->tail = 1;
        sp->end = floor_next > d->expected ? floor_next : d->expected;
        if (d->held_end > sp->end) sp->end = d->held_end; /* its positions stay taken */
        r->nspans++;
        return EVS_OK;
    }
    if (log_next < floor_next) { /* the log simply ends early */
        span *sp = &r->spans[r->nspans++];
        sp->tail = 1;
        sp->first = log_next;
        sp->end = floor_next;
    }
    return EVS_OK;
}

int evs_store_repair(evs_store *s, const char *dir, unsigned flags, evs_lost_cb cb, void *arg,
                     evs_repair_report *out) {
    if (evs__engine_for(dir)) return evs__engine_unsupported(evs__engine_for(dir), "repair");
    evs_repair_report local;
    if (!out) out = &local;
    memset(out, 0, sizeof *out);
    if (!s || !dir || !*dir) return evs__err(EVS_EINVAL, "repair: store or directory missing");
    if (s->dir) return evs__err(EVS_EINVAL, "repair: the store handle is open; repair takes an unopened handle");
    if (flags & ~EVS_REPAIR_DRY_RUN) return evs__err(EVS_EINVAL, "repair: unknown flags 0x%x", flags);
    char path[PATH_MAX];
    struct stat sb;
    snprintf(path, sizeof path, "%s/log", dir);
    if (strlen(dir) > PATH_MAX - 64 || stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return evs__err(EVS_ENOTFOUND, "no store at %s (no log/ directory)", dir);
    rp r;
    memset(&r, 0, sizeof r);
    r.s = s;
    r.dir = dir;
    r.dry = (flags & EVS_REPAIR_DRY_RUN) != 0;
    int rc;
    uint64_t floor_file = 0, floor_next = 1, log_next = 1;
    if (!(s->dir = strdup(dir))) return evs__err(EVS_ENOMEM, "out of memory");
    s->readonly = r.dry;
    if ((rc = evs__store_lock_dir(s))) goto out;
    if ((rc = repairing_read(dir, &floor_file))) goto out;

    /* the floor: what the index says was acknowledged, if it can be trusted */
    snprintf(path, sizeof path, "%s/index", dir);
    if (stat(path, &sb) == 0 && evs__index_open(&s->ix, path, s->map_size, 16, r.dry) == EVS_OK) {
        int untrusted = 0, clean = 0;
        evs__store_index_state(s, &untrusted, &clean);
        MDB_txn *txn;
        evs_lsn ck;
        uint64_t next;
        if (!untrusted && mdb_txn_begin(s->ix.env, NULL, MDB_RDONLY, &txn) == 0) {
            if (evs__index_checkpoint_get(&s->ix, txn, &ck, &next) == EVS_OK) {
                floor_next = next;
                r.have_index = 1;
            }
            mdb_txn_abort(txn);
        }
    }
    evs__err_clear();
    if (floor_file > floor_next) floor_next = floor_file;

    evs_log_config cfg = {.io = s->io, .segment_size = s->segment_size, .readonly = r.dry, .scan_only = 1};
    if ((rc = evs__log_open(dir, &cfg, 0, 1, &r.log, NULL))) goto out;
    if ((rc = evs__log_damage_scan(r.log, evs__frame_payload_check, NULL, &r.dmg, &r.ndmg, &log_next, &r.log_end))) goto out;
    if ((rc = classify(&r, floor_next, log_next))) goto out;
    out->damaged = r.ndmg;
    if (r.ndmg) {
        const evs_log_damage *d = &r.dmg[0];
        snprintf(out->first_damage, sizeof out->first_damage, "segment %08" PRIu32 ".seg offset %" PRIu32 ": %s",
                 EVS_LSN_SEG(d->at), EVS_LSN_OFF(d->at), d->why);
    }
    if (r.have_index && (rc = learn(&r))) goto out;
    if (!r.have_index) {
        size_t total = 0;
        for (size_t i = 0; i < r.nspans; i++) total += (size_t)(r.spans[i].end - r.spans[i].first);
        if (total && !(r.pos = calloc(total, sizeof *r.pos))) {
            rc = evs__err(EVS_ENOMEM, "repair: out of memory");
            goto out;
        }
        for (size_t i = 0; i < r.nspans; i++)
            for (uint64_t g = r.spans[i].first; g < r.spans[i].end; g++) r.pos[r.npos++].gpos = g;
    }
    if ((rc = list_lost(&r, cb, arg, out))) goto out;
    /* positions are never given back: the head stays at the floor or above */
    out->head = (log_next > floor_next ? log_next : floor_next) - 1;
    if (r.nspans && r.spans[r.nspans - 1].tail) out->head = r.spans[r.nspans - 1].end - 1;
    /* Every write to the damaged stretches is checked before the first one
       (a dry run too): a repair that cannot be done says so and changes
       nothing, instead of failing half-way with REPAIRING written. */
    int64_t now = evs_now_ns();
    r.plan = 1;
    for (size_t i = 0; i < r.nspans && !rc; i++)
        if (!r.spans[i].tail) rc = fix_middle(&r, &r.spans[i], now);
    r.plan = 0;
    if (rc) goto out;
    if (r.dry || (r.nspans == 0 && floor_file == 0)) goto out;

    /* From here on the store changes: REPAIRING first, so that a crash
       anywhere below leaves a store that open refuses and repair finishes. */
    if ((rc = repairing_write(dir, floor_next))) goto out;
    for (size_t i = 0; i < r.nspans && !rc; i++)
        if (!r.spans[i].tail) rc = fix_middle(&r, &r.spans[i], now);
    if (!rc) rc = evs__log_repair_sync(r.log);
    for (size_t i = 0; i < r.nspans && !rc; i++)
        if (r.spans[i].tail) rc = fix_tail(&r, &r.spans[i], now);
    if (rc) goto out;
    evs__log_close(r.log);
    r.log = NULL;
    /* the index is rebuilt from the log, LOST frames included */
    if (s->ix.env) {
        if ((rc = evs__index_clear(&s->ix))) goto out;
        evs__index_close(&s->ix);
    }
    if (s->lock_fd >= 0) close(s->lock_fd);
    s->lock_fd = -1;
    free(s->dir);
    s->dir = NULL;
    s->repairing = 1;
    s->readonly = 0;
    if (!(rc = evs_store_open(s, dir, 0))) {
        out->head = evs_head(s);
        rc = evs__store_teardown(s, 1);
    }
    s->repairing = 0;
    if (rc) goto out_open;
    if ((rc = repairing_remove(dir))) goto out_open;
    out->changed = 1;
    rp_free(&r);
    return EVS_OK;
out:
    if (r.log) evs__log_close(r.log);
    if (s->ix.env) evs__index_close(&s->ix);
    if (s->lock_fd >= 0) close(s->lock_fd);
    s->lock_fd = -1;
    free(s->dir);
    s->dir = NULL;
    s->readonly = 0;
out_open:
    rp_free(&r);
    return rc;
}
