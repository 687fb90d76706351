/*
 * test_json.c — the strict JSON validator and span helpers (src/core/json.c).
 *
 * First the whole JSONTestSuite parsing corpus, read in place from the
 * shared test data: every y_ file must be accepted, every n_ file rejected,
 * and i_ files (implementation-defined) must merely not crash; how we
 * decided each one is printed so a change of behaviour shows up in the log.
 * Then hand-written cases for what the suite does not pin down: error
 * positions and wording, the depth limit, span iteration, string decoding,
 * integer parsing and escaping.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "core/json.h"
#include "testutil.h"

static int validate_str(const char *s, evs_json_error *err) { return evs__json_validate(s, strlen(s), err); }

/* ------------------------------------------------------------ the suite */

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) != 0) goto cleanup;
    long sz = ftell(f);
    if (sz < 0 || fseek(f, 0, SEEK_SET) != 0) goto cleanup;
    buf = malloc((size_t)sz + 1);
    if (!buf) goto cleanup;
    if (fread(buf, 1, (size_t)sz, f) != (size_t)sz) {
        free(buf);
        buf = NULL;
        goto cleanup;
    }
    *len = (size_t)sz;
cleanup:
    fclose(f);
    return buf;
}

/* Walk every container of a validated value through the iterators. */
static size_t walk(evs_json_span v) {
    size_t count = 1;
    evs_json_iter it;
    evs_json_span key, val;
    if (v.type == EVS_JSON_OBJECT) {
        CHECK_RC(evs__json_iter_init(&it, v), EVS_OK);
        while (evs__json_iter_member(&it, &key, &val)) {
            CHECK_INT(key.type, EVS_JSON_STRING);
            CHECK(val.type != EVS_JSON_INVALID);
            count += walk(val);
        }
    } else if (v.type == EVS_JSON_ARRAY) {
        CHECK_RC(evs__json_iter_init(&it, v), EVS_OK);
        while (evs__json_iter_element(&it, &val)) {
            CHECK(val.type != EVS_JSON_INVALID);
            count += walk(val);
        }
    }
    return count;
}

static void test_suite(void) {
    const char *dir = EVS_TESTDATA "/json-test-suite/test_parsing/";
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "cannot open %s: the JSONTestSuite must be present\n", dir);
        tu_failures++;
        return;
    }
    unsigned files = 0, y = 0, y_ok = 0, n = 0, n_ok = 0, i_acc = 0, i_rej = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        if (name[0] == '.') continue;
        files++;
        char path[1024];
        snprintf(path, sizeof path, "%s%s", dir, name);
        size_t len = 0;
        char *buf = read_file(path, &len);
        if (!buf) {
            fprintf(stderr, "cannot read %s\n", path);
            tu_failures++;
            continue;
        }
        evs_json_error err;
        int rc = evs__json_validate(buf, len, &err);
        if (name[0] == 'y') {
            y++;
            if (rc != EVS_OK) {
                fprintf(stderr, "%s: must be accepted, got \"%s\"\n", name, err.msg);
                tu_failures++;
            } else {
                y_ok++;
                walk(evs__json_root(buf, len));
            }
        } else if (name[0] == 'n') {
            n++;
            if (rc != EVS_EJSON) {
                fprintf(stderr, "%s: must be rejected, got rc %d\n", name, rc);
                tu_failures++;
            } else {
                n_ok++;
            }
        } else if (name[0] == 'i') {
            if (rc == EVS_OK) {
                i_acc++;
                walk(evs__json_root(buf, len));
                printf("  %-50s accepted\n", name);
            } else {
                i_rej++;
                printf("  %-50s rejected: %s\n", name, err.msg);
            }
        }
        free(buf);
    }
    closedir(d);
    printf("JSONTestSuite: %u files; y_: %u of %u accepted; n_: %u of %u rejected; i_: %u accepted, %u rejected\n",
           files, y_ok, y, n_ok, n, i_acc, i_rej);
    if (files < 300) {
        fprintf(stderr, "only %u files in %s: wanted at least 300 (suite missing or incomplete)\n", files, dir);
        tu_failures++;
    }
}

/* ------------------------------------------------------- error messages */

static void expect_error(const char *in, size_t n, const char *want_msg, size_t want_offset) {
    evs_json_error err;
    evs__err_clear();
    int rc = evs__json_validate(in, n, &err);
    CHECK_RC(rc, EVS_EJSON);
    if (rc != EVS_EJSON) return;
    CHECK_STR(err.msg, want_msg);
    CHECK_INT(err.offset, want_offset);
    CHECK_STR(evs_errmsg(), err.msg);
}

