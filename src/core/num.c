/*
 * num.c — strict decimal numbers from text, for every place that takes a
 * count or a position from outside: the server's query parameters and
 * headers, the CLI's options.  Digits only: a sign, spaces, a fraction or
 * an overflow is refused, never clamped, so each caller can say precisely
 * what was wrong.
 */
#include "core/core.h"

int evs__parse_u64(const char *s, uint64_t max, uint64_t *out) {
    if (!s || !*s) return -1;
    if (s[0] == '-') return -2;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') return -1;
        unsigned d = (unsigned)(*p - '0');
        if (d > max || v > (max - d) / 10) return -3;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}
