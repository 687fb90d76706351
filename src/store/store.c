/*
 * store.c — the store: open and recovery, validation, and the group-commit
 * writer behind evs_append.
 *
 * Data flow of an append:
 *   caller thread   validate names and JSON, generate ids, encode the record
 *                   (no lock held), enqueue; wait, or lead if at the front
 *   leader          take every queued request; in ONE LMDB write txn check
 *                   each request's expected version, event ids and DCB
 *                   condition against the index (the txn sees the batch's
 *                   own earlier requests: each request's index entries are
 *                   put before the next one is checked), assign positions,
 *                   copy frames into the log's
 *                   buffer and add index entries; then one write and one
 *                   fdatasync of the log; then commit the txn; publish the
 *                   new head; wake everyone in the batch.  When the batch
 *                   ends with a big request (EVS_OVERLAP_EVENTS), the log's
 *                   flush thread writes and syncs while the leader puts that
 *                   request's index entries; the commit still follows both.
 *
 * Invariants:
 *   1. A request is acknowledged only after its frame is durable per the
 *      durability mode (sync: fdatasync returned 0).
 *   2. The index never runs ahead of the log: its txn commits after the log
 *      write (and sync), and open rebuilds it when its checkpoint lies
 *      beyond the log's valid end.
 *   3. Once a write or sync fails the store is failed (sticky): the batch is
 *      not acknowledged, the txn is aborted, and every later append returns
 *      EVS_EFAILED until the store is reopened.  A failed fdatasync is never
 *      retried (the kernel may have dropped the dirty pages).
 *   4. recorded_at never decreases along the global order, so a time range
 *      maps to a position range.
 *
 * The index is MDB_NOSYNC: a process crash loses nothing (the page cache
 * survives), but after an OS crash its unsynced pages cannot be trusted.
 * The "state" key remembers the boot id of the session that opened it and
 * whether it closed cleanly; an unclean close under another boot id
 * rebuilds the index from the log.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"
#include "core/json.h"
#include "log/record.h"
#include "store/crypt.h"
#include "store/store_access.h"
#include "store/store_internal.h"

#define EVS_BATCH_MAX_REQS 4096
#define EVS_BATCH_MAX_BYTES (64u * 1024 * 1024)
#define EVS_REINDEX_TXN_FRAMES 20000
/* Events in a batch's last request from which its index entries are put
   while the log's flush thread writes and syncs (cheaper ones are not worth
   the two cross-thread wake-ups: ~2 us of index work per event) */
#define EVS_OVERLAP_EVENTS 64

struct evs_append_req {
    const char *stream;
    size_t stream_len;
    int64_t expected;
    const evs_append_condition *cond; /* NULL: unconditional; the caller's, valid while it waits */
    uint8_t *payload;
    size_t len;
    uint32_t count;
    const evs_uuid *ids;
    const evs__meta_write *mw;  /* a metadata write (meta.c) for mw->target, else NULL */
    uint64_t target_version;    /* with mw: that stream's version when written */
    evs_lsn at;               /* where its frame went in the log */
    int rc;
    int ids_given;            /* some event ids came from the caller (idempotency lookups needed) */
    int sync_only;            /* the batch-mode syncer's request: no frame, just an fdatasync */
    int (*excl)(void *arg);   /* evs__store_exclusive: run alone in the writer's place, no frame */
    void *excl_arg;
    _Atomic uint32_t state;   /* REQ_*: its caller sleeps on it (futex) until done or asked to lead */
    void (*done)(evs_append_req *r); /* asynchronous (evs__store_append_async): nobody sleeps on it; the
                                        leader calls this once the batch is done, and r is gone after */
    evs_append_result res;
    char msg[512];
    evs_append_req *next;
};

/* ------------------------------------------------------------ settings */

int evs_store_create(evs_store **out) {
    if (!out) return evs__err(EVS_EINVAL, "evs_store_create: out is NULL");
    *out = NULL;
    evs_store *s = calloc(1, sizeof *s);
    if (!s) return evs__err(EVS_ENOMEM, "out of memory allocating a store handle");
    s->durability = EVS_DURABILITY_SYNC;
    s->batch_ms = 10;
    s->segment_size = 64u << 20;
    s->zero_ahead = EVS_LOG_ZERO_AHEAD;
    s->map_size = (uint64_t)64 << 30;
    s->lim_event_bytes = EVS_MAX_EVENT_BYTES;
    s->lim_events = EVS_MAX_EVENTS_PER_APPEND;
    s->lim_append_bytes = EVS_MAX_APPEND_BYTES;
    s->lim_stream_name = EVS_MAX_STREAM_NAME;
    s->lock_fd = -1;
    *out = s;
    return EVS_OK;
}

static int not_open(const evs_store *s, const char *what) {
    if (!s) return evs__err(EVS_EINVAL, "%s: store is NULL", what);
    if (s->dir) return evs__err(EVS_EINVAL, "%s: the store is already open", what);
    return EVS_OK;
}

int evs_store_set_durability(evs_store *s, evs_durability mode, unsigned batch_ms) {
    int rc = not_open(s, "set durability");
    if (rc) return rc;
    if (mode != EVS_DURABILITY_SYNC && mode != EVS_DURABILITY_BATCH && mode != EVS_DURABILITY_NONE)
        return evs__err(EVS_EINVAL, "unknown durability mode %d", (int)mode);
    if (mode == EVS_DURABILITY_BATCH && (batch_ms == 0 || batch_ms > 60000))
        return evs__err(EVS_EINVAL, "batch durability needs an interval of 1..60000 ms, got %u", batch_ms);
    s->durability = mode;
    if (batch_ms) s->batch_ms = batch_ms;
    return EVS_OK;
}

int evs_store_set_segment_size(evs_store *s, uint64_t bytes) {
    int rc = not_open(s, "set segment size");
    if (rc) return rc;
    if (bytes < 64 * 1024 || bytes > ((uint64_t)1 << 31))
        return evs__err(EVS_EINVAL, "segment size %llu is outside 64 KiB..2 GiB", (unsigned long long)bytes);
    s->segment_size = bytes;
    return EVS_OK;
}

int evs_store_set_index_map_size(evs_store *s, uint64_t bytes) {
    int rc = not_open(s, "set index map size");
    if (rc) return rc;
    if (bytes < (1u << 20)) return evs__err(EVS_EINVAL, "index map size must be at least 1 MiB");
    s->map_size = bytes;
    return EVS_OK;
}

int evs_store_set_limit(evs_store *s, evs_limit which, uint64_t value) {
    int rc = not_open(s, "set limit");
    if (rc) return rc;
    uint64_t *slot, hard;
    const char *name;
    switch (which) {
    case EVS_LIMIT_EVENT_BYTES: slot = &s->lim_event_bytes, hard = EVS_MAX_EVENT_BYTES, name = "event bytes"; break;
    case EVS_LIMIT_EVENTS_PER_APPEND:
        slot = &s->lim_events, hard = EVS_MAX_EVENTS_PER_APPEND, name = "events per append";
        break;
    case EVS_LIMIT_APPEND_BYTES: slot = &s->lim_append_bytes, hard = EVS_MAX_APPEND_BYTES, name = "append bytes"; break;
    case EVS_LIMIT_STREAM_NAME: slot = &s->lim_stream_name, hard = EVS_MAX_STREAM_NAME, name = "stream name"; break;
    default: return evs__err(EVS_EINVAL, "unknown limit %d", (int)which);
    }
    if (value == 0) return evs__err(EVS_EINVAL, "limit %s must be at least 1", name);
    if (value > hard)
        return evs__err(EVS_ELIMIT, "limit %s cannot be raised above %llu (asked %llu)", name,
                        (unsigned long long)hard, (unsigned long long)value);
    *slot = value;
    return EVS_OK;
}

/* Test hook (declared in store/store_testing.h): swap the I/O table. */
int evs__store_set_io(evs_store *s, const evs_io *io);
int evs__store_set_io(evs_store *s, const evs_io *io) {
    int rc = not_open(s, "set io");
    if (rc) return rc;
    s->io = io;
    return EVS_OK;
}

/* Test hook (declared in store/store_testing.h). */
int evs__store_set_zero_ahead(evs_store *s, uint64_t bytes);
int evs__store_set_zero_ahead(evs_store *s, uint64_t bytes) {
    int rc = not_open(s, "set zero-ahead");
    if (rc) return rc;
    s->zero_ahead = bytes;
    return EVS_OK;
}

/* Test hook (declared in store/store_testing.h). */
int evs__store_set_index_faults(evs_store *s, int no_reserve, int fail_commits);
int evs__store_set_index_faults(evs_store *s, int no_reserve, int fail_commits) {
    if (!s) return evs__err(EVS_EINVAL, "set index faults: store is NULL");
    s->t_no_reserve = no_reserve;
    s->t_fail_commits = fail_commits;
    return EVS_OK;
}

/* Test hook (declared in store/store_testing.h). */
uint64_t evs__store_reindexed(evs_store *s);
uint64_t evs__store_reindexed(evs_store *s) { return s ? atomic_load(&s->t_reindexed) : 0; }

/* ----------------------------------------------------------- validation */

int evs__check_stream_name(const evs_store *s, const char *stream, size_t *len_out) {
    if (!stream) return evs__err(EVS_EINVAL, "stream name is NULL");
    size_t n = strlen(stream); /* whole: a refusal names the real length */
    int rc = evs__name_ok("stream name", stream, n, s ? s->lim_stream_name : EVS_MAX_STREAM_NAME);
    if (rc) return rc;
    if (stream[0] == '$') return evs__err(EVS_EINVAL, "stream name \"%s\": names starting with '$' are reserved", stream);
    *len_out = n;
    return EVS_OK;
}

typedef struct prepared {
    evs_uuid *ids;
    const char **stypes;
    size_t *stype_lens;
    char **tags;
    size_t *tag_lens;
    evs_event_in *ev; /* copies with defaults applied */
    int ids_given;    /* some event_id came from the caller */
} prepared;

