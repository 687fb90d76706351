/*
 * evstore_app.h — the CQRS application layer of libevstore: aggregates (in C
 * or Lua) rebuilt from their streams with snapshots, a command bus with
 * validation and idempotency, and a query bus over projection state with
 * read-your-writes.
 *
 * Aggregates.  An aggregate type owns the streams "{name}-{id}".  It has an
 * initial state, evolve(state, event) and decide(state, command) -> events |
 * rejection.  A command loads the aggregate (latest usable snapshot + the
 * events after it), decides, and appends the new events with the exact
 * expected version; on a concurrency conflict it reloads and decides again,
 * at most max_retries times.  No locks: concurrent commands on one
 * aggregate are serialized by the store's expected-version check.
 *
 * Snapshots.  Every snapshot_every events (and on demand) the state is
 * encoded and stored with the aggregate version, the global position, the
 * state's schema version and a hash of the evolve code; the newest
 * snapshot_keep per aggregate are kept.  A snapshot whose schema version or
 * code hash differs from the registered type is never applied: the
 * aggregate is rebuilt from events (and snapshotted anew).  Automatic
 * snapshots are written by a background thread: a command never waits for
 * one.  They live in DIR/app/, an LMDB environment next to the log (on a
 * PostgreSQL store: in its database, shared by every process on it).
 *
 * Commands.  {command_id, command_type, aggregate_id | target, data,
 * metadata, expected_version?}.  A handler per command type: an aggregate
 * (C or Lua) or the "append" handler (data.events are appended to target).
 * Before dispatch data is checked against the handler's declared fields.
 * Every appended event carries causation_id = the command's causation_id
 * when given (a saga names the event that triggered it), else the command
 * id (a UUID; a command id that is not one is mapped to a name-based UUID), the
 * correlation id (given, or generated), and metadata = the command's
 * metadata plus command_id and command_type.
 *
 * Idempotency.  The event ids of a command are derived from its id
 * (event i = name-based UUID of (command_id, i)), so the events themselves
 * record that the command ran: a command id seen again returns the original
 * result (events, positions, version) instead of running again — also after
 * a crash between the append and anything else, and also when two copies
 * race (the store refuses the second append of the same ids).  Results
 * without events (rejected, accepted with no events) are kept in DIR/app/
 * (PostgreSQL: the database, so a retry through another server finds them)
 * for the idempotency window (default 1 h), at most idempotency_max of them.
 * Accepted commands stay deduplicated as long as their events exist.
 *
 * Queries.  Named queries over a projection's committed state (one item
 * per partition) with field filters, sorting and paging.  A query with
 * min_position waits (bounded) until the projection has passed it, so a
 * client reads its own writes (on PostgreSQL also when the projection runs
 * in another process: the wait reads its position from the database); every
 * answer says which position it reflects.  Results are cached until the
 * projection moves.
 *
 * Thread rules.  An evs_app is thread-safe: any number of threads may run
 * commands, loads and queries concurrently.  Register aggregates, handlers
 * and queries before or while commands run (registration takes a write
 * lock).  C callbacks of one aggregate type may run on several threads at
 * once, each on its own state; the background snapshot thread calls evolve
 * and encode too.  Close the app before the bus and the store.
 *
 * All functions return EVS_OK or a negative evs_status and set evs_errmsg().
 */
#ifndef EVSTORE_APP_H
#define EVSTORE_APP_H

#include "evstore.h"
#include "evstore_bus.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EVS_APP_MAX_NAME 128u           /* aggregate type, command type, query name */
#define EVS_APP_MAX_ID 200u             /* aggregate id, command id (bytes) */
#define EVS_APP_MAX_FIELDS 64u          /* declared fields of a handler */
#define EVS_APP_MAX_RETRIES 1000u
#define EVS_APP_MAX_SOURCE ((size_t)1 << 20)  /* a Lua aggregate's script (bytes) */

typedef struct evs_app evs_app;

