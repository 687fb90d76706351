/*
 * evstore_bus.h — event-driven consumers on top of an evstore: durable
 * subscriptions with checkpoints, retries with backoff, a dead-letter queue
 * (DLQ), and projections (read models) written in C or in Lua 5.4.
 *
 * Model.  Every consumer is a pull-based cursor over the log.  A poll reads
 * pages with evs_read_all / evs_read_stream from the consumer's checkpoint
 * and, once caught up, waits with evs_wait_for for the head to move.  There
 * is one code path for catch-up and live, so the switch has no gap and no
 * duplicate, memory is bounded by one page, and a slow handler only slows
 * its own consumer.  A filtered consumer's checkpoint follows
 * evs_reader_position, so it advances even when nothing matches.
 *
 * Durable state (consumer records, checkpoints, DLQ entries, projection
 * state) lives in a separate LMDB environment, DIR/consumers/, committed with
 * sync: it cannot be rebuilt from the log.  Consumer fsyncs never touch the
 * append path.
 *
 * Delivery guarantees.
 *   - Subscriptions: in global order (or stream order), each event once per
 *     run; across a crash, events after the last checkpoint are delivered
 *     again (at-least-once).  Checkpoints are written every N events or T ms.
 *   - Projections: the state changes and the checkpoint are committed in one
 *     transaction, so after any crash each event has been applied exactly
 *     once.
 *
 * Failures.  A handler that fails is retried per its evs_retry_policy (the
 * sleeps go through an injectable evs_clock), then the event is parked in
 * the consumer's DLQ and the consumer continues, or the consumer stops with
 * status "error".  With per_stream_order, once an event of stream S is
 * parked, later events of S are parked behind it (never applied out of
 * order) while other streams flow; retrying from the DLQ releases them.
 *
 * Thread rules.
 *   - An evs_bus is thread-safe; open it once per store and close it after
 *     every consumer and before the store.
 *   - An evs_subscription / evs_projection handle belongs to one thread at a
 *     time (the one polling it); evs_sub_cancel / evs_proj_cancel may be
 *     called from any thread to make a blocked poll return.
 *   - A consumer name is open at most once per bus (EVS_ELOCKED otherwise).
 *   - Handlers run on the polling thread; the evs_event they get is a view
 *     valid only during the call.
 *
 * All functions return EVS_OK or a negative evs_status and set evs_errmsg().
 */
#ifndef EVSTORE_BUS_H
#define EVSTORE_BUS_H

#include "evstore.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EVS_BUS_MAX_NAME 128u          /* bytes of a consumer name */
#define EVS_BUS_MAX_PAGE 1000u         /* events read per page: the bounded buffer */

/* ------------------------------------------------------------------ bus */

typedef struct evs_bus evs_bus;

/*
 * Open (creating) the consumer environment DIR/consumers/ of an open store.
 * On a store opened with EVS_OPEN_READONLY the environment is opened
 * read-only, alongside the process that holds the store (a server): lists,
 * records, DLQ entries and projection state can be read, every change is
 * EVS_ECLOSED, and a store without consumers/ is EVS_ENOTFOUND.
 * Ownership: on success *out belongs to the caller, released with
 * evs_bus_close before the store is closed; on failure *out is NULL.
 */
int evs_bus_open(evs_store *s, evs_bus **out);
/* Release the environment.  Every consumer of the bus must be closed.  NULL: no-op. */
void evs_bus_close(evs_bus *b);

/* ------------------------------------------------------ clock and retries */

/*
 * Time as seen by retries and checkpoints.  Tests substitute a fake clock so
 * a backoff schedule is verified without sleeping.  NULL members fall back
 * to the real clock (CLOCK_REALTIME, nanosleep, getrandom).
 */
typedef struct evs_clock {
    int64_t (*now_ns)(void *ctx);              /* wall time, ns since the epoch */
    void (*sleep_ns)(void *ctx, int64_t ns);   /* wait this long */
    uint64_t (*random)(void *ctx);             /* uniform 64-bit, for jitter */
    void *ctx;
} evs_clock;

typedef enum evs_backoff {
    EVS_BACKOFF_EXPONENTIAL = 0,   /* initial * 2^(k-1) */
    EVS_BACKOFF_LINEAR = 1,        /* initial * k */
    EVS_BACKOFF_FIXED = 2          /* initial */
} evs_backoff;

/*
 * Retry k (1-based) of a failed event waits delay(k) first, capped at
 * max_delay_ns and then spread by +-jitter (0..1, fraction of the delay).
 * Defaults (evs_retry_policy_default): exponential, 3 retries, 1 s, cap
 * 60 s, no jitter — that is 1 s, 2 s, 4 s, then the failure policy.
 */
typedef struct evs_retry_policy {
    evs_backoff backoff;
    uint32_t max_retries;          /* retries after the first failure; 0: none */
    int64_t initial_delay_ns;
    int64_t max_delay_ns;
    double jitter;
} evs_retry_policy;

void evs_retry_policy_default(evs_retry_policy *p);
/* The delay before retry k (k >= 1); random is used only when jitter > 0. */
int64_t evs_retry_delay_ns(const evs_retry_policy *p, uint32_t k, uint64_t random);

/* What happens to an event once its retries are exhausted. */
typedef enum evs_on_failure {
    EVS_ON_FAILURE_PARK = 0,       /* move it to the DLQ and continue */
    EVS_ON_FAILURE_STOP = 1        /* stop the consumer with status "error" */
} evs_on_failure;

