/*
 * fuzz_proj.c — fuzz target for Lua projection definitions: the body of
 * PUT /projections/N (src/server/routes_proj.c, evs__req_source: the
 * script as text, or {"source": "..."} as JSON), the script itself loaded
 * into the sandbox (src/bus/proj_lua.c: evs__lua_new reads what it
 * declares), its handlers run on three events, and the states they leave
 * converted to JSON and back.
 *
 * EVS_WRAP: MHD_lookup_connection_value MHD_create_response_from_buffer MHD_queue_response
 *
 * Byte 0 chooses: bit 0 the body is JSON (else Lua text); bit 1 the rest
 * is a stored state (JSON) given to a fixed script instead of a body.
 * Limits are small (8 MiB of Lua heap, 200,000 instructions per call), so
 * loops end quickly.  Invariants:
 *   - the body: a refusal is one answer (400 malformed JSON, 413 too long,
 *     422 not {"source"} / NUL / not UTF-8) with a JSON error body; an
 *     accepted source is the body's bytes or the JSON's source string, with
 *     no NUL and valid UTF-8;
 *   - the script: evs__lua_new succeeds, or fails with EVS_EINVAL (or
 *     EVS_ENOMEM) and a message; never a crash, whatever the script does
 *     (metatables, errors, endless loops, memory hogs);
 *   - what it declares: a partitioning of the three kinds, filter names
 *     that are non-empty strings;
 *   - handlers: each call succeeds or fails with a reason; a state that
 *     passes evs__lua_check encodes to valid JSON, and that JSON loads and
 *     encodes to the same text (encoding is stable); a custom partition
 *     key is 1..255 bytes or a failure with a reason;
 *   - a stored state (bit 1): loads as a Lua table or is refused as
 *     corrupt; once loaded, encode -> load -> encode gives the same text.
 */
#define FUZZ_NAME "fuzz_proj"
#include "fuzz_util.h"
#include "fuzz_http.h"

#include <jansson.h>

#include "bus/bus_internal.h"
#include "server/routes_proj.h"

static const evs_lua_limits lim = {.memory_bytes = 8u << 20, .instructions = 200000};

static evs_event event_of(int i) {
    static const char *const types[] = {"OrderPlaced", "ItemAdded", "Weird"};
    static const char *const datas[] = {"{\"id\":1,\"total\":12.5,\"items\":[1,2]}", "{\"sku\":\"a\",\"n\":null}",
                                        "{\"deep\":{\"x\":[{\"y\":true}]}}"};
    evs_event ev;
    memset(&ev, 0, sizeof ev);
    ev.event_type = types[i];
    ev.event_type_len = strlen(types[i]);
    ev.stream = "order-1";
    ev.stream_len = 7;
    ev.stream_type = "order";
    ev.stream_type_len = 5;
    ev.data = datas[i];
    ev.data_len = strlen(datas[i]);
    ev.metadata = "{}";
    ev.metadata_len = 2;
    ev.global_position = (uint64_t)i + 1;
    ev.stream_position = (uint64_t)i + 1;
    ev.event_version = 1;
    ev.recorded_at = 1767225600000000000 + i;
    ev.event_id.b[15] = (uint8_t)i;
    return ev;
}

/* encode, load, encode: the same text. */
static void check_stable(evs__lua *x, int ref) {
    char err[512] = "", *js = NULL, *js2 = NULL;
    size_t n = 0, n2 = 0;
    if (evs__lua_check(x, ref, err, sizeof err)) {
        FUZZ_ASSERT(err[0], "check refused a state without a reason");
        return;
    }
    int rc = evs__lua_encode(x, ref, &js, &n, err, sizeof err);
    FUZZ_ASSERT(rc == EVS_OK, "a state that passed the check does not encode: %s", err);
    json_error_t je;
    json_t *j = json_loadb(js, n, JSON_DECODE_ANY, &je);
    FUZZ_ASSERT(j, "encoded state is not JSON (%s): %s", je.text, js);
    json_decref(j);
    int ref2 = 0;
    rc = evs__lua_load_state(x, js, n, &ref2, err, sizeof err);
    if (rc == EVS_OK) { /* an empty table encodes as {}; states are tables */
        rc = evs__lua_encode(x, ref2, &js2, &n2, err, sizeof err);
        FUZZ_ASSERT(rc == EVS_OK && n2 == n && memcmp(js, js2, n) == 0, "encoding is not stable: %s then %s", js,
                    js2 ? js2 : err);
        evs__lua_unref(x, ref2);
    } else {
        FUZZ_ASSERT(js[0] != '{' && js[0] != '[', "the encoded state %s does not load: %s", js, err);
    }
    free(js);
    free(js2);
}

