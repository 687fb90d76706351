/*
 * saga_fixture.h — what the saga tests share: a fake clock, a small domain
 * (Lua aggregates "res", "job" and "ext"), a generic C saga definition
 * driven by the instance's data, and readers that render a saga's stream and
 * the domain events its commands caused as short strings to compare.
 *
 * The domain:
 *   job-{id}  Launch {plan} -> JobLaunched {plan}: starts the saga "id"
 *   res-{r}   Reserve {by, attempt?, ok_from?} -> Reserved (rejected while
 *             attempt < ok_from, or when held); Release {by, fail?} ->
 *             Released (rejected when fail, or not held by `by`)
 *   ext-{x}   Answer {ok} -> Answered or Declined (an outside service's
 *             answer, sent with the saga's correlation id)
 * The plan of an instance says, per step name, which resource its action
 * reserves ({"res": "a"} or a list {"res": ["a", "b"]}), from which attempt
 * it succeeds (ok_from), whether its release fails (comp_fail) and whether
 * it appends an event instead (append).
 */
#ifndef EVS_SAGA_FIXTURE_H
#define EVS_SAGA_FIXTURE_H

#include <jansson.h>
#include <stdatomic.h>

#include "evstore_app.h"
#include "evstore_saga.h"
#include "testutil.h"

/* ------------------------------------------------------------ fake clock */

typedef struct sf_clock {
    _Atomic int64_t now;
    uint64_t rnd;
} sf_clock;

static int64_t sf_now(void *ctx) { return atomic_load(&((sf_clock *)ctx)->now); }
static void sf_sleep(void *ctx, int64_t ns) { atomic_fetch_add(&((sf_clock *)ctx)->now, ns); }
static uint64_t sf_random(void *ctx) { return ((sf_clock *)ctx)->rnd; }

#define SF_SEC 1000000000ll

/* ---------------------------------------------------------------- domain */

static const char sf_res_lua[] =
    "return {\n"
    "  init = function() return { count = 0 } end,\n"
    "  evolve = {\n"
    "    Reserved = function(s, e) s.holder = e.data.by; s.count = s.count + 1 end,\n"
    "    Released = function(s, e) s.holder = nil end,\n"
    "  },\n"
    "  commands = {\n"
    "    Reserve = { fields = { by = 'string', attempt = 'integer?', ok_from = 'integer?' },\n"
    "      decide = function(s, c)\n"
    "        if c.data.ok_from and (c.data.attempt or 1) < c.data.ok_from then\n"
    "          return 'not yet (attempt ' .. (c.data.attempt or 1) .. ')' end\n"
    "        if s.holder then return 'held by ' .. s.holder end\n"
    "        return { { type = 'Reserved', data = { by = c.data.by } } }\n"
    "      end },\n"
    "    Release = { fields = { by = 'string', fail = 'boolean?' },\n"
    "      decide = function(s, c)\n"
    "        if c.data.fail then return 'release refused' end\n"
    "        if s.holder ~= c.data.by then return 'not held by ' .. c.data.by end\n"
    "        return { { type = 'Released', data = { by = c.data.by } } }\n"
    "      end },\n"
    "  },\n"
    "}\n";

static const char sf_job_lua[] =
    "return {\n"
    "  evolve = { JobLaunched = function(s, e) s.launched = true end },\n"
    "  commands = {\n"
    "    Launch = { fields = { plan = 'object' },\n"
    "      decide = function(s, c) return { { type = 'JobLaunched', data = { plan = c.data.plan } } } end },\n"
    "  },\n"
    "}\n";

static const char sf_ext_lua[] =
    "return {\n"
    "  evolve = {},\n"
    "  commands = {\n"
    "    Answer = { fields = { ok = 'boolean' },\n"
    "      decide = function(s, c)\n"
    "        return { { type = c.data.ok and 'Answered' or 'Declined', data = {} } } end },\n"
    "  },\n"
    "}\n";

typedef struct sf {
    char *dir;
    evs_store *s;
    evs_app *a;
    evs_saga_engine *e;
    sf_clock clk;
    evs_clock clock;
} sf;

static inline void sf_die(const char *what) {
    fprintf(stderr, "%s: %s\n", what, evs_errmsg());
    exit(2);
}

