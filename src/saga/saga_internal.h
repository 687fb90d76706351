/*
 * saga_internal.h — shared internals of the saga layer (src/saga/), which
 * sits on the application layer (src/app/) and under the server and CLI.
 *
 *   def.c      definitions: checking and copying C definitions, the effects
 *              a builder outputs (evs_saga_out), instance ids of starting
 *              events, retry delays
 *   def_lua.c  Lua definitions in the projections' sandbox, a pool of
 *              sandboxes per type
 *   state.c    an instance's state as the fold of its stream, the
 *              transition events, the binary form the index keeps
 *   catalog.c  the index (src/bus/kv.h: DIR/sagas/ on LMDB, rows of the
 *              store's database on PostgreSQL): the dispatcher's
 *              checkpoint and what it derives from the log (instances,
 *              states, timers, correlation ids, pending starts, counters,
 *              histograms); on PostgreSQL the saga lease
 *   queue.c    the work queue, the claims that keep one instance on one
 *              thread, timers fired once per due, delayed runs, the clock
 *   engine.c   the handle, the registry, the dispatcher, timer and worker
 *              threads, evs_saga_engine_run
 *   worker.c   advancing one instance: effects, outcomes, batches of
 *              transitions, leases, lookups before decisions
 *   ops.c      the operator's actions, get / show, listing and stats
 *
 * Invariants (numbered where the code relies on them):
 *   1. An instance's state is the fold of its stream; the index is a fold of
 *      the same events (state.c is the one fold), committed with the
 *      dispatcher's checkpoint in one transaction.
 *   5. The dispatcher, the timers and the workers run in one process at a
 *      time: on the embedded engine the store's directory lock sees to it,
 *      on PostgreSQL the saga lease (catalog.c; `holding`).
 *   2. The command id of an effect is a function of (type, id, step, phase,
 *      effect, attempt), and the attempt that runs next is a function of
 *      the recorded state: a re-run sends the same ids.
 *   3. Nothing the worker records depends on anything but command results,
 *      answers in the log and recorded times, except a timeout or an
 *      operator's action; before those, every effect of the current
 *      attempts is looked up (evs__app_command_lookup) and its outcome
 *      recorded.
 *   4. Failures are recorded before any further effect is sent.
 */
#ifndef EVS_SAGA_INTERNAL_H
#define EVS_SAGA_INTERNAL_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>

#include "bus/kv.h"
#include "core/core.h"
#include "core/sb.h"
#include "evstore.h"
#include "evstore_app.h"
#include "evstore_bus.h"
#include "evstore_saga.h"

#define EVS__NODE_MAX 64
#define EVS__SAGA_APPEND_CMD "saga.append"   /* the append handler the engine registers */

/* ------------------------------------------------------------ definitions */

enum { EVS__FN_ACTION = 0, EVS__FN_COMPENSATE = 1, EVS__FN_DONE = 2, EVS__FN_INIT = 3 };

typedef struct evs__types {
    char **v;
    size_t n;
} evs__types;

typedef struct evs__step {
    char name[EVS_SAGA_MAX_STEP_NAME + 1];
    uint32_t group;
    evs_saga_fn fn[3];            /* C: action, compensate, done (NULL: none) */
    int has[3];                   /* C or Lua: the builder exists */
    evs__types complete_on, fail_on;
    int64_t timeout_ns;
    evs_saga_retry retry, comp_retry;
    void *ctx;
} evs__step;

struct evs__lua_def;

typedef struct evs__def {
    char name[EVS_SAGA_MAX_NAME + 1];
    evs__types start_on;
    int key_from;
    char *key_field;
    evs_saga_key_fn key_fn;
    evs_saga_fn init;
    int has_init;
    evs__step *steps;
    uint32_t n_steps;
    int64_t timeout_ns;
    uint32_t max_parallel;
    void *ctx;
    /* Lua definitions: the script and its sandboxes, and the calls def.c makes through them */
    struct evs__lua_def *lua;
    int (*lua_call)(struct evs__def *d, int which, uint32_t step, const evs_saga_ctx *sc, evs_saga_out *out, char *err,
                    size_t cap);
    int (*lua_key)(struct evs__def *d, const evs_event *ev, char *buf, size_t cap, char *err, size_t errcap);
    void (*lua_free)(struct evs__lua_def *l);
} evs__def;

/* One effect a builder asked for. */
typedef struct evs__effect {
    int append;                   /* 0: a command to aggregate `target`; 1: an event appended to stream `target` */
    char *type;                   /* command type, or event type */
    char *target;
    char *data;
    size_t data_len;
} evs__effect;

