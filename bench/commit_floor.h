/*
 * commit_floor.h — the group commit this host allows with no store at all,
 * for bench_store's G1, G8 and G64.
 *
 * N closed-loop clients each "append" by queueing a request and sleeping
 * on its futex word; the first one becomes the leader, waits (at most half
 * the recent fdatasync time) until every client is queued, writes 512 bytes
 * per request with one pwrite into the baseline file, fdatasyncs, hands the
 * lead to the next queued request and wakes its members one futex each
 * (only those already asleep).
 * That is the shape of the store's group commit (docs/decisions.md "Group
 * commit") without validation, encoding, the index or the reads: what is
 * left is the disk and the wake-ups.  So G8/G1 and G64/G1 bound what W2/W1
 * and W2b/W1 can reach on the machine the run is on.
 *
 * Include after the helpers it uses: now_ns, pct_ms, cmp_i64, die_errno,
 * run_result and BASE_FILE_BYTES (bench_store.c).
 */
#ifndef EVS_BENCH_COMMIT_FLOOR_H
#define EVS_BENCH_COMMIT_FLOOR_H

#include <linux/futex.h>
#include <sys/syscall.h>

enum { CF_WAIT = 0, CF_DONE = 1, CF_LEAD = 2, CF_SLEEPING = 3 };

typedef struct cf_req {
    _Atomic uint32_t state;
    struct cf_req *next;
} cf_req;

typedef struct cf_shared {
    pthread_mutex_t mu;
    cf_req *head, *tail;
    int queued, leading, nthreads;
    _Atomic uint32_t gather;     /* the leader sleeps on it while gathering */
    int fd;
    uint64_t off;
    int64_t sync_ewma_ns;
    long commits, appended;
    int64_t deadline;
    long cap;
    atomic_long claimed;
    pthread_barrier_t bar;
} cf_shared;

typedef struct cf_client {
    cf_shared *sh;
    int64_t *lat;
    long nlat;
    int64_t t_end;
} cf_client;

static void cf_futex_wait(_Atomic uint32_t *w, uint32_t v, int64_t timeout_ns) {
    struct timespec ts = {(time_t)(timeout_ns / 1000000000), (long)(timeout_ns % 1000000000)};
    syscall(SYS_futex, w, FUTEX_WAIT_PRIVATE, v, timeout_ns > 0 ? &ts : NULL, NULL, 0);
}

static void cf_futex_wake(_Atomic uint32_t *w) { syscall(SYS_futex, w, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0); }

/* Post st to r, waking its owner only if it sleeps (as the store's req_post does). */
static void cf_post(cf_req *r, uint32_t st) {
    if (atomic_exchange(&r->state, st) == CF_SLEEPING) cf_futex_wake(&r->state);
}

/* Lead one commit of everything queued (the caller's own request among it).  Called with sh->mu held; returns with it released. */
static void cf_lead(cf_shared *sh) {
    static _Thread_local char buf[512 * 64];
    int64_t gather_until = now_ns() + sh->sync_ewma_ns / 2;
    while (sh->queued < sh->nthreads) {
        int64_t left = gather_until - now_ns();
        if (left <= 0) break;
        atomic_store(&sh->gather, 0);
        pthread_mutex_unlock(&sh->mu);
        cf_futex_wait(&sh->gather, 0, left);
        pthread_mutex_lock(&sh->mu);
    }
    cf_req *batch = sh->head;
    int n = sh->queued;
    sh->head = sh->tail = NULL;
    sh->queued = 0;
    uint64_t off = sh->off;
    size_t len = 512u * (size_t)(n > 64 ? 64 : n);
    sh->off = off + len + len >= BASE_FILE_BYTES ? 0 : off + len;
    pthread_mutex_unlock(&sh->mu);
    memset(buf, (int)(off & 0xff), 64);
    int64_t t0 = now_ns();
    if (pwrite(sh->fd, buf, len, (off_t)off) != (ssize_t)len) die_errno("commit floor pwrite");
    if (fdatasync(sh->fd) != 0) die_errno("commit floor fdatasync");
    int64_t took = now_ns() - t0;
    pthread_mutex_lock(&sh->mu);
    sh->sync_ewma_ns = sh->sync_ewma_ns ? (sh->sync_ewma_ns * 7 + took) / 8 : took;
    sh->commits++;
    sh->appended += n;
    cf_req *next = sh->head;
    sh->leading = next != NULL;
    pthread_mutex_unlock(&sh->mu);
    /* the lead first, so the next commit starts while this batch wakes */
    if (next) cf_post(next, CF_LEAD);
    for (cf_req *m = batch; m;) {
        cf_req *nx = m->next; /* read before m's owner may reuse it */
        cf_post(m, CF_DONE);
        m = nx;
    }
}