/* Open store, app and (workers 0: run by hand) engine on dir; the clock starts at t0. */
static inline void sf_open(sf *f, const char *dir, uint32_t workers, int64_t t0) {
    f->dir = strdup(dir);
    f->s = tu_open(dir, EVS_DURABILITY_NONE, 1 << 20);
    if (evs_app_open(f->s, NULL, NULL, &f->a)) sf_die("app_open");
    if (evs_app_register_lua_aggregate(f->a, "res", sf_res_lua, strlen(sf_res_lua)) ||
        evs_app_register_lua_aggregate(f->a, "job", sf_job_lua, strlen(sf_job_lua)) ||
        evs_app_register_lua_aggregate(f->a, "ext", sf_ext_lua, strlen(sf_ext_lua)))
        sf_die("register aggregates");
    if (t0) atomic_store(&f->clk.now, t0);
    f->clock.now_ns = sf_now;
    f->clock.sleep_ns = sf_sleep;
    f->clock.random = sf_random;
    f->clock.ctx = &f->clk;
    evs_saga_config c;
    evs_saga_config_init(&c);
    c.workers = workers;
    c.from = EVS_SUB_FROM_START;
    c.clock = t0 ? &f->clock : NULL;
    c.node_id = "node-a";
    if (evs_saga_engine_open(f->s, f->a, &c, &f->e)) sf_die("saga_engine_open");
}

static inline void sf_close(sf *f) {
    evs_saga_engine_close(f->e);
    evs_app_close(f->a);
    evs_store_close(f->s);
    free(f->dir);
    memset(f, 0, sizeof *f);
}

static inline void sf_advance(sf *f, int64_t ns) { atomic_fetch_add(&f->clk.now, ns); }

/* Run the engine until it has nothing left to do now. */
static inline void sf_run(sf *f) {
    size_t done;
    for (int i = 0; i < 100; i++) {
        if (evs_saga_engine_run(f->e, &done)) sf_die("saga_engine_run");
        if (!done) return;
    }
}

/* A command, given as JSON; returns its outcome. */
static inline int sf_cmd(sf *f, const char *json) {
    evs_command_result r;
    if (evs_app_execute_json(f->a, NULL, json, strlen(json), &r)) sf_die("execute");
    int o = r.outcome;
    if (o != EVS_CMD_ACCEPTED && getenv("EVS_VERBOSE")) fprintf(stderr, "    %s -> %s\n", json, r.reason);
    evs_command_result_free(&r);
    return o;
}

/* Launch job `id` with the plan (a JSON object). */
static inline void sf_launch(sf *f, const char *id, const char *plan) {
    char buf[4096];
    snprintf(buf, sizeof buf, "{\"command_id\":\"launch-%s\",\"command_type\":\"Launch\",\"aggregate_id\":\"%s\",\"data\":{\"plan\":%s}}",
             id, id, plan);
    if (sf_cmd(f, buf) != EVS_CMD_ACCEPTED) sf_die("launch");
}

/* An outside answer with the saga's correlation id. */
static inline void sf_answer(sf *f, const char *type, const char *id, const char *ext, int ok) {
    evs_saga_info in;
    if (evs_saga_get(f->e, type, id, &in)) sf_die("saga_get");
    char u[37], buf[512];
    evs_uuid_format(&in.correlation_id, u);
    snprintf(buf, sizeof buf, "{\"command_type\":\"Answer\",\"aggregate_id\":\"%s\",\"correlation_id\":\"%s\",\"data\":{\"ok\":%s}}",
             ext, u, ok ? "true" : "false");
    if (sf_cmd(f, buf) != EVS_CMD_ACCEPTED) sf_die("answer");
}

/*
 * The saga's stream as "Type(step)" items joined by spaces: SagaStarted
 * SagaStepCompleted(0) SagaStepFailed(1:rejected) ...  (a failure shows its
 * kind; a retry "+r").  Ownership: malloc'd.
 */
static inline char *sf_history(sf *f, const char *type, const char *id) {
    char stream[300], *out = calloc(1, 8192);
    snprintf(stream, sizeof stream, "saga-%s-%s", type, id);
    evs_reader *r;
    const evs_event *ev;
    if (evs_read_stream(f->s, stream, 1, EVS_FORWARD, 0, &r)) return out;
    size_t n = 0;
    while (evs_reader_next(r, &ev) == EVS_OK && n < 8000) {
        json_t *d = json_loadb(ev->data, ev->data_len, 0, NULL);
        json_t *st = json_object_get(d, "step");
        n += (size_t)snprintf(out + n, 8192 - n, "%s%.*s", n ? " " : "", (int)ev->event_type_len, ev->event_type);
        if (json_is_integer(st)) {
            const char *kind = json_string_value(json_object_get(d, "kind"));
            n += (size_t)snprintf(out + n, 8192 - n, "(%lld%s%s%s)", (long long)json_integer_value(st), kind ? ":" : "",
                                  kind ? kind : "", json_object_get(d, "retry_at") ? "+r" : "");
        }
        json_decref(d);
    }
    evs_reader_close(r);
    return out;
}

/*
 * The domain events caused by saga `id`'s commands, in global order, as
 * "Type:stream:phase/step/effect/attempt" joined by spaces.  Ownership: malloc'd.
 */
