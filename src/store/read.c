/*
 * read.c — cursors over a stream and over the global log, stream info and
 * listing, and the whole-store check.
 *
 * A reader is a snapshot: it opens an LMDB read transaction and reads the
 * index checkpoint inside it, so the log end it may read to and the index
 * entries it sees describe the same moment.  Readers never load a result
 * set: each evs_reader_next decodes one event from the mapped log, after
 * the frame's CRC has been verified (a frame is verified once and then
 * served from a one-frame cache, which keeps stream reads of multi-event
 * appends cheap).
 *
 * $all reads with a correlation, tag, stream-type or event-type filter walk
 * the matching index (merging one cursor per event type or tag, or for
 * "all tags" intersecting the tags' cursors by leapfrogging: each cursor
 * seeks the furthest position another one stands on until all agree)
 * instead of the log, so they do not read what they exclude; a time range
 * starts at the first record at or after `since`, found in the time index.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "core/json.h"
#include "log/record.h"
#include "store/crypt.h"
#include "store/store_internal.h"

enum { RD_STREAM, RD_SCAN, RD_INDEX };

/* How far a stream read's cursor runs ahead of the reader (stream_fill). */
#define STREAM_AHEAD 16u
_Static_assert((STREAM_AHEAD & (STREAM_AHEAD - 1)) == 0, "the ring's indices wrap by unsigned overflow");

typedef struct dupcur {
    MDB_cursor *c;
    MDB_val key;
    uint64_t cur;     /* current gpos, 0 when exhausted */
} dupcur;

struct evs_reader {
    evs_store *s;
    MDB_txn *txn;
    MDB_cursor *rec_cur;
    MDB_cursor *cur;
    /* stream: the index entries cur has passed and the reader has not yet
       returned, next_spos first (stream_fill); emptied by any seek */
    struct stream_ent { uint64_t spos; evs_lsn lsn; uint32_t idx; } ring[STREAM_AHEAD];
    unsigned ring_head, ring_n;
    int ring_run;             /* cur stands on run_spos, the last entry taken: stream_fill may go on from it */
    int run_lost;             /* that entry is a lost position */
    uint64_t run_spos;
    evs_lsn run_lsn;          /* and its frame */
    int kind, dir, started, exhausted;
    size_t limit, returned;
    evs_lsn end;
    uint64_t head;
    /* stream */
    uint64_t sid, version, next_spos;
    /* $all */
    uint64_t gpos;            /* next gpos to examine */
    uint64_t position;
    dupcur *dc;
    size_t ndc;
    int dc_all;               /* a position must be on every cursor (intersection), not any */
    /* frame cache */
    evs_frame fr;
    int have_fr;
    uint32_t *offs;                /* event offsets in fr, the first noffs known */
    uint32_t noffs;
    size_t next_off;               /* where event noffs starts */
    size_t offs_cap;
    evs_event ev;
    /* filter */
    char **types;
    size_t ntypes;
    char *stype, *prefix;
    size_t prefix_len;
    int has_corr;
    evs_uuid corr;
    int64_t since, until;
    char **tags;                   /* any (or with tag_all, every one) of these */
    size_t ntags;
    int tag_all;
    int has_caus;
    evs_uuid caus;
    /* lost ranges (see evs_reader_lost) */
    uint64_t lost_first, lost_last;
    int have_pend;                 /* RD_INDEX: a candidate held back while a lost range is reported */
    uint64_t pend;
    uint64_t gen;                  /* the index map this reader's cursors point into */
    uint64_t lgen;                 /* the log generation pinned with the snapshot (scavenge) */
    int pinned;
    /* a reader of another engine (engine.h): the calls above go to it */
    const evs_engine *engine;
    void *impl;
    evs__crypt_rd crd;             /* decrypted data of the last event (crypt.c) */
};

/* Wrap another engine's reader (store_engine.c).  Ownership: *out owns impl. */
int evs__reader_wrap(evs_store *s, void *impl, evs_reader **out) {
    evs_reader *r = calloc(1, sizeof *r);
    if (!r) {
        s->engine->reader_close(impl);
        return evs__err(EVS_ENOMEM, "out of memory for a reader");
    }
    r->s = s;
    r->engine = s->engine;
    r->impl = impl;
    *out = r;
    return EVS_OK;
}

static void evs__reader_engine_close(evs_reader *r) {
    r->engine->reader_close(r->impl);
    evs__crypt_rd_free(&r->crd);
    free(r);
}

/* The next event of another engine's reader, through crypt.c's read hook: a copy of it in r->ev, its data
   decrypted or redacted (the engine's event stays as the engine keeps it). */
static int engine_next(evs_reader *r, const evs_event **ev) {
    int rc = r->engine->reader_next(r->impl, ev);
    if (rc != EVS_OK || !*ev) return rc;
    r->ev = **ev;
    if ((rc = evs__crypt_open_event(r->s, &r->crd, &r->ev))) {
        *ev = NULL;
        return rc;
    }
    *ev = &r->ev;
    return EVS_OK;
}

/* Called with the index's remap lock held (see index.h). */
static void reader_free(evs_reader *r) {
    for (size_t i = 0; i < r->ndc; i++)
        if (r->dc[i].c) mdb_cursor_close(r->dc[i].c);
    free(r->dc);
    if (r->cur) mdb_cursor_close(r->cur);
    if (r->rec_cur) mdb_cursor_close(r->rec_cur);
    if (r->txn) mdb_txn_abort(r->txn);
    if (r->pinned) evs__log_unpin(r->s->log, r->lgen);
    if (r->types)
        for (size_t i = 0; i < r->ntypes; i++) free(r->types[i]);
    free(r->types);
    if (r->tags)
        for (size_t i = 0; i < r->ntags; i++) free(r->tags[i]);
    free(r->tags);
    free(r->stype);
    free(r->prefix);
    free(r->offs);
    evs__crypt_rd_free(&r->crd);
    free(r);
}

void evs_reader_close(evs_reader *r) {
    if (r && r->engine) {
        evs__reader_engine_close(r);
        return;
    }
    if (!r) return;
    evs_index *ix = &r->s->ix;
    evs__index_rlock(ix);
    reader_free(r);
    evs__index_runlock(ix);
}

static int reader_new(evs_store *s, int kind, int dir, size_t limit, evs_reader **out) {
    *out = NULL;
    if (!s || !s->dir) return evs__err(EVS_ECLOSED, "read: the store is not open");
    if (dir != EVS_FORWARD && dir != EVS_BACKWARD) return evs__err(EVS_EINVAL, "read: direction must be forward or backward");
    evs_reader *r = calloc(1, sizeof *r);
    if (!r) return evs__err(EVS_ENOMEM, "out of memory for a reader");
    r->s = s;
    r->kind = kind;
    r->dir = dir;
    r->limit = limit;
    /* the snapshot and the log generation it describes, taken together (see scavenge.c) */
    evs__log_pub_rlock(s->log);
    int rc = evs__index_txn_read(&s->ix, &r->txn);
    if (!rc) {
        r->lgen = evs__log_pin(s->log);
        r->pinned = 1;
    }
    evs__log_pub_runlock(s->log);
    if (rc) {
        r->txn = NULL;
        reader_free(r);
        return rc;
    }
    r->gen = atomic_load(&s->ix.gen);
    uint64_t next = 1;
    rc = evs__index_checkpoint_get(&s->ix, r->txn, &r->end, &next);
    if (rc == EVS_ENOTFOUND) r->end = 0, next = 1, rc = EVS_OK;
    if (!rc && (rc = mdb_cursor_open(r->txn, s->ix.records, &r->rec_cur))) rc = evs__index_err(rc, "open cursor");
    if (rc) {
        reader_free(r);
        return rc;
    }
    r->head = next - 1;
    *out = r;
    return EVS_OK;
}

