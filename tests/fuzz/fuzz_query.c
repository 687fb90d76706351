/*
 * fuzz_query.c — fuzz target for what the server reads from a URL
 * (src/server/query.c): percent-decoding of path segments and query
 * values, and the query parameters of the read and live routes (text,
 * strict numbers, positions, the direction, the live filters of /all,
 * /subscribe and /ws).
 *
 * EVS_WRAP: MHD_lookup_connection_value MHD_create_response_from_buffer MHD_queue_response
 *
 * The input is a query string ("type=a,b&since=...&limit=5").  libmicrohttpd's
 * per-connection calls are replaced (fuzz_http.h), so the server's own code
 * reads it as it would a request's.  Invariants:
 *   - evs__pct_decode on the whole input (with room for all of it, and with
 *     a small buffer): either -1 with a reason, or a NUL-terminated result
 *     of valid UTF-8 without NUL that fits; encoding every byte of the
 *     result as %XX and decoding again gives it back; text without '%'
 *     decodes to itself;
 *   - every reader returns -1 exactly when it queued one answer, a 400 whose
 *     JSON body names the parameter, and 0 with no answer otherwise;
 *   - what a reader accepts is what the parameter says: the text is the
 *     percent-decoded value within its limit, a number is the decimal value
 *     within its bounds (checked against strtoull), "now" is EVS_SUB_FROM_NOW
 *     (the library resolves it per consumer),
 *     the direction is one of the two;
 *   - an accepted filter is consistent: at most 32 event types of 1..255
 *     bytes without ',', the evs_filter points at them, stream and
 *     stream_prefix never both, since/until are evs_time_parse's values;
 *   - nothing leaks (ASan), filters are freed by evs__live_filter_free.
 */
#define FUZZ_NAME "fuzz_query"
#include "fuzz_util.h"
#include "fuzz_http.h"

#include "evstore_bus.h"
#include "server/query.h"

static evs__req rq;
static evs__srv srv;

static void check_decode(const char *in, size_t n, size_t cap) {
    char *out = malloc(cap), why[128] = "";
    long k = evs__pct_decode(in, n, out, cap, why, sizeof why);
    if (k < 0) {
        FUZZ_ASSERT(k == -1 && why[0], "refused without a reason");
        free(out);
        return;
    }
    FUZZ_ASSERT((size_t)k < cap && out[k] == '\0' && (size_t)k <= n, "decoded %ld bytes into %zu", k, cap);
    FUZZ_ASSERT(memchr(out, 0, (size_t)k) == NULL, "decoded text holds a NUL");
    FUZZ_ASSERT(evs__utf8_valid(out, (size_t)k, NULL), "decoded text is not UTF-8");
    if (!memchr(in, '%', n)) FUZZ_ASSERT((size_t)k == n && memcmp(in, out, n) == 0, "no escape, yet changed");
    /* every byte escaped, decoded again: the same text */
    char *enc = malloc(3 * (size_t)k + 1), *back = malloc((size_t)k + 1);
    static const char hex[] = "0123456789ABCDEF";
    for (long i = 0; i < k; i++) {
        unsigned char c = (unsigned char)out[i];
        enc[3 * i] = '%';
        enc[3 * i + 1] = hex[c >> 4];
        enc[3 * i + 2] = hex[c & 15];
    }
    long k2 = evs__pct_decode(enc, 3 * (size_t)k, back, (size_t)k + 1, why, sizeof why);
    FUZZ_ASSERT(k2 == k && memcmp(back, out, (size_t)k) == 0, "re-encoded text decodes differently (%ld)", k2);
    free(enc);
    free(back);
    free(out);
}

/* The reader's verdict agrees with the answers it queued. */
static void check_verdict(const char *what, int rc, const char *names) {
    if (rc) {
        FUZZ_ASSERT(rc == -1, "%s: rc %d", what, rc);
        fuzz_http_check_error(what, EVS_HTTP_BAD_REQUEST, names);
    } else {
        FUZZ_ASSERT(fh.answers == 0, "%s: accepted, yet %d answers queued", what, fh.answers);
    }
}

/* The raw value of key, decoded as evs__query_text must have: 1 if present and decodable. */
static int raw_decoded(const char *key, char *buf, size_t cap, long *len) {
    const char *raw = __wrap_MHD_lookup_connection_value(rq.c, MHD_GET_ARGUMENT_KIND, key);
    if (!raw) return 0;
    char why[128];
    *len = evs__pct_decode(raw, strlen(raw), buf, cap, why, sizeof why);
    return *len >= 0;
}

static void check_text(const char *q, size_t n, const char *key, size_t maxlen) {
    fuzz_http_reset(&rq, &srv, q, n);
    char *v = (char *)"untouched";
    enum MHD_Result mr;
    int rc = evs__query_text(&rq, key, maxlen, &v, &mr);
    check_verdict(key, rc, key);
    char want[4096];
    long wl = 0;
    int present = raw_decoded(key, want, sizeof want, &wl);
    if (rc == 0 && v) {
        FUZZ_ASSERT(present && strlen(v) == (size_t)wl && memcmp(v, want, (size_t)wl) == 0 && (size_t)wl <= maxlen,
                    "%s: accepted \"%s\", the value decodes to \"%s\"", key, v, present ? want : "(absent)");
    } else if (rc == 0) {
        FUZZ_ASSERT(!__wrap_MHD_lookup_connection_value(rq.c, MHD_GET_ARGUMENT_KIND, key), "%s: present, yet NULL", key);
    } else {
        FUZZ_ASSERT(v == NULL, "%s: refused, yet a value was returned", key);
        FUZZ_ASSERT(!present || (size_t)wl > maxlen, "%s: refused \"%s\", which decodes and fits", key, want);
    }
    free(v);
}

