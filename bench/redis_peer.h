/*
 * redis_peer.h — the Redis side of bench_store's write workloads (included
 * by bench_store.c when hiredis is found at build time).
 *
 * The peer: Debian's redis-server, started here on 127.0.0.1 with an
 * append-only file fsync'd before every reply (appendonly yes, appendfsync
 * always, no RDB snapshots), its data in the benchmark's directory.  An
 * append is one EVALSHA of a Lua script that checks the stream's version
 * (its XLEN) against the expected one and XADDs the events, so it is atomic
 * and conditional like evs_append.  Each client thread has its own
 * connection; streams and events are the ones bench_store appends.
 */
#ifndef EVS_BENCH_REDIS_PEER_H
#define EVS_BENCH_REDIS_PEER_H

#include <hiredis/hiredis.h>

static const char REDIS_APPEND_LUA[] =
    "local v = redis.call('XLEN', KEYS[1])\n"
    "if v ~= tonumber(ARGV[1]) then return redis.error_reply('conflict ' .. v) end\n"
    "for i = 2, #ARGV, 3 do\n"
    "  redis.call('XADD', KEYS[1], '*', 'type', ARGV[i], 'data', ARGV[i + 1], 'metadata', ARGV[i + 2])\n"
    "end\n"
    "return v + (#ARGV - 1) / 3\n";

typedef struct redis_peer {
    pid_t pid;
    int port;
    char sha[48];
    char dir[4200];
} redis_peer;

static redisContext *redis_connect(const redis_peer *p) {
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", p->port, tv);
    if (!c || c->err) {
        if (c) redisFree(c);
        return NULL;
    }
    return c;
}

/* Start redis-server; 0 when it runs and the script is loaded, -1 (peer skipped) otherwise. */
static int redis_start(redis_peer *p, const char *dir) {
    memset(p, 0, sizeof *p);
    snprintf(p->dir, sizeof p->dir, "%s", dir);
    const char *bin = "/usr/bin/redis-server";
    if (access(bin, X_OK) != 0) return -1;
    mkdir(dir, 0755);
    p->port = 20000 + (int)(getpid() % 20000);
    char port[16];
    snprintf(port, sizeof port, "%d", p->port);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) dup2(devnull, 1), dup2(devnull, 2);
        execl(bin, bin, "--bind", "127.0.0.1", "--port", port, "--dir", dir, "--appendonly", "yes", "--appendfsync",
              "always", "--save", "", "--daemonize", "no", "--protected-mode", "yes", (char *)NULL);
        _exit(127);
    }
    p->pid = pid;
    g_peer_pid = pid;
    for (int i = 0; i < 200; i++) { /* up to 10 s */
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
        redisContext *c = redis_connect(p);
        if (!c) continue;
        redisReply *r = redisCommand(c, "SCRIPT LOAD %s", REDIS_APPEND_LUA);
        int ok = r && r->type == REDIS_REPLY_STRING;
        if (ok) snprintf(p->sha, sizeof p->sha, "%s", r->str);
        if (r) freeReplyObject(r);
        redisFree(c);
        if (ok) return 0;
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    p->pid = g_peer_pid = 0;
    return -1;
}

static void redis_stop(redis_peer *p) {
    if (!p->pid) return;
    kill(p->pid, SIGTERM);
    waitpid(p->pid, NULL, 0);
    p->pid = g_peer_pid = 0;
    rm_tree(p->dir);
}

typedef struct redis_worker {
    const redis_peer *p;
    int tid, nthreads, batch;
    uint64_t *versions;
    atomic_long *claimed;
    long cap;
    int64_t seconds_ns;
    pthread_barrier_t *bar;
    int64_t *lat;
    long nlat, conflicts;
    uint64_t rng;
    int64_t t_end;
    char failed[512];
} redis_worker;

