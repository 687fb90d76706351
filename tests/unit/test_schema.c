/*
 * test_schema.c — the JSON Schema subset (src/schema/): every keyword
 * valid and invalid, with the pointer, keyword and schema path of the
 * failure; bad schemas refused naming the keyword and its pointer; the
 * ECMA-262 -> POSIX pattern translation and what it refuses; the formats;
 * the inclusion rules behind compatibility, and their soundness checked on
 * the official suite's documents (when the suite is installed).
 */
#include <dirent.h>
#include <jansson.h>

#include "evstore_schema.h"
#include "schema/jschema.h"
#include "schema/regex.h"
#include "testutil.h"

static evs_json_schema *compile_ok(const char *text) {
    evs_json_schema *js = NULL;
    evs_schema_violation v;
    int rc = evs_json_schema_compile(text, strlen(text), &js, &v);
    if (rc) fprintf(stderr, "schema %s: %s\n", text, evs_errmsg());
    CHECK_RC(rc, EVS_OK);
    return js;
}

/* Valid? 1, 0 (with v filled). */
static int valid(const evs_json_schema *js, const char *doc, evs_schema_violation *v) {
    int rc = evs_json_schema_validate(js, doc, strlen(doc), v);
    if (rc != EVS_OK && rc != EVS_EINVAL) fprintf(stderr, "validate %s: %s\n", doc, evs_errmsg());
    return rc == EVS_OK;
}

/* doc fails with this pointer, keyword and schema path. */
#define FAILS(js, doc, ptr, kw, spath)                                                                                \
    do {                                                                                                               \
        evs_schema_violation v_;                                                                                       \
        int ok_ = valid(js, doc, &v_);                                                                                 \
        CHECK(!ok_);                                                                                                   \
        if (!ok_) {                                                                                                    \
            CHECK_STR(v_.pointer, ptr);                                                                                \
            CHECK_STR(v_.keyword, kw);                                                                                 \
            CHECK_STR(v_.schema_path, spath);                                                                          \
        }                                                                                                              \
    } while (0)

#define PASSES(js, doc)                                                                                                \
    do {                                                                                                               \
        evs_schema_violation v_;                                                                                       \
        int ok_ = valid(js, doc, &v_);                                                                                 \
        if (!ok_) fprintf(stderr, "%s:%d: %s refused: %s %s %s\n", __FILE__, __LINE__, doc, v_.pointer, v_.keyword,  \
                          v_.message);                                                                                 \
        CHECK(ok_);                                                                                                    \
    } while (0)

/* The schema is refused: rc, and the violation's pointer and keyword. */
static void refused(const char *text, int want_rc, const char *ptr, const char *kw, const char *msg_part) {
    evs_json_schema *js = NULL;
    evs_schema_violation v;
    int rc = evs_json_schema_compile(text, strlen(text), &js, &v);
    CHECK_RC(rc, want_rc);
    CHECK(js == NULL);
    if (rc == want_rc) {
        if (ptr) CHECK_STR(v.pointer, ptr);
        if (kw) CHECK_STR(v.keyword, kw);
        if (msg_part) CHECK_CONTAINS(v.message, msg_part);
        if (ptr) CHECK_CONTAINS(evs_errmsg(), ptr[0] ? ptr : "(root)");
    }
    evs_json_schema_free(js);
}

static void test_type(void) {
    evs_json_schema *js = compile_ok("{\"type\":\"integer\"}");
    PASSES(js, "1");
    PASSES(js, "1.0"); /* draft 6+: an integral number is an integer */
    PASSES(js, "-3e2");
    FAILS(js, "1.5", "", "type", "/type");
    FAILS(js, "\"1\"", "", "type", "/type");
    evs_json_schema_free(js);
    js = compile_ok("{\"type\":[\"string\",\"null\"]}");
    PASSES(js, "null");
    PASSES(js, "\"x\"");
    FAILS(js, "true", "", "type", "/type");
    evs_schema_violation v;
    valid(js, "{}", &v);
    CHECK_CONTAINS(v.message, "expected null or string, got object");
    evs_json_schema_free(js);
    js = compile_ok("{\"type\":\"number\"}");
    PASSES(js, "1");
    PASSES(js, "0.5");
    FAILS(js, "[]", "", "type", "/type");
    evs_json_schema_free(js);
    js = compile_ok("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"boolean\"}}}");
    PASSES(js, "{\"a\":false}");
    FAILS(js, "{\"a\":0}", "/a", "type", "/properties/a/type");
    evs_json_schema_free(js);
}

