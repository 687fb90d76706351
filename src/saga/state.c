/*
 * state.c — an instance's state is the fold of its stream "saga-{type}-{id}";
 * this file is that fold, used by the worker (with the saga's data, on the
 * events it reads and the ones it is about to append) and by the index
 * (without data, on every saga event the dispatcher reads), so the two can
 * never disagree (invariant 1 of saga_internal.h).
 *
 * The fold needs no definition: SagaStarted records the steps' names and
 * groups, every later event names the steps it concerns.  Event data (all
 * times in ns since the epoch, by the engine's clock; steps are 0-based):
 *
 *   SagaStarted            saga, id, correlation_id, at, deadline,
 *                          steps [{name, group}], trigger {event_id,
 *                          event_type, stream, position}, data
 *   SagaLeased             at, lease {node, until}
 *   SagaStepCompleted      at, step, attempt, accepted [effects], commands
 *                          [command ids], answer {event_id, event_type,
 *                          position}?, data?
 *   SagaStepWaiting        at, step, attempt, accepted, deadline, from
 *   SagaStepFailed         at, step, attempt, accepted, kind, reason, retry_at?
 *   SagaCompensating       at, reason, steps [to compensate], by?
 *   SagaCompensationDone   at, step, attempt, done [effects]
 *   SagaCompensationFailed at, step, attempt, done, reason, retry_at?
 *   SagaCompleted / SagaCompensated      at
 *   SagaFailed             at, reason, by?
 *   SagaPaused             at, reason, by       SagaResumed  at, shift
 *   SagaRetryRequested     at, reason?
 *   SagaStepSkipped        at, steps, phase, accepted [[effects] per step]
 * and any of them may carry lease {node, until}.
 *
 * Transitions (running): SagaStarted makes group 0 current (its steps
 * PENDING, attempt 1).  A step is PENDING -> (WAITING ->) DONE, or ->
 * RETRY (attempt + 1, due) -> PENDING again when due, or -> FAILED.  When
 * every step of the current group is DONE or SKIPPED the next group becomes
 * current.  SagaCompensating marks the listed steps' compensations PENDING
 * and abandons what was under way; a compensation is PENDING -> DONE, or ->
 * RETRY -> ..., or -> FAILED, which makes the saga compensation_failed.
 *
 * The index keeps the state in a binary form (evs__saga_encode): a format
 * byte, then the fields in the order written below, integers little-endian,
 * strings as u16 length + bytes.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga/saga_internal.h"

const char *const evs__saga_event_types[] = {
    EVS__EV_STARTED,  EVS__EV_LEASED,      EVS__EV_COMPLETED_STEP, EVS__EV_WAITING,   EVS__EV_FAILED_STEP,
    EVS__EV_COMPENSATING, EVS__EV_COMP_DONE, EVS__EV_COMP_FAILED, EVS__EV_COMPLETED, EVS__EV_COMPENSATED,
    EVS__EV_FAILED,   EVS__EV_PAUSED,      EVS__EV_RESUMED,        EVS__EV_RETRY,     EVS__EV_SKIPPED};
const size_t evs__saga_n_event_types = sizeof evs__saga_event_types / sizeof evs__saga_event_types[0];

const char *evs__st_name(int st) {
    static const char *const n[] = {"idle", "pending", "waiting", "retry", "done", "failed", "skipped", "abandoned"};
    return st >= 0 && st <= EVS__ST_ABANDONED ? n[st] : "?";
}

const char *evs__cs_name(int cs) {
    static const char *const n[] = {"none", "pending", "retry", "done", "failed", "skipped"};
    return cs >= 0 && cs <= EVS__CS_SKIPPED ? n[cs] : "?";
}

/* ----------------------------------------------------------------- names */

int evs__saga_stream(const char *type, const char *id, char out[EVS_MAX_STREAM_NAME + 1]) {
    int n = snprintf(out, EVS_MAX_STREAM_NAME + 1, "saga-%s-%s", type, id);
    if (n < 0 || n > (int)EVS_MAX_STREAM_NAME)
        return evs__err(EVS_EINVAL, "stream name saga-%s-%.32s... would exceed %u bytes", type, id, EVS_MAX_STREAM_NAME);
    return EVS_OK;
}

