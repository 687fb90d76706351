/*
 * jschema.c — compiling a JSON Schema (the subset of evstore_schema.h) and
 * validating documents against it.
 *
 * Compilation parses the schema with jansson (off the append path), checks
 * every keyword, and builds the node array of jschema.h.  It refuses, with
 * the keyword and its JSON pointer:
 *   - keywords outside the subset (draft 7 would ignore unknown keywords;
 *     here a keyword that would not be enforced is an error, so nobody
 *     believes a rule is checked when it is not);
 *   - $ref to anything but "#" or "#/pointer" in the same document, $ref
 *     with sibling keywords, $id below the root;
 *   - cycles of $ref / anyOf / oneOf / allOf that do not descend into the
 *     value ({"$ref": "#"} at the root): validation would never end.
 *     Cycles through properties, additionalProperties or items are fine
 *     (recursive structures): every step goes one level down the value.
 *
 * Validation walks the document with the zero-copy span iterators of
 * core/json.h: nothing is built, and no memory is allocated except for
 * strings longer than the stack buffer and required lists over 64 names.
 * It stops at the first failure and reports the JSON pointer of the value,
 * the keyword and the schema path.  A step budget (EVS_JSCHEMA_MAX_STEPS
 * node visits) bounds what anyOf/oneOf nests can cost on hostile input.
 */
#include <jansson.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "core/json.h"
#include "core/sb.h"
#include "schema/jschema.h"

#define EVS_JSCHEMA_MAX_STEPS 1000000u
#define EVS_JSCHEMA_MAX_NODES 100000u

/* ------------------------------------------------------------- helpers */

void evs__jschema_set(evs_schema_violation *v, const char *pointer, const char *keyword, const char *schema_path,
                      const char *fmt, ...) {
    if (!v) return;
    snprintf(v->pointer, sizeof v->pointer, "%s", pointer ? pointer : "");
    snprintf(v->keyword, sizeof v->keyword, "%s", keyword ? keyword : "");
    snprintf(v->schema_path, sizeof v->schema_path, "%s", schema_path ? schema_path : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->message, sizeof v->message, fmt, ap);
    va_end(ap);
}

/* JSON pointer escaping of one reference token: ~ -> ~0, / -> ~1. */
static void sb_token(evs__sb *b, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '~') evs__sb_add(b, "~0", 2);
        else if (s[i] == '/') evs__sb_add(b, "~1", 2);
        else evs__sb_add(b, s + i, 1);
    }
}

static char *path_key(const char *parent, const char *key, size_t n) {
    evs__sb b = {0};
    evs__sb_adds(&b, parent);
    evs__sb_add(&b, "/", 1);
    sb_token(&b, key, n);
    size_t len;
    return evs__sb_take(&b, &len);
}

static char *path_index(const char *parent, size_t i) {
    evs__sb b = {0};
    evs__sb_printf(&b, "%s/%zu", parent, i);
    size_t len;
    return evs__sb_take(&b, &len);
}

/* strtod in the C locale, whatever the application's LC_NUMERIC says. */
static locale_t c_locale;
static pthread_once_t c_once = PTHREAD_ONCE_INIT;
static void c_init(void) { c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0); }

/* An integral double (no libm needed: beyond 2^53 every double is an integer). */
static int integral(double d) {
    if (!isfinite(d)) return 0;
    if (d >= 9007199254740992.0 || d <= -9007199254740992.0) return 1;
    return d == (double)(int64_t)d;
}

static double span_number(evs_json_span x) {
    char buf[64], *p = buf;
    if (x.n >= sizeof buf && !(p = malloc(x.n + 1))) return NAN;
    memcpy(p, x.p, x.n);
    p[x.n] = 0;
    pthread_once(&c_once, c_init);
    double d = c_locale ? strtod_l(p, NULL, c_locale) : strtod(p, NULL);
    if (p != buf) free(p);
    return d;
}

static int span_integral(evs_json_span x, double *d) {
    if (!memchr(x.p, '.', x.n) && !memchr(x.p, 'e', x.n) && !memchr(x.p, 'E', x.n)) {
        if (d) *d = span_number(x);
        return 1;
    }
    double v = span_number(x);
    if (d) *d = v;
    return integral(v);
}

unsigned evs__jschema_span_type(evs_json_span v) {
    switch (v.type) {
    case EVS_JSON_OBJECT: return JT_OBJECT;
    case EVS_JSON_ARRAY: return JT_ARRAY;
    case EVS_JSON_STRING: return JT_STRING;
    case EVS_JSON_TRUE:
    case EVS_JSON_FALSE: return JT_BOOL;
    case EVS_JSON_NULL: return JT_NULL;
    case EVS_JSON_NUMBER: return span_integral(v, NULL) ? JT_INT : JT_FRAC;
    default: return 0;
    }
}

unsigned evs__jschema_json_type(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return JT_OBJECT;
    case JSON_ARRAY: return JT_ARRAY;
    case JSON_STRING: return JT_STRING;
    case JSON_TRUE:
    case JSON_FALSE: return JT_BOOL;
    case JSON_NULL: return JT_NULL;
    case JSON_INTEGER: return JT_INT;
    case JSON_REAL: {
        double d = json_real_value(v);
        return integral(d) ? JT_INT : JT_FRAC;
    }
    }
    return 0;
}

/*
 * Decode a string span (quotes included) into *buf (grown with realloc),
 * NUL bytes allowed, and NUL-terminated (regexec interceptors want it).  Returns the byte length and the code point count in
 * *cps, or -1 when out of memory.  The span comes from a validated buffer.
 */