typedef enum evs_consumer_status {
    EVS_CONSUMER_ACTIVE = 0,
    EVS_CONSUMER_PAUSED = 1,
    EVS_CONSUMER_ERROR = 2
} evs_consumer_status;

/* "active", "paused", "error". */
const char *evs_consumer_status_name(int status);

/* ------------------------------------------------------------ event maps */

/*
 * A rewrite of the events a consumer sees, applied to each event before its
 * handler: how a consumer asks for upcasted events (evs_schema_upcast_map,
 * evstore_schema.h).  fn gets the stored event and fills *out (on entry a
 * copy of *in); memory it allocates for out (its data, say) is handed over
 * in *owned, which the consumer frees with free() once the handler has
 * returned (NULL: nothing to free).  Nonzero is a failure of that event,
 * described in err, handled like a handler failure (retries, DLQ, stop).
 * fn must be deterministic (projections replay) and thread-safe when the
 * same map serves several consumers.  A zeroed map (fn NULL) is no map.
 */
typedef struct evs_event_map {
    int (*fn)(void *ctx, const evs_event *in, evs_event *out, void **owned, char *err, size_t errcap);
    void *ctx;
} evs_event_map;

/* ---------------------------------------------------------- subscriptions */

typedef struct evs_subscription evs_subscription;

#define EVS_SUB_FROM_START ((uint64_t)0)
#define EVS_SUB_FROM_NOW UINT64_MAX

/*
 * A handler returns 0 when the event was handled; any other value is a
 * failure, described in err (errcap bytes, may be left empty).
 */
typedef int (*evs_sub_handler)(void *ctx, const evs_event *ev, char *err, size_t errcap);

typedef struct evs_sub_config {
    const char *name;              /* required: 1..128 bytes, the durable identity */
    const char *owner;             /* owner service, informational; may be NULL */
    const char *stream;            /* one stream, or NULL for $all */
    evs_filter filter;             /* as evs_read_all; since/until are ignored */
    const char *tag;               /* only events carrying this tag; NULL: any */
    uint64_t from;                 /* first position when the subscription is new:
                                      EVS_SUB_FROM_START, EVS_SUB_FROM_NOW or a
                                      global (stream: stream) position, at most
                                      one past the last event (else EVS_EINVAL) */
    uint32_t page_size;            /* events per read, 1..EVS_BUS_MAX_PAGE (default 1000) */
    uint32_t checkpoint_every;     /* write the checkpoint every N events (default 1000) */
    uint32_t checkpoint_ms;        /* ... or every T ms (default 1000) */
    evs_retry_policy retry;
    evs_on_failure on_failure;
    int per_stream_order;          /* park an event behind a parked one of its stream */
    uint64_t dlq_max_count;        /* DLQ retention: keep the newest N (0: unbounded) */
    int64_t dlq_max_age_ns;        /* ... drop entries older than this (0: unbounded) */
    const evs_clock *clock;        /* NULL: real time; borrowed for the handle's life */
    evs_event_map map;             /* what the handler sees, e.g. upcasted events (zero: as stored) */
} evs_sub_config;

/* Defaults: $all from the start, no filter, page 1000, checkpoint 1000 events / 1 s,
   default retry policy, park on failure. */
void evs_sub_config_init(evs_sub_config *c);

/*
 * Open a subscription: create its record, or resume from the stored
 * checkpoint (the configuration given replaces the stored one; `from` is
 * used only when the record is new).  The config's strings are copied.
 * Ownership: *out belongs to the caller and is released with evs_sub_close.
 */
int evs_sub_open(evs_bus *b, const evs_sub_config *c, evs_sub_handler h, void *ctx,
                 evs_subscription **out);

/*
 * Deliver events: read from the checkpoint and call the handler, blocking up
 * to timeout_ms (-1: forever, 0: do not wait) for the first new event.
 * Returns once at least one event was delivered and the consumer is caught
 * up, after max_events (0: no limit), or at the timeout; *delivered (may be
 * NULL) counts handled events.  EVS_OK also when nothing arrived; EVS_EFAILED
 * when the subscription is in status "error"; EVS_ECLOSED when the store
 * closes; EVS_OK with nothing delivered when paused or cancelled.
 */
int evs_sub_poll(evs_subscription *sub, int timeout_ms, size_t max_events, size_t *delivered);
/* Make a blocked or later poll return early (any thread).  Cleared by the next poll. */
void evs_sub_cancel(evs_subscription *sub);
/* Write the checkpoint now. */
int evs_sub_checkpoint(evs_subscription *sub);
/* Pause / resume (resume also clears status "error"); persisted. */
int evs_sub_pause(evs_subscription *sub);
int evs_sub_resume(evs_subscription *sub);
/*
 * Continue from this position next (EVS_SUB_FROM_START / _NOW allowed); persisted.
 * A position beyond one past the last event (the head, or a stream
 * subscription's stream version) is EVS_EINVAL naming both, and changes nothing:
 * the subscription would skip every event appended up to there.
 */
int evs_sub_reset(evs_subscription *sub, uint64_t position);
/* Write the checkpoint and release the handle.  NULL: no-op. */
void evs_sub_close(evs_subscription *sub);

