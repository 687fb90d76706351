/*
 * bench_store.c — the store's benchmarks: append throughput and latency
 * against the disk's own fdatasync rate, read throughput against a raw
 * checksum scan of the same log bytes, and the time and anonymous memory it
 * takes to open a large store.
 *
 * Workload.  Every event carries ~200 bytes of JSON data and ~100 bytes of
 * JSON metadata (drawn from a pool of generated orders), and goes to a
 * stream "order-<n>" with n uniform over 10,000 streams.  Every append is
 * conditional on the exact expected version, which the benchmark keeps per
 * stream.  With several threads each thread owns the streams n with
 * n % threads == its index, so there is never more than one append in
 * flight per stream and no conflicts; any that happen anyway are counted
 * and reported separately, never as throughput.
 *
 *   B   the baseline: 4 KiB pwrite + fdatasync overwriting a preallocated,
 *       zero-filled 16 MiB file in the same directory as the stores.
 *   W1  1 thread, 1 event per append, durability sync.
 *   B64 the same with 64 KiB writes (W3's baseline: ~40 KiB per append).
 *   W2  8 threads, 1 event per append, sync (group commit).
 *   W2b 64 threads, 1 event per append, sync.
 *   W3  1 thread, 100 events per append, sync.
 *   G1, G8, G64: 1, 8 and 64 clients of a group commit with no store
 *       (bench/commit_floor.h), run with W2 and W2b: G8/G1 and G64/G1 are
 *       the scaling this host allows at all, so W2/W1 and W2b/W1 are also
 *       reported as a share of them.
 *   R1, R2, R2b, R3: W1, W2, W2b, W3 against Redis (bench/redis_peer.h),
 *       when built with hiredis and redis-server is installed
 *       (EVS_BENCH_NO_REDIS=1 skips it).
 *       B, W1, W2 and W3 run round-robin on one store (B W1 W2 W3, B W1 W2
 *       W3, ...), and a ratio (W1/B, W2/W1, W3/B) is the median of the
 *       per-round ratios, so a burst of load from other processes hits both
 *       sides of a ratio rather than one.
 *   W4  read one 100,000-event stream forward (evs_read_stream); the stream
 *       was written as 100,000 one-event appends.
 *   W4i read a stream interleaved with others: a store of 1,000,000
 *       one-event appends where "order-w4i" holds every 10th event and the
 *       rest go to 1,000 other streams.  Each round reopens the store and
 *       times the FIRST forward evs_read_stream of the stream (page cache
 *       warm, the mapping fresh), then reopens it again and times the first
 *       evs_read_all over the whole store; the figure is the median of the
 *       per-round ratios stream events/s / $all events/s.  A second stream
 *       read in the same open store is printed for comparison, and so is
 *       the floor of that read in this layout (w4i_floor: the index walk,
 *       the frames' bytes by 1 MiB preads and their CRC32C, nothing else).
 *   W5  read $all from position 1 for 1,000,000 events (evs_read_all) of the
 *       W6 store.  W5b reads $all over the W4 store (one event per record).
 *       Read baseline: CRC32C over the same store's log segment files,
 *       mapped, converted to events/s by the store's bytes per event.
 *   W6  open a store of 10,000,000 events: evs_store_create + evs_store_open
 *       until it returns; baseline: opening an empty store.  Built once per
 *       run with durability none and 1,000-event appends, synced to disk with
 *       syncfs, then reopened several times.
 *   RssAnon (anonymous resident memory, /proc/self/status; file-backed
 *   pages of the log and index mappings do not count) is sampled every
 *   2 ms by a helper thread during W5 and W6; the peak is reported.
 *
 * Each run of a write workload lasts ~EVS_BENCH_SECONDS or a fixed number
 * of appends, whichever comes first; each run of a read workload reads its
 * whole range once, after one untimed warm-up pass that faults the mapping
 * in.  A figure is the median over the runs (latency percentiles: the
 * median of each run's percentile).  Latency is measured around each
 * evs_append call.  When the runs of a figure differ more than 1.5-fold
 * the output says NOISY: on a shared machine a ratio is only as good as the
 * quiet it was measured in.
 *
 * Environment (all optional):
 *   EVS_BENCH_DIR      where stores are built (default ./build/bench-data);
 *                      the benchmark's subdirectories are removed at the end
 *   EVS_BENCH_QUICK=1  a smoke run of about a minute: 3 runs of 1 s, W6 with
 *                      1,000,000 events
 *   EVS_BENCH_RUNS, EVS_BENCH_READ_RUNS, EVS_BENCH_SECONDS,
 *   EVS_BENCH_STREAMS, EVS_BENCH_THREADS (W2), EVS_BENCH_THREADS_MANY (W2b),
 *   EVS_BENCH_BATCH (W3),
 *   EVS_BENCH_{BASE,W1,W2,W3}_OPS (appends per run at most),
 *   EVS_BENCH_{W4,W5,W6}_EVENTS, EVS_BENCH_BUILD_BATCH, EVS_BENCH_BUILD_THREADS
 *                      override the counts and sizes
 *   EVS_BENCH_ONLY     e.g. "W1,W4": run only these workloads
 *   EVS_BENCH_KEEP=1   keep the W6 store and reuse it on the next run
 *   EVS_BENCH_ZERO_AHEAD=BYTES  the log's zero-ahead window in sync durability
 *                      (default EVS_LOG_ZERO_AHEAD; 0: off), to weigh it
 *
 * Exit status: 0 when every workload ran (targets missed are reported, not
 * failed), 1 on an error from the store.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"
#include "evstore.h"
#include "index/index.h"
#include "log/log.h"
#include "store/store_testing.h"

/* ------------------------------------------------------------ settings */

typedef struct config {
    int quick;
    int runs, read_runs;
    double seconds;
    long streams;
    int threads;            /* W2 */
    int threads_many;       /* W2b */
    int batch;              /* W3 events per append */
    long w1_ops, w2_ops, w3_ops, base_ops; /* caps per run */
    long w4_events, w5_events, w6_events, w4i_events;
    int build_batch, build_threads;
    int keep;
    char only[128];
    char dir[4096];
} config;

static config C;

static long env_long(const char *name, long def) {
    const char *v = getenv(name);
    if (!v || !*v) return def;
    char *end;
    long x = strtol(v, &end, 10);
    if (*end || x <= 0) {
        fprintf(stderr, "bench_store: %s=%s is not a positive integer; using %ld\n", name, v, def);
        return def;
    }
    return x;
}

static double env_double(const char *name, double def) {
    const char *v = getenv(name);
    if (!v || !*v) return def;
    char *end;
    double x = strtod(v, &end);
    if (*end || x <= 0) {
        fprintf(stderr, "bench_store: %s=%s is not a positive number; using %g\n", name, v, def);
        return def;
    }
    return x;
}

static void config_load(void) {
    const char *q = getenv("EVS_BENCH_QUICK");
    C.quick = q && *q && strcmp(q, "0") != 0;
    C.runs = (int)env_long("EVS_BENCH_RUNS", C.quick ? 3 : 5);
    C.read_runs = (int)env_long("EVS_BENCH_READ_RUNS", C.quick ? 5 : 9);
    C.seconds = env_double("EVS_BENCH_SECONDS", C.quick ? 1.0 : 4.0);
    C.streams = env_long("EVS_BENCH_STREAMS", 10000);
    C.threads = (int)env_long("EVS_BENCH_THREADS", 8);
    C.threads_many = (int)env_long("EVS_BENCH_THREADS_MANY", 64);
    C.batch = (int)env_long("EVS_BENCH_BATCH", 100);
    C.base_ops = env_long("EVS_BENCH_BASE_OPS", 200000);
    C.w1_ops = env_long("EVS_BENCH_W1_OPS", 200000);
    C.w2_ops = env_long("EVS_BENCH_W2_OPS", 1000000);
    C.w3_ops = env_long("EVS_BENCH_W3_OPS", C.quick ? 2000 : 10000);
    C.w4_events = env_long("EVS_BENCH_W4_EVENTS", 100000);
    C.w5_events = env_long("EVS_BENCH_W5_EVENTS", 1000000);
    C.w4i_events = env_long("EVS_BENCH_W4I_EVENTS", 1000000);
    C.w6_events = env_long("EVS_BENCH_W6_EVENTS", C.quick ? 1000000 : 10000000);
    C.build_batch = (int)env_long("EVS_BENCH_BUILD_BATCH", 1000);
    C.build_threads = (int)env_long("EVS_BENCH_BUILD_THREADS", 2);
    const char *k = getenv("EVS_BENCH_KEEP");
    C.keep = k && *k && strcmp(k, "0") != 0;
    const char *o = getenv("EVS_BENCH_ONLY");
    snprintf(C.only, sizeof C.only, "%s", o ? o : "");
    const char *d = getenv("EVS_BENCH_DIR");
    snprintf(C.dir, sizeof C.dir, "%s", d && *d ? d : "./build/bench-data");
    if (C.runs < 1) C.runs = 1;
    if (C.batch > (int)EVS_MAX_EVENTS_PER_APPEND) C.batch = (int)EVS_MAX_EVENTS_PER_APPEND;
    if (C.build_batch > (int)EVS_MAX_EVENTS_PER_APPEND) C.build_batch = (int)EVS_MAX_EVENTS_PER_APPEND;
}

