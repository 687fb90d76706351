/*
 * evstore_saga.h — sagas (process managers) on top of the application
 * layer: long-running processes that send commands through the command bus,
 * wait for answers, retry, time out, compensate in reverse when a step
 * fails, survive kill -9 at any point, and can be seen and steered by an
 * operator.
 *
 * Model.  A saga type is a definition (C, or Lua run in the projections'
 * sandbox): the event types that start it and how to get the instance id
 * from such an event, then ordered steps.  A step's action is a list of
 * effects — commands through the command bus, or events appended to a
 * stream — and its compensation is the list of effects that undoes what
 * took effect.  A step completes when every effect is accepted, or, when it
 * declares complete_on event types, when such an event carrying the saga's
 * correlation id arrives after it began.  It fails on a rejected command,
 * on a fail_on event, or on its timeout; failures are retried per the
 * step's policy, then the saga compensates: every step that took effect,
 * newest group first (steps of one parallel group together), each
 * compensation retried per its own policy.  Consecutive steps with the same
 * nonzero group run in parallel (at most max_parallel effects at once).
 *
 * States: running, compensating, completed, compensated, failed (stopped
 * without compensating: aborted, or nothing to undo), compensation_failed
 * (a compensation ran out of retries: an operator decides), paused.
 *
 * History.  Every transition is an event in the saga's own stream
 * "saga-{type}-{id}" (SagaStarted, SagaStepCompleted, SagaStepWaiting,
 * SagaStepFailed, SagaCompensating, SagaCompensationDone,
 * SagaCompensationFailed, SagaCompleted, SagaCompensated, SagaFailed,
 * SagaPaused, SagaResumed, SagaRetryRequested, SagaStepSkipped,
 * SagaLeased); the instance's state is the fold of that stream and nothing
 * else.  Every command a saga sends carries the saga's correlation id (a
 * name-based UUID of type and id, the same on every run), the triggering
 * event's id as causation id, and metadata naming the saga, id, step,
 * phase ("action" or "compensation"), effect and attempt.
 *
 * Exactly once.  A command's id is derived from (type, id, step, phase,
 * effect, attempt), and the command bus answers a command id it has seen
 * with its first result.  What the saga records depends only on those
 * results, so a saga re-run after a crash re-sends what it had sent (no new
 * effect) and records what it had not recorded: no effect is skipped or
 * repeated.  Successes are recorded lazily (a burst that runs five steps
 * appends one batch), failures at once; a decision that does not follow
 * from results (a timeout, an operator's action) is taken only after the
 * unrecorded effects were looked up (never re-sent) and recorded.
 *
 * Leases.  One instance is advanced by one worker at a time: within a
 * process by a claim, across processes by a lease that lives in the saga's
 * own stream ("lease": {"node", "until"} on its events, taken with an
 * expected-version append, renewed by every transition).  A lease whose
 * holder died expires after lease_ns; a node that restarts keeps its own
 * leases.  Any append of a worker that lost its lease fails on the version.
 *
 * Timers (step deadlines, retry times, the saga deadline) are in the saga's
 * events, so they survive any crash; an index derived from the log and
 * caught up on open orders them (DIR/sagas/, LMDB, on the embedded engine;
 * tables of the store's database on PostgreSQL), and they fire after a
 * restart (late, never lost).  The same index answers listings and stats.
 *
 * PostgreSQL.  Engines of several processes may open one database: the one
 * holding the saga lease runs the dispatcher, the timers and the workers;
 * the others stand by (listings, stats, get and show work; operator
 * actions are refused with EVS_ELOCKED) and one takes over when the
 * holder's session ends — it closed, or died.  Sagas are started by events
 * and answered by events, appended through any process.
 *
 * Thread rules.  An evs_saga_engine is thread-safe.  Register definitions
 * before evs_saga_engine_start (or between evs_saga_engine_run calls).
 * Callbacks of a C definition may run on several threads at once and must
 * be deterministic functions of their arguments.  Close the engine before
 * the app, the bus and the store.
 *
 * All functions return EVS_OK or a negative evs_status and set evs_errmsg().
 */
#ifndef EVSTORE_SAGA_H
#define EVSTORE_SAGA_H

