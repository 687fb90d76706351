/*
 * def.c — saga definitions: defaults, checking and copying a C definition,
 * the effects a builder outputs (evs_saga_out), instance ids of starting
 * events, and retry delays.  Lua definitions (def_lua.c) end up in the same
 * evs__def, so the engine never asks which language a definition is in:
 * evs__def_call and evs__def_key dispatch.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga/saga_internal.h"

/* ------------------------------------------------------------------ names */

const char *evs_saga_status_name(int s) {
    static const char *const n[EVS_SAGA_STATES] = {"running", "compensating", "completed", "compensated",
                                                   "failed", "compensation_failed", "paused"};
    return s >= 0 && s < EVS_SAGA_STATES ? n[s] : "unknown";
}

int evs_saga_status_parse(const char *name, int *out) {
    if (!name || !out) return evs__err(EVS_EINVAL, "saga_status_parse: NULL argument");
    for (int i = 0; i < EVS_SAGA_STATES; i++)
        if (strcmp(name, evs_saga_status_name(i)) == 0) {
            *out = i;
            return EVS_OK;
        }
    return evs__err(EVS_EINVAL,
                    "unknown saga state \"%.64s\" (running, compensating, completed, compensated, failed, "
                    "compensation_failed or paused)",
                    name);
}

int evs_saga_status_terminal(int s) {
    return s == EVS_SAGA_COMPLETED || s == EVS_SAGA_COMPENSATED || s == EVS_SAGA_FAILED;
}

int evs__saga_check_type(const char *name) {
    size_t n = name ? strlen(name) : 0;
    if (!n) return evs__err(EVS_EINVAL, "saga type name is empty");
    if (n > EVS_SAGA_MAX_NAME) return evs__err(EVS_EINVAL, "saga type name is %zu bytes, at most %u", n, EVS_SAGA_MAX_NAME);
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.'))
            return evs__err(EVS_EINVAL,
                            "saga type name \"%.64s\": character %zu is not a letter, digit, '_' or '.' (streams are "
                            "\"saga-{type}-{id}\", so a type holds no '-')",
                            name, i + 1);
    }
    return EVS_OK;
}

int evs__saga_check_id(const char *id) {
    size_t n = id ? strlen(id) : 0;
    if (!n) return evs__err(EVS_EINVAL, "saga id is empty");
    if (n > EVS_SAGA_MAX_ID) return evs__err(EVS_EINVAL, "saga id is %zu bytes, at most %u", n, EVS_SAGA_MAX_ID);
    if (!evs__utf8_valid(id, n, NULL)) return evs__err(EVS_EINVAL, "saga id is not valid UTF-8");
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)id[i] < 0x20) return evs__err(EVS_EINVAL, "saga id contains a control character");
    return EVS_OK;
}

/* --------------------------------------------------------------- defaults */

static void retry_default(evs_saga_retry *r, unsigned on) {
    r->max_attempts = 3;
    r->backoff = EVS_BACKOFF_EXPONENTIAL;
    r->initial_delay_ns = 1000000000ll;
    r->max_delay_ns = 60000000000ll;
    r->jitter = 0.2;
    r->retry_on = on;
}

void evs_saga_step_init(evs_saga_step_def *s) {
    if (!s) return;
    memset(s, 0, sizeof *s);
    s->timeout_ns = 30000000000ll;
    retry_default(&s->retry, EVS_SAGA_ON_TIMEOUT | EVS_SAGA_ON_ERROR);
    retry_default(&s->compensation_retry, EVS_SAGA_ON_ANY);
}

void evs_saga_def_init(evs_saga_def *d) {
    if (!d) return;
    memset(d, 0, sizeof *d);
    d->key_from = EVS_SAGA_KEY_STREAM_ID;
    d->timeout_ns = 300000000000ll;
    d->max_parallel = 5;
}

int64_t evs__retry_delay(const evs_saga_retry *r, uint32_t k, const evs_clock *clock) {
    evs_retry_policy p;
    memset(&p, 0, sizeof p);
    p.backoff = r->backoff;
    p.max_retries = r->max_attempts;
    p.initial_delay_ns = r->initial_delay_ns;
    p.max_delay_ns = r->max_delay_ns;
    p.jitter = r->jitter;
    uint64_t rnd = 0;
    if (r->jitter > 0) {
        if (clock && clock->random) rnd = clock->random(clock->ctx);
        else evs__random(&rnd, sizeof rnd);
    }
    return evs_retry_delay_ns(&p, k, rnd);
}