/*
 * Verify and cache the frame at lsn, with the offsets of its events.  exact:
 * the index says a frame starts at lsn, so finding none there (zeroed bytes
 * read as the end of a segment, and the log would move on to the next one)
 * is damage; otherwise lsn may be a segment's end and the next segment's
 * first frame is the one wanted.
 */
static int load_frame(evs_reader *r, evs_lsn at, int exact) {
    if (r->have_fr && r->fr.at == at) return EVS_OK;
    r->have_fr = 0;
    int rc = evs__log_read_at(r->s->log, r->lgen, at, r->end, &r->fr);
    /* EVS_EINVAL: the location lies past what the segment file holds (cut short) */
    if ((rc == EVS_DONE || rc == EVS_EINVAL) && exact)
        return evs__err(EVS_ECORRUPT, "segment %08u.seg offset %u: no record where the index points (the log is "
                        "damaged there or ends early)", EVS_LSN_SEG(at), EVS_LSN_OFF(at));
    if (rc == EVS_ECORRUPT && exact) {
        /* the log may name the next segment, where it looked when the
           record's bytes read as a clean end: name the record */
        char b[96];
        snprintf(b, sizeof b, "segment %08u.seg offset %u", EVS_LSN_SEG(at), EVS_LSN_OFF(at));
        if (!strstr(evs_errmsg(), b)) {
            char why[400];
            snprintf(why, sizeof why, "%s", evs_errmsg());
            return evs__err(EVS_ECORRUPT, "%s: no valid record where the index has one (%s)", b, why);
        }
    }
    if (rc) return rc;
    if (exact && r->fr.at != at)
        return evs__err(EVS_ECORRUPT, "segment %08u.seg offset %u: zero bytes where the index has a record; the log "
                        "is damaged there", EVS_LSN_SEG(at), EVS_LSN_OFF(at));
    if (r->fr.count > r->offs_cap) {
        size_t cap = r->fr.count < 64 ? 64 : r->fr.count;
        uint32_t *o = realloc(r->offs, cap * sizeof *o);
        if (!o) return evs__err(EVS_ENOMEM, "out of memory for a frame of %u events", r->fr.count);
        r->offs = o;
        r->offs_cap = cap;
    }
    /* the event table is walked as far as events are wanted: reading one
       event of a 1,000-event record must not cost the whole table */
    r->noffs = 0;
    r->next_off = evs__record_first_event(r->fr.payload, r->fr.len);
    r->have_fr = 1;
    return EVS_OK;
}

/* Offsets of the frame's events up to idx. */
static int offs_upto(evs_reader *r, uint32_t idx) {
    size_t off = r->next_off;
    while (r->noffs <= idx) {
        if (!off || off + EVS_REC_EVENT_HEADER > r->fr.len) goto bad;
        uint32_t el = evs__get32(r->fr.payload + off);
        if (el < EVS_REC_EVENT_HEADER || el > r->fr.len - off) goto bad;
        r->offs[r->noffs++] = (uint32_t)off;
        off += el;
    }
    r->next_off = off;
    return EVS_OK;
bad:
    r->have_fr = 0;
    return evs__err(EVS_ECORRUPT, "record at global position %llu (log %u:%u) has a malformed event table",
                    (unsigned long long)r->fr.first_gpos, EVS_LSN_SEG(r->fr.at), EVS_LSN_OFF(r->fr.at));
}

static int decode(evs_reader *r, uint32_t idx) {
    if (idx >= r->noffs) {
        int rc = offs_upto(r, idx);
        if (rc) return rc;
    }
    if (!evs__record_decode(r->fr.payload, r->fr.len, r->offs[idx], r->fr.first_gpos, idx, &r->ev))
        return evs__err(EVS_ECORRUPT, "record at global position %llu: event %u is malformed",
                        (unsigned long long)r->fr.first_gpos, idx + 1);
    return EVS_OK;
}

/* EVS_ELOST for the range [first, last] of `what`, repaired (or scavenged) at `at`. */
static int lost_err2(evs_reader *r, const char *what, uint64_t first, uint64_t last, int64_t at, int scavenged) {
    char when[40];
    evs_time_format(at, when);
    r->lost_first = first;
    r->lost_last = last;
    if (scavenged)
        return evs__err(EVS_ELOST, "%s %llu..%llu were scavenged: deleted or expired events whose space `evstore "
                        "scavenge` reclaimed at %s", what, (unsigned long long)first, (unsigned long long)last, when);
    return evs__err(EVS_ELOST, "%s %llu..%llu were lost: `evstore repair` removed them from a damaged log at %s",
                    what, (unsigned long long)first, (unsigned long long)last, when);
}

static int lost_err(evs_reader *r, const char *what, uint64_t first, uint64_t last, int64_t at) {
    return lost_err2(r, what, first, last, at, 0);
}

/* The loaded frame is a LOST frame: report its range. */
static int lost_frame(evs_reader *r) {
    int64_t at = 0;
    evs_lost_iter it = {0, 0};
    evs_lost_stream e;
    (void)evs__lost_next(r->fr.payload, r->fr.len, &it, &e, &at);
    return lost_err2(r, "global positions", r->fr.first_gpos, r->fr.first_gpos + r->fr.count - 1, at,
                     (r->fr.flags & EVS_FRAME_SCAVENGED) != 0);
}

/* Decode global position g (must be <= head). */
static int load_gpos(evs_reader *r, uint64_t g) {
    /* a forward scan usually wants the very next frame: follow the log, no index lookup */
    if (r->have_fr && g == r->fr.first_gpos + r->fr.count && r->fr.next < r->end) {
        int rc = load_frame(r, r->fr.next, 0);
        if (rc == EVS_OK && r->fr.first_gpos == g)
            return (r->fr.flags & EVS_FRAME_LOST) ? lost_frame(r) : decode(r, 0);
        if (rc && rc != EVS_ECORRUPT) return rc;
        /* not the frame wanted, or damage the log may have found past a
           segment's end: the index says where g's record is, and names it */
        r->have_fr = 0;
    }
    if (!(r->have_fr && g >= r->fr.first_gpos && g < r->fr.first_gpos + r->fr.count)) {
        uint64_t first;
        evs_lsn lsn;
        uint32_t count;
        int rc = evs__index_find_record(&r->s->ix, r->rec_cur, g, &first, &lsn, &count);
        if (rc == EVS_ENOTFOUND)
            return evs__err(EVS_EINDEX, "index has no record for global position %llu", (unsigned long long)g);
        if (rc) return rc;
        if ((rc = load_frame(r, lsn, 1))) return rc;
        if (r->fr.first_gpos != first || r->fr.count != count)
            return evs__err(EVS_EINDEX, "index and log disagree at global position %llu", (unsigned long long)g);
    }
    if (r->fr.flags & EVS_FRAME_LOST) return lost_frame(r);
    return decode(r, (uint32_t)(g - r->fr.first_gpos));
}

