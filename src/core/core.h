/*
 * core.h — internal basics shared by every subsystem: error reporting with
 * context, CRC32C, little-endian helpers, UUIDs and clocks.
 *
 * Errors: a failing function records a message for the calling thread with
 * evs__err(code, fmt, ...) and returns the code, so the usual pattern is
 *     if (bad) return evs__err(EVS_EINVAL, "stream name is empty");
 * The message is what evs_errmsg() returns; it should say what and where.
 * Codes from the OS are wrapped as -errno (evs__err_errno).
 */
#ifndef EVS_CORE_H
#define EVS_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "evstore.h"

#if defined(__GNUC__)
#define EVS_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define EVS_LIKELY(x) __builtin_expect(!!(x), 1)
#define EVS_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define EVS_PRINTF(a, b)
#define EVS_LIKELY(x) (x)
#define EVS_UNLIKELY(x) (x)
#endif

/* Record a message for code in this thread and return code. */
int evs__err(int code, const char *fmt, ...) EVS_PRINTF(2, 3);
/* As evs__err, appending ": <strerror(-neg_errno)>"; returns neg_errno mapped: EIO-like
   errors stay -errno so evs_strerror describes them. */
int evs__err_errno(int neg_errno, const char *fmt, ...) EVS_PRINTF(2, 3);
/* Prefix the current message with context ("segment 3: " + old message). */
int evs__err_prefix(int code, const char *fmt, ...) EVS_PRINTF(2, 3);
/* Clear the thread's message (on success paths that report it). */
void evs__err_clear(void);

/* CRC32C (Castagnoli), hardware-accelerated where the CPU has SSE4.2. */
uint32_t evs__crc32c(uint32_t crc, const void *buf, size_t len);

/* Little-endian loads and stores (the on-disk byte order). */
static inline void evs__put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static inline void evs__put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void evs__put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static inline uint16_t evs__get16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline uint32_t evs__get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t evs__get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
/* Big-endian 64-bit, for LMDB keys that must sort numerically. */
static inline void evs__put64be(uint8_t *p, uint64_t v) {
    for (int i = 7; i >= 0; i--) { p[i] = (uint8_t)v; v >>= 8; }
}
static inline uint64_t evs__get64be(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
    return v;
}

/* Monotonic clock in ns (for timeouts and latency). */
int64_t evs__mono_ns(void);
/*
 * The UTC date and time of day (proleptic Gregorian) of seconds since the
 * epoch: the one calendar conversion, used by the time text and by the
 * event renderer.
 */
typedef struct evs__civil {
    int64_t year;
    unsigned month, day, hour, minute, second;
} evs__civil;
void evs__civil_from_secs(int64_t secs, evs__civil *c);
/* Cryptographically random bytes (getrandom); falls back to a seeded PRNG. */
void evs__random(void *buf, size_t n);

/*
 * Strict unsigned decimal of at most max: 0 with *out; -1 empty or not a
 * number, -2 negative (a leading '-'), -3 too large.  *out is left alone on
 * failure.
 */
int evs__parse_u64(const char *s, uint64_t max, uint64_t *out);
/*
 * A duration: whole digits and a unit, ms, s, m, h or d ("250ms", "30s",
 * "5m"); digits alone are seconds.  0 with *out in ns; -1 not a duration,
 * -2 negative, -3 too large.  *out is left alone on failure.
 */
int evs__parse_duration_ns(const char *s, int64_t *out);
/*
 * A rate in MB/s (10^6 bytes): digits with an optional fraction ("20",
 * "2.5"), above 0 and at most 1,000,000; no sign, exponent, hex or spaces.
 * 0 with *bytes_per_sec (at least 1); -1 otherwise, *bytes_per_sec alone.
 */
int evs__parse_rate_mb(const char *s, uint64_t *bytes_per_sec);

/*
 * Validate UTF-8 (RFC 3629: no overlongs, no surrogates, <= U+10FFFF).
 * Returns 1 if valid.  With *bad_at set to the offset of the first bad byte.
 */
int evs__utf8_valid(const char *s, size_t n, size_t *bad_at);

#endif
