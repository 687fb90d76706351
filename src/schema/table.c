/*
 * table.c — lookups in the registry's in-memory tables (table.h) that
 * the registry (registry.c), upcasting (upcast.c) and the upcaster
 * objects (upcaster.c) share: finding a type, a version row's key,
 * counting a failure, kv results as errors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "schema/table.h"

int evs__schema_kv_err(int rc, const char *what) {
    if (rc <= 0) return rc; /* an evs code, its message set by kv */
    return evs__err(EVS_EIO, "schemas: %s: unexpected result %d", what, rc);
}

int evs__schema_retry_done(int rc) {
    if (rc == EVS__SCHEMA_STALE)
        return evs__err(EVS_ECONFLICT, "schemas: the registry kept changing on other servers; try again");
    return rc;
}

size_t evs__schema_key(uint8_t *buf, const char *type, uint32_t version) {
    size_t n = strlen(type);
    memcpy(buf, type, n);
    buf[n] = 0;
    buf[n + 1] = (uint8_t)(version >> 24);
    buf[n + 2] = (uint8_t)(version >> 16);
    buf[n + 3] = (uint8_t)(version >> 8);
    buf[n + 4] = (uint8_t)version;
    return n + 5;
}

static int type_cmp(const void *key, const void *elem) {
    return strcmp((const char *)key, (*(evs__stype *const *)elem)->name);
}

evs__stype *evs__schema_find(const evs_schema_registry *r, const char *name) {
    if (!r->nt) return NULL;
    evs__stype **hit = bsearch(name, r->t, r->nt, sizeof *r->t, type_cmp);
    return hit ? *hit : NULL;
}

void evs__schema_note(evs__stype *t, _Atomic uint64_t *counter, const char *msg) {
    atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
    pthread_mutex_lock(&t->last_mu);
    snprintf(t->last_failure, sizeof t->last_failure, "%s", msg);
    pthread_mutex_unlock(&t->last_mu);
}