static void prepared_free(prepared *p, size_t n) {
    if (p->tags)
        for (size_t i = 0; i < n; i++) free(p->tags[i]);
    free(p->ids);
    free(p->stypes);
    free(p->stype_lens);
    free(p->tags);
    free(p->tag_lens);
    free(p->ev);
}

static int prepare(evs_store *s, const char *stream, size_t slen, const evs_event_in *events, size_t n,
                   prepared *p, size_t *total_out) {
    int rc;
    memset(p, 0, sizeof *p);
    p->ids = calloc(n, sizeof *p->ids);
    p->stypes = calloc(n, sizeof *p->stypes);
    p->stype_lens = calloc(n, sizeof *p->stype_lens);
    p->tags = calloc(n, sizeof *p->tags);
    p->tag_lens = calloc(n, sizeof *p->tag_lens);
    p->ev = calloc(n, sizeof *p->ev);
    if (!p->ids || !p->stypes || !p->stype_lens || !p->tags || !p->tag_lens || !p->ev)
        return evs__err(EVS_ENOMEM, "out of memory preparing %zu events", n);
    int64_t now = evs_now_ns();
    uint64_t total = 0;
    const evs__event_limits lim = {s->lim_event_bytes, s->lim_append_bytes, EVS_REC_EVENT_HEADER};
    for (size_t i = 0; i < n; i++) {
        const evs_event_in *e = &events[i];
        evs_event_in *c = &p->ev[i];
        *c = *e;
        if ((rc = evs__event_check(&lim, stream, slen, e, i, &p->stypes[i], &p->stype_lens[i], &p->tags[i],
                                   &p->tag_lens[i], &total)))
            return rc;
        if (e->event_id) {
            p->ids[i] = *e->event_id;
            p->ids_given = 1;
        } else {
            evs_uuid_v7(&p->ids[i]);
        }
        if (!c->occurred_at) c->occurred_at = now;
        if (!c->event_version) c->event_version = 1;
        if (s->validator && stream[0] != '$' &&
            (rc = s->validator(s->validator_ctx, stream, slen, p->stypes[i], p->stype_lens[i], c, i)))
            return rc;
    }
    /* the same id twice in one append can never be stored */
    if ((rc = evs__ids_unique(p->ids, n))) return rc;
    *total_out = (size_t)total;
    return EVS_OK;
}

/* --------------------------------------------------------------- writer */

static void req_fail(evs_append_req *r, int rc) {
    r->rc = rc;
    snprintf(r->msg, sizeof r->msg, "%s", evs_errmsg());
}

static void set_failed(evs_store *s, int rc) {
    int expected = 0;
    if (atomic_compare_exchange_strong(&s->failed, &expected, rc)) {
        snprintf(s->failed_msg, sizeof s->failed_msg, "%s", evs_errmsg());
        atomic_store_explicit(&s->failed_msg_ready, 1, memory_order_release);
    }
}

/* The first failure's message once it is written (other threads read it while the winner writes). */
static const char *failed_msg(evs_store *s) {
    return atomic_load_explicit(&s->failed_msg_ready, memory_order_acquire) ? s->failed_msg
                                                                            : "a write or fdatasync failed";
}

static int conflict(evs_append_req *r, uint64_t actual) {
    char exp[32];
    if (r->expected == EVS_EXPECT_ANY) snprintf(exp, sizeof exp, "any");
    else if (r->expected == EVS_EXPECT_EXISTS) snprintf(exp, sizeof exp, "exists");
    else snprintf(exp, sizeof exp, "%lld", (long long)r->expected);
    r->res.actual_version = actual;
    return evs__err(EVS_ECONFLICT, "Concurrency conflict: expected version %s, actual version %llu", exp,
                    (unsigned long long)actual);
}

