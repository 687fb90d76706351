/*
 * engine.h — the storage-engine boundary: the table of operations through
 * which the store's public functions reach an engine other than the
 * embedded one (the log and LMDB index of src/log and src/index).
 *
 * evs_store_open picks the engine from what it is given: a directory opens
 * the embedded engine, whose code stays where it is (store.c, read.c) and
 * runs when s->engine is NULL; a "postgresql://" or "postgres://" URL opens
 * the PostgreSQL engine (src/pg).  Every public store function starts with
 * one dispatch line: when the store has an engine, the call goes to the
 * table, otherwise on into the embedded code.  This is the same shape as
 * the I/O table of src/io: callers never know which one they have.
 *
 * This room (src/engine) sits below the store and every engine: the store
 * includes the engines (store_engine.c picks one by URL) and the engines
 * include only this table and its helpers, never the store.
 *
 * What an engine receives is already checked.  engine.c validates an
 * append once for every non-embedded engine — names, JSON, limits, ids —
 * applies the defaults (generated ids, stream type, event
 * version, occurred_at) and renders tags as JSON, so an engine only stores
 * and reads.  Operations an engine does not implement are NULL in its
 * table; the store answers them with EVS_ENOTSUP naming the operation
 * (evs__engine_unsupported).
 *
 * Thread rules: an engine's handle is used by any number of threads at
 * once (the public store is thread-safe); an engine reader belongs to one
 * thread at a time, as evs_reader does.
 */
#ifndef EVS_ENGINE_ENGINE_H
#define EVS_ENGINE_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "evstore.h"

/* One append, validated and with defaults applied (engine.c). */
typedef struct evs__engine_append {
    const char *stream;
    size_t stream_len;
    int64_t expected;
    size_t n;
    const evs_event_in *ev;       /* n events: event_version >= 1, occurred_at set */
    const evs_uuid *ids;          /* n ids, given or generated */
    const char *const *stypes;    /* n stream types (NUL-terminated copies) */
    const char *const *tags;      /* n tag arrays as JSON text, NULL when none */
} evs__engine_append;

/*
 * A metadata write in flight (meta.c): the parsed object and its stream.
 * An engine stores json as the "$metadata" event of the stream "$$"+target
 * (the metadata version is that stream's version) and honours m on reads.
 */
typedef struct evs__meta_write {
    const char *target;           /* the stream it is about */
    size_t target_len;
    const char *json;             /* exactly the stored bytes */
    size_t json_len;
    evs_stream_metadata m;
    int has_target_expected;      /* a delete: the stream's own version must match */
    int64_t target_expected;
    const char *encrypt;          /* the "$encrypt" value in force ("stream", "tag:PREFIX"), NULL when none */
    size_t encrypt_len;
} evs__meta_write;

/* Settings an engine honours, copied from the store handle at open. */
typedef struct evs__engine_settings {
    unsigned flags;               /* EVS_OPEN_* */
    evs_durability durability;
} evs__engine_settings;

typedef struct evs_engine {
    const char *name;             /* "postgresql": used in messages */
    /* Connect to what url names, creating or upgrading what it needs.
       Ownership: *out is the engine's handle, released with close. */
    int (*open)(const char *url, const evs__engine_settings *set, void **out);
    /* Release everything; the handle is gone whatever the result. */
    int (*close)(void *e);
    int (*append)(void *e, const evs__engine_append *a, evs_append_result *res);
    /* An append under a DCB condition (evs_append_if; cond already checked): the expected version
       first, then no event matching cond after cond->after, both decided atomically with the write;
       EVS_ECONDITION with res->condition_position otherwise.  NULL: not supported. */
    int (*append_if)(void *e, const evs__engine_append *a, const evs_append_condition *cond,
                     evs_append_result *res);
    /* Readers: *out is the engine's reader, released with reader_close. */
    int (*read_stream)(void *e, const char *stream, uint64_t from, int direction, size_t limit, void **out);
    int (*read_all)(void *e, uint64_t from, int direction, const evs_filter *f, size_t limit, void **out);
    int (*reader_next)(void *r, const evs_event **ev);
    uint64_t (*reader_position)(const void *r);
    void (*reader_close)(void *r);
    int (*stream_info)(void *e, const char *stream, evs_stream_info *out);
    int (*list_streams)(void *e, const char *prefix, const char *after, evs_stream_info *out, size_t max,
                        size_t *count);
    uint64_t (*head)(void *e);
    int (*wait_for)(void *e, uint64_t position, int timeout_ms, uint64_t *head);
    int (*stats)(void *e, evs_store_stats *out);
    int (*event_position)(void *e, const evs_uuid *id, uint64_t *gpos);
    /* Stream metadata (meta.c checks and parses, and builds a delete's object).  meta_get: the object
       in force (*json malloc'd and the caller's, NULL when there is none), its version, its parsed form
       (none: max_age/max_count -1) and the stream's own version (0: no events).  meta_set: store mw at
       metadata version `expected` (EVS_ECONFLICT naming it); a delete (mw->has_target_expected) also
       needs the stream's version to match; a hard-deleted stream answers EVS_EDELETED.  *version_out
       (may be NULL): the new metadata version, or on EVS_ECONFLICT the actual version refused against
       (the metadata's, or for a delete's the stream's).  NULL: none. */
    int (*meta_get)(void *e, const char *stream, char **json, size_t *len, uint64_t *meta_version,
                    evs_stream_metadata *m, uint64_t *stream_version);
    int (*meta_set)(void *e, const evs__meta_write *mw, int64_t expected, uint64_t *version_out);
    /* evs_store_check: the engine's own invariants, EVS_ECORRUPT naming the first broken one.  NULL: none. */
    int (*check)(void *e, evs_check_report *rep);
    /* The subject keys of crypto-shredding (src/store/keystore.c wraps and unwraps; the engine only keeps
       bytes).  key_get: the subject's row, *state EVS_SUBJECT_NONE, _LIVE (its wrapped key into out, cap
       bytes, *out_len) or _FORGOTTEN.  With create (a wrapped key, create_len bytes), a subject that has no
       row gets that one, atomically: whoever creates it first wins everywhere, and the others are answered
       with the winner's key; a forgotten subject stays forgotten.  key_forget: drop the wrapped key for good
       (the row stays, forgotten) and tell every handle on the same store; EVS_ENOTFOUND when the subject has
       no row.  key_master: the check of the master key (opaque bytes), stored first when check is given and
       there is none yet; *out_len 0 when there is none.  key_generation: a number that changes whenever a
       cached key may have been forgotten elsewhere (a forget by another handle, a lost notification
       channel): the key store drops its cached keys then.  All NULL: encrypted streams not supported. */
    int (*key_get)(void *e, const char *subject, size_t n, const uint8_t *create, size_t create_len, int *state,
                   uint8_t *out, size_t cap, size_t *out_len);
    int (*key_forget)(void *e, const char *subject, size_t n);
    int (*key_master)(void *e, const uint8_t *check, size_t len, uint8_t *out, size_t cap, size_t *out_len);
    uint64_t (*key_generation)(void *e);
} evs_engine;