static void test_object(void) {
    evs_json_schema *js = compile_ok(
        "{\"type\":\"object\",\"required\":[\"id\",\"amount\"],\"additionalProperties\":false,"
        "\"properties\":{\"id\":{\"type\":\"string\",\"format\":\"uuid\"},\"amount\":{\"type\":\"number\",\"minimum\":0},"
        "\"lines\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"required\":[\"sku\"],"
        "\"properties\":{\"sku\":{\"type\":\"string\",\"minLength\":1}}}},\"a/b~c\":{\"const\":1}}}");
    PASSES(js, "{\"id\":\"0190a4e2-7b1c-7cc0-8000-000000000001\",\"amount\":5}");
    PASSES(js, "{\"id\":\"0190a4e2-7b1c-7cc0-8000-000000000001\",\"amount\":0,\"lines\":[{\"sku\":\"a\"}],\"a/b~c\":1}");
    FAILS(js, "{\"amount\":5}", "/id", "required", "/required");
    FAILS(js, "{\"id\":\"0190a4e2-7b1c-7cc0-8000-000000000001\"}", "/amount", "required", "/required");
    FAILS(js, "{\"id\":\"0190a4e2-7b1c-7cc0-8000-000000000001\",\"amount\":-5}", "/amount", "minimum",
          "/properties/amount/minimum");
    FAILS(js, "{\"id\":\"nope\",\"amount\":1}", "/id", "format", "/properties/id/format");
    FAILS(js, "{\"id\":\"0190a4e2-7b1c-7cc0-8000-000000000001\",\"amount\":1,\"extra\":true}", "/extra",
          "additionalProperties", "/additionalProperties");
    FAILS(js, "{\"id\":\"0190a4e2-7b1c-7cc0-8000-000000000001\",\"amount\":1,\"lines\":[{\"sku\":\"a\"},{\"sku\":\"\"}]}",
          "/lines/1/sku", "minLength", "/properties/lines/items/properties/sku/minLength");
    FAILS(js, "{\"id\":\"0190a4e2-7b1c-7cc0-8000-000000000001\",\"amount\":1,\"lines\":[{}]}", "/lines/0/sku",
          "required", "/properties/lines/items/required");
    /* pointer escaping of ~ and / in names */
    FAILS(js, "{\"id\":\"0190a4e2-7b1c-7cc0-8000-000000000001\",\"amount\":1,\"a/b~c\":2}", "/a~1b~0c", "const",
          "/properties/a~1b~0c/const");
    /* escaped keys in the document are decoded before they are looked up */
    PASSES(js, "{\"\\u0069d\":\"0190a4e2-7b1c-7cc0-8000-000000000001\",\"amount\":1}");
    evs_schema_violation v;
    CHECK(!valid(js, "{\"amount\":5}", &v));
    CHECK_CONTAINS(v.message, "required property \"id\" is missing");
    CHECK_CONTAINS(evs_errmsg(), "/id");
    evs_json_schema_free(js);

    /* additionalProperties as a schema; a required name without a property schema */
    js = compile_ok("{\"properties\":{\"a\":{}},\"required\":[\"b\"],\"additionalProperties\":{\"type\":\"integer\"}}");
    PASSES(js, "{\"b\":1,\"a\":\"x\"}");
    FAILS(js, "{\"b\":\"x\"}", "/b", "type", "/additionalProperties/type");
    FAILS(js, "{\"a\":1}", "/b", "required", "/required");
    PASSES(js, "[1]"); /* object keywords ignore other types */
    evs_json_schema_free(js);

    /* more than 64 required names */
    char big[8192];
    size_t w = (size_t)snprintf(big, sizeof big, "{\"required\":[");
    for (int i = 0; i < 70; i++) w += (size_t)snprintf(big + w, sizeof big - w, "%s\"k%d\"", i ? "," : "", i);
    snprintf(big + w, sizeof big - w, "]}");
    js = compile_ok(big);
    char doc[8192];
    w = (size_t)snprintf(doc, sizeof doc, "{");
    for (int i = 0; i < 70; i++)
        if (i != 66) w += (size_t)snprintf(doc + w, sizeof doc - w, "%s\"k%d\":1", w > 1 ? "," : "", i);
    snprintf(doc + w, sizeof doc - w, "}");
    FAILS(js, doc, "/k66", "required", "/required");
    evs_json_schema_free(js);
}

static void test_enum_const(void) {
    evs_json_schema *js = compile_ok("{\"enum\":[\"a\",1,null,{\"x\":[1,2]},[true]]}");
    PASSES(js, "\"a\"");
    PASSES(js, "1.0"); /* numbers compare by value */
    PASSES(js, "null");
    PASSES(js, "{ \"x\" : [1, 2.0] }");
    PASSES(js, "[true]");
    FAILS(js, "\"b\"", "", "enum", "/enum");
    FAILS(js, "{\"x\":[2,1]}", "", "enum", "/enum");
    FAILS(js, "{\"x\":[1,2],\"y\":1}", "", "enum", "/enum");
    FAILS(js, "[true,false]", "", "enum", "/enum");
    evs_json_schema_free(js);
    js = compile_ok("{\"properties\":{\"v\":{\"const\":\"caf\\u00e9\"}}}");
    PASSES(js, "{\"v\":\"caf\\u00e9\"}");
    PASSES(js, "{\"v\":\"café\"}");
    FAILS(js, "{\"v\":\"cafe\"}", "/v", "const", "/properties/v/const");
    evs_schema_violation v;
    valid(js, "{\"v\":1}", &v);
    CHECK_CONTAINS(v.message, "must be \"caf");
    evs_json_schema_free(js);
    js = compile_ok("{\"const\":9007199254740993}");
    PASSES(js, "9007199254740993");
    FAILS(js, "9007199254740992", "", "const", "/const"); /* integers compare exactly */
    evs_json_schema_free(js);
}

static void test_numbers(void) {
    evs_json_schema *js = compile_ok("{\"minimum\":1.5,\"maximum\":10,\"exclusiveMinimum\":1,\"exclusiveMaximum\":9.5}");
    PASSES(js, "1.5");
    PASSES(js, "9.4");
    PASSES(js, "\"not a number\"");
    FAILS(js, "1.4", "", "minimum", "/minimum");
    FAILS(js, "9.5", "", "exclusiveMaximum", "/exclusiveMaximum");
    FAILS(js, "1e1", "", "exclusiveMaximum", "/exclusiveMaximum");
    evs_json_schema_free(js);
    js = compile_ok("{\"maximum\":10}");
    PASSES(js, "10");
    FAILS(js, "10.000001", "", "maximum", "/maximum");
    evs_json_schema_free(js);
    js = compile_ok("{\"exclusiveMinimum\":0}");
    FAILS(js, "0", "", "exclusiveMinimum", "/exclusiveMinimum");
    FAILS(js, "-0.0", "", "exclusiveMinimum", "/exclusiveMinimum");
    PASSES(js, "1e-300");
    evs_json_schema_free(js);
}