/* A log sync that began at t0 (monotonic ns): count it in the histogram. */
static void note_sync(evs_store *s, int64_t t0) {
    static const uint64_t bounds[EVS_SYNC_BUCKETS] = EVS_SYNC_BOUNDS_US;
    uint64_t ns = (uint64_t)(evs__mono_ns() - t0), us = ns / 1000;
    size_t i = 0;
    while (i < EVS_SYNC_BUCKETS && us > bounds[i]) i++;
    atomic_fetch_add_explicit(&s->st_sync_hist[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->st_sync_ns, ns, memory_order_relaxed);
    atomic_fetch_add(&s->st_syncs, 1);
    int64_t e = atomic_load_explicit(&s->sync_ewma_ns, memory_order_relaxed);
    atomic_store_explicit(&s->sync_ewma_ns, e ? e + ((int64_t)ns - e) / 8 : (int64_t)ns, memory_order_relaxed);
}

static void note_batch(evs_store *s, uint64_t appends) {
    static const uint64_t bounds[EVS_BATCH_BUCKETS] = EVS_BATCH_BOUNDS;
    size_t i = 0;
    while (i < EVS_BATCH_BUCKETS && appends > bounds[i]) i++;
    atomic_fetch_add_explicit(&s->st_batch_hist[i], 1, memory_order_relaxed);
    atomic_fetch_add(&s->st_batches, 1);
}

/* Event idx of a record payload, decoded into ev (views into p). */
static int decode_nth(const uint8_t *p, size_t len, uint64_t first_gpos, uint32_t idx, evs_event *ev) {
    size_t off = evs__record_first_event(p, len);
    for (uint32_t i = 0; off; i++) {
        size_t nx = evs__record_decode(p, len, off, first_gpos, i, ev);
        if (i == idx) return nx ? EVS_OK : evs__err(EVS_ECORRUPT, "record at global position %llu: event %u is "
                                                    "malformed", (unsigned long long)first_gpos, idx + 1);
        off = nx;
    }
    return evs__err(EVS_ECORRUPT, "record at global position %llu: no event %u", (unsigned long long)first_gpos,
                    idx + 1);
}

/*
 * The stored event at global position g, for comparing a retry with it:
 * from an earlier request of this batch (its frame is only in the log's
 * buffer yet), else from the log.  *cur is opened on first use; the
 * caller closes it.
 */
static int stored_event(evs_store *s, MDB_txn *txn, MDB_cursor **cur, evs_append_req *batch, evs_append_req *upto,
                        uint64_t g, evs_event *ev) {
    for (evs_append_req *q = batch; q && q != upto; q = q->next) {
        if (q->sync_only || q->rc || q->res.idempotent || !q->res.first_global_position) continue;
        if (g >= q->res.first_global_position && g <= q->res.last_global_position)
            return decode_nth(q->payload, q->len, q->res.first_global_position,
                              (uint32_t)(g - q->res.first_global_position), ev);
    }
    int rc;
    if (!*cur && (rc = mdb_cursor_open(txn, s->ix.records, cur))) {
        *cur = NULL;
        return evs__index_err(rc, "open records cursor");
    }
    uint64_t first;
    evs_lsn lsn;
    uint32_t count;
    if ((rc = evs__index_find_record(&s->ix, *cur, g, &first, &lsn, &count)))
        return rc == EVS_ENOTFOUND ? evs__err(EVS_EINDEX, "the index names global position %llu, no record holds it",
                                              (unsigned long long)g)
                                   : rc;
    evs_frame f;
    if ((rc = evs__log_read(s->log, lsn, atomic_load(&s->pub_end), &f)))
        return rc == EVS_DONE ? evs__err(EVS_EINDEX, "global position %llu lies past the log's end",
                                         (unsigned long long)g)
                              : rc;
    if ((f.flags & EVS_FRAME_LOST) || g < f.first_gpos || g - f.first_gpos >= f.count)
        return evs__err(EVS_EINDEX, "the index and the log disagree at global position %llu", (unsigned long long)g);
    return decode_nth(f.payload, f.len, f.first_gpos, (uint32_t)(g - f.first_gpos), ev);
}

static int same_bytes(const char *a, size_t an, const char *b, size_t bn) {
    return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

/* What differs between a stored event and its retry (occurred_at aside: it defaults to now), or NULL. */
static const char *differs(const evs_event *a, const evs_event *b) {
    if (!same_bytes(a->event_type, a->event_type_len, b->event_type, b->event_type_len)) return "event_type";
    if (!same_bytes(a->data, a->data_len, b->data, b->data_len)) return "data";
    if (!same_bytes(a->metadata, a->metadata_len, b->metadata, b->metadata_len)) return "metadata";
    if (!same_bytes(a->stream_type, a->stream_type_len, b->stream_type, b->stream_type_len)) return "stream_type";
    if (!same_bytes(a->tags, a->tags_len, b->tags, b->tags_len)) return "tags";
    if (a->has_causation_id != b->has_causation_id ||
        (a->has_causation_id && memcmp(&a->causation_id, &b->causation_id, 16)))
        return "causation_id";
    if (a->has_correlation_id != b->has_correlation_id ||
        (a->has_correlation_id && memcmp(&a->correlation_id, &b->correlation_id, 16)))
        return "correlation_id";
    if (a->event_version != b->event_version) return "event_version";
    return NULL;
}

/*
 * Event ids already stored?  EVS_OK with *idem = 0 when none is (the common
 * path: one index lookup per event, nothing read).  EVS_OK with *idem = 1
 * and the original positions and recorded_at when all are, in order, at
 * the positions this append would name, with the same content (each stored
 * event is read and compared: a different payload under a stored id is
 * EVS_EDUPLICATE, never a silent drop).  An error otherwise; *own says it
 * concerns this request only (the stored event could not be read), not
 * the index.  batch..r: the requests of this batch before r, whose frames
 * are not in the file yet.
 */
static int check_ids(evs_store *s, MDB_txn *txn, evs_append_req *batch, evs_append_req *r, const evs_ix_stream *st,
                     int *idem, int *own) {
    *idem = 0;
    *own = 0;
    uint64_t g0 = 0, sid0 = 0, sp0 = 0;
    size_t found = 0;
    for (uint32_t i = 0; i < r->count; i++) {
        uint64_t g, sid, sp;
        int rc = evs__index_event_id_get(&s->ix, txn, &r->ids[i], &g, &sid, &sp);
        if (rc == EVS_ENOTFOUND) continue;
        if (rc) return rc;
        char b[37];
        evs_uuid_format(&r->ids[i], b);
        if (found == 0 && i == 0) {
            g0 = g, sid0 = sid, sp0 = sp;
        }
        if (i == 0 || (found == i && sid == sid0 && sp == sp0 + i && g == g0 + i)) {
            if (sid != st->id || st->id == 0)
                return evs__err(EVS_EDUPLICATE, "event %u: event_id %s is already stored in another stream (global position %llu)",
                                i + 1, b, (unsigned long long)g);
            found++;
            continue;
        }
        return evs__err(EVS_EDUPLICATE, "event %u: event_id %s is already stored at stream position %llu (global %llu), which this append does not repeat",
                        i + 1, b, (unsigned long long)sp, (unsigned long long)g);
    }
    if (found == 0) return EVS_OK;
    if (found != r->count) {
        char b[37];
        evs_uuid_format(&r->ids[found], b);
        return evs__err(EVS_EDUPLICATE, "event %zu: event_id %s is new but earlier events of this append are already stored; an idempotent retry must repeat the original append exactly",
                        found + 1, b);
    }
    /* all stored, consecutive, same stream: is it the append the caller expects? */
    int ok = r->expected == EVS_EXPECT_ANY || r->expected == EVS_EXPECT_EXISTS ||
             (r->expected >= 0 && (uint64_t)r->expected + 1 == sp0);
    /* "no stream" that re-created a soft-deleted stream started at its truncate_before (meta.c) */
    if (!ok && r->expected == EVS_EXPECT_NO_STREAM && sp0 > 1)
        ok = sp0 == evs__meta_truncate_before(s, r->stream, r->stream_len);
    if (!ok) return conflict(r, st->version);
    /* ...and the same events, not new ones under old ids? */
    MDB_cursor *cur = NULL;
    int rc = EVS_OK;
    int64_t recorded_at = 0;
    size_t off = evs__record_first_event(r->payload, r->len);
    for (uint32_t i = 0; i < r->count && !rc; i++) {
        evs_event was, now;
        if ((rc = stored_event(s, txn, &cur, batch, r, g0 + i, &was))) break;
        if (i == 0) recorded_at = was.recorded_at;
        off = evs__record_decode(r->payload, r->len, off, 0, i, &now);
        const char *what = differs(&was, &now);
        if (what) {
            char b[37];
            evs_uuid_format(&r->ids[i], b);
            rc = evs__err(EVS_EDUPLICATE, "event %u: event_id %s is already stored (global position %llu, stream "
                          "position %llu) with other %s; a retry must repeat the stored event exactly, and a new "
                          "event needs a new event_id", i + 1, b, (unsigned long long)(g0 + i),
                          (unsigned long long)(sp0 + i), what);
        }
    }
    if (cur) mdb_cursor_close(cur);
    if (rc) {
        /* a stored event that cannot be read (damaged, say) fails this
           request alone: the retry cannot be confirmed, the store goes on */
        *own = 1;
        return rc;
    }
    *idem = 1;
    r->res.first_stream_position = sp0;
    r->res.last_stream_position = sp0 + r->count - 1;
    r->res.first_global_position = g0;
    r->res.last_global_position = g0 + r->count - 1;
    r->res.recorded_at = recorded_at;
    r->res.idempotent = 1;
    return EVS_OK;
}

/*
 * Room in the index map a request may take: its entries (names, ids and
 * positions, never data or metadata: at most about 700 bytes an event)
 * and the pages its puts copy.  Generous, but not by its bytes: a 16 MiB
 * event must not need 128 MiB of map, nor be refused at a small limit.
 * An estimate only: MDB_MAP_FULL is handled in whichever step it comes.
 */
static uint64_t index_estimate(const evs_append_req *r) {
    uint64_t by_bytes = 8 * (uint64_t)r->len;
    uint64_t by_entries = (uint64_t)r->count * 2048 + 16384;
    return by_bytes < by_entries ? by_bytes : by_entries;
}

/* mdb_txn_commit, or the test hook's MDB_MAP_FULL (store_testing.h). */
static int batch_commit(evs_store *s, MDB_txn *txn) {
    if (EVS_UNLIKELY(s->t_fail_commits > 0)) {
        s->t_fail_commits--;
        mdb_txn_abort(txn);
        return MDB_MAP_FULL;
    }
    return mdb_txn_commit(txn);
}

/*
 * The index entries of a batch whose frames the log already holds (its
 * commit failed): the same puts in the same order, so the same stream ids,
 * versions and checkpoint.  next: the global position after the batch.
 */
static int reindex_batch(evs_store *s, evs_append_req *batch, uint64_t next) {
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->ix.env, NULL, 0, &txn);
    if (rc) return evs__index_err(rc, "begin write");
    for (evs_append_req *r = batch; r; r = r->next) {
        if (r->sync_only || r->rc != EVS_OK || r->res.idempotent) continue;
        evs_ix_stream st;
        rc = evs__index_stream_get(&s->ix, txn, r->stream, r->stream_len, &st);
        if (rc && rc != EVS_ENOTFOUND) goto fail;
        if ((rc = evs__index_add_record(&s->ix, txn, r->payload, (uint32_t)r->len, r->res.first_global_position,
                                        r->count, r->at, &st)))
            goto fail;
    }
    if ((rc = evs__index_checkpoint_put(&s->ix, txn, evs__log_end(s->log), next))) goto fail;
    rc = batch_commit(s, txn);
    return rc ? evs__index_err(rc, "commit") : EVS_OK;
fail:
    mdb_txn_abort(txn);
    return rc;
}

static void process_batch(evs_store *s, evs_append_req *batch) {
    MDB_txn *txn = NULL;
    int sync_due = 0;
    for (evs_append_req *r = batch; r; r = r->next) sync_due |= r->sync_only;
    int rc = atomic_load(&s->failed);
    if (rc) {
        for (evs_append_req *r = batch; r; r = r->next) {
            evs__err(EVS_EFAILED, "store refuses writes after an earlier failure (%s); reopen it", failed_msg(s));
            req_fail(r, EVS_EFAILED);
        }
        goto done;
    }
    {
        /* keep room in the index map for what this batch may add: a remap
           in the middle of a batch costs a second pass over it */
        uint64_t reserve = 0;
        for (evs_append_req *r = batch; r; r = r->next) reserve += index_estimate(r);
        if (reserve < EVS_IX_MAP_MIN / 2) reserve = EVS_IX_MAP_MIN / 2;
        if (EVS_UNLIKELY(s->t_no_reserve)) reserve = 0;
        if ((rc = evs__index_room(&s->ix, reserve))) {
            /* at its limit: refuse the batch before anything is written (the store stays writable) */
            for (evs_append_req *r = batch; r; r = r->next)
                if (!r->sync_only) req_fail(r, rc);
            goto done;
        }
        evs__index_was_full();
    }
    evs_log_mark mark;
retry:
    if ((rc = mdb_txn_begin(s->ix.env, NULL, 0, &txn))) {
        rc = evs__index_err(rc, "begin write");
        for (evs_append_req *r = batch; r; r = r->next) req_fail(r, rc);
        goto done;
    }
    evs__log_mark(s->log, &mark);
    int64_t now = evs_now_ns();
    if (now < s->last_recorded) now = s->last_recorded;
    uint64_t next = evs__log_next_gpos(s->log), batch_first = next;
    size_t wrote = 0, events = 0, bytes = 0;
    int sync = s->durability == EVS_DURABILITY_SYNC;
    evs_append_req *deferred = NULL; /* its index entries wait for the flush to start */
    evs_ix_stream deferred_st;
    memset(&deferred_st, 0, sizeof deferred_st);
    int tombs = 0;    /* a tombstone was written earlier in this batch */
    int buffered = 0; /* a frame of this batch is in the log's buffer */
    for (evs_append_req *r = batch; r; r = r->next) {
        if (r->sync_only) continue;
        evs_ix_stream st;
        rc = evs__index_stream_get(&s->ix, txn, r->stream, r->stream_len, &st);
        if (rc && rc != EVS_ENOTFOUND) goto fatal;
        /* ids generated here (UUIDv7: time, a per-process counter, 62
           random bits) cannot be stored already: only ids a caller chose
           need the idempotency lookups */
        int idem = 0, own = 0;
        if (r->ids_given && (rc = check_ids(s, txn, batch, r, &st, &idem, &own))) {
            if (rc == EVS_ECONFLICT || rc == EVS_EDUPLICATE || own) {
                req_fail(r, rc);
                continue;
            }
            goto fatal;
        }
        if (idem) continue;
        uint64_t v = st.version;
        /* Deleted streams (meta.c).  A tombstone is for ever: refuse appends
           to the stream and metadata writes over it, also when the tombstone
           is in this very batch, ahead of the request. */
        const char *target = r->mw ? r->mw->target : r->stream;
        size_t target_len = r->mw ? r->mw->target_len : r->stream_len;
        uint64_t tv = v;
        if (r->mw) {
            evs_ix_stream ts;
            int trc = evs__index_stream_get(&s->ix, txn, target, target_len, &ts);
            if (trc && trc != EVS_ENOTFOUND) {
                rc = trc;
                goto fatal;
            }
            tv = trc ? 0 : ts.version;
            r->target_version = tv;
        }
        int dstate = evs__meta_state(s, target, target_len, tv);
        if (dstate != 2 && tombs) {
            for (evs_append_req *q = batch; q != r; q = q->next)
                if (q->rc == EVS_OK && q->mw && q->mw->m.tombstone && q->mw->target_len == target_len &&
                    !memcmp(q->mw->target, target, target_len))
                    dstate = 2;
        }
        if (dstate != 2 && r->mw && r->mw->has_target_expected) {
            int64_t te = r->mw->target_expected;
            int te_ok = te == EVS_EXPECT_ANY || (te == EVS_EXPECT_EXISTS && tv > 0) ||
                        (te == EVS_EXPECT_NO_STREAM && dstate == 1) || (te >= 0 && (uint64_t)te == tv);
            if (!te_ok) {
                r->res.actual_version = tv;
                req_fail(r, evs__err(EVS_ECONFLICT, "Concurrency conflict: stream \"%.*s\": expected version %lld, "
                                     "actual version %llu", (int)target_len, target, (long long)te,
                                     (unsigned long long)tv));
                continue;
            }
        }
        if (dstate == 2) {
            req_fail(r, evs__err(EVS_EDELETED, "stream \"%.*s\" is hard-deleted (tombstone): it can never be "
                                 "written again", (int)target_len, target));
            continue;
        }
        /* a soft-deleted stream reads as absent: "no stream" holds, and
           the new events continue its positions */
        int no_stream_ok = r->expected == EVS_EXPECT_NO_STREAM && !r->mw && dstate == 1;
        if (!no_stream_ok &&
            ((r->expected == EVS_EXPECT_EXISTS && v == 0) || (r->expected >= 0 && (uint64_t)r->expected != v))) {
            req_fail(r, conflict(r, v));
            continue;
        }
        if (r->cond) {
            uint64_t g;
            size_t item;
            if ((rc = evs__index_query_first(&s->ix, txn, r->cond, next - 1, &g, &item))) goto fatal;
            if (g) {
                r->res.condition_position = g;
                req_fail(r, evs__err(EVS_ECONDITION, "append condition failed: the event at global position %llu "
                                     "matches query item %zu and lies after position %llu%s",
                                     (unsigned long long)g, item + 1, (unsigned long long)r->cond->after,
                                     g >= batch_first ? " (it was appended in the same group commit)" : ""));
                continue;
            }
        }
        evs__put64(r->payload + EVS_REC_OFF_STREAM_POS, v + 1);
        evs__put64(r->payload + EVS_REC_OFF_RECORDED_AT, (uint64_t)now);
        evs_lsn at;
        if ((rc = evs__log_append(s->log, r->payload, (uint32_t)r->len, next, r->count, &at))) goto fatal;
        buffered = 1;
        if (sync && !r->next && r->count >= EVS_OVERLAP_EVENTS) {
            /* the batch's last request is a big one: its index entries
               are put while its frame is written and synced (below) */
            deferred = r;
            deferred_st = st;
        } else if ((rc = evs__index_add_record(&s->ix, txn, r->payload, (uint32_t)r->len, next, r->count, at,
                                               &st))) {
            goto fatal;
        }
        r->at = at;
        r->res.first_stream_position = v + 1;
        r->res.last_stream_position = v + r->count;
        r->res.first_global_position = next;
        r->res.last_global_position = next + r->count - 1;
        r->res.recorded_at = now;
        if (r->mw && r->mw->m.tombstone) tombs = 1;
        next += r->count;
        wrote++;
        events += r->count;
        bytes += r->len;
    }
    if (!wrote) {
        mdb_txn_abort(txn);
        goto done;
    }
    rc = EVS_OK; /* a request refused in the loop (a conflict, say) left its code here: it is that request's alone */
    evs_lsn log_end = evs__log_end(s->log);
    int64_t t_sync = evs__mono_ns();
    /* A big last request: hand the write and fdatasync to the log's flush
       thread and put its index entries meanwhile (invariant 2 holds: the
       txn still commits after the sync). */
    int handed = deferred && evs__log_flush_begin(s->log, sync);
    if (deferred)
        rc = evs__index_add_record(&s->ix, txn, deferred->payload, (uint32_t)deferred->len,
                                   deferred->res.first_global_position, deferred->count, deferred->at, &deferred_st);
    if (!rc) rc = evs__index_checkpoint_put(&s->ix, txn, log_end, next);
    if (handed) {
        int frc = evs__log_flush_end(s->log);
        if (frc) {
            /* the frames may have reached the file: no rewind (fatal's first case), the store fails */
            mdb_txn_abort(txn);
            txn = NULL;
            rc = frc;
            goto fatal;
        }
    } else {
        if (rc) goto fatal;
        if ((rc = evs__log_flush(s->log, sync))) goto fatal;
    }
    if (sync) {
        note_sync(s, t_sync);
        s->last_sync_ns = evs__mono_ns();
    } else if (s->durability == EVS_DURABILITY_BATCH) {
        s->unsynced = 1;
    }
    if (rc) {
        /* handed over, and the index entries failed while the batch became durable */
        mdb_txn_abort(txn);
    } else {
        rc = batch_commit(s, txn);
        if (rc) rc = evs__index_err(rc, "commit");
    }
    txn = NULL;
    if (rc) {
        /* The map filled in the commit itself (LMDB saving its free list
           needs pages the puts did not), or in the puts made during the
           flush: the log already holds the batch, so grow the map and
           index the batch again. */
        while (rc && evs__index_was_full() && (rc = evs__index_grow(&s->ix)) == EVS_OK) {
            rc = reindex_batch(s, batch, next);
            if (!rc) atomic_fetch_add(&s->t_reindexed, 1);
        }
        /* otherwise the log holds the batch; the index catches up at the next open */
        if (rc) set_failed(s, rc);
    }
    s->last_recorded = now;
    /* readers must see the new metadata and versions with the events */
    if (!rc)
        for (evs_append_req *r = batch; r; r = r->next)
            if (!r->sync_only && r->rc == EVS_OK && !r->res.idempotent)
                evs__meta_committed(s, r->stream, r->stream_len, r->res.last_stream_position, r->mw,
                                    r->target_version);
    atomic_store(&s->pub_end, evs__log_end(s->log));
    atomic_store(&s->head, next - 1);
    atomic_fetch_add(&s->st_appends, wrote);
    atomic_fetch_add(&s->st_events, events);
    atomic_fetch_add(&s->st_bytes, bytes);
    note_batch(s, wrote);
    goto done;
fatal:
    if (txn && evs__index_was_full()) {
        /* nothing reached the file: take the frames back, grow the map, run the batch again */
        mdb_txn_abort(txn);
        txn = NULL;
        evs__log_rewind(s->log, &mark);
        for (evs_append_req *r = batch; r; r = r->next) {
            r->rc = EVS_OK;
            r->msg[0] = 0;
            memset(&r->res, 0, sizeof r->res);
        }
        if ((rc = evs__index_grow(&s->ix)) == EVS_OK) goto retry;
        for (evs_append_req *r = batch; r; r = r->next)
            if (!r->sync_only) req_fail(r, rc); /* the store stays writable: nothing was written */
        goto done;
    }
    if (!buffered) {
        /* Nothing of this batch reached the log (out of memory, say, before
           the first frame was buffered): the failure is this batch's alone,
           the store takes the next one. */
        if (txn) mdb_txn_abort(txn);
        for (evs_append_req *r = batch; r; r = r->next)
            if (r->rc == EVS_OK && !r->res.idempotent) req_fail(r, rc);
        goto done;
    }
    /* nothing of this batch may be acknowledged or ever reach the file */
    set_failed(s, rc);
    evs__log_poison(s->log, rc);
    if (txn) mdb_txn_abort(txn);
    for (evs_append_req *r = batch; r; r = r->next)
        if (r->rc == EVS_OK && !r->res.idempotent) req_fail(r, rc);
done:
    /* batch mode: fdatasync once the interval has passed since the last one */
    if (s->unsynced && !atomic_load(&s->failed) &&
        (sync_due || evs__mono_ns() >= s->last_sync_ns + (int64_t)s->batch_ms * 1000000)) {
        int64_t t_periodic = evs__mono_ns();
        int src = evs__log_sync(s->log);
        if (src) set_failed(s, src);
        note_sync(s, t_periodic);
        s->unsynced = 0;
        s->last_sync_ns = evs__mono_ns();
    }
}

/*
 * Group commit without a writer thread (leader/follower).  Requests queue
 * in arrival order under s->mu; exactly one thread leads at a time
 * (s->leading).  A caller that queues while nobody leads leads at once, so
 * a lone appender commits on its own thread with no hand-off.  Otherwise it
 * sleeps on its request's state word (a futex, no mutex held) until the
 * leader posts DONE, or LEAD when its request reached the front of the
 * queue as a batch ended.
 *
 * The leader takes every queued request (up to the batch limits), releases
 * the lock, runs the batch, hands the lead to the new front of the queue
 * and only then posts DONE to its members: the next batch starts while the
 * members wake up, and a member never has to take s->mu to learn it is
 * done (waking eight or sixty-four threads that then queue on one mutex was
 * half of the CPU of a commit cycle).
 *
 * Gathering (sync durability only): appenders just released by a batch
 * come back a few microseconds later, while the next leader would already
 * be in its fdatasync, so with N clients the batches alternate between two
 * halves of them.  A leader that sees fewer requests queued than appends in
 * progress (s->inflight counts callers between entry and return of
 * evs_append) waits for the rest, at most a fraction of the last
 * fdatasync's duration, and the last one to queue wakes it.
 *
 * Asynchronous requests (evs__store_append_async) queue the same way but
 * nobody sleeps on them: the leader calls their callback instead of posting
 * DONE, and never hands the lead to one; when only they remain after a
 * batch, the committer thread leads them (committer_main).
 */
enum { REQ_QUEUED = 0, REQ_SLEEPING = 1, REQ_DONE = 2, REQ_LEAD = 3 };

static void futex_wait_u32(_Atomic uint32_t *w, uint32_t val, const struct timespec *rel) {
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT_PRIVATE, val, rel, NULL, 0);
}

