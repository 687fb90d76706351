/*
 * regex.c — ECMA-262 patterns (JSON Schema's `pattern`) on POSIX regcomp /
 * regexec, which libc has; no regex library is added.
 *
 * JSON Schema asks for ECMA-262 syntax; POSIX extended regular expressions
 * share the core (literals, ., [], [^], *, +, ?, {n,m}, |, (), ^, $) and
 * differ in the escapes, so a pattern is translated first:
 *
 *   \d \D \w \W \s \S   -> [0-9] [^0-9] [A-Za-z0-9_] [^A-Za-z0-9_]
 *                          [[:space:]] [^[:space:]] (inside [...]: the
 *                          positive ones only; [\D] and kin are refused)
 *   \b \B               -> GNU's \b \B (word boundaries)
 *   \t \n \r \f \v \xHH \uHHHH (surrogate pairs too), \/ \- \. ... (identity
 *                          escapes) -> the literal character
 *   .                   -> any character but \n \r U+2028 U+2029, as ECMA
 *   (?:...) (?<name>...) -> a plain group
 *   *? +? ?? {n,m}?     -> the greedy form: whether a match exists does not
 *                          depend on laziness, and that is all we ask
 *   a { that does not start a quantifier is a literal, as in ECMA
 *
 * Refused with a message (never silently changed): lookahead and
 * lookbehind, backreferences (\1, \k<name>), \0, \c, \p{...}, empty
 * classes [] and [^], classes with negated escapes, lone surrogates.
 *
 * Compilation and matching run under the C.UTF-8 locale (uselocale, per
 * thread, so the process locale is untouched), so . and [^a] match one
 * character, not one byte.  glibc will not compile ranges with non-ASCII
 * ends there ([à-ÿ]), so those are listed character by character (at most
 * 1024 characters; more is refused).  Remaining
 * differences from ECMA: matching is leftmost-longest instead of
 * backtracking (only visible in captures, which we never use); [[:space:]]
 * is glibc's idea of white space (no U+00A0, no U+FEFF); ECMA counts in
 * UTF-16 units, so a{2} needs two code points here but "😀" (one code
 * point, two units) would match .{2} in ECMA; ECMA's case-insensitive and
 * multiline flags do not exist in JSON Schema anyway.
 *
 * Cost: glibc expands counted repetitions into copies of their operand, so
 * (a{100}){100} is ten thousand states.  The translation keeps the size the
 * expansion would have and refuses patterns over EVS_REGEX_MAX_COST.
 */
#include <locale.h>
#include <pthread.h>
#include <regex.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "core/sb.h"
#include "schema/regex.h"

struct evs__regex {
    regex_t re;               /* compiled under C.UTF-8 */
    regex_t bytes;            /* the same under C, when the expression is ASCII: for ASCII text */
    int has_bytes;
};

/* ----------------------------------------------------------- the locale */

static locale_t utf8_locale, c_locale;
static pthread_once_t utf8_once = PTHREAD_ONCE_INIT;

static void utf8_init(void) {
    utf8_locale = newlocale(LC_CTYPE_MASK | LC_COLLATE_MASK, "C.UTF-8", (locale_t)0);
    c_locale = newlocale(LC_CTYPE_MASK | LC_COLLATE_MASK, "C", (locale_t)0);
}

/* Switch this thread to C.UTF-8 (utf8) or C (when the system has it); returns the old locale or 0. */
static locale_t enter(int utf8) {
    pthread_once(&utf8_once, utf8_init);
    locale_t l = utf8 ? utf8_locale : c_locale;
    return l ? uselocale(l) : (locale_t)0;
}

static void leave(locale_t old) {
    if (old) uselocale(old);
}

static int ascii(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80) return 0;
    return 1;
}

/* ---------------------------------------------------------- translation */

#define MAX_DEPTH 64

typedef struct tr {
    const unsigned char *p;
    size_t i, n;
    evs__sb out;
    char *why;
    size_t cap;
    int failed;
    /* cost: per group depth, the total so far and the size of the last atom */
    uint64_t total[MAX_DEPTH + 1], last[MAX_DEPTH + 1];
    int depth;
} tr;

