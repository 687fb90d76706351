/*
 * fuzz_master_key.c — fuzz target for evs_master_key_parse, the parser of
 * crypto-shredding's master key (a --master-key-file's content and the
 * EVSTORE_MASTER_KEY variable; include/evstore_crypt.h).
 *
 * Invariants:
 *   - accepted exactly when the text, with leading and trailing spaces,
 *     tabs, CR and LF removed, is 64 hexadecimal digits (an independent
 *     reading here decides);
 *   - an accepted key's bytes are those digits' values (checked against
 *     sscanf "%2hhx"), either case giving the same key;
 *   - a refusal is EVS_EINVAL with a message that says what a key must be
 *     or which character is wrong, and never contains the input's
 *     hexadecimal text (a key must not reach a log);
 *   - the output buffer is left untouched on refusal.
 */
#define FUZZ_NAME "fuzz_master_key"
#include "fuzz_util.h"

#include <ctype.h>

#include "evstore_crypt.h"

static int ws(int c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *s = (const char *)data;
    uint8_t key[32], want[32];
    memset(key, 0xA5, sizeof key);
    int rc = evs_master_key_parse(s, size, key);
    size_t a = 0, b = size;
    while (a < b && ws((unsigned char)s[a])) a++;
    while (b > a && ws((unsigned char)s[b - 1])) b--;
    int ok = b - a == 64;
    for (size_t i = a; ok && i < b; i++) ok = isxdigit((unsigned char)s[i]) != 0;
    if (!ok) {
        FUZZ_ASSERT(rc == EVS_EINVAL, "refusal rc %d", rc);
        const char *m = evs_errmsg();
        FUZZ_ASSERT(strstr(m, "master key") != NULL, "message \"%s\" does not say what was wrong", m);
        for (size_t i = 0; i < sizeof key; i++) FUZZ_ASSERT(key[i] == 0xA5, "key byte %zu written on refusal", i);
        /* no run of 8 input characters (a piece of a key) in the message */
        for (size_t i = a; i + 8 <= b; i++) {
            int hex = 1;
            for (size_t j = 0; j < 8 && hex; j++) hex = isxdigit((unsigned char)s[i + j]) != 0;
            if (hex) FUZZ_ASSERT(!memmem(m, strlen(m), s + i, 8), "message quotes the input: %s", m);
        }
        return 0;
    }
    FUZZ_ASSERT(rc == EVS_OK, "64 hex digits refused: %s", evs_errmsg());
    for (size_t i = 0; i < 32; i++) {
        char two[3] = {s[a + 2 * i], s[a + 2 * i + 1], 0};
        unsigned v;
        FUZZ_ASSERT(sscanf(two, "%2x", &v) == 1, "digits %s", two);
        want[i] = (uint8_t)v;
    }
    FUZZ_ASSERT(memcmp(key, want, 32) == 0, "key bytes differ from the digits");
    /* the other case gives the same key */
    char flip[64];
    for (size_t i = 0; i < 64; i++) {
        char c = s[a + i];
        flip[i] = (char)(isupper((unsigned char)c) ? tolower((unsigned char)c) : toupper((unsigned char)c));
    }
    uint8_t k2[32];
    FUZZ_ASSERT(evs_master_key_parse(flip, 64, k2) == EVS_OK && memcmp(k2, key, 32) == 0, "case changes the key");
    return 0;
}
