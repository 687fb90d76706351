/*
 * cli_http.c — the HTTP client behind `evstore ... --url URL` (libcurl).
 *
 * Why libcurl rather than a socket of our own: the server answers with
 * Content-Length bodies and with chunked streams (SSE), a URL may name a
 * host by DNS or IPv6, a path prefix behind a proxy, or https; libcurl
 * handles all of it, is fuzzed and maintained upstream and packaged by
 * Debian, and costs us ~300 lines of glue instead of an HTTP parser we
 * would have to test and fuzz ourselves (docs/decisions.md).
 *
 * Memory stays bounded: a response body is refused past
 * EVS_CLI_HTTP_MAX_BODY (the server's pages stop growing at 32 MiB, plus one
 * event), and an SSE line past the same bound ends the stream.  Callers page
 * through reads, so a read of any size holds one page at a time.
 *
 * SSE runs on the multi interface only so that the wait for the next bytes
 * can be bounded (200 ms) and `tail` notices SIGINT/SIGTERM promptly; the
 * easy handle, and with it the connection, is the same one requests use.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "cli/cli.h"
#include "cli/cli_http.h"

/* Bounds: a server page is at most 32 MiB plus one event of at most 16 MiB. */
#define EVS_CLI_HTTP_MAX_BODY ((size_t)96 << 20)
#define EVS_CLI_HTTP_CONNECT_TIMEOUT_S 10L
/* A plain request that gets no byte for this long is abandoned. */
#define EVS_CLI_HTTP_STALL_S 120L
#define EVS_CLI_SSE_TICK_MS 200

struct evs__cli_http {
    CURL *easy;
    CURLM *multi;
    const char *cmd;
    char *base;                    /* URL without trailing '/' */
    evs__sb url;              /* scratch: base + path */
    char errbuf[CURL_ERROR_SIZE];
    char why[CURL_ERROR_SIZE + 32];
    long status;
    const char *method;            /* the next request's method when not GET/POST (evs__cli_http_set_method) */
    evs__sb body;             /* the response body (or an SSE error answer) */
    int too_big;
    /* SSE parsing */
    int sse;
    evs__sb line, data, id, type;
    long retry_ms;
    evs__cli_sse_fn fn;
    void *ud;
    int cb_rc;
    int global;                    /* holds a curl_global_init reference */
};

/* ---------------------------------------------------------------- strings */

void evs__cli_pct(evs__sb *s, const char *p, size_t n) {
    static const char hex[] = "0123456789ABCDEF";
    if (evs__sb_reserve(s, 3 * n)) return;
    char *o = s->p + s->len;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
            c == '.' || c == '_' || c == '~') {
            *o++ = (char)c;
        } else {
            *o++ = '%';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    s->len = (size_t)(o - s->p);
    s->p[s->len] = '\0';
}

/* ------------------------------------------------------------ connection */

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud);