/* The walker's fast decimal path gives exactly what strtod (jansson's bounds) gives. */
static void test_decimal_values(void) {
    uint64_t x = 88172645463325252ull;
    int mismatches = 0;
    for (int i = 0; i < 3000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int digits = 1 + (int)(x % 15), point = (int)((x >> 8) % (uint64_t)(digits + 1));
        char num[40];
        size_t w = 0;
        if (x & (1ull << 40)) num[w++] = '-';
        for (int d = 0; d < digits; d++) {
            if (d == point && d > 0) num[w++] = '.';
            num[w++] = (char)('0' + (x >> (d * 3 % 50)) % 10);
        }
        num[w] = 0;
        if (w > 1 && num[w - 1] == '.') num[--w] = 0;
        /* no leading zeros (strict JSON): prefix a 1 */
        char text[48];
        const char *digits_at = num[0] == '-' ? num + 1 : num;
        snprintf(text, sizeof text, "%s1%s", num[0] == '-' ? "-" : "", digits_at);
        char schema[160];
        snprintf(schema, sizeof schema, "{\"minimum\":%s,\"maximum\":%s}", text, text);
        evs_json_schema *js = NULL;
        if (evs_json_schema_compile(schema, strlen(schema), &js, NULL) != EVS_OK) {
            mismatches++;
            continue;
        }
        if (evs_json_schema_validate(js, text, strlen(text), NULL) != EVS_OK) {
            if (mismatches++ < 3) fprintf(stderr, "decimal %s is not within [itself, itself]\n", text);
        }
        evs_json_schema_free(js);
    }
    CHECK_INT(mismatches, 0);
}

static void test_strings(void) {
    evs_json_schema *js = compile_ok("{\"minLength\":2,\"maxLength\":3}");
    PASSES(js, "\"ab\"");
    PASSES(js, "\"\\u00e9t\\u00e9\""); /* three code points, six bytes */
    PASSES(js, "\"\\ud83d\\ude00!\""); /* a surrogate pair is one character */
    PASSES(js, "\"😀😀\"");
    FAILS(js, "\"a\"", "", "minLength", "/minLength");
    FAILS(js, "\"😀\"", "", "minLength", "/minLength");
    FAILS(js, "\"abcd\"", "", "maxLength", "/maxLength");
    PASSES(js, "12345");
    evs_json_schema_free(js);

    js = compile_ok("{\"pattern\":\"^[A-Z]{2}-\\\\d{3,}$\"}");
    PASSES(js, "\"AB-123\"");
    PASSES(js, "\"AB-1234\"");
    FAILS(js, "\"AB-12\"", "", "pattern", "/pattern");
    FAILS(js, "\"ab-123\"", "", "pattern", "/pattern");
    FAILS(js, "\"AB-123\\n\"", "", "pattern", "/pattern");
    evs_json_schema_free(js);
    /* unanchored, as ECMA's test() */
    js = compile_ok("{\"pattern\":\"b+\"}");
    PASSES(js, "\"abbbc\"");
    FAILS(js, "\"ac\"", "", "pattern", "/pattern");
    /* strings holding NUL are matched whole */
    PASSES(js, "\"a\\u0000b\"");
    evs_json_schema_free(js);
}

static void test_formats(void) {
    static const char *const dt_ok[] = {"2026-03-01T10:00:00Z", "2026-03-01t10:00:00.123456789z", "2024-02-29T00:00:00+01:00",
                                        "1998-12-31T23:59:60Z", "1998-12-31T15:59:60-08:00"};
    static const char *const dt_bad[] = {"2026-03-01", "2026-02-29T00:00:00Z", "2026-13-01T00:00:00Z", "2026-03-01T24:00:00Z",
                                         "2026-03-01T10:00:00", "2026-03-01 10:00:00Z", "1998-12-31T23:58:60Z",
                                         "2026-03-01T10:00:00.Z", "2026-03-01T10:00:00+0100", "２026-03-01T10:00:00Z"};
    for (size_t i = 0; i < sizeof dt_ok / sizeof *dt_ok; i++) CHECK(evs__format_date_time(dt_ok[i], strlen(dt_ok[i])));
    for (size_t i = 0; i < sizeof dt_bad / sizeof *dt_bad; i++) {
        int r = evs__format_date_time(dt_bad[i], strlen(dt_bad[i]));
        if (r) fprintf(stderr, "date-time accepted: %s\n", dt_bad[i]);
        CHECK(!r);
    }
    CHECK(evs__format_uuid("0190A4E2-7b1c-7cc0-8000-000000000001", 36));
    CHECK(!evs__format_uuid("0190a4e2-7b1c-7cc0-8000-00000000000", 35));
    CHECK(!evs__format_uuid("0190a4e2x7b1c-7cc0-8000-000000000001", 36));
    CHECK(!evs__format_uuid("0190a4e2-7b1c-7cc0-8000-00000000000g", 36));
    static const char *const em_ok[] = {"joe@example.com", "a.b+c@x.io", "\"joe bloggs\"@example.com", "x@[127.0.0.1]", "a@b"};
    static const char *const em_bad[] = {"joe", "@example.com", "joe@", "a..b@x.io", ".a@x.io", "a.@x.io", "a b@x.io",
                                         "a@x..io", "a@-"};
    for (size_t i = 0; i < sizeof em_ok / sizeof *em_ok; i++) CHECK(evs__format_email(em_ok[i], strlen(em_ok[i])));
    for (size_t i = 0; i < sizeof em_bad / sizeof *em_bad; i++) {
        int r = evs__format_email(em_bad[i], strlen(em_bad[i]));
        if (r && strcmp(em_bad[i], "a@-") != 0) fprintf(stderr, "email accepted: %s\n", em_bad[i]);
        if (strcmp(em_bad[i], "a@-") != 0) CHECK(!r);
    }
    evs_json_schema *js = compile_ok("{\"properties\":{\"at\":{\"format\":\"date-time\"},\"to\":{\"format\":\"email\"}}}");
    PASSES(js, "{\"at\":\"2026-03-01T10:00:00Z\",\"to\":\"a@b.c\",\"n\":1}");
    PASSES(js, "{\"at\":5}"); /* formats concern strings only */
    FAILS(js, "{\"at\":\"yesterday\"}", "/at", "format", "/properties/at/format");
    FAILS(js, "{\"to\":\"nobody\"}", "/to", "format", "/properties/to/format");
    evs_json_schema_free(js);
}

