/*
 * cmdpool.c — a few threads that run the commands WebSocket clients send
 * ({"op":"command"}, ws.c), so that the hub thread never waits for a
 * command's append to be durable.  See cmdpool.h for the order kept.
 *
 * One queue, in arrival order.  A runner takes the first job whose
 * connection has no job running, so a connection's commands run one after
 * the other (a client that sends CreateOrder then AddItem without waiting
 * gets them applied in that order) while other connections' commands run
 * beside them.  A finished job's answer goes to the done list and the hub
 * is kicked (the notify callback); the hub sends it if the connection is
 * still open.  A
 * connection that closes does not cancel what it sent: its commands run
 * (their answers are dropped), and a client that reconnects re-sends with
 * the same command_id and gets the original result.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/cmdpool.h"
#include "server/routes_app.h"

typedef struct job {
    uint64_t conn;
    char *json;
    size_t len;
    char *ref;                    /* JSON text, or NULL */
    struct job *next;
} job;

typedef struct evs__cmdpool {
    evs__srv *srv;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job *head, *tail;
    size_t queued;
    uint64_t running[EVS_CMDPOOL_MAX_THREADS]; /* connection of each runner's job, 0: idle */
    evs__cmddone *done, *done_tail;
    pthread_t th[EVS_CMDPOOL_MAX_THREADS];
    unsigned nthreads;
    int stop;
    void (*notify)(evs__srv *srv);
} evs__cmdpool;

static void job_free(job *j) {
    if (!j) return;
    free(j->json);
    free(j->ref);
    free(j);
}

void evs__cmddone_free(evs__cmddone *d) {
    while (d) {
        evs__cmddone *n = d->next;
        free(d->text);
        free(d);
        d = n;
    }
}

/* The first job whose connection has nothing running, unlinked; NULL if none.  Under mu. */
static job *take_runnable(evs__cmdpool *p) {
    job *prev = NULL;
    for (job *j = p->head; j; prev = j, j = j->next) {
        int busy = 0;
        for (unsigned i = 0; i < p->nthreads && !busy; i++) busy = p->running[i] == j->conn;
        if (busy) continue;
        if (prev) prev->next = j->next;
        else p->head = j->next;
        if (p->tail == j) p->tail = prev;
        p->queued--;
        j->next = NULL;
        return j;
    }
    return NULL;
}

/* {"op":"result","ref":R,"status":S,"result":{...}} */
static evs__cmddone *run(evs__cmdpool *p, job *j) {
    evs__sb out = {0}, ans = {0};
    unsigned status;
    uint64_t pos;
    evs__app_command(p->srv, NULL, j->json, j->len, &ans, &status, &pos);
    evs__sb_adds(&out, "{\"op\":\"result\",\"ref\":");
    evs__sb_adds(&out, j->ref ? j->ref : "null");
    evs__sb_printf(&out, ",\"status\":%u,\"result\":", status);
    evs__sb_add(&out, ans.p, ans.len);
    evs__sb_adds(&out, "}");
    evs__sb_free(&ans);
    evs__cmddone *d = calloc(1, sizeof *d);
    if (!d || !(d->text = evs__sb_take(&out, &d->len))) {
        /* out of memory: the command ran; the client hears that its answer was lost */
        evs__sb_free(&out);
        if (!d) return NULL;
        char buf[160];
        int n = snprintf(buf, sizeof buf, "{\"op\":\"error\",\"error\":\"out of memory for a command's answer; "
                                          "re-send it with its command_id\",\"detail\":null}");
        if (!(d->text = strdup(buf))) {
            free(d);
            return NULL;
        }
        d->len = (size_t)n;
    }
    d->conn = j->conn;
    return d;
}

