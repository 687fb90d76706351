/*
 * test_event_json.c — the event envelope in JSON (src/core/event_json.c).
 *
 * Parsing: every field, the defaults, null as "absent", and each way an
 * envelope can be wrong, with the code and the exact message.  data and
 * metadata must come back as the very bytes of the input.  Rendering:
 * evs_event_to_json's output is read back with jansson, an independent
 * parser, and checked field by field, including the field order.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "core/event_json.h"
#include "testutil.h"

#define ID1 "0190a5c4-7b3e-7c2a-9d1e-2f3a4b5c6d7e"
#define ID2 "0190A5C4-7B3E-7C2A-9D1E-2F3A4B5C6D7F"
#define ID3 "0190a5c4-7b3e-7c2a-9d1e-2f3a4b5c6d80"

static void uuid_text(const evs_uuid *u, char buf[37]) { evs_uuid_format(u, buf); }

/* ------------------------------------------------------------- parsing */

static void test_all_fields(void) {
    const char *in =
        "{\n"
        "  \"event_type\": \"OrderPlaced\",\n"
        "  \"data\": {\"a\":1.50,\"b\":12345678901234567890},\n"
        "  \"metadata\": { \"user\" : \"\\u00e9\" , \"n\": [1, 2] },\n"
        "  \"event_id\": \"" ID1 "\",\n"
        "  \"causation_id\": \"" ID2 "\",\n"
        "  \"correlation_id\": \"" ID3 "\",\n"
        "  \"event_version\": 3,\n"
        "  \"stream_type\": \"order\",\n"
        "  \"tags\": [\"vip\", \"caf\\u00e9\", \"\xF0\x9F\x98\x80\"],\n"
        "  \"occurred_at\": \"2026-11-22T05:40:48.123456789Z\"\n"
        "}\n";
    evs_event_parsed e;
    evs_json_error err;
    int rc = evs__event_from_json(in, strlen(in), &e, &err);
    CHECK_RC(rc, EVS_OK);
    if (rc) {
        fprintf(stderr, "  message: %s\n", evs_errmsg());
        return;
    }
    const evs_event_in *ev = &e.ev;
    CHECK_STR(ev->event_type, "OrderPlaced");
    /* Spans into the input itself, byte for byte. */
    const char *data_at = strstr(in, "{\"a\"");
    CHECK(ev->data == data_at);
    CHECK_MEM(ev->data, ev->data_len, "{\"a\":1.50,\"b\":12345678901234567890}");
    CHECK(ev->metadata == strstr(in, "{ \"user\""));
    CHECK_MEM(ev->metadata, ev->metadata_len, "{ \"user\" : \"\\u00e9\" , \"n\": [1, 2] }");
    char buf[37];
    CHECK(ev->event_id != NULL);
    if (ev->event_id) {
        uuid_text(ev->event_id, buf);
        CHECK_STR(buf, ID1);
    }
    CHECK(ev->causation_id != NULL);
    if (ev->causation_id) {
        uuid_text(ev->causation_id, buf);
        CHECK_STR(buf, "0190a5c4-7b3e-7c2a-9d1e-2f3a4b5c6d7f");
    }
    CHECK(ev->correlation_id != NULL);
    if (ev->correlation_id) {
        uuid_text(ev->correlation_id, buf);
        CHECK_STR(buf, ID3);
    }
    CHECK_INT(ev->event_version, 3);
    CHECK_STR(ev->stream_type, "order");
    CHECK_INT(ev->ntags, 3);
    if (ev->ntags == 3) {
        CHECK_STR(ev->tags[0], "vip");
        CHECK_STR(ev->tags[1], "caf\xC3\xA9");
        CHECK_STR(ev->tags[2], "\xF0\x9F\x98\x80");
    }
    int64_t want_ns = 0;
    CHECK_RC(evs_time_parse("2026-11-22T05:40:48.123456789Z", 30, &want_ns), EVS_OK);
    CHECK_INT(ev->occurred_at, want_ns);
    CHECK_INT(ev->occurred_at % 1000000000, 123456789);
    evs__event_parsed_free(&e);
    evs__event_parsed_free(&e); /* idempotent */
}