static void test_items(void) {
    evs_json_schema *js = compile_ok("{\"type\":\"array\",\"items\":{\"type\":\"integer\",\"minimum\":0}}");
    PASSES(js, "[]");
    PASSES(js, "[0,1,2]");
    FAILS(js, "[0,1,-2]", "/2", "minimum", "/items/minimum");
    FAILS(js, "[0,\"1\"]", "/1", "type", "/items/type");
    evs_json_schema_free(js);
    js = compile_ok("{\"items\":false}");
    PASSES(js, "[]");
    FAILS(js, "[1]", "/0", "false", "/items/false");
    evs_json_schema_free(js);
}

static void test_combinators(void) {
    evs_json_schema *js = compile_ok("{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"integer\",\"minimum\":5}]}");
    PASSES(js, "\"x\"");
    PASSES(js, "6");
    FAILS(js, "4", "", "anyOf", "/anyOf");
    evs_schema_violation v;
    valid(js, "4", &v);
    CHECK_CONTAINS(v.message, "none of the 2 anyOf alternatives");
    CHECK_CONTAINS(v.message, "expected string, got integer");
    evs_json_schema_free(js);

    /* a tagged union */
    js = compile_ok("{\"oneOf\":[{\"required\":[\"kind\",\"card\"],\"properties\":{\"kind\":{\"const\":\"card\"}}},"
                    "{\"required\":[\"kind\",\"iban\"],\"properties\":{\"kind\":{\"const\":\"sepa\"}}}]}");
    PASSES(js, "{\"kind\":\"card\",\"card\":\"4111\"}");
    PASSES(js, "{\"kind\":\"sepa\",\"iban\":\"DE..\"}");
    FAILS(js, "{\"kind\":\"cash\"}", "", "oneOf", "/oneOf");
    evs_json_schema_free(js);
    js = compile_ok("{\"oneOf\":[{\"minimum\":0},{\"maximum\":10}]}");
    PASSES(js, "-1");
    PASSES(js, "11");
    FAILS(js, "5", "", "oneOf", "/oneOf");
    valid(js, "5", &v);
    CHECK_CONTAINS(v.message, "alternatives 1 and 2");
    evs_json_schema_free(js);
    js = compile_ok("{\"allOf\":[{\"type\":\"object\"},{\"properties\":{\"a\":{\"maxLength\":1}}}]}");
    PASSES(js, "{\"a\":\"x\"}");
    FAILS(js, "{\"a\":\"xy\"}", "/a", "maxLength", "/allOf/1/properties/a/maxLength");
    FAILS(js, "1", "", "type", "/allOf/0/type");
    evs_json_schema_free(js);
}

static void test_refs(void) {
    /* a recursive structure: every cycle goes down the value */
    evs_json_schema *js = compile_ok(
        "{\"$ref\":\"#/definitions/node\",\"definitions\":{\"node\":{\"type\":\"object\",\"required\":[\"v\"],"
        "\"properties\":{\"v\":{\"type\":\"integer\"},\"kids\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/definitions/node\"}}}}}}");
    PASSES(js, "{\"v\":1,\"kids\":[{\"v\":2},{\"v\":3,\"kids\":[{\"v\":4}]}]}");
    FAILS(js, "{\"v\":1,\"kids\":[{\"v\":2},{\"v\":3,\"kids\":[{\"v\":\"x\"}]}]}", "/kids/1/kids/0/v", "type",
          "/definitions/node/properties/v/type");
    evs_json_schema_free(js);
    js = compile_ok("{\"properties\":{\"self\":{\"$ref\":\"#\"},\"n\":{\"type\":\"null\"}}}");
    PASSES(js, "{\"self\":{\"self\":{\"n\":null}}}");
    FAILS(js, "{\"self\":{\"self\":{\"n\":1}}}", "/self/self/n", "type", "/properties/n/type");
    evs_json_schema_free(js);
    /* escaped pointers: ~0 ~1 and percent-encoding */
    js = compile_ok("{\"$defs\":{\"a/b\":{\"type\":\"string\"},\"c~d\":{\"type\":\"integer\"},\"e%f\":{\"type\":\"null\"}},"
                    "\"properties\":{\"x\":{\"$ref\":\"#/$defs/a~1b\"},\"y\":{\"$ref\":\"#/$defs/c~0d\"},\"z\":{\"$ref\":\"#/$defs/e%25f\"}}}");
    PASSES(js, "{\"x\":\"s\",\"y\":1,\"z\":null}");
    FAILS(js, "{\"y\":\"s\"}", "/y", "type", "/$defs/c~0d/type");
    FAILS(js, "{\"z\":0}", "/z", "type", "/$defs/e%f/type");
    evs_json_schema_free(js);
}