/* What a user sees of a subscription or projection (the seed's event_subscriptions). */
typedef struct evs_consumer_info {
    char name[EVS_BUS_MAX_NAME + 1];
    char kind[16];                 /* "subscription" or "projection" */
    char owner[256];
    char stream[EVS_MAX_STREAM_NAME + 1];  /* "" for $all */
    char filter_json[2048];        /* {"event_types":[..],"stream_type":..,...} */
    uint64_t checkpoint;           /* last position processed (0: none) */
    int status;                    /* evs_consumer_status */
    uint64_t retry_count;          /* retries made so far */
    uint32_t max_retries;
    char last_error[512];
    int64_t last_processed_at;     /* wall time of the last handled event, 0: never */
    uint64_t processed, failed, parked;
    uint64_t dlq_depth;
    uint64_t lag_events;           /* head - checkpoint ($all consumers) */
    int64_t lag_ms;                /* age of the oldest unprocessed event, 0 when caught up */
} evs_consumer_info;

/*
 * Current record of a subscription, projection or group by name.
 * EVS_ENOTFOUND if none.  A group open in this bus is read from its handle
 * (as evs_group_get_info), so its checkpoint, counters, DLQ depth and lag
 * are current, not those of the last record it wrote.
 */
int evs_consumer_get(evs_bus *b, const char *name, evs_consumer_info *out);
/* Records in name order strictly after `after` (NULL: from the start); open groups as in evs_consumer_get. */
int evs_consumer_list(evs_bus *b, const char *after, evs_consumer_info *out, size_t max, size_t *count);
/* Delete a record, its DLQ and its projection state.  EVS_ELOCKED if open. */
int evs_consumer_delete(evs_bus *b, const char *name);

typedef struct evs_bus_check_report {
    uint64_t consumers;            /* records checked */
    uint64_t dlq_entries;          /* DLQ entries checked */
    uint64_t errors;
    char first_error[600];
} evs_bus_check_report;

/*
 * The consumers' half of `evstore check`: every checkpoint lies at or below
 * what exists (the store's head, or the stream's version for a stream
 * subscription) and every DLQ entry names an existing, undamaged event at
 * the stream and stream position it records.  EVS_OK when all hold,
 * EVS_ECORRUPT otherwise (details in *rep).  Reads only.
 */
int evs_bus_check(evs_bus *b, evs_bus_check_report *rep);
/*
 * Set the status / the next position of a consumer that is not open
 * (EVS_ELOCKED if it is).  The position may be EVS_SUB_FROM_START or
 * EVS_SUB_FROM_NOW; past one past the last event (as evs_sub_reset) it is
 * EVS_EINVAL, checked before EVS_ELOCKED, and nothing changes.  On a projection it moves the checkpoint and keeps the
 * state and the DLQ as they are, except in the middle of a rebuild: the
 * rebuild then starts over from the position (its state and DLQ so far are
 * dropped), so the swap replaces the live DLQ entries from that position on
 * — lowering the position lowers the rebuild's start.
 */
int evs_consumer_set_status(evs_bus *b, const char *name, int status);
int evs_consumer_set_position(evs_bus *b, const char *name, uint64_t next_position);

/* ------------------------------------------------------------------- DLQ */

typedef struct evs_dlq_entry {
    uint64_t position;             /* global position of the parked event */
    uint64_t stream_position;
    char stream[EVS_MAX_STREAM_NAME + 1];
    char event_type[EVS_MAX_TYPE_NAME + 1];
    char last_error[512];
    uint32_t attempts;             /* handler calls made; 0 when parked behind another */
    int64_t first_failure_at;
    int64_t last_failure_at;
    uint64_t blocked_by;           /* per-stream order: the parked position it waits behind */
} evs_dlq_entry;

/* Entries of a consumer in position order, strictly after `after` (0: from the start). */
int evs_dlq_list(evs_bus *b, const char *consumer, uint64_t after, evs_dlq_entry *out, size_t max,
                 size_t *count);
/* One entry.  EVS_ENOTFOUND if that position is not parked. */
int evs_dlq_get(evs_bus *b, const char *consumer, uint64_t position, evs_dlq_entry *out);
/* Number of entries. */
int evs_dlq_depth(evs_bus *b, const char *consumer, uint64_t *depth);
/* Drop one entry without delivering it. */
int evs_dlq_discard(evs_bus *b, const char *consumer, uint64_t position);
/* Drop every entry; *removed (may be NULL) counts them. */
int evs_dlq_purge(evs_bus *b, const char *consumer, uint64_t *removed);
/* Retention: drop entries whose last failure is older than now - max_age_ns
   (0: no age limit), then the oldest beyond max_count (0: no count limit). */
int evs_dlq_prune(evs_bus *b, const char *consumer, int64_t max_age_ns, uint64_t max_count, int64_t now,
                  uint64_t *removed);

/*
 * Deliver one parked event again to the subscription's handler (once, no
 * backoff).  On success the entry is removed; on failure it stays with
 * attempts and last error updated and EVS_EFAILED is returned.  With
 * per_stream_order an entry that waits behind an earlier one of its stream
 * is refused with EVS_ECONFLICT.
 */
int evs_sub_dlq_retry(evs_subscription *sub, uint64_t position);
/* Retry every entry in position order; an entry behind a still-failing one
   of its stream stays parked.  Counts may be NULL. */
int evs_sub_dlq_retry_all(evs_subscription *sub, size_t *released, size_t *failed);

/* ------------------------------------------------------------ projections */

typedef struct evs_projection evs_projection;