typedef struct evs_app_config {
    uint32_t snapshot_every;        /* automatic snapshot each N events (default 100; 0: never) */
    uint32_t snapshot_keep;         /* snapshots kept per aggregate (default 5, >= 1) */
    uint32_t max_retries;           /* reload-and-decide rounds after a conflict (default 10) */
    int64_t idempotency_window_ns;  /* results without events kept this long (default 1 h) */
    uint64_t idempotency_max;       /* ... and at most this many (default 100000) */
    int query_timeout_ms;           /* cap of a min_position wait (default 5000) */
    uint32_t query_cache_entries;   /* cached query results (default 256; 0: no cache) */
    evs_lua_limits lua_limits;      /* sandbox of Lua aggregates (zero: defaults) */
    evs_event_map map;              /* what evolve sees, e.g. upcasted events (evstore_schema.h);
                                       change code_version when what it does changes, so that
                                       snapshots folded through the old map are not used */
    uint32_t state_cache_entries;   /* folded states of C aggregates kept between commands, the
                                       least recently used dropped first (default 16384; 0: none).
                                       A command starts from its aggregate's cached state and reads
                                       only the events after it (checked against the log as a
                                       snapshot is).  Memory: entries x the size of a state. */
} evs_app_config;

void evs_app_config_init(evs_app_config *c);

/*
 * Open the application layer of an open store: DIR/app/ (created; on a
 * PostgreSQL store its tables in the database), the background snapshot
 * thread.  bus may be NULL (then queries are refused);
 * c may be NULL (defaults).  Ownership: *out is the caller's, released with
 * evs_app_close before the bus and the store; on failure *out is NULL.
 */
int evs_app_open(evs_store *s, evs_bus *bus, const evs_app_config *c, evs_app **out);
/* Finish queued snapshots, sync DIR/app/, free everything.  NULL: no-op. */
void evs_app_close(evs_app *a);

/* ------------------------------------------------------------- commands */

typedef struct evs_command {
    const char *command_id;         /* NULL: a UUIDv7 is generated (no deduplication then) */
    const char *command_type;       /* required */
    const char *aggregate_id;       /* aggregate handlers: the id in "{type}-{id}" */
    const char *target;             /* append handler: the stream */
    const char *data;               /* JSON object (NULL: "{}") */
    size_t data_len;
    const char *metadata;           /* JSON object or NULL; "correlation_id" is honoured */
    size_t metadata_len;
    const char *correlation_id;     /* UUID text or NULL: metadata's, else generated */
    int64_t expected_version;       /* >= 0: the stream must be at this version; EVS_EXPECT_ANY: no check */
    const char *causation_id;       /* UUID text of the event that caused the command (a process
                                       manager's trigger); NULL: the command id, as below */
} evs_command;

/* A zeroed command with expected_version = EVS_EXPECT_ANY. */
void evs_command_init(evs_command *c);

typedef struct evs_decision evs_decision;

/*
 * From decide: add one event (data: a JSON object, copied) to the answer.
 * EVS_EINVAL for bad input; the command then fails with that message.
 */
int evs_decision_emit(evs_decision *d, const char *event_type, const char *data, size_t data_len);
/* From decide: refuse the command with a domain reason (copied; replaces any events). */
int evs_decision_reject(evs_decision *d, const char *reason);

/* ----------------------------------------------------------- aggregates */

/*
 * A C aggregate type.  State is the callbacks' own (void *).
 *   init      a new state (version 0)
 *   evolve    fold one stored event into state, in place
 *   decide    read state (at `version`) and the command; emit events or
 *             reject through d; return 0, or nonzero for a failure (not a
 *             rejection) described in err.  It must not change the state:
 *             the state goes back to the state cache afterwards
 *             (evs_app_config.state_cache_entries)
 *   encode    state -> JSON text (malloc'd); NULL: no snapshots
 *   decode    JSON text -> a new state; the text is len bytes, not
 *             NUL-terminated (it may be read straight from the snapshot's page)
 * evolve/init/decode return 0, or nonzero for a failure described in err.
 * They must be deterministic: a state from a snapshot plus the tail must
 * equal the state folded from all events.
 */
