/*
 * fuzz_http.h — a request without a network, for the targets that fuzz
 * what the server reads from a request (query.c, routes_proj.c).
 *
 * The server's code runs unchanged; only libmicrohttpd's per-connection
 * calls are replaced, by linking with -Wl,--wrap (the target lists them in
 * its EVS_FUZZ_WRAP line): MHD_lookup_connection_value answers from a query
 * string the target sets, MHD_create_response_from_buffer keeps a copy of
 * the body before making the real response, and MHD_queue_response records
 * the status instead of sending.  So respond.c builds every answer as it
 * would for a client, and the target can check each one: exactly one
 * answer per refusal, and an error body that is one valid JSON object
 * {"error": "...", "detail": ...} whose message names what was wrong.
 */
#ifndef EVS_FUZZ_HTTP_H
#define EVS_FUZZ_HTTP_H

#include <jansson.h>

#include "core/json.h"
#include "server/respond.h"

typedef struct fuzz_http {
    /* the query string: '&'-separated key=value pairs, raw as MHD keeps them */
    const char *query;
    size_t query_len;
    char value[4096]; /* the last value looked up */
    /* answers */
    int answers;
    unsigned status;
    char body[8192];
    size_t body_len;
} fuzz_http;

static fuzz_http fh;

const char *__wrap_MHD_lookup_connection_value(struct MHD_Connection *c, enum MHD_ValueKind kind, const char *key);
const char *__wrap_MHD_lookup_connection_value(struct MHD_Connection *c, enum MHD_ValueKind kind, const char *key) {
    (void)c;
    if (kind != MHD_GET_ARGUMENT_KIND) return NULL;
    size_t kl = strlen(key);
    const char *p = fh.query, *end = fh.query + fh.query_len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        size_t klen = (size_t)((eq ? eq : stop) - p);
        if (klen == kl && memcmp(p, key, kl) == 0) {
            if (!eq) return NULL; /* "?key" without a value: MHD gives NULL */
            size_t vl = (size_t)(stop - eq - 1);
            if (vl >= sizeof fh.value) vl = sizeof fh.value - 1;
            memcpy(fh.value, eq + 1, vl);
            fh.value[vl] = '\0'; /* MHD's values are C strings: a NUL ends them */
            return fh.value;
        }
        p = stop + 1;
    }
    return NULL;
}

struct MHD_Response *__real_MHD_create_response_from_buffer(size_t size, void *buffer,
                                                            enum MHD_ResponseMemoryMode mode);
struct MHD_Response *__wrap_MHD_create_response_from_buffer(size_t size, void *buffer,
                                                            enum MHD_ResponseMemoryMode mode);
struct MHD_Response *__wrap_MHD_create_response_from_buffer(size_t size, void *buffer,
                                                            enum MHD_ResponseMemoryMode mode) {
    fh.body_len = size < sizeof fh.body ? size : sizeof fh.body - 1;
    if (fh.body_len) memcpy(fh.body, buffer, fh.body_len);
    fh.body[fh.body_len] = '\0';
    return __real_MHD_create_response_from_buffer(size, buffer, mode);
}

enum MHD_Result __wrap_MHD_queue_response(struct MHD_Connection *c, unsigned int status, struct MHD_Response *r);
enum MHD_Result __wrap_MHD_queue_response(struct MHD_Connection *c, unsigned int status, struct MHD_Response *r) {
    (void)c, (void)r;
    fh.answers++;
    fh.status = status;
    return MHD_YES;
}

/* A fresh request on the query string q[0..n). */
static inline void fuzz_http_reset(evs__req *rq, evs__srv *srv, const char *q, size_t n) {
    memset(rq, 0, sizeof *rq);
    memset(srv, 0, sizeof *srv);
    rq->srv = srv;
    rq->c = (struct MHD_Connection *)&fh; /* never dereferenced: every use is wrapped */
    fh.query = q;
    fh.query_len = n;
    fh.answers = 0;
    fh.status = 0;
    fh.body_len = 0;
    fh.body[0] = '\0';
}

/*
 * The answer of a refusal: exactly one, with the status wanted, and a body
 * that is valid JSON (our strict validator and jansson agree) holding an
 * "error" string that contains `names` (NULL: any non-empty message).
 */
static inline void fuzz_http_check_error(const char *what, unsigned status, const char *names) {
    FUZZ_ASSERT(fh.answers == 1, "%s: %d answers to one refusal", what, fh.answers);
    FUZZ_ASSERT(fh.status == status, "%s: status %u, not %u (%s)", what, fh.status, status, fh.body);
    FUZZ_ASSERT(evs__json_validate_object(fh.body, fh.body_len, NULL) == EVS_OK, "%s: error body is not JSON: %s", what,
                fh.body);
    json_error_t je;
    json_t *j = json_loadb(fh.body, fh.body_len, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &je);
    FUZZ_ASSERT(j && json_is_object(j), "%s: jansson rejects the error body: %s", what, je.text);
    json_t *e = json_object_get(j, "error");
    FUZZ_ASSERT(json_is_string(e) && json_string_length(e) > 0, "%s: no error message: %s", what, fh.body);
    FUZZ_ASSERT(json_object_get(j, "detail") != NULL, "%s: no detail member: %s", what, fh.body);
    if (names) FUZZ_ASSERT(strstr(json_string_value(e), names), "%s: message does not name %s: %s", what, names, fh.body);
    json_decref(j);
}

#endif