static void test_errors(void) {
    expect_error("{\n  \"a\": 1,\n  \"b\" 2\n}", 19, "line 3, column 7: expected ':' after an object key, got '2'", 18);
    expect_error("[1,2,]", 6, "line 1, column 6: trailing comma before ']'", 5);
    expect_error("{\"a\":1,}", 8, "line 1, column 8: trailing comma before '}'", 7);
    expect_error("{\"a\":1 \"b\":2}", 13, "line 1, column 8: expected ',' or '}', got '\"'", 7);
    expect_error("[1 2]", 5, "line 1, column 4: expected ',' or ']', got '2'", 3);
    expect_error("", 0, "line 1, column 1: unexpected end of input: expected a value", 0);
    expect_error("   ", 3, "line 1, column 4: unexpected end of input: expected a value", 3);
    expect_error("{\"a\":[1,", 8, "line 1, column 9: unexpected end of input: expected a value", 8);
    expect_error("{\"a\"", 4, "line 1, column 5: unexpected end of input: expected ':'", 4);
    expect_error("{\"a", 3, "line 1, column 4: unexpected end of input in a string", 3);
    expect_error("[\"a\nb\"]", 7, "line 1, column 4: control character U+000A in string", 3);
    expect_error("[\"a\tb\"]", 7, "line 1, column 4: control character U+0009 in string", 3);
    expect_error("\"\\x\"", 4, "line 1, column 2: invalid escape '\\x'", 1);
    expect_error("\"\\'\"", 4, "line 1, column 2: invalid escape '\\''", 1);
    expect_error("\"\\u12\"", 6, "line 1, column 2: invalid \\u escape: expected 4 hex digits", 1);
    expect_error("\"\xC0\x80\"", 4, "line 1, column 2: invalid UTF-8 byte 0xC0", 1);
    expect_error("\"\xE2\x28\xA1\"", 5, "line 1, column 3: invalid UTF-8 byte 0x28 after 0xE2", 2);
    expect_error("{} x", 4, "line 1, column 4: trailing characters after the value", 3);
    expect_error("[012]", 5, "line 1, column 2: invalid number: leading zeros are not allowed", 1);
    expect_error("[-]", 3, "line 1, column 3: expected a digit after '-', got ']'", 2);
    expect_error("[1.]", 4, "line 1, column 4: expected a digit after '.', got ']'", 3);
    expect_error("[1e]", 4, "line 1, column 4: expected a digit in the exponent, got ']'", 3);
    expect_error("[NaN]", 5, "line 1, column 2: expected a value, got 'N'", 1);
    expect_error("[tru]", 5, "line 1, column 2: invalid literal: expected 'true'", 1);
    expect_error("nul", 3, "line 1, column 4: unexpected end of input: expected 'null'", 3);
    expect_error("{'a':1}", 7, "line 1, column 2: expected '\"' to start an object key, or '}', got '''", 1);
    expect_error("[1]\n// c", 8, "line 2, column 1: trailing characters after the value", 4);
    expect_error("\r\n\r\n  [\x01]", 10, "line 3, column 4: expected a value, got byte 0x01", 7);
    expect_error("\"\\uD800\"", 8,
                 "line 1, column 2: unpaired high surrogate \\uD800: expected \\uDC00-\\uDFFF after it", 1);
    expect_error("\"\\uDC00\\uD800\"", 14, "line 1, column 2: unpaired low surrogate \\uDC00", 1);
    expect_error("\"\\uD800\\u0041\"", 14,
                 "line 1, column 2: unpaired high surrogate \\uD800: expected \\uDC00-\\uDFFF after it", 1);

    /* Whitespace is exactly space, tab, CR and LF. */
    expect_error("\f[]", 3, "line 1, column 1: expected a value, got byte 0x0C", 0);
    expect_error("[]\v", 3, "line 1, column 3: trailing characters after the value", 2);
    expect_error("\xC2\xA0[]", 4, "line 1, column 1: expected a value, got byte 0xC2", 0);
    expect_error("\xEF\xBB\xBF{}", 5, "line 1, column 1: expected a value, got byte 0xEF", 0);

    /* UTF-8 that RFC 3629 excludes. */
    expect_error("\"\xE0\x80\xAF\"", 5, "line 1, column 3: invalid UTF-8 byte 0x80 after 0xE0", 2); /* overlong */
    expect_error("\"\xED\xA0\x80\"", 5, "line 1, column 3: invalid UTF-8 byte 0xA0 after 0xED", 2); /* surrogate */
    expect_error("\"\xF4\x90\x80\x80\"", 6, "line 1, column 3: invalid UTF-8 byte 0x90 after 0xF4", 2);
    expect_error("\"\xF5\x80\x80\x80\"", 6, "line 1, column 2: invalid UTF-8 byte 0xF5", 1);
    expect_error("\"\xE2\x82\"", 4, "line 1, column 4: invalid UTF-8 byte 0x22 after 0xE2", 3); /* truncated */
    expect_error("\"\xE2\x82", 3, "line 1, column 4: unexpected end of input in a UTF-8 sequence", 3);
    expect_error("\"\x80\"", 3, "line 1, column 2: invalid UTF-8 byte 0x80", 1);

    /* Accepted edge cases. */
    evs_json_error err;
    CHECK_INT(validate_str("\"\\u0000\"", &err), EVS_OK);
    CHECK_INT(validate_str("\"\\uD83D\\uDE00 \\uDBFF\\uDFFF\"", &err), EVS_OK);
    CHECK_INT(validate_str("\"\xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF \xEF\xBF\xBF \xE0\xA0\x80\"", &err), EVS_OK);
    CHECK_INT(validate_str(" \t\r\n{ \"a\" : [ -0.0e+0 , 1E-2 , true , false , null , \"\\/\\b\\f\\n\\r\\t\" ] }\n", &err),
              EVS_OK);
    CHECK_INT(validate_str("-0", &err), EVS_OK);
    CHECK_INT(validate_str("\"\"", &err), EVS_OK);
    /* Long strings cross the 16-byte fast path with specials at every offset. */
    char longs[200];
    for (int at = 1; at < 150; at++) {
        memset(longs, 'x', sizeof longs);
        longs[0] = '"';
        longs[at] = '\n';
        longs[180] = '"';
        evs_json_error e2;
        CHECK_RC(evs__json_validate(longs, 181, &e2), EVS_EJSON);
        CHECK_INT(e2.offset, (size_t)at);
        longs[at] = '"';
        longs[at + 1] = '\0';
        CHECK_RC(evs__json_validate(longs, (size_t)at + 1, &e2), EVS_OK);
    }
    /* A NUL byte inside the buffer is data, not the end. */
    CHECK_RC(evs__json_validate("[1]\0", 4, &err), EVS_EJSON);
    CHECK_RC(evs__json_validate("\"a\0b\"", 5, &err), EVS_EJSON);
    CHECK_STR(err.msg, "line 1, column 3: control character U+0000 in string");
    /* err may be NULL: the message still reaches evs_errmsg. */
    CHECK_RC(evs__json_validate("[", 1, NULL), EVS_EJSON);
    CHECK_STR(evs_errmsg(), "line 1, column 2: unexpected end of input: expected a value or ']'");
}

