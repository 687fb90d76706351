/*
 * routes_scavenge.c — POST/GET/DELETE /admin/scavenge: a scavenge of the
 * server's store (evs_scavenge, src/store/scavenge.c) on a thread of its
 * own, so the request that starts it answers at once and GET shows its
 * progress (evs_scavenge_get_stats, which /metrics renders too).  One job
 * per process, like the store it works on; its last error stays for GET.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "server/query.h"
#include "server/routes_scavenge.h"
#include "server/server.h"

static struct {
    pthread_mutex_t start_mu;  /* one start or stop at a time: guards th, started, store, opt */
    pthread_mutex_t mu;        /* guards last_rc, last_err (the job's thread takes it) */
    pthread_t th;
    int started;               /* th needs joining */
    int cancel;                /* read by evs_scavenge with an atomic load */
    int active;                /* (atomic) from the start request until the job's thread is done, so that a
                                  GET right after POST says running even before evs_scavenge begins */
    evs_store *store;
    evs_scavenge_options opt;
    int last_rc;
    char last_err[512];
} job = {.start_mu = PTHREAD_MUTEX_INITIALIZER, .mu = PTHREAD_MUTEX_INITIALIZER};

static void *job_main(void *arg) {
    (void)arg;
    evs_scavenge_progress p;
    int rc = evs_scavenge(job.store, &job.opt, &p);
    pthread_mutex_lock(&job.mu);
    job.last_rc = rc;
    snprintf(job.last_err, sizeof job.last_err, "%s", rc ? evs_errmsg() : "");
    pthread_mutex_unlock(&job.mu);
    __atomic_store_n(&job.active, 0, __ATOMIC_RELEASE);
    return NULL;
}

/* The status of the run in stp->last, with the totals of stp. */
static void stats_json(evs__sb *b, const evs_scavenge_stats *stp, int running) {
    const evs_scavenge_progress *p = &stp->last;
    evs__sb_printf(b, "\"running\":%s,\"dry_run\":%s,\"cancelled\":%s,\"segments_done\":%u,\"segments_total\":%u,"
                   "\"segments_rewritten\":%u,\"bytes_examined\":%llu,\"bytes_reclaimed\":%llu,"
                   "\"records_removed\":%llu,\"events_removed\":%llu,\"totals\":{\"runs\":%llu,"
                   "\"bytes_reclaimed\":%llu,\"segments_rewritten\":%llu,\"events_removed\":%llu}",
                   running ? "true" : "false", p->dry_run ? "true" : "false", p->cancelled ? "true" : "false",
                   p->segments_done, p->segments_total, p->segments_rewritten, (unsigned long long)p->bytes_examined,
                   (unsigned long long)p->bytes_reclaimed, (unsigned long long)p->records_removed,
                   (unsigned long long)p->events_removed, (unsigned long long)stp->runs,
                   (unsigned long long)stp->bytes_reclaimed, (unsigned long long)stp->segments_rewritten,
                   (unsigned long long)stp->events_removed);
    pthread_mutex_lock(&job.mu);
    if (job.last_rc) {
        evs__sb_adds(b, ",\"error\":");
        evs__sb_json_str(b, job.last_err, strlen(job.last_err));
    }
    pthread_mutex_unlock(&job.mu);
}

static void status_json(evs__sb *b, evs_store *s) {
    evs_scavenge_stats st;
    memset(&st, 0, sizeof st);
    (void)evs_scavenge_get_stats(s, &st);
    stats_json(b, &st, st.running || __atomic_load_n(&job.active, __ATOMIC_ACQUIRE));
}

enum MHD_Result evs__route_scavenge_start(evs__req *rq) {
    evs_scavenge_options o;
    memset(&o, 0, sizeof o);
    const char *rate = evs__query(rq, "rate"), *dry = evs__query(rq, "dry_run");
    if (rate && evs__parse_rate_mb(rate, &o.rate_bytes_per_sec))
        return evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, NULL,
                                  "parameter rate=%.40s is not a number of MB/s above 0 (at most 1000000, "
                                  "digits with an optional fraction: 20, 2.5)", rate);
    if (dry && strcmp(dry, "true") && strcmp(dry, "false"))
        return evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, NULL, "parameter dry_run=%.40s is not true or false", dry);
    if (dry && !strcmp(dry, "true")) o.flags = EVS_SCAVENGE_DRY_RUN;
    evs_scavenge_stats st;
    int src = evs_scavenge_get_stats(rq->srv->store, &st);
    if (src) return evs__respond_lib(rq, src, "scavenge"); /* another storage engine: 501 */
    pthread_mutex_lock(&job.start_mu);
    if (__atomic_load_n(&job.active, __ATOMIC_ACQUIRE) ||
        (evs_scavenge_get_stats(rq->srv->store, &st) == EVS_OK && st.running)) {
        pthread_mutex_unlock(&job.start_mu);
        return evs__respond_error(rq, EVS_HTTP_CONFLICT, NULL, "a scavenge is running already (GET /admin/scavenge)");
    }
    if (job.started) pthread_join(job.th, NULL); /* the last one is done: its thread ends */
    job.started = 0;
    __atomic_store_n(&job.cancel, 0, __ATOMIC_RELAXED);
    job.store = rq->srv->store;
    job.opt = o;
    job.opt.cancel = &job.cancel;
    pthread_mutex_lock(&job.mu);
    job.last_rc = 0;
    job.last_err[0] = 0;
    pthread_mutex_unlock(&job.mu);
    __atomic_store_n(&job.active, 1, __ATOMIC_RELEASE);
    if (pthread_create(&job.th, NULL, job_main, NULL) != 0) {
        __atomic_store_n(&job.active, 0, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&job.start_mu);
        return evs__respond_error(rq, EVS_HTTP_INTERNAL, NULL, "cannot start a scavenge thread");
    }
    job.started = 1;
    pthread_mutex_unlock(&job.start_mu);
    /* the run just started, not the stats of the last one, which the job
       replaces only once evs_scavenge begins: nothing done yet, its dry_run */
    memset(&st.last, 0, sizeof st.last);
    st.last.dry_run = (o.flags & EVS_SCAVENGE_DRY_RUN) != 0;
    evs__sb out = {0};
    evs__sb_adds(&out, "{\"started\":true,");
    stats_json(&out, &st, 1);
    evs__sb_adds(&out, "}");
    return evs__respond_sb(rq, EVS_HTTP_OK, &out);
}

enum MHD_Result evs__route_scavenge_status(evs__req *rq) {
    evs_scavenge_stats st;
    int src = evs_scavenge_get_stats(rq->srv->store, &st);
    if (src) return evs__respond_lib(rq, src, "scavenge");
    evs__sb out = {0};
    evs__sb_adds(&out, "{");
    status_json(&out, rq->srv->store);
    evs__sb_adds(&out, "}");
    return evs__respond_sb(rq, EVS_HTTP_OK, &out);
}

enum MHD_Result evs__route_scavenge_cancel(evs__req *rq) {
    __atomic_store_n(&job.cancel, 1, __ATOMIC_RELAXED);
    return evs__route_scavenge_status(rq);
}

void evs__scavenge_job_stop(void) {
    pthread_mutex_lock(&job.start_mu);
    __atomic_store_n(&job.cancel, 1, __ATOMIC_RELAXED);
    if (job.started) pthread_join(job.th, NULL);
    job.started = 0;
    pthread_mutex_unlock(&job.start_mu);
}
