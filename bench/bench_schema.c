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
 * append the target is about).  Rounds alternate the three runs on one
 * store, so the disk, the log's size and the page cache are shared; the
 * ratio is the median of the per-round ratios.  Both durabilities are
 * measured: none (the append is pure CPU: the worst case for the ratio)
 * and sync (the default: every append waits for its fdatasync).
 *
 * The event: an order with 9 fields (uuid and date-time formats, an enum,
 * a pattern, bounds, a nested array of 3 lines), 420 bytes of data.
 *
 * Environment: EVS_BENCH_DIR (default /tmp), EVS_BENCH_QUICK=1 (shorter),
 * EVS_BENCH_ROUNDS (default 7), EVS_BENCH_SECONDS per run (default 1).
 */
#include <jansson.h>
#include <time.h>

#include "evstore_schema.h"
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

/* Appends of one event of `type` per call for `seconds`: appends per second. */
static double run(const char *type) {
    char stream[48];
    evs_event_in e = tu_event(type, data);
    evs_append_result res;
    long n = 0;
    int64_t t0 = now_ns(), end = t0 + (int64_t)(seconds * 1e9), t = t0;
    while (t < end) {
        for (int k = 0; k < 32; k++) {
            snprintf(stream, sizeof stream, "order-%lu", seq++ % 1000);
            if (evs_append(store, stream, EVS_EXPECT_ANY, &e, 1, &res, NULL)) die("append");
            n++;
        }
        t = now_ns();
    }
    return (double)n * 1e9 / (double)(t - t0);
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
    evs_schema_close(reg);
    double *r1 = calloc((size_t)rounds, sizeof *r1), *r0 = calloc((size_t)rounds, sizeof *r0);
    double base_sum = 0, val_sum = 0, other_sum = 0;
    /* warm up: the log's first segment, the page cache */
    run("OrderPlaced");
    for (int i = 0; i < rounds; i++) {
        double base = run("OrderPlaced");
        if (evs_schema_open(store, &reg)) die("schema open");
        double validated = run("OrderPlaced");
        double other = run("Unschemed");
        evs_schema_close(reg);
        r1[i] = validated / base;
        r0[i] = other / base;
        base_sum += base;
        val_sum += validated;
        other_sum += other;
    }
    evs_schema_close(NULL);
    printf("  %-5s S1 validated 1-event appends: %9.0f/s vs %9.0f/s without a registry: ratio %.3f (median of %d rounds; target >= 0.8)%s\n",
           name, val_sum / rounds, base_sum / rounds, median(r1, rounds), rounds, median(r1, rounds) >= 0.8 ? "" : "  MISSED");
    printf("  %-5s S0 type without a schema, registry open: %9.0f/s: ratio %.3f\n", name, other_sum / rounds,
           median(r0, rounds));
    free(r1);
    free(r0);
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
