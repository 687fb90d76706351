/*
 * evstore.h — the public API of libevstore, an embedded event store.
 *
 * This header is the contract: every handle is opaque, every function returns
 * an int status (EVS_OK or a negative code from EVS_ERRNO_MAP) and fills its
 * out-parameters only on success.  A readable message for the last failure
 * of the calling thread is available from evs_errmsg(); it names what was
 * wrong and where ("stream \"order-1\": expected version 3, actual 5").
 *
 * Lifecycle: evs_store_create -> evs_store_set_* -> evs_store_open -> use ->
 * evs_store_close.  evs_store_close(NULL) is a no-op that returns EVS_OK.
 *
 * Thread rules:
 *   - An open evs_store is thread-safe: any number of threads may append and
 *     read concurrently.  Concurrent appends are gathered by one writer into a
 *     single write and a single fdatasync (group commit).
 *   - evs_append blocks until the append is durable per the durability mode.
 *   - evs_wait_for blocks until the head passes a position or the timeout.
 *   - An evs_reader belongs to one thread at a time; events it returns are
 *     views into the log that stay valid until the next evs_reader_next on
 *     that reader or evs_reader_close.  Close all readers before the store.
 *   - The store must not be closed while other threads still use it.
 *
 * Positions: stream positions and global positions are 1-based.  A stream's
 * version is its last stream position; an empty stream has version 0.  The
 * global order is gapless and equals commit order.  Times are nanoseconds
 * since the Unix epoch (UTC).
 */
#ifndef EVSTORE_H
#define EVSTORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EVS_VERSION_STRING "0.1.0"

/* ------------------------------------------------------------------ errors */

/*
 * One table gives each code its value, name and message.  Codes live in
 * their own negative range; any other negative value is -errno and
 * evs_strerror() describes it with strerror().
 */
#define EVS_ERRNO_MAP(X)                                                                 \
    X(OK, 0, "success")                                                                   \
    X(DONE, 1, "no more events")                                                          \
    X(EINVAL, -30001, "invalid argument")                                                 \
    X(EJSON, -30002, "malformed JSON")                                                    \
    X(ECONFLICT, -30003, "concurrency conflict")                                          \
    X(ENOTFOUND, -30004, "not found")                                                     \
    X(EDUPLICATE, -30005, "event id already stored elsewhere")                            \
    X(ELIMIT, -30006, "limit exceeded")                                                   \
    X(EIO, -30007, "I/O error")                                                           \
    X(ECORRUPT, -30008, "data corruption detected")                                       \
    X(ELOCKED, -30009, "store is locked by another process")                             \
    X(ENOMEM, -30010, "out of memory")                                                    \
    X(EFAILED, -30011, "store refuses writes after an I/O failure; reopen it")           \
    X(ETIMEDOUT, -30012, "timed out")                                                     \
    X(EFORMAT, -30013, "unsupported on-disk format")                                      \
    X(EINDEX, -30014, "index error")                                                      \
    X(ECLOSED, -30015, "store is closed or read-only")                                   \
    X(ELOST, -30016, "events lost: a repair removed them from a damaged log")                \
    X(ECONDITION, -30017, "append condition failed: a matching event exists")            \
    X(EDELETED, -30018, "stream is deleted for good (hard delete)")                      \
    X(EUNAUTHORIZED, -30019, "no valid API key")                                          \
    X(EFORBIDDEN, -30020, "the API key lacks the permission")                            \
    X(ENOTSUP, -30021, "not supported by this storage engine")                           \
    X(EKEY, -30022, "encryption key missing, wrong or forgotten")

typedef enum evs_status {
#define EVS__ENUM(name, value, msg) EVS_##name = value,
    EVS_ERRNO_MAP(EVS__ENUM)
#undef EVS__ENUM
} evs_status;

/* Static description of a code (ours or -errno).  Never NULL. */
const char *evs_strerror(int code);
/* Symbolic name of a code, e.g. "ECONFLICT".  Never NULL. */
const char *evs_errname(int code);
/*
 * Message of the last failure in the calling thread, with context: what was
 * wrong and where.  Valid until the next evs_* call in this thread.
 */
