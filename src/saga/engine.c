/*
 * engine.c — the saga engine's handle: registry, the work queue and the
 * claims that keep one instance on one thread, the delayed runs, and the
 * threads (one dispatcher reading the log into the index, one timer thread,
 * N workers) or, without threads, evs_saga_engine_run doing the same in the
 * caller's thread.
 *
 * Work: a job names an instance (START carries the position of its
 * starting event).  A queued instance is queued once: a second job merges
 * into the first.  A worker claims the instance before running it; a job
 * for a claimed instance waits on the claim and is queued again when the
 * claim is released, so no instance runs on two threads and no wake-up is
 * lost.  Operators take the same claims (waiting a little for a worker to
 * finish).
 *
 * Timers: the timer thread scans the index's timers that are due and
 * queues each (instance, due) once — a second firing of the same due
 * would only repeat a run that found nothing to do — then sleeps until the
 * next due, a delayed run, or the dispatcher indexing a new timer.  Delayed
 * runs (another node's lease, a store error) live in memory: if the process
 * dies, the index's ready rows and timers bring the instances back.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "saga/saga_internal.h"
#include "store/store_access.h"

#define KEYBUF (EVS_SAGA_MAX_NAME + 1 + EVS_SAGA_MAX_ID + 1)

/* ------------------------------------------------------------ string map */

typedef struct sm_ent {
    struct sm_ent *next;
    uint64_t h;
    size_t n;
    void *val;                    /* queued: its job; claims: a job waiting on the claim */
    int64_t due;                  /* fired: the due fired last */
    char key[];
} sm_ent;

struct evs__smap {
    sm_ent **b;
    size_t nb, n;
};

static uint64_t sm_hash(const char *k, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)k[i]) * 1099511628211ull;
    return h;
}

static evs__smap *sm_new(void) {
    evs__smap *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->nb = 256;
    m->b = calloc(m->nb, sizeof *m->b);
    if (!m->b) {
        free(m);
        return NULL;
    }
    return m;
}

static sm_ent *sm_find(evs__smap *m, const char *k, size_t n) {
    uint64_t h = sm_hash(k, n);
    for (sm_ent *e = m->b[h % m->nb]; e; e = e->next)
        if (e->h == h && e->n == n && memcmp(e->key, k, n) == 0) return e;
    return NULL;
}

static void sm_grow(evs__smap *m) {
    size_t nb = m->nb * 2;
    sm_ent **b = calloc(nb, sizeof *b);
    if (!b) return;
    for (size_t i = 0; i < m->nb; i++)
        for (sm_ent *e = m->b[i], *nx; e; e = nx) {
            nx = e->next;
            e->next = b[e->h % nb];
            b[e->h % nb] = e;
        }
    free(m->b);
    m->b = b;
    m->nb = nb;
}

static sm_ent *sm_add(evs__smap *m, const char *k, size_t n) {
    if (m->n >= m->nb) sm_grow(m);
    sm_ent *e = calloc(1, sizeof *e + n);
    if (!e) return NULL;
    e->h = sm_hash(k, n);
    e->n = n;
    memcpy(e->key, k, n);
    e->next = m->b[e->h % m->nb];
    m->b[e->h % m->nb] = e;
    m->n++;
    return e;
}

static void sm_del(evs__smap *m, const char *k, size_t n) {
    uint64_t h = sm_hash(k, n);
    for (sm_ent **p = &m->b[h % m->nb]; *p; p = &(*p)->next)
        if ((*p)->h == h && (*p)->n == n && memcmp((*p)->key, k, n) == 0) {
            sm_ent *e = *p;
            *p = e->next;
            free(e);
            m->n--;
            return;
        }
}

static void sm_free(evs__smap *m, int free_vals) {
    if (!m) return;
    for (size_t i = 0; i < m->nb; i++)
        for (sm_ent *e = m->b[i], *nx; e; e = nx) {
            nx = e->next;
            if (free_vals) free(e->val);
            free(e);
        }
    free(m->b);
    free(m);
}

static size_t mkkey(char *buf, const char *type, const char *id) {
    size_t tl = strlen(type), il = strlen(id);
    memcpy(buf, type, tl);
    buf[tl] = 0;
    memcpy(buf + tl + 1, id, il);
    return tl + 1 + il;
}

/* --------------------------------------------------------------- basics */

int64_t evs__engine_now(evs_saga_engine *e) {
    if (e->clock && e->clock->now_ns) return e->clock->now_ns(e->clock->ctx);
    return evs_now_ns();
}

