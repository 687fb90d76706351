/*
 * query.h — what a request says, read strictly: percent-decoding (paths
 * and query values), query parameters (text, numbers, positions, the
 * direction), the live-stream filters that /all, /subscribe and /ws share,
 * and JSON request bodies.
 *
 * Every reader that can refuse queues the 400 itself, names the parameter,
 * and returns -1 with the result for libmicrohttpd in *mr; 0 means the
 * value (or its absence) is fine.  Nothing is clamped silently.
 */
#ifndef EVS_QUERY_H
#define EVS_QUERY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "evstore.h"
#include "server/respond.h"

#define EVS_SRV_MAX_FILTER_TYPES 32u

/*
 * Percent-decode in[0..n) into out (cap bytes, NUL-terminated).  Rejects a
 * malformed escape, a decoded NUL and invalid UTF-8; on failure returns -1
 * with a message in why.  Returns the decoded length.
 */
long evs__pct_decode(const char *in, size_t n, char *out, size_t cap, char *why, size_t whycap);

/* The raw (still percent-encoded) query argument, or NULL. */
const char *evs__query(evs__req *rq, const char *key);
/* Is key one of the parameters rq's route lists (the route table's row, http.c)? */
int evs__query_listed(const evs__req *rq, const char *key);
/* How many times the request carries header `name` (case-insensitive). */
unsigned evs__header_count(evs__req *rq, const char *name);
/*
 * A query value as text: percent-decoded, no NUL, valid UTF-8, at most
 * maxlen bytes.  *out is malloc'd (the caller frees it), NULL when absent.
 */
int evs__query_text(evs__req *rq, const char *key, size_t maxlen, char **out, enum MHD_Result *mr);
/* A strict number in min..max; absent leaves *out alone. */
int evs__query_u64(evs__req *rq, const char *key, uint64_t min, uint64_t max, uint64_t *out, enum MHD_Result *mr);
/* A position (1, 2, ...) or "now" (EVS_SUB_FROM_NOW, which the library resolves per consumer); absent leaves *out alone. */
int evs__query_position(evs__req *rq, const char *key, uint64_t *out, enum MHD_Result *mr);
/* direction=forward (the default) or backward: EVS_FORWARD or EVS_BACKWARD in *dir. */
int evs__query_direction(evs__req *rq, int *dir, enum MHD_Result *mr);

/*
 * A live-stream filter from query or protocol fields: event types (comma
 * separated), stream type, one exact stream, tags (any of) and a causation
 * id; from queries also a stream prefix, a correlation id and a
 * recorded_at range.  Owns its strings; f points into the fields, so a
 * filter is filled in place, never copied.
 */
typedef struct evs__live_filter {
    char *types_buf;
    const char *types[EVS_SRV_MAX_FILTER_TYPES];
    size_t ntypes;
    char *stream_type;
    char *stream;
    size_t stream_len;
    char *stream_prefix;          /* not together with stream */
    int has_correlation;
    evs_uuid correlation;
    char *tags_buf;               /* the tags, each NUL-terminated, tags_len bytes in all */
    size_t tags_len;
    const char *tags[EVS_MAX_TAGS];
    size_t ntags;
    int tag_all;                  /* tag_match=all: every tag, not any */
    int has_causation;
    evs_uuid causation;
    int64_t since, until;         /* 0: unbounded */
    struct evs__principal *who;   /* a restricted key: only what it holds who_perm on passes (auth.c) */
    unsigned who_perm;
    evs_filter f;                 /* points into the fields above */
} evs__live_filter;

/*
 * The filter parameters of /all and /subscribe: type, stream_type,
 * stream_prefix, correlation_id, causation_id, tag, tag_match, since, until,
 * and with allow_stream also stream.  `tag` is a comma-separated list (any
 * of them, or with tag_match=all every one; a comma inside a tag is sent
 * as %2C).  0 with lf finished.
 */
int evs__query_filter(evs__req *rq, int allow_stream, evs__live_filter *lf, enum MHD_Result *mr);
/*
 * Split types_buf on ',' into types[], tags_buf into tags[], and point f
 * at the fields; -1 with why (cap bytes) when a field is out of bounds.
 */
int evs__live_filter_finish(evs__live_filter *lf, char *why, size_t cap);
void evs__live_filter_free(evs__live_filter *lf);
/* 1 if ev passes the parts evs_filter cannot express (the exact stream, the key's permissions). */
int evs__live_filter_match(const evs__live_filter *lf, const evs_event *ev);

/*
 * The request body as JSON (duplicate keys refused): 0 with *root (the
 * caller's, json_decref), or -1 after a 400 naming line and column.
 */
int evs__req_json(evs__req *rq, json_t **root, enum MHD_Result *mr);
/*
 * As evs__req_json with jansson flags added: JSON_ALLOW_NUL where the
 * route checks strings for NUL itself (a Lua source).  Without it, a
 * "\u0000" in a string (valid JSON that C strings cannot carry) is a 422.
 */
int evs__req_json_flags(evs__req *rq, size_t flags, json_t **root, enum MHD_Result *mr);
/*
 * The request body checked as strict JSON where it lies (no DOM: it is
 * passed on as bytes): 0, or -1 after a 400 naming line and column.
 */
int evs__req_json_valid(evs__req *rq, enum MHD_Result *mr);
/* A settings body: as evs__req_json, and no body at all is {} (every setting at its default). */
int evs__req_settings(evs__req *rq, json_t **root, enum MHD_Result *mr);

#endif