static void test_bad_schemas(void) {
    refused("{\"type\":\"object\",\"properties\":{\"tags\":{\"type\":\"array\",\"minItems\":1}}}", EVS_EINVAL,
            "/properties/tags/minItems", "minItems", "outside the supported subset");
    refused("{\"minimum\":\"0\"}", EVS_EINVAL, "/minimum", "minimum", "must be a number");
    refused("{\"exclusiveMinimum\":true}", EVS_EINVAL, "/exclusiveMinimum", "exclusiveMinimum", "draft 4");
    refused("{\"type\":\"int\"}", EVS_EINVAL, "/type", "type", "unknown type \"int\"");
    refused("{\"type\":[\"string\",\"string\"]}", EVS_EINVAL, "/type", "type", "listed twice");
    refused("{\"required\":[\"a\",\"a\"]}", EVS_EINVAL, "/required", "required", "listed twice");
    refused("{\"required\":\"a\"}", EVS_EINVAL, "/required", "required", NULL);
    refused("{\"maxLength\":-1}", EVS_EINVAL, "/maxLength", "maxLength", "non-negative integer");
    refused("{\"minLength\":1.5}", EVS_EINVAL, "/minLength", "minLength", NULL);
    refused("{\"format\":\"ipv4\"}", EVS_EINVAL, "/format", "format", "not supported");
    refused("{\"items\":[{}]}", EVS_EINVAL, "/items", "items", "tuple");
    refused("{\"properties\":{\"a\":{\"$ref\":\"#/definitions/x\",\"type\":\"string\"}},\"definitions\":{\"x\":{}}}",
            EVS_EINVAL, "/properties/a/type", "type", "next to $ref");
    refused("{\"$ref\":\"other.json#/a\"}", EVS_EINVAL, "/$ref", "$ref", "within the document");
    refused("{\"properties\":{\"a\":{\"$ref\":\"#/definitions/missing\"}}}", EVS_EINVAL, "/properties/a/$ref", "$ref",
            "points at nothing");
    refused("{\"$ref\":\"#\"}", EVS_EINVAL, "/$ref", "$ref", "circular");
    refused("{\"definitions\":{\"a\":{\"$ref\":\"#/definitions/b\"},\"b\":{\"anyOf\":[{\"$ref\":\"#/definitions/a\"}]}}}",
            EVS_EINVAL, NULL, NULL, "circular");
    refused("{\"properties\":{\"a\":{\"$id\":\"x\"}}}", EVS_EINVAL, "/properties/a/$id", "$id", NULL);
    refused("{\"$schema\":\"http://json-schema.org/draft-04/schema#\"}", EVS_EINVAL, "/$schema", "$schema", "draft-07");
    refused("{\"anyOf\":[]}", EVS_EINVAL, "/anyOf", "anyOf", "non-empty");
    refused("{\"properties\":{\"a\":3}}", EVS_EINVAL, "/properties/a", "", "object or a boolean");
    refused("{\"pattern\":\"(?=a)\"}", EVS_EINVAL, "/pattern", "pattern", "lookahead");
    refused("{\"pattern\":\"(a)\\\\1\"}", EVS_EINVAL, "/pattern", "pattern", "backreferences");
    refused("{\"pattern\":\"[\"}", EVS_EINVAL, "/pattern", "pattern", "unterminated");
    refused("{\"pattern\":\"((a{100}){100}){2}\"}", EVS_EINVAL, "/pattern", "pattern", "too expensive");
    refused("{\"type\":", EVS_EJSON, NULL, NULL, "not JSON");
    refused("{\"type\":\"string\",\"type\":\"integer\"}", EVS_EINVAL, NULL, NULL, "duplicate");
    refused("3", EVS_EINVAL, "", NULL, "object or a boolean");
    /* annotations and the root's $schema / $id are fine */
    evs_json_schema_free(compile_ok("{\"$schema\":\"http://json-schema.org/draft-07/schema#\",\"$id\":\"urn:x\","
                                    "\"title\":\"t\",\"description\":\"d\",\"default\":{},\"examples\":[],\"$comment\":\"c\"}"));
    evs_json_schema *js = compile_ok("true");
    PASSES(js, "[1,{}]");
    evs_json_schema_free(js);
    js = compile_ok("false");
    FAILS(js, "{}", "", "false", "/false");
    evs_json_schema_free(js);
}

static void test_budget(void) {
    /* 2^30 alternatives tried on a value that matches none: the budget stops it */
    char text[8192];
    size_t w = (size_t)snprintf(text, sizeof text, "{\"$ref\":\"#/definitions/d30\",\"definitions\":{\"d0\":{\"type\":\"string\"}");
    for (int k = 1; k <= 30; k++)
        w += (size_t)snprintf(text + w, sizeof text - w,
                              ",\"d%d\":{\"anyOf\":[{\"$ref\":\"#/definitions/d%d\"},{\"$ref\":\"#/definitions/d%d\"}]}", k,
                              k - 1, k - 1);
    snprintf(text + w, sizeof text - w, "}}");
    evs_json_schema *js = compile_ok(text);
    evs_schema_violation v;
    CHECK_RC(evs_json_schema_validate(js, "1", 1, &v), EVS_ELIMIT);
    CHECK_RC(evs_json_schema_validate(js, "\"s\"", 3, &v), EVS_OK);
    CHECK_RC(evs_json_schema_validate(js, "{", 1, &v), EVS_EJSON);
    evs_json_schema_free(js);
}