void evs__engine_note_error(evs_saga_engine *e, const char *fmt, ...) {
    va_list ap;
    pthread_mutex_lock(&e->err_mu);
    va_start(ap, fmt);
    vsnprintf(e->last_error, sizeof e->last_error, fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&e->err_mu);
}

evs__def *evs__engine_find_def(evs_saga_engine *e, const char *type) {
    evs__def *d = NULL;
    pthread_rwlock_rdlock(&e->reg_lock);
    for (size_t i = 0; i < e->n_defs; i++)
        if (strcmp(e->defs[i]->name, type) == 0) {
            d = e->defs[i];
            break;
        }
    pthread_rwlock_unlock(&e->reg_lock);
    return d;
}

void evs_saga_config_init(evs_saga_config *c) {
    if (!c) return;
    memset(c, 0, sizeof *c);
    c->workers = 4;
    c->lease_ns = 30000000000ll;
    c->from = EVS_SUB_FROM_NOW;
    c->page_size = 1000;
}

/* ----------------------------------------------------------------- queue */

static void push_locked(evs_saga_engine *e, evs__job *j) {
    char k[KEYBUF];
    size_t n = mkkey(k, j->type, j->id);
    sm_ent *q = sm_find(e->queued, k, n);
    if (q) { /* merge: a start stays a start; the earliest due is kept for the lateness figure */
        evs__job *o = q->val;
        if (j->kind == EVS__JOB_START && o->kind != EVS__JOB_START) {
            o->kind = EVS__JOB_START;
            o->trigger_pos = j->trigger_pos;
        }
        if (j->due && (!o->due || j->due < o->due)) o->due = j->due;
        free(j);
        return;
    }
    if (!(q = sm_add(e->queued, k, n))) {
        free(j); /* out of memory: the index's rows bring it back at the next requeue */
        return;
    }
    q->val = j;
    j->next = NULL;
    if (e->q_tail) e->q_tail->next = j;
    else e->q_head = j;
    e->q_tail = j;
    e->q_len++;
    pthread_cond_signal(&e->work_cv);
}

void evs__engine_enqueue(evs_saga_engine *e, int kind, const char *type, const char *id, uint64_t trigger_pos,
                         int64_t due) {
    evs__job *j = calloc(1, sizeof *j);
    if (!j) return;
    j->kind = kind;
    snprintf(j->type, sizeof j->type, "%s", type);
    snprintf(j->id, sizeof j->id, "%s", id);
    j->trigger_pos = trigger_pos;
    j->due = due;
    pthread_mutex_lock(&e->mu);
    if (due) { /* a timer: once per (instance, due) */
        char k[KEYBUF];
        size_t n = mkkey(k, type, id);
        sm_ent *f = sm_find(e->fired, k, n);
        if (f && f->due == due) {
            pthread_mutex_unlock(&e->mu);
            free(j);
            return;
        }
        if (!f) f = sm_add(e->fired, k, n);
        if (f) f->due = due;
    }
    push_locked(e, j);
    pthread_mutex_unlock(&e->mu);
}

/* Forget fired dues long past: their instances moved on, or need another firing. */
static void prune_fired_locked(evs_saga_engine *e, int64_t now) {
    evs__smap *m = e->fired;
    for (size_t i = 0; i < m->nb; i++)
        for (sm_ent **p = &m->b[i]; *p;) {
            if ((*p)->due < now - 30000000000ll) {
                sm_ent *x = *p;
                *p = x->next;
                free(x);
                m->n--;
            } else {
                p = &(*p)->next;
            }
        }
}

