/*
 * replay_spec.c — reading what-if requests and running compares (see
 * replay_spec.h).  Off the hot path: jansson for the request and for
 * taking a replay's result apart into its summary and its states.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus/bus_internal.h"
#include "bus/replay_spec.h"
#include "core/sb.h"

static int fail(char *why, size_t cap, const char *fmt, ...) EVS_PRINTF(3, 4);
static int fail(char *why, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, cap, fmt, ap);
    va_end(ap);
    return -1;
}

void evs__state_spec_free(evs__state_spec *s) {
    if (!s) return;
    json_decref(s->root);
    free(s->positions);
    free((void *)s->types);
    free((void *)s->streams);
    free(s->inserts);
    for (size_t i = 0; i < s->n_texts; i++) free(s->texts[i]);
    free(s->texts);
    memset(s, 0, sizeof *s);
}

static int as_of_value(json_t *v, evs_as_of *at, char *why, size_t cap) {
    if (json_is_integer(v)) {
        if (json_integer_value(v) < 1) return fail(why, cap, "as_of: position %lld names no event (positions start at 1)",
                                                    (long long)json_integer_value(v));
        at->position = (uint64_t)json_integer_value(v);
        return 0;
    }
    if (!json_is_string(v)) return fail(why, cap, "as_of must be a position, \"head\" or an RFC 3339 time");
    if (evs_as_of_parse(json_string_value(v), json_string_length(v), at)) return fail(why, cap, "%s", evs_errmsg());
    return 0;
}

/* A list of strings (1..max bytes each) into *out (pointers into the JSON). */
static int str_list(json_t *a, const char *what, size_t max, const char ***out, size_t *n, char *why, size_t cap) {
    if (!json_is_array(a)) return fail(why, cap, "%s must be an array of strings", what);
    size_t k = json_array_size(a);
    if (k > EVS_SPEC_MAX_LIST) return fail(why, cap, "%s has %zu entries, the limit is %u", what, k, EVS_SPEC_MAX_LIST);
    if (k && !(*out = calloc(k, sizeof **out))) return fail(why, cap, "out of memory");
    for (size_t i = 0; i < k; i++) {
        json_t *s = json_array_get(a, i);
        if (!json_is_string(s) || json_string_length(s) == 0 || json_string_length(s) > max ||
            strlen(json_string_value(s)) != json_string_length(s))
            return fail(why, cap, "%s[%zu] must be a string of 1..%zu bytes", what, i, max);
        (*out)[i] = json_string_value(s);
    }
    *n = k;
    return 0;
}

static int exclude(evs__state_spec *s, json_t *x, char *why, size_t cap) {
    if (!json_is_object(x)) return fail(why, cap, "exclude must be an object {positions, types, streams}");
    const char *k;
    json_t *v;
    json_object_foreach(x, k, v) {
        if (strcmp(k, "positions") == 0) {
            if (!json_is_array(v)) return fail(why, cap, "exclude.positions must be an array of positions");
            size_t n = json_array_size(v);
            if (n > EVS_SPEC_MAX_LIST)
                return fail(why, cap, "exclude.positions has %zu entries, the limit is %u", n, EVS_SPEC_MAX_LIST);
            if (n && !(s->positions = calloc(n, sizeof *s->positions))) return fail(why, cap, "out of memory");
            for (size_t i = 0; i < n; i++) {
                json_t *p = json_array_get(v, i);
                if (!json_is_integer(p) || json_integer_value(p) < 1)
                    return fail(why, cap, "exclude.positions[%zu] must be a position (an integer >= 1)", i);
                s->positions[i] = (uint64_t)json_integer_value(p);
            }
            s->opts.exclude_positions = s->positions;
            s->opts.n_exclude_positions = n;
        } else if (strcmp(k, "types") == 0) {
            if (str_list(v, "exclude.types", EVS_MAX_TYPE_NAME, &s->types, &s->opts.n_exclude_types, why, cap)) return -1;
            s->opts.exclude_types = s->types;
        } else if (strcmp(k, "streams") == 0) {
            if (str_list(v, "exclude.streams", EVS_MAX_STREAM_NAME, &s->streams, &s->opts.n_exclude_streams, why, cap))
                return -1;
            s->opts.exclude_streams = s->streams;
        } else {
            return fail(why, cap, "exclude.%s is not a member of exclude (positions, types, streams)", k);
        }
    }
    return 0;
}

