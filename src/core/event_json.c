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

/*
 * Rendering is on the server's hot path (every page of /all, every live
 * delivery), so it allocates nothing and makes one pass: each piece is
 * written if it fits and counted either way, like snprintf.  Numbers, UUIDs
 * and times are formatted by hand instead of through printf, and the date
 * and clock part of a time ("2026-11-22T05:40:48") is cached per thread for
 * the last two seconds seen: the events of a page or a batch mostly share
 * their second, and occurred_at and recorded_at are usually the same one.
 */

/*
 * snprintf-style output: counts every byte, stores those that fit.  (When
 * the output does not fit, the last stored byte may be wrong: the escaper
 * ends what it wrote with a NUL.  Callers only use complete output.)
 */
typedef struct out_buf {
    char *p;
    size_t len, cap;
} out_buf;

static inline void put(out_buf *o, const char *s, size_t n) {
    if (EVS_LIKELY(o->len + n <= o->cap)) memcpy(o->p + o->len, s, n);
    else if (o->len < o->cap) memcpy(o->p + o->len, s, o->cap - o->len);
    o->len += n;
}

#define PUT_LIT(o, lit) put((o), (lit), sizeof(lit) - 1)

static inline void put_u64(out_buf *o, uint64_t v) {
    char tmp[20];
    size_t i = sizeof tmp;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put(o, tmp + i, sizeof tmp - i);
}

/* A string field; NULL means absent and renders as null. */
static void put_str(out_buf *o, const char *s, size_t n) {
    if (!s) {
        PUT_LIT(o, "null");
        return;
    }
    size_t room = o->len < o->cap ? o->cap - o->len : 0;
    o->len += evs__json_escape(s, n, room ? o->p + o->len : NULL, room);
}

/* Verbatim JSON, with raw CR/LF (whitespace in valid JSON) as spaces; see the top comment. */
static void put_json(out_buf *o, const char *s, size_t n, const char *if_absent, size_t absent_len) {
    if (!s || n == 0) {
        put(o, if_absent, absent_len);
        return;
    }
    size_t start = o->len;
    put(o, s, n);
    if (start >= o->cap) return;
    /* memchr runs at memory speed; most payloads have no raw line break at all */
    char *p = o->p + start, *end = o->p + (o->len < o->cap ? o->len : o->cap);
    for (char *q = p; (q = memchr(q, '\n', (size_t)(end - q))); q++) *q = ' ';
    for (char *q = p; (q = memchr(q, '\r', (size_t)(end - q))); q++) *q = ' ';
}

/* Two lower-case hex digits for every byte value. */
static const char hex_pairs[513] =
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
    "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
    "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
    "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
    "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
    "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
    "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
    "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";

/* The canonical 8-4-4-4-12 text in quotes: 38 bytes, as evs_uuid_format writes it. */
static void put_uuid(out_buf *o, int present, const evs_uuid *u) {
    if (!present) {
        PUT_LIT(o, "null");
        return;
    }
    char t[38], *w = t;
    *w++ = '"';
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) *w++ = '-';
        memcpy(w, hex_pairs + 2 * u->b[i], 2);
        w += 2;
    }
    *w = '"';
    put(o, t, sizeof t);
}

/*
 * "YYYY-MM-DDTHH:MM:SS" of secs, as evs_time_format writes it.  Times are
 * int64 ns, which span 1677-09-21 to 2262-04-11, so the year always has
 * exactly four digits.
 */
static void format_second(int64_t secs, char out[19]) {
    evs__civil c;
    evs__civil_from_secs(secs, &c);
    unsigned yy = (unsigned)c.year, m = c.month, d = c.day, hh = c.hour, mi = c.minute, ss = c.second;
    out[0] = (char)('0' + yy / 1000);
    out[1] = (char)('0' + yy / 100 % 10);
    out[2] = (char)('0' + yy / 10 % 10);
    out[3] = (char)('0' + yy % 10);
    out[4] = '-';
    out[5] = (char)('0' + m / 10);
    out[6] = (char)('0' + m % 10);
    out[7] = '-';
    out[8] = (char)('0' + d / 10);
    out[9] = (char)('0' + d % 10);
    out[10] = 'T';
    out[11] = (char)('0' + hh / 10);
    out[12] = (char)('0' + hh % 10);
    out[13] = ':';
    out[14] = (char)('0' + mi / 10);
    out[15] = (char)('0' + mi % 10);
    out[16] = ':';
    out[17] = (char)('0' + ss / 10);
    out[18] = (char)('0' + ss % 10);
}