static void test_defaults_and_nulls(void) {
    const char *in = "{\"data\":{},\"event_type\":\"X\"}";
    evs_event_parsed e;
    CHECK_RC(evs__event_from_json(in, strlen(in), &e, NULL), EVS_OK);
    CHECK_STR(e.ev.event_type, "X");
    CHECK_MEM(e.ev.data, e.ev.data_len, "{}");
    CHECK(e.ev.metadata == NULL);
    CHECK(e.ev.event_id == NULL);
    CHECK(e.ev.causation_id == NULL);
    CHECK(e.ev.correlation_id == NULL);
    CHECK(e.ev.stream_type == NULL);
    CHECK(e.ev.tags == NULL);
    CHECK_INT(e.ev.ntags, 0);
    CHECK_INT(e.ev.event_version, 0);
    CHECK_INT(e.ev.occurred_at, 0);
    evs__event_parsed_free(&e);

    in = "{\"event_type\":\"X\",\"data\":{},\"metadata\":null,\"event_id\":null,\"causation_id\":null,"
         "\"correlation_id\":null,\"event_version\":null,\"stream_type\":null,\"tags\":null,\"occurred_at\":null}";
    CHECK_RC(evs__event_from_json(in, strlen(in), &e, NULL), EVS_OK);
    CHECK(e.ev.metadata == NULL && e.ev.event_id == NULL && e.ev.causation_id == NULL &&
          e.ev.correlation_id == NULL && e.ev.stream_type == NULL && e.ev.tags == NULL);
    CHECK_INT(e.ev.event_version, 0);
    evs__event_parsed_free(&e);

    /* Empty tags, integer occurred_at, an offset time, escaped field names. */
    in = "{\"ev\\u0065nt_type\":\"X\",\"data\":{\"k\":[]},\"tags\":[],\"occurred_at\":1700000000123456789}";
    CHECK_RC(evs__event_from_json(in, strlen(in), &e, NULL), EVS_OK);
    CHECK_STR(e.ev.event_type, "X");
    CHECK(e.ev.tags == NULL);
    CHECK_INT(e.ev.ntags, 0);
    CHECK_INT(e.ev.occurred_at, 1700000000123456789LL);
    evs__event_parsed_free(&e);

    in = "{\"event_type\":\"X\",\"data\":{},\"occurred_at\":\"2026-01-01T01:00:00+01:00\"}";
    CHECK_RC(evs__event_from_json(in, strlen(in), &e, NULL), EVS_OK);
    int64_t want = 0;
    CHECK_RC(evs_time_parse("2026-01-01T00:00:00Z", 20, &want), EVS_OK);
    CHECK_INT(e.ev.occurred_at, want);
    evs__event_parsed_free(&e);

    /* Limits reached exactly are fine. */
    char big[4096];
    int n = snprintf(big, sizeof big, "{\"event_type\":\"");
    for (int i = 0; i < 255; i++) n += snprintf(big + n, sizeof big - (size_t)n, "\\u0041");
    n += snprintf(big + n, sizeof big - (size_t)n, "\",\"data\":{},\"event_version\":2147483647,\"tags\":[");
    for (int i = 0; i < 64; i++) n += snprintf(big + n, sizeof big - (size_t)n, "%s\"t%d\"", i ? "," : "", i);
    n += snprintf(big + n, sizeof big - (size_t)n, "]}");
    CHECK_RC(evs__event_from_json(big, (size_t)n, &e, NULL), EVS_OK);
    CHECK_INT(strlen(e.ev.event_type), 255);
    CHECK_INT(e.ev.event_version, 2147483647);
    CHECK_INT(e.ev.ntags, 64);
    if (e.ev.ntags == 64) CHECK_STR(e.ev.tags[63], "t63");
    evs__event_parsed_free(&e);
}

/* ------------------------------------------------------------ failures */

static void expect_fail(const char *in, int want_rc, const char *want_msg) {
    evs_event_parsed e;
    evs_json_error err;
    int rc = evs__event_from_json(in, strlen(in), &e, &err);
    if (rc != want_rc) fprintf(stderr, "input: %s\n", in);
    CHECK_RC(rc, want_rc);
    if (rc == EVS_OK) {
        evs__event_parsed_free(&e);
        return;
    }
    CHECK_STR(evs_errmsg(), want_msg);
    CHECK_STR(err.msg, want_msg);
    CHECK(e.tag_buf == NULL); /* nothing to release on failure */
}

