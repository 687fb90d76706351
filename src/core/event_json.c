/*
 * event_json.c — the event envelope in JSON: parsing what the CLI and the
 * server receive into an evs_event_in, and rendering a stored evs_event.
 *
 * Parsing validates the whole input once with the strict validator
 * (json.c), then walks the top-level members with the span iterators.
 * data and metadata are never decoded or re-serialised: the evs_event_in
 * points at their bytes inside the input, so what is stored is exactly what
 * the client sent.  Only the small scalar fields are decoded, into the
 * fixed buffers of evs_event_parsed (tags into one malloc'd block).
 *
 * Field rules beyond the header's summary:
 *   - Names are compared after unescaping, so "d\u0061ta" is "data" and a
 *     second spelling of a field is a duplicate.
 *   - null for an optional field means "absent" (evs_event_to_json writes
 *     null for absent ids, so its vocabulary reads back the same way).
 *   - Errors other than malformed JSON are EVS_EINVAL; err, when given,
 *     then points at the offending value and its msg is the message alone
 *     (EVS_EJSON messages carry "line L, column C:" themselves).
 *
 * Rendering writes one line.  data, metadata and tags are copied verbatim
 * with one exception: a raw CR or LF — which in valid JSON can only be
 * whitespace between tokens — becomes a space, so a pretty-printed payload
 * cannot break line-based consumers (NDJSON, SSE) while every value and the
 * byte count stay the same.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "core/event_json.h"

/* ------------------------------------------------------------- parsing */

enum field {
    F_EVENT_TYPE, F_DATA, F_METADATA, F_EVENT_ID, F_CAUSATION_ID, F_CORRELATION_ID,
    F_EVENT_VERSION, F_STREAM_TYPE, F_TAGS, F_OCCURRED_AT, F_COUNT
};

static const char *const field_names[F_COUNT] = {
    "event_type", "data", "metadata", "event_id", "causation_id", "correlation_id",
    "event_version", "stream_type", "tags", "occurred_at",
};

/* Set by the store; a client that sends them has misunderstood something. */
static const char *const readonly_names[] = {"stream", "stream_position", "global_position", "recorded_at"};

typedef struct parse_ctx {
    const char *input;
    evs_json_error *err;
} parse_ctx;

/* Record an EVS_EINVAL (or other) failure located at `at` in the input. */
static EVS_PRINTF(4, 5) int bad(const parse_ctx *c, const char *at, int code, const char *fmt, ...) {
    evs_json_error *e = c->err;
    e->offset = (size_t)(at - c->input);
    evs__json_position(c->input, e->offset, &e->line, &e->column);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return evs__err(code, "%s", e->msg);
}

/* A JSON string span shortened for messages: at most ~40 bytes, quotes kept. */
static const char *shown(evs_json_span s, char buf[56]) {
    if (s.n <= 44) {
        memcpy(buf, s.p, s.n);
        buf[s.n] = '\0';
        return buf;
    }
    size_t cut = 40;
    while (cut > 1 && ((unsigned char)s.p[cut] & 0xc0) == 0x80) cut--; /* keep UTF-8 whole */
    memcpy(buf, s.p, cut);
    memcpy(buf + cut, "...\"", 5);
    return buf;
}

/*
 * A name-like string (event_type, stream_type, a tag): 1..max bytes once
 * unescaped, no control characters.  Decoded into out (max + 1 bytes).
 * An escape is at most 6 bytes for one byte of output, so a value longer
 * than 6 * max raw bytes is too long without decoding it.
 */
#define NAME_MAX_BYTES 255
_Static_assert(EVS_MAX_TYPE_NAME <= NAME_MAX_BYTES && EVS_MAX_TAG_BYTES <= NAME_MAX_BYTES,
               "parse_name's buffer is sized for names of at most 255 bytes");

static int parse_name(const parse_ctx *c, const char *label, evs_json_span v, char *out, size_t max) {
    char tmp[6 * NAME_MAX_BYTES + 1];
    if (v.type != EVS_JSON_STRING)
        return bad(c, v.p, EVS_EINVAL, "%s must be a string, got %s", label, evs__json_type_name(v.type));
    if (v.n - 2 > 6 * max)
        return bad(c, v.p, EVS_EINVAL, "%s is longer than %zu bytes", label, max);
    long k = evs__json_string_decode(v, tmp, sizeof tmp);
    if (k < 0) return bad(c, v.p, EVS_EINVAL, "%s contains U+0000", label);
    if (k == 0) return bad(c, v.p, EVS_EINVAL, "%s must not be empty", label);
    if ((size_t)k > max) return bad(c, v.p, EVS_EINVAL, "%s is %ld bytes, the limit is %zu", label, k, max);
    for (long i = 0; i < k; i++) {
        unsigned char ch = (unsigned char)tmp[i];
        if (ch < 0x20 || ch == 0x7f)
            return bad(c, v.p, EVS_EINVAL, "%s contains control character U+%04X", label, ch);
    }
    memcpy(out, tmp, (size_t)k + 1);
    return EVS_OK;
}