static void cf_append(cf_shared *sh) {
    cf_req r;
    atomic_store(&r.state, CF_WAIT);
    r.next = NULL;
    pthread_mutex_lock(&sh->mu);
    if (sh->tail) sh->tail->next = &r;
    else sh->head = &r;
    sh->tail = &r;
    if (++sh->queued == sh->nthreads) {
        atomic_store(&sh->gather, 1);
        cf_futex_wake(&sh->gather);
    }
    if (!sh->leading) {
        sh->leading = 1;
        cf_lead(sh);
    } else {
        pthread_mutex_unlock(&sh->mu);
    }
    for (;;) {
        uint32_t st = atomic_load(&r.state);
        if (st == CF_WAIT || st == CF_SLEEPING) {
            /* announce the sleep, so that a post before it costs no system call */
            if (st == CF_WAIT && !atomic_compare_exchange_weak(&r.state, &st, CF_SLEEPING)) continue;
            cf_futex_wait(&r.state, CF_SLEEPING, 0);
            continue;
        }
        if (st == CF_DONE) return;
        /* CF_LEAD: r heads the queue; lead, then wait for r's own DONE */
        atomic_store(&r.state, CF_WAIT);
        pthread_mutex_lock(&sh->mu);
        cf_lead(sh);
    }
}

static void *cf_client_main(void *arg) {
    cf_client *c = arg;
    cf_shared *sh = c->sh;
    pthread_barrier_wait(&sh->bar);
    for (;;) {
        int64_t t0 = now_ns();
        if (t0 >= sh->deadline || atomic_fetch_add(&sh->claimed, 1) >= sh->cap) break;
        cf_append(sh);
        if (c->nlat < sh->cap) c->lat[c->nlat++] = now_ns() - t0;
    }
    c->t_end = now_ns();
    return NULL;
}

/* One run of the floor: nthreads clients for seconds or cap commits' worth of appends, into the file at path. */
static run_result run_commit_floor(const char *path, int nthreads, double seconds, long cap) {
    cf_shared sh = {.nthreads = nthreads, .cap = cap};
    pthread_mutex_init(&sh.mu, NULL);
    sh.fd = open(path, O_RDWR | O_CLOEXEC);
    if (sh.fd < 0) die_errno(path);
    cf_client *cl = calloc((size_t)nthreads, sizeof *cl);
    pthread_t *th = calloc((size_t)nthreads, sizeof *th);
    int64_t *lat = malloc((size_t)cap * sizeof *lat);
    if (!cl || !th || !lat) die_errno("allocate a floor run");
    pthread_barrier_init(&sh.bar, NULL, (unsigned)nthreads + 1);
    for (int t = 0; t < nthreads; t++) {
        cl[t].sh = &sh;
        cl[t].lat = malloc((size_t)cap * sizeof *cl[t].lat);
        if (!cl[t].lat) die_errno("allocate latencies");
        if (pthread_create(&th[t], NULL, cf_client_main, &cl[t]) != 0) die_errno("start a floor client");
    }
    int64_t t0 = now_ns();
    sh.deadline = t0 + (int64_t)(seconds * 1e9);
    pthread_barrier_wait(&sh.bar);
    t0 = now_ns();
    int64_t t1 = t0;
    long n = 0;
    for (int t = 0; t < nthreads; t++) {
        pthread_join(th[t], NULL);
        if (cl[t].t_end > t1) t1 = cl[t].t_end;
        for (long i = 0; i < cl[t].nlat && n < cap; i++) lat[n++] = cl[t].lat[i];
        free(cl[t].lat);
    }
    close(sh.fd);
    pthread_barrier_destroy(&sh.bar);
    pthread_mutex_destroy(&sh.mu);
    qsort(lat, (size_t)n, sizeof *lat, cmp_i64);
    run_result r = {.ops = n, .rate = (double)n / ((double)(t1 - t0) / 1e9)};
    r.p50 = pct_ms(lat, n, 0.50);
    r.p99 = pct_ms(lat, n, 0.99);
    r.p999 = pct_ms(lat, n, 0.999);
    r.per_batch = sh.commits ? (double)sh.appended / (double)sh.commits : 0;
    free(lat);
    free(th);
    free(cl);
    return r;
}

#endif
