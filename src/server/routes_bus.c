/*
 * routes_bus.c — the event-driven routes of `evstore serve`: Lua
 * projections (create or replace, status, state, partitions, pause, resume,
 * reset, rebuild, delete), the records of every durable consumer, their
 * dead-letter queues (DLQ), and their series in /metrics.  The library is
 * include/evstore_bus.h; this file only drives it over HTTP.
 *
 * Runners.  Every Lua projection stored in DIR/consumers/ gets a runner: a
 * thread that owns the projection's handle and loops evs_proj_poll, which
 * is one code path for catch-up and live.  After every poll that applied
 * events the runner commits state and checkpoint: queries read committed
 * state, and the library's own schedule (every 1000 events or 1 s) would
 * make a projection look up to a second behind.  Commits batch by
 * themselves: while one syncs, the next events wait for the next poll.
 *
 * Taking a handle over.  A handle belongs to one thread at a time, so a
 * request that must use it (pause, resume, reset, rebuild, DLQ retry,
 * replace, delete) registers as a waiter, cancels the runner's poll and
 * waits until the runner lays the handle down between two polls
 * (`holder`); a runner does not start a poll while anyone waits.  The
 * library notices a cancel within one wait slice (100 ms), which bounds the
 * latency of those requests.  Read-only routes never take the handle:
 * records, lag, DLQ and state come from DIR/consumers/ (LMDB readers never
 * block its writer), and what only the handle knows (rebuild progress,
 * rate, generation) comes from a snapshot the runner refreshes after its
 * polls.
 *
 * Lifetimes.  Runners live in a list under bs->mu and are reference
 * counted: a request that found one keeps it alive until it is done, even
 * when a DELETE stops and unlinks it meanwhile (its handle is then NULL).
 * Creation, replacement and deletion are serialised by admin_mu, so two
 * PUTs of one name cannot both start a runner.  Lock order: admin_mu, then
 * a runner's mu; bs->mu is never held while taking another lock.
 *
 * Plumbing.  The daemon calls evs__bus_http_access for every request.
 * Paths under /projections and /subscriptions are ours; any other request
 * goes to http.c, whose own per-request state lives one level down in
 * ours, so http.c needs no hook.  As there, what can be refused without a
 * body (route, method, content type, declared length) is refused on the
 * first call, bodies have hard caps (a Lua source: 1 MiB), and the route
 * runs on the last call.
 */
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "evstore_bus.h"
#include "server/routes_bus.h"

/* ------------------------------------------------------------- hard caps */

#define BUS_MAX_SOURCE ((size_t)1 << 20)        /* Lua source bytes */
#define BUS_MAX_JSON_BODY ((size_t)2 << 20)     /* {"source": ...}: room for escapes */
#define BUS_MAX_OTHER_BODY ((size_t)64 << 10)   /* bodies we ignore */
#define BUS_DEFAULT_PAGE 100u
#define BUS_MAX_CONSUMER_PAGE 1000u             /* records (about 3.6 KB each) */
#define BUS_MAX_DLQ_PAGE 1000u                  /* DLQ entries (about 1.4 KB each) */
#define BUS_MAX_PARTITION_PAGE 10000u
#define BUS_MAX_METRIC_CONSUMERS 10000u         /* /metrics stops listing consumers here */
#define BUS_LIST_CHUNK 64u

#define RUNNER_POLL_MS 250                      /* a poll with nothing new returns after this */
#define RUNNER_MAX_EVENTS 1000                  /* ... and a busy one after this many events */
#define RUNNER_SNAPSHOT_NS (100 * 1000000LL)    /* status snapshot at most this often while busy */
#define RUNNER_IDLE_MS 1000                     /* paused or failing: look again this often */

/* ---------------------------------------------------------------- runners */

typedef struct runner runner;

struct evs__bus_srv {
    evs__srv *srv;
    evs_bus *bus;
    pthread_mutex_t mu;           /* the list and the reference counts */
    pthread_mutex_t admin_mu;     /* create, replace, delete; groups: open, close, handle calls */
    runner *runners;
    struct ghandle *groups;       /* open groups, under mu */
    _Atomic int polls;            /* long-poll threads in evs_group_next */
    _Atomic int quiescing;        /* shutdown: no new long-poll */
};

typedef struct evs__bus_srv evs__bus_srv;

enum { HOLD_NONE = 0, HOLD_RUNNER = 1, HOLD_REQUEST = 2 };

struct runner {
    evs__bus_srv *bs;
    char name[EVS_BUS_MAX_NAME + 1];
    pthread_t thread;
    int started;                  /* thread running (only touched under admin_mu / at shutdown) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu */
    evs_projection *p;            /* NULL: deleted, or the stored script cannot run */
    int holder;                   /* HOLD_*: who uses p right now */
    int waiters;                  /* requests waiting for p */
    int idle;                     /* paused or failing: no poll until a request or a timeout */
    int stop;
    int have_snap;
    evs_proj_status snap;
    char error[512];              /* why the last poll or open failed, "" if it did not */
    /* under bs->mu */
    int refs;                     /* the list's reference plus one per request using it */
    int linked;
    runner *next;
};

static void cond_init_mono(pthread_cond_t *cv) {
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
}