static char *keep_text(evs__state_spec *s, json_t *v, size_t *len) {
    char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
    if (!t) return NULL;
    s->texts[s->n_texts++] = t;
    *len = strlen(t);
    return t;
}

static int inserts(evs__state_spec *s, json_t *a, char *why, size_t cap) {
    if (!json_is_array(a)) return fail(why, cap, "insert must be an array of events");
    size_t n = json_array_size(a);
    if (n > EVS_SPEC_MAX_LIST) return fail(why, cap, "insert has %zu events, the limit is %u", n, EVS_SPEC_MAX_LIST);
    if (!n) return 0;
    if (!(s->inserts = calloc(n, sizeof *s->inserts)) || !(s->texts = calloc(2 * n, sizeof *s->texts)))
        return fail(why, cap, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(a, i);
        evs_replay_insert *in = &s->inserts[i];
        if (!json_is_object(e)) return fail(why, cap, "insert[%zu] must be an object {after, stream, event_type, data}", i);
        const char *k;
        json_t *v;
        int have_after = 0;
        json_object_foreach(e, k, v) {
            if (strcmp(k, "after") == 0) {
                if (!json_is_integer(v) || json_integer_value(v) < 0)
                    return fail(why, cap, "insert[%zu].after must be a global position (0: before the first event)", i);
                in->after = (uint64_t)json_integer_value(v);
                have_after = 1;
            } else if (strcmp(k, "stream") == 0 || strcmp(k, "event_type") == 0 || strcmp(k, "stream_type") == 0) {
                int is_stream = strcmp(k, "stream") == 0;
                size_t max = is_stream ? EVS_MAX_STREAM_NAME : EVS_MAX_TYPE_NAME;
                if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > max ||
                    strlen(json_string_value(v)) != json_string_length(v))
                    return fail(why, cap, "insert[%zu].%s must be a string of 1..%zu bytes", i, k, max);
                if (is_stream) in->stream = json_string_value(v);
                else if (k[0] == 'e') in->event_type = json_string_value(v);
                else in->stream_type = json_string_value(v);
            } else if (strcmp(k, "data") == 0 || strcmp(k, "metadata") == 0) {
                if (!json_is_object(v) && !(k[0] == 'm' && json_is_null(v)))
                    return fail(why, cap, "insert[%zu].%s must be a JSON object", i, k);
                if (json_is_null(v)) continue;
                size_t len = 0;
                char *t = keep_text(s, v, &len);
                if (!t) return fail(why, cap, "out of memory");
                if (k[0] == 'd') in->data = t, in->data_len = len;
                else in->metadata = t, in->metadata_len = len;
            } else {
                return fail(why, cap, "insert[%zu].%s is not a member of an inserted event "
                                      "(after, stream, event_type, data, metadata, stream_type)", i, k);
            }
        }
        if (!have_after) return fail(why, cap, "insert[%zu].after is missing (the position the event follows)", i);
        if (!in->stream) return fail(why, cap, "insert[%zu].stream is missing", i);
        if (!in->event_type) return fail(why, cap, "insert[%zu].event_type is missing", i);
    }
    s->opts.inserts = s->inserts;
    s->opts.n_inserts = n;
    return 0;
}