/* ------------------------------------------------------------ depth */

static void test_depth(void) {
    enum { D = EVS_JSON_MAX_DEPTH };
    char *buf = malloc(4 * (D + 2) + 16);
    evs_json_error err;
    size_t n = 0;
    for (int i = 0; i < D; i++) buf[n++] = '[';
    for (int i = 0; i < D; i++) buf[n++] = ']';
    CHECK_RC(evs__json_validate(buf, n, &err), EVS_OK);

    n = 0;
    for (int i = 0; i < D + 1; i++) buf[n++] = '[';
    for (int i = 0; i < D + 1; i++) buf[n++] = ']';
    CHECK_RC(evs__json_validate(buf, n, &err), EVS_EJSON);
    CHECK_STR(err.msg, "line 1, column 513: nesting deeper than 512");

    /*
     * Objects and arrays mixed at every level, so the bit stack's words are
     * all exercised: {"":[{"":[ ... ]}]} closes correctly, and swapping one
     * closer deep inside must be caught.
     */
    n = 0;
    for (int i = 0; i < D; i++) {
        if (i % 2 == 0) {
            memcpy(buf + n, "{\"\":", 4);
            n += 4;
        } else {
            buf[n++] = '[';
        }
    }
    buf[n++] = '1';
    size_t closers = n;
    for (int i = D - 1; i >= 0; i--) buf[n++] = i % 2 == 0 ? '}' : ']';
    CHECK_RC(evs__json_validate(buf, n, &err), EVS_OK);
    CHECK_INT(walk(evs__json_root(buf, n)), D + 1);
    for (size_t k = 0; k < (size_t)D; k += 37) {
        char saved = buf[closers + k];
        buf[closers + k] = saved == '}' ? ']' : '}';
        CHECK_RC(evs__json_validate(buf, n, &err), EVS_EJSON);
        CHECK_INT(err.offset, closers + k);
        buf[closers + k] = saved;
    }
    free(buf);
}

