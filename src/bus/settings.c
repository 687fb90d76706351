/*
 * settings.c — consumer settings as JSON (settings.h): reading a group's
 * or a subscription's settings object strictly (an unknown field or a bad
 * value is refused and named, never ignored), and writing a consumer
 * record and a group's settings.  The server's routes and the evstore
 * command both come here, so local and remote agree to the byte.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "bus/settings.h"

int evs__settings_fail(evs__settings_err *j, const char *field, const char *fmt, ...) {
    if (j->field) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->why, sizeof j->why, fmt, ap);
    va_end(ap);
    j->field = field;
    return -1;
}

int evs__settings_int(evs__settings_err *j, json_t *o, const char *key, long long min, long long max, long long *out) {
    json_t *v = json_object_get(o, key);
    if (!v) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
        return evs__settings_fail(j, key, "%s must be an integer in %lld..%lld", key, min, max);
    *out = json_integer_value(v);
    return 0;
}

/* evs__settings_str, whose refusal adds `also` (what else the value may be) */
static int settings_str_also(evs__settings_err *j, json_t *o, const char *key, size_t max, const char **out,
                             const char *also) {
    json_t *v = json_object_get(o, key);
    if (!v) return 0;
    if (!json_is_string(v) || !json_string_length(v) || json_string_length(v) > max ||
        strlen(json_string_value(v)) != json_string_length(v))
        return evs__settings_fail(j, key, "%s must be a string of 1..%zu bytes%s", key, max, also);
    *out = json_string_value(v);
    return 0;
}

int evs__settings_str(evs__settings_err *j, json_t *o, const char *key, size_t max, const char **out) {
    return settings_str_also(j, o, key, max, out, "");
}

/* A setting a record shows as null when it is unset (owner): null means unset, as leaving it out
   does, so a record's own settings can be put back as they were read. */
static int settings_str_or_null(evs__settings_err *j, json_t *o, const char *key, size_t max, const char **out) {
    if (json_is_null(json_object_get(o, key))) return 0;
    return settings_str_also(j, o, key, max, out, ", or null");
}

int evs__settings_keys(evs__settings_err *j, json_t *o, const char *where, const char *const *keys) {
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        size_t i = 0;
        while (keys[i] && strcmp(keys[i], k) != 0) i++;
        if (!keys[i]) return evs__settings_fail(j, k, "unknown field \"%.60s\" in %s", k, where);
    }
    return 0;
}

/* filter {"event_types": [...], "stream_type", "stream_prefix", "correlation_id"}, absent: no filter. */
static int jfilter(evs__settings_err *j, json_t *o, evs__json_filter *jf) {
    static const char *const fkeys[] = {"event_types", "stream_type", "stream_prefix", "correlation_id", NULL};
    json_t *f = json_object_get(o, "filter");
    memset(jf, 0, sizeof *jf);
    if (!f) return 0;
    if (!json_is_object(f)) return evs__settings_fail(j, "filter", "filter must be an object");
    if (evs__settings_keys(j, f, "filter", fkeys)) return -1;
    json_t *t = json_object_get(f, "event_types");
    if (t) {
        if (!json_is_array(t) || json_array_size(t) > EVS_SETTINGS_MAX_TYPES)
            return evs__settings_fail(j, "event_types", "filter.event_types must be an array of at most %u names",
                         EVS_SETTINGS_MAX_TYPES);
        for (size_t i = 0; i < json_array_size(t); i++) {
            json_t *e = json_array_get(t, i);
            if (!json_is_string(e) || !json_string_length(e) || json_string_length(e) > EVS_MAX_TYPE_NAME)
                return evs__settings_fail(j, "event_types", "filter.event_types[%zu] must be a name of 1..%u bytes", i,
                             EVS_MAX_TYPE_NAME);
            jf->types[i] = json_string_value(e);
        }
        jf->f.event_types = jf->types;
        jf->f.n_event_types = json_array_size(t);
    }
    if (evs__settings_str(j, f, "stream_type", EVS_MAX_TYPE_NAME, &jf->f.stream_type) ||
        evs__settings_str(j, f, "stream_prefix", EVS_MAX_STREAM_NAME, &jf->f.stream_prefix))
        return -1;
    const char *s = NULL;
    if (evs__settings_str(j, f, "correlation_id", 64, &s)) return -1;
    if (s) {
        if (evs_uuid_parse(s, strlen(s), &jf->corr)) return evs__settings_fail(j, "correlation_id", "filter.correlation_id is not a UUID");
        jf->f.correlation_id = &jf->corr;
    }
    return 0;
}