struct evs_saga_out {
    evs__effect *v;
    size_t n, cap;
    char *data;                   /* init / done: the new data (NULL: unchanged) */
    size_t data_len;
    char error[256];              /* a bad add: the builder fails with it */
};

void evs__out_reset(evs_saga_out *o);
void evs__def_free(evs__def *d);
int evs__types_has(const evs__types *t, const char *s, size_t n);
/* Copy and check a C definition into *out (fresh). */
int evs__def_from_c(const evs_saga_def *src, evs__def **out);
/* Check the parts a C and a Lua definition share (names, groups, limits). */
int evs__def_check(const evs__def *d);
/*
 * Run builder `which` of step (ignored for init).  0 with the effects / data
 * in out, or 1 with the reason in err.  Thread-safe.
 */
int evs__def_call(evs__def *d, int which, uint32_t step, const evs_saga_ctx *sc, evs_saga_out *out, char *err,
                  size_t cap);
/* The instance id of a starting event: its length, or -1 with the reason in err. */
int evs__def_key(evs__def *d, const evs_event *ev, char *buf, size_t cap, char *err, size_t errcap);
/* Delay before retry k (1-based) under r, with randomness from the clock. */
int64_t evs__retry_delay(const evs_saga_retry *r, uint32_t k, const evs_clock *clock);
/* Check a saga type name ([A-Za-z0-9_.], 1..64) and an instance id. */
int evs__saga_check_type(const char *name);
int evs__saga_check_id(const char *id);

/* def_lua.c: a definition from a script (its calls go through d->lua_call and d->lua_key) */
int evs__def_from_lua(const char *name, const char *src, size_t len, const char *settings, const evs_lua_limits *lim,
                      evs__def **out);

/* --------------------------------------------------------------- the state */

/* A step's action. */
enum {
    EVS__ST_IDLE = 0,             /* its group has not been reached */
    EVS__ST_PENDING,              /* attempt `attempt` is to be sent (or was sent and not yet recorded) */
    EVS__ST_WAITING,              /* effects accepted, waiting for an answer until `due` */
    EVS__ST_RETRY,                /* attempt `attempt` runs at `due` */
    EVS__ST_DONE,
    EVS__ST_FAILED,               /* failed for good */
    EVS__ST_SKIPPED,              /* an operator counted it as done */
    EVS__ST_ABANDONED             /* its group failed while it was under way */
};
/* A step's compensation. */
enum { EVS__CS_NONE = 0, EVS__CS_PENDING, EVS__CS_RETRY, EVS__CS_DONE, EVS__CS_FAILED, EVS__CS_SKIPPED };

const char *evs__st_name(int st);
const char *evs__cs_name(int cs);

typedef struct evs__sstep {
    uint8_t st, cs;
    uint32_t attempt;             /* the action's attempt that runs next or is under way (1-based) */
    uint32_t base;                /* attempts before an operator's retry: the budget counts from here */
    uint32_t cattempt, cbase;     /* the same for the compensation */
    uint64_t accepted;            /* action effects that took effect, over all attempts (bits) */
    uint64_t cdone;               /* compensation effects done (bits) */
    int64_t due;                  /* WAITING: deadline; RETRY: retry time */
    uint64_t from;                /* WAITING: answers after this global position count */
    int64_t cdue;                 /* CS_RETRY: retry time */
    int64_t began;                /* when the step became current */
    char *error;                  /* its last failure (malloc'd) */
} evs__sstep;

typedef struct evs__saga {
    char type[EVS_SAGA_MAX_NAME + 1];
    char id[EVS_SAGA_MAX_ID + 1];
    evs_uuid corr;
    evs_uuid trigger_id;
    uint64_t trigger_pos;
    int status, paused_from;
    uint32_t n_steps;
    char (*names)[EVS_SAGA_MAX_STEP_NAME + 1];
    uint32_t *groups;
    evs__sstep *steps;
    uint32_t cur;                 /* running: the first step of the current group */
    int64_t started_at, updated_at, deadline, paused_at;
    uint64_t version;             /* recorded: the stream's version */
    uint64_t last_gpos;           /* recorded: global position of its last event */
    char *data;                   /* the saga's data (the worker's fold only) */
    size_t data_len;
    char lease_node[EVS__NODE_MAX + 1];
    int64_t lease_until;
    char error[512];
    uint64_t step_failures, comp_failures;   /* counted by the fold, for the index */
} evs__saga;