static long str_decode(evs_json_span s, char **buf, size_t *cap, size_t *cps) {
    size_t need = s.n; /* decoding never grows the text */
    if (need > *cap) {
        char *nb = realloc(*buf, need);
        if (!nb) return -1;
        *buf = nb;
        *cap = need;
    }
    char *o = *buf;
    size_t w = 0, count = 0;
    const unsigned char *p = (const unsigned char *)s.p + 1, *end = (const unsigned char *)s.p + s.n - 1;
    while (p < end) {
        unsigned char c = *p;
        if (c != '\\') {
            if ((c & 0xc0) != 0x80) count++;
            o[w++] = (char)c;
            p++;
            continue;
        }
        p++;
        c = *p++;
        uint32_t cp;
        switch (c) {
        case 'n': cp = '\n'; break;
        case 't': cp = '\t'; break;
        case 'r': cp = '\r'; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'u': {
            cp = 0;
            for (int k = 0; k < 4; k++) {
                unsigned char h = p[k];
                cp = cp * 16 + (uint32_t)(h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
            }
            p += 4;
            if (cp >= 0xd800 && cp <= 0xdbff && p + 6 <= end && p[0] == '\\' && p[1] == 'u') {
                uint32_t lo = 0;
                for (int k = 0; k < 4; k++) {
                    unsigned char h = p[2 + k];
                    lo = lo * 16 + (uint32_t)(h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
                }
                if (lo >= 0xdc00 && lo <= 0xdfff) {
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                    p += 6;
                }
            }
            break;
        }
        default: cp = c; break; /* " \ / */
        }
        if (cp < 0x80) {
            o[w++] = (char)cp;
        } else if (cp < 0x800) {
            o[w++] = (char)(0xc0 | cp >> 6);
            o[w++] = (char)(0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
            o[w++] = (char)(0xe0 | cp >> 12);
            o[w++] = (char)(0x80 | ((cp >> 6) & 0x3f));
            o[w++] = (char)(0x80 | (cp & 0x3f));
        } else {
            o[w++] = (char)(0xf0 | cp >> 18);
            o[w++] = (char)(0x80 | ((cp >> 12) & 0x3f));
            o[w++] = (char)(0x80 | ((cp >> 6) & 0x3f));
            o[w++] = (char)(0x80 | (cp & 0x3f));
        }
        count++;
    }
    o[w] = 0; /* room: the text is at least two bytes shorter than its span */
    *cps = count;
    return (long)w;
}

/* Decode into a stack buffer when it fits, else into p (the caller frees it). */
typedef struct sbuf {
    char stack[256];
    char *p;
    size_t cap;
} sbuf;

static long sbuf_decode(sbuf *b, evs_json_span s, size_t *cps) {
    if (s.n <= sizeof b->stack && !b->p) {
        char *tmp = b->stack;
        size_t cap = sizeof b->stack;
        return str_decode(s, &tmp, &cap, cps);
    }
    return str_decode(s, &b->p, &b->cap, cps);
}

static const char *sbuf_text(sbuf *b, evs_json_span s) { return (s.n <= sizeof b->stack && !b->p) ? b->stack : b->p; }

int evs__jschema_span_equals(evs_json_span a, const json_t *b) {
    switch (json_typeof(b)) {
    case JSON_NULL: return a.type == EVS_JSON_NULL;
    case JSON_TRUE: return a.type == EVS_JSON_TRUE;
    case JSON_FALSE: return a.type == EVS_JSON_FALSE;
    case JSON_INTEGER:
    case JSON_REAL: {
        if (a.type != EVS_JSON_NUMBER) return 0;
        int64_t ai;
        if (json_is_integer(b) && evs__json_int64(a, &ai) == EVS_OK) return ai == (int64_t)json_integer_value(b);
        return span_number(a) == json_number_value(b);
    }
    case JSON_STRING: {
        if (a.type != EVS_JSON_STRING) return 0;
        sbuf sb = {.p = NULL};
        size_t cps;
        long n = sbuf_decode(&sb, a, &cps);
        int eq = n >= 0 && (size_t)n == json_string_length(b) && memcmp(sbuf_text(&sb, a), json_string_value(b), (size_t)n) == 0;
        free(sb.p);
        return eq;
    }
    case JSON_ARRAY: {
        if (a.type != EVS_JSON_ARRAY) return 0;
        evs_json_iter it;
        evs_json_span e;
        size_t i = 0, n = json_array_size(b);
        evs__json_iter_init(&it, a);
        while (evs__json_iter_element(&it, &e)) {
            if (i >= n || !evs__jschema_span_equals(e, json_array_get(b, i))) return 0;
            i++;
        }
        return i == n;
    }
    case JSON_OBJECT: {
        if (a.type != EVS_JSON_OBJECT) return 0;
        evs_json_iter it;
        evs_json_span k, v;
        size_t count = 0;
        evs__json_iter_init(&it, a);
        while (evs__json_iter_member(&it, &k, &v)) {
            sbuf sb = {.p = NULL};
            size_t cps;
            long n = sbuf_decode(&sb, k, &cps);
            const json_t *bv = n >= 0 ? json_object_getn(b, sbuf_text(&sb, k), (size_t)n) : NULL;
            free(sb.p);
            if (!bv || !evs__jschema_span_equals(v, bv)) return 0;
            count++;
        }
        return count == json_object_size(b);
    }
    }
    return 0;
}

/* ------------------------------------------------------------- compiling */

typedef struct memo {
    const json_t *j;
    int node;
} memo;

typedef struct cc {
    jschema *s;
    evs_schema_violation *err;
    memo *m;
    size_t nm, capm;
    int rc;                 /* first error, EVS_OK while none */
} cc;

static int cfail(cc *c, const char *path, const char *keyword, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int cfail(cc *c, const char *path, const char *keyword, const char *fmt, ...) {
    if (c->rc) return -1;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char where[512];
    if (keyword && *keyword) {
        char *kp = path_key(path, keyword, strlen(keyword));
        snprintf(where, sizeof where, "%s", kp ? kp : path);
        free(kp);
    } else {
        snprintf(where, sizeof where, "%s", path);
    }
    evs__jschema_set(c->err, where, keyword, where, "%s", msg);
    c->rc = evs__err(EVS_EINVAL, "schema %s: %s", where[0] ? where : "(root)", msg);
    return -1;
}

static int new_node(cc *c, const char *path, int kind) {
    jschema *s = c->s;
    if (s->n >= EVS_JSCHEMA_MAX_NODES) return cfail(c, path, NULL, "the schema has more than %u subschemas", EVS_JSCHEMA_MAX_NODES);
    if (s->n == s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 16;
        jnode *nn = realloc(s->nodes, ncap * sizeof *nn);
        if (!nn) return cfail(c, path, NULL, "out of memory");
        s->nodes = nn;
        s->cap = ncap;
    }
    jnode *n = &s->nodes[s->n];
    memset(n, 0, sizeof *n);
    n->path = strdup(path);
    n->kind = kind;
    n->types = JT_ALL;
    n->addl = n->items = n->ref = -1;
    if (!n->path) return cfail(c, path, NULL, "out of memory");
    return (int)s->n++;
}

static int memo_find(cc *c, const json_t *j) {
    for (size_t i = 0; i < c->nm; i++)
        if (c->m[i].j == j) return c->m[i].node;
    return -1;
}

static int memo_add(cc *c, const json_t *j, int node, const char *path) {
    if (c->nm == c->capm) {
        size_t ncap = c->capm ? c->capm * 2 : 32;
        memo *nm = realloc(c->m, ncap * sizeof *nm);
        if (!nm) return cfail(c, path, NULL, "out of memory");
        c->m = nm;
        c->capm = ncap;
    }
    c->m[c->nm].j = j;
    c->m[c->nm].node = node;
    c->nm++;
    return 0;
}

static int compile(cc *c, const json_t *j, const char *path);

/* A JSON pointer fragment ("#", "#/a/b") to the value it names in the document. */
static const json_t *resolve(cc *c, const char *ref, const char *path, char **target_path) {
    *target_path = NULL;
    if (ref[0] != '#' || (ref[1] && ref[1] != '/')) {
        cfail(c, path, "$ref",
              "\"%s\": only references within the document (\"#\" or \"#/json/pointer\") are supported", ref);
        return NULL;
    }
    /* percent-decode the fragment (URI syntax), then walk the pointer */
    size_t n = strlen(ref + 1);
    char *ptr = malloc(n + 1);
    if (!ptr) {
        cfail(c, path, "$ref", "out of memory");
        return NULL;
    }
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = ref[1 + i];
        if (ch == '%') {
            unsigned v = 0;
            int ok = i + 2 < n;
            for (int k = 1; ok && k <= 2; k++) {
                char h = ref[1 + i + (size_t)k];
                if (h >= '0' && h <= '9') v = v * 16 + (unsigned)(h - '0');
                else if ((h | 0x20) >= 'a' && (h | 0x20) <= 'f') v = v * 16 + (unsigned)((h | 0x20) - 'a' + 10);
                else ok = 0;
            }
            if (!ok || v == 0) {
                free(ptr);
                cfail(c, path, "$ref", "\"%s\": bad percent-encoding", ref);
                return NULL;
            }
            ptr[w++] = (char)v;
            i += 2;
        } else {
            ptr[w++] = ch;
        }
    }
    ptr[w] = 0;
    const json_t *cur = c->s->doc;
    evs__sb tp = {0};
    evs__sb_adds(&tp, "");
    size_t i = 0;
    while (i < w) {
        /* ptr[i] == '/' */
        size_t start = ++i;
        while (i < w && ptr[i] != '/') i++;
        char *tok = malloc(i - start + 1);
        if (!tok) {
            free(ptr);
            evs__sb_free(&tp);
            cfail(c, path, "$ref", "out of memory");
            return NULL;
        }
        size_t tl = 0;
        int bad = 0;
        for (size_t k = start; k < i; k++) {
            if (ptr[k] == '~') {
                if (k + 1 < i && ptr[k + 1] == '0') tok[tl++] = '~';
                else if (k + 1 < i && ptr[k + 1] == '1') tok[tl++] = '/';
                else bad = 1;
                k++;
            } else {
                tok[tl++] = ptr[k];
            }
        }
        tok[tl] = 0;
        const json_t *next = NULL;
        if (!bad && json_is_object(cur)) {
            next = json_object_getn(cur, tok, tl);
        } else if (!bad && json_is_array(cur) && tl > 0 && (tl == 1 || tok[0] != '0')) {
            uint64_t idx;
            if (evs__parse_u64(tok, SIZE_MAX, &idx) == 0) next = json_array_get(cur, (size_t)idx);
        }
        evs__sb_add(&tp, "/", 1);
        sb_token(&tp, tok, tl);
        free(tok);
        if (bad) {
            free(ptr);
            evs__sb_free(&tp);
            cfail(c, path, "$ref", "\"%s\": bad escape in the JSON pointer (~ must be followed by 0 or 1)", ref);
            return NULL;
        }
        if (!next) {
            free(ptr);
            evs__sb_free(&tp);
            cfail(c, path, "$ref", "\"%s\" points at nothing in this schema", ref);
            return NULL;
        }
        cur = next;
    }
    free(ptr);
    size_t len;
    *target_path = evs__sb_take(&tp, &len);
    if (!*target_path) {
        cfail(c, path, "$ref", "out of memory");
        return NULL;
    }
    return cur;
}

static int is_annotation(const char *k) {
    static const char *const ann[] = {"title", "description", "default", "examples", "$comment", "readOnly", "writeOnly"};
    for (size_t i = 0; i < sizeof ann / sizeof ann[0]; i++)
        if (strcmp(k, ann[i]) == 0) return 1;
    return 0;
}

static int type_bits(const char *t) {
    if (!strcmp(t, "null")) return JT_NULL;
    if (!strcmp(t, "boolean")) return JT_BOOL;
    if (!strcmp(t, "object")) return JT_OBJECT;
    if (!strcmp(t, "array")) return JT_ARRAY;
    if (!strcmp(t, "string")) return JT_STRING;
    if (!strcmp(t, "integer")) return JT_INT;
    if (!strcmp(t, "number")) return JT_NUMBER;
    return 0;
}

static int get_number(cc *c, const char *path, const char *k, const json_t *v, double *out) {
    if (!json_is_number(v)) {
        if (json_is_boolean(v) && (!strcmp(k, "exclusiveMinimum") || !strcmp(k, "exclusiveMaximum")))
            return cfail(c, path, k, "must be a number (the boolean form is draft 4's; draft 6 and later take the bound itself)");
        return cfail(c, path, k, "must be a number");
    }
    *out = json_number_value(v);
    return 0;
}

static int get_count(cc *c, const char *path, const char *k, const json_t *v, uint64_t *out) {
    double d;
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = (uint64_t)json_integer_value(v);
        return 0;
    }
    if (json_is_real(v) && (d = json_real_value(v)) >= 0 && integral(d) && d < 1.8e19) {
        *out = (uint64_t)d;
        return 0;
    }
    return cfail(c, path, k, "must be a non-negative integer");
}

/* A list of subschemas (anyOf, oneOf, allOf). */
static int compile_list(cc *c, const char *path, const char *k, const json_t *v, int **out, size_t *nout) {
    if (!json_is_array(v) || json_array_size(v) == 0) return cfail(c, path, k, "must be a non-empty array of schemas");
    size_t n = json_array_size(v);
    int *list = calloc(n, sizeof *list);
    if (!list) return cfail(c, path, k, "out of memory");
    char *kp = path_key(path, k, strlen(k));
    for (size_t i = 0; i < n; i++) {
        char *ip = kp ? path_index(kp, i) : NULL;
        list[i] = ip ? compile(c, json_array_get(v, i), ip) : -1;
        free(ip);
        if (list[i] < 0) {
            free(kp);
            free(list);
            return cfail(c, path, k, "out of memory");
        }
    }
    free(kp);
    *out = list;
    *nout = n;
    return 0;
}

static int name_cmp(const void *a, const void *b) {
    const jname *x = a, *y = b;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return memcmp(x->name, y->name, x->len);
}

/* The names of properties and required, merged and sorted. */
static int compile_names(cc *c, int ni, const char *path, const json_t *props, const json_t *req) {
    size_t np = props ? json_object_size(props) : 0, nr = req ? json_array_size(req) : 0;
    jname *names = calloc(np + nr + 1, sizeof *names);
    int *order = calloc(nr + 1, sizeof *order);
    size_t n = 0;
    if (!names || !order) {
        free(names);
        free(order);
        return cfail(c, path, NULL, "out of memory");
    }
    int rc = 0;
    if (props) {
        const char *key;
        size_t klen;
        json_t *v;
        char *pp = path_key(path, "properties", 10);
        json_object_keylen_foreach((json_t *)props, key, klen, v) {
            char *kp = pp ? path_key(pp, key, klen) : NULL;
            int sub = kp ? compile(c, v, kp) : -1;
            free(kp);
            if (sub < 0) {
                rc = cfail(c, path, "properties", "out of memory");
                break;
            }
            names[n].name = malloc(klen + 1);
            if (!names[n].name) {
                rc = cfail(c, path, "properties", "out of memory");
                break;
            }
            memcpy(names[n].name, key, klen);
            names[n].name[klen] = 0;
            names[n].len = klen;
            names[n].node = sub;
            names[n].req = -1;
            n++;
        }
        free(pp);
    }
    for (size_t r = 0; !rc && r < nr; r++) {
        const json_t *e = json_array_get(req, r);
        const char *s = json_string_value(e);
        size_t sl = json_string_length(e);
        size_t k;
        for (k = 0; k < n; k++)
            if (names[k].len == sl && memcmp(names[k].name, s, sl) == 0) break;
        if (k < n && names[k].req >= 0) {
            rc = cfail(c, path, "required", "\"%s\" is listed twice", s);
            break;
        }
        if (k == n) {
            names[n].name = malloc(sl + 1);
            if (!names[n].name) {
                rc = cfail(c, path, "required", "out of memory");
                break;
            }
            memcpy(names[n].name, s, sl);
            names[n].name[sl] = 0;
            names[n].len = sl;
            names[n].node = -1;
            n++;
        }
        names[k].req = (int)r;
    }
    if (rc) {
        for (size_t k = 0; k < n; k++) free(names[k].name);
        free(names);
        free(order);
        return rc;
    }
    qsort(names, n, sizeof *names, name_cmp);
    for (size_t k = 0; k < n; k++)
        if (names[k].req >= 0) order[names[k].req] = (int)k;
    jnode *nd = &c->s->nodes[ni];
    nd->names = names;
    nd->nnames = n;
    nd->nreq = nr;
    nd->req_order = order;
    nd->has |= JH_PROPS;
    return 0;
}

static int compile_object(cc *c, int ni, const json_t *j, const char *path) {
    const char *k;
    json_t *v;
    const json_t *props = NULL, *req = NULL;
    int root = path[0] == 0;
    json_object_foreach((json_t *)j, k, v) {
        if (c->rc) return -1;
        jnode *nd = &c->s->nodes[ni];
        if (is_annotation(k)) continue;
        if (!strcmp(k, "$schema")) {
            const char *u = json_string_value(v);
            if (!root) return cfail(c, path, k, "$schema is only allowed at the root");
            if (!u || (strncmp(u, "http://json-schema.org/draft-07/schema", 38) &&
                       strncmp(u, "http://json-schema.org/draft-06/schema", 38) &&
                       strncmp(u, "https://json-schema.org/draft-07/schema", 39) &&
                       strncmp(u, "https://json-schema.org/draft-06/schema", 39)))
                return cfail(c, path, k, "only draft-06 and draft-07 schemas are supported");
        } else if (!strcmp(k, "$id")) {
            if (!root) return cfail(c, path, k, "$id below the root changes how $ref resolves, which is not supported");
            if (!json_is_string(v)) return cfail(c, path, k, "must be a string");
        } else if (!strcmp(k, "definitions") || !strcmp(k, "$defs")) {
            if (!json_is_object(v)) return cfail(c, path, k, "must be an object of schemas");
            const char *dk;
            size_t dl;
            json_t *dv;
            char *kp = path_key(path, k, strlen(k));
            json_object_keylen_foreach(v, dk, dl, dv) {
                char *dp = kp ? path_key(kp, dk, dl) : NULL;
                int sub = dp ? compile(c, dv, dp) : -1;
                free(dp);
                if (sub < 0) {
                    free(kp);
                    return cfail(c, path, k, "out of memory");
                }
            }
            free(kp);
        } else if (!strcmp(k, "type")) {
            unsigned bits = 0;
            if (json_is_string(v)) {
                bits = (unsigned)type_bits(json_string_value(v));
                if (!bits) return cfail(c, path, k, "unknown type \"%s\"", json_string_value(v));
            } else if (json_is_array(v) && json_array_size(v) > 0) {
                for (size_t i = 0; i < json_array_size(v); i++) {
                    const char *t = json_string_value(json_array_get(v, i));
                    unsigned b = t ? (unsigned)type_bits(t) : 0;
                    if (!b) return cfail(c, path, k, "element %zu is not a type name", i);
                    for (size_t p = 0; p < i; p++)
                        if (!strcmp(t, json_string_value(json_array_get(v, p))))
                            return cfail(c, path, k, "\"%s\" is listed twice", t);
                    bits |= b;
                }
            } else {
                return cfail(c, path, k, "must be a type name or a non-empty array of type names");
            }
            nd->types = bits;
            nd->has |= JH_TYPE;
        } else if (!strcmp(k, "enum")) {
            if (!json_is_array(v)) return cfail(c, path, k, "must be an array");
            nd->enums = v;
            nd->has |= JH_ENUM;
        } else if (!strcmp(k, "const")) {
            json_t *arr = json_array();
            if (!arr || json_array_append(arr, v)) {
                json_decref(arr);
                return cfail(c, path, k, "out of memory");
            }
            nd->enums = arr;
            nd->has |= JH_CONST;
        } else if (!strcmp(k, "properties")) {
            if (!json_is_object(v)) return cfail(c, path, k, "must be an object of schemas");
            props = v;
        } else if (!strcmp(k, "required")) {
            if (!json_is_array(v)) return cfail(c, path, k, "must be an array of property names");
            for (size_t i = 0; i < json_array_size(v); i++)
                if (!json_is_string(json_array_get(v, i))) return cfail(c, path, k, "element %zu is not a string", i);
            req = v;
        } else if (!strcmp(k, "additionalProperties")) {
            char *kp = path_key(path, k, strlen(k));
            int sub = kp ? compile(c, v, kp) : -1;
            free(kp);
            if (sub < 0) return cfail(c, path, k, "out of memory");
            c->s->nodes[ni].addl = sub;
            c->s->nodes[ni].has |= JH_ADDL;
        } else if (!strcmp(k, "items")) {
            if (json_is_array(v))
                return cfail(c, path, k, "items as an array (tuple validation) is outside the supported subset; give one schema for every element");
            char *kp = path_key(path, k, strlen(k));
            int sub = kp ? compile(c, v, kp) : -1;
            free(kp);
            if (sub < 0) return cfail(c, path, k, "out of memory");
            c->s->nodes[ni].items = sub;
            c->s->nodes[ni].has |= JH_ITEMS;
        } else if (!strcmp(k, "minimum")) {
            if (get_number(c, path, k, v, &nd->min)) return -1;
            nd->has |= JH_MIN;
        } else if (!strcmp(k, "maximum")) {
            if (get_number(c, path, k, v, &nd->max)) return -1;
            nd->has |= JH_MAX;
        } else if (!strcmp(k, "exclusiveMinimum")) {
            if (get_number(c, path, k, v, &nd->xmin)) return -1;
            nd->has |= JH_XMIN;
        } else if (!strcmp(k, "exclusiveMaximum")) {
            if (get_number(c, path, k, v, &nd->xmax)) return -1;
            nd->has |= JH_XMAX;
        } else if (!strcmp(k, "minLength")) {
            if (get_count(c, path, k, v, &nd->minlen)) return -1;
            nd->has |= JH_MINLEN;
        } else if (!strcmp(k, "maxLength")) {
            if (get_count(c, path, k, v, &nd->maxlen)) return -1;
            nd->has |= JH_MAXLEN;
        } else if (!strcmp(k, "pattern")) {
            if (!json_is_string(v)) return cfail(c, path, k, "must be a string");
            char why[256];
            int rc = evs__regex_compile(json_string_value(v), json_string_length(v), &nd->re, why, sizeof why);
            if (rc) return cfail(c, path, k, "%s", why);
            nd->pattern = strdup(json_string_value(v));
            if (!nd->pattern) return cfail(c, path, k, "out of memory");
            nd->has |= JH_PATTERN;
        } else if (!strcmp(k, "format")) {
            const char *f = json_string_value(v);
            if (!f) return cfail(c, path, k, "must be a string");
            if (!strcmp(f, "date-time")) nd->format = JF_DATE_TIME;
            else if (!strcmp(f, "uuid")) nd->format = JF_UUID;
            else if (!strcmp(f, "email")) nd->format = JF_EMAIL;
            else return cfail(c, path, k, "format \"%s\" is not supported (date-time, uuid and email are)", f);
            nd->has |= JH_FORMAT;
        } else if (!strcmp(k, "anyOf") || !strcmp(k, "oneOf") || !strcmp(k, "allOf")) {
            int *list = NULL;
            size_t n = 0;
            if (compile_list(c, path, k, v, &list, &n)) return -1;
            nd = &c->s->nodes[ni];
            if (k[0] == 'a' && k[1] == 'n') nd->any = list, nd->nany = n, nd->has |= JH_ANYOF;
            else if (k[0] == 'o') nd->one = list, nd->none = n, nd->has |= JH_ONEOF;
            else nd->all = list, nd->nall = n, nd->has |= JH_ALLOF;
        } else {
            return cfail(c, path, k, "keyword \"%s\" is outside the supported subset", k);
        }
    }
    if (c->rc) return -1;
    if (props || req) return compile_names(c, ni, path, props, req);
    return 0;
}

static int compile(cc *c, const json_t *j, const char *path) {
    if (c->rc) return -1;
    if (json_is_true(j)) return new_node(c, path, JN_TRUE);
    if (json_is_false(j)) return new_node(c, path, JN_FALSE);
    if (!json_is_object(j)) return cfail(c, path, NULL, "a schema must be an object or a boolean");
    int ni = memo_find(c, j);
    if (ni >= 0) return ni;
    json_t *ref = json_object_get(j, "$ref");
    ni = new_node(c, path, ref ? JN_REF : JN_SCHEMA);
    if (ni < 0 || memo_add(c, j, ni, path)) return -1;
    if (!ref) return compile_object(c, ni, j, path) ? -1 : ni;
    /* $ref: siblings other than annotations and definitions are refused */
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)j, k, v) {
        if (!strcmp(k, "$ref") || is_annotation(k)) continue;
        if (!strcmp(k, "definitions") || !strcmp(k, "$defs") || (path[0] == 0 && (!strcmp(k, "$schema") || !strcmp(k, "$id")))) {
            json_t *only = json_object();
            if (!only || json_object_set(only, k, v)) {
                json_decref(only);
                return cfail(c, path, k, "out of memory");
            }
            /* compile the container through a one-key object so its schemas are checked */
            int sub = new_node(c, path, JN_TRUE);
            if (sub < 0) {
                json_decref(only);
                return -1;
            }
            int r = compile_object(c, sub, only, path);
            json_decref(only);
            if (r) return -1;
            continue;
        }
        return cfail(c, path, k,
                     "keyword \"%s\" next to $ref: draft 7 ignores it, later drafts apply it; put both in an allOf", k);
    }
    if (!json_is_string(ref)) return cfail(c, path, "$ref", "must be a string");
    char *tp;
    const json_t *target = resolve(c, json_string_value(ref), path, &tp);
    if (!target) return -1;
    int t = compile(c, target, tp);
    free(tp);
    if (t < 0) return -1;
    c->s->nodes[ni].ref = t;
    return ni;
}

