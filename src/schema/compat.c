/*
 * compat.c — is every document valid under schema `sub` also valid under
 * schema `super`?  The question behind every compatibility mode:
 *
 *   backward  includes(new, old): whatever the previous version accepted,
 *             the new one accepts (old events stay valid);
 *   forward   includes(old, new): whatever the new version accepts, the
 *             previous one accepts (old readers understand new events);
 *   full      both.
 *
 * The answer is built from the structure of the two compiled schemas, and
 * it is conservative: "yes" only with a proof, otherwise "no" with the
 * keyword that could not be shown to hold.  The rules, with A the schema
 * included (sub) and B the including one (super):
 *
 *   1. B is true, or A is false, or both are structurally equal: yes.
 *   2. A has enum/const: exact — each listed value that A accepts is
 *      validated against B.
 *   3. A has anyOf/oneOf/allOf: yes if A without them is included in B, or
 *      (anyOf/oneOf) every alternative is, or (allOf) one part is.
 *   4. B has allOf: A must be included in every part; anyOf: A has the
 *      same anyOf, or is included in one alternative; oneOf: A has the same
 *      oneOf (structurally equal), or A
 *      is included in one alternative and provably disjoint from the others
 *      (different types, different const/enum values, or a property both
 *      require whose schemas are disjoint: the tagged unions of events).
 *   5. B's own keywords, each implied by A's, for the types A allows:
 *      type: A's types within B's; enum/const in B: refused (A is not
 *      enumerated); minimum/maximum/exclusive*: A's bound at least as
 *      tight; minLength/maxLength: likewise; pattern and format: A has the
 *      same; required: B's names among A's; properties and
 *      additionalProperties: for every property name the schema A gives it
 *      (its property schema, else A's additionalProperties, else anything)
 *      is included in the schema B gives it; items: likewise.
 *   6. $ref is followed; a pair met again while it is being checked counts
 *      as included (recursive schemas, sound because every cycle descends
 *      into the value — jschema.c refuses the others).
 *
 * What is refused may still be compatible (a pattern rewritten, integer
 * bounds like minimum 0.5 vs 1): the message says which keyword to look at,
 * and the type's mode can be set to none for a change made on purpose.
 */
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "schema/jschema.h"

#define MAX_STEPS 200000u
#define MAX_STACK 512
#define DISJOINT_DEPTH 8

typedef struct pair {
    int a, b;
} pair;

typedef struct ic {
    const jschema *A, *B;     /* sub, super */
    evs_schema_violation *why;
    int have_why;
    pair stack[MAX_STACK];
    int depth;
    uint64_t steps;
    int budget;               /* the budget ran out: the answer is "no" */
} ic;

