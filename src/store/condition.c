/*
 * condition.c — checking a conditional append's condition as given (its
 * shape, sizes and names), in the caller's thread before the append
 * queues, so that the group-commit leader only ever evaluates valid ones
 * (src/index/ixquery.c) and bad input is refused naming the item and field.
 */
#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "store/store_internal.h"

static int name_list_ok(const char *what, size_t item, const char *const *names, size_t n, size_t max_n,
                        size_t max_len) {
    if (n && !names) return evs__err(EVS_EINVAL, "condition: query item %zu: %s is NULL but counts %zu", item, what, n);
    if (n > max_n)
        return evs__err(EVS_ELIMIT, "condition: query item %zu: %zu %s, the limit is %zu", item, n, what, max_n);
    for (size_t i = 0; i < n; i++) {
        size_t len = names[i] ? strnlen(names[i], max_len + 1) : 0;
        if (len == 0 || len > max_len)
            return evs__err(EVS_EINVAL, "condition: query item %zu: %s %zu must be 1..%zu bytes", item, what, i + 1,
                            max_len);
        size_t bad;
        if (!evs__utf8_valid(names[i], len, &bad))
            return evs__err(EVS_EINVAL, "condition: query item %zu: %s %zu is not valid UTF-8 (byte %zu)", item, what,
                            i + 1, bad + 1);
    }
    return EVS_OK;
}

int evs__condition_validate(const evs_append_condition *c) {
    if (!c->items || c->n_items == 0)
        return evs__err(EVS_EINVAL, "condition: the query needs at least one item (an item with no types and no "
                        "tags matches every event)");
    if (c->n_items > EVS_MAX_QUERY_ITEMS)
        return evs__err(EVS_ELIMIT, "condition: %zu query items, the limit is %u", c->n_items, EVS_MAX_QUERY_ITEMS);
    if (c->after > (uint64_t)INT64_MAX)
        return evs__err(EVS_EINVAL, "condition: after %llu is out of range", (unsigned long long)c->after);
    for (size_t i = 0; i < c->n_items; i++) {
        const evs_query_item *it = &c->items[i];
        int rc = name_list_ok("event types", i + 1, it->event_types, it->n_event_types, EVS_MAX_QUERY_TYPES,
                              EVS_MAX_TYPE_NAME);
        if (!rc) rc = name_list_ok("tags", i + 1, it->tags, it->n_tags, EVS_MAX_TAGS, EVS_MAX_TAG_BYTES);
        if (rc) return rc;
    }
    return EVS_OK;
}
