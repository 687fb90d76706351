/*
 * bus_internal.h — shared internals of the consumer bus (src/bus/).
 *
 *   bus.c       the DIR/consumers/ LMDB environment, consumer records (JSON),
 *               DLQ storage, the open handles that answer for their records
 *               (groups), the real clock and the backoff formula
 *   consumer.c  the engine every consumer runs on: pages from the checkpoint,
 *               live waits, filters, retries, parking, commits
 *   sub.c       subscriptions: the engine with a user callback
 *   proj.c      projections: partitioned state cache, commit of state and
 *               checkpoint in one transaction, queries, rebuild
 *   proj_lua.c  Lua projections: a script's declaration run in the sandbox
 *   lua_sandbox.c  the Lua 5.4 sandbox shared with Lua aggregates (src/app/)
 *   group.c     persistent subscription groups (competing consumers): a
 *               window of outstanding events shared between members
 *
 * LMDB databases of DIR/consumers/ (keys are byte strings):
 *   consumers    name                          -> record, JSON object
 *   dlq          name 0x00 be64(position)      -> entry, JSON object
 *   dlq_streams  name 0x00 stream              -> be64(count) be64(first position)
 *   pstate       name 0x00 be64(gen) partition -> state, JSON text
 *
 * Invariants:
 *   1. A record's "next" is the next position the consumer reads; every
 *      event below it has been handled, parked, or filtered out.
 *   2. For projections, pstate rows of the active generation describe
 *      exactly the events below "next" (one transaction writes both).
 *   3. dlq_streams counts, per consumer and stream, the DLQ entries of that
 *      stream; it is changed in the same transaction as the entries.
 */
#ifndef EVS_BUS_INTERNAL_H
#define EVS_BUS_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "bus/kv.h"
#include "bus/start.h"
#include "core/core.h"
#include "evstore.h"
#include "evstore_bus.h"

#define EVS__KIND_SUB 1
#define EVS__KIND_PROJ 2
#define EVS__KIND_GROUP 3

/* "subscription", "projection", "group". */
const char *evs__kind_name(int kind);

/*
 * An open consumer handle that answers for its record (groups: their
 * record lags behind their state).  Readers through the bus ask it instead
 * of the stored record, under the bus's mutex, which keeps the handle alive
 * (it unregisters before it is freed).
 */
typedef struct evs__live {
    const char *name;             /* the handle's own, stable while registered */
    int (*info)(void *handle, evs_consumer_info *out);
    void *handle;
} evs__live;

struct evs_bus {
    evs_store *store;
    evs__kv *kv;                  /* LMDB in DIR/consumers/, or the PostgreSQL database (kv.h) */
    int consumers, dlq, dlq_streams, pstate; /* kv.h's tables */
    pthread_mutex_t mu;           /* guards open_names, leases and live */
    char **open_names;
    evs__kv_lease **leases;       /* of open_names[i]: NULL where none is needed (LMDB) */
    size_t n_open, cap_open;
    evs__live *live;
    size_t n_live, cap_live;
    _Atomic uint64_t dlq_gen;     /* bumped by every DLQ change */
    /* every consumer commit bumps commit_gen and wakes evs_proj_wait */
    pthread_mutex_t commit_mu;
    pthread_cond_t commit_cv;
    uint64_t commit_gen;          /* guarded by commit_mu */
    int closing;                  /* guarded by commit_mu */
};

/* A consumer committed: wake the waiters of evs_proj_wait. */
void evs__bus_notify_commit(evs_bus *b);

/* A kv.h result -> evs status with message (kv errors already carry theirs). */
int evs__bus_kv_err(int rc, const char *what);

/*
 * Claim / release a consumer name: in this process, and across processes
 * on PostgreSQL, where the claim takes the name's lease (kv.h).  EVS_ELOCKED
 * if taken.
 */
