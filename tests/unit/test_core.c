/*
 * test_core.c — the basics under everything: CRC32C (check value, hardware
 * path against the table path, incremental use), UUIDv7 (layout, order,
 * text form), times (RFC 3339 both ways, bad input), UTF-8 validation and
 * the error table.
 */
#include "core/core.h"
#include "testutil.h"

uint32_t evs__crc32c_sw(uint32_t crc, const void *buf, size_t len);

static void test_crc(void) {
    CHECK_INT(evs__crc32c(0, "123456789", 9), 0xE3069283u);
    CHECK_INT(evs__crc32c(0, "", 0), 0);
    static uint8_t big[3 * 4096 * 3 + 77];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof big; i++) {
        x = x * 1103515245u + 12345u;
        big[i] = (uint8_t)(x >> 16);
    }
    int mismatches = 0;
    for (size_t n = 0; n < sizeof big; n += 331)
        for (size_t off = 0; off < 8; off += 3)
            if (n + off <= sizeof big && evs__crc32c(0, big + off, n) != evs__crc32c_sw(0, big + off, n)) mismatches++;
    CHECK_INT(mismatches, 0);
    uint32_t whole = evs__crc32c(0, big, sizeof big);
    uint32_t part = evs__crc32c(evs__crc32c(0, big, 5000), big + 5000, sizeof big - 5000);
    CHECK_INT(part, whole);
    big[100] ^= 1;
    CHECK(evs__crc32c(0, big, sizeof big) != whole);
}

static void test_uuid(void) {
    evs_uuid a, b, p;
    char t[37];
    evs_uuid_v7(&a);
    CHECK_INT(a.b[6] >> 4, 7);       /* version */
    CHECK_INT(a.b[8] >> 6, 2);       /* variant */
    int64_t ms = 0;
    for (int i = 0; i < 6; i++) ms = ms << 8 | a.b[i];
    CHECK(ms / 1000 - evs_now_ns() / 1000000000 <= 1 && evs_now_ns() / 1000000000 - ms / 1000 <= 1);
    int increasing = 1;
    for (int i = 0; i < 10000; i++) {
        evs_uuid_v7(&b);
        if (memcmp(&b, &a, 16) <= 0) increasing = 0;
        a = b;
    }
    CHECK(increasing);
    evs_uuid_format(&a, t);
    CHECK_INT(strlen(t), 36);
    CHECK_RC(evs_uuid_parse(t, 36, &p), EVS_OK);
    CHECK(memcmp(&a, &p, 16) == 0);
    CHECK_RC(evs_uuid_parse("0190C5E2-7B3A-7ABC-8DEF-0123456789AB", 36, &p), EVS_OK);
    evs_uuid_format(&p, t);
    CHECK_STR(t, "0190c5e2-7b3a-7abc-8def-0123456789ab");
    CHECK_RC(evs_uuid_parse("0190c5e2-7b3a-7abc-8def-0123456789a", 35, &p), EVS_EINVAL);
    CHECK_RC(evs_uuid_parse("0190c5e2x7b3a-7abc-8def-0123456789ab", 36, &p), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "'-'");
    CHECK_RC(evs_uuid_parse("0190c5e2-7b3a-7abc-8def-0123456789ag", 36, &p), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "character 36");
    memset(&p, 0, sizeof p);
    CHECK(evs_uuid_is_nil(&p));
}

static void test_time(void) {
    char b[40];
    int64_t t;
    CHECK_INT(evs_time_format(0, b), 30);
    CHECK_STR(b, "1970-01-01T00:00:00.000000000Z");
    CHECK_RC(evs_time_parse("2026-11-22T05:40:48.5Z", 22, &t), EVS_OK);
    evs_time_format(t, b);
    CHECK_STR(b, "2026-11-22T05:40:48.500000000Z");
    CHECK_RC(evs_time_parse("2026-11-22T06:40:48.5+01:00", 27, &t), EVS_OK);
    evs_time_format(t, b);
    CHECK_STR(b, "2026-11-22T05:40:48.500000000Z");
    CHECK_RC(evs_time_parse("2024-02-29", 10, &t), EVS_OK);
    evs_time_format(t, b);
    CHECK_STR(b, "2024-02-29T00:00:00.000000000Z");
    CHECK_RC(evs_time_parse("1700000000000000000", 19, &t), EVS_OK);
    CHECK_INT(t, 1700000000000000000LL);
    int64_t now = evs_now_ns();
    evs_time_format(now, b);
    CHECK_RC(evs_time_parse(b, strlen(b), &t), EVS_OK);
    CHECK_INT(t, now);
    const char *bad[] = {"2023-02-29", "2026-13-01", "2026-11-22T25:00:00Z", "2026-11-22T05:40:48", "yesterday",
                         "2026-11-22T05:40:48.Z", "99999999999999999999", "2026-11-22T05:40:48Zjunk", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_RC(evs_time_parse(bad[i], strlen(bad[i]), &t), EVS_EINVAL);
    }
}

static void test_utf8(void) {
    size_t at = 0;
    CHECK(evs__utf8_valid("plain", 5, &at));
    CHECK(evs__utf8_valid("\xc3\xa9t\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14, &at));
    CHECK(!evs__utf8_valid("ab\xc0\xafz", 5, &at)); /* overlong '/' */
    CHECK_INT(at, 2);
    CHECK(!evs__utf8_valid("\xed\xa0\x80", 3, &at)); /* surrogate */
    CHECK(!evs__utf8_valid("\xf4\x90\x80\x80", 4, &at)); /* > U+10FFFF */
    CHECK(!evs__utf8_valid("\xe2\x82", 2, &at)); /* truncated */
    CHECK(!evs__utf8_valid("\x80", 1, &at));
}

static void test_errors(void) {
    CHECK_STR(evs_errname(EVS_ECONFLICT), "ECONFLICT");
    CHECK_STR(evs_strerror(EVS_ECONFLICT), "concurrency conflict");
    CHECK_STR(evs_strerror(-2), "No such file or directory");
    CHECK_STR(evs_errname(-2), "ERRNO");
    CHECK_RC(evs__err(EVS_EIO, "segment %d: %s", 3, "bad"), EVS_EIO);
    CHECK_STR(evs_errmsg(), "segment 3: bad");
    CHECK_RC(evs__err_errno(-28, "writing %s", "x.seg"), -28);
    CHECK_STR(evs_errmsg(), "writing x.seg: No space left on device");
    evs__err_prefix(EVS_EIO, "open: ");
    CHECK_STR(evs_errmsg(), "open: writing x.seg: No space left on device");
}

int main(void) {
    test_crc();
    test_uuid();
    test_time();
    test_utf8();
    test_errors();
    return TEST_REPORT();
}