int evs__saga_split(const char *stream, size_t n, char type[EVS_SAGA_MAX_NAME + 1], char id[EVS_SAGA_MAX_ID + 1]) {
    if (n < 8 || memcmp(stream, "saga-", 5) != 0) return -1;
    const char *t = stream + 5, *dash = memchr(t, '-', n - 5);
    if (!dash) return -1;
    size_t tl = (size_t)(dash - t), il = n - 5 - tl - 1;
    if (tl == 0 || tl > EVS_SAGA_MAX_NAME || il == 0 || il > EVS_SAGA_MAX_ID) return -1;
    memcpy(type, t, tl);
    type[tl] = 0;
    memcpy(id, dash + 1, il);
    id[il] = 0;
    return 0;
}

void evs__saga_uuid(const char *a, const char *b, const char *c, evs_uuid *out) {
    crypto_generichash_state st;
    uint8_t h[16];
    crypto_generichash_init(&st, NULL, 0, sizeof h);
    const char *parts[3] = {a, b, c};
    for (int i = 0; i < 3; i++)
        if (parts[i]) crypto_generichash_update(&st, (const uint8_t *)parts[i], strlen(parts[i]) + 1);
    crypto_generichash_final(&st, h, sizeof h);
    h[6] = (uint8_t)((h[6] & 0x0f) | 0x80); /* UUIDv8: name-based, our own hash */
    h[8] = (uint8_t)((h[8] & 0x3f) | 0x80);
    memcpy(out->b, h, 16);
}

void evs__saga_corr(const char *type, const char *id, evs_uuid *out) { evs__saga_uuid("saga-correlation", type, id, out); }

/* ------------------------------------------------------------------ fold */

void evs__saga_free(evs__saga *S) {
    if (!S) return;
    for (uint32_t i = 0; S->steps && i < S->n_steps; i++) free(S->steps[i].error);
    free(S->steps);
    free(S->names);
    free(S->groups);
    free(S->data);
    free(S);
}

