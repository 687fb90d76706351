/*
 * replay_spec.h — what-if and compare requests as JSON (internal): the one
 * reader of a what-if body and of the two sides of a compare, for the
 * server's routes and for `evstore projection what-if|compare`, local or
 * remote, so a request is refused with the same words either way.  The
 * members are documented in docs/http-api.md ("State as of a point").
 */
#ifndef EVS_BUS_REPLAY_SPEC_H
#define EVS_BUS_REPLAY_SPEC_H

#include <jansson.h>

#include "evstore_bus.h"

#define EVS_SPEC_MAX_LIST 100000u            /* excluded positions, types, streams; inserts */
#define EVS_SPEC_MAX_SOURCE ((size_t)1 << 20) /* a script given (as a projection's) */

/* One side of a compare, or a what-if: the live state, or a replay. */
typedef struct evs__state_spec {
    int live;                      /* 1: the live committed state */
    evs_replay_opts opts;
    const char *source;            /* a script given (NULL: the projection's own) */
    size_t source_len;
    /* storage the pointers above point into (owned) */
    json_t *root;
    uint64_t *positions;
    const char **types, **streams;
    evs_replay_insert *inserts;
    char **texts;                  /* inserts' data and metadata, as JSON text */
    size_t n_texts;
} evs__state_spec;

/*
 * Fill spec from a JSON value: an object {as_of, exclude: {positions,
 * types, streams}, insert: [{after, stream, event_type, data, metadata,
 * stream_type}], source, partition} (unknown members refused), or a string
 * ("live" when allow_live, else an as_of value), or an integer position.
 * 0, or -1 with why naming the member at fault.  spec takes a reference to
 * v.  Ownership: evs__state_spec_free.
 */
int evs__state_spec_json(json_t *v, int allow_live, evs__state_spec *spec, char *why, size_t cap);
/* The same from text: "live", an as_of value, or a JSON object. */
int evs__state_spec_text(const char *s, int allow_live, evs__state_spec *spec, char *why, size_t cap);
void evs__state_spec_free(evs__state_spec *spec);

/*
 * Run a spec on projection `name`: the replay result (what-if), or for
 * `live` the live state as {"projection", "live": true, "position",
 * "partitions"}.  Ownership: *json is malloc'd for the caller.
 */
int evs__state_spec_run(evs_bus *b, const char *name, const evs__state_spec *spec, char **json, size_t *len);

/*
 * Compare two sides: {"a": {summary}, "b": {summary}, "changes": N,
 * "diff": [RFC 6902 operations]}.  The diff is of the partition map, or
 * of the single state for a projection with partition "none".  Ownership:
 * *json is malloc'd for the caller.
 */
int evs__compare(evs_bus *b, const char *name, const evs__state_spec *a, const evs__state_spec *bs, char **json,
                 size_t *len);

#endif
