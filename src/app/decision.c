/*
 * decision.c — the values a command produces: what decide() emits or
 * rejects (evs_decision), and the command and its result as the caller
 * sees them (evs_command, evs_command_result).  No I/O; the command bus
 * (command.c) and the Lua aggregates (agg_lua.c) build on it.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app_internal.h"

/* ------------------------------------------------------------- decisions */

void evs__decision_reset(evs_decision *d) {
    for (size_t i = 0; i < d->n; i++) {
        free(d->types[i]);
        free(d->data[i]);
    }
    d->n = 0;
    d->rejected = 0;
    d->reason[0] = 0;
    d->error[0] = 0;
}

void evs__decision_free(evs_decision *d) {
    evs__decision_reset(d);
    free(d->types);
    free(d->data);
    free(d->lens);
    memset(d, 0, sizeof *d);
}

int evs_decision_emit(evs_decision *d, const char *type, const char *data, size_t len) {
    if (!d) return evs__err(EVS_EINVAL, "decision_emit: decision is NULL");
    size_t tl = type ? strlen(type) : 0;
    if (!tl || tl > EVS_MAX_TYPE_NAME) {
        snprintf(d->error, sizeof d->error, "decide emitted an event with %s type", tl ? "a too long" : "an empty");
        return evs__err(EVS_EINVAL, "%s", d->error);
    }
    if (!data) data = "{}", len = 2;
    if (d->n >= EVS_MAX_EVENTS_PER_APPEND) {
        snprintf(d->error, sizeof d->error, "decide emitted more than %u events", EVS_MAX_EVENTS_PER_APPEND);
        return evs__err(EVS_ELIMIT, "%s", d->error);
    }
    if (d->n == d->cap) {
        size_t nc = d->cap ? d->cap * 2 : 4;
        char **t = realloc(d->types, nc * sizeof *t);
        if (t) d->types = t;
        char **x = realloc(d->data, nc * sizeof *x);
        if (x) d->data = x;
        size_t *l = realloc(d->lens, nc * sizeof *l);
        if (l) d->lens = l;
        if (!t || !x || !l) return evs__err(EVS_ENOMEM, "out of memory");
        d->cap = nc;
    }
    char *tc = strdup(type), *dc = malloc(len + 1);
    if (!tc || !dc) {
        free(tc);
        free(dc);
        return evs__err(EVS_ENOMEM, "out of memory");
    }
    memcpy(dc, data, len);
    dc[len] = 0;
    d->types[d->n] = tc;
    d->data[d->n] = dc;
    d->lens[d->n] = len;
    d->n++;
    return EVS_OK;
}

int evs_decision_reject(evs_decision *d, const char *reason) {
    if (!d) return evs__err(EVS_EINVAL, "decision_reject: decision is NULL");
    d->rejected = 1;
    snprintf(d->reason, sizeof d->reason, "%s", reason && *reason ? reason : "rejected");
    return EVS_OK;
}

/* --------------------------------------------------------------- results */

void evs_command_init(evs_command *c) {
    memset(c, 0, sizeof *c);
    c->expected_version = EVS_EXPECT_ANY;
}

void evs_command_result_free(evs_command_result *r) {
    if (!r) return;
    free(r->event_ids);
    r->event_ids = NULL;
    r->n_events = 0;
}

int evs_command_result_to_json(const evs_command_result *r, char **json, size_t *len) {
    if (!r || !json) return evs__err(EVS_EINVAL, "command_result_to_json: NULL argument");
    char u[37];
    json_t *o = json_object(), *ev = json_array();
    if (!o || !ev) {
        json_decref(o);
        json_decref(ev);
        return evs__err(EVS_ENOMEM, "out of memory");
    }
    json_object_set_new(o, "outcome", json_string(evs_command_outcome_name(r->outcome)));
    json_object_set_new(o, "command_id", json_string(r->command_id));
    if (r->stream[0]) json_object_set_new(o, "stream", json_string(r->stream));
    if (!evs_uuid_is_nil(&r->correlation_id)) {
        evs_uuid_format(&r->correlation_id, u);
        json_object_set_new(o, "correlation_id", json_string(u));
    }
    for (size_t i = 0; i < r->n_events; i++) {
        evs_uuid_format(&r->event_ids[i], u);
        json_array_append_new(ev, json_string(u));
    }
    json_object_set_new(o, "events", ev);
    json_object_set_new(o, "first_position", json_integer((json_int_t)r->first_position));
    json_object_set_new(o, "last_position", json_integer((json_int_t)r->last_position));
    json_object_set_new(o, "version", json_integer((json_int_t)r->version));
    json_object_set_new(o, "idempotent", json_boolean(r->idempotent));
    json_object_set_new(o, "retries", json_integer(r->retries));
    if (r->reason[0]) json_object_set_new(o, "reason", json_string(r->reason));
    if (r->field[0]) json_object_set_new(o, "field", json_string(r->field));
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!s) return evs__err(EVS_ENOMEM, "out of memory");
    *json = s;
    if (len) *len = strlen(s);
    return EVS_OK;
}