/* ------------------------------------------------------------ spans */

static void test_spans(void) {
    const char *doc = " {\"a\": 1, \"b\" : [1, {\"x\":\"]}\"}, []], \"c\\\"\": \"s\\\\\\\"}\", \"d\":true,"
                      "\"e\":null,\"f\":-1.5e3,\"g\":{},\"h\":false} ";
    size_t n = strlen(doc);
    evs_json_error err;
    CHECK_RC(evs__json_validate(doc, n, &err), EVS_OK);
    evs_json_span root = evs__json_root(doc, n);
    CHECK_INT(root.type, EVS_JSON_OBJECT);
    CHECK_INT(root.p - doc, 1);
    CHECK_INT(root.n, n - 2);

    static const struct {
        const char *key, *value;
        evs_json_type type;
    } want[] = {
        {"\"a\"", "1", EVS_JSON_NUMBER},
        {"\"b\"", "[1, {\"x\":\"]}\"}, []]", EVS_JSON_ARRAY},
        {"\"c\\\"\"", "\"s\\\\\\\"}\"", EVS_JSON_STRING},
        {"\"d\"", "true", EVS_JSON_TRUE},
        {"\"e\"", "null", EVS_JSON_NULL},
        {"\"f\"", "-1.5e3", EVS_JSON_NUMBER},
        {"\"g\"", "{}", EVS_JSON_OBJECT},
        {"\"h\"", "false", EVS_JSON_FALSE},
    };
    evs_json_iter it;
    evs_json_span k, v;
    CHECK_RC(evs__json_iter_init(&it, root), EVS_OK);
    size_t i = 0;
    while (evs__json_iter_member(&it, &k, &v)) {
        if (i < sizeof want / sizeof want[0]) {
            CHECK_MEM(k.p, k.n, want[i].key);
            CHECK_MEM(v.p, v.n, want[i].value);
            CHECK_INT(v.type, want[i].type);
            if (i == 2) CHECK(evs__json_string_eq(k, "c\""));
            if (i == 1) {
                evs_json_iter ai;
                evs_json_span e;
                static const char *const elems[] = {"1", "{\"x\":\"]}\"}", "[]"};
                size_t j = 0;
                CHECK_RC(evs__json_iter_init(&ai, v), EVS_OK);
                while (evs__json_iter_element(&ai, &e)) {
                    if (j < 3) CHECK_MEM(e.p, e.n, elems[j]);
                    j++;
                }
                CHECK_INT(j, 3);
            }
        }
        i++;
    }
    CHECK_INT(i, sizeof want / sizeof want[0]);

    /* Empty containers yield nothing; scalars cannot be iterated. */
    evs_json_span empty = evs__json_root("[ ]", 3);
    CHECK_RC(evs__json_iter_init(&it, empty), EVS_OK);
    CHECK_INT(evs__json_iter_element(&it, &v), 0);
    empty = evs__json_root("{\n}", 3);
    CHECK_RC(evs__json_iter_init(&it, empty), EVS_OK);
    CHECK_INT(evs__json_iter_member(&it, &k, &v), 0);
    CHECK_RC(evs__json_iter_init(&it, evs__json_root("12", 2)), EVS_EINVAL);
    CHECK_INT(evs__json_root("  ", 2).type, EVS_JSON_INVALID);
}

/* ------------------------------------------------------------ strings */

static evs_json_span str_span(const char *s) { return (evs_json_span){s, strlen(s), EVS_JSON_STRING}; }