static int64_t jint(json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

static const char *jstr(json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static uint64_t jbits(json_t *o, const char *k) {
    json_t *a = json_object_get(o, k), *v;
    size_t i;
    uint64_t bits = 0;
    json_array_foreach(a, i, v) {
        json_int_t x = json_integer_value(v);
        if (x >= 0 && x < 64) bits |= 1ull << x;
    }
    return bits;
}

void evs__saga_group(const evs__saga *S, uint32_t i, uint32_t *a, uint32_t *b) {
    uint32_t g = S->groups[i], lo = i, hi = i + 1;
    if (g)
        while (lo > 0 && S->groups[lo - 1] == g) lo--;
    if (g)
        while (hi < S->n_steps && S->groups[hi] == g) hi++;
    *a = lo;
    *b = hi;
}

static void set_error(char **slot, const char *why) {
    free(*slot);
    *slot = why && *why ? strdup(why) : NULL;
}

static void enter_group(evs__saga *S, uint32_t i, int64_t at) {
    S->cur = i;
    if (i >= S->n_steps) return;
    uint32_t a, b;
    evs__saga_group(S, i, &a, &b);
    for (uint32_t k = a; k < b; k++) {
        evs__sstep *t = &S->steps[k];
        t->st = EVS__ST_PENDING;
        t->attempt = 1;
        t->base = 0;
        t->began = at;
        t->due = 0;
    }
}

/* After a step finished: the next group when the current one is through. */
static void maybe_advance(evs__saga *S, int64_t at) {
    if (S->cur >= S->n_steps) return;
    uint32_t a, b;
    evs__saga_group(S, S->cur, &a, &b);
    for (uint32_t k = a; k < b; k++)
        if (S->steps[k].st != EVS__ST_DONE && S->steps[k].st != EVS__ST_SKIPPED) return;
    enter_group(S, b, at);
}

static int get_step(const evs__saga *S, json_t *d, uint32_t *i, char *err, size_t cap) {
    json_t *v = json_object_get(d, "step");
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= (json_int_t)S->n_steps) {
        snprintf(err, cap, "saga-%s-%s: an event names no step of this saga", S->type, S->id);
        return -1;
    }
    *i = (uint32_t)json_integer_value(v);
    return 0;
}

static void shift(int64_t *t, int64_t by) {
    if (*t) *t += by;
}

static int fold_started(evs__saga *S, json_t *d, int keep_data, int64_t at, char *err, size_t cap) {
    json_t *steps = json_object_get(d, "steps");
    size_t n = json_array_size(steps);
    if (S->n_steps || n == 0 || n > EVS_SAGA_MAX_STEPS) {
        snprintf(err, cap, "saga-%s-%s: %s", S->type, S->id, S->n_steps ? "started twice" : "started without steps");
        return -1;
    }
    S->names = calloc(n, sizeof *S->names);
    S->groups = calloc(n, sizeof *S->groups);
    S->steps = calloc(n, sizeof *S->steps);
    if (!S->names || !S->groups || !S->steps) {
        snprintf(err, cap, "out of memory");
        return -1;
    }
    S->n_steps = (uint32_t)n;
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_array_get(steps, i);
        snprintf(S->names[i], sizeof S->names[i], "%s", jstr(s, "name") ? jstr(s, "name") : "?");
        S->groups[i] = (uint32_t)jint(s, "group");
    }
    const char *c = jstr(d, "correlation_id");
    if (!c || evs_uuid_parse(c, strlen(c), &S->corr)) evs__saga_corr(S->type, S->id, &S->corr);
    json_t *tr = json_object_get(d, "trigger");
    const char *tid = jstr(tr, "event_id");
    if (tid) evs_uuid_parse(tid, strlen(tid), &S->trigger_id);
    S->trigger_pos = (uint64_t)jint(tr, "position");
    S->started_at = at;
    S->deadline = jint(d, "deadline");
    S->status = EVS_SAGA_RUNNING;
    if (keep_data) {
        json_t *data = json_object_get(d, "data");
        free(S->data);
        S->data = json_is_object(data) ? json_dumps(data, JSON_COMPACT) : strdup("{}");
        S->data_len = S->data ? strlen(S->data) : 0;
        if (!S->data) {
            snprintf(err, cap, "out of memory");
            return -1;
        }
    }
    enter_group(S, 0, at);
    return 0;
}