int evs__state_spec_json(json_t *v, int allow_live, evs__state_spec *s, char *why, size_t cap) {
    memset(s, 0, sizeof *s);
    why[0] = 0;
    s->root = json_incref(v);
    if (json_is_string(v) && allow_live && strcmp(json_string_value(v), "live") == 0) {
        s->live = 1;
        return 0;
    }
    if (json_is_string(v) || json_is_integer(v)) return as_of_value(v, &s->opts.as_of, why, cap);
    if (!json_is_object(v))
        return fail(why, cap, "expected a position, an RFC 3339 time, %san object {as_of, exclude, insert, source, "
                              "partition}", allow_live ? "\"live\", " : "");
    const char *k;
    json_t *m;
    json_object_foreach(v, k, m) {
        if (strcmp(k, "as_of") == 0) {
            if (as_of_value(m, &s->opts.as_of, why, cap)) return -1;
        } else if (strcmp(k, "exclude") == 0) {
            if (exclude(s, m, why, cap)) return -1;
        } else if (strcmp(k, "insert") == 0) {
            if (inserts(s, m, why, cap)) return -1;
        } else if (strcmp(k, "source") == 0) {
            if (!json_is_string(m) || json_string_length(m) == 0 || json_string_length(m) > EVS_SPEC_MAX_SOURCE ||
                strlen(json_string_value(m)) != json_string_length(m))
                return fail(why, cap, "source must be a Lua script of 1..%zu bytes without NUL", EVS_SPEC_MAX_SOURCE);
            s->source = json_string_value(m);
            s->source_len = json_string_length(m);
        } else if (strcmp(k, "partition") == 0) {
            if (!json_is_string(m) || json_string_length(m) > EVS_MAX_STREAM_NAME ||
                strlen(json_string_value(m)) != json_string_length(m))
                return fail(why, cap, "partition must be a string of 0..%u bytes", EVS_MAX_STREAM_NAME);
            s->opts.partition = json_string_value(m);
        } else {
            return fail(why, cap, "%s is not a member of a what-if (as_of, exclude, insert, source, partition)", k);
        }
    }
    return 0;
}

int evs__state_spec_text(const char *t, int allow_live, evs__state_spec *s, char *why, size_t cap) {
    json_t *v;
    if (t[0] == '{') {
        json_error_t je;
        if (!(v = json_loads(t, JSON_REJECT_DUPLICATES, &je))) {
            memset(s, 0, sizeof *s);
            return fail(why, cap, "malformed JSON: line %d, column %d: %s", je.line, je.column, je.text);
        }
    } else if (!(v = json_string(t))) {
        memset(s, 0, sizeof *s);
        return fail(why, cap, "\"%.64s\" is not valid UTF-8", t);
    }
    int r = evs__state_spec_json(v, allow_live, s, why, cap);
    json_decref(v);
    return r;
}

/* ------------------------------------------------------------------ run */

static int partitioning_of(evs_bus *b, const char *name, int *p) {
    evs__record rec;
    int rc = evs__record_read(b, name, &rec);
    if (rc) return rc;
    if (rec.kind != EVS__KIND_PROJ) rc = evs__err(EVS_EINVAL, "\"%s\" is not a projection", name);
    *p = rec.partitioning;
    evs__record_free(&rec);
    return rc;
}

int evs__state_spec_run(evs_bus *b, const char *name, const evs__state_spec *s, char **json, size_t *len) {
    *json = NULL;
    if (!s->live) {
        evs_replay_result r;
        int rc = evs_proj_replay(b, s->source ? NULL : name, s->source, s->source_len, &s->opts, &r);
        if (rc) return rc;
        *json = r.json;
        if (len) *len = r.len;
        return EVS_OK;
    }
    int part, rc;
    char *parts = NULL;
    size_t pl = 0;
    uint64_t pos = 0;
    if ((rc = evs__bus_check_name(name)) || (rc = partitioning_of(b, name, &part)) ||
        (rc = evs_proj_live_json(b, name, &parts, &pl, &pos)))
        return rc;
    evs__sb sb = {0};
    evs__sb_adds(&sb, "{\"projection\":");
    evs__sb_json_str(&sb, name, strlen(name));
    evs__sb_printf(&sb, ",\"partitioning\":\"%s\",\"live\":true,\"position\":%llu,\"partitions\":",
                   part == EVS_PARTITION_NONE ? "none" : part == EVS_PARTITION_CUSTOM ? "custom" : "stream",
                   (unsigned long long)pos);
    evs__sb_add(&sb, parts, pl);
    evs__sb_adds(&sb, "}");
    free(parts);
    if (!(*json = evs__sb_take(&sb, len))) return evs__err(EVS_ENOMEM, "out of memory");
    return EVS_OK;
}