int evs__bus_claim(evs_bus *b, const char *name);
void evs__bus_release(evs_bus *b, const char *name);
/*
 * The lease of a claimed name (NULL: none needed, or not claimed): write
 * transactions of the claim's holder begin with it, so they commit only
 * while the holder still holds the name.
 */
evs__kv_lease *evs__bus_lease(evs_bus *b, const char *name);
/*
 * A write transaction on a consumer that is not open in this process: on
 * PostgreSQL it holds the name's lease until it ends (EVS_ELOCKED while
 * another process runs the consumer), so it never writes under a runner.
 */
int evs__bus_begin_closed(evs_bus *b, const char *name, evs__kv_txn **txn);
int evs__bus_is_open(evs_bus *b, const char *name);

/* Register / forget a live handle (evs__live).  EVS_ENOMEM. */
int evs__bus_add_live(evs_bus *b, const char *name, int (*info)(void *, evs_consumer_info *), void *handle);
void evs__bus_remove_live(evs_bus *b, void *handle);
/*
 * When name has a live handle: *found = 1 and *out from it (the handle's
 * info is called under the bus's mutex, without any lock of its own held).
 */
int evs__bus_live_info(evs_bus *b, const char *name, evs_consumer_info *out, int *found);

/* snprintf that truncates silently (messages built from long names). */
void evs__bus_fmt(char *buf, size_t cap, const char *fmt, ...) EVS_PRINTF(3, 4);

/* Validate a consumer name. */
int evs__bus_check_name(const char *name);

/*
 * A test's fault point inside a multi-step write (bus_testing.h): EVS_OK,
 * or EVS_EIO when the test hook fails the write at `point` (the caller then
 * aborts its transaction, as for any I/O error).
 */
int evs__bus_fault(const char *point);

/* Clock helpers: the configured function or the real one. */
int64_t evs__clock_now(const evs_clock *c);
void evs__clock_sleep(const evs_clock *c, int64_t ns);
uint64_t evs__clock_random(const evs_clock *c);

/* ---------------------------------------------------------------- records */

/* The settings and group-only counters of a subscription group ("group" in the record). */
typedef struct evs__group_settings {
    int strategy;
    int64_t ack_timeout_ns;
    uint32_t max_in_flight, buffer_size;
    uint32_t checkpoint_every, checkpoint_ms;
    evs_retry_policy retry;
    int on_failure;
    int per_stream_order;
    uint64_t dlq_max_count;
    int64_t dlq_max_age_ns;
    uint64_t skipped, timeouts;
} evs__group_settings;

/* The persistent part of a consumer, as stored in "consumers". */
typedef struct evs__record {
    char name[EVS_BUS_MAX_NAME + 1];
    int kind;
    char owner[256];
    char stream[EVS_MAX_STREAM_NAME + 1];
    /* filter */
    char **event_types;
    size_t n_event_types;
    char *stream_type, *stream_prefix, *tag;
    int has_corr;
    evs_uuid corr;
    /* progress */
    uint64_t next;
    int status;
    uint64_t retry_count, processed, failed, parked;
    uint32_t max_retries;
    char last_error[512];
    int64_t last_processed_at;
    int64_t created_at;
    /* projections */
    int partitioning;
    uint64_t generation;          /* active state generation */
    uint64_t build_gen;           /* != 0 while rebuilding */
    uint64_t build_next, build_from;
    char *lua_source;             /* Lua projections */
    /* groups */
    evs__group_settings group;
} evs__record;

void evs__record_free(evs__record *r);
/* Copy a filter into the record (strings duplicated). */
int evs__record_set_filter(evs__record *r, const evs_filter *f, const char *tag);
/* Read a record in txn; EVS_ENOTFOUND when absent. */
int evs__record_get(evs_bus *b, evs__kv_txn *txn, const char *name, evs__record *out);
/* As evs__record_get in a read transaction of its own.  Ownership: *out is the caller's (evs__record_free). */
int evs__record_read(evs_bus *b, const char *name, evs__record *out);
int evs__record_put(evs_bus *b, evs__kv_txn *txn, const evs__record *r);
/* The user-facing view (lag computed against the store). */
int evs__record_info(evs_bus *b, evs__kv_txn *txn, const evs__record *r, evs_consumer_info *out);

