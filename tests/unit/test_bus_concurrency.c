/*
 * test_bus_concurrency.c — subscriptions under concurrent appends: every
 * event delivered exactly once and in global order through the catch-up ->
 * live switch, a filtered subscriber in parallel, a subscription closed and
 * reopened halfway (resumes from its checkpoint, no gap, no duplicate), and
 * evs_sub_cancel waking a blocked poll from another thread.  Runs under TSan.
 */
#include <pthread.h>

#include "evstore_bus.h"
#include "conformance.h"

#define WRITERS 4
#define PER_WRITER 1500

static evs_store *store;
static evs_bus *bus;

static void *writer(void *arg) {
    int id = (int)(intptr_t)arg;
    char stream[32], data[64];
    snprintf(stream, sizeof stream, "w%d-s", id);
    for (int i = 0; i < PER_WRITER; i++) {
        snprintf(data, sizeof data, "{\"seq\":%d}", i);
        evs_event_in e = tu_event(i % 3 == 0 ? "Tick" : "Tock", data);
        evs_append_result r;
        if (evs_append(store, stream, EVS_EXPECT_ANY, &e, 1, &r, NULL) != EVS_OK) {
            fprintf(stderr, "append: %s\n", evs_errmsg());
            exit(2);
        }
    }
    return NULL;
}

typedef struct checker {
    uint64_t last_global;
    long last_seq[WRITERS];
    uint64_t n;
    int errors;
} checker;

static int check_handler(void *ctx, const evs_event *ev, char *err, size_t cap) {
    checker *c = ctx;
    (void)err, (void)cap;
    if (ev->global_position != c->last_global + 1) {
        if (c->errors++ < 5)
            fprintf(stderr, "gap or duplicate: got %llu after %llu\n", (unsigned long long)ev->global_position,
                    (unsigned long long)c->last_global);
    }
    c->last_global = ev->global_position;
    int w = ev->stream[1] - '0';
    long seq = strtol(ev->data + 7, NULL, 10);
    if (w >= 0 && w < WRITERS) {
        if (seq != c->last_seq[w] + 1 && c->errors++ < 5)
            fprintf(stderr, "stream w%d: seq %ld after %ld\n", w, seq, c->last_seq[w]);
        c->last_seq[w] = seq;
    }
    c->n++;
    return 0;
}

typedef struct tick_counter {
    uint64_t last;
    uint64_t n;
    int errors;
} tick_counter;

static int tick_handler(void *ctx, const evs_event *ev, char *err, size_t cap) {
    tick_counter *t = ctx;
    (void)err, (void)cap;
    if (ev->event_type_len != 4 || memcmp(ev->event_type, "Tick", 4) || ev->global_position <= t->last) t->errors++;
    t->last = ev->global_position;
    t->n++;
    return 0;
}

typedef struct filtered_arg {
    tick_counter tc;
    uint64_t want;
} filtered_arg;

static void *filtered_reader(void *arg) {
    filtered_arg *fa = arg;
    evs_sub_config c;
    evs_sub_config_init(&c);
    c.name = "ticks";
    const char *types[] = {"Tick"};
    c.filter.event_types = types;
    c.filter.n_event_types = 1;
    c.page_size = 64;
    evs_subscription *sub;
    if (evs_sub_open(bus, &c, tick_handler, &fa->tc, &sub) != EVS_OK) {
        fprintf(stderr, "open ticks: %s\n", evs_errmsg());
        exit(2);
    }
    int64_t until = evs_now_ns() + 60000000000LL;
    while (fa->tc.n < fa->want && evs_now_ns() < until) {
        size_t n;
        if (evs_sub_poll(sub, 200, 0, &n) != EVS_OK) break;
    }
    evs_sub_close(sub);
    return NULL;
}

