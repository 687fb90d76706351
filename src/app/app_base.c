/*
 * app_base.c — what every part of the application layer shares and which
 * depends on none of them: kv error mapping, the hash behind command and
 * event ids, lookups in the registries, and aggregate stream names.
 *
 * It sits at the bottom of src/app/ so the parts above it (decisions and
 * results, the Lua aggregates, loading and snapshots, the command bus, and
 * app.c's handle) call downwards only.
 */
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "app/app_internal.h"

int evs__app_kv_err(int rc, const char *what) {
    /* kv.h's calls set their message with the code; a result code where the caller wanted none is a bug */
    if (rc <= 0) return rc;
    return evs__err(EVS_EIO, "app: %s: unexpected %s", what, rc == EVS__KV_NOTFOUND ? "not found" : "key exists");
}

void evs__app_note_max(_Atomic uint64_t *slot, uint64_t v) {
    uint64_t cur = atomic_load(slot);
    while (v > cur && !atomic_compare_exchange_weak(slot, &cur, v)) {
    }
}

void evs__app_hash(const void *a, size_t alen, const void *b, size_t blen, uint8_t out[EVS__HASH_BYTES]) {
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, EVS__HASH_BYTES);
    crypto_generichash_update(&st, a, alen);
    if (blen) crypto_generichash_update(&st, b, blen);
    crypto_generichash_final(&st, out, EVS__HASH_BYTES);
}

const char *evs_command_outcome_name(int o) {
    static const char *const n[EVS_CMD_OUTCOMES] = {"accepted", "rejected", "conflict", "invalid", "unknown", "failed"};
    return o >= 0 && o < EVS_CMD_OUTCOMES ? n[o] : "?";
}

evs__agg *evs__app_find_agg(evs_app *a, const char *name) {
    for (size_t i = 0; i < a->n_aggs; i++)
        if (strcmp(a->aggs[i]->name, name) == 0) return a->aggs[i];
    return NULL;
}

evs__handler *evs__app_find_handler(evs_app *a, const char *type) {
    for (size_t i = 0; i < a->n_handlers; i++)
        if (strcmp(a->handlers[i]->type, type) == 0) return a->handlers[i];
    return NULL;
}

int evs__agg_stream(const evs__agg *g, const char *id, char out[EVS_MAX_STREAM_NAME + 1]) {
    if (!id || !*id) return evs__err(EVS_EINVAL, "aggregate_id is missing or empty");
    size_t n = strlen(id);
    if (n > EVS_APP_MAX_ID) return evs__err(EVS_EINVAL, "aggregate_id is %zu bytes, at most %u", n, EVS_APP_MAX_ID);
    if (g->name_len + 1 + n > EVS_MAX_STREAM_NAME)
        return evs__err(EVS_EINVAL, "stream name \"%s-%s\" would exceed %u bytes", g->name, id, EVS_MAX_STREAM_NAME);
    if (!evs__utf8_valid(id, n, NULL)) return evs__err(EVS_EINVAL, "aggregate_id is not valid UTF-8");
    memcpy(out, g->name, g->name_len);
    out[g->name_len] = '-';
    memcpy(out + g->name_len + 1, id, n + 1);
    return EVS_OK;
}

const char *evs__app_json_str(json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}