/* ------------------------------------------------------------ streams */

static int read_stream_locked(evs_store *s, const char *stream, uint64_t from, int direction, size_t limit,
                              evs_reader **out, int any) {
    size_t slen;
    int rc;
    if (!out) return evs__err(EVS_EINVAL, "read: out is NULL");
    *out = NULL;
    if (any) slen = strlen(stream);
    else if ((rc = evs__check_stream_name(s, stream, &slen))) return rc;
    evs_reader *r;
    if ((rc = reader_new(s, RD_STREAM, direction, limit, &r))) return rc;
    evs_ix_stream st;
    rc = evs__index_stream_get(&s->ix, r->txn, stream, slen, &st);
    if (rc == EVS_ENOTFOUND) rc = evs__err(EVS_ENOTFOUND, "stream \"%s\" not found", stream);
    /* deleted streams read as absent (meta.c) */
    int dstate = rc || any ? 0 : evs__meta_state(s, stream, slen, st.version);
    if (dstate) rc = evs__err(EVS_ENOTFOUND, "stream \"%s\" not found (%s)", stream,
                              dstate == 2 ? "hard-deleted" : "deleted");
    if (!rc && (rc = mdb_cursor_open(r->txn, s->ix.stream_ev, &r->cur))) rc = evs__index_err(rc, "open cursor");
    if (rc) {
        reader_free(r);
        return rc;
    }
    r->sid = st.id;
    r->version = st.version;
    /* skip what the metadata hides at once rather than event by event */
    if (direction == EVS_FORWARD) r->next_spos = evs__meta_first_visible(s, stream, slen, st.version, from ? from : 1);
    else r->next_spos = from > st.version ? st.version : from;
    r->position = r->next_spos;
    *out = r;
    return EVS_OK;
}

int evs_read_stream(evs_store *s, const char *stream, uint64_t from, int direction, size_t limit, evs_reader **out) {
    if (s && s->engine) return evs__store_engine_read(s, stream, from, direction, NULL, limit, out);
    if (!s || !s->dir) return evs__err(EVS_ECLOSED, "read: the store is not open");
    evs__index_rlock(&s->ix);
    int rc = read_stream_locked(s, stream, from, direction, limit, out, 0);
    evs__index_runlock(&s->ix);
    return rc;
}

int evs__read_stream_any(evs_store *s, const char *stream, uint64_t from, int direction, size_t limit,
                         evs_reader **out) {
    if (s && s->engine) return evs__engine_unsupported(s->engine, "reading a reserved stream");
    evs__index_rlock(&s->ix);
    int rc = read_stream_locked(s, stream, from, direction, limit, out, 1);
    evs__index_runlock(&s->ix);
    return rc;
}

/*
 * The stream cursor stands on a position a repair removed: report the run
 * of lost positions from there (in the read's direction) and move past it.
 */
static int lost_run(evs_reader *r, evs_lsn lsn) {
    int fwd = r->dir == EVS_FORWARD;
    uint64_t first = r->next_spos, last = r->next_spos;
    MDB_val k, v;
    while (mdb_cursor_get(r->cur, &k, &v, fwd ? MDB_NEXT : MDB_PREV) == 0) {
        if (k.mv_size != 16 || evs__get64be(k.mv_data) != r->sid || v.mv_size != 12 ||
            evs__get32((uint8_t *)v.mv_data + 8) != EVS_IX_LOST)
            break;
        uint64_t sp = evs__get64be((uint8_t *)k.mv_data + 8);
        if (sp != (fwd ? last + 1 : first - 1)) break;
        if (fwd) last = sp;
        else first = sp;
    }
    r->started = 0; /* the cursor went one too far: seek again next time */
    r->next_spos = fwd ? last + 1 : first - 1;
    r->position = r->next_spos;
    int64_t at = 0;
    int scav = 0;
    if (load_frame(r, lsn, 1) == EVS_OK && (r->fr.flags & EVS_FRAME_LOST)) {
        evs_lost_iter it = {0, 0};
        evs_lost_stream e;
        (void)evs__lost_next(r->fr.payload, r->fr.len, &it, &e, &at);
        scav = (r->fr.flags & EVS_FRAME_SCAVENGED) != 0;
    }
    return lost_err2(r, "stream positions", first, last, at, scav);
}

/*
 * A stream position the index does not hold, in a store a repair has
 * touched: a repair that ran without the index could not say which streams
 * the removed records held, so a stream may have holes.  Report the hole,
 * up to the next position the index holds, as lost.
 */
static int lost_hole(evs_reader *r) {
    int fwd = r->dir == EVS_FORWARD;
    uint64_t first = r->next_spos, last = r->next_spos;
    uint8_t kb[16];
    evs__put64be(kb, r->sid);
    evs__put64be(kb + 8, r->next_spos);
    MDB_val k = {16, kb}, v;
    int rc = mdb_cursor_get(r->cur, &k, &v, MDB_SET_RANGE);
    if (fwd) {
        if (rc == 0 && k.mv_size == 16 && evs__get64be(k.mv_data) == r->sid)
            last = evs__get64be((uint8_t *)k.mv_data + 8) - 1;
        else
            last = r->version;
    } else {
        if (rc == 0) rc = mdb_cursor_get(r->cur, &k, &v, MDB_PREV);
        else if (rc == MDB_NOTFOUND) rc = mdb_cursor_get(r->cur, &k, &v, MDB_LAST);
        first = rc == 0 && k.mv_size == 16 && evs__get64be(k.mv_data) == r->sid
                    ? evs__get64be((uint8_t *)k.mv_data + 8) + 1
                    : 1;
    }
    if (last < first) last = first;
    r->started = 0;
    r->next_spos = fwd ? last + 1 : first - 1;
    r->position = r->next_spos;
    return lost_err(r, "stream positions", first, last, r->s->lost[r->s->nlost - 1].repaired_at);
}

/*
 * A stream's events lie wherever their appends put them in the log: one
 * cache miss each, one page each when the stream is interleaved with
 * others.  So the stream cursor runs up to STREAM_AHEAD index entries
 * ahead of what the reader returns, keeps them in r->ring, and asks the
 * log for each frame as it passes it: the misses overlap instead of
 * coming one after another (docs/benchmarks.md W4i).  Each entry is still
 * read once.  The ring never decides what the reader returns: an entry
 * that does not continue the stream stops the run, and the reader seeks
 * that position itself when it gets there, as it always did.
 */

/* Take the entry (spos, v) the cursor stands on into the ring. */
static void ring_push(evs_reader *r, uint64_t spos, const MDB_val *v) {
    struct stream_ent *e = &r->ring[(r->ring_head + r->ring_n++) % STREAM_AHEAD];
    *e = (struct stream_ent){spos, evs__get64(v->mv_data), evs__get32((uint8_t *)v->mv_data + 8)};
    r->run_spos = spos;
    r->run_lost = e->idx == EVS_IX_LOST;
    /* events of one record share a frame: ask once */
    if (!r->run_lost && e->lsn != r->run_lsn) evs__log_prefetch(r->s->log, r->lgen, e->lsn);
    r->run_lsn = e->lsn;
}

