/*
 * cli_remote.c — append, read, tail, streams and info against a running
 * `evstore serve` (--url URL or $EVSTORE_URL), with the output and exit
 * codes of the same commands on a local store.
 *
 * Output parity: the server renders events and stream infos with the same
 * code as the local commands (evs_event_to_json, the same field order), so
 * the elements of its pages are printed byte for byte as received; the
 * append result and `info` are rebuilt from the server's fields in the
 * local command's format (the server says a little more, e.g. recorded_at).
 *
 * Bounded memory: reads ask for pages of at most EVS_CLI_REMOTE_PAGE items
 * and continue from the `next` / `next_after` the server returns, holding
 * one page at a time.  A forward read of '$all' stops at the head the first
 * page reported, as a local reader stops at the head it opened at, so a
 * busy writer cannot keep a read going forever.
 *
 * tail: GET /subscribe (Server-Sent Events).  When the stream ends (server
 * restart, a dropped connection) it reconnects after the server's `retry:`
 * advice with Last-Event-ID set to the last position seen — or to the
 * last_event_id the server's final "shutdown" event names, which also
 * covers events the filter skipped — so nothing is printed twice or missed.  If
 * the server stays unreachable for EVS_CLI_TAIL_GIVE_UP_S it exits 5.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/cli_http.h"

#define EVS_CLI_REMOTE_PAGE 1000u
#define EVS_CLI_TAIL_GIVE_UP_S 30

/* ---------------------------------------------------------------- helpers */

/* An unsigned integer member; 1 when present and a number. */
static int json_u64(evs_json_span obj, const char *key, uint64_t *out) {
    evs_json_span v;
    int64_t x;
    if (!evs__cli_json_member(obj, key, &v) || v.type != EVS_JSON_NUMBER) return 0;
    if (evs__json_int64(v, &x) != EVS_OK || x < 0) return 0;
    *out = (uint64_t)x;
    return 1;
}

/* A boolean member: 1 true, 0 false, -1 absent or not a boolean. */
static int json_bool(evs_json_span obj, const char *key) {
    evs_json_span v;
    if (!evs__cli_json_member(obj, key, &v)) return -1;
    return v.type == EVS_JSON_TRUE ? 1 : v.type == EVS_JSON_FALSE ? 0 : -1;
}

static int unexpected(const evs__cli_http *h, const char *path, const char *what) {
    return evs__cli_fail(EVS_CLI_IO, "%s%.*s: unexpected answer from the server: %s", evs__cli_http_base(h),
                         (int)strcspn(path, "?"), path, what);
}

/* GET or POST path; EVS_CLI_OK with *root of a 2xx JSON answer, else the exit code. */
static int call(evs__cli_http *h, const char *path, const char *body, size_t len, const char *header,
                evs_json_span *root) {
    int code = evs__cli_http_request(h, path, body, len, header);
    if (code) return code;
    if (evs__cli_http_status(h) / 100 != 2) return evs__cli_http_fail(h, path);
    if ((code = evs__cli_http_json(h, path, root))) return code;
    if (root->type != EVS_JSON_OBJECT) return unexpected(h, path, "not a JSON object");
    return EVS_CLI_OK;
}

/* Print every element of the array member `key`, one per line; *count of them. */
static int print_elements(const evs__cli_http *h, const char *path, evs_json_span root, const char *key,
                          uint64_t *count) {
    evs_json_span arr, el;
    evs_json_iter it;
    *count = 0;
    if (!evs__cli_json_member(root, key, &arr) || arr.type != EVS_JSON_ARRAY) {
        char what[64];
        snprintf(what, sizeof what, "no \"%s\" array", key);
        return unexpected(h, path, what);
    }
    evs__json_iter_init(&it, arr);
    while (evs__json_iter_element(&it, &el)) {
        fwrite(el.p, 1, el.n, stdout);
        fputc('\n', stdout);
        (*count)++;
    }
    return EVS_CLI_OK;
}

