/*
 * fuzz_ws.c — fuzz target for the messages a WebSocket client sends to
 * GET /ws (src/server/ws_msg.c: the JSON, the op, and the fields of
 * subscribe, consume, ack, nack and command).
 *
 * The input is one text message.  Every reader runs on every message that
 * parses, whatever its op, so each must cope with any object.  Invariants:
 *   - a refusal has a message, and the {"op":"error"} reply rendered from
 *     it (evs__ws_error_json, what ws.c sends) is one valid JSON object
 *     (our validator and jansson agree) with that message and a detail that
 *     is JSON or null;
 *   - a parsed message is an object whose "op" is the op found;
 *   - subscribe: a refused filter leaves nothing allocated; an accepted one
 *     holds at most 32 event types of 1..255 bytes without ',', 1..64 tags
 *     of 1..255 bytes (the message's, in its order), the stream_type,
 *     stream and causation id (a UUID) the message gave, and the evs_filter
 *     points at them; the start is "now" exactly when "from" is absent,
 *     null or "now", else max(1, from);
 *   - consume: only op, group and consumer are accepted; the names are the
 *     message's, 1..128 bytes without control characters;
 *   - ack: 1..1000 deliveries, each the message's position (>= 1) and
 *     attempt (1..2^32-1); nack: one delivery, one of the three actions,
 *     a reason of at most 500 bytes or none;
 *   - command: accepted exactly when ref is absent, or a string, number or
 *     null of at most 256 bytes as JSON; the ref text is then that value
 *     as JSON (NULL when absent), and the command text is a JSON object
 *     equal to the message without "op" and "ref"; the message itself is
 *     left as it came;
 *   - nothing leaks (ASan).
 */
#define FUZZ_NAME "fuzz_ws"
#include "fuzz_util.h"

#include <jansson.h>

#include "core/json.h"
#include "server/ws_msg.h"

static void check_refusal(const evs__ws_err *e, const char *what) {
    FUZZ_ASSERT(e->msg[0], "%s: refused without a message", what);
    evs__sb b = {0};
    evs__ws_error_json(&b, e->detail, e->msg);
    FUZZ_ASSERT(!b.oom && evs__json_validate_object(b.p, b.len, NULL) == EVS_OK, "%s: error reply is not JSON: %s",
                what, b.p);
    json_error_t je;
    json_t *j = json_loadb(b.p, b.len, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &je);
    FUZZ_ASSERT(j, "%s: jansson rejects the error reply %s: %s", what, b.p, je.text);
    json_t *op = json_object_get(j, "op"), *err = json_object_get(j, "error"), *d = json_object_get(j, "detail");
    FUZZ_ASSERT(json_is_string(op) && strcmp(json_string_value(op), "error") == 0, "%s: op", what);
    /* the message may be cut inside a character; the escaper then writes U+FFFD, never bad JSON */
    FUZZ_ASSERT(json_is_string(err) && json_string_length(err) > 0, "%s: no error message", what);
    FUZZ_ASSERT(d && (json_is_null(d) ? !e->detail[0] : e->detail[0] != 0), "%s: detail %s", what, e->detail);
    json_decref(j);
    evs__sb_free(&b);
}

static int name_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > EVS_BUS_MAX_NAME) return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return 0;
    return 1;
}

/* The message's tag (a string or an array of strings) is exactly lf's tags, in order. */
static void check_tags(json_t *t, const evs__live_filter *lf) {
    FUZZ_ASSERT(lf->ntags <= EVS_MAX_TAGS && lf->f.n_tags == lf->ntags && (!lf->ntags || lf->f.tags == lf->tags),
                "%zu tags", lf->ntags);
    size_t want = json_is_string(t) ? 1 : json_is_array(t) ? json_array_size(t) : 0;
    FUZZ_ASSERT(lf->ntags == want, "%zu tags for %zu", lf->ntags, want);
    for (size_t i = 0; i < want; i++) {
        json_t *v = json_is_string(t) ? t : json_array_get(t, i);
        FUZZ_ASSERT(json_is_string(v) && lf->tags[i][0] && strlen(lf->tags[i]) <= EVS_MAX_TAG_BYTES &&
                        strlen(lf->tags[i]) == json_string_length(v) && strcmp(lf->tags[i], json_string_value(v)) == 0,
                    "tag %zu \"%s\"", i, lf->tags[i]);
    }
}

