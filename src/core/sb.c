/*
 * sb.c — the growable byte buffer of sb.h.
 *
 * Capacity doubles from 1 KiB, so n adds cost O(n) copies in total.  JSON
 * strings, times and events are written straight into the spare capacity
 * by the core renderers (they report the size they need, like snprintf),
 * so nothing is rendered into a temporary first.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/event_json.h"
#include "core/json.h"
#include "core/sb.h"

int evs__sb_reserve(evs__sb *b, size_t more) {
    if (b->oom) return -1;
    if (more > SIZE_MAX / 4 || b->len > SIZE_MAX / 4) { /* no doubling could reach it */
        b->oom = 1;
        return -1;
    }
    if (b->len + more + 1 <= b->cap) return 0;
    size_t ncap = b->cap ? b->cap : 1024;
    while (ncap < b->len + more + 1) ncap *= 2;
    char *np = realloc(b->p, ncap);
    if (!np) {
        b->oom = 1;
        return -1;
    }
    b->p = np;
    b->cap = ncap;
    return 0;
}

void evs__sb_add(evs__sb *b, const void *p, size_t n) {
    if (evs__sb_reserve(b, n)) return;
    if (n) memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void evs__sb_adds(evs__sb *b, const char *s) { evs__sb_add(b, s, strlen(s)); }

void evs__sb_printf(evs__sb *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char tmp[256];
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = 1; /* the text cannot be produced: the result would be wrong */
        return;
    }
    if ((size_t)n < sizeof tmp) {
        evs__sb_add(b, tmp, (size_t)n);
        return;
    }
    if (evs__sb_reserve(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void evs__sb_json_str(evs__sb *b, const char *s, size_t n) {
    size_t need = evs__json_escape(s, n, NULL, 0);
    if (evs__sb_reserve(b, need)) return;
    evs__json_escape(s, n, b->p + b->len, need + 1);
    b->len += need;
    b->p[b->len] = '\0';
}

void evs__sb_json_time(evs__sb *b, int64_t ns) {
    if (!ns) {
        evs__sb_adds(b, "null");
        return;
    }
    char t[40];
    size_t n = evs_time_format(ns, t);
    evs__sb_add(b, "\"", 1);
    evs__sb_add(b, t, n);
    evs__sb_add(b, "\"", 1);
}

void evs__sb_event(evs__sb *b, const evs_event *ev) {
    /* Render straight into the spare capacity; only an event that does not
       fit is rendered twice (after growing the buffer to its length). */
    if (b->oom) return;
    size_t room = b->cap > b->len + 1 ? b->cap - b->len - 1 : 0;
    size_t need = evs__event_json_render(ev, room ? b->p + b->len : NULL, room);
    if (need > room) {
        if (evs__sb_reserve(b, need)) return;
        evs__event_json_render(ev, b->p + b->len, need);
    }
    b->len += need;
    b->p[b->len] = '\0';
}

char *evs__sb_take(evs__sb *b, size_t *len) {
    if (b->oom) {
        evs__sb_free(b);
        return NULL;
    }
    if (!b->p) evs__sb_add(b, "", 0);
    if (b->oom) { /* the first allocation failed */
        evs__sb_free(b);
        return NULL;
    }
    char *p = b->p;
    if (len) *len = b->len;
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}

void evs__sb_free(evs__sb *b) {
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
    b->oom = 0;
}