/* -------------------------------------------------------------------- out */

void evs__out_reset(evs_saga_out *o) {
    for (size_t i = 0; i < o->n; i++) {
        free(o->v[i].type);
        free(o->v[i].target);
        free(o->v[i].data);
    }
    free(o->v);
    free(o->data);
    memset(o, 0, sizeof *o);
}

static int out_bad(evs_saga_out *o, int code, const char *fmt, const char *arg) {
    snprintf(o->error, sizeof o->error, fmt, arg);
    return evs__err(code, "%s", o->error);
}

static int valid_object(const char *data, size_t len) {
    json_error_t je;
    json_t *j = json_loadb(data, len, JSON_REJECT_DUPLICATES, &je);
    int ok = json_is_object(j);
    json_decref(j);
    return ok;
}

static int out_add(evs_saga_out *o, int append, const char *type, const char *target, const char *data, size_t len) {
    if (!o) return evs__err(EVS_EINVAL, "saga_out: out is NULL");
    if (o->error[0]) return evs__err(EVS_EINVAL, "%s", o->error);
    size_t tl = type ? strlen(type) : 0, gl = target ? strlen(target) : 0;
    const char *what = append ? "event type" : "command type";
    if (!tl || tl > EVS_APP_MAX_NAME) return out_bad(o, EVS_EINVAL, "an effect's %s is empty or longer than 128 bytes", what);
    if (!gl) return out_bad(o, EVS_EINVAL, "an effect has no %s", append ? "stream" : "aggregate_id");
    if (gl > (append ? EVS_MAX_STREAM_NAME : EVS_APP_MAX_ID))
        return out_bad(o, EVS_EINVAL, "an effect's %s is too long", append ? "stream" : "aggregate_id");
    if (!data) data = "{}", len = 2;
    if (!valid_object(data, len)) return out_bad(o, EVS_EJSON, "the data of a %s effect is not a JSON object", type);
    if (o->n >= EVS_SAGA_MAX_EFFECTS) {
        snprintf(o->error, sizeof o->error, "more than %u effects", EVS_SAGA_MAX_EFFECTS);
        return evs__err(EVS_ELIMIT, "%s", o->error);
    }
    if (o->n == o->cap) {
        size_t nc = o->cap ? o->cap * 2 : 4;
        evs__effect *nv = realloc(o->v, nc * sizeof *nv);
        if (!nv) return evs__err(EVS_ENOMEM, "out of memory");
        o->v = nv;
        o->cap = nc;
    }
    evs__effect *f = &o->v[o->n];
    memset(f, 0, sizeof *f);
    f->append = append;
    f->type = strdup(type);
    f->target = strdup(target);
    f->data = malloc(len + 1);
    if (!f->type || !f->target || !f->data) {
        free(f->type);
        free(f->target);
        free(f->data);
        return evs__err(EVS_ENOMEM, "out of memory");
    }
    memcpy(f->data, data, len);
    f->data[len] = 0;
    f->data_len = len;
    o->n++;
    return EVS_OK;
}

int evs_saga_out_command(evs_saga_out *o, const char *command_type, const char *aggregate_id, const char *data,
                         size_t data_len) {
    return out_add(o, 0, command_type, aggregate_id, data, data_len);
}

int evs_saga_out_append(evs_saga_out *o, const char *stream, const char *event_type, const char *data,
                        size_t data_len) {
    return out_add(o, 1, event_type, stream, data, data_len);
}

int evs_saga_out_data(evs_saga_out *o, const char *json, size_t len) {
    if (!o || !json) return evs__err(EVS_EINVAL, "saga_out_data: NULL argument");
    if (!valid_object(json, len)) {
        snprintf(o->error, sizeof o->error, "saga data must be a JSON object");
        return evs__err(EVS_EJSON, "%s", o->error);
    }
    char *c = malloc(len + 1);
    if (!c) return evs__err(EVS_ENOMEM, "out of memory");
    memcpy(c, json, len);
    c[len] = 0;
    free(o->data);
    o->data = c;
    o->data_len = len;
    return EVS_OK;
}

/* ------------------------------------------------------------ definitions */

int evs__types_has(const evs__types *t, const char *s, size_t n) {
    for (size_t i = 0; i < t->n; i++)
        if (strlen(t->v[i]) == n && memcmp(t->v[i], s, n) == 0) return 1;
    return 0;
}

