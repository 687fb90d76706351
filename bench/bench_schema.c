/*
 * bench_schema.c — what schema validation costs on the append path
 * (issue 12), against a baseline measured in the same run:
 *
 *   S1  1-event appends of an event type with a schema, validated on
 *       append (policy enforce), against the same appends on the same
 *       store with no registry open (no hook at all).  Target >= 0.8x.
 *   S0  1-event appends of a type WITHOUT a schema while a registry with
 *       schemas is open (the hook looks the type up and returns), against
 *       no registry: the cost every other type pays.
 *   V   the validator alone on the same event (ns per validation), jansson
 *       parsing the same event into a DOM (what a validator built on
 *       jansson would pay first; docs/decisions.md), and the upcasting of a
 *       version-1 event through a Lua step and an implicit one (ns per
 *       event): for scale.
 *
 * Each append is one evs_append of one event from one thread (the 1-event
 * append the target is about).  A round interleaves short slices of the
 * three runs on one store (64 appends per slice, 4 with sync; the order
 * rotates), so the disk, the log's size, the page cache and the drift of a
 * shared machine fall on all three alike; the baseline slices take the
 * registry's hook off the store, which is exactly what an append without a
 * registry sees.  The ratio is the median of the per-round ratios (rounds
 * of 3 x EVS_BENCH_SECONDS).  Both durabilities are measured: none (the
 * append is pure CPU: the worst case for the ratio) and sync (the default:
 * every append waits for its fdatasync).  The appending thread's CPU time
 * per append is printed as well: on a shared machine it moves far less
 * than wall time.
 *
 * The event: an order with 9 fields (uuid and date-time formats, an enum,
 * a pattern, bounds, a nested array of 3 lines), 420 bytes of data.
 *
 * Environment: EVS_BENCH_DIR (default /tmp), EVS_BENCH_QUICK=1 (shorter),
 * EVS_BENCH_ROUNDS (default 7), EVS_BENCH_SECONDS per run (default 1).
 */
#include <jansson.h>
#include <sys/resource.h>
#include <time.h>

#include "evstore_schema.h"
#include "store/store_access.h"
#include "store/store_internal.h"
#include "testutil.h"

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void die(const char *what) {
    fprintf(stderr, "bench_schema: %s: %s\n", what, evs_errmsg());
    exit(1);
}

static const char *schema_v1 =
    "{\"type\":\"object\",\"required\":[\"order_id\",\"customer\",\"placed_at\",\"currency\",\"lines\",\"total\"],"
    "\"additionalProperties\":false,\"properties\":{"
    "\"order_id\":{\"type\":\"string\",\"format\":\"uuid\"},"
    "\"customer\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":64},"
    "\"email\":{\"type\":\"string\",\"format\":\"email\"},"
    "\"placed_at\":{\"type\":\"string\",\"format\":\"date-time\"},"
    "\"currency\":{\"enum\":[\"EUR\",\"USD\",\"GBP\"]},"
    "\"channel\":{\"type\":\"string\",\"pattern\":\"^(web|app|store)-[a-z0-9]+$\"},"
    "\"lines\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"required\":[\"sku\",\"qty\",\"price\"],"
    "\"properties\":{\"sku\":{\"type\":\"string\",\"pattern\":\"^[A-Z]{3}-[0-9]{4}$\"},"
    "\"qty\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":1000},\"price\":{\"type\":\"number\",\"minimum\":0}}}},"
    "\"total\":{\"type\":\"number\",\"minimum\":0},"
    "\"note\":{\"type\":[\"string\",\"null\"],\"maxLength\":500}}}";

static const char *data =
    "{\"order_id\":\"0190a4e2-7b1c-7cc0-8000-00000000002a\",\"customer\":\"Ada Lovelace\","
    "\"email\":\"ada@example.org\",\"placed_at\":\"2026-03-01T10:15:30.123Z\",\"currency\":\"EUR\","
    "\"channel\":\"web-eu1\",\"lines\":[{\"sku\":\"ABC-1234\",\"qty\":2,\"price\":19.99},"
    "{\"sku\":\"XYZ-0042\",\"qty\":1,\"price\":5.5},{\"sku\":\"QRS-9000\",\"qty\":12,\"price\":0.75}],"
    "\"total\":54.48,\"note\":null}";

static evs_store *store;
static double seconds = 1.0;
static unsigned long seq;

typedef struct acc {
    double ns;
    double cpu_ns;            /* this thread's CPU time (user + system): robust on a shared machine */
    long n;
} acc;

static double thread_cpu_ns(void) {
    struct rusage u;
    getrusage(RUSAGE_THREAD, &u);
    return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e9 + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e3;
}