static int refuse(tr *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int refuse(tr *t, const char *fmt, ...) {
    if (t->failed) return -1;
    t->failed = 1;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(t->why, t->cap, fmt, ap);
    va_end(ap);
    if (k >= 0 && (size_t)k < t->cap)
        snprintf(t->why + k, t->cap - (size_t)k, " (at byte %zu of the pattern)", t->i + 1);
    return -1;
}

static void atom(tr *t, uint64_t size) {
    t->last[t->depth] = size;
    t->total[t->depth] += size;
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* n hex digits at t->i; -1 when they are not there. */
static long hexn(tr *t, size_t at, int n) {
    long v = 0;
    for (int k = 0; k < n; k++) {
        if (at + (size_t)k >= t->n) return -1;
        int h = hexval(t->p[at + (size_t)k]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

static size_t utf8_len(unsigned char c) {
    if (c < 0x80) return 1;
    if ((c & 0xe0) == 0xc0) return 2;
    if ((c & 0xf0) == 0xe0) return 3;
    return 4;
}

static uint32_t utf8_decode(const unsigned char *p, size_t n, size_t *used) {
    size_t k = utf8_len(p[0]);
    if (k > n) k = n;
    *used = k;
    if (k == 1) return p[0];
    uint32_t cp = p[0] & (0x7f >> k);
    for (size_t j = 1; j < k; j++) cp = (cp << 6) | (p[j] & 0x3f);
    return cp;
}

static void put_utf8(evs__sb *b, uint32_t cp) {
    char u[4];
    size_t k;
    if (cp < 0x80) u[0] = (char)cp, k = 1;
    else if (cp < 0x800) u[0] = (char)(0xc0 | cp >> 6), u[1] = (char)(0x80 | (cp & 0x3f)), k = 2;
    else if (cp < 0x10000)
        u[0] = (char)(0xe0 | cp >> 12), u[1] = (char)(0x80 | ((cp >> 6) & 0x3f)), u[2] = (char)(0x80 | (cp & 0x3f)), k = 3;
    else
        u[0] = (char)(0xf0 | cp >> 18), u[1] = (char)(0x80 | ((cp >> 12) & 0x3f)),
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3f)), u[3] = (char)(0x80 | (cp & 0x3f)), k = 4;
    evs__sb_add(b, u, k);
}

/* A literal character outside brackets. */
static void put_literal(tr *t, uint32_t cp) {
    if (cp < 0x80 && strchr(".[]()*+?{}|^$\\", (int)cp)) evs__sb_add(&t->out, "\\", 1);
    put_utf8(&t->out, cp);
    atom(t, 1);
}

/*
 * \u escapes: a code point, combining a surrogate pair; -1 after refusing.
 * t->i is at the 'u'; on success it is past the escape.
 */
static long unicode_escape(tr *t) {
    long hi = hexn(t, t->i + 1, 4);
    if (hi < 0) return refuse(t, "\\u needs four hex digits"), -1;
    t->i += 5;
    if (hi >= 0xd800 && hi <= 0xdbff) {
        long lo = t->i + 1 < t->n && t->p[t->i] == '\\' && t->p[t->i + 1] == 'u' ? hexn(t, t->i + 2, 4) : -1;
        if (lo < 0xdc00 || lo > 0xdfff) return refuse(t, "lone UTF-16 surrogate \\u%04lX", hi), -1;
        t->i += 6;
        return 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
    }
    if (hi >= 0xdc00 && hi <= 0xdfff) return refuse(t, "lone UTF-16 surrogate \\u%04lX", hi), -1;
    if (hi == 0) return refuse(t, "\\u0000 (NUL) is not supported in patterns"), -1;
    return hi;
}

/*
 * An escape that stands for one character: t->i is past the backslash.
 * Returns the code point, or -1 after refusing.  Class escapes (\d...) are
 * handled by the callers before this.
 */
static long char_escape(tr *t, int in_class) {
    unsigned char e = t->p[t->i];
    switch (e) {
    case 't': t->i++; return '\t';
    case 'n': t->i++; return '\n';
    case 'r': t->i++; return '\r';
    case 'f': t->i++; return '\f';
    case 'v': t->i++; return '\v';
    case 'b':
        if (in_class) {
            t->i++;
            return '\b';
        }
        break;
    case 'x': {
        long v = hexn(t, t->i + 1, 2);
        if (v < 0) return refuse(t, "\\x needs two hex digits"), -1;
        if (v == 0) return refuse(t, "\\x00 (NUL) is not supported in patterns"), -1;
        t->i += 3;
        return v;
    }
    case 'u': return unicode_escape(t);
    case 'c': return refuse(t, "control escapes (\\c) are not supported"), -1;
    case 'k': return refuse(t, "named backreferences (\\k) are not supported"), -1;
    case 'p':
    case 'P': return refuse(t, "Unicode property escapes (\\%c) are not supported", e), -1;
    case '0': return refuse(t, "\\0 (NUL) is not supported in patterns"), -1;
    default: break;
    }
    if (e >= '1' && e <= '9') return refuse(t, "backreferences (\\%c) are not supported", e), -1;
    if (e >= 0x80) {
        size_t used;
        uint32_t cp = utf8_decode(t->p + t->i, t->n - t->i, &used);
        t->i += used;
        return cp;
    }
    t->i++;
    return e; /* an identity escape: \/ \. \- \{ ... */
}

/* ------------------------------------------------- bracket expressions */

typedef struct cset {
    uint32_t (*r)[2];
    size_t n, cap;
    int digit, space, oom;
} cset;

static void cset_add(cset *c, uint32_t lo, uint32_t hi) {
    if (c->n == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 16;
        void *np = realloc(c->r, ncap * sizeof *c->r);
        if (!np) {
            c->oom = 1;
            return;
        }
        c->r = np;
        c->cap = ncap;
    }
    c->r[c->n][0] = lo;
    c->r[c->n][1] = hi;
    c->n++;
}

static void cset_word(cset *c) {
    cset_add(c, 'A', 'Z');
    cset_add(c, 'a', 'z');
    cset_add(c, '0', '9');
    cset_add(c, '_', '_');
}

/*
 * One class atom at t->i: 1 with *cp for a character, 2 for a class escape
 * added to c, -1 after refusing.
 */
static int class_atom(tr *t, cset *c, uint32_t *cp) {
    if (t->p[t->i] != '\\') {
        size_t used;
        *cp = utf8_decode(t->p + t->i, t->n - t->i, &used);
        t->i += used;
        return 1;
    }
    t->i++;
    if (t->i >= t->n) return refuse(t, "the pattern ends with a backslash");
    switch (t->p[t->i]) {
    case 'd': t->i++; c->digit = 1; return 2;
    case 's': t->i++; c->space = 1; return 2;
    case 'w': t->i++; cset_word(c); return 2;
    case 'D':
    case 'S':
    case 'W': return refuse(t, "negated class escapes (\\%c) inside [...] are not supported", t->p[t->i]);
    default: break;
    }
    long v = char_escape(t, 1);
    if (v < 0) return -1;
    *cp = (uint32_t)v;
    return 1;
}

/*
 * Write the set as a POSIX bracket body; ] first, - last, ^ and [ as
 * equivalence classes.  glibc refuses ranges with non-ASCII endpoints under
 * C.UTF-8 ("Invalid collation character"), so those are listed character by
 * character, up to EVS_REGEX_MAX_LISTED of them.
 */
#define EVS_REGEX_MAX_LISTED 1024u
static int cset_emit(tr *t, cset *c, int neg) {
    int rbr = 0, dash = 0, caret = 0, lbr = 0;
    evs__sb *b = &t->out;
    evs__sb_add(b, neg ? "[^" : "[", neg ? 2 : 1);
    /* take the special characters out of the ranges (splitting them) */
    static const uint32_t special[] = {']', '-', '^', '['};
    for (size_t s = 0; s < 4; s++) {
        uint32_t x = special[s];
        for (size_t k = 0; k < c->n; k++) {
            uint32_t lo = c->r[k][0], hi = c->r[k][1];
            if (x < lo || x > hi) continue;
            if (x == ']') rbr = 1;
            if (x == '-') dash = 1;
            if (x == '^') caret = 1;
            if (x == '[') lbr = 1;
            if (lo == hi) {
                c->r[k][0] = 1, c->r[k][1] = 0; /* empty */
            } else if (x == lo) {
                c->r[k][0] = lo + 1;
            } else if (x == hi) {
                c->r[k][1] = hi - 1;
            } else {
                c->r[k][1] = x - 1;
                cset_add(c, x + 1, hi);
            }
        }
    }
    if (rbr) evs__sb_add(b, "]", 1);
    uint64_t listed = 0;
    for (size_t k = 0; k < c->n; k++) {
        uint32_t lo = c->r[k][0], hi = c->r[k][1];
        if (lo > hi) continue;
        if (hi < 0x80 || lo == hi) {
            put_utf8(b, lo);
            if (hi > lo) {
                evs__sb_add(b, "-", 1);
                put_utf8(b, hi);
            }
            continue;
        }
        if (lo < 0x80) {
            put_utf8(b, lo);
            if (lo < 0x7f) {
                evs__sb_add(b, "-", 1);
                put_utf8(b, 0x7f);
            }
            lo = 0x80;
        }
        listed += hi - lo + 1;
        if (listed > EVS_REGEX_MAX_LISTED)
            return refuse(t, "character class ranges beyond ASCII may cover at most %u characters", EVS_REGEX_MAX_LISTED);
        for (uint32_t cp = lo; cp <= hi; cp++)
            if (cp < 0xd800 || cp > 0xdfff) put_utf8(b, cp);
    }
    if (c->digit) evs__sb_adds(b, "[:digit:]");
    if (c->space) evs__sb_adds(b, "[:space:]");
    if (lbr) evs__sb_adds(b, "[=[=]");
    if (caret) evs__sb_adds(b, "[=^=]");
    if (dash) evs__sb_add(b, "-", 1);
    evs__sb_add(b, "]", 1);
    return 0;
}

/* t->i is at '['. */
static int bracket(tr *t) {
    cset c;
    memset(&c, 0, sizeof c);
    int neg = 0, rc = -1;
    t->i++;
    if (t->i < t->n && t->p[t->i] == '^') neg = 1, t->i++;
    if (t->i < t->n && t->p[t->i] == ']') {
        refuse(t, "empty character class [%s] is not supported", neg ? "^" : "");
        goto out;
    }
    for (;;) {
        if (t->i >= t->n) {
            refuse(t, "unterminated character class");
            goto out;
        }
        if (t->p[t->i] == ']') break;
        uint32_t a = 0, z = 0;
        int k = class_atom(t, &c, &a);
        if (k < 0) goto out;
        if (k == 1 && t->i + 1 < t->n && t->p[t->i] == '-' && t->p[t->i + 1] != ']') {
            t->i++;
            int k2 = class_atom(t, &c, &z);
            if (k2 < 0) goto out;
            if (k2 == 1) {
                if (z < a) {
                    refuse(t, "range out of order in character class");
                    goto out;
                }
                cset_add(&c, a, z);
            } else {
                cset_add(&c, a, a); /* [a-\d]: a, '-' and the digits, as ECMA reads it */
                cset_add(&c, '-', '-');
            }
        } else if (k == 1) {
            cset_add(&c, a, a);
        }
    }
    t->i++;
    if (c.oom) {
        refuse(t, "out of memory");
        goto out;
    }
    if (cset_emit(t, &c, neg)) goto out;
    atom(t, 1);
    rc = 0;
out:
    free(c.r);
    return rc;
}

/* ------------------------------------------------------------ the rest */

/* {n}, {n,}, {n,m} at t->i: 1 with the larger bound in *bound and t->i past it, 0 if not a quantifier. */
static int counted(tr *t, uint64_t *bound, size_t *end) {
    size_t i = t->i + 1;
    uint64_t a = 0, b = 0;
    int da = 0, db = 0, comma = 0;
    while (i < t->n && t->p[i] >= '0' && t->p[i] <= '9') {
        if (a < 1000000) a = a * 10 + (t->p[i] - '0');
        i++, da++;
    }
    if (!da) return 0;
    if (i < t->n && t->p[i] == ',') {
        comma = 1;
        i++;
        while (i < t->n && t->p[i] >= '0' && t->p[i] <= '9') {
            if (b < 1000000) b = b * 10 + (t->p[i] - '0');
            i++, db++;
        }
    }
    if (i >= t->n || t->p[i] != '}') return 0;
    *bound = comma ? (db ? b : a + 1) : a;
    if (comma && db && b < a) return -1;
    *end = i + 1;
    return 1;
}

static int quantifier(tr *t, uint64_t times, const char *text, size_t len) {
    if (t->last[t->depth] == 0) return refuse(t, "nothing to repeat");
    uint64_t grow = t->last[t->depth] * (times ? times - 1 : 0);
    t->total[t->depth] += grow;
    t->last[t->depth] = 0; /* a quantifier cannot follow a quantifier */
    if (t->total[t->depth] > EVS_REGEX_MAX_COST)
        return refuse(t, "the pattern is too expensive: counted repetitions expand to more than %u atoms",
                      EVS_REGEX_MAX_COST);
    evs__sb_add(&t->out, text, len);
    if (t->i < t->n && t->p[t->i] == '?') t->i++; /* lazy: same matches */
    return 0;
}

int evs__regex_translate(const char *src, size_t len, char **ere, char *why, size_t cap) {
    tr t;
    memset(&t, 0, sizeof t);
    t.p = (const unsigned char *)src;
    t.n = len;
    t.why = why;
    t.cap = cap;
    *ere = NULL;
    if (len > EVS_REGEX_MAX_SOURCE) {
        snprintf(why, cap, "the pattern is %zu bytes, at most %u", len, EVS_REGEX_MAX_SOURCE);
        return EVS_EINVAL;
    }
    if (memchr(src, 0, len)) {
        snprintf(why, cap, "the pattern holds a NUL character");
        return EVS_EINVAL;
    }
    while (t.i < t.n && !t.failed) {
        unsigned char c = t.p[t.i];
        switch (c) {
        case '\\': {
            t.i++;
            if (t.i >= t.n) {
                refuse(&t, "the pattern ends with a backslash");
                break;
            }
            const char *cls = NULL;
            switch (t.p[t.i]) {
            case 'd': cls = "[0-9]"; break;
            case 'D': cls = "[^0-9]"; break;
            case 'w': cls = "[A-Za-z0-9_]"; break;
            case 'W': cls = "[^A-Za-z0-9_]"; break;
            case 's': cls = "[[:space:]]"; break;
            case 'S': cls = "[^[:space:]]"; break;
            case 'b': cls = "\\b"; break;
            case 'B': cls = "\\B"; break;
            default: break;
            }
            if (cls) {
                t.i++;
                evs__sb_adds(&t.out, cls);
                atom(&t, cls[1] == 'b' || cls[1] == 'B' ? 0 : 1);
                break;
            }
            long v = char_escape(&t, 0);
            if (v >= 0) put_literal(&t, (uint32_t)v);
            break;
        }
        case '[': bracket(&t); break;
        case '(':
            if (t.depth == MAX_DEPTH) {
                refuse(&t, "groups nested deeper than %d", MAX_DEPTH);
                break;
            }
            if (t.i + 1 < t.n && t.p[t.i + 1] == '?') {
                if (t.i + 2 < t.n && t.p[t.i + 2] == ':') {
                    t.i += 3;
                } else if (t.i + 3 < t.n && t.p[t.i + 2] == '<' && t.p[t.i + 3] != '=' && t.p[t.i + 3] != '!') {
                    const unsigned char *gt = memchr(t.p + t.i, '>', t.n - t.i);
                    if (!gt) {
                        refuse(&t, "unterminated group name");
                        break;
                    }
                    t.i = (size_t)(gt - t.p) + 1;
                } else {
                    refuse(&t, "lookahead and lookbehind assertions are not supported");
                    break;
                }
            } else {
                t.i++;
            }
            evs__sb_add(&t.out, "(", 1);
            t.depth++;
            t.total[t.depth] = t.last[t.depth] = 0;
            break;
        case ')': {
            if (t.depth == 0) {
                refuse(&t, "unmatched ')'");
                break;
            }
            t.i++;
            uint64_t inner = t.total[t.depth] ? t.total[t.depth] : 1;
            t.depth--;
            evs__sb_add(&t.out, ")", 1);
            atom(&t, inner);
            break;
        }
        case '.':
            t.i++;
            evs__sb_adds(&t.out, "[^\n\r\xe2\x80\xa8\xe2\x80\xa9]");
            atom(&t, 1);
            break;
        case '*':
        case '+':
        case '?':
            t.i++;
            quantifier(&t, c == '?' ? 1 : 2, (const char *)&c, 1);
            break;
        case '{': {
            uint64_t bound;
            size_t end;
            int q = counted(&t, &bound, &end);
            if (q < 0) {
                refuse(&t, "numbers out of order in {} quantifier");
                break;
            }
            if (q == 0) {
                t.i++;
                put_literal(&t, '{');
                break;
            }
            size_t start = t.i;
            t.i = end;
            quantifier(&t, bound, (const char *)t.p + start, end - start);
            break;
        }
        case '}':
            t.i++;
            put_literal(&t, '}');
            break;
        case '|':
            t.i++;
            evs__sb_add(&t.out, "|", 1);
            t.last[t.depth] = 0;
            break;
        case '^':
        case '$':
            t.i++;
            evs__sb_add(&t.out, (const char *)&c, 1);
            t.last[t.depth] = 0;
            break;
        default: {
            size_t used;
            uint32_t cp = utf8_decode(t.p + t.i, t.n - t.i, &used);
            t.i += used;
            put_literal(&t, cp);
            break;
        }
        }
    }
    if (!t.failed && t.depth) refuse(&t, "unterminated group");
    if (!t.failed && t.out.oom) refuse(&t, "out of memory");
    if (t.failed) {
        evs__sb_free(&t.out);
        return EVS_EINVAL;
    }
    size_t n;
    *ere = evs__sb_take(&t.out, &n);
    if (!*ere) {
        snprintf(why, cap, "out of memory");
        return EVS_ENOMEM;
    }
    return EVS_OK;
}

int evs__regex_compile(const char *src, size_t len, evs__regex **out, char *why, size_t cap) {
    *out = NULL;
    char *ere;
    int rc = evs__regex_translate(src, len, &ere, why, cap);
    if (rc) return rc;
    evs__regex *r = calloc(1, sizeof *r);
    if (!r) {
        free(ere);
        snprintf(why, cap, "out of memory");
        return EVS_ENOMEM;
    }
    locale_t old = enter(1);
    int e = regcomp(&r->re, ere, REG_EXTENDED | REG_NOSUB);
    leave(old);
    if (e) {
        char msg[160];
        regerror(e, &r->re, msg, sizeof msg);
        snprintf(why, cap, "the pattern does not compile: %s", msg);
        free(ere);
        free(r);
        return e == REG_ESPACE ? EVS_ENOMEM : EVS_EINVAL;
    }
    /*
     * An ASCII expression means the same byte by byte on ASCII text, and
     * glibc matches about three times faster without multibyte decoding:
     * keep a second compilation for the text that allows it.
     */
    if (ascii(ere, strlen(ere))) {
        old = enter(0);
        r->has_bytes = regcomp(&r->bytes, ere, REG_EXTENDED | REG_NOSUB) == 0;
        leave(old);
    }
    free(ere);
    *out = r;
    return EVS_OK;
}

void evs__regex_free(evs__regex *r) {
    if (!r) return;
    regfree(&r->re);
    if (r->has_bytes) regfree(&r->bytes);
    free(r);
}

int evs__regex_search(const evs__regex *r, const char *s, size_t n) {
    regmatch_t m[1];
    m[0].rm_so = 0;
    m[0].rm_eo = (regoff_t)n;
    int bytes = r->has_bytes && ascii(s, n);
    locale_t old = enter(!bytes);
    int e = regexec(bytes ? &r->bytes : &r->re, s, 1, m, REG_STARTEND);
    leave(old);
    return e == 0;
}