static void test_exactly_once_in_order(void) {
    pthread_t w[WRITERS], fr;
    filtered_arg fa;
    memset(&fa, 0, sizeof fa);
    fa.want = 0;
    for (int i = 0; i < PER_WRITER; i++)
        if (i % 3 == 0) fa.want += WRITERS;
    checker *ck = calloc(1, sizeof *ck);
    for (int i = 0; i < WRITERS; i++) ck->last_seq[i] = -1;
    evs_sub_config c;
    evs_sub_config_init(&c);
    c.name = "everything";
    c.page_size = 100;
    c.checkpoint_every = 50;
    evs_subscription *sub;
    CHECK_RC(evs_sub_open(bus, &c, check_handler, ck, &sub), EVS_OK);
    /* a few events before the writers start: a real catch-up phase */
    for (int i = 0; i < WRITERS; i++) CHECK_INT(pthread_create(&w[i], NULL, writer, (void *)(intptr_t)i), 0);
    CHECK_INT(pthread_create(&fr, NULL, filtered_reader, &fa), 0);
    uint64_t total = (uint64_t)WRITERS * PER_WRITER;
    int reopened = 0;
    int64_t until = evs_now_ns() + 60000000000LL;
    while (ck->n < total && evs_now_ns() < until) {
        size_t n;
        CHECK_RC(evs_sub_poll(sub, 200, 0, &n), EVS_OK);
        if (!reopened && ck->n > total / 2) {
            /* close (writes the checkpoint) and reopen while writers run */
            evs_sub_close(sub);
            CHECK_RC(evs_sub_open(bus, &c, check_handler, ck, &sub), EVS_OK);
            reopened = 1;
        }
    }
    for (int i = 0; i < WRITERS; i++) pthread_join(w[i], NULL);
    pthread_join(fr, NULL);
    size_t n;
    CHECK_RC(evs_sub_poll(sub, 0, 0, &n), EVS_OK);
    CHECK_INT(n, 0);
    CHECK_INT(ck->n, total);
    CHECK_INT(ck->errors, 0);
    CHECK_INT(ck->last_global, evs_head(store));
    for (int i = 0; i < WRITERS; i++) CHECK_INT(ck->last_seq[i], PER_WRITER - 1);
    CHECK_INT(fa.tc.n, fa.want);
    CHECK_INT(fa.tc.errors, 0);
    evs_sub_close(sub);
    evs_consumer_info info;
    CHECK_RC(evs_consumer_get(bus, "everything", &info), EVS_OK);
    CHECK_INT(info.checkpoint, total);
    CHECK_INT(info.processed, total);
    free(ck);
}

static void *canceller(void *arg) {
    evs_subscription *sub = arg;
    struct timespec ts = {0, 100000000};
    nanosleep(&ts, NULL);
    evs_sub_cancel(sub);
    return NULL;
}

static void test_cancel_wakes_poll(void) {
    tick_counter tc;
    memset(&tc, 0, sizeof tc);
    evs_sub_config c;
    evs_sub_config_init(&c);
    c.name = "idle";
    c.from = EVS_SUB_FROM_NOW;
    evs_subscription *sub;
    CHECK_RC(evs_sub_open(bus, &c, tick_handler, &tc, &sub), EVS_OK);
    pthread_t t;
    CHECK_INT(pthread_create(&t, NULL, canceller, sub), 0);
    int64_t t0 = evs_now_ns();
    size_t n;
    CHECK_RC(evs_sub_poll(sub, 20000, 0, &n), EVS_OK);
    CHECK(evs_now_ns() - t0 < 5000000000LL);
    CHECK_INT(n, 0);
    pthread_join(t, NULL);
    evs_sub_close(sub);
}

int main(int argc, char **argv) {
    cf_init(argc, argv);
    char *d = cf_fresh("bus-conc");
    store = tu_open(d, EVS_DURABILITY_NONE, 1 << 20);
    CHECK_RC(evs_bus_open(store, &bus), EVS_OK);
    test_exactly_once_in_order();
    test_cancel_wakes_poll();
    evs_bus_close(bus);
    evs_store_close(store);
    cf_drop(d);
    return TEST_REPORT();
}
