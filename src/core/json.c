/*
 * json.c — the strict JSON validator of the append path, and the span
 * helpers that read a validated buffer without copying it.
 *
 * Every event's data and metadata pass through evs__json_validate before a
 * byte is written, so it has to be both strict and fast:
 *
 *   - Strict (RFC 8259 and nothing else): what we store is what readers get
 *     back byte for byte, and every JSON library they use must be able to
 *     read it.  Anything a lenient parser would "repair" is refused here:
 *     trailing commas, leading zeros, NaN, comments, single quotes, raw
 *     control characters, bad escapes, unpaired UTF-16 surrogates and
 *     invalid UTF-8 (overlong, surrogate code points, > U+10FFFF, cut off).
 *     U+0000 written as \u0000 is valid JSON and is accepted.
 *   - Allocation-free and non-recursive: nesting is a bit stack (1 = object,
 *     0 = array) of EVS_JSON_MAX_DEPTH bits, so hostile input can neither
 *     exhaust the C stack nor the heap.
 *   - Fast: one pass, a state machine written with gotos, and string bodies
 *     scanned 16 bytes at a time (SSE2) or 8 (SWAR) until a quote, a
 *     backslash, a control character or a non-ASCII byte turns up.
 *
 * Errors name the place as "line L, column C" (1-based, columns in bytes,
 * lines counted by LF) and say what was expected or what is wrong.  The
 * position is worked out only when an error is reported.
 *
 * The iterators and decoders trust that their buffer has been validated;
 * on other input they return garbage but never read outside the span.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "core/core.h"
#include "core/json.h"

#if defined(__GNUC__)
#define EVS_COLD __attribute__((cold, noinline))
#define EVS_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define EVS_COLD
#define EVS_ALWAYS_INLINE inline
#endif

/* ---------------------------------------------------------------- errors */

void evs__json_position(const char *p, size_t offset, unsigned *line, unsigned *column) {
    unsigned l = 1;
    size_t line_start = 0;
    for (size_t i = 0; i < offset; i++) {
        if (p[i] == '\n') {
            l++;
            line_start = i + 1;
        }
    }
    *line = l;
    *column = (unsigned)(offset - line_start + 1);
}

typedef struct scan_ctx {
    const uint8_t *start;
    evs_json_error *err;
} scan_ctx;

static EVS_COLD EVS_PRINTF(3, 4) int fail(const scan_ctx *c, const uint8_t *at, const char *fmt, ...) {
    evs_json_error *e = c->err;
    e->offset = (size_t)(at - c->start);
    evs__json_position((const char *)c->start, e->offset, &e->line, &e->column);
    int k = snprintf(e->msg, sizeof e->msg, "line %u, column %u: ", e->line, e->column);
    if (k < 0 || (size_t)k >= sizeof e->msg) return EVS_EJSON;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg + k, sizeof e->msg - (size_t)k, fmt, ap);
    va_end(ap);
    return EVS_EJSON;
}

/* "got 'x'" for printable ASCII, "got byte 0xNN" otherwise. */
static EVS_COLD int fail_got(const scan_ctx *c, const uint8_t *at, const char *expected) {
    if (*at > 0x20 && *at < 0x7f) return fail(c, at, "expected %s, got '%c'", expected, *at);
    return fail(c, at, "expected %s, got byte 0x%02X", expected, *at);
}

/* ------------------------------------------------------------------ UTF-8 */

/*
 * Length of the valid UTF-8 sequence that starts at p (whose first byte is
 * >= 0x80), or 0 with *bad at the first byte that makes it invalid.  The
 * second-byte ranges encode RFC 3629's exclusions: E0 and F0 exclude
 * overlongs, ED excludes the surrogates, F4 caps at U+10FFFF.
 */
static inline size_t utf8_seq(const uint8_t *p, const uint8_t *end, const uint8_t **bad) {
    uint8_t c = p[0], lo = 0x80, hi = 0xbf;
    size_t len;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0) lo = 0xa0;
        if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;
    } else {
        *bad = p;
        return 0;
    }
    for (size_t k = 1; k < len; k++) {
        if (p + k >= end || p[k] < lo || p[k] > hi) {
            *bad = p + k;
            return 0;
        }
        lo = 0x80, hi = 0xbf;
    }
    return len;
}