/* from: "start", "now" or a position (absent: *out unchanged). */
static int jfrom(evs__settings_err *j, json_t *o, uint64_t *out) {
    json_t *from = json_object_get(o, "from");
    if (!from) return 0;
    if (json_is_string(from) && strcmp(json_string_value(from), "start") == 0) *out = EVS_SUB_FROM_START;
    else if (json_is_string(from) && strcmp(json_string_value(from), "now") == 0) *out = EVS_SUB_FROM_NOW;
    else if (json_is_integer(from) && json_integer_value(from) >= 1) *out = (uint64_t)json_integer_value(from);
    else return evs__settings_fail(j, "from", "from must be \"start\", \"now\" or a position (1, 2, ...)");
    return 0;
}

int evs__group_settings_parse(json_t *o, const char *name, evs__group_settings_in *g, evs__settings_err *j) {
    static const char *const top[] = {"owner", "filter", "tag", "from", "strategy", "ack_timeout_ms",
                                      "max_in_flight", "buffer_size", "retry", "on_failure", "per_stream_order",
                                      "dlq_max_count", "dlq_max_age_ms", "checkpoint_every", "checkpoint_ms", NULL};
    static const char *const rkeys[] = {"backoff", "max_retries", "initial_delay_ms", "max_delay_ms", "jitter", NULL};
    evs_group_config *c = &g->c;
    memset(j, 0, sizeof *j);
    evs_group_config_init(c);
    c->name = name;
    if (!json_is_object(o)) return evs__settings_fail(j, "", "expected a JSON object of group settings");
    if (evs__settings_keys(j, o, "the settings", top)) return -1;
    const char *s = NULL;
    long long v;
    if (settings_str_or_null(j, o, "owner", 255, &c->owner) || evs__settings_str(j, o, "tag", EVS_MAX_TAG_BYTES, &c->tag)) return -1;
    if (jfilter(j, o, &g->jf)) return -1;
    c->filter = g->jf.f;
    if (jfrom(j, o, &c->from)) return -1;
    if (evs__settings_str(j, o, "strategy", 32, &s)) return -1;
    if (s && evs_group_strategy_parse(s, &c->strategy))
        return evs__settings_fail(j, "strategy", "strategy must be \"round_robin\" or \"pinned\"");
    v = c->ack_timeout_ns / 1000000;
    if (evs__settings_int(j, o, "ack_timeout_ms", 1, 86400000, &v)) return -1;
    c->ack_timeout_ns = v * 1000000;
    v = c->max_in_flight ? c->max_in_flight : 10;
    if (evs__settings_int(j, o, "max_in_flight", 1, EVS_GROUP_MAX_IN_FLIGHT, &v)) return -1;
    c->max_in_flight = (uint32_t)v;
    v = c->buffer_size ? c->buffer_size : EVS_BUS_MAX_PAGE;
    if (evs__settings_int(j, o, "buffer_size", 1, EVS_BUS_MAX_PAGE, &v)) return -1;
    c->buffer_size = (uint32_t)v;
    json_t *r = json_object_get(o, "retry");
    if (r) {
        if (!json_is_object(r)) return evs__settings_fail(j, "retry", "retry must be an object");
        if (evs__settings_keys(j, r, "retry", rkeys)) return -1;
        s = NULL;
        if (evs__settings_str(j, r, "backoff", 16, &s)) return -1;
        if (s) {
            if (strcmp(s, "exponential") == 0) c->retry.backoff = EVS_BACKOFF_EXPONENTIAL;
            else if (strcmp(s, "linear") == 0) c->retry.backoff = EVS_BACKOFF_LINEAR;
            else if (strcmp(s, "fixed") == 0) c->retry.backoff = EVS_BACKOFF_FIXED;
            else return evs__settings_fail(j, "backoff", "retry.backoff must be \"exponential\", \"linear\" or \"fixed\"");
        }
        v = c->retry.max_retries;
        if (evs__settings_int(j, r, "max_retries", 0, 1000, &v)) return -1;
        c->retry.max_retries = (uint32_t)v;
        v = c->retry.initial_delay_ns / 1000000;
        if (evs__settings_int(j, r, "initial_delay_ms", 0, 86400000, &v)) return -1;
        c->retry.initial_delay_ns = v * 1000000;
        v = c->retry.max_delay_ns / 1000000;
        if (evs__settings_int(j, r, "max_delay_ms", 0, 86400000, &v)) return -1;
        c->retry.max_delay_ns = v * 1000000;
        json_t *jt = json_object_get(r, "jitter");
        if (jt) {
            if (!json_is_number(jt) || json_number_value(jt) < 0 || json_number_value(jt) > 1)
                return evs__settings_fail(j, "jitter", "retry.jitter must be a number in 0..1");
            c->retry.jitter = json_number_value(jt);
        }
    }
    s = NULL;
    if (evs__settings_str(j, o, "on_failure", 16, &s)) return -1;
    if (s) {
        if (strcmp(s, "park") == 0) c->on_failure = EVS_ON_FAILURE_PARK;
        else if (strcmp(s, "stop") == 0) c->on_failure = EVS_ON_FAILURE_STOP;
        else return evs__settings_fail(j, "on_failure", "on_failure must be \"park\" or \"stop\"");
    }
    json_t *pso = json_object_get(o, "per_stream_order");
    if (pso && !json_is_boolean(pso)) return evs__settings_fail(j, "per_stream_order", "per_stream_order must be true or false");
    c->per_stream_order = pso && json_is_true(pso);
    v = 0;
    if (evs__settings_int(j, o, "dlq_max_count", 0, INT64_MAX, &v)) return -1;
    c->dlq_max_count = (uint64_t)v;
    v = 0;
    if (evs__settings_int(j, o, "dlq_max_age_ms", 0, INT64_MAX / 1000000, &v)) return -1;
    c->dlq_max_age_ns = v * 1000000;
    v = c->checkpoint_every ? c->checkpoint_every : 1000;
    if (evs__settings_int(j, o, "checkpoint_every", 1, 1000000, &v)) return -1;
    c->checkpoint_every = (uint32_t)v;
    v = c->checkpoint_ms ? c->checkpoint_ms : 1000;
    if (evs__settings_int(j, o, "checkpoint_ms", 1, 3600000, &v)) return -1;
    c->checkpoint_ms = (uint32_t)v;
    return 0;
}

