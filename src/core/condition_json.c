/*
 * condition_json.c — parsing a DCB append condition from JSON (see
 * condition_json.h).  Strings are decoded into one buffer no larger than
 * the input (a decoded string is never longer than its JSON form), so a
 * condition costs two allocations whatever its size; the store checks the
 * names themselves (evs__condition_validate) when the append is made.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/condition_json.h"
#include "core/core.h"

static int fail(const char **where, const char *at, int rc, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int fail(const char **where, const char *at, int rc, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    *where = at;
    return evs__err(rc, "condition: %s", msg);
}

/* A member that is an array of strings: decoded into the buffer. */
static int str_list(evs_condition_parsed *c, evs_json_span v, const char *name, size_t item, size_t max,
                    size_t *nstr, size_t *used, size_t cap, const char *const **list, size_t *n,
                    const char **where) {
    if (v.type != EVS_JSON_ARRAY)
        return fail(where, v.p, EVS_EINVAL, "query item %zu: \"%s\" must be an array of strings", item, name);
    evs_json_iter it;
    evs_json_span e;
    evs__json_iter_init(&it, v);
    *list = c->strs + *nstr;
    *n = 0;
    while (evs__json_iter_element(&it, &e)) {
        if (*n == max)
            return fail(where, e.p, EVS_ELIMIT, "query item %zu: more than %zu \"%s\"", item, max, name);
        long len = e.type == EVS_JSON_STRING ? evs__json_string_decode(e, c->buf + *used, cap - *used) : -1;
        if (len < 0)
            return fail(where, e.p, EVS_EINVAL,
                        "query item %zu: \"%s\" must hold strings (without U+0000)", item, name);
        c->strs[(*nstr)++] = c->buf + *used;
        *used += (size_t)len + 1;
        (*n)++;
    }
    return EVS_OK;
}

int evs__condition_from_json(evs_json_span v, evs_condition_parsed *out, const char **where) {
    int rc;
    memset(out, 0, sizeof *out);
    *where = v.p;
    if (v.type != EVS_JSON_OBJECT)
        return fail(where, v.p, EVS_EINVAL, "must be an object {\"after\": N, \"query\": [...]}, not %s",
                    evs__json_type_name(v.type));
    /* at most one string per two bytes of input */
    size_t cap = v.n + 1;
    out->buf = malloc(cap);
    out->strs = malloc((v.n / 2 + 1) * sizeof *out->strs);
    if (!out->buf || !out->strs) {
        rc = evs__err(EVS_ENOMEM, "out of memory for a condition");
        goto bad;
    }
    size_t nstr = 0, used = 0;
    int have_query = 0, have_after = 0;
    evs_json_iter it;
    evs_json_span key, val;
    evs__json_iter_init(&it, v);
    while (evs__json_iter_member(&it, &key, &val)) {
        if (evs__json_string_eq(key, "after")) {
            int64_t a;
            if (have_after++ || val.type != EVS_JSON_NUMBER || evs__json_int64(val, &a) || a < 0) {
                rc = fail(where, val.p, EVS_EINVAL, "\"after\" must be a global position (an integer >= 0), "
                          "given once");
                goto bad;
            }
            out->cond.after = (uint64_t)a;
        } else if (evs__json_string_eq(key, "query")) {
            if (have_query++ || val.type != EVS_JSON_ARRAY) {
                rc = fail(where, val.p, EVS_EINVAL, "\"query\" must be an array of items, given once");
                goto bad;
            }
            evs_json_iter qi;
            evs_json_span item;
            evs__json_iter_init(&qi, val);
            while (evs__json_iter_element(&qi, &item)) {
                size_t k = out->cond.n_items;
                if (k == EVS_MAX_QUERY_ITEMS) {
                    rc = fail(where, item.p, EVS_ELIMIT, "more than %u query items", EVS_MAX_QUERY_ITEMS);
                    goto bad;
                }
                if (item.type != EVS_JSON_OBJECT) {
                    rc = fail(where, item.p, EVS_EINVAL, "query item %zu must be an object, not %s", k + 1,
                              evs__json_type_name(item.type));
                    goto bad;
                }
                evs_query_item *q = &out->items[k];
                int seen_types = 0, seen_tags = 0;
                evs_json_iter mi;
                evs_json_span mk, mv;
                evs__json_iter_init(&mi, item);
                while (evs__json_iter_member(&mi, &mk, &mv)) {
                    if (evs__json_string_eq(mk, "types") && !seen_types++)
                        rc = str_list(out, mv, "types", k + 1, EVS_MAX_QUERY_TYPES, &nstr, &used, cap,
                                      &q->event_types, &q->n_event_types, where);
                    else if (evs__json_string_eq(mk, "tags") && !seen_tags++)
                        rc = str_list(out, mv, "tags", k + 1, EVS_MAX_TAGS, &nstr, &used, cap, &q->tags,
                                      &q->n_tags, where);
                    else
                        rc = fail(where, mk.p, EVS_EINVAL, "query item %zu: unknown or repeated member %.*s "
                                  "(an item takes \"types\" and \"tags\")", k + 1, (int)(mk.n > 40 ? 40 : mk.n), mk.p);
                    if (rc) goto bad;
                }
                out->cond.n_items++;
            }
        } else {
            rc = fail(where, key.p, EVS_EINVAL, "unknown member %.*s (a condition takes \"after\" and \"query\")",
                      (int)(key.n > 40 ? 40 : key.n), key.p);
            goto bad;
        }
    }
    if (!out->cond.n_items) {
        rc = fail(where, v.p, EVS_EINVAL, "\"query\" needs at least one item (an item with no types and no "
                  "tags matches every event)");
        goto bad;
    }
    out->cond.items = out->items;
    return EVS_OK;
bad:
    evs__condition_parsed_free(out);
    return rc;
}

void evs__condition_parsed_free(evs_condition_parsed *c) {
    if (!c) return;
    free(c->buf);
    free(c->strs);
    c->buf = NULL;
    c->strs = NULL;
}