static inline int hexdig(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* The 4 hex digits at p as a code unit, or -1. */
static inline long hex4(const uint8_t *p, const uint8_t *end) {
    if (end - p < 4) return -1;
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int d = hexdig(p[i]);
        if (d < 0) return -1;
        v = v << 4 | d;
    }
    return v;
}

/* -------------------------------------------------------------- validator */

static inline int is_ws(uint8_t c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }
static inline int is_digit(uint8_t c) { return (unsigned)(c - '0') < 10u; }

static inline const uint8_t *skip_ws(const uint8_t *p, const uint8_t *end) {
    /* Most producers emit compact JSON: one compare settles the common case. */
    if (EVS_LIKELY(p < end && *p > ' ')) return p;
    while (p < end && is_ws(*p)) p++;
    return p;
}

/* Escape sequence at p (a backslash inside a string): the byte after it, or NULL. */
static const uint8_t *scan_escape(const scan_ctx *c, const uint8_t *p, const uint8_t *end) {
    if (p + 1 >= end) {
        fail(c, end, "unexpected end of input in a string");
        return NULL;
    }
    switch (p[1]) {
    case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
        return p + 2;
    case 'u':
        break;
    default:
        if (p[1] > 0x20 && p[1] < 0x7f)
            fail(c, p, "invalid escape '\\%c'", p[1]);
        else
            fail(c, p, "invalid escape: '\\' followed by byte 0x%02X", p[1]);
        return NULL;
    }
    long u = hex4(p + 2, end);
    if (u < 0) {
        fail(c, p, "invalid \\u escape: expected 4 hex digits");
        return NULL;
    }
    if (u >= 0xdc00 && u <= 0xdfff) {
        fail(c, p, "unpaired low surrogate \\u%04lX", (unsigned long)u);
        return NULL;
    }
    if (u < 0xd800 || u > 0xdbff) return p + 6;
    /* A high surrogate is only text together with the low one after it. */
    long lo = -1;
    if (end - p >= 12 && p[6] == '\\' && p[7] == 'u') lo = hex4(p + 8, end);
    if (lo < 0xdc00 || lo > 0xdfff) {
        fail(c, p, "unpaired high surrogate \\u%04lX: expected \\uDC00-\\uDFFF after it", (unsigned long)u);
        return NULL;
    }
    return p + 12;
}

/*
 * The body of a string starting after its opening quote: the byte after the
 * closing quote, or NULL after reporting the error.
 */
static EVS_ALWAYS_INLINE const uint8_t *scan_string(const scan_ctx *c, const uint8_t *p, const uint8_t *end) {
    for (;;) {
#if defined(__SSE2__)
        /*
         * Signed compare: bytes >= 0x80 are negative and so also "< 0x20",
         * which sends both control characters and UTF-8 to the slow path.
         */
        const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'), space = _mm_set1_epi8(0x20);
        while (end - p >= 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
            __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)),
                                     _mm_cmplt_epi8(v, space));
            unsigned mask = (unsigned)_mm_movemask_epi8(m);
            if (mask) {
                p += __builtin_ctz(mask);
                goto special;
            }
            p += 16;
        }
#else
        /* SWAR: only says whether an 8-byte word holds a special byte. */
        while (end - p >= 8) {
            uint64_t w;
            memcpy(&w, p, 8);
            const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
            uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\');
            uint64_t hit = ((q - ones) & ~q) | ((b - ones) & ~b) | (w - ones * 0x20) | w;
            if (hit & highs) break;
            p += 8;
        }
#endif
        while (p < end && *p != '"' && *p != '\\' && *p >= 0x20 && *p < 0x80) p++;
        if (EVS_UNLIKELY(p == end)) {
            fail(c, end, "unexpected end of input in a string");
            return NULL;
        }