/* The filter as query parameters of /all and /subscribe (names as in docs/http-api.md). */
static void add_filter(evs__sb *q, const evs_filter *f) {
    char t[40];
    if (f->n_event_types) {
        evs__sb_adds(q, "&type=");
        for (size_t i = 0; i < f->n_event_types; i++) {
            if (i) evs__sb_add(q, ",", 1);
            evs__cli_pct(q, f->event_types[i], strlen(f->event_types[i]));
        }
    }
    if (f->stream_type) {
        evs__sb_adds(q, "&stream_type=");
        evs__cli_pct(q, f->stream_type, strlen(f->stream_type));
    }
    if (f->stream_prefix && f->stream_prefix[0]) {
        evs__sb_adds(q, "&stream_prefix=");
        evs__cli_pct(q, f->stream_prefix, strlen(f->stream_prefix));
    }
    if (f->correlation_id) {
        evs_uuid_format(f->correlation_id, t);
        evs__sb_adds(q, "&correlation_id=");
        evs__sb_adds(q, t);
    }
    if (f->causation_id) {
        evs_uuid_format(f->causation_id, t);
        evs__sb_adds(q, "&causation_id=");
        evs__sb_adds(q, t);
    }
    if (f->n_tags) { /* one list; a comma inside a tag travels as %2C */
        evs__sb_adds(q, "&tag=");
        for (size_t i = 0; i < f->n_tags; i++) {
            if (i) evs__sb_add(q, ",", 1);
            evs__cli_pct(q, f->tags[i], strlen(f->tags[i]));
        }
        if (f->tag_match == EVS_TAGS_ALL) evs__sb_adds(q, "&tag_match=all");
    }
    /* Times travel as RFC 3339 with all nine digits: exactly the ns given. */
    if (f->since) {
        size_t n = evs_time_format(f->since, t);
        evs__sb_adds(q, "&since=");
        evs__cli_pct(q, t, n);
    }
    if (f->until) {
        size_t n = evs_time_format(f->until, t);
        evs__sb_adds(q, "&until=");
        evs__cli_pct(q, t, n);
    }
}

/* ----------------------------------------------------------------- append */

int evs__cli_remote_append(const char *url, const char *stream, int64_t expected, const char *condition,
                           const evs__cli_src *ev, size_t n) {
    evs__cli_http *h = NULL;
    evs__sb body = {0}, path = {0};
    char header[64];
    evs_json_span root, ids;
    uint64_t fsp, lsp, fgp, lgp;
    int code, idem;

    if (!stream[0]) return evs__cli_fail(EVS_CLI_INVALID, "stream name is empty; nothing stored");
    /* One array, one POST: the server appends it atomically, as evs_append does. */
    if (condition) evs__sb_adds(&body, "{\"events\":");
    evs__sb_add(&body, "[", 1);
    for (size_t i = 0; i < n; i++) {
        if (i) evs__sb_add(&body, ",", 1);
        evs__sb_add(&body, ev[i].p, ev[i].n);
    }
    evs__sb_add(&body, "]", 1);
    if (condition) { /* checked as JSON by the caller; the server reads it strictly */
        evs__sb_adds(&body, ",\"condition\":");
        evs__sb_adds(&body, condition);
        evs__sb_adds(&body, "}");
    }
    evs__sb_adds(&path, "/streams/");
    evs__cli_pct(&path, stream, strlen(stream));
    if (body.oom || path.oom) {
        code = evs__cli_fail(EVS_CLI_IO, "out of memory for %zu events", n);
        goto cleanup;
    }
    if (expected == EVS_EXPECT_ANY) snprintf(header, sizeof header, "Expected-Version: any");
    else if (expected == EVS_EXPECT_EXISTS) snprintf(header, sizeof header, "Expected-Version: exists");
    else if (expected == EVS_EXPECT_NO_STREAM) snprintf(header, sizeof header, "Expected-Version: no-stream");
    else snprintf(header, sizeof header, "Expected-Version: %lld", (long long)expected);

    if ((code = evs__cli_http_open("append", url, &h))) goto cleanup;
    if ((code = call(h, path.p, body.p, body.len, header, &root))) goto cleanup;
    idem = json_bool(root, "idempotent");
    if (!json_u64(root, "first_stream_position", &fsp) || !json_u64(root, "last_stream_position", &lsp) ||
        !json_u64(root, "first_global_position", &fgp) || !json_u64(root, "last_global_position", &lgp) ||
        idem < 0 || !evs__cli_json_member(root, "event_ids", &ids) || ids.type != EVS_JSON_ARRAY) {
        code = unexpected(h, path.p, "the append result lacks positions or event_ids");
        goto cleanup;
    }
    /* The local command's line, field for field (cli_append.c). */
    fputs("{\"stream\":", stdout);
    evs__cli_json_str(stdout, stream, strlen(stream));
    printf(",\"first_stream_position\":%llu,\"last_stream_position\":%llu"
           ",\"first_global_position\":%llu,\"last_global_position\":%llu,\"idempotent\":%s"
           ",\"event_ids\":",
           (unsigned long long)fsp, (unsigned long long)lsp, (unsigned long long)fgp, (unsigned long long)lgp,
           idem ? "true" : "false");
    fwrite(ids.p, 1, ids.n, stdout);
    fputs("}\n", stdout);

cleanup:
    evs__cli_http_close(h);
    evs__sb_free(&body);
    evs__sb_free(&path);
    return code;
}

