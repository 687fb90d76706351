/*
 * app_internal.h — shared internals of the application layer (src/app/),
 * which sits on the store and the bus and under the server and the CLI.
 *
 *   app.c        the handle, its key-value tables (below), registries, stats
 *   aggregate.c  load = snapshot + tail, the snapshot store, the background
 *                snapshot thread
 *   state_cache.c  folded C aggregate states kept between commands
 *   agg_lua.c    Lua aggregates: the bus's sandbox behind evs_aggregate_def
 *   command.c    the command bus: validation, idempotency, decide/append
 *                with retries, results
 *   query.c      the query bus: named queries over projection state, waits
 *                for min_position, the result cache
 *   appdir.c     application directories, aggregate scripts kept in the
 *                store (DIR/app/aggregates.json, or the "aggregates" table
 *                on PostgreSQL), the registry as JSON
 *
 * Tables, kept through the kv interface (src/bus/kv.h, layout evs__app_layout
 * in app.c): on the embedded engine the LMDB environment DIR/app/, opened
 * MDB_NOSYNC as it always was (everything here is either derived from the
 * log — snapshots — or a cache of it — results of accepted commands live in
 * the log as the events themselves; see command.c); on PostgreSQL rows of
 * evs_bus_kv with db 20..23, shared by every server on the database:
 *   snapshots  stream 0x00 be64(version) -> snapshot header + state JSON
 *   results    command id                -> result JSON (results without events)
 *   results_t  be64(recorded ns) command id -> "" (pruning by age and count)
 *   aggregates PostgreSQL only: type -> {"source", "updated_at"} (the kept
 *              scripts; the embedded engine keeps them in a file, appdir.c)
 */
#ifndef EVS_APP_INTERNAL_H
#define EVS_APP_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "bus/kv.h"
#include "core/core.h"
#include "evstore.h"
#include "evstore_app.h"
#include "evstore_bus.h"

#define EVS__HASH_BYTES 16

/* The app layer's kv tables (the db argument of kv.h's calls). */
enum { EVS__AK_SNAPSHOTS, EVS__AK_RESULTS, EVS__AK_RESULTS_T, EVS__AK_STORED, EVS__AK_NTABLES };

/* Where a registered aggregate type came from (evs_app_describe's "origin"). */
enum { EVS__ORIGIN_LIBRARY = 0, EVS__ORIGIN_APP_DIR = 1, EVS__ORIGIN_STORED = 2 };

/*
 * A registered aggregate type; C or Lua, both behind def's callbacks.
 * Types and handlers are never freed while the app is open: a command
 * finds its handler under reg_lock and uses it after letting go, so a
 * replaced one (evs_app_put_lua_aggregate) moves to the retired list and
 * is freed by evs_app_close.
 */
typedef struct evs__agg {
    char name[EVS_APP_MAX_NAME + 1];
    size_t name_len;
    uint32_t schema;
    uint8_t code_hash[EVS__HASH_BYTES];
    evs_aggregate_def def;        /* name/code_version point into this struct */
    char *code_version;
    struct evs__lua_agg *lua;     /* Lua aggregates: the script and its state pool */
    int origin;                   /* EVS__ORIGIN_* */
    char *file;                   /* EVS__ORIGIN_APP_DIR: the script's path */
    struct evs__agg *retired_next;
} evs__agg;

/* A registered command handler (never changed once registered: replaced whole). */
typedef struct evs__handler {
    char type[EVS_APP_MAX_NAME + 1];
    int kind;                     /* evs_handler_kind */
    evs__agg *agg;
    evs_field_spec *fields;       /* names owned */
    size_t n_fields;
    _Atomic uint64_t outcomes[EVS_CMD_OUTCOMES];
    struct evs__handler *retired_next;
} evs__handler;

typedef struct evs__query evs__query;
typedef struct evs__qcache evs__qcache;
typedef struct evs__scache evs__scache;

typedef struct evs__loaded {
    void *state;
    uint64_t version;             /* stream version the state reflects */
    uint64_t gpos;                /* global position of the event at version (0: none) */
    uint64_t snapshot_version;    /* 0: none used */
    uint64_t events_applied;
    uint64_t snapshots_ignored;
    uint64_t upto;                /* 0: every event; else no snapshot or event past this version */
} evs__loaded;

/* One queued background snapshot: a state at `version`, to be brought up to date and stored. */
typedef struct evs__snap_job {
    evs__agg *agg;
    char stream[EVS_MAX_STREAM_NAME + 1];
    evs__loaded l;                /* l.state is owned by the job */
    struct evs__snap_job *next;
} evs__snap_job;

struct evs_app {
    evs_store *store;
    evs_bus *bus;
    evs_app_config cfg;
    evs__kv *kv;                  /* DIR/app/ (LMDB) or the PostgreSQL database: the tables above */
    int pg;                       /* the store is on PostgreSQL (another process may run the projections) */