typedef enum evs_partitioning {
    EVS_PARTITION_BY_STREAM = 0,   /* one state per stream (default) */
    EVS_PARTITION_NONE = 1,        /* one state, partition "" */
    EVS_PARTITION_CUSTOM = 2       /* the partition function decides */
} evs_partitioning;

/* Write the partition key (1..255 bytes) into buf; return its length, or -1 on failure. */
typedef int (*evs_proj_partition_fn)(void *ctx, const evs_event *ev, char *buf, size_t cap);

/*
 * Fold one event into a partition's state (JSON text, NUL-terminated).
 * Return 0 and set *new_state to a malloc'd JSON text (ownership passes to
 * the projection) or leave it NULL for "unchanged"; nonzero on failure,
 * described in err.  Must be deterministic: replays must give equal states.
 */
typedef int (*evs_proj_apply_fn)(void *ctx, const evs_event *ev, const char *state, size_t state_len,
                                 char **new_state, size_t *new_len, char *err, size_t errcap);

typedef struct evs_proj_config {
    const char *name;              /* required, 1..128 bytes */
    evs_filter filter;             /* since/until ignored */
    const char *tag;
    evs_partitioning partitioning;
    evs_proj_partition_fn partition;   /* EVS_PARTITION_CUSTOM only */
    const char *initial_state;     /* JSON text of a new partition (default "{}") */
    evs_proj_apply_fn apply;       /* required for C projections */
    void *ctx;
    uint32_t page_size;            /* default 1000 */
    uint32_t checkpoint_every;     /* commit state + checkpoint every N events (default 1000) */
    uint32_t checkpoint_ms;        /* ... or every T ms (default 1000) */
    evs_retry_policy retry;        /* default: no retries (handlers are deterministic) */
    evs_on_failure on_failure;
    int per_stream_order;
    const evs_clock *clock;
    evs_event_map map;             /* what apply (or the Lua handlers) see, e.g. upcasted events;
                                      must be deterministic like apply (zero: as stored) */
} evs_proj_config;

void evs_proj_config_init(evs_proj_config *c);

/*
 * Open a C projection (creating its record, or resuming from its checkpoint).
 * Ownership: *out is the caller's, released with evs_proj_close.
 */
int evs_proj_open(evs_bus *b, const evs_proj_config *c, evs_projection **out);

/* Limits of a Lua projection's sandbox; zero fields take the defaults. */
typedef struct evs_lua_limits {
    size_t memory_bytes;           /* Lua heap cap (default 64 MiB) */
    uint64_t instructions;         /* VM instructions per handler call (default 10,000,000) */
} evs_lua_limits;

/*
 * Open a Lua 5.4 projection from source.  The script returns a table:
 *
 *     return {
 *       filter = { event_types = {"OrderPlaced"}, stream_prefix = "order-",
 *                  stream_type = "order" },            -- optional; no other keys
 *       partition = "stream" | "none" | function(e) return key end,
 *       init = function() return { count = 0 } end,    -- or a table
 *       handlers = {
 *         OrderPlaced = function(state, e) state.count = state.count + 1 end,
 *         ["$any"] = function(state, e) ... end,       -- other types
 *       },
 *     }
 *
 * A handler mutates its state or returns a new table.  e has type, stream,
 * stream_type, position, stream_position, id, recorded_at, occurred_at,
 * event_version, stored_version (differs from event_version when the
 * config's map upcasted the event), data and metadata (tables).  The source is stored in the record so that the CLI
 * can run the projection later.  The sandbox has no io, os, require, load,
 * dofile, loadfile, debug, collectgarbage, print or math.random; memory and
 * instructions are capped (a pcall cannot catch the budget).  A script
 * error is a handler failure (retry policy, then DLQ or stop).
 * limits and cfg may be NULL (defaults); cfg->name overrides name when set,
 * its apply/partition/filter members are ignored (its map is honoured).
 * Ownership: *out is the caller's, released with evs_proj_close.
 */
int evs_proj_open_lua(evs_bus *b, const char *name, const char *source, size_t source_len,
                      const evs_lua_limits *limits, const evs_proj_config *cfg, evs_projection **out);

/*
 * Load a Lua projection script as evs_proj_open_lua does (the same sandbox
 * and limits; limits may be NULL) and drop it, storing and changing nothing:
 * EVS_OK, or the error evs_proj_open_lua would give for it, prefixed with
 * the projection's name.  For a caller that must refuse a bad script before
 * it removes the projection the script replaces.
 */
int evs_proj_check_lua(const char *name, const char *source, size_t source_len, const evs_lua_limits *limits);

/* Open a stored Lua projection by name, with its stored source. */
int evs_proj_open_stored(evs_bus *b, const char *name, const evs_lua_limits *limits, evs_projection **out);
/* As evs_proj_open_stored, with a config as evs_proj_open_lua takes it (its map, e.g. upcasting; may be NULL). */
int evs_proj_open_stored_cfg(evs_bus *b, const char *name, const evs_lua_limits *limits, const evs_proj_config *cfg,
                             evs_projection **out);

/* As evs_sub_poll. */
int evs_proj_poll(evs_projection *p, int timeout_ms, size_t max_events, size_t *applied);
void evs_proj_cancel(evs_projection *p);
/* Commit pending state and the checkpoint now. */
int evs_proj_checkpoint(evs_projection *p);
int evs_proj_pause(evs_projection *p);
int evs_proj_resume(evs_projection *p);
/* Commit and release.  NULL: no-op. */
void evs_proj_close(evs_projection *p);

