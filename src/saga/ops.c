/*
 * ops.c — what an operator (and, later, the HTTP routes and `evstore saga`)
 * sees and does: one instance folded from its stream (evs_saga_get, the
 * JSON of evs_saga_show_json with its timeline), listings and counters from
 * the index, and the actions pause, resume, retry, skip, compensate and
 * abort.
 *
 * An action claims the instance (waiting up to OP_WAIT_MS for a worker to
 * finish its run), takes the lease, looks up and records whatever the
 * instance did that was not recorded yet (invariant 3 of saga_internal.h),
 * checks that the action applies to the state that results, and records it
 * as an event of the saga's stream, in one append with its expected
 * version.  Then the instance is queued, so the workers carry on from the
 * new state.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga/saga_internal.h"

#define OP_WAIT_MS 5000

static int check_names(const char *type, const char *id) {
    int rc = evs__saga_check_type(type);
    if (!rc) rc = evs__saga_check_id(id);
    return rc;
}

/* --------------------------------------------------------------- reading */

int evs_saga_get(evs_saga_engine *e, const char *type, const char *id, evs_saga_info *out) {
    if (!e || !out) return evs__err(EVS_EINVAL, "saga_get: NULL argument");
    int rc = check_names(type, id);
    if (rc) return rc;
    evs__saga *S;
    rc = evs__saga_load(e->store, type, id, 0, &S);
    if (rc == EVS_ENOTFOUND) return evs__err(EVS_ENOTFOUND, "no saga %s/%s", type, id);
    if (rc) return rc;
    evs__saga_info(S, out);
    evs__saga_free(S);
    return EVS_OK;
}

static json_t *jtime(int64_t ns) {
    if (!ns) return json_null();
    char b[40];
    evs_time_format(ns, b);
    return json_string(b);
}

static json_t *jbits(uint64_t bits) {
    json_t *a = json_array();
    for (int i = 0; a && i < 64; i++)
        if (bits >> i & 1) json_array_append_new(a, json_integer(i));
    return a;
}

static json_t *step_json(const evs__saga *S, uint32_t i) {
    const evs__sstep *t = &S->steps[i];
    json_t *o = json_object();
    if (!o) return NULL;
    json_object_set_new(o, "name", json_string(S->names[i]));
    json_object_set_new(o, "group", json_integer(S->groups[i]));
    json_object_set_new(o, "status", json_string(evs__st_name(t->st)));
    json_object_set_new(o, "attempt", json_integer(t->attempt));
    json_object_set_new(o, "accepted", jbits(t->accepted));
    if (t->due) json_object_set_new(o, t->st == EVS__ST_WAITING ? "deadline" : "retry_at", jtime(t->due));
    if (t->st == EVS__ST_WAITING) json_object_set_new(o, "answers_after", json_integer((json_int_t)t->from));
    if (t->cs != EVS__CS_NONE) {
        json_t *c = json_object();
        json_object_set_new(c, "status", json_string(evs__cs_name(t->cs)));
        json_object_set_new(c, "attempt", json_integer(t->cattempt));
        json_object_set_new(c, "done", jbits(t->cdone));
        if (t->cdue) json_object_set_new(c, "retry_at", jtime(t->cdue));
        json_object_set_new(o, "compensation", c);
    }
    if (t->error) json_object_set_new(o, "last_error", json_string(t->error));
    return o;
}

int evs_saga_info_to_json(const evs_saga_info *in, char **json, size_t *len) {
    if (!in || !json) return evs__err(EVS_EINVAL, "saga_info_to_json: NULL argument");
    char corr[37];
    evs_uuid_format(&in->correlation_id, corr);
    json_t *o = json_object();
    if (!o) return evs__err(EVS_ENOMEM, "out of memory");
    json_object_set_new(o, "type", json_string(in->type));
    json_object_set_new(o, "id", json_string(in->id));
    json_object_set_new(o, "stream", json_string(in->stream));
    json_object_set_new(o, "correlation_id", json_string(corr));
    json_object_set_new(o, "status", json_string(evs_saga_status_name(in->status)));
    if (in->status == EVS_SAGA_PAUSED)
        json_object_set_new(o, "paused_from", json_string(evs_saga_status_name(in->paused_from)));
    if (in->step >= 0)
        json_object_set_new(o, "step", json_pack("{s:i,s:s,s:i}", "index", in->step, "name", in->step_name, "attempt",
                                                 (int)in->attempt));
    else
        json_object_set_new(o, "step", json_null());
    json_object_set_new(o, "started_at", jtime(in->started_at));
    json_object_set_new(o, "updated_at", jtime(in->updated_at));
    json_object_set_new(o, "next_due", jtime(in->next_due));
    json_object_set_new(o, "version", json_integer((json_int_t)in->version));
    if (in->last_error[0]) json_object_set_new(o, "last_error", json_string(in->last_error));
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!s) return evs__err(EVS_ENOMEM, "out of memory");
    *json = s;
    if (len) *len = strlen(s);
    return EVS_OK;
}