/*
 * Refuse cycles that do not descend into the value: a depth-first walk
 * over the edges $ref, anyOf, oneOf, allOf (colors: 0 new, 1 on the path,
 * 2 done).
 */
static int cycle_walk(cc *c, int ni, unsigned char *color) {
    if (color[ni] == 2) return 0;
    const jnode *n = &c->s->nodes[ni];
    if (color[ni] == 1)
        return cfail(c, n->path, n->kind == JN_REF ? "$ref" : NULL,
                     "circular reference: this schema refers back to itself without descending into the value");
    color[ni] = 1;
    int rc = 0;
    if (n->kind == JN_REF) rc = cycle_walk(c, n->ref, color);
    for (size_t i = 0; !rc && i < n->nany; i++) rc = cycle_walk(c, n->any[i], color);
    for (size_t i = 0; !rc && i < n->none; i++) rc = cycle_walk(c, n->one[i], color);
    for (size_t i = 0; !rc && i < n->nall; i++) rc = cycle_walk(c, n->all[i], color);
    color[ni] = 2;
    return rc;
}

void evs_json_schema_free(evs_json_schema *s) {
    if (!s) return;
    for (size_t i = 0; i < s->n; i++) {
        jnode *n = &s->nodes[i];
        free(n->path);
        evs__regex_free(n->re);
        free(n->pattern);
        if (n->has & JH_CONST) json_decref(n->enums);
        for (size_t k = 0; k < n->nnames; k++) free(n->names[k].name);
        free(n->names);
        free(n->req_order);
        free(n->any);
        free(n->one);
        free(n->all);
    }
    free(s->nodes);
    json_decref(s->doc);
    free(s);
}