#include "evstore.h"
#include "evstore_app.h"
#include "evstore_bus.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EVS_SAGA_MAX_NAME 64u           /* saga type: letters, digits, '_' and '.' (no '-') */
#define EVS_SAGA_MAX_STEP_NAME 64u
#define EVS_SAGA_MAX_ID 160u            /* instance id, bytes */
#define EVS_SAGA_MAX_STEPS 64u
#define EVS_SAGA_MAX_EFFECTS 64u        /* effects of one action or compensation */
#define EVS_SAGA_MAX_TYPES 32u          /* start / complete_on / fail_on event types */
#define EVS_SAGA_MAX_PARALLEL 64u

typedef struct evs_saga_engine evs_saga_engine;

/* --------------------------------------------------------------- states */

typedef enum evs_saga_status {
    EVS_SAGA_RUNNING = 0,
    EVS_SAGA_COMPENSATING = 1,
    EVS_SAGA_COMPLETED = 2,
    EVS_SAGA_COMPENSATED = 3,
    EVS_SAGA_FAILED = 4,
    EVS_SAGA_COMPENSATION_FAILED = 5,
    EVS_SAGA_PAUSED = 6
} evs_saga_status;
#define EVS_SAGA_STATES 7

/* "running", "compensating", "completed", "compensated", "failed", "compensation_failed", "paused". */
const char *evs_saga_status_name(int status);
/* The inverse; EVS_EINVAL naming the text otherwise. */
int evs_saga_status_parse(const char *name, int *status);
/* 1 for completed, compensated and failed. */
int evs_saga_status_terminal(int status);

/* ---------------------------------------------------------- definitions */

/* Why a step failed; also the bits of evs_saga_retry.retry_on. */
#define EVS_SAGA_ON_REJECTED 0x1u       /* a command was rejected by its aggregate */
#define EVS_SAGA_ON_EVENT 0x2u          /* a fail_on event arrived */
#define EVS_SAGA_ON_TIMEOUT 0x4u        /* the step's timeout passed */
#define EVS_SAGA_ON_ERROR 0x8u          /* invalid / unknown / conflict / failed command, a builder error */
#define EVS_SAGA_ON_ANY 0xfu

/*
 * Retry k (1-based) of a step waits delay(k) (as evs_retry_delay_ns:
 * initial * 2^(k-1) exponential, initial * k linear, or initial; capped;
 * spread by +-jitter) before attempt k+1.  Failures whose kind is not in
 * retry_on are final at once.
 */
typedef struct evs_saga_retry {
    uint32_t max_attempts;          /* attempts in all, >= 1 */
    evs_backoff backoff;
    int64_t initial_delay_ns;
    int64_t max_delay_ns;           /* 0: no cap */
    double jitter;                  /* 0..1 */
    unsigned retry_on;              /* EVS_SAGA_ON_* */
} evs_saga_retry;

/* What a builder sees.  Views valid during the call only. */
typedef struct evs_saga_ctx {
    const char *type;               /* saga type */
    const char *id;                 /* instance id */
    const char *data;               /* the saga's data: a JSON object */
    size_t data_len;
    const char *step;               /* step name (NULL for init) */
    uint32_t step_index;
    uint32_t attempt;               /* 1-based attempt of the action or compensation */
    const uint32_t *accepted;       /* compensation: the action's effects that took effect (0-based) */
    size_t n_accepted;
    const evs_event *answer;        /* done: the complete_on event (NULL when the commands completed it) */
    const evs_event *trigger;       /* init: the starting event */
    const evs_uuid *correlation_id;
} evs_saga_ctx;

/* Where a builder puts its effects (or, for init and done, the saga's data). */
typedef struct evs_saga_out evs_saga_out;

/*
 * Add a command effect: command_type to the aggregate aggregate_id, data a
 * JSON object (NULL: {}); copied.  EVS_EINVAL / EVS_ELIMIT for bad input
 * (the step then fails with that message).
 */
int evs_saga_out_command(evs_saga_out *o, const char *command_type, const char *aggregate_id, const char *data,
                         size_t data_len);
/* Add an append effect: one event of event_type with data (a JSON object) to stream. */
int evs_saga_out_append(evs_saga_out *o, const char *stream, const char *event_type, const char *data,
                        size_t data_len);
