/*
 * jschema.h — the compiled form of a JSON Schema (the subset documented in
 * include/evstore_schema.h), shared by the validator (jschema.c), the
 * inclusion check behind compatibility (compat.c) and the registry.
 * Not part of the public API.
 *
 * A schema compiles into an array of nodes, one per subschema; edges are
 * node indexes, so recursive schemas ($ref "#") need no pointers.  The
 * jansson document is kept for enum/const values and the original text.
 */
#ifndef EVS_JSCHEMA_H
#define EVS_JSCHEMA_H

#include <jansson.h>
#include <stdint.h>

#include "core/json.h"
#include "evstore_schema.h"
#include "schema/regex.h"

/* Instance types as bits; "number" is INT | FRAC, "integer" is INT. */
enum {
    JT_NULL = 1u << 0,
    JT_BOOL = 1u << 1,
    JT_OBJECT = 1u << 2,
    JT_ARRAY = 1u << 3,
    JT_STRING = 1u << 4,
    JT_INT = 1u << 5,   /* a number with an integral value (1, 1.0, 1e3) */
    JT_FRAC = 1u << 6,  /* any other number */
    JT_ALL = (1u << 7) - 1,
    JT_NUMBER = JT_INT | JT_FRAC
};

enum { JN_TRUE = 1, JN_FALSE = 2, JN_REF = 3, JN_SCHEMA = 4 };

enum { JF_NONE = 0, JF_DATE_TIME, JF_UUID, JF_EMAIL };

/* What a node constrains (bits of jnode.has). */
enum {
    JH_TYPE = 1u << 0,
    JH_MIN = 1u << 1,
    JH_MAX = 1u << 2,
    JH_XMIN = 1u << 3,
    JH_XMAX = 1u << 4,
    JH_MINLEN = 1u << 5,
    JH_MAXLEN = 1u << 6,
    JH_PATTERN = 1u << 7,
    JH_FORMAT = 1u << 8,
    JH_ENUM = 1u << 9,
    JH_CONST = 1u << 10,
    JH_PROPS = 1u << 11,      /* properties and/or required */
    JH_ADDL = 1u << 12,
    JH_ITEMS = 1u << 13,
    JH_ANYOF = 1u << 14,
    JH_ONEOF = 1u << 15,
    JH_ALLOF = 1u << 16
};

/* A property name a node mentions: in properties, in required, or both. */
typedef struct jname {
    char *name;
    size_t len;
    int node;         /* its schema in properties, -1 when only required */
    int req;          /* its index in required order, -1 when not required */
} jname;

typedef struct jnode {
    char *path;                  /* JSON pointer of this subschema in the document */
    int kind;                    /* JN_* */
    int ref;                     /* JN_REF: the target node */
    unsigned has;                /* JH_* */
    unsigned types;              /* JT_*, JT_ALL when absent */
    double min, max, xmin, xmax;
    uint64_t minlen, maxlen;
    evs__regex *re;
    char *pattern;               /* the ECMA source, for messages and comparison */
    int format;                  /* JF_* */
    json_t *enums;               /* JH_ENUM / JH_CONST: an array of allowed values (borrowed from doc) */
    jname *names;                /* sorted by (len, bytes) for bsearch */
    size_t nnames, nreq;
    int *req_order;              /* names[] index of each required name, in the schema's order */
    int addl;                    /* additionalProperties node, -1 when absent (anything) */
    int items;                   /* items node, -1 when absent */
    int *any, *one, *all;
    size_t nany, none, nall;
} jnode;

struct evs_json_schema {
    jnode *nodes;
    size_t n, cap;
    json_t *doc;
    int root;
};

typedef evs_json_schema jschema;

/* The node reached from i by following $ref (cycles are refused at compile time). */
static inline const jnode *evs__jschema_deref(const jschema *s, int i) {
    while (s->nodes[i].kind == JN_REF) i = s->nodes[i].ref;
    return &s->nodes[i];
}

/* JSON equality of a validated span and a jansson value (numbers by value, objects unordered). */
int evs__jschema_span_equals(evs_json_span a, const json_t *b);
/* The instance type bit of a span (JT_INT or JT_FRAC for numbers). */
unsigned evs__jschema_span_type(evs_json_span v);
/* The instance type bit of a jansson value. */
unsigned evs__jschema_json_type(const json_t *v);

/*
 * Validate a document already known to be well-formed JSON (the append
 * path's data has been scanned by the store): as evs_json_schema_validate
 * without the scan.
 */
int evs__jschema_check(const jschema *s, const char *json, size_t len, evs_schema_violation *v);

/* Is the (well-formed) document valid under the subschema at node?  1 yes, 0 no, -1 undecided (budget, memory). */
int evs__jschema_check_node(const jschema *s, int node, const char *json, size_t len);

/* The type names in a JT_* set, "string or null" ("nothing" for none). */
void evs__jschema_types_text(unsigned t, char *out, size_t cap);

/* Fill a violation (any of the strings may be NULL). */
void evs__jschema_set(evs_schema_violation *v, const char *pointer, const char *keyword, const char *schema_path,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Format checks on decoded text: 1 when it conforms. */
int evs__format_date_time(const char *s, size_t n);
int evs__format_uuid(const char *s, size_t n);
int evs__format_email(const char *s, size_t n);

#endif
