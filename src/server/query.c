/*
 * query.c — reading what a request says (query.h).
 *
 * Why our own percent-decoder: libmicrohttpd decodes the path before the
 * access handler sees it, which would turn "/streams/a%2Fb" into
 * "/streams/a/b" and make a stream named "a/b" unreachable (or reachable as
 * stream "a", position "b").  The server installs a no-op unescape callback
 * (http.c) and splits the raw path on '/' first, then decodes each segment
 * here, where a decoded NUL or invalid UTF-8 is refused instead of passed
 * on.  Query values take the same road.
 *
 * Query numbers are strict (digits only): a sign, a fraction or an overflow
 * is a 400 naming the parameter, never a silent clamp.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/keys.h"
#include "core/json.h"
#include "server/query.h"

/* ------------------------------------------------------------ decoding */

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

long evs__pct_decode(const char *in, size_t n, char *out, size_t cap, char *why, size_t whycap) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)in[i];
        if (ch == '%') {
            int hi = i + 1 < n ? hexval(in[i + 1]) : -1;
            int lo = i + 2 < n ? hexval(in[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                snprintf(why, whycap, "malformed percent-escape at byte %zu", i + 1);
                return -1;
            }
            ch = (unsigned char)(hi * 16 + lo);
            i += 2;
        }
        if (ch == 0) {
            snprintf(why, whycap, "contains a NUL byte");
            return -1;
        }
        if (o + 1 >= cap) {
            snprintf(why, whycap, "is longer than %zu bytes", cap - 1);
            return -1;
        }
        out[o++] = (char)ch;
    }
    out[o] = '\0';
    size_t bad;
    if (!evs__utf8_valid(out, o, &bad)) {
        snprintf(why, whycap, "is not valid UTF-8 (decoded byte %zu)", bad + 1);
        return -1;
    }
    return (long)o;
}

/* ----------------------------------------------------------- parameters */

const char *evs__query(evs__req *rq, const char *key) {
    return MHD_lookup_connection_value(rq->c, MHD_GET_ARGUMENT_KIND, key);
}

typedef struct header_count {
    const char *name;
    unsigned n;
} header_count;

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
    header_count *hc = cls;
    (void)kind;
    (void)value;
    if (strcasecmp(key, hc->name) == 0) hc->n++;
    return MHD_YES;
}

unsigned evs__header_count(evs__req *rq, const char *name) {
    header_count hc = {name, 0};
    MHD_get_connection_values(rq->c, MHD_HEADER_KIND, count_header, &hc);
    return hc.n;
}

int evs__query_text(evs__req *rq, const char *key, size_t maxlen, char **out, enum MHD_Result *mr) {
    *out = NULL;
    const char *raw = evs__query(rq, key);
    if (!raw) return 0;
    size_t n = strlen(raw);
    char *buf = malloc(n + 1);
    if (!buf) {
        *mr = evs__respond_error(rq, EVS_HTTP_UNAVAILABLE, NULL, "out of memory");
        return -1;
    }
    char why[96];
    long len = evs__pct_decode(raw, n, buf, n + 1, why, sizeof why);
    if (len < 0) {
        free(buf);
        *mr = evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, NULL, "parameter %s %s", key, why);
        return -1;
    }
    if ((size_t)len > maxlen) {
        free(buf);
        *mr = evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, NULL, "parameter %s is %ld bytes, the limit is %zu", key,
                                 len, maxlen);
        return -1;
    }
    *out = buf;
    return 0;
}

int evs__query_u64(evs__req *rq, const char *key, uint64_t min, uint64_t max, uint64_t *out, enum MHD_Result *mr) {
    const char *v = evs__query(rq, key);
    if (!v) return 0;
    uint64_t n;
    int rc = evs__parse_u64(v, max, &n);
    if (rc == 0 && n >= min) {
        *out = n;
        return 0;
    }
    char d[128];
    snprintf(d, sizeof d, "{\"parameter\":\"%s\",\"min\":%llu,\"max\":%llu}", key, (unsigned long long)min,
             (unsigned long long)max);
    *mr = evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, d, "parameter %s=%.40s %s (expected %llu..%llu)", key, v,
                             rc == -2 ? "is negative" : rc == -3 ? "is too large" : rc == 0 ? "is zero" : "is not a number",
                             (unsigned long long)min, (unsigned long long)max);
    return -1;
}