static inline char *sf_effects(sf *f, const char *id) {
    char *out = calloc(1, 16384);
    evs_reader *r;
    const evs_event *ev;
    size_t n = 0;
    if (evs_read_all(f->s, 1, EVS_FORWARD, NULL, 0, &r)) return out;
    while (evs_reader_next(r, &ev) == EVS_OK && n < 16000) {
        json_t *m = json_loadb(ev->metadata, ev->metadata_len, 0, NULL);
        const char *sid = json_string_value(json_object_get(m, "saga_id"));
        if (sid && !strcmp(sid, id))
            n += (size_t)snprintf(out + n, 16384 - n, "%s%.*s:%.*s:%c/%s/%lld/%lld", n ? " " : "", (int)ev->event_type_len,
                                  ev->event_type, (int)ev->stream_len, ev->stream,
                                  json_string_value(json_object_get(m, "saga_phase"))[0],
                                  json_string_value(json_object_get(m, "saga_step")),
                                  (long long)json_integer_value(json_object_get(m, "saga_effect")),
                                  (long long)json_integer_value(json_object_get(m, "saga_attempt")));
        json_decref(m);
    }
    evs_reader_close(r);
    return out;
}

/* ------------------------------------------------- a data-driven C saga */

/* data = {"plan": {step: {"res": "a" | ["a", "b"], "ok_from": n, "comp_fail": true, "append": true}}} */
static inline json_t *sf_plan_of(const evs_saga_ctx *sc) {
    json_t *d = json_loadb(sc->data, sc->data_len, 0, NULL);
    json_t *p = json_incref(json_object_get(json_object_get(d, "plan"), sc->step));
    json_decref(d);
    return p;
}

static int sf_action(void *ctx, const evs_saga_ctx *sc, evs_saga_out *out, char *err, size_t cap) {
    (void)ctx, (void)err, (void)cap;
    json_t *p = sf_plan_of(sc), *res = json_object_get(p, "res");
    int rc = 0;
    json_t *list = json_is_array(res) ? json_incref(res) : json_pack("[O]", res ? res : json_null());
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v) {
        if (!json_is_string(v)) continue;
        char data[256];
        json_t *okf = json_object_get(p, "ok_from");
        if (json_is_true(json_object_get(p, "append"))) {
            char stream[128];
            snprintf(stream, sizeof stream, "log-%s", json_string_value(v));
            snprintf(data, sizeof data, "{\"by\":\"%s\"}", sc->id);
            rc |= evs_saga_out_append(out, stream, "Noted", data, strlen(data));
            continue;
        }
        if (okf) snprintf(data, sizeof data, "{\"by\":\"%s\",\"attempt\":%u,\"ok_from\":%lld}", sc->id, sc->attempt,
                          (long long)json_integer_value(okf));
        else snprintf(data, sizeof data, "{\"by\":\"%s\"}", sc->id);
        rc |= evs_saga_out_command(out, "Reserve", json_string_value(v), data, strlen(data));
    }
    json_decref(list);
    json_decref(p);
    return rc ? 1 : 0;
}

static int sf_compensate(void *ctx, const evs_saga_ctx *sc, evs_saga_out *out, char *err, size_t cap) {
    (void)ctx, (void)err, (void)cap;
    json_t *p = sf_plan_of(sc), *res = json_object_get(p, "res");
    int fail = json_is_true(json_object_get(p, "comp_fail"));
    json_t *list = json_is_array(res) ? json_incref(res) : json_pack("[O]", res ? res : json_null());
    int rc = 0;
    for (size_t k = 0; k < sc->n_accepted; k++) {
        json_t *v = json_array_get(list, sc->accepted[k]);
        if (!json_is_string(v) || json_is_true(json_object_get(p, "append"))) continue;
        char data[128];
        snprintf(data, sizeof data, "{\"by\":\"%s\"%s}", sc->id, fail ? ",\"fail\":true" : "");
        rc |= evs_saga_out_command(out, "Release", json_string_value(v), data, strlen(data));
    }
    json_decref(list);
    json_decref(p);
    return rc ? 1 : 0;
}

/* Register saga `type` with the named steps (groups may be NULL), every step sf_action / sf_compensate. */
static inline void sf_register(sf *f, const char *type, const char *const *names, const uint32_t *groups, size_t n,
                        void (*tweak)(evs_saga_def *, evs_saga_step_def *)) {
    static const char *const start[] = {"JobLaunched"};
    evs_saga_step_def steps[16];
    for (size_t i = 0; i < n; i++) {
        evs_saga_step_init(&steps[i]);
        steps[i].name = names[i];
        steps[i].group = groups ? groups[i] : 0;
        steps[i].action = sf_action;
        steps[i].compensate = sf_compensate;
        steps[i].retry.jitter = 0;
        steps[i].compensation_retry.jitter = 0;
    }
    evs_saga_def d;
    evs_saga_def_init(&d);
    d.name = type;
    d.start_on = start;
    d.n_start_on = 1;
    d.steps = steps;
    d.n_steps = n;
    if (tweak) tweak(&d, steps);
    if (evs_saga_register(f->e, &d)) sf_die("saga_register");
}

#endif
