/*
 * evstore_schema.h — schemas for events: a JSON Schema validator (a
 * documented subset of draft 7), a durable registry of schemas per event
 * type and version with compatibility checks and deprecation, validation of
 * appends by policy, and upcasting of old event versions on read.
 *
 * The validator.  evs_json_schema_compile accepts the subset below and
 * refuses everything else with the keyword and the JSON pointer at fault,
 * so a schema never silently means less than it says:
 *
 *   type (one name or a list; "integer" accepts 1.0), enum, const,
 *   properties, required, additionalProperties (a schema or a boolean),
 *   items (one schema for every element), minimum, maximum,
 *   exclusiveMinimum, exclusiveMaximum (numbers, as in draft 6/7),
 *   minLength, maxLength (in code points), pattern (ECMA-262 translated to
 *   POSIX ERE, see docs/schemas.md for what differs), format (date-time,
 *   uuid, email; other formats are refused), anyOf, oneOf, allOf, $ref to
 *   "#" or "#/json/pointer" within the document (definitions / $defs hold
 *   the targets; a $ref with sibling keywords is refused, because draft 7
 *   ignores the siblings and later drafts apply them), boolean schemas.
 *   Annotations are accepted and ignored: title, description, default,
 *   examples, $comment, readOnly, writeOnly; $schema (draft-06 or -07 only)
 *   and $id at the root only.
 *
 * The registry lives in DIR/schemas/ (its own LMDB environment next to the
 * log).  Per event type it keeps numbered schema versions 1, 2, ... with
 * their registration time, deprecation and migration path, the type's
 * compatibility mode, the validation policies and the Lua upcasters.
 *
 * Validation on append.  While a registry is open on a store, every append
 * to that store is checked before anything is written: an event whose type
 * has schemas is validated against the schema of its event_version (0 means
 * 1) if the policy for it says so.  Types without a schema pass untouched
 * (one hash lookup).  With policy enforce, an invalid event fails the whole
 * append with EVS_EINVAL and nothing is stored; the message names the event,
 * its type and version, the JSON pointer of the failing value and the rule,
 * and evs_schema_last_violation gives the same as fields.  With warn the
 * event is stored and counted; with off it is not looked at.
 *
 * Upcasting.  A consumer that asks for the latest version gets every event
 * of a type with schemas transformed, step by step, from the version it was
 * stored with to the latest registered version, by the declared upcasters
 * (C functions or sandboxed Lua), or unchanged where the older schema is
 * provably included in the newer (an implicit step).  The stored bytes never
 * change; the event's event_version is the latest and upcast_from says what
 * it was stored as.
 *
 * Thread rules.  A registry is thread-safe.  Open it on an open store before
 * appends that should be validated and close it before the store, while no
 * append is in flight (it installs and removes the store's validation hook).
 * A C upcaster may be called from any thread that reads through the
 * registry, concurrently; a Lua upcaster runs in its own sandbox, one call
 * at a time.
 *
 * All functions return EVS_OK or a negative evs_status and set evs_errmsg().
 */
#ifndef EVSTORE_SCHEMA_H
#define EVSTORE_SCHEMA_H

#include "evstore.h"
#include "evstore_bus.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EVS_SCHEMA_MAX_BYTES (1u << 20)   /* text of one schema */
#define EVS_SCHEMA_MAX_VERSIONS 10000u    /* versions of one event type */
#define EVS_SCHEMA_MAX_UPCASTER_BYTES (256u * 1024) /* source of one Lua upcaster */

/*
 * What failed and where.  For a value that does not validate: pointer is
 * the JSON pointer (RFC 6901) of the failing value in the validated
 * document ("" is the whole document), keyword the rule ("required",
 * "minimum", ...), schema_path where that rule is in the schema.  For a
 * schema that does not compile, and for a compatibility refusal: pointer and
 * schema_path both locate the keyword at fault in the schema.
 */
typedef struct evs_schema_violation {
    char pointer[512];
    char keyword[32];
    char schema_path[512];
    char message[512];
} evs_schema_violation;

/* ------------------------------------------------------------- validator */

typedef struct evs_json_schema evs_json_schema;