#define EV(rest) "{\"event_type\":\"T\",\"data\":{}" rest "}"

static void test_errors(void) {
    /* Malformed JSON: EVS_EJSON with the position. */
    expect_fail("{\"event_type\":\"A\",\"data\":{}", EVS_EJSON,
                "line 1, column 28: unexpected end of input: expected ',' or '}'");
    expect_fail("{\"event_type\":\"A\",\n\"data\":{\"a\":01}}", EVS_EJSON,
                "line 2, column 13: invalid number: leading zeros are not allowed");
    expect_fail(EV(","), EVS_EJSON, "line 1, column 29: trailing comma before '}'");
    expect_fail("", EVS_EJSON, "line 1, column 1: unexpected end of input: expected a value");

    /* The envelope itself. */
    expect_fail("[]", EVS_EINVAL, "an event must be a JSON object, got array");
    expect_fail("\"x\"", EVS_EINVAL, "an event must be a JSON object, got string");
    expect_fail("{\"data\":{}}", EVS_EINVAL, "missing required field \"event_type\"");
    expect_fail("{\"event_type\":\"T\"}", EVS_EINVAL, "missing required field \"data\"");
    expect_fail("{}", EVS_EINVAL, "missing required field \"event_type\"");

    /* data and metadata. */
    expect_fail("{\"event_type\":\"T\",\"data\":[1]}", EVS_EINVAL, "data must be a JSON object, got array");
    expect_fail("{\"event_type\":\"T\",\"data\":null}", EVS_EINVAL, "data must be a JSON object, got null");
    expect_fail("{\"event_type\":\"T\",\"data\":\"{}\"}", EVS_EINVAL, "data must be a JSON object, got string");
    expect_fail(EV(",\"metadata\":[]"), EVS_EINVAL, "metadata must be a JSON object, got array");
    expect_fail(EV(",\"metadata\":1"), EVS_EINVAL, "metadata must be a JSON object, got number");

    /* event_type and stream_type. */
    expect_fail("{\"event_type\":1,\"data\":{}}", EVS_EINVAL, "event_type must be a string, got number");
    expect_fail("{\"event_type\":null,\"data\":{}}", EVS_EINVAL, "event_type must be a string, got null");
    expect_fail("{\"event_type\":\"\",\"data\":{}}", EVS_EINVAL, "event_type must not be empty");
    expect_fail("{\"event_type\":\"a\\nb\",\"data\":{}}", EVS_EINVAL, "event_type contains control character U+000A");
    expect_fail("{\"event_type\":\"a\\u007f\",\"data\":{}}", EVS_EINVAL,
                "event_type contains control character U+007F");
    expect_fail("{\"event_type\":\"a\\u0000\",\"data\":{}}", EVS_EINVAL, "event_type contains U+0000");
    expect_fail(EV(",\"stream_type\":\"\""), EVS_EINVAL, "stream_type must not be empty");
    expect_fail(EV(",\"stream_type\":[]"), EVS_EINVAL, "stream_type must be a string, got array");
    {
        char in[2048];
        int n = snprintf(in, sizeof in, "{\"data\":{},\"event_type\":\"");
        for (int i = 0; i < 256; i++) in[n++] = 'x';
        snprintf(in + n, sizeof in - (size_t)n, "\"}");
        expect_fail(in, EVS_EINVAL, "event_type is 256 bytes, the limit is 255");
        n = snprintf(in, sizeof in, "{\"data\":{},\"event_type\":\"");
        for (int i = 0; i < 1600; i++) in[n++] = 'x';
        snprintf(in + n, sizeof in - (size_t)n, "\"}");
        expect_fail(in, EVS_EINVAL, "event_type is longer than 255 bytes");
    }

    /* UUIDs. */
    expect_fail(EV(",\"event_id\":\"xyz\""), EVS_EINVAL, "event_id: invalid UUID \"xyz\"");
    expect_fail(EV(",\"event_id\":\"0190a5c4-7b3e-7c2a-9d1e-2f3a4b5c6d7\""), EVS_EINVAL,
                "event_id: invalid UUID \"0190a5c4-7b3e-7c2a-9d1e-2f3a4b5c6d7\"");
    expect_fail(EV(",\"event_id\":\"0190a5c4x7b3e-7c2a-9d1e-2f3a4b5c6d7e\""), EVS_EINVAL,
                "event_id: invalid UUID \"0190a5c4x7b3e-7c2a-9d1e-2f3a4b5c6d7e\"");
    expect_fail(EV(",\"event_id\":\"0190a5c4-7b3e-7c2a-9d1e-2f3a4b5c6d7e-and-a-lot-more-text\""), EVS_EINVAL,
                "event_id: invalid UUID \"0190a5c4-7b3e-7c2a-9d1e-2f3a4b5c6d7e-an...\"");
    expect_fail(EV(",\"event_id\":42"), EVS_EINVAL, "event_id must be a UUID string, got number");
    expect_fail(EV(",\"causation_id\":\"nope\""), EVS_EINVAL, "causation_id: invalid UUID \"nope\"");
    expect_fail(EV(",\"correlation_id\":{}"), EVS_EINVAL, "correlation_id must be a UUID string, got object");

    /* event_version. */
    expect_fail(EV(",\"event_version\":0"), EVS_EINVAL, "event_version must be an integer from 1 to 2147483647, got 0");
    expect_fail(EV(",\"event_version\":-1"), EVS_EINVAL,
                "event_version must be an integer from 1 to 2147483647, got -1");
    expect_fail(EV(",\"event_version\":2147483648"), EVS_EINVAL,
                "event_version must be an integer from 1 to 2147483647, got 2147483648");
    expect_fail(EV(",\"event_version\":1.0"), EVS_EINVAL,
                "event_version must be an integer from 1 to 2147483647, got 1.0");
    expect_fail(EV(",\"event_version\":1e2"), EVS_EINVAL,
                "event_version must be an integer from 1 to 2147483647, got 1e2");
    expect_fail(EV(",\"event_version\":\"2\""), EVS_EINVAL,
                "event_version must be an integer from 1 to 2147483647, got \"2\"");

    /* tags. */
    expect_fail(EV(",\"tags\":\"a\""), EVS_EINVAL, "tags must be an array of strings, got string");
    expect_fail(EV(",\"tags\":[\"a\",\"\"]"), EVS_EINVAL, "tags[1] must not be empty");
    expect_fail(EV(",\"tags\":[\"a\",\"b\",3]"), EVS_EINVAL, "tags[2] must be a string, got number");
    expect_fail(EV(",\"tags\":[\"a\",[\"b\"]]"), EVS_EINVAL, "tags[1] must be a string, got array");
    {
        char in[2048];
        int n = snprintf(in, sizeof in, "{\"event_type\":\"T\",\"data\":{},\"tags\":[\"");
        for (int i = 0; i < 256; i++) in[n++] = 't';
        snprintf(in + n, sizeof in - (size_t)n, "\"]}");
        expect_fail(in, EVS_EINVAL, "tags[0] is 256 bytes, the limit is 255");
        n = snprintf(in, sizeof in, "{\"event_type\":\"T\",\"data\":{},\"tags\":[");
        for (int i = 0; i < 65; i++) n += snprintf(in + n, sizeof in - (size_t)n, "%s\"t%d\"", i ? "," : "", i);
        snprintf(in + n, sizeof in - (size_t)n, "]}");
        expect_fail(in, EVS_EINVAL, "tags: more than 64 tags");
    }
    /* A failure after tags were decoded must release them (ASan checks the leak). */
    expect_fail(EV(",\"tags\":[\"a\",\"b\"],\"bogus\":1"), EVS_EINVAL, "unknown field \"bogus\"");

    /* occurred_at. */
    expect_fail(EV(",\"occurred_at\":\"yesterday\""), EVS_EINVAL,
                "occurred_at: invalid time \"yesterday\": expected RFC 3339 like 2026-11-22T05:40:48Z or ns since "
                "the epoch");
    expect_fail(EV(",\"occurred_at\":1.5"), EVS_EINVAL, "occurred_at: 1.5 is not an integer count of ns since the epoch");
    expect_fail(EV(",\"occurred_at\":true"), EVS_EINVAL, "occurred_at must be an RFC 3339 string or integer ns, got true");

    /* Field names: duplicates, unknown, read-only. */
    expect_fail("{\"event_type\":\"T\",\"data\":{},\"data\":{}}", EVS_EINVAL, "duplicate field \"data\"");
    expect_fail("{\"event_type\":\"T\",\"data\":{},\"d\\u0061ta\":{}}", EVS_EINVAL, "duplicate field \"data\"");
    expect_fail(EV(",\"tags\":null,\"tags\":[]"), EVS_EINVAL, "duplicate field \"tags\"");
    expect_fail(EV(",\"event_type\":\"U\""), EVS_EINVAL, "duplicate field \"event_type\"");
    expect_fail(EV(",\"foo\":1"), EVS_EINVAL, "unknown field \"foo\"");
    expect_fail(EV(",\"Event_Type\":\"x\""), EVS_EINVAL, "unknown field \"Event_Type\"");
    expect_fail(EV(",\"a_rather_long_field_name_that_goes_on_and_on_and_on\":1"), EVS_EINVAL,
                "unknown field \"a_rather_long_field_name_that_goes_on_a...\"");
    expect_fail(EV(",\"stream\":\"s-1\""), EVS_EINVAL, "field \"stream\" is read-only: the store sets it");
    expect_fail(EV(",\"stream_position\":1"), EVS_EINVAL, "field \"stream_position\" is read-only: the store sets it");
    expect_fail(EV(",\"global_position\":1"), EVS_EINVAL, "field \"global_position\" is read-only: the store sets it");
    expect_fail(EV(",\"recorded_at\":1"), EVS_EINVAL, "field \"recorded_at\" is read-only: the store sets it");

    /* EVS_EINVAL errors point at the offending value. */
    const char *in = "{\"event_type\":\"T\",\n  \"data\": [1]}";
    evs_event_parsed e;
    evs_json_error err;
    CHECK_RC(evs__event_from_json(in, strlen(in), &e, &err), EVS_EINVAL);
    CHECK_INT(err.line, 2);
    CHECK_INT(err.column, 11);
    CHECK_INT(err.offset, 29);
}