const char *evs_errmsg(void);

/* ------------------------------------------------------------- basic types */

typedef struct evs_uuid {
    uint8_t b[16];
} evs_uuid;

/* A new UUIDv7 (time-ordered, random tail).  Thread-safe. */
void evs_uuid_v7(evs_uuid *out);
/* Canonical 36-character lower-case text plus NUL into buf[37]. */
void evs_uuid_format(const evs_uuid *u, char buf[37]);
/* Parse the canonical 8-4-4-4-12 form (either case).  EVS_EINVAL if not one. */
int evs_uuid_parse(const char *s, size_t len, evs_uuid *out);
/* 1 when all 16 bytes are zero. */
int evs_uuid_is_nil(const evs_uuid *u);

/* Wall clock, ns since the epoch. */
int64_t evs_now_ns(void);
/*
 * RFC 3339 / ISO 8601 UTC time ("2026-11-22T05:40:48.123456789Z", offset
 * "+01:00" accepted) or a decimal count of ns since the epoch.
 */
int evs_time_parse(const char *s, size_t len, int64_t *ns_out);
/* Format as "YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ" into buf[40]; returns length. */
size_t evs_time_format(int64_t ns, char buf[40]);

/* ------------------------------------------------------------------ limits */

/*
 * Hard limits.  Configuration may lower them (evs_store_set_limit) but never
 * raise them; an attempt to raise one fails with EVS_ELIMIT.
 */
#define EVS_MAX_EVENT_BYTES (16u * 1024 * 1024)   /* data + metadata + names of one event */
#define EVS_MAX_EVENTS_PER_APPEND 10000u
#define EVS_MAX_APPEND_BYTES (64u * 1024 * 1024)  /* all events of one append */
#define EVS_MAX_STREAM_NAME 255u                  /* bytes of UTF-8 */
#define EVS_MAX_TYPE_NAME 255u                    /* event_type, stream_type */
#define EVS_MAX_TAGS 64u                          /* tags per event */
#define EVS_MAX_TAG_BYTES 255u                    /* bytes of one tag */

typedef enum evs_limit {
    EVS_LIMIT_EVENT_BYTES = 1,
    EVS_LIMIT_EVENTS_PER_APPEND = 2,
    EVS_LIMIT_APPEND_BYTES = 3,
    EVS_LIMIT_STREAM_NAME = 4
} evs_limit;

/* ------------------------------------------------------------------ store */

typedef struct evs_store evs_store;

typedef enum evs_durability {
    /* Acknowledged means fdatasync'd: survives power loss.  Default. */
    EVS_DURABILITY_SYNC = 0,
    /*
     * Acknowledged after write(2): survives a process crash; fdatasync runs
     * at most every batch_ms, so a power loss may lose the last batch_ms.
     */
    EVS_DURABILITY_BATCH = 1,
    /* Never fdatasync.  For benchmarks and tests only. */
    EVS_DURABILITY_NONE = 2
} evs_durability;

/* Open flags. */
#define EVS_OPEN_CREATE 0x1u   /* create the directory and an empty store if missing */
#define EVS_OPEN_READONLY 0x2u /* no writer, no lock, no recovery writes */

/*
 * Allocate an unopened store handle with default settings.
 * Ownership: on success *out is owned by the caller and released with
 * evs_store_close (whether or not it was ever opened).  On failure *out is
 * left NULL and nothing needs releasing.
 */
int evs_store_create(evs_store **out);

/* Settings; valid only before evs_store_open. */
int evs_store_set_durability(evs_store *s, evs_durability mode, unsigned batch_ms);
/* Segment file size in bytes (default 64 MiB, minimum 64 KiB). */
int evs_store_set_segment_size(evs_store *s, uint64_t bytes);
/* Lower a hard limit; EVS_ELIMIT if value exceeds the hard limit. */
int evs_store_set_limit(evs_store *s, evs_limit which, uint64_t value);
/*
 * The most the index may grow to (default 64 GiB).  The index's map starts
 * at what it holds and doubles as needed up to this limit, so its file
 * follows its use; at the limit appends fail with EVS_ELIMIT and change
 * nothing (reopen with a larger limit).
 */
