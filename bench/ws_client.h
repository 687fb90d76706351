/*
 * ws_client.h — the few pieces of a WebSocket client that the server
 * benchmarks need (bench_ws_fanout.c, bench_ws_group.c): connect, the
 * upgrade handshake, masked text frames out, and an incremental frame
 * parser that keeps only the first WSC_PRE bytes of each payload.  Load
 * generators share the machine with the server, so they read frame headers
 * and a prefix, never whole payloads.  Header-only; benchmarks only.
 */
#ifndef EVS_BENCH_WS_CLIENT_H
#define EVS_BENCH_WS_CLIENT_H

#include <errno.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WSC_PRE 160                /* payload bytes kept per frame */

typedef struct wsc_parser {
    uint8_t hdr[14];
    size_t hdr_len, hdr_need;
    uint64_t left;                 /* payload bytes still to come in the current frame */
    uint8_t pre[WSC_PRE];
    size_t pre_len;
    int opcode;
} wsc_parser;

static inline double wsc_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline int wsc_connect(const char *host, const char *port) {
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, port, &hints, &res)) return -1;
    int fd = socket(res->ai_family, SOCK_STREAM, 0);
    if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen)) {
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

static inline int wsc_write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t r = write(fd, c, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

/* The upgrade on a blocking socket; the server sends nothing before the first request. */
static inline int wsc_handshake(int fd, const char *host) {
    char req[512], buf[2048];
    int n = snprintf(req, sizeof req,
                     "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                     host);
    if (wsc_write_all(fd, req, (size_t)n)) return -1;
    size_t len = 0;
    while (len < sizeof buf - 1) {
        ssize_t r = read(fd, buf + len, sizeof buf - 1 - len);
        if (r <= 0) return -1;
        len += (size_t)r;
        buf[len] = '\0';
        if (strstr(buf, "\r\n\r\n")) return strncmp(buf, "HTTP/1.1 101", 12) == 0 ? 0 : -1;
    }
    return -1;
}

/*
 * Frame msg[0..n) as a masked client text frame into out (room for n + 14);
 * the mask is zero, which RFC 6455 allows and which makes masking a no-op.
 * Returns the frame's length.
 */
static inline size_t wsc_frame(uint8_t *out, const char *msg, size_t n) {
    size_t h;
    out[0] = 0x81;
    if (n < 126) {
        out[1] = (uint8_t)(0x80 | n);
        h = 2;
    } else if (n <= 0xffff) {
        out[1] = 0x80 | 126;
        out[2] = (uint8_t)(n >> 8);
        out[3] = (uint8_t)n;
        h = 4;
    } else {
        out[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++) out[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
        h = 10;
    }
    memset(out + h, 0, 4);
    memcpy(out + h + 4, msg, n);
    return h + 4 + n;
}

static inline int wsc_send_text(int fd, const char *msg) {
    uint8_t f[512];
    size_t n = strlen(msg);
    if (n + 14 > sizeof f) return -1;
    return wsc_write_all(fd, f, wsc_frame(f, msg, n));
}

/*
 * Feed received bytes; on_frame(ctx, opcode, prefix, prefix_len) runs once
 * per complete frame with the first (at most WSC_PRE) bytes of its payload.
 */
static inline void wsc_feed(wsc_parser *c, const uint8_t *p, size_t n,
                            void (*on_frame)(void *ctx, int opcode, const uint8_t *pre, size_t len), void *ctx) {
    while (n) {
        if (c->left == 0 && c->hdr_need == 0) { /* start of a frame */
            c->hdr_len = 0;
            c->hdr_need = 2;
        }
        if (c->hdr_need) {
            while (n && c->hdr_len < c->hdr_need) {
                c->hdr[c->hdr_len++] = *p++;
                n--;
                if (c->hdr_len == 2) {
                    uint8_t l = c->hdr[1] & 0x7f;
                    c->hdr_need = 2 + (l == 126 ? 2 : l == 127 ? 8 : 0);
                }
            }
            if (c->hdr_len < c->hdr_need) return;
            uint64_t len = c->hdr[1] & 0x7f;
            if (len == 126) len = (uint64_t)c->hdr[2] << 8 | c->hdr[3];
            else if (len == 127) {
                len = 0;
                for (int i = 2; i < 10; i++) len = len << 8 | c->hdr[i];
            }
            c->opcode = c->hdr[0] & 0x0f;
            c->left = len;
            c->pre_len = 0;
            c->hdr_need = 0;
            if (len == 0) {
                on_frame(ctx, c->opcode, c->pre, 0);
                continue;
            }
        }
        size_t take = n < c->left ? n : (size_t)c->left;
        size_t keep = WSC_PRE - c->pre_len < take ? WSC_PRE - c->pre_len : take;
        memcpy(c->pre + c->pre_len, p, keep);
        c->pre_len += keep;
        p += take;
        n -= take;
        c->left -= take;
        if (c->left == 0) on_frame(ctx, c->opcode, c->pre, c->pre_len);
    }
}

#endif