/* Bytes come through untouched, whatever the spacing or number spelling. */
static void test_verbatim(void) {
    static const char *const payloads[] = {
        "{\"a\":1.50,\"b\":12345678901234567890}",
        "{ \"a\" : 1.50 , \"b\" :\t-0.0e+00 }",
        "{\n  \"nested\": {\"x\": [1, 2, {\"y\": \"\\u00e9\\n\"}]},\n  \"s\": \"}]\\\"\"\n}",
        "{}",
    };
    for (size_t i = 0; i < sizeof payloads / sizeof payloads[0]; i++) {
        char in[512];
        snprintf(in, sizeof in, "{\"event_type\":\"T\",\"data\":%s,\"metadata\":%s}", payloads[i], payloads[i]);
        evs_event_parsed e;
        int rc = evs__event_from_json(in, strlen(in), &e, NULL);
        CHECK_RC(rc, EVS_OK);
        if (rc) continue;
        CHECK_MEM(e.ev.data, e.ev.data_len, payloads[i]);
        CHECK_MEM(e.ev.metadata, e.ev.metadata_len, payloads[i]);
        evs__event_parsed_free(&e);
    }
}

/* ----------------------------------------------------------- rendering */

static evs_event sample_event(void) {
    evs_event ev;
    memset(&ev, 0, sizeof ev);
    evs_uuid_parse(ID1, 36, &ev.event_id);
    ev.stream = "order-\"1\"\n\xC3\xA9";
    ev.stream_len = strlen(ev.stream);
    ev.stream_type = "order";
    ev.stream_type_len = 5;
    ev.event_type = "OrderPlaced";
    ev.event_type_len = 11;
    ev.data = "{\"a\":1.50,\"s\":\"x\\u00e9\\n\",\"l\":[true,null]}";
    ev.data_len = strlen(ev.data);
    ev.metadata = "{\"m\":{}}";
    ev.metadata_len = strlen(ev.metadata);
    ev.tags = "[\"vip\",\"eu\"]";
    ev.tags_len = strlen(ev.tags);
    ev.has_causation_id = 1;
    evs_uuid_parse(ID2, 36, &ev.causation_id);
    ev.event_version = 2;
    ev.stream_position = 7;
    ev.global_position = (uint64_t)INT64_MAX;
    evs_time_parse("2026-11-22T05:40:48.123456789Z", 30, &ev.occurred_at);
    evs_time_parse("2026-11-22T05:40:49.000000001Z", 30, &ev.recorded_at);
    return ev;
}