int evs_json_schema_compile(const char *text, size_t len, evs_json_schema **out, evs_schema_violation *err) {
    if (!out) return evs__err(EVS_EINVAL, "schema compile: out is NULL");
    *out = NULL;
    if (err) memset(err, 0, sizeof *err);
    if (!text) return evs__err(EVS_EINVAL, "schema compile: text is NULL");
    if (len > EVS_SCHEMA_MAX_BYTES) {
        evs__jschema_set(err, "", "", "", "the schema is %zu bytes, at most %u", len, EVS_SCHEMA_MAX_BYTES);
        return evs__err(EVS_ELIMIT, "schema: %zu bytes, at most %u", len, EVS_SCHEMA_MAX_BYTES);
    }
    /* the project's strict scanner first: the same rules as event data, with line and column */
    evs_json_error jerr;
    if (evs__json_validate(text, len, &jerr)) {
        evs__jschema_set(err, "", "", "", "not JSON: %s", jerr.msg);
        return evs__err(EVS_EJSON, "schema is not JSON: %s", jerr.msg);
    }
    json_error_t je;
    json_t *doc = json_loadb(text, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (!doc) {
        evs__jschema_set(err, "", "", "", "%s", je.text);
        return evs__err(EVS_EINVAL, "schema: %s (line %d, column %d)", je.text, je.line, je.column);
    }
    jschema *s = calloc(1, sizeof *s);
    if (!s) {
        json_decref(doc);
        return evs__err(EVS_ENOMEM, "out of memory compiling a schema");
    }
    s->doc = doc;
    cc c = {.s = s, .err = err};
    s->root = compile(&c, doc, "");
    if (!c.rc) {
        unsigned char *color = calloc(s->n ? s->n : 1, 1);
        if (!color) cfail(&c, "", NULL, "out of memory");
        for (size_t i = 0; !c.rc && i < s->n; i++) cycle_walk(&c, (int)i, color);
        free(color);
    }
    free(c.m);
    if (c.rc) {
        evs_json_schema_free(s);
        return c.rc;
    }
    *out = s;
    return EVS_OK;
}

/* ------------------------------------------------------------ validating */

/*
 * The walker: one pass over the (already scanned, well-formed) document,
 * each value validated where it is read and its end returned, so nothing
 * is scanned twice except by anyOf/oneOf/allOf, which walk the value once
 * per alternative.  Values no keyword looks at are skipped with a fast
 * scan.  The path to the current value is a chain of frames on the C
 * stack, turned into a JSON pointer only when something fails.
 */

typedef struct seg {
    const struct seg *up;
    const char *key;          /* a member's key with its quotes, or NULL for an array index */
    size_t klen;
    size_t index;
} seg;

typedef struct vc {
    const jschema *s;
    evs_schema_violation *v;
    int quiet;                /* > 0 inside anyOf / oneOf alternatives: failures are not described */
    uint64_t steps;
    char *heap;               /* decoded strings too long for small[] */
    size_t heap_cap;
    char small[256];
} vc;

enum { V_OK = 0, V_FAIL = 1, V_BUDGET = 2, V_NOMEM = 3 };

static inline const char *ws(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    return p;
}

/* p at an opening quote: just past the closing one. */
static const char *str_end(const char *p, const char *end) {
    p++;
    for (;;) {
        const char *q = memchr(p, '"', (size_t)(end - p));
        if (!q) return end;
        size_t bs = 0;
        while (q - bs > p && q[-1 - (ptrdiff_t)bs] == '\\') bs++;
        if (bs % 2 == 0) return q + 1;
        p = q + 1;
    }
}

static const char *num_end(const char *p, const char *end) {
    while (p < end && ((*p >= '0' && *p <= '9') || *p == '-' || *p == '+' || *p == '.' || *p == 'e' || *p == 'E')) p++;
    return p;
}

/* Past the value at p, whatever it is. */
static const char *skip_any(const char *p, const char *end) {
    switch (*p) {
    case '"': return str_end(p, end);
    case 't':
    case 'n': return p + 4;
    case 'f': return p + 5;
    case '{':
    case '[': {
        size_t depth = 0;
        while (p < end) {
            char ch = *p;
            if (ch == '"') {
                p = str_end(p, end);
                continue;
            }
            p++;
            if (ch == '{' || ch == '[') depth++;
            else if ((ch == '}' || ch == ']') && --depth == 0) break;
        }
        return p;
    }
    default: return num_end(p, end);
    }
}

/*
 * A number's value.  Integers and plain decimals of up to 15 digits are
 * computed directly: the digits are exact in a double and so is 10^k for
 * k <= 22, so one division gives the correctly rounded value strtod would
 * (the classic fast path); anything else goes to strtod.
 */
static double number_value(const char *p, const char *e) {
    static const double pow10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
    const char *q = p;
    int neg = *q == '-';
    if (neg) q++;
    if (e - q <= 16) {
        int64_t v = 0;
        int digits = 0, frac = -1;
        const char *r = q;
        for (; r < e; r++) {
            if (*r >= '0' && *r <= '9') {
                v = v * 10 + (*r - '0');
                digits++;
                if (frac >= 0) frac++;
            } else if (*r == '.' && frac < 0) {
                frac = 0;
            } else {
                break;
            }
        }
        if (r == e && digits <= 15) {
            double d = frac > 0 ? (double)v / pow10[frac] : (double)v;
            return neg ? -d : d;
        }
    }
    return span_number((evs_json_span){p, (size_t)(e - p), EVS_JSON_NUMBER});
}

static int number_integral(const char *p, const char *e, double d) {
    for (const char *q = p; q < e; q++)
        if (*q == '.' || *q == 'e' || *q == 'E') return integral(d);
    return 1;
}

/* Decode the string span [p, e) (quotes included) into c's buffers. */
static long vdecode(vc *c, const char *p, const char *e, size_t *cps, const char **text) {
    evs_json_span sp = {p, (size_t)(e - p), EVS_JSON_STRING};
    if (sp.n <= sizeof c->small) {
        char *tmp = c->small;
        size_t cap = sizeof c->small;
        *text = c->small;
        return str_decode(sp, &tmp, &cap, cps);
    }
    long n = str_decode(sp, &c->heap, &c->heap_cap, cps);
    *text = c->heap;
    return n;
}

static void render_seg(evs__sb *b, const seg *s) {
    if (!s) return;
    render_seg(b, s->up);
    evs__sb_add(b, "/", 1);
    if (!s->key) {
        evs__sb_printf(b, "%zu", s->index);
        return;
    }
    char *tmp = NULL;
    size_t cap = 0, cps;
    long n = str_decode((evs_json_span){s->key, s->klen, EVS_JSON_STRING}, &tmp, &cap, &cps);
    if (n >= 0) sb_token(b, tmp, (size_t)n);
    free(tmp);
}

static void render_pointer(const seg *path, char *out, size_t cap, const char *extra, size_t extra_len) {
    evs__sb b = {0};
    evs__sb_adds(&b, "");
    render_seg(&b, path);
    if (extra) {
        evs__sb_add(&b, "/", 1);
        sb_token(&b, extra, extra_len);
    }
    snprintf(out, cap, "%s", b.p && !b.oom ? b.p : "");
    evs__sb_free(&b);
}

static int vfail(vc *c, const jnode *n, const seg *path, const char *keyword, const char *extra, size_t extra_len,
                 const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static int vfail(vc *c, const jnode *n, const seg *path, const char *keyword, const char *extra, size_t extra_len,
                 const char *fmt, ...) {
    if (c->quiet || !c->v) return V_FAIL;
    evs_schema_violation *v = c->v;
    render_pointer(path, v->pointer, sizeof v->pointer, extra, extra_len);
    snprintf(v->keyword, sizeof v->keyword, "%s", keyword);
    snprintf(v->schema_path, sizeof v->schema_path, "%s/%s", n->path, keyword);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->message, sizeof v->message, fmt, ap);
    va_end(ap);
    return V_FAIL;
}

void evs__jschema_types_text(unsigned t, char *out, size_t cap) {
    static const struct {
        unsigned bits;
        const char *name;
    } names[] = {{JT_NULL, "null"}, {JT_BOOL, "boolean"}, {JT_OBJECT, "object"}, {JT_ARRAY, "array"},
                 {JT_STRING, "string"}, {JT_NUMBER, "number"}, {JT_INT, "integer"}, {JT_FRAC, "non-integer number"}};
    size_t w = 0;
    out[0] = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if ((t & names[i].bits) != names[i].bits) continue;
        /* "number" says both halves */
        if (names[i].bits != JT_NUMBER && (names[i].bits & JT_NUMBER) && (t & JT_NUMBER) == JT_NUMBER) continue;
        int k = snprintf(out + w, cap - w, "%s%s", w ? " or " : "", names[i].name);
        if (k < 0 || (size_t)k >= cap - w) break;
        w += (size_t)k;
    }
    if (!w) snprintf(out, cap, "nothing");
}

