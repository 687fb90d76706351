/*
 * fuzz_time.c — fuzz target for evs_time_parse and evs_time_format: the
 * times of the since/until filters (query parameters, the CLI's --since and
 * --until) and of every event rendered as JSON.
 *
 * The input is text for evs_time_parse.  Invariants:
 *   - a refusal is EVS_EINVAL with a message that quotes the text;
 *   - an accepted all-digit text is that count of ns (compared with an
 *     independent strtoll);
 *   - an accepted RFC 3339 text names the same instant glibc's timegm()
 *     computes from its fields (the fraction and the offset applied by
 *     hand), so the calendar arithmetic is checked against another one;
 *   - format(parse(text)) is canonical RFC 3339, its fields agree with
 *     gmtime_r, and it parses back to the same value;
 *   - a text already in canonical form ("YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ",
 *     seconds below 60) formats back to itself byte for byte.
 * The first 8 bytes, read as an int64 number of ns, also go the other way:
 * format, check against gmtime_r, parse, same value (for every value whose
 * whole seconds parse can return, 1677..2262).
 */
#define FUZZ_NAME "fuzz_time"
#include "fuzz_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"

/* The whole seconds evs_time_parse can return without overflow (1677..2262). */
#define MIN_NS (-9223372035LL * 1000000000LL)
#define MAX_NS (9223372035LL * 1000000000LL + 999999999LL)

static int two(const char *s) { return (s[0] - '0') * 10 + (s[1] - '0'); }

/* The formatted text of ns agrees with gmtime_r and parses back to ns. */
static void check_format(int64_t ns) {
    char buf[40];
    size_t n = evs_time_format(ns, buf);
    FUZZ_ASSERT(n == 30 && buf[4] == '-' && buf[7] == '-' && buf[10] == 'T' && buf[13] == ':' && buf[16] == ':' &&
                    buf[19] == '.' && buf[29] == 'Z',
                "format(%lld) = \"%s\" is not canonical", (long long)ns, buf);
    int64_t secs = ns / 1000000000, frac = ns % 1000000000;
    if (frac < 0) {
        frac += 1000000000;
        secs--;
    }
    time_t tt = (time_t)secs;
    struct tm tm;
    FUZZ_ASSERT(gmtime_r(&tt, &tm) != NULL, "gmtime_r(%lld)", (long long)secs);
    FUZZ_ASSERT(atoi(buf) == tm.tm_year + 1900 && two(buf + 5) == tm.tm_mon + 1 && two(buf + 8) == tm.tm_mday &&
                    two(buf + 11) == tm.tm_hour && two(buf + 14) == tm.tm_min && two(buf + 17) == tm.tm_sec &&
                    atol(buf + 20) == frac,
                "format(%lld) = \"%s\", gmtime says %04d-%02d-%02dT%02d:%02d:%02d", (long long)ns, buf,
                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    int64_t back;
    FUZZ_ASSERT(evs_time_parse(buf, n, &back) == EVS_OK, "\"%s\" does not parse back: %s", buf, evs_errmsg());
    FUZZ_ASSERT(back == ns, "\"%s\" parses to %lld, not %lld", buf, (long long)back, (long long)ns);
}

/* The instant an accepted RFC 3339 text names, computed with timegm. */
static int64_t oracle(const char *s, size_t n) {
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = atoi(s) - 1900; /* 4 digits then '-' */
    tm.tm_mon = two(s + 5) - 1;
    tm.tm_mday = two(s + 8);
    int64_t frac = 0, off = 0;
    if (n > 10) {
        tm.tm_hour = two(s + 11);
        tm.tm_min = two(s + 14);
        tm.tm_sec = two(s + 17);
        if (tm.tm_sec == 60) tm.tm_sec = 59; /* documented: a leap second is clamped */
        size_t p = 19;
        if (s[p] == '.') {
            int nd = 0;
            for (p++; p < n && s[p] >= '0' && s[p] <= '9'; p++)
                if (nd < 9) {
                    frac = frac * 10 + (s[p] - '0');
                    nd++;
                }
            for (; nd < 9; nd++) frac *= 10;
        }
        if (s[p] == '+' || s[p] == '-') off = (int64_t)(two(s + p + 1) * 3600 + two(s + p + 4) * 60) * (s[p] == '-' ? -1 : 1);
    }
    int64_t secs = (int64_t)timegm(&tm) - off;
    return secs * 1000000000 + frac;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *s = (const char *)data;
    int64_t ns = 0;
    int rc = evs_time_parse(s, size, &ns);
    if (rc != EVS_OK) {
        FUZZ_ASSERT(rc == EVS_EINVAL, "rc %d", rc);
        FUZZ_ASSERT(strstr(evs_errmsg(), "time") != NULL, "message \"%s\" does not say what was wrong", evs_errmsg());
    } else {
        size_t digits = 0;
        while (digits < size && s[digits] >= '0' && s[digits] <= '9') digits++;
        if (digits == size) {
            char tmp[32];
            FUZZ_ASSERT(size < sizeof tmp, "%zu digits accepted", size);
            memcpy(tmp, s, size);
            tmp[size] = 0;
            FUZZ_ASSERT(ns == strtoll(tmp, NULL, 10) && ns >= 0, "\"%s\" parsed as %lld", tmp, (long long)ns);
        } else {
            /* any number of fraction digits is RFC 3339 (the tenth on are ignored) */
            FUZZ_ASSERT(size >= 10, "accepted %zu bytes of RFC 3339", size);
            char *tmp = malloc(size + 1);
            memcpy(tmp, s, size);
            tmp[size] = 0;
            int64_t want = oracle(tmp, size);
            FUZZ_ASSERT(ns == want, "\"%s\" parsed as %lld, timegm says %lld", tmp, (long long)ns, (long long)want);
            /* canonical text formats back to itself */
            int canonical = size == 30 && s[10] == 'T' && s[19] == '.' && s[29] == 'Z' && two(s + 17) < 60;
            if (canonical) {
                char buf[40];
                size_t n = evs_time_format(ns, buf);
                FUZZ_ASSERT(n == size && memcmp(buf, s, n) == 0, "\"%s\" formats as \"%s\"", tmp, buf);
            }
            free(tmp);
        }
        if (ns >= MIN_NS && ns <= MAX_NS) check_format(ns);
    }
    if (size >= 8) {
        int64_t v;
        memcpy(&v, data, 8);
        /* fold into the writable range, keeping the low digits the fuzzer chose */
        if (v < MIN_NS || v > MAX_NS) v = (int64_t)((uint64_t)MIN_NS + (uint64_t)v % ((uint64_t)MAX_NS - (uint64_t)MIN_NS + 1));
        check_format(v);
    }
    return 0;
}
