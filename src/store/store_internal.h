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

typedef struct evs_append_req evs_append_req;

struct evs_store {
    /* settings (before open) */
    evs_durability durability;
    unsigned batch_ms;
    uint64_t segment_size;
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

    /* published by the writer after each commit; read by everyone */
    _Atomic uint64_t head;        /* last global position */
    _Atomic uint64_t pub_end;     /* log location readers may read below */

    /* group commit (leader/follower, see store.c) */
    pthread_mutex_t mu;           /* guards the queue, leading, closing */
    pthread_cond_t head_cv;       /* evs_wait_for waits for the head */
    pthread_cond_t idle_cv;       /* close waits for the queue to drain */
    pthread_cond_t syncer_cv;     /* wakes the batch-mode syncer at close */
    evs_append_req *q_head, *q_tail;
    int leading;                  /* a batch is being committed */
    size_t last_batch;            /* requests in the last batch */
    int closing;
    pthread_t syncer;             /* batch durability only */
    int syncer_started;
    /* owned by whoever leads (handed over under mu) */
    _Atomic int failed;           /* sticky: first write/sync failure code */
    char failed_msg[512];         /* written once, then failed_msg_ready (release) */
    _Atomic int failed_msg_ready;
    int64_t last_recorded;        /* recorded_at never goes backwards */
    int64_t last_sync_ns;
    int unsynced;                 /* batch mode: flushed but not synced */

    /* stats */
    _Atomic uint64_t st_appends, st_events, st_bytes, st_syncs, st_batches;
    _Atomic uint64_t st_sync_hist[EVS_SYNC_BUCKETS + 1], st_sync_ns;
    _Atomic uint64_t st_batch_hist[EVS_BATCH_BUCKETS + 1];
};

/* Validate a stream name; message names the problem. */
int evs__check_stream_name(const evs_store *s, const char *stream, size_t *len_out);

#endif