int evs__saga_fold(evs__saga *S, const char *type, json_t *d, uint64_t version, uint64_t gpos, int keep_data,
                   char *err, size_t cap) {
    int64_t at = jint(d, "at");
    uint32_t i;
    evs__sstep *t;
    if (strcmp(type, EVS__EV_STARTED) == 0) {
        if (fold_started(S, d, keep_data, at, err, cap)) return -1;
        goto common;
    }
    if (!S->n_steps) {
        snprintf(err, cap, "saga-%s-%s: %s before SagaStarted", S->type, S->id, type);
        return -1;
    }
    if (strcmp(type, EVS__EV_COMPLETED_STEP) == 0) {
        if (get_step(S, d, &i, err, cap)) return -1;
        t = &S->steps[i];
        t->st = EVS__ST_DONE;
        t->accepted |= jbits(d, "accepted");
        t->due = 0;
        set_error(&t->error, NULL);
        json_t *data = json_object_get(d, "data");
        if (keep_data && json_is_object(data)) {
            char *nd = json_dumps(data, JSON_COMPACT);
            if (!nd) {
                snprintf(err, cap, "out of memory");
                return -1;
            }
            free(S->data);
            S->data = nd;
            S->data_len = strlen(nd);
        }
        maybe_advance(S, at);
    } else if (strcmp(type, EVS__EV_WAITING) == 0) {
        if (get_step(S, d, &i, err, cap)) return -1;
        t = &S->steps[i];
        t->st = EVS__ST_WAITING;
        t->attempt = (uint32_t)jint(d, "attempt");
        t->accepted |= jbits(d, "accepted");
        t->due = jint(d, "deadline");
        t->from = (uint64_t)jint(d, "from");
    } else if (strcmp(type, EVS__EV_FAILED_STEP) == 0) {
        if (get_step(S, d, &i, err, cap)) return -1;
        t = &S->steps[i];
        t->accepted |= jbits(d, "accepted");
        set_error(&t->error, jstr(d, "reason"));
        snprintf(S->error, sizeof S->error, "step %s: %s", S->names[i], jstr(d, "reason") ? jstr(d, "reason") : "");
        S->step_failures++;
        int64_t retry_at = jint(d, "retry_at");
        if (retry_at) {
            t->st = EVS__ST_RETRY;
            t->attempt = (uint32_t)jint(d, "attempt") + 1;
            t->due = retry_at;
        } else {
            t->st = EVS__ST_FAILED;
            t->due = 0;
        }
    } else if (strcmp(type, EVS__EV_COMPENSATING) == 0) {
        S->status = EVS_SAGA_COMPENSATING;
        snprintf(S->error, sizeof S->error, "%s", jstr(d, "reason") ? jstr(d, "reason") : S->error);
        if (S->cur < S->n_steps) {
            uint32_t a, b;
            evs__saga_group(S, S->cur, &a, &b);
            for (uint32_t k = a; k < b; k++) {
                int st = S->steps[k].st;
                if (st == EVS__ST_PENDING || st == EVS__ST_WAITING || st == EVS__ST_RETRY) {
                    S->steps[k].st = EVS__ST_ABANDONED;
                    S->steps[k].due = 0;
                }
            }
        }
        json_t *steps = json_object_get(d, "steps"), *v;
        size_t k;
        json_array_foreach(steps, k, v) {
            json_int_t x = json_integer_value(v);
            if (x < 0 || x >= (json_int_t)S->n_steps) continue;
            S->steps[x].cs = EVS__CS_PENDING;
            S->steps[x].cattempt = 1;
            S->steps[x].cbase = 0;
        }
    } else if (strcmp(type, EVS__EV_COMP_DONE) == 0) {
        if (get_step(S, d, &i, err, cap)) return -1;
        t = &S->steps[i];
        t->cs = EVS__CS_DONE;
        t->cdone |= jbits(d, "done");
        t->cdue = 0;
    } else if (strcmp(type, EVS__EV_COMP_FAILED) == 0) {
        if (get_step(S, d, &i, err, cap)) return -1;
        t = &S->steps[i];
        t->cdone |= jbits(d, "done");
        set_error(&t->error, jstr(d, "reason"));
        snprintf(S->error, sizeof S->error, "compensation of %s: %s", S->names[i],
                 jstr(d, "reason") ? jstr(d, "reason") : "");
        S->comp_failures++;
        int64_t retry_at = jint(d, "retry_at");
        if (retry_at) {
            t->cs = EVS__CS_RETRY;
            t->cattempt = (uint32_t)jint(d, "attempt") + 1;
            t->cdue = retry_at;
        } else {
            t->cs = EVS__CS_FAILED;
            t->cdue = 0;
            S->status = EVS_SAGA_COMPENSATION_FAILED;
        }
    } else if (strcmp(type, EVS__EV_COMPLETED) == 0) {
        S->status = EVS_SAGA_COMPLETED;
        S->error[0] = 0;
    } else if (strcmp(type, EVS__EV_COMPENSATED) == 0) {
        S->status = EVS_SAGA_COMPENSATED;
    } else if (strcmp(type, EVS__EV_FAILED) == 0) {
        S->status = EVS_SAGA_FAILED;
        snprintf(S->error, sizeof S->error, "%s", jstr(d, "reason") ? jstr(d, "reason") : "failed");
        for (uint32_t k = 0; k < S->n_steps; k++) S->steps[k].due = S->steps[k].cdue = 0;
    } else if (strcmp(type, EVS__EV_PAUSED) == 0) {
        if (S->status != EVS_SAGA_PAUSED) S->paused_from = S->status;
        S->status = EVS_SAGA_PAUSED;
        S->paused_at = at;
    } else if (strcmp(type, EVS__EV_RESUMED) == 0) {
        int64_t by = jint(d, "shift");
        if (S->status == EVS_SAGA_PAUSED) S->status = S->paused_from;
        S->paused_at = 0;
        shift(&S->deadline, by);
        for (uint32_t k = 0; k < S->n_steps; k++) {
            shift(&S->steps[k].due, by);
            shift(&S->steps[k].cdue, by);
        }
    } else if (strcmp(type, EVS__EV_RETRY) == 0) {
        if (S->status == EVS_SAGA_RUNNING && S->cur < S->n_steps) {
            uint32_t a, b;
            evs__saga_group(S, S->cur, &a, &b);
            for (uint32_t k = a; k < b; k++) {
                t = &S->steps[k];
                if (t->st == EVS__ST_RETRY) {
                    t->due = at;
                    t->base = t->attempt - 1;
                } else if (t->st == EVS__ST_WAITING) {
                    t->st = EVS__ST_PENDING;
                    t->attempt++;
                    t->base = t->attempt - 1;
                    t->due = 0;
                }
            }
        } else if (S->status == EVS_SAGA_COMPENSATING || S->status == EVS_SAGA_COMPENSATION_FAILED) {
            for (uint32_t k = 0; k < S->n_steps; k++) {
                t = &S->steps[k];
                if (t->cs == EVS__CS_RETRY) {
                    t->cdue = at;
                    t->cbase = t->cattempt - 1;
                } else if (t->cs == EVS__CS_FAILED) {
                    t->cs = EVS__CS_PENDING;
                    t->cattempt++;
                    t->cbase = t->cattempt - 1;
                }
            }
            S->status = EVS_SAGA_COMPENSATING;
        }
    } else if (strcmp(type, EVS__EV_SKIPPED) == 0) {
        const char *phase = jstr(d, "phase");
        int comp = phase && strcmp(phase, "compensation") == 0;
        json_t *steps = json_object_get(d, "steps"), *v, *acc = json_object_get(d, "accepted");
        size_t k;
        json_array_foreach(steps, k, v) {
            json_int_t x = json_integer_value(v);
            if (x < 0 || x >= (json_int_t)S->n_steps) continue;
            t = &S->steps[x];
            /* what a skipped step's attempt had done: still to be compensated if the saga compensates */
            json_t *bits = json_array_get(acc, k), *bv;
            size_t q;
            json_array_foreach(bits, q, bv) {
                json_int_t bit = json_integer_value(bv);
                if (bit >= 0 && bit < 64) t->accepted |= 1ull << bit;
            }
            if (comp) {
                t->cs = EVS__CS_SKIPPED;
                t->cdue = 0;
            } else {
                t->st = EVS__ST_SKIPPED;
                t->due = 0;
            }
        }
        if (comp && S->status == EVS_SAGA_COMPENSATION_FAILED) {
            int failed = 0;
            for (uint32_t q = 0; q < S->n_steps; q++) failed |= S->steps[q].cs == EVS__CS_FAILED;
            if (!failed) S->status = EVS_SAGA_COMPENSATING;
        }
        if (!comp) maybe_advance(S, at);
    } else if (strcmp(type, EVS__EV_LEASED) != 0) {
        snprintf(err, cap, "saga-%s-%s: unknown event type %s", S->type, S->id, type);
        return -1;
    }
common:
    if (at) S->updated_at = at;
    json_t *lease = json_object_get(d, "lease");
    if (json_is_object(lease)) {
        const char *node = jstr(lease, "node");
        snprintf(S->lease_node, sizeof S->lease_node, "%s", node ? node : "");
        S->lease_until = jint(lease, "until");
    }
    if (gpos) {
        S->version = version;
        S->last_gpos = gpos;
    }
    return 0;
}

