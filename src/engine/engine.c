/*
 * engine.c — the engine-neutral half of the storage-engine boundary
 * (engine.h): the name and tag checks both engines apply, the append
 * checks every non-embedded engine relies on, and the EVS_ENOTSUP answer
 * for what an engine does not do yet.  Which engine a URL names is the
 * store's choice (src/store/store_engine.c): this room sits below both the
 * store and the engines, so neither includes the other's way up.
 *
 * One event's checks are one function, evs__event_check, which the
 * embedded engine's prepare step (store.c) calls too, so that a bad event
 * fails the same way on both engines; the conformance suite
 * (tests/unit/test_conformance.c) holds the append-wide checks to it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "core/json.h"
#include "engine/engine.h"

/* ----------------------------------------------------------- validation shared by every engine */

int evs__name_ok(const char *what, const char *p, size_t n, size_t max) {
    if (n == 0) return evs__err(EVS_EINVAL, "%s is empty", what);
    if (n > max) return evs__err(EVS_ELIMIT, "%s is %zu bytes, the limit is %zu", what, n, max);
    size_t bad;
    if (!evs__utf8_valid(p, n, &bad)) return evs__err(EVS_EINVAL, "%s is not valid UTF-8 (byte %zu)", what, bad + 1);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
            return evs__err(EVS_EINVAL, "%s contains control character 0x%02x at byte %zu", what,
                            (unsigned char)p[i], i + 1);
    return EVS_OK;
}

int evs__build_tags(const evs_event_in *e, size_t i, char **out, size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    if (e->ntags == 0) return EVS_OK;
    if (!e->tags) return evs__err(EVS_EINVAL, "event %zu: tags is NULL but ntags is %zu", i + 1, e->ntags);
    if (e->ntags > EVS_MAX_TAGS)
        return evs__err(EVS_ELIMIT, "event %zu: %zu tags, the limit is %u", i + 1, e->ntags, EVS_MAX_TAGS);
    size_t cap = 2;
    for (size_t t = 0; t < e->ntags; t++) {
        char what[64];
        snprintf(what, sizeof what, "event %zu: tag %zu", i + 1, t + 1);
        if (!e->tags[t]) return evs__err(EVS_EINVAL, "%s is NULL", what);
        size_t n = strlen(e->tags[t]);
        int rc = evs__name_ok(what, e->tags[t], n, EVS_MAX_TAG_BYTES);
        if (rc) return rc;
        cap += evs__json_escape(e->tags[t], n, NULL, 0) + 1;
    }
    char *buf = malloc(cap + 1);
    if (!buf) return evs__err(EVS_ENOMEM, "out of memory for tags");
    size_t w = 0;
    buf[w++] = '[';
    for (size_t t = 0; t < e->ntags; t++) {
        if (t) buf[w++] = ',';
        w += evs__json_escape(e->tags[t], strlen(e->tags[t]), buf + w, cap + 1 - w);
    }
    buf[w++] = ']';
    buf[w] = '\0';
    *out = buf;
    *out_len = w;
    return EVS_OK;
}

size_t evs__default_stream_type_len(const char *stream, size_t n) {
    const char *dash = memchr(stream, '-', n);
    return (dash && dash > stream) ? (size_t)(dash - stream) : n;
}

int evs__engine_unsupported(const evs_engine *eng, const char *operation) {
    return evs__err(EVS_ENOTSUP, "%s is not supported by the %s storage engine yet", operation,
                    eng ? eng->name : "selected");
}

