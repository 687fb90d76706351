/*
 * index.h — the LMDB index over the log (internal).
 *
 * The log is the truth; the index is derived from it and can be rebuilt
 * from it at any time.  It answers: a stream's version and positions, where
 * stream position N of a stream lives in the log, whether an event id is
 * already stored (idempotency), which records hold an event type, stream
 * type or correlation id (filtered reads that do not scan what they skip),
 * and which record holds global position P.
 *
 * Durability: the index is opened MDB_NOSYNC.  The log's fdatasync is the
 * only one on the append path; the index is synced in the background and
 * at close.  Its checkpoint (the log location and global position it has
 * indexed up to) is written in the same transaction as the entries, so
 * after a crash the index is exactly "everything up to its checkpoint" and
 * opening re-indexes only the log's tail.  The index is never trusted past
 * the log: a checkpoint beyond the log's valid end makes open rebuild it.
 *
 * Databases (keys big-endian where they must sort numerically):
 *   meta       "checkpoint" -> u64 lsn, u64 next_gpos; "next_stream_id" -> u64;
 *              "state" -> boot id + clean flag (see store.c)
 *   streams    stream name -> stream record (evs_ix_stream, encoded)
 *   stream_ev  u64be stream id, u64be stream position -> u64 lsn, u32 index in record
 *   event_ids  16-byte event id -> u64 gpos, u64 stream id, u64 stream position
 *   records    u64be first gpos of a record -> u64 lsn, u32 count
 *   types      event type -> dup u64be gpos
 *   stypes     stream type -> dup u64be gpos
 *   corr       16-byte correlation id -> dup u64be gpos
 *   times      u64be recorded_at, u64be first gpos -> (empty)
 *   lost       u64be first gpos of a LOST frame -> u64 count, i64 repaired_at
 *   tags       tag (its UTF-8 bytes) -> dup u64be gpos, one per event carrying it
 *              (format 2; meta "format" -> u32 EVS_IX_FORMAT)
 *
 * A LOST frame (positions `evstore repair` removed) has a `records` entry
 * like any record, a `lost` entry, and for each stream position it held a
 * `stream_ev` entry whose index is EVS_IX_LOST, so that readers report the
 * loss instead of passing over it and the stream's version stays above it.
 */
#ifndef EVS_INDEX_H
#define EVS_INDEX_H

#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "evstore.h"
#include "log/log.h"

typedef struct evs_index {
    MDB_env *env;
    MDB_dbi meta, streams, stream_ev, event_ids, records, types, stypes, corr, times, lost, tags;
    int readonly;
    int stale;                    /* written by an older format: the writer must rebuild it (store.c) */
    /* The map follows the index's size (see "MAP GROWTH" in index.c). */
    pthread_rwlock_t remap;       /* readers' calls share it; a remap takes it alone */
    _Atomic uint64_t gen;         /* remaps so far: a reader renews its cursors when it changed */
    uint64_t map_size, map_max;
    char data_path[4096];         /* DIR/index/data.mdb */
} evs_index;

typedef struct evs_ix_stream {
    uint64_t id;              /* 0: the stream does not exist yet */
    uint64_t version;
    uint64_t first_gpos, last_gpos;
    int64_t created, updated;
    uint32_t stype_len;
    char stype[EVS_MAX_TYPE_NAME + 1];
} evs_ix_stream;

/*
 * The index's format.  1 (no "format" key): before the tag index.  2: with
 * `tags`.  A writer that opens a format-1 index holding entries rebuilds it
 * from the log (ix->stale); a reader of one has no tag index (ix->tags is
 * 0) and filters tags by scanning.  A newer format is refused (EVS_EFORMAT).
 */
#define EVS_IX_FORMAT 2u

/* Map an LMDB code to ours, recording what was being done. */
int evs__index_err(int mdb_rc, const char *what);

/*
 * Open the environment in directory path (created when missing and not
 * readonly).  map_max: the most the map may grow to; it starts at about
 * twice what the index holds (EVS_IX_MAP_MIN at least).
 */
int evs__index_open(evs_index *ix, const char *path, uint64_t map_max, unsigned maxreaders, int readonly);

#define EVS_IX_MAP_MIN (8u << 20)

/*
 * Readers.  Every use of the index outside the writer (a read transaction
 * and anything read through it) happens between evs__index_rlock and
 * evs__index_runlock, so a remap never runs under it.  A transaction may
 * outlive the lock (an evs_reader keeps one between calls); its cursors
 * must then be renewed (mdb_cursor_renew) when ix->gen has changed, since
 * they point into the old map.  evs__index_rbegin / _rend are the lock plus
 * a read transaction, for short reads.
 */