/* Is workload w ("W1".."W6") selected?  An empty EVS_BENCH_ONLY selects all. */
static int want(const char *w) {
    if (!C.only[0]) return 1;
    size_t n = strlen(w);
    for (const char *p = C.only; (p = strstr(p, w)) != NULL; p += n) {
        int start = p == C.only || p[-1] == ',' || p[-1] == ' ';
        int end = p[n] == 0 || p[n] == ',' || p[n] == ' ';
        if (start && end) return 1;
    }
    return 0;
}

/* ------------------------------------------------------------- helpers */

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static char g_paths[8][4200]; /* directories and files to remove at exit */
static int g_npaths;

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    if (remove(path) != 0 && errno != ENOENT) fprintf(stderr, "bench_store: cannot remove %s: %s\n", path, strerror(errno));
    return 0;
}

static void rm_tree(const char *path) {
    struct stat sb;
    if (lstat(path, &sb) != 0) return;
    if (S_ISDIR(sb.st_mode)) nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    else remove(path);
}

static const char *data_path(const char *name) {
    if (g_npaths == 8) {
        fprintf(stderr, "bench_store: too many data paths\n");
        exit(1);
    }
    char *p = g_paths[g_npaths++];
    snprintf(p, sizeof g_paths[0], "%s/%s", C.dir, name);
    return p;
}

/* Remove everything the benchmark made (not the W6 store with EVS_BENCH_KEEP). */
static pid_t g_peer_pid; /* the Redis peer, stopped on any exit */

static void cleanup(void) {
    if (g_peer_pid > 0) {
        kill(g_peer_pid, SIGTERM);
        waitpid(g_peer_pid, NULL, 0);
        g_peer_pid = 0;
    }
    for (int i = 0; i < g_npaths; i++) {
        if (C.keep && strstr(g_paths[i], "/w6")) continue;
        rm_tree(g_paths[i]);
    }
    rmdir(C.dir); /* only when empty: never remove what is not ours */
}

static void die(const char *what, int rc) {
    fprintf(stderr, "bench_store: %s: %s (%s)\n", what, evs_errmsg(), evs_errname(rc));
    cleanup();
    exit(1);
}

static void die_errno(const char *what) {
    fprintf(stderr, "bench_store: %s: %s\n", what, strerror(errno));
    cleanup();
    exit(1);
}

static void mkdir_p(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) die_errno(buf);
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) die_errno(buf);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static double median(const double *v, int n) {
    double t[64];
    if (n > 64) n = 64;
    memcpy(t, v, (size_t)n * sizeof *t);
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
}

/* Nearest-rank percentile of a sorted array, in ms. */
static double pct_ms(const int64_t *sorted, long n, double p) {
    if (n == 0) return 0;
    long i = (long)(p * (double)n + 0.999999) - 1;
    if (i < 0) i = 0;
    if (i >= n) i = n - 1;
    return (double)sorted[i] / 1e6;
}

/* "12,345" */
static const char *fmt_n(char *buf, size_t cap, double x) {
    char raw[40];
    snprintf(raw, sizeof raw, "%.0f", x);
    size_t len = strlen(raw), w = 0;
    for (size_t i = 0; i < len && w + 2 < cap; i++) {
        if (i && (len - i) % 3 == 0 && raw[i - 1] != '-') buf[w++] = ',';
        buf[w++] = raw[i];
    }
    buf[w] = 0;
    return buf;
}

/* A latency in ms with three significant digits. */
static const char *fmt_ms(char *buf, size_t cap, double ms) {
    if (ms < 1) snprintf(buf, cap, "%.3f ms", ms);
    else if (ms < 10) snprintf(buf, cap, "%.2f ms", ms);
    else snprintf(buf, cap, "%.1f ms", ms);
    return buf;
}

static uint64_t rng_next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* --------------------------------------------------------- RssAnon sampling */

static long rss_anon_kb(void) {
    char buf[4096];
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    const char *p = strstr(buf, "RssAnon:");
    return p ? strtol(p + 8, NULL, 10) : -1;
}

typedef struct sampler {
    pthread_t th;
    atomic_int stop;
    atomic_long peak_kb;
} sampler;