static void check_u64(const char *q, size_t n, const char *key, uint64_t min, uint64_t max) {
    fuzz_http_reset(&rq, &srv, q, n);
    uint64_t v = 0xDEADBEEF;
    enum MHD_Result mr;
    int rc = evs__query_u64(&rq, key, min, max, &v, &mr);
    check_verdict(key, rc, key);
    const char *raw = __wrap_MHD_lookup_connection_value(rq.c, MHD_GET_ARGUMENT_KIND, key);
    if (!raw) {
        FUZZ_ASSERT(rc == 0 && v == 0xDEADBEEF, "%s: absent, yet changed", key);
        return;
    }
    int digits = *raw != '\0' && strspn(raw, "0123456789") == strlen(raw);
    errno = 0;
    unsigned long long want = digits ? strtoull(raw, NULL, 10) : 0;
    int fits = digits && errno != ERANGE && want >= min && want <= max;
    FUZZ_ASSERT(fits == (rc == 0), "%s=%s: %s", key, raw, rc ? "refused" : "accepted");
    if (fits) FUZZ_ASSERT(v == want, "%s=%s: got %llu", key, raw, (unsigned long long)v);
}

static void check_filter(const char *q, size_t n, int allow_stream) {
    fuzz_http_reset(&rq, &srv, q, n);
    evs__live_filter lf;
    memset(&lf, 0, sizeof lf);
    enum MHD_Result mr;
    int rc = evs__query_filter(&rq, allow_stream, &lf, &mr);
    check_verdict("filter", rc, "parameter");
    if (rc == 0) {
        FUZZ_ASSERT(lf.ntypes <= EVS_SRV_MAX_FILTER_TYPES, "%zu types", lf.ntypes);
        FUZZ_ASSERT(lf.f.n_event_types == lf.ntypes && (lf.ntypes == 0 || lf.f.event_types == lf.types),
                    "filter does not point at the types");
        for (size_t i = 0; i < lf.ntypes; i++)
            FUZZ_ASSERT(lf.types[i][0] && strlen(lf.types[i]) <= EVS_MAX_TYPE_NAME && !strchr(lf.types[i], ','),
                        "type %zu \"%s\"", i, lf.types[i]);
        FUZZ_ASSERT(!(lf.stream && lf.stream_prefix), "stream and stream_prefix both set");
        FUZZ_ASSERT(allow_stream || !lf.stream, "stream read where it is not allowed");
        if (lf.stream) FUZZ_ASSERT(lf.f.stream_prefix == lf.stream && lf.stream_len == strlen(lf.stream), "stream");
        if (lf.stream_type) FUZZ_ASSERT(lf.f.stream_type == lf.stream_type && lf.stream_type[0], "stream_type");
        FUZZ_ASSERT(lf.f.since == lf.since && lf.f.until == lf.until, "times");
        FUZZ_ASSERT(!lf.has_correlation || lf.f.correlation_id == &lf.correlation, "correlation");
        char t[4096];
        long tl;
        int64_t ns;
        if (raw_decoded("since", t, sizeof t, &tl))
            FUZZ_ASSERT(evs_time_parse(t, (size_t)tl, &ns) == EVS_OK && ns == lf.since, "since=%s", t);
        if (raw_decoded("until", t, sizeof t, &tl))
            FUZZ_ASSERT(evs_time_parse(t, (size_t)tl, &ns) == EVS_OK && ns == lf.until, "until=%s", t);
    }
    evs__live_filter_free(&lf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *q = (const char *)data;
    check_decode(q, size, size + 1);
    check_decode(q, size, 1 + (size ? data[0] % 16 : 0));

    check_text(q, size, "stream", EVS_MAX_STREAM_NAME);
    check_text(q, size, "after", 8);
    check_u64(q, size, "limit", 1, 1000);
    check_u64(q, size, "from", 0, UINT64_MAX);

    fuzz_http_reset(&rq, &srv, q, size);
    uint64_t pos = 7;
    enum MHD_Result mr;
    int rc = evs__query_position(&rq, "from", &pos, &mr);
    check_verdict("from", rc, "from");
    const char *raw = __wrap_MHD_lookup_connection_value(rq.c, MHD_GET_ARGUMENT_KIND, "from");
    /* "now" goes to the library as such: it resolves it per consumer (a stream subscription's is its stream's) */
    if (raw && strcmp(raw, "now") == 0)
        FUZZ_ASSERT(rc == 0 && pos == EVS_SUB_FROM_NOW, "from=now gave %llu", (unsigned long long)pos);
    else if (rc == 0 && raw) FUZZ_ASSERT(pos >= 1 && pos < UINT64_MAX, "from=%s gave %llu", raw, (unsigned long long)pos);

    fuzz_http_reset(&rq, &srv, q, size);
    int dir = -1;
    rc = evs__query_direction(&rq, &dir, &mr);
    check_verdict("direction", rc, "direction");
    raw = __wrap_MHD_lookup_connection_value(rq.c, MHD_GET_ARGUMENT_KIND, "direction");
    if (rc == 0)
        FUZZ_ASSERT(dir == (raw && strcmp(raw, "backward") == 0 ? EVS_BACKWARD : EVS_FORWARD), "direction %d", dir);
    else
        FUZZ_ASSERT(raw && strcmp(raw, "forward") && strcmp(raw, "backward"), "refused direction=%s", raw ? raw : "");

    check_filter(q, size, 1);
    check_filter(q, size, 0);
    return 0;
}