int evs__saga_fold_event(evs__saga *S, const evs_event *ev, int keep_data, char *err, size_t cap) {
    char type[EVS_MAX_TYPE_NAME + 1];
    snprintf(type, sizeof type, "%.*s", (int)ev->event_type_len, ev->event_type);
    json_t *d = json_loadb(ev->data, ev->data_len, 0, NULL);
    if (!json_is_object(d)) {
        json_decref(d);
        snprintf(err, cap, "saga-%s-%s: event %llu is not a JSON object", S->type, S->id,
                 (unsigned long long)ev->stream_position);
        return -1;
    }
    int r = evs__saga_fold(S, type, d, ev->stream_position, ev->global_position, keep_data, err, cap);
    json_decref(d);
    return r;
}

int evs__saga_load(evs_store *s, const char *type, const char *id, int keep_data, evs__saga **out) {
    char stream[EVS_MAX_STREAM_NAME + 1], err[512];
    *out = NULL;
    int rc = evs__saga_stream(type, id, stream);
    if (rc) return rc;
    evs_reader *r;
    if ((rc = evs_read_stream(s, stream, 1, EVS_FORWARD, 0, &r))) return rc;
    evs__saga *S = calloc(1, sizeof *S);
    if (!S) {
        evs_reader_close(r);
        return evs__err(EVS_ENOMEM, "out of memory");
    }
    snprintf(S->type, sizeof S->type, "%s", type);
    snprintf(S->id, sizeof S->id, "%s", id);
    const evs_event *ev;
    while ((rc = evs_reader_next(r, &ev)) == EVS_OK) {
        if (evs__saga_fold_event(S, ev, keep_data, err, sizeof err)) {
            rc = evs__err(EVS_ECORRUPT, "%s", err);
            break;
        }
    }
    evs_reader_close(r);
    if (rc != EVS_DONE) {
        evs__saga_free(S);
        return rc == EVS_OK ? EVS_ECORRUPT : rc;
    }
    if (!S->n_steps) {
        evs__saga_free(S);
        return evs__err(EVS_ECORRUPT, "%s does not begin with SagaStarted", stream);
    }
    *out = S;
    return EVS_OK;
}