#if defined(__SSE2__)
    special:
#endif
        if (*p == '"') return p + 1;
        if (*p == '\\') {
            p = scan_escape(c, p, end);
            if (!p) return NULL;
        } else if (*p < 0x20) {
            fail(c, p, "control character U+%04X in string", *p);
            return NULL;
        } else {
            const uint8_t *bad = NULL;
            size_t len = utf8_seq(p, end, &bad);
            if (!len) {
                if (bad == end)
                    fail(c, end, "unexpected end of input in a UTF-8 sequence");
                else if (bad == p)
                    fail(c, p, "invalid UTF-8 byte 0x%02X", *p);
                else
                    fail(c, bad, "invalid UTF-8 byte 0x%02X after 0x%02X", *bad, *p);
                return NULL;
            }
            p += len;
        }
    }
}

/* A number starting at p (a '-' or a digit): the byte after it, or NULL. */
static inline const uint8_t *scan_number(const scan_ctx *c, const uint8_t *p, const uint8_t *end) {
    if (*p == '-') {
        p++;
        if (p == end) {
            fail(c, p, "unexpected end of input: expected a digit after '-'");
            return NULL;
        }
    }
    if (*p == '0') {
        p++;
        if (p < end && is_digit(*p)) {
            fail(c, p - 1, "invalid number: leading zeros are not allowed");
            return NULL;
        }
    } else if (is_digit(*p)) {
        while (++p < end && is_digit(*p)) {
        }
    } else {
        fail_got(c, p, "a digit after '-'");
        return NULL;
    }
    if (p < end && *p == '.') {
        p++;
        if (p == end || !is_digit(*p)) {
            if (p == end) fail(c, p, "unexpected end of input: expected a digit after '.'");
            else fail_got(c, p, "a digit after '.'");
            return NULL;
        }
        while (++p < end && is_digit(*p)) {
        }
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p == end || !is_digit(*p)) {
            if (p == end) fail(c, p, "unexpected end of input: expected a digit in the exponent");
            else fail_got(c, p, "a digit in the exponent");
            return NULL;
        }
        while (++p < end && is_digit(*p)) {
        }
    }
    return p;
}

/* The literal lit (true, false, null) at p: the byte after it, or NULL. */
static const uint8_t *scan_literal(const scan_ctx *c, const uint8_t *p, const uint8_t *end, const char *lit,
                                   size_t len) {
    for (size_t i = 0; i < len; i++) {
        if (p + i == end) {
            fail(c, end, "unexpected end of input: expected '%s'", lit);
            return NULL;
        }
        if (p[i] != (uint8_t)lit[i]) {
            fail(c, p, "invalid literal: expected '%s'", lit);
            return NULL;
        }
    }
    return p + len;
}

/*
 * The validator proper.  Three states: `value` expects any value, `key`
 * expects an object key (at a '"', whitespace already skipped), `after`
 * has just finished a value and looks at what the enclosing container
 * allows next.  in_obj caches the top bit of the stack.
 */
