/*
 * consumers.c — projection runners, the group registry and WebSocket group
 * members for the server (consumers.h says how they fit together).  No
 * HTTP here: the routes translate what these functions return.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "server/consumers.h"

#define RUNNER_POLL_MS 250                      /* a poll with nothing new returns after this */
#define RUNNER_MAX_EVENTS 1000                  /* ... and a busy one after this many events */
#define RUNNER_SNAPSHOT_NS (100 * 1000000LL)    /* status snapshot at most this often while busy */
#define RUNNER_IDLE_MS 1000                     /* paused or failing: look again this often */

/* ---------------------------------------------------------------- runners */

static void cond_init_mono(pthread_cond_t *cv) {
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
}

static void wait_ms(evs__runner *r, int ms) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&r->cv, &r->mu, &ts);
}

void evs__copy_errmsg(char *buf, size_t cap, int rc) {
    const char *m = evs_errmsg();
    snprintf(buf, cap, "%s", m && *m ? m : evs_strerror(rc));
}

/*
 * A standby runner (another process on the database holds the projection's
 * lease) tries to take it over: when the holder is gone, the projection
 * resumes here from its last commit.  Called and returns with r->mu held;
 * holds the runner (EVS_HOLD_RUNNER) while it opens, so no request sees a
 * half-set handle.
 */
static void standby_try(evs__runner *r) {
    r->holder = EVS_HOLD_RUNNER;
    pthread_mutex_unlock(&r->mu);
    evs_projection *p = NULL;
    char err[512] = "";
    int rc = evs_proj_open_stored_cfg(r->bs->bus, r->name, NULL, &r->bs->proj_cfg, &p);
    if (rc) evs__copy_errmsg(err, sizeof err, rc);
    else fprintf(stderr, "evstore serve: projection \"%s\": took it over (its lease was free)\n", r->name);
    pthread_mutex_lock(&r->mu);
    r->holder = EVS_HOLD_NONE;
    if (!rc) {
        r->p = p;
        r->standby = 0;
        r->error[0] = '\0';
    } else {
        if (rc != EVS_ELOCKED) r->standby = 0; /* something else is wrong: the error says what */
        snprintf(r->error, sizeof r->error, "%s", err);
    }
    pthread_cond_broadcast(&r->cv);
}

