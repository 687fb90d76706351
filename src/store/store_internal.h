/*
 * store_internal.h — the store handle, shared by the writer (store.c) and
 * the readers (read.c).  Not part of the public API.
 */
#ifndef EVS_STORE_INTERNAL_H
#define EVS_STORE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "evstore.h"
#include "index/index.h"
#include "io/io.h"
#include "log/log.h"
#include "store/store_engine.h" /* and engine/engine.h through it */

typedef struct evs_append_req evs_append_req;

struct evs_store {
    /* settings (before open) */
    evs_durability durability;
    unsigned batch_ms;
    uint64_t segment_size;
    uint64_t zero_ahead;          /* bytes the log keeps zeroed ahead in sync durability (log.h) */
    uint64_t map_size;
    uint64_t lim_event_bytes, lim_events, lim_append_bytes, lim_stream_name;
    const evs_io *io;

    /* open state */
    char *dir;
    int readonly;
    int lock_fd;
    evs_log *log;
    evs_index ix;
    char report[1024];
    /* ranges a repair removed (index `lost`), fixed while open; readers
       report them.  Loaded at open. */
    evs_lost_range *lost;
    size_t nlost;
    int repairing;                /* evs_store_repair's own open: REPAIRING is expected */

    /* published by the writer after each commit; read by everyone */
    _Atomic uint64_t head;        /* last global position */
    _Atomic uint64_t pub_end;     /* log location readers may read below */

    /* group commit (leader/follower, see store.c) */
    pthread_mutex_t mu;           /* guards the queue, leading, closing */
    pthread_cond_t head_cv;       /* evs_wait_for waits for the head */
    pthread_cond_t idle_cv;       /* close waits for the queue to drain */
    pthread_cond_t syncer_cv;     /* wakes the batch-mode syncer at close */
    evs_append_req *q_head, *q_tail;
    size_t q_len;
    int leading;                  /* a thread leads, or has been asked to (see store.c) */
    int closing;
    _Atomic int inflight;         /* evs_append calls between entry and return */
    _Atomic int gathering;        /* a leader waits for appenders on their way */
    _Atomic uint32_t gather_seq;  /* futex word it waits on */
    _Atomic int head_waiters;     /* evs_wait_for callers on head_cv */
    _Atomic int64_t sync_ewma_ns; /* recent fdatasync duration, for the gathering budget */
    pthread_t syncer;             /* batch durability only */
    int syncer_started;
    /* the committer (store.c): leads when only asynchronous appends wait, whose callers
       do not sleep on them; started by the first one */
    pthread_t committer;
    pthread_cond_t committer_cv;
    int committer_started, committer_lead, committer_stop; /* under mu */
    int finishing;                /* mu: batches whose asynchronous callbacks still run (close waits) */
    /* owned by whoever leads (handed over under mu) */
    _Atomic int failed;           /* sticky: first write/sync failure code */
    char failed_msg[512];         /* written once, then failed_msg_ready (release) */
    _Atomic int failed_msg_ready;
    int64_t last_recorded;        /* recorded_at never goes backwards */
    int64_t last_sync_ns;
    int unsynced;                 /* batch mode: flushed but not synced */
    /* test hooks (store_testing.h): no room kept ahead of a batch; index
       commits of appends still to fail with MDB_MAP_FULL */
    int t_no_reserve, t_fail_commits;
    _Atomic uint64_t t_reindexed; /* batches indexed again after their frames were durable */

    /* the append validator (store_access.h), NULL when none; set while no append is in flight */
    int (*validator)(void *ctx, const char *stream, size_t stream_len, const char *stream_type, size_t stream_type_len,
                     const evs_event_in *ev, size_t index);
    void *validator_ctx;

    /* stream metadata cache (meta.c): one entry per stream that has
       metadata, loaded at open, changed by the writer after each commit */
    pthread_rwlock_t meta_lock;
    struct evs__meta_entry *meta;
    size_t nmeta, capmeta;
    uint32_t *slots;              /* hash index over meta (meta.c) */
    size_t nslots;
    _Atomic size_t meta_count;    /* nmeta, read without the lock: 0 = nothing to hide */
    int64_t (*t_clock)(void *ctx);/* test hook: the "now" of max_age (NULL: wall clock) */
    void *t_clock_ctx;

    /* scavenge (scavenge.c): one run at a time; its progress for any thread */
    _Atomic int scav_running;
    pthread_mutex_t scav_mu;      /* guards scav_stats */
    evs_scavenge_stats scav_stats;
    /* another storage engine (engine.h) when opened on a URL, NULL for the
       embedded one; the public functions dispatch on it */
    const struct evs_engine *engine;
    void *eng;
    /* crypto-shredding: master key and subject keys (keystore.c), NULL until used */
    struct evs__keystore *ks;