/* Event types of saga streams. */
#define EVS__EV_STARTED "SagaStarted"
#define EVS__EV_LEASED "SagaLeased"
#define EVS__EV_COMPLETED_STEP "SagaStepCompleted"
#define EVS__EV_WAITING "SagaStepWaiting"
#define EVS__EV_FAILED_STEP "SagaStepFailed"
#define EVS__EV_COMPENSATING "SagaCompensating"
#define EVS__EV_COMP_DONE "SagaCompensationDone"
#define EVS__EV_COMP_FAILED "SagaCompensationFailed"
#define EVS__EV_COMPLETED "SagaCompleted"
#define EVS__EV_COMPENSATED "SagaCompensated"
#define EVS__EV_FAILED "SagaFailed"
#define EVS__EV_PAUSED "SagaPaused"
#define EVS__EV_RESUMED "SagaResumed"
#define EVS__EV_RETRY "SagaRetryRequested"
#define EVS__EV_SKIPPED "SagaStepSkipped"
extern const char *const evs__saga_event_types[];
extern const size_t evs__saga_n_event_types;

/* Stream "saga-{type}-{id}" into out; EVS_EINVAL when too long. */
int evs__saga_stream(const char *type, const char *id, char out[EVS_MAX_STREAM_NAME + 1]);
/* Split a saga stream name into type and id: 0, or -1 when it is not one. */
int evs__saga_split(const char *stream, size_t n, char type[EVS_SAGA_MAX_NAME + 1], char id[EVS_SAGA_MAX_ID + 1]);
/* The correlation id of an instance: name-based UUID of type and id. */
void evs__saga_corr(const char *type, const char *id, evs_uuid *out);
/* A name-based UUID of the parts (for derived event ids). */
void evs__saga_uuid(const char *a, const char *b, const char *c, evs_uuid *out);

void evs__saga_free(evs__saga *S);
/*
 * Fold one event (type, parsed data) into S.  version/gpos: its stream
 * version and global position, or 0 for an event not yet recorded (the
 * worker's batch).  keep_data: keep the saga data (the worker) or not (the
 * index).  0, or -1 with the reason in err (an event that does not fit the
 * state: the stream was written by something else).
 */
int evs__saga_fold(evs__saga *S, const char *type, json_t *data, uint64_t version, uint64_t gpos, int keep_data,
                   char *err, size_t cap);
/* Fold a stored event (parses its data). */
int evs__saga_fold_event(evs__saga *S, const evs_event *ev, int keep_data, char *err, size_t cap);
/*
 * Read and fold a saga's stream.  EVS_ENOTFOUND when it has no events.
 * Ownership: *out is the caller's, released with evs__saga_free.
 */
int evs__saga_load(evs_store *s, const char *type, const char *id, int keep_data, evs__saga **out);

/* Group of step i: [*a, *b). */
void evs__saga_group(const evs__saga *S, uint32_t i, uint32_t *a, uint32_t *b);
/* The step an operator would call current (-1: none) and its attempt. */
int evs__saga_current(const evs__saga *S, uint32_t *attempt);
/* The next timer of the instance (0: none). */
int64_t evs__saga_next_due(const evs__saga *S);
/* 1 when a worker has something to do right now, whatever the time. */
int evs__saga_has_work(const evs__saga *S);
/* Summary for the operating API. */
void evs__saga_info(const evs__saga *S, evs_saga_info *out);

/* The index's copy of a state (no data).  Ownership: *out malloc'd. */
int evs__saga_encode(const evs__saga *S, char **out, size_t *len);
int evs__saga_decode(const void *p, size_t n, evs__saga **out);

/* -------------------------------------------------------------- the engine */

enum { EVS__JOB_RUN = 0, EVS__JOB_START = 1 };

typedef struct evs__job {
    int kind;
    char type[EVS_SAGA_MAX_NAME + 1];
    char id[EVS_SAGA_MAX_ID + 1];
    uint64_t trigger_pos;         /* EVS__JOB_START */
    int64_t due;                  /* a timer's due time (0: not a timer) */
    struct evs__job *next;
} evs__job;

typedef struct evs__smap evs__smap;

typedef struct evs__delayed {
    int64_t at;
    char key[EVS_SAGA_MAX_NAME + 1 + EVS_SAGA_MAX_ID + 1];
} evs__delayed;

struct evs_saga_engine {
    evs_store *store;
    evs_app *app;
    evs_saga_config cfg;
    const evs_clock *clock;
    char node[EVS__NODE_MAX + 1];