static void check_subscribe(const evs__ws_msg *m) {
    evs__live_filter lf;
    memset(&lf, 0, sizeof lf);
    int now = -1, upcast = -1;
    uint64_t from = 7;
    evs__ws_err e;
    if (evs__ws_msg_subscribe(m, &lf, &now, &from, &upcast, &e)) {
        check_refusal(&e, "subscribe");
        FUZZ_ASSERT(!lf.types_buf && !lf.stream_type && !lf.stream && !lf.stream_prefix && !lf.tags_buf,
                    "refused filter kept");
        return;
    }
    json_t *filter = json_object_get(m->root, "filter"), *f = json_object_get(m->root, "from");
    FUZZ_ASSERT(lf.ntypes <= EVS_SRV_MAX_FILTER_TYPES && lf.f.n_event_types == lf.ntypes, "%zu types", lf.ntypes);
    for (size_t i = 0; i < lf.ntypes; i++)
        FUZZ_ASSERT(lf.types[i][0] && strlen(lf.types[i]) <= EVS_MAX_TYPE_NAME && !strchr(lf.types[i], ','),
                    "type \"%s\"", lf.types[i]);
    json_t *t = json_object_get(filter, "type");
    if (json_is_string(t)) FUZZ_ASSERT(lf.ntypes == 1 && strcmp(lf.types[0], json_string_value(t)) == 0, "type");
    if (json_is_array(t)) FUZZ_ASSERT(lf.ntypes == json_array_size(t), "types");
    json_t *st = json_object_get(filter, "stream_type"), *sn = json_object_get(filter, "stream");
    FUZZ_ASSERT(json_is_string(st) ? lf.stream_type && strcmp(lf.stream_type, json_string_value(st)) == 0
                                   : !lf.stream_type,
                "stream_type");
    FUZZ_ASSERT(json_is_string(sn) ? lf.stream && strcmp(lf.stream, json_string_value(sn)) == 0 : !lf.stream,
                "stream");
    if (lf.stream) FUZZ_ASSERT(lf.f.stream_prefix == lf.stream, "the stream filter does not point at the stream");
    check_tags(json_object_get(filter, "tag"), &lf);
    json_t *tm = json_object_get(filter, "tag_match"), *up = json_object_get(m->root, "upcast");
    FUZZ_ASSERT(lf.tag_all == (json_is_string(tm) && strcmp(json_string_value(tm), "all") == 0), "tag_match");
    FUZZ_ASSERT(upcast == (json_is_string(up) && strcmp(json_string_value(up), "latest") == 0), "upcast %d", upcast);
    json_t *cz = json_object_get(filter, "causation_id");
    if (json_is_string(cz)) {
        evs_uuid u;
        FUZZ_ASSERT(evs_uuid_parse(json_string_value(cz), json_string_length(cz), &u) == EVS_OK && lf.has_causation &&
                        memcmp(&u, &lf.causation, sizeof u) == 0 && lf.f.causation_id == &lf.causation,
                    "causation_id");
    } else {
        FUZZ_ASSERT(!lf.has_causation && !lf.f.causation_id, "a causation id made up");
    }
    int want_now = !f || json_is_null(f) || (json_is_string(f) && strcmp(json_string_value(f), "now") == 0);
    FUZZ_ASSERT(now == want_now, "from_now %d", now);
    if (!now) {
        json_int_t v = json_integer_value(f);
        FUZZ_ASSERT(from == (uint64_t)(v < 1 ? 1 : v), "from %llu", (unsigned long long)from);
    }
    evs__live_filter_free(&lf);
}

static void check_consume(const evs__ws_msg *m) {
    char g[EVS_BUS_MAX_NAME + 1], c[EVS_BUS_MAX_NAME + 1];
    evs__ws_err e;
    if (evs__ws_msg_consume(m, g, c, &e)) {
        check_refusal(&e, "consume");
        return;
    }
    const char *k;
    json_t *v;
    json_object_foreach(m->root, k, v)
        FUZZ_ASSERT(!strcmp(k, "op") || !strcmp(k, "group") || !strcmp(k, "consumer"), "accepted field %s", k);
    json_t *jg = json_object_get(m->root, "group"), *jc = json_object_get(m->root, "consumer");
    FUZZ_ASSERT(name_ok(g) && strlen(g) == json_string_length(jg) && strcmp(g, json_string_value(jg)) == 0,
                "group \"%s\"", g);
    if (json_is_string(jc))
        FUZZ_ASSERT(name_ok(c) && strlen(c) == json_string_length(jc) && strcmp(c, json_string_value(jc)) == 0,
                    "consumer \"%s\"", c);
    else
        FUZZ_ASSERT(c[0] == '\0', "consumer \"%s\" made up", c);
}