/* init / done: replace the saga's data with this JSON object (copied). */
int evs_saga_out_data(evs_saga_out *o, const char *json, size_t len);

/*
 * A builder: an action (effects to send), a compensation (effects undoing
 * the accepted ones), init (the data of a new instance from ctx->trigger)
 * or done (new data after the step completed, e.g. from ctx->answer).
 * Return 0, or nonzero with a reason in err: an action or compensation
 * then fails with kind EVS_SAGA_ON_ERROR (retried per its policy); a failed
 * init ends the instance as failed at once.  Must be deterministic.
 */
typedef int (*evs_saga_fn)(void *ctx, const evs_saga_ctx *sc, evs_saga_out *out, char *err, size_t errcap);

/* The instance id of a starting event into buf (1..EVS_SAGA_MAX_ID bytes): its length, or -1 (the event is skipped). */
typedef int (*evs_saga_key_fn)(void *ctx, const evs_event *ev, char *buf, size_t cap);

typedef enum evs_saga_key_from {
    EVS_SAGA_KEY_STREAM_ID = 0,     /* the stream name after its first '-' ("order-o17" -> "o17") */
    EVS_SAGA_KEY_FIELD = 1,         /* a member of data: key_field, "a.b" reaches into objects (string or integer) */
    EVS_SAGA_KEY_CORRELATION = 2,   /* the event's correlation id */
    EVS_SAGA_KEY_FN = 3             /* key_fn */
} evs_saga_key_from;

typedef struct evs_saga_step_def {
    const char *name;               /* unique in the saga, 1..64 bytes */
    uint32_t group;                 /* 0: alone; consecutive steps with the same nonzero group run in parallel */
    evs_saga_fn action;             /* NULL: no effects */
    evs_saga_fn compensate;         /* NULL: nothing to undo */
    evs_saga_fn done;               /* NULL: the data stays */
    const char *const *complete_on; /* event types that complete the step (none: its commands do) */
    size_t n_complete_on;
    const char *const *fail_on;     /* event types that fail it */
    size_t n_fail_on;
    int64_t timeout_ns;             /* how long a step waits for complete_on (default 30 s) */
    evs_saga_retry retry;           /* default: 3 attempts, exponential from 1 s, cap 60 s, jitter 0.2,
                                       on timeouts and errors */
    evs_saga_retry compensation_retry;  /* default: 3 attempts, as above, on any failure */
    void *ctx;
} evs_saga_step_def;

/* Defaults as documented in the struct; name and callbacks NULL. */
void evs_saga_step_init(evs_saga_step_def *s);

typedef struct evs_saga_def {
    const char *name;               /* the saga type: 1..64 of [A-Za-z0-9_.] */
    const char *const *start_on;    /* event types that start an instance (1..EVS_SAGA_MAX_TYPES) */
    size_t n_start_on;
    evs_saga_key_from key_from;
    const char *key_field;          /* EVS_SAGA_KEY_FIELD */
    evs_saga_key_fn key_fn;         /* EVS_SAGA_KEY_FN */
    evs_saga_fn init;               /* NULL: the data is the starting event's data */
    const evs_saga_step_def *steps; /* 1..EVS_SAGA_MAX_STEPS (copied) */
    size_t n_steps;
    int64_t timeout_ns;             /* an instance still running after this compensates (default 5 min) */
    uint32_t max_parallel;          /* effects of one group sent at once (default 5) */
    void *ctx;                      /* for init and key_fn */
} evs_saga_def;

void evs_saga_def_init(evs_saga_def *d);

/* ----------------------------------------------------------------- engine */

typedef struct evs_saga_config {
    uint32_t workers;               /* worker threads of evs_saga_engine_start (default 4, at most 64) */
    const char *node_id;            /* lease owner (NULL: one generated once and kept in DIR/sagas/) */
    int64_t lease_ns;               /* default 30 s */
    uint64_t from;                  /* first global position whose starting events count, for a new
                                       DIR/sagas/: EVS_SUB_FROM_NOW (default), EVS_SUB_FROM_START or a position
                                       of at most the head + 1 (past it: EVS_EINVAL, nothing created) */
    uint32_t page_size;             /* events the dispatcher reads at once (default 1000) */
    const evs_clock *clock;         /* NULL: real time; borrowed for the engine's life, must be thread-safe */
    evs_lua_limits lua_limits;      /* sandbox of Lua definitions (zero: defaults) */
    int read_only;                  /* look only, beside the process that runs the engine: DIR/sagas/ is
                                       opened read-only (EVS_ENOTFOUND when it does not exist; on
                                       PostgreSQL when no engine ever ran on the database), app may be
                                       NULL; listings, stats, get and show work, everything else is
                                       refused (EVS_EINVAL) */
} evs_saga_config;