typedef struct second_cache {
    int64_t secs;
    int valid;
    char text[19];
} second_cache;

static void put_time(out_buf *o, int64_t ns) {
    static _Thread_local second_cache cache[2];
    static _Thread_local unsigned victim;
    int64_t secs = ns / 1000000000, frac = ns % 1000000000;
    if (frac < 0) {
        frac += 1000000000;
        secs -= 1;
    }
    const char *date;
    if (cache[0].valid && cache[0].secs == secs) {
        date = cache[0].text;
    } else if (cache[1].valid && cache[1].secs == secs) {
        date = cache[1].text;
    } else {
        second_cache *c = &cache[victim++ & 1];
        format_second(secs, c->text);
        c->secs = secs;
        c->valid = 1;
        date = c->text;
    }
    char t[32];
    t[0] = '"';
    memcpy(t + 1, date, 19);
    t[20] = '.';
    uint32_t f = (uint32_t)frac;
    for (int i = 29; i >= 21; i--) {
        t[i] = (char)('0' + f % 10);
        f /= 10;
    }
    t[30] = 'Z';
    t[31] = '"';
    put(o, t, sizeof t);
}

/* The whole object into o; o->len ends as the full length whether or not it fit. */
static void render(const evs_event *ev, out_buf *o) {
    PUT_LIT(o, "{\"global_position\":");
    put_u64(o, ev->global_position);
    PUT_LIT(o, ",\"stream\":");
    put_str(o, ev->stream, ev->stream_len);
    PUT_LIT(o, ",\"stream_position\":");
    put_u64(o, ev->stream_position);
    PUT_LIT(o, ",\"event_id\":");
    put_uuid(o, 1, &ev->event_id);
    PUT_LIT(o, ",\"event_type\":");
    put_str(o, ev->event_type, ev->event_type_len);
    PUT_LIT(o, ",\"event_version\":");
    put_u64(o, ev->event_version ? ev->event_version : 1);
    if (ev->upcast_from) { /* an upcasted view says what was stored */
        PUT_LIT(o, ",\"stored_version\":");
        put_u64(o, ev->upcast_from);
    }
    PUT_LIT(o, ",\"stream_type\":");
    put_str(o, ev->stream_type, ev->stream_type_len);
    PUT_LIT(o, ",\"data\":");
    put_json(o, ev->data, ev->data_len, "null", 4);
    if (ev->redacted) PUT_LIT(o, ",\"$redacted\":true"); /* crypto-shredded (evstore_crypt.h) */
    PUT_LIT(o, ",\"metadata\":");
    put_json(o, ev->metadata, ev->metadata_len, "{}", 2);
    PUT_LIT(o, ",\"causation_id\":");
    put_uuid(o, ev->has_causation_id, &ev->causation_id);
    PUT_LIT(o, ",\"correlation_id\":");
    put_uuid(o, ev->has_correlation_id, &ev->correlation_id);
    PUT_LIT(o, ",\"tags\":");
    put_json(o, ev->tags, ev->tags_len, "[]", 2);
    PUT_LIT(o, ",\"occurred_at\":");
    put_time(o, ev->occurred_at);
    PUT_LIT(o, ",\"recorded_at\":");
    put_time(o, ev->recorded_at);
    PUT_LIT(o, "}");
}

size_t evs__event_json_render(const evs_event *ev, char *buf, size_t cap) {
    out_buf o = {buf, 0, buf ? cap : 0};
    render(ev, &o);
    return o.len;
}

int evs_event_to_json(const evs_event *ev, char **out, size_t *out_len) {
    if (!ev || !out) return evs__err(EVS_EINVAL, "evs_event_to_json: event and out must not be NULL");
    /* Most events fit a first guess from the payload sizes, so one pass
       usually does; otherwise the returned length sizes the second. */
    size_t guess = 512 + ev->data_len + ev->metadata_len + ev->tags_len + 2 * (ev->stream_len + ev->event_type_len +
                                                                              ev->stream_type_len);
    char *p = malloc(guess + 1);
    if (!p) return evs__err(EVS_ENOMEM, "evs_event_to_json: out of memory for %zu bytes", guess + 1);
    size_t need = evs__event_json_render(ev, p, guess);
    if (need > guess) {
        char *np = realloc(p, need + 1);
        if (!np) {
            free(p);
            return evs__err(EVS_ENOMEM, "evs_event_to_json: out of memory for %zu bytes", need + 1);
        }
        p = np;
        evs__event_json_render(ev, p, need);
    }
    p[need] = '\0';
    *out = p;
    if (out_len) *out_len = need;
    return EVS_OK;
}