static void futex_wake_u32(_Atomic uint32_t *w) { syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0); }

/* Post st to r; its caller may return (and r be gone) as soon as it sees it. */
static void req_post(evs_append_req *r, uint32_t st) {
    if (atomic_exchange_explicit(&r->state, st, memory_order_acq_rel) == REQ_SLEEPING) futex_wake_u32(&r->state);
}

/* Sleep until r is DONE or asked to LEAD; returns which. */
static uint32_t req_wait(evs_append_req *r) {
    for (;;) {
        uint32_t st = atomic_load_explicit(&r->state, memory_order_acquire);
        if (st == REQ_DONE || st == REQ_LEAD) return st;
        if (st == REQ_QUEUED &&
            !atomic_compare_exchange_weak_explicit(&r->state, &st, REQ_SLEEPING, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;
        futex_wait_u32(&r->state, REQ_SLEEPING, NULL);
    }
}

/* Wake a gathering leader. */
static void gather_poke(evs_store *s) {
    atomic_fetch_add(&s->gather_seq, 1);
    futex_wake_u32(&s->gather_seq);
}

/* Longest a leader waits for appenders still on their way (ns). */
static int64_t gather_budget(evs_store *s) {
    int64_t b = atomic_load_explicit(&s->sync_ewma_ns, memory_order_relaxed) / 2;
    return b < 20000 ? 20000 : b > 500000 ? 500000 : b;
}

/* The batch's members are done: wake each caller, or finish each asynchronous append. */
static void batch_done(evs_append_req *batch) {
    for (evs_append_req *r = batch, *nx; r; r = nx) {
        nx = r->next; /* r may be gone once its caller sees DONE */
        if (r->done) r->done(r);
        else req_post(r, REQ_DONE);
    }
}

/* The first queued request whose caller sleeps on it (mu held): who can take the lead over. */
static evs_append_req *first_waiter(evs_store *s) {
    for (evs_append_req *q = s->q_head; q; q = q->next)
        if (!q->done) return q;
    return NULL;
}

/* Set on the committer's thread (committer_main). */
static _Thread_local int tl_committer;

/* Called with s->mu held by the thread that leads; returns with it released. */
static void lead(evs_store *s) {
again:
    if (s->durability == EVS_DURABILITY_SYNC && !s->closing && s->q_len < (size_t)atomic_load(&s->inflight)) {
        int64_t deadline = evs__mono_ns() + gather_budget(s);
        for (;;) {
            /* announce first, then look: an appender that returns or
               queues after the look sees the announcement and wakes us */
            atomic_store(&s->gathering, 1);
            uint32_t seq = atomic_load(&s->gather_seq);
            if (s->q_len >= (size_t)atomic_load(&s->inflight) || s->q_len >= EVS_BATCH_MAX_REQS) break;
            int64_t left = deadline - evs__mono_ns();
            if (left <= 0) break;
            pthread_mutex_unlock(&s->mu);
            struct timespec rel = {0, (long)left};
            futex_wait_u32(&s->gather_seq, seq, &rel);
            pthread_mutex_lock(&s->mu);
        }
        atomic_store(&s->gathering, 0);
    }
    evs_append_req *batch = s->q_head, *last = NULL;
    size_t nreq = 0, nbytes = 0;
    for (evs_append_req *r = batch; r && nreq < EVS_BATCH_MAX_REQS && (nreq == 0 || nbytes + r->len <= EVS_BATCH_MAX_BYTES);
         r = r->next) {
        if (r->excl && nreq) break; /* an exclusive request runs alone */
        last = r;
        nreq++;
        nbytes += r->len;
        if (r->excl) break;
    }
    s->q_head = last->next;
    if (!s->q_head) s->q_tail = NULL;
    s->q_len -= nreq;
    last->next = NULL;
    pthread_mutex_unlock(&s->mu);
    if (batch->excl) batch->rc = batch->excl(batch->excl_arg);
    else process_batch(s, batch);
    int callbacks = 0; /* asynchronous members: their callbacks run below, after the lock */
    for (evs_append_req *r = batch; r && !callbacks; r = r->next) callbacks = r->done != NULL;
    pthread_mutex_lock(&s->mu);
    evs_append_req *next_leader = first_waiter(s);
    int lead_on = 0;
    if (!s->q_head) {
        s->leading = 0;
        if (s->closing) pthread_cond_broadcast(&s->idle_cv);
    } else if (!next_leader) {
        /* only asynchronous appends wait, and nobody sleeps on them: the committer leads them
           (s->leading stays 1), so that this thread's caller is not held, while the callbacks
           below run */
        if (tl_committer) lead_on = 1;
        else {
            s->committer_lead = 1;
            pthread_cond_signal(&s->committer_cv);
        }
    }
    if (callbacks) s->finishing++; /* close waits for them (quiesce) */
    if (atomic_load_explicit(&s->head_waiters, memory_order_relaxed)) pthread_cond_broadcast(&s->head_cv);
    pthread_mutex_unlock(&s->mu);
    if (next_leader) req_post(next_leader, REQ_LEAD); /* s->leading stays 1: handed over */
    batch_done(batch);
    if (callbacks || lead_on) {
        pthread_mutex_lock(&s->mu);
        if (callbacks && --s->finishing == 0 && s->closing) pthread_cond_broadcast(&s->idle_cv);
        if (lead_on) goto again;
        pthread_mutex_unlock(&s->mu);
    }
}

static void *committer_main(void *arg) {
    evs_store *s = arg;
    tl_committer = 1;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->committer_lead && !s->committer_stop) pthread_cond_wait(&s->committer_cv, &s->mu);
        if (!s->committer_lead) break; /* stopped, with nothing handed over */
        s->committer_lead = 0;
        lead(s);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* Queue r and return once it is done, leading batches when asked.  Called with s->mu held; returns without. */
static void submit(evs_store *s, evs_append_req *r) {
    atomic_store_explicit(&r->state, REQ_QUEUED, memory_order_relaxed);
    if (s->q_tail) s->q_tail->next = r;
    else s->q_head = r;
    s->q_tail = r;
    s->q_len++;
    if (!s->leading) {
        s->leading = 1;
        lead(s);
        return;
    }
    if (atomic_load(&s->gathering) && s->q_len >= (size_t)atomic_load(&s->inflight)) gather_poke(s);
    pthread_mutex_unlock(&s->mu);
    while (req_wait(r) == REQ_LEAD) {
        atomic_store_explicit(&r->state, REQ_QUEUED, memory_order_relaxed);
        pthread_mutex_lock(&s->mu);
        lead(s);
    }
}

int evs__store_exclusive(evs_store *s, int (*fn)(void *arg), void *arg) {
    evs_append_req r;
    memset(&r, 0, sizeof r);
    r.excl = fn;
    r.excl_arg = arg;
    pthread_mutex_lock(&s->mu);
    if (s->closing) {
        pthread_mutex_unlock(&s->mu);
        return evs__err(EVS_ECLOSED, "the store is closing");
    }
    submit(s, &r);
    return r.rc;
}

/*
 * Batch durability: appends are acknowledged after write(2); this thread
 * makes sure an fdatasync follows within batch_ms even when no further
 * append comes to trigger it.  It queues like an appender, so the log
 * still has one writer at a time.
 */
static void *syncer_main(void *arg) {
    evs_store *s = arg;
    pthread_mutex_lock(&s->mu);
    while (!s->closing) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t wait = (int64_t)s->batch_ms * 1000000;
        ts.tv_sec += wait / 1000000000;
        ts.tv_nsec += wait % 1000000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&s->syncer_cv, &s->mu, &ts);
        if (s->closing) break;
        evs_append_req r;
        memset(&r, 0, sizeof r);
        r.sync_only = 1;
        submit(s, &r);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* Refuse new appends, let queued ones finish, stop the syncer.  For close and abandon. */
static void quiesce(evs_store *s) {
    pthread_mutex_lock(&s->mu);
    s->closing = 1;
    pthread_cond_broadcast(&s->syncer_cv);
    pthread_cond_broadcast(&s->head_cv);
    while (s->q_head || s->leading || s->finishing) pthread_cond_wait(&s->idle_cv, &s->mu);
    s->committer_stop = 1;
    pthread_cond_signal(&s->committer_cv);
    pthread_mutex_unlock(&s->mu);
    if (s->syncer_started) pthread_join(s->syncer, NULL);
    s->syncer_started = 0;
    if (s->committer_started) pthread_join(s->committer, NULL);
    s->committer_started = 0;
}

/* An append's arguments, checked before anything is prepared; *slen gets the stream name's length. */
static int check_append(evs_store *s, const char *stream, int64_t expected, const evs_append_condition *cond,
                        const evs_event_in *events, size_t n, const evs__meta_write *mw, int reserved, size_t *slen) {
    int rc;
    if (!s || !s->dir) return evs__err(EVS_ECLOSED, "append: the store is not open");
    if (s->readonly) return evs__err(EVS_ECLOSED, "append: the store is open read-only");
    if (mw || reserved) {
        /* the reserved "$$<stream>" metadata stream: only meta.c writes it (and "$subjects", crypt.c) */
        *slen = strlen(stream);
        if ((rc = evs__name_ok("metadata stream name", stream, *slen, EVS_MAX_STREAM_NAME))) return rc;
    } else if ((rc = evs__check_stream_name(s, stream, slen))) {
        return rc;
    }
    if (expected < EVS_EXPECT_EXISTS)
        return evs__err(EVS_EINVAL, "expected version %lld is invalid (any, no-stream, exists or a version >= 0)",
                        (long long)expected);
    if (n == 0 || !events) return evs__err(EVS_EINVAL, "an append needs at least one event");
    if (n > s->lim_events)
        return evs__err(EVS_ELIMIT, "an append of %zu events exceeds the limit of %llu", n,
                        (unsigned long long)s->lim_events);
    if (cond && (rc = evs__condition_validate(cond))) return rc;
    return EVS_OK;
}

/*
 * Prepare an append (defaults, ids, the validator), seal it (crypt.c) and
 * encode its record into r (payload, ids and the rest; r->stream is left to
 * the caller).  Ownership: *p, r->payload and *seal are the caller's to
 * free, whatever the result.
 */
static int encode_append(evs_store *s, const char *stream, size_t slen, const evs_event_in *events, size_t n,
                         const evs__meta_write *mw, prepared *p, evs__crypt_seal *seal, evs_append_req *r) {
    size_t total;
    size_t plen = 0;
    int rc = prepare(s, stream, slen, events, n, p, &total);
    if (!rc && !mw) rc = evs__crypt_seal_append(s, stream, slen, p->ev, n, p->ids, seal);
    if (!rc)
        rc = evs__record_encode(stream, slen, p->ev, p->ids, p->stypes, p->stype_lens, (const char *const *)p->tags,
                                p->tag_lens, n, &r->payload, &plen);
    if (rc) return rc;
    r->stream_len = slen;
    r->len = plen;
    r->count = (uint32_t)n;
    r->ids = p->ids;
    r->ids_given = p->ids_given;
    r->mw = mw;
    return EVS_OK;
}

/* s->mu held: refuse a new append when the store closes or failed (message set), else 0. */
static int refuse_locked(evs_store *s) {
    if (s->closing) return evs__err(EVS_ECLOSED, "append: the store is closing");
    if (atomic_load(&s->failed))
        return evs__err(EVS_EFAILED, "store refuses writes after an earlier failure (%s); reopen it", failed_msg(s));
    return EVS_OK;
}

static int append_impl(evs_store *s, const char *stream, int64_t expected, const evs_append_condition *cond,
                       const evs_event_in *events, size_t n, evs_append_result *res, evs_uuid *generated_ids,
                       const evs__meta_write *mw, int reserved) {
    int rc;
    size_t slen;
    prepared p;
    evs_append_req r;
    evs__crypt_seal seal = {0};
    memset(&p, 0, sizeof p);
    memset(&r, 0, sizeof r);
    if (!res) return evs__err(EVS_EINVAL, "append: result pointer is NULL");
    memset(res, 0, sizeof *res);
    if ((rc = check_append(s, stream, expected, cond, events, n, mw, reserved, &slen))) return rc;
    atomic_fetch_add(&s->inflight, 1);
    if ((rc = encode_append(s, stream, slen, events, n, mw, &p, &seal, &r))) goto out;
    r.stream = stream;
    r.expected = expected;
    r.cond = cond;
    pthread_mutex_lock(&s->mu);
    if ((rc = refuse_locked(s))) {
        pthread_mutex_unlock(&s->mu);
        goto out;
    }
    submit(s, &r);
    *res = r.res;
    rc = r.rc;
    if (rc) evs__err(rc, "%s", r.msg);
    else if (generated_ids) memcpy(generated_ids, p.ids, n * sizeof *p.ids);
out:
    /* a gathering leader may be waiting for this append */
    atomic_fetch_sub(&s->inflight, 1);
    if (atomic_load(&s->gathering)) gather_poke(s);
    free(r.payload);
    prepared_free(&p, n);
    evs__crypt_seal_free(&seal);
    return rc;
}

/* An asynchronous append (evs__store_append_async): what its request points at lives here until done. */
typedef struct async_append {
    evs_append_req r;             /* first: r->done gets &r */
    evs_store *s;
    prepared p;
    size_t n;
    evs__crypt_seal seal;
    evs__append_done_fn cb;
    void *arg;
    char stream[];
} async_append;

static void async_free(async_append *a) {
    free(a->r.payload);
    prepared_free(&a->p, a->n);
    evs__crypt_seal_free(&a->seal);
    free(a);
}

/* The leader finished the batch holding it (no lock held): answer, then forget it. */
static void async_done(evs_append_req *r) {
    async_append *a = (async_append *)r;
    evs_store *s = a->s;
    a->cb(a->arg, r->rc, &r->res, a->p.ids, a->n, r->rc ? r->msg : "");
    atomic_fetch_sub(&s->inflight, 1);
    if (atomic_load(&s->gathering)) gather_poke(s);
    async_free(a);
}

int evs__store_append_async(evs_store *s, const char *stream, int64_t expected, const evs_event_in *events, size_t n,
                            evs__append_done_fn cb, void *arg) {
    size_t slen;
    int rc;
    if (!cb) return evs__err(EVS_EINVAL, "append_async: no callback");
    if (s && s->engine) return evs__err(EVS_ENOTSUP, "append_async: the embedded engine only");
    if ((rc = check_append(s, stream, expected, NULL, events, n, NULL, 0, &slen))) return rc;
    async_append *a = calloc(1, sizeof *a + slen + 1);
    if (!a) return evs__err(EVS_ENOMEM, "out of memory");
    memcpy(a->stream, stream, slen);
    a->s = s;
    a->n = n;
    a->cb = cb;
    a->arg = arg;
    atomic_fetch_add(&s->inflight, 1);
    if ((rc = encode_append(s, stream, slen, events, n, NULL, &a->p, &a->seal, &a->r))) goto fail;
    a->r.stream = a->stream;
    a->r.expected = expected;
    a->r.done = async_done;
    pthread_mutex_lock(&s->mu);
    if (!(rc = refuse_locked(s)) && !s->committer_started) {
        if (pthread_create(&s->committer, NULL, committer_main, s) == 0) s->committer_started = 1;
        else rc = evs__err(EVS_ENOMEM, "append_async: cannot start the committer thread");
    }
    if (rc) {
        pthread_mutex_unlock(&s->mu);
        goto fail;
    }
    /* queued, it belongs to the leader: the callback may run (and a be gone) before this returns */
    atomic_store_explicit(&a->r.state, REQ_QUEUED, memory_order_relaxed);
    if (s->q_tail) s->q_tail->next = &a->r;
    else s->q_head = &a->r;
    s->q_tail = &a->r;
    s->q_len++;
    if (!s->leading) {
        s->leading = 1;
        lead(s); /* nobody leads: this thread does, as evs_append's would */
        return EVS_OK;
    }
    if (atomic_load(&s->gathering) && s->q_len >= (size_t)atomic_load(&s->inflight)) gather_poke(s);
    pthread_mutex_unlock(&s->mu);
    return EVS_OK;
fail:
    atomic_fetch_sub(&s->inflight, 1);
    if (atomic_load(&s->gathering)) gather_poke(s);
    async_free(a);
    return rc;
}

int evs_append(evs_store *s, const char *stream, int64_t expected, const evs_event_in *events, size_t n,
               evs_append_result *res, evs_uuid *generated_ids) {
    if (s && s->engine) return evs__store_engine_append(s, stream, expected, NULL, events, n, res, generated_ids);
    return append_impl(s, stream, expected, NULL, events, n, res, generated_ids, NULL, 0);
}

int evs_append_if(evs_store *s, const char *stream, int64_t expected, const evs_append_condition *cond,
                  const evs_event_in *events, size_t n, evs_append_result *res, evs_uuid *generated_ids) {
    if (s && s->engine) return evs__store_engine_append(s, stream, expected, cond, events, n, res, generated_ids);
    return append_impl(s, stream, expected, cond, events, n, res, generated_ids, NULL, 0);
}

int evs__append_meta(evs_store *s, const char *meta_stream, int64_t expected, const evs__meta_write *mw,
                     evs_append_result *res) {
    evs_event_in ev;
    memset(&ev, 0, sizeof ev);
    ev.event_type = EVS_META_EVENT_TYPE;
    ev.data = mw->json;
    ev.data_len = mw->json_len;
    return append_impl(s, meta_stream, expected, NULL, &ev, 1, res, NULL, mw, 0);
}

int evs__append_reserved(evs_store *s, const char *stream, const evs_event_in *ev, evs_append_result *res) {
    if (s && s->engine) return evs__store_engine_append_reserved(s, stream, ev, res);
    return append_impl(s, stream, EVS_EXPECT_ANY, NULL, ev, 1, res, NULL, NULL, 1);
}

/* ------------------------------------------------------- open and close */

static void read_boot_id(char out[40]) {
    memset(out, 0, 40);
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    if (!f) return;
    if (!fgets(out, 40, f)) out[0] = 0;
    fclose(f);
    out[strcspn(out, "\n")] = 0;
}

/* state: 40 bytes boot id + 1 byte clean flag. */
static int state_put(evs_store *s, int clean) {
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->ix.env, NULL, 0, &txn);
    if (rc) return evs__index_err(rc, "begin state");
    uint8_t b[41];
    read_boot_id((char *)b);
    b[40] = (uint8_t)clean;
    MDB_val k = {5, "state"}, v = {41, b};
    if ((rc = mdb_put(txn, s->ix.meta, &k, &v, 0))) {
        mdb_txn_abort(txn);
        return evs__index_err(rc, "write state");
    }
    if ((rc = mdb_txn_commit(txn))) return evs__index_err(rc, "commit state");
    rc = mdb_env_sync(s->ix.env, 1);
    return rc ? evs__index_err(rc, "sync state") : EVS_OK;
}

/*
 * What the last session left: *untrusted when it did not close cleanly and
 * the machine has restarted since (its unsynced index pages may be torn);
 * *clean when it closed cleanly (log and index synced at close).
 */
void evs__store_index_state(evs_store *s, int *untrusted, int *clean) {
    MDB_txn *txn;
    *untrusted = 0;
    *clean = 0;
    if (mdb_txn_begin(s->ix.env, NULL, MDB_RDONLY, &txn)) {
        *untrusted = 1;
        return;
    }
    MDB_val k = {5, "state"}, v;
    int rc = mdb_get(txn, s->ix.meta, &k, &v);
    if (rc == 0 && v.mv_size == 41) {
        char boot[40];
        read_boot_id(boot);
        const uint8_t *b = v.mv_data;
        *clean = b[40] != 0;
        *untrusted = !b[40] && memcmp(b, boot, 40) != 0;
    }
    mdb_txn_abort(txn);
}

int evs__store_lock_dir(evs_store *s) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/LOCK", s->dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return evs__err_errno(-errno, "cannot open lock file %s", path);
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = 0;
        pid[strcspn(pid, "\n")] = 0;
        close(fd);
        if (e == EWOULDBLOCK)
            return evs__err(EVS_ELOCKED, "store %s is locked by another process%s%s%s", s->dir, pid[0] ? " (pid " : "",
                            pid, pid[0] ? ")" : "");
        return evs__err_errno(-e, "cannot lock %s", path);
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) == 0 && pwrite(fd, pid, (size_t)n, 0) < 0) { /* the pid is informative only */
    }
    s->lock_fd = fd;
    return EVS_OK;
}