void evs_saga_config_init(evs_saga_config *c);

/*
 * Open the saga engine of an open store and its app: its index (DIR/sagas/,
 * created; or the database's tables), caught up with the log by the first
 * run or start (on PostgreSQL: by the process holding the saga lease).  c may be NULL.
 * Ownership: *out is the caller's, released with evs_saga_engine_close
 * before the app; on failure *out is NULL.  One engine per store.
 */
int evs_saga_engine_open(evs_store *s, evs_app *app, const evs_saga_config *c, evs_saga_engine **out);

/* Register a C definition (copied).  EVS_ECONFLICT if the name is taken, EVS_EINVAL naming what is wrong. */
int evs_saga_register(evs_saga_engine *e, const evs_saga_def *def);

/*
 * Register a Lua definition.  The script returns a table:
 *
 *   return {
 *     start = { event_types = {"OrderSubmitted"},
 *               key = "stream_id" | "correlation_id" | "data.order_id" | function(e) return id end },
 *     init = function(e) return { lines = e.data.lines } end,   -- optional
 *     timeout = 300, max_parallel = 5,                           -- seconds; optional
 *     steps = {
 *       { name = "reserve", group = "g1",                         -- group optional
 *         action = function(data, saga) return { command = "ReserveStock", aggregate_id = "tea",
 *                                                data = { order_id = saga.id, quantity = 1 } } end,
 *         compensate = function(data, saga, accepted) return { ... } end,
 *         done = function(data, saga, answer) data.x = answer.data.x end,   -- optional
 *         complete_on = {"X"}, fail_on = {"Y"}, timeout = 30,
 *         retry = { max_attempts = 3, backoff = "exponential", initial = 1, max = 60, jitter = 0.2,
 *                   on = {"timeout", "error", "rejected", "event"} },
 *         compensation_retry = { ... } },
 *     },
 *   }
 *
 * An action or compensation returns one effect ({command=, aggregate_id=,
 * data=} or {append=stream, type=, data=}), a list of them, or nil.  saga
 * has id, type, step, attempt and correlation_id; accepted lists the
 * action's effects that took effect (1-based).  init and done return the new
 * data (or mutate data).  settings_json (may be NULL) is the global
 * `settings` table of the script, for values a deployment chooses
 * (timeouts, names).  Ownership: src and settings are copied.
 */
int evs_saga_register_lua(evs_saga_engine *e, const char *name, const char *src, size_t len,
                          const char *settings_json);

/*
 * Load the saga definitions of an application directory: every
 * DIR/sagas/NAME.lua, in name order, is registered as the Lua saga type
 * NAME, where a "_saga" ending of the file's stem is dropped
 * ("order_saga.lua" is the saga "order"); DIR/sagas/STEM.json, when
 * present, is its settings (a JSON object, the script's `settings`).
 * Other files are ignored, and so is a missing DIR/sagas/.  *count (may be
 * NULL) receives how many were registered.  The first failure stops the
 * load with a message naming the file (what was registered before stays).
 */
int evs_saga_load_dir(evs_saga_engine *e, const char *dir, size_t *count);

/*
 * Start the engine's threads: a dispatcher reading the log, a timer thread
 * and config.workers workers.  Without it, evs_saga_engine_run drives the
 * engine in the calling thread.
 */
int evs_saga_engine_start(evs_saga_engine *e);

/*
 * Do, in the calling thread, everything that is due now: read the log to
 * its head, fire the timers whose time (by the engine's clock) has come,
 * advance every instance with work.  *done (may be NULL) counts instances
 * advanced and events read.  Not with started threads (EVS_EINVAL).
 */
int evs_saga_engine_run(evs_saga_engine *e, size_t *done);