/* n appends of one event of `type`, each its own evs_append; time added to *a. */
static void slice(const char *type, int n, acc *a) {
    char stream[48];
    evs_event_in e = tu_event(type, data);
    evs_append_result res;
    int64_t t0 = now_ns();
    double c0 = thread_cpu_ns();
    for (int k = 0; k < n; k++) {
        snprintf(stream, sizeof stream, "order-%lu", seq++ % 1000);
        if (evs_append(store, stream, EVS_EXPECT_ANY, &e, 1, &res, NULL)) die("append");
    }
    a->cpu_ns += thread_cpu_ns() - c0;
    a->ns += (double)(now_ns() - t0);
    a->n += n;
}

/*
 * One round: short slices of the three runs, interleaved (the order
 * rotates), so that the disk's drifting fdatasync rate and the machine's
 * other load fall on all three alike.  The registry stays open; the
 * baseline slices take its hook off the store (what "no registry" means
 * to an append: the store's validator pointer is NULL).
 */
static void round_run(int per_slice, acc *base, acc *val, acc *other, evs__append_validator hook, void *ctx) {
    int64_t end = now_ns() + (int64_t)(3 * seconds * 1e9);
    for (int it = 0; now_ns() < end; it++)
        for (int k = 0; k < 3; k++) switch ((k + it) % 3) {
            case 0:
                evs__store_set_validator(store, NULL, NULL);
                slice("OrderPlaced", per_slice, base);
                break;
            case 1:
                evs__store_set_validator(store, hook, ctx);
                slice("OrderPlaced", per_slice, val);
                break;
            default:
                evs__store_set_validator(store, hook, ctx);
                slice("Unschemed", per_slice, other);
                break;
            }
    evs__store_set_validator(store, hook, ctx);
}

static void bench_durability(evs_durability d, const char *name, int rounds, const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/bench-schema-%s", dir, name);
    tu_rmrf(path);
    store = tu_open(path, d, 0);
    evs_schema_registry *reg;
    if (evs_schema_open(store, &reg)) die("schema open");
    evs_schema_def def = {"OrderPlaced", 0, schema_v1, strlen(schema_v1), NULL};
    if (evs_schema_register(reg, &def, NULL, NULL)) die("register");
    evs__append_validator hook = store->validator;
    void *ctx = store->validator_ctx;
    int per_slice = d == EVS_DURABILITY_SYNC ? 4 : 64;
    double *r1 = calloc((size_t)rounds, sizeof *r1), *r0 = calloc((size_t)rounds, sizeof *r0),
           *c1 = calloc((size_t)rounds, sizeof *c1);
    acc tb = {0, 0, 0}, tv = {0, 0, 0}, to = {0, 0, 0};
    /* warm up: the log's first segment, the page cache */
    acc warm = {0, 0, 0};
    slice("OrderPlaced", per_slice * 8, &warm);
    for (int i = 0; i < rounds; i++) {
        acc base = {0, 0, 0}, val = {0, 0, 0}, other = {0, 0, 0};
        round_run(per_slice, &base, &val, &other, hook, ctx);
        r1[i] = ((double)val.n / val.ns) / ((double)base.n / base.ns);
        r0[i] = ((double)other.n / other.ns) / ((double)base.n / base.ns);
        c1[i] = (base.cpu_ns / base.n) / (val.cpu_ns / val.n);
        tb.ns += base.ns, tb.n += base.n, tv.ns += val.ns, tv.n += val.n, to.ns += other.ns, to.n += other.n;
        tb.cpu_ns += base.cpu_ns, tv.cpu_ns += val.cpu_ns;
    }
    double m1 = median(r1, rounds), m0 = median(r0, rounds);
    printf("  %-5s S1 validated 1-event appends: %9.0f/s vs %9.0f/s without a registry: ratio %.3f (median of %d rounds; target >= 0.8)%s\n",
           name, tv.n * 1e9 / tv.ns, tb.n * 1e9 / tb.ns, m1, rounds, m1 >= 0.8 ? "" : "  MISSED");
    printf("  %-5s S0 type without a schema, registry open: %9.0f/s: ratio %.3f\n", name, to.n * 1e9 / to.ns, m0);
    printf("  %-5s    per-round S1 ratios:", name);
    for (int i = 0; i < rounds; i++) printf(" %.3f", r1[i]);
    printf("\n  %-5s    CPU time per append (this thread): %.2f us validated vs %.2f us: ratio %.3f (median of the rounds)\n",
           name, tv.cpu_ns / tv.n / 1e3, tb.cpu_ns / tb.n / 1e3, median(c1, rounds));
    free(c1);
    free(r1);
    free(r0);
    evs_schema_close(reg);
    evs_store_close(store);
    tu_rmrf(path);
}