int evs_store_set_index_map_size(evs_store *s, uint64_t bytes);

/*
 * Open (and with EVS_OPEN_CREATE create) the store in directory dir, or,
 * when dir is a "postgresql://" (or "postgres://") URL, the store in that
 * PostgreSQL database (src/pg; its schema is created or upgraded here).
 * The same calls work on both engines (consumers, projections, schemas,
 * the application layer, sagas and encrypted streams included: subject
 * keys in the database, the master key still from evs_store_use_master_key);
 * what the PostgreSQL engine does not do (scavenge, repair, backup: they
 * work on the embedded log's files) fails with EVS_ENOTSUP naming the
 * operation.
 * Recovery runs here: a torn or corrupt tail record is truncated and the
 * index catches up with the log; see evs_store_recovery_report.  A second
 * writer on the same directory fails with EVS_ELOCKED.
 */
int evs_store_open(evs_store *s, const char *dir, unsigned flags);

/*
 * What the last open repaired, as one human-readable line, or "" when the
 * log was clean.  A read-only open repairs nothing: its line says what it
 * found and left as it was (bytes after the last valid frame are often an
 * append the process holding the store is writing).  Owned by the store.
 */
const char *evs_store_recovery_report(const evs_store *s);

/*
 * Stop accepting appends, finish those in flight, sync, and free everything;
 * the handle is released whatever the result.  Returns EVS_OK when the close
 * was clean (and for NULL, a store that was never opened, or a read-only
 * one).  In batch and none durability the final sync is what makes the
 * last acknowledged appends durable, so its failure is reported:
 *   EVS_EIO      the final fdatasync of the log failed (appends acknowledged
 *                since the last successful sync may be lost), or the log was
 *                synced but the index could not be synced or marked closed
 *                cleanly (nothing is lost; the next open checks the log's
 *                tail again);
 *   EVS_EFAILED  the store had already failed: nothing was synced, appends
 *                acknowledged since the last successful sync may be lost.
 * evs_errmsg() says which step failed and why.
 */
int evs_store_close(evs_store *s);

/* ----------------------------------------------------------------- append */

/* Expected-version sentinels; any value >= 0 is an exact expected version. */
#define EVS_EXPECT_ANY ((int64_t)-1)
#define EVS_EXPECT_NO_STREAM ((int64_t)0)
#define EVS_EXPECT_EXISTS ((int64_t)-2)

/* One event to append.  All pointers are borrowed for the duration of the call. */
typedef struct evs_event_in {
    const char *event_type;      /* required, UTF-8, 1..255 bytes, NUL-terminated */
    const char *data;            /* required: a JSON object */
    size_t data_len;
    const char *metadata;        /* JSON object or NULL for "{}" */
    size_t metadata_len;
    const evs_uuid *event_id;    /* NULL: a UUIDv7 is generated */
    const evs_uuid *causation_id;   /* optional */
    const evs_uuid *correlation_id; /* optional */
    const char *stream_type;     /* NULL: the stream name before its first '-' */
    const char *const *tags;     /* optional UTF-8 strings */
    size_t ntags;
    uint32_t event_version;      /* schema version; 0 means 1 */
    int64_t occurred_at;         /* ns since epoch; 0 means now */
} evs_event_in;

typedef struct evs_append_result {
    uint64_t first_stream_position;
    uint64_t last_stream_position;   /* = the stream's version after the append */
    uint64_t first_global_position;
    uint64_t last_global_position;
    int64_t recorded_at;
    int idempotent;                  /* 1: events were already stored, nothing written
                                        (positions and recorded_at are the original ones) */
    uint64_t actual_version;         /* on EVS_ECONFLICT: the stream's actual version */
    uint64_t condition_position;     /* on EVS_ECONDITION: global position of the first
                                        event that matches the condition's query */
} evs_append_result;