int evs_saga_show_json(evs_saga_engine *e, const char *type, const char *id, char **json, size_t *len) {
    if (!e || !json) return evs__err(EVS_EINVAL, "saga_show_json: NULL argument");
    int rc = check_names(type, id);
    if (rc) return rc;
    char stream[EVS_MAX_STREAM_NAME + 1], err[512];
    if ((rc = evs__saga_stream(type, id, stream))) return rc;
    evs_reader *r;
    rc = evs_read_stream(e->store, stream, 1, EVS_FORWARD, 0, &r);
    if (rc == EVS_ENOTFOUND) return evs__err(EVS_ENOTFOUND, "no saga %s/%s", type, id);
    if (rc) return rc;
    evs__saga *S = calloc(1, sizeof *S);
    json_t *timeline = json_array(), *o = NULL;
    if (!S || !timeline) {
        rc = evs__err(EVS_ENOMEM, "out of memory");
        goto out;
    }
    snprintf(S->type, sizeof S->type, "%s", type);
    snprintf(S->id, sizeof S->id, "%s", id);
    const evs_event *ev;
    while ((rc = evs_reader_next(r, &ev)) == EVS_OK) {
        if (evs__saga_fold_event(S, ev, 1, err, sizeof err)) {
            rc = evs__err(EVS_ECORRUPT, "%s", err);
            goto out;
        }
        json_t *d = json_loadb(ev->data, ev->data_len, 0, NULL), *t = json_object();
        if (!t) continue;
        json_object_set_new(t, "version", json_integer((json_int_t)ev->stream_position));
        json_object_set_new(t, "position", json_integer((json_int_t)ev->global_position));
        json_object_set_new(t, "type", json_stringn(ev->event_type, ev->event_type_len));
        int64_t at = json_integer_value(json_object_get(d, "at"));
        json_object_set_new(t, "at", jtime(at ? at : ev->recorded_at));
        /* what the event says, without the bulky parts the state already shows */
        if (json_is_object(d)) {
            json_object_del(d, "at");
            json_object_del(d, "data");
            json_object_del(d, "steps");
            json_object_del(d, "lease");
            json_object_update(t, d);
        }
        json_decref(d);
        json_array_append_new(timeline, t);
    }
    if (rc != EVS_DONE) goto out;
    if (!S->n_steps) {
        rc = evs__err(EVS_ECORRUPT, "%s does not begin with SagaStarted", stream);
        goto out;
    }
    evs_saga_info info;
    evs__saga_info(S, &info);
    char corr[37];
    evs_uuid_format(&S->corr, corr);
    o = json_object();
    json_object_set_new(o, "type", json_string(type));
    json_object_set_new(o, "id", json_string(id));
    json_object_set_new(o, "stream", json_string(stream));
    json_object_set_new(o, "correlation_id", json_string(corr));
    json_object_set_new(o, "status", json_string(evs_saga_status_name(S->status)));
    if (S->status == EVS_SAGA_PAUSED) json_object_set_new(o, "paused_from", json_string(evs_saga_status_name(S->paused_from)));
    if (info.step >= 0)
        json_object_set_new(o, "step", json_pack("{s:i,s:s,s:i}", "index", info.step, "name", info.step_name, "attempt",
                                                 (int)info.attempt));
    else
        json_object_set_new(o, "step", json_null());
    json_object_set_new(o, "started_at", jtime(S->started_at));
    json_object_set_new(o, "updated_at", jtime(S->updated_at));
    json_object_set_new(o, "deadline", jtime(S->deadline));
    json_object_set_new(o, "next_due", jtime(info.next_due));
    json_object_set_new(o, "version", json_integer((json_int_t)S->version));
    if (S->error[0]) json_object_set_new(o, "last_error", json_string(S->error));
    if (S->lease_node[0])
        json_object_set_new(o, "lease", json_pack("{s:s,s:o}", "node", S->lease_node, "until", jtime(S->lease_until)));
    json_t *data = S->data ? json_loadb(S->data, S->data_len, 0, NULL) : NULL;
    json_object_set_new(o, "data", data ? data : json_object());
    json_t *steps = json_array();
    for (uint32_t i = 0; steps && i < S->n_steps; i++) json_array_append_new(steps, step_json(S, i));
    json_object_set_new(o, "steps", steps);
    json_object_set_new(o, "timeline", timeline);
    timeline = NULL;
    char *s = json_dumps(o, JSON_COMPACT);
    if (!s) {
        rc = evs__err(EVS_ENOMEM, "out of memory");
        goto out;
    }
    *json = s;
    if (len) *len = strlen(s);
    rc = EVS_OK;
out:
    evs_reader_close(r);
    json_decref(timeline);
    json_decref(o);
    evs__saga_free(S);
    return rc;
}