static const char *type_name(unsigned bit) {
    switch (bit) {
    case JT_NULL: return "null";
    case JT_BOOL: return "boolean";
    case JT_OBJECT: return "object";
    case JT_ARRAY: return "array";
    case JT_STRING: return "string";
    case JT_INT: return "integer";
    default: return "number";
    }
}

static int walk(vc *c, int ni, const char *p, const char *end, const seg *path, const char **next);

/* The members of the object at p, against n's properties / required / additionalProperties. */
static int walk_object(vc *c, const jnode *n, const char *p, const char *end, const seg *path, const char **next) {
    uint64_t seen_small = 0, *seen = &seen_small;
    int rc = V_OK;
    if (n->nreq > 64 && !(seen = calloc((n->nreq + 63) / 64, sizeof *seen))) return V_NOMEM;
    const char *q = ws(p + 1, end);
    while (rc == V_OK && q < end && *q == '"') {
        const char *kend = str_end(q, end);
        seg me = {path, q, (size_t)(kend - q), 0};
        /* keys without escapes are looked up as they are */
        const char *name = q + 1;
        long kl = kend - q - 2;
        if (memchr(name, '\\', (size_t)kl)) {
            size_t cps;
            char *tmp = NULL;
            size_t cap = 0;
            kl = str_decode((evs_json_span){q, (size_t)(kend - q), EVS_JSON_STRING}, &tmp, &cap, &cps);
            if (kl < 0) {
                rc = V_NOMEM;
                break;
            }
            /* keep the decoded key for the lookup only */
            if ((size_t)kl < sizeof c->small) {
                memcpy(c->small, tmp, (size_t)kl);
                name = c->small;
            } else {
                free(c->heap);
                c->heap = tmp, c->heap_cap = cap, tmp = NULL;
                name = c->heap;
            }
            free(tmp);
        }
        int sub = n->addl, named = 0;
        if (n->nnames) {
            jname key = {(char *)name, (size_t)kl, 0, 0};
            const jname *hit = bsearch(&key, n->names, n->nnames, sizeof *n->names, name_cmp);
            if (hit) {
                if (hit->req >= 0) seen[hit->req / 64] |= 1ull << (hit->req % 64);
                if (hit->node >= 0) sub = hit->node, named = 1;
            }
        }
        if (!named && sub >= 0 && evs__jschema_deref(c->s, sub)->kind == JN_FALSE) {
            char shown[101];
            size_t sl = (size_t)kl < 100 ? (size_t)kl : 100;
            memcpy(shown, name, sl);
            shown[sl] = 0;
            rc = vfail(c, n, path, "additionalProperties", shown, sl, "property \"%s\" is not allowed", shown);
            break;
        }
        q = ws(ws(kend, end) + 1, end); /* past the ':' */
        if (sub >= 0) {
            rc = walk(c, sub, q, end, &me, &q);
        } else {
            q = skip_any(q, end);
        }
        q = ws(q, end);
        if (q < end && *q == ',') q = ws(q + 1, end);
    }
    if (rc == V_OK) *next = q < end ? q + 1 : end; /* past the '}' */
    for (size_t r = 0; rc == V_OK && r < n->nreq; r++) {
        if (seen[r / 64] & (1ull << (r % 64))) continue;
        const jname *m = &n->names[n->req_order[r]];
        rc = vfail(c, n, path, "required", m->name, m->len, "required property \"%.*s\" is missing",
                   (int)(m->len > 100 ? 100 : m->len), m->name);
    }
    if (seen != &seen_small) free(seen);
    return rc;
}

