/*
 * format.c — the three `format` values the schema subset asserts (any
 * other format is refused when a schema compiles, so none is silently
 * ignored):
 *
 *   date-time  RFC 3339 section 5.6 date-time: YYYY-MM-DDTHH:MM:SS, an
 *              optional fraction, then Z or +HH:MM / -HH:MM; T and Z in
 *              either case; the day must exist in its month; a leap second
 *              (:60) only where it falls at 23:59:60 UTC.
 *   uuid       RFC 4122 text: 8-4-4-4-12 hex digits, either case.
 *   email      RFC 5322 addr-spec without comments or folding white space:
 *              a dot-atom or quoted-string local part, '@', and a dot-atom
 *              domain or a [domain literal]; at most 254 bytes (RFC 5321's
 *              path limit) and 64 before the '@'.
 */
#include <string.h>

#include "schema/jschema.h"

static int digits(const char *s, size_t n, size_t at, size_t k, int *out) {
    int v = 0;
    if (at + k > n) return 0;
    for (size_t i = 0; i < k; i++) {
        char c = s[at + i];
        if (c < '0' || c > '9') return 0;
        v = v * 10 + (c - '0');
    }
    *out = v;
    return 1;
}

static int days_in(int y, int m) {
    static const int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) return 29;
    return d[m - 1];
}

int evs__format_date_time(const char *s, size_t n) {
    int y, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0;
    if (!digits(s, n, 0, 4, &y) || n < 20 || s[4] != '-' || !digits(s, n, 5, 2, &mo) || s[7] != '-' ||
        !digits(s, n, 8, 2, &d))
        return 0;
    if (s[10] != 'T' && s[10] != 't') return 0;
    if (!digits(s, n, 11, 2, &h) || s[13] != ':' || !digits(s, n, 14, 2, &mi) || s[16] != ':' ||
        !digits(s, n, 17, 2, &sec))
        return 0;
    if (mo < 1 || mo > 12 || d < 1 || d > days_in(y, mo) || h > 23 || mi > 59 || sec > 60) return 0;
    size_t i = 19;
    if (i < n && s[i] == '.') {
        i++;
        size_t f = i;
        while (i < n && s[i] >= '0' && s[i] <= '9') i++;
        if (i == f) return 0;
    }
    if (i >= n) return 0;
    if (s[i] == 'Z' || s[i] == 'z') {
        i++;
    } else if (s[i] == '+' || s[i] == '-') {
        sign = s[i] == '+' ? 1 : -1;
        if (!digits(s, n, i + 1, 2, &oh) || i + 3 >= n || s[i + 3] != ':' || !digits(s, n, i + 4, 2, &om))
            return 0;
        if (oh > 23 || om > 59) return 0;
        i += 6;
    } else {
        return 0;
    }
    if (i != n) return 0;
    if (sec == 60) {
        /* leap seconds are inserted at the end of a UTC day */
        int utc = (h * 60 + mi - sign * (oh * 60 + om)) % 1440;
        if (utc < 0) utc += 1440;
        if (utc != 23 * 60 + 59) return 0;
    }
    return 1;
}

int evs__format_uuid(const char *s, size_t n) {
    if (n != 36) return 0;
    for (size_t i = 0; i < 36; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-') return 0;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
            return 0;
        }
    }
    return 1;
}

/* RFC 5322 atext. */
static int atext(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

/* A dot-atom: atoms of atext joined by single dots. */
static int dot_atom(const char *s, size_t n) {
    if (n == 0 || s[0] == '.' || s[n - 1] == '.') return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (s[i + 1] == '.') return 0;
        } else if (!atext(c)) {
            return 0;
        }
    }
    return 1;
}

static int quoted(const char *s, size_t n) {
    if (n < 2 || s[0] != '"' || s[n - 1] != '"') return 0;
    for (size_t i = 1; i + 1 < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\\') {
            i++;
            if (i + 1 >= n) return 0;
            c = (unsigned char)s[i];
            if (c < 0x20 && c != '\t') return 0;
            continue;
        }
        if (c == '"' || (c < 0x20 && c != '\t') || c == 0x7f) return 0;
    }
    return 1;
}

static int domain_literal(const char *s, size_t n) {
    if (n < 2 || s[0] != '[' || s[n - 1] != ']') return 0;
    for (size_t i = 1; i + 1 < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 33 || c > 126 || c == '[' || c == ']' || c == '\\') return 0;
    }
    return 1;
}

int evs__format_email(const char *s, size_t n) {
    if (n > 254) return 0;
    /* the local part may be quoted and hold '@': the domain starts after the last '@' */
    const char *at = NULL;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '@') at = s + i;
    if (!at) return 0;
    size_t ln = (size_t)(at - s), dn = n - ln - 1;
    if (ln == 0 || ln > 64 || dn == 0) return 0;
    if (!(dot_atom(s, ln) || quoted(s, ln))) return 0;
    return dot_atom(at + 1, dn) || domain_literal(at + 1, dn);
}
