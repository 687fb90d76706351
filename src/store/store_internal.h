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

    /* writer */
    pthread_t writer;
    int writer_started;
    pthread_mutex_t mu;           /* guards queue, closing, waiters */
    pthread_cond_t work_cv;       /* writer waits for requests */
    pthread_cond_t done_cv;       /* appenders wait for their request */
    pthread_cond_t head_cv;       /* evs_wait_for waits for the head */
    evs_append_req *q_head, *q_tail;
    int closing;
    _Atomic int failed;           /* sticky: first write/sync failure code */
    char failed_msg[512];
    int64_t last_recorded;        /* recorded_at never goes backwards */
    int64_t last_sync_ns;
    int unsynced;                 /* batch mode: flushed but not synced */

    /* stats */
    _Atomic uint64_t st_appends, st_events, st_bytes, st_syncs, st_batches;
};

/* Validate a stream name; message names the problem. */
int evs__check_stream_name(const evs_store *s, const char *stream, size_t *len_out);

#endif