typedef struct evs_aggregate_def {
    const char *name;               /* aggregate type, 1..128 bytes; streams are "{name}-{id}" */
    uint32_t schema_version;        /* of the encoded state; 0 means 1 */
    const char *code_version;       /* names the evolve code; its hash is stored with snapshots */
    int (*init)(void *ctx, void **state, char *err, size_t errcap);
    int (*evolve)(void *ctx, void *state, const evs_event *ev, char *err, size_t errcap);
    int (*decide)(void *ctx, const void *state, uint64_t version, const evs_command *cmd, evs_decision *d,
                  char *err, size_t errcap);
    int (*encode)(void *ctx, const void *state, char **json, size_t *len);
    int (*decode)(void *ctx, const char *json, size_t len, void **state, char *err, size_t errcap);
    void (*free_state)(void *ctx, void *state);
    void *ctx;
} evs_aggregate_def;

/* Register a C aggregate type (the def's strings are copied).  EVS_ECONFLICT if the name is taken. */
int evs_app_register_aggregate(evs_app *a, const evs_aggregate_def *def);

/*
 * Register a Lua aggregate type from source, run in the projections'
 * sandbox (evstore_bus.h).  The script returns a table:
 *
 *     return {
 *       schema_version = 1,                         -- optional
 *       init = function() return { status = "new" } end,   -- or a table
 *       evolve = {                                  -- per event type
 *         OrderCreated = function(state, e) state.status = "open" end,
 *       },
 *       commands = {                                -- per command type
 *         CreateOrder = {
 *           fields = { customer = "string", note = "string?" },
 *           decide = function(state, cmd)
 *             if state.status ~= "new" then return "order already exists" end
 *             return { { type = "OrderCreated", data = { customer = cmd.data.customer } } }
 *           end,
 *         },
 *       },
 *     }
 *
 * decide returns a list of events ({type=, data=}), or a string: the
 * rejection reason.  An error() in decide or evolve fails the command.
 * cmd has id, type, aggregate_id, data, metadata, expected_version and
 * version (the state's).  Field types: string, integer, number, boolean,
 * object, array, any; a trailing "?" makes a field optional.  Every command
 * is registered as a handler of this aggregate.  The snapshot code hash is
 * the hash of the whole script.  Ownership: src is copied.
 */
int evs_app_register_lua_aggregate(evs_app *a, const char *name, const char *src, size_t len);

/* ------------------------------------------------------------- handlers */

typedef enum evs_field_type {
    EVS_FIELD_ANY = 0,
    EVS_FIELD_STRING,
    EVS_FIELD_INTEGER,
    EVS_FIELD_NUMBER,               /* integer or real */
    EVS_FIELD_BOOLEAN,
    EVS_FIELD_OBJECT,
    EVS_FIELD_ARRAY
} evs_field_type;

typedef struct evs_field_spec {
    const char *name;               /* a member of the command's data */
    evs_field_type type;
    int required;
} evs_field_spec;

typedef enum evs_handler_kind {
    EVS_HANDLER_AGGREGATE = 0,      /* load the aggregate, decide, append */
    EVS_HANDLER_APPEND = 1          /* data = {"events":[{"event_type","data","metadata"?}]} appended to target */
} evs_handler_kind;

typedef struct evs_command_handler {
    const char *command_type;       /* 1..128 bytes */
    evs_handler_kind kind;
    const char *aggregate;          /* EVS_HANDLER_AGGREGATE: the registered type */
    const evs_field_spec *fields;   /* validated before dispatch (copied) */
    size_t n_fields;
} evs_command_handler;

/* Register a handler.  EVS_ECONFLICT if the command type has one; EVS_ENOTFOUND for an unknown aggregate. */
int evs_app_register_handler(evs_app *a, const evs_command_handler *h);

/* ---------------------------------------------------------------- results */