static int walk_array(vc *c, const jnode *n, const char *p, const char *end, const seg *path, const char **next) {
    const char *q = ws(p + 1, end);
    size_t i = 0;
    int rc = V_OK;
    while (rc == V_OK && q < end && *q != ']') {
        seg me = {path, NULL, 0, i++};
        rc = walk(c, n->items, q, end, &me, &q);
        q = ws(q, end);
        if (q < end && *q == ',') q = ws(q + 1, end);
    }
    if (rc == V_OK) *next = q < end ? q + 1 : end;
    return rc;
}

static int check_string(vc *c, const jnode *n, const char *p, const char *e, const seg *path) {
    size_t cps;
    const char *text;
    long len = vdecode(c, p, e, &cps, &text);
    if (len < 0) return V_NOMEM;
    if ((n->has & JH_MINLEN) && cps < n->minlen)
        return vfail(c, n, path, "minLength", NULL, 0, "%zu characters, fewer than the minimum %llu", cps,
                     (unsigned long long)n->minlen);
    if ((n->has & JH_MAXLEN) && cps > n->maxlen)
        return vfail(c, n, path, "maxLength", NULL, 0, "%zu characters, more than the maximum %llu", cps,
                     (unsigned long long)n->maxlen);
    if ((n->has & JH_PATTERN) && !evs__regex_search(n->re, text, (size_t)len))
        return vfail(c, n, path, "pattern", NULL, 0, "does not match the pattern \"%.200s\"", n->pattern);
    if (n->has & JH_FORMAT) {
        int ok = n->format == JF_DATE_TIME ? evs__format_date_time(text, (size_t)len)
                 : n->format == JF_UUID    ? evs__format_uuid(text, (size_t)len)
                                           : evs__format_email(text, (size_t)len);
        static const char *const fname[] = {"", "date-time (RFC 3339)", "uuid", "email address"};
        if (!ok)
            return vfail(c, n, path, "format", NULL, 0, "\"%.*s\" is not a valid %s", (int)(len > 100 ? 100 : len), text,
                         fname[n->format]);
    }
    return V_OK;
}