static void *redis_worker_main(void *arg) {
    redis_worker *w = arg;
    redisContext *c = redis_connect(w->p);
    size_t argc_max = 5 + 3 * (size_t)w->batch;
    const char **argv = calloc(argc_max, sizeof *argv);
    size_t *argl = calloc(argc_max, sizeof *argl);
    evs_event_in *ev = calloc((size_t)w->batch, sizeof *ev);
    long per = (C.streams - w->tid + w->nthreads - 1) / w->nthreads;
    pthread_barrier_wait(w->bar);
    int64_t deadline = now_ns() + w->seconds_ns;
    if (!c || !argv || !argl || !ev) {
        snprintf(w->failed, sizeof w->failed, "cannot connect to redis or out of memory");
        goto out;
    }
    for (;;) {
        if (now_ns() >= deadline) break;
        if (atomic_fetch_add(w->claimed, 1) >= w->cap) break;
        long n = w->tid + w->nthreads * (long)(rng_next(&w->rng) % (uint64_t)per);
        char key[32], exp[24];
        snprintf(key, sizeof key, "order-%ld", n);
        uint64_t v = w->versions[n];
        snprintf(exp, sizeof exp, "%llu", (unsigned long long)v);
        size_t k = 0;
        argv[k] = "EVALSHA", argl[k++] = 7;
        argv[k] = w->p->sha, argl[k++] = strlen(w->p->sha);
        argv[k] = "1", argl[k++] = 1;
        argv[k] = key, argl[k++] = strlen(key);
        argv[k] = exp, argl[k++] = strlen(exp);
        for (int i = 0; i < w->batch; i++) {
            fill_event(&ev[i], &w->rng, v + (uint64_t)i);
            argv[k] = ev[i].event_type, argl[k++] = strlen(ev[i].event_type);
            argv[k] = ev[i].data, argl[k++] = ev[i].data_len;
            argv[k] = ev[i].metadata, argl[k++] = ev[i].metadata_len;
        }
        int64_t t0 = now_ns();
        redisReply *r = redisCommandArgv(c, (int)k, argv, argl);
        int64_t t1 = now_ns();
        if (!r) {
            snprintf(w->failed, sizeof w->failed, "redis: %s", c->errstr);
            break;
        }
        if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "conflict", 8) == 0) {
            w->conflicts++;
            w->versions[n] = strtoull(r->str + 9, NULL, 10);
            freeReplyObject(r);
            continue;
        }
        if (r->type != REDIS_REPLY_INTEGER || (uint64_t)r->integer != v + (uint64_t)w->batch) {
            snprintf(w->failed, sizeof w->failed, "redis append to %s: unexpected reply %s", key,
                     r->type == REDIS_REPLY_ERROR ? r->str : "(not the new version)");
            freeReplyObject(r);
            break;
        }
        freeReplyObject(r);
        w->versions[n] = v + (uint64_t)w->batch;
        if (w->nlat < w->cap) w->lat[w->nlat++] = t1 - t0;
    }
out:
    w->t_end = now_ns();
    if (c) redisFree(c);
    free(argv);
    free(argl);
    free(ev);
    return NULL;
}

/* One run against Redis: like run_appends. */
static run_result run_redis(const redis_peer *p, uint64_t *versions, int nthreads, int batch, double seconds, long cap) {
    redis_worker *w = calloc((size_t)nthreads, sizeof *w);
    pthread_t *th = calloc((size_t)nthreads, sizeof *th);
    int64_t *lat = malloc((size_t)cap * sizeof *lat);
    if (!w || !th || !lat) die_errno("allocate a run");
    atomic_long claimed = 0;
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, (unsigned)nthreads + 1);
    for (int t = 0; t < nthreads; t++) {
        w[t] = (redis_worker){.p = p, .tid = t, .nthreads = nthreads, .batch = batch, .versions = versions,
                              .claimed = &claimed, .cap = cap, .seconds_ns = (int64_t)(seconds * 1e9), .bar = &bar,
                              .rng = 0x7654321ULL + (uint64_t)t * 7919 + (uint64_t)now_ns()};
        w[t].lat = malloc((size_t)cap * sizeof *w[t].lat);
        if (!w[t].lat) die_errno("allocate latencies");
        if (pthread_create(&th[t], NULL, redis_worker_main, &w[t]) != 0) die_errno("start a redis client");
    }
    pthread_barrier_wait(&bar);
    int64_t t0 = now_ns(), t1 = t0;
    run_result r = {0};
    long n = 0;
    for (int t = 0; t < nthreads; t++) {
        pthread_join(th[t], NULL);
        if (w[t].failed[0]) {
            fprintf(stderr, "bench_store: %s\n", w[t].failed);
            cleanup();
            exit(1);
        }
        if (w[t].t_end > t1) t1 = w[t].t_end;
        for (long i = 0; i < w[t].nlat && n < cap; i++) lat[n++] = w[t].lat[i];
        r.conflicts += w[t].conflicts;
        free(w[t].lat);
    }
    pthread_barrier_destroy(&bar);
    qsort(lat, (size_t)n, sizeof *lat, cmp_i64);
    r.ops = n;
    r.rate = (double)n / ((double)(t1 - t0) / 1e9);
    r.p50 = pct_ms(lat, n, 0.50);
    r.p99 = pct_ms(lat, n, 0.99);
    r.p999 = pct_ms(lat, n, 0.999);
    free(lat);
    free(th);
    free(w);
    return r;
}

#endif