/* ------------------------------------------------------------------- read */

int evs__cli_remote_read(const char *url, const char *stream, uint64_t from, uint64_t limit, int backward,
                         const evs_filter *f) {
    evs__cli_http *h = NULL;
    evs__sb path = {0};
    int all = strcmp(stream, "$all") == 0, code;
    uint64_t left = limit ? limit : UINT64_MAX, stop_after = 0;
    int have_from = from != 0, first = 1;

    if (!stream[0]) return evs__cli_fail(EVS_CLI_INVALID, "stream name is empty");
    if ((code = evs__cli_http_open("read", url, &h))) goto cleanup;
    while (left > 0) {
        evs_json_span root, next;
        uint64_t count = 0, page = left < EVS_CLI_REMOTE_PAGE ? left : EVS_CLI_REMOTE_PAGE, head = 0, nx = 0;
        path.len = 0;
        if (all) {
            evs__sb_adds(&path, "/all");
        } else {
            evs__sb_adds(&path, "/streams/");
            evs__cli_pct(&path, stream, strlen(stream));
        }
        evs__sb_printf(&path, "?limit=%llu", (unsigned long long)page);
        if (backward) evs__sb_adds(&path, "&direction=backward");
        if (have_from) evs__sb_printf(&path, "&from=%llu", (unsigned long long)from);
        if (all) add_filter(&path, f);
        if (path.oom) {
            code = evs__cli_fail(EVS_CLI_IO, "out of memory");
            goto cleanup;
        }
        if ((code = call(h, path.p, NULL, 0, NULL, &root))) goto cleanup;
        if ((code = print_elements(h, path.p, root, "events", &count))) goto cleanup;
        left -= count < left ? count : left;
        int end = json_bool(root, "end");
        if (end < 0 || !evs__cli_json_member(root, "next", &next)) {
            code = unexpected(h, path.p, "a page without \"next\" and \"end\"");
            goto cleanup;
        }
        if (end == 1 || next.type == EVS_JSON_NULL || count == 0) break;
        if (!json_u64(root, "next", &nx)) {
            code = unexpected(h, path.p, "\"next\" is not a position");
            goto cleanup;
        }
        if (all && !backward) {
            /* a snapshot at the first page's head, like a local reader */
            if (first && json_u64(root, "head", &head)) stop_after = head;
            if (stop_after && nx > stop_after) break;
        }
        first = 0;
        from = nx;
        have_from = 1;
    }

cleanup:
    evs__cli_http_close(h);
    evs__sb_free(&path);
    return code;
}

/* ---------------------------------------------------------------- streams */

int evs__cli_remote_streams(const char *url, const char *prefix, uint64_t limit) {
    evs__cli_http *h = NULL;
    evs__sb path = {0};
    char *after = NULL;
    uint64_t left = limit ? limit : UINT64_MAX;
    int code;

    if ((code = evs__cli_http_open("streams", url, &h))) goto cleanup;
    while (left > 0) {
        evs_json_span root, na;
        uint64_t count, page = left < EVS_CLI_REMOTE_PAGE ? left : EVS_CLI_REMOTE_PAGE;
        path.len = 0;
        evs__sb_printf(&path, "/streams?limit=%llu", (unsigned long long)page);
        if (prefix && prefix[0]) {
            evs__sb_adds(&path, "&prefix=");
            evs__cli_pct(&path, prefix, strlen(prefix));
        }
        if (after) {
            evs__sb_adds(&path, "&after=");
            evs__cli_pct(&path, after, strlen(after));
        }
        if (path.oom) {
            code = evs__cli_fail(EVS_CLI_IO, "out of memory");
            goto cleanup;
        }
        if ((code = call(h, path.p, NULL, 0, NULL, &root))) goto cleanup;
        if ((code = print_elements(h, path.p, root, "streams", &count))) goto cleanup;
        left -= count < left ? count : left;
        if (!evs__cli_json_member(root, "next_after", &na)) {
            code = unexpected(h, path.p, "a page without \"next_after\"");
            goto cleanup;
        }
        if (na.type == EVS_JSON_NULL || count == 0) break;
        free(after);
        if (na.type != EVS_JSON_STRING || !(after = malloc(na.n + 1)) ||
            evs__json_string_decode(na, after, na.n + 1) < 0) {
            code = unexpected(h, path.p, "\"next_after\" is not a stream name");
            goto cleanup;
        }
    }

cleanup:
    evs__cli_http_close(h);
    evs__sb_free(&path);
    free(after);
    return code;
}

