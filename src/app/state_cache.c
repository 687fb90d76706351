/*
 * state_cache.c — folded aggregate states kept in the process between
 * commands, so that a command on an aggregate it saw recently reads only the
 * events appended since, not the whole stream (or the tail after its
 * snapshot).
 *
 * An entry is a state at a stream version with the global position of the
 * event at that version: exactly what a snapshot holds, so a hit goes through
 * the same catch-up as a snapshot (aggregate.c), which checks that the event
 * at that version still has that global position.  A stream deleted, or
 * deleted and written again, fails that check and the aggregate is folded
 * from its events; another server on the same PostgreSQL database appending
 * to the stream is seen as events after the version.  Nothing is ever
 * trusted beyond "this state is the fold of the log up to version v".
 *
 * Entries are checked out, not shared: evs__scache_take removes the entry
 * and hands its state to the caller, which gives it back (or a newer one)
 * with evs__scache_put when done.  That needs no copy function in
 * evs_aggregate_def, and two commands on one aggregate at once simply find
 * one entry between them (the other folds from the log, as without a
 * cache).  A put keeps the newer of two states of one stream.
 *
 * Only C aggregates are cached.  A Lua aggregate's state holds a whole
 * sandbox (agg_lua.c), far too heavy to keep thousands of, and a Lua
 * decide could change the table it is given.  A C decide receives the state
 * as const; evstore_app.h states that it must not change it.
 *
 * Bounded by entries (evs_app_config.state_cache_entries), least recently
 * used out first.  States are freed outside the lock.
 */
#include <stdlib.h>
#include <string.h>

#include "app/app_internal.h"

typedef struct sc_entry {
    evs__agg *agg;
    evs__loaded l;                /* l.state owned by the entry */
    uint64_t hash;
    struct sc_entry *chain;       /* bucket */
    struct sc_entry *prev, *next; /* LRU: head the most recent */
    char stream[];
} sc_entry;

struct evs__scache {
    pthread_mutex_t mu;
    sc_entry **buckets;
    size_t mask;                  /* buckets - 1 (a power of two) */
    size_t n, cap;
    sc_entry *head, *tail;
};

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

int evs__scache_new(size_t cap, evs__scache **out) {
    *out = NULL;
    if (cap == 0) return EVS_OK;
    evs__scache *c = calloc(1, sizeof *c);
    size_t nb = 16;
    while (nb < cap) nb <<= 1;
    if (c) c->buckets = calloc(nb, sizeof *c->buckets);
    if (!c || !c->buckets) {
        free(c);
        return evs__err(EVS_ENOMEM, "out of memory (state cache of %zu entries)", cap);
    }
    c->mask = nb - 1;
    c->cap = cap;
    pthread_mutex_init(&c->mu, NULL);
    *out = c;
    return EVS_OK;
}

static void entry_free(sc_entry *e) {
    if (!e) return;
    if (e->l.state) e->agg->def.free_state(e->agg->def.ctx, e->l.state);
    free(e);
}

void evs__scache_free(evs__scache *c) {
    if (!c) return;
    for (sc_entry *e = c->head, *n; e; e = n) {
        n = e->next;
        entry_free(e);
    }
    pthread_mutex_destroy(&c->mu);
    free(c->buckets);
    free(c);
}

/* Unlink e from its bucket and the LRU list (mu held). */
static void unlink_entry(evs__scache *c, sc_entry *e) {
    sc_entry **pp = &c->buckets[e->hash & c->mask];
    while (*pp != e) pp = &(*pp)->chain;
    *pp = e->chain;
    if (e->prev) e->prev->next = e->next;
    else c->head = e->next;
    if (e->next) e->next->prev = e->prev;
    else c->tail = e->prev;
    e->prev = e->next = e->chain = NULL;
    c->n--;
}

static void link_front(evs__scache *c, sc_entry *e) {
    sc_entry **b = &c->buckets[e->hash & c->mask];
    e->chain = *b;
    *b = e;
    e->prev = NULL;
    e->next = c->head;
    if (c->head) c->head->prev = e;
    else c->tail = e;
    c->head = e;
    c->n++;
}

static sc_entry *find(evs__scache *c, const char *stream, uint64_t h) {
    for (sc_entry *e = c->buckets[h & c->mask]; e; e = e->chain)
        if (e->hash == h && strcmp(e->stream, stream) == 0) return e;
    return NULL;
}

int evs__scache_take(evs__scache *c, evs__agg *g, const char *stream, evs__loaded *out) {
    if (!c || g->lua) return 0;
    uint64_t h = hash_str(stream);
    pthread_mutex_lock(&c->mu);
    sc_entry *e = find(c, stream, h);
    if (e) unlink_entry(c, e);
    pthread_mutex_unlock(&c->mu);
    if (!e) return 0;
    if (e->agg != g) { /* the type was replaced since: its states are not this type's */
        entry_free(e);
        return 0;
    }
    *out = e->l;
    out->events_applied = out->snapshots_ignored = out->upto = 0;
    e->l.state = NULL;
    free(e);
    return 1;
}

void evs__scache_put(evs__scache *c, evs__agg *g, const char *stream, evs__loaded *l) {
    void *st = l->state;
    l->state = NULL;
    if (!st) return;
    if (!c || g->lua || l->upto || l->version == 0) {
        g->def.free_state(g->def.ctx, st);
        return;
    }
    size_t sl = strlen(stream);
    sc_entry *e = malloc(sizeof *e + sl + 1), *drop = NULL, *old;
    if (!e) {
        g->def.free_state(g->def.ctx, st);
        return;
    }
    memset(e, 0, sizeof *e);
    memcpy(e->stream, stream, sl + 1);
    e->agg = g;
    e->l = *l;
    e->l.state = st;
    e->hash = hash_str(stream);
    pthread_mutex_lock(&c->mu);
    if ((old = find(c, stream, e->hash))) {
        unlink_entry(c, old);
        if (old->agg == g && old->l.version > e->l.version) { /* keep the newer state */
            drop = e;
            e = old;
        } else {
            drop = old;
        }
    }
    link_front(c, e);
    sc_entry *evict = NULL;
    if (c->n > c->cap) {
        evict = c->tail;
        unlink_entry(c, evict);
    }
    pthread_mutex_unlock(&c->mu);
    entry_free(drop);
    entry_free(evict);
}

size_t evs__scache_count(evs__scache *c) {
    if (!c) return 0;
    pthread_mutex_lock(&c->mu);
    size_t n = c->n;
    pthread_mutex_unlock(&c->mu);
    return n;
}
