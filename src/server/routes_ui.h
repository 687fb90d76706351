/*
 * routes_ui.h — the web console's files (routes_ui.c): GET / and /ui/ give
 * the console's page, GET /ui/{file} one of its files.  The files are
 * compiled into the program from ui/ by cmake/embed_ui.cmake, which
 * defines evs__ui_files; nothing is read from disk at run time.
 */
#ifndef EVS_ROUTES_UI_H
#define EVS_ROUTES_UI_H

#include <stddef.h>

#include "server/respond.h"

/* One embedded file: static bytes (NUL-terminated past size), its ETag in quotes. */
typedef struct evs__ui_file {
    const char *name;
    const unsigned char *data;
    size_t size;
    const char *etag;
} evs__ui_file;

extern const evs__ui_file evs__ui_files[];
extern const size_t evs__ui_nfiles;

/* The Content-Type of a file name, by its extension (application/octet-stream when unknown). */
const char *evs__ui_content_type(const char *name);
/* The embedded file of that name (an exact, decoded file name), or NULL. */
const evs__ui_file *evs__ui_find(const char *name);

/* GET / , /ui, /ui/: index.html.  GET /ui/{file}: that file, 404 when there is none. */
enum MHD_Result evs__route_ui_index(evs__req *rq);
enum MHD_Result evs__route_ui_file(evs__req *rq);

#endif
