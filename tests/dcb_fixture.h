/*
 * dcb_fixture.h — the tagged events the DCB tests share (test_dcb.c, the
 * embedded engine's tag index and recovery; test_conformance_dcb.c, the
 * conditions on every engine): eight events with known types and tags,
 * and the answers reads by tag must give over them.
 */
#ifndef EVS_DCB_FIXTURE_H
#define EVS_DCB_FIXTURE_H

#include "testutil.h"

static int append_tagged(evs_store *s, const char *stream, const char *type, const char *const *tags, size_t ntags,
                         const evs_append_condition *c, int64_t expected, evs_append_result *r) {
    evs_event_in e = tu_event(type, "{}");
    e.tags = tags;
    e.ntags = ntags;
    return evs_append_if(s, stream, expected, c, &e, 1, r, NULL);
}

/* Read $all with f; positions into pos (at most max); returns how many. */
static int read_pos(evs_store *s, int dir, const evs_filter *f, uint64_t *pos, int max) {
    evs_reader *rd;
    if (evs_read_all(s, dir == EVS_FORWARD ? 1 : EVS_POSITION_END, dir, f, 0, &rd)) return -1;
    const evs_event *e;
    int n = 0, rc;
    while ((rc = evs_reader_next(rd, &e)) == EVS_OK)
        if (n < max) pos[n++] = e->global_position;
    evs_reader_close(rd);
    return rc == EVS_DONE ? n : -1;
}

#define CHECK_POS(got, n, ...)                                                        \
    do {                                                                              \
        uint64_t want_[] = {__VA_ARGS__};                                             \
        CHECK_INT(n, (int)(sizeof want_ / sizeof want_[0]));                          \
        for (size_t i_ = 0; i_ < sizeof want_ / sizeof want_[0] && (int)i_ < n; i_++) \
            CHECK_INT(got[i_], want_[i_]);                                            \
    } while (0)

/* Events 1..8 of the fixture; see the comments for their type and tags. */
static void fill(evs_store *s) {
    const char *a[] = {"a"}, *ab[] = {"a", "b"}, *b[] = {"b"}, *bc[] = {"b", "c"}, *abc[] = {"c", "a", "b"};
    const char *aa[] = {"a", "a"};
    evs_append_result r;
    CHECK_RC(append_tagged(s, "x-1", "A", a, 1, NULL, EVS_EXPECT_ANY, &r), EVS_OK);   /* 1 A [a] */
    CHECK_RC(append_tagged(s, "x-1", "B", ab, 2, NULL, EVS_EXPECT_ANY, &r), EVS_OK);  /* 2 B [a b] */
    CHECK_RC(append_tagged(s, "x-2", "A", NULL, 0, NULL, EVS_EXPECT_ANY, &r), EVS_OK); /* 3 A [] */
    CHECK_RC(append_tagged(s, "x-2", "A", b, 1, NULL, EVS_EXPECT_ANY, &r), EVS_OK);   /* 4 A [b] */
    CHECK_RC(append_tagged(s, "x-3", "C", bc, 2, NULL, EVS_EXPECT_ANY, &r), EVS_OK);  /* 5 C [b c] */
    CHECK_RC(append_tagged(s, "x-3", "A", abc, 3, NULL, EVS_EXPECT_ANY, &r), EVS_OK); /* 6 A [c a b] */
    CHECK_RC(append_tagged(s, "x-1", "B", aa, 2, NULL, EVS_EXPECT_ANY, &r), EVS_OK);  /* 7 B [a a] */
    CHECK_RC(append_tagged(s, "x-4", "C", NULL, 0, NULL, EVS_EXPECT_ANY, &r), EVS_OK); /* 8 C [] */
}

static void check_fixture_reads(evs_store *s) {
    uint64_t p[16];
    int n;
    const char *ta[] = {"a"}, *tab[] = {"a", "b"}, *tbc[] = {"b", "c"}, *tcab[] = {"c", "a", "b"}, *tz[] = {"z"};
    const char *tza[] = {"z", "a"};
    evs_filter f;
    memset(&f, 0, sizeof f);
    f.tags = ta, f.n_tags = 1;
    n = read_pos(s, EVS_FORWARD, &f, p, 16);
    CHECK_POS(p, n, 1, 2, 6, 7);
    f.tags = tab, f.n_tags = 2; /* any: a union in global order, each event once */
    n = read_pos(s, EVS_FORWARD, &f, p, 16);
    CHECK_POS(p, n, 1, 2, 4, 5, 6, 7);
    n = read_pos(s, EVS_BACKWARD, &f, p, 16);
    CHECK_POS(p, n, 7, 6, 5, 4, 2, 1);
    f.tag_match = EVS_TAGS_ALL; /* all: the intersection */
    n = read_pos(s, EVS_FORWARD, &f, p, 16);
    CHECK_POS(p, n, 2, 6);
    n = read_pos(s, EVS_BACKWARD, &f, p, 16);
    CHECK_POS(p, n, 6, 2);
    f.tags = tbc, f.n_tags = 2;
    n = read_pos(s, EVS_FORWARD, &f, p, 16);
    CHECK_POS(p, n, 5, 6);
    f.tags = tcab, f.n_tags = 3;
    n = read_pos(s, EVS_FORWARD, &f, p, 16);
    CHECK_POS(p, n, 6);
    f.tags = tza, f.n_tags = 2; /* a tag nothing carries: the intersection is empty */
    n = read_pos(s, EVS_FORWARD, &f, p, 16);
    CHECK_INT(n, 0);
    f.tag_match = EVS_TAGS_ANY;
    n = read_pos(s, EVS_FORWARD, &f, p, 16);
    CHECK_POS(p, n, 1, 2, 6, 7);
    f.tags = tz, f.n_tags = 1;
    n = read_pos(s, EVS_FORWARD, &f, p, 16);
    CHECK_INT(n, 0);
    /* with an event type on top */
    const char *tyA[] = {"A"};
    f.tags = tab, f.n_tags = 2;
    f.event_types = tyA, f.n_event_types = 1;
    n = read_pos(s, EVS_FORWARD, &f, p, 16);
    CHECK_POS(p, n, 1, 4, 6);
    f.tag_match = EVS_TAGS_ALL;
    n = read_pos(s, EVS_FORWARD, &f, p, 16);
    CHECK_POS(p, n, 6);
    /* a stream type on top (the tag index still leads) */
    memset(&f, 0, sizeof f);
    f.tags = ta, f.n_tags = 1;
    f.stream_prefix = "x-1";
    n = read_pos(s, EVS_FORWARD, &f, p, 16);
    CHECK_POS(p, n, 1, 2, 7);
    /* a page: limit and position to continue from */
    memset(&f, 0, sizeof f);
    f.tags = tab, f.n_tags = 2;
    evs_reader *rd;
    CHECK_RC(evs_read_all(s, 3, EVS_FORWARD, &f, 2, &rd), EVS_OK);
    const evs_event *e;
    CHECK_RC(evs_reader_next(rd, &e), EVS_OK);
    CHECK_INT(e->global_position, 4);
    CHECK_RC(evs_reader_next(rd, &e), EVS_OK);
    CHECK_INT(e->global_position, 5);
    CHECK_RC(evs_reader_next(rd, &e), EVS_DONE);
    CHECK_INT(evs_reader_position(rd), 6);
    evs_reader_close(rd);
}

#endif
