/*
 * jdiff.c — the structural difference between two JSON documents, as an
 * RFC 6902 patch that also carries the old values (evs_json_diff): what
 * "compare" answers for two states of a projection.
 *
 * Off the hot path (one diff per request), so it builds jansson trees.
 * Object members are visited in byte order of their keys, so the same two
 * documents always give the same patch.  Arrays are compared by index; a
 * shorter array's surplus is removed from the last element down, so that
 * applying the operations in order (as RFC 6902 does) gives b.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "bus/bus_internal.h"
#include "core/sb.h"

typedef struct differ {
    json_t *ops;
    evs__sb path;
    int oom;
} differ;

static int num_eq(const json_t *a, const json_t *b) {
    if (json_is_integer(a) && json_is_integer(b)) return json_integer_value(a) == json_integer_value(b);
    return json_number_value(a) == json_number_value(b);
}

/* Equal values: jansson's json_equal, except that 1 and 1.0 are the same number. */
static int same(const json_t *a, const json_t *b) {
    if (json_is_number(a) && json_is_number(b)) return num_eq(a, b);
    if (json_typeof(a) != json_typeof(b)) return 0;
    if (json_is_object(a)) {
        if (json_object_size(a) != json_object_size(b)) return 0;
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)a, k, v) {
            json_t *w = json_object_get(b, k);
            if (!w || !same(v, w)) return 0;
        }
        return 1;
    }
    if (json_is_array(a)) {
        if (json_array_size(a) != json_array_size(b)) return 0;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!same(json_array_get(a, i), json_array_get(b, i))) return 0;
        return 1;
    }
    return json_equal((json_t *)a, (json_t *)b);
}

static void op(differ *d, const char *name, const json_t *old, const json_t *val) {
    json_t *o = json_object();
    if (!o || d->path.oom) {
        d->oom = 1;
        json_decref(o);
        return;
    }
    int bad = json_object_set_new(o, "op", json_string(name));
    bad |= json_object_set_new(o, "path", json_stringn(d->path.p ? d->path.p : "", d->path.len));
    if (old) bad |= json_object_set(o, "old", (json_t *)old);
    if (val) bad |= json_object_set(o, "value", (json_t *)val);
    if (bad || json_array_append_new(d->ops, o)) d->oom = 1;
}

/* Append "/" and the key, escaped as a JSON pointer token (~0, ~1). */
static void push_key(differ *d, const char *k) {
    evs__sb_adds(&d->path, "/");
    for (; *k; k++) {
        if (*k == '~') evs__sb_adds(&d->path, "~0");
        else if (*k == '/') evs__sb_adds(&d->path, "~1");
        else evs__sb_add(&d->path, k, 1);
    }
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

static void diff(differ *d, const json_t *a, const json_t *b);

static void diff_objects(differ *d, const json_t *a, const json_t *b) {
    size_t n = json_object_size(a) + json_object_size(b), k = 0;
    const char **keys = malloc((n ? n : 1) * sizeof *keys);
    if (!keys) {
        d->oom = 1;
        return;
    }
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)a, key, v) keys[k++] = key;
    json_object_foreach((json_t *)b, key, v) if (!json_object_get(a, key)) keys[k++] = key;
    qsort(keys, k, sizeof *keys, cmp_str);
    size_t base = d->path.len;
    for (size_t i = 0; i < k && !d->oom; i++) {
        json_t *x = json_object_get(a, keys[i]), *y = json_object_get(b, keys[i]);
        push_key(d, keys[i]);
        if (!x) op(d, "add", NULL, y);
        else if (!y) op(d, "remove", x, NULL);
        else diff(d, x, y);
        d->path.len = base;
    }
    free(keys);
}

static void diff_arrays(differ *d, const json_t *a, const json_t *b) {
    size_t na = json_array_size(a), nb = json_array_size(b), base = d->path.len;
    size_t common = na < nb ? na : nb;
    for (size_t i = 0; i < common && !d->oom; i++) {
        evs__sb_printf(&d->path, "/%zu", i);
        diff(d, json_array_get(a, i), json_array_get(b, i));
        d->path.len = base;
    }
    for (size_t i = common; i < nb && !d->oom; i++) {
        evs__sb_printf(&d->path, "/%zu", i);
        op(d, "add", NULL, json_array_get(b, i));
        d->path.len = base;
    }
    for (size_t i = na; i > common && !d->oom; i--) {
        evs__sb_printf(&d->path, "/%zu", i - 1);
        op(d, "remove", json_array_get(a, i - 1), NULL);
        d->path.len = base;
    }
}

static void diff(differ *d, const json_t *a, const json_t *b) {
    if (json_is_object(a) && json_is_object(b)) diff_objects(d, a, b);
    else if (json_is_array(a) && json_is_array(b)) diff_arrays(d, a, b);
    else if (!same(a, b)) op(d, "replace", a, b);
}

int evs_json_diff(const char *a, size_t alen, const char *b, size_t blen, char **patch, size_t *len, size_t *count) {
    if (!patch || !a || !b) return evs__err(EVS_EINVAL, "json_diff: NULL argument");
    *patch = NULL;
    json_error_t je;
    int rc = EVS_OK;
    differ d;
    memset(&d, 0, sizeof d);
    json_t *ja = json_loadb(a, alen, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je), *jb = NULL;
    if (!ja) return evs__err(EVS_EJSON, "diff: the first document is not JSON: %s (line %d)", je.text, je.line);
    if (!(jb = json_loadb(b, blen, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je))) {
        rc = evs__err(EVS_EJSON, "diff: the second document is not JSON: %s (line %d)", je.text, je.line);
        goto cleanup;
    }
    if (!(d.ops = json_array())) {
        rc = evs__err(EVS_ENOMEM, "out of memory");
        goto cleanup;
    }
    evs__sb_adds(&d.path, ""); /* the root's path is "" */
    diff(&d, ja, jb);
    if (d.oom || d.path.oom) {
        rc = evs__err(EVS_ENOMEM, "out of memory");
        goto cleanup;
    }
    if (!(*patch = json_dumps(d.ops, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17)))) {
        rc = evs__err(EVS_ENOMEM, "out of memory");
        goto cleanup;
    }
    if (len) *len = strlen(*patch);
    if (count) *count = json_array_size(d.ops);
cleanup:
    json_decref(ja);
    json_decref(jb);
    json_decref(d.ops);
    evs__sb_free(&d.path);
    return rc;
}