typedef enum evs_command_outcome {
    EVS_CMD_ACCEPTED = 0,           /* events appended (or none were needed) */
    EVS_CMD_REJECTED = 1,           /* decide refused: reason (HTTP 422) */
    EVS_CMD_CONFLICT = 2,           /* expected_version did not match, or retries ran out (409) */
    EVS_CMD_INVALID = 3,            /* malformed command or data (400) */
    EVS_CMD_UNKNOWN = 4,            /* no handler for the command type (404) */
    EVS_CMD_FAILED = 5              /* the handler failed (a script error, a decode error) (500) */
} evs_command_outcome;
#define EVS_CMD_OUTCOMES 6

/* "accepted", "rejected", "conflict", "invalid", "unknown", "failed". */
const char *evs_command_outcome_name(int outcome);

typedef struct evs_command_result {
    int outcome;                    /* evs_command_outcome */
    int idempotent;                 /* 1: the original result of an earlier run */
    char command_id[EVS_APP_MAX_ID + 1];
    char stream[EVS_MAX_STREAM_NAME + 1];
    evs_uuid correlation_id;
    size_t n_events;
    evs_uuid *event_ids;            /* n_events ids (malloc'd) */
    uint64_t first_position;        /* global positions of the events (0 when none) */
    uint64_t last_position;         /* the consistency token for queries */
    uint64_t version;               /* the stream's version after the command */
    uint32_t retries;               /* reload-and-decide rounds after conflicts */
    int64_t duration_ns;
    char reason[512];               /* rejected / conflict / invalid / unknown / failed */
    char field[160];                /* invalid: the member at fault ("data.sku", "aggregate_id"), or "" */
} evs_command_result;

/* Release what a result holds (not the struct).  NULL: no-op. */
void evs_command_result_free(evs_command_result *r);

/*
 * The result as one JSON object: {"outcome","command_id","stream",
 * "correlation_id","events":[ids],"first_position","last_position",
 * "version","idempotent","retries","reason"?,"field"?}.
 * Ownership: *json is malloc'd for the caller.
 */
int evs_command_result_to_json(const evs_command_result *r, char **json, size_t *len);

/*
 * Run one command.  EVS_OK whenever there is an outcome (all of
 * evs_command_outcome, see res->outcome); a negative code when the store or
 * DIR/app/ failed (EVS_EIO, EVS_EFAILED, EVS_ENOMEM, EVS_ECLOSED): the
 * command may or may not have been applied; re-sending it with the same id
 * is safe.  Blocks until the events are durable per the store's mode.
 * Ownership: on EVS_OK *res holds memory released by evs_command_result_free.
 */
int evs_app_execute(evs_app *a, const evs_command *cmd, evs_command_result *res);

/*
 * Run a command given as JSON text ({command_id, command_type, aggregate_id
 * | target, data, metadata, expected_version?, correlation_id?,
 * causation_id?}); command_type may instead be
 * given as an argument (the route's), in which case a different one in the
 * body is invalid.  As evs_app_execute; malformed JSON is EVS_CMD_INVALID.
 */
int evs_app_execute_json(evs_app *a, const char *command_type, const char *json, size_t len,
                         evs_command_result *res);

/* ------------------------------------------------------------------ loads */

#define EVS_LOAD_NO_SNAPSHOT 0x1u   /* fold every event (ignore snapshots) */

typedef struct evs_load_info {
    uint64_t version;               /* of the loaded state */
    uint64_t snapshot_version;      /* 0: no snapshot used */
    uint64_t events_applied;        /* tail events folded */
    uint64_t snapshots_ignored;     /* newer snapshots of another schema / code */
    int64_t duration_ns;
} evs_load_info;

/*
 * Load an aggregate and encode its state as JSON (the type's encode; Lua:
 * sorted keys).  A stream with no events gives the initial state.
 * Ownership: *json is malloc'd for the caller.  info may be NULL.
 */
int evs_aggregate_load_json(evs_app *a, const char *type, const char *id, unsigned flags, char **json,
                            size_t *len, evs_load_info *info);

/*
 * The state of an aggregate as of a point in the global order (see
 * evs_as_of in evstore_bus.h): the events of its stream at or before
 * at->position and recorded at or before at->time, from the newest usable
 * snapshot at or before that stream version (never a newer one; none with
 * EVS_LOAD_NO_SNAPSHOT).  info->version is the stream version reached.
 * Nothing is written (no snapshot is taken).  Ownership as
 * evs_aggregate_load_json.
 */