/* Index every frame from `from` to the log's end, in bounded transactions. */
static int reindex(evs_store *s, evs_lsn from, uint64_t *frames_out) {
    int rc = EVS_OK;
    evs_lsn at = from, end = evs__log_end(s->log);
    uint64_t frames = 0;
    while (at < end) {
        MDB_txn *txn;
        evs_lsn chunk = at;
        uint64_t chunk_frames = frames;
        if (evs__index_room(&s->ix, EVS_IX_MAP_MIN / 2)) evs__err_clear(); /* at its limit: the chunk may fit */
        if ((rc = mdb_txn_begin(s->ix.env, NULL, 0, &txn))) return evs__index_err(rc, "begin re-index");
        uint64_t next_gpos = 0;
        for (int k = 0; k < EVS_REINDEX_TXN_FRAMES && at < end; k++) {
            evs_frame f;
            rc = evs__log_read(s->log, at, end, &f);
            if (rc == EVS_DONE) {
                at = end;
                break;
            }
            if (rc) goto fail;
            if (f.flags & EVS_FRAME_LOST) {
                if ((rc = evs__index_add_lost(&s->ix, txn, f.payload, f.len, f.first_gpos, f.count, f.at))) goto fail;
                next_gpos = f.first_gpos + f.count;
                at = f.next;
                frames++;
                continue;
            }
            const char *name;
            size_t nlen;
            if (evs__record_stream(f.payload, f.len, &name, &nlen)) {
                rc = evs__err(EVS_ECORRUPT, "record at global position %llu: malformed stream name",
                              (unsigned long long)f.first_gpos);
                goto fail;
            }
            evs_ix_stream st;
            rc = evs__index_stream_get(&s->ix, txn, name, nlen, &st);
            if (rc && rc != EVS_ENOTFOUND) goto fail;
            if ((rc = evs__index_add_record(&s->ix, txn, f.payload, f.len, f.first_gpos, f.count, f.at, &st)))
                goto fail;
            int64_t rec = evs__record_recorded_at(f.payload);
            if (rec > s->last_recorded) s->last_recorded = rec;
            next_gpos = f.first_gpos + f.count;
            at = f.next;
            frames++;
        }
        if (next_gpos && (rc = evs__index_checkpoint_put(&s->ix, txn, at, next_gpos))) goto fail;
        if ((rc = mdb_txn_commit(txn))) {
            rc = evs__index_err(rc, "commit re-index");
            if (!evs__index_was_full() || (rc = evs__index_grow(&s->ix))) return rc;
            at = chunk; /* the commit aborted the chunk: index it again */
            frames = chunk_frames;
        }
        continue;
    fail:
        mdb_txn_abort(txn);
        if (!evs__index_was_full()) {
            if (rc == EVS_ECORRUPT) {
                /* a record that verifies but does not decode: name it and the way out */
                char why[512];
                snprintf(why, sizeof why, "%s", evs_errmsg());
                rc = evs__err(EVS_ECORRUPT, "segment %08u.seg offset %u: %s; `evstore repair -d %s` replaces it by a "
                              "lost-record", EVS_LSN_SEG(at), EVS_LSN_OFF(at), why, s->dir);
            }
            return rc;
        }
        /* the map ran out of room: grow it and index this chunk again */
        if ((rc = evs__index_grow(&s->ix))) return rc;
        at = chunk;
        frames = chunk_frames;
    }
    *frames_out = frames;
    return EVS_OK;
}