/*
 * Start a rebuild: replay from `from` (0: the beginning, EVS_SUB_FROM_NOW:
 * the head + 1; past the head + 1 EVS_EINVAL, nothing changed) into a fresh copy
 * of the state while queries keep reading the current one; polls drive the
 * rebuild, and when it reaches the head the copy replaces the current state
 * in one transaction.  Survives restarts (the rebuild resumes).
 */
int evs_proj_rebuild(evs_projection *p, uint64_t from);

/*
 * Reset: start over from `from` (0: the beginning), as evs_proj_rebuild,
 * and forget the failures: the DLQ is emptied in the same transaction that
 * moves the projection back (after a crash either both happened or
 * neither).  The rebuild parks anew what still fails.
 */
int evs_proj_reset(evs_projection *p, uint64_t from);

typedef struct evs_proj_status {
    evs_consumer_info info;
    int rebuilding;                /* 1 while a rebuild is in progress */
    uint64_t rebuild_position;     /* next position of the rebuild */
    double rebuild_percent;        /* 0..100 */
    double events_per_second;      /* over the handle's last polls */
    uint64_t generation;           /* bumps at each swap */
} evs_proj_status;

int evs_proj_get_status(evs_projection *p, evs_proj_status *out);

/*
 * The committed state of one partition (NULL or "" for a non-partitioned
 * projection), as JSON text.  EVS_ENOTFOUND when the partition has no state.
 * Ownership: *json is malloc'd, the caller frees it.
 */
int evs_proj_get_state(evs_bus *b, const char *name, const char *partition, char **json, size_t *len);

/*
 * The position the committed state of a projection reflects: every event at
 * or below it has been applied (while rebuilding: the live state's).
 */
int evs_proj_position(evs_bus *b, const char *name, uint64_t *position);

/*
 * Called for each partition of a scan in key order; the views are valid only
 * during the call.  Return 0 to go on, nonzero to stop the scan.
 */
typedef int (*evs_proj_scan_fn)(void *ctx, const char *partition, size_t partition_len, const char *state,
                                size_t state_len);

/*
 * Visit every committed partition of a projection in one read transaction,
 * so the states seen all reflect the same *position (may be NULL).
 * Blocks nobody; may run on any thread, concurrently with the projection.
 */
int evs_proj_scan(evs_bus *b, const char *name, evs_proj_scan_fn fn, void *ctx, uint64_t *position);

/*
 * Wait until the committed state of projection `name` reflects `position`
 * (a consistency token: the last global position of a command's events).
 * Wakes at each consumer commit of the bus; on PostgreSQL, where the
 * projection may run in another process on the same database, it also reads
 * the position again every few milliseconds.  timeout_ms -1: forever, 0: just
 * check.  EVS_OK, or EVS_ETIMEDOUT naming both positions; *reached (may be
 * NULL) receives the projection's position either way.  Any thread.  The
 * wait ends no sooner than the projection commits: its checkpoint_every /
 * checkpoint_ms bound how stale a caught-up projection's state can be.
 */
int evs_proj_wait(evs_bus *b, const char *name, uint64_t position, int timeout_ms, uint64_t *reached);

/*
 * Bumped by every consumer commit of the bus (cheap change detection for
 * caches).  It counts this handle's commits only: on PostgreSQL a consumer
 * running in another process moves nothing here.
 */
uint64_t evs_bus_commit_generation(evs_bus *b);

typedef struct evs_partition_name {
    char name[EVS_MAX_STREAM_NAME + 1];
} evs_partition_name;

/* Partitions in key order strictly after `after` (NULL: from the start). */
int evs_proj_list_partitions(evs_bus *b, const char *name, const char *after, evs_partition_name *out,
                             size_t max, size_t *count);

/* The projection's DLQ: as evs_sub_dlq_retry / _all, applied to the state. */
int evs_proj_dlq_retry(evs_projection *p, uint64_t position);
int evs_proj_dlq_retry_all(evs_projection *p, size_t *released, size_t *failed);

/* ------------------------------------- state as of a point, what-if, compare */

/*
 * A point in the global order: events 1..position (0: up to the head when
 * the replay starts) recorded at or before `time` (ns since the epoch; 0: no
 * bound).  recorded_at never decreases along the global order, so a time
 * bound is a prefix of the log too.
 */
typedef struct evs_as_of {
    uint64_t position;
    int64_t time;
} evs_as_of;

/*
 * Parse an as_of value: a global position (decimal digits), "head", or an
 * RFC 3339 time ("2026-12-05T06:00:00Z").  EVS_EINVAL naming the text
 * otherwise.
 */
int evs_as_of_parse(const char *s, size_t len, evs_as_of *out);

/* An event a what-if run inserts after global position `after` (0: before the first). */
typedef struct evs_replay_insert {
    uint64_t after;
    const char *stream;            /* required */
    const char *stream_type;       /* NULL: the stream name before its first '-' */
    const char *event_type;        /* required */
    const char *data;              /* JSON text (NULL: {}) */
    size_t data_len;
    const char *metadata;          /* JSON text or NULL */
    size_t metadata_len;
    int64_t recorded_at;           /* 0: that of the event it follows */
} evs_replay_insert;

/* Called every progress_every events read and once at the end; nonzero stops the replay (EVS_EINVAL). */
typedef int (*evs_replay_progress_fn)(void *ctx, uint64_t position, uint64_t events_read, uint64_t target);