static void wait_ms(runner *r, int ms) {
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

static void copy_errmsg(char *buf, size_t cap, int rc) {
    const char *m = evs_errmsg();
    snprintf(buf, cap, "%s", m && *m ? m : evs_strerror(rc));
}

static void *runner_main(void *arg) {
    runner *r = arg;
    int64_t last_snap = 0;
    pthread_mutex_lock(&r->mu);
    while (!r->stop) {
        if (r->holder != HOLD_NONE || r->waiters) {
            pthread_cond_wait(&r->cv, &r->mu);
            continue;
        }
        if (r->idle || !r->p) {
            wait_ms(r, RUNNER_IDLE_MS);
            r->idle = 0;
            continue;
        }
        evs_projection *p = r->p;
        r->holder = HOLD_RUNNER;
        pthread_mutex_unlock(&r->mu);

        size_t n = 0;
        int rc = evs_proj_poll(p, RUNNER_POLL_MS, RUNNER_MAX_EVENTS, &n);
        if (rc == EVS_OK && n) rc = evs_proj_checkpoint(p);
        char err[512] = "";
        if (rc) copy_errmsg(err, sizeof err, rc);
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
        r->holder = HOLD_NONE;
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

static int runner_start_thread(runner *r) {
    if (r->started) return 0;
    if (pthread_create(&r->thread, NULL, runner_main, r) != 0) return -1;
    r->started = 1;
    return 0;
}

/* A new runner for name, linked into the list (whose reference it carries). */
static runner *runner_new(evs__bus_srv *bs, const char *name, evs_projection *p, const char *error) {
    runner *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->bs = bs;
    snprintf(r->name, sizeof r->name, "%s", name);
    pthread_mutex_init(&r->mu, NULL);
    cond_init_mono(&r->cv);
    r->p = p;
    if (error) snprintf(r->error, sizeof r->error, "%s", error);
    if (p && runner_start_thread(r)) {
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

static void runner_free(runner *r) {
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/* The runner of name with a reference taken (release with runner_put), or NULL. */
static runner *runner_find(evs__bus_srv *bs, const char *name) {
    pthread_mutex_lock(&bs->mu);
    runner *r = bs->runners;
    while (r && strcmp(r->name, name) != 0) r = r->next;
    if (r) r->refs++;
    pthread_mutex_unlock(&bs->mu);
    return r;
}

static void runner_put(runner *r) {
    if (!r) return;
    evs__bus_srv *bs = r->bs;
    pthread_mutex_lock(&bs->mu);
    int last = --r->refs == 0;
    pthread_mutex_unlock(&bs->mu);
    if (last) runner_free(r);
}

/* Take the handle over from the runner (see the top of the file). */
static void runner_hold(runner *r) {
    pthread_mutex_lock(&r->mu);
    r->waiters++;
    while (r->holder != HOLD_NONE) {
        /* only the runner's own handle is cancelled: a request's holder
           may be closing its handle right now */
        if (r->holder == HOLD_RUNNER && r->p) evs_proj_cancel(r->p);
        pthread_cond_wait(&r->cv, &r->mu);
    }
    r->waiters--;
    r->holder = HOLD_REQUEST;
    pthread_mutex_unlock(&r->mu);
}

/* Replace the handle while holding it. */
static void runner_set(runner *r, evs_projection *p, const char *error) {
    pthread_mutex_lock(&r->mu);
    r->p = p;
    if (error) snprintf(r->error, sizeof r->error, "%s", error);
    else r->error[0] = '\0';
    if (!p) r->have_snap = 0;
    pthread_mutex_unlock(&r->mu);
}

/* Give the handle back, with a fresh snapshot so that the answer and the next status agree. */
static void runner_release(runner *r) {
    evs_proj_status st;
    int snap = r->p && evs_proj_get_status(r->p, &st) == EVS_OK;
    pthread_mutex_lock(&r->mu);
    if (snap) {
        r->snap = st;
        r->have_snap = 1;
    }
    r->holder = HOLD_NONE;
    r->idle = 0;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* Stop r for good: close its projection, join its thread, unlink it.  Under admin_mu. */
static void runner_retire(runner *r) {
    runner_hold(r);
    evs_projection *p = r->p;
    runner_set(r, NULL, NULL);
    evs_proj_close(p);
    pthread_mutex_lock(&r->mu);
    r->stop = 1;
    r->holder = HOLD_NONE;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (r->started) pthread_join(r->thread, NULL);
    r->started = 0;
    evs__bus_srv *bs = r->bs;
    pthread_mutex_lock(&bs->mu);
    for (runner **pp = &bs->runners; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    r->linked = 0;
    int last = --r->refs == 0;
    pthread_mutex_unlock(&bs->mu);
    if (last) runner_free(r);
}

/* What a status answer shows of a projection's runner. */
typedef struct run_view {
    int known, running, have_snap;
    evs_proj_status snap;
    char error[512];
} run_view;

static void view_of(evs__bus_srv *bs, const char *name, run_view *v) {
    memset(v, 0, sizeof *v);
    runner *r = runner_find(bs, name);
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    v->known = 1;
    v->running = r->p != NULL;
    v->have_snap = r->have_snap;
    if (r->have_snap) v->snap = r->snap;
    snprintf(v->error, sizeof v->error, "%s", r->error);
    pthread_mutex_unlock(&r->mu);
    runner_put(r);
}

/* ----------------------------------------------------------------- groups */

/*
 * Groups (competing consumers).  The server opens a group when a consumer
 * first asks for work and keeps it open; HTTP consumers are members joined
 * by name on their first `next`.  HTTP has no connection a member could be
 * tied to, so a member that has made no request for its group's ack timeout
 * plus GROUP_IDLE_NS is taken to be gone and leaves (its unacked deliveries
 * are handed out again, its pinned streams move): that happens lazily, when
 * another request reaches the group.  DELETE .../consumers/C leaves at once.
 *
 * A member is `busy` while a request uses it (a long-poll in
 * evs_group_next, an ack); only idle members leave, and closing a group
 * (update, reset, delete, shutdown) cancels the busy ones and waits for
 * them.  Calls on the group handle itself (pause, info, DLQ retry) and
 * closing it are serialised by admin_mu.
 *
 * Long-poll.  evs_group_next blocks, and a libmicrohttpd worker serves many
 * connections: so `next` suspends the connection and waits on a thread of
 * its own (at most GROUP_MAX_POLLS of them), which resumes the connection
 * with the result.
 *
 * WebSocket consumers (evs__gconn, used by ws.c) are members too, flagged
 * `conn`: their lifetime is the connection's, so they never idle out and
 * HTTP requests cannot act for them.  When the group is closed under them
 * (update, reset, delete, DELETE of the consumer) their gmember outlives the
 * group's list, marked `gone`, until the connection lets go of it.
 */

#define GROUP_IDLE_NS (30 * 1000000000LL)
#define GROUP_MAX_POLLS 1024
#define GROUP_MAX_TIMEOUT_MS 30000u
#define GROUP_DEFAULT_TIMEOUT_MS 5000u

typedef struct gmember {
    char name[EVS_BUS_MAX_NAME + 1];
    evs_group_member *m;          /* NULL once gone (see evs__gconn) */
    int busy;                     /* requests using m, under the group's mu */
    int conn;                     /* tied to a WebSocket connection: never idles out */
    int gone;                     /* conn: left the group without the connection asking */
    int removing;                 /* conn: member_remove is taking it out (the connection waits) */
    int64_t last_seen;            /* monotonic ns of the last request */
    uint64_t polls;               /* long-polls answered */
    struct gmember *next;
} gmember;

typedef struct ghandle {
    evs__bus_srv *bs;
    char name[EVS_BUS_MAX_NAME + 1];
    int64_t idle_ns;              /* a member silent this long leaves */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu */
    evs_group *g;                 /* NULL once closed */
    int closing;
    gmember *members;
    /* under bs->mu */
    int refs, linked;
    struct ghandle *next;
} ghandle;

static void group_free(ghandle *gh) {
    pthread_cond_destroy(&gh->cv);
    pthread_mutex_destroy(&gh->mu);
    free(gh);
}

static ghandle *group_find(evs__bus_srv *bs, const char *name) {
    pthread_mutex_lock(&bs->mu);
    ghandle *gh = bs->groups;
    while (gh && strcmp(gh->name, name) != 0) gh = gh->next;
    if (gh) gh->refs++;
    pthread_mutex_unlock(&bs->mu);
    return gh;
}

static void group_put(ghandle *gh) {
    if (!gh) return;
    evs__bus_srv *bs = gh->bs;
    pthread_mutex_lock(&bs->mu);
    int last = --gh->refs == 0;
    pthread_mutex_unlock(&bs->mu);
    if (last) group_free(gh);
}

/* The open group of name (a reference for the caller), opening it.  Under admin_mu. */
static int group_open_locked(evs__bus_srv *bs, const char *name, ghandle **out) {
    if ((*out = group_find(bs, name))) return EVS_OK;
    evs_group *g;
    int rc = evs_group_open(bs->bus, name, NULL, &g);
    if (rc) return rc;
    evs_group_info gi;
    ghandle *gh = calloc(1, sizeof *gh);
    if (!gh) {
        evs_group_close(g);
        return EVS_ENOMEM;
    }
    gh->bs = bs;
    snprintf(gh->name, sizeof gh->name, "%s", name);
    gh->idle_ns = GROUP_IDLE_NS + (evs_group_get_info(g, &gi) == EVS_OK ? gi.ack_timeout_ns : 0);
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

static int group_open(evs__bus_srv *bs, const char *name, ghandle **out) {
    if ((*out = group_find(bs, name))) return EVS_OK;
    pthread_mutex_lock(&bs->admin_mu);
    int rc = group_open_locked(bs, name, out);
    pthread_mutex_unlock(&bs->admin_mu);
    return rc;
}

/*
 * Close an open group: no new member work, cancel long-polls, wait for
 * busy members, close (which releases the members).  Under admin_mu (or
 * at shutdown); drops the list's reference.
 */
static void group_retire(ghandle *gh) {
    evs__bus_srv *bs = gh->bs;
    pthread_mutex_lock(&bs->mu);
    for (ghandle **pp = &bs->groups; *pp; pp = &(*pp)->next)
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
        for (gmember *m = gh->members; m; m = m->next)
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
        gmember *m = gh->members;
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
    group_put(gh);
}

/* Leave m (unlinked, not busy) for good.  Under gh->mu. */
static void member_leave(gmember *m) {
    evs_group_leave(m->m);
    free(m);
}

/*
 * The member `consumer` of gh, busy for the caller (release with
 * member_release).  join: join it when absent; otherwise EVS_ENOTFOUND.
 * Idle members leave on the way.  msg receives why on failure.
 */
static int member_acquire(ghandle *gh, const char *consumer, int join, gmember **out, char *msg, size_t cap) {
    int rc = EVS_OK;
    int64_t now = evs__mono_ns();
    *out = NULL;
    pthread_mutex_lock(&gh->mu);
    if (gh->closing || !gh->g || atomic_load(&gh->bs->quiescing)) {
        snprintf(msg, cap, "group \"%s\" was closed (updated, reset, deleted, or the server is stopping)", gh->name);
        rc = EVS_ECLOSED;
        goto out;
    }
    for (gmember **pp = &gh->members; *pp;) {
        gmember *m = *pp;
        if (!m->busy && !m->conn && now - m->last_seen > gh->idle_ns && strcmp(m->name, consumer) != 0) {
            *pp = m->next;
            member_leave(m);
            continue;
        }
        pp = &m->next;
    }
    gmember *m = gh->members;
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
            copy_errmsg(msg, cap, rc);
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

static void member_release(ghandle *gh, gmember *m) {
    pthread_mutex_lock(&gh->mu);
    m->busy--;
    m->last_seen = evs__mono_ns();
    pthread_cond_broadcast(&gh->cv);
    pthread_mutex_unlock(&gh->mu);
}

/* DELETE /groups/N/consumers/C: leave now.  EVS_ENOTFOUND when not connected. */
static int member_remove(ghandle *gh, const char *consumer) {
    pthread_mutex_lock(&gh->mu);
    gmember **pp = &gh->members;
    while (*pp && strcmp((*pp)->name, consumer) != 0) pp = &(*pp)->next;
    gmember *m = *pp;
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

/* ------------------------------------------------- WebSocket consumers */

struct evs__gconn {
    ghandle *gh;                  /* a reference */
    gmember *m;                   /* conn; ours once gone */
};

static const char *const gone_why =
    "was closed (updated, reset or deleted, the consumer was removed, or the server is stopping)";

int evs__gconn_join(evs__srv *srv, const char *group, const char *consumer, evs__gconn **out, char *msg,
                    size_t cap) {
    evs__bus_srv *bs = srv->bus;
    evs__gconn *gc = NULL;
    gmember *m = NULL;
    ghandle *gh = NULL;
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
        else copy_errmsg(msg, cap, rc);
        return rc;
    }
    if ((rc = group_open(bs, group, &gh))) {
        copy_errmsg(msg, cap, rc);
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
        copy_errmsg(msg, cap, rc);
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
    group_put(gh);
    return rc;
}

/* The member, busy for the caller; NULL when gone (msg says why). */
static gmember *gconn_acquire(evs__gconn *gc, char *msg, size_t cap) {
    ghandle *gh = gc->gh;
    gmember *m = gc->m;
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
    gmember *m = gconn_acquire(gc, msg, cap);
    if (!m) return EVS_ECLOSED;
    int rc = evs_group_next(m->m, 0, out);
    if (rc) copy_errmsg(msg, cap, rc);
    member_release(gc->gh, m);
    return rc;
}

int evs__gconn_answer(evs__gconn *gc, int nack, evs_delivery_id id, evs_nack_action action, const char *reason,
                      char *msg, size_t cap) {
    gmember *m = gconn_acquire(gc, msg, cap);
    if (!m) return EVS_ECLOSED;
    int rc = nack ? evs_group_nack(m->m, id, action, reason) : evs_group_ack(m->m, id);
    if (rc) copy_errmsg(msg, cap, rc);
    member_release(gc->gh, m);
    return rc;
}

const char *evs__gconn_group(const evs__gconn *gc) { return gc->gh->name; }

void evs__gconn_leave(evs__gconn *gc) {
    if (!gc) return;
    ghandle *gh = gc->gh;
    gmember *m = gc->m;
    pthread_mutex_lock(&gh->mu);
    while (m->removing) pthread_cond_wait(&gh->cv, &gh->mu); /* member_remove finishes with it first */
    if (!m->gone) {
        for (gmember **pp = &gh->members; *pp; pp = &(*pp)->next)
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
    group_put(gh);
}

/* ---------------------------------------------------------------- lifecycle */

int evs__bus_srv_start(evs__srv *srv, char *why, size_t whycap) {
    evs__bus_srv *bs = calloc(1, sizeof *bs);
    evs_consumer_info *page = calloc(BUS_LIST_CHUNK, sizeof *page);
    int rc = EVS_OK, ret = -1;
    if (!bs || !page) {
        snprintf(why, whycap, "serve: out of memory");
        free(bs);
        goto cleanup;
    }
    bs->srv = srv;
    pthread_mutex_init(&bs->mu, NULL);
    pthread_mutex_init(&bs->admin_mu, NULL);
    if ((rc = evs_bus_open(srv->store, &bs->bus))) {
        snprintf(why, whycap, "serve: cannot open the consumers of %s: %s", srv->dir, evs_errmsg());
        pthread_mutex_destroy(&bs->mu);
        pthread_mutex_destroy(&bs->admin_mu);
        free(bs);
        goto cleanup;
    }
    srv->bus = bs;
    /* Every stored projection gets a runner.  One whose stored script cannot
       run here (a C projection of a library user, say) keeps a runner
       without a handle, so that its status says why it is not running. */
    char after[EVS_BUS_MAX_NAME + 1] = "";
    size_t n;
    do {
        if ((rc = evs_consumer_list(bs->bus, after[0] ? after : NULL, page, BUS_LIST_CHUNK, &n))) {
            snprintf(why, whycap, "serve: cannot list the consumers: %s", evs_errmsg());
            goto cleanup;
        }
        for (size_t i = 0; i < n; i++) {
            if (strcmp(page[i].kind, "projection") != 0) continue;
            evs_projection *p = NULL;
            char err[512] = "";
            int orc = evs_proj_open_stored(bs->bus, page[i].name, NULL, &p);
            if (orc) {
                copy_errmsg(err, sizeof err, orc);
                fprintf(stderr, "evstore serve: projection \"%s\" is not run: %s\n", page[i].name, err);
            }
            if (!runner_new(bs, page[i].name, p, orc ? err : NULL)) {
                evs_proj_close(p);
                snprintf(why, whycap, "serve: cannot start projection \"%s\"", page[i].name);
                goto cleanup;
            }
        }
        if (n) snprintf(after, sizeof after, "%s", page[n - 1].name);
    } while (n == BUS_LIST_CHUNK);
    ret = 0;
cleanup:
    free(page);
    return ret;
}

void evs__bus_srv_stop(evs__srv *srv) {
    evs__bus_srv *bs = srv->bus;
    if (!bs) return;
    /* No request can reach a runner any more (the daemon stopped): stop
       them all first so that their polls end in parallel, then join. */
    for (runner *r = bs->runners; r; r = r->next) {
        pthread_mutex_lock(&r->mu);
        r->stop = 1;
        if (r->holder == HOLD_RUNNER && r->p) evs_proj_cancel(r->p);
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
    }
    while (bs->groups) {
        ghandle *gh = bs->groups;
        gh->refs++; /* group_retire drops the list's reference; this one is ours */
        group_retire(gh);
        group_put(gh);
    }
    runner *r = bs->runners;
    while (r) {
        runner *next = r->next;
        if (r->started) pthread_join(r->thread, NULL);
        evs_proj_close(r->p); /* commits state and checkpoint */
        runner_free(r);
        r = next;
    }
    evs_bus_close(bs->bus);
    pthread_mutex_destroy(&bs->mu);
    pthread_mutex_destroy(&bs->admin_mu);
    free(bs);
    srv->bus = NULL;
}

void evs__bus_srv_quiesce(evs__srv *srv) {
    evs__bus_srv *bs = srv->bus;
    if (!bs) return;
    atomic_store(&bs->quiescing, 1);
    /* member_acquire checks `quiescing` under the group's mu: a long-poll
       either sees it, or is busy here and gets cancelled (cancels stick) */
    pthread_mutex_lock(&bs->mu);
    for (ghandle *gh = bs->groups; gh; gh = gh->next) {
        pthread_mutex_lock(&gh->mu);
        for (gmember *m = gh->members; m; m = m->next)
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

/* ------------------------------------------------------------- requests */

/* The per-request state the daemon keeps for us: ours, or http.c's one level down. */
typedef struct disp {
    int ours;
    void *inner;
    int64_t t0;                   /* the request's first call, for the access log */
} disp;

enum { A_PROJ = 1, A_SUBS, A_GROUPS };

enum {
    OP_LIST, OP_ONE, OP_STATE, OP_PSTATE, OP_PARTS, OP_PAUSE, OP_RESUME, OP_RESET, OP_REBUILD,
    OP_DLQ, OP_DLQ_RETRY_ALL, OP_DLQ_ONE, OP_DLQ_RETRY, OP_NEXT, OP_ACK, OP_NACK, OP_LEAVE
};

/* A long-poll's progress (bus_req.job). */
enum { JOB_NONE, JOB_RUNNING, JOB_DONE };

enum { MB_GET = 1, MB_HEAD = 2, MB_POST = 4, MB_PUT = 8, MB_DELETE = 16 };

enum { BODY_NONE, BODY_LUA, BODY_JSON };

typedef struct bus_req {
    disp d;
    int area, op, route;
    unsigned method, allowed;
    int answered, too_big, body_kind;
    size_t cap, got;              /* body cap, bytes received */
    evs__sb body;                 /* kept only for a projection's source */
    char name[EVS_BUS_MAX_NAME + 1];
    char part[EVS_MAX_STREAM_NAME + 1];   /* a partition, or a group's consumer */
    char id[32];
    /* group long-poll: written by the poll thread before it resumes the connection */
    _Atomic int job;
    int job_rc;
    char job_msg[512];
    evs_delivery *job_d;
    ghandle *job_gh;              /* a reference, dropped at completion */
    gmember *job_m;
    int timeout_ms;
    struct MHD_Connection *conn;
    evs__bus_srv *bs;
} bus_req;

/* What a route handler works with. */
typedef struct bx {
    evs__srv *srv;
    evs__bus_srv *bs;
    struct MHD_Connection *c;
    bus_req *rq;
} bx;

static const char *allow_text(unsigned m, char *buf, size_t cap) {
    buf[0] = '\0';
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {{MB_GET, "GET"}, {MB_HEAD, "HEAD"}, {MB_POST, "POST"}, {MB_PUT, "PUT"}, {MB_DELETE, "DELETE"}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (m & names[i].bit) {
            size_t l = strlen(buf);
            snprintf(buf + l, cap - l, "%s%s", l ? ", " : "", names[i].name);
        }
    return buf;
}

/* Queue body (taken over) with the status; counted under the request's route. */
static enum MHD_Result queue(bx *x, unsigned status, char *body, size_t len, const char *ctype) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype ? ctype : "application/json");
    if (status == EVS_HTTP_METHOD_NOT_ALLOWED) {
        char allow[64];
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow_text(x->rq->allowed, allow, sizeof allow));
    }
    if (atomic_load(&x->srv->shutting)) MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result mr = MHD_queue_response(x->c, status, r);
    MHD_destroy_response(r);
    evs__metrics_count(x->srv, x->rq->route, status);
    return mr;
}

static enum MHD_Result ok_json(bx *x, unsigned status, evs__sb *out) {
    size_t len;
    char *p = evs__sb_take(out, &len);
    if (!p) return MHD_NO;
    return queue(x, status, p, len, NULL);
}

/* {"error": ..., "detail": detail_json or null} with the status, counted by kind. */
static enum MHD_Result fail(bx *x, unsigned status, const char *detail, const char *fmt, ...) EVS_PRINTF(4, 5);
static enum MHD_Result fail(bx *x, unsigned status, const char *detail, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    evs__metrics *m = &x->srv->m;
    switch (status) {
    case EVS_HTTP_CONFLICT: atomic_fetch_add(&m->errors_conflict, 1); break;
    case EVS_HTTP_TOO_LARGE: atomic_fetch_add(&m->errors_limit, 1); break;
    case EVS_HTTP_UNPROCESSABLE: atomic_fetch_add(&m->errors_invalid, 1); break;
    case EVS_HTTP_UNAVAILABLE: atomic_fetch_add(&m->errors_io, 1); break;
    case EVS_HTTP_INTERNAL: atomic_fetch_add(&m->errors_internal, 1); break;
    default: break;
    }
    if (status >= 500) fprintf(stderr, "evstore serve: %u: %s\n", status, msg);
    evs__sb b = {0};
    evs__sb_adds(&b, "{\"error\":");
    evs__sb_json_str(&b, msg, strlen(msg));
    evs__sb_adds(&b, ",\"detail\":");
    evs__sb_adds(&b, detail ? detail : "null");
    evs__sb_adds(&b, "}\n");
    return ok_json(x, status, &b);
}

/* The HTTP status of a library code. */
static unsigned lib_status(int rc) {
    switch (rc) {
    case EVS_ENOTFOUND: return EVS_HTTP_NOT_FOUND;
    case EVS_ECONFLICT:
    case EVS_ELOCKED: return EVS_HTTP_CONFLICT;
    case EVS_EINVAL:
    case EVS_EJSON: return EVS_HTTP_UNPROCESSABLE;
    default: return rc < 0 ? EVS_HTTP_UNAVAILABLE : EVS_HTTP_INTERNAL;
    }
}

/* A library failure: its status by code, msg (NULL: the library's message) after context. */
static enum MHD_Result fail_code(bx *x, int rc, const char *context, const char *msg) {
    char detail[64], own[768];
    snprintf(detail, sizeof detail, "{\"code\":\"%s\"}", evs_errname(rc));
    if (!msg) {
        copy_errmsg(own, sizeof own, rc);
        msg = own;
    }
    return fail(x, lib_status(rc), detail, "%s: %s", context, msg);
}

static enum MHD_Result fail_lib(bx *x, int rc, const char *context) { return fail_code(x, rc, context, NULL); }

/* ----------------------------------------------------------------- input */

/*
 * A strict number parameter in 1..max (0 too when zero_ok), absent: *out
 * unchanged.  0, or -1 after a 400 naming the parameter.
 */
static int q_u64(bx *x, const char *key, uint64_t max, int zero_ok, uint64_t *out, enum MHD_Result *mr) {
    const char *v = evs__query(x->c, key);
    if (!v) return 0;
    uint64_t n;
    int rc = evs__parse_u64(v, max, &n);
    if (rc == 0 && (n || zero_ok)) {
        *out = n;
        return 0;
    }
    char d[96];
    snprintf(d, sizeof d, "{\"parameter\":\"%s\",\"min\":%d,\"max\":%llu}", key, zero_ok ? 0 : 1,
             (unsigned long long)max);
    *mr = fail(x, EVS_HTTP_BAD_REQUEST, d, "parameter %s=%.40s %s (expected %d..%llu)", key, v,
               rc == -2 ? "is negative" : rc == -3 ? "is too large" : rc == 0 ? "is zero" : "is not a number",
               zero_ok ? 0 : 1, (unsigned long long)max);
    return -1;
}

/* A position parameter: a global position (1, 2, ...) or "now" (the head + 1). */
static int q_position(bx *x, const char *key, uint64_t *out, enum MHD_Result *mr) {
    const char *v = evs__query(x->c, key);
    if (v && strcmp(v, "now") == 0) {
        *out = evs_head(x->srv->store) + 1;
        return 0;
    }
    return q_u64(x, key, UINT64_MAX - 1, 0, out, mr);
}

/* Decode a raw path segment into out (cap bytes).  Length, or -1 with why. */
static long decode_seg(const char *seg, size_t n, char *out, size_t cap, char *why, size_t whycap) {
    char *tmp = malloc(n + 1);
    if (!tmp) {
        snprintf(why, whycap, "cannot be decoded: out of memory");
        return -1;
    }
    long len = evs__pct_decode(seg, n, tmp, n + 1, why, whycap);
    if (len >= 0 && (size_t)len < cap) memcpy(out, tmp, (size_t)len + 1);
    else if (len >= 0) out[0] = '\0';
    free(tmp);
    return len;
}

static int seg_is(const char *s, size_t n, const char *w) { return strlen(w) == n && memcmp(s, w, n) == 0; }

/* "text/x-lua; charset=utf-8" matches "text/x-lua". */
static int media_is(const char *ct, const char *type) {
    if (!ct) return 0;
    while (*ct == ' ') ct++;
    size_t n = strlen(type);
    if (strncasecmp(ct, type, n) != 0) return 0;
    ct += n;
    while (*ct == ' ') ct++;
    return *ct == '\0' || *ct == ';';
}

static unsigned method_bit(const char *m) {
    if (strcmp(m, "GET") == 0) return MB_GET;
    if (strcmp(m, "HEAD") == 0) return MB_HEAD;
    if (strcmp(m, "POST") == 0) return MB_POST;
    if (strcmp(m, "PUT") == 0) return MB_PUT;
    if (strcmp(m, "DELETE") == 0) return MB_DELETE;
    return 0;
}

static int is_ours(const char *url) {
    if (strncmp(url, "/projections", 12) == 0 && (url[12] == '\0' || url[12] == '/')) return A_PROJ;
    if (strncmp(url, "/subscriptions", 14) == 0 && (url[14] == '\0' || url[14] == '/')) return A_SUBS;
    if (strncmp(url, "/groups", 7) == 0 && (url[7] == '\0' || url[7] == '/')) return A_GROUPS;
    return 0;
}

#define MB_READ (MB_GET | MB_HEAD)

/*
 * The route table, on the raw path split at '/':
 *   /projections                               GET
 *   /projections/N                             GET PUT POST DELETE
 *   /projections/N/state[/PARTITION]           GET
 *   /projections/N/partitions                  GET
 *   /projections/N/pause|resume|reset|rebuild  POST
 *   /subscriptions                             GET
 *   /subscriptions/N                           GET DELETE
 *   /subscriptions/N/pause|resume|reset        POST
 *   /groups                                    GET
 *   /groups/N                                  GET PUT POST DELETE
 *   /groups/N/pause|resume|reset|next|ack|nack POST
 *   /groups/N/consumers/C                      DELETE
 *   {/subscriptions,/projections,/groups}/N/dlq  GET DELETE
 *   .../dlq/retry                              POST
 *   .../dlq/ID                                 GET DELETE
 *   .../dlq/ID/retry                           POST
 * Returns 0 with op, allowed and the segment indexes filled, -1 for no route.
 */
static int resolve(bus_req *rq, int n, const char *seg[], const size_t len[]) {
    int proj = rq->area == A_PROJ, grp = rq->area == A_GROUPS;
    if (n == 1) {
        rq->op = OP_LIST;
        rq->allowed = MB_READ;
        return 0;
    }
    if (len[1] == 0) return -1;
    if (n == 2) {
        rq->op = OP_ONE;
        rq->allowed = proj || grp ? MB_READ | MB_PUT | MB_POST | MB_DELETE : MB_READ | MB_DELETE;
        return 0;
    }
    const char *a = seg[2];
    size_t al = len[2];
    if (n == 3) {
        if (proj && seg_is(a, al, "state")) rq->op = OP_STATE, rq->allowed = MB_READ;
        else if (proj && seg_is(a, al, "partitions")) rq->op = OP_PARTS, rq->allowed = MB_READ;
        else if (seg_is(a, al, "pause")) rq->op = OP_PAUSE, rq->allowed = MB_POST;
        else if (seg_is(a, al, "resume")) rq->op = OP_RESUME, rq->allowed = MB_POST;
        else if (seg_is(a, al, "reset")) rq->op = OP_RESET, rq->allowed = MB_POST;
        else if (proj && seg_is(a, al, "rebuild")) rq->op = OP_REBUILD, rq->allowed = MB_POST;
        else if (grp && seg_is(a, al, "next")) rq->op = OP_NEXT, rq->allowed = MB_POST;
        else if (grp && seg_is(a, al, "ack")) rq->op = OP_ACK, rq->allowed = MB_POST;
        else if (grp && seg_is(a, al, "nack")) rq->op = OP_NACK, rq->allowed = MB_POST;
        else if (seg_is(a, al, "dlq")) rq->op = OP_DLQ, rq->allowed = MB_READ | MB_DELETE;
        else return -1;
        return 0;
    }
    if (len[3] == 0) return -1;
    if (n == 4 && proj && seg_is(a, al, "state")) {
        rq->op = OP_PSTATE;
        rq->allowed = MB_READ;
        return 0;
    }
    if (n == 4 && grp && seg_is(a, al, "consumers")) {
        rq->op = OP_LEAVE;
        rq->allowed = MB_DELETE;
        return 0;
    }
    if (!seg_is(a, al, "dlq")) return -1;
    if (n == 4) {
        if (seg_is(seg[3], len[3], "retry")) rq->op = OP_DLQ_RETRY_ALL, rq->allowed = MB_POST;
        else rq->op = OP_DLQ_ONE, rq->allowed = MB_READ | MB_DELETE;
        return 0;
    }
    if (n == 5 && seg_is(seg[4], len[4], "retry")) {
        rq->op = OP_DLQ_RETRY;
        rq->allowed = MB_POST;
        return 0;
    }
    return -1;
}

#define REFUSE(...)                         \
    do {                                    \
        rq->answered = 1;                   \
        return fail(&x, __VA_ARGS__);       \
    } while (0)

/* First call: everything that can be refused before a body is read. */
static enum MHD_Result first_call(evs__srv *srv, struct MHD_Connection *c, const char *url, bus_req *rq) {
    bx x = {srv, srv->bus, c, rq};
    const char *seg[6];
    size_t len[6];
    int n = 0;
    const char *p = url + 1;
    for (;;) {
        const char *slash = strchr(p, '/');
        if (n == 6) REFUSE(EVS_HTTP_NOT_FOUND, NULL, "no route for %.200s", url);
        seg[n] = p;
        len[n] = slash ? (size_t)(slash - p) : strlen(p);
        n++;
        if (!slash) break;
        p = slash + 1;
    }
    if (resolve(rq, n, seg, len)) REFUSE(EVS_HTTP_NOT_FOUND, NULL, "no route for %.200s", url);
    if (!(rq->method & rq->allowed))
        REFUSE(EVS_HTTP_METHOD_NOT_ALLOWED, NULL, "method not allowed on %.200s", url);
    if (atomic_load(&srv->shutting)) REFUSE(EVS_HTTP_UNAVAILABLE, NULL, "the server is shutting down");
    if (!srv->bus) REFUSE(EVS_HTTP_UNAVAILABLE, NULL, "consumers are not available");
    char why[96];
    if (n >= 2) {
        long l = decode_seg(seg[1], len[1], rq->name, sizeof rq->name, why, sizeof why);
        if (l < 0) REFUSE(EVS_HTTP_BAD_REQUEST, NULL, "consumer name %s", why);
        if ((size_t)l > EVS_BUS_MAX_NAME) {
            char d[64];
            snprintf(d, sizeof d, "{\"length\":%ld,\"limit\":%u}", l, EVS_BUS_MAX_NAME);
            REFUSE(EVS_HTTP_UNPROCESSABLE, d, "consumer name is %ld bytes, the limit is %u", l, EVS_BUS_MAX_NAME);
        }
        for (long i = 0; i < l; i++)
            if ((unsigned char)rq->name[i] < 0x20 || rq->name[i] == 0x7f)
                REFUSE(EVS_HTTP_BAD_REQUEST, NULL, "consumer name contains control character 0x%02x at byte %ld",
                       (unsigned)(unsigned char)rq->name[i], i + 1);
    }
    if (rq->op == OP_PSTATE || rq->op == OP_LEAVE) {
        const char *what = rq->op == OP_PSTATE ? "partition" : "consumer";
        size_t max = rq->op == OP_PSTATE ? EVS_MAX_STREAM_NAME : EVS_BUS_MAX_NAME;
        long l = decode_seg(seg[3], len[3], rq->part, sizeof rq->part, why, sizeof why);
        if (l < 0) REFUSE(EVS_HTTP_BAD_REQUEST, NULL, "%s name %s", what, why);
        if ((size_t)l > max) REFUSE(EVS_HTTP_UNPROCESSABLE, NULL, "%s name is %ld bytes, the limit is %zu", what, l, max);
    }
    if (rq->op == OP_DLQ_ONE || rq->op == OP_DLQ_RETRY) {
        size_t il = len[3] < sizeof rq->id ? len[3] : sizeof rq->id - 1; /* longer is no number anyway */
        memcpy(rq->id, seg[3], il);
        rq->id[il] = '\0';
    }
    /* bodies: a projection's source, or nothing we read (capped all the same) */
    rq->cap = BUS_MAX_OTHER_BODY;
    if ((rq->op == OP_ONE && rq->area == A_GROUPS && (rq->method & (MB_PUT | MB_POST))) || rq->op == OP_ACK ||
        rq->op == OP_NACK) {
        const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
        if (!media_is(ct, "application/json"))
            REFUSE(EVS_HTTP_UNSUPPORTED_TYPE, NULL, "this route takes Content-Type: application/json, not %.100s",
                   ct ? ct : "(none)");
        rq->body_kind = BODY_JSON;
    } else if (rq->op == OP_ONE && (rq->method & (MB_PUT | MB_POST))) {
        const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
        if (media_is(ct, "text/x-lua") || media_is(ct, "text/plain")) rq->body_kind = BODY_LUA, rq->cap = BUS_MAX_SOURCE;
        else if (media_is(ct, "application/json")) rq->body_kind = BODY_JSON, rq->cap = BUS_MAX_JSON_BODY;
        else
            REFUSE(EVS_HTTP_UNSUPPORTED_TYPE, NULL,
                   "a projection's source takes Content-Type text/x-lua or text/plain (the script), or "
                   "application/json ({\"source\": \"...\"}), not %.100s",
                   ct ? ct : "(none)");
    }
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    uint64_t declared;
    if (cl && evs__parse_u64(cl, UINT64_MAX, &declared) == 0 && declared > rq->cap) {
        char d[96];
        snprintf(d, sizeof d, "{\"length\":%llu,\"limit\":%zu}", (unsigned long long)declared, rq->cap);
        REFUSE(EVS_HTTP_TOO_LARGE, d, "request body of %llu bytes is over the limit of %zu",
               (unsigned long long)declared, rq->cap);
    }
    return MHD_YES;
}

/* ------------------------------------------------------------------ JSON */

static void json_str_or_null(evs__sb *b, const char *s) {
    if (s && *s) evs__sb_json_str(b, s, strlen(s));
    else evs__sb_adds(b, "null");
}

/* A consumer record; v (projections only) adds what the runner knows. */
static void info_json(evs__sb *b, const evs_consumer_info *i, const run_view *v) {
    evs__sb_adds(b, "{\"name\":");
    evs__sb_json_str(b, i->name, strlen(i->name));
    evs__sb_adds(b, ",\"kind\":");
    evs__sb_json_str(b, i->kind, strlen(i->kind));
    evs__sb_adds(b, ",\"owner\":");
    json_str_or_null(b, i->owner);
    evs__sb_adds(b, ",\"stream\":");
    if (i->stream[0]) evs__sb_json_str(b, i->stream, strlen(i->stream));
    else evs__sb_adds(b, "\"$all\"");
    evs__sb_adds(b, ",\"filter\":");
    evs__sb_adds(b, i->filter_json[0] ? i->filter_json : "{}");
    evs__sb_printf(b, ",\"checkpoint\":%llu,\"status\":\"%s\",\"retry_count\":%llu,\"max_retries\":%u,\"last_error\":",
                   (unsigned long long)i->checkpoint, evs_consumer_status_name(i->status),
                   (unsigned long long)i->retry_count, i->max_retries);
    json_str_or_null(b, i->last_error);
    evs__sb_adds(b, ",\"last_processed_at\":");
    evs__sb_json_time(b, i->last_processed_at);
    evs__sb_printf(b,
                   ",\"processed\":%llu,\"failed\":%llu,\"parked\":%llu,\"dlq_depth\":%llu,\"lag_events\":%llu,"
                   "\"lag_ms\":%lld",
                   (unsigned long long)i->processed, (unsigned long long)i->failed, (unsigned long long)i->parked,
                   (unsigned long long)i->dlq_depth, (unsigned long long)i->lag_events, (long long)i->lag_ms);
    if (v) {
        evs__sb_printf(b, ",\"running\":%s,\"runner_error\":", v->running ? "true" : "false");
        json_str_or_null(b, v->error);
        if (v->running && v->have_snap) {
            evs__sb_printf(b, ",\"generation\":%llu,\"events_per_second\":%.1f,\"rebuild\":",
                           (unsigned long long)v->snap.generation, v->snap.events_per_second);
            if (v->snap.rebuilding)
                evs__sb_printf(b, "{\"position\":%llu,\"percent\":%.1f}",
                               (unsigned long long)v->snap.rebuild_position, v->snap.rebuild_percent);
            else
                evs__sb_adds(b, "null");
        } else {
            evs__sb_adds(b, ",\"generation\":null,\"events_per_second\":0,\"rebuild\":null");
        }
    }
    evs__sb_adds(b, "}");
}

static void entry_json(evs__sb *b, const evs_dlq_entry *e) {
    evs__sb_printf(b, "{\"position\":%llu,\"stream\":", (unsigned long long)e->position);
    evs__sb_json_str(b, e->stream, strlen(e->stream));
    evs__sb_printf(b, ",\"stream_position\":%llu,\"event_type\":", (unsigned long long)e->stream_position);
    evs__sb_json_str(b, e->event_type, strlen(e->event_type));
    evs__sb_printf(b, ",\"attempts\":%u,\"last_error\":", e->attempts);
    evs__sb_json_str(b, e->last_error, strlen(e->last_error));
    evs__sb_adds(b, ",\"first_failure_at\":");
    evs__sb_json_time(b, e->first_failure_at);
    evs__sb_adds(b, ",\"last_failure_at\":");
    evs__sb_json_time(b, e->last_failure_at);
    evs__sb_adds(b, ",\"blocked_by\":");
    if (e->blocked_by) evs__sb_printf(b, "%llu", (unsigned long long)e->blocked_by);
    else evs__sb_adds(b, "null");
    evs__sb_adds(b, "}");
}

/* ---------------------------------------------------------------- lookups */

static int is_projection(const evs_consumer_info *i) { return strcmp(i->kind, "projection") == 0; }
static int is_group(const evs_consumer_info *i) { return strcmp(i->kind, "group") == 0; }

static const char *area_kind(int area) {
    return area == A_PROJ ? "projection" : area == A_GROUPS ? "group" : "subscription";
}

/*
 * The record of the request's consumer; on /projections it must be a
 * projection, on /groups a group (/subscriptions takes any kind).  0, or -1
 * after queueing the answer (404, or the failure).
 */
static int need_consumer(bx *x, evs_consumer_info *out, enum MHD_Result *mr) {
    int rc = evs_consumer_get(x->bs->bus, x->rq->name, out);
    if (rc == EVS_ENOTFOUND) {
        *mr = fail(x, EVS_HTTP_NOT_FOUND, NULL, "%s \"%s\" not found", area_kind(x->rq->area), x->rq->name);
        return -1;
    }
    if (rc) {
        *mr = fail_lib(x, rc, "consumer");
        return -1;
    }
    if (x->rq->area != A_SUBS && strcmp(out->kind, area_kind(x->rq->area)) != 0) {
        *mr = fail(x, EVS_HTTP_NOT_FOUND, NULL, "\"%s\" is a %s, not a %s", x->rq->name, out->kind,
                   area_kind(x->rq->area));
        return -1;
    }
    return 0;
}

static void group_extra_json(evs__sb *b, const evs_group_info *gi, ghandle *gh);

/* A group's record and settings; live figures and consumers when it is open here. */
static int group_json(bx *x, evs__sb *b, const char *name) {
    evs_group_info gi;
    int rc = evs_group_get(x->bs->bus, name, &gi);
    if (rc) return rc;
    pthread_mutex_lock(&x->bs->admin_mu); /* the handle's calls are serialised with closing it */
    ghandle *gh = group_find(x->bs, name);
    if (gh && gh->g) {
        evs_group_info live;
        if (evs_group_get_info(gh->g, &live) == EVS_OK) gi = live;
    }
    info_json(b, &gi.info, NULL);
    b->len--; /* reopen the object for the group's fields */
    group_extra_json(b, &gi, gh);
    pthread_mutex_unlock(&x->bs->admin_mu);
    group_put(gh);
    evs__sb_adds(b, "}");
    return EVS_OK;
}

/* The current status of the request's consumer as the answer. */
static enum MHD_Result answer_status(bx *x, unsigned status) {
    evs_consumer_info info;
    enum MHD_Result mr;
    if (need_consumer(x, &info, &mr)) return mr;
    run_view v;
    evs__sb out = {0};
    if (is_group(&info)) {
        int rc = group_json(x, &out, info.name);
        if (rc) {
            evs__sb_free(&out);
            return fail_lib(x, rc, "group");
        }
    } else {
        if (is_projection(&info)) view_of(x->bs, info.name, &v);
        info_json(&out, &info, is_projection(&info) ? &v : NULL);
    }
    evs__sb_adds(&out, "\n");
    return ok_json(x, status, &out);
}

/* ---------------------------------------------------------------- routes */

/* GET /projections, GET /subscriptions[?kind=]: records in name order, paged by after. */
static enum MHD_Result route_list(bx *x) {
    enum MHD_Result mr = MHD_NO;
    evs_consumer_info *page = NULL;
    char *after = NULL, *kind = NULL;
    evs__sb out = {0};
    uint64_t limit = BUS_DEFAULT_PAGE;
    if (q_u64(x, "limit", BUS_MAX_CONSUMER_PAGE, 0, &limit, &mr) ||
        evs__query_text(x->srv, x->c, x->rq->route, "after", EVS_BUS_MAX_NAME, &after, &mr) ||
        (x->rq->area == A_SUBS && evs__query_text(x->srv, x->c, x->rq->route, "kind", 32, &kind, &mr)))
        goto cleanup;
    const char *want = x->rq->area == A_SUBS ? kind : area_kind(x->rq->area);
    if (want && strcmp(want, "projection") != 0 && strcmp(want, "subscription") != 0 && strcmp(want, "group") != 0) {
        mr = fail(x, EVS_HTTP_BAD_REQUEST, NULL, "parameter kind=%.40s: use subscription, projection or group", want);
        goto cleanup;
    }
    if (!(page = calloc(BUS_LIST_CHUNK, sizeof *page))) {
        mr = fail(x, EVS_HTTP_UNAVAILABLE, NULL, "out of memory");
        goto cleanup;
    }
    char cursor[EVS_BUS_MAX_NAME + 1];
    snprintf(cursor, sizeof cursor, "%s", after ? after : "");
    evs__sb_printf(&out, "{\"%s\":[", x->rq->area == A_PROJ     ? "projections"
                                       : x->rq->area == A_GROUPS ? "groups"
                                                                 : "subscriptions");
    uint64_t count = 0;
    size_t n;
    int more = 1;
    char last[EVS_BUS_MAX_NAME + 1] = "";
    while (more && count < limit) {
        int rc = evs_consumer_list(x->bs->bus, cursor[0] ? cursor : NULL, page, BUS_LIST_CHUNK, &n);
        if (rc) {
            mr = fail_lib(x, rc, "list consumers");
            goto cleanup;
        }
        more = n == BUS_LIST_CHUNK;
        for (size_t i = 0; i < n && count < limit; i++) {
            snprintf(cursor, sizeof cursor, "%s", page[i].name);
            if (want && strcmp(page[i].kind, want) != 0) continue;
            run_view v;
            int proj = is_projection(&page[i]);
            if (proj) view_of(x->bs, page[i].name, &v);
            if (count++) evs__sb_add(&out, ",", 1);
            if (!is_group(&page[i]) || group_json(x, &out, page[i].name) != EVS_OK)
                info_json(&out, &page[i], proj ? &v : NULL);
            snprintf(last, sizeof last, "%s", page[i].name);
            if (count == limit && (i + 1 < n || more)) more = 2; /* stopped with records left */
        }
    }
    evs__sb_adds(&out, "],\"next_after\":");
    if (more == 2) evs__sb_json_str(&out, last, strlen(last));
    else evs__sb_adds(&out, "null");
    evs__sb_adds(&out, "}\n");
    mr = ok_json(x, EVS_HTTP_OK, &out);
cleanup:
    free(page);
    free(after);
    free(kind);
    evs__sb_free(&out);
    return mr;
}

/* The source of a PUT/POST: the body, or its "source" member.  0, or -1 after the answer. */
static int take_source(bx *x, json_t **root, const char **src, size_t *n, enum MHD_Result *mr) {
    bus_req *rq = x->rq;
    const char *body = rq->body.p ? rq->body.p : "";
    *root = NULL;
    *src = body;
    *n = rq->body.len;
    if (rq->body_kind == BODY_JSON) {
        json_error_t je;
        *root = json_loadb(body, rq->body.len, JSON_REJECT_DUPLICATES, &je);
        if (!*root) {
            char d[96];
            atomic_fetch_add(&x->srv->m.errors_json, 1);
            snprintf(d, sizeof d, "{\"line\":%d,\"column\":%d,\"offset\":%d}", je.line, je.column, je.position);
            *mr = fail(x, EVS_HTTP_BAD_REQUEST, d, "malformed JSON: line %d, column %d: %s", je.line, je.column,
                       je.text);
            return -1;
        }
        json_t *s = json_is_object(*root) ? json_object_get(*root, "source") : NULL;
        if (!json_is_string(s) || json_object_size(*root) != 1) {
            *mr = fail(x, EVS_HTTP_UNPROCESSABLE, NULL,
                       "expected {\"source\": \"...Lua...\"} and nothing else");
            return -1;
        }
        *src = json_string_value(s);
        *n = json_string_length(s);
        if (*n > BUS_MAX_SOURCE) {
            char d[64];
            snprintf(d, sizeof d, "{\"length\":%zu,\"limit\":%zu}", *n, BUS_MAX_SOURCE);
            *mr = fail(x, EVS_HTTP_TOO_LARGE, d, "Lua source of %zu bytes is over the limit of %zu", *n,
                       BUS_MAX_SOURCE);
            return -1;
        }
    }
    size_t bad;
    if (memchr(*src, 0, *n)) {
        *mr = fail(x, EVS_HTTP_UNPROCESSABLE, NULL, "the Lua source contains a NUL byte");
        return -1;
    }
    if (!evs__utf8_valid(*src, *n, &bad)) {
        char d[48];
        snprintf(d, sizeof d, "{\"offset\":%zu}", bad);
        *mr = fail(x, EVS_HTTP_UNPROCESSABLE, d, "the Lua source is not valid UTF-8 (byte %zu)", bad + 1);
        return -1;
    }
    return 0;
}

/*
 * PUT|POST /projections/N: create, or replace the script of an existing
 * projection.  A replacement keeps the checkpoint, the state and the DLQ
 * (so that parked events can be retried with the fixed script); a script
 * that fails to load leaves the old one running.
 */
static enum MHD_Result route_put(bx *x) {
    enum MHD_Result mr = MHD_NO;
    json_t *root = NULL;
    const char *src;
    size_t n;
    const char *name = x->rq->name;
    evs__bus_srv *bs = x->bs;
    runner *r = NULL;
    int locked = 0, held = 0;
    if (take_source(x, &root, &src, &n, &mr)) goto cleanup;

    pthread_mutex_lock(&bs->admin_mu);
    locked = 1;
    evs_consumer_info info;
    int rc = evs_consumer_get(bs->bus, name, &info);
    int exists = rc == EVS_OK;
    if (rc && rc != EVS_ENOTFOUND) {
        mr = fail_lib(x, rc, "projection");
        goto cleanup;
    }
    if (exists && !is_projection(&info)) {
        mr = fail(x, EVS_HTTP_CONFLICT, NULL, "\"%s\" is a %s; a projection needs another name", name, info.kind);
        goto cleanup;
    }
    if ((r = runner_find(bs, name))) {
        runner_hold(r);
        held = 1;
        evs_projection *old = r->p;
        runner_set(r, NULL, NULL);
        evs_proj_close(old); /* commits; the record and its DLQ stay */
    }
    evs_projection *p = NULL;
    rc = evs_proj_open_lua(bs->bus, name, src, n, NULL, NULL, &p);
    if (rc) {
        char msg[768];
        copy_errmsg(msg, sizeof msg, rc);
        if (r) { /* put the previous script back to work */
            evs_projection *old = NULL;
            int orc = evs_proj_open_stored(bs->bus, name, NULL, &old);
            char oerr[512] = "";
            if (orc) copy_errmsg(oerr, sizeof oerr, orc);
            runner_set(r, old, orc ? oerr : NULL);
            if (old && runner_start_thread(r)) runner_set(r, old, "cannot start the runner thread");
        }
        char detail[64];
        snprintf(detail, sizeof detail, "{\"code\":\"%s\"}", evs_errname(rc));
        mr = fail(x, rc == EVS_EINVAL ? EVS_HTTP_UNPROCESSABLE : rc == EVS_ELOCKED ? EVS_HTTP_CONFLICT
                                                                                    : EVS_HTTP_UNAVAILABLE,
                  detail, "%s", msg);
        goto cleanup;
    }
    if (r) {
        runner_set(r, p, NULL);
        if (runner_start_thread(r)) {
            mr = fail(x, EVS_HTTP_UNAVAILABLE, NULL, "cannot start the runner of \"%s\"", name);
            goto cleanup;
        }
    } else if (!(r = runner_new(bs, name, p, NULL))) {
        evs_proj_close(p);
        mr = fail(x, EVS_HTTP_UNAVAILABLE, NULL, "cannot start the runner of \"%s\"", name);
        goto cleanup;
    } else if ((r = runner_find(bs, name))) { /* runner_new's reference is the list's; this one is ours */
        runner_hold(r);
        held = 1;
    }
    if (held) {
        runner_release(r);
        held = 0;
    }
    pthread_mutex_unlock(&bs->admin_mu);
    locked = 0;
    mr = answer_status(x, exists ? EVS_HTTP_OK : EVS_HTTP_CREATED);
cleanup:
    if (held) runner_release(r);
    if (locked) pthread_mutex_unlock(&bs->admin_mu);
    runner_put(r);
    json_decref(root);
    return mr;
}

/* DELETE /projections/N, /subscriptions/N: the record, its state and its DLQ. */
static enum MHD_Result route_delete(bx *x) {
    evs_consumer_info info;
    enum MHD_Result mr;
    pthread_mutex_lock(&x->bs->admin_mu);
    if (need_consumer(x, &info, &mr)) goto out;
    runner *r = runner_find(x->bs, info.name);
    if (r) {
        runner_retire(r);
        runner_put(r);
    }
    ghandle *gh = group_find(x->bs, info.name);
    if (gh) {
        group_retire(gh);
        group_put(gh);
    }
    int rc = evs_consumer_delete(x->bs->bus, info.name);
    if (rc) {
        mr = fail_lib(x, rc, "delete");
        goto out;
    }
    evs__sb out = {0};
    evs__sb_adds(&out, "{\"deleted\":");
    evs__sb_json_str(&out, info.name, strlen(info.name));
    evs__sb_printf(&out, ",\"kind\":\"%s\"}\n", info.kind);
    mr = ok_json(x, EVS_HTTP_OK, &out);
out:
    pthread_mutex_unlock(&x->bs->admin_mu);
    return mr;
}

/*
 * POST .../pause, resume, reset, rebuild.  A projection run here goes
 * through its handle; any other consumer is not open in this process, so
 * its record is changed directly.
 *   reset (subscription): the next position is ?to= (a position or now; default 1).
 *   reset (projection): start over from ?to= (default 1): a fresh state is
 *     built from there (the current one answers until it catches up) and the
 *     DLQ is emptied.
 *   rebuild (projection): recompute the state from ?from= (default 1) into a
 *     fresh copy, then swap; the DLQ is kept.
 */
static enum MHD_Result route_action(bx *x) {
    evs_consumer_info info;
    enum MHD_Result mr = MHD_NO;
    int op = x->rq->op;
    uint64_t pos = 1;
    if (op == OP_RESET && q_position(x, "to", &pos, &mr)) return mr;
    if (op == OP_REBUILD && q_position(x, "from", &pos, &mr)) return mr;
    if (need_consumer(x, &info, &mr)) return mr;
    int rc = EVS_OK;
    const char *what = op == OP_PAUSE ? "pause" : op == OP_RESUME ? "resume" : op == OP_RESET ? "reset" : "rebuild";
    if (is_group(&info)) {
        /* an open group pauses through its handle; a reset needs it closed */
        pthread_mutex_lock(&x->bs->admin_mu);
        ghandle *gh = group_find(x->bs, info.name);
        if (op == OP_PAUSE || op == OP_RESUME) {
            if (gh && gh->g) rc = op == OP_PAUSE ? evs_group_pause(gh->g) : evs_group_resume(gh->g);
            else rc = evs_consumer_set_status(x->bs->bus, info.name, op == OP_PAUSE ? EVS_CONSUMER_PAUSED : EVS_CONSUMER_ACTIVE);
        } else {
            if (gh) group_retire(gh);
            rc = evs_consumer_set_position(x->bs->bus, info.name, pos);
        }
        if (rc) mr = fail_lib(x, rc, what);
        pthread_mutex_unlock(&x->bs->admin_mu);
        group_put(gh);
        return rc ? mr : answer_status(x, EVS_HTTP_OK);
    }
    runner *r = is_projection(&info) ? runner_find(x->bs, info.name) : NULL;
    if (r) runner_hold(r);
    if (r && r->p) {
        switch (op) {
        case OP_PAUSE: rc = evs_proj_pause(r->p); break;
        case OP_RESUME: rc = evs_proj_resume(r->p); break;
        case OP_REBUILD: rc = evs_proj_rebuild(r->p, pos); break;
        default:
            if (!(rc = evs_proj_rebuild(r->p, pos))) rc = evs_dlq_purge(x->bs->bus, info.name, NULL);
            break;
        }
    } else if (op == OP_PAUSE || op == OP_RESUME) {
        rc = evs_consumer_set_status(x->bs->bus, info.name, op == OP_PAUSE ? EVS_CONSUMER_PAUSED : EVS_CONSUMER_ACTIVE);
    } else if (!is_projection(&info)) {
        rc = evs_consumer_set_position(x->bs->bus, info.name, pos);
    } else {
        int had = r != NULL;
        if (r) runner_release(r);
        runner_put(r);
        return fail(x, EVS_HTTP_CONFLICT, NULL, "projection \"%s\" is not run by this server (%s): it cannot %s here",
                    info.name, had ? "its script cannot run" : "no stored Lua script", what);
    }
    if (r) runner_release(r);
    runner_put(r);
    if (rc) return fail_lib(x, rc, what);
    return answer_status(x, EVS_HTTP_OK);
}

/* GET /projections/N/state[/PARTITION]: the committed state, as stored. */
static enum MHD_Result route_state(bx *x) {
    evs_consumer_info info;
    enum MHD_Result mr;
    if (need_consumer(x, &info, &mr)) return mr;
    const char *part = x->rq->op == OP_PSTATE ? x->rq->part : NULL;
    char *js = NULL;
    size_t len = 0;
    int rc = evs_proj_get_state(x->bs->bus, info.name, part, &js, &len);
    if (rc == EVS_ENOTFOUND) {
        if (part)
            return fail(x, EVS_HTTP_NOT_FOUND, NULL, "projection \"%s\" has no partition \"%s\"", info.name, part);
        /* a hint when the projection is partitioned */
        evs_partition_name one;
        size_t n = 0;
        if (evs_proj_list_partitions(x->bs->bus, info.name, NULL, &one, 1, &n) == EVS_OK && n)
            return fail(x, EVS_HTTP_NOT_FOUND, NULL,
                        "projection \"%s\" is partitioned: ask for /projections/{name}/state/{partition}", info.name);
        return fail(x, EVS_HTTP_NOT_FOUND, NULL, "projection \"%s\" has no state yet (no event applied)", info.name);
    }
    if (rc) return fail_lib(x, rc, "state");
    evs__sb out = {0};
    evs__sb_add(&out, js, len);
    evs__sb_adds(&out, "\n");
    free(js);
    return ok_json(x, EVS_HTTP_OK, &out);
}

/* GET /projections/N/partitions?after=&limit= */
static enum MHD_Result route_partitions(bx *x) {
    evs_consumer_info info;
    enum MHD_Result mr = MHD_NO;
    char *after = NULL;
    evs_partition_name *parts = NULL;
    evs__sb out = {0};
    uint64_t limit = BUS_DEFAULT_PAGE;
    if (q_u64(x, "limit", BUS_MAX_PARTITION_PAGE, 0, &limit, &mr) ||
        evs__query_text(x->srv, x->c, x->rq->route, "after", EVS_MAX_STREAM_NAME, &after, &mr) ||
        need_consumer(x, &info, &mr))
        goto cleanup;
    if (!(parts = malloc((size_t)limit * sizeof *parts))) {
        mr = fail(x, EVS_HTTP_UNAVAILABLE, NULL, "out of memory");
        goto cleanup;
    }
    size_t n = 0;
    int rc = evs_proj_list_partitions(x->bs->bus, info.name, after, parts, (size_t)limit, &n);
    if (rc) {
        mr = fail_lib(x, rc, "partitions");
        goto cleanup;
    }
    evs__sb_adds(&out, "{\"partitions\":[");
    for (size_t i = 0; i < n; i++) {
        if (i) evs__sb_add(&out, ",", 1);
        evs__sb_json_str(&out, parts[i].name, strlen(parts[i].name));
    }
    evs__sb_adds(&out, "],\"next_after\":");
    if (n == limit) evs__sb_json_str(&out, parts[n - 1].name, strlen(parts[n - 1].name));
    else evs__sb_adds(&out, "null");
    evs__sb_adds(&out, "}\n");
    mr = ok_json(x, EVS_HTTP_OK, &out);
cleanup:
    free(after);
    free(parts);
    evs__sb_free(&out);
    return mr;
}

/* The DLQ id segment: a global position.  0, or -1 after a 400. */
static int dlq_id(bx *x, uint64_t *pos, enum MHD_Result *mr) {
    int rc = evs__parse_u64(x->rq->id, UINT64_MAX - 1, pos);
    if (rc || *pos == 0) {
        *mr = fail(x, EVS_HTTP_BAD_REQUEST, NULL,
                   "DLQ entry \"%.31s\" is not a global position (1, 2, ...)%s", x->rq->id,
                   rc == -2 ? ": negative" : rc == -3 ? ": too large" : "");
        return -1;
    }
    return 0;
}

/* GET .../dlq?after=&limit= (parameters checked by the caller) */
static enum MHD_Result route_dlq_list(bx *x, const evs_consumer_info *info, uint64_t after, uint64_t limit) {
    enum MHD_Result mr = MHD_NO;
    uint64_t depth = 0;
    evs__sb out = {0};
    evs_dlq_entry *e = malloc((size_t)limit * sizeof *e);
    if (!e) return fail(x, EVS_HTTP_UNAVAILABLE, NULL, "out of memory");
    size_t n = 0;
    int rc = evs_dlq_list(x->bs->bus, info->name, after, e, (size_t)limit, &n);
    if (!rc) rc = evs_dlq_depth(x->bs->bus, info->name, &depth);
    if (rc) {
        mr = fail_lib(x, rc, "DLQ");
        goto cleanup;
    }
    evs__sb_adds(&out, "{\"consumer\":");
    evs__sb_json_str(&out, info->name, strlen(info->name));
    evs__sb_printf(&out, ",\"depth\":%llu,\"entries\":[", (unsigned long long)depth);
    for (size_t i = 0; i < n; i++) {
        if (i) evs__sb_add(&out, ",", 1);
        entry_json(&out, &e[i]);
    }
    evs__sb_adds(&out, "],\"next_after\":");
    if (n == limit) evs__sb_printf(&out, "%llu", (unsigned long long)e[n - 1].position);
    else evs__sb_adds(&out, "null");
    evs__sb_adds(&out, "}\n");
    mr = ok_json(x, EVS_HTTP_OK, &out);
cleanup:
    free(e);
    evs__sb_free(&out);
    return mr;
}

/* GET .../dlq/ID: the entry and the parked event itself. */
static enum MHD_Result route_dlq_show(bx *x, const evs_consumer_info *info, uint64_t pos) {
    evs_dlq_entry e;
    int rc = evs_dlq_get(x->bs->bus, info->name, pos, &e);
    if (rc == EVS_ENOTFOUND)
        return fail(x, EVS_HTTP_NOT_FOUND, NULL, "\"%s\" has no DLQ entry at position %llu", info->name,
                    (unsigned long long)pos);
    if (rc) return fail_lib(x, rc, "DLQ");
    evs__sb out = {0};
    entry_json(&out, &e);
    out.len--; /* reopen the object for the event */
    evs__sb_adds(&out, ",\"event\":");
    evs_reader *r = NULL;
    const evs_event *ev;
    char *js = NULL;
    size_t jn;
    if (evs_read_all(x->srv->store, pos, EVS_FORWARD, NULL, 1, &r) == EVS_OK && evs_reader_next(r, &ev) == EVS_OK &&
        ev->global_position == pos && evs_event_to_json(ev, &js, &jn) == EVS_OK)
        evs__sb_add(&out, js, jn);
    else
        evs__sb_adds(&out, "null");
    free(js);
    evs_reader_close(r);
    evs__sb_adds(&out, "}\n");
    return ok_json(x, EVS_HTTP_OK, &out);
}

/* POST .../dlq/ID/retry and .../dlq/retry: deliver parked events again to the handler. */
static enum MHD_Result route_dlq_retry(bx *x, const evs_consumer_info *info, uint64_t pos) {
    evs_dlq_entry e;
    int rc;
    if (pos) {
        if ((rc = evs_dlq_get(x->bs->bus, info->name, pos, &e)) == EVS_ENOTFOUND)
            return fail(x, EVS_HTTP_NOT_FOUND, NULL, "\"%s\" has no DLQ entry at position %llu", info->name,
                        (unsigned long long)pos);
        if (rc) return fail_lib(x, rc, "DLQ");
    }
    if (is_group(info)) {
        /* through the group: the event is delivered again to a consumer, and
           its entry stays until that delivery is acked or skipped */
        size_t queued = 0;
        ghandle *gh = NULL;
        pthread_mutex_lock(&x->bs->admin_mu);
        rc = group_open_locked(x->bs, info->name, &gh);
        if (!rc) rc = pos ? evs_group_dlq_retry(gh->g, pos) : evs_group_dlq_retry_all(gh->g, &queued);
        enum MHD_Result mr = MHD_NO;
        if (rc) mr = fail_lib(x, rc, "retry");
        pthread_mutex_unlock(&x->bs->admin_mu);
        group_put(gh);
        if (rc) return mr;
        evs__sb out = {0};
        if (pos) evs__sb_printf(&out, "{\"position\":%llu,\"queued\":true}\n", (unsigned long long)pos);
        else evs__sb_printf(&out, "{\"queued\":%zu}\n", queued);
        return ok_json(x, EVS_HTTP_OK, &out);
    }
    runner *r = is_projection(info) ? runner_find(x->bs, info->name) : NULL;
    if (r) runner_hold(r);
    if (!r || !r->p) {
        if (r) runner_release(r);
        runner_put(r);
        return fail(x, EVS_HTTP_CONFLICT, NULL,
                    "%s \"%s\" has no handler in this server: retry it where it runs (evs_sub_dlq_retry)",
                    info->kind, info->name);
    }
    /* a rebuild replays into a fresh copy: a retried event would be applied there twice */
    evs_proj_status st;
    if (evs_proj_get_status(r->p, &st) == EVS_OK && st.rebuilding) {
        runner_release(r);
        runner_put(r);
        return fail(x, EVS_HTTP_CONFLICT, NULL, "projection \"%s\" is rebuilding: retry after the rebuild", info->name);
    }
    size_t released = 0, still = 0;
    char msg[768] = "";
    if (pos) rc = evs_proj_dlq_retry(r->p, pos);
    else rc = evs_proj_dlq_retry_all(r->p, &released, &still);
    if (rc) copy_errmsg(msg, sizeof msg, rc);
    runner_release(r);
    runner_put(r);
    evs__sb out = {0};
    if (!pos && !rc) {
        evs__sb_printf(&out, "{\"released\":%zu,\"still_parked\":%zu}\n", released, still);
        return ok_json(x, EVS_HTTP_OK, &out);
    }
    if (rc == EVS_OK) {
        evs__sb_printf(&out, "{\"position\":%llu,\"released\":true}\n", (unsigned long long)pos);
        return ok_json(x, EVS_HTTP_OK, &out);
    }
    if (rc == EVS_EFAILED) { /* the handler failed again: the entry stays, updated */
        if (evs_dlq_get(x->bs->bus, info->name, pos, &e) == EVS_OK) entry_json(&out, &e);
        else evs__sb_adds(&out, "null");
        size_t dl;
        char *d = evs__sb_take(&out, &dl);
        enum MHD_Result mr = fail(x, EVS_HTTP_UNPROCESSABLE, d ? d : "null", "%s", msg);
        free(d);
        return mr;
    }
    return fail_code(x, rc, "retry", msg);
}

/* ----------------------------------------------------------- group routes */

static void group_extra_json(evs__sb *b, const evs_group_info *gi, ghandle *gh) {
    static const char *const backoffs[] = {"exponential", "linear", "fixed"};
    const evs_retry_policy *rp = &gi->retry;
    evs__sb_printf(b,
                   ",\"strategy\":\"%s\",\"ack_timeout_ms\":%lld,\"max_in_flight\":%u,\"buffer_size\":%u,"
                   "\"retry\":{\"backoff\":\"%s\",\"max_retries\":%u,\"initial_delay_ms\":%lld,\"max_delay_ms\":%lld,"
                   "\"jitter\":%g},\"on_failure\":\"%s\",\"per_stream_order\":%s,\"dlq_max_count\":%llu,\"dlq_max_age_ms\":%lld,"
                   "\"checkpoint_every\":%u,\"checkpoint_ms\":%u,\"skipped\":%llu,\"timeouts\":%llu",
                   evs_group_strategy_name(gi->strategy), (long long)(gi->ack_timeout_ns / 1000000), gi->max_in_flight,
                   gi->buffer_size, (unsigned)rp->backoff < 3 ? backoffs[rp->backoff] : "unknown", rp->max_retries,
                   (long long)(rp->initial_delay_ns / 1000000), (long long)(rp->max_delay_ns / 1000000), rp->jitter,
                   gi->on_failure == EVS_ON_FAILURE_STOP ? "stop" : "park", gi->per_stream_order ? "true" : "false",
                   (unsigned long long)gi->dlq_max_count,
                   (long long)(gi->dlq_max_age_ns / 1000000), gi->checkpoint_every, gi->checkpoint_ms,
                   (unsigned long long)gi->skipped, (unsigned long long)gi->timeouts);
    evs__sb_printf(b, ",\"open\":%s,\"in_flight\":%llu,\"buffered\":%llu,\"consumers\":[", gh && gh->g ? "true" : "false",
                   (unsigned long long)gi->in_flight, (unsigned long long)gi->buffered);
    if (gh && gh->g) {
        evs_group_member_info mi[64];
        size_t n = 0;
        int64_t now = evs__mono_ns();
        if (evs_group_list_members(gh->g, mi, 64, &n) != EVS_OK) n = 0;
        pthread_mutex_lock(&gh->mu);
        for (size_t i = 0; i < n; i++) {
            gmember *m = gh->members;
            while (m && strcmp(m->name, mi[i].name) != 0) m = m->next;
            evs__sb_adds(b, i ? ",{\"name\":" : "{\"name\":");
            evs__sb_json_str(b, mi[i].name, strlen(mi[i].name));
            evs__sb_printf(b, ",\"in_flight\":%u,\"delivered\":%llu,\"acked\":%llu,\"nacked\":%llu,\"timeouts\":%llu",
                           mi[i].in_flight, (unsigned long long)mi[i].delivered, (unsigned long long)mi[i].acked,
                           (unsigned long long)mi[i].nacked, (unsigned long long)mi[i].timeouts);
            if (m) evs__sb_printf(b, ",\"idle_ms\":%lld", m->busy ? 0LL : (long long)((now - m->last_seen) / 1000000));
            evs__sb_adds(b, "}");
        }
        pthread_mutex_unlock(&gh->mu);
    }
    evs__sb_adds(b, "]");
}

/* Reading a JSON settings object: the first problem wins, named by its field. */
typedef struct jread {
    char why[256];
    const char *field;
} jread;

static int jfail(jread *j, const char *field, const char *fmt, ...) EVS_PRINTF(3, 4);
static int jfail(jread *j, const char *field, const char *fmt, ...) {
    if (j->field) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->why, sizeof j->why, fmt, ap);
    va_end(ap);
    j->field = field;
    return -1;
}

/* An integer member in min..max (absent: *out unchanged). */
static int jint(jread *j, json_t *o, const char *key, long long min, long long max, long long *out) {
    json_t *v = json_object_get(o, key);
    if (!v) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
        return jfail(j, key, "%s must be an integer in %lld..%lld", key, min, max);
    *out = json_integer_value(v);
    return 0;
}

static int jstr(jread *j, json_t *o, const char *key, size_t max, const char **out) {
    json_t *v = json_object_get(o, key);
    if (!v) return 0;
    if (!json_is_string(v) || !json_string_length(v) || json_string_length(v) > max ||
        strlen(json_string_value(v)) != json_string_length(v))
        return jfail(j, key, "%s must be a string of 1..%zu bytes", key, max);
    *out = json_string_value(v);
    return 0;
}

static int jkeys(jread *j, json_t *o, const char *where, const char *const *keys) {
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        size_t i = 0;
        while (keys[i] && strcmp(keys[i], k) != 0) i++;
        if (!keys[i]) return jfail(j, k, "unknown field \"%.60s\" in %s", k, where);
    }
    return 0;
}

/* What a group's settings point into: the JSON document and the type list. */
typedef struct gcfg {
    evs_group_config c;
    const char *types[EVS_SRV_MAX_FILTER_TYPES];
    evs_uuid corr;
} gcfg;

/* Settings from a PUT body (see docs/http-api.md for the fields).  0, or -1 with j filled. */
static int group_config_parse(json_t *o, const char *name, gcfg *g, jread *j) {
    static const char *const top[] = {"owner", "filter", "tag", "from", "strategy", "ack_timeout_ms",
                                      "max_in_flight", "buffer_size", "retry", "on_failure", "per_stream_order",
                                      "dlq_max_count", "dlq_max_age_ms", "checkpoint_every", "checkpoint_ms", NULL};
    static const char *const fkeys[] = {"event_types", "stream_type", "stream_prefix", "correlation_id", NULL};
    static const char *const rkeys[] = {"backoff", "max_retries", "initial_delay_ms", "max_delay_ms", "jitter", NULL};
    evs_group_config *c = &g->c;
    evs_group_config_init(c);
    c->name = name;
    if (!json_is_object(o)) return jfail(j, "", "expected a JSON object of group settings");
    if (jkeys(j, o, "the settings", top)) return -1;
    const char *s = NULL;
    long long v;
    if (jstr(j, o, "owner", 255, &c->owner) || jstr(j, o, "tag", EVS_MAX_TAG_BYTES, &c->tag)) return -1;
    json_t *f = json_object_get(o, "filter");
    if (f) {
        if (!json_is_object(f)) return jfail(j, "filter", "filter must be an object");
        if (jkeys(j, f, "filter", fkeys)) return -1;
        json_t *t = json_object_get(f, "event_types");
        if (t) {
            if (!json_is_array(t) || json_array_size(t) > EVS_SRV_MAX_FILTER_TYPES)
                return jfail(j, "event_types", "filter.event_types must be an array of at most %u names",
                             EVS_SRV_MAX_FILTER_TYPES);
            for (size_t i = 0; i < json_array_size(t); i++) {
                json_t *e = json_array_get(t, i);
                if (!json_is_string(e) || !json_string_length(e) || json_string_length(e) > EVS_MAX_TYPE_NAME)
                    return jfail(j, "event_types", "filter.event_types[%zu] must be a name of 1..%u bytes", i,
                                 EVS_MAX_TYPE_NAME);
                g->types[i] = json_string_value(e);
            }
            c->filter.event_types = g->types;
            c->filter.n_event_types = json_array_size(t);
        }
        if (jstr(j, f, "stream_type", EVS_MAX_TYPE_NAME, &c->filter.stream_type) ||
            jstr(j, f, "stream_prefix", EVS_MAX_STREAM_NAME, &c->filter.stream_prefix))
            return -1;
        s = NULL;
        if (jstr(j, f, "correlation_id", 64, &s)) return -1;
        if (s) {
            if (evs_uuid_parse(s, strlen(s), &g->corr)) return jfail(j, "correlation_id", "filter.correlation_id is not a UUID");
            c->filter.correlation_id = &g->corr;
        }
    }
    json_t *from = json_object_get(o, "from");
    if (from) {
        if (json_is_string(from) && strcmp(json_string_value(from), "start") == 0) c->from = EVS_SUB_FROM_START;
        else if (json_is_string(from) && strcmp(json_string_value(from), "now") == 0) c->from = EVS_SUB_FROM_NOW;
        else if (json_is_integer(from) && json_integer_value(from) >= 1) c->from = (uint64_t)json_integer_value(from);
        else return jfail(j, "from", "from must be \"start\", \"now\" or a global position (1, 2, ...)");
    }
    s = NULL;
    if (jstr(j, o, "strategy", 32, &s)) return -1;
    if (s && evs_group_strategy_parse(s, &c->strategy))
        return jfail(j, "strategy", "strategy must be \"round_robin\" or \"pinned\"");
    v = c->ack_timeout_ns / 1000000;
    if (jint(j, o, "ack_timeout_ms", 1, 86400000, &v)) return -1;
    c->ack_timeout_ns = v * 1000000;
    v = c->max_in_flight ? c->max_in_flight : 10;
    if (jint(j, o, "max_in_flight", 1, EVS_GROUP_MAX_IN_FLIGHT, &v)) return -1;
    c->max_in_flight = (uint32_t)v;
    v = c->buffer_size ? c->buffer_size : EVS_BUS_MAX_PAGE;
    if (jint(j, o, "buffer_size", 1, EVS_BUS_MAX_PAGE, &v)) return -1;
    c->buffer_size = (uint32_t)v;
    json_t *r = json_object_get(o, "retry");
    if (r) {
        if (!json_is_object(r)) return jfail(j, "retry", "retry must be an object");
        if (jkeys(j, r, "retry", rkeys)) return -1;
        s = NULL;
        if (jstr(j, r, "backoff", 16, &s)) return -1;
        if (s) {
            if (strcmp(s, "exponential") == 0) c->retry.backoff = EVS_BACKOFF_EXPONENTIAL;
            else if (strcmp(s, "linear") == 0) c->retry.backoff = EVS_BACKOFF_LINEAR;
            else if (strcmp(s, "fixed") == 0) c->retry.backoff = EVS_BACKOFF_FIXED;
            else return jfail(j, "backoff", "retry.backoff must be \"exponential\", \"linear\" or \"fixed\"");
        }
        v = c->retry.max_retries;
        if (jint(j, r, "max_retries", 0, 1000, &v)) return -1;
        c->retry.max_retries = (uint32_t)v;
        v = c->retry.initial_delay_ns / 1000000;
        if (jint(j, r, "initial_delay_ms", 0, 86400000, &v)) return -1;
        c->retry.initial_delay_ns = v * 1000000;
        v = c->retry.max_delay_ns / 1000000;
        if (jint(j, r, "max_delay_ms", 0, 86400000, &v)) return -1;
        c->retry.max_delay_ns = v * 1000000;
        json_t *jt = json_object_get(r, "jitter");
        if (jt) {
            if (!json_is_number(jt) || json_number_value(jt) < 0 || json_number_value(jt) > 1)
                return jfail(j, "jitter", "retry.jitter must be a number in 0..1");
            c->retry.jitter = json_number_value(jt);
        }
    }
    s = NULL;
    if (jstr(j, o, "on_failure", 16, &s)) return -1;
    if (s) {
        if (strcmp(s, "park") == 0) c->on_failure = EVS_ON_FAILURE_PARK;
        else if (strcmp(s, "stop") == 0) c->on_failure = EVS_ON_FAILURE_STOP;
        else return jfail(j, "on_failure", "on_failure must be \"park\" or \"stop\"");
    }
    json_t *pso = json_object_get(o, "per_stream_order");
    if (pso && !json_is_boolean(pso)) return jfail(j, "per_stream_order", "per_stream_order must be true or false");
    c->per_stream_order = pso && json_is_true(pso);
    v = 0;
    if (jint(j, o, "dlq_max_count", 0, INT64_MAX, &v)) return -1;
    c->dlq_max_count = (uint64_t)v;
    v = 0;
    if (jint(j, o, "dlq_max_age_ms", 0, INT64_MAX / 1000000, &v)) return -1;
    c->dlq_max_age_ns = v * 1000000;
    v = c->checkpoint_every ? c->checkpoint_every : 1000;
    if (jint(j, o, "checkpoint_every", 1, 1000000, &v)) return -1;
    c->checkpoint_every = (uint32_t)v;
    v = c->checkpoint_ms ? c->checkpoint_ms : 1000;
    if (jint(j, o, "checkpoint_ms", 1, 3600000, &v)) return -1;
    c->checkpoint_ms = (uint32_t)v;
    return 0;
}

/* The JSON body of the request: 0 with *root, or -1 after a 400 with line and column. */
static int json_body(bx *x, json_t **root, enum MHD_Result *mr) {
    json_error_t je;
    *root = json_loadb(x->rq->body.p ? x->rq->body.p : "", x->rq->body.len, JSON_REJECT_DUPLICATES, &je);
    if (*root) return 0;
    char d[96];
    atomic_fetch_add(&x->srv->m.errors_json, 1);
    snprintf(d, sizeof d, "{\"line\":%d,\"column\":%d,\"offset\":%d}", je.line, je.column, je.position);
    *mr = fail(x, EVS_HTTP_BAD_REQUEST, d, "malformed JSON: line %d, column %d: %s", je.line, je.column, je.text);
    return -1;
}

/*
 * PUT|POST /groups/N: create a group, or replace the settings of one
 * (checkpoint, counters and DLQ are kept).  Replacing closes the open
 * group: its consumers are released and their unacked deliveries are
 * handed out again when they come back.
 */
static enum MHD_Result route_group_put(bx *x) {
    enum MHD_Result mr = MHD_NO;
    json_t *root = NULL;
    gcfg g;
    jread j;
    memset(&j, 0, sizeof j);
    if (json_body(x, &root, &mr)) return mr;
    if (group_config_parse(root, x->rq->name, &g, &j)) {
        char d[128];
        snprintf(d, sizeof d, "{\"field\":\"%.60s\"}", j.field);
        mr = fail(x, EVS_HTTP_UNPROCESSABLE, d, "%s", j.why);
        json_decref(root);
        return mr;
    }
    evs__bus_srv *bs = x->bs;
    pthread_mutex_lock(&bs->admin_mu);
    evs_consumer_info info;
    int rc = evs_consumer_get(bs->bus, x->rq->name, &info);
    int exists = rc == EVS_OK;
    if (rc && rc != EVS_ENOTFOUND) {
        mr = fail_lib(x, rc, "group");
    } else if (exists && !is_group(&info)) {
        mr = fail(x, EVS_HTTP_CONFLICT, NULL, "\"%s\" is a %s; a group needs another name", x->rq->name, info.kind);
    } else {
        if (exists) {
            ghandle *gh = group_find(bs, x->rq->name);
            if (gh) {
                group_retire(gh);
                group_put(gh);
            }
            rc = evs_group_update(bs->bus, &g.c);
        } else {
            rc = evs_group_create(bs->bus, &g.c);
        }
        if (rc) mr = fail_lib(x, rc, exists ? "group update" : "group create");
    }
    pthread_mutex_unlock(&bs->admin_mu);
    json_decref(root);
    if (rc || (exists && !is_group(&info))) return mr;
    return answer_status(x, exists ? EVS_HTTP_OK : EVS_HTTP_CREATED);
}

/* ack|nack body: {"consumer": C, "position": P, "attempt": A[, "action": ..., "reason": ...]}. */
static enum MHD_Result route_group_answer(bx *x) {
    enum MHD_Result mr = MHD_NO;
    json_t *root = NULL;
    int nack = x->rq->op == OP_NACK;
    static const char *const akeys[] = {"consumer", "position", "attempt", NULL};
    static const char *const nkeys[] = {"consumer", "position", "attempt", "action", "reason", NULL};
    jread j;
    memset(&j, 0, sizeof j);
    const char *consumer = NULL, *action = NULL, *reason = NULL;
    long long pos = 0, attempt = 0;
    if (json_body(x, &root, &mr)) return mr;
    if (!json_is_object(root)) jfail(&j, "", "expected an object {\"consumer\", \"position\", \"attempt\"}");
    else if (!jkeys(&j, root, "the answer", nack ? nkeys : akeys) &&
             !jstr(&j, root, "consumer", EVS_BUS_MAX_NAME, &consumer) &&
             !jint(&j, root, "position", 1, INT64_MAX, &pos) && !jint(&j, root, "attempt", 1, UINT32_MAX, &attempt) &&
             !jstr(&j, root, "action", 16, &action) && !jstr(&j, root, "reason", 500, &reason)) {
        if (!consumer) jfail(&j, "consumer", "consumer is required");
        else if (!pos) jfail(&j, "position", "position is required");
        else if (!attempt) jfail(&j, "attempt", "attempt is required");
    }
    evs_nack_action act = EVS_NACK_RETRY;
    if (!j.field && action) {
        if (strcmp(action, "retry") == 0) act = EVS_NACK_RETRY;
        else if (strcmp(action, "park") == 0) act = EVS_NACK_PARK;
        else if (strcmp(action, "skip") == 0) act = EVS_NACK_SKIP;
        else jfail(&j, "action", "action must be \"retry\", \"park\" or \"skip\"");
    }
    if (j.field) {
        char d[128];
        snprintf(d, sizeof d, "{\"field\":\"%.60s\"}", j.field);
        mr = fail(x, EVS_HTTP_UNPROCESSABLE, d, "%s", j.why);
        goto cleanup;
    }
    evs_consumer_info info;
    if (need_consumer(x, &info, &mr)) goto cleanup;
    ghandle *gh = group_find(x->bs, info.name);
    if (!gh) {
        mr = fail(x, EVS_HTTP_CONFLICT, NULL,
                  "group \"%s\" has no open deliveries (it was closed or the server restarted): ask again with next",
                  info.name);
        goto cleanup;
    }
    gmember *m;
    char msg[512];
    int rc = member_acquire(gh, consumer, 0, &m, msg, sizeof msg);
    if (rc) {
        group_put(gh);
        mr = fail(x, rc == EVS_ENOTFOUND ? EVS_HTTP_CONFLICT : lib_status(rc), NULL, "%s", msg);
        goto cleanup;
    }
    evs_delivery_id id = {(uint64_t)pos, (uint32_t)attempt};
    rc = nack ? evs_group_nack(m->m, id, act, reason) : evs_group_ack(m->m, id);
    if (rc) copy_errmsg(msg, sizeof msg, rc);
    member_release(gh, m);
    group_put(gh);
    if (rc) {
        mr = fail_code(x, rc, nack ? "nack" : "ack", msg);
        goto cleanup;
    }
    evs__sb out = {0};
    evs__sb_printf(&out, "{\"%s\":{\"position\":%lld,\"attempt\":%lld}", nack ? "nacked" : "acked", pos, attempt);
    if (nack) evs__sb_printf(&out, ",\"action\":\"%s\"", act == EVS_NACK_PARK ? "park" : act == EVS_NACK_SKIP ? "skip" : "retry");
    evs__sb_adds(&out, "}\n");
    mr = ok_json(x, EVS_HTTP_OK, &out);
cleanup:
    json_decref(root);
    return mr;
}

/* The long-poll thread: wait for a delivery, then resume the connection. */
static void *poll_main(void *arg) {
    bus_req *rq = arg;
    evs_delivery *d = NULL;
    rq->job_rc = evs_group_next(rq->job_m->m, rq->timeout_ms, &d);
    if (rq->job_rc) copy_errmsg(rq->job_msg, sizeof rq->job_msg, rq->job_rc);
    rq->job_d = d;
    member_release(rq->job_gh, rq->job_m);
    rq->job_m = NULL;
    struct MHD_Connection *c = rq->conn;
    evs__bus_srv *bs = rq->bs;
    atomic_store_explicit(&rq->job, JOB_DONE, memory_order_release);
    MHD_resume_connection(c); /* rq may be gone from here on */
    atomic_fetch_sub(&bs->polls, 1);
    return NULL;
}

/* POST /groups/N/next?consumer=&timeout_ms=: start the long-poll (the answer comes in route_next_done). */
static enum MHD_Result route_next(bx *x) {
    enum MHD_Result mr = MHD_NO;
    char *consumer = NULL;
    uint64_t timeout = GROUP_DEFAULT_TIMEOUT_MS;
    evs_consumer_info info;
    ghandle *gh = NULL;
    bus_req *rq = x->rq;
    if (evs__query_text(x->srv, x->c, rq->route, "consumer", EVS_BUS_MAX_NAME, &consumer, &mr) ||
        q_u64(x, "timeout_ms", GROUP_MAX_TIMEOUT_MS, 1, &timeout, &mr))
        goto cleanup;
    if (!consumer || !*consumer) {
        mr = fail(x, EVS_HTTP_BAD_REQUEST, NULL, "parameter consumer (the consumer's name, 1..%u bytes) is required",
                  EVS_BUS_MAX_NAME);
        goto cleanup;
    }
    for (const char *p = consumer; *p; p++)
        if ((unsigned char)*p < 0x20) {
            mr = fail(x, EVS_HTTP_BAD_REQUEST, NULL, "parameter consumer contains a control character");
            goto cleanup;
        }
    if (need_consumer(x, &info, &mr)) goto cleanup;
    int rc = group_open(x->bs, info.name, &gh);
    if (rc) {
        mr = fail_lib(x, rc, "open group");
        goto cleanup;
    }
    if (atomic_fetch_add(&x->bs->polls, 1) >= GROUP_MAX_POLLS) {
        atomic_fetch_sub(&x->bs->polls, 1);
        mr = fail(x, EVS_HTTP_UNAVAILABLE, NULL, "%d long-polls are waiting already; try again", GROUP_MAX_POLLS);
        goto cleanup;
    }
    char msg[512];
    if ((rc = member_acquire(gh, consumer, 1, &rq->job_m, msg, sizeof msg))) {
        atomic_fetch_sub(&x->bs->polls, 1);
        mr = fail(x, rc == EVS_ELIMIT ? EVS_HTTP_CONFLICT : lib_status(rc), NULL, "%s", msg);
        goto cleanup;
    }
    rq->job_gh = gh;
    gh = NULL;
    rq->timeout_ms = (int)timeout;
    rq->conn = x->c;
    rq->bs = x->bs;
    snprintf(rq->part, sizeof rq->part, "%s", consumer);
    pthread_attr_t a;
    pthread_t t;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&a, 256 << 10);
    atomic_store(&rq->job, JOB_RUNNING);
    MHD_suspend_connection(x->c);
    rc = pthread_create(&t, &a, poll_main, rq);
    pthread_attr_destroy(&a);
    if (rc) {
        atomic_store(&rq->job, JOB_NONE);
        MHD_resume_connection(x->c);
        member_release(rq->job_gh, rq->job_m);
        rq->job_m = NULL;
        atomic_fetch_sub(&x->bs->polls, 1);
        mr = fail(x, EVS_HTTP_UNAVAILABLE, NULL, "cannot start a long-poll thread");
        goto cleanup;
    }
    mr = MHD_YES;
cleanup:
    group_put(gh);
    free(consumer);
    return mr;
}

/* The resumed long-poll: one delivery, or none with the reason. */
static enum MHD_Result route_next_done(bx *x) {
    bus_req *rq = x->rq;
    evs__sb out = {0};
    int rc = rq->job_rc;
    if (rc == EVS_OK) {
        evs_delivery *d = rq->job_d;
        char *js = NULL;
        size_t jn;
        int jrc = evs_event_to_json(&d->event, &js, &jn);
        if (jrc) return fail_lib(x, jrc, "render the delivery");
        evs__sb_adds(&out, "{\"consumer\":");
        evs__sb_json_str(&out, rq->part, strlen(rq->part));
        evs__sb_printf(&out, ",\"delivery\":{\"position\":%llu,\"attempt\":%u},\"event\":",
                       (unsigned long long)d->id.position, d->id.attempt);
        evs__sb_add(&out, js, jn);
        evs__sb_adds(&out, "}\n");
        free(js);
        return ok_json(x, EVS_HTTP_OK, &out);
    }
    if (rc == EVS_ETIMEDOUT) { /* nothing for this consumer in time: an answer, not an error */
        evs__sb_adds(&out, "{\"consumer\":");
        evs__sb_json_str(&out, rq->part, strlen(rq->part));
        evs__sb_adds(&out, ",\"delivery\":null,\"event\":null,\"reason\":");
        evs__sb_json_str(&out, rq->job_msg, strlen(rq->job_msg));
        evs__sb_adds(&out, "}\n");
        return ok_json(x, EVS_HTTP_OK, &out);
    }
    if (rc == EVS_EFAILED) return fail_code(x, rc, "next", rq->job_msg);
    if (rc == EVS_ECLOSED)
        return fail(x, EVS_HTTP_UNAVAILABLE, NULL, "next: group \"%s\" was closed (updated, reset, deleted, or the "
                                                   "server is stopping): ask again", rq->name);
    return fail_code(x, rc, "next", rq->job_msg);
}

/* DELETE /groups/N/consumers/C: the consumer leaves now. */
static enum MHD_Result route_leave(bx *x) {
    evs_consumer_info info;
    enum MHD_Result mr;
    if (need_consumer(x, &info, &mr)) return mr;
    /* under admin_mu: closing the group (which frees members) waits for us */
    pthread_mutex_lock(&x->bs->admin_mu);
    ghandle *gh = group_find(x->bs, info.name);
    int rc = gh ? member_remove(gh, x->rq->part) : EVS_ENOTFOUND;
    pthread_mutex_unlock(&x->bs->admin_mu);
    group_put(gh);
    if (rc) return fail(x, EVS_HTTP_NOT_FOUND, NULL, "consumer \"%s\" is not connected to group \"%s\"", x->rq->part, info.name);
    evs__sb out = {0};
    evs__sb_adds(&out, "{\"left\":");
    evs__sb_json_str(&out, x->rq->part, strlen(x->rq->part));
    evs__sb_adds(&out, "}\n");
    return ok_json(x, EVS_HTTP_OK, &out);
}

/* Every .../dlq route: the consumer first (404), then the operation. */
static enum MHD_Result route_dlq(bx *x) {
    evs_consumer_info info;
    enum MHD_Result mr;
    uint64_t pos = 0, after = 0, limit = BUS_DEFAULT_PAGE;
    int op = x->rq->op;
    if ((op == OP_DLQ_ONE || op == OP_DLQ_RETRY) && dlq_id(x, &pos, &mr)) return mr;
    if (op == OP_DLQ && x->rq->method != MB_DELETE &&
        (q_u64(x, "after", UINT64_MAX - 1, 1, &after, &mr) || q_u64(x, "limit", BUS_MAX_DLQ_PAGE, 0, &limit, &mr)))
        return mr;
    if (need_consumer(x, &info, &mr)) return mr;
    evs__sb out = {0};
    int rc;
    switch (op) {
    case OP_DLQ:
        if (x->rq->method != MB_DELETE) return route_dlq_list(x, &info, after, limit);
        uint64_t removed = 0;
        if ((rc = evs_dlq_purge(x->bs->bus, info.name, &removed))) return fail_lib(x, rc, "DLQ purge");
        evs__sb_printf(&out, "{\"purged\":%llu}\n", (unsigned long long)removed);
        return ok_json(x, EVS_HTTP_OK, &out);
    case OP_DLQ_ONE:
        if (x->rq->method != MB_DELETE) return route_dlq_show(x, &info, pos);
        rc = evs_dlq_discard(x->bs->bus, info.name, pos);
        if (rc == EVS_ENOTFOUND)
            return fail(x, EVS_HTTP_NOT_FOUND, NULL, "\"%s\" has no DLQ entry at position %llu", info.name,
                        (unsigned long long)pos);
        if (rc) return fail_lib(x, rc, "DLQ discard");
        evs__sb_printf(&out, "{\"discarded\":%llu}\n", (unsigned long long)pos);
        return ok_json(x, EVS_HTTP_OK, &out);
    default: return route_dlq_retry(x, &info, pos);
    }
}

/* GET /projections/N, GET /subscriptions/N */
static enum MHD_Result route_get(bx *x) { return answer_status(x, EVS_HTTP_OK); }

static enum MHD_Result dispatch(bx *x) {
    bus_req *rq = x->rq;
    switch (rq->op) {
    case OP_LIST: return route_list(x);
    case OP_ONE:
        if (rq->method & (MB_PUT | MB_POST)) return rq->area == A_GROUPS ? route_group_put(x) : route_put(x);
        if (rq->method == MB_DELETE) return route_delete(x);
        return route_get(x);
    case OP_STATE:
    case OP_PSTATE: return route_state(x);
    case OP_PARTS: return route_partitions(x);
    case OP_PAUSE:
    case OP_RESUME:
    case OP_RESET:
    case OP_REBUILD: return route_action(x);
    case OP_NEXT: return route_next(x);
    case OP_ACK:
    case OP_NACK: return route_group_answer(x);
    case OP_LEAVE: return route_leave(x);
    default: return route_dlq(x);
    }
}

/* ------------------------------------------------------------- callbacks */

static enum MHD_Result access_inner(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                    const char *version, const char *upload, size_t *upload_size, void **con_cls);

enum MHD_Result evs__bus_http_access(void *cls, struct MHD_Connection *c, const char *url,
                                     const char *method, const char *version, const char *upload,
                                     size_t *upload_size, void **con_cls) {
    evs__srv *srv = cls;
    if (!srv->access_log) return access_inner(cls, c, url, method, version, upload, upload_size, con_cls);
    int64_t t0 = *con_cls ? ((disp *)*con_cls)->t0 : evs__mono_ns();
    evs__reqlog_enter(c, method, url, t0);
    enum MHD_Result mr = access_inner(cls, c, url, method, version, upload, upload_size, con_cls);
    if (*con_cls && !((disp *)*con_cls)->t0) ((disp *)*con_cls)->t0 = t0;
    evs__reqlog_leave();
    return mr;
}

static enum MHD_Result access_inner(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                    const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    evs__srv *srv = cls;
    disp *d = *con_cls;
    if (!d) {
        int area = is_ours(url);
        if (!area) {
            if (!(d = calloc(1, sizeof *d))) return MHD_NO;
            *con_cls = d;
        } else {
            bus_req *rq = calloc(1, sizeof *rq);
            if (!rq) return MHD_NO;
            rq->d.ours = 1;
            rq->area = area;
            rq->route = area == A_PROJ ? EVS_R_PROJECTIONS : area == A_GROUPS ? EVS_R_GROUPS : EVS_R_SUBSCRIPTIONS;
            rq->method = method_bit(method);
            *con_cls = rq;
            atomic_fetch_add(&srv->active, 1);
            /* answered on a later call even when nothing is wrong: see http.c */
            return first_call(srv, c, url, rq);
        }
    }
    if (!d->ours) return evs__http_access(cls, c, url, method, version, upload, upload_size, &d->inner);
    bus_req *rq = (bus_req *)d;
    if (rq->answered) { /* refused on the first call: drop the body */
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size) {
        rq->got += *upload_size;
        if (rq->too_big || rq->got > rq->cap) {
            rq->too_big = 1; /* keep draining; the answer comes on the last call */
            evs__sb_free(&rq->body);
        } else if (rq->body_kind != BODY_NONE) {
            evs__sb_add(&rq->body, upload, *upload_size);
        }
        *upload_size = 0;
        return MHD_YES;
    }
    bx x = {srv, srv->bus, c, rq};
    if (atomic_load_explicit(&rq->job, memory_order_acquire) == JOB_DONE) return route_next_done(&x);
    if (rq->too_big) {
        char dl[64];
        snprintf(dl, sizeof dl, "{\"limit\":%zu}", rq->cap);
        return fail(&x, EVS_HTTP_TOO_LARGE, dl, "request body is over the limit of %zu bytes", rq->cap);
    }
    if (rq->body.oom) return fail(&x, EVS_HTTP_UNAVAILABLE, NULL, "out of memory reading the request body");
    return dispatch(&x);
}

void evs__bus_http_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                             enum MHD_RequestTerminationCode toe) {
    evs__srv *srv = cls;
    disp *d = *con_cls;
    if (!d) return;
    if (!d->ours) {
        evs__http_completed(cls, c, &d->inner, toe);
    } else {
        bus_req *rq = (bus_req *)d;
        evs__sb_free(&rq->body);
        evs_delivery_free(rq->job_d); /* answered or not, the delivery is the library's to time out */
        group_put(rq->job_gh);
        atomic_fetch_sub(&srv->active, 1);
    }
    free(d);
    *con_cls = NULL;
}

/* --------------------------------------------------------------- metrics */

/* One consumer's figures for /metrics. */
typedef struct mrow {
    char name[EVS_BUS_MAX_NAME + 1];
    char kind[16];
    int proj, group, status, running, rebuilding;
    uint64_t members, in_flight;
    uint64_t checkpoint, lag_events, processed, failed, retried, parked, dlq;
    int64_t lag_ms;
    double percent, rate;
} mrow;

/* A label value: backslash, double quote and line feed escaped. */
static void label(evs__sb *b, const char *s) {
    for (; *s; s++) {
        if (*s == '\\') evs__sb_adds(b, "\\\\");
        else if (*s == '"') evs__sb_adds(b, "\\\"");
        else if (*s == '\n') evs__sb_adds(b, "\\n");
        else evs__sb_add(b, s, 1);
    }
}

static void head(evs__sb *b, const char *name, const char *type, const char *help) {
    evs__sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void labels(evs__sb *b, const char *name, const mrow *r) {
    evs__sb_adds(b, name);
    evs__sb_adds(b, "{consumer=\"");
    label(b, r->name);
    evs__sb_printf(b, "\",kind=\"%s\"}", r->kind);
}

enum { F_CHECKPOINT, F_LAG, F_LAG_S, F_PROCESSED, F_FAILED, F_RETRIED, F_PARKED, F_DLQ };

void evs__bus_metrics(evs__srv *srv, evs__sb *b) {
    evs__bus_srv *bs = srv->bus;
    if (!bs) return;
    evs_consumer_info *page = calloc(BUS_LIST_CHUNK, sizeof *page);
    mrow *rows = NULL;
    size_t nrows = 0, cap = 0, n;
    char after[EVS_BUS_MAX_NAME + 1] = "";
    if (!page) return;
    do {
        if (evs_consumer_list(bs->bus, after[0] ? after : NULL, page, BUS_LIST_CHUNK, &n)) break;
        for (size_t i = 0; i < n && nrows < BUS_MAX_METRIC_CONSUMERS; i++) {
            if (nrows == cap) {
                size_t nc = cap ? cap * 2 : 64;
                mrow *nr = realloc(rows, nc * sizeof *nr);
                if (!nr) goto done;
                rows = nr;
                cap = nc;
            }
            const evs_consumer_info *in = &page[i];
            mrow *r = &rows[nrows++];
            memset(r, 0, sizeof *r);
            snprintf(r->name, sizeof r->name, "%s", in->name);
            snprintf(r->kind, sizeof r->kind, "%s", in->kind);
            r->proj = is_projection(in);
            r->group = is_group(in);
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
                run_view v;
                view_of(bs, in->name, &v);
                r->running = v.running;
                if (v.running && v.have_snap) {
                    r->rebuilding = v.snap.rebuilding;
                    r->percent = v.snap.rebuild_percent;
                    r->rate = v.snap.events_per_second;
                }
            }
            if (r->group) {
                pthread_mutex_lock(&bs->admin_mu); /* serialised with closing the handle */
                ghandle *gh = group_find(bs, in->name);
                evs_group_info gi;
                if (gh && gh->g && evs_group_get_info(gh->g, &gi) == EVS_OK) {
                    r->members = gi.members;
                    r->in_flight = gi.in_flight;
                }
                pthread_mutex_unlock(&bs->admin_mu);
                group_put(gh);
            }
        }
        if (n) snprintf(after, sizeof after, "%s", page[n - 1].name);
    } while (n == BUS_LIST_CHUNK && nrows < BUS_MAX_METRIC_CONSUMERS);
done:
    free(page);
    if (!nrows) {
        free(rows);
        return;
    }
    static const struct {
        const char *name, *type, *help;
    } fams[] = {
        {"evstore_consumer_checkpoint_position", "gauge", "Last global position a consumer has processed."},
        {"evstore_consumer_lag_events", "gauge", "Events between a consumer's checkpoint and the head."},
        {"evstore_consumer_lag_seconds", "gauge", "Age of the oldest event a consumer has not processed."},
        {"evstore_consumer_processed_total", "counter", "Events a consumer's handler processed."},
        {"evstore_consumer_failed_total", "counter", "Events whose handler failed after every retry."},
        {"evstore_consumer_retries_total", "counter", "Handler retries, DLQ retries included."},
        {"evstore_consumer_parked_total", "counter", "Events moved to a consumer's dead-letter queue."},
        {"evstore_consumer_dlq_depth", "gauge", "Entries in a consumer's dead-letter queue."},
    };
    for (int f = 0; f < (int)(sizeof fams / sizeof fams[0]); f++) {
        head(b, fams[f].name, fams[f].type, fams[f].help);
        for (size_t i = 0; i < nrows; i++) {
            const mrow *r = &rows[i];
            labels(b, fams[f].name, r);
            switch (f) {
            case F_LAG_S: evs__sb_printf(b, " %.3f\n", (double)r->lag_ms / 1e3); break;
            default: {
                uint64_t v = f == F_CHECKPOINT ? r->checkpoint : f == F_LAG ? r->lag_events
                           : f == F_PROCESSED  ? r->processed  : f == F_FAILED ? r->failed
                           : f == F_RETRIED    ? r->retried    : f == F_PARKED ? r->parked : r->dlq;
                evs__sb_printf(b, " %llu\n", (unsigned long long)v);
            }
            }
        }
    }
    /* status as a state set: one series per status, 1 for the current one */
    head(b, "evstore_consumer_status", "gauge", "Consumer status (1 for the current one).");
    static const int statuses[] = {EVS_CONSUMER_ACTIVE, EVS_CONSUMER_PAUSED, EVS_CONSUMER_ERROR};
    for (size_t i = 0; i < nrows; i++)
        for (int s = 0; s < 3; s++) {
            evs__sb_adds(b, "evstore_consumer_status{consumer=\"");
            label(b, rows[i].name);
            evs__sb_printf(b, "\",kind=\"%s\",status=\"%s\"} %d\n", rows[i].kind,
                           evs_consumer_status_name(statuses[s]), rows[i].status == statuses[s]);
        }
    int any_proj = 0, any_group = 0;
    for (size_t i = 0; i < nrows; i++) any_proj |= rows[i].proj, any_group |= rows[i].group;
    if (any_group) {
        head(b, "evstore_group_consumers", "gauge", "Consumers connected to a group.");
        for (size_t i = 0; i < nrows; i++)
            if (rows[i].group) {
                labels(b, "evstore_group_consumers", &rows[i]);
                evs__sb_printf(b, " %llu\n", (unsigned long long)rows[i].members);
            }
        head(b, "evstore_group_in_flight", "gauge", "Deliveries of a group waiting for an ack.");
        for (size_t i = 0; i < nrows; i++)
            if (rows[i].group) {
                labels(b, "evstore_group_in_flight", &rows[i]);
                evs__sb_printf(b, " %llu\n", (unsigned long long)rows[i].in_flight);
            }
    }
    if (any_proj) {
        head(b, "evstore_projection_running", "gauge", "1 when the server runs the projection.");
        for (size_t i = 0; i < nrows; i++)
            if (rows[i].proj) {
                labels(b, "evstore_projection_running", &rows[i]);
                evs__sb_printf(b, " %d\n", rows[i].running);
            }
        head(b, "evstore_projection_rebuild_progress_ratio", "gauge",
             "Progress of a projection's rebuild, 0..1 (0 when not rebuilding).");
        for (size_t i = 0; i < nrows; i++)
            if (rows[i].proj) {
                labels(b, "evstore_projection_rebuild_progress_ratio", &rows[i]);
                evs__sb_printf(b, " %.4f\n", rows[i].rebuilding ? rows[i].percent / 100.0 : 0.0);
            }
        head(b, "evstore_projection_events_per_second", "gauge", "Events per second over a projection's last poll.");
        for (size_t i = 0; i < nrows; i++)
            if (rows[i].proj) {
                labels(b, "evstore_projection_events_per_second", &rows[i]);
                evs__sb_printf(b, " %.1f\n", rows[i].rate);
            }
    }
    free(rows);
}