static void test_strings(void) {
    char out[64];
    CHECK_INT(evs__json_string_decode(str_span("\"plain\""), out, sizeof out), 5);
    CHECK_STR(out, "plain");
    CHECK_INT(evs__json_string_decode(str_span("\"a\\u00e9\\ud83d\\ude00\\n\\\"\\\\\\/\\b\\f\\r\\t\""), out, sizeof out),
              1 + 2 + 4 + 1 + 1 + 1 + 1 + 4);
    CHECK_STR(out, "a\xC3\xA9\xF0\x9F\x98\x80\n\"\\/\b\f\r\t");
    CHECK_INT(evs__json_string_decode(str_span("\"\\u20AC\""), out, sizeof out), 3);
    CHECK_STR(out, "\xE2\x82\xAC");
    CHECK_INT(evs__json_string_decode(str_span("\"\""), out, sizeof out), 0);
    CHECK_STR(out, "");
    /* Does not fit: the terminating NUL needs a byte too. */
    CHECK_INT(evs__json_string_decode(str_span("\"abcd\""), out, 4), -1);
    CHECK_INT(evs__json_string_decode(str_span("\"abcd\""), out, 5), 4);
    CHECK_INT(evs__json_string_decode(str_span("\"ab\\u00e9\""), out, 4), -1);
    CHECK_INT(evs__json_string_decode(str_span("\"ab\\u00e9\""), out, 5), 4);
    /* U+0000 cannot be a C string. */
    CHECK_INT(evs__json_string_decode(str_span("\"a\\u0000b\""), out, sizeof out), -1);
    CHECK_INT(evs__json_string_decode((evs_json_span){"12", 2, EVS_JSON_NUMBER}, out, sizeof out), -1);

    CHECK(evs__json_string_eq(str_span("\"event_type\""), "event_type"));
    CHECK(evs__json_string_eq(str_span("\"ev\\u0065nt_type\""), "event_type"));
    CHECK(!evs__json_string_eq(str_span("\"event_typ\""), "event_type"));
    CHECK(!evs__json_string_eq(str_span("\"event_types\""), "event_type"));
    CHECK(!evs__json_string_eq(str_span("\"ev\\u0065nt_typ\""), "event_type"));
    CHECK(!evs__json_string_eq(str_span("\"ev\\u0065nt_typex\""), "event_type"));
    CHECK(evs__json_string_eq(str_span("\"\""), ""));
}

/* ------------------------------------------------------------ integers */

static void check_int64(const char *num, int want_rc, int64_t want) {
    int64_t got = 12345;
    int rc = evs__json_int64((evs_json_span){num, strlen(num), EVS_JSON_NUMBER}, &got);
    if (rc != want_rc) fprintf(stderr, "int64 \"%s\":\n", num);
    CHECK_RC(rc, want_rc);
    if (want_rc == EVS_OK) CHECK_INT(got, want);
    else CHECK_INT(got, 12345); /* untouched on failure */
}

static void test_int64(void) {
    check_int64("0", EVS_OK, 0);
    check_int64("-0", EVS_OK, 0);
    check_int64("7", EVS_OK, 7);
    check_int64("-42", EVS_OK, -42);
    check_int64("9223372036854775807", EVS_OK, INT64_MAX);
    check_int64("-9223372036854775808", EVS_OK, INT64_MIN);
    check_int64("9223372036854775808", EVS_EINVAL, 0);
    check_int64("-9223372036854775809", EVS_EINVAL, 0);
    check_int64("12345678901234567890", EVS_EINVAL, 0);
    check_int64("99999999999999999999999999", EVS_EINVAL, 0);
    check_int64("1e3", EVS_EINVAL, 0);
    check_int64("1E3", EVS_EINVAL, 0);
    check_int64("1.0", EVS_EINVAL, 0);
    check_int64("-", EVS_EINVAL, 0);
    check_int64("01", EVS_EINVAL, 0);
    int64_t v = 0;
    CHECK_RC(evs__json_int64((evs_json_span){"1.5", 3, EVS_JSON_NUMBER}, &v), EVS_EINVAL);
    CHECK_STR(evs_errmsg(), "number 1.5 is not an integer");
    CHECK_RC(evs__json_int64((evs_json_span){"9223372036854775808", 19, EVS_JSON_NUMBER}, &v), EVS_EINVAL);
    CHECK_STR(evs_errmsg(), "number 9223372036854775808 is out of the 64-bit integer range");
    CHECK_RC(evs__json_int64(str_span("\"1\""), &v), EVS_EINVAL);
    CHECK_STR(evs_errmsg(), "expected an integer, got string");
}

/* ------------------------------------------------------------ escaping */

