/*
 * crc32c.c — CRC32C (Castagnoli polynomial 0x82F63B78), the checksum of every
 * log frame and segment header.
 *
 * CRC32C rather than zlib's CRC32 because x86-64 has an instruction for it
 * (SSE4.2 crc32), which keeps checksumming far below the cost of reading:
 * the $all read benchmark verifies every frame it returns.  Three
 * independent lanes hide the instruction's 3-cycle latency on long buffers;
 * the lanes are joined with a shift-by-zeros table.  Other CPUs use a
 * slicing-by-8 table.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/core.h"

#define POLY 0x82F63B78u

static uint32_t evs_crc_table[8][256];
/* evs_shift_table[k][b]: the CRC contribution of byte b followed by LANE bytes of zeros,
   used to combine three hardware lanes. */
#define LANE 1024
static uint32_t evs_shift_table[4][256];
static pthread_once_t evs_crc_once = PTHREAD_ONCE_INIT;

static uint32_t crc_sw_bytes(uint32_t crc, const uint8_t *p, size_t n) {
    while (n--) crc = evs_crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return crc;
}

/* Multiply crc by x^(8*len) mod P: advance the register over len zero bytes. */
static uint32_t crc_zeros_slow(uint32_t crc, size_t len) {
    while (len--) crc = evs_crc_table[0][crc & 0xff] ^ (crc >> 8);
    return crc;
}

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ POLY : c >> 1;
        evs_crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            evs_crc_table[t][i] = (evs_crc_table[t - 1][i] >> 8) ^ evs_crc_table[0][evs_crc_table[t - 1][i] & 0xff];
    for (int k = 0; k < 4; k++)
        for (uint32_t b = 0; b < 256; b++) evs_shift_table[k][b] = crc_zeros_slow(b << (8 * k), LANE);
}

static inline uint32_t crc_shift(uint32_t crc) {
    return evs_shift_table[0][crc & 0xff] ^ evs_shift_table[1][(crc >> 8) & 0xff] ^
           evs_shift_table[2][(crc >> 16) & 0xff] ^ evs_shift_table[3][crc >> 24];
}

static uint32_t crc_sw(uint32_t crc, const uint8_t *p, size_t n) {
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        v ^= crc;
        crc = evs_crc_table[7][v & 0xff] ^ evs_crc_table[6][(v >> 8) & 0xff] ^
              evs_crc_table[5][(v >> 16) & 0xff] ^ evs_crc_table[4][(v >> 24) & 0xff] ^
              evs_crc_table[3][(v >> 32) & 0xff] ^ evs_crc_table[2][(v >> 40) & 0xff] ^
              evs_crc_table[1][(v >> 48) & 0xff] ^ evs_crc_table[0][v >> 56];
        p += 8;
        n -= 8;
    }
    return crc_sw_bytes(crc, p, n);
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t crc, const uint8_t *p, size_t n) {
    uint64_t c0 = crc;
    while (n >= 3 * LANE) {
        uint64_t c1 = 0, c2 = 0;
        for (size_t i = 0; i < LANE; i += 8) {
            uint64_t a, b, d;
            memcpy(&a, p + i, 8);
            memcpy(&b, p + LANE + i, 8);
            memcpy(&d, p + 2 * LANE + i, 8);
            c0 = __builtin_ia32_crc32di(c0, a);
            c1 = __builtin_ia32_crc32di(c1, b);
            c2 = __builtin_ia32_crc32di(c2, d);
        }
        c0 = crc_shift((uint32_t)c0) ^ (uint32_t)c1;
        c0 = crc_shift((uint32_t)c0) ^ (uint32_t)c2;
        p += 3 * LANE;
        n -= 3 * LANE;
    }
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c0 = __builtin_ia32_crc32di(c0, v);
        p += 8;
        n -= 8;
    }
    uint32_t c = (uint32_t)c0;
    while (n--) c = __builtin_ia32_crc32qi(c, *p++);
    return c;
}
static int evs_have_hw;
static _Atomic int evs_crc_ready;
static void crc_init_all(void) {
    crc_init();
    __builtin_cpu_init();
    evs_have_hw = __builtin_cpu_supports("sse4.2");
    atomic_store_explicit(&evs_crc_ready, 1, memory_order_release);
}
#else
static _Atomic int evs_crc_ready;
static void crc_init_all(void) {
    crc_init();
    atomic_store_explicit(&evs_crc_ready, 1, memory_order_release);
}
#endif

uint32_t evs__crc32c(uint32_t crc, const void *buf, size_t len) {
    /* every frame read calls this: skip pthread_once once the tables exist */
    if (EVS_UNLIKELY(!atomic_load_explicit(&evs_crc_ready, memory_order_acquire)))
        pthread_once(&evs_crc_once, crc_init_all);
    crc = ~crc;
#if defined(__x86_64__) && defined(__GNUC__)
    if (evs_have_hw) return ~crc_hw(crc, buf, len);
#endif
    return ~crc_sw(crc, buf, len);
}

/* For tests: the portable path regardless of the CPU. */
uint32_t evs__crc32c_sw(uint32_t crc, const void *buf, size_t len);
uint32_t evs__crc32c_sw(uint32_t crc, const void *buf, size_t len) {
    pthread_once(&evs_crc_once, crc_init_all);
    return ~crc_sw(~crc, buf, len);
}
