/*
 * util.c — small pieces the server routes share: strict percent-decoding of path segments and query values, strict
 * numbers, SHA-1/base64 for the WebSocket handshake, and the access log.
 *
 * Why our own percent-decoder: libmicrohttpd decodes the path before the
 * access handler sees it, which would turn "/streams/a%2Fb" into
 * "/streams/a/b" and make a stream named "a/b" unreachable (or reachable as
 * stream "a", position "b").  The server installs a no-op unescape callback
 * and splits the raw path on '/' first, then decodes each segment here,
 * where a decoded NUL or invalid UTF-8 is refused instead of passed on.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "server/srv.h"

/* ------------------------------------------------------------------ input */

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

long evs__pct_decode(const char *in, size_t n, char *out, size_t cap, char *why, size_t whycap) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)in[i];
        if (ch == '%') {
            int hi = i + 1 < n ? hexval(in[i + 1]) : -1;
            int lo = i + 2 < n ? hexval(in[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                snprintf(why, whycap, "malformed percent-escape at byte %zu", i + 1);
                return -1;
            }
            ch = (unsigned char)(hi * 16 + lo);
            i += 2;
        }
        if (ch == 0) {
            snprintf(why, whycap, "contains a NUL byte");
            return -1;
        }
        if (o + 1 >= cap) {
            snprintf(why, whycap, "is longer than %zu bytes", cap - 1);
            return -1;
        }
        out[o++] = (char)ch;
    }
    out[o] = '\0';
    size_t bad;
    if (!evs__utf8_valid(out, o, &bad)) {
        snprintf(why, whycap, "is not valid UTF-8 (decoded byte %zu)", bad + 1);
        return -1;
    }
    return (long)o;
}

/* ------------------------------------------------------------------ SHA-1 */

/* FIPS 180-4, section 6.1: 80 rounds over 512-bit blocks, big-endian words. */
static uint32_t rol32(uint32_t x, unsigned k) { return (x << k) | (x >> (32 - k)); }

static void sha1_block(uint32_t h[5], const uint8_t blk[64]) {
    uint32_t w[80];
    for (int t = 0; t < 16; t++)
        w[t] = (uint32_t)blk[4 * t] << 24 | (uint32_t)blk[4 * t + 1] << 16 |
               (uint32_t)blk[4 * t + 2] << 8 | blk[4 * t + 3];
    for (int t = 16; t < 80; t++) w[t] = rol32(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int t = 0; t < 80; t++) {
        uint32_t f, k;
        if (t < 20) f = (b & c) | (~b & d), k = 0x5a827999u;
        else if (t < 40) f = b ^ c ^ d, k = 0x6ed9eba1u;
        else if (t < 60) f = (b & c) | (b & d) | (c & d), k = 0x8f1bbcdcu;
        else f = b ^ c ^ d, k = 0xca62c1d6u;
        uint32_t tmp = rol32(a, 5) + f + e + k + w[t];
        e = d;
        d = c;
        c = rol32(b, 30);
        b = a;
        a = tmp;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
}

void evs__sha1(const void *p, size_t n, uint8_t out[20]) {
    uint32_t h[5] = {0x67452301u, 0xefcdab89u, 0x98badcfeu, 0x10325476u, 0xc3d2e1f0u};
    const uint8_t *in = p;
    size_t full = n / 64 * 64;
    for (size_t i = 0; i < full; i += 64) sha1_block(h, in + i);
    /* the tail, a 0x80 marker, zero padding and the bit length */
    uint8_t last[128] = {0};
    size_t rem = n - full;
    memcpy(last, in + full, rem);
    last[rem] = 0x80;
    size_t tot = rem + 9 <= 64 ? 64 : 128;
    uint64_t bits = (uint64_t)n * 8;
    for (int i = 0; i < 8; i++) last[tot - 1 - i] = (uint8_t)(bits >> (8 * i));
    sha1_block(h, last);
    if (tot == 128) sha1_block(h, last + 64);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = (uint8_t)(h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(h[i] >> 8);
        out[4 * i + 3] = (uint8_t)h[i];
    }
}

void evs__base64(const uint8_t *p, size_t n, char *out) {
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n) v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n) v |= p[i + 2];
        out[o++] = al[(v >> 18) & 63];
        out[o++] = al[(v >> 12) & 63];
        out[o++] = i + 1 < n ? al[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? al[v & 63] : '=';
    }
    out[o] = '\0';
}

/* ------------------------------------------------------------ access log */

typedef struct reqlog {
    struct MHD_Connection *c;
    const char *method, *url;
    int64_t t0;
} reqlog;

static _Thread_local reqlog cur_req;

void evs__reqlog_enter(struct MHD_Connection *c, const char *method, const char *url, int64_t t0) {
    cur_req = (reqlog){c, method, url, t0};
}

void evs__reqlog_leave(void) { cur_req = (reqlog){0}; }

void evs__reqlog_write(evs__srv *srv, unsigned status) {
    const reqlog *r = &cur_req;
    if (!r->c) return; /* not inside a request (cannot happen today) */
    char addr[INET6_ADDRSTRLEN + 8] = "-";
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci && ci->client_addr && ci->client_addr->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ci->client_addr;
        char ip[INET_ADDRSTRLEN];
        if (inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip))
            snprintf(addr, sizeof addr, "%s:%u", ip, (unsigned)ntohs(in->sin_port));
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    double ms = (double)(evs__mono_ns() - r->t0) / 1e6;
    /* the path is printed as received (still percent-encoded): no control bytes reach the log */
    fprintf(srv->access_log, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s %s %u %.3fms\n", tm.tm_year + 1900,
            tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, addr,
            r->method ? r->method : "-", r->url ? r->url : "-", status, ms);
}