static void run_script(const char *src, size_t n) {
    evs__lua *x = NULL;
    evs__lua_decl decl;
    int rc = evs__lua_new(src, n, &lim, &x, &decl);
    if (rc != EVS_OK) {
        FUZZ_ASSERT(rc == EVS_EINVAL || rc == EVS_ENOMEM, "load: %s", evs_errname(rc));
        FUZZ_ASSERT(evs_errmsg()[0], "load failed without a message");
        FUZZ_ASSERT(x == NULL, "failed load returned a state");
        return;
    }
    FUZZ_ASSERT(decl.partitioning == EVS_PARTITION_BY_STREAM || decl.partitioning == EVS_PARTITION_NONE ||
                    decl.partitioning == EVS_PARTITION_CUSTOM,
                "partitioning %d", decl.partitioning);
    for (size_t i = 0; i < decl.filter.n_event_types; i++)
        FUZZ_ASSERT(decl.filter.event_types[i] && decl.filter.event_types[i][0], "filter type %zu", i);
    char err[512] = "";
    int ref = 0;
    rc = evs__lua_load_state(x, NULL, 0, &ref, err, sizeof err);
    if (rc == EVS_OK) {
        for (int i = 0; i < 3; i++) {
            evs_event ev = event_of(i);
            err[0] = 0;
            if (evs__lua_apply(x, &ref, &ev, err, sizeof err)) FUZZ_ASSERT(err[0], "apply failed without a reason");
            if (decl.partitioning == EVS_PARTITION_CUSTOM) {
                char key[EVS_MAX_STREAM_NAME + 1];
                err[0] = 0;
                int k = evs__lua_partition(x, &ev, key, sizeof key, err, sizeof err);
                FUZZ_ASSERT((k >= 1 && k <= (int)EVS_MAX_STREAM_NAME) || (k == -1 && err[0]), "partition key %d", k);
            }
        }
        check_stable(x, ref);
        evs__lua_unref(x, ref);
    } else {
        FUZZ_ASSERT(err[0] && evs_errmsg()[0], "init failed without a reason");
    }
    evs__lua_decl_free(&decl);
    evs__lua_free(x);
}

static void run_state(const char *js, size_t n) {
    static const char script[] = "return {handlers = {}}";
    evs__lua *x = NULL;
    evs__lua_decl decl;
    FUZZ_ASSERT(evs__lua_new(script, sizeof script - 1, &lim, &x, &decl) == EVS_OK, "fixed script: %s", evs_errmsg());
    char err[512] = "";
    int ref = 0;
    int rc = evs__lua_load_state(x, js, n, &ref, err, sizeof err);
    if (rc == EVS_OK) {
        check_stable(x, ref);
        evs__lua_unref(x, ref);
    } else {
        FUZZ_ASSERT(rc == EVS_ECORRUPT && err[0], "load_state: %s", evs_errname(rc));
    }
    evs__lua_decl_free(&decl);
    evs__lua_free(x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    const char *body = (const char *)data + 1;
    size_t blen = size - 1;
    if (data[0] & 2) {
        run_state(body, blen);
        return 0;
    }
    static evs__req rq;
    static evs__srv srv;
    fuzz_http_reset(&rq, &srv, "", 0);
    rq.body_kind = (data[0] & 1) ? EVS_BODY_JSON : EVS_BODY_LUA;
    rq.body.p = blen ? (char *)body : NULL;
    rq.body.len = blen;
    json_t *root = NULL;
    const char *src = NULL;
    size_t n = 0;
    enum MHD_Result mr;
    int rc = evs__req_source(&rq, &root, &src, &n, &mr);
    if (rc) {
        FUZZ_ASSERT(rc == -1 && fh.answers == 1, "refusal with %d answers", fh.answers);
        FUZZ_ASSERT(fh.status == EVS_HTTP_BAD_REQUEST || fh.status == EVS_HTTP_TOO_LARGE ||
                        fh.status == EVS_HTTP_UNPROCESSABLE,
                    "status %u", fh.status);
        fuzz_http_check_error("body", fh.status, NULL);
    } else {
        FUZZ_ASSERT(fh.answers == 0, "accepted, yet answered");
        FUZZ_ASSERT(!memchr(src, 0, n) && evs__utf8_valid(src, n, NULL), "source with NUL or bad UTF-8");
        if (rq.body_kind == EVS_BODY_JSON) {
            json_t *s = json_object_get(root, "source");
            FUZZ_ASSERT(json_is_string(s) && src == json_string_value(s) && n == json_string_length(s) &&
                            json_object_size(root) == 1 && n <= EVS_PROJ_MAX_SOURCE,
                        "the source is not the body's \"source\"");
        } else {
            FUZZ_ASSERT(n == blen && (blen == 0 || src == body), "the source is not the body");
        }
        run_script(src, n);
    }
    rq.body.p = NULL; /* the input's, not ours */
    json_decref(root);
    return 0;
}
