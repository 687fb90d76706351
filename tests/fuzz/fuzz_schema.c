/*
 * fuzz_schema.c — libFuzzer target for the JSON Schema subset
 * (src/schema/): the compiler, the ECMA-262 pattern translation, the
 * validator and the inclusion check behind compatibility.
 *
 * Input: SCHEMA_A 0x00 SCHEMA_B 0x00 DOCUMENT (missing parts are empty).
 * Besides "no crash, no out-of-bounds access, no leak" (ASan/UBSan), every
 * input is held to these properties, and any violation aborts:
 *
 *   1. compile either succeeds with a schema or fails with a message, the
 *      keyword and a pointer (never a silent NULL);
 *   2. validation answers only OK, EINVAL (with the keyword of the failing
 *      rule), ELIMIT (budget) or EJSON (document not JSON), and answers
 *      the same twice (it is a pure function);
 *   3. a compiled schema includes itself (reflexivity);
 *   4. soundness of inclusion: when includes(A, B) is claimed and the
 *      document is valid under B, it is valid under A — the property every
 *      compatibility verdict rests on.
 *
 * Seeds in tests/fuzz/corpus/schema/, e.g.
 *   {"type":"object","required":["a"]} 00 {"type":"object","required":["a","b"]} 00 {"a":1,"b":2}
 * Run: build-fuzz/fuzz_schema -max_len=2048 -timeout=10 tests/fuzz/corpus/schema
 * (a dictionary of the keywords helps: one "\"keyword\"" per line, -dict=FILE).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "evstore_schema.h"

#define FUZZ_ASSERT(cond, ...)                                                                                          \
    do {                                                                                                                \
        if (!(cond)) {                                                                                                  \
            fprintf(stderr, "fuzz_schema: %s failed: ", #cond);                                                         \
            fprintf(stderr, __VA_ARGS__);                                                                               \
            fputc('\n', stderr);                                                                                        \
            abort();                                                                                                    \
        }                                                                                                               \
    } while (0)

static evs_json_schema *compile(const char *p, size_t n) {
    evs_json_schema *js = NULL;
    evs_schema_violation v;
    int rc = evs_json_schema_compile(p, n, &js, &v);
    if (rc == EVS_OK) {
        FUZZ_ASSERT(js != NULL, "compile said OK without a schema");
        return js;
    }
    FUZZ_ASSERT(js == NULL, "compile failed (%d) but returned a schema", rc);
    FUZZ_ASSERT(rc == EVS_EINVAL || rc == EVS_EJSON || rc == EVS_ELIMIT || rc == EVS_ENOMEM, "compile returned %d", rc);
    FUZZ_ASSERT(v.message[0] != 0, "compile failed without a message");
    return NULL;
}

/* 1 valid, 0 invalid, -1 no verdict (budget, not JSON). */
static int verdict(const evs_json_schema *js, const char *doc, size_t n) {
    evs_schema_violation v;
    int rc = evs_json_schema_validate(js, doc, n, &v);
    FUZZ_ASSERT(rc == EVS_OK || rc == EVS_EINVAL || rc == EVS_ELIMIT || rc == EVS_EJSON || rc == EVS_ENOMEM,
                "validate returned %d", rc);
    if (rc == EVS_EINVAL) FUZZ_ASSERT(v.keyword[0] != 0, "an invalid document without the failing keyword");
    int again = evs_json_schema_validate(js, doc, n, NULL);
    FUZZ_ASSERT(again == rc, "validate answered %d, then %d", rc, again);
    return rc == EVS_OK ? 1 : rc == EVS_EINVAL ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *p = (const char *)data, *end = p + size;
    const char *a = p, *b = "", *doc = "";
    size_t na = size, nb = 0, nd = 0;
    const char *z = memchr(a, 0, size);
    if (z) {
        na = (size_t)(z - a);
        b = z + 1;
        nb = (size_t)(end - b);
        const char *z2 = memchr(b, 0, nb);
        if (z2) {
            nb = (size_t)(z2 - b);
            doc = z2 + 1;
            nd = (size_t)(end - doc);
        }
    }
    /* copies, so that ASan sees reads past each part */
    char *ca = malloc(na + 1), *cb = malloc(nb + 1), *cd = malloc(nd + 1);
    if (!ca || !cb || !cd) abort();
    memcpy(ca, a, na);
    memcpy(cb, b, nb);
    memcpy(cd, doc, nd);
    evs_json_schema *sa = compile(ca, na), *sb = nb ? compile(cb, nb) : NULL;
    if (sa) FUZZ_ASSERT(evs_json_schema_includes(sa, sa, NULL) == EVS_OK, "schema does not include itself: %s", evs_errmsg());
    if (sb) FUZZ_ASSERT(evs_json_schema_includes(sb, sb, NULL) == EVS_OK, "schema does not include itself: %s", evs_errmsg());
    int va = sa && nd ? verdict(sa, cd, nd) : -1;
    int vb = sb && nd ? verdict(sb, cd, nd) : -1;
    if (sa && sb && va >= 0 && vb >= 0) {
        evs_schema_violation why;
        if (evs_json_schema_includes(sa, sb, &why) == EVS_OK)
            FUZZ_ASSERT(!(vb == 1 && va == 0), "A was shown to include B, but the document is valid under B only");
        if (evs_json_schema_includes(sb, sa, &why) == EVS_OK)
            FUZZ_ASSERT(!(va == 1 && vb == 0), "B was shown to include A, but the document is valid under A only");
    }
    evs_json_schema_free(sa);
    evs_json_schema_free(sb);
    free(ca);
    free(cb);
    free(cd);
    return 0;
}
