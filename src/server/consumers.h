/*
 * consumers.h — the server's durable consumers, without HTTP: a runner
 * thread for every stored Lua projection, the registry of open groups and
 * their members, and group members tied to a WebSocket connection.  The
 * library is include/evstore_bus.h; the routes (routes_*.c), the WebSocket
 * hub (ws.c) and /metrics (metrics.c) reach it only through this header.
 *
 * Lifecycle, driven by serve.c: evs__consumers_start after the store is
 * open and before the daemon accepts connections (projections resume
 * first); evs__consumers_quiesce while shutting down, with the live
 * streams; evs__consumers_stop after the daemon stopped (no request can
 * reach a consumer any more) and before the store closes.
 *
 * Runners.  A projection's handle belongs to its runner, a thread that
 * loops evs_proj_poll (one code path for catch-up and live) and commits
 * state and checkpoint after every poll that applied events, so queries
 * read committed state within about a millisecond.  A request that must
 * use the handle (pause, resume, reset, rebuild, DLQ retry, replace,
 * delete) takes it over with evs__runner_hold: it registers as a waiter,
 * cancels the runner's poll and waits until the runner lays the handle
 * down between two polls (within one 100 ms wait slice of the library);
 * evs__runner_release gives it back.  Read-only routes never take the
 * handle: records, lag, DLQ and state come from DIR/consumers/, and what
 * only the handle knows (rebuild progress, rate, generation) from a
 * snapshot the runner refreshes after its polls (evs__runner_view).
 *
 * Groups.  A group is opened when a consumer first asks for work and stays
 * open; HTTP consumers are members joined by name on their first `next`,
 * and one silent for its group's ack timeout plus the idle time (serve's
 * --group-idle-ms, 30 s) is taken to be gone and leaves, lazily: when
 * another request reaches the group, or its status is read.  A member is
 * busy while a request uses it; only idle members leave, and closing a
 * group (update, reset, delete, shutdown) cancels the busy ones and waits
 * for them.  WebSocket members (evs__gconn) live as long as their
 * connection: they never idle out, and when the group is closed under them
 * their member outlives the group's list, marked gone, until the
 * connection lets go of it.
 *
 * Lifetimes and locks.  Runners and open groups live in lists under
 * cs->mu and are reference counted: whoever found one keeps it alive until
 * it puts it back, even when a DELETE unlinks it meanwhile.  Creation,
 * replacement and deletion, and every call on a group's own handle (pause,
 * info, DLQ retry) and closing it, are serialised by cs->admin_mu.  Lock
 * order: admin_mu, then a runner's or a group's mu; cs->mu is never held
 * while taking another lock.
 */
#ifndef EVS_CONSUMERS_H
#define EVS_CONSUMERS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "evstore.h"
#include "evstore_bus.h"

#define EVS_GROUP_MAX_POLLS 1024        /* group long-polls waiting at once */
#define EVS_CONSUMERS_LIST_CHUNK 64u    /* records read per evs_consumer_list call */

typedef struct evs__runner evs__runner;
typedef struct evs__ghandle evs__ghandle;
typedef struct evs__gmember evs__gmember;

typedef struct evs__consumers {
    evs_store *store;
    const char *dir;
    evs_bus *bus;
    int64_t idle_grace_ns;        /* an HTTP member silent for its ack timeout plus this leaves */
    evs_proj_config proj_cfg;     /* what every Lua projection opens with: the defaults and the
                                     server's upcasting map (evs__consumers_start) */
    pthread_mutex_t mu;           /* the lists and the reference counts */
    pthread_mutex_t admin_mu;     /* create, replace, delete; groups: open, close, handle calls */
    evs__runner *runners;
    evs__ghandle *groups;         /* open groups, under mu */
    _Atomic int polls;            /* long-poll threads in evs_group_next (routes_groups.c) */
    _Atomic int quiescing;        /* shutdown: no new long-poll */
} evs__consumers;

static inline int evs__is_projection(const evs_consumer_info *i) { return strcmp(i->kind, "projection") == 0; }
static inline int evs__is_group(const evs_consumer_info *i) { return strcmp(i->kind, "group") == 0; }

/* The library's message for rc (its description when there is none) into buf. */
void evs__copy_errmsg(char *buf, size_t cap, int rc);

