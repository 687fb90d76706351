/*
 * test_bus_group_concurrency.c — a subscription group under load: four
 * consumer threads pulling, holding up to max_in_flight deliveries and
 * answering them (mostly acks, some nack-retry, -skip and -park) while a
 * writer appends.  Checked:
 *   - no event is ever held by two consumers at once (a per-event holder
 *     slot set on receipt and cleared before answering);
 *   - every event is finished exactly once (one successful ack, skip or
 *     park), the checkpoint ends at the head, the counters and the DLQ
 *     depth agree with what the consumers did;
 *   - pinned: a stream's outstanding deliveries are all held by one
 *     consumer, first deliveries of a stream come in stream order, also
 *     when a consumer leaves mid-run holding deliveries and joins again,
 *     and when a consumer joins a quarter into a backlog while streams move
 *     to it (it must get a part of the rest; test_bus_group.c proves the
 *     rebalancing itself, step by step);
 *   - ack timeouts forced by a consumer moving a shared fake clock: late
 *     answers are refused or taken, never both, and still every event is
 *     finished exactly once;
 *   - a reader thread reading the group's state meanwhile (through the bus
 *     and through the handle, each read bringing the state up to date as a
 *     consumer call would) sees a checkpoint that never goes back, in-flight
 *     counts within the consumers' limits and no more DLQ entries than
 *     parks.
 * Runs under ThreadSanitizer.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "evstore_bus.h"
#include "conformance.h"

#define CONSUMERS 4
#define STREAMS 16
#define EVENTS 3000
#define MAX_IN_FLIGHT 4

static evs_store *store;
static evs_bus *bus;

/* A fake clock shared by threads. */
static _Atomic int64_t fake_now = 1000000000000LL;
static int64_t fc_now(void *ctx) {
    (void)ctx;
    return atomic_load(&fake_now);
}
static const evs_clock shared_clock = {fc_now, NULL, NULL, NULL};

typedef struct run {
    const char *name;
    int pinned;
    int late_join;                /* pinned: the events are appended first; the last consumer joins later */
    int timeouts;                 /* consumers push the fake clock past the ack timeout */
    uint64_t first;               /* first position of this run */
    evs_group *g;
    evs_group_member *m[CONSUMERS];
    _Atomic int holder[EVENTS + 1];   /* consumer + 1 holding the event, 0: none */
    _Atomic int finished[EVENTS + 1];
    _Atomic uint64_t acks, skips, parks, retries, refused, finished_total;
    _Atomic int rejoined;             /* pinned: consumer 0 left holding deliveries and came back */
    _Atomic uint64_t late_got;        /* late_join: deliveries the late consumer received */
    /* pinned bookkeeping, under mu */
    pthread_mutex_t mu;
    int stream_holder[STREAMS];
    int stream_out[STREAMS];
    uint64_t first_seen[STREAMS]; /* last stream position seen on a first delivery */
    problems pr;
} run;

typedef struct worker {
    run *r;
    int id;
    uint64_t rng;
} worker;