static void *sampler_main(void *arg) {
    sampler *sm = arg;
    while (!atomic_load(&sm->stop)) {
        long kb = rss_anon_kb();
        if (kb > atomic_load(&sm->peak_kb)) atomic_store(&sm->peak_kb, kb);
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static void sampler_start(sampler *sm) {
    atomic_store(&sm->stop, 0);
    atomic_store(&sm->peak_kb, rss_anon_kb());
    if (pthread_create(&sm->th, NULL, sampler_main, sm) != 0) die_errno("start the RssAnon sampler");
}

/* Stop sampling; the peak in MB (one last sample included). */
static double sampler_stop(sampler *sm) {
    atomic_store(&sm->stop, 1);
    pthread_join(sm->th, NULL);
    long kb = rss_anon_kb();
    if (kb > atomic_load(&sm->peak_kb)) atomic_store(&sm->peak_kb, kb);
    return (double)atomic_load(&sm->peak_kb) / 1024.0;
}

/* ----------------------------------------------------------- the events */

#define POOL 256
static char g_data[POOL][320], g_meta[POOL][160];
static size_t g_data_len[POOL], g_meta_len[POOL];
static const char *const g_types[] = {"OrderPlaced", "OrderPaid", "OrderPacked", "OrderShipped", "OrderDelivered"};

/* ~200-byte data and ~100-byte metadata objects, varied so no two are alike. */
static void pool_init(void) {
    static const char *const names[] = {"Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra",
                                        "Barbara Liskov", "Donald Knuth", "Frances Allen", "Ken Thompson"};
    uint64_t r = 0x9E3779B97F4A7C15ULL;
    for (int i = 0; i < POOL; i++) {
        uint64_t a = rng_next(&r), b = rng_next(&r);
        int n = snprintf(g_data[i], sizeof g_data[i],
                         "{\"order_id\":\"ord-%06u\",\"customer\":{\"id\":\"cust-%05u\",\"name\":\"%s\"},"
                         "\"items\":[{\"sku\":\"SKU-%04u\",\"qty\":%u,\"price\":%u.%02u},{\"sku\":\"SKU-%04u\",\"qty\":%u,"
                         "\"price\":%u.%02u}],\"total\":%u.%02u,\"currency\":\"EUR\",\"paid\":%s}",
                         (unsigned)(a % 1000000), (unsigned)(b % 100000), names[a % 8], (unsigned)(a >> 20) % 10000,
                         (unsigned)(a >> 34) % 9 + 1, (unsigned)(b >> 8) % 500, (unsigned)(b >> 17) % 100,
                         (unsigned)(b >> 24) % 10000, (unsigned)(b >> 40) % 9 + 1, (unsigned)(a >> 44) % 500,
                         (unsigned)(a >> 52) % 100, (unsigned)(b >> 50) % 5000, (unsigned)(a >> 8) % 100,
                         (b & 1) ? "true" : "false");
        g_data_len[i] = (size_t)n;
        evs_uuid corr;
        evs_uuid_v7(&corr);
        char cs[37];
        evs_uuid_format(&corr, cs);
        n = snprintf(g_meta[i], sizeof g_meta[i],
                     "{\"correlation\":\"%s\",\"user\":\"user-%04u\",\"source\":\"web\",\"ip\":\"10.%u.%u.%u\"}", cs,
                     (unsigned)(a % 10000), (unsigned)(b % 256), (unsigned)(b >> 8) % 256, (unsigned)(b >> 16) % 256);
        g_meta_len[i] = (size_t)n;
    }
}

static void fill_event(evs_event_in *e, uint64_t *rng, uint64_t version) {
    unsigned k = (unsigned)(rng_next(rng) % POOL);
    memset(e, 0, sizeof *e);
    e->event_type = g_types[version % 5];
    e->data = g_data[k];
    e->data_len = g_data_len[k];
    e->metadata = g_meta[k];
    e->metadata_len = g_meta_len[k];
}

static double avg_event_payload(void) {
    double d = 0, m = 0;
    for (int i = 0; i < POOL; i++) d += (double)g_data_len[i], m += (double)g_meta_len[i];
    printf("events: data %.0f bytes, metadata %.0f bytes on average (%d generated orders)\n", d / POOL, m / POOL, POOL);
    return (d + m) / POOL;
}

/* ------------------------------------------------------------ stores */

static evs_store *store_open(const char *dir, evs_durability d) {
    evs_store *s;
    int rc = evs_store_create(&s);
    if (rc) die("create store", rc);
    if ((rc = evs_store_set_durability(s, d, d == EVS_DURABILITY_BATCH ? 10 : 0))) die("set durability", rc);
    const char *za = getenv("EVS_BENCH_ZERO_AHEAD");
    if (za && *za) {
        char *end;
        unsigned long long bytes = strtoull(za, &end, 10);
        if (*end || *za == '-') {
            fprintf(stderr, "bench_store: EVS_BENCH_ZERO_AHEAD=%s is not a byte count (0 turns zero-ahead off)\n", za);
            exit(1);
        }
        if ((rc = evs__store_set_zero_ahead(s, bytes))) die("set zero-ahead", rc);
    }
    if ((rc = evs_store_open(s, dir, EVS_OPEN_CREATE))) die(dir, rc);
    return s;
}

static void stats(evs_store *s, evs_store_stats *st) {
    int rc = evs_store_get_stats(s, st);
    if (rc) die("stats", rc);
}

/* ------------------------------------------------- appends (W1, W2, W3) */

typedef struct run_result {
    double rate;            /* appends/s (or ops/s) */
    double p50, p99, p999;  /* ms */
    long ops, conflicts;
    double per_batch;       /* appends per group commit */
} run_result;

typedef struct worker {
    evs_store *s;
    int tid, nthreads, batch;
    uint64_t *versions;     /* shared; this thread touches only its streams */
    atomic_long *claimed;
    long cap;
    int64_t seconds_ns;
    pthread_barrier_t *bar;
    int64_t *lat;
    long nlat, conflicts;
    uint64_t rng;
    int64_t t_end;
    int failed_rc;
    char failed_msg[512];
} worker;

static void *append_worker(void *arg) {
    worker *w = arg;
    evs_event_in *ev = calloc((size_t)w->batch, sizeof *ev);
    long per = (C.streams - w->tid + w->nthreads - 1) / w->nthreads;
    pthread_barrier_wait(w->bar);
    int64_t deadline = now_ns() + w->seconds_ns;
    if (!ev) {
        w->failed_rc = EVS_ENOMEM;
        snprintf(w->failed_msg, sizeof w->failed_msg, "out of memory");
        return NULL;
    }
    for (;;) {
        if (now_ns() >= deadline) break;
        if (atomic_fetch_add(w->claimed, 1) >= w->cap) break;
        long n = w->tid + w->nthreads * (long)(rng_next(&w->rng) % (uint64_t)per);
        char name[32];
        snprintf(name, sizeof name, "order-%ld", n);
        uint64_t v = w->versions[n];
        for (int i = 0; i < w->batch; i++) fill_event(&ev[i], &w->rng, v + (uint64_t)i);
        evs_append_result res;
        int64_t t0 = now_ns();
        int rc = evs_append(w->s, name, (int64_t)v, ev, (size_t)w->batch, &res, NULL);
        int64_t t1 = now_ns();
        if (rc == EVS_ECONFLICT) {
            w->conflicts++;
            w->versions[n] = res.actual_version;
            continue;
        }
        if (rc) {
            w->failed_rc = rc;
            snprintf(w->failed_msg, sizeof w->failed_msg, "append to %s: %s", name, evs_errmsg());
            break;
        }
        if (res.last_stream_position != v + (uint64_t)w->batch) {
            w->failed_rc = EVS_EINVAL;
            snprintf(w->failed_msg, sizeof w->failed_msg, "append to %s at version %llu returned version %llu", name,
                     (unsigned long long)v, (unsigned long long)res.last_stream_position);
            break;
        }
        w->versions[n] = res.last_stream_position;
        if (w->nlat < w->cap) w->lat[w->nlat++] = t1 - t0;
    }
    w->t_end = now_ns();
    free(ev);
    return NULL;
}

/* One run: nthreads appenders, batch events per append, for seconds or cap appends. */
static run_result run_appends(evs_store *s, uint64_t *versions, int nthreads, int batch, double seconds, long cap) {
    worker *w = calloc((size_t)nthreads, sizeof *w);
    pthread_t *th = calloc((size_t)nthreads, sizeof *th);
    int64_t *lat = malloc((size_t)cap * sizeof *lat);
    if (!w || !th || !lat) die_errno("allocate a run");
    atomic_long claimed = 0;
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, (unsigned)nthreads + 1);
    evs_store_stats st0, st1;
    stats(s, &st0);
    for (int t = 0; t < nthreads; t++) {
        w[t] = (worker){.s = s, .tid = t, .nthreads = nthreads, .batch = batch, .versions = versions,
                        .claimed = &claimed, .cap = cap, .seconds_ns = (int64_t)(seconds * 1e9), .bar = &bar,
                        .rng = 0x1234567ULL + (uint64_t)t * 7919 + (uint64_t)now_ns()};
        w[t].lat = malloc((size_t)cap * sizeof *w[t].lat);
        if (!w[t].lat) die_errno("allocate latencies");
        if (pthread_create(&th[t], NULL, append_worker, &w[t]) != 0) die_errno("start an appender");
    }
    pthread_barrier_wait(&bar);
    int64_t t0 = now_ns(), t1 = t0;
    run_result r = {0};
    long n = 0;
    for (int t = 0; t < nthreads; t++) {
        pthread_join(th[t], NULL);
        if (w[t].failed_rc) {
            fprintf(stderr, "bench_store: %s (%s)\n", w[t].failed_msg, evs_errname(w[t].failed_rc));
            cleanup();
            exit(1);
        }
        if (w[t].t_end > t1) t1 = w[t].t_end;
        for (long i = 0; i < w[t].nlat && n < cap; i++) lat[n++] = w[t].lat[i];
        r.conflicts += w[t].conflicts;
        free(w[t].lat);
    }
    stats(s, &st1);
    pthread_barrier_destroy(&bar);
    qsort(lat, (size_t)n, sizeof *lat, cmp_i64);
    r.ops = n;
    r.rate = (double)n / ((double)(t1 - t0) / 1e9);
    r.p50 = pct_ms(lat, n, 0.50);
    r.p99 = pct_ms(lat, n, 0.99);
    r.p999 = pct_ms(lat, n, 0.999);
    uint64_t batches = st1.batches - st0.batches;
    r.per_batch = batches ? (double)(st1.appends - st0.appends) / (double)batches : 0;
    free(lat);
    free(th);
    free(w);
    return r;
}

/* ------------------------------------------------------- the baseline */

#define BASE_FILE_BYTES (16u << 20)

static void baseline_prepare(const char *path) {
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) die_errno(path);
    static char zeros[1 << 20];
    for (unsigned off = 0; off < BASE_FILE_BYTES; off += sizeof zeros)
        if (pwrite(fd, zeros, sizeof zeros, off) != (ssize_t)sizeof zeros) die_errno("fill the baseline file");
    if (fsync(fd) != 0) die_errno("fsync the baseline file");
    close(fd);
}

/* bs-byte pwrite + fdatasync (4 KiB or 64 KiB), walking through the preallocated file. */
static run_result run_baseline(const char *path, size_t bs, double seconds, long cap) {
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) die_errno(path);
    int64_t *lat = malloc((size_t)cap * sizeof *lat);
    if (!lat) die_errno("allocate latencies");
    static char block[64 * 1024];
    long n = 0;
    int64_t t0 = now_ns(), deadline = t0 + (int64_t)(seconds * 1e9), t1 = t0;
    while (n < cap && (t1 = now_ns()) < deadline) {
        memset(block, (int)(n & 0xff), 64);
        off_t off = (off_t)((unsigned long)n % (BASE_FILE_BYTES / bs)) * (off_t)bs;
        if (pwrite(fd, block, bs, off) != (ssize_t)bs) die_errno("baseline pwrite");
        if (fdatasync(fd) != 0) die_errno("baseline fdatasync");
        int64_t t2 = now_ns();
        lat[n++] = t2 - t1;
    }
    t1 = now_ns();
    close(fd);
    qsort(lat, (size_t)n, sizeof *lat, cmp_i64);
    run_result r = {.ops = n, .rate = (double)n / ((double)(t1 - t0) / 1e9)};
    r.p50 = pct_ms(lat, n, 0.50);
    r.p99 = pct_ms(lat, n, 0.99);
    r.p999 = pct_ms(lat, n, 0.999);
    free(lat);
    return r;
}

/* ------------------------------------------------------------ results */

typedef struct med {
    double rate, p50, p99, p999, per_batch;
    double lo, hi; /* slowest and fastest run */
    long conflicts, ops;
} med;

static med median_of(const run_result *r, int n) {
    double a[64], b[64], c[64], d[64], e[64];
    med m = {0};
    for (int i = 0; i < n && i < 64; i++) {
        a[i] = r[i].rate, b[i] = r[i].p50, c[i] = r[i].p99, d[i] = r[i].p999, e[i] = r[i].per_batch;
        m.conflicts += r[i].conflicts;
        m.ops += r[i].ops;
    }
    m.rate = median(a, n), m.p50 = median(b, n), m.p99 = median(c, n), m.p999 = median(d, n);
    m.per_batch = median(e, n);
    m.lo = m.hi = r[0].rate;
    for (int i = 1; i < n && i < 64; i++) {
        if (r[i].rate < m.lo) m.lo = r[i].rate;
        if (r[i].rate > m.hi) m.hi = r[i].rate;
    }
    return m;
}