static void *runner_main(void *arg) {
    evs__runner *r = arg;
    int64_t last_snap = 0;
    pthread_mutex_lock(&r->mu);
    while (!r->stop) {
        if (r->holder != EVS_HOLD_NONE || r->waiters) {
            pthread_cond_wait(&r->cv, &r->mu);
            continue;
        }
        if (r->idle || !r->p) {
            wait_ms(r, RUNNER_IDLE_MS);
            r->idle = 0;
            if (!r->p && r->standby && !r->stop && r->holder == EVS_HOLD_NONE && !r->waiters) standby_try(r);
            continue;
        }
        evs_projection *p = r->p;
        r->holder = EVS_HOLD_RUNNER;
        pthread_mutex_unlock(&r->mu);

        size_t n = 0;
        int rc = evs_proj_poll(p, RUNNER_POLL_MS, RUNNER_MAX_EVENTS, &n);
        if (rc == EVS_OK && n) rc = evs_proj_checkpoint(p);
        char err[512] = "";
        if (rc) evs__copy_errmsg(err, sizeof err, rc);
        /* The snapshot costs a read transaction and a DLQ count: after idle
           polls (n == 0: a timeout, a pause, a cancel) and at most every
           RUNNER_SNAPSHOT_NS while events flow. */
        evs_proj_status st;
        int snap = 0;
        int64_t now = evs__mono_ns();
        if (n == 0 || now - last_snap >= RUNNER_SNAPSHOT_NS) {
            snap = evs_proj_get_status(p, &st) == EVS_OK;
            if (snap) last_snap = now;
        }

        pthread_mutex_lock(&r->mu);
        r->holder = EVS_HOLD_NONE;
        if (snap) {
            r->snap = st;
            r->have_snap = 1;
            if (st.info.status != EVS_CONSUMER_ACTIVE) r->idle = 1;
        }
        if (rc) {
            if (strcmp(r->error, err) != 0)
                fprintf(stderr, "evstore serve: projection \"%s\": %s\n", r->name, err);
            snprintf(r->error, sizeof r->error, "%s", err);
            r->idle = 1;
        } else {
            r->error[0] = '\0';
        }
        pthread_cond_broadcast(&r->cv);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

int evs__runner_start_thread(evs__runner *r) {
    if (r->started) return 0;
    if (pthread_create(&r->thread, NULL, runner_main, r) != 0) return -1;
    r->started = 1;
    return 0;
}

/* A new runner for name, linked into the list (whose reference it carries). */
evs__runner *evs__runner_new(evs__consumers *bs, const char *name, evs_projection *p, const char *error) {
    evs__runner *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->bs = bs;
    snprintf(r->name, sizeof r->name, "%s", name);
    pthread_mutex_init(&r->mu, NULL);
    cond_init_mono(&r->cv);
    r->p = p;
    if (error) snprintf(r->error, sizeof r->error, "%s", error);
    if (p && evs__runner_start_thread(r)) {
        pthread_cond_destroy(&r->cv);
        pthread_mutex_destroy(&r->mu);
        free(r);
        return NULL;
    }
    pthread_mutex_lock(&bs->mu);
    r->refs = 1;
    r->linked = 1;
    r->next = bs->runners;
    bs->runners = r;
    pthread_mutex_unlock(&bs->mu);
    return r;
}

static void runner_free(evs__runner *r) {
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/* The runner of name with a reference taken (release with evs__runner_put), or NULL. */
evs__runner *evs__runner_find(evs__consumers *bs, const char *name) {
    pthread_mutex_lock(&bs->mu);
    evs__runner *r = bs->runners;
    while (r && strcmp(r->name, name) != 0) r = r->next;
    if (r) r->refs++;
    pthread_mutex_unlock(&bs->mu);
    return r;
}

void evs__runner_put(evs__runner *r) {
    if (!r) return;
    evs__consumers *bs = r->bs;
    pthread_mutex_lock(&bs->mu);
    int last = --r->refs == 0;
    pthread_mutex_unlock(&bs->mu);
    if (last) runner_free(r);
}

/* Take the handle over from the runner (consumers.h says how). */
void evs__runner_hold(evs__runner *r) {
    pthread_mutex_lock(&r->mu);
    r->waiters++;
    while (r->holder != EVS_HOLD_NONE) {
        /* only the runner's own handle is cancelled: a request's holder
           may be closing its handle right now */
        if (r->holder == EVS_HOLD_RUNNER && r->p) evs_proj_cancel(r->p);
        pthread_cond_wait(&r->cv, &r->mu);
    }
    r->waiters--;
    r->holder = EVS_HOLD_REQUEST;
    pthread_mutex_unlock(&r->mu);
}

/* Replace the handle while holding it. */
void evs__runner_set(evs__runner *r, evs_projection *p, const char *error) {
    pthread_mutex_lock(&r->mu);
    r->p = p;
    if (error) snprintf(r->error, sizeof r->error, "%s", error);
    else r->error[0] = '\0';
    if (!p) r->have_snap = 0;
    pthread_mutex_unlock(&r->mu);
}

/* Give the handle back, with a fresh snapshot so that the answer and the next status agree. */
void evs__runner_release(evs__runner *r) {
    evs_proj_status st;
    int snap = r->p && evs_proj_get_status(r->p, &st) == EVS_OK;
    pthread_mutex_lock(&r->mu);
    if (snap) {
        r->snap = st;
        r->have_snap = 1;
    }
    r->holder = EVS_HOLD_NONE;
    r->idle = 0;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* Stop r for good: close its projection, join its thread, unlink it.  Under admin_mu. */
void evs__runner_retire(evs__runner *r) {
    evs__runner_hold(r);
    evs_projection *p = r->p;
    evs__runner_set(r, NULL, NULL);
    evs_proj_close(p);
    pthread_mutex_lock(&r->mu);
    r->stop = 1;
    r->holder = EVS_HOLD_NONE;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (r->started) pthread_join(r->thread, NULL);
    r->started = 0;
    evs__consumers *bs = r->bs;
    pthread_mutex_lock(&bs->mu);
    for (evs__runner **pp = &bs->runners; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    r->linked = 0;
    int last = --r->refs == 0;
    pthread_mutex_unlock(&bs->mu);
    if (last) runner_free(r);
}

void evs__runner_view(evs__consumers *bs, const char *name, evs__run_view *v) {
    memset(v, 0, sizeof *v);
    evs__runner *r = evs__runner_find(bs, name);
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    v->known = 1;
    v->running = r->p != NULL;
    v->have_snap = r->have_snap;
    if (r->have_snap) v->snap = r->snap;
    snprintf(v->error, sizeof v->error, "%s", r->error);
    pthread_mutex_unlock(&r->mu);
    evs__runner_put(r);
}

/* ----------------------------------------------------------------- groups */

/*
 * Groups (competing consumers).  The server opens a group when a consumer
 * first asks for work and keeps it open; HTTP consumers are members joined
 * by name on their first `next`.  HTTP has no connection a member could be
 * tied to, so a member that has made no request for its group's ack timeout
 * plus the idle grace (bs->idle_grace_ns) is taken to be gone and leaves
 * (its unacked deliveries are handed out again, its pinned streams move):
 * that happens lazily, when another request reaches the group or its
 * status is read (evs__group_expire_idle).  DELETE .../consumers/C leaves
 * at once.
 *
 * A member is `busy` while a request uses it (a long-poll in
 * evs_group_next, an ack); only idle members leave, and closing a group
 * (update, reset, delete, shutdown) cancels the busy ones and waits for
 * them.  Calls on the group handle itself (pause, info, DLQ retry) and
 * closing it are serialised by admin_mu.
 *
 * A long-poll (routes_groups.c) keeps its member busy on a thread of its
 * own; evs__consumers_quiesce cancels them all at shutdown.
 *
 * WebSocket consumers (evs__gconn, used by ws.c) are members too, flagged
 * `conn`: their lifetime is the connection's, so they never idle out and
 * HTTP requests cannot act for them.  When the group is closed under them
 * (update, reset, delete, DELETE of the consumer) their evs__gmember
 * outlives the group's list, marked `gone`, until the connection lets go
 * of it.
 */

static void group_free(evs__ghandle *gh) {
    pthread_cond_destroy(&gh->cv);
    pthread_mutex_destroy(&gh->mu);
    free(gh);
}

evs__ghandle *evs__group_find(evs__consumers *bs, const char *name) {
    pthread_mutex_lock(&bs->mu);
    evs__ghandle *gh = bs->groups;
    while (gh && strcmp(gh->name, name) != 0) gh = gh->next;
    if (gh) gh->refs++;
    pthread_mutex_unlock(&bs->mu);
    return gh;
}

void evs__group_put(evs__ghandle *gh) {
    if (!gh) return;
    evs__consumers *bs = gh->bs;
    pthread_mutex_lock(&bs->mu);
    int last = --gh->refs == 0;
    pthread_mutex_unlock(&bs->mu);
    if (last) group_free(gh);
}

/* The open group of name (a reference for the caller), opening it.  Under admin_mu. */
int evs__group_open_locked(evs__consumers *bs, const char *name, evs__ghandle **out) {
    if ((*out = evs__group_find(bs, name))) return EVS_OK;
    evs_group *g;
    int rc = evs_group_open(bs->bus, name, NULL, &g);
    if (rc) return rc;
    evs_group_info gi;
    evs__ghandle *gh = calloc(1, sizeof *gh);
    if (!gh) {
        evs_group_close(g);
        return EVS_ENOMEM;
    }
    gh->bs = bs;
    snprintf(gh->name, sizeof gh->name, "%s", name);
    gh->idle_ns = bs->idle_grace_ns + (evs_group_get_info(g, &gi) == EVS_OK ? gi.ack_timeout_ns : 0);
    pthread_mutex_init(&gh->mu, NULL);
    pthread_cond_init(&gh->cv, NULL);
    gh->g = g;
    pthread_mutex_lock(&bs->mu);
    gh->refs = 2; /* the list's and the caller's */
    gh->linked = 1;
    gh->next = bs->groups;
    bs->groups = gh;
    pthread_mutex_unlock(&bs->mu);
    *out = gh;
    return EVS_OK;
}

int evs__group_open(evs__consumers *bs, const char *name, evs__ghandle **out) {
    if ((*out = evs__group_find(bs, name))) return EVS_OK;
    pthread_mutex_lock(&bs->admin_mu);
    int rc = evs__group_open_locked(bs, name, out);
    pthread_mutex_unlock(&bs->admin_mu);
    return rc;
}

/*
 * Close an open group: no new member work, cancel long-polls, wait for
 * busy members, close (which releases the members).  Under admin_mu (or
 * at shutdown); drops the list's reference.
 */
void evs__group_retire(evs__ghandle *gh) {
    evs__consumers *bs = gh->bs;
    pthread_mutex_lock(&bs->mu);
    for (evs__ghandle **pp = &bs->groups; *pp; pp = &(*pp)->next)
        if (*pp == gh) {
            *pp = gh->next;
            break;
        }
    gh->linked = 0;
    pthread_mutex_unlock(&bs->mu);
    pthread_mutex_lock(&gh->mu);
    gh->closing = 1;
    for (;;) {
        int busy = 0;
        for (evs__gmember *m = gh->members; m; m = m->next)
            if (m->busy) {
                busy = 1;
                evs_group_cancel(m->m);
            }
        if (!busy) break;
        pthread_cond_wait(&gh->cv, &gh->mu);
    }
    evs_group_close(gh->g); /* releases the members still joined */
    gh->g = NULL;
    while (gh->members) {
        evs__gmember *m = gh->members;
        gh->members = m->next;
        if (m->conn) { /* the connection frees it */
            m->m = NULL;
            m->gone = 1;
            m->next = NULL;
        } else {
            free(m);
        }
    }
    pthread_mutex_unlock(&gh->mu);
    evs__group_put(gh);
}

/* Leave m (unlinked, not busy) for good.  Under gh->mu. */
static void member_leave(evs__gmember *m) {
    evs_group_leave(m->m);
    free(m);
}

/* Idle HTTP members (but `keep`, which is asking) leave.  Under gh->mu. */
static void expire_idle_locked(evs__ghandle *gh, int64_t now, const char *keep) {
    for (evs__gmember **pp = &gh->members; *pp;) {
        evs__gmember *m = *pp;
        if (!m->busy && !m->conn && now - m->last_seen > gh->idle_ns && (!keep || strcmp(m->name, keep) != 0)) {
            *pp = m->next;
            member_leave(m);
            continue;
        }
        pp = &m->next;
    }
}

void evs__group_expire_idle(evs__ghandle *gh) {
    pthread_mutex_lock(&gh->mu);
    if (gh->g && !gh->closing) expire_idle_locked(gh, evs__mono_ns(), NULL);
    pthread_mutex_unlock(&gh->mu);
}

/*
 * The member `consumer` of gh, busy for the caller (release with
 * evs__member_release).  join: join it when absent; otherwise EVS_ENOTFOUND.
 * Idle members leave on the way.  msg receives why on failure.
 */
int evs__member_acquire(evs__ghandle *gh, const char *consumer, int join, evs__gmember **out, char *msg, size_t cap) {
    int rc = EVS_OK;
    int64_t now = evs__mono_ns();
    *out = NULL;
    pthread_mutex_lock(&gh->mu);
    if (gh->closing || !gh->g || atomic_load(&gh->bs->quiescing)) {
        snprintf(msg, cap, "group \"%s\" was closed (updated, reset, deleted, or the server is stopping)", gh->name);
        rc = EVS_ECLOSED;
        goto out;
    }
    expire_idle_locked(gh, now, consumer);
    evs__gmember *m = gh->members;
    while (m && strcmp(m->name, consumer) != 0) m = m->next;
    if (m && m->conn) {
        snprintf(msg, cap, "consumer \"%s\" of group \"%s\" is connected over WebSocket: it answers there", consumer,
                 gh->name);
        rc = EVS_ELOCKED;
        goto out;
    }
    if (!m && !join) {
        snprintf(msg, cap,
                 "consumer \"%s\" is not connected to group \"%s\" (a consumer silent for longer than the ack "
                 "timeout plus 30 s leaves, and its deliveries are handed out again)",
                 consumer, gh->name);
        rc = EVS_ENOTFOUND;
        goto out;
    }
    if (!m) {
        if (!(m = calloc(1, sizeof *m))) {
            snprintf(msg, cap, "out of memory");
            rc = EVS_ENOMEM;
            goto out;
        }
        snprintf(m->name, sizeof m->name, "%s", consumer);
        if ((rc = evs_group_join(gh->g, consumer, &m->m))) {
            evs__copy_errmsg(msg, cap, rc);
            free(m);
            goto out;
        }
        m->next = gh->members;
        gh->members = m;
    }
    m->busy++;
    m->last_seen = now;
    *out = m;
out:
    pthread_mutex_unlock(&gh->mu);
    return rc;
}

void evs__member_release(evs__ghandle *gh, evs__gmember *m) {
    pthread_mutex_lock(&gh->mu);
    m->busy--;
    m->last_seen = evs__mono_ns();
    pthread_cond_broadcast(&gh->cv);
    pthread_mutex_unlock(&gh->mu);
}

/* DELETE /groups/N/consumers/C: leave now.  EVS_ENOTFOUND when not connected. */
int evs__member_remove(evs__ghandle *gh, const char *consumer) {
    pthread_mutex_lock(&gh->mu);
    evs__gmember **pp = &gh->members;
    while (*pp && strcmp((*pp)->name, consumer) != 0) pp = &(*pp)->next;
    evs__gmember *m = *pp;
    if (!m || !gh->g) {
        pthread_mutex_unlock(&gh->mu);
        return EVS_ENOTFOUND;
    }
    *pp = m->next;
    /* a connection's member stays its connection's to free: while we wait
       for its current call, `removing` keeps it from new calls and makes
       evs__gconn_leave wait for us */
    if (m->conn) m->removing = 1;
    while (m->busy) {
        evs_group_cancel(m->m);
        pthread_cond_wait(&gh->cv, &gh->mu);
    }
    if (m->conn) { /* its connection learns it at its next call, and frees it */
        if (gh->g) evs_group_leave(m->m); /* (a close meanwhile released it already) */
        m->m = NULL;
        m->gone = 1;
        m->removing = 0;
        m->next = NULL;
        pthread_cond_broadcast(&gh->cv);
    } else {
        member_leave(m);
    }
    pthread_mutex_unlock(&gh->mu);
    return EVS_OK;
}

long long evs__group_member_idle_ms(evs__ghandle *gh, const char *name, int64_t now) {
    long long ms = -1;
    pthread_mutex_lock(&gh->mu);
    evs__gmember *m = gh->members;
    while (m && strcmp(m->name, name) != 0) m = m->next;
    if (m) ms = m->busy ? 0LL : (long long)((now - m->last_seen) / 1000000);
    pthread_mutex_unlock(&gh->mu);
    return ms;
}

/* ------------------------------------------------- WebSocket consumers */

struct evs__gconn {
    evs__ghandle *gh;                  /* a reference */
    evs__gmember *m;                   /* conn; ours once gone */
};

static const char *const gone_why =
    "was closed (updated, reset or deleted, the consumer was removed, or the server is stopping)";

int evs__gconn_join(evs__consumers *bs, const char *group, const char *consumer, evs__gconn **out, char *msg,
                    size_t cap) {
    evs__gconn *gc = NULL;
    evs__gmember *m = NULL;
    evs__ghandle *gh = NULL;
    evs_group_info gi;
    int rc;
    *out = NULL;
    if (!bs) {
        snprintf(msg, cap, "consumers are not available");
        return EVS_ECLOSED;
    }
    /* a name that is no group: say so, rather than "cannot open" */
    if ((rc = evs_group_get(bs->bus, group, &gi))) {
        if (rc == EVS_ENOTFOUND) snprintf(msg, cap, "group \"%s\" does not exist (create it with PUT /groups/%s)", group, group);
        else evs__copy_errmsg(msg, cap, rc);
        return rc;
    }
    if ((rc = evs__group_open(bs, group, &gh))) {
        evs__copy_errmsg(msg, cap, rc);
        return rc;
    }
    if (!(gc = calloc(1, sizeof *gc)) || !(m = calloc(1, sizeof *m))) {
        snprintf(msg, cap, "out of memory");
        rc = EVS_ENOMEM;
        goto fail;
    }
    snprintf(m->name, sizeof m->name, "%s", consumer);
    m->conn = 1;
    pthread_mutex_lock(&gh->mu);
    if (gh->closing || !gh->g || atomic_load(&bs->quiescing)) {
        snprintf(msg, cap, "group \"%s\" %s", group, gone_why);
        rc = EVS_ECLOSED;
    } else if ((rc = evs_group_join(gh->g, consumer, &m->m))) {
        evs__copy_errmsg(msg, cap, rc);
    } else {
        m->last_seen = evs__mono_ns();
        m->next = gh->members;
        gh->members = m;
    }
    pthread_mutex_unlock(&gh->mu);
    if (rc) goto fail;
    gc->gh = gh;
    gc->m = m;
    *out = gc;
    return EVS_OK;
fail:
    free(m);
    free(gc);
    evs__group_put(gh);
    return rc;
}

/* The member, busy for the caller; NULL when gone (msg says why). */
static evs__gmember *gconn_acquire(evs__gconn *gc, char *msg, size_t cap) {
    evs__ghandle *gh = gc->gh;
    evs__gmember *m = gc->m;
    pthread_mutex_lock(&gh->mu);
    if (m->gone || m->removing || gh->closing || !gh->g) {
        pthread_mutex_unlock(&gh->mu);
        snprintf(msg, cap, "group \"%s\" %s", gh->name, gone_why);
        return NULL;
    }
    m->busy++;
    m->last_seen = evs__mono_ns();
    pthread_mutex_unlock(&gh->mu);
    return m;
}

int evs__gconn_next(evs__gconn *gc, evs_delivery **out, char *msg, size_t cap) {
    *out = NULL;
    evs__gmember *m = gconn_acquire(gc, msg, cap);
    if (!m) return EVS_ECLOSED;
    int rc = evs_group_next(m->m, 0, out);
    if (rc) evs__copy_errmsg(msg, cap, rc);
    evs__member_release(gc->gh, m);
    return rc;
}

int evs__gconn_answer(evs__gconn *gc, int nack, evs_delivery_id id, evs_nack_action action, const char *reason,
                      char *msg, size_t cap) {
    evs__gmember *m = gconn_acquire(gc, msg, cap);
    if (!m) return EVS_ECLOSED;
    int rc = nack ? evs_group_nack(m->m, id, action, reason) : evs_group_ack(m->m, id);
    if (rc) evs__copy_errmsg(msg, cap, rc);
    evs__member_release(gc->gh, m);
    return rc;
}

const char *evs__gconn_group(const evs__gconn *gc) { return gc->gh->name; }

void evs__gconn_leave(evs__gconn *gc) {
    if (!gc) return;
    evs__ghandle *gh = gc->gh;
    evs__gmember *m = gc->m;
    pthread_mutex_lock(&gh->mu);
    while (m->removing) pthread_cond_wait(&gh->cv, &gh->mu); /* evs__member_remove finishes with it first */
    if (!m->gone) {
        for (evs__gmember **pp = &gh->members; *pp; pp = &(*pp)->next)
            if (*pp == m) {
                *pp = m->next;
                break;
            }
        while (m->busy) pthread_cond_wait(&gh->cv, &gh->mu); /* only the connection uses it: never waits */
        evs_group_leave(m->m);
    }
    pthread_mutex_unlock(&gh->mu);
    free(m);
    free(gc);
    evs__group_put(gh);
}

/* ---------------------------------------------------------------- lifecycle */

int evs__consumers_start(evs_store *store, const char *dir, unsigned idle_ms, evs_event_map map, evs__consumers **out,
                         char *why,
                         size_t whycap) {
    evs__consumers *bs = calloc(1, sizeof *bs);
    evs_consumer_info *page = calloc(EVS_CONSUMERS_LIST_CHUNK, sizeof *page);
    int rc = EVS_OK;
    *out = NULL;
    if (!bs || !page) {
        snprintf(why, whycap, "serve: out of memory");
        free(bs);
        free(page);
        return EVS_ENOMEM;
    }
    bs->store = store;
    bs->dir = dir;
    bs->idle_grace_ns = (int64_t)idle_ms * 1000000;
    evs_proj_config_init(&bs->proj_cfg);
    bs->proj_cfg.map = map;
    pthread_mutex_init(&bs->mu, NULL);
    pthread_mutex_init(&bs->admin_mu, NULL);
    if ((rc = evs_bus_open(store, &bs->bus))) {
        snprintf(why, whycap, "serve: cannot open the consumers of %s: %s", dir, evs_errmsg());
        pthread_mutex_destroy(&bs->mu);
        pthread_mutex_destroy(&bs->admin_mu);
        free(bs);
        free(page);
        return rc;
    }
    /* Every stored projection gets a runner.  One whose stored script cannot
       run here (a C projection of a library user, say) keeps a runner
       without a handle, so that its status says why it is not running. */
    char after[EVS_BUS_MAX_NAME + 1] = "";
    size_t n;
    do {
        if ((rc = evs_consumer_list(bs->bus, after[0] ? after : NULL, page, EVS_CONSUMERS_LIST_CHUNK, &n))) {
            snprintf(why, whycap, "serve: cannot list the consumers: %s", evs_errmsg());
            goto cleanup;
        }
        for (size_t i = 0; i < n; i++) {
            if (!evs__is_projection(&page[i])) continue;
            evs_projection *p = NULL;
            char err[512] = "";
            int orc = evs_proj_open_stored_cfg(bs->bus, page[i].name, NULL, &bs->proj_cfg, &p);
            if (orc) {
                evs__copy_errmsg(err, sizeof err, orc);
                fprintf(stderr, "evstore serve: projection \"%s\" is not run: %s\n", page[i].name, err);
            }
            evs__runner *r = evs__runner_new(bs, page[i].name, p, orc ? err : NULL);
            if (!r) {
                evs_proj_close(p);
                snprintf(why, whycap, "serve: cannot start projection \"%s\"", page[i].name);
                rc = EVS_EIO;
                goto cleanup;
            }
            if (orc == EVS_ELOCKED) { /* another server runs it (PostgreSQL): this one stands by */
                pthread_mutex_lock(&r->mu);
                r->standby = 1;
                pthread_mutex_unlock(&r->mu);
                if (evs__runner_start_thread(r)) {
                    snprintf(why, whycap, "serve: cannot start projection \"%s\"", page[i].name);
                    rc = EVS_EIO;
                    goto cleanup;
                }
            }
        }
        if (n) snprintf(after, sizeof after, "%s", page[n - 1].name);
    } while (n == EVS_CONSUMERS_LIST_CHUNK);
cleanup:
    free(page);
    if (rc) {
        evs__consumers_stop(bs);
        return rc;
    }
    *out = bs;
    return EVS_OK;
}

void evs__consumers_stop(evs__consumers *bs) {
    if (!bs) return;
    /* No request can reach a runner any more (the daemon stopped): stop
       them all first so that their polls end in parallel, then join. */
    for (evs__runner *r = bs->runners; r; r = r->next) {
        pthread_mutex_lock(&r->mu);
        r->stop = 1;
        if (r->holder == EVS_HOLD_RUNNER && r->p) evs_proj_cancel(r->p);
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
    }
    while (bs->groups) {
        evs__ghandle *gh = bs->groups;
        gh->refs++; /* evs__group_retire drops the list's reference; this one is ours */
        evs__group_retire(gh);
        evs__group_put(gh);
    }
    evs__runner *r = bs->runners;
    while (r) {
        evs__runner *next = r->next;
        if (r->started) pthread_join(r->thread, NULL);
        evs_proj_close(r->p); /* commits state and checkpoint */
        runner_free(r);
        r = next;
    }
    evs_bus_close(bs->bus);
    pthread_mutex_destroy(&bs->mu);
    pthread_mutex_destroy(&bs->admin_mu);
    free(bs);
}

void evs__consumers_quiesce(evs__consumers *bs) {
    if (!bs) return;
    atomic_store(&bs->quiescing, 1);
    /* evs__member_acquire checks `quiescing` under the group's mu: a long-poll
       either sees it, or is busy here and gets cancelled (cancels stick) */
    pthread_mutex_lock(&bs->mu);
    for (evs__ghandle *gh = bs->groups; gh; gh = gh->next) {
        pthread_mutex_lock(&gh->mu);
        for (evs__gmember *m = gh->members; m; m = m->next)
            if (m->busy) evs_group_cancel(m->m);
        pthread_mutex_unlock(&gh->mu);
    }
    pthread_mutex_unlock(&bs->mu);
    /* the poll threads resume their connections; the daemon must outlive that */
    for (int i = 0; i < 1000 && atomic_load(&bs->polls) > 0; i++) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* ----------------------------------------------------------- for /metrics */

void evs__consumers_rows(evs__consumers *bs, size_t max, evs__consumer_row **out, size_t *nout) {
    evs_consumer_info *page = calloc(EVS_CONSUMERS_LIST_CHUNK, sizeof *page);
    evs__consumer_row *rows = NULL;
    size_t nrows = 0, cap = 0, n;
    char after[EVS_BUS_MAX_NAME + 1] = "";
    *out = NULL;
    *nout = 0;
    if (!page) return;
    do {
        if (evs_consumer_list(bs->bus, after[0] ? after : NULL, page, EVS_CONSUMERS_LIST_CHUNK, &n)) break;
        for (size_t i = 0; i < n && nrows < max; i++) {
            if (nrows == cap) {
                size_t nc = cap ? cap * 2 : 64;
                evs__consumer_row *nr = realloc(rows, nc * sizeof *nr);
                if (!nr) goto done;
                rows = nr;
                cap = nc;
            }
            const evs_consumer_info *in = &page[i];
            evs__consumer_row *r = &rows[nrows++];
            memset(r, 0, sizeof *r);
            snprintf(r->name, sizeof r->name, "%s", in->name);
            snprintf(r->kind, sizeof r->kind, "%s", in->kind);
            r->proj = evs__is_projection(in);
            r->group = evs__is_group(in);
            r->status = in->status;
            r->checkpoint = in->checkpoint;
            r->lag_events = in->lag_events;
            r->lag_ms = in->lag_ms;
            r->processed = in->processed;
            r->failed = in->failed;
            r->retried = in->retry_count;
            r->parked = in->parked;
            r->dlq = in->dlq_depth;
            if (r->proj) {
                evs__run_view v;
                evs__runner_view(bs, in->name, &v);
                r->running = v.running;
                if (v.running && v.have_snap) {
                    r->rebuilding = v.snap.rebuilding;
                    r->percent = v.snap.rebuild_percent;
                    r->rate = v.snap.events_per_second;
                }
            }
            if (r->group) {
                pthread_mutex_lock(&bs->admin_mu); /* serialised with closing the handle */
                evs__ghandle *gh = evs__group_find(bs, in->name);
                evs_group_info gi;
                if (gh) evs__group_expire_idle(gh);
                if (gh && gh->g && evs_group_get_info(gh->g, &gi) == EVS_OK) {
                    r->members = gi.members;
                    r->in_flight = gi.in_flight;
                }
                pthread_mutex_unlock(&bs->admin_mu);
                evs__group_put(gh);
            }
        }
        if (n) snprintf(after, sizeof after, "%s", page[n - 1].name);
    } while (n == EVS_CONSUMERS_LIST_CHUNK && nrows < max);
done:
    free(page);
    if (!nrows) {
        free(rows);
        return;
    }
    *out = rows;
    *nout = nrows;
}