/* EVS_EINVAL naming the first event id that appears twice among ids[0..n), EVS_ENOMEM when the
   sorted copy cannot be allocated, else EVS_OK. */
int evs__ids_unique(const evs_uuid *ids, size_t n);
/* Length of a stream's default stream type: its name before the first '-' (all of it when none). */
size_t evs__default_stream_type_len(const char *stream, size_t n);
/* A name of 1..max bytes of UTF-8 without control characters; else EINVAL/ELIMIT naming `what`. */
int evs__name_ok(const char *what, const char *p, size_t n, size_t max);
/* Event i's tags checked and rendered as the JSON array stored ("[\"a\",\"b\"]", NUL-terminated).
   Ownership: *out is the caller's (free); NULL when the event has no tags. */
int evs__build_tags(const evs_event_in *e, size_t i, char **out, size_t *out_len);

/* What one event of an append may weigh, in the bytes the limits count. */
typedef struct evs__event_limits {
    uint64_t event_bytes;  /* one event: data, metadata, event type, stream type, tags */
    uint64_t append_bytes; /* the whole append */
    uint64_t overhead;     /* added to the append's total per event (the embedded log's record header) */
} evs__event_limits;

/* Event i's own checks, the same on every engine and in the same order, so a bad event fails with the
   same message wherever it goes: event_type, stream_type (st and stl: the event's, or the default from
   the stream name; pointers into e or stream, no copy), data and metadata as JSON objects,
   event_version, tags, its size and the append's running *total against lim, a nil event_id.
   Ownership: *tags is the caller's (free), also on failure; NULL when the event has none. */
int evs__event_check(const evs__event_limits *lim, const char *stream, size_t slen, const evs_event_in *e,
                     size_t i, const char **st, size_t *stl, char **tags, size_t *tags_len, uint64_t *total);

/*
 * Check an append for a non-embedded engine and apply the defaults: the
 * same rules, limits and messages as the embedded engine's.  lims: the
 * store's limits {event bytes, events per append, append bytes, stream
 * name}.  Ownership: on success *out (and what it points to) is the
 * caller's, released with evs__engine_append_free; on failure nothing is
 * left to free.
 */
int evs__engine_append_prepare(const uint64_t lims[4], const char *stream, int64_t expected,
                               const evs_event_in *events, size_t n, evs__engine_append **out);
/* The same for a stream of the store's own ("$$" metadata streams): '$' names allowed. */
int evs__engine_append_prepare_reserved(const uint64_t lims[4], const char *stream, int64_t expected,
                                        const evs_event_in *events, size_t n, evs__engine_append **out);
void evs__engine_append_free(evs__engine_append *a);

/* EVS_ENOTSUP: "<operation> is not supported by the <engine> storage engine yet". */
int evs__engine_unsupported(const evs_engine *eng, const char *operation);

/* The URL with its password replaced by "****", for logs and messages, into buf (cap bytes). */
const char *evs__engine_mask_url(const char *url, char *buf, size_t cap);

#endif