int evs_saga_list(evs_saga_engine *e, const evs_saga_query *q, evs_saga_info *out, size_t max, size_t *count,
                  char next_cursor[EVS_SAGA_CURSOR_MAX]) {
    if (!e || !q || !count || (max && !out)) return evs__err(EVS_EINVAL, "saga_list: NULL argument");
    if (q->stuck_ns < 0) return evs__err(EVS_EINVAL, "saga_list: stuck_ns must not be negative");
    return evs__cat_list(e, q, out, max, count, next_cursor);
}

int evs_saga_get_type_stats(evs_saga_engine *e, evs_saga_type_stats *out, size_t max, size_t *count) {
    if (!e || !count || (max && !out)) return evs__err(EVS_EINVAL, "saga_get_type_stats: NULL argument");
    return evs__cat_type_stats(e, out, max, count);
}

int evs_saga_get_step_stats(evs_saga_engine *e, evs_saga_step_stats *out, size_t max, size_t *count) {
    if (!e || !count || (max && !out)) return evs__err(EVS_EINVAL, "saga_get_step_stats: NULL argument");
    return evs__cat_step_stats(e, out, max, count);
}

/* ---------------------------------------------------------------- acting */

typedef struct op_arg {
    const char *reason;
    const char *step;
} op_arg;

static json_t *op_event(evs_saga_engine *e, const op_arg *a) {
    json_t *o = json_object();
    if (!o) return NULL;
    json_object_set_new(o, "at", json_integer(evs__engine_now(e)));
    if (a->reason && *a->reason) json_object_set_new(o, "reason", json_string(a->reason));
    json_object_set_new(o, "by", json_string("operator"));
    return o;
}

static int op_add(evs__saga *S, evs__batch *b, const char *type, json_t *o) {
    char err[512];
    if (!o) return evs__err(EVS_ENOMEM, "out of memory");
    if (evs__batch_add(S, b, type, o, err, sizeof err)) return evs__err(EVS_ECORRUPT, "%s", err);
    return EVS_OK;
}

static int refuse(const evs__saga *S, const char *what) {
    return evs__err(EVS_ECONFLICT, "saga %s/%s is %s: %s", S->type, S->id, evs_saga_status_name(S->status), what);
}

static int do_pause(evs_saga_engine *e, evs__def *d, evs__saga *S, void *arg, evs__batch *b) {
    (void)d;
    if (S->status != EVS_SAGA_RUNNING && S->status != EVS_SAGA_COMPENSATING)
        return refuse(S, "only a running or compensating saga can be paused");
    return op_add(S, b, EVS__EV_PAUSED, op_event(e, arg));
}

static int do_resume(evs_saga_engine *e, evs__def *d, evs__saga *S, void *arg, evs__batch *b) {
    (void)d;
    if (S->status != EVS_SAGA_PAUSED) return refuse(S, "only a paused saga can be resumed");
    json_t *o = op_event(e, arg);
    int64_t now = evs__engine_now(e);
    if (o) json_object_set_new(o, "shift", json_integer(S->paused_at ? now - S->paused_at : 0));
    return op_add(S, b, EVS__EV_RESUMED, o);
}