static int no(ic *c, const jnode *b, const char *keyword, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int no(ic *c, const jnode *b, const char *keyword, const char *fmt, ...) {
    if (c->have_why || !c->why) return 0;
    c->have_why = 1;
    char where[512];
    snprintf(where, sizeof where, "%s%s%s", b->path, keyword && *keyword ? "/" : "", keyword ? keyword : "");
    snprintf(c->why->pointer, sizeof c->why->pointer, "%s", where);
    snprintf(c->why->schema_path, sizeof c->why->schema_path, "%s", where);
    snprintf(c->why->keyword, sizeof c->why->keyword, "%s", keyword ? keyword : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->why->message, sizeof c->why->message, fmt, ap);
    va_end(ap);
    return 0;
}

static int node_index(const jschema *s, const jnode *n) { return (int)(n - s->nodes); }

/* The types a node may accept: its type keyword, narrowed by enum/const values. */
static unsigned eff_types(const jnode *n) {
    if (n->kind == JN_FALSE) return 0;
    if (n->kind == JN_TRUE) return JT_ALL;
    unsigned t = (n->has & JH_TYPE) ? n->types : JT_ALL;
    if (n->has & (JH_ENUM | JH_CONST)) {
        unsigned e = 0;
        for (size_t i = 0; i < json_array_size(n->enums); i++) e |= evs__jschema_json_type(json_array_get(n->enums, i));
        t &= e;
    }
    return t;
}

/* Validate a jansson value against a node of a schema: 1, 0, -1 undecided. */
static int value_valid(const jschema *s, int node, const json_t *v) {
    char *txt = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
    if (!txt) return -1;
    int r = evs__jschema_check_node(s, node, txt, strlen(txt));
    free(txt);
    return r;
}

static const jname *find_name(const jnode *n, const char *name, size_t len) {
    for (size_t i = 0; i < n->nnames; i++)
        if (n->names[i].len == len && memcmp(n->names[i].name, name, len) == 0) return &n->names[i];
    return NULL;
}

/* The node a schema gives to property `name`: its property schema, else additionalProperties, else -1 (anything). */
static int prop_node(const jnode *n, const char *name, size_t len) {
    const jname *m = find_name(n, name, len);
    if (m && m->node >= 0) return m->node;
    return n->addl;
}

static int is_required(const jnode *n, const char *name, size_t len) {
    const jname *m = find_name(n, name, len);
    return m && m->req >= 0;
}

/* ---------------------------------------------------------- equality */

static int same(const jschema *S, int a, const jschema *T, int b, int depth);

static int same_list(const jschema *S, const int *x, size_t nx, const jschema *T, const int *y, size_t ny, int depth) {
    if (nx != ny) return 0;
    for (size_t i = 0; i < nx; i++)
        if (!same(S, x[i], T, y[i], depth)) return 0;
    return 1;
}

/* Structural equality of two subschemas (of possibly different documents). */
static int same(const jschema *S, int a, const jschema *T, int b, int depth) {
    if (depth > 64) return 0;
    const jnode *x = evs__jschema_deref(S, a), *y = evs__jschema_deref(T, b);
    if (x->kind != y->kind || x->has != y->has) return 0;
    if (x->kind != JN_SCHEMA) return 1;
    unsigned h = x->has;
    if ((h & JH_TYPE) && x->types != y->types) return 0;
    if ((h & JH_MIN) && x->min != y->min) return 0;
    if ((h & JH_MAX) && x->max != y->max) return 0;
    if ((h & JH_XMIN) && x->xmin != y->xmin) return 0;
    if ((h & JH_XMAX) && x->xmax != y->xmax) return 0;
    if ((h & JH_MINLEN) && x->minlen != y->minlen) return 0;
    if ((h & JH_MAXLEN) && x->maxlen != y->maxlen) return 0;
    if ((h & JH_PATTERN) && strcmp(x->pattern, y->pattern)) return 0;
    if ((h & JH_FORMAT) && x->format != y->format) return 0;
    if ((h & (JH_ENUM | JH_CONST)) && !json_equal(x->enums, y->enums)) return 0;
    if (x->nnames != y->nnames || x->nreq != y->nreq) return 0;
    for (size_t i = 0; i < x->nnames; i++) {
        const jname *p = &x->names[i], *q = &y->names[i];
        if (p->len != q->len || memcmp(p->name, q->name, p->len) || (p->req >= 0) != (q->req >= 0) ||
            (p->node >= 0) != (q->node >= 0))
            return 0;
        if (p->node >= 0 && !same(S, p->node, T, q->node, depth + 1)) return 0;
    }
    if ((h & JH_ADDL) && !same(S, x->addl, T, y->addl, depth + 1)) return 0;
    if ((h & JH_ITEMS) && !same(S, x->items, T, y->items, depth + 1)) return 0;
    return same_list(S, x->any, x->nany, T, y->any, y->nany, depth + 1) &&
           same_list(S, x->one, x->none, T, y->one, y->none, depth + 1) &&
           same_list(S, x->all, x->nall, T, y->all, y->nall, depth + 1);
}

/* ---------------------------------------------------------- disjointness */

/* 1 when no document is valid under both (a of schema S, b of schema T); 0 when not shown. */
static int disjoint(const jschema *S, int a, const jschema *T, int b, int depth) {
    if (depth > DISJOINT_DEPTH) return 0;
    const jnode *x = evs__jschema_deref(S, a), *y = evs__jschema_deref(T, b);
    if (x->kind == JN_FALSE || y->kind == JN_FALSE) return 1;
    if (x->kind == JN_TRUE || y->kind == JN_TRUE) return 0;
    unsigned common = eff_types(x) & eff_types(y);
    if (!common) return 1;
    if (x->has & (JH_ENUM | JH_CONST)) {
        int all_out = 1;
        for (size_t i = 0; all_out && i < json_array_size(x->enums); i++)
            if (value_valid(T, node_index(T, y), json_array_get(x->enums, i)) != 0) all_out = 0;
        if (all_out) return 1;
    }
    if (y->has & (JH_ENUM | JH_CONST)) {
        int all_out = 1;
        for (size_t i = 0; all_out && i < json_array_size(y->enums); i++)
            if (value_valid(S, node_index(S, x), json_array_get(y->enums, i)) != 0) all_out = 0;
        if (all_out) return 1;
    }
    if (common == JT_OBJECT) {
        /* a property both require, with disjoint schemas: a tagged union */
        for (size_t i = 0; i < x->nnames; i++) {
            const jname *p = &x->names[i];
            if (p->req < 0 || !is_required(y, p->name, p->len)) continue;
            int pa = prop_node(x, p->name, p->len), pb = prop_node(y, p->name, p->len);
            if (pa >= 0 && pb >= 0 && disjoint(S, pa, T, pb, depth + 1)) return 1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------ inclusion */

static int inc(ic *c, int a, int b);

/* a (a node of A) without the combinators in `ignore`, included in b? */
static int inc_base(ic *c, const jnode *x, const jnode *y, unsigned ignore);

static int inc(ic *c, int a, int b) {
    if (++c->steps > MAX_STEPS) {
        c->budget = 1;
        return 0;
    }
    const jnode *x = evs__jschema_deref(c->A, a), *y = evs__jschema_deref(c->B, b);
    a = node_index(c->A, x);
    b = node_index(c->B, y);
    if (y->kind == JN_TRUE || x->kind == JN_FALSE) return 1;
    if (x->has == y->has && same(c->A, a, c->B, b, 0)) return 1;
    for (int i = 0; i < c->depth; i++)
        if (c->stack[i].a == a && c->stack[i].b == b) return 1;
    if (c->depth == MAX_STACK) {
        c->budget = 1;
        return 0;
    }
    c->stack[c->depth].a = a;
    c->stack[c->depth].b = b;
    c->depth++;
    int r = inc_base(c, x, y, 0);
    c->depth--;
    return r;
}

/* A value-listing A: exact, by validating each value A accepts against B. */
static int inc_enum(ic *c, const jnode *x, const jnode *y) {
    for (size_t i = 0; i < json_array_size(x->enums); i++) {
        const json_t *v = json_array_get(x->enums, i);
        int in_a = value_valid(c->A, node_index(c->A, x), v);
        if (in_a == 0) continue;
        int in_b = in_a < 0 ? -1 : value_valid(c->B, node_index(c->B, y), v);
        if (in_b != 1) {
            char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            no(c, y, "", "the value %.200s is allowed by %s but %s", t ? t : "?", x->path[0] ? x->path : "the root",
               in_b < 0 ? "could not be checked against the other schema" : "not by this schema");
            free(t);
            return 0;
        }
    }
    return 1;
}

static int inc_number(ic *c, const jnode *x, const jnode *y) {
    if (y->has & JH_MIN) {
        int ok = ((x->has & JH_MIN) && x->min >= y->min) || ((x->has & JH_XMIN) && x->xmin >= y->min);
        if (!ok) return no(c, y, "minimum", "minimum %.17g is not implied by the other schema's lower bound", y->min);
    }
    if (y->has & JH_XMIN) {
        int ok = ((x->has & JH_MIN) && x->min > y->xmin) || ((x->has & JH_XMIN) && x->xmin >= y->xmin);
        if (!ok)
            return no(c, y, "exclusiveMinimum", "exclusiveMinimum %.17g is not implied by the other schema's lower bound",
                      y->xmin);
    }
    if (y->has & JH_MAX) {
        int ok = ((x->has & JH_MAX) && x->max <= y->max) || ((x->has & JH_XMAX) && x->xmax <= y->max);
        if (!ok) return no(c, y, "maximum", "maximum %.17g is not implied by the other schema's upper bound", y->max);
    }
    if (y->has & JH_XMAX) {
        int ok = ((x->has & JH_MAX) && x->max < y->xmax) || ((x->has & JH_XMAX) && x->xmax <= y->xmax);
        if (!ok)
            return no(c, y, "exclusiveMaximum", "exclusiveMaximum %.17g is not implied by the other schema's upper bound",
                      y->xmax);
    }
    return 1;
}

static int inc_string(ic *c, const jnode *x, const jnode *y) {
    if ((y->has & JH_MINLEN) && y->minlen > 0 && !((x->has & JH_MINLEN) && x->minlen >= y->minlen))
        return no(c, y, "minLength", "minLength %llu is tighter than the other schema's (%llu)",
                  (unsigned long long)y->minlen, (x->has & JH_MINLEN) ? (unsigned long long)x->minlen : 0ull);
    if ((y->has & JH_MAXLEN) && !((x->has & JH_MAXLEN) && x->maxlen <= y->maxlen)) {
        if (x->has & JH_MAXLEN)
            return no(c, y, "maxLength", "maxLength %llu is tighter than the other schema's (%llu)",
                      (unsigned long long)y->maxlen, (unsigned long long)x->maxlen);
        return no(c, y, "maxLength", "maxLength %llu where the other schema has no limit", (unsigned long long)y->maxlen);
    }
    if ((y->has & JH_PATTERN) && !((x->has & JH_PATTERN) && strcmp(x->pattern, y->pattern) == 0))
        return no(c, y, "pattern", "pattern \"%.200s\" is not the other schema's%s (patterns are compared as text)",
                  y->pattern, (x->has & JH_PATTERN) ? "" : " (it has none)");
    if ((y->has & JH_FORMAT) && !((x->has & JH_FORMAT) && x->format == y->format))
        return no(c, y, "format", "format is not the other schema's");
    return 1;
}

/* Does the subschema accept every value?  (true, or an object schema without keywords) */
static int accepts_all(const jschema *s, int node) {
    const jnode *n = evs__jschema_deref(s, node);
    return n->kind == JN_TRUE || (n->kind == JN_SCHEMA && n->has == 0);
}

/* The first keyword a node has, for messages. */
static const char *first_keyword(const jnode *n) {
    static const struct {
        unsigned bit;
        const char *name;
    } kw[] = {{JH_TYPE, "type"}, {JH_ENUM, "enum"}, {JH_CONST, "const"}, {JH_MIN, "minimum"}, {JH_MAX, "maximum"},
              {JH_XMIN, "exclusiveMinimum"}, {JH_XMAX, "exclusiveMaximum"}, {JH_MINLEN, "minLength"},
              {JH_MAXLEN, "maxLength"}, {JH_PATTERN, "pattern"}, {JH_FORMAT, "format"}, {JH_PROPS, "properties"},
              {JH_ADDL, "additionalProperties"}, {JH_ITEMS, "items"}, {JH_ANYOF, "anyOf"}, {JH_ONEOF, "oneOf"},
              {JH_ALLOF, "allOf"}};
    for (size_t i = 0; i < sizeof kw / sizeof kw[0]; i++)
        if (n->has & kw[i].bit) return kw[i].name;
    return "";
}

static int inc_object(ic *c, const jnode *x, const jnode *y) {
    for (size_t i = 0; i < y->nnames; i++) {
        const jname *m = &y->names[i];
        if (m->req >= 0 && !is_required(x, m->name, m->len))
            return no(c, y, "required", "\"%.100s\" is required here but not by the other schema", m->name);
    }
    /* the names B mentions: the schema A gives each must be included in B's */
    for (size_t i = 0; i < y->nnames; i++) {
        const jname *m = &y->names[i];
        int pb = prop_node(y, m->name, m->len);
        if (pb < 0 || accepts_all(c->B, pb)) continue;
        int pa = prop_node(x, m->name, m->len);
        if (pa < 0)
            return no(c, evs__jschema_deref(c->B, pb), "",
                      "property \"%.100s\" is constrained here but may be anything under the other schema", m->name);
        if (!inc(c, pa, pb)) return 0;
    }
    /* the names only A mentions get B's additionalProperties */
    for (size_t i = 0; i < x->nnames; i++) {
        const jname *m = &x->names[i];
        if (m->node < 0 || find_name(y, m->name, m->len) || y->addl < 0) continue;
        if (evs__jschema_deref(c->A, m->node)->kind == JN_FALSE) continue;
        if (evs__jschema_deref(c->B, y->addl)->kind == JN_FALSE)
            return no(c, y, "additionalProperties", "property \"%.100s\" of the other schema is not allowed here",
                      m->name);
        if (!inc(c, m->node, y->addl)) return 0;
    }
    /* every other name */
    if (y->addl >= 0 && !accepts_all(c->B, y->addl)) {
        if (x->addl < 0) {
            if (evs__jschema_deref(c->B, y->addl)->kind == JN_FALSE)
                return no(c, y, "additionalProperties", "other properties are refused here but allowed by the other schema");
            return no(c, y, "additionalProperties",
                      "other properties are constrained here but may be anything under the other schema");
        }
        if (!inc(c, x->addl, y->addl)) return 0;
    }
    return 1;
}

static int inc_base(ic *c, const jnode *x, const jnode *y, unsigned ignore) {
    if (y->kind == JN_FALSE) {
        if (eff_types(x) == 0) return 1;
        return no(c, y, "", "this schema is false (nothing is valid) where the other allows values");
    }
    if (x->kind == JN_TRUE) {
        if (accepts_all(c->B, node_index(c->B, y))) return 1;
        return no(c, y, first_keyword(y), "constrains values that the other schema (true) allows");
    }
    unsigned xh = x->has & ~ignore;
    /* rule 2: an enumerated A is decided exactly (against all of A, combinators included) */
    if (xh & (JH_ENUM | JH_CONST)) return inc_enum(c, x, y);
    /* rule 3: A's combinators */
    unsigned comb = xh & (JH_ANYOF | JH_ONEOF | JH_ALLOF);
    if (comb) {
        int had = c->have_why;
        if (inc_base(c, x, y, ignore | comb)) return 1;
        if (c->budget) return 0;
        /* keep the reason of the first attempt (A's own keywords): it is the one to read */
        int have_first = c->have_why;
        evs_schema_violation first;
        if (c->why) first = *c->why;
        c->have_why = had;
        int ok = 0;
        if (xh & JH_ANYOF) {
            ok = 1;
            for (size_t i = 0; ok && i < x->nany; i++) ok = inc(c, x->any[i], node_index(c->B, y));
        }
        if (!ok && (xh & JH_ONEOF)) {
            ok = 1;
            for (size_t i = 0; ok && i < x->none; i++) ok = inc(c, x->one[i], node_index(c->B, y));
        }
        for (size_t i = 0; !ok && (xh & JH_ALLOF) && i < x->nall; i++) ok = inc(c, x->all[i], node_index(c->B, y));
        if (ok) return 1;
        c->have_why = have_first;
        if (c->why && have_first) *c->why = first;
        return 0;
    }
    int a = node_index(c->A, x);
    /* rule 4: B's combinators */
    for (size_t i = 0; i < y->nall; i++)
        if (!inc(c, a, y->all[i])) return 0;
    if (y->has & JH_ANYOF) {
        /* the same alternatives on both sides: the rest of A must be within the rest of B */
        int ok = (x->has & JH_ANYOF) && same_list(c->A, x->any, x->nany, c->B, y->any, y->nany, 0);
        for (size_t i = 0; !ok && i < y->nany; i++) {
            int had = c->have_why;
            ok = inc(c, a, y->any[i]);
            if (!ok) c->have_why = had;
        }
        if (!ok) return no(c, y, "anyOf", "no anyOf alternative includes everything the other schema allows");
    }
    if (y->has & JH_ONEOF) {
        int ok = (x->has & JH_ONEOF) && same_list(c->A, x->one, x->none, c->B, y->one, y->none, 0);
        for (size_t i = 0; !ok && i < y->none; i++) {
            int had = c->have_why;
            if (!inc(c, a, y->one[i])) {
                c->have_why = had;
                continue;
            }
            ok = 1;
            for (size_t j = 0; ok && j < y->none; j++)
                if (j != i && !disjoint(c->A, a, c->B, y->one[j], 0)) ok = 0;
        }
        if (!ok)
            return no(c, y, "oneOf",
                      "cannot show that everything the other schema allows matches exactly one oneOf alternative");
    }
    /* rule 5: B's own keywords */
    unsigned ta = eff_types(x);
    if (y->has & (JH_ENUM | JH_CONST))
        return no(c, y, (y->has & JH_CONST) ? "const" : "enum", "values are restricted here but not in the other schema");
    if ((y->has & JH_TYPE) && (ta & ~y->types)) {
        char got[120], want[120];
        evs__jschema_types_text(ta & ~y->types, got, sizeof got);
        evs__jschema_types_text(y->types, want, sizeof want);
        return no(c, y, "type", "allows only %s; the other schema also allows %s", want, got);
    }
    if ((ta & JT_NUMBER) && !inc_number(c, x, y)) return 0;
    if ((ta & JT_STRING) && !inc_string(c, x, y)) return 0;
    if ((ta & JT_OBJECT) && (y->has & (JH_PROPS | JH_ADDL)) && !inc_object(c, x, y)) return 0;
    if ((ta & JT_ARRAY) && (y->has & JH_ITEMS) && !accepts_all(c->B, y->items)) {
        if (x->items < 0)
            return no(c, y, "items", "array elements are constrained here but may be anything under the other schema");
        if (!inc(c, x->items, y->items)) return 0;
    }
    return 1;
}

int evs_json_schema_includes(const evs_json_schema *super, const evs_json_schema *sub, evs_schema_violation *why) {
    if (!super || !sub) return evs__err(EVS_EINVAL, "schema inclusion: both schemas are required");
    ic *c = calloc(1, sizeof *c);
    if (!c) return evs__err(EVS_ENOMEM, "out of memory comparing schemas");
    if (why) memset(why, 0, sizeof *why);
    c->A = sub;
    c->B = super;
    c->why = why;
    int ok = inc(c, sub->root, super->root);
    int budget = c->budget;
    free(c);
    if (ok) return EVS_OK;
    if (budget) {
        if (why) evs__jschema_set(why, "", "", "", "the schemas are too complex to compare (more than %u steps)", MAX_STEPS);
        return evs__err(EVS_ECONFLICT, "the schemas are too complex to compare (more than %u steps)", MAX_STEPS);
    }
    if (why && !why->message[0]) evs__jschema_set(why, "", "", "", "inclusion could not be shown");
    return evs__err(EVS_ECONFLICT, "%s: %s: %s", why && why->pointer[0] ? why->pointer : "(root)", why ? why->keyword : "",
                    why ? why->message : "not included");
}

const char *evs_schema_compat_name(int mode) {
    switch (mode) {
    case EVS_COMPAT_BACKWARD: return "backward";
    case EVS_COMPAT_FORWARD: return "forward";
    case EVS_COMPAT_FULL: return "full";
    case EVS_COMPAT_NONE: return "none";
    default: return "unknown";
    }
}

int evs_schema_compat_parse(const char *name, evs_schema_compat *out) {
    static const char *const names[] = {"backward", "forward", "full", "none"};
    for (int i = 0; name && i < 4; i++)
        if (strcmp(name, names[i]) == 0) {
            *out = (evs_schema_compat)i;
            return EVS_OK;
        }
    return evs__err(EVS_EINVAL, "unknown compatibility mode \"%s\" (backward, forward, full or none)", name ? name : "");
}