int evs_aggregate_load_as_of(evs_app *a, const char *type, const char *id, const evs_as_of *at, unsigned flags,
                             char **json, size_t *len, evs_load_info *info);

/* Take a snapshot now, in the calling thread.  *version (may be NULL) receives its version. */
int evs_aggregate_snapshot(evs_app *a, const char *type, const char *id, uint64_t *version);

typedef struct evs_snapshot_info {
    uint64_t version;
    uint64_t global_position;
    uint32_t schema_version;
    uint8_t code_hash[16];
    int usable;                     /* 1: schema and code match the registered type */
    int64_t created_at;
} evs_snapshot_info;

/* Stored snapshots of an aggregate, newest first. */
int evs_aggregate_snapshots(evs_app *a, const char *type, const char *id, evs_snapshot_info *out, size_t max,
                            size_t *count);

/* Wait until the background snapshot queue is empty (tests, shutdown). */
int evs_app_flush(evs_app *a);

/* ---------------------------------------------------------------- queries */

typedef struct evs_query_def {
    const char *name;               /* 1..128 bytes */
    const char *projection;         /* the projection whose partitions are the items */
    const char *const *fields;      /* fields a query may filter and sort by (NULL: any) */
    size_t n_fields;
    uint32_t default_limit;         /* default 50 */
    uint32_t max_limit;             /* default 1000 */
} evs_query_def;

int evs_app_register_query(evs_app *a, const evs_query_def *q);

typedef struct evs_query_filter {
    const char *field;              /* member of the state; "a.b" reaches into objects */
    const char *value;              /* compared with the member: string as is, numbers numerically,
                                       true/false/null by name */
} evs_query_filter;

typedef struct evs_query_params {
    const char *partition;          /* only this partition (NULL: all) */
    const evs_query_filter *filters;  /* all must match */
    size_t n_filters;
    const char *sort;               /* field to sort by (NULL: partition key) */
    int descending;
    size_t offset;
    size_t limit;                   /* 0: the query's default */
    uint64_t min_position;          /* 0: answer at once */
    int timeout_ms;                 /* wait for min_position (<= config cap; -1: the cap) */
} evs_query_params;

typedef struct evs_query_result {
    char *json;                     /* {"query","position","total","offset","limit","items":[{"key","state"}]} */
    size_t len;
    uint64_t position;              /* the projection position the answer reflects */
    size_t total;                   /* items matching before paging */
    int cached;                     /* 1: served from the cache */
} evs_query_result;

void evs_query_result_free(evs_query_result *r);

/*
 * Run a named query.  EVS_ENOTFOUND for an unknown query or projection,
 * EVS_EINVAL for a field the query does not allow, EVS_ETIMEDOUT when the
 * projection did not reach min_position in time (message names both).
 * Ownership: res->json is malloc'd, released with evs_query_result_free.
 */
int evs_app_query(evs_app *a, const char *name, const evs_query_params *p, evs_query_result *res);

/* ------------------------------------------------------ app directories */

/*
 * Load an application directory: every DIR/NAME.lua is registered as the
 * Lua aggregate type NAME (the file's stem), in name order, and
 * DIR/queries.json, when present, registers named queries:
 *
 *     {"orders": {"projection": "order_summary",
 *                 "fields": ["status", "customer"],    -- optional (any field)
 *                 "default_limit": 50, "max_limit": 1000}}   -- optional
 *
 * Other files are ignored.  The first failure stops the load with a
 * message naming the file (what was registered before it stays).
 */
int evs_app_load_dir(evs_app *a, const char *dir);