    /* stats */
    _Atomic uint64_t st_appends, st_events, st_bytes, st_syncs, st_batches;
    _Atomic uint64_t st_sync_hist[EVS_SYNC_BUCKETS + 1], st_sync_ns;
    _Atomic uint64_t st_batch_hist[EVS_BATCH_BUCKETS + 1];
};

/* Present while `evstore repair` changes a store: open refuses the store
   until a repair finishes (src/store/repair.c). */
#define EVS_REPAIRING_FILE "REPAIRING"

/* Take DIR/LOCK for s->dir (EVS_ELOCKED when another process holds it). */
int evs__store_lock_dir(evs_store *s);
/* Close an open store but keep the handle (clean: sync and mark the close clean). */
int evs__store_teardown(evs_store *s, int clean);
/* What the last session left in the index (see store.c). */
void evs__store_index_state(evs_store *s, int *untrusted, int *clean);

/*
 * Run fn(arg) in the writer's place: queued with the appends, alone in its
 * turn, so no group commit (nor index remap) runs meanwhile and fn may open
 * the index's write transaction.  fn may run on another appender's thread:
 * it keeps its own error text.  Returns fn's result, or EVS_ECLOSED (store.c).
 */
int evs__store_exclusive(evs_store *s, int (*fn)(void *arg), void *arg);

/* At open, before the log: finish or roll back a scavenge a crash interrupted
   (scavenge.c).  *rebuild: the index must be rebuilt from the log. */
int evs__scavenge_recover(evs_store *s, int *rebuild);

/* A conditional append's condition as given: EVS_OK, or what is wrong with it (condition.c). */
int evs__condition_validate(const evs_append_condition *c);
/* Check a read filter (NULL is none): EVS_EINVAL/EVS_ELIMIT naming the field, the same on every engine. */
int evs__filter_check(const evs_filter *f);

/* ---- stream metadata (meta.c) */

#define EVS_META_PREFIX "$$"
#define EVS_META_EVENT_TYPE "$metadata"

/* evs__meta_write (a metadata write in flight) is in engine/engine.h: engines store it too. */

/* Load the cache from the "$$" streams (at open). */
int evs__meta_load(evs_store *s);
void evs__meta_free(evs_store *s);
/* A stream at version v: 0 live, 1 soft-deleted (truncate_before > v), 2 tombstone. */
int evs__meta_state(evs_store *s, const char *stream, size_t len, uint64_t version);
/* A stream's truncate_before (0: none). */
uint64_t evs__meta_truncate_before(evs_store *s, const char *stream, size_t len);
/* The writer, after a commit: stream is now at version; mw its metadata write or NULL
   (then target_version is the version of the stream it is about). */
void evs__meta_committed(evs_store *s, const char *stream, size_t len, uint64_t version, const evs__meta_write *mw,
                         uint64_t target_version);
/* Append mw as the "$metadata" event of meta_stream (store.c). */
int evs__append_meta(evs_store *s, const char *meta_stream, int64_t expected, const evs__meta_write *mw,
                     evs_append_result *res);
/* Open a stream reader on any stream, reserved names included (read.c). */
int evs__read_stream_any(evs_store *s, const char *stream, uint64_t from, int direction, size_t limit,
                         evs_reader **out);
/* The first stream position a stream read from `from` forward may show (meta.c). */
uint64_t evs__meta_first_visible(evs_store *s, const char *stream, size_t len, uint64_t version, uint64_t from);

/* ---- another storage engine behind the public functions (store_engine.c, engine.h) */

/* Open s on the engine that url names; s->engine and s->eng are set on success. */
int evs__store_engine_open(evs_store *s, const char *url, unsigned flags);
/* Close the engine and free the handle (as evs_store_close). */
int evs__store_engine_close(evs_store *s);
int evs__store_engine_append(evs_store *s, const char *stream, int64_t expected, const evs_append_condition *cond,
                             const evs_event_in *events, size_t n, evs_append_result *res, evs_uuid *generated_ids);
/* A stream read (stream != NULL) or an $all read on the engine. */
int evs__store_engine_read(evs_store *s, const char *stream, uint64_t from, int direction, const evs_filter *f,
                           size_t limit, evs_reader **out);
int evs__store_engine_info(evs_store *s, const char *stream, evs_stream_info *out);
int evs__store_engine_stats(evs_store *s, evs_store_stats *out);
/* An evs_reader of s around its engine's reader (read.c): its events pass crypt.c's read hook.  Ownership:
   *out owns impl (closed on failure too). */
int evs__reader_wrap(evs_store *s, void *impl, evs_reader **out);
/* evs__append_reserved on the engine: one event to a "$" stream of the store's own ("$subjects"). */
int evs__store_engine_append_reserved(evs_store *s, const char *stream, const evs_event_in *ev,
                                      evs_append_result *res);

/* Validate a stream name; message names the problem. */
int evs__check_stream_name(const evs_store *s, const char *stream, size_t *len_out);

#endif
