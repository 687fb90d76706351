/*
 * settings.h — consumer settings as JSON (internal): the one reader of a
 * group's and a subscription's settings object, for the server's PUT
 * routes and for the evstore command (`group create`, `sub create`), and
 * the one writer of a consumer record and of a group's settings.  So a setting is spelled, bounded
 * and refused the same way whether it came over HTTP or from the command
 * line, local or remote.  The fields are documented in docs/http-api.md.
 */
#ifndef EVS_BUS_SETTINGS_H
#define EVS_BUS_SETTINGS_H

#include <jansson.h>

#include "core/sb.h"
#include "evstore_bus.h"

#define EVS_SETTINGS_MAX_TYPES 32u

/* The first problem found, named by its field ("" for the object itself). */
typedef struct evs__settings_err {
    char why[256];
    const char *field;
} evs__settings_err;

/* Record a problem (the first one wins); returns -1. */
int evs__settings_fail(evs__settings_err *e, const char *field, const char *fmt, ...) EVS_PRINTF(3, 4);
/* An integer member in min..max; absent: *out unchanged.  0, or -1 with e filled. */
int evs__settings_int(evs__settings_err *e, json_t *o, const char *key, long long min, long long max, long long *out);
/* A string member of 1..max bytes without NUL; absent: *out unchanged. */
int evs__settings_str(evs__settings_err *e, json_t *o, const char *key, size_t max, const char **out);
/* Every member of o is one of keys (NULL-terminated); where names o in the message. */
int evs__settings_keys(evs__settings_err *e, json_t *o, const char *where, const char *const *keys);

/* A filter read from JSON; f points into the document and into this struct. */
typedef struct evs__json_filter {
    evs_filter f;
    const char *types[EVS_SETTINGS_MAX_TYPES];
    evs_uuid corr;
} evs__json_filter;

/*
 * A group's settings: owner, filter, tag, from, strategy, ack_timeout_ms,
 * max_in_flight, buffer_size, retry, on_failure, per_stream_order,
 * dlq_max_count, dlq_max_age_ms, checkpoint_every, checkpoint_ms (all
 * optional).  0 with g->c filled (its strings point into o, which must
 * outlive it), or -1 with e filled.
 */
typedef struct evs__group_settings_in {
    evs_group_config c;
    evs__json_filter jf;
} evs__group_settings_in;
int evs__group_settings_parse(json_t *o, const char *name, evs__group_settings_in *g, evs__settings_err *e);

/*
 * A subscription's record settings: owner, stream, filter, tag and from
 * ("start", "now" or a position).  The rest (handler, retries, batching)
 * is given by the program that runs it when it opens it.  As above.
 */
typedef struct evs__sub_settings_in {
    evs_sub_config c;
    evs__json_filter jf;
} evs__sub_settings_in;
int evs__sub_settings_parse(json_t *o, const char *name, evs__sub_settings_in *s, evs__settings_err *e);

/*
 * A consumer record as one JSON object appended to b (docs/http-api.md,
 * "The consumer record"): what `GET /subscriptions/N` starts with and what
 * the command prints for it.
 */
void evs__consumer_record_json(evs__sb *b, const evs_consumer_info *i);

/*
 * A group's settings and counters as JSON members, appended to b: ,"strategy":..
 * up to ,"timeouts":N (no braces: they extend a consumer record).
 */
void evs__group_settings_json(evs__sb *b, const evs_group_info *gi);

#endif