/*
 * Append n events (1..EVS_MAX_EVENTS_PER_APPEND) to stream, atomically, if
 * the stream's version matches expected.  Returns EVS_OK with positions in
 * *res; EVS_ECONFLICT with res->actual_version set and the message
 * "Concurrency conflict: expected version X, actual version Y"; EVS_EDUPLICATE
 * when an event_id is already stored at other positions, or at the same
 * positions with other content; EVS_EINVAL/EVS_EJSON/EVS_ELIMIT for bad
 * input (nothing stored); EVS_EIO/EVS_EFAILED after a write or sync failure.
 * Re-appending the same events (same ids, same content) at the same
 * positions is a safe retry: it returns the original positions and
 * recorded_at with res->idempotent = 1 and writes nothing.  Content is
 * event_type, data and metadata (compared byte for byte, as stored),
 * stream_type, tags, causation_id, correlation_id and event_version, not
 * occurred_at (which defaults to the time of the call).
 * If generated_ids is not NULL it receives the n event ids used.
 */
int evs_append(evs_store *s, const char *stream, int64_t expected, const evs_event_in *events,
               size_t n, evs_append_result *res, evs_uuid *generated_ids);

/*
 * Conditional append (Dynamic Consistency Boundary).  A decision that spans
 * several entities reads the events that matter to it (a tag per entity,
 * say "course:c1" and "student:s7"), decides, and appends on the condition
 * that no event matching the same query was stored after the position it
 * read up to.  The condition is checked by the group-commit writer in the
 * transaction that stores the append, against the index and the earlier
 * appends of the same batch, so nothing can slip in between.
 *
 * A query is the OR of its items; an item matches an event whose type is
 * one of event_types (none given: any type) and that carries every one of
 * tags (none given: any tags).  An item with neither matches every event.
 */
typedef struct evs_query_item {
    const char *const *event_types; /* any of these; 0..EVS_MAX_QUERY_TYPES */
    size_t n_event_types;
    const char *const *tags;        /* all of these; 0..EVS_MAX_TAGS */
    size_t n_tags;
} evs_query_item;

#define EVS_MAX_QUERY_ITEMS 64u
#define EVS_MAX_QUERY_TYPES 64u

typedef struct evs_append_condition {
    const evs_query_item *items;    /* 1..EVS_MAX_QUERY_ITEMS, OR'd */
    size_t n_items;
    uint64_t after;                 /* only events at global positions > after count
                                       (the position the decision's read reached; 0: all) */
} evs_append_condition;

/*
 * evs_append with a condition (NULL: exactly evs_append).  Both the
 * expected version and the condition must hold; the version is checked
 * first (EVS_ECONFLICT).  EVS_ECONDITION, storing nothing, when an event
 * matching cond's query exists after cond->after: res->condition_position
 * names the first such event and the message says which item matched.  An
 * idempotent retry (all event ids already stored, see evs_append) returns
 * the original result without checking the condition again: the stored
 * events would match it themselves.
 */
int evs_append_if(evs_store *s, const char *stream, int64_t expected, const evs_append_condition *cond,
                  const evs_event_in *events, size_t n, evs_append_result *res, evs_uuid *generated_ids);

/* ------------------------------------------------------------------ reads */

/* A stored event: a read-only view, see the thread rules above. */
typedef struct evs_event {
    evs_uuid event_id;
    const char *stream;
    size_t stream_len;
    const char *stream_type;
    size_t stream_type_len;
    const char *event_type;
    size_t event_type_len;
    const char *data;            /* exactly the bytes that were appended */
    size_t data_len;
    const char *metadata;
    size_t metadata_len;
    const char *tags;            /* JSON array of strings, or NULL when none */
    size_t tags_len;
    int has_causation_id;
    int has_correlation_id;
    evs_uuid causation_id;
    evs_uuid correlation_id;
    uint32_t event_version;
    uint64_t stream_position;
    uint64_t global_position;
    int64_t occurred_at;
    int64_t recorded_at;
    uint32_t upcast_from;        /* 0: as stored; else the event_version it was stored with
                                    before an upcast (evstore_schema.h) raised event_version */
    int redacted;                /* 1: data was encrypted under a forgotten subject's key
                                    (evstore_crypt.h): data is "null" */
} evs_event;