/* ------------------------------------------------------------- lifecycle */

/*
 * Open DIR/consumers/ and start a runner for every stored Lua projection
 * (one whose script cannot run here keeps a runner without a handle, so
 * its status says why).  idle_ms: how long past its group's ack timeout an
 * HTTP consumer may stay silent before it is taken to be gone.  map: what
 * the projections' handlers see (serve passes the schema registry's
 * upcasting; evs_proj_config.map).  EVS_OK with *out (release with
 * evs__consumers_stop), or a failure with why[] filled.
 */
int evs__consumers_start(evs_store *store, const char *dir, unsigned idle_ms, evs_event_map map, evs__consumers **out, char *why,
                         size_t whycap);
/*
 * End every group long-poll and wait, bounded, until their threads are
 * done, so that the daemon can stop.  New long-polls are refused from here.
 */
void evs__consumers_quiesce(evs__consumers *cs);
/* Stop every runner (committing its projection), close the groups and the bus, free cs.  NULL: no-op. */
void evs__consumers_stop(evs__consumers *cs);

/* --------------------------------------------------------------- runners */

enum { EVS_HOLD_NONE = 0, EVS_HOLD_RUNNER = 1, EVS_HOLD_REQUEST = 2 };

struct evs__runner {
    evs__consumers *bs;
    char name[EVS_BUS_MAX_NAME + 1];
    pthread_t thread;
    int started;                  /* thread running (only touched under admin_mu / at shutdown) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu */
    evs_projection *p;            /* NULL: deleted, or the stored script cannot run; the holder's to use */
    int holder;                   /* EVS_HOLD_*: who uses p right now */
    int waiters;                  /* requests waiting for p */
    int idle;                     /* paused or failing: no poll until a request or a timeout */
    int standby;                  /* p is NULL because another process holds the projection's lease
                                     (PostgreSQL): the runner tries to open it every RUNNER_IDLE_MS */
    int stop;
    int have_snap;
    evs_proj_status snap;
    char error[512];              /* why the last poll or open failed, "" if it did not */
    /* under bs->mu */
    int refs;                     /* the list's reference plus one per request using it */
    int linked;
    evs__runner *next;
};

/* A new runner for name, linked into the list (whose reference it carries); NULL when it cannot start. */
evs__runner *evs__runner_new(evs__consumers *bs, const char *name, evs_projection *p, const char *error);
/* Start the thread if it is not running: 0, or -1. */
int evs__runner_start_thread(evs__runner *r);
/* The runner of name with a reference taken (release with evs__runner_put), or NULL. */
evs__runner *evs__runner_find(evs__consumers *bs, const char *name);
void evs__runner_put(evs__runner *r);
/* Take the handle over from the runner; r->p is the caller's until evs__runner_release. */
void evs__runner_hold(evs__runner *r);
/* Replace the handle (and the error shown) while holding it. */
void evs__runner_set(evs__runner *r, evs_projection *p, const char *error);
/* Give the handle back, with a fresh snapshot so that the answer and the next status agree. */
void evs__runner_release(evs__runner *r);
/* Stop r for good: close its projection, join its thread, unlink it.  Under admin_mu. */
void evs__runner_retire(evs__runner *r);

/* What a status answer shows of a projection's runner. */
typedef struct evs__run_view {
    int known, running, have_snap;
    evs_proj_status snap;
    char error[512];
} evs__run_view;

void evs__runner_view(evs__consumers *bs, const char *name, evs__run_view *v);

/* ---------------------------------------------------------------- groups */

struct evs__gmember {
    char name[EVS_BUS_MAX_NAME + 1];
    evs_group_member *m;          /* NULL once gone (see evs__gconn); the busy caller's to use */
    int busy;                     /* requests using m, under the group's mu */
    int conn;                     /* tied to a WebSocket connection: never idles out */
    int gone;                     /* conn: left the group without the connection asking */
    int removing;                 /* conn: evs__member_remove is taking it out (the connection waits) */
    int64_t last_seen;            /* monotonic ns of the last request */
    uint64_t polls;               /* long-polls answered */
    evs__gmember *next;
};

struct evs__ghandle {
    evs__consumers *bs;
    char name[EVS_BUS_MAX_NAME + 1];
    int64_t idle_ns;              /* a member silent this long leaves */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu */
    evs_group *g;                 /* NULL once closed; calls on it under admin_mu */
    int closing;
    evs__gmember *members;
    /* under bs->mu */
    int refs, linked;
    evs__ghandle *next;
};