void evs__engine_delay(evs_saga_engine *e, const char *type, const char *id, int64_t at) {
    pthread_mutex_lock(&e->mu);
    if (e->n_delayed == e->cap_delayed) {
        size_t nc = e->cap_delayed ? e->cap_delayed * 2 : 16;
        evs__delayed *nd = realloc(e->delayed, nc * sizeof *nd);
        if (!nd) {
            pthread_mutex_unlock(&e->mu);
            return;
        }
        e->delayed = nd;
        e->cap_delayed = nc;
    }
    /* a binary heap by time */
    size_t i = e->n_delayed++;
    evs__delayed item;
    item.at = at;
    memset(item.key, 0, sizeof item.key);
    mkkey(item.key, type, id);
    while (i > 0 && e->delayed[(i - 1) / 2].at > at) {
        e->delayed[i] = e->delayed[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    e->delayed[i] = item;
    pthread_cond_broadcast(&e->timer_cv);
    pthread_mutex_unlock(&e->mu);
}

/* Queue the delayed runs due at now; the time of the next one (0: none). */
static int64_t pop_delayed_locked(evs_saga_engine *e, int64_t now) {
    while (e->n_delayed && e->delayed[0].at <= now) {
        evs__delayed top = e->delayed[0], last = e->delayed[--e->n_delayed];
        size_t i = 0, n = e->n_delayed;
        for (;;) {
            size_t c = 2 * i + 1;
            if (c >= n) break;
            if (c + 1 < n && e->delayed[c + 1].at < e->delayed[c].at) c++;
            if (e->delayed[c].at >= last.at) break;
            e->delayed[i] = e->delayed[c];
            i = c;
        }
        if (n) e->delayed[i] = last;
        evs__job *j = calloc(1, sizeof *j);
        if (!j) continue;
        j->kind = EVS__JOB_RUN;
        size_t tl = strnlen(top.key, EVS_SAGA_MAX_NAME);
        memcpy(j->type, top.key, tl);
        j->type[tl] = 0;
        size_t il = strnlen(top.key + tl + 1, EVS_SAGA_MAX_ID);
        memcpy(j->id, top.key + tl + 1, il);
        j->id[il] = 0;
        push_locked(e, j);
    }
    return e->n_delayed ? e->delayed[0].at : 0;
}

/* Take the next job whose instance is not claimed (claimed ones wait on their claim).  NULL: none. */
static evs__job *pop_locked(evs_saga_engine *e) {
    while (e->q_head) {
        evs__job *j = e->q_head;
        e->q_head = j->next;
        if (!e->q_head) e->q_tail = NULL;
        e->q_len--;
        char k[KEYBUF];
        size_t n = mkkey(k, j->type, j->id);
        sm_del(e->queued, k, n);
        sm_ent *c = sm_find(e->claims, k, n);
        if (c) {
            evs__job *w = c->val;
            if (!w) {
                c->val = j;
            } else { /* merge into the job already waiting */
                if (j->kind == EVS__JOB_START) {
                    w->kind = EVS__JOB_START;
                    w->trigger_pos = j->trigger_pos;
                }
                if (j->due && (!w->due || j->due < w->due)) w->due = j->due;
                free(j);
            }
            continue;
        }
        if (!sm_add(e->claims, k, n)) {
            free(j);
            continue;
        }
        return j;
    }
    return NULL;
}

static void release_locked(evs_saga_engine *e, const char *type, const char *id) {
    char k[KEYBUF];
    size_t n = mkkey(k, type, id);
    sm_ent *c = sm_find(e->claims, k, n);
    evs__job *w = c ? c->val : NULL;
    if (c) sm_del(e->claims, k, n);
    if (w) push_locked(e, w);
    pthread_cond_broadcast(&e->idle_cv);
}

int evs__engine_claim(evs_saga_engine *e, const char *type, const char *id) {
    char k[KEYBUF];
    size_t n = mkkey(k, type, id);
    pthread_mutex_lock(&e->mu);
    int ok = !sm_find(e->claims, k, n) && sm_add(e->claims, k, n) != NULL;
    pthread_mutex_unlock(&e->mu);
    return ok;
}

int evs__engine_claim_wait(evs_saga_engine *e, const char *type, const char *id, int timeout_ms) {
    char k[KEYBUF];
    size_t n = mkkey(k, type, id);
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (dl.tv_nsec >= 1000000000) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&e->mu);
    int ok = 0;
    for (;;) {
        if (!sm_find(e->claims, k, n)) {
            ok = sm_add(e->claims, k, n) != NULL;
            break;
        }
        if (pthread_cond_timedwait(&e->idle_cv, &e->mu, &dl) == ETIMEDOUT) break;
    }
    pthread_mutex_unlock(&e->mu);
    return ok;
}

int evs__engine_release(evs_saga_engine *e, const char *type, const char *id) {
    char k[KEYBUF];
    size_t n = mkkey(k, type, id);
    pthread_mutex_lock(&e->mu);
    sm_ent *c = sm_find(e->claims, k, n);
    int waiting = c && c->val;
    release_locked(e, type, id);
    pthread_mutex_unlock(&e->mu);
    return waiting;
}

/* Run one job with its claim held; a store error retries it later. */
static void work(evs_saga_engine *e, evs__job *j) {
    int rc = evs__worker_run(e, j);
    if (rc) {
        atomic_fetch_add(&e->st_errors, 1);
        evs__engine_note_error(e, "saga %s/%s: %s", j->type, j->id, evs_errmsg());
        if (rc != EVS_ECLOSED && rc != EVS_EFAILED) {
            if (j->kind == EVS__JOB_START) { /* keep the start: queue it again after a pause */
                pthread_mutex_lock(&e->mu);
                evs__job *again = calloc(1, sizeof *again);
                if (again) {
                    *again = *j;
                    again->next = NULL;
                    char k[KEYBUF];
                    size_t n = mkkey(k, j->type, j->id);
                    sm_ent *c = sm_find(e->claims, k, n);
                    if (c && !c->val) c->val = again;
                    else free(again);
                }
                pthread_mutex_unlock(&e->mu);
            } else {
                evs__engine_delay(e, j->type, j->id, evs__engine_now(e) + 200000000ll);
            }
        }
    }
    pthread_mutex_lock(&e->mu);
    release_locked(e, j->type, j->id);
    pthread_mutex_unlock(&e->mu);
    free(j);
}

/* --------------------------------------------------------------- threads */

static void *worker_main(void *arg) {
    evs_saga_engine *e = arg;
    pthread_mutex_lock(&e->mu);
    while (!e->stop) {
        evs__job *j = pop_locked(e);
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

static void *dispatcher_main(void *arg) {
    evs_saga_engine *e = arg;
    for (;;) {
        pthread_mutex_lock(&e->mu);
        int stop = e->stop;
        pthread_mutex_unlock(&e->mu);
        if (stop) break;
        size_t n;
        int rc = evs__cat_dispatch(e, 50, &n);
        if (rc) {
            atomic_fetch_add(&e->st_errors, 1);
            evs__engine_note_error(e, "dispatcher: %s", evs_errmsg());
            struct timespec ts = {0, 100000000};
            nanosleep(&ts, NULL);
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
        if (evs__cat_fire(e, now, &next, &fired)) {
            atomic_fetch_add(&e->st_errors, 1);
            evs__engine_note_error(e, "timers: %s", evs_errmsg());
        }
        pthread_mutex_lock(&e->mu);
        int64_t dnext = pop_delayed_locked(e, now);
        if (now - last_prune > 10000000000ll) {
            prune_fired_locked(e, now);
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
    if (!s || !app) return evs__err(EVS_EINVAL, "saga_engine_open: the store and the app are required");
    const char *dir = evs__store_dir(s);
    if (!dir) return evs__err(EVS_ECLOSED, "saga_engine_open: the store is not open");
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
    snprintf(e->dir, sizeof e->dir, "%s", dir);
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
    e->queued = sm_new();
    e->claims = sm_new();
    e->fired = sm_new();
    if (!e->queued || !e->claims || !e->fired) {
        rc = evs__err(EVS_ENOMEM, "out of memory");
        goto fail;
    }
    if (cfg.node_id) snprintf(e->node, sizeof e->node, "%s", cfg.node_id);
    e->cfg.node_id = cfg.node_id ? e->node : NULL;
    if ((rc = evs__cat_open(e))) goto fail;
    e->cfg.node_id = NULL;
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

static int requeue_once(evs_saga_engine *e) {
    if (e->requeued) return EVS_OK;
    int rc = evs__cat_requeue(e);
    if (!rc) e->requeued = 1;
    return rc;
}

int evs_saga_engine_start(evs_saga_engine *e) {
    if (!e) return evs__err(EVS_EINVAL, "saga_engine_start: engine is NULL");
    if (e->started) return evs__err(EVS_EINVAL, "saga_engine_start: already started");
    int rc = requeue_once(e);
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
    int rc = requeue_once(e);
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
        pop_delayed_locked(e, now);
        evs__job *j;
        while ((j = pop_locked(e))) {
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
        int idle = e->position > head && e->q_len == 0 && e->claims->n == 0;
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
    for (evs__job *j = e->q_head, *n; j; j = n) {
        n = j->next;
        free(j);
    }
    if (e->claims)
        for (size_t i = 0; i < e->claims->nb; i++)
            for (sm_ent *c = e->claims->b[i]; c; c = c->next) free(c->val);
    sm_free(e->queued, 0);
    sm_free(e->claims, 0);
    sm_free(e->fired, 0);
    free(e->delayed);
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
    out->running = (uint32_t)e->claims->n;
    pthread_mutex_unlock(&e->mu);
    out->head = evs_head(e->store);
    int rc = evs__cat_timers_pending(e, &out->timers_pending);
    if (rc) return rc;
    out->timers_fired = atomic_load(&e->st_fired);
    for (int i = 0; i <= EVS_SAGA_LATE_BUCKETS; i++) out->late_hist[i] = atomic_load(&e->st_late[i]);
    out->late_max_ns = atomic_load(&e->st_late_max);
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