static int do_retry(evs_saga_engine *e, evs__def *d, evs__saga *S, void *arg, evs__batch *b) {
    (void)d;
    int any = 0;
    if (S->status == EVS_SAGA_RUNNING && S->cur < S->n_steps) {
        uint32_t a, z;
        evs__saga_group(S, S->cur, &a, &z);
        for (uint32_t k = a; k < z; k++) any |= S->steps[k].st == EVS__ST_RETRY || S->steps[k].st == EVS__ST_WAITING;
    } else if (S->status == EVS_SAGA_COMPENSATING || S->status == EVS_SAGA_COMPENSATION_FAILED) {
        for (uint32_t k = 0; k < S->n_steps; k++) any |= S->steps[k].cs == EVS__CS_RETRY || S->steps[k].cs == EVS__CS_FAILED;
    } else {
        return refuse(S, "only a running, compensating or compensation_failed saga has something to retry");
    }
    if (!any) return refuse(S, "no step is waiting, waiting for a retry or failed");
    return op_add(S, b, EVS__EV_RETRY, op_event(e, arg));
}

static int do_skip(evs_saga_engine *e, evs__def *d, evs__saga *S, void *arg, evs__batch *b) {
    (void)d;
    op_arg *a = arg;
    json_t *steps = json_array(), *acc = json_array();
    int comp;
    if (S->status == EVS_SAGA_RUNNING && S->cur < S->n_steps) {
        comp = 0;
        uint32_t lo, hi;
        evs__saga_group(S, S->cur, &lo, &hi);
        for (uint32_t k = lo; k < hi; k++) {
            int st = S->steps[k].st;
            if (st == EVS__ST_DONE || st == EVS__ST_SKIPPED) continue;
            if (a->step ? strcmp(a->step, S->names[k]) != 0 : json_array_size(steps) > 0) continue;
            json_array_append_new(steps, json_integer(k));
            json_array_append_new(acc, jbits(S->steps[k].accepted));
        }
    } else if (S->status == EVS_SAGA_COMPENSATING || S->status == EVS_SAGA_COMPENSATION_FAILED) {
        comp = 1;
        int cur;
        uint32_t att;
        if ((cur = evs__saga_current(S, &att)) >= 0) {
            uint32_t lo, hi;
            evs__saga_group(S, (uint32_t)cur, &lo, &hi);
            for (uint32_t k = lo; k < hi; k++) {
                int cs = S->steps[k].cs;
                if (cs != EVS__CS_PENDING && cs != EVS__CS_RETRY && cs != EVS__CS_FAILED) continue;
                if (a->step && strcmp(a->step, S->names[k]) != 0) continue;
                json_array_append_new(steps, json_integer(k));
                json_array_append_new(acc, json_array());
            }
        }
    } else {
        json_decref(steps);
        json_decref(acc);
        return refuse(S, "only a running, compensating or compensation_failed saga has a step to skip");
    }
    if (json_array_size(steps) == 0) {
        json_decref(steps);
        json_decref(acc);
        return a->step ? evs__err(EVS_ECONFLICT, "saga %s/%s: step %s is not a current %s", S->type, S->id, a->step,
                                  comp ? "compensation" : "step")
                       : refuse(S, "there is no current step to skip");
    }
    json_t *o = op_event(e, arg);
    if (!o) {
        json_decref(steps);
        json_decref(acc);
        return evs__err(EVS_ENOMEM, "out of memory");
    }
    json_object_set_new(o, "steps", steps);
    json_object_set_new(o, "accepted", acc);
    json_object_set_new(o, "phase", json_string(comp ? "compensation" : "action"));
    return op_add(S, b, EVS__EV_SKIPPED, o);
}