int evs__query_position(evs__req *rq, const char *key, uint64_t *out, enum MHD_Result *mr) {
    const char *v = evs__query(rq, key);
    if (v && strcmp(v, "now") == 0) { /* the library resolves it: a stream subscription's now is its stream's */
        *out = EVS_SUB_FROM_NOW;
        return 0;
    }
    return evs__query_u64(rq, key, 1, UINT64_MAX - 1, out, mr);
}

int evs__query_direction(evs__req *rq, int *dir, enum MHD_Result *mr) {
    const char *v = evs__query(rq, "direction");
    *dir = EVS_FORWARD;
    if (!v || strcmp(v, "forward") == 0) return 0;
    if (strcmp(v, "backward") == 0) {
        *dir = EVS_BACKWARD;
        return 0;
    }
    *mr = evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, NULL, "parameter direction must be forward or backward");
    return -1;
}

/* -------------------------------------------------------------- filters */

int evs__live_filter_finish(evs__live_filter *lf, char *why, size_t cap) {
    memset(&lf->f, 0, sizeof lf->f);
    lf->ntypes = 0;
    lf->ntags = 0;
    if (lf->types_buf) {
        char *p = lf->types_buf;
        for (;;) {
            char *comma = strchr(p, ',');
            if (comma) *comma = '\0';
            if (!*p || strlen(p) > EVS_MAX_TYPE_NAME || lf->ntypes == EVS_SRV_MAX_FILTER_TYPES) {
                snprintf(why, cap, "type: at most %u comma-separated names of 1..%u bytes", EVS_SRV_MAX_FILTER_TYPES,
                         EVS_MAX_TYPE_NAME);
                return -1;
            }
            lf->types[lf->ntypes++] = p;
            if (!comma) break;
            p = comma + 1;
        }
        lf->f.event_types = lf->types;
        lf->f.n_event_types = lf->ntypes;
    }
    for (size_t off = 0; lf->tags_buf && off < lf->tags_len;) {
        const char *t = lf->tags_buf + off;
        size_t n = strlen(t);
        if (n == 0 || n > EVS_MAX_TAG_BYTES || lf->ntags == EVS_MAX_TAGS) {
            snprintf(why, cap, "tag: at most %u tags of 1..%u bytes", EVS_MAX_TAGS, EVS_MAX_TAG_BYTES);
            return -1;
        }
        lf->tags[lf->ntags++] = t;
        off += n + 1;
    }
    if (lf->ntags) {
        lf->f.tags = lf->tags;
        lf->f.n_tags = lf->ntags;
        lf->f.tag_match = lf->tag_all ? EVS_TAGS_ALL : EVS_TAGS_ANY;
    }
    if (lf->stream_type) {
        if (!*lf->stream_type || strlen(lf->stream_type) > EVS_MAX_TYPE_NAME) {
            snprintf(why, cap, "stream_type: 1..%u bytes", EVS_MAX_TYPE_NAME);
            return -1;
        }
        lf->f.stream_type = lf->stream_type;
    }
    if (lf->stream) {
        lf->stream_len = strlen(lf->stream);
        if (!lf->stream_len || lf->stream_len > EVS_MAX_STREAM_NAME) {
            snprintf(why, cap, "stream: 1..%u bytes", EVS_MAX_STREAM_NAME);
            return -1;
        }
        /* the prefix index narrows the scan; the exact match is ours */
        lf->f.stream_prefix = lf->stream;
    }
    if (lf->stream_prefix && *lf->stream_prefix) {
        if (lf->stream || strlen(lf->stream_prefix) > EVS_MAX_STREAM_NAME) {
            snprintf(why, cap, "stream_prefix: at most %u bytes, and not together with stream", EVS_MAX_STREAM_NAME);
            return -1;
        }
        lf->f.stream_prefix = lf->stream_prefix;
    }
    if (lf->has_correlation) lf->f.correlation_id = &lf->correlation;
    if (lf->has_causation) lf->f.causation_id = &lf->causation;
    lf->f.since = lf->since;
    lf->f.until = lf->until;
    return 0;
}