/* --------------------------------------------------------------- summary */

static int run_state(const evs__saga *S) { return S->status == EVS_SAGA_PAUSED ? S->paused_from : S->status; }

int evs__saga_current(const evs__saga *S, uint32_t *attempt) {
    int st = run_state(S);
    *attempt = 0;
    if (st == EVS_SAGA_RUNNING) {
        if (S->cur >= S->n_steps) return -1;
        uint32_t a, b;
        evs__saga_group(S, S->cur, &a, &b);
        for (uint32_t k = a; k < b; k++)
            if (S->steps[k].st != EVS__ST_DONE && S->steps[k].st != EVS__ST_SKIPPED) {
                *attempt = S->steps[k].attempt;
                return (int)k;
            }
        return -1;
    }
    if (st == EVS_SAGA_COMPENSATING || st == EVS_SAGA_COMPENSATION_FAILED) {
        for (uint32_t k = S->n_steps; k-- > 0;) {
            int cs = S->steps[k].cs;
            if (cs == EVS__CS_PENDING || cs == EVS__CS_RETRY || cs == EVS__CS_FAILED) {
                *attempt = S->steps[k].cattempt;
                return (int)k;
            }
        }
    }
    return -1;
}

static void min_due(int64_t *m, int64_t t) {
    if (t && (!*m || t < *m)) *m = t;
}

int64_t evs__saga_next_due(const evs__saga *S) {
    int64_t m = 0;
    if (S->status == EVS_SAGA_RUNNING) {
        min_due(&m, S->deadline);
        if (S->cur < S->n_steps) {
            uint32_t a, b;
            evs__saga_group(S, S->cur, &a, &b);
            for (uint32_t k = a; k < b; k++)
                if (S->steps[k].st == EVS__ST_WAITING || S->steps[k].st == EVS__ST_RETRY) min_due(&m, S->steps[k].due);
        }
    } else if (S->status == EVS_SAGA_COMPENSATING) {
        for (uint32_t k = 0; k < S->n_steps; k++)
            if (S->steps[k].cs == EVS__CS_RETRY) min_due(&m, S->steps[k].cdue);
    }
    return m;
}