typedef struct evs_replay_opts {
    evs_as_of as_of;
    /* what-if: events left out (any rule matching drops the event) */
    const uint64_t *exclude_positions;
    size_t n_exclude_positions;
    const char *const *exclude_types;
    size_t n_exclude_types;
    const char *const *exclude_streams;
    size_t n_exclude_streams;
    /* what-if: events added, each after the stored event it names */
    const evs_replay_insert *inserts;
    size_t n_inserts;
    const char *partition;         /* keep only this partition's state (NULL: every one) */
    const evs_lua_limits *limits;  /* NULL: defaults (the sandbox's memory cap bounds the states) */
    evs_event_map map;             /* as the live projection's (zero: as stored) */
    evs_replay_progress_fn progress;
    void *progress_ctx;
    uint64_t progress_every;       /* default 65536 */
} evs_replay_opts;

typedef struct evs_replay_result {
    /*
     * {"projection": NAME|null, "partitioning": "stream"|"none"|"custom",
     *  "as_of": {"position": P|null, "time": "RFC 3339"|null},
     *  "position": last stored position read, "events_read", "events_applied",
     *  "events_excluded", "events_inserted",
     *  "partitions": {PARTITION: state, ...}}   (keys in byte order)
     */
    char *json;
    size_t len;
    uint64_t position;
    uint64_t events_read, events_applied, events_excluded, events_inserted, partitions;
} evs_replay_result;

/*
 * Replay a Lua projection into a temporary, in-memory state: the stored
 * script of projection `name`, or `source` when given (name may then be
 * NULL).  Streams through the log (events are never held), filtered by the
 * script's declaration; never reads or writes the live projection's state,
 * checkpoint or DLQ.  A handler failure fails the replay (EVS_EINVAL naming
 * the position), since there is no DLQ to park the event in.  An insert
 * after a position past the head (or past as_of.position) is EVS_EINVAL;
 * with a time bound, inserts after the last event read are not applied
 * (res->events_inserted counts those that were).
 * Ownership: res->json is malloc'd for the caller (evs_replay_result_free).
 */
int evs_proj_replay(evs_bus *b, const char *name, const char *source, size_t source_len,
                    const evs_replay_opts *opts, evs_replay_result *res);
void evs_replay_result_free(evs_replay_result *res);

/*
 * The live committed state of a projection in the shape of a replay's
 * "partitions" member: {PARTITION: state, ...}, and the position it
 * reflects.  Ownership: *json is malloc'd for the caller.
 */
int evs_proj_live_json(evs_bus *b, const char *name, char **json, size_t *len, uint64_t *position);

/*
 * A structural diff from JSON text a to JSON text b, as a JSON array of
 * RFC 6902 operations in path order: {"op": "add", "path", "value"},
 * {"op": "remove", "path", "old"}, {"op": "replace", "path", "old",
 * "value"}.  Objects are compared member by member, arrays element by
 * element (a shorter array loses its tail from the end, so the patch
 * applies in order); any other change replaces the value.  Equal numbers
 * compare equal whatever their spelling (1 and 1.0).  "[]" when equal.
 * EVS_EJSON naming the side when a text is not JSON.
 * Ownership: *patch is malloc'd for the caller.  count (may be NULL): operations.
 */
int evs_json_diff(const char *a, size_t alen, const char *b, size_t blen, char **patch, size_t *len,
                  size_t *count);

/* ---------------------------------------------- competing consumers (groups) */

/*
 * A persistent subscription group: a named, durable consumer of $all (with
 * the usual filter) whose events are shared out between the consumers that
 * have joined it.  Each event goes to one consumer at a time; the consumer
 * answers with an ack, or a nack asking to retry it later (with the group's
 * backoff), to park it in the group's DLQ, or to skip it.  An unacked
 * delivery is redelivered once the ack timeout passes; max_in_flight bounds
 * the unacked deliveries one consumer holds (backpressure).
 *
 * Delivery ids.  Every delivery carries (position, attempt): the event's
 * global position and the number of times it has been handed out (1 for the
 * first).  An ack or nack names the delivery it answers; once an event has
 * been handed out again, answers to the older delivery are refused with
 * EVS_ECONFLICT ("delivery 1 of event 42 was redelivered; its ack is
 * refused"), so an event is never counted twice.  A delivery that timed out
 * but has not been handed out again may still be acked by its consumer.
 *
 * Strategies.
 *   EVS_GROUP_ROUND_ROBIN  any event to any consumer that asks; a delivery
 *                          that timed out goes preferably to another consumer
 *                          waiting for work.
 *   EVS_GROUP_PINNED       every stream has a home among the connected
 *                          consumers (rendezvous hashing of stream and
 *                          consumer names) that gets its events, in order; an
 *                          event waiting for a retry holds back the later
 *                          events of its stream.
 *                          What a pin keeps: a stream stays with the consumer
 *                          that holds deliveries of it in flight (handed out,
 *                          neither answered nor timed out) until all of them
 *                          are; its deliveries are never out with two
 *                          consumers at once.  Nothing else is kept: a stream
 *                          with nothing in flight goes to its home.  So when a
 *                          consumer joins, the streams whose home it becomes
 *                          move to it at once if nothing of them is in
 *                          flight, else as soon as their deliveries are
 *                          answered (their previous consumer gets no new
 *                          events of them meanwhile): a backlog is shared with
 *                          a consumer that joins mid-way.  When a consumer
 *                          leaves, its unacked deliveries are handed out
 *                          again, in order, at their streams' new homes.
 *
 * Durability.  The group (settings, checkpoint, counters) is a record of the
 * consumers environment, listed by evs_consumer_list with kind "group";
 * evs_consumer_get / _delete / _set_status / _set_position work on it while
 * it is not open.  The checkpoint is the end of the contiguous prefix of
 * finished (acked, parked, skipped or filtered-out) events and is written
 * every checkpoint_every finished events or checkpoint_ms, at parks and at
 * close.  After a restart delivery starts again at the first unfinished
 * event: events acked beyond a gap are delivered again (at-least-once),
 * nothing is lost.  A parked event's DLQ entry and the checkpoint that
 * passes it are written in one transaction.
 *
 * Thread rules.  An evs_group is thread-safe.  Every call on a member may be
 * made from any thread, concurrently with calls on other members and with
 * other calls on the same member, except evs_group_leave, which must be the
 * last call on it.  evs_group_next blocks; evs_group_cancel wakes it.
 * Close a group after its members have left (evs_group_close releases any
 * that remain, which must then be unused), and before the bus.
 *
 * Limits: buffer_size events (at most EVS_BUS_MAX_PAGE) are read ahead and
 * tracked per group; the checkpoint cannot pass an unfinished event, so a
 * buffer full behind one slow event stops reading ahead until it finishes.
 */