int evs__sub_settings_parse(json_t *o, const char *name, evs__sub_settings_in *sj, evs__settings_err *j) {
    static const char *const top[] = {"owner", "stream", "filter", "tag", "from", NULL};
    evs_sub_config *c = &sj->c;
    memset(j, 0, sizeof *j);
    evs_sub_config_init(c);
    c->name = name;
    if (!json_is_object(o)) return evs__settings_fail(j, "", "expected a JSON object of subscription settings");
    if (evs__settings_keys(j, o, "the settings", top)) return -1;
    if (settings_str_or_null(j, o, "owner", 255, &c->owner) || evs__settings_str(j, o, "tag", EVS_MAX_TAG_BYTES, &c->tag) ||
        evs__settings_str(j, o, "stream", EVS_MAX_STREAM_NAME, &c->stream))
        return -1;
    /* "$all" is how a record shows no stream: a record's settings put back mean the same */
    if (c->stream && strcmp(c->stream, "$all") == 0) c->stream = NULL;
    if (c->stream && c->stream[0] == '$')
        return evs__settings_fail(j, "stream", "stream: names starting with '$' are reserved (\"$all\": every stream)");
    if (jfilter(j, o, &sj->jf)) return -1;
    c->filter = sj->jf.f;
    if (jfrom(j, o, &c->from)) return -1;
    return 0;
}

