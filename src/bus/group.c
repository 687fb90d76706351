/*
 * group.c — persistent subscription groups: competing consumers sharing one
 * checkpoint (evstore_bus.h describes the contract).
 *
 * The window.  An open group reads $all ahead of its checkpoint into a ring
 * of at most buffer_size entries, one per matching event, in position order:
 *
 *     checkpoint                                  next_read
 *         |                                           |
 *         v                                           v
 *     [ DONE | INFLIGHT A | AVAILABLE | DONE | PENDING | INFLIGHT B ]
 *
 * An entry keeps the event's position, its stream (a shared, refcounted
 * name) and its delivery state, never the event itself: a delivery reads the
 * event again and copies it, so memory is bounded by the window, not by the
 * size of events.  Parked events retried from the DLQ live in a second, small
 * sorted list ("replays") that never moves the checkpoint.
 *
 * Entry states:
 *
 *     AVAILABLE --next--> INFLIGHT --ack / nack skip------------> DONE
 *        ^  ^                |  |
 *        |  +--nack retry----+  +--nack park / retries out--> PENDING
 *        +-----ack timeout---+                                   |
 *                                                      commit -> COMMITTING -> DONE
 *
 * PENDING entries wait for a DLQ write (a new entry for a park; for replays
 * an update or a delete of the existing one); a commit turns them into
 * COMMITTING, writes the DLQ operations and the record in ONE transaction,
 * then marks them DONE (or PENDING again if the transaction failed).
 *
 * Invariants:
 *   1. An entry is INFLIGHT for at most one member; its `attempt` is the id
 *      of the newest delivery.  An answer is taken only for that attempt (or
 *      for a delivery that timed out and was not handed out again), so an
 *      event is never finished twice.
 *   2. The checkpoint (record "next") is the position of the first window
 *      entry that is not DONE (COMMITTING counts as DONE inside the commit
 *      that writes it), or next_read when there is none.  Every event below
 *      it is acked, skipped, parked (its DLQ entry in the same or an earlier
 *      transaction) or filtered out.
 *   3. st->inflight counts the INFLIGHT entries of a stream.  Pinned
 *      strategy: they are all held by one member, st->pin, which is set
 *      exactly while st->inflight is nonzero.  A stream's next event goes
 *      to its home (rendezvous hashing over the members), and to nobody
 *      while its pin is another member (a join changed its home): so a
 *      stream moves only when nothing of it is in flight, and a backlog is
 *      shared with a member that joins.
 *   4. Only one thread at a time reads the log into the window (`filling`),
 *      and entries are appended in position order.
 *
 * Locking.  `mu` guards everything of the group and its members; the log
 * reads, the event copies and every LMDB transaction happen outside it.
 * Commits are serialised by `commit_mu`, taken before `mu`, so snapshots of
 * the record reach the disk in the order they were taken.  No thread holds
 * `mu` while waiting for LMDB's writer lock.
 *
 * Readers.  The open handle is registered with its bus, so a read of the
 * group through the bus (evs_consumer_get / _list, evs_group_get) answers
 * from the handle; the bus's mutex, held around that, keeps the handle
 * alive (close unregisters first).  Order: bus mutex, commit_mu, mu; no
 * group lock is held while taking the bus's.  Every read first does what a
 * consumer call would (refresh): expired deliveries, parks behind parked
 * events, due commits, so what is read is current.
 *
 * Time.  Ack deadlines and retry backoff use the group's evs_clock (tests
 * drive them with a fake clock); the timeout of evs_group_next, the
 * checkpoint interval and the wait slices use the monotonic clock.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bus/bus_internal.h"

#define GROUP_SLICE_MS 50          /* longest wait before re-checking clocks and cancels */
#define GROUP_BUCKETS 1024         /* stream table (a window holds at most 2 x 1000 entries) */
#define GROUP_DEFAULT_ACK_TIMEOUT_NS 30000000000LL
#define GROUP_DEFAULT_IN_FLIGHT 10u

enum { GE_AVAILABLE, GE_INFLIGHT, GE_PENDING, GE_COMMITTING, GE_DONE };
enum { OP_NONE, OP_PARK, OP_UPDATE, OP_DELETE };
enum { WHY_EMPTY, WHY_FULL, WHY_PAUSED };

typedef struct gstream {
    struct gstream *next;         /* bucket chain */
    uint64_t hash;
    uint32_t refs;                /* entries naming this stream */
    evs_group_member *pin;        /* pinned strategy: the member holding its deliveries (invariant 3) */
    evs_group_member *home;       /* pinned strategy: its rendezvous member, valid for home_gen */
    uint64_t home_gen;
    uint64_t blocked;             /* scan id in which a later event must wait */
    uint32_t inflight;            /* INFLIGHT entries of the stream (invariant 3) */
    /* per_stream_order */
    int parked_known;             /* `parked` was read from the DLQ (since the last DLQ change) */
    uint64_t parked;              /* earliest parked position of the stream in the DLQ, 0: none */
    uint64_t parked_mem;          /* earliest one parked here whose DLQ write is not committed yet */
    size_t len;
    char name[];
} gstream;

typedef struct gentry {
    uint64_t pos;
    gstream *st;
    uint8_t state, op, from_dlq;
    uint32_t attempt;             /* deliveries made: the newest delivery id */
    uint32_t fails;               /* failed deliveries counted against max_retries */
    evs_group_member *owner;      /* INFLIGHT */
    evs_group_member *expired_from; /* AVAILABLE after a timeout, until handed out again */
    int64_t deadline;             /* INFLIGHT: ack timeout (group clock) */
    int64_t not_before;           /* AVAILABLE: retry backoff (group clock) */
    int64_t first_failure_at, last_failure_at;
    uint64_t blocked_by;          /* parked behind this position (per_stream_order) */
    char *error;                  /* last failure, for the DLQ entry */
} gentry;

struct evs_group_member {
    evs_group *g;
    char name[EVS_BUS_MAX_NAME + 1];
    uint64_t hash;
    uint32_t in_flight;
    int waiting;                  /* threads inside evs_group_next */
    int cancelled;
    uint64_t delivered, acked, nacked, timeouts;
};

struct evs_group {
    evs_bus *bus;
    evs_store *store;
    const evs_clock *clock;
    pthread_mutex_t mu, commit_mu;
    pthread_cond_t cv;
    evs__record rec;              /* settings and counters; rec.next is not maintained */
    evs__kv_lease *lease;         /* the claim's (bus.c), NULL on LMDB; read without b->mu (commit holds commit_mu) */
    evs_filter filter;            /* views into rec */
    /* window: a ring of win_cap entries */
    gentry *win;
    uint32_t win_cap, win_head, win_len;
    gentry *rep;                  /* replays from the DLQ, sorted, at most win_cap */
    uint32_t rep_len;
    uint64_t next_read;
    gstream *buckets[GROUP_BUCKETS];
    uint64_t scan_id;
    /* members in join order */
    evs_group_member **members;
    size_t n_members, cap_members;
    uint64_t members_gen;         /* bumped by every join and leave (starts at 1) */
    /* counts */
    uint32_t n_inflight, n_pending, n_unfinished;
    int64_t min_deadline;         /* lower bound of the INFLIGHT deadlines */
    uint64_t avail_from;          /* no window entry below this position is AVAILABLE */
    uint64_t dlq_seen;            /* bus->dlq_gen when the streams' `parked` were last valid */
    /* the filler's scratch space (owned by the thread that set filling) */
    int filling;
    uint64_t *fill_pos;
    uint32_t *fill_off;
    uint16_t *fill_len;
    char *fill_names;
    /* checkpointing */
    uint64_t committed_next;
    uint32_t since_commit;
    int64_t last_commit_ns;
    int dirty;
};

#define WIN(g, i) (&(g)->win[((g)->win_head + (i)) % (g)->win_cap])

/* ------------------------------------------------------------- settings */

const char *evs_group_strategy_name(int strategy) {
    switch (strategy) {
    case EVS_GROUP_ROUND_ROBIN: return "round_robin";
    case EVS_GROUP_PINNED: return "pinned";
    default: return "unknown";
    }
}

int evs_group_strategy_parse(const char *name, evs_group_strategy *out) {
    if (!name || !out) return evs__err(EVS_EINVAL, "group strategy: NULL argument");
    if (strcmp(name, "round_robin") == 0) *out = EVS_GROUP_ROUND_ROBIN;
    else if (strcmp(name, "pinned") == 0) *out = EVS_GROUP_PINNED;
    else return evs__err(EVS_EINVAL, "unknown group strategy \"%s\" (round_robin or pinned)", name);
    return EVS_OK;
}