static void report_add(evs_store *s, const char *text) {
    if (!text || !*text) return;
    size_t n = strlen(s->report);
    snprintf(s->report + n, sizeof s->report - n, "%s%s", n ? "; " : "", text);
}

/*
 * Tear down an opened (or half-opened) store and leave the handle unopened.
 * clean: sync the log and the index and mark the close clean, so the next
 * open trusts the checkpoint instead of re-verifying the tail.  Returns
 * what stood in the way of a clean close (the message survives the
 * teardown): in batch and none durability the final sync is the only one
 * that makes the last acknowledged appends durable, so its failure is the
 * caller's to know.
 */
int evs__store_teardown(evs_store *s, int clean) {
    int rc = EVS_OK, failed, mrc;
    char msg[768] = "";
    if (!s->readonly) quiesce(s);
    if (clean && !s->readonly) {
        if ((failed = atomic_load(&s->failed)))
            rc = evs__err(EVS_EFAILED, "close: nothing was synced, the store had failed earlier (%s); appends "
                                       "acknowledged since the last successful sync may not be on disk", failed_msg(s));
        else if (evs__log_sync(s->log))
            rc = evs__err_prefix(EVS_EIO, "close: the final sync of the log failed, appends acknowledged since the "
                                          "last successful sync may not be on disk: ");
        else if ((mrc = mdb_env_sync(s->ix.env, 1)))
            rc = evs__err(EVS_EIO, "close: the final sync of the index failed: %s (the next open checks the log's "
                                   "tail again)", mdb_strerror(mrc));
        else if (state_put(s, 1))
            rc = evs__err_prefix(EVS_EIO, "close: the store could not be marked closed cleanly (the next open "
                                          "checks the log's tail again): ");
        snprintf(msg, sizeof msg, "%s", rc ? evs_errmsg() : "");
    }
    evs__log_close(s->log);
    s->log = NULL;
    evs__index_close(&s->ix);
    if (s->lock_fd >= 0) close(s->lock_fd);
    s->lock_fd = -1;
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->scav_mu);
    evs__meta_free(s);
    evs__keystore_close(s);
    pthread_cond_destroy(&s->syncer_cv);
    pthread_cond_destroy(&s->committer_cv);
    pthread_cond_destroy(&s->idle_cv);
    pthread_cond_destroy(&s->head_cv);
    free(s->dir);
    s->dir = NULL;
    free(s->lost);
    s->lost = NULL;
    s->nlost = 0;
    return rc ? evs__err(rc, "%s", msg) : EVS_OK;
}

