/*
 * regex.h — JSON Schema's `pattern` (ECMA-262 syntax) on top of the POSIX
 * regex engine in libc: the pattern is translated to an extended regular
 * expression and compiled under the C.UTF-8 locale, so that it works on
 * characters, not bytes.  What is translated and what is refused is written
 * at the top of regex.c and in docs/schemas.md.  Not part of the public API.
 *
 * A compiled regex may be used by several threads at once.
 */
#ifndef EVS_SCHEMA_REGEX_H
#define EVS_SCHEMA_REGEX_H

#include <stddef.h>

typedef struct evs__regex evs__regex;

#define EVS_REGEX_MAX_SOURCE 1024u   /* bytes of one pattern */
#define EVS_REGEX_MAX_COST 10000u    /* atoms after expanding counted repetitions */

/*
 * Translate an ECMA-262 pattern to a POSIX ERE.  EVS_OK with *ere
 * (malloc'd, the caller frees it) or EVS_EINVAL with the reason in why.
 */
int evs__regex_translate(const char *src, size_t len, char **ere, char *why, size_t cap);

/*
 * Compile (translate + regcomp).  EVS_OK, or EVS_EINVAL with the reason in
 * why.  Ownership: *out is the caller's, released with evs__regex_free.
 */
int evs__regex_compile(const char *src, size_t len, evs__regex **out, char *why, size_t cap);
void evs__regex_free(evs__regex *re);

/* Does the pattern match anywhere in s[0..n) (which may hold NUL bytes)?  1 yes, 0 no. */
int evs__regex_search(const evs__regex *re, const char *s, size_t n);

#endif
