/*
 * testutil.h — the assertions and fixtures every C test shares.
 *
 * Assertions print what they got and what they wanted, and count failures
 * instead of aborting, so one run shows every broken case.  A test's main
 * ends with `return TEST_REPORT();`, which prints "N passed, M failed" and
 * returns nonzero on any failure.
 */
#ifndef EVS_TESTUTIL_H
#define EVS_TESTUTIL_H

#include <errno.h>
#include <stdarg.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "evstore.h"

static int tu_failures, tu_checks;

#define CHECK(cond)                                                                   \
    do {                                                                              \
        tu_checks++;                                                                  \
        if (!(cond)) {                                                                \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
            tu_failures++;                                                            \
        }                                                                             \
    } while (0)

#define CHECK_INT(got, want)                                                                        \
    do {                                                                                            \
        long long g_ = (long long)(got), w_ = (long long)(want);                                    \
        tu_checks++;                                                                                \
        if (g_ != w_) {                                                                             \
            fprintf(stderr, "%s:%d: %s: got %lld, wanted %lld\n", __FILE__, __LINE__, #got, g_, w_); \
            tu_failures++;                                                                          \
        }                                                                                           \
    } while (0)

/* An evs_* status: prints the code's name and the thread's message on mismatch. */
#define CHECK_RC(got, want)                                                                                 \
    do {                                                                                                    \
        int g_ = (got), w_ = (want);                                                                        \
        tu_checks++;                                                                                        \
        if (g_ != w_) {                                                                                     \
            fprintf(stderr, "%s:%d: %s: got %s (%d: %s), wanted %s\n", __FILE__, __LINE__, #got,             \
                    evs_errname(g_), g_, evs_errmsg(), evs_errname(w_));                                    \
            tu_failures++;                                                                                  \
        }                                                                                                   \
    } while (0)

#define CHECK_STR(got, want)                                                                                \
    do {                                                                                                    \
        const char *g_ = (got), *w_ = (want);                                                               \
        tu_checks++;                                                                                        \
        if (!g_ || strcmp(g_, w_) != 0) {                                                                   \
            fprintf(stderr, "%s:%d: %s:\n   got \"%s\"\nwanted \"%s\"\n", __FILE__, __LINE__, #got,          \
                    g_ ? g_ : "(null)", w_);                                                                \
            tu_failures++;                                                                                  \
        }                                                                                                   \
    } while (0)

/* got (pointer, length) equals the NUL-terminated want. */
#define CHECK_MEM(gp, gn, want)                                                                             \
    do {                                                                                                    \
        const char *g_ = (const char *)(gp), *w_ = (want);                                                  \
        size_t gn_ = (gn);                                                                                  \
        tu_checks++;                                                                                        \
        if (gn_ != strlen(w_) || memcmp(g_, w_, gn_) != 0) {                                                \
            fprintf(stderr, "%s:%d: %s:\n   got \"%.*s\"\nwanted \"%s\"\n", __FILE__, __LINE__, #gp,         \
                    (int)gn_, g_, w_);                                                                      \
            tu_failures++;                                                                                  \
        }                                                                                                   \
    } while (0)

/* The message contains the substring. */
#define CHECK_CONTAINS(hay, needle)                                                                         \
    do {                                                                                                    \
        const char *h_ = (hay), *n_ = (needle);                                                             \
        tu_checks++;                                                                                        \
        if (!h_ || !strstr(h_, n_)) {                                                                       \
            fprintf(stderr, "%s:%d: %s: \"%s\" does not contain \"%s\"\n", __FILE__, __LINE__, #hay,        \
                    h_ ? h_ : "(null)", n_);                                                                \
            tu_failures++;                                                                                  \
        }                                                                                                   \
    } while (0)

#define TEST_REPORT()                                                                                  \
    (printf("%d passed, %d failed\n", tu_checks - tu_failures, tu_failures), tu_failures ? 1 : 0)

static int tu_rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* Remove a directory tree (test scratch only). */
static inline void tu_rmrf(const char *dir) { nftw(dir, tu_rm_cb, 16, FTW_DEPTH | FTW_PHYS); }

/* A fresh scratch directory under $TMPDIR; the caller frees the string. */
static inline char *tu_tempdir(const char *tag) {
    const char *base = getenv("TMPDIR");
    char *p = malloc(4096);
    snprintf(p, 4096, "%s/evs-%s-XXXXXX", base && *base ? base : "/tmp", tag);
    if (!mkdtemp(p)) {
        perror("mkdtemp");
        exit(2);
    }
    return p;
}

/* Open (creating) a store in dir with small segments and the given durability. */
static inline evs_store *tu_open(const char *dir, evs_durability d, uint64_t segsize) {
    evs_store *s = NULL;
    if (evs_store_create(&s) || (segsize && evs_store_set_segment_size(s, segsize)) ||
        evs_store_set_durability(s, d, d == EVS_DURABILITY_BATCH ? 5 : 0) ||
        evs_store_open(s, dir, EVS_OPEN_CREATE)) {
        fprintf(stderr, "cannot open store %s: %s\n", dir, evs_errmsg());
        exit(2);
    }
    return s;
}

/* One event with the given type and data (metadata default). */
static inline evs_event_in tu_event(const char *type, const char *data) {
    evs_event_in e;
    memset(&e, 0, sizeof e);
    e.event_type = type;
    e.data = data;
    e.data_len = strlen(data);
    return e;
}

/* Problems found off the main thread or in a loop: a count and the first description. */
typedef struct problems {
    int count;
    char first[512];
} problems;

/* Set (e.g. from EVS_VERBOSE) to print every problem, not just keep the first. */
static int tu_verbose;

static void problem(problems *p, const char *fmt, ...) __attribute__((format(printf, 2, 3), unused));
static void problem(problems *p, const char *fmt, ...) {
    va_list ap;
    if (p->count++ == 0) {
        va_start(ap, fmt);
        vsnprintf(p->first, sizeof p->first, fmt, ap);
        va_end(ap);
    }
    if (tu_verbose) {
        va_start(ap, fmt);
        fprintf(stderr, "    ");
        vfprintf(stderr, fmt, ap);
        fprintf(stderr, "\n");
        va_end(ap);
    }
}

#endif
