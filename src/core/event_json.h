/*
 * event_json.h — the event envelope as JSON, for the CLI and the server.
 *
 * Input: {"event_type": "...", "data": {...}, "metadata": {...},
 * "event_id": "uuid", "event_version": 1, "causation_id": "uuid",
 * "correlation_id": "uuid", "stream_type": "...", "tags": ["..."],
 * "occurred_at": "RFC 3339 time" or integer ns}.  data and metadata are
 * handed on as spans of the input, byte for byte.  Unknown fields and read-
 * only fields (stream, positions, recorded_at) are rejected with a message
 * naming the field.
 * Output: evs_event_to_json (evstore.h) writes the same names plus stream,
 * stream_position, global_position and recorded_at.
 */
#ifndef EVS_EVENT_JSON_H
#define EVS_EVENT_JSON_H

#include "core/json.h"
#include "evstore.h"

typedef struct evs_event_parsed {
    evs_event_in ev;                 /* pointers into the input or into the fields below */
    evs_uuid event_id, causation_id, correlation_id;
    char event_type[EVS_MAX_TYPE_NAME + 1];
    char stream_type[EVS_MAX_TYPE_NAME + 1];
    const char *tag_ptrs[EVS_MAX_TAGS];
    char *tag_buf;                   /* decoded tags; freed by evs__event_parsed_free */
} evs_event_parsed;

/*
 * Parse one event object from p[0..n) (which must stay alive while out is
 * used).  EVS_OK, or EVS_EJSON (malformed, with line/column in err and in
 * evs_errmsg) or EVS_EINVAL (well-formed but invalid: missing event_type,
 * data not an object, bad UUID, unknown field...).
 * Ownership: on success the caller releases out with evs__event_parsed_free;
 * on failure nothing needs releasing.
 */
int evs__event_from_json(const char *p, size_t n, evs_event_parsed *out, evs_json_error *err);
void evs__event_parsed_free(evs_event_parsed *e);

/*
 * Render ev exactly as evs_event_to_json does, into buf[0..cap), without
 * allocating.  Returns the full length, like snprintf; no NUL is added.
 * When that is larger than cap, nothing past buf[cap - 1] was touched but
 * the bytes before are unspecified: call again with a buffer of the
 * returned length.  buf may be NULL when cap is 0 (sizing only).
 * Thread-safe.
 */
size_t evs__event_json_render(const evs_event *ev, char *buf, size_t cap);

#endif