static int parse_uuid(const parse_ctx *c, const char *label, evs_json_span v, evs_uuid *out) {
    char tmp[40], show[56];
    if (v.type != EVS_JSON_STRING)
        return bad(c, v.p, EVS_EINVAL, "%s must be a UUID string, got %s", label, evs__json_type_name(v.type));
    long k = evs__json_string_decode(v, tmp, sizeof tmp);
    if (k < 0 || evs_uuid_parse(tmp, (size_t)k, out) != EVS_OK)
        return bad(c, v.p, EVS_EINVAL, "%s: invalid UUID %s", label, shown(v, show));
    return EVS_OK;
}

static int parse_version(const parse_ctx *c, evs_json_span v, uint32_t *out) {
    int64_t x = 0;
    if (v.type != EVS_JSON_NUMBER || evs__json_int64(v, &x) != EVS_OK || x < 1 || x > INT32_MAX) {
        int n = v.n > 40 ? 40 : (int)v.n;
        return bad(c, v.p, EVS_EINVAL, "event_version must be an integer from 1 to 2147483647, got %.*s", n, v.p);
    }
    *out = (uint32_t)x;
    return EVS_OK;
}

static int parse_time(const parse_ctx *c, evs_json_span v, int64_t *out) {
    char tmp[64], show[56];
    if (v.type == EVS_JSON_NUMBER) {
        if (evs__json_int64(v, out) == EVS_OK) return EVS_OK;
        int n = v.n > 40 ? 40 : (int)v.n;
        return bad(c, v.p, EVS_EINVAL, "occurred_at: %.*s is not an integer count of ns since the epoch", n, v.p);
    }
    if (v.type != EVS_JSON_STRING)
        return bad(c, v.p, EVS_EINVAL, "occurred_at must be an RFC 3339 string or integer ns, got %s",
                   evs__json_type_name(v.type));
    long k = evs__json_string_decode(v, tmp, sizeof tmp);
    if (k < 0) return bad(c, v.p, EVS_EINVAL, "occurred_at: invalid time %s", shown(v, show));
    if (evs_time_parse(tmp, (size_t)k, out) != EVS_OK)
        return bad(c, v.p, EVS_EINVAL, "occurred_at: %s", evs_errmsg());
    return EVS_OK;
}

/* Tags: decoded one after another into a single block that e->tag_buf owns. */
static int parse_tags(const parse_ctx *c, evs_json_span v, evs_event_parsed *e) {
    evs_json_iter it;
    evs_json_span t;
    size_t count = 0, bytes = 0;
    if (v.type != EVS_JSON_ARRAY)
        return bad(c, v.p, EVS_EINVAL, "tags must be an array of strings, got %s", evs__json_type_name(v.type));
    evs__json_iter_init(&it, v);
    while (evs__json_iter_element(&it, &t)) {
        if (++count > EVS_MAX_TAGS)
            return bad(c, t.p, EVS_EINVAL, "tags: more than %u tags", (unsigned)EVS_MAX_TAGS);
        /* Decoded text is never longer than its raw form. */
        size_t raw = t.n >= 2 ? t.n - 2 : 0;
        bytes += (raw < EVS_MAX_TAG_BYTES ? raw : EVS_MAX_TAG_BYTES) + 1;
    }
    if (count == 0) return EVS_OK;
    e->tag_buf = malloc(bytes);
    if (!e->tag_buf) return bad(c, v.p, EVS_ENOMEM, "tags: out of memory for %zu bytes", bytes);
    char *o = e->tag_buf;
    size_t i = 0;
    evs__json_iter_init(&it, v);
    while (evs__json_iter_element(&it, &t)) {
        char label[16];
        snprintf(label, sizeof label, "tags[%zu]", i);
        int rc = parse_name(c, label, t, o, EVS_MAX_TAG_BYTES);
        if (rc) return rc;
        e->tag_ptrs[i++] = o;
        o += strlen(o) + 1;
    }
    e->ev.tags = e->tag_ptrs;
    e->ev.ntags = count;
    return EVS_OK;
}