static int do_compensate(evs_saga_engine *e, evs__def *d, evs__saga *S, void *arg, evs__batch *b) {
    op_arg *a = arg;
    int from = S->status == EVS_SAGA_PAUSED ? S->paused_from : S->status;
    if (from != EVS_SAGA_RUNNING) return refuse(S, "only a running (or paused running) saga can be compensated by hand");
    const char *why = a->reason && *a->reason ? a->reason : "compensation requested by an operator";
    if (S->cur < S->n_steps) {
        /* steps under way end here, with what their current attempt did (looked up just before) */
        uint32_t lo, hi;
        evs__saga_group(S, S->cur, &lo, &hi);
        for (uint32_t k = lo; k < hi; k++) {
            evs__sstep *t = &S->steps[k];
            if (t->st != EVS__ST_PENDING && t->st != EVS__ST_RETRY && t->st != EVS__ST_WAITING) continue;
            json_t *o = json_pack("{s:I,s:i,s:s,s:i,s:o,s:s,s:s}", "at", (json_int_t)evs__engine_now(e), "step", (int)k,
                                  "name", S->names[k], "attempt", (int)t->attempt, "accepted", jbits(t->accepted), "kind",
                                  "operator", "reason", why);
            int rc = op_add(S, b, EVS__EV_FAILED_STEP, o);
            if (rc) return rc;
        }
    }
    return evs__worker_compensate(e, d, S, b, why, "operator");
}

static int do_abort(evs_saga_engine *e, evs__def *d, evs__saga *S, void *arg, evs__batch *b) {
    (void)d;
    if (evs_saga_status_terminal(S->status)) return refuse(S, "a finished saga cannot be aborted");
    op_arg *a = arg;
    op_arg a2 = *a;
    if (!a2.reason || !*a2.reason) a2.reason = "aborted by an operator";
    return op_add(S, b, EVS__EV_FAILED, op_event(e, &a2));
}

static int operate(evs_saga_engine *e, const char *type, const char *id, evs__op_fn fn, op_arg *a, const char *what) {
    if (!e) return evs__err(EVS_EINVAL, "saga_%s: engine is NULL", what);
    if (e->cfg.read_only) return evs__err(EVS_EINVAL, "saga_%s: the engine is read-only", what);
    int rc = check_names(type, id);
    if (rc) return rc;
    /* the claim below keeps the workers of this process off the instance, not those of another (invariant 5) */
    if ((rc = evs__engine_hold(e))) return evs__err_prefix(rc, "saga_%s: ", what);
    if (!evs__engine_find_def(e, type)) return evs__err(EVS_ENOTFOUND, "no saga type %s is registered", type);
    if (a->reason && strlen(a->reason) > 1000) return evs__err(EVS_EINVAL, "saga_%s: the reason is longer than 1000 bytes", what);
    if (!evs__engine_claim_wait(e, type, id, OP_WAIT_MS))
        return evs__err(EVS_ELOCKED, "saga %s/%s is busy with a worker for more than %d ms; try again", type, id,
                        OP_WAIT_MS);
    rc = evs__worker_operate(e, type, id, fn, a);
    evs__engine_release(e, type, id);
    if (rc == EVS_OK) evs__engine_enqueue(e, EVS__JOB_RUN, type, id, 0, 0);
    return rc;
}

int evs_saga_pause(evs_saga_engine *e, const char *type, const char *id, const char *reason) {
    op_arg a = {reason, NULL};
    return operate(e, type, id, do_pause, &a, "pause");
}

int evs_saga_resume(evs_saga_engine *e, const char *type, const char *id) {
    op_arg a = {NULL, NULL};
    return operate(e, type, id, do_resume, &a, "resume");
}

int evs_saga_retry_now(evs_saga_engine *e, const char *type, const char *id) {
    op_arg a = {NULL, NULL};
    return operate(e, type, id, do_retry, &a, "retry");
}

int evs_saga_skip(evs_saga_engine *e, const char *type, const char *id, const char *step, const char *reason) {
    op_arg a = {reason, step};
    return operate(e, type, id, do_skip, &a, "skip");
}

int evs_saga_compensate(evs_saga_engine *e, const char *type, const char *id, const char *reason) {
    op_arg a = {reason, NULL};
    return operate(e, type, id, do_compensate, &a, "compensate");
}

int evs_saga_abort(evs_saga_engine *e, const char *type, const char *id, const char *reason) {
    op_arg a = {reason, NULL};
    return operate(e, type, id, do_abort, &a, "abort");
}