static void json_str_or_null(evs__sb *b, const char *s) {
    if (s && *s) evs__sb_json_str(b, s, strlen(s));
    else evs__sb_adds(b, "null");
}

void evs__consumer_record_json(evs__sb *b, const evs_consumer_info *i) {
    evs__sb_adds(b, "{\"name\":");
    evs__sb_json_str(b, i->name, strlen(i->name));
    evs__sb_adds(b, ",\"kind\":");
    evs__sb_json_str(b, i->kind, strlen(i->kind));
    evs__sb_adds(b, ",\"owner\":");
    json_str_or_null(b, i->owner);
    evs__sb_adds(b, ",\"stream\":");
    if (i->stream[0]) evs__sb_json_str(b, i->stream, strlen(i->stream));
    else evs__sb_adds(b, "\"$all\"");
    evs__sb_adds(b, ",\"filter\":");
    evs__sb_adds(b, i->filter_json[0] ? i->filter_json : "{}");
    evs__sb_printf(b, ",\"checkpoint\":%llu,\"status\":\"%s\",\"retry_count\":%llu,\"max_retries\":%u,\"last_error\":",
                   (unsigned long long)i->checkpoint, evs_consumer_status_name(i->status),
                   (unsigned long long)i->retry_count, i->max_retries);
    json_str_or_null(b, i->last_error);
    evs__sb_adds(b, ",\"last_processed_at\":");
    evs__sb_json_time(b, i->last_processed_at);
    evs__sb_printf(b,
                   ",\"processed\":%llu,\"failed\":%llu,\"parked\":%llu,\"dlq_depth\":%llu,\"lag_events\":%llu,"
                   "\"lag_ms\":%lld}",
                   (unsigned long long)i->processed, (unsigned long long)i->failed, (unsigned long long)i->parked,
                   (unsigned long long)i->dlq_depth, (unsigned long long)i->lag_events, (long long)i->lag_ms);
}

void evs__group_settings_json(evs__sb *b, const evs_group_info *gi) {
    static const char *const backoffs[] = {"exponential", "linear", "fixed"};
    const evs_retry_policy *rp = &gi->retry;
    evs__sb_printf(b,
                   ",\"strategy\":\"%s\",\"ack_timeout_ms\":%lld,\"max_in_flight\":%u,\"buffer_size\":%u,"
                   "\"retry\":{\"backoff\":\"%s\",\"max_retries\":%u,\"initial_delay_ms\":%lld,\"max_delay_ms\":%lld,"
                   "\"jitter\":%g},\"on_failure\":\"%s\",\"per_stream_order\":%s,\"dlq_max_count\":%llu,\"dlq_max_age_ms\":%lld,"
                   "\"checkpoint_every\":%u,\"checkpoint_ms\":%u,\"skipped\":%llu,\"timeouts\":%llu",
                   evs_group_strategy_name(gi->strategy), (long long)(gi->ack_timeout_ns / 1000000), gi->max_in_flight,
                   gi->buffer_size, (unsigned)rp->backoff < 3 ? backoffs[rp->backoff] : "unknown", rp->max_retries,
                   (long long)(rp->initial_delay_ns / 1000000), (long long)(rp->max_delay_ns / 1000000), rp->jitter,
                   gi->on_failure == EVS_ON_FAILURE_STOP ? "stop" : "park", gi->per_stream_order ? "true" : "false",
                   (unsigned long long)gi->dlq_max_count,
                   (long long)(gi->dlq_max_age_ns / 1000000), gi->checkpoint_every, gi->checkpoint_ms,
                   (unsigned long long)gi->skipped, (unsigned long long)gi->timeouts);
}