/* How a filter's tags combine. */
typedef enum evs_tag_match {
    EVS_TAGS_ANY = 0,               /* the event carries at least one of them */
    EVS_TAGS_ALL = 1                /* the event carries every one of them */
} evs_tag_match;

/*
 * Server-side filter for $all reads; zeroed fields do not filter, and the
 * fields given must all match.  Correlation id, tags, stream type and event
 * types are indexed (a read walks the most selective of their indexes, in
 * that order: tags merged in global order for "any", intersected for
 * "all"); the causation id and the rest are checked on the events read.
 * Consumers (evstore_bus.h) store the indexed fields of a filter; they
 * refuse tags and causation_id here and take one tag of their own.
 */
typedef struct evs_filter {
    const char *const *event_types; /* match any of these */
    size_t n_event_types;
    const char *stream_type;        /* exact */
    const char *stream_prefix;      /* stream name starts with */
    const evs_uuid *correlation_id;
    int64_t since;                  /* recorded_at >= since (0: unbounded) */
    int64_t until;                  /* recorded_at <  until (0: unbounded) */
    const char *const *tags;        /* the event carries any of these tags (1..255 bytes each) */
    size_t n_tags;
    const evs_uuid *causation_id;   /* exact */
    evs_tag_match tag_match;        /* EVS_TAGS_ANY (0) or EVS_TAGS_ALL */
} evs_filter;

typedef struct evs_reader evs_reader;

#define EVS_FORWARD 0
#define EVS_BACKWARD 1
#define EVS_POSITION_END UINT64_MAX /* as a start: the last event (backward) */

/*
 * Read one stream from stream position `from` (inclusive; for backward reads
 * EVS_POSITION_END means from the last event), at most limit events
 * (0: no limit, still streamed, never loaded at once).
 * EVS_ENOTFOUND if the stream has no events.
 * Ownership: *out is the caller's; release with evs_reader_close.
 */
int evs_read_stream(evs_store *s, const char *stream, uint64_t from, int direction,
                    size_t limit, evs_reader **out);

/*
 * Read the global log from global position `from` (inclusive), filtered.
 * filter may be NULL.  Ownership as evs_read_stream.
 */
int evs_read_all(evs_store *s, uint64_t from, int direction, const evs_filter *filter,
                 size_t limit, evs_reader **out);

/*
 * Next event: EVS_OK with *ev set, EVS_DONE at the end of the page or log,
 * or an error (EVS_ECORRUPT when a record fails its checksum: no wrong data
 * is ever returned).
 */
int evs_reader_next(evs_reader *r, const evs_event **ev);

/*
 * Lost events.  When `evstore repair` (evs_store_repair) removes damaged
 * records, their positions stay taken and readers report them instead of
 * passing over them in silence: evs_reader_next returns EVS_ELOST once per
 * lost range it reaches (the message names the range and when the repair
 * ran), with the reader already past it, so the next call continues after
 * the range.  A filtered $all read reports every lost range it crosses,
 * since the lost events might have matched.  Consumers that can live with
 * the gap count it and read on; evs_reader_lost says which range it was:
 * global positions for $all, stream positions for a stream read.
 */
int evs_reader_lost(const evs_reader *r, uint64_t *first, uint64_t *last);

/*
 * Where to continue a later read so that nothing is missed or repeated: for
 * a forward read the position after the last event examined, matching or
 * not (filtered reads advance even when nothing matches).
 */
uint64_t evs_reader_position(const evs_reader *r);

void evs_reader_close(evs_reader *r);

typedef struct evs_stream_info {
    char name[EVS_MAX_STREAM_NAME + 1];
    char stream_type[EVS_MAX_TYPE_NAME + 1];
    uint64_t version;
    uint64_t first_global_position;
    uint64_t last_global_position;
    int64_t created_at;
    int64_t updated_at;
} evs_stream_info;

/* EVS_ENOTFOUND for a stream with no events. */
int evs_stream_get_info(evs_store *s, const char *stream, evs_stream_info *out);

/*
 * Streams whose name starts with prefix (NULL or "": all), in name order,
 * strictly after `after` (NULL: from the start), at most max into out[];
 * *count receives how many were filled.
 */