static void test_regex(void) {
    static const struct {
        const char *pattern, *text;
        int match;
    } cases[] = {
        {"^\\d+$", "123", 1},          {"^\\d+$", "12a", 0},          {"^\\w+$", "a_1", 1},
        {"^\\w+$", "a-1", 0},          {"^\\s$", " ", 1},             {"^\\S+$", "a b", 0},
        {"^[\\d.]+$", "1.5", 1},       {"^[\\w-]+$", "a-b_c", 1},     {"^[^\\d]+$", "abc", 1},
        {"^[^\\d]+$", "a1", 0},        {"^[]a]$", "]", -1},            {"^[\\]a]$", "]", 1},
        {"^[a\\-z]$", "-", 1},         {"^[a\\-z]$", "b", 0},          {"^[-a]$", "-", 1},
        {"^[\\^]$", "^", 1},           {"^[a^]$", "^", 1},             {"^[\\[]$", "[", 1},
        {"^.$", "é", 1},               {"^.$", "\n", 0},               {"^..$", "é", 0},
        {"^[à-ÿ]$", "é", 1},           {"^[à-ÿ]$", "e", 0},            {"^\\u00e9$", "é", 1},
        {"^\\u00e9+$", "éé", 1},       {"^\\ud83d\\ude00$", "😀", 1},  {"^\\x41$", "A", 1},
        {"^a{2}$", "aa", 1},           {"^a{2,}$", "aaa", 1},          {"^a{2,3}?$", "aaaa", 0},
        {"^a+?b$", "aab", 1},          {"^(?:ab)+$", "abab", 1},       {"^(?<x>a)b$", "ab", 1},
        {"^a{$", "a{", 1},             {"^a}$", "a}", 1},              {"\\bfoo\\b", "a foo b", 1},
        {"\\bfoo\\b", "afoob", 0},     {"^\\/\\.\\*$", "/.*", 1},      {"^\\t$", "\t", 1},
        {"^(a|b)c$", "bc", 1},         {"^[a-c]+$", "abcab", 1},       {"colou?r", "color", 1},
        {"^\\$\\(x\\)$", "$(x)", 1},   {"^[\\s\\d]+$", " 1 2", 1},     {"^\\p{L}$", "a", -1},
        {"^\\D$", "a", 1},             {"^[\\D]$", "a", -1},           {"^\\cA$", "x", -1},
        {"a(?!b)", "ac", -1},          {"^\\ud800$", "x", -1},         {"^a**$", "a", -1},
        {"^\\0$", "x", -1},            {"^[z-a]$", "x", -1},           {"^(a$", "a", -1},
        {"^a)$", "a", -1},             {"a\\", "a", -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        evs__regex *re = NULL;
        char why[256] = "";
        int rc = evs__regex_compile(cases[i].pattern, strlen(cases[i].pattern), &re, why, sizeof why);
        if (cases[i].match < 0) {
            if (rc == EVS_OK) fprintf(stderr, "pattern %s: compiled, wanted a refusal\n", cases[i].pattern);
            CHECK(rc != EVS_OK);
            CHECK(why[0] != 0);
        } else {
            if (rc) fprintf(stderr, "pattern %s: %s\n", cases[i].pattern, why);
            CHECK_RC(rc, EVS_OK);
            if (!rc) {
                int m = evs__regex_search(re, cases[i].text, strlen(cases[i].text));
                if (m != cases[i].match) fprintf(stderr, "pattern %s on \"%s\": got %d\n", cases[i].pattern, cases[i].text, m);
                CHECK_INT(m, cases[i].match);
            }
        }
        evs__regex_free(re);
    }
}

/* ------------------------------------------------------------ inclusion */

static int includes(const char *super, const char *sub, evs_schema_violation *why) {
    evs_json_schema *a = compile_ok(super), *b = compile_ok(sub);
    int rc = a && b ? evs_json_schema_includes(a, b, why) : EVS_EINVAL;
    evs_json_schema_free(a);
    evs_json_schema_free(b);
    return rc;
}

#define INCLUDED(super, sub)                                                                                           \
    do {                                                                                                               \
        evs_schema_violation why_;                                                                                       \
        int r_ = includes(super, sub, &why_);                                                                            \
        if (r_) fprintf(stderr, "%s:%d: not shown: %s %s %s\n", __FILE__, __LINE__, why_.pointer, why_.keyword, why_.message); \
        CHECK_RC(r_, EVS_OK);                                                                                          \
    } while (0)

#define NOT_INCLUDED(super, sub, ptr, kw)                                                                              \
    do {                                                                                                               \
        evs_schema_violation why_;                                                                                       \
        CHECK_RC(includes(super, sub, &why_), EVS_ECONFLICT);                                                            \
        CHECK_STR(why_.pointer, ptr);                                                                                    \
        CHECK_STR(why_.keyword, kw);                                                                                     \
    } while (0)

static void test_inclusion(void) {
    const char *v1 = "{\"type\":\"object\",\"required\":[\"id\"],\"properties\":{\"id\":{\"type\":\"string\"},"
                     "\"amount\":{\"type\":\"integer\",\"minimum\":0}}}";
    /* an optional property added: both ways */
    const char *v2 = "{\"type\":\"object\",\"required\":[\"id\"],\"properties\":{\"id\":{\"type\":\"string\"},"
                     "\"amount\":{\"type\":\"integer\",\"minimum\":0},\"note\":{\"type\":\"string\"}}}";
    INCLUDED(v1, v1);
    /* an optional typed property added to an open object: v1 accepted {"note": 5}, v2 does not */
    NOT_INCLUDED(v2, v1, "/properties/note", "");
    INCLUDED(v1, v2);
    /* a required property added: new ones are valid under the old one, not the reverse */
    const char *v3 = "{\"type\":\"object\",\"required\":[\"id\",\"amount\"],\"properties\":{\"id\":{\"type\":\"string\"},"
                     "\"amount\":{\"type\":\"integer\",\"minimum\":0}}}";
    NOT_INCLUDED(v3, v1, "/required", "required");
    INCLUDED(v1, v3);
    /* a bound tightened, a type widened */
    const char *v4 = "{\"type\":\"object\",\"required\":[\"id\"],\"properties\":{\"id\":{\"type\":\"string\"},"
                     "\"amount\":{\"type\":\"integer\",\"minimum\":10}}}";
    NOT_INCLUDED(v4, v1, "/properties/amount/minimum", "minimum");
    INCLUDED(v1, v4);
    const char *v5 = "{\"type\":\"object\",\"required\":[\"id\"],\"properties\":{\"id\":{\"type\":\"string\"},"
                     "\"amount\":{\"type\":\"number\",\"minimum\":0}}}";
    INCLUDED(v5, v1);
    NOT_INCLUDED(v1, v5, "/properties/amount/type", "type");
    /* closed objects */
    INCLUDED("{\"properties\":{\"a\":{},\"b\":{}},\"additionalProperties\":false}",
             "{\"properties\":{\"a\":{}},\"additionalProperties\":false}");
    NOT_INCLUDED("{\"properties\":{\"a\":{}},\"additionalProperties\":false}",
                 "{\"properties\":{\"a\":{},\"b\":{}},\"additionalProperties\":false}", "/additionalProperties",
                 "additionalProperties");
    NOT_INCLUDED("{\"properties\":{\"a\":{}},\"additionalProperties\":false}", "{\"properties\":{\"a\":{}}}",
                 "/additionalProperties", "additionalProperties");
    /* enums are exact */
    INCLUDED("{\"enum\":[\"a\",\"b\",\"c\"]}", "{\"enum\":[\"a\",\"b\"]}");
    NOT_INCLUDED("{\"enum\":[\"a\",\"b\"]}", "{\"enum\":[\"a\",\"b\",\"c\"]}", "", "");
    INCLUDED("{\"type\":\"string\",\"maxLength\":1}", "{\"enum\":[\"a\",\"b\"]}");
    INCLUDED("{\"enum\":[\"a\"]}", "{\"enum\":[\"a\",1],\"type\":\"string\"}");
    NOT_INCLUDED("{\"enum\":[\"a\"]}", "{\"type\":\"string\"}", "/enum", "enum");
    /* strings */
    INCLUDED("{\"minLength\":1,\"maxLength\":10}", "{\"minLength\":2,\"maxLength\":5}");
    NOT_INCLUDED("{\"maxLength\":10}", "{\"type\":\"string\"}", "/maxLength", "maxLength");
    INCLUDED("{\"maxLength\":10}", "{\"type\":\"integer\"}"); /* string keywords do not concern integers */
    NOT_INCLUDED("{\"pattern\":\"^a\"}", "{\"pattern\":\"^ab\"}", "/pattern", "pattern");
    INCLUDED("{\"pattern\":\"^a\"}", "{\"pattern\":\"^a\",\"minLength\":3}");
    NOT_INCLUDED("{\"format\":\"uuid\"}", "{\"type\":\"string\"}", "/format", "format");
    /* numbers */
    INCLUDED("{\"exclusiveMinimum\":0}", "{\"minimum\":1}");
    INCLUDED("{\"minimum\":0}", "{\"exclusiveMinimum\":0}");
    NOT_INCLUDED("{\"exclusiveMinimum\":0}", "{\"minimum\":0}", "/exclusiveMinimum", "exclusiveMinimum");
    NOT_INCLUDED("{\"maximum\":5}", "{\"maximum\":6}", "/maximum", "maximum");
    /* arrays */
    INCLUDED("{\"items\":{\"type\":\"number\"}}", "{\"items\":{\"type\":\"integer\"}}");
    NOT_INCLUDED("{\"items\":{\"type\":\"integer\"}}", "{\"items\":{\"type\":\"number\"}}", "/items/type", "type");
    NOT_INCLUDED("{\"items\":{\"type\":\"integer\"}}", "{\"type\":\"array\"}", "/items", "items");
    /* combinators */
    INCLUDED("{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"integer\"}]}", "{\"type\":\"string\"}");
    INCLUDED("{\"type\":[\"string\",\"integer\"]}", "{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"integer\"}]}");
    NOT_INCLUDED("{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"integer\"}]}", "{\"type\":\"number\"}", "/anyOf", "anyOf");
    INCLUDED("{\"type\":\"object\"}", "{\"allOf\":[{\"type\":\"object\"},{\"required\":[\"a\"]}]}");
    NOT_INCLUDED("{\"allOf\":[{\"type\":\"object\"},{\"required\":[\"a\"]}]}", "{\"type\":\"object\"}",
                 "/allOf/1/required", "required");
    /* a tagged union that gains an alternative: old events still match exactly one */
#define ALT(k) "{\"type\":\"object\",\"required\":[\"kind\"],\"properties\":{\"kind\":{\"const\":\"" k "\"}}}"
    const char *u2 = "{\"oneOf\":[" ALT("card") "," ALT("sepa") "]}";
    const char *u3 = "{\"oneOf\":[" ALT("card") "," ALT("sepa") "," ALT("cash") "]}";
    /* without "type":"object" in the alternatives a string matches all of them: nothing can be shown */
    NOT_INCLUDED("{\"oneOf\":[{\"properties\":{\"k\":{\"const\":1}}},{\"properties\":{\"k\":{\"const\":2}}},{}]}",
                 "{\"oneOf\":[{\"properties\":{\"k\":{\"const\":1}}},{\"properties\":{\"k\":{\"const\":2}}}]}",
                 "/oneOf", "oneOf");
    INCLUDED(u3, u2);
    INCLUDED(u2, u2);
    NOT_INCLUDED(u2, u3, "/oneOf", "oneOf");
    /* overlapping alternatives cannot be shown to match exactly one */
    NOT_INCLUDED("{\"oneOf\":[{\"type\":\"integer\"},{\"minimum\":0}]}", "{\"type\":\"integer\"}", "/oneOf", "oneOf");
    /* recursive schemas */
    const char *tree = "{\"$ref\":\"#/definitions/n\",\"definitions\":{\"n\":{\"type\":\"object\",\"properties\":"
                       "{\"kids\":{\"items\":{\"$ref\":\"#/definitions/n\"}}}}}}";
    INCLUDED(tree, tree);
    /* booleans */
    INCLUDED("true", v1);
    INCLUDED(v1, "false");
    NOT_INCLUDED(v1, "true", "/type", "type");
    NOT_INCLUDED("false", "{}", "", "");
}

/* ------------------------------------------ soundness on the official suite */

typedef struct corpus {
    evs_json_schema **schemas;
    char **names;
    size_t ns;
    char **docs;
    size_t nd;
} corpus;

static void load_suite(corpus *c, const char *dir) {
    static const char *const files[] = {"type", "properties", "required", "additionalProperties", "enum", "const",
                                        "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength",
                                        "maxLength", "items", "ref", "anyOf", "oneOf", "allOf", "boolean_schema"};
    c->schemas = calloc(1000, sizeof *c->schemas);
    c->names = calloc(1000, sizeof *c->names);
    c->docs = calloc(4000, sizeof *c->docs);
    for (size_t f = 0; f < sizeof files / sizeof *files; f++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s.json", dir, files[f]);
        json_t *doc = json_load_file(path, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        size_t i;
        json_t *cs;
        json_array_foreach(doc, i, cs) {
            char *s = json_dumps(json_object_get(cs, "schema"), JSON_COMPACT | JSON_ENCODE_ANY);
            evs_json_schema *js = NULL;
            if (c->ns < 1000 && evs_json_schema_compile(s, strlen(s), &js, NULL) == EVS_OK) {
                c->schemas[c->ns] = js;
                c->names[c->ns++] = s;
            } else {
                free(s);
            }
            size_t t;
            json_t *tc;
            json_array_foreach(json_object_get(cs, "tests"), t, tc)
                if (c->nd < 4000) c->docs[c->nd++] = json_dumps(json_object_get(tc, "data"), JSON_COMPACT | JSON_ENCODE_ANY);
        }
        json_decref(doc);
    }
}

/* Whenever inclusion is claimed, no document of the corpus may be valid under sub and invalid under super. */
static void test_inclusion_soundness(void) {
    const char *dir = getenv("EVS_JSON_SCHEMA_SUITE");
    if (!dir || !*dir) dir = "/usr/share/json-schema-test-suite/tests/draft7";
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "suite not installed at %s: make deps installs json-schema-test-suite\n", dir);
        CHECK(d != NULL);
        return;
    }
    closedir(d);
    corpus c = {0};
    load_suite(&c, dir);
    CHECK(c.ns > 50);
    CHECK(c.nd > 150);
    /* every document's verdict under every schema, once */
    unsigned char *ok = malloc(c.ns * c.nd);
    for (size_t s = 0; s < c.ns; s++)
        for (size_t k = 0; k < c.nd; k++)
            ok[s * c.nd + k] = evs_json_schema_validate(c.schemas[s], c.docs[k], strlen(c.docs[k]), NULL) == EVS_OK;
    size_t claimed = 0, wrong = 0;
    for (size_t a = 0; a < c.ns; a++)
        for (size_t b = 0; b < c.ns; b++) {
            if (evs_json_schema_includes(c.schemas[a], c.schemas[b], NULL) != EVS_OK) continue;
            claimed++;
            for (size_t k = 0; k < c.nd; k++)
                if (ok[b * c.nd + k] && !ok[a * c.nd + k]) {
                    if (wrong++ < 5)
                        fprintf(stderr, "unsound: %s claimed to include %s, but %s\n", c.names[a], c.names[b], c.docs[k]);
                    break;
                }
        }
    printf("inclusion on the suite: %zu schemas, %zu documents, %zu inclusions claimed, %zu unsound\n", c.ns, c.nd,
           claimed, wrong);
    CHECK_INT(wrong, 0);
    CHECK(claimed >= c.ns); /* at least every schema includes itself */
    for (size_t s = 0; s < c.ns; s++) {
        int self = evs_json_schema_includes(c.schemas[s], c.schemas[s], NULL);
        if (self) fprintf(stderr, "not reflexive: %s: %s\n", c.names[s], evs_errmsg());
        CHECK_RC(self, EVS_OK);
        evs_json_schema_free(c.schemas[s]);
        free(c.names[s]);
    }
    for (size_t k = 0; k < c.nd; k++) free(c.docs[k]);
    free(ok);
    free(c.schemas);
    free(c.names);
    free(c.docs);
}

int main(void) {
    test_type();
    test_object();
    test_enum_const();
    test_numbers();
    test_decimal_values();
    test_strings();
    test_formats();
    test_items();
    test_combinators();
    test_refs();
    test_bad_schemas();
    test_budget();
    test_regex();
    test_inclusion();
    test_inclusion_soundness();
    return TEST_REPORT();
}