typedef struct evs_group evs_group;
typedef struct evs_group_member evs_group_member;

typedef enum evs_group_strategy {
    EVS_GROUP_ROUND_ROBIN = 0,
    EVS_GROUP_PINNED = 1
} evs_group_strategy;

#define EVS_GROUP_MAX_IN_FLIGHT 1000u  /* per consumer */
#define EVS_GROUP_MAX_MEMBERS 1024u    /* consumers joined to one group */

/* "round_robin", "pinned" ("unknown" otherwise). */
const char *evs_group_strategy_name(int strategy);
/* The inverse; EVS_EINVAL for any other text. */
int evs_group_strategy_parse(const char *name, evs_group_strategy *out);

typedef struct evs_group_config {
    const char *name;              /* required: 1..128 bytes, the durable identity */
    const char *owner;             /* owner service, informational; may be NULL */
    evs_filter filter;             /* as evs_read_all; since/until are ignored */
    const char *tag;               /* only events carrying this tag; NULL: any */
    uint64_t from;                 /* first global position of a new group:
                                      EVS_SUB_FROM_START, EVS_SUB_FROM_NOW or a position
                                      up to the head + 1 (else EVS_EINVAL) */
    evs_group_strategy strategy;
    int64_t ack_timeout_ns;        /* redeliver an unacked delivery after this (default 30 s) */
    uint32_t max_in_flight;        /* unacked deliveries per consumer, 1..EVS_GROUP_MAX_IN_FLIGHT (default 10) */
    uint32_t buffer_size;          /* events tracked ahead, 1..EVS_BUS_MAX_PAGE (default 1000) */
    evs_retry_policy retry;        /* backoff of nack-retry; max_retries also counts ack timeouts */
    evs_on_failure on_failure;     /* retries exhausted: park (default) or stop the group ("error") */
    /*
     * Per-stream order: at most one delivery of a stream is out at a time,
     * and once an event of stream S is parked every later event of S is
     * parked behind it (DLQ entries with blocked_by) until that one leaves
     * the DLQ; other streams keep flowing.  A parked follower cannot be
     * retried before the event it waits behind (retry all, or that one first).
     */
    int per_stream_order;
    uint64_t dlq_max_count;        /* DLQ retention: keep the newest N (0: unbounded) */
    int64_t dlq_max_age_ns;        /* ... drop entries older than this (0: unbounded) */
    uint32_t checkpoint_every;     /* write the checkpoint every N finished events (default 1000) */
    uint32_t checkpoint_ms;        /* ... or every T ms (default 1000) */
} evs_group_config;

/* Defaults: $all from the start, no filter, round-robin, ack timeout 30 s,
   10 in flight per consumer, buffer 1000, the default retry policy, park. */
void evs_group_config_init(evs_group_config *c);

/*
 * Create a group's record.  The config's strings are copied.  EVS_ECONFLICT
 * when a consumer of that name exists.
 */
int evs_group_create(evs_bus *b, const evs_group_config *c);
/*
 * Replace the settings of an existing group (checkpoint, counters and status
 * are kept; `from` is ignored).  EVS_ELOCKED while it is open, EVS_ENOTFOUND
 * when there is no such group, EVS_EINVAL when the name is not a group.
 */
int evs_group_update(evs_bus *b, const evs_group_config *c);

/* What a user sees of a group: the common record plus the group's settings. */
typedef struct evs_group_info {
    evs_consumer_info info;        /* kind "group"; checkpoint = end of the finished prefix */
    int strategy;                  /* evs_group_strategy */
    int64_t ack_timeout_ns;
    uint32_t max_in_flight;
    uint32_t buffer_size;
    evs_retry_policy retry;
    int on_failure;                /* evs_on_failure */
    int per_stream_order;
    uint64_t dlq_max_count;
    int64_t dlq_max_age_ns;
    uint32_t checkpoint_every, checkpoint_ms;
    uint64_t skipped;              /* events finished by nack-skip */
    uint64_t timeouts;             /* deliveries whose ack timeout passed */
    /* live figures of a group open in this bus (0 otherwise) */
    uint32_t members;              /* connected consumers */
    uint64_t in_flight;            /* unacked deliveries */
    uint64_t buffered;             /* events read ahead and not yet finished */
} evs_group_info;