static void print_run(const char *label, int i, int n, const run_result *r, const char *unit, int batch) {
    char a[40], b[24], c[24], d[24];
    printf("  %s run %d/%d: %s %s/s", label, i + 1, n, fmt_n(a, sizeof a, r->rate), unit);
    if (batch > 1) printf(" (%s events/s)", fmt_n(a, sizeof a, r->rate * batch));
    printf(", p50 %s, p99 %s, p99.9 %s, %ld ops", fmt_ms(b, sizeof b, r->p50), fmt_ms(c, sizeof c, r->p99),
           fmt_ms(d, sizeof d, r->p999), r->ops);
    if (r->per_batch > 0) printf(", %.2f %s per group commit", r->per_batch, unit);
    if (r->conflicts) printf(", %ld conflicts", r->conflicts);
    printf("\n");
    fflush(stdout);
}

/* How far apart the runs were: noise on a shared machine shows here. */
static void print_spread(const char *label, const med *m, const char *unit) {
    char a[40], b[40];
    printf("   %s spread over the runs: slowest %s, fastest %s %s/s\n", label, fmt_n(a, sizeof a, m->lo),
           fmt_n(b, sizeof b, m->hi), unit);
}

/* The summary table, filled as workloads finish. */
typedef struct row {
    char work[48], result[160], baseline[64], target[48], ratio[24], met[8];
} row;
static row g_rows[24];
static int g_nrows;


/* vs: the measured figure divided by the target (for "at most" targets, the
   target divided by the figure), so >= 1 always means the target is met. */
static void add_row(const char *work, const char *result, const char *baseline, const char *vs_base,
                    const char *target, double vs) {
    if (g_nrows == 24) return;
    row *r = &g_rows[g_nrows++];
    snprintf(r->work, sizeof r->work, "%s", work);
    snprintf(r->result, sizeof r->result, "%s", result);
    snprintf(r->baseline, sizeof r->baseline, "%s%s%s", baseline, vs_base[0] ? "; " : "", vs_base);
    snprintf(r->target, sizeof r->target, "%s", target);
    if (vs > 0) {
        snprintf(r->ratio, sizeof r->ratio, "%.2f", vs);
        snprintf(r->met, sizeof r->met, "%s", vs >= 1 ? "yes" : "NO");
    } else {
        snprintf(r->ratio, sizeof r->ratio, "-");
        snprintf(r->met, sizeof r->met, "-");
    }
}

static char g_notes[4][320];
static int g_nnotes;

/* Warn (now and under the summary) when a figure's runs disagree widely. */
static void check_noise(const char *what, double lo, double hi) {
    if (lo <= 0 || hi / lo < 1.5) return;
    char *note = g_notes[g_nnotes < 4 ? g_nnotes++ : 3];
    snprintf(note, sizeof g_notes[0],
             "NOISY: %s varied %.1f-fold between runs (other work on the machine); ratios involving it are unreliable, "
             "rerun when the machine is quiet (see the per-run lines)", what, hi / lo);
    printf("%s\n", note);
}

static void print_summary(void) {
    printf("\n== summary: medians; every ratio is against a figure measured in this same run ==\n\n");
    printf("| Workload | Result (median) | Baseline (same run); ratio | Target | Result / target | Met |\n");
    printf("|---|---|---|---|---|---|\n");
    for (int i = 0; i < g_nrows; i++) {
        row *r = &g_rows[i];
        printf("| %s | %s | %s | %s | %s | %s |\n", r->work, r->result, r->baseline, r->target, r->ratio, r->met);
    }
    printf("\n");
    for (int i = 0; i < g_nnotes; i++) printf("%s\n", g_notes[i]);
    if (g_nnotes) printf("\n");
}

/* ------------------------------------------------- W1, W2, W3: appends */

/* Median over the rounds of a[i] / b[i]: both measured in the same round. */
static double pair_ratio(const run_result *a, const run_result *b, int n, double scale) {
    double q[64];
    for (int i = 0; i < n && i < 64; i++) q[i] = b[i].rate > 0 ? a[i].rate * scale / b[i].rate : 0;
    return median(q, n);
}

#ifdef EVS_BENCH_REDIS
#include "redis_peer.h"
#endif
#include "commit_floor.h"

/*
 * B, B64, G1, G8, G64, W1, W2, W2b and W3 run round-robin (then the same workloads
 * against Redis when the peer is built and redis-server is installed) on
 * one store, so every ratio compares runs made within the same round and a
 * burst of load from other processes hits both sides of a ratio.  The
 * ratios are the median of the per-round ratios.
 */
enum { WB, WB64, G1, G8, G64, W1, W2, W2B, W3, R1, R2, R2B, R3, NW };