int evs__cli_http_open(const char *cmd, const char *url, evs__cli_http **out) {
    evs__cli_http *h = NULL;
    int code = EVS_CLI_OK;
    *out = NULL;
    size_t n = strlen(url);
    const char *host = NULL;
    if (strncasecmp(url, "http://", 7) == 0) host = url + 7;
    else if (strncasecmp(url, "https://", 8) == 0) host = url + 8;
    if (!host || !*host || *host == '/')
        return evs__cli_usage(cmd, "--url %s: expected http://HOST:PORT (the address `evstore serve` prints)",
                              url[0] ? url : "\"\"");
    if (strpbrk(url, "?# \t\r\n"))
        return evs__cli_usage(cmd, "--url %s: the URL must not hold a query, a fragment or blanks", url);
    /* Parsed as libcurl will: a malformed URL ("http://[::1", a port past
       65535) is the user's to fix (exit 1), not an unreachable server (5). */
    CURLU *u = curl_url();
    if (!u) return evs__cli_fail(EVS_CLI_IO, "%s: out of memory", url);
    CURLUcode uc = curl_url_set(u, CURLUPART_URL, url, 0);
    curl_url_cleanup(u);
    if (uc != CURLUE_OK)
        return evs__cli_usage(cmd, "--url %s: %s (expected http://HOST:PORT)", url, curl_url_strerror(uc));
    while (n > 0 && url[n - 1] == '/') n--;

    /* Once per process; the CLI has one thread and one connection. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return evs__cli_fail(EVS_CLI_IO, "%s: cannot initialise libcurl", url);
    if (!(h = calloc(1, sizeof *h))) {
        curl_global_cleanup();
        return evs__cli_fail(EVS_CLI_IO, "%s: out of memory", url);
    }
    h->global = 1;
    if (!(h->base = strndup(url, n)) || !(h->easy = curl_easy_init()) || !(h->multi = curl_multi_init())) {
        code = evs__cli_fail(EVS_CLI_IO, "%s: out of memory", url);
        goto cleanup;
    }
    h->cmd = cmd;
    h->retry_ms = 1000;
    curl_easy_setopt(h->easy, CURLOPT_NOSIGNAL, 1L); /* no SIGALRM for DNS timeouts */
    curl_easy_setopt(h->easy, CURLOPT_ERRORBUFFER, h->errbuf);
    curl_easy_setopt(h->easy, CURLOPT_CONNECTTIMEOUT, EVS_CLI_HTTP_CONNECT_TIMEOUT_S);
    /* Stream names are percent-encoded by us; a name like ".." must reach
       the server as written (which refuses it) rather than be folded away. */
    curl_easy_setopt(h->easy, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(h->easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h->easy, CURLOPT_WRITEDATA, h);
    curl_easy_setopt(h->easy, CURLOPT_USERAGENT, "evstore/" EVS_VERSION_STRING);
    curl_easy_setopt(h->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    *out = h;
    h = NULL;
cleanup:
    evs__cli_http_close(h);
    return code;
}

void evs__cli_http_close(evs__cli_http *h) {
    if (!h) return;
    if (h->multi) curl_multi_cleanup(h->multi);
    if (h->easy) curl_easy_cleanup(h->easy);
    free(h->base);
    evs__sb_free(&h->url);
    evs__sb_free(&h->body);
    evs__sb_free(&h->line);
    evs__sb_free(&h->data);
    evs__sb_free(&h->id);
    evs__sb_free(&h->type);
    int global = h->global;
    free(h);
    if (global) curl_global_cleanup();
}

const char *evs__cli_http_base(const evs__cli_http *h) { return h->base; }
const char *evs__cli_http_why(const evs__cli_http *h) { return h->why; }
long evs__cli_http_status(const evs__cli_http *h) { return h->status; }
long evs__cli_http_sse_retry_ms(const evs__cli_http *h) { return h->retry_ms; }

/* base + path into h->url; 0 or -1 when out of memory. */
static int set_url(evs__cli_http *h, const char *path) {
    h->url.len = 0;
    evs__sb_adds(&h->url, h->base);
    evs__sb_adds(&h->url, path);
    if (h->url.oom) return -1;
    curl_easy_setopt(h->easy, CURLOPT_URL, h->url.p);
    return 0;
}

/* For messages: the URL without its query. */
static int shown_len(const evs__cli_http *h) {
    const char *q = strchr(h->url.p ? h->url.p : "", '?');
    return q ? (int)(q - h->url.p) : (int)h->url.len;
}

static void note_why(evs__cli_http *h, CURLcode rc) {
    snprintf(h->why, sizeof h->why, "%s", h->errbuf[0] ? h->errbuf : curl_easy_strerror(rc));
}

/* ---------------------------------------------------------------- bodies */

static void sse_feed(evs__cli_http *h, const char *p, size_t n);

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud) {
    evs__cli_http *h = ud;
    size_t n = size * nmemb;
    if (h->sse) {
        long st = 0;
        curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &st);
        if (st == 200) {
            sse_feed(h, p, n);
            if (!h->cb_rc) h->cb_rc = h->fn(h->ud, NULL, NULL, NULL, 0); /* end of what arrived */
            /* returning less than n aborts the transfer */
            return h->cb_rc || h->too_big || h->line.oom || h->data.oom ? 0 : n;
        }
    }
    if (h->body.len + n > EVS_CLI_HTTP_MAX_BODY) {
        h->too_big = 1;
        return 0;
    }
    evs__sb_add(&h->body, p, n);
    return h->body.oom ? 0 : n;
}

/*
 * "Authorization: Bearer KEY" from $EVSTORE_API_KEY into buf, or NULL when
 * it is unset or empty (or not a key at all: too long, a line break).  The
 * key goes only into this header, never into a message.
 */
static const char *auth_header(char *buf, size_t cap) {
    const char *k = getenv("EVSTORE_API_KEY");
    if (!k || !*k || strlen(k) > 200 || strpbrk(k, "\r\n")) return NULL;
    snprintf(buf, cap, "Authorization: Bearer %s", k);
    return buf;
}

