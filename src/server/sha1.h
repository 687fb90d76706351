/*
 * sha1.h — SHA-1 and base64 for the WebSocket handshake (ws.c).
 */
#ifndef EVS_SHA1_H
#define EVS_SHA1_H

#include <stddef.h>
#include <stdint.h>

/* SHA-1 of p[0..n). */
void evs__sha1(const void *p, size_t n, uint8_t out[20]);
/* Standard base64 with padding into out (4 * ceil(n / 3) + 1 bytes). */
void evs__base64(const uint8_t *p, size_t n, char *out);

#endif