int evs_list_streams(evs_store *s, const char *prefix, const char *after, evs_stream_info *out,
                     size_t max, size_t *count);

/* ------------------------------------------------- stream metadata, delete */

/*
 * Stream metadata (src/store/meta.c).  A stream's metadata is a JSON object
 * stored as an event of type "$metadata" in the stream "$$<stream>"; the
 * last such event is in force.  Known keys (each optional, null = unset):
 *   max_age          seconds: events recorded longer ago are not read
 *   max_count        the stream shows only its last max_count events
 *   truncate_before  stream position: earlier events are not read
 * Other keys are kept as given; keys starting with '$' are reserved.
 * Every reader (stream reads, $all reads, and through them subscriptions
 * and consumers) skips events the metadata hides; positions never change
 * and readers' positions still advance past skipped events.  Hidden events
 * keep their space until evs_scavenge gives it back.
 */
typedef struct evs_stream_metadata {
    int64_t max_age;              /* seconds, -1: none */
    int64_t max_count;            /* -1: none */
    uint64_t truncate_before;     /* 0: none */
    int tombstone;                /* hard-deleted */
} evs_stream_metadata;

/*
 * Replace a stream's metadata with the JSON object json (len bytes) if the
 * metadata version (the number of metadata writes so far, 0: none) matches
 * expected (EVS_EXPECT_ANY/NO_STREAM/EXISTS or a version).  EVS_EJSON or
 * EVS_EINVAL naming the key for bad input, EVS_ECONFLICT, EVS_EDELETED for a
 * hard-deleted stream; nothing is stored on error.  *version_out (may be
 * NULL) receives the new metadata version, or on EVS_ECONFLICT the actual
 * one the write was refused against.  The stream need not exist.
 */
int evs_stream_set_metadata(evs_store *s, const char *stream, int64_t expected, const char *json, size_t len,
                            uint64_t *version_out);

/*
 * A stream's metadata as stored ("{}" and version 0 when none was set) and
 * parsed.  EVS_ENOTFOUND when neither the stream nor metadata exist.
 * Ownership: *json_out (NUL-terminated, may be NULL to skip) is the
 * caller's; free() it.  version_out and parsed may be NULL.
 */
int evs_stream_get_metadata(evs_store *s, const char *stream, char **json_out, size_t *len_out,
                            uint64_t *version_out, evs_stream_metadata *parsed);

/*
 * Delete a stream whose version matches expected (as evs_append).
 * Soft (hard = 0): metadata truncate_before becomes version + 1, so the
 * stream reads as not found; appending re-creates it and positions
 * continue (expected no-stream is accepted for a soft-deleted stream).
 * Hard (hard = 1): a tombstone; appends and metadata writes fail with
 * EVS_EDELETED for ever.  EVS_ENOTFOUND for an unknown or already deleted
 * stream.  Nothing is removed from the log until evs_scavenge runs.
 */
int evs_stream_delete(evs_store *s, const char *stream, int64_t expected, int hard);

/*
 * Would readers show ev now, given its stream's metadata?  1 or 0.  The one
 * check every reader uses (evs_reader_next applies it itself).
 */
int evs_event_visible(evs_store *s, const evs_event *ev);

#define EVS_SYNC_BUCKETS 12
#define EVS_SYNC_BOUNDS_US {100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000}
#define EVS_BATCH_BUCKETS 11
#define EVS_BATCH_BOUNDS {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024}

typedef struct evs_store_stats {
    uint64_t head;                /* last global position, 0 when empty */
    uint64_t streams;
    uint64_t segments;
    uint64_t log_bytes;
    uint64_t appends;             /* since open */
    uint64_t events_written;      /* since open */
    uint64_t bytes_written;       /* since open */
    uint64_t syncs;               /* fdatasync calls since open */
    uint64_t batches;             /* group commits since open */
    int durability;
    /*
     * Histograms since open.  sync_hist[i] counts log syncs (the batch's
     * write plus its fdatasync) that took at most EVS_SYNC_BOUNDS_US[i]
     * microseconds and more than the bound before; the last slot counts
     * the slower ones.  batch_hist likewise counts group commits by the
     * appends they carried (EVS_BATCH_BOUNDS).  Not cumulative.
     */
    uint64_t sync_hist[EVS_SYNC_BUCKETS + 1];
    uint64_t sync_ns;             /* their total duration */
    uint64_t batch_hist[EVS_BATCH_BUCKETS + 1];
} evs_store_stats;

