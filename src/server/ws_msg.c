/*
 * ws_msg.c — reading a WebSocket client's message (ws_msg.h).
 *
 * Control messages are parsed with jansson: they are small and rare, and
 * never on the event path.  Duplicate keys are refused, so that a message
 * means one thing.  Checks run in the order the client reads its errors:
 * the first thing wrong is the one named.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/ws_msg.h"

int evs__ws_refuse(evs__ws_err *e, const char *detail_json, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    snprintf(e->detail, sizeof e->detail, "%s", detail_json ? detail_json : "");
    return -1;
}

void evs__ws_error_json(evs__sb *b, const char *detail_json, const char *msg) {
    evs__sb_adds(b, "{\"op\":\"error\",\"error\":");
    evs__sb_json_str(b, msg, strlen(msg));
    evs__sb_adds(b, ",\"detail\":");
    evs__sb_adds(b, detail_json && *detail_json ? detail_json : "null");
    evs__sb_adds(b, "}");
}

int evs__ws_msg_parse(const char *p, size_t n, evs__ws_msg *m, evs__ws_err *e) {
    static const char *const ops[] = {"subscribe", "unsubscribe", "ping", "consume", "ack", "nack", "leave", "command"};
    json_error_t je;
    m->root = json_loadb(p, n, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (!m->root) {
        char d[64];
        snprintf(d, sizeof d, "{\"line\":%d,\"column\":%d}", je.line, je.column);
        return evs__ws_refuse(e, d, "malformed JSON: line %d, column %d: %s", je.line, je.column, je.text);
    }
    const char *op = json_is_object(m->root) ? json_string_value(json_object_get(m->root, "op")) : NULL;
    if (!op) {
        evs__ws_msg_free(m);
        return evs__ws_refuse(e, NULL, "a message is an object with an \"op\" string");
    }
    for (int i = 0; i < (int)(sizeof ops / sizeof ops[0]); i++)
        if (strcmp(op, ops[i]) == 0) {
            m->op = i;
            return 0;
        }
    evs__ws_refuse(e, NULL, "unknown op \"%.64s\" (subscribe, unsubscribe, consume, ack, nack, leave, command, ping)",
                   op);
    evs__ws_msg_free(m);
    return -1;
}

void evs__ws_msg_free(evs__ws_msg *m) {
    json_decref(m->root);
    m->root = NULL;
}

/* ------------------------------------------------------------- subscribe */

/* A JSON string member as a malloc'd copy; -1 if present but not a usable string. */
static int str_member(json_t *obj, const char *key, size_t maxlen, char **out) {
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v)) return -1;
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n == 0 || n > maxlen || memchr(s, '\0', n)) return -1;
    *out = strdup(s);
    return *out ? 0 : -1;
}

/*
 * filter.type: one name or an array of names, joined with ',' for
 * evs__live_filter, which splits them again.  A name holding ',' is refused
 * in both forms: "a,b" would otherwise come out as two names.
 */
static int types_member(json_t *filter, char **out) {
    json_t *t = json_object_get(filter, "type");
    *out = NULL;
    if (!t || json_is_null(t)) return 0;
    if (json_is_string(t))
        return strchr(json_string_value(t), ',') ? -1 : str_member(filter, "type", EVS_MAX_TYPE_NAME, out);
    if (!json_is_array(t) || json_array_size(t) == 0 || json_array_size(t) > EVS_SRV_MAX_FILTER_TYPES) return -1;
    evs__sb b = {0};
    size_t i;
    json_t *v;
    json_array_foreach(t, i, v) {
        if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > EVS_MAX_TYPE_NAME ||
            strchr(json_string_value(v), ',')) {
            evs__sb_free(&b);
            return -1;
        }
        if (i) evs__sb_add(&b, ",", 1);
        evs__sb_adds(&b, json_string_value(v));
    }
    *out = evs__sb_take(&b, NULL);
    return *out ? 0 : -1;
}

/* filter.tag: one tag or an array of them, into lf->tags_buf (each NUL-terminated); -1 if malformed. */
static int tags_member(json_t *filter, evs__live_filter *lf) {
    json_t *t = json_object_get(filter, "tag");
    if (!t || json_is_null(t)) return 0;
    size_t n = json_is_array(t) ? json_array_size(t) : 1;
    if ((!json_is_string(t) && !json_is_array(t)) || n == 0 || n > EVS_MAX_TAGS) return -1;
    evs__sb b = {0};
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_is_array(t) ? json_array_get(t, i) : t;
        if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > EVS_MAX_TAG_BYTES ||
            memchr(json_string_value(v), '\0', json_string_length(v))) {
            evs__sb_free(&b);
            return -1;
        }
        evs__sb_add(&b, json_string_value(v), json_string_length(v) + 1);
    }
    if (b.oom) {
        evs__sb_free(&b);
        return -1;
    }
    lf->tags_len = b.len;
    lf->tags_buf = evs__sb_take(&b, NULL);
    return lf->tags_buf ? 0 : -1;
}