void evs__index_rlock(evs_index *ix);
void evs__index_runlock(evs_index *ix);
int evs__index_txn_read(evs_index *ix, MDB_txn **txn); /* lock held; adopts a map another process grew */
int evs__index_rbegin(evs_index *ix, MDB_txn **txn);
void evs__index_rend(evs_index *ix, MDB_txn *txn);

/*
 * Writer, with no write transaction open: make sure at least `reserve`
 * bytes of the map are free beyond what the index uses, growing it (at
 * least doubling) if not.  EVS_ELIMIT, changing nothing, when the index
 * would pass map_max (the map itself keeps a little slack beyond it, so
 * that a batch admitted here rarely runs out of pages; `reserve` is an
 * estimate, and the writer still handles MDB_MAP_FULL in a put or in the
 * commit, see process_batch in store.c).
 */
int evs__index_room(evs_index *ix, uint64_t reserve);
/* Writer: grow after MDB_MAP_FULL (no write transaction open). */
int evs__index_grow(evs_index *ix);
/* Did the last index error on this thread come from a full map?  Clears it. */
int evs__index_was_full(void);
void evs__index_close(evs_index *ix);
/* Empty every database (before a rebuild from the log) and mark it the current format. */
int evs__index_clear(evs_index *ix);

int evs__index_checkpoint_get(evs_index *ix, MDB_txn *txn, evs_lsn *lsn, uint64_t *next_gpos);
int evs__index_checkpoint_put(evs_index *ix, MDB_txn *txn, evs_lsn lsn, uint64_t next_gpos);

/* EVS_ENOTFOUND when the stream has no events (st->id is then 0). */
int evs__index_stream_get(evs_index *ix, MDB_txn *txn, const char *name, size_t len, evs_ix_stream *st);
int evs__index_stream_decode(const MDB_val *v, evs_ix_stream *st);

/* Event id lookup: EVS_ENOTFOUND or EVS_OK with its positions. */
int evs__index_event_id_get(evs_index *ix, MDB_txn *txn, const evs_uuid *id, uint64_t *gpos, uint64_t *sid,
                            uint64_t *spos);

/*
 * Add every entry of one record (a frame's payload) at lsn.  st is the
 * stream's state before the record (id 0 for a new stream) and is updated.
 */
int evs__index_add_record(evs_index *ix, MDB_txn *txn, const uint8_t *payload, uint32_t len, uint64_t first_gpos,
                          uint32_t count, evs_lsn lsn, evs_ix_stream *st);

/*
 * Call fn for each tag of an event's stored tags (a JSON array of strings,
 * as the writer encodes it), decoded; a tag listed twice is given once.
 * Stops at fn's first nonzero return and returns it; -1 when the array
 * is malformed.
 */
int evs__index_each_tag(const char *tags_json, size_t len, int (*fn)(void *arg, const char *tag, size_t n), void *arg);

/*
 * The first event at a position in (c->after, head] that c's query matches
 * (ixquery.c): *gpos 0 when none, else its position and *item the first
 * query item that matches it.  txn may be the writer's: it sees its own
 * entries.  c must be valid (evs__condition_validate).
 */
int evs__index_query_first(evs_index *ix, MDB_txn *txn, const evs_append_condition *c, uint64_t head,
                           uint64_t *gpos, size_t *item);

/* stream_ev's event index for a stream position that a repair removed. */
#define EVS_IX_LOST UINT32_MAX

/* A range of global positions that a repair removed. */
typedef struct evs_lost_range {
    uint64_t first, last;
    int64_t repaired_at;
} evs_lost_range;

/* Index a LOST frame's payload (see record.h) at lsn. */
int evs__index_add_lost(evs_index *ix, MDB_txn *txn, const uint8_t *payload, uint32_t len, uint64_t first_gpos,
                        uint32_t count, evs_lsn lsn);

/*
 * Every lost range, in order.  Ownership: *out is malloc'd (NULL when
 * there is none); the caller frees it.
 */
int evs__index_lost_load(evs_index *ix, MDB_txn *txn, evs_lost_range **out, size_t *n);

/* The record holding gpos: its first gpos and location.  EVS_ENOTFOUND past the end. */
int evs__index_find_record(evs_index *ix, MDB_cursor *records_cur, uint64_t gpos, uint64_t *first_gpos,
                           evs_lsn *lsn, uint32_t *count);

/* First record whose recorded_at >= t: its first gpos (EVS_ENOTFOUND if none). */
int evs__index_first_at_or_after(evs_index *ix, MDB_txn *txn, int64_t t, uint64_t *gpos);

#endif