/* Returns 0 with at least one entry in the ring, or what the cursor met. */
static int stream_fill(evs_reader *r) {
    int fwd = r->dir == EVS_FORWARD;
    uint64_t left = fwd ? r->version - r->next_spos + 1 : r->next_spos;
    if (r->limit && r->limit - r->returned < left) left = r->limit - r->returned;
    unsigned cap = left < STREAM_AHEAD ? (unsigned)left : STREAM_AHEAD;
    MDB_val k, v;
    if (r->ring_n == 0 && !r->ring_run) {
        uint8_t kb[16];
        evs__put64be(kb, r->sid);
        evs__put64be(kb + 8, r->next_spos);
        k.mv_size = 16;
        k.mv_data = kb;
        int rc = mdb_cursor_get(r->cur, &k, &v, MDB_SET_KEY);
        if (rc) return rc;
        if (v.mv_size != 12) return MDB_NOTFOUND;
        r->ring_head = 0;
        r->ring_run = 1;
        ring_push(r, r->next_spos, &v);
    }
    /* a lost entry ends the run: lost_run walks the rest from the cursor,
       and the reader seeks again after it (started = 0) */
    while (r->ring_run && !r->run_lost && r->ring_n < cap) {
        uint64_t want = fwd ? r->run_spos + 1 : r->run_spos - 1;
        int rc = mdb_cursor_get(r->cur, &k, &v, fwd ? MDB_NEXT : MDB_PREV);
        if (!rc && (k.mv_size != 16 || evs__get64be(k.mv_data) != r->sid ||
                    evs__get64be((uint8_t *)k.mv_data + 8) != want || v.mv_size != 12))
            rc = MDB_NOTFOUND;
        if (rc) {
            r->ring_run = 0;
            /* nothing left to return: what the reader's own step met */
            if (r->ring_n == 0) return rc;
            break;
        }
        ring_push(r, want, &v);
    }
    return 0;
}

static int next_stream(evs_reader *r, const evs_event **ev) {
    if (r->dir == EVS_FORWARD ? r->next_spos > r->version : r->next_spos == 0) return EVS_DONE;
    if (!r->started) r->ring_n = 0, r->ring_run = 0;
    r->started = 1;
    int rc = stream_fill(r);
    /* cannot fail: the ring starts at next_spos and only grows by the next position */
    if (rc == 0 && (r->ring_n == 0 || r->ring[r->ring_head].spos != r->next_spos)) rc = MDB_NOTFOUND;
    if (rc) {
        r->ring_n = 0, r->ring_run = 0;
        if (rc == MDB_NOTFOUND && r->s->nlost) return lost_hole(r);
        if (rc == MDB_NOTFOUND)
            return evs__err(EVS_EINDEX, "index is missing stream position %llu", (unsigned long long)r->next_spos);
        return evs__index_err(rc, "stream cursor");
    }
    struct stream_ent e = r->ring[r->ring_head];
    r->ring_head = (r->ring_head + 1) % STREAM_AHEAD;
    r->ring_n--;
    /* the run stopped on a lost entry (stream_fill), so the cursor stands
       on it, where lost_run starts walking */
    if (e.idx == EVS_IX_LOST) return lost_run(r, e.lsn);
    if ((rc = load_frame(r, e.lsn, 1))) return rc;
    if (e.idx >= r->fr.count) return evs__err(EVS_EINDEX, "index points past the events of a record");
    if ((rc = decode(r, e.idx))) return rc;
    if (r->ev.stream_position != r->next_spos)
        return evs__err(EVS_EINDEX, "index and log disagree at stream position %llu", (unsigned long long)r->next_spos);
    r->next_spos += r->dir == EVS_FORWARD ? 1 : (uint64_t)-1;
    r->position = r->next_spos;
    *ev = &r->ev;
    return EVS_OK;
}

/* ---------------------------------------------------------------- $all */

int evs__filter_check(const evs_filter *f) {
    if (!f) return EVS_OK;
    if (f->n_event_types && !f->event_types) return evs__err(EVS_EINVAL, "filter: event_types is NULL");
    for (size_t i = 0; i < f->n_event_types; i++)
        if (!f->event_types[i] || !*f->event_types[i]) return evs__err(EVS_EINVAL, "filter: event type %zu is empty", i + 1);
    if (f->n_tags && !f->tags) return evs__err(EVS_EINVAL, "filter: tags is NULL");
    for (size_t i = 0; i < f->n_tags; i++) {
        size_t n = f->tags[i] ? strnlen(f->tags[i], EVS_MAX_TAG_BYTES + 1) : 0;
        if (n == 0 || n > EVS_MAX_TAG_BYTES)
            return evs__err(EVS_EINVAL, "filter: tag %zu must be 1..%u bytes", i + 1, EVS_MAX_TAG_BYTES);
        if (i == EVS_MAX_TAGS) return evs__err(EVS_ELIMIT, "filter: more than %u tags", EVS_MAX_TAGS);
    }
    if (f->tag_match != EVS_TAGS_ANY && f->tag_match != EVS_TAGS_ALL)
        return evs__err(EVS_EINVAL, "filter: tag_match %d is neither any nor all", (int)f->tag_match);
    if (f->since < 0 || f->until < 0) return evs__err(EVS_EINVAL, "filter: negative time");
    if (f->since && f->until && f->until <= f->since) return evs__err(EVS_EINVAL, "filter: until must be after since");
    return EVS_OK;
}

static int set_filter(evs_reader *r, const evs_filter *f) {
    int rc;
    if (!f) return EVS_OK;
    if ((rc = evs__filter_check(f))) return rc;
    if (f->n_event_types) {
        if (!(r->types = calloc(f->n_event_types, sizeof *r->types))) return evs__err(EVS_ENOMEM, "out of memory");
        r->ntypes = f->n_event_types;
        for (size_t i = 0; i < f->n_event_types; i++)
            if (!(r->types[i] = strdup(f->event_types[i]))) return evs__err(EVS_ENOMEM, "out of memory");
    }
    if (f->stream_type && *f->stream_type && !(r->stype = strdup(f->stream_type))) return evs__err(EVS_ENOMEM, "out of memory");
    if (f->stream_prefix && *f->stream_prefix) {
        if (!(r->prefix = strdup(f->stream_prefix))) return evs__err(EVS_ENOMEM, "out of memory");
        r->prefix_len = strlen(r->prefix);
    }
    if (f->correlation_id) {
        r->has_corr = 1;
        r->corr = *f->correlation_id;
    }
    if (f->n_tags) {
        if (!(r->tags = calloc(f->n_tags, sizeof *r->tags))) return evs__err(EVS_ENOMEM, "out of memory");
        r->ntags = f->n_tags;
        for (size_t i = 0; i < f->n_tags; i++)
            if (!(r->tags[i] = strdup(f->tags[i]))) return evs__err(EVS_ENOMEM, "out of memory");
    }
    r->tag_all = f->tag_match == EVS_TAGS_ALL;
    if (f->causation_id) {
        r->has_caus = 1;
        r->caus = *f->causation_id;
    }
    r->since = f->since;
    r->until = f->until;
    return EVS_OK;
}

typedef struct tag_seen {
    const evs_reader *r;
    uint64_t seen;      /* bit i: the event carries r->tags[i] (EVS_MAX_TAGS is 64) */
} tag_seen;

static int note_tag(void *arg, const char *tag, size_t n) {
    tag_seen *t = arg;
    for (size_t i = 0; i < t->r->ntags; i++)
        if (strlen(t->r->tags[i]) == n && memcmp(t->r->tags[i], tag, n) == 0) t->seen |= (uint64_t)1 << i;
    return 0;
}