static int check_number(vc *c, const jnode *n, double d, const char *p, const char *e, const seg *path) {
    int w = (int)(e - p > 40 ? 40 : e - p);
    if ((n->has & JH_MIN) && !(d >= n->min))
        return vfail(c, n, path, "minimum", NULL, 0, "%.*s is less than the minimum %.17g", w, p, n->min);
    if ((n->has & JH_MAX) && !(d <= n->max))
        return vfail(c, n, path, "maximum", NULL, 0, "%.*s is greater than the maximum %.17g", w, p, n->max);
    if ((n->has & JH_XMIN) && !(d > n->xmin))
        return vfail(c, n, path, "exclusiveMinimum", NULL, 0, "%.*s is not greater than %.17g", w, p, n->xmin);
    if ((n->has & JH_XMAX) && !(d < n->xmax))
        return vfail(c, n, path, "exclusiveMaximum", NULL, 0, "%.*s is not less than %.17g", w, p, n->xmax);
    return V_OK;
}

/* anyOf / oneOf: how many alternatives match (stopping at `stop`); the first two matching in *first, *second. */
static int count_matches(vc *c, const int *list, size_t n, size_t stop, const char *p, const char *end, const seg *path,
                         size_t *count, size_t *first, size_t *second) {
    *count = 0;
    c->quiet++;
    for (size_t i = 0; i < n; i++) {
        const char *q;
        int rc = walk(c, list[i], p, end, path, &q);
        if (rc == V_BUDGET || rc == V_NOMEM) {
            c->quiet--;
            return rc;
        }
        if (rc == V_OK) {
            if (*count == 0) *first = i;
            else *second = i;
            if (++*count >= stop) break;
        }
    }
    c->quiet--;
    return V_OK;
}

/* Why alternative `node` fails (walked again, not quietly), in a short text. */
static void branch_reason(vc *c, int node, const char *p, const char *end, const seg *path, char *out, size_t cap) {
    out[0] = 0;
    if (c->quiet || !c->v) return;
    evs_schema_violation save = *c->v;
    const char *q;
    if (walk(c, node, p, end, path, &q) == V_FAIL)
        snprintf(out, cap, "%.60s: %.31s: %.200s", c->v->pointer[0] ? c->v->pointer : "(root)", c->v->keyword,
                 c->v->message);
    *c->v = save;
}