int evs__saga_has_work(const evs__saga *S) {
    if (S->status == EVS_SAGA_RUNNING) {
        if (S->cur >= S->n_steps) return 1; /* SagaCompleted is due */
        uint32_t a, b;
        evs__saga_group(S, S->cur, &a, &b);
        for (uint32_t k = a; k < b; k++)
            if (S->steps[k].st == EVS__ST_PENDING || S->steps[k].st == EVS__ST_FAILED) return 1;
        return 0;
    }
    if (S->status == EVS_SAGA_COMPENSATING) {
        int left = 0;
        for (uint32_t k = 0; k < S->n_steps; k++) {
            if (S->steps[k].cs == EVS__CS_PENDING) return 1;
            left |= S->steps[k].cs == EVS__CS_RETRY;
        }
        return !left; /* SagaCompensated is due */
    }
    return 0;
}

void evs__saga_info(const evs__saga *S, evs_saga_info *out) {
    memset(out, 0, sizeof *out);
    snprintf(out->type, sizeof out->type, "%s", S->type);
    snprintf(out->id, sizeof out->id, "%s", S->id);
    evs__saga_stream(S->type, S->id, out->stream);
    out->correlation_id = S->corr;
    out->status = S->status;
    out->paused_from = S->status == EVS_SAGA_PAUSED ? S->paused_from : S->status;
    uint32_t attempt;
    out->step = evs__saga_current(S, &attempt);
    out->attempt = attempt;
    if (out->step >= 0) snprintf(out->step_name, sizeof out->step_name, "%s", S->names[out->step]);
    out->started_at = S->started_at;
    out->updated_at = S->updated_at;
    out->next_due = evs__saga_next_due(S);
    out->version = S->version;
    snprintf(out->last_error, sizeof out->last_error, "%s", S->error);
}

/* ------------------------------------------------------------ the codec */

#define CODEC_FORMAT 1

static void p8(evs__sb *b, uint8_t v) { evs__sb_add(b, &v, 1); }
static void p32(evs__sb *b, uint32_t v) {
    uint8_t x[4];
    evs__put32(x, v);
    evs__sb_add(b, x, 4);
}
static void p64(evs__sb *b, uint64_t v) {
    uint8_t x[8];
    evs__put64(x, v);
    evs__sb_add(b, x, 8);
}
static void pstr(evs__sb *b, const char *s) {
    size_t n = s ? strlen(s) : 0;
    if (n > 65535) n = 65535;
    uint8_t x[2] = {(uint8_t)n, (uint8_t)(n >> 8)};
    evs__sb_add(b, x, 2);
    if (n) evs__sb_add(b, s, n);
}

int evs__saga_encode(const evs__saga *S, char **out, size_t *len) {
    evs__sb b = {0};
    p8(&b, CODEC_FORMAT);
    p8(&b, (uint8_t)S->status);
    p8(&b, (uint8_t)S->paused_from);
    p32(&b, S->n_steps);
    p32(&b, S->cur);
    p64(&b, (uint64_t)S->started_at);
    p64(&b, (uint64_t)S->updated_at);
    p64(&b, (uint64_t)S->deadline);
    p64(&b, (uint64_t)S->paused_at);
    p64(&b, S->version);
    p64(&b, S->last_gpos);
    p64(&b, S->trigger_pos);
    evs__sb_add(&b, S->corr.b, 16);
    evs__sb_add(&b, S->trigger_id.b, 16);
    p64(&b, (uint64_t)S->lease_until);
    p64(&b, S->step_failures);
    p64(&b, S->comp_failures);
    pstr(&b, S->lease_node);
    pstr(&b, S->type);
    pstr(&b, S->id);
    pstr(&b, S->error);
    for (uint32_t i = 0; i < S->n_steps; i++) {
        const evs__sstep *t = &S->steps[i];
        pstr(&b, S->names[i]);
        p32(&b, S->groups[i]);
        p8(&b, t->st);
        p8(&b, t->cs);
        p32(&b, t->attempt);
        p32(&b, t->base);
        p32(&b, t->cattempt);
        p32(&b, t->cbase);
        p64(&b, t->accepted);
        p64(&b, t->cdone);
        p64(&b, (uint64_t)t->due);
        p64(&b, t->from);
        p64(&b, (uint64_t)t->cdue);
        p64(&b, (uint64_t)t->began);
        pstr(&b, t->error);
    }
    *out = evs__sb_take(&b, len);
    return *out ? EVS_OK : evs__err(EVS_ENOMEM, "out of memory");
}