static void write_workloads(void) {
    int w1 = want("W1") || want("W2") || want("W2b") || want("W3"), w2 = want("W2"), w2b = want("W2b"), w3 = want("W3");
    if (!w1) return;
    const char *bpath = data_path("baseline.dat");
    const char *wdir = data_path("write");
    rm_tree(wdir);
    baseline_prepare(bpath);
    evs_store *s = store_open(wdir, EVS_DURABILITY_SYNC);
    uint64_t *versions = calloc((size_t)C.streams, sizeof *versions);
    uint64_t *rversions = calloc((size_t)C.streams, sizeof *rversions);
    if (!versions || !rversions) die_errno("allocate versions");
    char a[40], b[40], c[24], d[24], e[24], res[160], base[64], vs[64], work[48];
    static run_result rr[NW][64];
    int n = C.runs > 64 ? 64 : C.runs;
    int redis = 0;
#ifdef EVS_BENCH_REDIS
    redis_peer peer;
    const char *rdir = data_path("redis");
    rm_tree(rdir);
    if (!getenv("EVS_BENCH_NO_REDIS")) {
        redis = redis_start(&peer, rdir) == 0;
        if (!redis) printf("\nRedis peer: redis-server not found or did not start; skipped\n");
    }
#else
    printf("\nRedis peer: not built (hiredis missing at build time); skipped\n");
#endif
    int on[NW] = {1, w3, w2 || w2b, w2, w2b, 1, w2, w2b, w3, redis, redis && w2, redis && w2b, redis && w3};
    const char *label[NW] = {"B  ", "B64", "G1 ", "G8 ", "G64", "W1 ", "W2 ", "W2b", "W3 ", "R1 ", "R2 ", "R2b", "R3 "};

    /* warm-up: the first appends create streams and fault in the index */
    run_baseline(bpath, 4096, 0.2, C.base_ops);
    run_appends(s, versions, 1, 1, 0.3, C.w1_ops);
    if (w2 || w2b) run_appends(s, versions, C.threads_many, 1, 0.3, C.w2_ops);
    if (w3) run_appends(s, versions, 1, C.batch, 0.3, C.w3_ops);
#ifdef EVS_BENCH_REDIS
    if (redis) run_redis(&peer, rversions, 1, 1, 0.3, C.w1_ops);
#endif
    printf("\nround-robin, %d rounds, each run %.1f s or a fixed number of appends:\n", n, C.seconds);
    printf("  B   = 4 KiB pwrite + fdatasync of a preallocated file; B64 = the same with 64 KiB writes\n");
    if (on[G1])
        printf("  G1, G8, G64 = 1, %d, %d clients of a group commit with no store (bench/commit_floor.h): futex hand-offs, "
               "512 bytes per request, one pwrite and fdatasync per commit into the same file as B\n",
               C.threads, C.threads_many);
    printf("  W1  = 1 thread x 1 event per append, sync; W2 = %d threads, W2b = %d threads x 1 event; W3 = 1 thread x %d "
           "events (at most %ld appends per run)\n", C.threads, C.threads_many, C.batch, C.w3_ops);
    if (redis)
        printf("  R1, R2, R2b, R3 = the same against Redis (appendonly yes, appendfsync always; one EVALSHA per append "
               "checking XLEN and XADDing)\n");
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < NW; k++) {
            if (!on[k]) continue;
            run_result *r = &rr[k][i];
            switch (k) {
            case WB: *r = run_baseline(bpath, 4096, C.seconds, C.base_ops); break;
            case WB64: *r = run_baseline(bpath, 65536, C.seconds, C.base_ops); break;
            case G1: *r = run_commit_floor(bpath, 1, C.seconds, C.w1_ops); break;
            case G8: *r = run_commit_floor(bpath, C.threads, C.seconds, C.w2_ops); break;
            case G64: *r = run_commit_floor(bpath, C.threads_many, C.seconds, C.w2_ops); break;
            case W1: *r = run_appends(s, versions, 1, 1, C.seconds, C.w1_ops); break;
            case W2: *r = run_appends(s, versions, C.threads, 1, C.seconds, C.w2_ops); break;
            case W2B: *r = run_appends(s, versions, C.threads_many, 1, C.seconds, C.w2_ops); break;
            case W3: *r = run_appends(s, versions, 1, C.batch, C.seconds, C.w3_ops); break;
#ifdef EVS_BENCH_REDIS
            case R1: *r = run_redis(&peer, rversions, 1, 1, C.seconds, C.w1_ops); break;
            case R2: *r = run_redis(&peer, rversions, C.threads, 1, C.seconds, C.w2_ops); break;
            case R2B: *r = run_redis(&peer, rversions, C.threads_many, 1, C.seconds, C.w2_ops); break;
            case R3: *r = run_redis(&peer, rversions, 1, C.batch, C.seconds, C.w3_ops); break;
#endif
            default: break;
            }
            print_run(label[k], i, n, r, k <= WB64 ? "fdatasync" : k <= G64 ? "requests" : "appends",
                      (k == W3 || k == R3) ? C.batch : 1);
        }
    }
    printf("\n");
    med m[NW];
    for (int k = 0; k < NW; k++)
        if (on[k]) m[k] = median_of(rr[k], n);
    check_noise("the fdatasync baseline B", m[WB].lo, m[WB].hi);
    snprintf(res, sizeof res, "%s fdatasync/s, p50 %s, p99 %s, p99.9 %s", fmt_n(a, sizeof a, m[WB].rate),
             fmt_ms(c, sizeof c, m[WB].p50), fmt_ms(d, sizeof d, m[WB].p99), fmt_ms(e, sizeof e, m[WB].p999));
    printf("B   %s\n", res);
    add_row("B fdatasync 4 KiB", res, "-", "", "-", 0);
    if (on[WB64]) {
        snprintf(res, sizeof res, "%s fdatasync/s (%.0f MiB/s), p50 %s, p99 %s", fmt_n(a, sizeof a, m[WB64].rate),
                 m[WB64].rate / 16, fmt_ms(c, sizeof c, m[WB64].p50), fmt_ms(d, sizeof d, m[WB64].p99));
        printf("B64 %s\n", res);
        add_row("B64 fdatasync 64 KiB", res, "-", "", "-", 0);
    }
    /* one row per store workload, with its ratio to its baseline and, when the peer ran, to Redis */
    struct {
        int k, rk, base, unitb;
        double scale, target;
        const char *name, *tgt;
    } rows[] = {
        {G8, -1, G1, 0, 1.0, 0, "G8 %d clients, no store (floor)", "-"},
        {G64, -1, G1, 0, 1.0, 0, "G64 %d clients, no store (floor)", "-"},
        {W1, R1, WB, 0, 1.0, 0.85, "W1 1 thread, 1 event, sync", ">= 0.85x B"},
        {W2, R2, W1, 0, 1.0, 6.0, "W2 %d threads, 1 event, sync", ">= 6x W1"},
        {W2B, R2B, W1, 0, 1.0, 10.0, "W2b %d threads, 1 event, sync", ">= 10x W1"},
        {W3, R3, WB64, 0, 1.0, 0.6, "W3 1 thread, %d events, sync", ">= 0.6x B64 (appends/s)"},
    };
    for (size_t x = 0; x < sizeof rows / sizeof rows[0]; x++) {
        int k = rows[x].k, bk = rows[x].base;
        if (!on[k] || !on[bk]) continue;
        med *mk = &m[k];
        double q = pair_ratio(rr[k], rr[bk], n, 1.0);
        int events = k == W3 ? C.batch : 1;
        snprintf(work, sizeof work, rows[x].name,
                 k == W2 || k == G8 ? C.threads : k == W2B || k == G64 ? C.threads_many : C.batch);
        if (events > 1)
            snprintf(res, sizeof res, "%s events/s (%s appends/s), p50 %s, p99 %s, p99.9 %s",
                     fmt_n(a, sizeof a, mk->rate * events), fmt_n(b, sizeof b, mk->rate), fmt_ms(c, sizeof c, mk->p50),
                     fmt_ms(d, sizeof d, mk->p99), fmt_ms(e, sizeof e, mk->p999));
        else
            snprintf(res, sizeof res, "%s %s/s, p50 %s, p99 %s, p99.9 %s", fmt_n(a, sizeof a, mk->rate),
                     k <= G64 ? "requests" : "appends", fmt_ms(c, sizeof c, mk->p50), fmt_ms(d, sizeof d, mk->p99),
                     fmt_ms(e, sizeof e, mk->p999));
        if (mk->per_batch > 0) {
            size_t l = strlen(res);
            snprintf(res + l, sizeof res - l, "; %.1f per commit", mk->per_batch);
        }
        printf("%s: %s; %.2fx %s\n", work, res, q, label[bk]);
        print_spread(label[k], mk, "appends");
        if (mk->conflicts) printf("%s conflicts: %ld (not counted as appends)\n", label[k], mk->conflicts);
        check_noise(work, mk->lo, mk->hi);
        snprintf(base, sizeof base, "%s %s/s", label[bk], fmt_n(b, sizeof b, m[bk].rate));
        snprintf(vs, sizeof vs, "%.2fx", q);
        add_row(work, res, base, vs, rows[x].tgt, rows[x].target > 0 ? q / rows[x].target : 0);
        /* how much of what the host allows the store reaches, round by round */
        int fk = k == W2 ? G8 : k == W2B ? G64 : -1;
        if (fk >= 0 && on[fk] && on[G1]) {
            double qs[64];
            for (int i = 0; i < n; i++) {
                double wq = rr[bk][i].rate > 0 ? rr[k][i].rate / rr[bk][i].rate : 0;
                double gq = rr[G1][i].rate > 0 ? rr[fk][i].rate / rr[G1][i].rate : 0;
                qs[i] = gq > 0 ? wq / gq : 0;
            }
            printf("%s/W1 is %.2f of %s/G1 (median over the rounds): the share of the scaling this host allows with no "
                   "store at all that the store reaches\n", k == W2 ? "W2" : "W2b", median(qs, n), k == W2 ? "G8" : "G64");
        }
        int rk = rows[x].rk;
        if (rk >= 0 && on[rk]) {
            med *mr = &m[rk];
            double qr = pair_ratio(rr[k], rr[rk], n, 1.0);
            snprintf(work, sizeof work, "Redis: %s", label[rk]);
            if (events > 1)
                snprintf(res, sizeof res, "%s events/s (%s appends/s), p50 %s, p99 %s", fmt_n(a, sizeof a, mr->rate * events),
                         fmt_n(b, sizeof b, mr->rate), fmt_ms(c, sizeof c, mr->p50), fmt_ms(d, sizeof d, mr->p99));
            else
                snprintf(res, sizeof res, "%s appends/s, p50 %s, p99 %s", fmt_n(a, sizeof a, mr->rate),
                         fmt_ms(c, sizeof c, mr->p50), fmt_ms(d, sizeof d, mr->p99));
            printf("%s: %s; evstore/Redis %.2fx\n", work, res, qr);
            snprintf(base, sizeof base, "evstore / Redis");
            snprintf(vs, sizeof vs, "%.2fx", qr);
            add_row(work, res, base, vs, "-", 0);
        }
    }
#ifdef EVS_BENCH_REDIS
    if (redis) redis_stop(&peer);
#endif
    evs_store_stats st;
    stats(s, &st);
    char ixp[4400];
    snprintf(ixp, sizeof ixp, "%s/index/data.mdb", wdir);
    struct stat sb;
    if (stat(ixp, &sb) == 0)
        printf("write store: %s events; index file %.1f MiB apparent, %.1f MiB allocated; log %.1f MiB\n",
               fmt_n(a, sizeof a, (double)st.head), (double)sb.st_size / 1048576.0, (double)sb.st_blocks * 512 / 1048576.0,
               (double)st.log_bytes / 1048576.0);
    evs_store_close(s);
    free(versions);
    free(rversions);
    rm_tree(wdir);
    rm_tree(bpath);
}

/* ------------------------------------------ read baseline: CRC32C scan */

typedef struct scan {
    void *map[1024];
    size_t len[1024];
    int n;
    uint64_t bytes;
} scan;

static int seg_filter(const struct dirent *d) { return d->d_name[0] != '.'; }

/* Map the store's log files in name order, `bytes` in all (the rest of a
   preallocated segment holds no frames). */