static void check_key_order(json_t *obj) {
    static const char *const order[] = {"global_position", "stream",       "stream_position", "event_id",
                                        "event_type",      "event_version", "stream_type",    "data",
                                        "metadata",        "causation_id", "correlation_id",  "tags",
                                        "occurred_at",     "recorded_at"};
    size_t i = 0;
    for (void *it = json_object_iter(obj); it; it = json_object_iter_next(obj, it), i++) {
        if (i < sizeof order / sizeof order[0]) CHECK_STR(json_object_iter_key(it), order[i]);
    }
    CHECK_INT(i, sizeof order / sizeof order[0]);
}

static void test_to_json(void) {
    evs_event ev = sample_event();
    char *out = NULL;
    size_t len = 0;
    CHECK_RC(evs_event_to_json(&ev, &out, &len), EVS_OK);
    if (!out) return;
    CHECK_INT(strlen(out), len);
    CHECK(memchr(out, '\n', len) == NULL);
    CHECK(strstr(out, ev.data) != NULL); /* verbatim, not re-serialised */
    evs_json_error err;
    CHECK_RC(evs__json_validate_object(out, len, &err), EVS_OK);

    json_error_t jerr;
    json_t *j = json_loadb(out, len, 0, &jerr);
    if (!j) {
        fprintf(stderr, "jansson rejected %s: %s\n", out, jerr.text);
        tu_failures++;
        free(out);
        return;
    }
    check_key_order(j);
    CHECK_INT(json_integer_value(json_object_get(j, "global_position")), INT64_MAX);
    CHECK_STR(json_string_value(json_object_get(j, "stream")), "order-\"1\"\n\xC3\xA9");
    CHECK_INT(json_integer_value(json_object_get(j, "stream_position")), 7);
    CHECK_STR(json_string_value(json_object_get(j, "event_id")), ID1);
    CHECK_STR(json_string_value(json_object_get(j, "event_type")), "OrderPlaced");
    CHECK_INT(json_integer_value(json_object_get(j, "event_version")), 2);
    CHECK_STR(json_string_value(json_object_get(j, "stream_type")), "order");
    json_t *data = json_object_get(j, "data");
    CHECK(json_is_object(data));
    CHECK(json_real_value(json_object_get(data, "a")) == 1.5);
    CHECK_STR(json_string_value(json_object_get(data, "s")), "x\xC3\xA9\n");
    CHECK(json_is_true(json_array_get(json_object_get(data, "l"), 0)));
    CHECK(json_is_object(json_object_get(json_object_get(j, "metadata"), "m")));
    CHECK_STR(json_string_value(json_object_get(j, "causation_id")), "0190a5c4-7b3e-7c2a-9d1e-2f3a4b5c6d7f");
    CHECK(json_is_null(json_object_get(j, "correlation_id")));
    json_t *tags = json_object_get(j, "tags");
    CHECK_INT(json_array_size(tags), 2);
    CHECK_STR(json_string_value(json_array_get(tags, 1)), "eu");
    CHECK_STR(json_string_value(json_object_get(j, "occurred_at")), "2026-11-22T05:40:48.123456789Z");
    CHECK_STR(json_string_value(json_object_get(j, "recorded_at")), "2026-11-22T05:40:49.000000001Z");
    json_decref(j);
    free(out);

    /* Absent parts: no metadata, no tags, no ids, a pretty-printed payload. */
    ev = sample_event();
    ev.global_position = 42;
    ev.metadata = NULL;
    ev.metadata_len = 0;
    ev.tags = NULL;
    ev.tags_len = 0;
    ev.has_causation_id = 0;
    ev.stream_type = NULL;
    ev.stream_type_len = 0;
    ev.data = "{\r\n  \"a\": [\n    1,\n    2\n  ]\n}";
    ev.data_len = strlen(ev.data);
    CHECK_RC(evs_event_to_json(&ev, &out, NULL), EVS_OK);
    if (!out) return;
    CHECK(strchr(out, '\n') == NULL && strchr(out, '\r') == NULL);
    CHECK(strstr(out, "\"data\":{    \"a\": [     1,     2   ] }") != NULL);
    j = json_loadb(out, strlen(out), 0, &jerr);
    CHECK(j != NULL);
    if (j) {
        check_key_order(j);
        CHECK_INT(json_integer_value(json_object_get(j, "global_position")), 42);
        CHECK_INT(json_object_size(json_object_get(j, "metadata")), 0);
        CHECK(json_is_object(json_object_get(j, "metadata")));
        CHECK(json_is_array(json_object_get(j, "tags")) && json_array_size(json_object_get(j, "tags")) == 0);
        CHECK(json_is_null(json_object_get(j, "causation_id")));
        CHECK(json_is_null(json_object_get(j, "correlation_id")));
        CHECK(json_is_null(json_object_get(j, "stream_type")));
        CHECK_INT(json_integer_value(json_array_get(json_object_get(json_object_get(j, "data"), "a"), 1)), 2);
        json_decref(j);
    }
    free(out);

    /* Positions are unsigned 64-bit, beyond what jansson reads back. */
    ev = sample_event();
    ev.global_position = UINT64_MAX;
    CHECK_RC(evs_event_to_json(&ev, &out, &len), EVS_OK);
    static const char head[] = "{\"global_position\":18446744073709551615,\"stream\":";
    if (out) CHECK(strncmp(out, head, sizeof head - 1) == 0);
    free(out);

    out = NULL;
    CHECK_RC(evs_event_to_json(NULL, &out, &len), EVS_EINVAL);
    CHECK(out == NULL);
}

