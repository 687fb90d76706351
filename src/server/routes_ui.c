/*
 * routes_ui.c — serves the web console (ui/, embedded by
 * cmake/embed_ui.cmake; docs/console.md describes the pages).
 *
 * A file is found by exact name in the embedded table, after the path
 * segment is percent-decoded: there is no file system behind the route, so
 * "..", "%2e%2e", "%2f" or a NUL can never reach anything but a 404.  The
 * route table sends paths with more segments ("/ui/a/b", "/ui/../x") to its
 * own 404.  Query strings are ignored here, as any static file server does
 * (a cache-busting "?v=" must not break the page).
 *
 * Caching: every answer has a strong ETag (a hash of the bytes) and
 * "Cache-Control: no-cache", so a browser revalidates each time and gets a
 * bodiless 304 while the program is unchanged, and the new files at once
 * after an upgrade — file names carry no version.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "server/query.h"
#include "server/routes_ui.h"

enum { HTTP_NOT_MODIFIED = 304 }; /* not an error: outside respond.h's error table */

/* The console's own policy: everything from this origin, nothing inline but styles, no framing. */
#define UI_CSP                                                                                            \
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "     \
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

const char *evs__ui_content_type(const char *name) {
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},  {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},    {".svg", "image/svg+xml"},
        {".png", "image/png"},                  {".ico", "image/x-icon"},
        {".json", "application/json"},          {".txt", "text/plain; charset=utf-8"},
    };
    const char *dot = strrchr(name, '.');
    if (dot)
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
            if (strcasecmp(dot, types[i].ext) == 0) return types[i].type;
    return "application/octet-stream";
}

const evs__ui_file *evs__ui_find(const char *name) {
    for (size_t i = 0; i < evs__ui_nfiles; i++)
        if (strcmp(evs__ui_files[i].name, name) == 0) return &evs__ui_files[i];
    return NULL;
}

/* The If-None-Match header names this ETag (or is "*"). */
static int etag_matches(const char *inm, const char *etag) {
    if (!inm) return 0;
    size_t n = strlen(etag);
    for (const char *p = inm; *p;) {
        while (*p == ' ' || *p == ',') p++;
        if (*p == '*') return 1;
        if (strncmp(p, "W/", 2) == 0) p += 2; /* weak comparison, as RFC 9110 asks for If-None-Match */
        if (strncmp(p, etag, n) == 0 && (p[n] == '\0' || p[n] == ',' || p[n] == ' ')) return 1;
        const char *c = strchr(p, ',');
        if (!c) break;
        p = c;
    }
    return 0;
}

static enum MHD_Result send_file(evs__req *rq, const evs__ui_file *f) {
    const char *inm = MHD_lookup_connection_value(rq->c, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
    int fresh = etag_matches(inm, f->etag);
    /* the bytes are static: libmicrohttpd sends them without a copy */
    struct MHD_Response *r = fresh ? MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT)
                                   : MHD_create_response_from_buffer(f->size, (void *)f->data,
                                                                     MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    if (!fresh) MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, evs__ui_content_type(f->name));
    MHD_add_response_header(r, MHD_HTTP_HEADER_ETAG, f->etag);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    if (strcmp(f->name, "index.html") == 0) {
        MHD_add_response_header(r, "Content-Security-Policy", UI_CSP);
        MHD_add_response_header(r, "X-Frame-Options", "DENY");
        MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    }
    return evs__respond_queue(rq, fresh ? HTTP_NOT_MODIFIED : EVS_HTTP_OK, r);
}

enum MHD_Result evs__route_ui_index(evs__req *rq) {
    const evs__ui_file *f = evs__ui_find("index.html");
    if (!f) return evs__respond_error(rq, EVS_HTTP_INTERNAL, NULL, "the console was built without index.html");
    return send_file(rq, f);
}

enum MHD_Result evs__route_ui_file(evs__req *rq) {
    /* the route is /ui/{file}: the segment after "/ui/", still percent-encoded */
    const char *seg = rq->url + 4;
    const char *q = strchr(seg, '?');
    size_t n = q ? (size_t)(q - seg) : strlen(seg);
    char name[128], why[96];
    long l = n < sizeof name ? evs__pct_decode(seg, n, name, sizeof name, why, sizeof why) : -1;
    const evs__ui_file *f = l > 0 ? evs__ui_find(name) : NULL;
    if (!f) return evs__respond_error(rq, EVS_HTTP_NOT_FOUND, NULL, "the console has no file %.200s", rq->url);
    return send_file(rq, f);
}