/* The event's tags hold one of the reader's (with tag_all: every one). */
static int has_tag(const evs_reader *r, const evs_event *e) {
    if (!e->tags || !e->tags_len) return 0;
    tag_seen t = {r, 0};
    if (evs__index_each_tag(e->tags, e->tags_len, note_tag, &t)) return 0;
    uint64_t want = r->ntags == 64 ? UINT64_MAX : ((uint64_t)1 << r->ntags) - 1;
    return r->tag_all ? (t.seen & want) == want : t.seen != 0;
}

static int matches(const evs_reader *r, const evs_event *e) {
    if (r->ntypes) {
        size_t i;
        for (i = 0; i < r->ntypes; i++)
            if (strlen(r->types[i]) == e->event_type_len && !memcmp(r->types[i], e->event_type, e->event_type_len)) break;
        if (i == r->ntypes) return 0;
    }
    if (r->stype && (strlen(r->stype) != e->stream_type_len || memcmp(r->stype, e->stream_type, e->stream_type_len)))
        return 0;
    if (r->prefix && (e->stream_len < r->prefix_len || memcmp(r->prefix, e->stream, r->prefix_len))) return 0;
    if (r->has_corr && (!e->has_correlation_id || memcmp(&r->corr, &e->correlation_id, 16))) return 0;
    if (r->has_caus && (!e->has_causation_id || memcmp(&r->caus, &e->causation_id, 16))) return 0;
    if (r->ntags && !has_tag(r, e)) return 0;
    if (r->since && e->recorded_at < r->since) return 0;
    if (r->until && e->recorded_at >= r->until) return 0;
    return 1;
}

/* Position a dup cursor at the first value >= g (forward) or <= g (backward). */
static int dc_seek(evs_reader *r, dupcur *d, uint64_t g) {
    uint8_t vb[8];
    evs__put64be(vb, g);
    MDB_val k = d->key, v = {8, vb};
    int rc = mdb_cursor_get(d->c, &k, &v, MDB_GET_BOTH_RANGE);
    if (r->dir == EVS_FORWARD) {
        d->cur = rc == 0 ? evs__get64be(v.mv_data) : 0;
        return rc && rc != MDB_NOTFOUND ? evs__index_err(rc, "index cursor") : EVS_OK;
    }
    if (rc == 0 && evs__get64be(v.mv_data) == g) {
        d->cur = g;
        return EVS_OK;
    }
    if (rc == 0) rc = mdb_cursor_get(d->c, &k, &v, MDB_PREV_DUP);
    else if (rc == MDB_NOTFOUND) {
        k = d->key;
        rc = mdb_cursor_get(d->c, &k, &v, MDB_SET_KEY);
        if (rc == 0) rc = mdb_cursor_get(d->c, &k, &v, MDB_LAST_DUP);
    }
    d->cur = rc == 0 ? evs__get64be(v.mv_data) : 0;
    return rc && rc != MDB_NOTFOUND ? evs__index_err(rc, "index cursor") : EVS_OK;
}

static int dc_step(evs_reader *r, dupcur *d) {
    MDB_val k, v;
    int rc = mdb_cursor_get(d->c, &k, &v, r->dir == EVS_FORWARD ? MDB_NEXT_DUP : MDB_PREV_DUP);
    d->cur = rc == 0 ? evs__get64be(v.mv_data) : 0;
    return rc && rc != MDB_NOTFOUND ? evs__index_err(rc, "index cursor") : EVS_OK;
}

static int add_dc(evs_reader *r, MDB_dbi dbi, const void *key, size_t klen) {
    dupcur *d = &r->dc[r->ndc];
    int rc = mdb_cursor_open(r->txn, dbi, &d->c);
    if (rc) return evs__index_err(rc, "open index cursor");
    r->ndc++;
    d->key.mv_size = klen;
    d->key.mv_data = (void *)key;
    return EVS_OK;
}

static int read_all_locked(evs_store *s, uint64_t from, int direction, const evs_filter *filter, size_t limit,
                           evs_reader **out) {
    int rc;
    if (!out) return evs__err(EVS_EINVAL, "read: out is NULL");
    *out = NULL;
    evs_reader *r;
    if ((rc = reader_new(s, RD_SCAN, direction, limit, &r))) return rc;
    if ((rc = set_filter(r, filter))) goto fail;
    if (direction == EVS_FORWARD) {
        r->gpos = from ? from : 1;
        if (r->since) {
            uint64_t g;
            rc = evs__index_first_at_or_after(&s->ix, r->txn, r->since, &g);
            if (rc == EVS_ENOTFOUND) g = r->head + 1, rc = EVS_OK;
            if (rc) goto fail;
            if (g > r->gpos) r->gpos = g;
        }
    } else {
        r->gpos = from > r->head ? r->head : from;
        if (r->until) {
            uint64_t g;
            rc = evs__index_first_at_or_after(&s->ix, r->txn, r->until, &g);
            if (rc == EVS_ENOTFOUND) rc = EVS_OK;
            else if (rc) goto fail;
            else if (g - 1 < r->gpos) r->gpos = g - 1;
        }
    }
    r->position = r->gpos;
    /* an index answers the most selective filter present (a tag names an
       entity; an index from before tags has none, and tags are then checked
       on the events read) */
    int by_tags = r->ntags && s->ix.tags && !r->has_corr;
    if (r->has_corr || by_tags || r->stype || r->ntypes) {
        r->kind = RD_INDEX;
        if (!(r->dc = calloc(r->has_corr || r->stype ? 1 : by_tags ? r->ntags : r->ntypes, sizeof *r->dc))) {
            rc = evs__err(EVS_ENOMEM, "out of memory");
            goto fail;
        }
        if (r->has_corr) rc = add_dc(r, s->ix.corr, r->corr.b, 16);
        else if (by_tags) {
            for (size_t i = 0; i < r->ntags && !rc; i++) rc = add_dc(r, s->ix.tags, r->tags[i], strlen(r->tags[i]));
            r->dc_all = r->tag_all;
        } else if (r->stype) rc = add_dc(r, s->ix.stypes, r->stype, strlen(r->stype));
        else
            for (size_t i = 0; i < r->ntypes && !rc; i++) rc = add_dc(r, s->ix.types, r->types[i], strlen(r->types[i]));
        if (rc) goto fail;
        if (r->gpos >= 1 && r->gpos <= r->head)
            for (size_t i = 0; i < r->ndc; i++)
                if ((rc = dc_seek(r, &r->dc[i], r->gpos))) goto fail;
    }
    *out = r;
    return EVS_OK;
fail:
    reader_free(r);
    return rc;
}

int evs_read_all(evs_store *s, uint64_t from, int direction, const evs_filter *filter, size_t limit,
                 evs_reader **out) {
    if (s && s->engine) return evs__store_engine_read(s, NULL, from, direction, filter, limit, out);
    if (!s || !s->dir) return evs__err(EVS_ECLOSED, "read: the store is not open");
    evs__index_rlock(&s->ix);
    int rc = read_all_locked(s, from, direction, filter, limit, out);
    evs__index_runlock(&s->ix);
    return rc;
}

