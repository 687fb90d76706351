/*
 * bench_json.c — throughput of the append path's JSON validator against
 * jansson on the same bytes in the same run.
 *
 * Two generated event payloads: a typical ~300-byte data object and a
 * ~4 KiB one.  Each is validated N times per run; the figure is the median
 * of 5 runs, so one noisy run on a shared machine does not decide it.
 * jansson builds a DOM (json_loadb + json_decref), which is exactly the
 * cost the append path avoids.  Usage: bench_json [scale] (default 1).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "core/json.h"

#define RUNS 5

static size_t build_small(char *buf, size_t cap) {
    int n = snprintf(buf, cap,
                     "{\"order_id\":\"ord-000123\",\"customer\":{\"id\":\"cust-42\",\"name\":\"Ada Lovelace\","
                     "\"email\":\"ada@example.com\"},\"items\":[{\"sku\":\"SKU-1001\",\"qty\":2,\"price\":19.99},"
                     "{\"sku\":\"SKU-2002\",\"qty\":1,\"price\":5.5}],\"total\":45.48,\"currency\":\"EUR\","
                     "\"paid\":true,\"note\":null,\"address\":\"Stra\xC3\x9F" "e 1, M\xC3\xBCnchen\","
                     "\"created\":\"2026-11-22T05:40:48Z\"}");
    return n < 0 ? 0 : (size_t)n;
}

static size_t build_large(char *buf, size_t cap) {
    size_t n = (size_t)snprintf(buf, cap, "{\"order_id\":\"ord-000124\",\"items\":[");
    for (int i = 0; n < 3900; i++) {
        n += (size_t)snprintf(buf + n, cap - n,
                              "%s{\"sku\":\"SKU-%04d\",\"title\":\"Item number %d \\\"deluxe\\\"\",\"qty\":%d,"
                              "\"price\":%d.%02d,\"tags\":[\"a\",\"b\"]}",
                              i ? "," : "", i, i, i % 7 + 1, 10 + i, i % 100);
    }
    n += (size_t)snprintf(buf + n, cap - n, "],\"total\":12345.67,\"paid\":false}");
    return n;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double run_ours(const char *p, size_t n, long iters) {
    int64_t t0 = evs__mono_ns();
    int bad = 0;
    for (long i = 0; i < iters; i++) bad |= evs__json_validate(p, n, NULL);
    int64_t t1 = evs__mono_ns();
    if (bad) {
        fprintf(stderr, "bench_json: our validator rejected the payload: %s\n", evs_errmsg());
        exit(1);
    }
    return (double)n * (double)iters / ((double)(t1 - t0) / 1e9) / 1e6;
}

static double run_jansson(const char *p, size_t n, long iters) {
    int64_t t0 = evs__mono_ns();
    for (long i = 0; i < iters; i++) {
        json_error_t err;
        json_t *j = json_loadb(p, n, 0, &err);
        if (!j) {
            fprintf(stderr, "bench_json: jansson rejected the payload: %s\n", err.text);
            exit(1);
        }
        json_decref(j);
    }
    int64_t t1 = evs__mono_ns();
    return (double)n * (double)iters / ((double)(t1 - t0) / 1e9) / 1e6;
}

static void bench(const char *label, const char *p, size_t n, long scale) {
    /* About 60 MB per run for us, a tenth of that for jansson. */
    long iters = (long)(60e6 / (double)n) * scale, jiters = iters / 10;
    double ours[RUNS], theirs[RUNS];
    for (int r = 0; r < RUNS; r++) {
        ours[r] = run_ours(p, n, iters);
        theirs[r] = run_jansson(p, n, jiters > 0 ? jiters : 1);
    }
    qsort(ours, RUNS, sizeof ours[0], cmp_double);
    qsort(theirs, RUNS, sizeof theirs[0], cmp_double);
    double mo = ours[RUNS / 2], mj = theirs[RUNS / 2];
    printf("json_validate %-6s %5zu bytes: %8.1f MB/s (median of %d)\n", label, n, mo, RUNS);
    printf("jansson_loadb %-6s %5zu bytes: %8.1f MB/s (median of %d)\n", label, n, mj, RUNS);
    printf("ratio         %-6s %5zu bytes: %8.1fx faster than jansson\n", label, n, mo / mj);
}

int main(int argc, char **argv) {
    long scale = argc > 1 ? atol(argv[1]) : 1;
    if (scale < 1) scale = 1;
    static char small[1024], large[8192];
    size_t ns = build_small(small, sizeof small), nl = build_large(large, sizeof large);
    bench("small", small, ns, scale);
    bench("large", large, nl, scale);
    return 0;
}