int evs__ws_msg_subscribe(const evs__ws_msg *m, evs__live_filter *lf, int *from_now, uint64_t *from, int *upcast,
                          evs__ws_err *e) {
    json_t *filter = json_object_get(m->root, "filter");
    char *caus = NULL, *match = NULL;
    json_t *up = json_object_get(m->root, "upcast");
    *upcast = 0;
    if (up && !json_is_null(up)) {
        if (!json_is_string(up) || strcmp(json_string_value(up), "latest") != 0)
            return evs__ws_refuse(e, NULL, "upcast: the only value is \"latest\"");
        *upcast = 1;
    }
    if (filter && !json_is_null(filter)) {
        if (!json_is_object(filter) || types_member(filter, &lf->types_buf) ||
            str_member(filter, "stream_type", EVS_MAX_TYPE_NAME, &lf->stream_type) ||
            str_member(filter, "stream", EVS_MAX_STREAM_NAME, &lf->stream) || tags_member(filter, lf) ||
            str_member(filter, "causation_id", 64, &caus) || str_member(filter, "tag_match", 8, &match)) {
            free(caus);
            free(match);
            evs__live_filter_free(lf);
            return evs__ws_refuse(e, NULL, "filter must be an object with optional type and tag (a name or an array "
                                           "of names), stream_type, stream, causation_id and tag_match "
                                           "(non-empty strings)");
        }
        const char *k;
        json_t *v;
        json_object_foreach(filter, k, v) {
            if (strcmp(k, "type") && strcmp(k, "stream_type") && strcmp(k, "stream") && strcmp(k, "tag") &&
                strcmp(k, "causation_id") && strcmp(k, "tag_match")) {
                evs__ws_refuse(e, NULL,
                               "filter: unknown field \"%.64s\" (type, stream_type, stream, tag, tag_match, causation_id)",
                               k);
                free(caus);
                free(match);
                evs__live_filter_free(lf);
                return -1;
            }
        }
    }
    if (match) { /* as /subscribe's tag_match: any (the default) or all of filter.tag */
        int all = strcmp(match, "all") == 0, any = strcmp(match, "any") == 0;
        free(match);
        if (!all && !any) {
            free(caus);
            evs__live_filter_free(lf);
            return evs__ws_refuse(e, NULL, "filter: tag_match is \"any\" or \"all\"");
        }
        lf->tag_all = all;
    }
    if (caus) {
        int bad = evs_uuid_parse(caus, strlen(caus), &lf->causation) != EVS_OK;
        free(caus);
        if (bad) {
            evs__live_filter_free(lf);
            return evs__ws_refuse(e, NULL, "filter: causation_id is not a UUID");
        }
        lf->has_causation = 1;
    }
    char why[128];
    if (evs__live_filter_finish(lf, why, sizeof why)) {
        evs__live_filter_free(lf);
        return evs__ws_refuse(e, NULL, "filter: %s", why);
    }
    json_t *f = json_object_get(m->root, "from");
    *from_now = 0;
    *from = 0;
    if (!f || json_is_null(f) || (json_is_string(f) && strcmp(json_string_value(f), "now") == 0)) {
        *from_now = 1;
    } else if (json_is_integer(f) && json_integer_value(f) >= 0) {
        *from = (uint64_t)json_integer_value(f);
        if (*from == 0) *from = 1;
    } else {
        evs__live_filter_free(lf);
        return evs__ws_refuse(e, NULL, "from must be \"now\" or a global position (a non-negative integer)");
    }
    return 0;
}

/* --------------------------------------------------------------- groups */

/* A group's or consumer's name: 1..EVS_BUS_MAX_NAME bytes, no control characters. */
static int name_ok(const char *s, size_t n) {
    if (n == 0 || n > EVS_BUS_MAX_NAME || memchr(s, '\0', n)) return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return 0;
    return 1;
}

int evs__ws_msg_consume(const evs__ws_msg *m, char group[EVS_BUS_MAX_NAME + 1], char consumer[EVS_BUS_MAX_NAME + 1],
                        evs__ws_err *e) {
    const char *k;
    json_t *v;
    json_object_foreach(m->root, k, v) {
        if (strcmp(k, "op") && strcmp(k, "group") && strcmp(k, "consumer"))
            return evs__ws_refuse(e, NULL, "consume: unknown field \"%.64s\" (group, consumer)", k);
    }
    json_t *g = json_object_get(m->root, "group"), *c = json_object_get(m->root, "consumer");
    if (!json_is_string(g) || !name_ok(json_string_value(g), json_string_length(g)))
        return evs__ws_refuse(e, NULL, "consume: group must be a group's name (1..%d bytes, no control characters)",
                              EVS_BUS_MAX_NAME);
    if (c && !json_is_null(c) && (!json_is_string(c) || !name_ok(json_string_value(c), json_string_length(c))))
        return evs__ws_refuse(e, NULL, "consume: consumer must be a name (1..%d bytes, no control characters)",
                              EVS_BUS_MAX_NAME);
    memcpy(group, json_string_value(g), json_string_length(g) + 1);
    consumer[0] = '\0';
    if (json_is_string(c)) memcpy(consumer, json_string_value(c), json_string_length(c) + 1);
    return 0;
}