static int parse_member(const parse_ctx *c, enum field f, evs_json_span v, evs_event_parsed *e) {
    evs_event_in *ev = &e->ev;
    int rc = EVS_OK;
    switch (f) {
    case F_EVENT_TYPE:
        if ((rc = parse_name(c, "event_type", v, e->event_type, EVS_MAX_TYPE_NAME))) return rc;
        ev->event_type = e->event_type;
        break;
    case F_DATA:
        if (v.type != EVS_JSON_OBJECT)
            return bad(c, v.p, EVS_EINVAL, "data must be a JSON object, got %s", evs__json_type_name(v.type));
        ev->data = v.p;
        ev->data_len = v.n;
        break;
    case F_METADATA:
        if (v.type != EVS_JSON_OBJECT)
            return bad(c, v.p, EVS_EINVAL, "metadata must be a JSON object, got %s", evs__json_type_name(v.type));
        ev->metadata = v.p;
        ev->metadata_len = v.n;
        break;
    case F_EVENT_ID:
        if ((rc = parse_uuid(c, "event_id", v, &e->event_id))) return rc;
        ev->event_id = &e->event_id;
        break;
    case F_CAUSATION_ID:
        if ((rc = parse_uuid(c, "causation_id", v, &e->causation_id))) return rc;
        ev->causation_id = &e->causation_id;
        break;
    case F_CORRELATION_ID:
        if ((rc = parse_uuid(c, "correlation_id", v, &e->correlation_id))) return rc;
        ev->correlation_id = &e->correlation_id;
        break;
    case F_EVENT_VERSION:
        return parse_version(c, v, &ev->event_version);
    case F_STREAM_TYPE:
        if ((rc = parse_name(c, "stream_type", v, e->stream_type, EVS_MAX_TYPE_NAME))) return rc;
        ev->stream_type = e->stream_type;
        break;
    case F_TAGS:
        return parse_tags(c, v, e);
    case F_OCCURRED_AT:
        return parse_time(c, v, &ev->occurred_at);
    case F_COUNT:
        break;
    }
    return rc;
}

int evs__event_from_json(const char *p, size_t n, evs_event_parsed *out, evs_json_error *err) {
    evs_json_error local;
    const parse_ctx ctx = {p, err ? err : &local}, *c = &ctx;
    unsigned seen = 0;
    int rc;
    memset(out, 0, sizeof *out);
    if ((rc = evs__json_validate(p, n, ctx.err))) return rc;

    evs_json_span root = evs__json_root(p, n), key, val;
    if (root.type != EVS_JSON_OBJECT)
        return bad(c, root.p, EVS_EINVAL, "an event must be a JSON object, got %s", evs__json_type_name(root.type));

    evs_json_iter it;
    evs__json_iter_init(&it, root);
    while (evs__json_iter_member(&it, &key, &val)) {
        char name[32], show[56];
        int f = -1;
        /* Longer names, or ones holding U+0000, match no field: decode fails and f stays -1. */
        if (evs__json_string_decode(key, name, sizeof name) >= 0) {
            for (int i = 0; i < F_COUNT && f < 0; i++)
                if (strcmp(name, field_names[i]) == 0) f = i;
            for (size_t i = 0; f < 0 && i < sizeof readonly_names / sizeof readonly_names[0]; i++)
                if (strcmp(name, readonly_names[i]) == 0) {
                    rc = bad(c, key.p, EVS_EINVAL, "field \"%s\" is read-only: the store sets it", name);
                    goto fail;
                }
        }
        if (f < 0) {
            rc = bad(c, key.p, EVS_EINVAL, "unknown field %s", shown(key, show));
            goto fail;
        }
        if (seen & (1u << f)) {
            rc = bad(c, key.p, EVS_EINVAL, "duplicate field \"%s\"", field_names[f]);
            goto fail;
        }
        seen |= 1u << f;
        if (val.type == EVS_JSON_NULL && f != F_EVENT_TYPE && f != F_DATA) continue;
        if ((rc = parse_member(c, (enum field)f, val, out))) goto fail;
    }
    for (int f = F_EVENT_TYPE; f <= F_DATA; f++) {
        if (!(seen & (1u << f))) {
            rc = bad(c, root.p, EVS_EINVAL, "missing required field \"%s\"", field_names[f]);
            goto fail;
        }
    }
    return EVS_OK;
fail:
    evs__event_parsed_free(out);
    return rc;
}