const char *evs__engine_mask_url(const char *url, char *buf, size_t cap) {
    if (!cap) return buf;
    buf[0] = '\0';
    if (!url) return buf;
    /* scheme://user:password@host...: only the part between ':' and '@' of the authority is secret */
    const char *auth = strstr(url, "://");
    const char *at = auth ? strchr(auth + 3, '@') : NULL;
    const char *slash = auth ? strchr(auth + 3, '/') : NULL;
    if (at && slash && slash < at) at = NULL;
    const char *colon = at ? memchr(auth + 3, ':', (size_t)(at - (auth + 3))) : NULL;
    if (!colon) {
        snprintf(buf, cap, "%s", url);
    } else {
        snprintf(buf, cap, "%.*s:****%s", (int)(colon - url), url, at);
    }
    /* a password given as a query parameter ("?password=...") is hidden too */
    char *pw = strstr(buf, "password=");
    if (pw) {
        char *end = pw + 9;
        while (*end && *end != '&') end++;
        size_t keep = strlen(end);
        if ((size_t)(pw + 9 - buf) + 4 + keep < cap) {
            memmove(pw + 13, end, keep + 1);
            memcpy(pw + 9, "****", 4);
        }
    }
    return buf;
}

/* ------------------------------------------------------------ append checks */

static int uuid_cmp(const void *a, const void *b) { return memcmp(a, b, sizeof(evs_uuid)); }

int evs__ids_unique(const evs_uuid *ids, size_t n) {
    if (n < 2) return EVS_OK;
    /* sort a copy, compare neighbours */
    evs_uuid *sorted = malloc(n * sizeof *sorted);
    if (!sorted) return evs__err(EVS_ENOMEM, "out of memory checking event ids");
    memcpy(sorted, ids, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, uuid_cmp);
    for (size_t i = 1; i < n; i++)
        if (!memcmp(&sorted[i - 1], &sorted[i], 16)) {
            char b[37];
            evs_uuid_format(&sorted[i], b);
            free(sorted);
            return evs__err(EVS_EINVAL, "the append holds event_id %s more than once", b);
        }
    free(sorted);
    return EVS_OK;
}

void evs__engine_append_free(evs__engine_append *a) {
    if (!a) return;
    for (size_t i = 0; i < a->n; i++) {
        if (a->stypes) free((char *)a->stypes[i]);
        if (a->tags) free((char *)a->tags[i]);
    }
    free((void *)a->stypes);
    free((void *)a->tags);
    free((void *)a->ids);
    free((void *)a->ev);
    free(a);
}

int evs__event_check(const evs__event_limits *lim, const char *stream, size_t slen, const evs_event_in *e,
                     size_t i, const char **st, size_t *stl, char **tags, size_t *tags_len, uint64_t *total) {
    int rc;
    char what[96];
    *tags = NULL;
    *tags_len = 0;
    if (!e->event_type) return evs__err(EVS_EINVAL, "event %zu: event_type is missing", i + 1);
    snprintf(what, sizeof what, "event %zu: event_type", i + 1);
    if ((rc = evs__name_ok(what, e->event_type, strlen(e->event_type), EVS_MAX_TYPE_NAME)))
        return rc;
    if (e->stream_type) {
        snprintf(what, sizeof what, "event %zu: stream_type", i + 1);
        *stl = strlen(e->stream_type);
        if ((rc = evs__name_ok(what, e->stream_type, *stl, EVS_MAX_TYPE_NAME))) return rc;
        *st = e->stream_type;
    } else {
        *st = stream;
        *stl = evs__default_stream_type_len(stream, slen);
    }
    if (!e->data) return evs__err(EVS_EINVAL, "event %zu: data is missing (it must be a JSON object)", i + 1);
    evs_json_error jerr;
    if (evs__json_validate_object(e->data, e->data_len, &jerr))
        return evs__err(EVS_EJSON, "event %zu: data: %s", i + 1, jerr.msg);
    if (e->metadata && evs__json_validate_object(e->metadata, e->metadata_len, &jerr))
        return evs__err(EVS_EJSON, "event %zu: metadata: %s", i + 1, jerr.msg);
    if (e->event_version > INT32_MAX)
        return evs__err(EVS_EINVAL, "event %zu: event_version %u is out of range 1..%d", i + 1, e->event_version,
                        INT32_MAX);
    if ((rc = evs__build_tags(e, i, tags, tags_len))) return rc;
    uint64_t size = e->data_len + (e->metadata ? e->metadata_len : 2) + strlen(e->event_type) + *stl + *tags_len;
    if (size > lim->event_bytes)
        return evs__err(EVS_ELIMIT, "event %zu is %llu bytes, the limit is %llu", i + 1, (unsigned long long)size,
                        (unsigned long long)lim->event_bytes);
    *total += size + lim->overhead;
    if (*total > lim->append_bytes)
        return evs__err(EVS_ELIMIT, "the append exceeds %llu bytes at event %zu", (unsigned long long)lim->append_bytes,
                        i + 1);
    if (e->event_id && evs_uuid_is_nil(e->event_id))
        return evs__err(EVS_EINVAL, "event %zu: event_id must not be the nil UUID", i + 1);
    return EVS_OK;
}