static void bench_validator(const char *dir) {
    evs_json_schema *js;
    evs_schema_violation v;
    if (evs_json_schema_compile(schema_v1, strlen(schema_v1), &js, &v)) die("compile");
    size_t len = strlen(data);
    long n = 0;
    int64_t t0 = now_ns(), end = t0 + (int64_t)(seconds * 1e9), t = t0;
    while (t < end) {
        for (int k = 0; k < 256; k++, n++)
            if (evs_json_schema_validate(js, data, len, &v)) die("validate");
        t = now_ns();
    }
    double ns = (double)(t - t0) / (double)n;
    /* the strict scan alone, which evs_json_schema_validate starts with (the append path has done it already) */
    long m = 0;
    evs_json_schema *any;
    if (evs_json_schema_compile("true", 4, &any, &v)) die("compile");
    t0 = now_ns(), end = t0 + (int64_t)(seconds * 1e9), t = t0;
    while (t < end) {
        for (int k = 0; k < 256; k++, m++) evs_json_schema_validate(any, data, len, &v);
        t = now_ns();
    }
    double scan = (double)(t - t0) / (double)m;
    /* what a validator on jansson would pay before looking at a keyword: building the DOM */
    long d = 0;
    t0 = now_ns(), end = t0 + (int64_t)(seconds * 1e9), t = t0;
    while (t < end) {
        for (int k = 0; k < 256; k++, d++) json_decref(json_loadb(data, len, 0, NULL));
        t = now_ns();
    }
    double dom = (double)(t - t0) / (double)d;
    printf("  V  validator: %.0f ns per %zu-byte event (of which %.0f ns the strict JSON scan the store has already done);\n"
           "     jansson only parsing the same event into a DOM: %.0f ns (%.1fx the whole validation past the scan)\n",
           ns, len, scan, dom, dom / (ns - scan));
    evs_json_schema_free(js);
    evs_json_schema_free(any);

    /* upcasting: v1 -> v2 (Lua: adds a field) -> v3 (implicit) */
    char path[4096];
    snprintf(path, sizeof path, "%s/bench-schema-upcast", dir);
    tu_rmrf(path);
    store = tu_open(path, EVS_DURABILITY_NONE, 0);
    evs_schema_registry *reg;
    if (evs_schema_open(store, &reg)) die("schema open");
    const char *v1 = "{\"type\":\"object\",\"required\":[\"n\"],\"properties\":{\"n\":{\"type\":\"integer\"}}}";
    const char *v2 = "{\"type\":\"object\",\"required\":[\"n\",\"unit\"],\"additionalProperties\":false,"
                     "\"properties\":{\"n\":{\"type\":\"integer\"},\"unit\":{\"type\":\"string\"}}}";
    const char *v3 = "{\"type\":\"object\",\"required\":[\"n\",\"unit\"],\"additionalProperties\":false,"
                     "\"properties\":{\"n\":{\"type\":\"integer\"},\"unit\":{\"type\":\"string\"},\"note\":{}}}";
    evs_schema_def d1 = {"Measured", 0, v1, strlen(v1), NULL}, d2 = {"Measured", 0, v2, strlen(v2), NULL},
                   d3 = {"Measured", 0, v3, strlen(v3), NULL};
    if (evs_schema_register(reg, &d1, NULL, NULL) || evs_schema_set_compat(reg, "Measured", EVS_COMPAT_NONE) ||
        evs_schema_register(reg, &d2, NULL, NULL) || evs_schema_register(reg, &d3, NULL, NULL))
        die("register");
    const char *lua = "return function(d) d.unit = 'mm' return d end";
    if (evs_schema_add_lua_upcaster(reg, "Measured", 1, lua, strlen(lua))) die("upcaster");
    evs_event in;
    memset(&in, 0, sizeof in);
    in.event_type = "Measured";
    in.event_type_len = 8;
    in.data = "{\"n\":42}";
    in.data_len = 8;
    in.event_version = 1;
    long u = 0;
    t0 = now_ns(), end = t0 + (int64_t)(seconds * 1e9), t = t0;
    while (t < end) {
        for (int k = 0; k < 64; k++, u++) {
            evs_event out;
            void *owned;
            if (evs_schema_upcast(reg, &in, &out, &owned)) die("upcast");
            free(owned);
        }
        t = now_ns();
    }
    printf("  V  upcast v1 -> v3 (a Lua step, then an implicit one, both checked against their schema): %.0f ns per event\n",
           (double)(t - t0) / (double)u);
    evs_schema_close(reg);
    evs_store_close(store);
    tu_rmrf(path);
}

int main(void) {
    (void)tu_checks, (void)tu_failures;
    int rounds = 7;
    const char *q = getenv("EVS_BENCH_QUICK");
    int quick = q && *q && strcmp(q, "0") != 0;
    const char *rv = getenv("EVS_BENCH_ROUNDS"), *sv = getenv("EVS_BENCH_SECONDS");
    if (quick) rounds = 3, seconds = 0.3;
    if (rv && atoi(rv) > 0) rounds = atoi(rv);
    if (sv && atof(sv) > 0) seconds = atof(sv);
    const char *dir = getenv("EVS_BENCH_DIR");
    if (!dir || !*dir) dir = "/tmp";
    printf("schema validation on the append path (1 client, 1-event appends, %d rounds of %.1f s per run):\n", rounds,
           seconds);
    bench_durability(EVS_DURABILITY_NONE, "none", rounds, dir);
    bench_durability(EVS_DURABILITY_SYNC, "sync", rounds, dir);
    bench_validator(dir);
    return 0;
}