void evs_group_config_init(evs_group_config *c) {
    if (!c) return;
    memset(c, 0, sizeof *c);
    c->strategy = EVS_GROUP_ROUND_ROBIN;
    c->ack_timeout_ns = GROUP_DEFAULT_ACK_TIMEOUT_NS;
    c->max_in_flight = GROUP_DEFAULT_IN_FLIGHT;
    c->buffer_size = EVS_BUS_MAX_PAGE;
    evs_retry_policy_default(&c->retry);
    c->on_failure = EVS_ON_FAILURE_PARK;
    c->checkpoint_every = 1000;
    c->checkpoint_ms = 1000;
}

/* Validate a config and fill in defaults for zero fields. */
static int settings_from_config(const evs_group_config *c, evs__group_settings *gs) {
    memset(gs, 0, sizeof *gs);
    if (c->strategy != EVS_GROUP_ROUND_ROBIN && c->strategy != EVS_GROUP_PINNED)
        return evs__err(EVS_EINVAL, "group \"%s\": bad strategy %d", c->name, (int)c->strategy);
    if (c->ack_timeout_ns < 0) return evs__err(EVS_EINVAL, "group \"%s\": negative ack timeout", c->name);
    if (c->max_in_flight > EVS_GROUP_MAX_IN_FLIGHT)
        return evs__err(EVS_ELIMIT, "group \"%s\": max_in_flight %u exceeds %u", c->name, c->max_in_flight,
                        EVS_GROUP_MAX_IN_FLIGHT);
    if (c->buffer_size > EVS_BUS_MAX_PAGE)
        return evs__err(EVS_ELIMIT, "group \"%s\": buffer_size %u exceeds %u", c->name, c->buffer_size,
                        EVS_BUS_MAX_PAGE);
    if (c->on_failure != EVS_ON_FAILURE_PARK && c->on_failure != EVS_ON_FAILURE_STOP)
        return evs__err(EVS_EINVAL, "group \"%s\": bad on_failure %d", c->name, (int)c->on_failure);
    if (c->retry.backoff != EVS_BACKOFF_EXPONENTIAL && c->retry.backoff != EVS_BACKOFF_LINEAR &&
        c->retry.backoff != EVS_BACKOFF_FIXED)
        return evs__err(EVS_EINVAL, "group \"%s\": bad backoff %d", c->name, (int)c->retry.backoff);
    if (c->retry.initial_delay_ns < 0 || c->retry.max_delay_ns < 0 || !(c->retry.jitter >= 0))
        return evs__err(EVS_EINVAL, "group \"%s\": negative retry delay or jitter", c->name);
    if (c->dlq_max_age_ns < 0) return evs__err(EVS_EINVAL, "group \"%s\": negative DLQ age", c->name);
    gs->strategy = c->strategy;
    gs->ack_timeout_ns = c->ack_timeout_ns ? c->ack_timeout_ns : GROUP_DEFAULT_ACK_TIMEOUT_NS;
    gs->max_in_flight = c->max_in_flight ? c->max_in_flight : GROUP_DEFAULT_IN_FLIGHT;
    gs->buffer_size = c->buffer_size ? c->buffer_size : EVS_BUS_MAX_PAGE;
    gs->checkpoint_every = c->checkpoint_every ? c->checkpoint_every : 1000;
    gs->checkpoint_ms = c->checkpoint_ms ? c->checkpoint_ms : 1000;
    gs->retry = c->retry;
    gs->on_failure = c->on_failure;
    gs->per_stream_order = c->per_stream_order ? 1 : 0;
    gs->dlq_max_count = c->dlq_max_count;
    gs->dlq_max_age_ns = c->dlq_max_age_ns;
    return EVS_OK;
}

/* Settings of a stored record, with defaults where a field is missing. */
static void settings_sane(evs__group_settings *gs) {
    if (gs->ack_timeout_ns <= 0) gs->ack_timeout_ns = GROUP_DEFAULT_ACK_TIMEOUT_NS;
    if (!gs->max_in_flight || gs->max_in_flight > EVS_GROUP_MAX_IN_FLIGHT) gs->max_in_flight = GROUP_DEFAULT_IN_FLIGHT;
    if (!gs->buffer_size || gs->buffer_size > EVS_BUS_MAX_PAGE) gs->buffer_size = EVS_BUS_MAX_PAGE;
    if (!gs->checkpoint_every) gs->checkpoint_every = 1000;
    if (!gs->checkpoint_ms) gs->checkpoint_ms = 1000;
}

static void info_fill(evs_group_info *out, const evs__record *r) {
    const evs__group_settings *gs = &r->group;
    out->strategy = gs->strategy;
    out->ack_timeout_ns = gs->ack_timeout_ns;
    out->max_in_flight = gs->max_in_flight;
    out->buffer_size = gs->buffer_size;
    out->retry = gs->retry;
    out->retry.max_retries = r->max_retries;
    out->on_failure = gs->on_failure;
    out->per_stream_order = gs->per_stream_order;
    out->dlq_max_count = gs->dlq_max_count;
    out->dlq_max_age_ns = gs->dlq_max_age_ns;
    out->checkpoint_every = gs->checkpoint_every;
    out->checkpoint_ms = gs->checkpoint_ms;
    out->skipped = gs->skipped;
    out->timeouts = gs->timeouts;
}

/* Read a group's record in txn: EVS_ENOTFOUND, or EVS_EINVAL for another kind. */
static int group_record_get(evs_bus *b, evs__kv_txn *txn, const char *name, evs__record *out) {
    int rc = evs__record_get(b, txn, name, out);
    if (rc) return rc;
    if (out->kind != EVS__KIND_GROUP) {
        int kind = out->kind;
        evs__record_free(out);
        return evs__err(EVS_EINVAL, "consumer \"%s\" is a %s, not a group", name, evs__kind_name(kind));
    }
    return EVS_OK;
}

int evs_group_create(evs_bus *b, const evs_group_config *c) {
    int rc;
    evs__kv_txn *txn = NULL;
    evs__record r, old;
    memset(&r, 0, sizeof r);
    if (!b || !c) return evs__err(EVS_EINVAL, "group_create: bus and config are required");
    if ((rc = evs__bus_check_name(c->name))) return rc;
    if ((rc = settings_from_config(c, &r.group))) return rc;
    snprintf(r.name, sizeof r.name, "%s", c->name);
    r.kind = EVS__KIND_GROUP;
    snprintf(r.owner, sizeof r.owner, "%s", c->owner ? c->owner : "");
    r.created_at = evs_now_ns();
    r.max_retries = r.group.retry.max_retries;
    if ((rc = evs__bus_start_next(b->store, NULL, c->from, &r.next))) goto out;
    if ((rc = evs__record_set_filter(&r, &c->filter, c->tag))) goto out;
    if ((rc = evs__kv_begin(b->kv, NULL, 0, &txn))) {
        rc = evs__bus_kv_err(rc, "begin");
        goto out;
    }
    rc = evs__record_get(b, txn, c->name, &old);
    if (rc == EVS_OK) {
        rc = evs__err(EVS_ECONFLICT, "consumer \"%s\" already exists (a %s)", c->name, evs__kind_name(old.kind));
        evs__record_free(&old);
        goto out;
    }
    if (rc != EVS_ENOTFOUND) goto out;
    evs__err_clear();
    if ((rc = evs__record_put(b, txn, &r))) goto out;
    rc = evs__kv_commit(txn);
    txn = NULL;
    if (rc) rc = evs__bus_kv_err(rc, "commit");
out:
    if (txn) evs__kv_abort(txn);
    evs__record_free(&r);
    return rc;
}

int evs_group_update(evs_bus *b, const evs_group_config *c) {
    int rc;
    evs__kv_txn *txn = NULL;
    evs__record r;
    evs__group_settings gs;
    int have = 0;
    if (!b || !c) return evs__err(EVS_EINVAL, "group_update: bus and config are required");
    if ((rc = evs__bus_check_name(c->name))) return rc;
    if ((rc = settings_from_config(c, &gs))) return rc;
    if (evs__bus_is_open(b, c->name)) return evs__err(EVS_ELOCKED, "group \"%s\" is open", c->name);
    if ((rc = evs__bus_begin_closed(b, c->name, &txn))) return rc;
    if ((rc = group_record_get(b, txn, c->name, &r))) goto out;
    have = 1;
    gs.skipped = r.group.skipped;
    gs.timeouts = r.group.timeouts;
    r.group = gs;
    r.max_retries = gs.retry.max_retries;
    snprintf(r.owner, sizeof r.owner, "%s", c->owner ? c->owner : "");
    if ((rc = evs__record_set_filter(&r, &c->filter, c->tag))) goto out;
    if ((rc = evs__record_put(b, txn, &r))) goto out;
    rc = evs__kv_commit(txn);
    txn = NULL;
    if (rc) rc = evs__bus_kv_err(rc, "commit");
out:
    if (txn) evs__kv_abort(txn);
    if (have) evs__record_free(&r);
    return rc;
}