static int walk(vc *c, int ni, const char *p, const char *end, const seg *path, const char **next) {
    if (++c->steps > EVS_JSCHEMA_MAX_STEPS) return V_BUDGET;
    const jnode *n = evs__jschema_deref(c->s, ni);
    unsigned has = n->has;
    if (n->kind == JN_TRUE || (n->kind == JN_SCHEMA && !has)) {
        *next = skip_any(p, end);
        return V_OK;
    }
    if (n->kind == JN_FALSE) return vfail(c, n, path, "false", NULL, 0, "no value is allowed here (the schema is false)");
    const char *e = NULL; /* the value's end, once known */
    unsigned t;
    double num = 0;
    int rc;
    switch (*p) {
    case '{': t = JT_OBJECT; break;
    case '[': t = JT_ARRAY; break;
    case '"': t = JT_STRING; break;
    case 't':
    case 'f': t = JT_BOOL; break;
    case 'n': t = JT_NULL; break;
    default:
        e = num_end(p, end);
        num = number_value(p, e);
        t = number_integral(p, e, num) ? JT_INT : JT_FRAC;
        break;
    }
    if ((has & JH_TYPE) && !(n->types & t)) {
        char want[80];
        evs__jschema_types_text(n->types, want, sizeof want);
        return vfail(c, n, path, "type", NULL, 0, "expected %s, got %s", want, type_name(t));
    }
    if (has & (JH_ENUM | JH_CONST)) {
        if (!e) e = skip_any(p, end);
        evs_json_span x = {p, (size_t)(e - p), t == JT_OBJECT ? EVS_JSON_OBJECT : t == JT_ARRAY ? EVS_JSON_ARRAY
                                                 : t == JT_STRING ? EVS_JSON_STRING : t == JT_NULL ? EVS_JSON_NULL
                                                 : t == JT_BOOL ? (*p == 't' ? EVS_JSON_TRUE : EVS_JSON_FALSE)
                                                                : EVS_JSON_NUMBER};
        size_t m = json_array_size(n->enums), i;
        for (i = 0; i < m; i++)
            if (evs__jschema_span_equals(x, json_array_get(n->enums, i))) break;
        if (i == m) {
            if (has & JH_CONST) {
                char *want = json_dumps(json_array_get(n->enums, 0), JSON_COMPACT | JSON_ENCODE_ANY);
                rc = vfail(c, n, path, "const", NULL, 0, "must be %.200s", want ? want : "the constant");
                free(want);
                return rc;
            }
            return vfail(c, n, path, "enum", NULL, 0, "%.*s is not one of the %zu allowed values", (int)(x.n > 60 ? 60 : x.n),
                         x.p, m);
        }
    }
    switch (t) {
    case JT_INT:
    case JT_FRAC:
        if ((has & (JH_MIN | JH_MAX | JH_XMIN | JH_XMAX)) && (rc = check_number(c, n, num, p, e, path))) return rc;
        break;
    case JT_STRING:
        if (has & (JH_MINLEN | JH_MAXLEN | JH_PATTERN | JH_FORMAT)) {
            if (!e) e = str_end(p, end);
            if ((rc = check_string(c, n, p, e, path))) return rc;
        }
        break;
    case JT_OBJECT:
        if (has & (JH_PROPS | JH_ADDL)) {
            const char *q;
            if ((rc = walk_object(c, n, p, end, path, &q))) return rc;
            e = q;
        }
        break;
    case JT_ARRAY:
        if (has & JH_ITEMS) {
            const char *q;
            if ((rc = walk_array(c, n, p, end, path, &q))) return rc;
            e = q;
        }
        break;
    default: break;
    }
    const char *q;
    for (size_t i = 0; i < n->nall; i++) {
        if ((rc = walk(c, n->all[i], p, end, path, &q))) return rc;
        if (!e) e = q;
    }
    if (has & JH_ANYOF) {
        size_t count, first = 0, second = 0;
        if ((rc = count_matches(c, n->any, n->nany, 1, p, end, path, &count, &first, &second))) return rc;
        if (count == 0) {
            char why[300];
            branch_reason(c, n->any[0], p, end, path, why, sizeof why);
            return vfail(c, n, path, "anyOf", NULL, 0, "matches none of the %zu anyOf alternatives%s%s", n->nany,
                         why[0] ? "; the first fails at " : "", why);
        }
    }
    if (has & JH_ONEOF) {
        size_t count, first = 0, second = 0;
        if ((rc = count_matches(c, n->one, n->none, 2, p, end, path, &count, &first, &second))) return rc;
        if (count == 0) {
            char why[300];
            branch_reason(c, n->one[0], p, end, path, why, sizeof why);
            return vfail(c, n, path, "oneOf", NULL, 0, "matches none of the %zu oneOf alternatives%s%s", n->none,
                         why[0] ? "; the first fails at " : "", why);
        }
        if (count > 1)
            return vfail(c, n, path, "oneOf", NULL, 0, "matches oneOf alternatives %zu and %zu; exactly one must match",
                         first + 1, second + 1);
    }
    *next = e ? e : skip_any(p, end);
    return V_OK;
}

/* Run the walker from node over a well-formed document. */
static int run_walk(const jschema *s, int node, const char *json, size_t len, evs_schema_violation *v) {
    vc c;
    c.s = s;
    c.v = v;
    c.quiet = 0;
    c.steps = 0;
    c.heap = NULL;
    c.heap_cap = 0;
    evs_json_span root = evs__json_root(json, len);
    const char *next;
    int rc = walk(&c, node, root.p, root.p + root.n, NULL, &next);
    free(c.heap);
    return rc;
}

int evs__jschema_check(const jschema *s, const char *json, size_t len, evs_schema_violation *v) {
    int rc = run_walk(s, s->root, json, len, v);
    switch (rc) {
    case V_OK:
        if (v) v->pointer[0] = v->keyword[0] = v->schema_path[0] = v->message[0] = 0;
        return EVS_OK;
    case V_FAIL:
        return evs__err(EVS_EINVAL, "%s: %s: %s", v && v->pointer[0] ? v->pointer : "(root)", v ? v->keyword : "",
                        v ? v->message : "invalid");
    case V_BUDGET:
        evs__jschema_set(v, "", "", "", "validation needs more than %u steps", EVS_JSCHEMA_MAX_STEPS);
        return evs__err(EVS_ELIMIT, "validation needs more than %u steps (anyOf/oneOf nesting?)", EVS_JSCHEMA_MAX_STEPS);
    default: return evs__err(EVS_ENOMEM, "out of memory validating a document");
    }
}

int evs__jschema_check_node(const jschema *s, int node, const char *json, size_t len) {
    int rc = run_walk(s, node, json, len, NULL);
    return rc == V_OK ? 1 : rc == V_FAIL ? 0 : -1;
}

int evs_json_schema_validate(const evs_json_schema *s, const char *json, size_t len, evs_schema_violation *v) {
    if (!s || !json) return evs__err(EVS_EINVAL, "schema validate: schema and document are required");
    evs_json_error jerr;
    if (evs__json_validate(json, len, &jerr)) {
        evs__jschema_set(v, "", "", "", "not JSON: %s", jerr.msg);
        return evs__err(EVS_EJSON, "not JSON: %s", jerr.msg);
    }
    return evs__jschema_check(s, json, len, v);
}