/* ------------------------------------------------------------------- info */

int evs__cli_remote_info(const char *url, const char *stream) {
    evs__cli_http *h = NULL;
    evs__sb path = {0};
    char *name = NULL;
    evs_json_span root, arr, el, nm, dur;
    evs_json_iter it;
    int code;

    if ((code = evs__cli_http_open("info", url, &h))) goto cleanup;
    if (!stream) {
        uint64_t head, streams, segments, log_bytes;
        if ((code = call(h, "/info", NULL, 0, NULL, &root))) goto cleanup;
        if (!json_u64(root, "head", &head) || !json_u64(root, "streams", &streams) ||
            !json_u64(root, "segments", &segments) || !json_u64(root, "log_bytes", &log_bytes) ||
            !evs__cli_json_member(root, "durability", &dur) || dur.type != EVS_JSON_STRING) {
            code = unexpected(h, "/info", "missing head, streams, segments, log_bytes or durability");
            goto cleanup;
        }
        printf("{\"head\":%llu,\"streams\":%llu,\"segments\":%llu,\"log_bytes\":%llu,\"durability\":%.*s}\n",
               (unsigned long long)head, (unsigned long long)streams, (unsigned long long)segments,
               (unsigned long long)log_bytes, (int)dur.n, dur.p);
        goto cleanup;
    }
    /* No route answers one stream's info, but the stream list does: a name
       sorts before every longer name it is a prefix of, so the first stream
       listed with prefix = STREAM is STREAM itself when it exists. */
    if (!stream[0]) {
        code = evs__cli_fail(EVS_CLI_INVALID, "stream name is empty");
        goto cleanup;
    }
    evs__sb_adds(&path, "/streams?limit=1&prefix=");
    evs__cli_pct(&path, stream, strlen(stream));
    if (path.oom) {
        code = evs__cli_fail(EVS_CLI_IO, "out of memory");
        goto cleanup;
    }
    if ((code = call(h, path.p, NULL, 0, NULL, &root))) goto cleanup;
    if (!evs__cli_json_member(root, "streams", &arr) || arr.type != EVS_JSON_ARRAY) {
        code = unexpected(h, path.p, "no \"streams\" array");
        goto cleanup;
    }
    evs__json_iter_init(&it, arr);
    if (evs__json_iter_element(&it, &el) && evs__cli_json_member(el, "stream", &nm) && nm.type == EVS_JSON_STRING &&
        (name = malloc(nm.n + 1)) && evs__json_string_decode(nm, name, nm.n + 1) >= 0 && strcmp(name, stream) == 0) {
        fwrite(el.p, 1, el.n, stdout);
        fputc('\n', stdout);
    } else {
        code = evs__cli_fail(EVS_CLI_NOTFOUND, "stream \"%s\" not found", stream);
    }

cleanup:
    evs__cli_http_close(h);
    evs__sb_free(&path);
    free(name);
    return code;
}

/* ------------------------------------------------------------------- tail */

typedef struct tail_state {
    uint64_t resume;         /* Last-Event-ID for a reconnect: the last position dealt with */
    int have_resume;
} tail_state;