static void scan_open(scan *sc, const char *store_dir, uint64_t bytes) {
    char path[4400];
    snprintf(path, sizeof path, "%s/log", store_dir);
    struct dirent **ents;
    int ne = scandir(path, &ents, seg_filter, alphasort);
    if (ne < 0) die_errno(path);
    memset(sc, 0, sizeof *sc);
    for (int i = 0; i < ne; i++) {
        char f[4700];
        snprintf(f, sizeof f, "%s/%s", path, ents[i]->d_name);
        free(ents[i]);
        struct stat sb;
        if (sc->bytes >= bytes || sc->n == 1024 || stat(f, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size == 0) continue;
        size_t len = (size_t)sb.st_size;
        if (len > bytes - sc->bytes) len = (size_t)(bytes - sc->bytes);
        int fd = open(f, O_RDONLY | O_CLOEXEC);
        if (fd < 0) die_errno(f);
        void *p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
        close(fd);
        if (p == MAP_FAILED) die_errno("mmap a segment");
        sc->map[sc->n] = p;
        sc->len[sc->n++] = len;
        sc->bytes += len;
    }
    free(ents);
}

static void scan_close(scan *sc) {
    for (int i = 0; i < sc->n; i++) munmap(sc->map[i], sc->len[i]);
    sc->n = 0;
}

static volatile uint32_t g_sink;

/* Bytes per second of CRC32C over the mapped log. */
static double scan_pass(const scan *sc) {
    int64_t t0 = now_ns();
    uint32_t crc = 0;
    for (int i = 0; i < sc->n; i++) crc = evs__crc32c(crc, sc->map[i], sc->len[i]);
    int64_t t1 = now_ns();
    g_sink = crc;
    return (double)sc->bytes / ((double)(t1 - t0) / 1e9);
}

/* Median events/s-equivalent of a CRC scan over the bytes of `events` events. */
static double scan_baseline(evs_store *s, const char *dir, uint64_t events) {
    evs_store_stats st;
    stats(s, &st);
    double per_event = st.head ? (double)st.log_bytes / (double)st.head : 1;
    scan sc;
    scan_open(&sc, dir, (uint64_t)(per_event * (double)events));
    scan_pass(&sc); /* fault the mapping in */
    double r[64];
    int n = C.read_runs > 64 ? 64 : C.read_runs;
    for (int i = 0; i < n; i++) r[i] = scan_pass(&sc) / per_event;
    scan_close(&sc);
    return median(r, n);
}

/* ------------------------------------------------------ W4, W5: reads */

typedef struct read_result {
    double rate;
    double secs;
} read_result;

static read_result read_stream_pass(evs_store *s, const char *stream, uint64_t expect) {
    evs_reader *r;
    const evs_event *ev;
    uint64_t pos = 0, sum = 0;
    int64_t t0 = now_ns();
    int rc = evs_read_stream(s, stream, 1, EVS_FORWARD, 0, &r);
    if (rc) die("read stream", rc);
    while ((rc = evs_reader_next(r, &ev)) == EVS_OK) {
        if (ev->stream_position != ++pos) {
            fprintf(stderr, "bench_store: %s: got stream position %llu, wanted %llu\n", stream,
                    (unsigned long long)ev->stream_position, (unsigned long long)pos);
            cleanup();
            exit(1);
        }
        sum += ev->data_len + (unsigned char)ev->data[0] + ev->metadata_len;
    }
    if (rc != EVS_DONE) die("read stream next", rc);
    evs_reader_close(r);
    int64_t t1 = now_ns();
    g_sink = (uint32_t)sum;
    if (pos != expect) {
        fprintf(stderr, "bench_store: %s: read %llu events, wanted %llu\n", stream, (unsigned long long)pos,
                (unsigned long long)expect);
        cleanup();
        exit(1);
    }
    read_result rr = {(double)pos / ((double)(t1 - t0) / 1e9), (double)(t1 - t0) / 1e9};
    return rr;
}

static read_result read_all_pass(evs_store *s, uint64_t expect) {
    evs_reader *r;
    const evs_event *ev;
    uint64_t pos = 0, sum = 0;
    int64_t t0 = now_ns();
    int rc = evs_read_all(s, 1, EVS_FORWARD, NULL, (size_t)expect, &r);
    if (rc) die("read $all", rc);
    while ((rc = evs_reader_next(r, &ev)) == EVS_OK) {
        if (ev->global_position != ++pos) {
            fprintf(stderr, "bench_store: $all: got global position %llu, wanted %llu\n",
                    (unsigned long long)ev->global_position, (unsigned long long)pos);
            cleanup();
            exit(1);
        }
        sum += ev->data_len + (unsigned char)ev->data[0] + ev->metadata_len;
    }
    if (rc != EVS_DONE) die("read $all next", rc);
    evs_reader_close(r);
    int64_t t1 = now_ns();
    g_sink = (uint32_t)sum;
    if (pos != expect) {
        fprintf(stderr, "bench_store: $all: read %llu events, wanted %llu\n", (unsigned long long)pos,
                (unsigned long long)expect);
        cleanup();
        exit(1);
    }
    read_result rr = {(double)pos / ((double)(t1 - t0) / 1e9), (double)(t1 - t0) / 1e9};
    return rr;
}

typedef read_result (*pass_fn)(evs_store *s, const char *stream, uint64_t expect);

static read_result pass_all(evs_store *s, const char *stream, uint64_t expect) {
    (void)stream;
    return read_all_pass(s, expect);
}

/* A warm-up pass (reported), then read_runs timed passes; median events/s. */
static double read_runs(const char *label, evs_store *s, const char *stream, uint64_t expect, pass_fn fn) {
    char a[40];
    read_result w = fn(s, stream, expect);
    printf("  %s warm-up pass (first touch of the mapping): %s events/s, %.3f s\n", label, fmt_n(a, sizeof a, w.rate),
           w.secs);
    double r[64];
    int n = C.read_runs > 64 ? 64 : C.read_runs;
    for (int i = 0; i < n; i++) {
        read_result x = fn(s, stream, expect);
        r[i] = x.rate;
        printf("  %s run %d/%d: %s events/s, %.3f s\n", label, i + 1, n, fmt_n(a, sizeof a, x.rate), x.secs);
    }
    double lo = r[0], hi = r[0];
    for (int i = 1; i < n; i++) {
        if (r[i] < lo) lo = r[i];
        if (r[i] > hi) hi = r[i];
    }
    char b[40];
    printf("   %s spread over the runs: slowest %s, fastest %s events/s\n", label, fmt_n(a, sizeof a, lo),
           fmt_n(b, sizeof b, hi));
    char what[48];
    snprintf(what, sizeof what, "the %s read rate", label);
    check_noise(what, lo, hi);
    fflush(stdout);
    return median(r, n);
}

static void read_row(const char *work, const char *line_label, double rate, double base, double target) {
    char a[40], b[40], res[96], bs[64], vs[64];
    printf("%s: %s events/s; %.2fx the CRC32C scan of the same log bytes (%s events/s); %.2fx the target %s events/s\n",
           line_label, fmt_n(a, sizeof a, rate), rate / base, fmt_n(b, sizeof b, base), rate / target,
           fmt_n(res, sizeof res, target));
    snprintf(res, sizeof res, "%s events/s", fmt_n(a, sizeof a, rate));
    snprintf(bs, sizeof bs, "CRC32C scan %s ev/s", fmt_n(b, sizeof b, base));
    snprintf(vs, sizeof vs, "%.2fx", rate / base);
    char tg[48];
    snprintf(tg, sizeof tg, ">= %s events/s", fmt_n(a, sizeof a, target));
    add_row(work, res, bs, vs, tg, rate / target);
}

static void w4_workload(void) {
    if (!want("W4") && !want("W5")) return;
    const char *dir = data_path("w4");
    rm_tree(dir);
    evs_store *s = store_open(dir, EVS_DURABILITY_NONE);
    const char *stream = "order-w4";
    uint64_t rng = 42, n = (uint64_t)C.w4_events;
    evs_event_in ev;
    int64_t t0 = now_ns();
    for (uint64_t v = 0; v < n; v++) {
        evs_append_result res;
        fill_event(&ev, &rng, v);
        int rc = evs_append(s, stream, (int64_t)v, &ev, 1, &res, NULL);
        if (rc) die("build the W4 stream", rc);
    }
    double secs = (double)(now_ns() - t0) / 1e9;
    char a[40], b[40];
    printf("\nW4: built stream %s of %s events as one-event appends (durability none) in %.1f s, %s appends/s\n", stream,
           fmt_n(a, sizeof a, (double)n), secs, fmt_n(b, sizeof b, (double)n / secs));
    double base = scan_baseline(s, dir, n);
    if (want("W4")) {
        double rate = read_runs("W4", s, stream, n, read_stream_pass);
        char label[96];
        snprintf(label, sizeof label, "W4 read one %s-event stream forward", fmt_n(a, sizeof a, (double)n));
        read_row("W4 read 1 stream (1-event appends)", label, rate, base, 5e6);
    }
    if (want("W5")) {
        printf("\nW5b: $all over the W4 store (%s records of one event each)\n", fmt_n(a, sizeof a, (double)n));
        double rate = read_runs("W5b", s, NULL, n, pass_all);
        char label[96];
        snprintf(label, sizeof label, "W5b read $all of %s one-event records", fmt_n(a, sizeof a, (double)n));
        read_row("W5b $all, 1-event records (extra)", label, rate, base, 5e6);
    }
    evs_store_close(s);
    rm_tree(dir);
}

/* ------------------------------------------------------ W4i: interleaved */

/* A frame's header (docs/format.md "Frame"): u32 payload length first. */
#define W4I_FRAME_HDR 32u
#define W4I_CHUNK (1u << 20)

/*
 * The least a first read of the stream can cost in this layout, for
 * comparison with W4i (docs/benchmarks.md): walk its entries in a freshly
 * opened index, then read the bytes its frames span with 1 MiB preads (on
 * this host far cheaper than a fresh mapping's first touches) and checksum
 * each frame.  No decoding and no checks, so no reader can be faster.  Run
 * with the store closed: LMDB must not be open twice in one process.
 * Returns events/s; *walk_s and *frames_s get the seconds the index walk
 * and the frames took.
 */
static double w4i_floor(const char *dir, const char *stream, uint64_t expect, double *walk_s, double *frames_s) {
    char path[4400];
    snprintf(path, sizeof path, "%s/index", dir);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi streams, sev;
    MDB_cursor *c;
    uint64_t *lsn = malloc((size_t)expect * sizeof *lsn);
    uint8_t *buf = malloc(W4I_CHUNK);
    if (!lsn || !buf) die_errno("allocate the floor's buffers");
    int64_t t0 = now_ns();
    int rc = mdb_env_create(&env);
    if (!rc) rc = mdb_env_set_maxdbs(env, 32);
    if (!rc) rc = mdb_env_set_mapsize(env, (size_t)1 << 36);
    if (!rc) rc = mdb_env_open(env, path, MDB_RDONLY | MDB_NOTLS | MDB_NORDAHEAD, 0644);
    if (!rc) rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
    if (!rc) rc = mdb_dbi_open(txn, "streams", 0, &streams);
    if (!rc) rc = mdb_dbi_open(txn, "stream_ev", 0, &sev);
    if (rc) {
        fprintf(stderr, "bench_store: open the W4i index: %s\n", mdb_strerror(rc));
        exit(1);
    }
    MDB_val k = {strlen(stream), (void *)stream}, v;
    evs_ix_stream st;
    if ((rc = mdb_get(txn, streams, &k, &v)) || evs__index_stream_decode(&v, &st)) {
        fprintf(stderr, "bench_store: the W4i index has no stream %s\n", stream);
        exit(1);
    }
    uint8_t kb[16];
    evs__put64be(kb, st.id);
    evs__put64be(kb + 8, 1);
    k = (MDB_val){16, kb};
    size_t n = 0;
    if ((rc = mdb_cursor_open(txn, sev, &c))) die("open a cursor", rc);
    for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_KEY); !rc && n < expect; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 16 || evs__get64be(k.mv_data) != st.id || v.mv_size != 12) break;
        lsn[n++] = evs__get64(v.mv_data);
    }
    mdb_cursor_close(c);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    int64_t t1 = now_ns();
    if (n != expect) {
        fprintf(stderr, "bench_store: the W4i floor found %zu index entries, wanted %llu\n", n, (unsigned long long)expect);
        exit(1);
    }
    uint32_t crc = 0, seg = 0;
    int fd = -1;
    uint64_t lo = 0, hi = 0; /* the bytes of segment seg in buf */
    for (size_t i = 0; i < n; i++) {
        uint32_t no = EVS_LSN_SEG(lsn[i]);
        uint64_t off = EVS_LSN_OFF(lsn[i]);
        if (no != seg) {
            if (fd >= 0) close(fd);
            snprintf(path, sizeof path, "%s/log/%08u.seg", dir, no);
            if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) die_errno(path);
            seg = no, lo = hi = 0;
        }
        for (int pass = 0;; pass++) {
            if (off >= lo && off + W4I_FRAME_HDR <= hi) {
                uint64_t end = off + W4I_FRAME_HDR + evs__get32(buf + (off - lo));
                if (end <= hi) {
                    crc = evs__crc32c(crc, buf + (off - lo), (size_t)(end - off));
                    break;
                }
            }
            ssize_t got = pread(fd, buf, W4I_CHUNK, (off_t)off);
            if (got < (ssize_t)W4I_FRAME_HDR || pass) die_errno("read a W4i frame");
            lo = off, hi = off + (uint64_t)got;
        }
    }
    if (fd >= 0) close(fd);
    int64_t t2 = now_ns();
    g_sink = crc;
    free(lsn);
    free(buf);
    *walk_s = (double)(t1 - t0) / 1e9;
    *frames_s = (double)(t2 - t1) / 1e9;
    return (double)expect / ((double)(t2 - t0) / 1e9);
}