int evs_store_get_stats(evs_store *s, evs_store_stats *out);

/*
 * Can the store still take appends?  EVS_OK, or EVS_EFAILED after a failed
 * write or fdatasync (appends are refused until the store is reopened),
 * with the first failure's message in why (cap bytes, may be NULL).
 */
int evs_store_writable(evs_store *s, char *why, size_t cap);

/* The last global position (0 when empty). */
uint64_t evs_head(evs_store *s);

/*
 * Block until the head is >= position or timeout_ms passes (-1: forever).
 * EVS_OK with *head set, or EVS_ETIMEDOUT (with *head set), or EVS_ECLOSED
 * when the store is closing.
 */
int evs_wait_for(evs_store *s, uint64_t position, int timeout_ms, uint64_t *head);

/* --------------------------------------------------------------- checking */

typedef struct evs_check_report {
    uint64_t records;
    uint64_t events;              /* positions in valid records, lost ones included */
    uint64_t lost_events;         /* of those, positions a repair removed (reads report them) */
    uint64_t index_head;          /* the last position the index holds */
    uint64_t segments;
    uint64_t errors;
    char first_error[512];        /* "segment 00000003.seg offset 81920: checksum mismatch" */
} evs_check_report;

/*
 * Verify every record of the log and that the index agrees with it in both
 * directions: every valid record is indexed where it is, and every index
 * entry points at a valid record (an index ahead of the log is an error).
 * EVS_OK when clean, EVS_ECORRUPT when anything is wrong (details in *rep).
 */
int evs_store_check(evs_store *s, evs_check_report *rep);

/* ----------------------------------------------------------------- repair */

/*
 * Open refuses a store whose log is damaged below what the index says was
 * acknowledged (EVS_ECORRUPT naming segment and offset); reads refuse
 * damaged records anywhere.  evs_store_repair is the explicit way out: it
 * replaces every damaged stretch of the log by a LOST record that keeps
 * its global and stream positions taken, cuts a torn tail that held no
 * acknowledged event, and rebuilds the index.  Positions are never given
 * to another event afterwards; readers report the removed ranges
 * (EVS_ELOST, see evs_reader_lost).  Every event it removes is named first,
 * through cb, with its position and, when the index knew it, its stream,
 * stream position and event id.
 */
typedef struct evs_lost_event {
    uint64_t global_position;
    int known;                          /* 0: only the position is known (the index did not hold it) */
    char stream[EVS_MAX_STREAM_NAME + 1];
    uint64_t stream_position;
    evs_uuid event_id;
    char where[160];                    /* the damage: "segment 00000001.seg offset 1128: checksum mismatch" */
} evs_lost_event;

typedef struct evs_repair_report {
    uint64_t damaged;                   /* damaged stretches of the log */
    uint64_t lost_events;               /* acknowledged positions removed (or, dry run, to remove) */
    uint64_t unknown_events;            /* of those, ones whose stream and id are unknown */
    uint64_t head;                      /* the head after the repair: never below the head before */
    int changed;                        /* 0 for a dry run or a store that needed nothing */
    char first_damage[256];
} evs_repair_report;

#define EVS_REPAIR_DRY_RUN 0x1u         /* find and name, change nothing */

/* Called once per removed event, in global order; nonzero stops (EVS_EINVAL, nothing changed). */
typedef int (*evs_lost_cb)(void *arg, const evs_lost_event *ev);

/*
 * Repair the store in dir with s's settings (s created, not open; it stays
 * unopened).  Takes the store's lock (EVS_ELOCKED while another process
 * has it open).  A repair that is interrupted leaves a REPAIRING file;
 * open refuses the store until evs_store_repair runs again and finishes.
 */
int evs_store_repair(evs_store *s, const char *dir, unsigned flags, evs_lost_cb cb, void *arg,
                     evs_repair_report *out);

