/*
 * clock.c — clocks, randomness and time text.
 *
 * Event times are ns since the Unix epoch in UTC.  The text form is RFC 3339
 * with nanoseconds and a 'Z', which sorts as text in time order; parsing
 * also accepts fewer fraction digits, numeric offsets and a bare integer of
 * ns so that command-line filters can take either.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/random.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"

int64_t evs_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t evs__mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * getrandom costs a system call; event ids need 10 random bytes each, so a
 * per-thread pool is refilled 512 bytes at a time.  A forked child must
 * never hand out bytes its parent also holds (two processes would generate
 * the same ids): a fork handler bumps a generation that every pool checks,
 * which costs no system call per id.
 */
static void random_fill(uint8_t *p, size_t n) {
    while (n > 0) {
        ssize_t r = getrandom(p, n, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            break;
        }
        p += r;
        n -= (size_t)r;
    }
    if (n > 0) { /* no getrandom: xorshift seeded from clocks and the pid */
        static _Thread_local uint64_t x;
        if (!x) x = (uint64_t)evs__mono_ns() ^ ((uint64_t)evs_now_ns() << 17) ^ (uint64_t)getpid();
        while (n--) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *p++ = (uint8_t)x;
        }
    }
}

/* Bumped in every child after fork(2): a pool filled before it is stale. */
static _Atomic unsigned evs_fork_gen;
static pthread_once_t evs_atfork_once = PTHREAD_ONCE_INIT;
static void on_fork_child(void) { atomic_fetch_add(&evs_fork_gen, 1); }
static void register_atfork(void) { pthread_atfork(NULL, NULL, on_fork_child); }

void evs__random(void *buf, size_t n) {
    static _Thread_local uint8_t pool[512];
    static _Thread_local size_t avail;
    static _Thread_local unsigned gen;
    uint8_t *p = buf;
    if (n > sizeof pool / 4) {
        random_fill(p, n);
        return;
    }
    if (EVS_UNLIKELY(avail == 0)) pthread_once(&evs_atfork_once, register_atfork);
    unsigned g = atomic_load_explicit(&evs_fork_gen, memory_order_relaxed);
    if (gen != g) {
        gen = g;
        avail = 0;
    }
    if (avail < n) {
        random_fill(pool, sizeof pool);
        avail = sizeof pool;
    }
    memcpy(p, pool + sizeof pool - avail, n);
    memset(pool + sizeof pool - avail, 0, n);
    avail -= n;
}

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

void evs__civil_from_secs(int64_t secs, evs__civil *c) {
    int64_t days = secs / 86400, rem = secs % 86400;
    if (rem < 0) {
        rem += 86400;
        days -= 1;
    }
    /* civil_from_days: eras of 400 years from 0000-03-01 */
    int64_t z = days + 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    c->day = doy - (153 * mp + 2) / 5 + 1;
    c->month = mp < 10 ? mp + 3 : mp - 9;
    c->year = (int64_t)yoe + era * 400 + (c->month <= 2);
    c->hour = (unsigned)(rem / 3600);
    c->minute = (unsigned)(rem % 3600 / 60);
    c->second = (unsigned)(rem % 60);
}

size_t evs_time_format(int64_t ns, char buf[40]) {
    int64_t secs = ns / 1000000000, frac = ns % 1000000000;
    if (frac < 0) {
        frac += 1000000000;
        secs -= 1;
    }
    evs__civil c;
    evs__civil_from_secs(secs, &c);
    int n = snprintf(buf, 40, "%04lld-%02u-%02uT%02u:%02u:%02u.%09lldZ", (long long)c.year, c.month, c.day, c.hour,
                     c.minute, c.second, (long long)frac);
    return n < 0 ? 0 : (size_t)n;
}

static int digits(const char *s, size_t n, size_t at, size_t count, unsigned *out) {
    unsigned v = 0;
    if (at + count > n) return -1;
    for (size_t i = 0; i < count; i++) {
        char c = s[at + i];
        if (c < '0' || c > '9') return -1;
        v = v * 10 + (unsigned)(c - '0');
    }
    *out = v;
    return 0;
}

int evs_time_parse(const char *s, size_t n, int64_t *ns_out) {
    if (!s || n == 0) return evs__err(EVS_EINVAL, "empty time");
    /* a bare integer: ns since the epoch */
    size_t i = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    if (i == n) {
        if (n > 19) return evs__err(EVS_EINVAL, "time \"%.*s\": too large", (int)n, s);
        int64_t v = 0;
        for (size_t k = 0; k < n; k++) {
            int dgt = s[k] - '0';
            if (v > (INT64_MAX - dgt) / 10) return evs__err(EVS_EINVAL, "time \"%.*s\": too large", (int)n, s);
            v = v * 10 + dgt;
        }
        *ns_out = v;
        return EVS_OK;
    }
    unsigned Y, M, D, h = 0, mi = 0, sec = 0;
    size_t p = 0;
    if (digits(s, n, 0, 4, &Y) || n < 10 || s[4] != '-' || digits(s, n, 5, 2, &M) || s[7] != '-' ||
        digits(s, n, 8, 2, &D))
        goto bad;
    p = 10;
    int64_t frac = 0, off = 0;
    if (p < n) {
        if (s[p] != 'T' && s[p] != 't' && s[p] != ' ') goto bad;
        if (digits(s, n, p + 1, 2, &h) || p + 3 >= n || s[p + 3] != ':' || digits(s, n, p + 4, 2, &mi) ||
            p + 6 >= n || s[p + 6] != ':' || digits(s, n, p + 7, 2, &sec))
            goto bad;
        p += 9;
        if (p < n && s[p] == '.') {
            p++;
            int nd = 0;
            while (p < n && s[p] >= '0' && s[p] <= '9') {
                if (nd < 9) {
                    frac = frac * 10 + (s[p] - '0');
                    nd++;
                }
                p++;
            }
            if (nd == 0) goto bad;
            for (; nd < 9; nd++) frac *= 10;
        }
        if (p >= n) goto bad; /* a time of day needs a zone */
        if (s[p] == 'Z' || s[p] == 'z') {
            p++;
        } else if (s[p] == '+' || s[p] == '-') {
            unsigned oh, om;
            if (digits(s, n, p + 1, 2, &oh) || p + 3 >= n || s[p + 3] != ':' || digits(s, n, p + 4, 2, &om) ||
                oh > 23 || om > 59)
                goto bad;
            off = (int64_t)(oh * 3600 + om * 60) * (s[p] == '-' ? -1 : 1);
            p += 6;
        } else {
            goto bad;
        }
        if (p != n) goto bad;
    }
    static const unsigned mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (M < 1 || M > 12 || D < 1 || D > mdays[M - 1] || h > 23 || mi > 59 || sec > 60) goto bad;
    if (M == 2 && D == 29 && !((Y % 4 == 0 && Y % 100 != 0) || Y % 400 == 0)) goto bad;
    if (sec == 60) sec = 59; /* leap second: clamp */
    int64_t days = days_from_civil(Y, M, D);
    int64_t secs = days * 86400 + h * 3600 + mi * 60 + sec - off;
    if (secs > INT64_MAX / 1000000000 - 1 || secs < INT64_MIN / 1000000000 + 1) goto bad;
    *ns_out = secs * 1000000000 + frac;
    return EVS_OK;
bad:
    return evs__err(EVS_EINVAL,
                    "invalid time \"%.*s\": expected RFC 3339 like 2026-11-22T05:40:48Z or ns since the epoch",
                    (int)(n > 64 ? 64 : n), s);
}