    /* the index (catalog.c) */
    evs__kv *kv;
    int pg;                       /* on PostgreSQL: shared with other processes, the lease decides who runs */
    evs__kv_lease *lease;         /* PostgreSQL: the saga lease while held (guarded by disp_mu) */
    _Atomic int holding;          /* this process runs the sagas (always on the embedded engine, unless read-only) */

    /* registry */
    pthread_rwlock_t reg_lock;
    evs__def **defs;
    size_t n_defs, cap_defs;
    _Atomic uint64_t reg_gen;

    /* work: queue, claims, delayed runs */
    pthread_mutex_t mu;
    pthread_cond_t work_cv, idle_cv;
    evs__job *q_head, *q_tail;
    size_t q_len;
    evs__smap *queued;            /* key -> its job */
    evs__smap *claims;            /* key -> rerun flag */
    evs__delayed *delayed;
    size_t n_delayed, cap_delayed;
    int stop;
    int started;

    /* dispatcher */
    uint64_t position;            /* next global position the index has committed (guarded by mu for readers) */
    pthread_mutex_t disp_mu;      /* one dispatcher pass at a time; guards the fields below */
    uint64_t read_pos;            /* next global position to read (>= position) */
    evs__kv_txn *disp_txn;        /* open over several pages (catalog.c), NULL between commits */
    int64_t disp_t0;              /* when it began (monotonic) */
    size_t disp_events;
    int disp_timers;              /* it indexed a timer: wake the timer thread at its commit */

    /* timers */
    pthread_cond_t timer_cv;
    evs__smap *fired;             /* key -> the due fired last (each due fires once) */
    int requeued;                 /* the index's pending work was queued (first run / start) */
    int started_disp, started_timer;

    pthread_t disp_thread, timer_thread;
    pthread_t *workers;
    uint32_t n_workers;

    /* stats since open */
    _Atomic uint64_t st_fired, st_late[EVS_SAGA_LATE_BUCKETS + 1], st_late_max, st_late_sum;
    _Atomic uint64_t st_advances, st_commands, st_lookups, st_flushes, st_conflicts, st_lease_busy;
    _Atomic uint64_t st_dup_starts, st_bad_starts, st_errors;
    pthread_mutex_t err_mu;
    char last_error[512];
};

/* queue.c */
evs__smap *evs__smap_new(void);
void evs__smap_free(evs__smap *m, int free_vals);
size_t evs__smap_count(const evs__smap *m);
/* Take the next job whose instance is not claimed, claiming it (claimed ones wait on their claim).  NULL: none. */
evs__job *evs__queue_pop_locked(evs_saga_engine *e);
/* Release a claim; a job that waited on it is queued. */
void evs__queue_release_locked(evs_saga_engine *e, const char *type, const char *id);
/* Queue the delayed runs due at now; the time of the next one (0: none). */
int64_t evs__queue_pop_delayed_locked(evs_saga_engine *e, int64_t now);
/* Forget fired dues long past: their instances moved on, or need another firing. */
void evs__queue_prune_fired_locked(evs_saga_engine *e, int64_t now);
/* A start that failed on a store error: run it again when its claim is released. */
void evs__queue_keep_start(evs_saga_engine *e, const evs__job *j);
void evs__queue_free(evs_saga_engine *e);
evs__def *evs__engine_find_def(evs_saga_engine *e, const char *type);
/* Queue an instance (merging with a queued job of the same instance); due != 0: a timer, queued once per due. */
void evs__engine_enqueue(evs_saga_engine *e, int kind, const char *type, const char *id, uint64_t trigger_pos,
                         int64_t due);
/* Run it again at `at` (engine clock). */
void evs__engine_delay(evs_saga_engine *e, const char *type, const char *id, int64_t at);
/* Claim an instance for this thread: 1 claimed, 0 held elsewhere (marked to run again when released). */
int evs__engine_claim(evs_saga_engine *e, const char *type, const char *id);
/* Wait up to timeout_ms for a claim. */
int evs__engine_claim_wait(evs_saga_engine *e, const char *type, const char *id, int timeout_ms);
/* Release; 1 when someone asked for another run meanwhile. */
int evs__engine_release(evs_saga_engine *e, const char *type, const char *id);
void evs__engine_note_error(evs_saga_engine *e, const char *fmt, ...) EVS_PRINTF(2, 3);
/*
 * Make sure this process runs the sagas before acting on them: held
 * already, or (PostgreSQL, no threads started: evs_saga_engine_run and the
 * operator's actions of a caller that drives the engine itself) the lease
 * taken now.  EVS_ELOCKED when another process holds it.
 */