/* Is a before b in the read's direction? */
static int before(const evs_reader *r, uint64_t a, uint64_t b) { return r->dir == EVS_FORWARD ? a < b : a > b; }

/*
 * The next candidate position from the index cursors, 0 when none: the
 * nearest of them (a union; an event on several cursors, carrying two of
 * the tags asked for, comes once), or with dc_all the nearest position
 * every cursor holds.
 */
static int next_candidate(evs_reader *r, uint64_t *g) {
    int rc;
    *g = 0;
    if (r->dc_all) {
        for (;;) {
            uint64_t far = 0;
            for (size_t i = 0; i < r->ndc; i++) {
                if (!r->dc[i].cur) return EVS_OK; /* one list ended: so did the intersection */
                if (!far || before(r, far, r->dc[i].cur)) far = r->dc[i].cur;
            }
            int agree = 1;
            for (size_t i = 0; i < r->ndc; i++)
                if (r->dc[i].cur != far) {
                    agree = 0;
                    if ((rc = dc_seek(r, &r->dc[i], far))) return rc;
                }
            if (agree) {
                *g = far;
                break;
            }
        }
    } else {
        for (size_t i = 0; i < r->ndc; i++)
            if (r->dc[i].cur && (!*g || before(r, r->dc[i].cur, *g))) *g = r->dc[i].cur;
        if (!*g) return EVS_OK;
    }
    for (size_t i = 0; i < r->ndc; i++)
        if (r->dc[i].cur == *g && (rc = dc_step(r, &r->dc[i]))) return rc;
    return EVS_OK;
}

/*
 * A lost range between the reader's position and the next candidate g (0:
 * none, the end of the log), in the read's direction; NULL if none.
 */
static const evs_lost_range *lost_before(const evs_reader *r, uint64_t g) {
    const evs_store *s = r->s;
    if (r->dir == EVS_FORWARD) {
        uint64_t lim = g ? g : r->head + 1;
        for (size_t i = 0; i < s->nlost; i++)
            if (s->lost[i].last >= r->gpos && s->lost[i].first < lim && s->lost[i].first <= r->head)
                return &s->lost[i];
    } else {
        for (size_t i = s->nlost; i-- > 0;)
            if (s->lost[i].first <= r->gpos && s->lost[i].last > g && r->gpos >= 1) return &s->lost[i];
    }
    return NULL;
}

static int next_all(evs_reader *r, const evs_event **ev) {
    int rc;
    for (;;) {
        uint64_t g;
        if (r->exhausted) return EVS_DONE;
        if (r->kind == RD_INDEX) {
            if (r->have_pend) g = r->pend, r->have_pend = 0;
            else if (r->gpos < 1 || r->gpos > r->head) g = 0;
            else if ((rc = next_candidate(r, &g))) return rc;
            if (g && g > r->head) g = 0;
            /* the index cannot say whether lost events would have matched:
               report every lost range before the next candidate */
            const evs_lost_range *L = lost_before(r, g);
            if (L) {
                r->pend = g;
                r->have_pend = 1;
                r->gpos = r->dir == EVS_FORWARD ? L->last + 1 : L->first - 1;
                r->position = r->gpos;
                return lost_err(r, "global positions", L->first, L->last, L->repaired_at);
            }
        } else {
            g = (r->gpos >= 1 && r->gpos <= r->head) ? r->gpos : 0;
        }
        if (!g) {
            r->exhausted = 1;
            r->position = r->dir == EVS_FORWARD ? r->head + 1 : 0;
            return EVS_DONE;
        }
        if ((rc = load_gpos(r, g))) {
            if (rc == EVS_ELOST) {
                r->gpos = r->dir == EVS_FORWARD ? r->lost_last + 1 : r->lost_first - 1;
                r->position = r->gpos;
            }
            return rc;
        }
        r->gpos = r->dir == EVS_FORWARD ? g + 1 : g - 1;
        r->position = r->gpos;
        /* recorded_at grows with the position: once past the range, stop */
        if (r->dir == EVS_FORWARD && r->until && r->ev.recorded_at >= r->until) {
            r->exhausted = 1;
            r->position = g;
            return EVS_DONE;
        }
        if (r->dir == EVS_BACKWARD && r->since && r->ev.recorded_at < r->since) {
            r->exhausted = 1;
            r->position = g;
            return EVS_DONE;
        }
        if (matches(r, &r->ev)) {
            *ev = &r->ev;
            return EVS_OK;
        }
    }
}

/*
 * The writer remapped the index since this reader last looked: its
 * transaction (a snapshot) is still good, its cursors are not.  Renew them
 * and put each back where it stood.
 */
static int reader_renew(evs_reader *r) {
    uint64_t g = atomic_load(&r->s->ix.gen);
    if (g == r->gen) return EVS_OK;
    r->gen = g;
    int rc = 0;
    if (r->rec_cur) rc = mdb_cursor_renew(r->txn, r->rec_cur);
    if (!rc && r->cur) {
        rc = mdb_cursor_renew(r->txn, r->cur);
        r->started = 0; /* the next step seeks its position again */
    }
    if (rc) return evs__index_err(rc, "renew a cursor after the index map grew");
    for (size_t i = 0; i < r->ndc; i++) {
        dupcur *d = &r->dc[i];
        if ((rc = mdb_cursor_renew(r->txn, d->c))) return evs__index_err(rc, "renew a cursor after the index map grew");
        if (d->cur && (rc = dc_seek(r, d, d->cur))) return rc;
    }
    return EVS_OK;
}

int evs_reader_next(evs_reader *r, const evs_event **ev) {
    if (r && r->engine && ev) return engine_next(r, ev);
    if (!r || !ev) return evs__err(EVS_EINVAL, "reader_next: NULL argument");
    *ev = NULL;
    if (r->limit && r->returned >= r->limit) return EVS_DONE;
    evs__index_rlock(&r->s->ix);
    int rc = reader_renew(r);
    /* what stream metadata hides is passed over like a filtered-out event:
       the reader's position still moves past it */
    while (!rc) {
        rc = r->kind == RD_STREAM ? next_stream(r, ev) : next_all(r, ev);
        if (rc || evs_event_visible(r->s, *ev)) break;
        *ev = NULL;
    }
    if (rc == EVS_OK && (rc = evs__crypt_open_event(r->s, &r->crd, &r->ev))) *ev = NULL;
    evs__index_runlock(&r->s->ix);
    if (rc == EVS_OK) r->returned++;
    return rc;
}

const evs__crypt_rd *evs__reader_crypt(const evs_reader *r) { return &r->crd; }

uint64_t evs_reader_position(const evs_reader *r) {
    if (r && r->engine) return r->engine->reader_position(r->impl);
    return r ? r->position : 0;
}

int evs_reader_lost(const evs_reader *r, uint64_t *first, uint64_t *last) {
    if (!r || !first || !last) return evs__err(EVS_EINVAL, "reader_lost: NULL argument");
    if (!r->lost_last) return evs__err(EVS_ENOTFOUND, "reader_lost: this reader has reported no lost range");
    *first = r->lost_first;
    *last = r->lost_last;
    return EVS_OK;
}

/* ------------------------------------------------------- stream info */

static void fill_info(evs_stream_info *out, const char *name, size_t nlen, const evs_ix_stream *st) {
    memset(out, 0, sizeof *out);
    memcpy(out->name, name, nlen);
    memcpy(out->stream_type, st->stype, st->stype_len);
    out->version = st->version;
    out->first_global_position = st->first_gpos;
    out->last_global_position = st->last_gpos;
    out->created_at = st->created;
    out->updated_at = st->updated;
}