static void types_free(evs__types *t) {
    for (size_t i = 0; i < t->n; i++) free(t->v[i]);
    free(t->v);
    t->v = NULL;
    t->n = 0;
}

static int types_copy(evs__types *t, const char *const *v, size_t n, const char *what) {
    if (n > EVS_SAGA_MAX_TYPES) return evs__err(EVS_ELIMIT, "%s: %zu event types, at most %u", what, n, EVS_SAGA_MAX_TYPES);
    if (n && !v) return evs__err(EVS_EINVAL, "%s: the list is NULL", what);
    t->v = n ? calloc(n, sizeof *t->v) : NULL;
    if (n && !t->v) return evs__err(EVS_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        size_t l = v[i] ? strlen(v[i]) : 0;
        if (!l || l > EVS_MAX_TYPE_NAME) return evs__err(EVS_EINVAL, "%s: event type %zu is empty or too long", what, i + 1);
        if (!(t->v[i] = strdup(v[i]))) return evs__err(EVS_ENOMEM, "out of memory");
        t->n = i + 1;
    }
    return EVS_OK;
}

void evs__def_free(evs__def *d) {
    if (!d) return;
    types_free(&d->start_on);
    free(d->key_field);
    for (uint32_t i = 0; d->steps && i < d->n_steps; i++) {
        types_free(&d->steps[i].complete_on);
        types_free(&d->steps[i].fail_on);
    }
    free(d->steps);
    if (d->lua && d->lua_free) d->lua_free(d->lua);
    free(d);
}

static int check_retry(const evs__def *d, const evs__step *s, const evs_saga_retry *r, const char *what) {
    if (r->max_attempts < 1 || r->max_attempts > 1000)
        return evs__err(EVS_EINVAL, "saga %s, step %s: %s max_attempts must be 1..1000 (got %u)", d->name, s->name, what,
                        r->max_attempts);
    if (r->initial_delay_ns < 0 || r->max_delay_ns < 0)
        return evs__err(EVS_EINVAL, "saga %s, step %s: %s delays must not be negative", d->name, s->name, what);
    if (r->jitter < 0 || r->jitter > 1)
        return evs__err(EVS_EINVAL, "saga %s, step %s: %s jitter must be within 0..1", d->name, s->name, what);
    if (r->backoff != EVS_BACKOFF_EXPONENTIAL && r->backoff != EVS_BACKOFF_LINEAR && r->backoff != EVS_BACKOFF_FIXED)
        return evs__err(EVS_EINVAL, "saga %s, step %s: %s backoff is unknown", d->name, s->name, what);
    if (r->retry_on & ~EVS_SAGA_ON_ANY)
        return evs__err(EVS_EINVAL, "saga %s, step %s: %s retry_on has unknown bits", d->name, s->name, what);
    return EVS_OK;
}

