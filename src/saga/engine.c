/*
 * engine.c — the saga engine's handle and its threads: open and close, the
 * registry of definitions, one dispatcher reading the log into the index
 * (catalog.c), one timer thread, N workers taking instances from the queue
 * (queue.c) and running them (worker.c) — or, without threads,
 * evs_saga_engine_run doing the same in the caller's thread.
 *
 * Timers: the timer thread queues the instances whose timer is due (each
 * due once), then sleeps until the next due, a delayed run, or the
 * dispatcher indexing a new timer, and at least once a second.
 *
 * On PostgreSQL several processes open engines on one database; the one
 * holding the saga lease (catalog.c) runs them (invariant 5).  The others'
 * dispatcher threads stand by, trying the lease every STANDBY_MS, and their
 * timer threads and workers do nothing; when the holder's session ends (it
 * closed, or died) one of them takes the lease, reads the checkpoint and
 * queues the index's pending work, as a restart does on the embedded
 * engine.  The holder checks its lease's session every CHECK_MS while idle,
 * so that one cut off stops running the sagas.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "saga/saga_internal.h"
#include "store/store_access.h"

#define STANDBY_MS 250
#define CHECK_MS 1000

void evs_saga_config_init(evs_saga_config *c) {
    if (!c) return;
    memset(c, 0, sizeof *c);
    c->workers = 4;
    c->lease_ns = 30000000000ll;
    c->from = EVS_SUB_FROM_NOW;
    c->page_size = 1000;
}

/* Run one job with its claim held; a store error retries it later. */
static void work(evs_saga_engine *e, evs__job *j) {
    int rc = evs__worker_run(e, j);
    if (rc) {
        atomic_fetch_add(&e->st_errors, 1);
        evs__engine_note_error(e, "saga %s/%s: %s", j->type, j->id, evs_errmsg());
        if (rc != EVS_ECLOSED && rc != EVS_EFAILED) {
            if (j->kind == EVS__JOB_START) { /* keep the start: it runs again when the claim is released */
                evs__queue_keep_start(e, j);
            } else {
                evs__engine_delay(e, j->type, j->id, evs__engine_now(e) + 200000000ll);
            }
        }
    }
    pthread_mutex_lock(&e->mu);
    evs__queue_release_locked(e, j->type, j->id);
    pthread_mutex_unlock(&e->mu);
    free(j);
}

/* --------------------------------------------------------------- threads */