/*
 * A group by name: its stored record, or, while the group is open in this
 * bus, what evs_group_get_info returns.  EVS_ENOTFOUND if none, EVS_EINVAL
 * if not a group.
 */
int evs_group_get(evs_bus *b, const char *name, evs_group_info *out);

/*
 * Open a group for delivery (one handle per name and bus: EVS_ELOCKED
 * otherwise).  clock may be NULL (real time); it times ack timeouts and
 * retry backoff, is borrowed for the handle's life, and is called from every
 * thread that calls into the group or reads it through the bus (so it must
 * be thread-safe).
 * Ownership: *out belongs to the caller and is released with evs_group_close.
 */
int evs_group_open(evs_bus *b, const char *name, const evs_clock *clock, evs_group **out);
/* Write the checkpoint, release remaining members and the handle.  NULL: no-op. */
void evs_group_close(evs_group *g);
/*
 * The record with live figures (checkpoint in memory, members, in flight).
 * Current when read, as if a consumer had just called: deliveries whose ack
 * timeout passed are counted back (a consumer that stopped calling no
 * longer holds them; with no retry left they are parked), with per-stream
 * order the events behind a parked one of their stream are parked, and
 * what that makes due (DLQ entries, the checkpoint) is written.
 */
int evs_group_get_info(evs_group *g, evs_group_info *out);
/* Write the checkpoint now. */
int evs_group_checkpoint(evs_group *g);
/* Pause delivery (acks are still taken) / resume it (also clears status "error"); persisted. */
int evs_group_pause(evs_group *g);
int evs_group_resume(evs_group *g);

/*
 * Deliver a parked event again through the group (to a consumer, as a new
 * delivery whose attempt continues the entry's count).  The DLQ entry stays
 * until the event is acked or skipped; a park or exhausted retries update
 * it.  EVS_ENOTFOUND if not parked, EVS_ECONFLICT if already queued,
 * EVS_ELIMIT when buffer_size retries are already queued.
 */
int evs_group_dlq_retry(evs_group *g, uint64_t position);
/* Queue every DLQ entry in position order, as many as fit; *queued (may be NULL) counts them. */
int evs_group_dlq_retry_all(evs_group *g, size_t *queued);

typedef struct evs_group_member_info {
    char name[EVS_BUS_MAX_NAME + 1];
    uint32_t in_flight;            /* unacked deliveries it holds */
    uint64_t delivered, acked, nacked, timeouts;
} evs_group_member_info;

/* Connected consumers in join order; current when read, as evs_group_get_info. */
int evs_group_list_members(evs_group *g, evs_group_member_info *out, size_t max, size_t *count);

/*
 * Join the group as consumer `name` (1..128 bytes, unique within the group:
 * EVS_ELOCKED otherwise).  Ownership: *out is the caller's, released with
 * evs_group_leave; evs_group_close releases members still joined.
 */
int evs_group_join(evs_group *g, const char *name, evs_group_member **out);
/*
 * Leave: every unacked delivery of the member is handed out again, and its
 * pinned streams pass to the remaining consumers.  NULL: no-op.
 */
void evs_group_leave(evs_group_member *m);

/* Identifies one delivery: the event's global position and the attempt (1-based). */
typedef struct evs_delivery_id {
    uint64_t position;
    uint32_t attempt;
} evs_delivery_id;

/* One delivered event.  event's strings are copies living as long as the delivery. */
typedef struct evs_delivery {
    evs_delivery_id id;
    evs_event event;
} evs_delivery;

/* Release a delivery (it does not ack it).  NULL: no-op. */
void evs_delivery_free(evs_delivery *d);

/*
 * Take the next event for this consumer, blocking up to timeout_ms (-1:
 * forever, 0: do not wait).  EVS_OK with *out set; EVS_ETIMEDOUT when
 * nothing could be delivered in time (the message says why: nothing new,
 * max_in_flight reached, paused); EVS_ECLOSED after evs_group_cancel or when
 * the store closes; EVS_EFAILED while the group is in status "error".
 * Ownership: *out is malloc'd for the caller, released with evs_delivery_free.
 */
int evs_group_next(evs_group_member *m, int timeout_ms, evs_delivery **out);
/* Make a blocked or the next evs_group_next of m return EVS_ECLOSED (any thread). */
void evs_group_cancel(evs_group_member *m);

/*
 * Ack a delivery: the event is finished.  EVS_ECONFLICT when that delivery
 * was superseded (redelivered), already answered, or is held by another
 * consumer; EVS_ENOTFOUND when the event has no such delivery.  The ack is
 * taken even when the checkpoint write it triggers fails (that error is
 * returned; the write is retried at the next checkpoint).
 */
int evs_group_ack(evs_group_member *m, evs_delivery_id id);

typedef enum evs_nack_action {
    EVS_NACK_RETRY = 0,            /* deliver again after the backoff (then park/stop per on_failure) */
    EVS_NACK_PARK = 1,             /* move it to the group's DLQ now */
    EVS_NACK_SKIP = 2              /* drop it: finished, not parked */
} evs_nack_action;

/* Refuse a delivery; reason (may be NULL) is kept as the last error. Errors as evs_group_ack. */
int evs_group_nack(evs_group_member *m, evs_delivery_id id, evs_nack_action action, const char *reason);

#ifdef __cplusplus
}
#endif
#endif /* EVSTORE_BUS_H */
