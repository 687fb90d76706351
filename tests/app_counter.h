/*
 * app_counter.h — a small C aggregate for the application-layer tests and
 * benchmarks: "counter-{id}" streams of Added {"n": k} events.
 *
 * The state folds in an order-sensitive checksum (h), so a state built from
 * a snapshot plus the wrong tail, a lost update or a reordering shows.
 * Commands: Add {n: integer >= 1} (rejected otherwise), Noop (no events),
 * Peek (rejected with the state decide was given as its reason: what a
 * command saw, e.g. from the state cache).
 * tc_code_version picks the evolve code: "v1" folds h = h*31 + n + version,
 * "v2" h = h*37 + n; a snapshot made by one must never be applied by the
 * other.
 */
#ifndef EVS_APP_COUNTER_H
#define EVS_APP_COUNTER_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evstore_app.h"

typedef struct tc_state {
    long long count, sum;
    unsigned long long h;
    unsigned long long version;
} tc_state;

static int tc_v2;

/* p is n bytes, not NUL-terminated: the number is copied before strtoll reads it. */
static const char *tc_number(const char *p, size_t n, const char *name, char num[24]) {
    char key[32];
    snprintf(key, sizeof key, "\"%s\":", name);
    size_t kl = strlen(key);
    num[0] = 0;
    for (size_t i = 0; i + kl <= n; i++)
        if (memcmp(p + i, key, kl) == 0) {
            size_t k = n - i - kl < 23 ? n - i - kl : 23;
            memcpy(num, p + i + kl, k);
            num[k] = 0;
            break;
        }
    return num;
}

static long long tc_field(const char *p, size_t n, const char *name) {
    char num[24];
    return strtoll(tc_number(p, n, name, num), NULL, 10);
}

static int tc_init(void *ctx, void **state, char *err, size_t cap) {
    (void)ctx, (void)err, (void)cap;
    *state = calloc(1, sizeof(tc_state));
    return *state ? 0 : 1;
}

static void tc_apply(tc_state *s, long long n, unsigned long long version) {
    s->count++;
    s->sum += n;
    s->h = tc_v2 ? s->h * 37u + (unsigned long long)n : s->h * 31u + (unsigned long long)n + version;
    s->version = version;
}

static int tc_evolve(void *ctx, void *state, const evs_event *ev, char *err, size_t cap) {
    (void)ctx;
    if (ev->event_type_len == 5 && memcmp(ev->event_type, "Added", 5) == 0) {
        tc_apply(state, tc_field(ev->data, ev->data_len, "n"), ev->stream_position);
        return 0;
    }
    snprintf(err, cap, "unexpected event type %.*s", (int)ev->event_type_len, ev->event_type);
    return 1;
}

static int tc_decide(void *ctx, const void *state, uint64_t version, const evs_command *cmd, evs_decision *d, char *err,
                     size_t cap) {
    (void)ctx, (void)version;
    if (strcmp(cmd->command_type, "Noop") == 0) return 0;
    if (strcmp(cmd->command_type, "Peek") == 0) { /* rejects with the state it was given, as tc_encode writes it */
        const tc_state *s = state;
        char buf[160];
        snprintf(buf, sizeof buf, "{\"count\":%lld,\"sum\":%lld,\"h\":%llu,\"version\":%llu}", s->count, s->sum, s->h,
                 s->version);
        return evs_decision_reject(d, buf) ? 1 : 0;
    }
    if (strcmp(cmd->command_type, "Add") != 0 && strcmp(cmd->command_type, "Bump") != 0) {
        snprintf(err, cap, "counter cannot handle %s", cmd->command_type);
        return 1;
    }
    long long n = tc_field(cmd->data, cmd->data_len, "n");
    if (n < 1) return evs_decision_reject(d, "n must be at least 1");
    char data[64];
    snprintf(data, sizeof data, "{\"n\":%lld}", n);
    return evs_decision_emit(d, "Added", data, strlen(data)) ? 1 : 0;
}

static int tc_encode(void *ctx, const void *state, char **json, size_t *len) {
    (void)ctx;
    const tc_state *s = state;
    char buf[160];
    int n = snprintf(buf, sizeof buf, "{\"count\":%lld,\"sum\":%lld,\"h\":%llu,\"version\":%llu}", s->count, s->sum,
                     s->h, s->version);
    *json = strdup(buf);
    *len = (size_t)n;
    return *json ? 0 : 1;
}

static int tc_decode(void *ctx, const char *json, size_t len, void **state, char *err, size_t cap) {
    (void)ctx, (void)err, (void)cap;
    tc_state *s = calloc(1, sizeof *s);
    if (!s) return 1;
    s->count = tc_field(json, len, "count");
    s->sum = tc_field(json, len, "sum");
    /* json is len bytes, not NUL-terminated: never strstr it (a snapshot at the end of the mapped file
       made that read past the mapping, SIGBUS under ASan) */
    char num[24];
    s->h = strtoull(tc_number(json, len, "h", num), NULL, 10);
    s->version = (unsigned long long)tc_field(json, len, "version");
    *state = s;
    return 0;
}

static void tc_free(void *ctx, void *state) {
    (void)ctx;
    free(state);
}

/* Register the counter aggregate and its Add / Noop handlers. */
static inline int tc_register(evs_app *a, const char *code_version) {
    tc_v2 = strcmp(code_version, "v2") == 0;
    evs_aggregate_def def = {0};
    def.name = "counter";
    def.schema_version = 1;
    def.code_version = code_version;
    def.init = tc_init;
    def.evolve = tc_evolve;
    def.decide = tc_decide;
    def.encode = tc_encode;
    def.decode = tc_decode;
    def.free_state = tc_free;
    int rc = evs_app_register_aggregate(a, &def);
    if (rc) return rc;
    static const evs_field_spec fields[] = {{"n", EVS_FIELD_INTEGER, 1}};
    evs_command_handler h = {"Add", EVS_HANDLER_AGGREGATE, "counter", fields, 1};
    if ((rc = evs_app_register_handler(a, &h))) return rc;
    evs_command_handler h2 = {"Noop", EVS_HANDLER_AGGREGATE, "counter", NULL, 0};
    if ((rc = evs_app_register_handler(a, &h2))) return rc;
    evs_command_handler h3 = {"Peek", EVS_HANDLER_AGGREGATE, "counter", NULL, 0};
    return evs_app_register_handler(a, &h3);
}

/* The state the sequential fold of Added events with these n gives, encoded as tc_encode does. */
static inline void tc_fold_json(const long long *ns, size_t count, char *out, size_t cap) {
    tc_state s = {0};
    for (size_t i = 0; i < count; i++) tc_apply(&s, ns[i], i + 1);
    snprintf(out, cap, "{\"count\":%lld,\"sum\":%lld,\"h\":%llu,\"version\":%llu}", s.count, s.sum, s.h, s.version);
}

#endif