/* ------------------------------------------------------------------- DLQ */

/*
 * DLQ owners.  Entries are keyed by their owner's name; a projection's
 * rebuild parks under a second owner, its build owner (0x1f + name: no
 * consumer name holds a control character), invisible to users until the
 * swap adopts those entries (evs__dlq_adopt_txn).  Key buffers are sized
 * for the longer of the two.
 */
#define EVS__DLQ_OWNER_MAX (EVS_BUS_MAX_NAME + 1)
void evs__dlq_build_owner(const char *name, char out[EVS__DLQ_OWNER_MAX + 1]);
/*
 * The swap of a rebuild from position `from`: name's entries at positions
 * >= from are dropped (the rebuild has replayed those events), and every
 * entry of build moves to name.  In the caller's transaction.
 */
int evs__dlq_adopt_txn(evs_bus *b, evs__kv_txn *txn, const char *name, const char *build, uint64_t from);
/* Every entry of an owner, gone. */
int evs__dlq_clear_txn(evs_bus *b, evs__kv_txn *txn, const char *owner);
/* Delete every pstate row of generation gen of projection name. */
int evs__pstate_delete_gen(evs_bus *b, evs__kv_txn *txn, const char *name, uint64_t gen);

int evs__dlq_put(evs_bus *b, evs__kv_txn *txn, const char *name, const evs_dlq_entry *e, int is_new);
/* Delete one entry, maintaining dlq_streams.  EVS_ENOTFOUND if absent. */
int evs__dlq_del(evs_bus *b, evs__kv_txn *txn, const char *name, uint64_t pos);
int evs__dlq_get_txn(evs_bus *b, evs__kv_txn *txn, const char *name, uint64_t pos, evs_dlq_entry *out);
/* First parked position of stream for consumer, 0 when none. */
int evs__dlq_stream_first(evs_bus *b, evs__kv_txn *txn, const char *name, const char *stream, size_t slen,
                          uint64_t *first);
/* Earliest entry of the same stream before pos, 0 when none. */
int evs__dlq_earlier_of_stream(evs_bus *b, evs__kv_txn *txn, const char *name, const char *stream, uint64_t pos,
                               uint64_t *earlier);
int evs__dlq_prune_txn(evs_bus *b, evs__kv_txn *txn, const char *name, int64_t max_age_ns, uint64_t max_count,
                       int64_t now, uint64_t *removed);
/* Delete every key of db starting with name 0x00. */
int evs__bus_delete_prefix(evs__kv_txn *txn, int dbi, const char *name, uint64_t *removed);

/* 1 when the event's tags (a JSON array) contain tag. */
int evs__bus_has_tag(const evs_event *ev, const char *tag);

/* --------------------------------------------------------------- consumer */

typedef struct evs__consumer evs__consumer;

typedef struct evs__consumer_ops {
    /* Handle one event: 0 ok, else failure described in err. */
    int (*deliver)(evs__consumer *c, const evs_event *ev, char *err, size_t cap);
    /* Write uncommitted state into txn (projections); may be NULL. */
    int (*flush)(evs__consumer *c, evs__kv_txn *txn);
    /* Forget uncommitted state (projections); may be NULL. */
    void (*discard)(evs__consumer *c);
    /* The consumer read to the head (projections: finish a rebuild); may be NULL. */
    int (*caught_up)(evs__consumer *c);
} evs__consumer_ops;

typedef struct evs__dlq_op {
    int kind;                     /* 0 none, 1 put new, 2 update, 3 delete */
    evs_dlq_entry e;
} evs__dlq_op;