static void *runner(void *arg) {
    evs__cmdpool *p = ((void **)arg)[0];
    unsigned slot = (unsigned)(uintptr_t)((void **)arg)[1];
    free(arg);
    pthread_mutex_lock(&p->mu);
    for (;;) {
        job *j = NULL;
        while (!p->stop && !(j = take_runnable(p))) pthread_cond_wait(&p->cv, &p->mu);
        if (!j) break;
        p->running[slot] = j->conn;
        pthread_mutex_unlock(&p->mu);
        evs__cmddone *d = run(p, j);
        pthread_mutex_lock(&p->mu);
        p->running[slot] = 0;
        if (d) {
            if (p->done_tail) p->done_tail->next = d;
            else p->done = d;
            p->done_tail = d;
        }
        job_free(j);
        pthread_cond_broadcast(&p->cv); /* the connection's next command may run now */
        pthread_mutex_unlock(&p->mu);
        p->notify(p->srv);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int evs__cmdpool_start(evs__srv *srv, unsigned threads, void (*notify)(evs__srv *srv)) {
    if (threads < 1) threads = 1;
    if (threads > EVS_CMDPOOL_MAX_THREADS) threads = EVS_CMDPOOL_MAX_THREADS;
    evs__cmdpool *p = calloc(1, sizeof *p);
    if (!p) return -1;
    p->srv = srv;
    p->notify = notify;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    srv->cmds = p;
    for (unsigned i = 0; i < threads; i++) {
        void **arg = malloc(2 * sizeof *arg);
        if (!arg) return -1;
        arg[0] = p;
        arg[1] = (void *)(uintptr_t)i;
        if (pthread_create(&p->th[i], NULL, runner, arg)) {
            free(arg);
            return -1;
        }
        p->nthreads = i + 1;
    }
    return 0;
}

int evs__cmdpool_submit(evs__srv *srv, uint64_t conn, const char *json, size_t len, const char *ref_json,
                        char *why, size_t whycap) {
    evs__cmdpool *p = srv->cmds;
    job *j = calloc(1, sizeof *j);
    if (!j || !(j->json = malloc(len + 1)) || (ref_json && !(j->ref = strdup(ref_json)))) {
        job_free(j);
        snprintf(why, whycap, "out of memory");
        return -1;
    }
    memcpy(j->json, json, len);
    j->json[len] = 0;
    j->len = len;
    j->conn = conn;
    pthread_mutex_lock(&p->mu);
    size_t mine = 0;
    for (job *q = p->head; q; q = q->next) mine += q->conn == conn;
    for (unsigned i = 0; i < p->nthreads; i++) mine += p->running[i] == conn;
    int full = p->stop || p->queued >= EVS_CMDPOOL_MAX_QUEUED || mine >= EVS_CMDPOOL_MAX_PER_CONN;
    if (!full) {
        if (p->tail) p->tail->next = j;
        else p->head = j;
        p->tail = j;
        p->queued++;
        pthread_cond_signal(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    if (full) {
        job_free(j);
        if (mine >= EVS_CMDPOOL_MAX_PER_CONN)
            snprintf(why, whycap, "this connection has %u commands waiting for their answers; wait for some",
                     EVS_CMDPOOL_MAX_PER_CONN);
        else snprintf(why, whycap, "the server has %u commands waiting; try again", EVS_CMDPOOL_MAX_QUEUED);
        return -1;
    }
    return 0;
}

evs__cmddone *evs__cmdpool_take(evs__srv *srv) {
    evs__cmdpool *p = srv->cmds;
    if (!p) return NULL;
    pthread_mutex_lock(&p->mu);
    evs__cmddone *d = p->done;
    p->done = p->done_tail = NULL;
    pthread_mutex_unlock(&p->mu);
    return d;
}

void evs__cmdpool_stop(evs__srv *srv) {
    evs__cmdpool *p = srv->cmds;
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    job *q = p->head; /* never started: dropped (the clients were told the server stops) */
    p->head = p->tail = NULL;
    p->queued = 0;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    while (q) {
        job *n = q->next;
        job_free(q);
        q = n;
    }
    for (unsigned i = 0; i < p->nthreads; i++) pthread_join(p->th[i], NULL);
    evs__cmddone_free(p->done);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
    srv->cmds = NULL;
}