/* The open group of name with a reference taken (release with evs__group_put), or NULL. */
evs__ghandle *evs__group_find(evs__consumers *bs, const char *name);
void evs__group_put(evs__ghandle *gh);
/* The open group of name (a reference for the caller), opening it; the _locked form under admin_mu. */
int evs__group_open(evs__consumers *bs, const char *name, evs__ghandle **out);
int evs__group_open_locked(evs__consumers *bs, const char *name, evs__ghandle **out);
/*
 * Close an open group: no new member work, cancel long-polls, wait for
 * busy members, close (which releases the members).  Under admin_mu (or
 * at shutdown); drops the list's reference.
 */
void evs__group_retire(evs__ghandle *gh);
/*
 * HTTP members silent for longer than the group's idle time leave now (as
 * they would at the next consumer request), so that what is read of the
 * group (its record, its consumers, /metrics) is current.
 */
void evs__group_expire_idle(evs__ghandle *gh);
/* How long the member `name` has been idle, in ms (0 while busy); -1 when it is not a member here. */
long long evs__group_member_idle_ms(evs__ghandle *gh, const char *name, int64_t now);

/*
 * The member `consumer` of gh, busy for the caller (release with
 * evs__member_release).  join: join it when absent; otherwise
 * EVS_ENOTFOUND.  EVS_ELOCKED when it is a WebSocket member, EVS_ECLOSED
 * when the group was closed.  Idle members leave on the way.  msg
 * receives why on failure.
 */
int evs__member_acquire(evs__ghandle *gh, const char *consumer, int join, evs__gmember **out, char *msg, size_t cap);
void evs__member_release(evs__ghandle *gh, evs__gmember *m);
/* DELETE /groups/N/consumers/C: the member leaves now.  EVS_ENOTFOUND when not connected. */
int evs__member_remove(evs__ghandle *gh, const char *consumer);

/* ------------------------------------------------- WebSocket consumers */

/*
 * Group consumers tied to a WebSocket connection (ws.c), all called from
 * the WebSocket thread.  A member joined here never idles out; it leaves
 * with evs__gconn_leave, or earlier when the group is closed under it
 * (update, reset, delete, DELETE of the consumer, shutdown): the next call
 * then returns EVS_ECLOSED and the handle only awaits its leave.  Failures
 * put a readable message into msg.
 *
 * Ownership: *out of evs__gconn_join is the caller's, released with
 * evs__gconn_leave; *d of evs__gconn_next with evs_delivery_free.
 */
typedef struct evs__gconn evs__gconn;
int evs__gconn_join(evs__consumers *cs, const char *group, const char *consumer, evs__gconn **out, char *msg,
                    size_t cap);
/* A delivery if one is due now (never waits): EVS_OK, EVS_ETIMEDOUT for none, or an error. */
int evs__gconn_next(evs__gconn *gc, evs_delivery **d, char *msg, size_t cap);
/* Ack (nack 0) or nack a delivery; errors as evs_group_ack / evs_group_nack. */
int evs__gconn_answer(evs__gconn *gc, int nack, evs_delivery_id id, evs_nack_action action, const char *reason,
                      char *msg, size_t cap);
const char *evs__gconn_group(const evs__gconn *gc);
void evs__gconn_leave(evs__gconn *gc);

/* ----------------------------------------------------------- for /metrics */

/* One consumer's figures, gathered for /metrics (metrics.c renders them). */
typedef struct evs__consumer_row {
    char name[EVS_BUS_MAX_NAME + 1];
    char kind[16];
    int proj, group, status, running, rebuilding;
    uint64_t members, in_flight;
    uint64_t checkpoint, lag_events, processed, failed, retried, parked, dlq;
    int64_t lag_ms;
    double percent, rate;
} evs__consumer_row;

/*
 * The figures of at most max consumers in name order.  *rows is malloc'd
 * (the caller frees it; NULL with *n 0 when there are none, or when memory
 * or the records ran out: /metrics then shows what it has).
 */
void evs__consumers_rows(evs__consumers *cs, size_t max, evs__consumer_row **rows, size_t *n);

#endif