static void w4i_workload(void) {
    if (!want("W4i")) return;
    const char *dir = data_path("w4i");
    rm_tree(dir);
    evs_store *s = store_open(dir, EVS_DURABILITY_NONE);
    const char *stream = "order-w4i";
    uint64_t rng = 4242, n = (uint64_t)C.w4i_events, mine = 0;
    evs_event_in ev;
    char other[32];
    int64_t t0 = now_ns();
    for (uint64_t i = 0; i < n; i++) {
        evs_append_result res;
        fill_event(&ev, &rng, i);
        int rc;
        if (i % 10 == 0) {
            rc = evs_append(s, stream, (int64_t)mine++, &ev, 1, &res, NULL);
        } else {
            snprintf(other, sizeof other, "order-x%llu", (unsigned long long)(i % 1000));
            rc = evs_append(s, other, EVS_EXPECT_ANY, &ev, 1, &res, NULL);
        }
        if (rc) die("build the W4i store", rc);
    }
    evs_store_close(s);
    char a[40], b[40];
    printf("\nW4i: built %s one-event appends, %s of them in %s, in %.1f s\n", fmt_n(a, sizeof a, (double)n),
           fmt_n(b, sizeof b, (double)mine), stream, (double)(now_ns() - t0) / 1e9);
    double rs[64], ra[64], rr[64], r2[64], rf[64], rw[64], rfo[64];
    int rounds = C.runs < 5 ? 5 : C.runs > 64 ? 64 : C.runs;
    for (int i = 0; i < rounds; i++) {
        s = store_open(dir, EVS_DURABILITY_NONE);
        read_result x = read_stream_pass(s, stream, mine);
        r2[i] = read_stream_pass(s, stream, mine).rate; /* the mapping now warm: for comparison only */
        evs_store_close(s);
        double walk_s, frames_s;
        rf[i] = w4i_floor(dir, stream, mine, &walk_s, &frames_s);
        rw[i] = walk_s;
        rfo[i] = (double)mine / frames_s;
        s = store_open(dir, EVS_DURABILITY_NONE);
        read_result y = read_all_pass(s, n);
        evs_store_close(s);
        rs[i] = x.rate;
        ra[i] = y.rate;
        rr[i] = x.rate / y.rate;
        printf("  W4i round %d/%d: first stream read %s events/s (%.3f s), first $all read %s events/s (%.3f s); %.2fx; "
               "floor %.2fx (index walk %.3f s; the frames alone %.2fx)\n", i + 1, rounds, fmt_n(a, sizeof a, x.rate),
               x.secs, fmt_n(b, sizeof b, y.rate), y.secs, rr[i], rf[i] / y.rate, rw[i], rfo[i] / y.rate);
        rf[i] /= y.rate;
        rfo[i] /= y.rate;
    }
    double ms = median(rs, rounds), ma = median(ra, rounds), mr = median(rr, rounds);
    printf("W4i first read of the interleaved stream: %s events/s; $all %s events/s; %.2fx (target >= 0.75x)\n",
           fmt_n(a, sizeof a, ms), fmt_n(b, sizeof b, ma), mr);
    printf("W4i second read of the stream in the same open store (mapping warm, not a target): %s events/s\n",
           fmt_n(a, sizeof a, median(r2, rounds)));
    printf("W4i floor (the stream's index walk in a fresh index, its frames by 1 MiB preads, CRC32C, no decoding): "
           "%.2fx $all, of which the walk %.3f s; the frames alone, with no index at all: %.2fx (medians)\n",
           median(rf, rounds), median(rw, rounds), median(rfo, rounds));
    char res[96], bs[64], vs[64];
    snprintf(res, sizeof res, "%s events/s", fmt_n(a, sizeof a, ms));
    snprintf(bs, sizeof bs, "evs_read_all %s ev/s", fmt_n(b, sizeof b, ma));
    snprintf(vs, sizeof vs, "%.2fx", mr);
    add_row("W4i first read of a stream holding every 10th event", res, bs, vs, ">= 0.75x $all", mr / 0.75);
    snprintf(res, sizeof res, "walk %.3f s + 1 MiB preads + CRC32C; the preads alone %.2fx", median(rw, rounds),
             median(rfo, rounds));
    snprintf(vs, sizeof vs, "%.2fx", median(rf, rounds));
    add_row("W4i floor: the same read, no decoding", res, bs, vs, "-", 0);
    if (!getenv("EVS_BENCH_KEEP_W4I")) rm_tree(dir);
}

/* ------------------------------------------------ W6 build, W6, W5 */

typedef struct builder {
    evs_store *s;
    int tid, nthreads;
    uint64_t *versions;
    atomic_long *next;  /* next append number to claim */
    long appends;
    uint64_t rng;
    int failed_rc;
    char msg[512];
} builder;

static atomic_long g_built;

static void *build_worker(void *arg) {
    builder *b = arg;
    evs_event_in *ev = calloc((size_t)C.build_batch, sizeof *ev);
    if (!ev) {
        b->failed_rc = EVS_ENOMEM;
        snprintf(b->msg, sizeof b->msg, "out of memory");
        return NULL;
    }
    long per = (C.streams - b->tid + b->nthreads - 1) / b->nthreads;
    for (;;) {
        long k = atomic_fetch_add(b->next, 1);
        if (k >= b->appends) break;
        long first = k * C.build_batch;
        int cnt = (int)(C.w6_events - first < C.build_batch ? C.w6_events - first : C.build_batch);
        long n = b->tid + b->nthreads * (long)(rng_next(&b->rng) % (uint64_t)per);
        char name[32];
        snprintf(name, sizeof name, "order-%ld", n);
        uint64_t v = b->versions[n];
        for (int i = 0; i < cnt; i++) fill_event(&ev[i], &b->rng, v + (uint64_t)i);
        evs_append_result res;
        int rc = evs_append(b->s, name, (int64_t)v, ev, (size_t)cnt, &res, NULL);
        if (rc) {
            b->failed_rc = rc;
            snprintf(b->msg, sizeof b->msg, "append to %s: %s", name, evs_errmsg());
            break;
        }
        b->versions[n] = res.last_stream_position;
        long done = atomic_fetch_add(&g_built, cnt) + cnt;
        long step = C.w6_events / 10 > 0 ? C.w6_events / 10 : 1;
        if (done / step != (done - cnt) / step) {
            fprintf(stderr, "  building: %ld of %ld events\n", done, C.w6_events);
        }
    }
    free(ev);
    return NULL;
}