static int scan(const uint8_t *start, size_t n, evs_json_error *err) {
    const scan_ctx ctx = {start, err}, *c = &ctx;
    const uint8_t *p = start, *end = start + n;
    uint64_t stack[(EVS_JSON_MAX_DEPTH + 63) / 64];
    unsigned depth = 0;
    int in_obj = 0;

value:
    p = skip_ws(p, end);
    if (EVS_UNLIKELY(p == end)) return fail(c, p, "unexpected end of input: expected a value");
    switch (*p) {
    case '"':
        p = scan_string(c, p + 1, end);
        if (!p) return EVS_EJSON;
        goto after;
    case '{':
    case '[':
        if (EVS_UNLIKELY(depth == EVS_JSON_MAX_DEPTH))
            return fail(c, p, "nesting deeper than %d", EVS_JSON_MAX_DEPTH);
        in_obj = *p == '{';
        if (in_obj) stack[depth >> 6] |= (uint64_t)1 << (depth & 63);
        else stack[depth >> 6] &= ~((uint64_t)1 << (depth & 63));
        depth++;
        p = skip_ws(p + 1, end);
        if (EVS_UNLIKELY(p == end))
            return fail(c, p, "unexpected end of input: expected %s", in_obj ? "'\"' or '}'" : "a value or ']'");
        if (*p == (in_obj ? '}' : ']')) {
            p++;
            goto pop;
        }
        if (!in_obj) goto value;
        if (*p != '"') return fail_got(c, p, "'\"' to start an object key, or '}'");
        goto key;
    case '-': case '0': case '1': case '2': case '3': case '4': case '5': case '6': case '7': case '8': case '9':
        p = scan_number(c, p, end);
        if (!p) return EVS_EJSON;
        goto after;
    case 't':
        p = scan_literal(c, p, end, "true", 4);
        if (!p) return EVS_EJSON;
        goto after;
    case 'f':
        p = scan_literal(c, p, end, "false", 5);
        if (!p) return EVS_EJSON;
        goto after;
    case 'n':
        p = scan_literal(c, p, end, "null", 4);
        if (!p) return EVS_EJSON;
        goto after;
    default:
        return fail_got(c, p, "a value");
    }

key:
    p = scan_string(c, p + 1, end);
    if (!p) return EVS_EJSON;
    p = skip_ws(p, end);
    if (EVS_UNLIKELY(p == end)) return fail(c, p, "unexpected end of input: expected ':'");
    if (EVS_UNLIKELY(*p != ':')) return fail_got(c, p, "':' after an object key");
    p++;
    goto value;

pop:
    depth--;
    if (depth) in_obj = (int)(stack[(depth - 1) >> 6] >> ((depth - 1) & 63)) & 1;
after:
    p = skip_ws(p, end);
    if (EVS_UNLIKELY(depth == 0)) {
        if (p != end) return fail(c, p, "trailing characters after the value");
        return EVS_OK;
    }
    if (EVS_UNLIKELY(p == end))
        return fail(c, p, "unexpected end of input: expected ',' or '%c'", in_obj ? '}' : ']');
    if (*p == ',') {
        p = skip_ws(p + 1, end);
        if (EVS_UNLIKELY(p == end))
            return fail(c, p, "unexpected end of input: expected %s", in_obj ? "'\"'" : "a value");
        if (!in_obj) {
            if (EVS_UNLIKELY(*p == ']')) return fail(c, p, "trailing comma before ']'");
            goto value;
        }
        if (EVS_LIKELY(*p == '"')) goto key;
        if (*p == '}') return fail(c, p, "trailing comma before '}'");
        return fail_got(c, p, "'\"' to start an object key");
    }
    if (*p == (in_obj ? '}' : ']')) {
        p++;
        goto pop;
    }
    return fail_got(c, p, in_obj ? "',' or '}'" : "',' or ']'");
}

static evs_json_type type_of(char c) {
    switch (c) {
    case '{': return EVS_JSON_OBJECT;
    case '[': return EVS_JSON_ARRAY;
    case '"': return EVS_JSON_STRING;
    case 't': return EVS_JSON_TRUE;
    case 'f': return EVS_JSON_FALSE;
    case 'n': return EVS_JSON_NULL;
    default: return (c == '-' || is_digit((uint8_t)c)) ? EVS_JSON_NUMBER : EVS_JSON_INVALID;
    }
}

const char *evs__json_type_name(evs_json_type t) {
    switch (t) {
    case EVS_JSON_OBJECT: return "object";
    case EVS_JSON_ARRAY: return "array";
    case EVS_JSON_STRING: return "string";
    case EVS_JSON_NUMBER: return "number";
    case EVS_JSON_TRUE: return "true";
    case EVS_JSON_FALSE: return "false";
    case EVS_JSON_NULL: return "null";
    default: return "invalid";
    }
}

int evs__json_validate(const char *p, size_t n, evs_json_error *err) {
    evs_json_error local;
    if (!err) err = &local;
    if (!p) p = "";
    int rc = scan((const uint8_t *)p, n, err);
    if (rc) return evs__err(rc, "%s", err->msg);
    return EVS_OK;
}