/*
 * Compile a schema (JSON text).  EVS_OK, or EVS_EJSON (not JSON) /
 * EVS_EINVAL (outside the subset or malformed) with the keyword and pointer
 * in *err (may be NULL) and in the message.
 * Ownership: on success *out is the caller's, released with
 * evs_json_schema_free; on failure *out is NULL.
 */
int evs_json_schema_compile(const char *text, size_t len, evs_json_schema **out, evs_schema_violation *err);
void evs_json_schema_free(evs_json_schema *js);

/*
 * Validate one JSON document (any value; must be well-formed JSON).
 * EVS_OK when valid; EVS_EINVAL with *v filled (may be NULL) at the first
 * failure; EVS_EJSON for text that is not JSON; EVS_ELIMIT when the
 * evaluation exceeds its step budget (a pathological schema).
 * Thread-safe: a compiled schema may be used by many threads at once.
 */
int evs_json_schema_validate(const evs_json_schema *js, const char *json, size_t len, evs_schema_violation *v);

typedef enum evs_schema_compat {
    EVS_COMPAT_BACKWARD = 0,   /* every event valid under the previous version is valid under the new one */
    EVS_COMPAT_FORWARD = 1,    /* every event valid under the new version is valid under the previous one */
    EVS_COMPAT_FULL = 2,       /* both */
    EVS_COMPAT_NONE = 3        /* no check */
} evs_schema_compat;

/* "backward", "forward", "full", "none"; parse returns EVS_EINVAL for other text. */
const char *evs_schema_compat_name(int mode);
int evs_schema_compat_parse(const char *name, evs_schema_compat *out);

/*
 * Is every document valid under `sub` also valid under `super`?  Decided
 * structurally and conservatively: EVS_OK only when it is proven; otherwise
 * EVS_ECONFLICT with *why (may be NULL) naming the keyword and its pointer
 * in `super` (or in `sub`) that could not be shown to hold.  A refusal
 * does not prove that a counterexample exists.  The rules are listed in
 * docs/schemas.md.
 */
int evs_json_schema_includes(const evs_json_schema *super, const evs_json_schema *sub, evs_schema_violation *why);

/* ------------------------------------------------------------- registry */

typedef struct evs_schema_registry evs_schema_registry;

/*
 * Open (creating) the registry of an open store, DIR/schemas/, and install
 * its validation hook on the store.  On a store opened read-only the
 * registry is read-only too (no registration, no hook needed).
 * Ownership: *out is the caller's, released with evs_schema_close before
 * the store is closed; on failure *out is NULL.
 */
int evs_schema_open(evs_store *s, evs_schema_registry **out);
/* Remove the hook and free the registry.  NULL: no-op. */
void evs_schema_close(evs_schema_registry *r);

typedef struct evs_schema_def {
    const char *event_type;         /* required */
    uint32_t version;               /* 0: the next one (latest + 1); else must be exactly that */
    const char *schema;             /* JSON text */
    size_t schema_len;
    const char *migration_path;     /* how events of the previous version become this one (free text);
                                       may be NULL */
} evs_schema_def;

/*
 * Register a new version of an event type's schema.  The schema must
 * compile, and, unless the type's compatibility mode is none, relate to the
 * previous version as the mode demands; otherwise EVS_ECONFLICT (not
 * compatible) or EVS_EINVAL (bad schema) with *why (may be NULL) filled.
 * Versions are dense: 1, 2, ...  A version never changes once registered.
 * *version (may be NULL) receives the version registered.  Durable (synced)
 * when it returns.
 */
int evs_schema_register(evs_schema_registry *r, const evs_schema_def *def, uint32_t *version,
                        evs_schema_violation *why);

/* What evs_schema_register would say, without registering anything. */
int evs_schema_check(evs_schema_registry *r, const evs_schema_def *def, evs_schema_violation *why);

/* The compatibility mode of an event type (default backward); persisted. */
int evs_schema_set_compat(evs_schema_registry *r, const char *event_type, evs_schema_compat mode);

/* Mark (deprecated = 1) or unmark a version.  EVS_ENOTFOUND for an unknown version; persisted. */
int evs_schema_deprecate(evs_schema_registry *r, const char *event_type, uint32_t version, int deprecated);