void evs__event_parsed_free(evs_event_parsed *e) {
    if (!e) return;
    free(e->tag_buf);
    e->tag_buf = NULL;
    e->ev.tags = NULL;
    e->ev.ntags = 0;
}

/* ----------------------------------------------------------- rendering */

/* snprintf-style output: counts every byte, stores those that fit. */
typedef struct out_buf {
    char *p;
    size_t len, cap;
} out_buf;

static void put(out_buf *o, const char *s, size_t n) {
    if (o->len < o->cap) memcpy(o->p + o->len, s, o->len + n <= o->cap ? n : o->cap - o->len);
    o->len += n;
}

static void put_lit(out_buf *o, const char *s) { put(o, s, strlen(s)); }

static void put_u64(out_buf *o, uint64_t v) {
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v);
    put(o, tmp, (size_t)n);
}

/* A string field; NULL means absent and renders as null. */
static void put_str(out_buf *o, const char *s, size_t n) {
    if (!s) {
        put_lit(o, "null");
        return;
    }
    size_t room = o->len < o->cap ? o->cap - o->len : 0;
    o->len += evs__json_escape(s, n, room ? o->p + o->len : NULL, room);
}

/* Verbatim JSON, with raw CR/LF (whitespace in valid JSON) as spaces; see the top comment. */
static void put_json(out_buf *o, const char *s, size_t n, const char *if_absent) {
    if (!s || n == 0) {
        put_lit(o, if_absent);
        return;
    }
    size_t start = o->len;
    put(o, s, n);
    for (size_t i = start; i < o->len && i < o->cap; i++)
        if (o->p[i] == '\n' || o->p[i] == '\r') o->p[i] = ' ';
}

static void put_uuid(out_buf *o, int present, const evs_uuid *u) {
    char tmp[37];
    if (!present) {
        put_lit(o, "null");
        return;
    }
    evs_uuid_format(u, tmp);
    put(o, "\"", 1);
    put(o, tmp, 36);
    put(o, "\"", 1);
}

static void put_time(out_buf *o, int64_t ns) {
    char tmp[40];
    size_t n = evs_time_format(ns, tmp);
    put(o, "\"", 1);
    put(o, tmp, n);
    put(o, "\"", 1);
}

/* The whole object into o; o->len ends as the full length whether or not it fit. */
static void render(const evs_event *ev, out_buf *o) {
    put_lit(o, "{\"global_position\":");
    put_u64(o, ev->global_position);
    put_lit(o, ",\"stream\":");
    put_str(o, ev->stream, ev->stream_len);
    put_lit(o, ",\"stream_position\":");
    put_u64(o, ev->stream_position);
    put_lit(o, ",\"event_id\":");
    put_uuid(o, 1, &ev->event_id);
    put_lit(o, ",\"event_type\":");
    put_str(o, ev->event_type, ev->event_type_len);
    put_lit(o, ",\"event_version\":");
    put_u64(o, ev->event_version ? ev->event_version : 1);
    put_lit(o, ",\"stream_type\":");
    put_str(o, ev->stream_type, ev->stream_type_len);
    put_lit(o, ",\"data\":");
    put_json(o, ev->data, ev->data_len, "null");
    put_lit(o, ",\"metadata\":");
    put_json(o, ev->metadata, ev->metadata_len, "{}");
    put_lit(o, ",\"causation_id\":");
    put_uuid(o, ev->has_causation_id, &ev->causation_id);
    put_lit(o, ",\"correlation_id\":");
    put_uuid(o, ev->has_correlation_id, &ev->correlation_id);
    put_lit(o, ",\"tags\":");
    put_json(o, ev->tags, ev->tags_len, "[]");
    put_lit(o, ",\"occurred_at\":");
    put_time(o, ev->occurred_at);
    put_lit(o, ",\"recorded_at\":");
    put_time(o, ev->recorded_at);
    put_lit(o, "}");
}

int evs_event_to_json(const evs_event *ev, char **out, size_t *out_len) {
    if (!ev || !out) return evs__err(EVS_EINVAL, "evs_event_to_json: event and out must not be NULL");
    out_buf o = {NULL, 0, 0};
    render(ev, &o); /* sizing pass */
    size_t need = o.len;
    o = (out_buf){malloc(need + 1), 0, need + 1};
    if (!o.p) return evs__err(EVS_ENOMEM, "evs_event_to_json: out of memory for %zu bytes", need + 1);
    render(ev, &o);
    o.p[need] = '\0';
    *out = o.p;
    if (out_len) *out_len = need;
    return EVS_OK;
}
