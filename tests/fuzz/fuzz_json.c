/*
 * fuzz_json.c — libFuzzer target for the strict JSON validator, the span
 * helpers and the event envelope parser.
 *
 * Besides "no crash, no out-of-bounds read" (ASan/UBSan), every input is
 * cross-checked against jansson, an independent strict parser, loaded with
 * JSON_DECODE_ANY | JSON_ALLOW_NUL so that it judges the same language:
 *
 *   1. We accept  => jansson accepts, unless jansson's complaint is about a
 *      number's range ("too big integer", "real number overflow"): RFC 8259
 *      leaves number range to implementations and we store digits verbatim;
 *      or about \u0000 in an object key, which jansson's C-string keys
 *      cannot hold (valid JSON all the same).
 *   2. jansson accepts => we accept, unless our complaint is the nesting
 *      limit (ours is EVS_JSON_MAX_DEPTH = 512, jansson's is 2048), or it
 *      is a NUL byte right after a number or literal: jansson 2.14 skips
 *      that byte ("123\0", "[true\0]" load), which is jansson's bug (its
 *      lexer pushes the byte back and takes it for its own end marker).
 *
 * Any other disagreement aborts, so the fuzzer reports it as a crash.
 * Inputs the validator accepts are then walked with the iterators, every
 * string is decoded (must give valid UTF-8) and re-escaped (must round
 * trip), and evs__event_from_json's result is rendered with
 * evs_event_to_json, whose output must validate again.
 */
#define FUZZ_NAME "fuzz_json"
#include "fuzz_util.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "core/event_json.h"
#include "core/json.h"

static void check_string(evs_json_span s) {
    static char dec[1 << 16], esc[6 * (1 << 16) + 3], back[1 << 16];
    long k = evs__json_string_decode(s, dec, sizeof dec);
    if (k < 0) return; /* holds U+0000 or too long for our buffer */
    FUZZ_ASSERT(evs__utf8_valid(dec, (size_t)k, NULL), "decoded string is not UTF-8");
    FUZZ_ASSERT(evs__json_string_eq(s, dec), "string_eq disagrees with decode");
    size_t e = evs__json_escape(dec, (size_t)k, esc, sizeof esc);
    FUZZ_ASSERT(e < sizeof esc, "escape too long");
    FUZZ_ASSERT(evs__json_validate(esc, e, NULL) == EVS_OK, "escaped string does not validate: %s", esc);
    long k2 = evs__json_string_decode((evs_json_span){esc, e, EVS_JSON_STRING}, back, sizeof back);
    FUZZ_ASSERT(k2 == k && memcmp(back, dec, (size_t)k) == 0, "escape round trip changed the string");
}

static void walk(evs_json_span v, int depth) {
    evs_json_iter it;
    evs_json_span key, val;
    FUZZ_ASSERT(v.type != EVS_JSON_INVALID && v.n > 0, "iterator produced an invalid span");
    if (v.type == EVS_JSON_STRING) check_string(v);
    if (v.type == EVS_JSON_NUMBER) {
        int64_t x;
        (void)evs__json_int64(v, &x);
    }
    if (v.type == EVS_JSON_OBJECT) {
        FUZZ_ASSERT(evs__json_iter_init(&it, v) == EVS_OK, "iter_init on object");
        while (evs__json_iter_member(&it, &key, &val)) {
            check_string(key);
            walk(val, depth + 1);
        }
    } else if (v.type == EVS_JSON_ARRAY) {
        FUZZ_ASSERT(evs__json_iter_init(&it, v) == EVS_OK, "iter_init on array");
        while (evs__json_iter_element(&it, &val)) walk(val, depth + 1);
    }
}

static void check_envelope(const char *p, size_t n) {
    evs_event_parsed e;
    evs_json_error err;
    if (evs__event_from_json(p, n, &e, &err) != EVS_OK) return;
    const evs_event_in *in = &e.ev;
    FUZZ_ASSERT(in->data >= p && in->data + in->data_len <= p + n, "data span outside the input");
    FUZZ_ASSERT(evs__json_validate_object(in->data, in->data_len, NULL) == EVS_OK, "data span is not an object");
    if (in->metadata)
        FUZZ_ASSERT(evs__json_validate_object(in->metadata, in->metadata_len, NULL) == EVS_OK,
                    "metadata span is not an object");

    evs_event ev;
    memset(&ev, 0, sizeof ev);
    if (in->event_id) ev.event_id = *in->event_id;
    ev.stream = "fuzz-1";
    ev.stream_len = 6;
    ev.event_type = in->event_type;
    ev.event_type_len = strlen(in->event_type);
    ev.stream_type = in->stream_type;
    ev.stream_type_len = in->stream_type ? strlen(in->stream_type) : 0;
    ev.data = in->data;
    ev.data_len = in->data_len;
    ev.metadata = in->metadata;
    ev.metadata_len = in->metadata_len;
    ev.has_causation_id = in->causation_id != NULL;
    if (in->causation_id) ev.causation_id = *in->causation_id;
    ev.event_version = in->event_version;
    ev.occurred_at = in->occurred_at;
    char *out = NULL;
    size_t len = 0;
    FUZZ_ASSERT(evs_event_to_json(&ev, &out, &len) == EVS_OK, "to_json failed: %s", evs_errmsg());
    FUZZ_ASSERT(evs__json_validate_object(out, len, NULL) == EVS_OK, "to_json output invalid: %s", evs_errmsg());
    FUZZ_ASSERT(memchr(out, '\n', len) == NULL, "to_json output has a newline");
    free(out);
    evs__event_parsed_free(&e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *p = (const char *)data;
    evs_json_error err;
    int ours = evs__json_validate(p, size, &err);
    FUZZ_ASSERT(ours == EVS_OK || ours == EVS_EJSON, "unexpected rc %d", ours);
    if (ours == EVS_EJSON)
        FUZZ_ASSERT(err.offset <= size && err.line >= 1 && err.column >= 1, "bad error position");

    json_error_t jerr;
    json_t *j = json_loadb(p, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (ours == EVS_OK && !j)
        FUZZ_ASSERT(strstr(jerr.text, "too big") || strstr(jerr.text, "overflow") ||
                        strstr(jerr.text, "NUL byte in object key"),
                    "we accept, jansson rejects: %s", jerr.text);
    if (ours != EVS_OK && j) {
        int nul_after_token = err.offset > 0 && err.offset < size && data[err.offset] == '\0' &&
                              strchr("0123456789elu", data[err.offset - 1]) != NULL;
        FUZZ_ASSERT(strstr(err.msg, "nesting deeper than") || nul_after_token, "jansson accepts, we reject: %s",
                    err.msg);
    }
    json_decref(j);

    if (ours == EVS_OK) walk(evs__json_root(p, size), 0);
    check_envelope(p, size);
    return 0;
}