typedef struct evs_schema_info {
    char event_type[EVS_MAX_TYPE_NAME + 1];
    uint32_t version;
    uint32_t latest;                /* the type's latest version */
    int deprecated;
    int compat;                     /* the type's evs_schema_compat */
    int64_t registered_at;
    int64_t deprecated_at;          /* 0 when not deprecated */
    char migration_path[512];
    int upcaster;                   /* to version + 1: 0 none, 1 C, 2 Lua, 3 implicit (included) */
} evs_schema_info;

/*
 * One version's record (version 0: the latest) and, if text is not NULL,
 * its schema as registered (malloc'd JSON text, the caller frees it).
 * EVS_ENOTFOUND when the type or version is unknown.
 */
int evs_schema_get(evs_schema_registry *r, const char *event_type, uint32_t version, evs_schema_info *out,
                   char **text, size_t *text_len);

/*
 * Every version of every type, ordered by type then version, strictly
 * after (after_type, after_version) (NULL: from the start).
 */
int evs_schema_list(evs_schema_registry *r, const char *after_type, uint32_t after_version, evs_schema_info *out,
                    size_t max, size_t *count);

/*
 * Validate data (a JSON object's text) as an event of this type and version
 * (0 means 1) would be on append, policy aside: EVS_OK, EVS_EINVAL with *v,
 * EVS_ENOTFOUND when the type has no such version.
 */
int evs_schema_validate(evs_schema_registry *r, const char *event_type, uint32_t version, const char *data,
                        size_t len, evs_schema_violation *v);

/* ------------------------------------------------------------- policies */

typedef enum evs_validation {
    EVS_VALIDATION_ENFORCE = 0,     /* refuse the append (default) */
    EVS_VALIDATION_WARN = 1,        /* store it, count it */
    EVS_VALIDATION_OFF = 2          /* do not look */
} evs_validation;

typedef enum evs_deprecated_policy {
    EVS_DEPRECATED_WARN = 0,        /* store it, count it (default) */
    EVS_DEPRECATED_REFUSE = 1,      /* refuse the append (EVS_EINVAL) */
    EVS_DEPRECATED_ALLOW = 2        /* neither */
} evs_deprecated_policy;

typedef struct evs_schema_policy {
    evs_validation validation;
    evs_deprecated_policy deprecated;
} evs_schema_policy;

typedef enum evs_policy_scope {
    EVS_POLICY_DEFAULT = 0,         /* name ignored */
    EVS_POLICY_STREAM_TYPE = 1,
    EVS_POLICY_EVENT_TYPE = 2
} evs_policy_scope;

/*
 * The policy that applies to an event: its event type's if set, else its
 * stream type's, else the default.  Persisted.  evs_schema_clear_policy
 * removes a stream- or event-type policy (EVS_ENOTFOUND if none).
 */
int evs_schema_set_policy(evs_schema_registry *r, evs_policy_scope scope, const char *name,
                          const evs_schema_policy *p);
int evs_schema_clear_policy(evs_schema_registry *r, evs_policy_scope scope, const char *name);
/*
 * The policy set at one scope (EVS_ENOTFOUND when a stream or event type
 * has none; the default always exists).
 */
int evs_schema_get_policy(evs_schema_registry *r, evs_policy_scope scope, const char *name, evs_schema_policy *out);
/* The policy for (event_type, stream_type) as an append would resolve it. */
int evs_schema_resolve_policy(evs_schema_registry *r, const char *event_type, const char *stream_type,
                              evs_schema_policy *out);

/* "enforce"/"warn"/"off" and "warn"/"refuse"/"allow"; parse returns EVS_EINVAL otherwise. */
const char *evs_validation_name(int v);
int evs_validation_parse(const char *name, evs_validation *out);
const char *evs_deprecated_policy_name(int v);
int evs_deprecated_policy_parse(const char *name, evs_deprecated_policy *out);

/*
 * The structured form of the last append refused by a registry's hook in
 * the calling thread (the evs_errmsg of that append says the same in one
 * line).  EVS_ENOTFOUND when this thread had none since its last refusal
 * was read.
 */
int evs_schema_last_violation(evs_schema_violation *out);

/* ---------------------------------------------------------------- stats */