typedef struct rd {
    const uint8_t *p, *end;
    int bad;
} rd;

static const uint8_t *take(rd *r, size_t n) {
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = 1;
        return NULL;
    }
    const uint8_t *q = r->p;
    r->p += n;
    return q;
}
static uint8_t g8(rd *r) {
    const uint8_t *q = take(r, 1);
    return q ? *q : 0;
}
static uint32_t g32(rd *r) {
    const uint8_t *q = take(r, 4);
    return q ? evs__get32(q) : 0;
}
static uint64_t g64(rd *r) {
    const uint8_t *q = take(r, 8);
    return q ? evs__get64(q) : 0;
}
/* A string into buf (cap bytes); with heap != NULL a malloc'd copy instead (NULL when empty). */
static void gstr(rd *r, char *buf, size_t cap, char **heap) {
    const uint8_t *q = take(r, 2);
    size_t n = q ? (size_t)q[0] | (size_t)q[1] << 8 : 0;
    const uint8_t *s = take(r, n);
    if (!s) return;
    if (heap) {
        *heap = n ? strndup((const char *)s, n) : NULL;
        return;
    }
    if (n >= cap) n = cap - 1;
    memcpy(buf, s, n);
    buf[n] = 0;
}

int evs__saga_decode(const void *p, size_t n, evs__saga **out) {
    rd r = {p, (const uint8_t *)p + n, 0};
    *out = NULL;
    if (g8(&r) != CODEC_FORMAT) return evs__err(EVS_EFORMAT, "saga index: unknown state format");
    evs__saga *S = calloc(1, sizeof *S);
    if (!S) return evs__err(EVS_ENOMEM, "out of memory");
    S->status = g8(&r);
    S->paused_from = g8(&r);
    uint32_t ns = g32(&r);
    S->cur = g32(&r);
    S->started_at = (int64_t)g64(&r);
    S->updated_at = (int64_t)g64(&r);
    S->deadline = (int64_t)g64(&r);
    S->paused_at = (int64_t)g64(&r);
    S->version = g64(&r);
    S->last_gpos = g64(&r);
    S->trigger_pos = g64(&r);
    const uint8_t *c = take(&r, 16);
    if (c) memcpy(S->corr.b, c, 16);
    c = take(&r, 16);
    if (c) memcpy(S->trigger_id.b, c, 16);
    S->lease_until = (int64_t)g64(&r);
    S->step_failures = g64(&r);
    S->comp_failures = g64(&r);
    gstr(&r, S->lease_node, sizeof S->lease_node, NULL);
    gstr(&r, S->type, sizeof S->type, NULL);
    gstr(&r, S->id, sizeof S->id, NULL);
    gstr(&r, S->error, sizeof S->error, NULL);
    if (ns > EVS_SAGA_MAX_STEPS) r.bad = 1;
    if (!r.bad && ns) {
        S->names = calloc(ns, sizeof *S->names);
        S->groups = calloc(ns, sizeof *S->groups);
        S->steps = calloc(ns, sizeof *S->steps);
        if (!S->names || !S->groups || !S->steps) {
            evs__saga_free(S);
            return evs__err(EVS_ENOMEM, "out of memory");
        }
        S->n_steps = ns;
    }
    for (uint32_t i = 0; !r.bad && i < ns; i++) {
        evs__sstep *t = &S->steps[i];
        gstr(&r, S->names[i], sizeof S->names[i], NULL);
        S->groups[i] = g32(&r);
        t->st = g8(&r);
        t->cs = g8(&r);
        t->attempt = g32(&r);
        t->base = g32(&r);
        t->cattempt = g32(&r);
        t->cbase = g32(&r);
        t->accepted = g64(&r);
        t->cdone = g64(&r);
        t->due = (int64_t)g64(&r);
        t->from = g64(&r);
        t->cdue = (int64_t)g64(&r);
        t->began = (int64_t)g64(&r);
        gstr(&r, NULL, 0, &t->error);
    }
    if (r.bad) {
        evs__saga_free(S);
        return evs__err(EVS_ECORRUPT, "saga index: a state record is truncated");
    }
    *out = S;
    return EVS_OK;
}