/* Split a run's result into its summary (without the states) and the view compared. */
static int split(const char *js, json_t **summary, json_t **view) {
    json_error_t je;
    json_t *root = json_loads(js, 0, &je);
    if (!root) return evs__err(EVS_ECORRUPT, "a replay's result is not JSON: %s", je.text);
    json_t *parts = json_incref(json_object_get(root, "partitions"));
    json_object_del(root, "partitions");
    const char *pt = json_string_value(json_object_get(root, "partitioning"));
    if (pt && strcmp(pt, "none") == 0) {
        json_t *one = json_object_get(parts, "");
        *view = one ? json_incref(one) : json_null();
        json_decref(parts);
    } else {
        *view = parts;
    }
    *summary = root;
    return EVS_OK;
}

int evs__compare(evs_bus *b, const char *name, const evs__state_spec *sa, const evs__state_spec *sb_, char **json,
                 size_t *len) {
    char *ja = NULL, *jb = NULL, *va = NULL, *vb = NULL, *patch = NULL;
    json_t *suma = NULL, *sumb = NULL, *viewa = NULL, *viewb = NULL;
    size_t count = 0;
    int rc;
    *json = NULL;
    if ((rc = evs__state_spec_run(b, name, sa, &ja, NULL)) ) {
        rc = evs__err_prefix(rc, "a: ");
        goto cleanup;
    }
    if ((rc = evs__state_spec_run(b, name, sb_, &jb, NULL))) {
        rc = evs__err_prefix(rc, "b: ");
        goto cleanup;
    }
    if ((rc = split(ja, &suma, &viewa)) || (rc = split(jb, &sumb, &viewb))) goto cleanup;
    va = json_dumps(viewa, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
    vb = json_dumps(viewb, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
    if (!va || !vb) {
        rc = evs__err(EVS_ENOMEM, "out of memory");
        goto cleanup;
    }
    if ((rc = evs_json_diff(va, strlen(va), vb, strlen(vb), &patch, NULL, &count))) goto cleanup;
    char *a_txt = json_dumps(suma, JSON_COMPACT | JSON_PRESERVE_ORDER);
    char *b_txt = json_dumps(sumb, JSON_COMPACT | JSON_PRESERVE_ORDER);
    evs__sb out = {0};
    evs__sb_adds(&out, "{\"a\":");
    evs__sb_adds(&out, a_txt ? a_txt : "null");
    evs__sb_adds(&out, ",\"b\":");
    evs__sb_adds(&out, b_txt ? b_txt : "null");
    evs__sb_printf(&out, ",\"changes\":%zu,\"diff\":", count);
    evs__sb_adds(&out, patch);
    evs__sb_adds(&out, "}");
    free(a_txt);
    free(b_txt);
    if (!a_txt || !b_txt || !(*json = evs__sb_take(&out, len))) rc = evs__err(EVS_ENOMEM, "out of memory");
    evs__sb_free(&out);
cleanup:
    free(ja);
    free(jb);
    free(va);
    free(vb);
    free(patch);
    json_decref(suma);
    json_decref(sumb);
    json_decref(viewa);
    json_decref(viewb);
    return rc;
}