void evs__live_filter_free(evs__live_filter *lf) {
    free(lf->types_buf);
    free(lf->stream_type);
    free(lf->stream);
    free(lf->stream_prefix);
    free(lf->tags_buf);
    evs__principal_unref(lf->who);
    memset(lf, 0, sizeof *lf);
}

/*
 * tag=a,b: split on the raw commas first, then decode each piece, so that
 * "%2C" is a comma inside a tag.  Pieces go into lf->tags_buf, each
 * NUL-terminated.  0, or -1 after a 400.
 */
static int query_tags(evs__req *rq, evs__live_filter *lf, enum MHD_Result *mr) {
    const char *raw = evs__query(rq, "tag");
    if (!raw) return 0;
    size_t n = strlen(raw);
    if (!(lf->tags_buf = malloc(n + 1))) {
        *mr = evs__respond_error(rq, EVS_HTTP_UNAVAILABLE, NULL, "out of memory");
        return -1;
    }
    size_t w = 0;
    for (const char *p = raw;;) {
        const char *comma = strchr(p, ',');
        size_t pn = comma ? (size_t)(comma - p) : strlen(p);
        char why[96];
        long len = evs__pct_decode(p, pn, lf->tags_buf + w, n + 1 - w, why, sizeof why);
        if (len < 0) {
            *mr = evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, "{\"parameter\":\"tag\"}", "parameter tag %s", why);
            return -1;
        }
        w += (size_t)len + 1;
        if (!comma) break;
        p = comma + 1;
    }
    lf->tags_len = w;
    return 0;
}

/*
 * since= / until= (text; NULL: absent) into *ns.  A time at or before the
 * epoch is refused: 0 is the filter's "unbounded", so until=0 would
 * silently return everything (and a negative time the library refuses).
 */
static int query_time(evs__req *rq, const char *key, const char *text, int64_t *ns, enum MHD_Result *mr) {
    if (!text) return 0;
    char d[40];
    snprintf(d, sizeof d, "{\"parameter\":\"%s\"}", key);
    if (evs_time_parse(text, strlen(text), ns)) {
        *mr = evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, d, "parameter %s is not an RFC 3339 time or a count of ns",
                                 key);
        return -1;
    }
    if (*ns <= 0) {
        *mr = evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, d, "parameter %s=%.40s must be after 1970-01-01T00:00:00Z",
                                 key, text);
        return -1;
    }
    return 0;
}

