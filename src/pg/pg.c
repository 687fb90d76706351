/*
 * pg.c — the PostgreSQL storage engine's table (engine/engine.h): open and
 * close, the head and evs_wait_for, stats, and the entries that the other
 * files implement (appends in pg_append.c, readers in pg_read.c, metadata
 * in pg_meta.c, the schema in migrate.c, connections in pg_conn.c).  The
 * top of src/pg: it calls the others, none of them calls it.
 *
 * The head and evs_wait_for: a listener thread holds one more connection,
 * LISTENs on EVS_PG_CHANNEL and raises the head with each notification
 * (evs_append notifies the new head at commit, in commit order), so a
 * waiter in any process sees the events of every process.  After a
 * reconnect it LISTENs again and then reads the head row, so nothing
 * committed while it was away is missed.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"
#include "pg/pg.h"
#include "pg/pg_internal.h"

/* ------------------------------------------------------------- the head */

static int read_head(PGconn *c, uint64_t *h) {
    PGresult *r = PQexec(c, "SELECT global_position FROM event_store_head WHERE id = 1");
    int rc = EVS_OK;
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) rc = evs__pg_err(c, r, "postgresql: read the head");
    else *h = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return rc;
}

/* Connect, LISTEN, then read the head: in that order nothing committed in between is missed.  A forget
   notified while no one listened is not missed either: the key generation moves (cached keys are dropped). */
static PGconn *listen_connect(evs_pg *pg) {
    PGconn *c;
    if (evs__pg_connect_one(pg, &c)) return NULL;
    PGresult *r = PQexec(c, "LISTEN " EVS_PG_CHANNEL "; LISTEN " EVS_PG_KEYS_CHANNEL);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    uint64_t h = 0;
    if (!ok || read_head(c, &h)) {
        PQfinish(c);
        return NULL;
    }
    atomic_fetch_add(&pg->keys_gen, 1);
    evs__pg_note_head(pg, h);
    return c;
}

static void *listener_main(void *arg) {
    evs_pg *pg = arg;
    PGconn *c = NULL;
    for (;;) {
        pthread_mutex_lock(&pg->mu);
        int closing = pg->closing;
        pthread_mutex_unlock(&pg->mu);
        if (closing) break;
        if (!c && !(c = listen_connect(pg))) {
            /* the database is away: try again shortly (close wakes us through the pipe) */
            struct pollfd w = {pg->wake[0], POLLIN, 0};
            poll(&w, 1, 250);
            continue;
        }
        struct pollfd fds[2] = {{PQsocket(c), POLLIN, 0}, {pg->wake[0], POLLIN, 0}};
        int n = poll(fds, 2, 1000);
        if (n < 0 && errno != EINTR) break;
        if (n <= 0 || !(fds[0].revents & (POLLIN | POLLERR | POLLHUP))) continue;
        if (!PQconsumeInput(c) || PQstatus(c) != CONNECTION_OK) {
            PQfinish(c);
            c = NULL;
            continue;
        }
        PGnotify *nt;
        uint64_t top = 0;
        while ((nt = PQnotifies(c))) {
            if (!strcmp(nt->relname, EVS_PG_KEYS_CHANNEL)) {
                atomic_fetch_add(&pg->keys_gen, 1); /* a subject was forgotten: keystore.c drops cached keys */
            } else {
                uint64_t h = strtoull(nt->extra, NULL, 10);
                if (h > top) top = h;
            }
            PQfreemem(nt);
        }
        if (top) evs__pg_note_head(pg, top);
    }
    if (c) PQfinish(c);
    return NULL;
}

/* ------------------------------------------------------------- open, close */

static int pg_close(void *e) {
    evs_pg *pg = e;
    if (!pg) return EVS_OK;
    pthread_mutex_lock(&pg->mu);
    pg->closing = 1;
    pthread_cond_broadcast(&pg->head_cv);
    pthread_cond_broadcast(&pg->pool_cv);
    pthread_mutex_unlock(&pg->mu);
    if (pg->listener_started) {
        ssize_t w = write(pg->wake[1], "x", 1);
        (void)w;
        pthread_join(pg->listener, NULL);
    }
    for (size_t i = 0; i < pg->nidle; i++) PQfinish(pg->idle[i]);
    if (pg->wake[0] >= 0) close(pg->wake[0]);
    if (pg->wake[1] >= 0) close(pg->wake[1]);
    pthread_cond_destroy(&pg->head_cv);
    pthread_cond_destroy(&pg->pool_cv);
    pthread_cond_destroy(&pg->gather_cv);
    pthread_mutex_destroy(&pg->mu);
    free(pg->url);
    free(pg);
    return EVS_OK;
}