/*
 * Aggregate scripts kept in the store: DIR/app/aggregates.json, written
 * with fsync and replaced atomically (on PostgreSQL a committed row per
 * type), so a script registered this way survives restarts (a server's PUT
 * /aggregates/{type}).
 *
 * evs_app_put_lua_aggregate registers the Lua type `name`, or replaces the
 * script of a type that was put before; *what (may be NULL) receives
 * EVS_PUT_CREATED, EVS_PUT_REPLACED or EVS_PUT_UNCHANGED (the same script
 * again).  The script is checked first: one that does not load, or whose
 * commands belong to another type, changes nothing (EVS_EINVAL,
 * EVS_ECONFLICT).  A type registered otherwise (C, evs_app_register_lua_
 * aggregate, an app directory) is not replaced: EVS_ECONFLICT.  A
 * replacement swaps the type and its handlers at once: commands already
 * running finish with the old script, later ones use the new one; commands
 * the new script no longer declares lose their handler; snapshots taken by
 * the old script are no longer applied (its code hash differs).
 *
 * evs_app_load_stored registers every kept script (at start, after the
 * app directory).  A kept type whose name or commands are taken by then is
 * skipped, and so is a script that no longer loads; report (may be NULL)
 * receives one line per skipped script.  Fails only when the file cannot
 * be read (EVS_EIO) or is not what this code writes (EVS_ECORRUPT).
 */
enum { EVS_PUT_CREATED = 1, EVS_PUT_REPLACED = 2, EVS_PUT_UNCHANGED = 3 };
int evs_app_put_lua_aggregate(evs_app *a, const char *name, const char *src, size_t len, int *what);
int evs_app_load_stored(evs_app *a, char *report, size_t cap);

/*
 * What is registered, as JSON: {"aggregates": [{"name", "kind" ("c" or
 * "lua"), "origin" ("library", "app_dir" with "file", or "stored"),
 * "schema_version", "code_hash", "commands": [types]}], "commands":
 * [{"command_type", "handler" ("aggregate" or "append"), "aggregate",
 * "fields": [{"name", "type", "required"}]}], "queries": [{"name",
 * "projection", "fields" (null: any), "default_limit", "max_limit"}]}.
 * With aggregate set: that type's object alone, with "source" for a Lua
 * type (EVS_ENOTFOUND when it is not registered).
 * Ownership: *json is malloc'd for the caller.
 */
int evs_app_describe(evs_app *a, const char *aggregate, char **json, size_t *len);

/* ------------------------------------------------------------------ stats */

#define EVS_CMD_BUCKETS 12
#define EVS_CMD_BOUNDS_US {100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000}

typedef struct evs_app_stats {
    uint64_t commands[EVS_CMD_OUTCOMES];   /* by outcome */
    uint64_t idempotent_hits;
    uint64_t validation_errors;            /* invalid commands */
    uint64_t handler_not_found;
    uint64_t conflict_retries;             /* reload-and-decide rounds */
    uint64_t duration_hist[EVS_CMD_BUCKETS + 1];  /* command durations, bounds EVS_CMD_BOUNDS_US */
    uint64_t duration_ns;
    uint64_t snapshot_loads, snapshot_load_ns, snapshot_load_max_ns;
    uint64_t snapshots_created, snapshot_create_ns, snapshot_create_max_ns;
    uint64_t snapshots_ignored;            /* not applied: other schema or code */
    uint64_t snapshots_dropped;            /* background queue full: left for a later command */
    uint64_t queries, query_cache_hits, query_cache_misses, query_waits, query_timeouts;
    uint64_t state_cache_hits;             /* commands that started from a cached state */
    uint64_t state_cache_misses;           /* ... that loaded from snapshot and log (C aggregates) */
    uint64_t state_cache_entries;          /* states cached now */
} evs_app_stats;

int evs_app_get_stats(evs_app *a, evs_app_stats *out);

typedef struct evs_command_type_stats {
    char command_type[EVS_APP_MAX_NAME + 1];
    uint64_t outcomes[EVS_CMD_OUTCOMES];
} evs_command_type_stats;

/* Counters per registered command type, in registration order. */
int evs_app_command_stats(evs_app *a, evs_command_type_stats *out, size_t max, size_t *count);

#ifdef __cplusplus
}
#endif
#endif /* EVSTORE_APP_H */