/* --------------------------------------------------------------- scavenge */

/*
 * Scavenge (src/store/scavenge.c): give back the log space of events that
 * stream metadata hides (max_age, max_count, truncate_before, soft and hard
 * deletes), segment by segment, while appends and reads go on.  Only sealed
 * segments are rewritten, never the one appends go to.  Records still
 * readable are copied byte for byte; each run of removed records becomes
 * one small SCAVENGED record that keeps their global and stream positions
 * taken, so positions are never reused or renumbered, and readers report
 * the range (EVS_ELOST, the message says "scavenged"; evs_reader_lost
 * gives it) instead of passing over it in silence.  A record is removed
 * only when every event in it is hidden; streams whose names start with
 * '$' are kept.  Removal is final: metadata changed later cannot bring the
 * events back.  Crash-safe at any point: open finishes or rolls back a
 * segment a crash interrupted (docs/format.md, "Scavenge").
 *
 * Thread rules: one scavenge per store at a time (a second call returns
 * EVS_ELOCKED); it blocks the calling thread until done or cancelled; the
 * progress callback runs on that thread.  The store must stay open
 * meanwhile.  Each segment's swap holds appends back for one index commit.
 */
typedef struct evs_scavenge_progress {
    uint32_t segments_total;      /* sealed segments this run may rewrite */
    uint32_t segments_done;       /* of those, examined so far */
    uint32_t segments_rewritten;  /* of those, rewritten (dry run: would be) */
    uint64_t bytes_examined;      /* segment bytes read */
    uint64_t bytes_reclaimed;     /* file bytes given back (dry run: would be) */
    uint64_t records_removed;
    uint64_t events_removed;
    int dry_run;
    int cancelled;                /* the run stopped at the cancel flag (between segments) */
} evs_scavenge_progress;

#define EVS_SCAVENGE_DRY_RUN 0x1u  /* find what would go, change nothing */

typedef struct evs_scavenge_options {
    uint64_t rate_bytes_per_sec;  /* bytes read plus written per second; 0: as fast as it goes */
    const int *cancel;            /* optional: set nonzero (with an atomic store) to stop; the
                                     segment in progress is finished or rolled back first */
    void (*progress)(void *arg, const evs_scavenge_progress *p); /* after each segment, optional */
    void *progress_arg;
    unsigned flags;               /* EVS_SCAVENGE_DRY_RUN */
} evs_scavenge_options;

/*
 * Run one scavenge over every sealed segment (opt may be NULL: defaults).
 * EVS_OK with *out (may be NULL) filled, also when cancelled (out->cancelled);
 * EVS_ENOTSUP on another storage engine than the embedded log (PostgreSQL);
 * EVS_ECLOSED for a store not open for writing; EVS_ELOCKED while another
 * scavenge of s runs; EVS_EIO/EVS_ECORRUPT/... naming the segment when a
 * step fails (what was done so far stays done; the segment in progress is
 * rolled back or finished at the next open).
 */
int evs_scavenge(evs_store *s, const evs_scavenge_options *opt, evs_scavenge_progress *out);

/*
 * The progress of the scavenge running on s, or of the last one since open
 * (*running 0), and totals since open.  Any thread.
 */
typedef struct evs_scavenge_stats {
    int running;
    evs_scavenge_progress last;   /* the running or last run */
    uint64_t runs;                /* runs finished since open */
    uint64_t bytes_reclaimed;     /* since open, all runs */
    uint64_t segments_rewritten;  /* since open, all runs */
    uint64_t events_removed;      /* since open, all runs */
} evs_scavenge_stats;

int evs_scavenge_get_stats(evs_store *s, evs_scavenge_stats *out);

/* ------------------------------------------------------------------ JSON  */

/*
 * Render one event as a single-line JSON object with the event model's
 * snake_case field names; data and metadata are copied verbatim.
 * Ownership: on success *out is malloc'd and the caller frees it.
 */
int evs_event_to_json(const evs_event *ev, char **out, size_t *out_len);

#ifdef __cplusplus
}
#endif
#endif /* EVSTORE_H */