static int on_sse(void *ud, const char *type, const char *id, const char *data, size_t n) {
    tail_state *st = ud;
    if (!type) return evs__cli_finish_output(EVS_CLI_OK); /* a batch arrived: pass it on now */
    if (type[0] == '\0' || strcmp(type, "message") == 0) {
        fwrite(data, 1, n, stdout);
        fputc('\n', stdout);
        uint64_t g = 0;
        const char *p = id;
        for (; *p >= '0' && *p <= '9' && g < UINT64_MAX / 10; p++) g = g * 10 + (uint64_t)(*p - '0');
        if (p != id && *p == '\0') {
            st->resume = g;
            st->have_resume = 1;
        }
    } else if (strcmp(type, "shutdown") == 0) {
        /* {"reason": ..., "last_event_id": L, "next": L + 1}: everything up to L
           was examined (a server before last_event_id said only next) */
        evs_json_error je;
        uint64_t last = 0, next;
        int have = 0;
        if (evs__json_validate(data, n, &je) == EVS_OK) {
            evs_json_span root = evs__json_root(data, n);
            if (json_u64(root, "last_event_id", &last)) have = 1;
            else if (json_u64(root, "next", &next) && next > 0) last = next - 1, have = 1;
        }
        if (have && (!st->have_resume || last > st->resume)) {
            st->resume = last;
            st->have_resume = 1;
        }
    }
    return 0;
}

/* Sleep ms in short steps, returning early once *stop is set. */
static void nap(long ms, volatile sig_atomic_t *stop) {
    while (ms > 0 && !*stop) {
        long step = ms < 100 ? ms : 100;
        struct timespec ts = {0, step * 1000000L};
        nanosleep(&ts, NULL);
        ms -= step;
    }
}

int evs__cli_remote_tail(const char *url, uint64_t from, const evs_filter *f, volatile sig_atomic_t *stop) {
    evs__cli_http *h = NULL;
    evs__sb path = {0};
    tail_state st = {0, 0};
    int code, connected = 0;
    int64_t lost_since = 0;

    if ((code = evs__cli_http_open("tail", url, &h))) goto cleanup;
    evs__sb_printf(&path, "/subscribe?from=%llu", (unsigned long long)from);
    add_filter(&path, f);
    if (path.oom) {
        code = evs__cli_fail(EVS_CLI_IO, "out of memory");
        goto cleanup;
    }
    for (;;) {
        char lei[24];
        int cb_rc = 0;
        if (st.have_resume) snprintf(lei, sizeof lei, "%llu", (unsigned long long)st.resume);
        int r = evs__cli_http_sse(h, path.p, st.have_resume ? lei : NULL, stop, on_sse, &st, &cb_rc);
        if (r == EVS_CLI_SSE_STOPPED || *stop) {
            code = EVS_CLI_OK;
            goto cleanup;
        }
        if (r == EVS_CLI_SSE_CALLBACK) {
            code = cb_rc;
            goto cleanup;
        }
        if (r == EVS_CLI_SSE_FAILED) {
            code = evs__cli_fail(EVS_CLI_IO, "%s/subscribe: %s", evs__cli_http_base(h), evs__cli_http_why(h));
            goto cleanup;
        }
        /* 503: a server that is shutting down; worth waiting for once we were in. */
        if (r == EVS_CLI_SSE_HTTP_ERROR && !(connected && evs__cli_http_status(h) == 503)) {
            code = evs__cli_http_fail(h, path.p);
            goto cleanup;
        }
        if (r == EVS_CLI_SSE_NOCONNECT && !connected) {
            code = evs__cli_fail(EVS_CLI_IO, "GET %s/subscribe: %s", evs__cli_http_base(h), evs__cli_http_why(h));
            goto cleanup;
        }
        if (r == EVS_CLI_SSE_ENDED) {
            connected = 1;
            lost_since = 0;
            fprintf(stderr, "evstore: the event stream from %s ended%s%s; reconnecting\n", evs__cli_http_base(h),
                    evs__cli_http_why(h)[0] ? ": " : "", evs__cli_http_why(h));
        } else {
            int64_t now = evs__mono_ns();
            if (!lost_since) lost_since = now;
            if (now - lost_since > (int64_t)EVS_CLI_TAIL_GIVE_UP_S * 1000000000) {
                code = evs__cli_fail(EVS_CLI_IO, "%s: no connection for %d s: %s", evs__cli_http_base(h),
                                     EVS_CLI_TAIL_GIVE_UP_S,
                                     r == EVS_CLI_SSE_NOCONNECT ? evs__cli_http_why(h) : "the server answers 503");
                goto cleanup;
            }
        }
        if ((code = evs__cli_finish_output(EVS_CLI_OK))) goto cleanup;
        nap(evs__cli_http_sse_retry_ms(h), stop);
    }

cleanup:
    evs__cli_http_close(h);
    evs__sb_free(&path);
    return code;
}
