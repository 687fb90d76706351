/*
 * worker.c — advancing one instance: the claim is held (engine.c), this
 * file takes the lease, sends the effects of the current attempts through
 * the command bus, reads the answers from the log, and records what
 * happened as transition events of the saga's stream.
 *
 * A run ("burst") folds the stream, then loops: send what is due, turn the
 * results into transitions (folded into the in-memory state at once, so the
 * next iteration sees them), until nothing moves; the transitions are
 * appended in batches with the expected version of the stream.
 *
 * Why a re-run after kill -9 neither skips nor repeats an effect:
 *   - the command id of an effect is a function of the recorded state
 *     (invariant 2): the step, the phase, the effect's index and the attempt
 *     the fold says runs next.  A re-run sends the same ids; the command bus
 *     answers a known id with its first result (an accepted command forever,
 *     through its events; a rejection within the idempotency window, which a
 *     re-run after a crash falls in because failures are recorded before
 *     anything else happens: invariant 4);
 *   - successes may stay unrecorded for a while (a burst of five steps
 *     appends one batch): a re-run repeats the same sends, gets the same
 *     answers and reaches the same point;
 *   - where a decision does not follow from those answers — a step's or the
 *     saga's deadline, an operator's action — the effects of the current
 *     attempts are looked up, never sent (evs__app_command_lookup), and what
 *     the lookup finds is recorded first (invariant 3).  The saga's deadline
 *     is enforced this way too: after it passed nothing new is sent.
 *   - "from", the log position after which answers count, is the global
 *     position of the saga's last recorded event when the effects were sent:
 *     the same in a re-run, because the recorded state is.
 *
 * The lease: every batch's last event carries {"node", "until"}.  A run
 * starts only when the lease is this node's with at least half of it left,
 * or free, or expired (then a SagaLeased event takes it first); an append
 * refused on the version means someone else wrote: the run reloads and
 * starts over (an operator's pause, another node that took an expired
 * lease).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app_access.h"
#include "saga/saga_internal.h"

#define FLUSH_EVERY 32            /* transitions kept unrecorded at most */
#define MAX_ITER 10000

/* ------------------------------------------------------------------ batch */

int evs__batch_add(evs__saga *S, evs__batch *b, const char *type, json_t *data, char *err, size_t cap) {
    if (b->n == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 16;
        const char **nt = realloc(b->types, nc * sizeof *nt);
        if (nt) b->types = nt;
        json_t **nd = realloc(b->data, nc * sizeof *nd);
        if (nd) b->data = nd;
        if (!nt || !nd) {
            json_decref(data);
            snprintf(err, cap, "out of memory");
            return -1;
        }
        b->cap = nc;
    }
    if (evs__saga_fold(S, type, data, 0, 0, 1, err, cap)) {
        json_decref(data);
        return -1;
    }
    b->types[b->n] = type;
    b->data[b->n++] = data;
    if (!strcmp(type, EVS__EV_FAILED_STEP) || !strcmp(type, EVS__EV_COMP_FAILED) || !strcmp(type, EVS__EV_COMPENSATING) ||
        !strcmp(type, EVS__EV_FAILED))
        b->must_flush = 1;
    return 0;
}

static void batch_clear(evs__batch *b) {
    for (size_t i = 0; i < b->n; i++) json_decref(b->data[i]);
    b->n = 0;
    b->must_flush = 0;
}

