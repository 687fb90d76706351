/*
 * cli_http.h — the evstore command's HTTP client for `--url`: requests to a
 * running `evstore serve` over libcurl, with bounded response bodies, exit
 * codes mapped from HTTP statuses, and a Server-Sent Events reader for
 * `tail`.  See docs/decisions.md ("CLI --url: libcurl") for why libcurl.
 *
 * Exit codes for a server's answer (evs__cli_http_fail):
 *   400, 413, 415, 422, 431 -> 4 (invalid input)     404 -> 2 (not found)
 *   409 -> 3 (conflict; "event id already stored elsewhere" -> 4, as locally)
 *   401, 403 -> 1 (the API key: none, unknown, revoked, or without the permission)
 *   anything else, 5xx, no answer at all -> 5 (a message naming the URL)
 * The server's own "error" text is printed as "evstore: <text>", so a
 * conflict reads exactly as it does against a local store.
 *
 * Every request carries Authorization: Bearer $EVSTORE_API_KEY when that is set.
 *
 * One evs__cli_http is one connection, reused (keep-alive) for every page of
 * a command.  Not thread-safe; the CLI has one thread.
 */
#ifndef EVS_CLI_HTTP_H
#define EVS_CLI_HTTP_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "core/json.h"
#include "core/sb.h"

/* p[0..n) percent-encoded onto s: every byte but A-Z a-z 0-9 - . _ ~ becomes %XX. */
void evs__cli_pct(evs__sb *s, const char *p, size_t n);

typedef struct evs__cli_http evs__cli_http;

/*
 * Check url (http:// or https://, a host) and set up a connection to it.
 * cmd names the subcommand for usage messages.  Returns EVS_CLI_OK with *out
 * (release with evs__cli_http_close), EVS_CLI_USAGE for a bad URL, or
 * EVS_CLI_IO; messages are printed.
 */
int evs__cli_http_open(const char *cmd, const char *url, evs__cli_http **out);
void evs__cli_http_close(evs__cli_http *h);

/*
 * One request: GET when body is NULL, else POST of body as application/json;
 * header (one "Name: value" line) may be NULL.  path starts with '/' and is
 * already percent-encoded.  Returns EVS_CLI_OK when the server answered
 * (whatever the status; see evs__cli_http_status), else prints why the URL
 * could not be reached and returns EVS_CLI_IO.
 */
int evs__cli_http_request(evs__cli_http *h, const char *path, const char *body, size_t len,
                          const char *header);
long evs__cli_http_status(const evs__cli_http *h);
/* The next request's method instead of GET/POST: "PUT" or "DELETE" (a static string); reset after it. */
void evs__cli_http_set_method(evs__cli_http *h, const char *method);
/*
 * The last response's body, validated as JSON: EVS_CLI_OK with its root
 * span (valid until the next request), or EVS_CLI_IO after saying that the
 * server's answer is not JSON.
 */
int evs__cli_http_json(evs__cli_http *h, const char *path, evs_json_span *root);
/* The member `key` of an object span of a validated buffer; 1 when found. */
int evs__cli_json_member(evs_json_span obj, const char *key, evs_json_span *out);
/* The exit code of an answer's status (the table above; 2xx: 0). */
int evs__cli_http_exit_code(long status);
/* Print the server's error for a non-2xx answer; returns the exit code for it. */
int evs__cli_http_fail(evs__cli_http *h, const char *path);

/*
 * GET path as a Server-Sent Events stream.  For each event, on_event gets
 * its type ("" for a plain message), its id ("" when none) and data (all
 * data lines joined by '\n', NUL-terminated); a non-zero return stops the
 * stream with that value.  After each batch of bytes received it is called
 * once more with type NULL (a good moment to flush output).  last_event_id, when not NULL, is sent as
 * Last-Event-ID.  The stream also stops within ~200 ms once *stop is set.
 * Returns one of EVS_CLI_SSE_* below.
 */
enum {
    EVS_CLI_SSE_STOPPED = 0,  /* *stop was set */
    EVS_CLI_SSE_ENDED,        /* the server ended a 200 stream (or the connection dropped after it) */
    EVS_CLI_SSE_NOCONNECT,    /* no answer at all: evs__cli_http_why says why */
    EVS_CLI_SSE_HTTP_ERROR,   /* an answer other than 200: evs__cli_http_fail reports it */
    EVS_CLI_SSE_CALLBACK,     /* on_event returned non-zero (its value is in *cb_rc) */
    EVS_CLI_SSE_FAILED        /* a line too long, or out of memory: evs__cli_http_why says which */
};
typedef int (*evs__cli_sse_fn)(void *ud, const char *type, const char *id, const char *data, size_t n);
int evs__cli_http_sse(evs__cli_http *h, const char *path, const char *last_event_id,
                      volatile sig_atomic_t *stop, evs__cli_sse_fn on_event, void *ud, int *cb_rc);
/* What went wrong with the last transfer that got no answer (for messages). */
const char *evs__cli_http_why(const evs__cli_http *h);
/* The base URL as given, without trailing slashes (for messages). */
const char *evs__cli_http_base(const evs__cli_http *h);
/* The server's "retry:" advice from the last SSE stream, in ms (default 1000). */
long evs__cli_http_sse_retry_ms(const evs__cli_http *h);

#endif