int evs__def_check(const evs__def *d) {
    int rc;
    if ((rc = evs__saga_check_type(d->name))) return rc;
    if (d->start_on.n == 0) return evs__err(EVS_EINVAL, "saga %s: no starting event type", d->name);
    if (d->n_steps < 1 || d->n_steps > EVS_SAGA_MAX_STEPS)
        return evs__err(EVS_EINVAL, "saga %s: %u steps, must be 1..%u", d->name, d->n_steps, EVS_SAGA_MAX_STEPS);
    if (d->timeout_ns <= 0) return evs__err(EVS_EINVAL, "saga %s: the saga timeout must be positive", d->name);
    if (d->max_parallel < 1 || d->max_parallel > EVS_SAGA_MAX_PARALLEL)
        return evs__err(EVS_EINVAL, "saga %s: max_parallel must be 1..%u", d->name, EVS_SAGA_MAX_PARALLEL);
    if (d->key_from == EVS_SAGA_KEY_FIELD && (!d->key_field || !*d->key_field))
        return evs__err(EVS_EINVAL, "saga %s: the id comes from a field, but key_field is empty", d->name);
    if (d->key_from == EVS_SAGA_KEY_FN && !d->key_fn && !d->lua)
        return evs__err(EVS_EINVAL, "saga %s: the id comes from key_fn, but it is NULL", d->name);
    if (d->key_from < EVS_SAGA_KEY_STREAM_ID || d->key_from > EVS_SAGA_KEY_FN)
        return evs__err(EVS_EINVAL, "saga %s: unknown key_from %d", d->name, d->key_from);
    for (uint32_t i = 0; i < d->n_steps; i++) {
        const evs__step *s = &d->steps[i];
        size_t n = strlen(s->name);
        if (!n) return evs__err(EVS_EINVAL, "saga %s: step %u has no name", d->name, i + 1);
        if (!evs__utf8_valid(s->name, n, NULL)) return evs__err(EVS_EINVAL, "saga %s: step %u's name is not UTF-8", d->name, i + 1);
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(d->steps[j].name, s->name) == 0)
                return evs__err(EVS_EINVAL, "saga %s: two steps are named \"%s\"", d->name, s->name);
        if (s->group) /* a group is one run of consecutive steps */
            for (uint32_t j = 0; j + 1 < i; j++)
                if (d->steps[j].group == s->group && d->steps[i - 1].group != s->group)
                    return evs__err(EVS_EINVAL, "saga %s: the steps of group %u are not consecutive (step %s)", d->name,
                                    s->group, s->name);
        if ((s->complete_on.n || s->fail_on.n) && s->timeout_ns <= 0)
            return evs__err(EVS_EINVAL, "saga %s, step %s: the timeout must be positive", d->name, s->name);
        if ((rc = check_retry(d, s, &s->retry, "retry")) || (rc = check_retry(d, s, &s->comp_retry, "compensation retry")))
            return rc;
        for (size_t k = 0; k < s->complete_on.n; k++)
            if (evs__types_has(&s->fail_on, s->complete_on.v[k], strlen(s->complete_on.v[k])))
                return evs__err(EVS_EINVAL, "saga %s, step %s: event type %s both completes and fails it", d->name,
                                s->name, s->complete_on.v[k]);
    }
    return EVS_OK;
}

int evs__def_from_c(const evs_saga_def *src, evs__def **out) {
    *out = NULL;
    if (!src || !src->name) return evs__err(EVS_EINVAL, "saga definition or its name is NULL");
    int rc = evs__saga_check_type(src->name);
    if (rc) return rc;
    if (!src->steps || src->n_steps == 0 || src->n_steps > EVS_SAGA_MAX_STEPS)
        return evs__err(EVS_EINVAL, "saga %s: %zu steps, must be 1..%u", src->name, src->steps ? src->n_steps : 0,
                        EVS_SAGA_MAX_STEPS);
    evs__def *d = calloc(1, sizeof *d);
    if (!d) return evs__err(EVS_ENOMEM, "out of memory");
    snprintf(d->name, sizeof d->name, "%s", src->name);
    d->key_from = src->key_from;
    d->key_fn = src->key_fn;
    d->init = src->init;
    d->has_init = src->init != NULL;
    d->timeout_ns = src->timeout_ns;
    d->max_parallel = src->max_parallel;
    d->ctx = src->ctx;
    if (src->key_field && !(d->key_field = strdup(src->key_field))) goto oom;
    if ((rc = types_copy(&d->start_on, src->start_on, src->n_start_on, "start_on"))) goto fail;
    d->steps = calloc(src->n_steps, sizeof *d->steps);
    if (!d->steps) goto oom;
    d->n_steps = (uint32_t)src->n_steps;
    for (size_t i = 0; i < src->n_steps; i++) {
        const evs_saga_step_def *ss = &src->steps[i];
        evs__step *s = &d->steps[i];
        size_t nl = ss->name ? strlen(ss->name) : 0;
        if (nl > EVS_SAGA_MAX_STEP_NAME) {
            rc = evs__err(EVS_EINVAL, "saga %s: step %zu's name is longer than %u bytes", d->name, i + 1,
                          EVS_SAGA_MAX_STEP_NAME);
            goto fail;
        }
        snprintf(s->name, sizeof s->name, "%s", ss->name ? ss->name : "");
        s->group = ss->group;
        s->fn[EVS__FN_ACTION] = ss->action;
        s->fn[EVS__FN_COMPENSATE] = ss->compensate;
        s->fn[EVS__FN_DONE] = ss->done;
        for (int k = 0; k < 3; k++) s->has[k] = s->fn[k] != NULL;
        s->timeout_ns = ss->timeout_ns;
        s->retry = ss->retry;
        s->comp_retry = ss->compensation_retry;
        s->ctx = ss->ctx;
        if ((rc = types_copy(&s->complete_on, ss->complete_on, ss->n_complete_on, "complete_on")) ||
            (rc = types_copy(&s->fail_on, ss->fail_on, ss->n_fail_on, "fail_on")))
            goto fail;
    }
    if ((rc = evs__def_check(d))) goto fail;
    *out = d;
    return EVS_OK;
oom:
    rc = evs__err(EVS_ENOMEM, "out of memory");
fail:
    evs__def_free(d);
    return rc;
}