static int pg_open(const char *url, const evs__engine_settings *set, void **out) {
    int rc;
    *out = NULL;
    evs_pg *pg = calloc(1, sizeof *pg);
    if (!pg) return evs__err(EVS_ENOMEM, "postgresql: out of memory");
    pg->wake[0] = pg->wake[1] = -1;
    pthread_mutex_init(&pg->mu, NULL);
    pthread_cond_init(&pg->pool_cv, NULL);
    pthread_condattr_t ga;
    pthread_condattr_init(&ga);
    pthread_condattr_setclock(&ga, CLOCK_MONOTONIC);
    pthread_cond_init(&pg->gather_cv, &ga);
    pthread_condattr_destroy(&ga);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&pg->head_cv, &ca);
    pthread_condattr_destroy(&ca);
    pg->set = *set;
    if (!(pg->url = strdup(url))) {
        rc = evs__err(EVS_ENOMEM, "postgresql: out of memory");
        goto fail;
    }
    if (pipe(pg->wake) != 0) {
        rc = evs__err_errno(-errno, "postgresql: pipe");
        goto fail;
    }
    PGconn *c;
    if ((rc = evs__pg_get(pg, &c))) goto fail;
    /* a read-only open creates nothing: the schema must be there */
    if (!(set->flags & EVS_OPEN_READONLY)) rc = evs__pg_migrate(c);
    uint64_t h = 0;
    if (!rc) rc = read_head(c, &h);
    if (rc && (set->flags & EVS_OPEN_READONLY))
        rc = evs__err(EVS_ENOTFOUND, "postgresql: no evstore schema in this database (open it once without read-only)");
    evs__pg_put(pg, c);
    if (rc) goto fail;
    atomic_store(&pg->head, h);
    if (pthread_create(&pg->listener, NULL, listener_main, pg) != 0) {
        rc = evs__err(EVS_ENOMEM, "postgresql: cannot start the listener thread");
        goto fail;
    }
    pg->listener_started = 1;
    *out = pg;
    return EVS_OK;
fail:;
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", evs_errmsg());
    pg_close(pg);
    return evs__err(rc, "%s", msg);
}

/* ------------------------------------------------------------- append */

static int pg_append(void *e, const evs__engine_append *a, evs_append_result *res) {
    evs_pg *pg = e;
    int rc = evs__pg_append_grouped(pg, a, res);
    if (rc == EVS_ECONFLICT) rc = evs__pg_meta_after_conflict(pg, a, res); /* deleted streams (pg_meta.c) */
    return rc;
}

/* ------------------------------------------------------------- head, wait, stats */

static uint64_t pg_head(void *e) { return atomic_load(&((evs_pg *)e)->head); }

static int pg_wait_for(void *e, uint64_t position, int timeout_ms, uint64_t *head) {
    evs_pg *pg = e;
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    if (timeout_ms >= 0) {
        dl.tv_sec += timeout_ms / 1000;
        dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
        if (dl.tv_nsec >= 1000000000) dl.tv_sec++, dl.tv_nsec -= 1000000000;
    }
    int rc = EVS_OK;
    pthread_mutex_lock(&pg->mu);
    while (atomic_load(&pg->head) < position) {
        if (pg->closing) {
            rc = EVS_ECLOSED;
            break;
        }
        if (timeout_ms < 0) pthread_cond_wait(&pg->head_cv, &pg->mu);
        else if (pthread_cond_timedwait(&pg->head_cv, &pg->mu, &dl) == ETIMEDOUT && atomic_load(&pg->head) < position) {
            rc = EVS_ETIMEDOUT;
            break;
        }
    }
    pthread_mutex_unlock(&pg->mu);
    if (head) *head = atomic_load(&pg->head);
    if (rc == EVS_ECLOSED) return evs__err(rc, "wait: the store is closing");
    if (rc == EVS_ETIMEDOUT) return evs__err(rc, "wait: timed out before position %llu", (unsigned long long)position);
    return EVS_OK;
}

static int pg_stats(void *e, evs_store_stats *out) {
    evs_pg *pg = e;
    PGconn *c;
    int rc = evs__pg_get(pg, &c);
    if (rc) return rc;
    PGresult *r = PQexec(c, "SELECT (SELECT count(*) FROM event_streams), pg_total_relation_size('event_store')");
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        rc = evs__pg_err(c, r, "postgresql: stats");
    } else {
        out->streams = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
        out->log_bytes = strtoull(PQgetvalue(r, 0, 1), NULL, 10);
    }
    PQclear(r);
    evs__pg_put(pg, c);
    out->head = atomic_load(&pg->head);
    out->appends = atomic_load(&pg->st_appends);
    out->events_written = atomic_load(&pg->st_events);
    out->batches = atomic_load(&pg->st_batches);
    return rc;
}

static int pg_event_position(void *e, const evs_uuid *id, uint64_t *gpos) {
    evs_pg *pg = e;
    char b[37];
    evs_uuid_format(id, b);
    const char *vals[1] = {b};
    PGconn *c;
    int rc = evs__pg_get(pg, &c);
    if (rc) return rc;
    PGresult *r = PQexecParams(c, "SELECT global_position FROM event_store WHERE event_id = $1::uuid", 1, NULL, vals,
                               NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) rc = evs__pg_err(c, r, "postgresql: find an event id");
    else if (PQntuples(r) == 0) rc = evs__err(EVS_ENOTFOUND, "event %s not found", b);
    else *gpos = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    evs__pg_put(pg, c);
    return rc;
}

static const evs_engine PG_ENGINE = {
    .name = "postgresql",
    .open = pg_open,
    .close = pg_close,
    .append = pg_append,
    .append_if = evs__pg_append_if,
    .read_stream = evs__pg_read_stream,
    .read_all = evs__pg_read_all,
    .reader_next = evs__pg_reader_next,
    .reader_position = evs__pg_reader_position,
    .reader_close = evs__pg_reader_close,
    .stream_info = evs__pg_stream_info,
    .list_streams = evs__pg_list_streams,
    .head = pg_head,
    .wait_for = pg_wait_for,
    .stats = pg_stats,
    .event_position = pg_event_position,
    .meta_get = evs__pg_meta_get,
    .meta_set = evs__pg_meta_set,
    .check = evs__pg_check,
    .key_get = evs__pg_key_get,
    .key_forget = evs__pg_key_forget,
    .key_master = evs__pg_key_master,
    .key_generation = evs__pg_key_generation,
};

const evs_engine *evs__pg_engine(void) { return &PG_ENGINE; }