    pthread_rwlock_t reg_lock;    /* guards the registries */
    evs__agg **aggs;
    size_t n_aggs, cap_aggs;
    evs__handler **handlers;
    size_t n_handlers, cap_handlers;
    evs__query **queries;
    size_t n_queries, cap_queries;
    evs__agg *retired_aggs;       /* replaced, freed at close (under reg_lock) */
    evs__handler *retired_handlers;
    pthread_mutex_t put_mu;       /* evs_app_put_lua_aggregate: one at a time (the file) */

    /* background snapshots */
    pthread_mutex_t snap_mu;
    pthread_cond_t snap_cv, snap_idle_cv;
    evs__snap_job *q_head, *q_tail;
    size_t q_len;
    int snap_busy, snap_stop;
    pthread_t snap_thread;
    int snap_started;
    int64_t last_prune_ns;

    /* query cache */
    pthread_mutex_t qc_mu;
    evs__qcache *qcache;

    evs__scache *scache;          /* folded states between commands (state_cache.c); NULL: off */

    /* stats */
    _Atomic uint64_t st_cmd[EVS_CMD_OUTCOMES], st_idem, st_invalid, st_unknown, st_retries;
    _Atomic uint64_t st_hist[EVS_CMD_BUCKETS + 1], st_dur_ns;
    _Atomic uint64_t st_snap_loads, st_snap_load_ns, st_snap_load_max;
    _Atomic uint64_t st_snap_created, st_snap_create_ns, st_snap_create_max;
    _Atomic uint64_t st_snap_ignored, st_snap_dropped;
    _Atomic uint64_t st_queries, st_qc_hit, st_qc_miss, st_q_waits, st_q_timeouts;
    _Atomic int interrupted;      /* evs__app_interrupt: min_position waits end (query.c) */
    _Atomic uint64_t st_sc_hit, st_sc_miss;
};

/* ----------------------------------------------------------- app_base.c */

/* A kv.h result -> evs status with message (kv errors already carry theirs). */
int evs__app_kv_err(int rc, const char *what);
/* Atomic max. */
void evs__app_note_max(_Atomic uint64_t *slot, uint64_t v);
/* BLAKE2b-128 of the concatenation of two byte strings. */
void evs__app_hash(const void *a, size_t alen, const void *b, size_t blen, uint8_t out[EVS__HASH_BYTES]);

/* Registry lookups; call with reg_lock held (read). */
evs__agg *evs__app_find_agg(evs_app *a, const char *name);
evs__handler *evs__app_find_handler(evs_app *a, const char *type);
/* The string member k of a JSON object, or NULL when absent or not a string. */
struct json_t;
const char *evs__app_json_str(struct json_t *o, const char *k);
/* Stream of an aggregate: "{type}-{id}".  EVS_EINVAL if the id is empty or too long. */
int evs__agg_stream(const evs__agg *g, const char *id, char out[EVS_MAX_STREAM_NAME + 1]);

/* ---------------------------------------------------------------- app.c */

/* Add a handler (reg_lock held for writing). */
int evs__app_add_handler_locked(evs_app *a, const evs_command_handler *h, evs__agg *agg);

/*
 * Register a Lua aggregate type from src (origin EVS__ORIGIN_*, file for
 * an app directory).  mode: EVS__LUA_ADD refuses a taken name;
 * EVS__LUA_CHECK only checks (compiles, looks for conflicts) and registers
 * nothing; EVS__LUA_PUT adds, or replaces a stored type (EVS_PUT_* in
 * *what).  Nothing changes on failure.
 */
enum { EVS__LUA_ADD = 0, EVS__LUA_CHECK = 1, EVS__LUA_PUT = 2 };
int evs__app_add_lua(evs_app *a, const char *name, const char *src, size_t len, int origin, const char *file,
                     int mode, int *what);

/* ------------------------------------------------------- state_cache.c */

/* A cache of cap entries (0: *out = NULL, no cache).  Ownership: the caller's, evs__scache_free. */
int evs__scache_new(size_t cap, evs__scache **out);
/* Frees the cached states (their types must still be alive). */
void evs__scache_free(evs__scache *c);
/*
 * Check out the cached state of stream if it is g's: 1 with *out filled
 * (out->state then the caller's), 0 when none (also for a NULL cache or a
 * Lua type).  The state is the fold up to out->version, not yet checked
 * against the log: the caller catches up from it as from a snapshot.
 */
int evs__scache_take(evs__scache *c, evs__agg *g, const char *stream, evs__loaded *out);
/* Give a state back (or free it when it cannot be kept); l->state is NULL after. */
void evs__scache_put(evs__scache *c, evs__agg *g, const char *stream, evs__loaded *l);
size_t evs__scache_count(evs__scache *c);

/* ---------------------------------------------------------- aggregate.c */