/*
 * Threads started: block until the dispatcher has read to the store's head
 * at the call and no instance has work queued or running, or timeout_ms
 * passes (EVS_ETIMEDOUT).  Instances waiting for events or timers are idle.
 */
int evs_saga_engine_wait_idle(evs_saga_engine *e, int timeout_ms);

/* Stop the threads (finishing the advance in progress) and release everything.  NULL: no-op. */
void evs_saga_engine_close(evs_saga_engine *e);

/* ------------------------------------------------------------- operating */

typedef struct evs_saga_info {
    char type[EVS_SAGA_MAX_NAME + 1];
    char id[EVS_SAGA_MAX_ID + 1];
    char stream[EVS_MAX_STREAM_NAME + 1];
    evs_uuid correlation_id;
    int status;                     /* evs_saga_status */
    int paused_from;                /* while paused: the state it left */
    int step;                       /* current step (running: first unfinished of the group;
                                       compensating: being compensated), -1 when none */
    char step_name[EVS_SAGA_MAX_STEP_NAME + 1];
    uint32_t attempt;               /* of that step's action (running) or compensation */
    int64_t started_at;
    int64_t updated_at;             /* time of the last transition */
    int64_t next_due;               /* next timer (0: none) */
    uint64_t version;               /* of the saga's stream */
    char last_error[512];
} evs_saga_info;

/* One instance, folded from its stream.  EVS_ENOTFOUND when it has none. */
int evs_saga_get(evs_saga_engine *e, const char *type, const char *id, evs_saga_info *out);

/*
 * An instance's info as one JSON object, as listings show it: type, id,
 * stream, correlation_id, status, paused_from (while paused), step
 * ({"index", "name", "attempt"} or null), started_at, updated_at, next_due
 * (RFC 3339 times or null), version, last_error (when there is one) — the
 * same members as evs_saga_show_json's, without data, steps and timeline.
 * Ownership: *json is malloc'd for the caller.
 */
int evs_saga_info_to_json(const evs_saga_info *in, char **json, size_t *len);

/*
 * One instance as JSON, folded from its stream: the info fields, the data,
 * the lease, each step (status, attempt, effects accepted, compensation,
 * due, error) and the timeline (every event of the stream with its time,
 * position and what it says).  Ownership: *json is malloc'd for the caller.
 */
int evs_saga_show_json(evs_saga_engine *e, const char *type, const char *id, char **json, size_t *len);

#define EVS_SAGA_CURSOR_MAX 512         /* bytes of a listing cursor, NUL included */

typedef struct evs_saga_query {
    const char *type;               /* NULL: every type */
    int status;                     /* -1: any (with stuck_ns: any not terminal) */
    int64_t stuck_ns;               /* > 0: only instances whose last transition is older than this */
    const char *cursor;             /* NULL or "": from the start; else a next_cursor of the last page */
    size_t limit;                   /* 0: 100 */
} evs_saga_query;

/*
 * List instances from the index, by type, then state, then time of the last
 * transition (oldest first, so the stuck ones lead), then id.  *count
 * receives how many were filled; next_cursor (may be NULL) receives the
 * cursor of the next page ("" when this was the last).  The index trails
 * the log by the dispatcher's lag (evs_saga_get_engine_stats).
 */
int evs_saga_list(evs_saga_engine *e, const evs_saga_query *q, evs_saga_info *out, size_t max, size_t *count,
                  char next_cursor[EVS_SAGA_CURSOR_MAX]);

/*
 * Operator actions: each is recorded as an event of the saga's stream with
 * `reason` (may be NULL), after the instance's unrecorded effects were
 * looked up and recorded.  EVS_ENOTFOUND for an unknown instance,
 * EVS_ECONFLICT naming the state when the action does not apply,
 * EVS_ELOCKED when another node holds its lease.
 *   pause       running / compensating -> paused (timers stop)
 *   resume      paused -> the state it left (timers shift by the pause)
 *   retry       the current step's retry (or a waiting step: a new attempt)
 *               or failed compensation runs now, with a fresh attempt budget
 *   skip        running: the current step (step NULL) or the named one of
 *               the current group counts as completed; compensating or
 *               compensation_failed: the current compensations count as done
 *   compensate  running / paused -> compensating, by hand
 *   abort       any state not terminal -> failed, nothing compensated
 */
