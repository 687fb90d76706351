/*
 * queue.c — the saga engine's work: the queue of instances to run, the
 * claims that keep one instance on one thread, timers fired once per due,
 * delayed runs, and the small services every part of the engine uses (the
 * clock, the registry lookup, the last error).  Below engine.c (threads and
 * lifecycle), catalog.c (which queues what the log asks for) and worker.c
 * (which asks for a run later).
 *
 * A queued instance is queued once: a second job merges into the first.  A
 * worker claims the instance before running it; a job for a claimed
 * instance waits on the claim and is queued again when the claim is
 * released, so no instance runs on two threads and no wake-up is lost.
 * Operators take the same claims (waiting a little for a worker to finish).
 * A timer fires once per (instance, due): a second firing of the same due
 * would only repeat a run that found nothing to do.  Delayed runs (another
 * node's lease, a store error) live in memory: if the process dies, the
 * index's ready rows and timers bring the instances back.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "saga/saga_internal.h"

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

evs__smap *evs__smap_new(void) {
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

void evs__smap_free(evs__smap *m, int free_vals) {
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

void evs__queue_prune_fired_locked(evs_saga_engine *e, int64_t now) {
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

int64_t evs__queue_pop_delayed_locked(evs_saga_engine *e, int64_t now) {
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

evs__job *evs__queue_pop_locked(evs_saga_engine *e) {
    if (!atomic_load(&e->holding)) return NULL; /* standing by (PostgreSQL): the queue waits for the lease */
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

void evs__queue_release_locked(evs_saga_engine *e, const char *type, const char *id) {
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
    evs__queue_release_locked(e, type, id);
    pthread_mutex_unlock(&e->mu);
    return waiting;
}


size_t evs__smap_count(const evs__smap *m) { return m->n; }

void evs__queue_keep_start(evs_saga_engine *e, const evs__job *j) {
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
}

void evs__queue_free(evs_saga_engine *e) {
    for (evs__job *j = e->q_head, *n; j; j = n) {
        n = j->next;
        free(j);
    }
    e->q_head = e->q_tail = NULL;
    if (e->claims)
        for (size_t i = 0; i < e->claims->nb; i++)
            for (sm_ent *c = e->claims->b[i]; c; c = c->next) free(c->val);
    evs__smap_free(e->queued, 0);
    evs__smap_free(e->claims, 0);
    evs__smap_free(e->fired, 0);
    e->queued = e->claims = e->fired = NULL;
    free(e->delayed);
    e->delayed = NULL;
}