int evs__query_filter(evs__req *rq, int allow_stream, evs__live_filter *lf, enum MHD_Result *mr) {
    char *corr = NULL, *caus = NULL, *since = NULL, *until = NULL;
    int rc = -1;
    if (evs__query_text(rq, "type", 64 * 1024, &lf->types_buf, mr) ||
        evs__query_text(rq, "stream_type", EVS_MAX_TYPE_NAME, &lf->stream_type, mr) ||
        (allow_stream && evs__query_text(rq, "stream", EVS_MAX_STREAM_NAME, &lf->stream, mr)) ||
        evs__query_text(rq, "stream_prefix", EVS_MAX_STREAM_NAME, &lf->stream_prefix, mr) ||
        evs__query_text(rq, "correlation_id", 64, &corr, mr) || evs__query_text(rq, "causation_id", 64, &caus, mr) ||
        query_tags(rq, lf, mr) || evs__query_text(rq, "since", 64, &since, mr) ||
        evs__query_text(rq, "until", 64, &until, mr))
        goto cleanup;
    const char *tm = evs__query(rq, "tag_match");
    if (tm && strcmp(tm, "any") && strcmp(tm, "all")) {
        *mr = evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, "{\"parameter\":\"tag_match\"}",
                                 "parameter tag_match must be any or all");
        goto cleanup;
    }
    lf->tag_all = tm && strcmp(tm, "all") == 0;
    if (lf->stream && lf->stream_prefix) {
        *mr = evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, NULL, "parameters stream and stream_prefix exclude each other");
        goto cleanup;
    }
    if (corr) {
        if (evs_uuid_parse(corr, strlen(corr), &lf->correlation)) {
            *mr = evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, NULL, "parameter correlation_id is not a UUID");
            goto cleanup;
        }
        lf->has_correlation = 1;
    }
    if (caus) {
        if (evs_uuid_parse(caus, strlen(caus), &lf->causation)) {
            *mr = evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, NULL, "parameter causation_id is not a UUID");
            goto cleanup;
        }
        lf->has_causation = 1;
    }
    if (query_time(rq, "since", since, &lf->since, mr) || query_time(rq, "until", until, &lf->until, mr))
        goto cleanup;
    if (since && until && lf->until <= lf->since) {
        *mr = evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, NULL, "parameter until=%.40s must be after since=%.40s",
                                 until, since);
        goto cleanup;
    }
    char why[128];
    if (evs__live_filter_finish(lf, why, sizeof why)) {
        *mr = evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, NULL, "parameter %s", why);
        goto cleanup;
    }
    rc = 0;
cleanup:
    free(corr);
    free(caus);
    free(since);
    free(until);
    return rc;
}

int evs__live_filter_match(const evs__live_filter *lf, const evs_event *ev) {
    if (lf->who && !evs__principal_allows(lf->who, lf->who_perm, ev->stream, ev->stream_len, ev->event_type,
                                          ev->event_type_len))
        return 0; /* skipped, and the cursor still moves past it */
    if (!lf->stream) return 1;
    return ev->stream_len == lf->stream_len && memcmp(ev->stream, lf->stream, lf->stream_len) == 0;
}

/* ---------------------------------------------------------------- bodies */

int evs__req_json(evs__req *rq, json_t **root, enum MHD_Result *mr) { return evs__req_json_flags(rq, 0, root, mr); }

int evs__req_json_flags(evs__req *rq, size_t flags, json_t **root, enum MHD_Result *mr) {
    json_error_t je;
    *root = json_loadb(rq->body.p ? rq->body.p : "", rq->body.len, JSON_REJECT_DUPLICATES | flags, &je);
    if (*root) return 0;
    if (json_error_code(&je) == json_error_null_character) { /* well-formed: not a 400, and no jansson flag named */
        char d[96];
        snprintf(d, sizeof d, "{\"line\":%d,\"column\":%d,\"offset\":%d}", je.line, je.column, je.position);
        *mr = evs__respond_error(rq, EVS_HTTP_UNPROCESSABLE, d,
                                 "line %d, column %d: a string contains \\u0000 (NUL), which this body may not hold",
                                 je.line, je.column);
        return -1;
    }
    *mr = evs__respond_malformed(rq, je.line, je.column, je.position,
                                 "malformed JSON: line %d, column %d: %s", je.line, je.column, je.text);
    return -1;
}

int evs__req_json_valid(evs__req *rq, enum MHD_Result *mr) {
    evs_json_error je;
    memset(&je, 0, sizeof je);
    if (!evs__json_validate(rq->body.p ? rq->body.p : "", rq->body.len, &je)) return 0;
    *mr = evs__respond_malformed(rq, je.line, je.column, (long long)je.offset, "malformed JSON: %s", je.msg);
    return -1;
}

int evs__req_settings(evs__req *rq, json_t **root, enum MHD_Result *mr) {
    if (rq->body.len) return evs__req_json(rq, root, mr);
    if ((*root = json_object())) return 0;
    *mr = evs__respond_error(rq, EVS_HTTP_UNAVAILABLE, NULL, "out of memory");
    return -1;
}