int evs__json_validate_object(const char *p, size_t n, evs_json_error *err) {
    evs_json_error local;
    if (!err) err = &local;
    int rc = evs__json_validate(p, n, err);
    if (rc) return rc;
    evs_json_span root = evs__json_root(p, n);
    if (root.type == EVS_JSON_OBJECT) return EVS_OK;
    const scan_ctx ctx = {(const uint8_t *)p, err};
    fail(&ctx, (const uint8_t *)root.p, "expected a JSON object, got %s", evs__json_type_name(root.type));
    return evs__err(EVS_EJSON, "%s", err->msg);
}

/* ------------------------------------------------------- spans, iterators */

evs_json_span evs__json_root(const char *p, size_t n) {
    const uint8_t *b = (const uint8_t *)p, *e = b + n;
    while (b < e && is_ws(*b)) b++;
    while (e > b && is_ws(e[-1])) e--;
    evs_json_span s = {(const char *)b, (size_t)(e - b), EVS_JSON_INVALID};
    if (b < e) s.type = type_of((char)*b);
    return s;
}

/* p at an opening quote: the byte after the closing one (or end). */
static const char *skip_string(const char *p, const char *end) {
    for (p++; p < end; p++) {
        if (*p == '"') return p + 1;
        if (*p == '\\') p++;
    }
    return end;
}

/* The value at p: its span; never beyond end. */
static evs_json_span skip_value(const char *p, const char *end) {
    evs_json_span v = {p, 0, p < end ? type_of(*p) : EVS_JSON_INVALID};
    const char *q = p;
    switch (v.type) {
    case EVS_JSON_STRING:
        q = skip_string(p, end);
        break;
    case EVS_JSON_OBJECT:
    case EVS_JSON_ARRAY: {
        /* Strings are skipped whole so brackets inside them do not count. */
        size_t depth = 0;
        while (q < end) {
            char ch = *q;
            if (ch == '"') {
                q = skip_string(q, end);
                continue;
            }
            q++;
            if (ch == '{' || ch == '[') depth++;
            else if ((ch == '}' || ch == ']') && --depth == 0) break;
        }
        break;
    }
    case EVS_JSON_TRUE:
    case EVS_JSON_NULL:
        q = p + ((size_t)(end - p) < 4 ? (size_t)(end - p) : 4);
        break;
    case EVS_JSON_FALSE:
        q = p + ((size_t)(end - p) < 5 ? (size_t)(end - p) : 5);
        break;
    case EVS_JSON_NUMBER:
        while (q < end && (is_digit((uint8_t)*q) || *q == '-' || *q == '+' || *q == '.' || *q == 'e' || *q == 'E'))
            q++;
        break;
    default:
        break;
    }
    v.n = (size_t)(q - p);
    return v;
}

static const char *skip_ws_c(const char *p, const char *end) {
    while (p < end && is_ws((uint8_t)*p)) p++;
    return p;
}

int evs__json_iter_init(evs_json_iter *it, evs_json_span container) {
    if ((container.type != EVS_JSON_OBJECT && container.type != EVS_JSON_ARRAY) || container.n < 2) {
        it->p = it->end = container.p;
        it->first = 0;
        return evs__err(EVS_EINVAL, "not a JSON object or array");
    }
    it->p = container.p + 1;
    it->end = container.p + container.n - 1; /* the closing bracket */
    it->first = 1;
    return EVS_OK;
}

/* Past the ',' between entries; NULL at the end of the container. */
static const char *iter_next_entry(evs_json_iter *it) {
    const char *p = skip_ws_c(it->p, it->end);
    if (p >= it->end) return NULL;
    if (!it->first) {
        if (*p != ',') return NULL;
        p = skip_ws_c(p + 1, it->end);
        if (p >= it->end) return NULL;
    }
    it->first = 0;
    return p;
}