int evs__def_call(evs__def *d, int which, uint32_t step, const evs_saga_ctx *sc, evs_saga_out *out, char *err,
                  size_t cap) {
    err[0] = 0;
    if (d->lua) return d->lua_call(d, which, step, sc, out, err, cap);
    evs_saga_fn fn = which == EVS__FN_INIT ? d->init : d->steps[step].fn[which];
    void *ctx = which == EVS__FN_INIT ? d->ctx : d->steps[step].ctx;
    if (!fn) return 0;
    int r = fn(ctx, sc, out, err, cap);
    if (r == 0 && out->error[0]) {
        snprintf(err, cap, "%s", out->error);
        return 1;
    }
    if (r != 0 && !err[0]) snprintf(err, cap, "%s", out->error[0] ? out->error : "the builder failed without a reason");
    return r != 0;
}

/* ------------------------------------------------------------------- keys */

static int put_key(const char *s, size_t n, char *buf, size_t cap, char *err, size_t errcap) {
    if (n == 0 || n > EVS_SAGA_MAX_ID || n >= cap) {
        snprintf(err, errcap, "the id is %s", n ? "too long" : "empty");
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20) {
            snprintf(err, errcap, "the id contains a control character");
            return -1;
        }
    if (!evs__utf8_valid(s, n, NULL)) {
        snprintf(err, errcap, "the id is not valid UTF-8");
        return -1;
    }
    memmove(buf, s, n); /* s may be buf itself (key_fn wrote it there) */
    buf[n] = 0;
    return (int)n;
}

int evs__def_key(evs__def *d, const evs_event *ev, char *buf, size_t cap, char *err, size_t errcap) {
    err[0] = 0;
    switch (d->key_from) {
    case EVS_SAGA_KEY_STREAM_ID: {
        const char *dash = memchr(ev->stream, '-', ev->stream_len);
        if (!dash) {
            snprintf(err, errcap, "stream %.*s has no '-' to take the id after", (int)ev->stream_len, ev->stream);
            return -1;
        }
        return put_key(dash + 1, ev->stream_len - (size_t)(dash + 1 - ev->stream), buf, cap, err, errcap);
    }
    case EVS_SAGA_KEY_CORRELATION: {
        if (!ev->has_correlation_id) {
            snprintf(err, errcap, "the event has no correlation id");
            return -1;
        }
        char u[37];
        evs_uuid_format(&ev->correlation_id, u);
        return put_key(u, 36, buf, cap, err, errcap);
    }
    case EVS_SAGA_KEY_FIELD: {
        json_t *root = json_loadb(ev->data, ev->data_len, 0, NULL), *v = root;
        const char *p = d->key_field;
        while (v && *p) {
            const char *dot = strchr(p, '.');
            size_t n = dot ? (size_t)(dot - p) : strlen(p);
            char part[256];
            snprintf(part, sizeof part, "%.*s", (int)(n < 255 ? n : 255), p);
            v = json_is_object(v) ? json_object_get(v, part) : NULL;
            p += n + (dot ? 1 : 0);
        }
        int r;
        char num[32];
        if (json_is_string(v)) {
            r = put_key(json_string_value(v), json_string_length(v), buf, cap, err, errcap);
        } else if (json_is_integer(v)) {
            snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v));
            r = put_key(num, strlen(num), buf, cap, err, errcap);
        } else {
            snprintf(err, errcap, "data.%s is %s", d->key_field, v ? "neither a string nor an integer" : "missing");
            r = -1;
        }
        json_decref(root);
        return r;
    }
    default:
        if (d->lua) return d->lua_key(d, ev, buf, cap, err, errcap);
        {
            int r = d->key_fn(d->ctx, ev, buf, cap);
            if (r < 0) {
                snprintf(err, errcap, "key_fn found no id");
                return -1;
            }
            return put_key(buf, (size_t)r, buf, cap, err, errcap);
        }
    }
}