static void *worker_main(void *arg) {
    evs_saga_engine *e = arg;
    pthread_mutex_lock(&e->mu);
    while (!e->stop) {
        evs__job *j = evs__queue_pop_locked(e);
        if (!j) {
            pthread_cond_wait(&e->work_cv, &e->mu);
            continue;
        }
        pthread_mutex_unlock(&e->mu);
        work(e, j);
        pthread_mutex_lock(&e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

static int requeue_once(evs_saga_engine *e);

/* Sleep ms, or less when the engine stops. */
static void nap(evs_saga_engine *e, int ms) {
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    int64_t ns = dl.tv_nsec + (int64_t)ms * 1000000;
    dl.tv_sec += (time_t)(ns / 1000000000);
    dl.tv_nsec = (long)(ns % 1000000000);
    pthread_mutex_lock(&e->mu);
    if (!e->stop) pthread_cond_timedwait(&e->idle_cv, &e->mu, &dl);
    pthread_mutex_unlock(&e->mu);
}

static void *dispatcher_main(void *arg) {
    evs_saga_engine *e = arg;
    int64_t checked = evs__mono_ns();
    for (;;) {
        pthread_mutex_lock(&e->mu);
        int stop = e->stop;
        pthread_mutex_unlock(&e->mu);
        if (stop) break;
        int rc;
        if (!atomic_load(&e->holding)) { /* PostgreSQL: stand by until the lease is free */
            rc = evs__cat_lease(e);
            if (rc == EVS_OK) rc = requeue_once(e);
            if (rc == EVS_OK) {
                pthread_mutex_lock(&e->mu);
                pthread_cond_broadcast(&e->timer_cv);
                pthread_cond_broadcast(&e->work_cv);
                pthread_mutex_unlock(&e->mu);
                checked = evs__mono_ns();
            } else {
                if (rc != EVS_ELOCKED) {
                    atomic_fetch_add(&e->st_errors, 1);
                    evs__engine_note_error(e, "dispatcher: %s", evs_errmsg());
                }
                nap(e, STANDBY_MS);
            }
            continue;
        }
        size_t n = 0;
        rc = evs__cat_dispatch(e, 50, &n);
        if (rc) {
            atomic_fetch_add(&e->st_errors, 1);
            evs__engine_note_error(e, "dispatcher: %s", evs_errmsg());
            if (e->pg && evs__cat_lease_check(e)) evs__engine_note_error(e, "dispatcher: %s", evs_errmsg());
            nap(e, 100);
        } else if (e->pg && !n && evs__mono_ns() - checked > CHECK_MS * 1000000ll) {
            checked = evs__mono_ns();
            if (evs__cat_lease_check(e)) {
                atomic_fetch_add(&e->st_errors, 1);
                evs__engine_note_error(e, "dispatcher: %s", evs_errmsg());
            }
        }
    }
    if (evs__cat_commit(e)) evs__engine_note_error(e, "dispatcher: %s", evs_errmsg()); /* on its own thread */
    return NULL;
}

static void *timer_main(void *arg) {
    evs_saga_engine *e = arg;
    int64_t last_prune = 0;
    pthread_mutex_lock(&e->mu);
    while (!e->stop) {
        pthread_mutex_unlock(&e->mu);
        int64_t now = evs__engine_now(e), next = 0;
        size_t fired;
        /* a process standing by (PostgreSQL) fires nothing: the holder does */
        if (atomic_load(&e->holding) && evs__cat_fire(e, now, &next, &fired)) {
            atomic_fetch_add(&e->st_errors, 1);
            evs__engine_note_error(e, "timers: %s", evs_errmsg());
        }
        pthread_mutex_lock(&e->mu);
        int64_t dnext = evs__queue_pop_delayed_locked(e, now);
        if (now - last_prune > 10000000000ll) {
            evs__queue_prune_fired_locked(e, now);
            last_prune = now;
        }
        if (e->stop) break;
        int64_t wake = now + 1000000000ll; /* at least once a second */
        if (next && next < wake) wake = next;
        if (dnext && dnext < wake) wake = dnext;
        int64_t wait = wake - now;
        if (wait < 0) wait = 0;
        struct timespec dl;
        clock_gettime(CLOCK_MONOTONIC, &dl);
        int64_t ns = dl.tv_nsec + wait % 1000000000;
        dl.tv_sec += (time_t)(wait / 1000000000 + ns / 1000000000);
        dl.tv_nsec = (long)(ns % 1000000000);
        if (wait > 0) pthread_cond_timedwait(&e->timer_cv, &e->mu, &dl);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

/* ------------------------------------------------------------- lifecycle */

int evs_saga_engine_open(evs_store *s, evs_app *app, const evs_saga_config *c, evs_saga_engine **out) {
    if (!out) return evs__err(EVS_EINVAL, "saga_engine_open: out is NULL");
    *out = NULL;
    if (!s || (!app && !(c && c->read_only)))
        return evs__err(EVS_EINVAL, "saga_engine_open: the store and the app are required");
    evs_saga_config cfg;
    if (c) cfg = *c;
    else evs_saga_config_init(&cfg);
    if (cfg.workers > 64) return evs__err(EVS_ELIMIT, "sagas: %u workers, at most 64", cfg.workers);
    if (cfg.lease_ns <= 0) return evs__err(EVS_EINVAL, "sagas: lease_ns must be positive");
    if (cfg.page_size > EVS_BUS_MAX_PAGE) return evs__err(EVS_ELIMIT, "sagas: page_size %u exceeds %u", cfg.page_size, EVS_BUS_MAX_PAGE);
    if (cfg.node_id && (strlen(cfg.node_id) > EVS__NODE_MAX || !*cfg.node_id))
        return evs__err(EVS_EINVAL, "sagas: node_id must be 1..%d bytes", EVS__NODE_MAX);
    evs_saga_engine *e = calloc(1, sizeof *e);
    if (!e) return evs__err(EVS_ENOMEM, "out of memory");
    e->store = s;
    e->app = app;
    e->cfg = cfg;
    e->cfg.node_id = NULL; /* copied into e->node */
    e->clock = cfg.clock;
    pthread_rwlock_init(&e->reg_lock, NULL);
    pthread_mutex_init(&e->mu, NULL);
    pthread_mutex_init(&e->disp_mu, NULL);
    pthread_mutex_init(&e->err_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&e->work_cv, &ca);
    pthread_cond_init(&e->idle_cv, &ca);
    pthread_cond_init(&e->timer_cv, &ca);
    pthread_condattr_destroy(&ca);
    int rc;
    e->queued = evs__smap_new();
    e->claims = evs__smap_new();
    e->fired = evs__smap_new();
    if (!e->queued || !e->claims || !e->fired) {
        rc = evs__err(EVS_ENOMEM, "out of memory");
        goto fail;
    }
    if (cfg.node_id) snprintf(e->node, sizeof e->node, "%s", cfg.node_id);
    e->cfg.node_id = cfg.node_id ? e->node : NULL;
    if ((rc = evs__cat_open(e))) goto fail;
    e->cfg.node_id = NULL;
    if (cfg.read_only) {
        *out = e;
        return EVS_OK;
    }
    /* append effects go through the command bus like any command, for its idempotency */
    evs_command_handler h = {EVS__SAGA_APPEND_CMD, EVS_HANDLER_APPEND, NULL, NULL, 0};
    rc = evs_app_register_handler(app, &h);
    if (rc && rc != EVS_ECONFLICT) goto fail;
    *out = e;
    return EVS_OK;
fail:
    evs_saga_engine_close(e);
    return rc;
}

static int add_def(evs_saga_engine *e, evs__def *d) {
    if (e->cfg.read_only) {
        evs__def_free(d);
        return evs__err(EVS_EINVAL, "sagas: a read-only engine runs no definitions");
    }
    pthread_rwlock_wrlock(&e->reg_lock);
    for (size_t i = 0; i < e->n_defs; i++)
        if (strcmp(e->defs[i]->name, d->name) == 0) {
            pthread_rwlock_unlock(&e->reg_lock);
            int rc = evs__err(EVS_ECONFLICT, "saga type %s is already registered", d->name);
            evs__def_free(d);
            return rc;
        }
    if (e->n_defs == e->cap_defs) {
        size_t nc = e->cap_defs ? e->cap_defs * 2 : 8;
        evs__def **nd = realloc(e->defs, nc * sizeof *nd);
        if (!nd) {
            pthread_rwlock_unlock(&e->reg_lock);
            evs__def_free(d);
            return evs__err(EVS_ENOMEM, "out of memory");
        }
        e->defs = nd;
        e->cap_defs = nc;
    }
    e->defs[e->n_defs++] = d;
    atomic_fetch_add(&e->reg_gen, 1);
    pthread_rwlock_unlock(&e->reg_lock);
    return EVS_OK;
}

int evs_saga_register(evs_saga_engine *e, const evs_saga_def *def) {
    if (!e || !def) return evs__err(EVS_EINVAL, "saga_register: NULL argument");
    evs__def *d;
    int rc = evs__def_from_c(def, &d);
    return rc ? rc : add_def(e, d);
}

int evs_saga_register_lua(evs_saga_engine *e, const char *name, const char *src, size_t len, const char *settings_json) {
    if (!e) return evs__err(EVS_EINVAL, "saga_register_lua: engine is NULL");
    evs__def *d;
    int rc = evs__def_from_lua(name, src, len, settings_json, &e->cfg.lua_limits, &d);
    return rc ? rc : add_def(e, d);
}

int evs__engine_hold(evs_saga_engine *e) {
    if (atomic_load(&e->holding)) return EVS_OK;
    if (e->started) /* the dispatcher thread takes the lease when it is free */
        return evs__err(EVS_ELOCKED, "sagas run in another process on this database (it holds the saga lease): "
                                     "act through that process");
    return evs__cat_lease(e);
}

static int requeue_once(evs_saga_engine *e) {
    if (e->requeued) return EVS_OK;
    int rc = evs__cat_requeue(e);
    if (!rc) e->requeued = 1;
    return rc;
}

int evs_saga_engine_start(evs_saga_engine *e) {
    if (!e) return evs__err(EVS_EINVAL, "saga_engine_start: engine is NULL");
    if (e->started) return evs__err(EVS_EINVAL, "saga_engine_start: already started");
    if (e->cfg.read_only) return evs__err(EVS_EINVAL, "saga_engine_start: the engine is read-only");
    /* on PostgreSQL the dispatcher thread takes the lease (now, or when its holder is gone) and then requeues */
    int rc = e->pg ? EVS_OK : requeue_once(e);
    if (rc) return rc;
    uint32_t n = e->cfg.workers ? e->cfg.workers : 1;
    e->workers = calloc(n, sizeof *e->workers);
    if (!e->workers) return evs__err(EVS_ENOMEM, "out of memory");
    e->started = 1;
    if (pthread_create(&e->disp_thread, NULL, dispatcher_main, e)) goto fail;
    e->started_disp = 1;
    if (pthread_create(&e->timer_thread, NULL, timer_main, e)) goto fail;
    e->started_timer = 1;
    for (uint32_t i = 0; i < n; i++) {
        if (pthread_create(&e->workers[i], NULL, worker_main, e)) goto fail;
        e->n_workers++;
    }
    return EVS_OK;
fail:
    return evs__err(EVS_ENOMEM, "saga_engine_start: cannot start a thread");
}

static void stop_threads(evs_saga_engine *e) {
    pthread_mutex_lock(&e->mu);
    e->stop = 1;
    pthread_cond_broadcast(&e->work_cv);
    pthread_cond_broadcast(&e->timer_cv);
    pthread_cond_broadcast(&e->idle_cv);
    pthread_mutex_unlock(&e->mu);
    for (uint32_t i = 0; i < e->n_workers; i++) pthread_join(e->workers[i], NULL);
    if (e->started_timer) pthread_join(e->timer_thread, NULL);
    if (e->started_disp) pthread_join(e->disp_thread, NULL);
    e->n_workers = 0;
    e->started_timer = e->started_disp = 0;
}

int evs_saga_engine_run(evs_saga_engine *e, size_t *done) {
    if (done) *done = 0;
    if (!e) return evs__err(EVS_EINVAL, "saga_engine_run: engine is NULL");
    if (e->started) return evs__err(EVS_EINVAL, "saga_engine_run: the engine's threads are running");
    if (e->cfg.read_only) return evs__err(EVS_EINVAL, "saga_engine_run: the engine is read-only");
    int rc = evs__engine_hold(e);
    if (!rc) rc = requeue_once(e);
    if (rc) return rc;
    size_t total = 0;
    for (int round = 0; round < 1000; round++) {
        size_t did = 0, n;
        do {
            if ((rc = evs__cat_dispatch(e, 0, &n))) return rc;
            did += n;
        } while (n);
        if ((rc = evs__cat_commit(e))) return rc;
        int64_t now = evs__engine_now(e), next;
        size_t fired;
        if ((rc = evs__cat_fire(e, now, &next, &fired))) return rc;
        pthread_mutex_lock(&e->mu);
        evs__queue_pop_delayed_locked(e, now);
        evs__job *j;
        while ((j = evs__queue_pop_locked(e))) {
            pthread_mutex_unlock(&e->mu);
            work(e, j);
            did++;
            pthread_mutex_lock(&e->mu);
        }
        pthread_mutex_unlock(&e->mu);
        total += did;
        if (!did) break;
    }
    if (done) *done = total;
    return EVS_OK;
}

int evs_saga_engine_wait_idle(evs_saga_engine *e, int timeout_ms) {
    if (!e) return evs__err(EVS_EINVAL, "saga_engine_wait_idle: engine is NULL");
    if (!e->started) return evs__err(EVS_EINVAL, "saga_engine_wait_idle: the engine's threads are not running");
    int64_t deadline = evs__mono_ns() + (int64_t)timeout_ms * 1000000;
    for (;;) {
        uint64_t head = evs_head(e->store);
        pthread_mutex_lock(&e->mu);
        int idle = e->position > head && e->q_len == 0 && evs__smap_count(e->claims) == 0;
        pthread_mutex_unlock(&e->mu);
        /* idle, and still idle after the dispatcher read what the last runs appended */
        if (idle && evs_head(e->store) == head) return EVS_OK;
        if (evs__mono_ns() > deadline) return evs__err(EVS_ETIMEDOUT, "sagas: not idle after %d ms", timeout_ms);
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
}

void evs_saga_engine_close(evs_saga_engine *e) {
    if (!e) return;
    stop_threads(e);
    free(e->workers);
    evs__cat_close(e);
    evs__queue_free(e);
    for (size_t i = 0; i < e->n_defs; i++) evs__def_free(e->defs[i]);
    free(e->defs);
    pthread_rwlock_destroy(&e->reg_lock);
    pthread_mutex_destroy(&e->mu);
    pthread_mutex_destroy(&e->disp_mu);
    pthread_mutex_destroy(&e->err_mu);
    pthread_cond_destroy(&e->work_cv);
    pthread_cond_destroy(&e->idle_cv);
    pthread_cond_destroy(&e->timer_cv);
    free(e);
}

int evs_saga_get_engine_stats(evs_saga_engine *e, evs_saga_engine_stats *out) {
    if (!e || !out) return evs__err(EVS_EINVAL, "saga_get_engine_stats: NULL argument");
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&e->mu);
    out->position = e->position;
    out->queued = (uint32_t)e->q_len;
    out->running = (uint32_t)evs__smap_count(e->claims);
    out->holding = (uint32_t)atomic_load(&e->holding);
    pthread_mutex_unlock(&e->mu);
    out->head = evs_head(e->store);
    int rc = evs__cat_timers_pending(e, &out->timers_pending);
    if (rc) return rc;
    /* standing by (PostgreSQL): the holder's committed position */
    if (e->pg && !atomic_load(&e->holding) && !e->cfg.read_only && (rc = evs__cat_checkpoint(e, &out->position)))
        return rc;
    out->timers_fired = atomic_load(&e->st_fired);
    for (int i = 0; i <= EVS_SAGA_LATE_BUCKETS; i++) out->late_hist[i] = atomic_load(&e->st_late[i]);
    out->late_max_ns = atomic_load(&e->st_late_max);
    out->late_sum_ns = atomic_load(&e->st_late_sum);
    out->advances = atomic_load(&e->st_advances);
    out->commands = atomic_load(&e->st_commands);
    out->lookups = atomic_load(&e->st_lookups);
    out->flushes = atomic_load(&e->st_flushes);
    out->conflicts = atomic_load(&e->st_conflicts);
    out->lease_busy = atomic_load(&e->st_lease_busy);
    out->duplicate_starts = atomic_load(&e->st_dup_starts);
    out->bad_starts = atomic_load(&e->st_bad_starts);
    out->errors = atomic_load(&e->st_errors);
    pthread_mutex_lock(&e->err_mu);
    snprintf(out->last_error, sizeof out->last_error, "%s", e->last_error);
    pthread_mutex_unlock(&e->err_mu);
    return EVS_OK;
}