/* Open `dir` and report its head, or 0 when there is no usable store. */
static uint64_t existing_head(const char *dir) {
    char log[4400];
    snprintf(log, sizeof log, "%s/log", dir);
    struct stat sb;
    if (stat(log, &sb) != 0) return 0;
    evs_store *s;
    if (evs_store_create(&s)) return 0;
    uint64_t h = evs_store_open(s, dir, 0) == EVS_OK ? evs_head(s) : 0;
    evs_store_close(s);
    return h;
}

static void build_w6(const char *dir) {
    char a[40], b[40];
    if (C.keep && existing_head(dir) == (uint64_t)C.w6_events) {
        printf("\nW6: reusing the store of %s events in %s (EVS_BENCH_KEEP)\n", fmt_n(a, sizeof a, (double)C.w6_events), dir);
        return;
    }
    rm_tree(dir);
    evs_store *s = store_open(dir, EVS_DURABILITY_NONE);
    uint64_t *versions = calloc((size_t)C.streams, sizeof *versions);
    int nt = C.build_threads;
    builder *bs = calloc((size_t)nt, sizeof *bs);
    pthread_t *th = calloc((size_t)nt, sizeof *th);
    if (!versions || !bs || !th) die_errno("allocate the builders");
    atomic_long next = 0;
    atomic_store(&g_built, 0);
    long appends = (C.w6_events + C.build_batch - 1) / C.build_batch;
    printf("\nW6: building a store of %s events: durability none, %d-event appends, %d threads, %ld streams\n",
           fmt_n(a, sizeof a, (double)C.w6_events), C.build_batch, nt, C.streams);
    fflush(stdout);
    int64_t t0 = now_ns();
    for (int t = 0; t < nt; t++) {
        bs[t] = (builder){.s = s, .tid = t, .nthreads = nt, .versions = versions, .next = &next, .appends = appends,
                          .rng = 0xABCDEFULL + (uint64_t)t * 104729};
        if (pthread_create(&th[t], NULL, build_worker, &bs[t]) != 0) die_errno("start a builder");
    }
    for (int t = 0; t < nt; t++) {
        pthread_join(th[t], NULL);
        if (bs[t].failed_rc) {
            fprintf(stderr, "bench_store: building W6: %s (%s)\n", bs[t].msg, evs_errname(bs[t].failed_rc));
            cleanup();
            exit(1);
        }
    }
    double secs = (double)(now_ns() - t0) / 1e9;
    evs_store_stats st;
    stats(s, &st);
    evs_store_close(s);
    /* put the log on disk so write-back does not run under the timed opens */
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int64_t t1 = now_ns();
    if (fd >= 0) {
        syncfs(fd);
        close(fd);
    }
    double sync_secs = (double)(now_ns() - t1) / 1e9;
    printf("W6 build: %s events in %.1f s (%s events/s, durability none), log %.2f GB in %llu segments; syncfs %.1f s\n",
           fmt_n(a, sizeof a, (double)st.head), secs, fmt_n(b, sizeof b, (double)st.head / secs), (double)st.log_bytes / 1e9,
           (unsigned long long)st.segments, sync_secs);
    free(versions);
    free(bs);
    free(th);
}

static void w6_w5_workloads(void) {
    if (!want("W5") && !want("W6")) return;
    const char *dir = data_path("w6");
    const char *empty = data_path("empty");
    build_w6(dir);
    char a[40], b[40], res[96], bs[64], vs[64];
    int n = C.runs > 64 ? 64 : C.runs;
    if (want("W6")) {
        rm_tree(empty);
        evs_store_close(store_open(empty, EVS_DURABILITY_SYNC));
        double t_open[64], t_empty[64], rss[64];
        long idle = rss_anon_kb();
        printf("\nW6: open the %s-event store (evs_store_create + evs_store_open), %d runs, each after an open of an empty "
               "store (the baseline); RssAnon before: %.1f MB\n",
               fmt_n(a, sizeof a, (double)C.w6_events), n, (double)idle / 1024);
        for (int i = 0; i < n; i++) {
            int64_t t0 = now_ns();
            evs_store *e;
            int rc = evs_store_create(&e);
            if (!rc) rc = evs_store_open(e, empty, 0);
            if (rc) die("open the empty store", rc);
            t_empty[i] = (double)(now_ns() - t0) / 1e9;
            evs_store_close(e);

            sampler sm;
            sampler_start(&sm);
            t0 = now_ns();
            evs_store *s;
            rc = evs_store_create(&s);
            if (!rc) rc = evs_store_open(s, dir, 0);
            if (rc) die("open the W6 store", rc);
            t_open[i] = (double)(now_ns() - t0) / 1e9;
            rss[i] = sampler_stop(&sm);
            uint64_t head = evs_head(s);
            const char *report = evs_store_recovery_report(s);
            printf("  W6 run %d/%d: ready in %.4f s (empty store %.4f s), head %s, RssAnon peak %.1f MB%s%s\n", i + 1, n,
                   t_open[i], t_empty[i], fmt_n(a, sizeof a, (double)head), rss[i], report[0] ? "; recovery: " : "", report);
            if (head != (uint64_t)C.w6_events) {
                fprintf(stderr, "bench_store: the W6 store has %llu events, wanted %ld\n", (unsigned long long)head, C.w6_events);
                cleanup();
                exit(1);
            }
            evs_store_close(s);
        }
        double mo = median(t_open, n), me = median(t_empty, n), mr = median(rss, n);
        printf("W6 open %s events: ready in %.3f s; %.2fx the target 1 s; empty-store open %.4f s (%.2fx); RssAnon peak %.1f MB "
               "(%.2fx the 64 MB limit)\n",
               fmt_n(a, sizeof a, (double)C.w6_events), mo, mo / 1.0, me, me > 0 ? mo / me : 0, mr, mr / 64.0);
        char work[48];
        snprintf(work, sizeof work, "W6 open %s events", fmt_n(a, sizeof a, (double)C.w6_events));
        snprintf(res, sizeof res, "%.3f s to ready", mo);
        snprintf(bs, sizeof bs, "empty store %.4f s", me);
        snprintf(vs, sizeof vs, "%.2fx", me > 0 ? mo / me : 0);
        add_row(work, res, bs, vs, "<= 1 s", mo > 0 ? 1.0 / mo : 0);
        snprintf(res, sizeof res, "%.1f MB peak", mr);
        snprintf(bs, sizeof bs, "idle %.1f MB", (double)idle / 1024);
        add_row("RssAnon during W6", res, bs, "", "<= 64 MB", mr > 0 ? 64.0 / mr : 0);
        rm_tree(empty);
    }
    if (want("W5")) {
        uint64_t ev = (uint64_t)(C.w5_events < C.w6_events ? C.w5_events : C.w6_events);
        evs_store *s = store_open(dir, EVS_DURABILITY_SYNC);
        long idle = rss_anon_kb();
        printf("\nW5: read $all from position 1 for %s events of the W6 store (%d-event records); RssAnon before: %.1f MB\n",
               fmt_n(a, sizeof a, (double)ev), C.build_batch, (double)idle / 1024);
        double base = scan_baseline(s, dir, ev);
        sampler sm;
        sampler_start(&sm);
        double rate = read_runs("W5", s, NULL, ev, pass_all);
        double mr = sampler_stop(&sm);
        char label[96];
        snprintf(label, sizeof label, "W5 read $all of %s events", fmt_n(b, sizeof b, (double)ev));
        read_row("W5 $all from position 1", label, rate, base, 5e6);
        printf("W5 RssAnon peak %.1f MB (%.2fx the 64 MB limit)\n", mr, mr / 64.0);
        snprintf(res, sizeof res, "%.1f MB peak", mr);
        snprintf(bs, sizeof bs, "idle %.1f MB", (double)idle / 1024);
        add_row("RssAnon during W5", res, bs, "", "<= 64 MB", mr > 0 ? 64.0 / mr : 0);
        evs_store_close(s);
    }
}

/* ---------------------------------------------------------------- main */

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    config_load();
    pool_init();
    mkdir_p(C.dir);
    printf("bench_store: %s mode, %d runs of %.1f s per write workload, %d passes per read workload, %ld streams, data in %s\n",
           C.quick ? "quick" : "full", C.runs, C.seconds, C.read_runs, C.streams, C.dir);
    avg_event_payload();
    write_workloads();
    w4_workload();
    w4i_workload();
    w6_w5_workloads();
    print_summary();
    cleanup();
    return 0;
}