void evs__batch_free(evs__batch *b) {
    batch_clear(b);
    free(b->types);
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* ------------------------------------------------------------- the run */

typedef struct run {
    evs_saga_engine *e;
    evs__def *d;
    evs__saga *S;
    evs__batch b;
    int probe;                    /* look effects up instead of sending them */
    char id[EVS_SAGA_MAX_ID + 1];
    char stream[EVS_MAX_STREAM_NAME + 1];
    char corr[37], trigger[37];
    char err[512];
} run;

/* One effect to send or look up, and what came of it. */
typedef struct effect_job {
    run *x;
    const evs__effect *f;
    uint32_t step, index, attempt;
    int comp;
    char cmd_id[EVS_APP_MAX_ID + 1];
    int rc;                       /* a store error (negative), else EVS_OK */
    int found;                    /* lookups: 1 when the command ran */
    int outcome;
    char reason[512];
} effect_job;

static json_t *jat(run *x, int64_t at, uint32_t step) {
    json_t *o = json_object();
    if (!o) return NULL;
    json_object_set_new(o, "at", json_integer(at));
    if (step != UINT32_MAX) {
        json_object_set_new(o, "step", json_integer(step));
        json_object_set_new(o, "name", json_string(x->S->names[step]));
    }
    return o;
}

static json_t *jbits(uint64_t bits) {
    json_t *a = json_array();
    for (int i = 0; a && i < 64; i++)
        if (bits >> i & 1) json_array_append_new(a, json_integer(i));
    return a;
}

static int add(run *x, const char *type, json_t *data) {
    if (!data) return evs__err(EVS_ENOMEM, "out of memory");
    if (evs__batch_add(x->S, &x->b, type, data, x->err, sizeof x->err))
        return evs__err(EVS_ECORRUPT, "saga %s: %s", x->stream, x->err);
    return EVS_OK;
}

static const char *kind_name(unsigned k) {
    switch (k) {
    case EVS_SAGA_ON_REJECTED: return "rejected";
    case EVS_SAGA_ON_EVENT: return "event";
    case EVS_SAGA_ON_TIMEOUT: return "timeout";
    case EVS_SAGA_ON_ERROR: return "error";
    default: return "saga_timeout";
    }
}

static void make_cmd_id(const evs__saga *S, uint32_t step, int comp, uint32_t index, uint32_t attempt,
                        char out[EVS_APP_MAX_ID + 1]) {
    int n = snprintf(out, EVS_APP_MAX_ID + 1, "saga/%s/%s/%u/%c%u/%u", S->type, S->id, step, comp ? 'c' : 'a', index,
                     attempt);
    if (n >= 0 && n <= (int)EVS_APP_MAX_ID) return;
    evs_uuid h; /* a long id: hashed, still a function of the same parts */
    evs__saga_uuid("saga-command", S->type, S->id, &h);
    char u[37];
    evs_uuid_format(&h, u);
    snprintf(out, EVS_APP_MAX_ID + 1, "saga/%s/%u/%c%u/%u", u, step, comp ? 'c' : 'a', index, attempt);
}

/* --------------------------------------------------------------- flushing */

static int flush(run *x) {
    evs_saga_engine *e = x->e;
    evs__batch *b = &x->b;
    if (b->n == 0) return EVS_OK;
    int64_t now = evs__engine_now(e);
    json_t *lease = json_pack("{s:s,s:I}", "node", e->node, "until", (json_int_t)(now + e->cfg.lease_ns));
    if (!lease) return evs__err(EVS_ENOMEM, "out of memory");
    json_object_set_new(b->data[b->n - 1], "lease", lease);
    size_t n = b->n;
    evs_event_in in[FLUSH_EVERY + 8], *inp = n <= FLUSH_EVERY + 8 ? in : calloc(n, sizeof *inp);
    char **texts = calloc(n, sizeof *texts);
    int rc = EVS_OK;
    if (!inp || !texts) {
        rc = evs__err(EVS_ENOMEM, "out of memory");
        goto out;
    }
    memset(inp, 0, b->n * sizeof *inp);
    for (size_t i = 0; i < b->n; i++) {
        if (!(texts[i] = json_dumps(b->data[i], JSON_COMPACT))) {
            rc = evs__err(EVS_ENOMEM, "out of memory");
            goto out;
        }
        inp[i].event_type = b->types[i];
        inp[i].data = texts[i];
        inp[i].data_len = strlen(texts[i]);
        inp[i].correlation_id = &x->S->corr;
        if (!evs_uuid_is_nil(&x->S->trigger_id)) inp[i].causation_id = &x->S->trigger_id;
    }
    evs_append_result res;
    rc = evs_append(e->store, x->stream, (int64_t)x->S->version, inp, b->n, &res, NULL);
    if (rc == EVS_OK) {
        x->S->version = res.last_stream_position;
        x->S->last_gpos = res.last_global_position;
        snprintf(x->S->lease_node, sizeof x->S->lease_node, "%s", e->node);
        x->S->lease_until = now + e->cfg.lease_ns;
        atomic_fetch_add(&e->st_flushes, 1);
        batch_clear(b);
    } else if (rc == EVS_ECONFLICT) {
        atomic_fetch_add(&e->st_conflicts, 1);
    }
out:
    for (size_t i = 0; texts && i < n; i++) free(texts[i]); /* the batch may be cleared by now: n is ours */
    free(texts);
    if (inp != in) free(inp);
    return rc;
}

/* ------------------------------------------------------------ the lease */

/* EVS_OK with the lease held, EVS_ELOCKED (*until set) when another node holds it. */
static int take_lease(run *x, int64_t *until) {
    evs_saga_engine *e = x->e;
    evs__saga *S = x->S;
    int64_t now = evs__engine_now(e);
    int mine = strcmp(S->lease_node, e->node) == 0;
    if (mine && S->lease_until - now > e->cfg.lease_ns / 2) return EVS_OK;
    if (!mine && S->lease_node[0] && S->lease_until > now) {
        *until = S->lease_until;
        return EVS_ELOCKED;
    }
    if (evs_saga_status_terminal(S->status)) return EVS_OK; /* nothing left to guard */
    json_t *d = jat(x, now, UINT32_MAX);
    int rc = add(x, EVS__EV_LEASED, d);
    if (rc) return rc;
    return flush(x);
}

/* ---------------------------------------------------------- effects */

static void effect_metadata(const effect_job *j, char *buf, size_t cap) {
    const evs__saga *S = j->x->S;
    json_t *m = json_pack("{s:s,s:s,s:s,s:s,s:i,s:i}", "saga", S->type, "saga_id", S->id, "saga_step",
                          S->names[j->step], "saga_phase", j->comp ? "compensation" : "action", "saga_effect",
                          (int)j->index, "saga_attempt", (int)j->attempt);
    char *s = m ? json_dumps(m, JSON_COMPACT) : NULL;
    json_decref(m);
    snprintf(buf, cap, "%s", s ? s : "{}");
    free(s);
}

static void exec_effect(effect_job *j) {
    run *x = j->x;
    evs_saga_engine *e = x->e;
    evs_command_result res;
    if (x->probe) {
        atomic_fetch_add(&e->st_lookups, 1);
        int r = evs__app_command_lookup(e->app, j->cmd_id, &res);
        if (r < 0) {
            j->rc = r;
            snprintf(j->reason, sizeof j->reason, "%s", evs_errmsg());
            return;
        }
        j->found = r;
        if (r == 1) {
            j->outcome = res.outcome;
            snprintf(j->reason, sizeof j->reason, "%s", res.reason);
            evs_command_result_free(&res);
        }
        return;
    }
    char meta[1024], *data = NULL;
    effect_metadata(j, meta, sizeof meta);
    evs_command c;
    evs_command_init(&c);
    c.command_id = j->cmd_id;
    c.metadata = meta;
    c.metadata_len = strlen(meta);
    c.correlation_id = x->corr;
    c.causation_id = x->trigger[0] ? x->trigger : NULL;
    if (j->f->append) {
        json_t *ev = json_loadb(j->f->data, j->f->data_len, 0, NULL);
        json_t *w = json_pack("{s:[{s:s,s:o}]}", "events", "event_type", j->f->type, "data", ev ? ev : json_object());
        data = w ? json_dumps(w, JSON_COMPACT) : NULL;
        json_decref(w);
        if (!data) {
            j->rc = evs__err(EVS_ENOMEM, "out of memory");
            return;
        }
        c.command_type = EVS__SAGA_APPEND_CMD;
        c.target = j->f->target;
        c.data = data;
        c.data_len = strlen(data);
    } else {
        c.command_type = j->f->type;
        c.aggregate_id = j->f->target;
        c.data = j->f->data;
        c.data_len = j->f->data_len;
    }
    atomic_fetch_add(&e->st_commands, 1);
    j->rc = evs_app_execute(e->app, &c, &res);
    free(data);
    j->found = 1;
    if (j->rc) {
        snprintf(j->reason, sizeof j->reason, "%s", evs_errmsg());
        return;
    }
    j->outcome = res.outcome;
    snprintf(j->reason, sizeof j->reason, "%s", res.reason);
    evs_command_result_free(&res);
}

typedef struct fan {
    effect_job *jobs;
    size_t n;
    _Atomic size_t next;
} fan;

static void *fan_worker(void *arg) {
    fan *f = arg;
    for (size_t i; (i = atomic_fetch_add(&f->next, 1)) < f->n;) exec_effect(&f->jobs[i]);
    return NULL;
}

/* Send (or look up) the jobs, at most max_parallel at once. */
static void run_jobs(run *x, effect_job *jobs, size_t n) {
    size_t par = x->d->max_parallel;
    if (n <= 1 || par <= 1 || x->probe) {
        for (size_t i = 0; i < n; i++) exec_effect(&jobs[i]);
        return;
    }
    fan f = {jobs, n, 0};
    size_t helpers = (n < par ? n : par) - 1, started = 0;
    pthread_t th[EVS_SAGA_MAX_PARALLEL];
    for (size_t i = 0; i < helpers; i++)
        if (pthread_create(&th[started], NULL, fan_worker, &f) == 0) started++;
    fan_worker(&f);
    for (size_t i = 0; i < started; i++) pthread_join(th[i], NULL);
}

/* --------------------------------------------------------- the builders */

static void ctx_for(run *x, uint32_t step, uint32_t attempt, evs_saga_ctx *sc) {
    memset(sc, 0, sizeof *sc);
    sc->type = x->S->type;
    sc->id = x->S->id;
    sc->data = x->S->data ? x->S->data : "{}";
    sc->data_len = x->S->data ? x->S->data_len : 2;
    sc->step = x->S->names[step];
    sc->step_index = step;
    sc->attempt = attempt;
    sc->correlation_id = &x->S->corr;
}

/* --------------------------------------------------------- running steps */

typedef struct sendable {
    uint32_t step;
    evs_saga_out out;
    size_t first, count;          /* its jobs */
    int built_fail;               /* the builder failed (reason in err) */
    char err[512];
    uint64_t from;
} sendable;

/* Failure of step s: retry or final. */
static int step_failed(run *x, uint32_t s, uint32_t attempt, uint64_t accepted, unsigned kind, const char *reason,
                       int64_t now, int allow_retry) {
    evs__step *ds = &x->d->steps[s];
    evs__sstep *t = &x->S->steps[s];
    json_t *d = jat(x, now, s);
    if (!d) return evs__err(EVS_ENOMEM, "out of memory");
    json_object_set_new(d, "attempt", json_integer(attempt));
    json_object_set_new(d, "accepted", jbits(accepted | t->accepted));
    json_object_set_new(d, "kind", json_string(kind_name(kind)));
    json_object_set_new(d, "reason", json_string(reason));
    uint32_t used = attempt - t->base;
    if (allow_retry && (ds->retry.retry_on & kind) && used < ds->retry.max_attempts)
        json_object_set_new(d, "retry_at", json_integer(now + evs__retry_delay(&ds->retry, used, x->e->clock)));
    return add(x, EVS__EV_FAILED_STEP, d);
}

/* The answer to step s in the log after `from`: 1 complete, 2 fail, 0 none (reader kept open for the event). */
static int find_answer(run *x, uint32_t s, uint64_t from, evs_reader **rd, const evs_event **hit) {
    evs__step *ds = &x->d->steps[s];
    const char *types[2 * EVS_SAGA_MAX_TYPES];
    size_t n = 0;
    for (size_t i = 0; i < ds->complete_on.n; i++) types[n++] = ds->complete_on.v[i];
    for (size_t i = 0; i < ds->fail_on.n; i++) types[n++] = ds->fail_on.v[i];
    evs_filter f;
    memset(&f, 0, sizeof f);
    f.event_types = types;
    f.n_event_types = n;
    f.correlation_id = &x->S->corr;
    *rd = NULL;
    int rc = evs_read_all(x->e->store, from + 1, EVS_FORWARD, &f, 1, rd);
    if (rc) return rc;
    for (;;) {
        rc = evs_reader_next(*rd, hit);
        if (rc == EVS_ELOST) continue;
        break;
    }
    if (rc == EVS_DONE) return 0;
    if (rc) return rc;
    return evs__types_has(&ds->complete_on, (*hit)->event_type, (*hit)->event_type_len) ? 1 : 2;
}

/* Step s completed (answer may be NULL): run its done builder, record. */
static int step_completed(run *x, uint32_t s, uint32_t attempt, uint64_t accepted, const evs_event *answer,
                          const char *const *cmd_ids, const uint32_t *effects, size_t n_cmds, int64_t now) {
    json_t *d = jat(x, now, s);
    if (!d) return evs__err(EVS_ENOMEM, "out of memory");
    json_object_set_new(d, "attempt", json_integer(attempt));
    json_object_set_new(d, "accepted", jbits(accepted));
    if (n_cmds) {
        json_t *a = json_array();
        for (size_t i = 0; a && i < n_cmds; i++)
            json_array_append_new(a, json_pack("{s:i,s:s}", "effect", (int)effects[i], "command_id", cmd_ids[i]));
        json_object_set_new(d, "commands", a);
    }
    if (answer) {
        char u[37];
        evs_uuid_format(&answer->event_id, u);
        json_object_set_new(d, "answer",
                            json_pack("{s:s,s:s%,s:I}", "event_id", u, "event_type", answer->event_type,
                                      answer->event_type_len, "position", (json_int_t)answer->global_position));
    }
    if (x->d->steps[s].has[EVS__FN_DONE]) {
        evs_saga_ctx sc;
        evs_saga_out out;
        char err[512];
        memset(&out, 0, sizeof out);
        ctx_for(x, s, attempt, &sc);
        sc.answer = answer;
        if (evs__def_call(x->d, EVS__FN_DONE, s, &sc, &out, err, sizeof err)) {
            evs__out_reset(&out);
            json_decref(d);
            return step_failed(x, s, attempt, accepted, EVS_SAGA_ON_ERROR, err, now, 1);
        }
        if (out.data) json_object_set_new(d, "data", json_loadb(out.data, out.data_len, 0, NULL));
        evs__out_reset(&out);
    }
    return add(x, EVS__EV_COMPLETED_STEP, d);
}

static int begin_compensation(run *x, const char *reason, const char *by) {
    return evs__worker_compensate(x->e, x->d, x->S, &x->b, reason, by);
}

int evs__worker_compensate(evs_saga_engine *e, evs__def *d, evs__saga *S, evs__batch *b, const char *reason,
                           const char *by) {
    char err[512];
    uint32_t end = S->n_steps;
    if (S->cur < S->n_steps) {
        uint32_t a;
        evs__saga_group(S, S->cur, &a, &end);
    }
    json_t *steps = json_array();
    int any = 0;
    for (uint32_t s = end; s-- > 0;) {
        evs__sstep *t = &S->steps[s];
        int took = t->st == EVS__ST_DONE || t->accepted != 0;
        if (took && s < d->n_steps && d->steps[s].has[EVS__FN_COMPENSATE]) {
            json_array_append_new(steps, json_integer(s));
            any = 1;
        }
    }
    json_t *o = json_object();
    if (!o || !steps) {
        json_decref(o);
        json_decref(steps);
        return evs__err(EVS_ENOMEM, "out of memory");
    }
    json_object_set_new(o, "at", json_integer(evs__engine_now(e)));
    json_object_set_new(o, "reason", json_string(reason));
    if (by) json_object_set_new(o, "by", json_string(by));
    if (!any) {
        json_decref(steps);
        char why[600];
        snprintf(why, sizeof why, "%s; nothing took effect, nothing to compensate", reason);
        json_object_set_new(o, "reason", json_string(why));
        return evs__batch_add(S, b, EVS__EV_FAILED, o, err, sizeof err) ? evs__err(EVS_ECORRUPT, "%s", err) : EVS_OK;
    }
    json_object_set_new(o, "steps", steps);
    return evs__batch_add(S, b, EVS__EV_COMPENSATING, o, err, sizeof err) ? evs__err(EVS_ECORRUPT, "%s", err) : EVS_OK;
}

/* 1 when every bit of the first n effects is in bits. */
static int all_of(uint64_t bits, size_t n) { return n >= 64 ? bits == UINT64_MAX : (bits & ((1ull << n) - 1)) == ((1ull << n) - 1); }

static int step_running(run *x, int64_t now) {
    evs__saga *S = x->S;
    evs__def *d = x->d;
    int rc, progress = 0;
    if (S->cur >= S->n_steps) {
        json_t *o = jat(x, now, UINT32_MAX);
        if ((rc = add(x, EVS__EV_COMPLETED, o))) return rc;
        return 1;
    }
    uint32_t a, b;
    evs__saga_group(S, S->cur, &a, &b);
    for (uint32_t s = a; s < b; s++)
        if (S->steps[s].st == EVS__ST_FAILED) {
            char why[600];
            snprintf(why, sizeof why, "step %s failed: %s", S->names[s], S->steps[s].error ? S->steps[s].error : "");
            if ((rc = begin_compensation(x, why, NULL))) return rc;
            return 1;
        }
    /* after the saga's deadline nothing new is sent: look the current attempts up instead (invariant 3) */
    int expired = !x->probe && S->deadline && now >= S->deadline;
    int saved_probe = x->probe;
    if (expired) x->probe = 1;
    /* 1. what to send: pending attempts, retries that are due (lookups: any retry) */
    sendable sd[EVS_SAGA_MAX_STEPS];
    size_t nsd = 0, njobs = 0;
    for (uint32_t s = a; s < b; s++) {
        evs__sstep *t = &S->steps[s];
        if (!(t->st == EVS__ST_PENDING || (t->st == EVS__ST_RETRY && (x->probe || t->due <= now)))) continue;
        sendable *q = &sd[nsd++];
        memset(q, 0, sizeof *q);
        q->step = s;
        q->from = S->last_gpos;
        evs_saga_ctx sc;
        ctx_for(x, s, t->attempt, &sc);
        if (evs__def_call(d, EVS__FN_ACTION, s, &sc, &q->out, q->err, sizeof q->err)) {
            q->built_fail = 1;
            continue;
        }
        /* a retry after every effect took effect (a timeout or a failure event) sends them all again */
        int again = q->out.n && all_of(t->accepted, q->out.n);
        for (size_t i = 0; i < q->out.n; i++)
            if (again || !(t->accepted >> i & 1)) q->count++;
        njobs += q->count;
    }
    effect_job *jobs = njobs ? calloc(njobs, sizeof *jobs) : NULL;
    if (njobs && !jobs) {
        rc = evs__err(EVS_ENOMEM, "out of memory");
        goto out;
    }
    size_t k = 0;
    for (size_t i = 0; i < nsd; i++) {
        sendable *q = &sd[i];
        evs__sstep *t = &S->steps[q->step];
        q->first = k;
        int again = q->out.n && all_of(t->accepted, q->out.n);
        for (size_t f = 0; f < q->out.n && !q->built_fail; f++) {
            if (!again && (t->accepted >> f & 1)) continue;
            effect_job *j = &jobs[k++];
            j->x = x;
            j->f = &q->out.v[f];
            j->step = q->step;
            j->index = (uint32_t)f;
            j->attempt = t->attempt;
            make_cmd_id(S, q->step, 0, (uint32_t)f, t->attempt, j->cmd_id);
        }
    }
    run_jobs(x, jobs, njobs);
    for (size_t i = 0; i < njobs; i++)
        if (jobs[i].rc) {
            rc = evs__err(jobs[i].rc, "%s: %s: %s", x->stream, jobs[i].cmd_id, jobs[i].reason);
            goto out;
        }
    /* 2. their outcomes */
    for (size_t i = 0; i < nsd; i++) {
        sendable *q = &sd[i];
        uint32_t s = q->step;
        evs__sstep *t = &S->steps[s];
        uint32_t attempt = t->attempt;
        if (q->built_fail) {
            if (x->probe) continue; /* the builder is deterministic: the send path will fail the same way */
            if ((rc = step_failed(x, s, attempt, 0, EVS_SAGA_ON_ERROR, q->err, now, 1))) goto out;
            progress = 1;
            continue;
        }
        uint64_t acc = t->accepted;
        int unknown = 0, failed = 0;
        unsigned kind = 0;
        const char *why = NULL;
        const char *ids[EVS_SAGA_MAX_EFFECTS];
        uint32_t effs[EVS_SAGA_MAX_EFFECTS];
        size_t nids = 0;
        for (size_t j = q->first; j < q->first + q->count; j++) {
            effect_job *jb = &jobs[j];
            if (!jb->found) {
                unknown = 1;
                continue;
            }
            if (jb->outcome == EVS_CMD_ACCEPTED) {
                acc |= 1ull << jb->index;
                ids[nids] = jb->cmd_id;
                effs[nids++] = jb->index;
            } else if (!failed) {
                failed = 1;
                kind = jb->outcome == EVS_CMD_REJECTED ? EVS_SAGA_ON_REJECTED : EVS_SAGA_ON_ERROR;
                why = jb->reason;
            }
        }
        if (failed) {
            if ((rc = step_failed(x, s, attempt, acc, kind, why, now, 1))) goto out;
            progress = 1;
            continue;
        }
        if (unknown) {
            /* lookups: not every effect ran.  The step stays as it is, but what did run is known now, so a
               decision taken in this run (a timeout, an operator's) records it with the step */
            t->accepted = acc;
            continue;
        }
        evs__step *ds = &d->steps[s];
        if (ds->complete_on.n || ds->fail_on.n) {
            evs_reader *rd;
            const evs_event *hit;
            int r = find_answer(x, s, q->from, &rd, &hit);
            if (r < 0) {
                evs_reader_close(rd);
                rc = r;
                goto out;
            }
            if (r == 1) rc = step_completed(x, s, attempt, acc, hit, ids, effs, nids, now);
            else if (r == 2) {
                char why2[600];
                snprintf(why2, sizeof why2, "%.*s arrived (position %llu)", (int)hit->event_type_len, hit->event_type,
                         (unsigned long long)hit->global_position);
                rc = step_failed(x, s, attempt, acc, EVS_SAGA_ON_EVENT, why2, now, 1);
            } else {
                json_t *o = jat(x, now, s);
                if (o) {
                    json_object_set_new(o, "attempt", json_integer(attempt));
                    json_object_set_new(o, "accepted", jbits(acc));
                    json_object_set_new(o, "deadline", json_integer(now + ds->timeout_ns));
                    json_object_set_new(o, "from", json_integer((json_int_t)q->from));
                }
                rc = add(x, EVS__EV_WAITING, o);
            }
            evs_reader_close(rd);
        } else {
            rc = step_completed(x, s, attempt, acc, NULL, ids, effs, nids, now);
        }
        if (rc) goto out;
        progress = 1;
    }
    /* 3. steps waiting for an answer: is it there, or is their time up? */
    for (uint32_t s = a; s < b; s++) {
        evs__sstep *t = &S->steps[s];
        if (t->st != EVS__ST_WAITING) continue;
        evs_reader *rd;
        const evs_event *hit;
        int r = find_answer(x, s, t->from, &rd, &hit);
        if (r < 0) {
            evs_reader_close(rd);
            rc = r;
            goto out;
        }
        rc = EVS_OK;
        if (r == 1) {
            rc = step_completed(x, s, t->attempt, t->accepted, hit, NULL, NULL, 0, now);
            progress = 1;
        } else if (r == 2) {
            char why2[600];
            snprintf(why2, sizeof why2, "%.*s arrived (position %llu)", (int)hit->event_type_len, hit->event_type,
                     (unsigned long long)hit->global_position);
            rc = step_failed(x, s, t->attempt, t->accepted, EVS_SAGA_ON_EVENT, why2, now, 1);
            progress = 1;
        } else if (!saved_probe && t->due && now >= t->due) {
            char why2[128];
            snprintf(why2, sizeof why2, "no answer within %.3f s", (double)d->steps[s].timeout_ns / 1e9);
            rc = step_failed(x, s, t->attempt, t->accepted, EVS_SAGA_ON_TIMEOUT, why2, now, !expired);
            progress = 1;
        }
        evs_reader_close(rd);
        if (rc) goto out;
    }
    /* 4. the saga's deadline: whatever is still under way fails for good */
    if (expired) {
        int open = 0;
        for (uint32_t s = a; s < b; s++) {
            evs__sstep *t = &S->steps[s];
            if (t->st == EVS__ST_PENDING || t->st == EVS__ST_RETRY || t->st == EVS__ST_WAITING) {
                char why2[128];
                snprintf(why2, sizeof why2, "the saga's timeout of %.3f s passed", (double)d->timeout_ns / 1e9);
                if ((rc = step_failed(x, s, t->attempt, t->accepted, 0, why2, now, 0))) goto out;
                open = 1;
            }
        }
        if (open) progress = 1;
    }
    for (uint32_t s = a; s < b && S->status == EVS_SAGA_RUNNING; s++)
        if (S->steps[s].st == EVS__ST_FAILED) {
            progress = 1; /* the next iteration records it, then compensates */
            break;
        }
    rc = progress;
out:
    x->probe = saved_probe;
    for (size_t i = 0; i < nsd; i++) evs__out_reset(&sd[i].out);
    free(jobs);
    return rc;
}

/* ------------------------------------------------------- compensations */

static int step_compensating(run *x, int64_t now) {
    evs__saga *S = x->S;
    evs__def *d = x->d;
    int rc, progress = 0;
    int top = -1;
    for (uint32_t s = S->n_steps; s-- > 0;)
        if (S->steps[s].cs == EVS__CS_PENDING || S->steps[s].cs == EVS__CS_RETRY || S->steps[s].cs == EVS__CS_FAILED) {
            top = (int)s;
            break;
        }
    if (top < 0) {
        json_t *o = jat(x, now, UINT32_MAX);
        if ((rc = add(x, EVS__EV_COMPENSATED, o))) return rc;
        return 1;
    }
    uint32_t a, b;
    evs__saga_group(S, (uint32_t)top, &a, &b);
    sendable sd[EVS_SAGA_MAX_STEPS];
    size_t nsd = 0, njobs = 0;
    for (uint32_t s = b; s-- > a;) { /* newest first within the group too: the order with max_parallel 1 */
        evs__sstep *t = &S->steps[s];
        if (!(t->cs == EVS__CS_PENDING || (t->cs == EVS__CS_RETRY && (x->probe || t->cdue <= now)))) continue;
        if (s >= d->n_steps) continue;
        sendable *q = &sd[nsd++];
        memset(q, 0, sizeof *q);
        q->step = s;
        uint32_t acc[EVS_SAGA_MAX_EFFECTS];
        size_t nacc = 0;
        for (uint32_t i = 0; i < 64; i++)
            if (t->accepted >> i & 1) acc[nacc++] = i;
        evs_saga_ctx sc;
        ctx_for(x, s, t->cattempt, &sc);
        sc.accepted = acc;
        sc.n_accepted = nacc;
        if (evs__def_call(d, EVS__FN_COMPENSATE, s, &sc, &q->out, q->err, sizeof q->err)) {
            q->built_fail = 1;
            continue;
        }
        for (size_t i = 0; i < q->out.n; i++)
            if (!(t->cdone >> i & 1)) q->count++;
        njobs += q->count;
    }
    effect_job *jobs = njobs ? calloc(njobs, sizeof *jobs) : NULL;
    if (njobs && !jobs) {
        rc = evs__err(EVS_ENOMEM, "out of memory");
        goto out;
    }
    size_t k = 0;
    for (size_t i = 0; i < nsd; i++) {
        sendable *q = &sd[i];
        evs__sstep *t = &S->steps[q->step];
        q->first = k;
        for (size_t f = 0; f < q->out.n && !q->built_fail; f++) {
            if (t->cdone >> f & 1) continue;
            effect_job *j = &jobs[k++];
            j->x = x;
            j->f = &q->out.v[f];
            j->step = q->step;
            j->index = (uint32_t)f;
            j->attempt = t->cattempt;
            j->comp = 1;
            make_cmd_id(S, q->step, 1, (uint32_t)f, t->cattempt, j->cmd_id);
        }
    }
    run_jobs(x, jobs, njobs);
    for (size_t i = 0; i < njobs; i++)
        if (jobs[i].rc) {
            rc = evs__err(jobs[i].rc, "%s: %s: %s", x->stream, jobs[i].cmd_id, jobs[i].reason);
            goto out;
        }
    for (size_t i = 0; i < nsd; i++) {
        sendable *q = &sd[i];
        uint32_t s = q->step;
        evs__sstep *t = &S->steps[s];
        evs__step *ds = &d->steps[s];
        uint64_t done = t->cdone;
        int unknown = 0, failed = 0;
        const char *why = q->err;
        unsigned kind = EVS_SAGA_ON_ERROR;
        if (q->built_fail) {
            if (x->probe) continue;
            failed = 1;
        }
        for (size_t j = q->first; j < q->first + q->count; j++) {
            effect_job *jb = &jobs[j];
            if (!jb->found) unknown = 1;
            else if (jb->outcome == EVS_CMD_ACCEPTED) done |= 1ull << jb->index;
            else if (!failed) {
                failed = 1;
                kind = jb->outcome == EVS_CMD_REJECTED ? EVS_SAGA_ON_REJECTED : EVS_SAGA_ON_ERROR;
                why = jb->reason;
            }
        }
        json_t *o = jat(x, now, s);
        if (!o) {
            rc = evs__err(EVS_ENOMEM, "out of memory");
            goto out;
        }
        json_object_set_new(o, "attempt", json_integer(t->cattempt));
        json_object_set_new(o, "done", jbits(done));
        if (failed) {
            json_object_set_new(o, "kind", json_string(kind_name(kind)));
            json_object_set_new(o, "reason", json_string(why));
            uint32_t used = t->cattempt - t->cbase;
            if ((ds->comp_retry.retry_on & kind) && used < ds->comp_retry.max_attempts)
                json_object_set_new(o, "retry_at",
                                    json_integer(now + evs__retry_delay(&ds->comp_retry, used, x->e->clock)));
            rc = add(x, EVS__EV_COMP_FAILED, o);
        } else if (unknown) {
            json_decref(o);
            continue;
        } else {
            rc = add(x, EVS__EV_COMP_DONE, o);
        }
        if (rc) goto out;
        progress = 1;
    }
    rc = progress;
out:
    for (size_t i = 0; i < nsd; i++) evs__out_reset(&sd[i].out);
    free(jobs);
    return rc;
}

/* ------------------------------------------------------------ advancing */

/* Loop until nothing moves; flushes as it goes.  EVS_ECONFLICT when someone else wrote the stream. */
static int advance(run *x) {
    evs_saga_engine *e = x->e;
    int rc = EVS_OK;
    for (int iter = 0; iter < MAX_ITER; iter++) {
        if ((x->b.must_flush || x->b.n >= FLUSH_EVERY) && (rc = flush(x))) return rc;
        int64_t now = evs__engine_now(e);
        /* the lease must outlast what we are about to send */
        if (!x->probe && x->S->lease_until - now <= e->cfg.lease_ns / 2 && !evs_saga_status_terminal(x->S->status)) {
            if (x->b.n) rc = flush(x);
            else {
                json_t *d = jat(x, now, UINT32_MAX);
                rc = add(x, EVS__EV_LEASED, d);
                if (!rc) rc = flush(x);
            }
            if (rc) return rc;
        }
        int r;
        if (x->S->status == EVS_SAGA_RUNNING) r = step_running(x, now);
        else if (x->S->status == EVS_SAGA_COMPENSATING) r = step_compensating(x, now);
        else r = 0;
        if (r < 0) {
            /* what is already decided can be kept: successes and recorded failures alike */
            int f = flush(x);
            return f == EVS_ECONFLICT ? f : r;
        }
        if (r == 0) break;
    }
    return flush(x);
}

/* ---------------------------------------------------------------- start */

/* Read the starting event at pos and create the instance. */
static int do_start(run *x, const evs__job *job) {
    evs_saga_engine *e = x->e;
    evs__def *d = x->d;
    evs_reader *r;
    const evs_event *ev;
    int rc = evs_read_all(e->store, job->trigger_pos, EVS_FORWARD, NULL, 1, &r);
    if (rc) return rc;
    rc = evs_reader_next(r, &ev);
    if (rc != EVS_OK || ev->global_position != job->trigger_pos || !evs__types_has(&d->start_on, ev->event_type, ev->event_type_len)) {
        evs_reader_close(r);
        if (rc < 0 && rc != EVS_ELOST) return rc;
        evs__engine_note_error(e, "saga %s: no starting event at position %llu", d->name,
                               (unsigned long long)job->trigger_pos);
        return EVS_ENOTFOUND;
    }
    int64_t now = evs__engine_now(e);
    char trig[37], corr[37];
    evs_uuid_format(&ev->event_id, trig);
    evs_uuid c;
    evs__saga_corr(d->name, job->id, &c);
    evs_uuid_format(&c, corr);
    /* the data: init's, or the starting event's */
    evs_saga_out out;
    memset(&out, 0, sizeof out);
    char err[512] = "";
    int init_failed = 0;
    if (d->has_init) {
        evs_saga_ctx sc;
        memset(&sc, 0, sizeof sc);
        sc.type = d->name;
        sc.id = job->id;
        sc.trigger = ev;
        sc.correlation_id = &c;
        sc.data = "{}";
        sc.data_len = 2;
        init_failed = evs__def_call(d, EVS__FN_INIT, 0, &sc, &out, err, sizeof err);
        if (!init_failed && !out.data) {
            init_failed = 1;
            snprintf(err, sizeof err, "init gave no data");
        }
    }
    json_t *data = init_failed ? json_object()
                   : out.data  ? json_loadb(out.data, out.data_len, 0, NULL)
                               : json_loadb(ev->data, ev->data_len, 0, NULL);
    evs__out_reset(&out);
    json_t *steps = json_array();
    for (uint32_t i = 0; steps && i < d->n_steps; i++)
        json_array_append_new(steps, json_pack("{s:s,s:i}", "name", d->steps[i].name, "group", (int)d->steps[i].group));
    json_t *o = json_pack("{s:s,s:s,s:s,s:I,s:I,s:o,s:{s:s,s:s%,s:s%,s:I},s:o,s:{s:s,s:I}}", "saga", d->name, "id",
                          job->id, "correlation_id", corr, "at", (json_int_t)now, "deadline",
                          (json_int_t)(now + d->timeout_ns), "steps", steps ? steps : json_array(), "trigger",
                          "event_id", trig, "event_type", ev->event_type, ev->event_type_len, "stream", ev->stream,
                          ev->stream_len, "position", (json_int_t)ev->global_position, "data",
                          json_is_object(data) ? data : json_object(), "lease", "node", e->node, "until",
                          (json_int_t)(now + e->cfg.lease_ns));
    if (data && !json_is_object(data)) json_decref(data);
    evs_uuid trigger_id = ev->event_id;
    evs_reader_close(r);
    if (!o) return evs__err(EVS_ENOMEM, "out of memory");
    json_t *fail = NULL;
    if (init_failed) {
        char why[600];
        snprintf(why, sizeof why, "init: %s", err);
        fail = json_pack("{s:I,s:s}", "at", (json_int_t)now, "reason", why);
    }
    char *t0 = json_dumps(o, JSON_COMPACT), *t1 = fail ? json_dumps(fail, JSON_COMPACT) : NULL;
    json_decref(o);
    json_decref(fail);
    if (!t0 || (init_failed && !t1)) {
        free(t0);
        free(t1);
        return evs__err(EVS_ENOMEM, "out of memory");
    }
    /* the starting event's id makes the start of one trigger idempotent, and a second trigger a conflict */
    evs_uuid ids[2];
    char tail[EVS_SAGA_MAX_ID + 48];
    snprintf(tail, sizeof tail, "%s/%s", job->id, trig);
    evs__saga_uuid("saga-start", d->name, tail, &ids[0]);
    evs__saga_uuid("saga-start-failed", d->name, tail, &ids[1]);
    evs_event_in in[2];
    memset(in, 0, sizeof in);
    in[0].event_type = EVS__EV_STARTED;
    in[0].data = t0;
    in[0].data_len = strlen(t0);
    in[0].event_id = &ids[0];
    in[0].correlation_id = &c;
    in[0].causation_id = &trigger_id;
    if (init_failed) {
        in[1].event_type = EVS__EV_FAILED;
        in[1].data = t1;
        in[1].data_len = strlen(t1);
        in[1].event_id = &ids[1];
        in[1].correlation_id = &c;
        in[1].causation_id = &trigger_id;
    }
    evs_append_result res;
    rc = evs_append(e->store, x->stream, EVS_EXPECT_NO_STREAM, in, init_failed ? 2 : 1, &res, NULL);
    free(t0);
    free(t1);
    if (rc == EVS_ECONFLICT || rc == EVS_EDUPLICATE) {
        /* the stream exists: started by this trigger (then it was idempotent) or by another one */
        atomic_fetch_add(&e->st_dup_starts, 1);
        return EVS_OK;
    }
    if (rc == EVS_OK) atomic_fetch_add(&e->st_flushes, 1);
    return rc;
}

/* ------------------------------------------------------------------ runs */

static int load(run *x) {
    evs__saga_free(x->S);
    x->S = NULL;
    batch_clear(&x->b);
    return evs__saga_load(x->e->store, x->d->name, x->id, 1, &x->S);
}

static int run_init(run *x, evs_saga_engine *e, const char *type, const char *id) {
    memset(x, 0, sizeof *x);
    x->e = e;
    x->d = evs__engine_find_def(e, type);
    if (!x->d) return EVS_ENOTFOUND;
    int rc = evs__saga_stream(type, id, x->stream);
    if (rc) return rc;
    snprintf(x->id, sizeof x->id, "%s", id);
    evs_uuid c;
    evs__saga_corr(type, id, &c);
    evs_uuid_format(&c, x->corr);
    return EVS_OK;
}

static void run_free(run *x) {
    evs__batch_free(&x->b);
    evs__saga_free(x->S);
}

/* Load, check the definition still fits, take the lease.  1: go on, 0: nothing to do, < 0 error. */
static int prepare(run *x) {
    evs_saga_engine *e = x->e;
    int rc = load(x);
    if (rc == EVS_ENOTFOUND) return 0;
    if (rc) return rc;
    evs__saga *S = x->S;
    if (evs_uuid_is_nil(&S->trigger_id)) x->trigger[0] = 0;
    else evs_uuid_format(&S->trigger_id, x->trigger);
    /* nothing moves these by itself: an operator does (and no lease is taken for nothing) */
    if (evs_saga_status_terminal(S->status) || S->status == EVS_SAGA_PAUSED || S->status == EVS_SAGA_COMPENSATION_FAILED)
        return 0;
    /* a definition whose steps no longer match the instance's cannot advance it */
    int fits = S->n_steps == x->d->n_steps;
    for (uint32_t i = 0; fits && i < S->n_steps; i++) fits = strcmp(S->names[i], x->d->steps[i].name) == 0;
    if (!fits) {
        if (S->status != EVS_SAGA_PAUSED) {
            json_t *o = jat(x, evs__engine_now(e), UINT32_MAX);
            if (o) {
                json_object_set_new(o, "reason", json_string("the registered definition's steps differ from the "
                                                             "instance's; abort it or register the old definition"));
                json_object_set_new(o, "by", json_string("engine"));
            }
            if ((rc = add(x, EVS__EV_PAUSED, o)) || (rc = flush(x))) return rc;
        }
        return 0;
    }
    int64_t until = 0;
    rc = take_lease(x, &until);
    if (rc == EVS_ELOCKED) {
        atomic_fetch_add(&e->st_lease_busy, 1);
        evs__engine_delay(e, S->type, S->id, until);
        return 0;
    }
    return rc ? rc : 1;
}

int evs__worker_run(evs_saga_engine *e, const evs__job *job) {
    run x;
    int rc = run_init(&x, e, job->type, job->id);
    if (rc) {
        if (rc == EVS_ENOTFOUND) rc = EVS_OK; /* no definition (any more): nothing can be done */
        run_free(&x);
        return rc;
    }
    atomic_fetch_add(&e->st_advances, 1);
    if (job->due) {
        static const uint64_t bounds[EVS_SAGA_LATE_BUCKETS] = EVS_SAGA_LATE_BOUNDS_US;
        int64_t late = evs__engine_now(e) - job->due;
        if (late < 0) late = 0;
        uint64_t us = (uint64_t)late / 1000;
        size_t i = 0;
        while (i < EVS_SAGA_LATE_BUCKETS && us > bounds[i]) i++;
        atomic_fetch_add(&e->st_late[i], 1);
        atomic_fetch_add(&e->st_fired, 1);
        atomic_fetch_add(&e->st_late_sum, (uint64_t)late);
        uint64_t cur = atomic_load(&e->st_late_max);
        while ((uint64_t)late > cur && !atomic_compare_exchange_weak(&e->st_late_max, &cur, (uint64_t)late)) {
        }
    }
    if (job->kind == EVS__JOB_START && (rc = do_start(&x, job))) {
        run_free(&x);
        return rc == EVS_ENOTFOUND ? EVS_OK : rc;
    }
    for (int tries = 0; tries < 5; tries++) {
        int p = prepare(&x);
        if (p <= 0) {
            rc = p;
            break;
        }
        rc = advance(&x);
        if (rc != EVS_ECONFLICT) break;
    }
    run_free(&x);
    return rc == EVS_ECONFLICT ? EVS_OK : rc; /* the other writer's run carries on */
}

int evs__worker_operate(evs_saga_engine *e, const char *type, const char *id, evs__op_fn fn, void *arg) {
    run x;
    int rc = run_init(&x, e, type, id);
    if (rc == EVS_ENOTFOUND) {
        run_free(&x);
        return evs__err(EVS_ENOTFOUND, "no saga type %s is registered", type);
    }
    if (rc) {
        run_free(&x);
        return rc;
    }
    for (int tries = 0; tries < 5; tries++) {
        rc = load(&x);
        if (rc == EVS_ENOTFOUND) {
            rc = evs__err(EVS_ENOTFOUND, "no saga %s/%s", type, id);
            break;
        }
        if (rc) break;
        if (evs_uuid_is_nil(&x.S->trigger_id)) x.trigger[0] = 0;
        else evs_uuid_format(&x.S->trigger_id, x.trigger);
        if (!evs_saga_status_terminal(x.S->status)) {
            /* another node's lease stops us; otherwise the events appended below carry ours (any append of
               the other node after it expired fails on the version) */
            int64_t now = evs__engine_now(e);
            if (x.S->lease_node[0] && strcmp(x.S->lease_node, e->node) != 0 && x.S->lease_until > now) {
                char t[40];
                evs_time_format(x.S->lease_until, t);
                rc = evs__err(EVS_ELOCKED, "saga %s/%s is leased by node %s until %s", type, id, x.S->lease_node, t);
                break;
            }
            /* find and record what happened before deciding anything (invariant 3) */
            x.probe = 1;
            rc = advance(&x);
            x.probe = 0;
            if (rc == EVS_ECONFLICT) continue;
            if (rc) break;
        }
        rc = fn(e, x.d, x.S, arg, &x.b);
        if (rc) {
            batch_clear(&x.b);
            break;
        }
        rc = flush(&x);
        if (rc != EVS_ECONFLICT) break;
    }
    run_free(&x);
    return rc;
}