static void round_trip(const char *s, size_t n) {
    char esc[1024], back[512];
    size_t need = evs__json_escape(s, n, NULL, 0);
    size_t got = evs__json_escape(s, n, esc, sizeof esc);
    CHECK_INT(got, need);
    CHECK_INT(strlen(esc), got);
    evs_json_error err;
    CHECK_RC(evs__json_validate(esc, got, &err), EVS_OK);
    long k = evs__json_string_decode((evs_json_span){esc, got, EVS_JSON_STRING}, back, sizeof back);
    CHECK_INT(k, (long)n);
    if (k == (long)n && memcmp(back, s, n) != 0) {
        fprintf(stderr, "round trip of \"%.*s\" gave \"%s\" via %s\n", (int)n, s, back, esc);
        tu_failures++;
    }
}

static void test_escape(void) {
    char buf[64];
    CHECK_INT(evs__json_escape("a\"b\\c\n\x01\x1f\x7f", 9, buf, sizeof buf), 24);
    CHECK_STR(buf, "\"a\\\"b\\\\c\\n\\u0001\\u001f\x7f\"");
    CHECK_INT(evs__json_escape("\b\f\r\t/", 5, buf, sizeof buf), 11);
    CHECK_STR(buf, "\"\\b\\f\\r\\t/\"");
    CHECK_INT(evs__json_escape("", 0, buf, sizeof buf), 2);
    CHECK_STR(buf, "\"\"");
    /* Valid UTF-8 passes through; invalid bytes become U+FFFD so output stays JSON. */
    CHECK_INT(evs__json_escape("\xC3\xA9\xF0\x9F\x98\x80", 6, buf, sizeof buf), 8);
    CHECK_STR(buf, "\"\xC3\xA9\xF0\x9F\x98\x80\"");
    CHECK_INT(evs__json_escape("a\xFF" "b\xC0\x80", 5, buf, sizeof buf), 2 + 1 + 6 + 1 + 12);
    CHECK_STR(buf, "\"a\\ufffdb\\ufffd\\ufffd\"");
    /* snprintf semantics: the return value is what was needed, output is cut and terminated. */
    CHECK_INT(evs__json_escape("hello", 5, buf, 4), 7);
    CHECK_STR(buf, "\"he");
    CHECK_INT(evs__json_escape("a\nb", 3, buf, 5), 6);
    CHECK_STR(buf, "\"a\\n");

    round_trip("plain", 5);
    round_trip("quote \" backslash \\ slash /", 27);
    round_trip("\xE2\x82\xAC \xF0\x9F\x98\x80 \xC3\xA9", 11);
    char ctl[40];
    for (int i = 1; i < 32; i++) ctl[i - 1] = (char)i;
    round_trip(ctl, 31);
    char all[256];
    size_t n = 0;
    for (int i = 1; i < 128; i++) all[n++] = (char)i;
    round_trip(all, n);
    /* U+0000 escapes fine but cannot come back as a C string. */
    CHECK_INT(evs__json_escape("a\0b", 3, buf, sizeof buf), 10);
    CHECK_STR(buf, "\"a\\u0000b\"");
    CHECK_INT(evs__json_string_decode(str_span(buf), all, sizeof all), -1);
}

/* ------------------------------------------------------- validate_object */

static void test_validate_object(void) {
    static const struct {
        const char *in, *msg;
    } cases[] = {
        {"[]", "line 1, column 1: expected a JSON object, got array"},
        {"  1", "line 1, column 3: expected a JSON object, got number"},
        {"\"s\"", "line 1, column 1: expected a JSON object, got string"},
        {"null", "line 1, column 1: expected a JSON object, got null"},
        {"true", "line 1, column 1: expected a JSON object, got true"},
        {"{", "line 1, column 2: unexpected end of input: expected '\"' or '}'"},
    };
    evs_json_error err;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK_RC(evs__json_validate_object(cases[i].in, strlen(cases[i].in), &err), EVS_EJSON);
        CHECK_STR(err.msg, cases[i].msg);
        CHECK_STR(evs_errmsg(), cases[i].msg);
    }
    CHECK_RC(evs__json_validate_object(" {} ", 4, &err), EVS_OK);
    CHECK_RC(evs__json_validate_object("{\"a\":[1,{\"b\":null}]}", 20, NULL), EVS_OK);
}

int main(void) {
    test_suite();
    test_errors();
    test_depth();
    test_spans();
    test_strings();
    test_int64();
    test_escape();
    test_validate_object();
    return TEST_REPORT();
}