/* Reset per-transfer state and the options that differ between transfers. */
static void prepare(evs__cli_http *h, struct curl_slist *hdrs, long stall_s) {
    h->status = 0;
    h->too_big = 0;
    h->errbuf[0] = '\0';
    h->why[0] = '\0';
    h->body.len = 0;
    h->body.oom = 0;
    if (h->body.p) h->body.p[0] = '\0';
    curl_easy_setopt(h->easy, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h->easy, CURLOPT_LOW_SPEED_LIMIT, stall_s ? 1L : 0L);
    curl_easy_setopt(h->easy, CURLOPT_LOW_SPEED_TIME, stall_s);
}

int evs__cli_http_request(evs__cli_http *h, const char *path, const char *body, size_t len,
                          const char *header) {
    struct curl_slist *hdrs = NULL, *t;
    int code = EVS_CLI_OK;
    if (set_url(h, path)) return evs__cli_fail(EVS_CLI_IO, "out of memory");
    char ah[256];
    const char *list[] = {"Accept: application/json", body ? "Content-Type: application/json" : NULL,
                          /* no "100 Continue" round trip before a large append */
                          body ? "Expect:" : NULL, header, auth_header(ah, sizeof ah)};
    for (size_t i = 0; i < sizeof list / sizeof list[0]; i++) {
        if (!list[i]) continue;
        if (!(t = curl_slist_append(hdrs, list[i]))) {
            code = evs__cli_fail(EVS_CLI_IO, "out of memory");
            goto cleanup;
        }
        hdrs = t;
    }
    h->sse = 0;
    prepare(h, hdrs, EVS_CLI_HTTP_STALL_S);
    const char *method = h->method ? h->method : body ? "POST" : "GET";
    h->method = NULL;
    if (body || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0) {
        curl_easy_setopt(h->easy, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(h->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? len : 0));
    } else {
        curl_easy_setopt(h->easy, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(h->easy, CURLOPT_CUSTOMREQUEST,
                     strcmp(method, "GET") == 0 || (strcmp(method, "POST") == 0) ? NULL : method);
    CURLcode rc = curl_easy_perform(h->easy);
    curl_easy_setopt(h->easy, CURLOPT_CUSTOMREQUEST, NULL);
    curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &h->status);
    if (h->too_big) {
        code = evs__cli_fail(EVS_CLI_IO, "%.*s: the answer is larger than %zu MiB", shown_len(h), h->url.p,
                             EVS_CLI_HTTP_MAX_BODY >> 20);
    } else if (h->body.oom) {
        code = evs__cli_fail(EVS_CLI_IO, "%.*s: out of memory for the answer", shown_len(h), h->url.p);
    } else if (rc != CURLE_OK) {
        note_why(h, rc);
        code = evs__cli_fail(EVS_CLI_IO, "%s %.*s: %s", method, shown_len(h), h->url.p, h->why);
    }
cleanup:
    curl_easy_setopt(h->easy, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hdrs);
    return code;
}

void evs__cli_http_set_method(evs__cli_http *h, const char *method) { h->method = method; }

int evs__cli_http_json(evs__cli_http *h, const char *path, evs_json_span *root) {
    evs_json_error je;
    const char *p = h->body.p ? h->body.p : "";
    if (evs__json_validate(p, h->body.len, &je) != EVS_OK)
        return evs__cli_fail(EVS_CLI_IO, "%s%s: the server's answer is not JSON (%s); is this an evstore server?",
                             h->base, path, je.msg);
    *root = evs__json_root(p, h->body.len);
    return EVS_CLI_OK;
}

int evs__cli_json_member(evs_json_span obj, const char *key, evs_json_span *out) {
    evs_json_iter it;
    evs_json_span k, v;
    if (obj.type != EVS_JSON_OBJECT) return 0;
    evs__json_iter_init(&it, obj);
    while (evs__json_iter_member(&it, &k, &v))
        if (evs__json_string_eq(k, key)) {
            *out = v;
            return 1;
        }
    return 0;
}

int evs__cli_http_exit_code(long st) {
    if (st / 100 == 2) return EVS_CLI_OK;
    if (st == 404) return EVS_CLI_NOTFOUND;
    if (st == 409) return EVS_CLI_CONFLICT;
    if (st == 400 || st == 413 || st == 415 || st == 422 || st == 431) return EVS_CLI_INVALID;
    if (st == 401 || st == 403) return EVS_CLI_USAGE; /* the caller's key: set EVSTORE_API_KEY to one that may */
    return EVS_CLI_IO;
}

int evs__cli_http_fail(evs__cli_http *h, const char *path) {
    long st = h->status;
    int code = evs__cli_http_exit_code(st);
    if (code == EVS_CLI_OK) code = EVS_CLI_IO; /* a 2xx is not a failure: a caller's mistake */

    /* The server's message: {"error": "...", "detail": {..., "code": "E..."}} */
    char *msg = NULL;
    evs_json_error je;
    const char *p = h->body.p ? h->body.p : "";
    if (h->body.len && evs__json_validate(p, h->body.len, &je) == EVS_OK) {
        evs_json_span root = evs__json_root(p, h->body.len), e, d, c;
        if (evs__cli_json_member(root, "error", &e) && e.type == EVS_JSON_STRING && (msg = malloc(e.n + 1)) &&
            evs__json_string_decode(e, msg, e.n + 1) < 0) {
            free(msg);
            msg = NULL;
        }
        /* An event id stored at other positions is invalid input locally (4),
           though HTTP calls it a conflict. */
        if (st == 409 && evs__cli_json_member(root, "detail", &d) && evs__cli_json_member(d, "code", &c) && evs__json_string_eq(c, "EDUPLICATE"))
            code = EVS_CLI_INVALID;
    }
    if (msg && code != EVS_CLI_IO) {
        evs__cli_fail(code, "%s", msg);
    } else {
        /* A server failure, or an answer that is not ours: name the URL, and
           show the start of a body that is not our JSON, made printable. */
        char shown[160];
        size_t k = 0;
        for (size_t i = 0; !msg && i < h->body.len && k < sizeof shown - 1; i++) {
            unsigned char ch = (unsigned char)p[i];
            if (ch == '\n' || ch == '\r') break;
            shown[k++] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
        }
        shown[k] = '\0';
        evs__cli_fail(code, "%s%.*s: HTTP %ld: %s", h->base, (int)strcspn(path, "?"), path, st,
                      msg ? msg : k ? shown : "(no body)");
    }
    free(msg);
    return code;
}

/* -------------------------------------------------------------------- SSE */

/* One complete line (without its end of line). */
static void sse_line(evs__cli_http *h, const char *p, size_t n) {
    if (n && p[n - 1] == '\r') n--;
    if (n == 0) { /* dispatch */
        if (h->data.len) {
            h->data.p[--h->data.len] = '\0'; /* the last '\n' */
            h->cb_rc = h->fn(h->ud, h->type.p ? h->type.p : "", h->id.p ? h->id.p : "", h->data.p, h->data.len);
        }
        h->data.len = 0;
        h->type.len = 0;
        if (h->type.p) h->type.p[0] = '\0';
        return;
    }
    if (p[0] == ':') return; /* comment: heartbeats */
    const char *colon = memchr(p, ':', n);
    size_t fn = colon ? (size_t)(colon - p) : n;
    const char *v = colon ? colon + 1 : p + n;
    size_t vn = (size_t)(p + n - v);
    if (vn && *v == ' ') v++, vn--;
    if (fn == 4 && memcmp(p, "data", 4) == 0) {
        evs__sb_add(&h->data, v, vn);
        evs__sb_add(&h->data, "\n", 1);
    } else if (fn == 5 && memcmp(p, "event", 5) == 0) {
        h->type.len = 0;
        evs__sb_add(&h->type, v, vn);
    } else if (fn == 2 && memcmp(p, "id", 2) == 0 && !memchr(v, '\0', vn)) {
        h->id.len = 0;
        evs__sb_add(&h->id, v, vn);
    } else if (fn == 5 && memcmp(p, "retry", 5) == 0 && vn > 0 && vn < 9) {
        long ms = 0;
        for (size_t i = 0; i < vn; i++) {
            if (v[i] < '0' || v[i] > '9') return; /* not a number: ignored, as the spec says */
            ms = ms * 10 + (v[i] - '0');
        }
        h->retry_ms = ms;
    }
}

static void sse_feed(evs__cli_http *h, const char *p, size_t n) {
    while (n && !h->cb_rc) {
        const char *nl = memchr(p, '\n', n);
        size_t take = nl ? (size_t)(nl - p) : n;
        if (h->line.len + take > EVS_CLI_HTTP_MAX_BODY || h->data.len > EVS_CLI_HTTP_MAX_BODY) {
            h->too_big = 1;
            return;
        }
        if (!nl) {
            evs__sb_add(&h->line, p, n);
            return;
        }
        if (h->line.len) {
            evs__sb_add(&h->line, p, take);
            if (h->line.oom) return;
            sse_line(h, h->line.p, h->line.len);
            h->line.len = 0;
        } else {
            sse_line(h, p, take);
        }
        p += take + 1;
        n -= take + 1;
    }
}

int evs__cli_http_sse(evs__cli_http *h, const char *path, const char *last_event_id,
                      volatile sig_atomic_t *stop, evs__cli_sse_fn on_event, void *ud, int *cb_rc) {
    struct curl_slist *hdrs = NULL, *t;
    char lei[96];
    int outcome = EVS_CLI_SSE_NOCONNECT;
    *cb_rc = 0;
    if (set_url(h, path)) {
        snprintf(h->why, sizeof h->why, "out of memory");
        return outcome;
    }
    snprintf(lei, sizeof lei, "Last-Event-ID: %s", last_event_id ? last_event_id : "");
    char ah[256];
    const char *list[] = {"Accept: text/event-stream", "Cache-Control: no-cache", last_event_id ? lei : NULL,
                          auth_header(ah, sizeof ah)};
    for (size_t i = 0; i < sizeof list / sizeof list[0]; i++) {
        if (!list[i]) continue;
        if (!(t = curl_slist_append(hdrs, list[i]))) {
            snprintf(h->why, sizeof h->why, "out of memory");
            goto cleanup;
        }
        hdrs = t;
    }
    prepare(h, hdrs, 0); /* a quiet stream is normal: heartbeats are the server's business */
    curl_easy_setopt(h->easy, CURLOPT_HTTPGET, 1L);
    h->sse = 1;
    h->fn = on_event;
    h->ud = ud;
    h->cb_rc = 0;
    h->line.len = h->data.len = h->type.len = h->id.len = 0;
    if (curl_multi_add_handle(h->multi, h->easy) != CURLM_OK) {
        snprintf(h->why, sizeof h->why, "cannot start the transfer");
        goto cleanup;
    }
    CURLcode result = CURLE_OK;
    int stopped = 0;
    for (;;) {
        int running = 0;
        if (*stop) {
            stopped = 1;
            break;
        }
        CURLMcode mc = curl_multi_perform(h->multi, &running);
        if (mc != CURLM_OK) {
            result = CURLE_RECV_ERROR;
            snprintf(h->errbuf, sizeof h->errbuf, "%s", curl_multi_strerror(mc));
            break;
        }
        if (!running) {
            int left;
            CURLMsg *m;
            while ((m = curl_multi_info_read(h->multi, &left)))
                if (m->msg == CURLMSG_DONE) result = m->data.result;
            break;
        }
        /* A signal interrupts the poll early; otherwise the tick bounds the wait. */
        curl_multi_poll(h->multi, NULL, 0, EVS_CLI_SSE_TICK_MS, NULL);
    }
    curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &h->status);
    curl_multi_remove_handle(h->multi, h->easy);
    if (stopped) {
        outcome = EVS_CLI_SSE_STOPPED;
    } else if (h->cb_rc) {
        outcome = EVS_CLI_SSE_CALLBACK;
        *cb_rc = h->cb_rc;
    } else if (h->too_big || h->line.oom || h->data.oom || h->body.oom) {
        /* reconnecting would meet the same bytes again */
        if (h->too_big)
            snprintf(h->why, sizeof h->why, "a line of the event stream is larger than %zu MiB",
                     EVS_CLI_HTTP_MAX_BODY >> 20);
        else
            snprintf(h->why, sizeof h->why, "out of memory");
        outcome = EVS_CLI_SSE_FAILED;
    } else if (h->status == 200) {
        outcome = EVS_CLI_SSE_ENDED;
        if (result != CURLE_OK) note_why(h, result);
    } else if (h->status != 0) {
        outcome = EVS_CLI_SSE_HTTP_ERROR;
    } else {
        note_why(h, result == CURLE_OK ? CURLE_GOT_NOTHING : result);
        outcome = EVS_CLI_SSE_NOCONNECT;
    }
cleanup:
    h->sse = 0;
    curl_easy_setopt(h->easy, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hdrs);
    return outcome;
}