static int prepare(const uint64_t lims[4], const char *stream, int64_t expected, const evs_event_in *events,
                   size_t n, int reserved, evs__engine_append **out) {
    int rc;
    *out = NULL;
    if (!stream) return evs__err(EVS_EINVAL, "stream name is NULL");
    size_t slen = strlen(stream); /* whole: a refusal names the real length */
    if ((rc = evs__name_ok("stream name", stream, slen, lims[3]))) return rc;
    if (stream[0] == '$' && !reserved)
        return evs__err(EVS_EINVAL, "stream name \"%s\": names starting with '$' are reserved", stream);
    if (expected < EVS_EXPECT_EXISTS)
        return evs__err(EVS_EINVAL, "expected version %lld is invalid (any, no-stream, exists or a version >= 0)",
                        (long long)expected);
    if (n == 0 || !events) return evs__err(EVS_EINVAL, "an append needs at least one event");
    if (n > lims[1])
        return evs__err(EVS_ELIMIT, "an append of %zu events exceeds the limit of %llu", n, (unsigned long long)lims[1]);
    evs__engine_append *a = calloc(1, sizeof *a);
    evs_event_in *ev = calloc(n, sizeof *ev);
    evs_uuid *ids = calloc(n, sizeof *ids);
    char **stypes = calloc(n, sizeof *stypes);
    char **tags = calloc(n, sizeof *tags);
    if (a) {
        a->stream = stream, a->stream_len = slen, a->expected = expected, a->n = n;
        a->ev = ev, a->ids = ids, a->stypes = (const char *const *)stypes, a->tags = (const char *const *)tags;
    }
    if (!a || !ev || !ids || !stypes || !tags) {
        if (!a) free(ev), free(ids), free(stypes), free(tags);
        rc = evs__err(EVS_ENOMEM, "out of memory preparing %zu events", n);
        goto fail;
    }
    int64_t now = evs_now_ns();
    uint64_t total = 0;
    const evs__event_limits lim = {lims[0], lims[2], 0};
    for (size_t i = 0; i < n; i++) {
        const evs_event_in *e = &events[i];
        ev[i] = *e;
        const char *st;
        size_t tl, tlen;
        if ((rc = evs__event_check(&lim, stream, slen, e, i, &st, &tl, &tags[i], &tlen, &total))) goto fail;
        if (!(stypes[i] = strndup(st, tl))) {
            rc = evs__err(EVS_ENOMEM, "out of memory preparing %zu events", n);
            goto fail;
        }
        if (e->event_id) ids[i] = *e->event_id;
        else evs_uuid_v7(&ids[i]);
        if (!ev[i].occurred_at) ev[i].occurred_at = now;
        if (!ev[i].event_version) ev[i].event_version = 1;
        if (!ev[i].metadata) ev[i].metadata = "{}", ev[i].metadata_len = 2;
    }
    if ((rc = evs__ids_unique(ids, n))) goto fail;
    *out = a;
    return EVS_OK;
fail:
    evs__engine_append_free(a);
    return rc;
}

int evs__engine_append_prepare(const uint64_t lims[4], const char *stream, int64_t expected,
                               const evs_event_in *events, size_t n, evs__engine_append **out) {
    return prepare(lims, stream, expected, events, n, 0, out);
}

int evs__engine_append_prepare_reserved(const uint64_t lims[4], const char *stream, int64_t expected,
                                        const evs_event_in *events, size_t n, evs__engine_append **out) {
    return prepare(lims, stream, expected, events, n, 1, out);
}