/*
 * Load an aggregate: the newest usable snapshot (unless EVS_LOAD_NO_SNAPSHOT)
 * and the events after it.  failed: set to 1 when a callback failed (the
 * message is in err and the return is EVS_EINVAL), so the command bus can
 * tell a handler failure from a store error.
 * Ownership: out->state belongs to the caller (def.free_state).
 */
int evs__agg_load(evs_app *a, evs__agg *g, const char *stream, unsigned flags, evs__loaded *out, char *err,
                  size_t cap);
#define EVS__LOAD_INITIAL 0x80000000u /* evs__agg_load_upto: the initial state, no event folded */
#define EVS__LOAD_CACHED 0x40000000u  /* evs__agg_load: start from the state cache when it has the stream */
/* As evs__agg_load, the state at stream version upto (0: the latest): older snapshots, fewer events. */
int evs__agg_load_upto(evs_app *a, evs__agg *g, const char *stream, unsigned flags, uint64_t upto,
                       evs__loaded *out, char *err, size_t cap);
/* Done with a loaded state: back to the state cache, or freed.  l->state is NULL after. */
void evs__agg_release(evs_app *a, evs__agg *g, const char *stream, evs__loaded *l);
/* A registered type and its stream "{type}-{id}"; EVS_ENOTFOUND for an unknown type. */
int evs__agg_lookup(evs_app *a, const char *type, const char *id, evs__agg **g, char stream[EVS_MAX_STREAM_NAME + 1]);
/*
 * Fold the events of stream after l->version into l->state (moving version,
 * gpos and events_applied on).  When l->version > 0 the event at that
 * version is read first and must sit at l->gpos: a snapshot that does not
 * describe this log (a store replaced under DIR/app/) fails with
 * EVS_ECORRUPT instead of being applied.
 */
/* The JSON of l's state (*json the caller's, free()) and info filled; frees l->state (aggregate.c). */
int evs__agg_answer(evs__agg *g, evs__loaded *l, const char *stream, int64_t dt, char **json, size_t *len,
                    evs_load_info *info);
int evs__agg_catch_up(evs_app *a, evs__agg *g, const char *stream, evs__loaded *l, char *err, size_t cap);
/* Encode and store a snapshot of a loaded state (in the calling thread). */
int evs__agg_store_snapshot(evs_app *a, evs__agg *g, const char *stream, const evs__loaded *l);
/*
 * Queue a background snapshot; takes ownership of state either way (freed
 * when the queue is full or the stream already has a job queued).
 */
void evs__agg_queue_snapshot(evs_app *a, evs__agg *g, const char *stream, evs__loaded *l);
int evs__snap_start(evs_app *a);
void evs__snap_stop(evs_app *a);

/* ------------------------------------------------------------ agg_lua.c */

/* Build g->def and g->lua from a script; registers nothing.  On failure g is left for evs__agg_free. */
int evs__agg_lua_init(evs_app *a, evs__agg *g, const char *src, size_t len);
/* The commands a Lua aggregate declares, as handlers (for registration). */
int evs__agg_lua_handlers(evs__agg *g, evs_command_handler **out, size_t *n);
void evs__agg_lua_handlers_free(evs_command_handler *h, size_t n);
void evs__agg_lua_free(struct evs__lua_agg *l);
/* Free the idle sandboxes of a retired type (states still alive come back and wait for close). */
void evs__agg_lua_trim(struct evs__lua_agg *l);
/* The script of a Lua type. */
const char *evs__agg_lua_source(const struct evs__lua_agg *l, size_t *len);

/* ------------------------------------------------------------ results.c */

/* Record the result of a command that appended nothing (res->command_id set). */
int evs__results_put(evs_app *a, const char *type, const evs_command_result *res);
/*
 * 1 with res filled when a result without events is on record for cmd_id
 * within the window (an id used by another command type or stream: res is
 * EVS_CMD_INVALID naming it), 0 when none, < 0 on error.
 */
int evs__results_get(evs_app *a, const char *cmd_id, const char *type, const char *stream, evs_command_result *res);
/* Delete results older than the window and beyond the cap (in a write txn of its own). */
int evs__results_prune(evs_app *a, int64_t now);

/* ----------------------------------------------------------- decision.c */

struct evs_decision {
    size_t n, cap;
    char **types;
    char **data;
    size_t *lens;
    int rejected;
    char reason[512];
    char error[512];              /* a bad emit: the command fails */
};

void evs__decision_reset(evs_decision *d);
void evs__decision_free(evs_decision *d);

/* ------------------------------------------------------------- query.c */

void evs__query_free(evs__query *q);
void evs__qcache_free(evs__qcache *c);
/* A query's definition as JSON (evs_app_describe; reg_lock held).  NULL when out of memory. */
struct json_t *evs__query_json(const evs__query *q);

#endif