static int info_if_open(evs_bus *b, const char *name, evs_group_info *out, int *found);
static int live_consumer_info(void *handle, evs_consumer_info *out);

int evs_group_get(evs_bus *b, const char *name, evs_group_info *out) {
    int rc;
    evs__kv_txn *txn;
    evs__record r;
    if (!b || !out) return evs__err(EVS_EINVAL, "group_get: NULL argument");
    if ((rc = evs__bus_check_name(name))) return rc;
    int found;
    if ((rc = info_if_open(b, name, out, &found)) || found) return rc;
    memset(out, 0, sizeof *out);
    if ((rc = evs__kv_begin(b->kv, NULL, EVS__KV_RDONLY, &txn))) return evs__bus_kv_err(rc, "begin");
    if (!(rc = group_record_get(b, txn, name, &r))) {
        rc = evs__record_info(b, txn, &r, &out->info);
        info_fill(out, &r);
        evs__record_free(&r);
    }
    evs__kv_abort(txn);
    return rc;
}

/* --------------------------------------------------------------- streams */

static uint64_t fnv1a(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
    return h;
}

/* splitmix64's finaliser: spreads the rendezvous scores. */
static uint64_t mix64(uint64_t x) {
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static gstream *stream_ref(evs_group *g, const char *name, size_t len) {
    uint64_t h = fnv1a(name, len);
    gstream **b = &g->buckets[h & (GROUP_BUCKETS - 1)];
    for (gstream *st = *b; st; st = st->next)
        if (st->hash == h && st->len == len && memcmp(st->name, name, len) == 0) {
            st->refs++;
            return st;
        }
    gstream *st = calloc(1, sizeof *st + len + 1);
    if (!st) return NULL;
    st->hash = h;
    st->len = len;
    memcpy(st->name, name, len);
    st->refs = 1;
    st->next = *b;
    *b = st;
    return st;
}

static void stream_unref(evs_group *g, gstream *st) {
    if (--st->refs) return;
    gstream **p = &g->buckets[st->hash & (GROUP_BUCKETS - 1)];
    while (*p != st) p = &(*p)->next;
    *p = st->next;
    free(st);
}

/* The stream's home: the member with the highest rendezvous score (a join moves only the streams it wins). */
static evs_group_member *home_of(evs_group *g, gstream *st) {
    if (st->home_gen == g->members_gen) return st->home;
    evs_group_member *best = NULL;
    uint64_t best_score = 0;
    for (size_t i = 0; i < g->n_members; i++) {
        uint64_t s = mix64(st->hash ^ g->members[i]->hash);
        if (!best || s > best_score) best = g->members[i], best_score = s;
    }
    st->home = best;
    st->home_gen = g->members_gen;
    return best;
}

/*
 * Pinned: the member that may take the stream's next event now, its home;
 * nobody while deliveries of it are in flight with another member (its
 * home moved to a member that joined): it moves once they are answered.
 */
static evs_group_member *owner_of(evs_group *g, gstream *st) {
    evs_group_member *home = home_of(g, st);
    return st->pin && st->pin != home ? NULL : home;
}

/* --------------------------------------------------------------- entries */

static void entry_clear(evs_group *g, gentry *e) {
    free(e->error);
    e->error = NULL;
    if (e->st) stream_unref(g, e->st);
    e->st = NULL;
}

static void set_error(gentry *e, const char *msg) {
    char *s = strdup(msg);
    if (!s) return; /* keep the previous text; the DLQ entry says less */
    free(e->error);
    e->error = s;
}

/* The entry for position pos (replays first), NULL if none. */
static gentry *find(evs_group *g, uint64_t pos) {
    for (uint32_t i = 0; i < g->rep_len; i++)
        if (g->rep[i].pos == pos) return &g->rep[i];
    uint32_t lo = 0, hi = g->win_len;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        gentry *e = WIN(g, mid);
        if (e->pos == pos) return e;
        if (e->pos < pos) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

/* Invariant 2: the first position not yet finished. */
static uint64_t checkpoint_pos(evs_group *g, int committing_is_done) {
    for (uint32_t i = 0; i < g->win_len; i++) {
        gentry *e = WIN(g, i);
        if (e->state == GE_DONE || (committing_is_done && e->state == GE_COMMITTING)) continue;
        return e->pos;
    }
    return g->next_read;
}

/* Drop DONE entries from the front of the window and from the replays. */
static void pop_done(evs_group *g) {
    while (g->win_len && WIN(g, 0)->state == GE_DONE) {
        entry_clear(g, WIN(g, 0));
        g->win_head = (g->win_head + 1) % g->win_cap;
        g->win_len--;
    }
    uint32_t j = 0;
    for (uint32_t i = 0; i < g->rep_len; i++) {
        if (g->rep[i].state == GE_DONE) entry_clear(g, &g->rep[i]);
        else g->rep[j++] = g->rep[i];
    }
    g->rep_len = j;
}

/* Take an INFLIGHT entry back from its owner: it becomes AVAILABLE. */
static void release(evs_group *g, gentry *e) {
    e->owner->in_flight--;
    if (--e->st->inflight == 0) e->st->pin = NULL; /* invariant 3 */
    g->n_inflight--;
    e->owner = NULL;
    e->state = GE_AVAILABLE;
    if (e->pos < g->avail_from) g->avail_from = e->pos;
}

/* Finish an AVAILABLE or INFLIGHT entry: DONE, or PENDING with a DLQ operation. */
static void settle(evs_group *g, gentry *e, int state, int op) {
    if (e->state == GE_INFLIGHT) release(g, e);
    g->n_unfinished--;
    e->expired_from = NULL;
    e->state = (uint8_t)state;
    e->op = (uint8_t)op;
    if (state == GE_PENDING) g->n_pending++;
    if (!e->from_dlq) g->since_commit++;
}

/* Ack / skip an entry: replays also drop their DLQ entry. */
static void finish(evs_group *g, gentry *e) {
    if (e->from_dlq) settle(g, e, GE_PENDING, OP_DELETE);
    else settle(g, e, GE_DONE, OP_NONE);
}

static void park(evs_group *g, gentry *e) {
    g->rec.parked++;
    if (g->rec.group.per_stream_order && (!e->st->parked_mem || e->pos < e->st->parked_mem))
        e->st->parked_mem = e->pos; /* until its DLQ write is committed (commit) */
    evs__bus_fmt(g->rec.last_error, sizeof g->rec.last_error, "position %llu (stream \"%s\"): %s",
                 (unsigned long long)e->pos, e->st->name, e->error ? e->error : "failed");
    settle(g, e, GE_PENDING, e->from_dlq ? OP_UPDATE : OP_PARK);
}

/*
 * A delivery of the AVAILABLE entry e failed (nack retry or ack timeout):
 * schedule the redelivery, or, once max_retries are used up, park it or
 * stop the group.
 */
static void failure(evs_group *g, gentry *e, int64_t now, const char *why, int backoff) {
    set_error(e, why);
    if (!e->first_failure_at) e->first_failure_at = now;
    e->last_failure_at = now;
    e->fails++;
    if (e->fails <= g->rec.max_retries) {
        g->rec.retry_count++;
        e->not_before = backoff ? now + evs_retry_delay_ns(&g->rec.group.retry, e->fails, evs__clock_random(g->clock))
                                : now;
        return;
    }
    g->rec.failed++;
    if (g->rec.group.on_failure == EVS_ON_FAILURE_PARK) {
        park(g, e);
        return;
    }
    g->rec.status = EVS_CONSUMER_ERROR;
    evs__bus_fmt(g->rec.last_error, sizeof g->rec.last_error, "position %llu (stream \"%s\"): %s",
                 (unsigned long long)e->pos, e->st->name, why);
    e->not_before = now;
    g->dirty = 1;
}

/* Ack deadlines that have passed: the deliveries go back to AVAILABLE. */
static void expire(evs_group *g, int64_t now) {
    if (!g->n_inflight || now < g->min_deadline) return;
    int64_t min = INT64_MAX;
    int any = 0;
    for (uint32_t i = 0; i < g->rep_len + g->win_len; i++) {
        gentry *e = i < g->rep_len ? &g->rep[i] : WIN(g, i - g->rep_len);
        if (e->state != GE_INFLIGHT) continue;
        if (e->deadline > now) {
            if (e->deadline < min) min = e->deadline;
            continue;
        }
        evs_group_member *m = e->owner;
        char why[EVS_BUS_MAX_NAME + 128];
        evs__bus_fmt(why, sizeof why, "delivery %u to consumer \"%s\" was not acked within %lld ms", e->attempt,
                     m->name, (long long)(g->rec.group.ack_timeout_ns / 1000000));
        m->timeouts++;
        g->rec.group.timeouts++;
        release(g, e);
        e->expired_from = m;
        failure(g, e, now, why, 0);
        any = 1;
    }
    g->min_deadline = min;
    if (any) pthread_cond_broadcast(&g->cv);
}

/* Another consumer is waiting in evs_group_next and has room for a delivery. */
static int other_waiting(evs_group *g, evs_group_member *m) {
    for (size_t i = 0; i < g->n_members; i++) {
        evs_group_member *x = g->members[i];
        if (x != m && x->waiting && x->in_flight < g->rec.group.max_in_flight) return 1;
    }
    return 0;
}

/* ----------------------------------------------------- per-stream order */

/* The DLQ changed since the streams' `parked` were read: read them again when next needed. */
static void parked_refresh(evs_group *g) {
    uint64_t gen = atomic_load(&g->bus->dlq_gen);
    if (gen == g->dlq_seen) return;
    g->dlq_seen = gen;
    for (size_t b = 0; b < GROUP_BUCKETS; b++)
        for (gstream *st = g->buckets[b]; st; st = st->next) st->parked_known = 0;
}

/* The earliest parked position of st (0: none), from the DLQ when not known. */
static uint64_t parked_of(evs_group *g, gstream *st) {
    if (!st->parked_known) {
        evs__kv_txn *txn;
        uint64_t first = 0;
        /* a read transaction under mu: LMDB readers never wait for the writer */
        if (evs__kv_begin(g->bus->kv, NULL, EVS__KV_RDONLY, &txn) == 0) {
            if (evs__dlq_stream_first(g->bus, txn, g->rec.name, st->name, st->len, &first)) first = 0;
            evs__kv_abort(txn);
            st->parked = first;
            st->parked_known = 1;
        }
        evs__err_clear();
    }
    uint64_t p = st->parked;
    if (st->parked_mem && (!p || st->parked_mem < p)) p = st->parked_mem;
    return p;
}

/* A replay of position pos is queued (the event it waits behind is being retried). */
static int replaying(const evs_group *g, uint64_t pos) {
    for (uint32_t i = 0; i < g->rep_len; i++)
        if (g->rep[i].pos == pos && g->rep[i].state != GE_DONE) return 1;
    return 0;
}

/* Park the AVAILABLE entry e behind position `behind` of its stream. */
static void park_behind(evs_group *g, gentry *e, uint64_t behind, int64_t now) {
    char why[EVS_MAX_STREAM_NAME + 64];
    evs__bus_fmt(why, sizeof why, "waiting behind position %llu of stream \"%s\"", (unsigned long long)behind,
                 e->st->name);
    set_error(e, why);
    e->blocked_by = behind;
    if (!e->first_failure_at) e->first_failure_at = now;
    e->last_failure_at = now;
    g->rec.parked++;
    settle(g, e, GE_PENDING, e->from_dlq ? OP_UPDATE : OP_PARK);
}

/*
 * per_stream_order: 1 when the AVAILABLE entry e must not go out now: an
 * earlier event of its stream is out or waits (this scan), or e has been
 * parked behind an earlier parked event of its stream.
 */
static int in_order(evs_group *g, gentry *e, uint64_t scan, int64_t now) {
    gstream *st = e->st;
    if (st->blocked == scan) return 1;
    if (st->inflight) {
        st->blocked = scan;
        return 1;
    }
    uint64_t p = parked_of(g, st);
    if (p && p < e->pos) {
        if (e->from_dlq && replaying(g, p)) { /* its blocker is being retried first */
            st->blocked = scan;
            return 1;
        }
        park_behind(g, e, p, now);
        return 1;
    }
    return 0;
}

/*
 * per_stream_order: park now what the next pick would park on its way,
 * every AVAILABLE entry behind a parked event of its stream.  Under mu.
 */
static void park_followers(evs_group *g, int64_t now) {
    if (g->n_unfinished == g->n_inflight) return;
    uint64_t scan = ++g->scan_id;
    parked_refresh(g);
    for (uint32_t i = 0; i < g->rep_len + g->win_len; i++) {
        gentry *e = i < g->rep_len ? &g->rep[i] : WIN(g, i - g->rep_len);
        if (e->state == GE_AVAILABLE) (void)in_order(g, e, scan, now);
    }
}

/*
 * The entry m should get now, in position order (replays first), or NULL.
 * The window scan starts at avail_from: with many deliveries in flight the
 * front of the window is all INFLIGHT, and every next would walk it.
 */
static gentry *pick(evs_group *g, evs_group_member *m, int64_t now) {
    if (g->n_unfinished == g->n_inflight) return NULL; /* nothing AVAILABLE anywhere */
    int pinned = g->rec.group.strategy == EVS_GROUP_PINNED;
    int pso = g->rec.group.per_stream_order;
    int avoid = !pinned && other_waiting(g, m);
    uint64_t scan = ++g->scan_id;
    if (pso) parked_refresh(g);
    uint32_t lo = 0, hi = g->win_len;
    while (lo < hi) { /* the first window entry at or after avail_from */
        uint32_t mid = lo + (hi - lo) / 2;
        if (WIN(g, mid)->pos < g->avail_from) lo = mid + 1;
        else hi = mid;
    }
    uint64_t first_avail = 0;
    gentry *got = NULL;
    for (uint32_t i = 0; i < g->rep_len + g->win_len && !got; i++) {
        if (i == g->rep_len && lo) i += lo;
        if (i >= g->rep_len + g->win_len) break;
        int in_win = i >= g->rep_len;
        gentry *e = in_win ? WIN(g, i - g->rep_len) : &g->rep[i];
        if (e->state != GE_AVAILABLE) continue;
        if (in_win && !first_avail) first_avail = e->pos;
        if (pso && in_order(g, e, scan, now)) continue;
        if (pinned) {
            /* an earlier event of the stream waits or belongs elsewhere: keep the order */
            if (e->st->blocked == scan) continue;
            if (e->not_before > now || owner_of(g, e->st) != m) {
                e->st->blocked = scan;
                continue;
            }
            got = e;
            continue;
        }
        if (e->not_before > now) continue;
        if (avoid && e->expired_from == m) continue;
        got = e;
    }
    /* the scan saw where the window's first AVAILABLE entry is (the one
       handed out stops being AVAILABLE, so the next starts after it) */
    if (first_avail) g->avail_from = got && got->pos == first_avail ? first_avail + 1 : first_avail;
    else if (!got) g->avail_from = g->next_read; /* (a window entry got is always first_avail's or later) */
    return got;
}

static void hand_out(evs_group *g, evs_group_member *m, gentry *e, int64_t now) {
    e->state = GE_INFLIGHT;
    e->owner = m;
    e->st->inflight++;
    e->attempt++;
    e->deadline = now + g->rec.group.ack_timeout_ns;
    e->expired_from = NULL;
    m->in_flight++;
    m->delivered++;
    g->n_inflight++;
    if (e->deadline < g->min_deadline) g->min_deadline = e->deadline;
    if (g->rec.group.strategy == EVS_GROUP_PINNED) e->st->pin = m;
}

/* ------------------------------------------------------------------ fill */

/*
 * Read matching events after next_read into the window.  Called with mu
 * held and nobody filling; mu is released during the read and, when the log
 * has nothing new, during a wait of up to wait_ms for the next append.
 * *progressed tells whether next_read moved.
 */
static int fill(evs_group *g, int64_t wait_ms, int *progressed) {
    int rc;
    uint64_t from = g->next_read, rp = from;
    uint32_t room = g->win_cap - g->win_len, n = 0;
    size_t used = 0;
    evs_reader *r = NULL;
    *progressed = 0;
    g->filling = 1;
    pthread_mutex_unlock(&g->mu);
    rc = evs_read_all(g->store, from, EVS_FORWARD, &g->filter, room, &r);
    char lost_note[400] = "";
    if (!rc) {
        const evs_event *ev;
        int nrc;
        for (;;) {
            nrc = evs_reader_next(r, &ev);
            if (nrc == EVS_ELOST) { /* positions a repair removed: nothing to deliver; noted, read on */
                evs__bus_fmt(lost_note, sizeof lost_note, "read past lost events: %s", evs_errmsg());
                continue;
            }
            if (nrc != EVS_OK) break;
            if (g->rec.tag && !evs__bus_has_tag(ev, g->rec.tag)) continue;
            g->fill_pos[n] = ev->global_position;
            g->fill_off[n] = (uint32_t)used;
            g->fill_len[n] = (uint16_t)ev->stream_len;
            memcpy(g->fill_names + used, ev->stream, ev->stream_len);
            used += ev->stream_len;
            n++;
        }
        if (nrc == EVS_DONE) rp = evs_reader_position(r);
        else rc = nrc;
        evs_reader_close(r);
    }
    if (!rc && n == 0 && rp == from && wait_ms > 0) {
        uint64_t head;
        int wrc = evs_wait_for(g->store, from, wait_ms > GROUP_SLICE_MS ? GROUP_SLICE_MS : (int)wait_ms, &head);
        if (wrc == EVS_ECLOSED) rc = wrc;
        else evs__err_clear();
    }
    pthread_mutex_lock(&g->mu);
    if (lost_note[0]) {
        evs__bus_fmt(g->rec.last_error, sizeof g->rec.last_error, "%s", lost_note);
        g->dirty = 1;
    }
    for (uint32_t i = 0; i < n && !rc; i++) {
        gstream *st = stream_ref(g, g->fill_names + g->fill_off[i], g->fill_len[i]);
        if (!st) {
            rc = evs__err(EVS_ENOMEM, "out of memory");
            rp = g->fill_pos[i]; /* read it again next time */
            break;
        }
        gentry *e = WIN(g, g->win_len);
        memset(e, 0, sizeof *e);
        e->pos = g->fill_pos[i];
        e->st = st;
        e->state = GE_AVAILABLE;
        g->n_unfinished++;
        g->win_len++;
    }
    if (rp > g->next_read && (!rc || rc == EVS_ENOMEM)) {
        g->next_read = rp;
        *progressed = 1;
    }
    g->filling = 0;
    pthread_cond_broadcast(&g->cv);
    return rc;
}

/* ---------------------------------------------------------------- commit */

typedef struct pending_op {
    int op;
    evs_dlq_entry e;
} pending_op;

/* Read the event at gpos for a new DLQ entry (stream position, type). */
static int describe(evs_store *s, uint64_t gpos, evs_dlq_entry *e) {
    evs_reader *r = NULL;
    const evs_event *ev;
    int rc = evs_read_all(s, gpos, EVS_FORWARD, NULL, 1, &r);
    if (!rc) rc = evs_reader_next(r, &ev);
    if (rc == EVS_OK && ev->global_position != gpos) rc = EVS_DONE;
    if (rc == EVS_DONE) rc = evs__err(EVS_ENOTFOUND, "event at global position %llu not found", (unsigned long long)gpos);
    if (!rc) {
        e->stream_position = ev->stream_position;
        evs__bus_fmt(e->event_type, sizeof e->event_type, "%.*s", (int)ev->event_type_len, ev->event_type);
    }
    evs_reader_close(r);
    return rc;
}

static int write_op(evs_group *g, evs__kv_txn *txn, pending_op *o) {
    evs_bus *b = g->bus;
    const char *name = g->rec.name;
    evs_dlq_entry old;
    int rc;
    switch (o->op) {
    case OP_PARK:
        return evs__dlq_put(b, txn, name, &o->e, 1);
    case OP_UPDATE:
        rc = evs__dlq_get_txn(b, txn, name, o->e.position, &old);
        if (rc == EVS_ENOTFOUND) {
            /* discarded while it was being retried: park it anew */
            evs__err_clear();
            return evs__dlq_put(b, txn, name, &o->e, 1);
        }
        if (rc) return rc;
        old.attempts = o->e.attempts;
        old.last_failure_at = o->e.last_failure_at;
        old.blocked_by = o->e.blocked_by; /* 0 unless parked behind again */
        snprintf(old.last_error, sizeof old.last_error, "%s", o->e.last_error);
        return evs__dlq_put(b, txn, name, &old, 0);
    case OP_DELETE:
        rc = evs__dlq_del(b, txn, name, o->e.position);
        if (rc == EVS_ENOTFOUND) evs__err_clear(), rc = EVS_OK; /* discarded meanwhile */
        return rc;
    default:
        return EVS_OK;
    }
}

/*
 * Write the record (and the pending DLQ operations) when something forces it
 * or the checkpoint interval has passed: every checkpoint_every finished
 * events or checkpoint_ms.  Takes commit_mu then mu; holds neither of them
 * while in LMDB except commit_mu.
 */
static int commit(evs_group *g, int force) {
    int rc = EVS_OK;
    pending_op *ops = NULL;
    size_t nops = 0;
    evs__kv_txn *txn = NULL;
    evs__record snap;
    pthread_mutex_lock(&g->commit_mu);
    pthread_mutex_lock(&g->mu);
    const evs__group_settings *gs = &g->rec.group;
    uint64_t next = checkpoint_pos(g, 0);
    int64_t mono = evs__mono_ns();
    int moved = next != g->committed_next || g->since_commit;
    int due = force || g->dirty || g->n_pending ||
              (moved && (g->since_commit >= gs->checkpoint_every ||
                         mono - g->last_commit_ns >= (int64_t)gs->checkpoint_ms * 1000000));
    if (!due) {
        pthread_mutex_unlock(&g->mu);
        goto out;
    }
    if (g->n_pending && !(ops = calloc(g->n_pending, sizeof *ops))) {
        pthread_mutex_unlock(&g->mu);
        rc = evs__err(EVS_ENOMEM, "out of memory");
        goto out;
    }
    for (uint32_t i = 0; i < g->rep_len + g->win_len && g->n_pending; i++) {
        gentry *e = i < g->rep_len ? &g->rep[i] : WIN(g, i - g->rep_len);
        if (e->state != GE_PENDING) continue;
        pending_op *o = &ops[nops++];
        o->op = e->op;
        o->e.position = e->pos;
        snprintf(o->e.stream, sizeof o->e.stream, "%s", e->st->name);
        snprintf(o->e.last_error, sizeof o->e.last_error, "%s", e->error ? e->error : "");
        o->e.attempts = e->attempt;
        o->e.first_failure_at = e->first_failure_at;
        o->e.last_failure_at = e->last_failure_at;
        o->e.blocked_by = e->blocked_by;
        e->state = GE_COMMITTING;
        g->n_pending--;
    }
    snap = g->rec; /* shallow: the filter strings do not change while open */
    snap.next = checkpoint_pos(g, 1);
    uint32_t since = g->since_commit;
    int dirty = g->dirty;
    g->since_commit = 0;
    g->dirty = 0;
    pthread_mutex_unlock(&g->mu);

    for (size_t i = 0; i < nops && !rc; i++)
        if (ops[i].op == OP_PARK) rc = describe(g->store, ops[i].e.position, &ops[i].e);
    if (!rc && (rc = evs__kv_begin(g->bus->kv, g->lease, 0, &txn))) rc = evs__bus_kv_err(rc, "begin"), txn = NULL;
    int parked = 0;
    for (size_t i = 0; i < nops && !rc; i++) {
        rc = write_op(g, txn, &ops[i]);
        parked |= ops[i].op == OP_PARK;
    }
    if (!rc && parked && (gs->dlq_max_count || gs->dlq_max_age_ns))
        rc = evs__dlq_prune_txn(g->bus, txn, snap.name, gs->dlq_max_age_ns, gs->dlq_max_count,
                                evs__clock_now(g->clock), NULL);
    if (!rc) rc = evs__record_put(g->bus, txn, &snap);
    if (!rc) {
        rc = evs__kv_commit(txn);
        txn = NULL;
        if (rc) rc = evs__bus_kv_err(rc, "commit");
    }
    if (txn) evs__kv_abort(txn);

    pthread_mutex_lock(&g->mu);
    for (size_t i = 0; i < nops; i++) {
        gentry *e = find(g, ops[i].e.position);
        if (!e || e->state != GE_COMMITTING) continue;
        if (rc) {
            e->state = GE_PENDING;
            g->n_pending++;
        } else {
            e->state = GE_DONE;
            if (e->st->parked_mem == e->pos) e->st->parked_mem = 0; /* the DLQ says it now */
            e->st->parked_known = 0;
        }
    }
    if (rc) {
        g->since_commit += since;
        g->dirty |= dirty;
    } else {
        g->committed_next = snap.next;
        g->last_commit_ns = evs__mono_ns();
    }
    pop_done(g);
    if (nops) pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    if (!rc && nops) atomic_fetch_add(&g->bus->dlq_gen, 1);
out:
    pthread_mutex_unlock(&g->commit_mu);
    free(ops);
    return rc;
}

/*
 * Bring the state up to date for a reader (info, member list, a record
 * read through the bus) as the next consumer call would: ack deadlines
 * that passed hand their deliveries back (an idle consumer's in-flight
 * count drops, exhausted retries park), followers of parked events are
 * parked, and what that makes due is committed, so the stored record and
 * the DLQ agree with the figures.  A failed commit is left to the next
 * consumer call, which retries it and reports it.
 */
static void refresh(evs_group *g) {
    pthread_mutex_lock(&g->mu);
    int64_t now = evs__clock_now(g->clock);
    expire(g, now);
    if (g->rec.group.per_stream_order && g->rec.status == EVS_CONSUMER_ACTIVE) park_followers(g, now);
    pthread_mutex_unlock(&g->mu);
    if (commit(g, 0)) evs__err_clear();
}

/* ------------------------------------------------------------ open/close */

int evs_group_open(evs_bus *b, const char *name, const evs_clock *clock, evs_group **out) {
    int rc;
    evs__kv_txn *txn = NULL;
    evs_group *g = NULL;
    int claimed = 0, have_rec = 0, sync = 0;
    if (!out) return evs__err(EVS_EINVAL, "group_open: out is NULL");
    *out = NULL;
    if (!b) return evs__err(EVS_EINVAL, "group_open: bus is NULL");
    if ((rc = evs__bus_check_name(name))) return rc;
    if ((rc = evs__bus_claim(b, name))) return rc;
    claimed = 1;
    if (!(g = calloc(1, sizeof *g))) {
        rc = evs__err(EVS_ENOMEM, "out of memory");
        goto fail;
    }
    g->lease = evs__bus_lease(b, name);
    if ((rc = evs__kv_begin(b->kv, NULL, EVS__KV_RDONLY, &txn))) {
        rc = evs__bus_kv_err(rc, "begin");
        txn = NULL;
        goto fail;
    }
    rc = group_record_get(b, txn, name, &g->rec);
    evs__kv_abort(txn);
    txn = NULL;
    if (rc) goto fail;
    have_rec = 1;
    settings_sane(&g->rec.group);
    g->rec.group.retry.max_retries = g->rec.max_retries;
    g->bus = b;
    g->store = b->store;
    g->clock = clock;
    g->win_cap = g->rec.group.buffer_size;
    g->win = calloc(g->win_cap, sizeof *g->win);
    g->rep = calloc(g->win_cap, sizeof *g->rep);
    g->fill_pos = calloc(g->win_cap, sizeof *g->fill_pos);
    g->fill_off = calloc(g->win_cap, sizeof *g->fill_off);
    g->fill_len = calloc(g->win_cap, sizeof *g->fill_len);
    g->fill_names = malloc((size_t)g->win_cap * EVS_MAX_STREAM_NAME);
    if (!g->win || !g->rep || !g->fill_pos || !g->fill_off || !g->fill_len || !g->fill_names) {
        rc = evs__err(EVS_ENOMEM, "out of memory");
        goto fail;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&g->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&g->mu, NULL);
    pthread_mutex_init(&g->commit_mu, NULL);
    sync = 1;
    g->filter.event_types = (const char *const *)g->rec.event_types;
    g->filter.n_event_types = g->rec.n_event_types;
    g->filter.stream_type = g->rec.stream_type;
    g->filter.stream_prefix = g->rec.stream_prefix;
    g->filter.correlation_id = g->rec.has_corr ? &g->rec.corr : NULL;
    g->next_read = g->rec.next ? g->rec.next : 1;
    g->committed_next = g->next_read;
    g->min_deadline = INT64_MAX;
    g->last_commit_ns = evs__mono_ns();
    g->members_gen = 1; /* a new stream's home_gen (0) is stale */
    if ((rc = evs__bus_add_live(b, g->rec.name, live_consumer_info, g))) goto fail;
    *out = g;
    return EVS_OK;
fail:
    if (g) {
        if (sync) {
            pthread_cond_destroy(&g->cv);
            pthread_mutex_destroy(&g->mu);
            pthread_mutex_destroy(&g->commit_mu);
        }
        if (have_rec) evs__record_free(&g->rec);
        free(g->win);
        free(g->rep);
        free(g->fill_pos);
        free(g->fill_off);
        free(g->fill_len);
        free(g->fill_names);
        free(g);
    }
    if (claimed) evs__bus_release(b, name);
    return rc;
}

void evs_group_close(evs_group *g) {
    if (!g) return;
    evs__bus_remove_live(g->bus, g); /* first: readers through the bus no longer reach it */
    commit(g, 1);
    for (size_t i = 0; i < g->n_members; i++) free(g->members[i]);
    free(g->members);
    for (uint32_t i = 0; i < g->win_len; i++) entry_clear(g, WIN(g, i));
    for (uint32_t i = 0; i < g->rep_len; i++) entry_clear(g, &g->rep[i]);
    free(g->win);
    free(g->rep);
    free(g->fill_pos);
    free(g->fill_off);
    free(g->fill_len);
    free(g->fill_names);
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
    pthread_mutex_destroy(&g->commit_mu);
    evs__bus_release(g->bus, g->rec.name);
    evs__record_free(&g->rec);
    free(g);
}

int evs_group_checkpoint(evs_group *g) {
    if (!g) return evs__err(EVS_EINVAL, "group_checkpoint: group is NULL");
    return commit(g, 1);
}

static int set_status(evs_group *g, int status) {
    pthread_mutex_lock(&g->mu);
    g->rec.status = status;
    if (status == EVS_CONSUMER_ACTIVE) {
        g->rec.last_error[0] = 0;
        /* a stopped group starts over with fresh retries */
        for (uint32_t i = 0; i < g->rep_len + g->win_len; i++) {
            gentry *e = i < g->rep_len ? &g->rep[i] : WIN(g, i - g->rep_len);
            if (e->fails > g->rec.max_retries) e->fails = 0;
        }
    }
    g->dirty = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    return commit(g, 1);
}

int evs_group_pause(evs_group *g) {
    if (!g) return evs__err(EVS_EINVAL, "group_pause: group is NULL");
    return set_status(g, EVS_CONSUMER_PAUSED);
}

int evs_group_resume(evs_group *g) {
    if (!g) return evs__err(EVS_EINVAL, "group_resume: group is NULL");
    return set_status(g, EVS_CONSUMER_ACTIVE);
}

/* The live figures, after refresh. */
static int live_info(evs_group *g, evs_group_info *out) {
    int rc;
    evs__kv_txn *txn;
    memset(out, 0, sizeof *out);
    refresh(g);
    /* commit_mu keeps commits out between the snapshot and the read of the DLQ, so the
       depth read matches the parked count of the snapshot (on PostgreSQL the read's begin is a
       round trip: a park and its commit fitted in between) */
    pthread_mutex_lock(&g->commit_mu);
    pthread_mutex_lock(&g->mu);
    evs__record snap = g->rec; /* shallow, as in commit */
    snap.next = checkpoint_pos(g, 0);
    out->members = (uint32_t)g->n_members;
    out->in_flight = g->n_inflight;
    out->buffered = g->n_unfinished + g->n_pending;
    pthread_mutex_unlock(&g->mu);
    if ((rc = evs__kv_begin(g->bus->kv, NULL, EVS__KV_RDONLY, &txn))) {
        pthread_mutex_unlock(&g->commit_mu);
        return evs__bus_kv_err(rc, "begin");
    }
    rc = evs__record_info(g->bus, txn, &snap, &out->info);
    evs__kv_abort(txn);
    pthread_mutex_unlock(&g->commit_mu);
    info_fill(out, &snap);
    return rc;
}

int evs_group_get_info(evs_group *g, evs_group_info *out) {
    if (!g || !out) return evs__err(EVS_EINVAL, "group_get_info: NULL argument");
    return live_info(g, out);
}

/* The bus's view of an open group (evs__live): its record's part of live_info. */
static int live_consumer_info(void *handle, evs_consumer_info *out) {
    evs_group_info gi;
    int rc = live_info(handle, &gi);
    if (!rc) *out = gi.info;
    return rc;
}

static int info_if_open(evs_bus *b, const char *name, evs_group_info *out, int *found) {
    int rc = EVS_OK;
    *found = 0;
    /* b->mu keeps the handle from being freed meanwhile (evs_group_close unregisters first) */
    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; i < b->n_live && !*found; i++)
        if (b->live[i].info == live_consumer_info && strcmp(b->live[i].name, name) == 0) {
            *found = 1;
            rc = live_info(b->live[i].handle, out);
        }
    pthread_mutex_unlock(&b->mu);
    return rc;
}

/* ------------------------------------------------------------------- DLQ */

int evs_group_dlq_retry(evs_group *g, uint64_t position) {
    int rc;
    evs__kv_txn *txn;
    evs_dlq_entry d;
    if (!g) return evs__err(EVS_EINVAL, "group_dlq_retry: group is NULL");
    if ((rc = evs__kv_begin(g->bus->kv, NULL, EVS__KV_RDONLY, &txn))) return evs__bus_kv_err(rc, "begin");
    rc = evs__dlq_get_txn(g->bus, txn, g->rec.name, position, &d);
    uint64_t earlier = 0;
    if (!rc && g->rec.group.per_stream_order)
        rc = evs__dlq_earlier_of_stream(g->bus, txn, g->rec.name, d.stream, position, &earlier);
    evs__kv_abort(txn);
    if (rc) return rc;
    pthread_mutex_lock(&g->mu);
    if (earlier && !replaying(g, earlier)) {
        pthread_mutex_unlock(&g->mu);
        return evs__err(EVS_ECONFLICT,
                        "group \"%s\": position %llu of stream \"%s\" waits behind position %llu: retry that "
                        "one first, or retry all",
                        g->rec.name, (unsigned long long)position, d.stream, (unsigned long long)earlier);
    }
    gentry *x = find(g, position);
    if (x && x->state != GE_DONE) {
        rc = evs__err(EVS_ECONFLICT, "group \"%s\": event %llu is already outstanding", g->rec.name,
                      (unsigned long long)position);
    } else if (g->rep_len == g->win_cap) {
        rc = evs__err(EVS_ELIMIT, "group \"%s\": %u DLQ retries are already queued", g->rec.name, g->win_cap);
    } else {
        gstream *st = stream_ref(g, d.stream, strlen(d.stream));
        if (!st) {
            rc = evs__err(EVS_ENOMEM, "out of memory");
        } else {
            uint32_t at = g->rep_len;
            while (at > 0 && g->rep[at - 1].pos > position) at--;
            memmove(&g->rep[at + 1], &g->rep[at], (g->rep_len - at) * sizeof *g->rep);
            gentry *e = &g->rep[at];
            memset(e, 0, sizeof *e);
            e->pos = position;
            e->st = st;
            e->state = GE_AVAILABLE;
            e->from_dlq = 1;
            e->attempt = d.attempts;
            e->first_failure_at = d.first_failure_at;
            g->n_unfinished++;
            g->rep_len++;
            pthread_cond_broadcast(&g->cv);
        }
    }
    pthread_mutex_unlock(&g->mu);
    return rc;
}

int evs_group_dlq_retry_all(evs_group *g, size_t *queued) {
    int rc = EVS_OK;
    size_t n = 0;
    uint64_t after = 0;
    evs_dlq_entry page[64];
    if (queued) *queued = 0;
    if (!g) return evs__err(EVS_EINVAL, "group_dlq_retry_all: group is NULL");
    for (;;) {
        size_t cnt;
        if ((rc = evs_dlq_list(g->bus, g->rec.name, after, page, 64, &cnt)) || cnt == 0) break;
        for (size_t i = 0; i < cnt; i++) {
            after = page[i].position;
            int r1 = evs_group_dlq_retry(g, page[i].position);
            if (r1 == EVS_OK) n++;
            else if (r1 == EVS_ELIMIT) goto out;
            else if (r1 != EVS_ECONFLICT && r1 != EVS_ENOTFOUND) {
                rc = r1;
                goto out;
            }
        }
    }
out:
    if (queued) *queued = n;
    if (!rc) evs__err_clear();
    return rc;
}

/* --------------------------------------------------------------- members */

int evs_group_join(evs_group *g, const char *name, evs_group_member **out) {
    int rc = EVS_OK;
    if (!out) return evs__err(EVS_EINVAL, "group_join: out is NULL");
    *out = NULL;
    if (!g) return evs__err(EVS_EINVAL, "group_join: group is NULL");
    if ((rc = evs__bus_check_name(name))) return rc;
    evs_group_member *m = calloc(1, sizeof *m);
    if (!m) return evs__err(EVS_ENOMEM, "out of memory");
    m->g = g;
    snprintf(m->name, sizeof m->name, "%s", name);
    m->hash = fnv1a(name, strlen(name));
    pthread_mutex_lock(&g->mu);
    for (size_t i = 0; i < g->n_members && !rc; i++)
        if (strcmp(g->members[i]->name, name) == 0)
            rc = evs__err(EVS_ELOCKED, "consumer \"%s\" has already joined group \"%s\"", name, g->rec.name);
    if (!rc && g->n_members >= EVS_GROUP_MAX_MEMBERS)
        rc = evs__err(EVS_ELIMIT, "group \"%s\" has %u consumers, the most allowed", g->rec.name, EVS_GROUP_MAX_MEMBERS);
    if (!rc && g->n_members == g->cap_members) {
        size_t nc = g->cap_members ? g->cap_members * 2 : 8;
        evs_group_member **nm = realloc(g->members, nc * sizeof *nm);
        if (!nm) rc = evs__err(EVS_ENOMEM, "out of memory");
        else g->members = nm, g->cap_members = nc;
    }
    if (!rc) {
        g->members[g->n_members++] = m;
        g->members_gen++; /* streams whose home it becomes move to it (invariant 3) */
        pthread_cond_broadcast(&g->cv);
    }
    pthread_mutex_unlock(&g->mu);
    if (rc) {
        free(m);
        return rc;
    }
    *out = m;
    return EVS_OK;
}

void evs_group_leave(evs_group_member *m) {
    if (!m) return;
    evs_group *g = m->g;
    pthread_mutex_lock(&g->mu);
    for (uint32_t i = 0; i < g->rep_len + g->win_len; i++) {
        gentry *e = i < g->rep_len ? &g->rep[i] : WIN(g, i - g->rep_len);
        if (e->state == GE_INFLIGHT && e->owner == m) {
            release(g, e);
            e->not_before = 0;
        }
        if (e->expired_from == m) e->expired_from = NULL;
    }
    /* every stream it held is released (invariant 3): each now goes to its new home */
    for (size_t i = 0; i < g->n_members; i++)
        if (g->members[i] == m) {
            memmove(&g->members[i], &g->members[i + 1], (g->n_members - i - 1) * sizeof *g->members);
            g->n_members--;
            break;
        }
    g->members_gen++;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    free(m);
}

int evs_group_list_members(evs_group *g, evs_group_member_info *out, size_t max, size_t *count) {
    if (!g || !count || (!out && max)) return evs__err(EVS_EINVAL, "group_list_members: NULL argument");
    refresh(g);
    pthread_mutex_lock(&g->mu);
    size_t n = 0;
    for (; n < g->n_members && n < max; n++) {
        const evs_group_member *m = g->members[n];
        memset(&out[n], 0, sizeof out[n]);
        snprintf(out[n].name, sizeof out[n].name, "%s", m->name);
        out[n].in_flight = m->in_flight;
        out[n].delivered = m->delivered;
        out[n].acked = m->acked;
        out[n].nacked = m->nacked;
        out[n].timeouts = m->timeouts;
    }
    pthread_mutex_unlock(&g->mu);
    *count = n;
    return EVS_OK;
}

void evs_group_cancel(evs_group_member *m) {
    if (!m) return;
    pthread_mutex_lock(&m->g->mu);
    m->cancelled = 1;
    pthread_cond_broadcast(&m->g->cv);
    pthread_mutex_unlock(&m->g->mu);
}

/* ------------------------------------------------------------- delivery */

void evs_delivery_free(evs_delivery *d) { free(d); }

/* Copy the event at gpos into a new delivery: the struct, then its strings. */
static int copy_event(evs_store *s, uint64_t gpos, evs_delivery **out) {
    evs_reader *r = NULL;
    const evs_event *ev;
    int rc = evs_read_all(s, gpos, EVS_FORWARD, NULL, 1, &r);
    if (!rc) rc = evs_reader_next(r, &ev);
    if (rc == EVS_OK && ev->global_position != gpos) rc = EVS_DONE;
    if (rc == EVS_DONE) rc = evs__err(EVS_ENOTFOUND, "event at global position %llu not found", (unsigned long long)gpos);
    if (rc) goto out;
    size_t need = sizeof(evs_delivery) + ev->stream_len + ev->stream_type_len + ev->event_type_len + ev->data_len +
                  ev->metadata_len + ev->tags_len + 6;
    evs_delivery *d = malloc(need);
    if (!d) {
        rc = evs__err(EVS_ENOMEM, "out of memory");
        goto out;
    }
    memset(d, 0, sizeof *d);
    d->event = *ev;
    char *p = (char *)(d + 1);
#define COPY_FIELD(f, n)                  \
    do {                                  \
        if (ev->n) memcpy(p, ev->f, ev->n); \
        p[ev->n] = 0;                     \
        d->event.f = p;                   \
        p += ev->n + 1;                   \
    } while (0)
    COPY_FIELD(stream, stream_len);
    COPY_FIELD(stream_type, stream_type_len);
    COPY_FIELD(event_type, event_type_len);
    COPY_FIELD(data, data_len);
    COPY_FIELD(metadata, metadata_len);
    COPY_FIELD(tags, tags_len);
#undef COPY_FIELD
    if (!ev->tags) d->event.tags = NULL;
    *out = d;
out:
    evs_reader_close(r);
    return rc;
}

int evs_group_next(evs_group_member *m, int timeout_ms, evs_delivery **out) {
    int rc = EVS_OK, why = WHY_EMPTY, got = 0;
    uint64_t pos = 0;
    uint32_t attempt = 0;
    if (!out) return evs__err(EVS_EINVAL, "group_next: out is NULL");
    *out = NULL;
    if (!m) return evs__err(EVS_EINVAL, "group_next: member is NULL");
    evs_group *g = m->g;
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : evs__mono_ns() + (int64_t)timeout_ms * 1000000;
    int64_t last_commit_try = evs__mono_ns();
    pthread_mutex_lock(&g->mu);
    m->waiting++;
    for (;;) {
        if (m->cancelled) {
            m->cancelled = 0;
            rc = evs__err(EVS_ECLOSED, "group \"%s\": consumer \"%s\" was cancelled", g->rec.name, m->name);
            break;
        }
        if (g->rec.status == EVS_CONSUMER_ERROR) {
            rc = evs__err(EVS_EFAILED, "group \"%s\" is stopped: %s", g->rec.name, g->rec.last_error);
            break;
        }
        int64_t now = evs__clock_now(g->clock);
        expire(g, now);
        int active = g->rec.status == EVS_CONSUMER_ACTIVE;
        int room = m->in_flight < g->rec.group.max_in_flight;
        why = !active ? WHY_PAUSED : !room ? WHY_FULL : WHY_EMPTY;
        gentry *e;
        if (active && room && (e = pick(g, m, now))) {
            hand_out(g, m, e, now);
            pos = e->pos;
            attempt = e->attempt;
            got = 1;
            break;
        }
        if (evs__mono_ns() - last_commit_try >= (int64_t)GROUP_SLICE_MS * 1000000) {
            /* a long wait still writes due checkpoints and the parks of expired deliveries */
            last_commit_try = evs__mono_ns();
            pthread_mutex_unlock(&g->mu);
            commit(g, 0);
            pthread_mutex_lock(&g->mu);
            continue;
        }
        int64_t left = deadline - evs__mono_ns();
        if (active && room && !g->filling && g->win_len < g->win_cap) {
            int progressed;
            if ((rc = fill(g, left > 0 ? (left + 999999) / 1000000 : 0, &progressed))) break;
            if (progressed || evs__mono_ns() < deadline) continue;
            rc = EVS_ETIMEDOUT;
            break;
        }
        if (left <= 0) {
            rc = EVS_ETIMEDOUT;
            break;
        }
        int64_t wait = left < (int64_t)GROUP_SLICE_MS * 1000000 ? left : (int64_t)GROUP_SLICE_MS * 1000000;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t t = (int64_t)ts.tv_nsec + wait;
        ts.tv_sec += (time_t)(t / 1000000000);
        ts.tv_nsec = (long)(t % 1000000000);
        pthread_cond_timedwait(&g->cv, &g->mu, &ts);
    }
    m->waiting--;
    pthread_mutex_unlock(&g->mu);

    if (got && (rc = copy_event(g->store, pos, out))) {
        /* the event cannot be read: hand the entry back, as if never delivered */
        pthread_mutex_lock(&g->mu);
        gentry *e = find(g, pos);
        if (e && e->state == GE_INFLIGHT && e->owner == m && e->attempt == attempt) {
            release(g, e);
            e->attempt--;
            m->delivered--;
            pthread_cond_broadcast(&g->cv);
        }
        pthread_mutex_unlock(&g->mu);
        return rc;
    }
    if (got) {
        (*out)->id.position = pos;
        (*out)->id.attempt = attempt;
    }
    if (rc && rc != EVS_ETIMEDOUT) return rc;
    /* due checkpoints and the parks of expired deliveries */
    int crc = commit(g, 0);
    if (rc == EVS_ETIMEDOUT) {
        if (crc) return crc;
        pthread_mutex_lock(&g->mu);
        uint32_t inf = m->in_flight;
        pthread_mutex_unlock(&g->mu);
        if (why == WHY_PAUSED) return evs__err(EVS_ETIMEDOUT, "group \"%s\" is paused", g->rec.name);
        if (why == WHY_FULL)
            return evs__err(EVS_ETIMEDOUT, "group \"%s\": consumer \"%s\" holds %u unacked deliveries (max_in_flight %u)",
                            g->rec.name, m->name, inf, g->rec.group.max_in_flight);
        return evs__err(EVS_ETIMEDOUT, "group \"%s\": no event for consumer \"%s\" within %d ms", g->rec.name, m->name,
                        timeout_ms);
    }
    return rc;
}

/* ---------------------------------------------------------- ack and nack */

/* Is (id) the delivery of e that m may answer?  See invariant 1. */
static int check_answer(evs_group *g, evs_group_member *m, gentry *e, evs_delivery_id id, const char *verb) {
    const char *gn = g->rec.name;
    unsigned long long p = (unsigned long long)id.position;
    if (!e) {
        if (id.position < checkpoint_pos(g, 0))
            return evs__err(EVS_ECONFLICT, "group \"%s\": event %llu is already finished; its %s is refused", gn, p, verb);
        return evs__err(EVS_ENOTFOUND, "group \"%s\": event %llu has no outstanding delivery", gn, p);
    }
    if (id.attempt == 0 || id.attempt > e->attempt)
        return evs__err(EVS_ENOTFOUND, "group \"%s\": event %llu has no delivery %u", gn, p, id.attempt);
    if (id.attempt < e->attempt)
        return evs__err(EVS_ECONFLICT, "group \"%s\": delivery %u of event %llu was redelivered; its %s is refused", gn,
                        id.attempt, p, verb);
    switch (e->state) {
    case GE_INFLIGHT:
        if (e->owner == m) return EVS_OK;
        return evs__err(EVS_ECONFLICT, "group \"%s\": delivery %u of event %llu is held by consumer \"%s\", not \"%s\"",
                        gn, id.attempt, p, e->owner->name, m->name);
    case GE_AVAILABLE:
        if (e->expired_from == m) return EVS_OK; /* timed out, not handed out again: still valid */
        return evs__err(EVS_ECONFLICT, "group \"%s\": delivery %u of event %llu was already answered; its %s is refused",
                        gn, id.attempt, p, verb);
    default:
        return evs__err(EVS_ECONFLICT, "group \"%s\": delivery %u of event %llu is already finished; its %s is refused",
                        gn, id.attempt, p, verb);
    }
}

int evs_group_ack(evs_group_member *m, evs_delivery_id id) {
    if (!m) return evs__err(EVS_EINVAL, "group_ack: member is NULL");
    evs_group *g = m->g;
    pthread_mutex_lock(&g->mu);
    int64_t now = evs__clock_now(g->clock);
    expire(g, now);
    gentry *e = find(g, id.position);
    int rc = check_answer(g, m, e, id, "ack");
    if (!rc) {
        g->rec.processed++;
        g->rec.last_processed_at = now;
        m->acked++;
        finish(g, e);
        pop_done(g);
        pthread_cond_broadcast(&g->cv);
    }
    pthread_mutex_unlock(&g->mu);
    return rc ? rc : commit(g, 0);
}

int evs_group_nack(evs_group_member *m, evs_delivery_id id, evs_nack_action action, const char *reason) {
    if (!m) return evs__err(EVS_EINVAL, "group_nack: member is NULL");
    if (action != EVS_NACK_RETRY && action != EVS_NACK_PARK && action != EVS_NACK_SKIP)
        return evs__err(EVS_EINVAL, "group_nack: bad action %d", (int)action);
    evs_group *g = m->g;
    char why[512];
    if (reason && *reason) evs__bus_fmt(why, sizeof why, "%s", reason);
    else evs__bus_fmt(why, sizeof why, "nacked by consumer \"%s\"", m->name);
    pthread_mutex_lock(&g->mu);
    int64_t now = evs__clock_now(g->clock);
    expire(g, now);
    gentry *e = find(g, id.position);
    int rc = check_answer(g, m, e, id, "nack");
    if (!rc) {
        m->nacked++;
        int expired = e->state == GE_AVAILABLE; /* its timeout already scheduled a redelivery */
        switch (action) {
        case EVS_NACK_RETRY:
            if (expired) {
                set_error(e, why);
                break;
            }
            release(g, e);
            failure(g, e, now, why, 1);
            break;
        case EVS_NACK_PARK:
            set_error(e, why);
            if (!e->first_failure_at) e->first_failure_at = now;
            e->last_failure_at = now;
            g->rec.failed++;
            park(g, e);
            break;
        default:
            g->rec.group.skipped++;
            finish(g, e);
            break;
        }
        pop_done(g);
        pthread_cond_broadcast(&g->cv);
    }
    pthread_mutex_unlock(&g->mu);
    return rc ? rc : commit(g, 0);
}