int evs__engine_hold(evs_saga_engine *e);
int64_t evs__engine_now(evs_saga_engine *e);

/* worker.c */

/* Transitions not yet recorded: folded into the worker's state, appended as one batch. */
typedef struct evs__batch {
    const char **types;           /* static strings (EVS__EV_*) */
    json_t **data;                /* owned */
    size_t n, cap;
    int must_flush;               /* a failure is in it: record before any further effect (invariant 4) */
} evs__batch;

/* Add one transition: folded into S (not yet recorded), data stolen.  0, or -1 with the fold's reason. */
int evs__batch_add(evs__saga *S, evs__batch *b, const char *type, json_t *data, char *err, size_t cap);
void evs__batch_free(evs__batch *b);

/* Run an instance as far as it goes (claim held).  Store errors are returned; the caller retries later. */
int evs__worker_run(evs_saga_engine *e, const evs__job *job);
/*
 * The operator's half: with the claim held, take the lease, look up and
 * record what happened (invariant 3), then let fn add its transitions to
 * the batch and append them.  fn returns EVS_OK or an error (EVS_ECONFLICT
 * when the action does not apply); nothing is appended then.
 */
typedef int (*evs__op_fn)(evs_saga_engine *e, evs__def *d, evs__saga *S, void *arg, evs__batch *b);
int evs__worker_operate(evs_saga_engine *e, const char *type, const char *id, evs__op_fn fn, void *arg);
/*
 * Add SagaCompensating for the steps that took effect up to the end of the
 * current group (or SagaFailed when none has a compensation to run).
 */
int evs__worker_compensate(evs_saga_engine *e, evs__def *d, evs__saga *S, evs__batch *b, const char *reason,
                           const char *by);

/* catalog.c: the index's tables (the saga layout's order) */
enum {
    EVS__CAT_META, EVS__CAT_INST, EVS__CAT_BY_STATE, EVS__CAT_TIMERS, EVS__CAT_CORR, EVS__CAT_STARTS, EVS__CAT_READY,
    EVS__CAT_COUNTS, EVS__CAT_HIST, EVS__CAT_NTABLES
};
int evs__cat_open(evs_saga_engine *e);
void evs__cat_close(evs_saga_engine *e);
/*
 * Read what the log has past the checkpoint (at most one page) and index it;
 * *n events read.  The transaction may stay open for the next page (it is
 * committed when the log has nothing more, or after a while); the thread
 * that dispatches must be the one that commits.
 */
int evs__cat_dispatch(evs_saga_engine *e, int wait_ms, size_t *n);
/* Commit what the dispatcher indexed. */
int evs__cat_commit(evs_saga_engine *e);
/* Queue every pending start and every ready instance (after open). */
int evs__cat_requeue(evs_saga_engine *e);
/*
 * Fire timers: queue every instance whose timer is due at `now` (each due
 * once, see evs__engine_enqueue); *next receives the first later due (0:
 * none), *fired how many were due.
 */
int evs__cat_fire(evs_saga_engine *e, int64_t now, int64_t *next, size_t *fired);
int evs__cat_list(evs_saga_engine *e, const evs_saga_query *q, evs_saga_info *out, size_t max, size_t *count,
                  char next_cursor[EVS_SAGA_CURSOR_MAX]);
int evs__cat_type_stats(evs_saga_engine *e, evs_saga_type_stats *out, size_t max, size_t *count);
int evs__cat_step_stats(evs_saga_engine *e, evs_saga_step_stats *out, size_t max, size_t *count);
int evs__cat_timers_pending(evs_saga_engine *e, uint64_t *n);
/*
 * PostgreSQL: take the saga lease when no other process holds it (EVS_OK,
 * or EVS_ELOCKED with the message set); the checkpoint is read again, the
 * queue is to be filled again (requeued = 0).  Held already, or on the
 * embedded engine: EVS_OK.
 */
int evs__cat_lease(evs_saga_engine *e);
/*
 * PostgreSQL: check that the lease's session is alive (one round trip); if
 * not, drop the lease and stand by (holding = 0) and return the error.
 */
int evs__cat_lease_check(evs_saga_engine *e);
/* The committed checkpoint (0 before the first). */
int evs__cat_checkpoint(evs_saga_engine *e, uint64_t *pos);

#endif