/* What a client sends comes back out of evs_event_to_json unchanged. */
static void test_round_trip(void) {
    const char *in = "{\"event_type\":\"Shipped\",\"data\":{\"a\":1.50,\"b\":12345678901234567890},"
                     "\"metadata\":{\"by\":\"me\"},\"correlation_id\":\"" ID3 "\",\"tags\":[\"x\",\"y\"],"
                     "\"occurred_at\":1700000000000000001}";
    evs_event_parsed p;
    CHECK_RC(evs__event_from_json(in, strlen(in), &p, NULL), EVS_OK);
    evs_event ev;
    memset(&ev, 0, sizeof ev);
    evs_uuid_v7(&ev.event_id);
    ev.stream = "ship-1";
    ev.stream_len = 6;
    ev.event_type = p.ev.event_type;
    ev.event_type_len = strlen(p.ev.event_type);
    ev.data = p.ev.data;
    ev.data_len = p.ev.data_len;
    ev.metadata = p.ev.metadata;
    ev.metadata_len = p.ev.metadata_len;
    ev.has_correlation_id = p.ev.correlation_id != NULL;
    if (p.ev.correlation_id) ev.correlation_id = *p.ev.correlation_id;
    ev.tags = "[\"x\",\"y\"]";
    ev.tags_len = 9;
    ev.occurred_at = p.ev.occurred_at;
    ev.recorded_at = p.ev.occurred_at + 5;
    char *out = NULL;
    CHECK_RC(evs_event_to_json(&ev, &out, NULL), EVS_OK);
    if (out) {
        CHECK(strstr(out, ",\"data\":{\"a\":1.50,\"b\":12345678901234567890},\"metadata\":{\"by\":\"me\"},") != NULL);
        CHECK(strstr(out, "\"correlation_id\":\"" ID3 "\"") != NULL);
        CHECK(strstr(out, "\"occurred_at\":\"2023-11-14T22:13:20.000000001Z\"") != NULL);
        CHECK(strstr(out, "\"event_version\":1,") != NULL);
        evs_json_error err;
        CHECK_RC(evs__json_validate_object(out, strlen(out), &err), EVS_OK);
    }
    free(out);
    evs__event_parsed_free(&p);
}

int main(void) {
    test_all_fields();
    test_defaults_and_nulls();
    test_errors();
    test_verbatim();
    test_to_json();
    test_round_trip();
    return TEST_REPORT();
}
