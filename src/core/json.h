/*
 * json.h — strict, allocation-free JSON validation and span iteration.
 *
 * The append path must check that data and metadata are well-formed JSON
 * objects (RFC 8259) without building a DOM and without changing a byte:
 * stored bytes are exactly the bytes received.  evs__json_validate walks a
 * buffer once and either accepts it or says what is wrong and where (line
 * and column).  A validated buffer can then be walked with the iterators
 * below, which hand out byte spans into the buffer, not copies.
 */
#ifndef EVS_JSON_H
#define EVS_JSON_H

#include <stddef.h>
#include <stdint.h>

#define EVS_JSON_MAX_DEPTH 512

typedef struct evs_json_error {
    size_t offset;        /* byte offset of the problem */
    unsigned line;        /* 1-based */
    unsigned column;      /* 1-based, in bytes */
    char msg[160];        /* "line 3, column 17: expected ',' or '}'" */
} evs_json_error;

/* Any JSON value with optional surrounding whitespace.  EVS_OK or EVS_EJSON. */
int evs__json_validate(const char *p, size_t n, evs_json_error *err);
/* As above, and the value must be an object.  EVS_OK, EVS_EJSON. */
int evs__json_validate_object(const char *p, size_t n, evs_json_error *err);

typedef enum evs_json_type {
    EVS_JSON_INVALID = 0, EVS_JSON_OBJECT, EVS_JSON_ARRAY, EVS_JSON_STRING,
    EVS_JSON_NUMBER, EVS_JSON_TRUE, EVS_JSON_FALSE, EVS_JSON_NULL
} evs_json_type;

typedef struct evs_json_span {
    const char *p;        /* the value's bytes, quotes included for strings */
    size_t n;
    evs_json_type type;
} evs_json_span;

/* Iterate an object or array of an already validated buffer. */
typedef struct evs_json_iter {
    const char *p, *end;
    int first;
} evs_json_iter;

int evs__json_iter_init(evs_json_iter *it, evs_json_span container);
/* Object members: 1 with key (quotes included) and value, 0 at the end. */
int evs__json_iter_member(evs_json_iter *it, evs_json_span *key, evs_json_span *value);
/* Array elements: 1 with value, 0 at the end. */
int evs__json_iter_element(evs_json_iter *it, evs_json_span *value);
/* The top-level value of a validated buffer (whitespace trimmed). */
evs_json_span evs__json_root(const char *p, size_t n);

/*
 * Decode a string span (with quotes) into out (cap bytes, NUL-terminated).
 * Returns the decoded length, or -1 if it does not fit or is not a string,
 * or contains U+0000.
 */
long evs__json_string_decode(evs_json_span s, char *out, size_t cap);
/* 1 if the string span equals the literal key (compares decoded text). */
int evs__json_string_eq(evs_json_span s, const char *lit);
/* Parse an integer span into *out; EVS_EINVAL for fractions, exponents, overflow. */
int evs__json_int64(evs_json_span s, int64_t *out);

/* "object", "array", "string", "number", "true", "false", "null" or "invalid". */
const char *evs__json_type_name(evs_json_type t);
/* 1-based line (counting LF) and byte column of offset within p. */
void evs__json_position(const char *p, size_t offset, unsigned *line, unsigned *column);

/* Append JSON-escaped text with quotes into buf; returns bytes needed (like snprintf).
   Bytes that are not valid UTF-8 are written as \ufffd, so the output is always valid JSON. */
size_t evs__json_escape(const char *s, size_t n, char *buf, size_t cap);

#endif