int evs_store_open(evs_store *s, const char *dir, unsigned flags) {
    if (s && !s->dir && !s->engine && evs__engine_for(dir)) return evs__store_engine_open(s, dir, flags);
    int rc;
    char path[PATH_MAX];
    if (!s) return evs__err(EVS_EINVAL, "open: store is NULL");
    if (s->dir) return evs__err(EVS_EINVAL, "open: the store is already open");
    if (!dir || !*dir) return evs__err(EVS_EINVAL, "open: no directory given");
    if (strlen(dir) > PATH_MAX - 64) return evs__err(EVS_EINVAL, "open: directory path is too long");
    s->readonly = (flags & EVS_OPEN_READONLY) != 0;
    if ((flags & EVS_OPEN_CREATE) && !s->readonly) {
        if (mkdir(dir, 0755) != 0 && errno != EEXIST) return evs__err_errno(-errno, "cannot create store directory %s", dir);
    }
    struct stat sb;
    if (stat(dir, &sb) != 0) return evs__err(EVS_ENOTFOUND, "no store at %s: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return evs__err(EVS_EINVAL, "%s is not a directory", dir);
    snprintf(path, sizeof path, "%s/log", dir);
    if (!(flags & EVS_OPEN_CREATE) && stat(path, &sb) != 0)
        return evs__err(EVS_ENOTFOUND, "no store at %s (no log/ directory)", dir);
    char rpath[PATH_MAX];
    snprintf(rpath, sizeof rpath, "%s/" EVS_REPAIRING_FILE, dir);
    if (!s->repairing && stat(rpath, &sb) == 0)
        return evs__err(EVS_ECORRUPT, "a repair of store %s was interrupted (%s exists); run `evstore repair -d %s` "
                        "again to finish it", dir, rpath, dir);
    if (!(s->dir = strdup(dir))) return evs__err(EVS_ENOMEM, "out of memory");
    s->report[0] = 0;
    s->closing = 0;
    s->committer_stop = s->committer_lead = 0;
    s->finishing = 0;
    atomic_store(&s->failed, 0);
    pthread_mutex_init(&s->mu, NULL);
    pthread_rwlock_init(&s->meta_lock, NULL);
    pthread_mutex_init(&s->scav_mu, NULL);
    memset(&s->scav_stats, 0, sizeof s->scav_stats);
    pthread_cond_init(&s->syncer_cv, NULL);
    pthread_cond_init(&s->committer_cv, NULL);
    pthread_cond_init(&s->idle_cv, NULL);
    pthread_cond_init(&s->head_cv, NULL);
    if (!s->readonly && (rc = evs__store_lock_dir(s))) goto fail;
    if ((rc = evs__keystore_open(s))) goto fail;
    if (!s->readonly && mkdir(path, 0755) != 0 && errno != EEXIST) {
        rc = evs__err_errno(-errno, "cannot create %s", path);
        goto fail;
    }
    snprintf(path, sizeof path, "%s/index", dir);
    if ((rc = evs__index_open(&s->ix, path, s->map_size, 4096, s->readonly))) goto fail;

    int rebuild = 0;
    evs_lsn from = 0;
    uint64_t from_gpos = 1;
    int untrusted = 0, clean = 0, scav_rebuild = 0;
    if (!s->readonly) evs__store_index_state(s, &untrusted, &clean);
    if (!s->readonly && (rc = evs__scavenge_recover(s, &scav_rebuild))) goto fail;
    if (scav_rebuild && !untrusted) {
        rebuild = 1;
        report_add(s, "index rebuilt from the log: a scavenge was interrupted after its segment was swapped in");
    } else if (untrusted) {
        rebuild = 1;
        report_add(s, "index rebuilt from the log: the last session did not close cleanly before a system restart");
    } else {
        MDB_txn *txn;
        if ((rc = evs__index_rbegin(&s->ix, &txn))) goto fail;
        rc = evs__index_checkpoint_get(&s->ix, txn, &from, &from_gpos);
        evs__index_rend(&s->ix, txn);
        if (rc == EVS_ENOTFOUND) from = 0, from_gpos = 1, rc = EVS_OK;
        if (rc) goto fail;
    }
    if (rebuild && (rc = evs__index_clear(&s->ix))) goto fail;
    /* The index's checkpoint is a floor: every event below it was
       acknowledged (the index commits after the log's write and sync), so
       a log that does not verify up to it is damaged, never torn.  Only an
       index that cannot be trusted (rebuilt above) gives no floor. */
    evs_log_config cfg = {.io = s->io,
                          .segment_size = s->segment_size,
                          .readonly = s->readonly,
                          /* only a commit that fdatasyncs pays for unwritten extents (ZERO-AHEAD in log.c) */
                          .zero_ahead = s->durability == EVS_DURABILITY_SYNC ? s->zero_ahead : 0,
                          .from_is_durable = clean && !rebuild,
                          .from_is_floor = !s->readonly && !rebuild,
                          /* a record the index could not take fails open before recovery writes */
                          .check = s->readonly ? NULL : evs__frame_payload_check};
    evs_log_recovery rec;
    memset(&rec, 0, sizeof rec);
    rc = evs__log_open(dir, &cfg, from, from_gpos, &s->log, &rec);
    /* the floor is the index's checkpoint; a fresh index has none */
    if (rc == EVS_ECORRUPT && cfg.from_is_floor && from_gpos > 1) {
        char why[600];
        snprintf(why, sizeof why, "%s", evs_errmsg());
        rc = evs__err(EVS_ECORRUPT, "store %s is damaged: %s.  The index holds acknowledged events up to global "
                      "position %llu: this is damage, not a torn write, and nothing was changed.  `evstore "
                      "check -d %s` lists the damage; `evstore repair -d %s --dry-run` shows which events a repair "
                      "would drop", dir, why, (unsigned long long)(from_gpos - 1), dir, dir);
        goto fail;
    }
    if (rc == EVS_ECORRUPT && !s->readonly) {
        char why[600];
        snprintf(why, sizeof why, "%s", evs_errmsg());
        rc = evs__err(EVS_ECORRUPT, "store %s: %s; nothing was changed.  `evstore repair -d %s --dry-run` shows which "
                      "events a repair would replace by a lost-record", dir, why, dir);
        goto fail;
    }
    if (rc == EVS_EINDEX && s->readonly) {
        /* a reader cannot repair: read what verifies, and say so */
        cfg.from_is_durable = 0;
        memset(&rec, 0, sizeof rec);
        rc = evs__log_open(dir, &cfg, 0, 1, &s->log, &rec);
        if (!rc) {
            char b[160];
            snprintf(b, sizeof b, "the log's valid records end at global position %llu, below the index's head %llu "
                     "(damaged, or a crashed writer's tail not yet recovered)",
                     (unsigned long long)(evs__log_next_gpos(s->log) - 1), (unsigned long long)(from_gpos - 1));
            report_add(s, b);
        }
    } else if (rc == EVS_EINDEX) {
        report_add(s, "index rebuilt from the log: its checkpoint lay beyond the log's valid end");
        if ((rc = evs__index_clear(&s->ix))) goto fail;
        from = 0, from_gpos = 1;
        memset(&rec, 0, sizeof rec);
        rc = evs__log_open(dir, &cfg, from, from_gpos, &s->log, &rec);
    }
    if (rc) goto fail;
    report_add(s, rec.report);
    if (s->ix.stale && !s->readonly) {
        /* the log verified against the old index's floor above; now index it again with tags */
        report_add(s, "index rebuilt from the log: it was written before the tag index (index format 2)");
        if ((rc = evs__index_clear(&s->ix))) goto fail;
        from = 0;
    }
    if (!s->readonly) {
        uint64_t frames = 0;
        if ((rc = reindex(s, from ? from : evs__log_start(s->log), &frames))) goto fail;
        if (frames && !rebuild && from) {
            char b[96];
            snprintf(b, sizeof b, "re-indexed %llu records past the index checkpoint", (unsigned long long)frames);
            (void)b; /* routine after a crash; not worth alarming a user about */
        }
        if ((rc = state_put(s, 0))) goto fail;
    }
    {
        MDB_txn *txn;
        if ((rc = evs__index_rbegin(&s->ix, &txn))) goto fail;
        rc = evs__index_lost_load(&s->ix, txn, &s->lost, &s->nlost);
        evs__index_rend(&s->ix, txn);
        if (rc) goto fail;
    }
    atomic_store(&s->head, evs__log_next_gpos(s->log) - 1);
    atomic_store(&s->pub_end, evs__log_end(s->log));
    if ((rc = evs__meta_load(s))) goto fail;
    s->last_sync_ns = evs__mono_ns();
    if (!s->readonly && s->durability == EVS_DURABILITY_BATCH) {
        if (pthread_create(&s->syncer, NULL, syncer_main, s) != 0) {
            rc = evs__err(EVS_ENOMEM, "cannot start the batch syncer thread");
            goto fail;
        }
        s->syncer_started = 1;
    }
    evs__err_clear();
    return EVS_OK;
fail:;
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", evs_errmsg());
    evs__store_teardown(s, 0);
    return evs__err(rc, "%s", msg);
}

const char *evs_store_recovery_report(const evs_store *s) { return s ? s->report : ""; }

int evs_store_close(evs_store *s) {
    if (s && s->engine) return evs__store_engine_close(s);
    int rc = EVS_OK;
    if (!s) return EVS_OK;
    if (s->dir) rc = evs__store_teardown(s, 1);
    evs__keystore_free(s);
    free(s);
    return rc;
}

/* ------------------------------------------------------- head and stats */

static uint64_t readonly_head(evs_store *s) {
    MDB_txn *txn;
    evs_lsn lsn;
    uint64_t next = 1;
    if (evs__index_rbegin(&s->ix, &txn) == 0) {
        if (evs__index_checkpoint_get(&s->ix, txn, &lsn, &next)) next = 1;
        evs__index_rend(&s->ix, txn);
    }
    return next - 1;
}

uint64_t evs_head(evs_store *s) {
    if (s && s->engine) return s->engine->head(s->eng);
    if (!s || !s->dir) return 0;
    if (s->readonly) return readonly_head(s);
    return atomic_load(&s->head);
}

int evs_wait_for(evs_store *s, uint64_t position, int timeout_ms, uint64_t *head) {
    if (s && s->engine) return s->engine->wait_for(s->eng, position, timeout_ms, head);
    if (!s || !s->dir) return evs__err(EVS_ECLOSED, "wait: the store is not open");
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : evs__mono_ns() + (int64_t)timeout_ms * 1000000;
    if (s->readonly) { /* another process writes: poll its checkpoint */
        for (;;) {
            uint64_t h = readonly_head(s);
            if (head) *head = h;
            if (h >= position) return EVS_OK;
            if (evs__mono_ns() >= deadline) return EVS_ETIMEDOUT;
            struct timespec ts = {0, 20 * 1000000};
            nanosleep(&ts, NULL);
        }
    }
    int rc = EVS_OK;
    pthread_mutex_lock(&s->mu);
    atomic_fetch_add(&s->head_waiters, 1);
    while (atomic_load(&s->head) < position) {
        if (s->closing) {
            rc = EVS_ECLOSED;
            break;
        }
        if (timeout_ms < 0) {
            pthread_cond_wait(&s->head_cv, &s->mu);
            continue;
        }
        int64_t left = deadline - evs__mono_ns();
        if (left <= 0) {
            rc = EVS_ETIMEDOUT;
            break;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += left / 1000000000;
        ts.tv_nsec += left % 1000000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&s->head_cv, &s->mu, &ts);
    }
    atomic_fetch_sub(&s->head_waiters, 1);
    pthread_mutex_unlock(&s->mu);
    if (head) *head = atomic_load(&s->head);
    if (rc == EVS_ECLOSED) return evs__err(rc, "wait: the store is closing");
    if (rc == EVS_ETIMEDOUT) return evs__err(rc, "wait: timed out before position %llu", (unsigned long long)position);
    return EVS_OK;
}

int evs_store_writable(evs_store *s, char *why, size_t cap) {
    if (why && cap) why[0] = '\0';
    if (!s) return evs__err(EVS_EINVAL, "store_writable: store is NULL");
    if (!atomic_load(&s->failed)) return EVS_OK;
    if (why && cap) snprintf(why, cap, "%s", failed_msg(s));
    return EVS_EFAILED;
}

int evs_store_get_stats(evs_store *s, evs_store_stats *out) {
    if (s && s->engine) return evs__store_engine_stats(s, out);
    if (!s || !s->dir || !out) return evs__err(EVS_EINVAL, "stats: store not open or out is NULL");
    memset(out, 0, sizeof *out);
    out->head = evs_head(s);
    MDB_txn *txn;
    MDB_stat st;
    if (evs__index_rbegin(&s->ix, &txn) == 0) {
        if (mdb_stat(txn, s->ix.streams, &st) == 0) out->streams = st.ms_entries;
        evs__index_rend(&s->ix, txn);
    }
    evs__log_usage(s->log, &out->segments, &out->log_bytes);
    out->appends = atomic_load(&s->st_appends);
    out->events_written = atomic_load(&s->st_events);
    out->bytes_written = atomic_load(&s->st_bytes);
    out->syncs = atomic_load(&s->st_syncs);
    out->batches = atomic_load(&s->st_batches);
    out->durability = (int)s->durability;
    for (size_t i = 0; i <= EVS_SYNC_BUCKETS; i++) out->sync_hist[i] = atomic_load(&s->st_sync_hist[i]);
    out->sync_ns = atomic_load(&s->st_sync_ns);
    for (size_t i = 0; i <= EVS_BATCH_BUCKETS; i++) out->batch_hist[i] = atomic_load(&s->st_batch_hist[i]);
    return EVS_OK;
}

/* ------------------------------------------------------------ test hooks */

/*
 * Test hook (declared in store/store_testing.h): drop an open store the way
 * a killed process would.  Queued appends finish and everything is
 * freed, but neither the log nor the index is synced and the clean-close
 * flag is not written, so the next open recovers as after a crash.
 */
void evs__store_abandon(evs_store *s);
void evs__store_abandon(evs_store *s) {
    if (s && s->engine) {
        evs__store_engine_close(s);
        return;
    }
    if (!s) return;
    if (s->dir) evs__store_teardown(s, 0);
    evs__keystore_free(s);
    free(s);
}