int evs_saga_pause(evs_saga_engine *e, const char *type, const char *id, const char *reason);
int evs_saga_resume(evs_saga_engine *e, const char *type, const char *id);
int evs_saga_retry_now(evs_saga_engine *e, const char *type, const char *id);
int evs_saga_skip(evs_saga_engine *e, const char *type, const char *id, const char *step, const char *reason);
int evs_saga_compensate(evs_saga_engine *e, const char *type, const char *id, const char *reason);
int evs_saga_abort(evs_saga_engine *e, const char *type, const char *id, const char *reason);

/* ------------------------------------------------------------------ stats */

typedef struct evs_saga_type_stats {
    char type[EVS_SAGA_MAX_NAME + 1];
    /* instances that ever entered: */
    uint64_t started, completed, compensated, failed, compensation_failed;
    uint64_t by_state[EVS_SAGA_STATES];     /* instances in each state now */
    uint64_t timers_pending;
    uint64_t step_failures;                 /* failed attempts of actions */
    uint64_t compensation_failures;         /* failed attempts of compensations */
} evs_saga_type_stats;

/* Per saga type (every type with instances, and every registered one), in name order; persisted in the index. */
int evs_saga_get_type_stats(evs_saga_engine *e, evs_saga_type_stats *out, size_t max, size_t *count);

#define EVS_SAGA_BUCKETS 12
#define EVS_SAGA_BOUNDS_MS {1, 5, 10, 50, 100, 500, 1000, 5000, 10000, 30000, 60000, 300000}

typedef struct evs_saga_step_stats {
    char type[EVS_SAGA_MAX_NAME + 1];
    char step[EVS_SAGA_MAX_STEP_NAME + 1];
    /* completed steps by duration (from the step becoming current to its completion, retries included):
       hist[i] counts those of at most EVS_SAGA_BOUNDS_MS[i] ms (and more than the bound before); the last
       slot the slower ones */
    uint64_t hist[EVS_SAGA_BUCKETS + 1];
    uint64_t count;
    uint64_t sum_ns;
} evs_saga_step_stats;

/* Per (type, step) with completions, in name order; persisted in the index. */
int evs_saga_get_step_stats(evs_saga_engine *e, evs_saga_step_stats *out, size_t max, size_t *count);

#define EVS_SAGA_LATE_BUCKETS 10
#define EVS_SAGA_LATE_BOUNDS_US {100, 500, 1000, 5000, 10000, 50000, 100000, 500000, 1000000, 5000000}

typedef struct evs_saga_engine_stats {
    uint64_t position;              /* the dispatcher's next global position */
    uint64_t head;                  /* the store's */
    uint64_t timers_pending;
    /* since open: */
    uint64_t timers_fired;
    uint64_t late_hist[EVS_SAGA_LATE_BUCKETS + 1];  /* fired timers by lateness (worker start - due) */
    uint64_t late_max_ns;
    uint64_t late_sum_ns;           /* summed lateness of the fired timers (the histogram's _sum) */
    uint64_t advances;              /* instance runs by workers */
    uint64_t commands;              /* effects sent */
    uint64_t lookups;               /* effects looked up (never re-sent) before a timeout or an operator action */
    uint64_t flushes;               /* transition batches appended */
    uint64_t conflicts;             /* appends refused on the version (another writer) */
    uint64_t lease_busy;            /* runs skipped: another node's lease */
    uint64_t duplicate_starts;      /* starting events for an existing instance */
    uint64_t bad_starts;            /* starting events without a usable id */
    uint64_t errors;                /* store or index errors (the run is retried) */
    uint32_t queued;                /* instances waiting for a worker */
    uint32_t running;               /* instances a worker holds */
    uint32_t holding;               /* 1: this process runs the sagas (always on the embedded engine, unless
                                       read-only); 0 on PostgreSQL while another process holds the saga lease
                                       (this one stands by; position is then the holder's committed one) */
    char last_error[512];
} evs_saga_engine_stats;

int evs_saga_get_engine_stats(evs_saga_engine *e, evs_saga_engine_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* EVSTORE_SAGA_H */