/* position and attempt of a delivery object. */
static int delivery_id(const char *op, json_t *o, evs_delivery_id *id, evs__ws_err *e) {
    json_t *p = json_object_get(o, "position"), *a = json_object_get(o, "attempt");
    if (!json_is_integer(p) || json_integer_value(p) < 1 || !json_is_integer(a) || json_integer_value(a) < 1 ||
        json_integer_value(a) > (json_int_t)UINT32_MAX)
        return evs__ws_refuse(e, NULL, "%s: a delivery is {\"position\": P, \"attempt\": A} with positive integers, "
                                       "as received in the delivery message", op);
    id->position = (uint64_t)json_integer_value(p);
    id->attempt = (uint32_t)json_integer_value(a);
    return 0;
}

int evs__ws_msg_ack(const evs__ws_msg *m, evs_delivery_id **ids, size_t *n, evs__ws_err *e) {
    json_t *list = json_object_get(m->root, "deliveries");
    *ids = NULL;
    *n = 1;
    if (list) {
        if (!json_is_array(list) || json_array_size(list) == 0 || json_array_size(list) > EVS_WS_MAX_ACKS)
            return evs__ws_refuse(e, NULL, "ack: deliveries must be an array of 1..%d {\"position\", \"attempt\"} "
                                           "objects", EVS_WS_MAX_ACKS);
        *n = json_array_size(list);
    }
    evs_delivery_id *a = malloc(*n * sizeof *a);
    if (!a) return evs__ws_refuse(e, NULL, "ack: out of memory");
    for (size_t i = 0; i < *n; i++) {
        json_t *o = list ? json_array_get(list, i) : m->root;
        if (!json_is_object(o)) {
            free(a);
            return evs__ws_refuse(e, NULL, "ack: deliveries[%zu] is not a delivery object {\"position\", "
                                           "\"attempt\"}", i);
        }
        if (delivery_id("ack", o, &a[i], e)) {
            free(a);
            return -1;
        }
    }
    *ids = a;
    return 0;
}

int evs__ws_msg_nack(const evs__ws_msg *m, evs_delivery_id *id, evs_nack_action *act, const char **action_name,
                     const char **reason, evs__ws_err *e) {
    if (delivery_id("nack", m->root, id, e)) return -1;
    json_t *a = json_object_get(m->root, "action"), *r = json_object_get(m->root, "reason");
    const char *an = a ? json_string_value(a) : "retry";
    if (!an || (strcmp(an, "retry") && strcmp(an, "park") && strcmp(an, "skip")))
        return evs__ws_refuse(e, NULL, "nack: action must be \"retry\", \"park\" or \"skip\"");
    *act = strcmp(an, "park") == 0 ? EVS_NACK_PARK : strcmp(an, "skip") == 0 ? EVS_NACK_SKIP : EVS_NACK_RETRY;
    *action_name = an;
    if (r && !json_is_null(r) && (!json_is_string(r) || json_string_length(r) > 500))
        return evs__ws_refuse(e, NULL, "nack: reason must be a string of at most 500 bytes");
    *reason = json_is_string(r) ? json_string_value(r) : NULL;
    return 0;
}

/* -------------------------------------------------------------- commands */

int evs__ws_msg_command(const evs__ws_msg *m, char **text, size_t *len, char **ref_text, evs__ws_err *e) {
    json_t *ref = json_object_get(m->root, "ref");
    *text = *ref_text = NULL;
    *len = 0;
    if (ref && !json_is_string(ref) && !json_is_number(ref) && !json_is_null(ref))
        return evs__ws_refuse(e, "{\"op\":\"command\"}", "command: ref must be a string or a number");
    if (ref && (!(*ref_text = json_dumps(ref, JSON_ENCODE_ANY)) || strlen(*ref_text) > EVS_WS_MAX_REF)) {
        free(*ref_text);
        *ref_text = NULL;
        return evs__ws_refuse(e, "{\"op\":\"command\"}", "command: ref is over %d bytes", EVS_WS_MAX_REF);
    }
    /* a shallow copy: the message itself stays as it came */
    json_t *cmd = json_copy(m->root);
    if (cmd) {
        json_object_del(cmd, "op");
        json_object_del(cmd, "ref");
        *text = json_dumps(cmd, JSON_COMPACT);
        json_decref(cmd);
    }
    if (!*text) {
        free(*ref_text);
        *ref_text = NULL;
        return evs__ws_refuse(e, "{\"op\":\"command\"}", "command: out of memory");
    }
    *len = strlen(*text);
    return 0;
}