static uint64_t next_rand(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void *writer(void *arg) {
    (void)arg;
    char stream[32];
    for (int i = 0; i < EVENTS; i++) {
        snprintf(stream, sizeof stream, "s%02d", i % STREAMS);
        evs_event_in e = tu_event("Work", "{\"n\":1}");
        evs_append_result res;
        if (evs_append(store, stream, EVS_EXPECT_ANY, &e, 1, &res, NULL) != EVS_OK) {
            fprintf(stderr, "append: %s\n", evs_errmsg());
            exit(2);
        }
    }
    return NULL;
}

static int stream_of(const evs_event *ev) { return atoi(ev->stream + 1); }

static void received(worker *w, evs_delivery *d) {
    run *r = w->r;
    uint64_t idx = d->id.position - r->first + 1;
    if (idx < 1 || idx > EVENTS) {
        problem(&r->pr, "position %llu outside the run", (unsigned long long)d->id.position);
        return;
    }
    if (!r->timeouts) {
        int expect = 0;
        if (!atomic_compare_exchange_strong(&r->holder[idx], &expect, w->id + 1))
            problem(&r->pr, "event %llu delivered to %d while %d holds it", (unsigned long long)d->id.position, w->id,
                    expect - 1);
    }
    if (r->pinned) {
        int s = stream_of(&d->event);
        pthread_mutex_lock(&r->mu);
        if (r->stream_out[s] > 0 && r->stream_holder[s] != w->id)
            problem(&r->pr, "stream %d held by %d and %d at once", s, r->stream_holder[s], w->id);
        r->stream_holder[s] = w->id;
        r->stream_out[s]++;
        if (d->id.attempt == 1) {
            if (d->event.stream_position != r->first_seen[s] + 1)
                problem(&r->pr, "stream %d: first delivery of %llu after %llu", s,
                        (unsigned long long)d->event.stream_position, (unsigned long long)r->first_seen[s]);
            r->first_seen[s] = d->event.stream_position;
        }
        pthread_mutex_unlock(&r->mu);
    }
}

/* Answer one delivery: mostly ack, sometimes nack (retry, skip, park); count what finished. */
static void answer(worker *w, evs_group_member *m, evs_delivery *d) {
    run *r = w->r;
    uint64_t idx = d->id.position - r->first + 1;
    if (idx < 1 || idx > EVENTS) {
        evs_delivery_free(d);
        return;
    }
    if (!r->timeouts) atomic_store(&r->holder[idx], 0);
    if (r->pinned) {
        pthread_mutex_lock(&r->mu);
        r->stream_out[stream_of(&d->event)]--;
        pthread_mutex_unlock(&r->mu);
    }
    uint64_t x = next_rand(&w->rng) % 100;
    int rc, finishes = 1;
    if (x < 6) {
        rc = evs_group_nack(m, d->id, EVS_NACK_RETRY, "try again");
        finishes = 0;
        if (!rc) atomic_fetch_add(&r->retries, 1);
    } else if (x < 8) {
        rc = evs_group_nack(m, d->id, EVS_NACK_SKIP, NULL);
        if (!rc) atomic_fetch_add(&r->skips, 1);
    } else if (x < 9) {
        rc = evs_group_nack(m, d->id, EVS_NACK_PARK, "bad");
        if (!rc) atomic_fetch_add(&r->parks, 1);
    } else {
        rc = evs_group_ack(m, d->id);
        if (!rc) atomic_fetch_add(&r->acks, 1);
    }
    if (rc == EVS_OK && finishes) {
        if (atomic_fetch_add(&r->finished[idx], 1) != 0)
            problem(&r->pr, "event %llu finished twice", (unsigned long long)d->id.position);
        atomic_fetch_add(&r->finished_total, 1);
    } else if (rc == EVS_ECONFLICT && r->timeouts) {
        atomic_fetch_add(&r->refused, 1); /* redelivered meanwhile */
    } else if (rc != EVS_OK) {
        problem(&r->pr, "answer to %llu/%u: %s", (unsigned long long)d->id.position, d->id.attempt, evs_errmsg());
    }
    evs_delivery_free(d);
}

static void *consumer(void *arg) {
    worker *w = arg;
    run *r = w->r;
    evs_delivery *held[MAX_IN_FLIGHT];
    int nheld = 0, rejoined = 0, pulls = 0;
    int64_t until = evs_now_ns() + 120000000000LL;
    int late = r->late_join && w->id == CONSUMERS - 1;
    if (late) {
        /* join a quarter into the backlog */
        while (atomic_load(&r->finished_total) < EVENTS / 4 && evs_now_ns() < until) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
        if (evs_group_join(r->g, "late", &r->m[w->id]) != EVS_OK) {
            problem(&r->pr, "late join: %s", evs_errmsg());
            return NULL;
        }
    }
    evs_group_member *m = r->m[w->id];
    while (atomic_load(&r->finished_total) < EVENTS && evs_now_ns() < until) {
        evs_delivery *d = NULL;
        int rc = evs_group_next(m, 20, &d);
        pulls++;
        if (rc == EVS_OK) {
            received(w, d);
            held[nheld++] = d;
            if (late) atomic_fetch_add(&r->late_got, 1);
        } else if (rc != EVS_ETIMEDOUT) {
            problem(&r->pr, "next: %s", evs_errmsg());
            break;
        }
        if (r->timeouts && pulls % 97 == 0) atomic_fetch_add(&fake_now, 31000000000LL); /* past the ack timeout */
        /* answer when full, when idle, or now and then */
        if (nheld == MAX_IN_FLIGHT || rc == EVS_ETIMEDOUT || next_rand(&w->rng) % 3 == 0) {
            while (nheld > 0) answer(w, m, held[--nheld]);
        }
        /* consumer 0 of the pinned run leaves once, holding deliveries, and joins again */
        if (r->pinned && !r->late_join && w->id == 0 && !rejoined && nheld > 0 && atomic_load(&r->finished_total) > EVENTS / 3) {
            pthread_mutex_lock(&r->mu);
            for (int i = 0; i < nheld; i++) {
                r->stream_out[stream_of(&held[i]->event)]--;
                atomic_store(&r->holder[held[i]->id.position - r->first + 1], 0);
            }
            pthread_mutex_unlock(&r->mu);
            evs_group_leave(m);
            for (int i = 0; i < nheld; i++) evs_delivery_free(held[i]);
            nheld = 0;
            if (evs_group_join(r->g, "c0-again", &m) != EVS_OK) {
                problem(&r->pr, "rejoin: %s", evs_errmsg());
                m = NULL;
                break;
            }
            rejoined = 1;
            atomic_store(&r->rejoined, 1);
        }
    }
    while (nheld > 0) answer(w, m, held[--nheld]);
    r->m[w->id] = m;
    return NULL;
}

/* Read the state while the consumers work; every read refreshes it. */
static void *reader(void *arg) {
    run *r = arg;
    uint64_t last = 0;
    int64_t until = evs_now_ns() + 120000000000LL;
    while (atomic_load(&r->finished_total) < EVENTS && evs_now_ns() < until) {
        evs_consumer_info ci;
        evs_group_info gi;
        evs_group_member_info mi[CONSUMERS];
        size_t n;
        if (evs_consumer_get(bus, r->name, &ci) != EVS_OK || evs_group_get_info(r->g, &gi) != EVS_OK ||
            evs_group_list_members(r->g, mi, CONSUMERS, &n) != EVS_OK) {
            problem(&r->pr, "read state: %s", evs_errmsg());
            break;
        }
        if (ci.checkpoint < last || gi.info.checkpoint < ci.checkpoint)
            problem(&r->pr, "checkpoint went back: %llu, then %llu, then %llu", (unsigned long long)last,
                    (unsigned long long)ci.checkpoint, (unsigned long long)gi.info.checkpoint);
        last = gi.info.checkpoint;
        if (gi.in_flight > (uint64_t)CONSUMERS * MAX_IN_FLIGHT)
            problem(&r->pr, "%llu deliveries in flight", (unsigned long long)gi.in_flight);
        for (size_t i = 0; i < n; i++)
            if (mi[i].in_flight > MAX_IN_FLIGHT) problem(&r->pr, "%s holds %u", mi[i].name, mi[i].in_flight);
        if (ci.dlq_depth > ci.parked)
            problem(&r->pr, "DLQ depth %llu, parked %llu", (unsigned long long)ci.dlq_depth,
                    (unsigned long long)ci.parked);
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static void run_group(run *r) {
    r->first = evs_head(store) + 1;
    pthread_mutex_init(&r->mu, NULL);
    for (int s = 0; s < STREAMS; s++) { /* earlier runs wrote to the same streams */
        char stream[32];
        evs_stream_info si;
        snprintf(stream, sizeof stream, "s%02d", s);
        r->first_seen[s] = evs_stream_get_info(store, stream, &si) == EVS_OK ? si.version : 0;
    }
    evs_group_config c;
    evs_group_config_init(&c);
    c.name = r->name;
    c.from = r->first;
    c.strategy = r->pinned ? EVS_GROUP_PINNED : EVS_GROUP_ROUND_ROBIN;
    c.max_in_flight = MAX_IN_FLIGHT;
    c.buffer_size = 256;
    c.checkpoint_every = 100;
    c.retry.backoff = EVS_BACKOFF_FIXED;
    c.retry.initial_delay_ns = r->timeouts ? 0 : 1000000; /* 1 ms on the real clock */
    c.retry.max_retries = 100000;
    CHECK_RC(evs_group_create(bus, &c), EVS_OK);
    CHECK_RC(evs_group_open(bus, r->name, r->timeouts ? &shared_clock : NULL, &r->g), EVS_OK);
    worker w[CONSUMERS];
    pthread_t t[CONSUMERS], wt;
    for (int i = 0; i < CONSUMERS; i++) {
        char name[16];
        snprintf(name, sizeof name, "c%d", i);
        if (!(r->late_join && i == CONSUMERS - 1)) CHECK_RC(evs_group_join(r->g, name, &r->m[i]), EVS_OK);
        w[i].r = r;
        w[i].id = i;
        w[i].rng = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1) + (uint64_t)r->pinned;
    }
    pthread_t rt;
    CHECK_INT(pthread_create(&wt, NULL, writer, NULL), 0);
    if (r->late_join) pthread_join(wt, NULL); /* a backlog */
    for (int i = 0; i < CONSUMERS; i++) CHECK_INT(pthread_create(&t[i], NULL, consumer, &w[i]), 0);
    CHECK_INT(pthread_create(&rt, NULL, reader, r), 0);
    if (!r->late_join) pthread_join(wt, NULL);
    for (int i = 0; i < CONSUMERS; i++) pthread_join(t[i], NULL);
    pthread_join(rt, NULL);

    if (r->pr.count) fprintf(stderr, "%s: %d problems, first: %s\n", r->name, r->pr.count, r->pr.first);
    CHECK_INT(r->pr.count, 0);
    CHECK_INT(atomic_load(&r->finished_total), EVENTS);
    int missing = 0;
    for (int i = 1; i <= EVENTS; i++) missing += atomic_load(&r->finished[i]) != 1;
    CHECK_INT(missing, 0);
    evs_group_info gi;
    CHECK_RC(evs_group_get_info(r->g, &gi), EVS_OK);
    CHECK_INT(gi.info.checkpoint, r->first + EVENTS - 1);
    CHECK_INT(gi.info.processed, atomic_load(&r->acks));
    CHECK_INT(gi.skipped, atomic_load(&r->skips));
    CHECK_INT(gi.info.parked, atomic_load(&r->parks));
    CHECK_INT(gi.info.dlq_depth, atomic_load(&r->parks));
    CHECK_INT(gi.in_flight, 0);
    CHECK_INT(gi.buffered, 0);
    if (r->pinned && !r->late_join) CHECK_INT(atomic_load(&r->rejoined), 1);
    if (r->late_join) {
        /* its streams' share of the three quarters left (2 or 3 of 16 streams with these names) */
        printf("%s: the late consumer received %llu of the %d events left when it joined\n", r->name,
               (unsigned long long)atomic_load(&r->late_got), EVENTS - EVENTS / 4);
        CHECK(atomic_load(&r->late_got) >= EVENTS / 20);
    }
    if (r->timeouts) CHECK(gi.timeouts > 0 && atomic_load(&r->refused) > 0);
    else CHECK_INT(gi.info.retry_count, atomic_load(&r->retries));
    printf("%s: %llu acks, %llu retries, %llu skips, %llu parks, %llu timeouts, %llu late answers refused\n", r->name,
           (unsigned long long)atomic_load(&r->acks), (unsigned long long)atomic_load(&r->retries),
           (unsigned long long)atomic_load(&r->skips), (unsigned long long)atomic_load(&r->parks),
           (unsigned long long)gi.timeouts, (unsigned long long)atomic_load(&r->refused));
    for (int i = 0; i < CONSUMERS; i++) evs_group_leave(r->m[i]);
    evs_group_close(r->g);
    CHECK_RC(evs_group_get(bus, r->name, &gi), EVS_OK);
    CHECK_INT(gi.info.checkpoint, r->first + EVENTS - 1);
    pthread_mutex_destroy(&r->mu);
}

int main(int argc, char **argv) {
    cf_init(argc, argv);
    tu_verbose = getenv("EVS_VERBOSE") != NULL;
    char *d = cf_fresh("grp-conc");
    store = tu_open(d, EVS_DURABILITY_NONE, 4 << 20);
    CHECK_RC(evs_bus_open(store, &bus), EVS_OK);
    static run rr, pin, tmo;
    rr.name = "round-robin";
    run_group(&rr);
    pin.name = "pinned";
    pin.pinned = 1;
    run_group(&pin);
    static run late;
    late.name = "pinned-late-join";
    late.pinned = 1;
    late.late_join = 1;
    run_group(&late);
    tmo.name = "timeouts";
    tmo.timeouts = 1;
    run_group(&tmo);
    evs_bus_close(bus);
    evs_store_close(store);
    cf_drop(d);
    return TEST_REPORT();
}