static void check_delivery(json_t *o, const evs_delivery_id *id) {
    json_int_t p = json_integer_value(json_object_get(o, "position"));
    json_int_t a = json_integer_value(json_object_get(o, "attempt"));
    FUZZ_ASSERT(p >= 1 && id->position == (uint64_t)p && a >= 1 && a <= (json_int_t)UINT32_MAX &&
                    id->attempt == (uint32_t)a,
                "delivery %llu/%u", (unsigned long long)id->position, id->attempt);
}

static void check_ack(const evs__ws_msg *m) {
    evs_delivery_id *ids = NULL;
    size_t n = 0;
    evs__ws_err e;
    if (evs__ws_msg_ack(m, &ids, &n, &e)) {
        check_refusal(&e, "ack");
        FUZZ_ASSERT(ids == NULL, "refused ack returned ids");
        return;
    }
    json_t *list = json_object_get(m->root, "deliveries");
    FUZZ_ASSERT(n >= 1 && n <= EVS_WS_MAX_ACKS && (!list || n == json_array_size(list)), "%zu deliveries", n);
    for (size_t i = 0; i < n; i++) check_delivery(list ? json_array_get(list, i) : m->root, &ids[i]);
    free(ids);
}

static void check_nack(const evs__ws_msg *m) {
    evs_delivery_id id;
    evs_nack_action act;
    const char *an = NULL, *reason = NULL;
    evs__ws_err e;
    if (evs__ws_msg_nack(m, &id, &act, &an, &reason, &e)) {
        check_refusal(&e, "nack");
        return;
    }
    check_delivery(m->root, &id);
    FUZZ_ASSERT((act == EVS_NACK_RETRY && !strcmp(an, "retry")) || (act == EVS_NACK_PARK && !strcmp(an, "park")) ||
                    (act == EVS_NACK_SKIP && !strcmp(an, "skip")),
                "action %d \"%s\"", (int)act, an);
    FUZZ_ASSERT(!reason || strlen(reason) <= 500, "reason of %zu bytes", strlen(reason));
}

static void check_command(const evs__ws_msg *m) {
    char *before = json_dumps(m->root, JSON_COMPACT | JSON_SORT_KEYS);
    char *text = (char *)1, *ref_text = (char *)1;
    size_t len = 7;
    evs__ws_err e;
    json_t *ref = json_object_get(m->root, "ref");
    char *ref_json = ref ? json_dumps(ref, JSON_ENCODE_ANY) : NULL;
    int ref_ok = !ref || ((json_is_string(ref) || json_is_number(ref) || json_is_null(ref)) && ref_json &&
                          strlen(ref_json) <= EVS_WS_MAX_REF);
    if (evs__ws_msg_command(m, &text, &len, &ref_text, &e)) {
        check_refusal(&e, "command");
        FUZZ_ASSERT(!text && !ref_text, "refused command returned text");
        FUZZ_ASSERT(!ref_ok, "a ref of string, number or null within %d bytes refused: %s", EVS_WS_MAX_REF, e.msg);
    } else {
        FUZZ_ASSERT(ref_ok, "ref %s accepted", ref_json ? ref_json : "(none)");
        FUZZ_ASSERT(ref ? ref_text && strcmp(ref_text, ref_json) == 0 : !ref_text, "ref text %s",
                    ref_text ? ref_text : "(none)");
        FUZZ_ASSERT(text && len == strlen(text), "command text length");
        json_error_t je;
        json_t *got = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
        json_t *want = json_copy(m->root);
        FUZZ_ASSERT(got && want, "command text is not JSON: %s", text);
        json_object_del(want, "op");
        json_object_del(want, "ref");
        FUZZ_ASSERT(json_is_object(got) && json_equal(got, want), "command text %s is not the message", text);
        json_decref(got);
        json_decref(want);
        free(text);
        free(ref_text);
    }
    char *after = json_dumps(m->root, JSON_COMPACT | JSON_SORT_KEYS);
    FUZZ_ASSERT(before && after && strcmp(before, after) == 0, "the message changed");
    free(before);
    free(after);
    free(ref_json);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *const ops[] = {"subscribe", "unsubscribe", "ping",  "consume",
                                      "ack",       "nack",        "leave", "command"};
    evs__ws_msg m;
    evs__ws_err e;
    if (evs__ws_msg_parse((const char *)data, size, &m, &e)) {
        check_refusal(&e, "parse");
        return 0;
    }
    FUZZ_ASSERT(json_is_object(m.root) && m.op >= 0 && m.op < (int)(sizeof ops / sizeof ops[0]) &&
                    strcmp(json_string_value(json_object_get(m.root, "op")), ops[m.op]) == 0,
                "op %d", m.op);
    check_subscribe(&m);
    check_consume(&m);
    check_ack(&m);
    check_nack(&m);
    check_command(&m);
    evs__ws_msg_free(&m);
    return 0;
}
