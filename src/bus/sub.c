/*
 * sub.c — subscriptions: the consumer engine (consumer.c) delivering to a
 * user callback.  A subscription has no state of its own beyond its record,
 * so nothing is rolled back on failure: a failed event is retried, then
 * parked or the subscription stops.
 */
#include <stdlib.h>
#include <string.h>

#include "bus/bus_internal.h"

struct evs_subscription {
    evs__consumer c;               /* first: the engine sees a consumer */
    evs_sub_handler handler;
    void *ctx;
};

static int sub_deliver(evs__consumer *c, const evs_event *ev, char *err, size_t cap) {
    evs_subscription *s = (evs_subscription *)c;
    return s->handler(s->ctx, ev, err, cap);
}

static const evs__consumer_ops sub_ops = {sub_deliver, NULL, NULL, NULL};

void evs_sub_config_init(evs_sub_config *c) {
    if (!c) return;
    memset(c, 0, sizeof *c);
    c->page_size = EVS_BUS_MAX_PAGE;
    c->checkpoint_every = 1000;
    c->checkpoint_ms = 1000;
    evs_retry_policy_default(&c->retry);
    c->on_failure = EVS_ON_FAILURE_PARK;
}

int evs_sub_open(evs_bus *b, const evs_sub_config *cfg, evs_sub_handler h, void *ctx, evs_subscription **out) {
    int rc;
    if (!out) return evs__err(EVS_EINVAL, "sub_open: out is NULL");
    *out = NULL;
    if (!b || !cfg || !h) return evs__err(EVS_EINVAL, "sub_open: bus, config and handler are required");
    if (cfg->page_size > EVS_BUS_MAX_PAGE)
        return evs__err(EVS_ELIMIT, "sub_open: page_size %u exceeds %u", cfg->page_size, EVS_BUS_MAX_PAGE);
    if (cfg->on_failure != EVS_ON_FAILURE_PARK && cfg->on_failure != EVS_ON_FAILURE_STOP)
        return evs__err(EVS_EINVAL, "sub_open: bad on_failure %d", (int)cfg->on_failure);
    evs_subscription *s = calloc(1, sizeof *s);
    if (!s) return evs__err(EVS_ENOMEM, "out of memory");
    evs__consumer *c = &s->c;
    c->page_size = cfg->page_size ? cfg->page_size : EVS_BUS_MAX_PAGE;
    c->checkpoint_every = cfg->checkpoint_every ? cfg->checkpoint_every : 1000;
    c->checkpoint_ms = cfg->checkpoint_ms ? cfg->checkpoint_ms : 1000;
    c->retry = cfg->retry;
    c->on_failure = cfg->on_failure;
    c->per_stream_order = cfg->per_stream_order;
    c->dlq_max_count = cfg->dlq_max_count;
    c->dlq_max_age_ns = cfg->dlq_max_age_ns;
    c->clock = cfg->clock;
    c->map = cfg->map;
    c->ops = &sub_ops;
    c->impl = s;
    s->handler = h;
    s->ctx = ctx;
    if ((rc = evs__consumer_init(c, b, EVS__KIND_SUB, cfg->name, cfg->owner, cfg->stream, &cfg->filter, cfg->tag,
                                 cfg->from))) {
        free(s);
        return rc;
    }
    *out = s;
    return EVS_OK;
}

int evs_sub_poll(evs_subscription *sub, int timeout_ms, size_t max_events, size_t *delivered) {
    if (!sub) return evs__err(EVS_EINVAL, "sub_poll: subscription is NULL");
    return evs__consumer_poll(&sub->c, timeout_ms, max_events, delivered);
}

void evs_sub_cancel(evs_subscription *sub) {
    if (sub) atomic_store(&sub->c.cancelled, 1);
}

int evs_sub_checkpoint(evs_subscription *sub) {
    if (!sub) return evs__err(EVS_EINVAL, "sub_checkpoint: subscription is NULL");
    return evs__consumer_commit(&sub->c, NULL);
}

int evs_sub_pause(evs_subscription *sub) {
    if (!sub) return evs__err(EVS_EINVAL, "sub_pause: subscription is NULL");
    return evs__consumer_set_status(&sub->c, EVS_CONSUMER_PAUSED);
}

int evs_sub_resume(evs_subscription *sub) {
    if (!sub) return evs__err(EVS_EINVAL, "sub_resume: subscription is NULL");
    return evs__consumer_set_status(&sub->c, EVS_CONSUMER_ACTIVE);
}

int evs_sub_reset(evs_subscription *sub, uint64_t position) {
    if (!sub) return evs__err(EVS_EINVAL, "sub_reset: subscription is NULL");
    evs__consumer *c = &sub->c;
    uint64_t next;
    int rc = evs__bus_start_next(c->store, c->rec.stream, position, &next);
    if (rc) return rc;
    c->rec.next = next;
    c->record_dirty = 1;
    return evs__consumer_commit(c, NULL);
}

void evs_sub_close(evs_subscription *sub) {
    if (!sub) return;
    evs__consumer_commit(&sub->c, NULL);
    evs__consumer_fini(&sub->c);
    free(sub);
}

int evs_sub_dlq_retry(evs_subscription *sub, uint64_t position) {
    if (!sub) return evs__err(EVS_EINVAL, "sub_dlq_retry: subscription is NULL");
    return evs__consumer_dlq_retry(&sub->c, position);
}

int evs_sub_dlq_retry_all(evs_subscription *sub, size_t *released, size_t *failed) {
    if (!sub) return evs__err(EVS_EINVAL, "sub_dlq_retry_all: subscription is NULL");
    return evs__consumer_dlq_retry_all(&sub->c, released, failed);
}
