/*
 * num.c — strict decimal numbers from text, for every place that takes a
 * count or a position from outside: the server's query parameters and
 * headers, the CLI's options.  Digits only: a sign, spaces, a fraction or
 * an overflow is refused, never clamped, so each caller can say precisely
 * what was wrong.
 */
#include <stdlib.h>
#include <string.h>

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

int evs__parse_duration_ns(const char *s, int64_t *out) {
    if (!s || !*s) return -1;
    if (s[0] == '-') return -2;
    size_t n = 0;
    while (s[n] >= '0' && s[n] <= '9') n++;
    if (n == 0 || n > 12) return n ? -3 : -1;
    char digits[16];
    memcpy(digits, s, n);
    digits[n] = '\0';
    uint64_t v;
    if (evs__parse_u64(digits, 999999999999ull, &v)) return -1;
    static const struct {
        const char *unit;
        int64_t ns;
    } units[] = {{"", 1000000000ll}, {"ms", 1000000ll}, {"s", 1000000000ll}, {"m", 60000000000ll},
                 {"h", 3600000000000ll}, {"d", 86400000000000ll}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcmp(s + n, units[i].unit) == 0) {
            if (v > (uint64_t)(INT64_MAX / units[i].ns)) return -3;
            *out = (int64_t)v * units[i].ns;
            return 0;
        }
    return -1;
}

int evs__parse_rate_mb(const char *s, uint64_t *bytes_per_sec) {
    if (!s) return -1;
    const char *p = s;
    size_t whole = 0, frac = 0;
    while (*p >= '0' && *p <= '9') p++, whole++;
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++) frac++;
    if (!whole || *p || (p[-1] == '.' && !frac)) return -1;
    double mb = strtod(s, NULL); /* only digits and one point reach it */
    if (!(mb > 0) || mb > 1e6) return -1;
    uint64_t b = (uint64_t)(mb * 1e6);
    *bytes_per_sec = b ? b : 1;
    return 0;
}