int evs_stream_get_info(evs_store *s, const char *stream, evs_stream_info *out) {
    if (s && s->engine) return evs__store_engine_info(s, stream, out);
    size_t slen;
    int rc;
    if (!s || !s->dir) return evs__err(EVS_ECLOSED, "info: the store is not open");
    if (!out) return evs__err(EVS_EINVAL, "info: out is NULL");
    if ((rc = evs__check_stream_name(s, stream, &slen))) return rc;
    MDB_txn *txn;
    if ((rc = evs__index_rbegin(&s->ix, &txn))) return rc;
    evs_ix_stream st;
    rc = evs__index_stream_get(&s->ix, txn, stream, slen, &st);
    if (rc == EVS_OK && evs__meta_state(s, stream, slen, st.version))
        rc = evs__err(EVS_ENOTFOUND, "stream \"%s\" not found (deleted)", stream);
    else if (rc == EVS_OK) fill_info(out, stream, slen, &st);
    else if (rc == EVS_ENOTFOUND) rc = evs__err(EVS_ENOTFOUND, "stream \"%s\" not found", stream);
    evs__index_rend(&s->ix, txn);
    return rc;
}

int evs_list_streams(evs_store *s, const char *prefix, const char *after, evs_stream_info *out, size_t max,
                     size_t *count) {
    if (s && s->engine) return s->engine->list_streams(s->eng, prefix, after, out, max, count);
    int rc;
    if (!s || !s->dir) return evs__err(EVS_ECLOSED, "list: the store is not open");
    if (!count || (max && !out)) return evs__err(EVS_EINVAL, "list: NULL argument");
    *count = 0;
    size_t plen = prefix ? strlen(prefix) : 0;
    if (plen > EVS_MAX_STREAM_NAME) return EVS_OK;
    MDB_txn *txn;
    MDB_cursor *cur;
    if ((rc = evs__index_rbegin(&s->ix, &txn))) return rc;
    if ((rc = mdb_cursor_open(txn, s->ix.streams, &cur))) {
        evs__index_rend(&s->ix, txn);
        return evs__index_err(rc, "open cursor");
    }
    MDB_val k, v;
    const char *start = prefix ? prefix : "";
    if (after && strcmp(after, start) > 0) start = after;
    k.mv_size = strlen(start);
    k.mv_data = (void *)start;
    rc = k.mv_size ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE) : mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    int err = EVS_OK;
    while (rc == 0 && *count < max) {
        if (plen && (k.mv_size < plen || memcmp(k.mv_data, prefix, plen))) break;
        int skip = after && k.mv_size == strlen(after) && !memcmp(k.mv_data, after, k.mv_size);
        if (!skip) {
            evs_ix_stream st;
            if ((err = evs__index_stream_decode(&v, &st))) break;
            /* deleted streams are not listed: they read as not found */
            if (!evs__meta_state(s, k.mv_data, k.mv_size, st.version)) {
                fill_info(&out[*count], k.mv_data, k.mv_size, &st);
                (*count)++;
            }
        }
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (!err && rc && rc != MDB_NOTFOUND) err = evs__index_err(rc, "list streams");
    rc = err;
    mdb_cursor_close(cur);
    evs__index_rend(&s->ix, txn);
    return rc;
}

/* ------------------------------------------------------------- check */

/*
 * check walks the log (evs__log_check) and, in the same order, the index's
 * `records`: every valid frame must be the index's record at that position
 * and location, every index record must be a valid frame (an index ahead of
 * the log is an error, not "ok"), and every event must be found through
 * event_ids and stream_ev where it is.  Counts then show that the index
 * holds nothing else.
 */
typedef struct check_ctx {
    evs_store *s;
    MDB_txn *txn;
    MDB_cursor *rec, *sev, *tag;
    evs_check_report *rep;
    int rec_more;              /* rec stands on the next index record to match */
    MDB_val rk, rv;
    uint64_t ix_events, lost_positions, ix_tags;
    /* the stream of the last record seen: its id */
    char last_stream[EVS_MAX_STREAM_NAME + 1];
    size_t last_len;
    uint64_t last_sid;
} check_ctx;

static void check_error(check_ctx *c, const evs_frame *f, const char *what) {
    if (c->rep->errors++ == 0)
        snprintf(c->rep->first_error, sizeof c->rep->first_error,
                 "segment %08u.seg offset %u (global position %llu): %s", EVS_LSN_SEG(f->at), EVS_LSN_OFF(f->at),
                 (unsigned long long)f->first_gpos, what);
}

static void check_error_ix(check_ctx *c, uint64_t gpos, evs_lsn lsn, const char *what) {
    if (c->rep->errors++ == 0)
        snprintf(c->rep->first_error, sizeof c->rep->first_error,
                 "index record at global position %llu (segment %08u.seg offset %u): %s", (unsigned long long)gpos,
                 EVS_LSN_SEG(lsn), EVS_LSN_OFF(lsn), what);
}

/* Report index records before global position g that no valid frame matched. */
static int check_ix_upto(check_ctx *c, uint64_t g) {
    while (c->rec_more && c->rk.mv_size == 8 && evs__get64be(c->rk.mv_data) < g) {
        uint64_t first = evs__get64be(c->rk.mv_data);
        evs_lsn lsn = c->rv.mv_size == 12 ? evs__get64(c->rv.mv_data) : 0;
        check_error_ix(c, first, lsn, "no valid record of the log is there (the log is damaged, or ends before the "
                                      "index's head)");
        int rc = mdb_cursor_get(c->rec, &c->rk, &c->rv, MDB_NEXT);
        if (rc == MDB_NOTFOUND) c->rec_more = 0;
        else if (rc) return evs__index_err(rc, "check records");
    }
    return EVS_OK;
}

static uint64_t check_sid(check_ctx *c, const char *name, size_t len) {
    if (len == c->last_len && !memcmp(name, c->last_stream, len)) return c->last_sid;
    evs_ix_stream st;
    if (evs__index_stream_get(&c->s->ix, c->txn, name, len, &st)) return 0;
    memcpy(c->last_stream, name, len);
    c->last_len = len;
    c->last_sid = st.id;
    return st.id;
}

typedef struct check_tag {
    check_ctx *c;
    uint8_t gbe[8];
} check_tag;

/* Does `tags` hold (tag, gpos)? */
static int check_one_tag(void *arg, const char *tag, size_t n) {
    check_tag *t = arg;
    MDB_val k = {n, (void *)tag}, v = {8, t->gbe};
    if (mdb_cursor_get(t->c->tag, &k, &v, MDB_GET_BOTH)) return 1;
    t->c->ix_tags++;
    return 0;
}

/* Does stream_ev say (sid, spos) -> (lsn, idx)? */
static int check_sev(check_ctx *c, uint64_t sid, uint64_t spos, evs_lsn lsn, uint32_t idx) {
    uint8_t kb[16];
    evs__put64be(kb, sid);
    evs__put64be(kb + 8, spos);
    MDB_val k = {16, kb}, v;
    if (mdb_get(c->txn, c->s->ix.stream_ev, &k, &v) || v.mv_size != 12) return 0;
    return evs__get64(v.mv_data) == lsn && evs__get32((uint8_t *)v.mv_data + 8) == idx;
}