typedef struct evs_schema_type_stats {
    char event_type[EVS_MAX_TYPE_NAME + 1];
    uint64_t validated;             /* events checked on append */
    uint64_t refused;               /* ... refused (enforce, unknown version, deprecated + refuse) */
    uint64_t warned;                /* ... stored although invalid (warn) */
    uint64_t deprecated_appends;    /* ... of a deprecated version (stored or refused) */
    uint64_t upcasted;              /* events transformed on read */
    uint64_t upcast_failures;
    char last_failure[512];         /* the last refusal or warning, "" when none */
} evs_schema_type_stats;

/*
 * Counters since the registry was opened, per event type with schemas, in
 * type order strictly after `after` (NULL: from the start).  For the
 * server's /metrics (validation failures by type) and the CLI.
 */
int evs_schema_stats(evs_schema_registry *r, const char *after, evs_schema_type_stats *out, size_t max,
                     size_t *count);

/* ------------------------------------------------------------- upcasting */

/*
 * A C upcaster: data (the event's JSON object text at version `from`) to
 * the data of version from + 1, as malloc'd JSON object text in *out
 * (ownership passes to the registry).  Return 0, or nonzero with the reason
 * in err.  Must be deterministic and thread-safe.
 */
typedef int (*evs_upcast_fn)(void *ctx, const evs_event *ev, const char *data, size_t len, char **out,
                             size_t *out_len, char *err, size_t errcap);

/*
 * Declare the step from version `from` to from + 1 of a type (both must be
 * registered, or the step is refused when read).  A C upcaster lives as long
 * as the registry handle (register it again after each open); a Lua one is
 * stored in DIR/schemas/.  EVS_ECONFLICT when the step already has an
 * upcaster (remove it first).  The Lua source returns a function
 *
 *     return function(data, e)      -- data: the event's data as a table
 *       data.currency = "EUR"       -- e: the event (read-only fields as
 *       return data                 --    for Lua projections, evs_bus.h)
 *     end
 *
 * run in the projections' sandbox (no I/O, capped memory and instructions;
 * JSON null and empty arrays do not survive a round trip through Lua, see
 * docs/schemas.md).  The step's output must validate against the schema of
 * from + 1, or the read fails naming the upcaster.
 */
int evs_schema_add_upcaster(evs_schema_registry *r, const char *event_type, uint32_t from, evs_upcast_fn fn,
                            void *ctx);
int evs_schema_add_lua_upcaster(evs_schema_registry *r, const char *event_type, uint32_t from, const char *src,
                                size_t len);
/* Remove the declared step (C or Lua).  EVS_ENOTFOUND if none. */
int evs_schema_remove_upcaster(evs_schema_registry *r, const char *event_type, uint32_t from);

/*
 * Upcast one event to the latest version of its type.  out receives a copy
 * of *in, with data, event_version and upcast_from replaced when a step
 * applied; *owned (the memory out->data points into, or NULL) is the
 * caller's to free().  Events of types without schemas, at the latest
 * version or above pass unchanged.  A missing step is EVS_ENOTFOUND, a
 * failing one EVS_EINVAL, both naming type and versions.
 */
int evs_schema_upcast(evs_schema_registry *r, const evs_event *in, evs_event *out, void **owned);

/*
 * The map consumers take to see upcasted events (evstore_bus.h:
 * evs_sub_config.map, evs_proj_config.map; evstore_app.h:
 * evs_app_config.map).  The registry must outlive them.
 */
evs_event_map evs_schema_upcast_map(evs_schema_registry *r);

/*
 * A reader that upcasts: wraps base (ownership passes to the wrapper, also
 * on failure) and hands out its events upcasted.  evs_upcast_reader_next
 * returns what evs_reader_next returns (EVS_ELOST included), or the
 * upcasting error of the event, after which the reader has moved past it.
 * Events are valid until the next call.  evs_upcast_reader_base gives the
 * wrapped reader for evs_reader_position / evs_reader_lost.
 * Ownership: *out is the caller's, released with evs_upcast_reader_close.
 */
typedef struct evs_upcast_reader evs_upcast_reader;
int evs_upcast_reader_open(evs_schema_registry *r, evs_reader *base, evs_upcast_reader **out);
int evs_upcast_reader_next(evs_upcast_reader *u, const evs_event **ev);
evs_reader *evs_upcast_reader_base(evs_upcast_reader *u);
void evs_upcast_reader_close(evs_upcast_reader *u);

#ifdef __cplusplus
}
#endif
#endif /* EVSTORE_SCHEMA_H */
