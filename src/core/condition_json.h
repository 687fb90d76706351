/*
 * condition_json.h — a DCB append condition as JSON, for the server's
 * append route and the CLI:
 *   {"after": 42, "query": [{"types": ["StudentSubscribed"],
 *                            "tags": ["course:c1"]}, ...]}
 * "after" (an integer >= 0, default 0) and "query" (1..EVS_MAX_QUERY_ITEMS
 * items) as in evs_append_condition (evstore.h); an item's "types" (any
 * of) and "tags" (all of) may be left out or empty.  Unknown members are
 * refused with their name.
 */
#ifndef EVS_CONDITION_JSON_H
#define EVS_CONDITION_JSON_H

#include "core/json.h"
#include "evstore.h"

typedef struct evs_condition_parsed {
    evs_append_condition cond;       /* points into the fields below */
    evs_query_item items[EVS_MAX_QUERY_ITEMS];
    const char **strs;               /* every type and tag, in order; into buf */
    char *buf;                       /* decoded strings */
} evs_condition_parsed;

/*
 * Parse the condition object v (a span of a validated buffer).  EVS_OK, or
 * EVS_EINVAL / EVS_ELIMIT with the message in evs_errmsg (naming the member
 * and the item) and its offset in *where.
 * Ownership: on success release out with evs__condition_parsed_free; on
 * failure nothing needs releasing.
 */
int evs__condition_from_json(evs_json_span v, evs_condition_parsed *out, const char **where);
void evs__condition_parsed_free(evs_condition_parsed *c);

#endif