struct evs__consumer {
    evs_bus *bus;
    evs_store *store;
    evs__record rec;              /* rec.next = in-memory position */
    evs__kv_lease *lease;         /* the claim's (bus.c), NULL on LMDB: its writes begin with it */
    uint64_t committed_next;
    uint64_t committed_processed;
    evs_filter filter;            /* views into rec */
    uint32_t page_size, checkpoint_every, checkpoint_ms;
    evs_retry_policy retry;
    int on_failure;
    int per_stream_order;
    uint64_t dlq_max_count;
    int64_t dlq_max_age_ns;
    const evs_clock *clock;
    evs_event_map map;            /* applied before ops->deliver (fn NULL: none) */
    const evs__consumer_ops *ops;
    void *impl;
    _Atomic int cancelled;
    uint32_t since_commit;
    int64_t last_commit_ns;
    uint64_t stop_before;         /* replay bound after a rollback, 0: none */
    int record_dirty;
    char build_owner[EVS__DLQ_OWNER_MAX + 1]; /* where a rebuild parks (projections) */
    /* streams with parked entries (per_stream_order), reloaded on dlq_gen change */
    char **parked;
    uint64_t *parked_first;       /* first parked global position of each stream */
    size_t n_parked;
    uint64_t parked_gen;
    int parked_loaded;
    /* rate */
    uint64_t rate_events;
    int64_t rate_t0;
    double rate;
};

/* Initialise the common part: claims the name, loads or creates the record. */
int evs__consumer_init(evs__consumer *c, evs_bus *b, int kind, const char *name, const char *owner,
                       const char *stream, const evs_filter *f, const char *tag, uint64_t from);
void evs__consumer_fini(evs__consumer *c);
int evs__consumer_poll(evs__consumer *c, int timeout_ms, size_t max, size_t *delivered);
/* Commit state + record (+ one DLQ operation) in one transaction. */
int evs__consumer_commit(evs__consumer *c, const evs__dlq_op *op);
int evs__consumer_set_status(evs__consumer *c, int status);
int evs__consumer_dlq_retry(evs__consumer *c, uint64_t pos);
int evs__consumer_dlq_retry_all(evs__consumer *c, size_t *released, size_t *failed);
int evs__consumer_info(evs__consumer *c, evs_consumer_info *out);


/* -------------------------------------------------------------------- Lua */

typedef struct evs__lua evs__lua;

/* What a script declares besides its handlers. */
typedef struct evs__lua_decl {
    evs_filter filter;            /* strings owned by decl */
    int partitioning;             /* evs_partitioning */
} evs__lua_decl;

/*
 * Create a sandboxed state and run the script.  Ownership: *out and decl's
 * strings are the caller's (evs__lua_free, evs__lua_decl_free).
 */
int evs__lua_new(const char *src, size_t len, const evs_lua_limits *lim, evs__lua **out, evs__lua_decl *decl);
void evs__lua_free(evs__lua *L);
void evs__lua_decl_free(evs__lua_decl *d);
/* A partition state from JSON (NULL: the script's init) into a registry reference. */
int evs__lua_load_state(evs__lua *L, const char *json, size_t len, int *ref, char *err, size_t cap);
/* Apply ev to the state *ref (which the handler may replace). 0 ok, else failure in err. */
int evs__lua_apply(evs__lua *L, int *ref, const evs_event *ev, char *err, size_t cap);
/* The custom partition key of ev: length, or -1 with err. */
int evs__lua_partition(evs__lua *L, const evs_event *ev, char *buf, size_t bufcap, char *err, size_t cap);
/* Encode the state as JSON (sorted keys).  Ownership: *json is malloc'd for the caller. */
int evs__lua_encode(evs__lua *L, int ref, char **json, size_t *len, char *err, size_t cap);
void evs__lua_unref(evs__lua *L, int ref);
/* 1 (with err) when the state cannot be encoded as JSON; cheaper than encoding. */
int evs__lua_check(evs__lua *L, int ref, char *err, size_t cap);

#endif