int evs__json_iter_member(evs_json_iter *it, evs_json_span *key, evs_json_span *value) {
    const char *p = iter_next_entry(it);
    if (!p || *p != '"') goto done;
    *key = skip_value(p, it->end);
    p = skip_ws_c(p + key->n, it->end);
    if (p >= it->end || *p != ':') goto done;
    p = skip_ws_c(p + 1, it->end);
    if (p >= it->end) goto done;
    *value = skip_value(p, it->end);
    it->p = p + value->n;
    return 1;
done:
    it->p = it->end;
    return 0;
}

int evs__json_iter_element(evs_json_iter *it, evs_json_span *value) {
    const char *p = iter_next_entry(it);
    if (!p) {
        it->p = it->end;
        return 0;
    }
    *value = skip_value(p, it->end);
    it->p = p + value->n;
    return 1;
}

/* ---------------------------------------------------------------- strings */

/*
 * Decode the next character of a string body at *pp (before end, the
 * closing quote) into out as UTF-8; returns its length and advances *pp.
 * *cp receives the code point of an escape, or 0x80 for raw bytes (only
 * whether it is zero matters to the callers).
 */
static int string_unit(const char **pp, const char *end, char out[4], uint32_t *cp) {
    const uint8_t *p = (const uint8_t *)*pp, *e = (const uint8_t *)end;
    if (*p != '\\' || p + 1 >= e) {
        out[0] = (char)*p;
        *cp = *p ? 0x80 : 0;
        *pp += 1;
        return 1;
    }
    uint32_t u;
    switch (p[1]) {
    case 'b': u = '\b'; break;
    case 'f': u = '\f'; break;
    case 'n': u = '\n'; break;
    case 'r': u = '\r'; break;
    case 't': u = '\t'; break;
    case 'u': {
        long h = hex4(p + 2, e);
        if (h < 0) {
            u = 0xfffd;
            *pp += 2;
            goto encode;
        }
        u = (uint32_t)h;
        *pp += 6;
        if (u >= 0xd800 && u <= 0xdbff) {
            long lo = -1;
            if (e - p >= 12 && p[6] == '\\' && p[7] == 'u') lo = hex4(p + 8, e);
            if (lo >= 0xdc00 && lo <= 0xdfff) {
                u = 0x10000 + ((u - 0xd800) << 10) + ((uint32_t)lo - 0xdc00);
                *pp += 6;
            } else {
                u = 0xfffd;
            }
        } else if (u >= 0xdc00 && u <= 0xdfff) {
            u = 0xfffd;
        }
        goto encode;
    }
    default: u = p[1]; break; /* '"', '\\', '/' */
    }
    *pp += 2;
encode:
    *cp = u;
    if (u < 0x80) {
        out[0] = (char)u;
        return 1;
    }
    if (u < 0x800) {
        out[0] = (char)(0xc0 | u >> 6);
        out[1] = (char)(0x80 | (u & 0x3f));
        return 2;
    }
    if (u < 0x10000) {
        out[0] = (char)(0xe0 | u >> 12);
        out[1] = (char)(0x80 | ((u >> 6) & 0x3f));
        out[2] = (char)(0x80 | (u & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | u >> 18);
    out[1] = (char)(0x80 | ((u >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((u >> 6) & 0x3f));
    out[3] = (char)(0x80 | (u & 0x3f));
    return 4;
}

static int is_string_span(evs_json_span s) {
    return s.type == EVS_JSON_STRING && s.n >= 2 && s.p[0] == '"' && s.p[s.n - 1] == '"';
}

long evs__json_string_decode(evs_json_span s, char *out, size_t cap) {
    if (!is_string_span(s) || cap == 0) return -1;
    const char *p = s.p + 1, *end = s.p + s.n - 1;
    size_t len = 0;
    if (!memchr(p, '\\', (size_t)(end - p))) {
        /* Validated input holds no raw NUL, so no escape means a plain copy. */
        len = (size_t)(end - p);
        if (len + 1 > cap || memchr(p, '\0', len)) return -1;
        memcpy(out, p, len);
        out[len] = '\0';
        return (long)len;
    }
    while (p < end) {
        char u[4];
        uint32_t cp;
        int k = string_unit(&p, end, u, &cp);
        if (cp == 0 || len + (size_t)k + 1 > cap) return -1;
        memcpy(out + len, u, (size_t)k);
        len += (size_t)k;
    }
    out[len] = '\0';
    return (long)len;
}

int evs__json_string_eq(evs_json_span s, const char *lit) {
    if (!is_string_span(s)) return 0;
    const char *p = s.p + 1, *end = s.p + s.n - 1;
    size_t litlen = strlen(lit), raw = (size_t)(end - p);
    if (!memchr(p, '\\', raw)) return raw == litlen && memcmp(p, lit, raw) == 0;
    size_t i = 0;
    while (p < end) {
        char u[4];
        uint32_t cp;
        int k = string_unit(&p, end, u, &cp);
        if (i + (size_t)k > litlen || memcmp(lit + i, u, (size_t)k) != 0) return 0;
        i += (size_t)k;
    }
    return i == litlen;
}

int evs__json_int64(evs_json_span s, int64_t *out) {
    const char *p = s.p, *end = s.p + s.n;
    int show = s.n > 40 ? 40 : (int)s.n;
    if (s.type != EVS_JSON_NUMBER || s.n == 0) return evs__err(EVS_EINVAL, "expected an integer, got %s",
                                                              evs__json_type_name(s.type));
    int neg = *p == '-';
    p += neg;
    if (p == end || (*p == '0' && end - p > 1)) goto not_int;
    /* Accumulate the magnitude unsigned: -9223372036854775808 has no positive twin. */
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, v = 0;
    for (; p < end; p++) {
        if (!is_digit((uint8_t)*p)) goto not_int;
        unsigned d = (unsigned)(*p - '0');
        if (v > (limit - d) / 10)
            return evs__err(EVS_EINVAL, "number %.*s is out of the 64-bit integer range", show, s.p);
        v = v * 10 + d;
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return EVS_OK;
not_int:
    return evs__err(EVS_EINVAL, "number %.*s is not an integer", show, s.p);
}

/* ---------------------------------------------------------------- escaping */

size_t evs__json_escape(const char *s, size_t n, char *buf, size_t cap) {
    static const char hex[] = "0123456789abcdef";
    const uint8_t *p = (const uint8_t *)s, *end = p + n;
    size_t len = 0;
#define PUT(ch)                               \
    do {                                      \
        if (len < cap) buf[len] = (char)(ch); \
        len++;                                \
    } while (0)
    PUT('"');
    while (p < end) {
        /* Copy the run of bytes that need no escaping in one go. */
        const uint8_t *run = p;
        while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\') p++;
        size_t k = (size_t)(p - run);
        if (k) {
            if (len < cap) memcpy(buf + len, run, len + k <= cap ? k : cap - len);
            len += k;
        }
        if (p == end) break;
        uint8_t ch = *p;
        if (ch >= 0x80) {
            const uint8_t *bad;
            size_t sl = utf8_seq(p, end, &bad);
            if (sl) {
                for (size_t i = 0; i < sl; i++) PUT(p[i]);
                p += sl;
                continue;
            }
            /* Output must stay valid JSON even if a caller hands us bad UTF-8. */
            for (const char *r = "\\ufffd"; *r; r++) PUT(*r);
            p++;
            continue;
        }
        PUT('\\');
        switch (ch) {
        case '"': PUT('"'); break;
        case '\\': PUT('\\'); break;
        case '\b': PUT('b'); break;
        case '\f': PUT('f'); break;
        case '\n': PUT('n'); break;
        case '\r': PUT('r'); break;
        case '\t': PUT('t'); break;
        default:
            PUT('u');
            PUT('0');
            PUT('0');
            PUT(hex[ch >> 4]);
            PUT(hex[ch & 15]);
            break;
        }
        p++;
    }
    PUT('"');
#undef PUT
    if (cap) buf[len < cap ? len : cap - 1] = '\0';
    return len;
}