static int check_frame(void *arg, const evs_frame *f) {
    check_ctx *c = arg;
    int rc = check_ix_upto(c, f->first_gpos);
    if (rc) return rc;
    if (!c->rec_more || evs__get64be(c->rk.mv_data) != f->first_gpos || c->rv.mv_size != 12 ||
        evs__get64(c->rv.mv_data) != f->at || evs__get32((uint8_t *)c->rv.mv_data + 8) != f->count) {
        check_error(c, f, "record missing from or different in the index");
        return 0;
    }
    if ((rc = mdb_cursor_get(c->rec, &c->rk, &c->rv, MDB_NEXT)) == MDB_NOTFOUND) c->rec_more = 0;
    else if (rc) return evs__index_err(rc, "check records");
    if (f->flags & EVS_FRAME_LOST) {
        c->rep->lost_events += f->count;
        evs_lost_iter it = {0, 0};
        evs_lost_stream e;
        while ((rc = evs__lost_next(f->payload, f->len, &it, &e, NULL)) == EVS_OK) {
            uint64_t sid = check_sid(c, e.stream, e.stream_len);
            for (uint32_t i = 0; i < e.count; i++)
                if (!sid || !check_sev(c, sid, e.first + i, f->at, EVS_IX_LOST)) {
                    check_error(c, f, "a stream position this repair record keeps is missing from the index");
                    return 0;
                }
            c->lost_positions += e.count;
        }
        if (rc != EVS_DONE) check_error(c, f, "malformed repair record inside a frame whose checksum verifies");
        return 0;
    }
    const char *name;
    size_t nlen;
    uint64_t sid = 0;
    if (evs__record_stream(f->payload, f->len, &name, &nlen) == EVS_OK) sid = check_sid(c, name, nlen);
    size_t off = evs__record_first_event(f->payload, f->len);
    for (uint32_t i = 0; i < f->count; i++) {
        evs_event ev;
        size_t next = off ? evs__record_decode(f->payload, f->len, off, f->first_gpos, i, &ev) : 0;
        if (!next) {
            check_error(c, f, "malformed event inside a record whose checksum verifies");
            return 0;
        }
        uint64_t g, esid, sp;
        rc = evs__index_event_id_get(&c->s->ix, c->txn, &ev.event_id, &g, &esid, &sp);
        if (rc == EVS_ENOTFOUND || (!rc && (g != ev.global_position || sp != ev.stream_position))) {
            check_error(c, f, "event id missing from or different in the index");
            return 0;
        }
        if (rc) return rc;
        if (!sid || esid != sid || !check_sev(c, sid, ev.stream_position, f->at, i)) {
            check_error(c, f, "stream position missing from or different in the index");
            return 0;
        }
        if (c->tag && ev.tags_len) {
            check_tag t = {c, {0}};
            evs__put64be(t.gbe, ev.global_position);
            if (evs__index_each_tag(ev.tags, ev.tags_len, check_one_tag, &t)) {
                check_error(c, f, "tag entry missing from the index (or the event's tags are malformed)");
                return 0;
            }
        }
        c->ix_events++;
        off = next;
    }
    return 0;
}

int evs_store_check(evs_store *s, evs_check_report *rep) {
    if (s && s->engine) {
        if (!rep) return evs__err(EVS_EINVAL, "check: report is NULL");
        return s->engine->check ? s->engine->check(s->eng, rep) : evs__engine_unsupported(s->engine, "check");
    }
    if (!s || !s->dir || !rep) return evs__err(EVS_EINVAL, "check: store not open or report is NULL");
    memset(rep, 0, sizeof *rep);
    check_ctx c;
    memset(&c, 0, sizeof c);
    c.s = s;
    c.rep = rep;
    /* the locks in the readers' order (reader_new): the index's, then pub */
    evs__index_rlock(&s->ix);
    evs__log_pub_rlock(s->log);
    int rc = evs__index_txn_read(&s->ix, &c.txn);
    uint64_t lgen = rc ? 0 : evs__log_pin(s->log);
    evs__log_pub_runlock(s->log);
    if (rc) {
        evs__index_runlock(&s->ix);
        return rc;
    }
    if ((rc = mdb_cursor_open(c.txn, s->ix.records, &c.rec))) {
        evs__log_unpin(s->log, lgen);
        evs__index_rend(&s->ix, c.txn);
        return evs__index_err(rc, "open cursor");
    }
    if (s->ix.tags && (rc = mdb_cursor_open(c.txn, s->ix.tags, &c.tag))) {
        evs__log_unpin(s->log, lgen);
        mdb_cursor_close(c.rec);
        evs__index_rend(&s->ix, c.txn);
        return evs__index_err(rc, "open cursor");
    }
    rc = mdb_cursor_get(c.rec, &c.rk, &c.rv, MDB_FIRST);
    c.rec_more = rc == 0;
    evs_lsn ck = 0;
    uint64_t ck_next = 1;
    if (evs__index_checkpoint_get(&s->ix, c.txn, &ck, &ck_next)) ck_next = 1;
    rep->index_head = ck_next - 1;
    evs_log_check lc;
    memset(&lc, 0, sizeof lc);
    /* only what the snapshot indexed: appends may go on meanwhile */
    rc = evs__log_check_at(s->log, lgen, ck, check_frame, &c, &lc);
    if (!rc) rc = check_ix_upto(&c, UINT64_MAX); /* index records past the log's valid end */
    if (!rc) {
        /* the index holds nothing but what the walk matched */
        MDB_stat st;
        if (!mdb_stat(c.txn, s->ix.event_ids, &st) && st.ms_entries != c.ix_events && !lc.errors)
            check_error_ix(&c, 0, 0, "event_ids holds entries for events the log does not have");
        if (!mdb_stat(c.txn, s->ix.stream_ev, &st) && st.ms_entries != c.ix_events + c.lost_positions &&
            !lc.errors)
            check_error_ix(&c, 0, 0, "stream_ev holds entries for events the log does not have");
        if (c.tag && !mdb_stat(c.txn, s->ix.tags, &st) && st.ms_entries != c.ix_tags && !lc.errors)
            check_error_ix(&c, 0, 0, "tags holds entries for tags the log's events do not carry");
    }
    if (c.tag) mdb_cursor_close(c.tag);
    mdb_cursor_close(c.rec);
    evs__index_rend(&s->ix, c.txn);
    evs__log_unpin(s->log, lgen);
    if (rc) return rc;
    rep->records = lc.frames;
    rep->events = lc.events;
    rep->segments = lc.segments;
    if (lc.events != rep->index_head && rep->errors == 0 && lc.errors == 0) {
        rep->errors++;
        snprintf(rep->first_error, sizeof rep->first_error,
                 "the index's head is global position %llu, but the log's valid records end at %llu",
                 (unsigned long long)rep->index_head, (unsigned long long)lc.events);
    }
    if (lc.errors) { /* log damage first: it is what a user must act on */
        snprintf(rep->first_error, sizeof rep->first_error, "%s", lc.first_error);
        rep->errors += lc.errors;
    }
    if (rep->errors) return evs__err(EVS_ECORRUPT, "check found %llu problem(s); first: %s",
                                     (unsigned long long)rep->errors, rep->first_error);
    return EVS_OK;
}
