/*
 * registry.c — the schema registry: versions of each event type's schema,
 * compatibility modes, deprecation, validation policies, the append hook
 * and its counters, kept through the kv interface (src/bus/kv.h): in
 * DIR/schemas/ on the embedded engine, in evs_bus_kv on PostgreSQL.
 *
 * DIR/schemas/ is an LMDB environment of its own next to the log (why not a
 * reserved stream: docs/decisions.md).  Commits are synced: a registration
 * is durable when evs_schema_register returns.  On PostgreSQL the same
 * tables are evs_bus_kv rows with db 10..13 (and 14, below), committed
 * before the call returns.  Its databases, keys and values (JSON objects
 * written with jansson; rare writes, off the append path):
 *
 *   versions   type 0x00 be32(version) -> {"schema": "<text as registered>",
 *              "registered_at": ns, "deprecated_at": ns (0: not deprecated),
 *              "migration_path": "..." | null}
 *   types      type -> {"compat": "backward" | "forward" | "full" | "none"}
 *   policies   "d" (default), "s" + stream type, "e" + event type ->
 *              {"validation": "enforce" | "warn" | "off",
 *               "deprecated": "warn" | "refuse" | "allow"}
 *   upcasters  type 0x00 be32(from) -> {"lang": "lua", "source": "...",
 *              "registered_at": ns}  (C upcasters are never stored)
 *   meta       PostgreSQL only: "gen" -> be64, bumped by every write
 *
 * Sharing (PostgreSQL: several servers on one database).  Each server keeps
 * the tables in memory as above, tagged with the generation they reflect.
 * A write takes the kv write transaction (its advisory lock makes writers
 * of every server run one at a time), compares the stored generation with
 * its own and, when another server wrote since, reloads and checks again:
 * version numbers, compatibility checks and upcaster slots are decided
 * against what is committed, never against a stale copy, so two servers
 * can never both register version N of a type.  Readers compare the
 * generation before answering (the schema routes: a registration through
 * one server is visible through every other at once); the append hook and
 * upcasting compare it at most every EVS__SCHEMA_RECHECK_NS, so a
 * registration made elsewhere is enforced here within that time (a query
 * per 200 ms instead of one per append).  A reload keeps every type entry
 * (their counters are this server's), swaps in their versions, policies and
 * Lua upcasters, and keeps the C upcasters this process declared.
 *
 * Everything is loaded at open and kept in memory (table.h); the append
 * hook reads only memory, under the read lock.  A version never changes
 * once registered, except its deprecation.
 *
 * The hook, per event: one lookup of the event type; a type without
 * schemas returns at once.  Otherwise the policy is resolved (event type,
 * else stream type, else default), the version looked up, deprecation and
 * validation applied.  A refusal sets the store's message and this
 * thread's last violation (evs_schema_last_violation).
 */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/core.h"
#include "schema/table.h"
#include "store/store_access.h"

#define EVS_SCHEMA_MAP_SIZE (1ull << 30)

/* DIR/schemas/ as it always was (synced commits, LMDB's default readers); rows 10..14 on PostgreSQL. */
static const evs__kv_layout schema_layout = {
    .what = "schemas",
    .ntables = EVS__SK_NTABLES,
    .lmdb_names = {"versions", "types", "policies", "upcasters", NULL},
    .pg_db = {10, 11, 12, 13, 14},
    .lmdb_sync = EVS__KV_SYNC_FULL,
    .lmdb_map_size = EVS_SCHEMA_MAP_SIZE,
};

static _Thread_local evs_schema_violation tl_violation;
static _Thread_local int tl_have_violation;

/* ----------------------------------------------------------------- names */

const char *evs_validation_name(int v) {
    switch (v) {
    case EVS_VALIDATION_ENFORCE: return "enforce";
    case EVS_VALIDATION_WARN: return "warn";
    case EVS_VALIDATION_OFF: return "off";
    default: return "unknown";
    }
}

int evs_validation_parse(const char *name, evs_validation *out) {
    for (int i = 0; name && i < 3; i++)
        if (strcmp(name, evs_validation_name(i)) == 0) {
            *out = (evs_validation)i;
            return EVS_OK;
        }
    return evs__err(EVS_EINVAL, "unknown validation policy \"%s\" (enforce, warn or off)", name ? name : "");
}

const char *evs_deprecated_policy_name(int v) {
    switch (v) {
    case EVS_DEPRECATED_WARN: return "warn";
    case EVS_DEPRECATED_REFUSE: return "refuse";
    case EVS_DEPRECATED_ALLOW: return "allow";
    default: return "unknown";
    }
}

int evs_deprecated_policy_parse(const char *name, evs_deprecated_policy *out) {
    for (int i = 0; name && i < 3; i++)
        if (strcmp(name, evs_deprecated_policy_name(i)) == 0) {
            *out = (evs_deprecated_policy)i;
            return EVS_OK;
        }
    return evs__err(EVS_EINVAL, "unknown deprecation policy \"%s\" (warn, refuse or allow)", name ? name : "");
}

/* An event or stream type name as the store accepts them: 1..255 bytes of UTF-8, no control characters. */
static int check_name(const char *what, const char *s) {
    if (!s || !*s) return evs__err(EVS_EINVAL, "%s is empty", what);
    size_t n = strnlen(s, EVS_MAX_TYPE_NAME + 1);
    if (n > EVS_MAX_TYPE_NAME) return evs__err(EVS_ELIMIT, "%s is longer than %u bytes", what, EVS_MAX_TYPE_NAME);
    if (!evs__utf8_valid(s, n, NULL)) return evs__err(EVS_EINVAL, "%s \"%s\" is not valid UTF-8", what, s);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return evs__err(EVS_EINVAL, "%s contains a control character at byte %zu", what, i + 1);
    return EVS_OK;
}

/* ----------------------------------------------------------------- types */

/* The type, created (empty, compat backward) when missing.  Write lock held (or opening). */
static evs__stype *type_get(evs_schema_registry *r, const char *name) {
    evs__stype *t = evs__schema_find(r, name);
    if (t) return t;
    if (r->nt == r->capt) {
        size_t ncap = r->capt ? r->capt * 2 : 16;
        evs__stype **nt = realloc(r->t, ncap * sizeof *nt);
        if (!nt) return NULL;
        r->t = nt;
        r->capt = ncap;
    }
    t = calloc(1, sizeof *t);
    if (!t || !(t->name = strdup(name))) {
        free(t);
        return NULL;
    }
    pthread_mutex_init(&t->last_mu, NULL);
    t->compat = EVS_COMPAT_BACKWARD;
    size_t at = 0;
    while (at < r->nt && strcmp(r->t[at]->name, name) < 0) at++;
    memmove(r->t + at + 1, r->t + at, (r->nt - at) * sizeof *r->t);
    r->t[at] = t;
    r->nt++;
    return t;
}

/* Room for one more version (and its upcaster slot). */
static int type_grow(evs__stype *t) {
    if (t->nv < t->capv) return EVS_OK;
    size_t ncap = t->capv ? t->capv * 2 : 4;
    evs__sversion *nv = realloc(t->v, ncap * sizeof *nv);
    if (!nv) return evs__err(EVS_ENOMEM, "out of memory adding a schema version");
    t->v = nv;
    evs__upcaster **nu = realloc(t->up, ncap * sizeof *nu);
    if (!nu) return evs__err(EVS_ENOMEM, "out of memory adding a schema version");
    memset(nu + t->capv, 0, (ncap - t->capv) * sizeof *nu);
    t->up = nu;
    t->capv = ncap;
    return EVS_OK;
}

static void version_free(evs__sversion *v) {
    evs_json_schema_free(v->js);
    free(v->broken);
    free(v->text);
    free(v->migration_path);
}

static void type_free(evs__stype *t) {
    for (size_t i = 0; i < t->nv; i++) version_free(&t->v[i]);
    for (size_t i = 0; i < t->capv; i++) evs__upcaster_free(t->up[i]);
    pthread_mutex_destroy(&t->last_mu);
    free(t->v);
    free(t->up);
    free(t->name);
    free(t);
}

/* ---------------------------------------------------------------- policy */

static evs__spolicy *spolicy_find(const evs_schema_registry *r, const char *name, size_t len) {
    size_t lo = 0, hi = r->nsp;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const char *m = r->sp[mid].name;
        size_t ml = strlen(m);
        int c = memcmp(m, name, ml < len ? ml : len);
        if (c == 0) c = ml < len ? -1 : ml > len ? 1 : 0;
        if (c == 0) return &r->sp[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

static evs_schema_policy resolve(const evs_schema_registry *r, const evs__stype *t, const char *stype, size_t stlen) {
    if (t && t->has_policy) return t->policy;
    if (stype && r->nsp) {
        const evs__spolicy *p = spolicy_find(r, stype, stlen);
        if (p) return p->policy;
    }
    return r->def;
}

static json_t *policy_json(const evs_schema_policy *p) {
    return json_pack("{s:s, s:s}", "validation", evs_validation_name(p->validation), "deprecated",
                     evs_deprecated_policy_name(p->deprecated));
}

static int policy_from_json(const json_t *j, evs_schema_policy *p) {
    evs_validation v;
    evs_deprecated_policy d;
    if (evs_validation_parse(json_string_value(json_object_get(j, "validation")), &v) ||
        evs_deprecated_policy_parse(json_string_value(json_object_get(j, "deprecated")), &d))
        return EVS_ECORRUPT;
    p->validation = v;
    p->deprecated = d;
    return EVS_OK;
}

/* ------------------------------------------------------------ durability */

static int put_json(evs__kv_txn *txn, int db, const void *key, size_t klen, json_t *j) {
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!s) return evs__err(EVS_ENOMEM, "out of memory encoding a registry record");
    evs__kv_val k = {klen, (void *)key}, v = {strlen(s), s};
    int rc = evs__kv_put(txn, db, &k, &v, 0);
    free(s);
    return evs__schema_kv_err(rc, "write");
}

/* PostgreSQL: the stored generation (0 before the first write). */
static int gen_read(evs__kv_txn *txn, uint64_t *gen) {
    return evs__schema_kv_err(evs__kv_gen_get(txn, EVS__SK_META, "gen", gen), "read the generation");
}

static int reload(evs_schema_registry *r, evs__kv_txn *txn);

int evs__schema_write(evs_schema_registry *r, int (*fn)(evs_schema_registry *, evs__kv_txn *, void *), void *arg) {
    if (r->readonly || !r->kv) return evs__err(EVS_ECLOSED, "the schema registry is read-only (store opened read-only)");
    evs__kv_txn *txn;
    uint64_t gen = 0;
    int rc = evs__kv_begin(r->kv, NULL, 0, &txn);
    if (rc) return rc;
    if (r->pg) {
        /* under the writers' lock: what is stored now is what this write is checked against */
        if ((rc = gen_read(txn, &gen))) goto fail;
        if (gen != r->gen) {
            if ((rc = reload(r, txn))) goto fail;
            r->gen = gen;
            evs__kv_abort(txn);
            return EVS__SCHEMA_STALE;
        }
    }
    if ((rc = fn(r, txn, arg))) goto fail;
    if (r->pg) {
        if ((rc = evs__schema_kv_err(evs__kv_gen_put(txn, EVS__SK_META, "gen", gen + 1), "write the generation")))
            goto fail;
    }
    if ((rc = evs__kv_commit(txn))) return rc;
    if (r->pg) r->gen = gen + 1;
    return EVS_OK;
fail:
    evs__kv_abort(txn);
    return rc;
}

static json_t *version_json(const evs__sversion *v) {
    return json_pack("{s:s%, s:I, s:I, s:s?}", "schema", v->text, v->text_len, "registered_at",
                     (json_int_t)v->registered_at, "deprecated_at", (json_int_t)v->deprecated_at, "migration_path",
                     v->migration_path);
}

/* --------------------------------------------------------------- loading */

static int compile_version(evs__sversion *v, const char *type, uint32_t version) {
    evs_schema_violation why;
    if (evs_json_schema_compile(v->text, v->text_len, &v->js, &why) == EVS_OK) return EVS_OK;
    char msg[700];
    snprintf(msg, sizeof msg, "schema %u of %s no longer compiles: %s", version, type, evs_errmsg());
    v->broken = strdup(msg);
    return v->broken ? EVS_OK : evs__err(EVS_ENOMEM, "out of memory");
}

static int load(evs_schema_registry *r, evs__kv_txn *txn) {
    evs__kv_cursor *cur = NULL;
    evs__kv_val k = {0, NULL}, v;
    int rc;
    /* versions, in key order: by type, then version */
    if ((rc = evs__kv_cursor_open(txn, EVS__SK_VERSIONS, &cur))) return rc;
    for (rc = evs__kv_cursor_get(cur, &k, &v, EVS__KV_FIRST); rc == 0; rc = evs__kv_cursor_get(cur, &k, &v, EVS__KV_NEXT)) {
        const uint8_t *kb = k.data;
        if (k.size < 6 || kb[k.size - 5] != 0 || memchr(kb, 0, k.size - 5)) {
            rc = evs__err(EVS_ECORRUPT, "schemas: malformed version key");
            goto out;
        }
        char name[EVS_MAX_TYPE_NAME + 1];
        size_t nl = k.size - 5;
        if (nl > EVS_MAX_TYPE_NAME) {
            rc = evs__err(EVS_ECORRUPT, "schemas: type name too long");
            goto out;
        }
        memcpy(name, kb, nl);
        name[nl] = 0;
        uint32_t ver = (uint32_t)kb[nl + 1] << 24 | (uint32_t)kb[nl + 2] << 16 | (uint32_t)kb[nl + 3] << 8 | kb[nl + 4];
        evs__stype *t = type_get(r, name);
        if (!t) {
            rc = evs__err(EVS_ENOMEM, "out of memory loading schemas");
            goto out;
        }
        if (ver != t->nv + 1) {
            rc = evs__err(EVS_ECORRUPT, "schemas: %s has version %u after %zu", name, ver, t->nv);
            goto out;
        }
        json_error_t je;
        json_t *j = json_loadb(v.data, v.size, 0, &je);
        const char *text = json_string_value(json_object_get(j, "schema"));
        if (!text) {
            json_decref(j);
            rc = evs__err(EVS_ECORRUPT, "schemas: record of %s version %u is malformed", name, ver);
            goto out;
        }
        if ((rc = type_grow(t))) {
            json_decref(j);
            goto out;
        }
        evs__sversion *sv = &t->v[t->nv];
        memset(sv, 0, sizeof *sv);
        size_t tl = json_string_length(json_object_get(j, "schema"));
        sv->text = malloc(tl + 1);
        const char *mp = json_string_value(json_object_get(j, "migration_path"));
        sv->migration_path = mp ? strdup(mp) : NULL;
        if (!sv->text || (mp && !sv->migration_path)) {
            free(sv->text);
            free(sv->migration_path);
            json_decref(j);
            rc = evs__err(EVS_ENOMEM, "out of memory loading schemas");
            goto out;
        }
        memcpy(sv->text, text, tl);
        sv->text[tl] = 0;
        sv->text_len = tl;
        sv->registered_at = json_integer_value(json_object_get(j, "registered_at"));
        sv->deprecated_at = json_integer_value(json_object_get(j, "deprecated_at"));
        sv->deprecated = sv->deprecated_at != 0;
        json_decref(j);
        t->nv++;
        if ((rc = compile_version(sv, name, ver))) goto out;
    }
    if (rc != EVS__KV_NOTFOUND) {
        rc = evs__schema_kv_err(rc, "read versions");
        goto out;
    }
    evs__kv_cursor_close(cur);
    cur = NULL;
    /* implicit steps: the next version includes this one */
    for (size_t i = 0; i < r->nt; i++) {
        evs__stype *t = r->t[i];
        for (size_t k2 = 0; k2 + 1 < t->nv; k2++)
            t->v[k2].implicit_next = t->v[k2].js && t->v[k2 + 1].js &&
                                     evs_json_schema_includes(t->v[k2 + 1].js, t->v[k2].js, NULL) == EVS_OK;
    }
    evs__err_clear();
    /* types */
    if ((rc = evs__kv_cursor_open(txn, EVS__SK_TYPES, &cur))) return rc;
    for (rc = evs__kv_cursor_get(cur, &k, &v, EVS__KV_FIRST); rc == 0; rc = evs__kv_cursor_get(cur, &k, &v, EVS__KV_NEXT)) {
        char name[EVS_MAX_TYPE_NAME + 1];
        if (k.size == 0 || k.size > EVS_MAX_TYPE_NAME) continue;
        memcpy(name, k.data, k.size);
        name[k.size] = 0;
        json_t *j = json_loadb(v.data, v.size, 0, NULL);
        evs_schema_compat mode;
        int prc = evs_schema_compat_parse(json_string_value(json_object_get(j, "compat")), &mode);
        json_decref(j);
        evs__stype *t = type_get(r, name);
        if (prc || !t) {
            rc = prc ? evs__err(EVS_ECORRUPT, "schemas: compatibility of %s is malformed", name)
                     : evs__err(EVS_ENOMEM, "out of memory loading schemas");
            goto out;
        }
        t->compat = mode;
    }
    evs__kv_cursor_close(cur);
    cur = NULL;
    /* policies */
    if ((rc = evs__kv_cursor_open(txn, EVS__SK_POLICIES, &cur))) return rc;
    for (rc = evs__kv_cursor_get(cur, &k, &v, EVS__KV_FIRST); rc == 0; rc = evs__kv_cursor_get(cur, &k, &v, EVS__KV_NEXT)) {
        if (k.size == 0 || k.size > EVS_MAX_TYPE_NAME + 1) continue;
        char name[EVS_MAX_TYPE_NAME + 2];
        memcpy(name, k.data, k.size);
        name[k.size] = 0;
        json_t *j = json_loadb(v.data, v.size, 0, NULL);
        evs_schema_policy p;
        int prc = policy_from_json(j, &p);
        json_decref(j);
        if (prc) {
            rc = evs__err(EVS_ECORRUPT, "schemas: policy \"%s\" is malformed", name + 1);
            goto out;
        }
        if (name[0] == 'd') {
            r->def = p;
        } else if (name[0] == 'e') {
            evs__stype *t = type_get(r, name + 1);
            if (!t) {
                rc = evs__err(EVS_ENOMEM, "out of memory loading schemas");
                goto out;
            }
            t->has_policy = 1;
            t->policy = p;
        } else if (name[0] == 's') {
            if (r->nsp == r->capsp) {
                size_t ncap = r->capsp ? r->capsp * 2 : 8;
                evs__spolicy *np = realloc(r->sp, ncap * sizeof *np);
                if (!np) {
                    rc = evs__err(EVS_ENOMEM, "out of memory loading schemas");
                    goto out;
                }
                r->sp = np;
                r->capsp = ncap;
            }
            if (!(r->sp[r->nsp].name = strdup(name + 1))) {
                rc = evs__err(EVS_ENOMEM, "out of memory loading schemas");
                goto out;
            }
            r->sp[r->nsp++].policy = p; /* keys come sorted, so the array is */
        }
    }
    evs__kv_cursor_close(cur);
    cur = NULL;
    return evs__schema_load_upcasters(r, txn);
out:
    evs__kv_cursor_close(cur);
    return rc;
}

/* ------------------------------------------------------ sharing (reload) */

/* Insert type t (from a reload's tables) into r's sorted array.  Write lock held. */
static int type_insert(evs_schema_registry *r, evs__stype *t) {
    if (r->nt == r->capt) {
        size_t ncap = r->capt ? r->capt * 2 : 16;
        evs__stype **nt = realloc(r->t, ncap * sizeof *nt);
        if (!nt) return evs__err(EVS_ENOMEM, "out of memory reloading schemas");
        r->t = nt;
        r->capt = ncap;
    }
    size_t at = 0;
    while (at < r->nt && strcmp(r->t[at]->name, t->name) < 0) at++;
    memmove(r->t + at + 1, r->t + at, (r->nt - at) * sizeof *r->t);
    r->t[at] = t;
    r->nt++;
    return EVS_OK;
}

static void tables_free(evs_schema_registry *x) {
    for (size_t i = 0; i < x->nt; i++)
        if (x->t[i]) type_free(x->t[i]);
    free(x->t);
    for (size_t i = 0; i < x->nsp; i++) free(x->sp[i].name);
    free(x->sp);
}

/*
 * Load what txn sees into fresh tables and move it into r: every type entry
 * of r stays (other threads' pointers and this server's counters), with the
 * stored versions, compatibility, policy and Lua upcasters swapped in; the
 * C upcasters this process declared stay where their step still exists.
 * Write lock held (or opening); on failure r is unchanged.
 */
static int reload(evs_schema_registry *r, evs__kv_txn *txn) {
    evs_schema_registry x;
    memset(&x, 0, sizeof x);
    x.def.validation = EVS_VALIDATION_ENFORCE;
    x.def.deprecated = EVS_DEPRECATED_WARN;
    int rc = load(&x, txn);
    /* room for the new types first, so that the moves below cannot fail half-way */
    size_t fresh = 0;
    for (size_t i = 0; !rc && i < x.nt; i++) fresh += !evs__schema_find(r, x.t[i]->name);
    if (!rc && r->nt + fresh > r->capt) {
        evs__stype **nt = realloc(r->t, (r->nt + fresh) * sizeof *nt);
        if (!nt) rc = evs__err(EVS_ENOMEM, "out of memory reloading schemas");
        else r->t = nt, r->capt = r->nt + fresh;
    }
    if (rc) {
        tables_free(&x);
        return rc;
    }
    for (size_t i = 0; i < r->nt; i++) {
        /* a type stored nowhere now (only a policy that was cleared, or nothing) */
        if (!evs__schema_find(&x, r->t[i]->name)) {
            r->t[i]->has_policy = 0;
            r->t[i]->compat = EVS_COMPAT_BACKWARD;
        }
    }
    for (size_t i = 0; i < x.nt; i++) {
        evs__stype *nt = x.t[i], *old = evs__schema_find(r, nt->name);
        if (!old) {
            type_insert(r, nt); /* cannot fail: room was made */
            x.t[i] = NULL;
            continue;
        }
        for (size_t j = 0; j < old->capv && j < nt->capv; j++)
            if (old->up[j] && old->up[j]->kind == EVS__UP_C && !nt->up[j] && j + 1 < nt->nv) {
                nt->up[j] = old->up[j];
                old->up[j] = NULL;
            }
        evs__sversion *v = old->v;
        evs__upcaster **up = old->up;
        size_t nv = old->nv, capv = old->capv;
        old->v = nt->v, old->up = nt->up, old->nv = nt->nv, old->capv = nt->capv;
        nt->v = v, nt->up = up, nt->nv = nv, nt->capv = capv; /* the old ones, freed with x */
        old->compat = nt->compat;
        old->has_policy = nt->has_policy;
        old->policy = nt->policy;
    }
    evs__spolicy *sp = r->sp;
    size_t nsp = r->nsp, capsp = r->capsp;
    r->sp = x.sp, r->nsp = x.nsp, r->capsp = x.capsp;
    x.sp = sp, x.nsp = nsp, x.capsp = capsp;
    r->def = x.def;
    tables_free(&x);
    return EVS_OK;
}

/* PostgreSQL: bring the tables up to date when the stored generation moved.  Write lock held. */
static int sync_locked(evs_schema_registry *r) {
    evs__kv_txn *txn;
    uint64_t gen;
    int rc = evs__kv_begin(r->kv, NULL, EVS__KV_RDONLY, &txn);
    if (rc) return rc;
    /* one snapshot: the generation and the tables read with it agree */
    if (!(rc = gen_read(txn, &gen)) && gen != r->gen && !(rc = reload(r, txn))) r->gen = gen;
    evs__kv_abort(txn);
    if (!rc) atomic_store(&r->checked_ns, evs_now_ns());
    return rc;
}

void evs__schema_wrlock_fresh(evs_schema_registry *r) {
    pthread_rwlock_wrlock(&r->lock);
    /* a failure here is the write's to meet (its transaction checks the generation again) */
    if (r->pg && r->kv && sync_locked(r)) evs__err_clear();
}

void evs__schema_refresh(evs_schema_registry *r, int64_t max_age_ns) {
    if (!r->pg || !r->kv) return;
    int64_t now = evs_now_ns();
    if (max_age_ns && now - atomic_load(&r->checked_ns) < max_age_ns) return;
    if (max_age_ns) {
        /* the append path does not queue behind a refresh another thread is doing */
        if (pthread_mutex_trylock(&r->refresh_mu)) return;
    } else {
        pthread_mutex_lock(&r->refresh_mu);
    }
    evs__kv_txn *txn;
    uint64_t gen;
    int rc = evs__kv_begin(r->kv, NULL, EVS__KV_RDONLY, &txn);
    if (!rc) {
        rc = gen_read(txn, &gen);
        evs__kv_abort(txn);
    }
    if (!rc) {
        pthread_rwlock_rdlock(&r->lock);
        int same = gen == r->gen;
        pthread_rwlock_unlock(&r->lock);
        if (same) {
            atomic_store(&r->checked_ns, now);
        } else {
            pthread_rwlock_wrlock(&r->lock);
            rc = sync_locked(r);
            pthread_rwlock_unlock(&r->lock);
        }
    }
    pthread_mutex_unlock(&r->refresh_mu);
    if (rc) evs__err_clear();
}

/* ------------------------------------------------------------- the hook */

static int refuse(evs__stype *t, size_t index, uint32_t version, const evs_schema_violation *v, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int refuse(evs__stype *t, size_t index, uint32_t version, const evs_schema_violation *v, const char *fmt, ...) {
    char what[800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    tl_violation = *v;
    tl_have_violation = 1;
    char msg[1100];
    snprintf(msg, sizeof msg, "event %zu (%.100s version %u): %s", index + 1, t->name, version, what);
    evs__schema_note(t, &t->refused, msg);
    return evs__err(EVS_EINVAL, "%s", msg);
}

static void warn(evs__stype *t, _Atomic uint64_t *counter, size_t index, uint32_t version, const char *what) {
    char msg[1100];
    snprintf(msg, sizeof msg, "event %zu (%.100s version %u) stored with a warning: %s", index + 1, t->name, version, what);
    evs__schema_note(t, counter, msg);
}

static int hook(void *ctx, const char *stream, size_t stream_len, const char *stype, size_t stlen, const evs_event_in *ev,
                size_t index) {
    evs_schema_registry *r = ctx;
    (void)stream, (void)stream_len;
    evs__schema_refresh(r, EVS__SCHEMA_RECHECK_NS);
    pthread_rwlock_rdlock(&r->lock);
    evs__stype *t = evs__schema_find(r, ev->event_type);
    if (!t || t->nv == 0) {
        pthread_rwlock_unlock(&r->lock);
        return EVS_OK;
    }
    int rc = EVS_OK;
    evs_schema_policy p = resolve(r, t, stype, stlen);
    uint32_t ver = ev->event_version ? ev->event_version : 1;
    evs_schema_violation v; /* filled on failure only */
    if (p.validation == EVS_VALIDATION_OFF && p.deprecated == EVS_DEPRECATED_ALLOW) goto out;
    if (ver > t->nv) {
        char what[200];
        snprintf(what, sizeof what, "no schema version %u is registered (versions 1..%zu are)", ver, t->nv);
        evs__jschema_set(&v, "", "version", "", "%s", what);
        if (p.validation == EVS_VALIDATION_ENFORCE) rc = refuse(t, index, ver, &v, "%s", what);
        else if (p.validation == EVS_VALIDATION_WARN) warn(t, &t->warned, index, ver, what);
        goto out;
    }
    const evs__sversion *sv = &t->v[ver - 1];
    if (sv->deprecated && p.deprecated != EVS_DEPRECATED_ALLOW) {
        char what[200];
        snprintf(what, sizeof what, "version %u is deprecated; the latest is %zu", ver, t->nv);
        evs__jschema_set(&v, "", "deprecated", "", "%s", what);
        if (p.deprecated == EVS_DEPRECATED_REFUSE) {
            atomic_fetch_add_explicit(&t->deprecated_appends, 1, memory_order_relaxed);
            rc = refuse(t, index, ver, &v, "%s", what);
            goto out;
        }
        warn(t, &t->deprecated_appends, index, ver, what);
    }
    if (p.validation == EVS_VALIDATION_OFF) goto out;
    atomic_fetch_add_explicit(&t->validated, 1, memory_order_relaxed);
    if (!sv->js) {
        evs__jschema_set(&v, "", "schema", "", "%s", sv->broken);
        if (p.validation == EVS_VALIDATION_ENFORCE) rc = refuse(t, index, ver, &v, "%s", sv->broken);
        else warn(t, &t->warned, index, ver, sv->broken);
        goto out;
    }
    int vrc = evs__jschema_check(sv->js, ev->data, ev->data_len, &v);
    if (vrc == EVS_OK) goto out;
    char what[800];
    if (vrc == EVS_EINVAL)
        snprintf(what, sizeof what, "schema violation at %.200s: %.31s: %.400s", v.pointer[0] ? v.pointer : "(root)",
                 v.keyword, v.message);
    else
        snprintf(what, sizeof what, "could not be validated: %s", evs_errmsg());
    if (p.validation == EVS_VALIDATION_ENFORCE) rc = refuse(t, index, ver, &v, "%s", what);
    else warn(t, &t->warned, index, ver, what);
out:
    pthread_rwlock_unlock(&r->lock);
    if (rc == EVS_OK) evs__err_clear();
    return rc;
}

int evs_schema_last_violation(evs_schema_violation *out) {
    if (!tl_have_violation) return evs__err(EVS_ENOTFOUND, "no append was refused by a schema in this thread");
    if (out) *out = tl_violation;
    tl_have_violation = 0;
    return EVS_OK;
}

/* ------------------------------------------------------------ open/close */

void evs_schema_close(evs_schema_registry *r) {
    if (!r) return;
    if (r->hooked) evs__store_set_validator(r->store, NULL, NULL);
    for (size_t i = 0; i < r->nt; i++) type_free(r->t[i]);
    free(r->t);
    for (size_t i = 0; i < r->nsp; i++) free(r->sp[i].name);
    free(r->sp);
    evs__kv_close(r->kv);
    pthread_mutex_destroy(&r->refresh_mu);
    pthread_rwlock_destroy(&r->lock);
    free(r);
}

int evs_schema_open(evs_store *s, evs_schema_registry **out) {
    if (!out) return evs__err(EVS_EINVAL, "schema open: out is NULL");
    *out = NULL;
    if (!s) return evs__err(EVS_ECLOSED, "schema open: the store is not open");
    void *pg = evs__store_pg_engine(s);
    const char *dir = evs__store_dir(s);
    if (!dir && !pg) return evs__err(EVS_ECLOSED, "schema open: the store is not open");
    evs_schema_registry *r = calloc(1, sizeof *r);
    if (!r) return evs__err(EVS_ENOMEM, "out of memory opening the schema registry");
    r->store = s;
    r->pg = pg != NULL;
    r->readonly = evs__store_readonly(s);
    r->def.validation = EVS_VALIDATION_ENFORCE;
    r->def.deprecated = EVS_DEPRECATED_WARN;
    pthread_rwlock_init(&r->lock, NULL);
    pthread_mutex_init(&r->refresh_mu, NULL);
    int rc;
    char path[PATH_MAX] = "postgresql";
    evs__kv_txn *txn = NULL;
    if (dir) {
        snprintf(path, sizeof path, "%s/schemas", dir);
        struct stat st;
        if (r->readonly && stat(path, &st) != 0) {
            *out = r; /* nothing registered yet: an empty registry */
            return EVS_OK;
        }
    }
    /* the hook first: it refuses a second registry on this store before LMDB opens the environment twice */
    if (!r->readonly) {
        if ((rc = evs__store_set_validator(s, hook, r))) goto fail;
        r->hooked = 1;
    }
    if (pg) {
        if ((rc = evs__kv_open_pg_as(&schema_layout, pg, &r->kv))) goto fail;
    } else {
        if (!r->readonly && mkdir(path, 0755) != 0 && errno != EEXIST) {
            rc = evs__err_errno(-errno, "cannot create %s", path);
            goto fail;
        }
        if ((rc = evs__kv_open_lmdb_as(&schema_layout, path, r->readonly, &r->kv))) goto fail;
    }
    if ((rc = evs__kv_begin(r->kv, NULL, EVS__KV_RDONLY, &txn))) goto fail;
    if (pg && (rc = gen_read(txn, &r->gen))) goto fail;
    if ((rc = load(r, txn))) {
        evs__err_prefix(rc, "%s: ", path);
        goto fail;
    }
    evs__kv_abort(txn);
    atomic_store(&r->checked_ns, evs_now_ns());
    *out = r;
    return EVS_OK;
fail:
    evs__kv_abort(txn);
    evs_schema_close(r);
    return rc;
}

/* ----------------------------------------------------------- registering */

typedef struct reg_op {
    const char *type;
    uint32_t version;
    const evs__sversion *v;
} reg_op;

static int reg_write(evs_schema_registry *r, evs__kv_txn *txn, void *arg) {
    reg_op *op = arg;
    uint8_t key[EVS_MAX_TYPE_NAME + 5];
    size_t kl = evs__schema_key(key, op->type, op->version);
    evs__kv_val k = {kl, key}, v;
    (void)r;
    int rc = evs__kv_get(txn, EVS__SK_VERSIONS, &k, &v);
    if (rc == EVS_OK) return evs__err(EVS_ECONFLICT, "%s version %u is already registered", op->type, op->version);
    if (rc != EVS__KV_NOTFOUND) return evs__schema_kv_err(rc, "read a version");
    json_t *j = version_json(op->v);
    return put_json(txn, EVS__SK_VERSIONS, key, kl, j);
}

/* Check def against the registry (write lock held): the compiled schema in *js, the version in *ver. */
static int check_def(evs_schema_registry *r, const evs_schema_def *def, evs_json_schema **js, uint32_t *ver,
                     evs_schema_violation *why) {
    evs_schema_violation local;
    if (!why) why = &local;
    memset(why, 0, sizeof *why);
    *js = NULL;
    int rc;
    if (!def) return evs__err(EVS_EINVAL, "schema register: def is NULL");
    if ((rc = check_name("event type", def->event_type))) return rc;
    if (!def->schema) return evs__err(EVS_EINVAL, "schema register: %s: the schema text is missing", def->event_type);
    if (def->migration_path && strlen(def->migration_path) >= sizeof ((evs_schema_info *)0)->migration_path)
        return evs__err(EVS_ELIMIT, "schema register: the migration path is longer than %zu bytes",
                        sizeof ((evs_schema_info *)0)->migration_path - 1);
    if ((rc = evs_json_schema_compile(def->schema, def->schema_len, js, why)))
        return evs__err_prefix(rc, "%s: ", def->event_type);
    const evs__stype *t = evs__schema_find(r, def->event_type);
    size_t nv = t ? t->nv : 0;
    uint32_t next = (uint32_t)nv + 1;
    if (nv >= EVS_SCHEMA_MAX_VERSIONS) {
        rc = evs__err(EVS_ELIMIT, "%s already has %u versions", def->event_type, EVS_SCHEMA_MAX_VERSIONS);
        goto fail;
    }
    if (def->version && def->version != next) {
        rc = evs__err(EVS_ECONFLICT, "%s: version %u asked, but the next version is %u%s", def->event_type, def->version,
                      next, def->version <= nv ? " (versions never change once registered)" : "");
        goto fail;
    }
    *ver = next;
    if (!nv || t->compat == EVS_COMPAT_NONE) return EVS_OK;
    const evs__sversion *prev = &t->v[nv - 1];
    if (!prev->js) {
        rc = evs__err(EVS_ECONFLICT, "%s: %s; set the type's compatibility to none to register after it", def->event_type,
                      prev->broken);
        goto fail;
    }
    if (t->compat == EVS_COMPAT_BACKWARD || t->compat == EVS_COMPAT_FULL) {
        if (evs_json_schema_includes(*js, prev->js, why) != EVS_OK) {
            rc = evs__err(EVS_ECONFLICT,
                          "%s version %u is not backward compatible: an event valid under version %zu may be invalid "
                          "under it: %s: %s: %s",
                          def->event_type, next, nv, why->pointer[0] ? why->pointer : "(root)", why->keyword, why->message);
            goto fail;
        }
    }
    if (t->compat == EVS_COMPAT_FORWARD || t->compat == EVS_COMPAT_FULL) {
        evs_schema_violation w2;
        if (evs_json_schema_includes(prev->js, *js, &w2) != EVS_OK) {
            *why = w2;
            rc = evs__err(EVS_ECONFLICT,
                          "%s version %u is not forward compatible: an event valid under it may be invalid under "
                          "version %zu: %s: %s: %s",
                          def->event_type, next, nv, w2.pointer[0] ? w2.pointer : "(root)", w2.keyword, w2.message);
            goto fail;
        }
    }
    return EVS_OK;
fail:
    evs_json_schema_free(*js);
    *js = NULL;
    return rc;
}

int evs_schema_check(evs_schema_registry *r, const evs_schema_def *def, evs_schema_violation *why) {
    if (!r) return evs__err(EVS_EINVAL, "schema check: registry is NULL");
    evs_json_schema *js;
    uint32_t ver;
    evs__schema_refresh(r, EVS__SCHEMA_RECHECK_NS);
    pthread_rwlock_rdlock(&r->lock);
    int rc = check_def(r, def, &js, &ver, why);
    pthread_rwlock_unlock(&r->lock);
    evs_json_schema_free(js);
    return rc;
}

static int register_once(evs_schema_registry *r, const evs_schema_def *def, uint32_t *version,
                         evs_schema_violation *why) {
    evs_json_schema *js;
    uint32_t ver;
    evs__schema_wrlock_fresh(r);
    int rc = check_def(r, def, &js, &ver, why);
    if (rc) goto out;
    evs__sversion nv;
    memset(&nv, 0, sizeof nv);
    nv.js = js;
    nv.text = malloc(def->schema_len + 1);
    nv.text_len = def->schema_len;
    nv.registered_at = evs_now_ns();
    nv.migration_path = def->migration_path ? strdup(def->migration_path) : NULL;
    evs__stype *t = type_get(r, def->event_type);
    if (!nv.text || (def->migration_path && !nv.migration_path) || !t || (rc = type_grow(t))) {
        version_free(&nv);
        rc = rc ? rc : evs__err(EVS_ENOMEM, "out of memory registering a schema");
        goto out;
    }
    memcpy(nv.text, def->schema, def->schema_len);
    nv.text[def->schema_len] = 0;
    reg_op op = {def->event_type, ver, &nv};
    if ((rc = evs__schema_write(r, reg_write, &op))) {
        version_free(&nv);
        goto out;
    }
    if (t->nv) {
        evs__sversion *prev = &t->v[t->nv - 1];
        prev->implicit_next = prev->js && evs_json_schema_includes(js, prev->js, NULL) == EVS_OK;
        evs__err_clear();
    }
    t->v[t->nv++] = nv;
    if (version) *version = ver;
out:
    pthread_rwlock_unlock(&r->lock);
    return rc;
}

int evs_schema_register(evs_schema_registry *r, const evs_schema_def *def, uint32_t *version, evs_schema_violation *why) {
    if (!r) return evs__err(EVS_EINVAL, "schema register: registry is NULL");
    if (r->readonly || !r->kv) return evs__err(EVS_ECLOSED, "the schema registry is read-only (store opened read-only)");
    EVS__SCHEMA_RETRY(register_once(r, def, version, why));
}

typedef struct compat_op {
    const char *type;
    evs_schema_compat mode;
} compat_op;

static int compat_write(evs_schema_registry *r, evs__kv_txn *txn, void *arg) {
    compat_op *op = arg;
    (void)r;
    return put_json(txn, EVS__SK_TYPES, op->type, strlen(op->type), json_pack("{s:s}", "compat", evs_schema_compat_name(op->mode)));
}

static int compat_once(evs_schema_registry *r, const char *event_type, evs_schema_compat mode) {
    int rc = EVS_OK;
    evs__schema_wrlock_fresh(r);
    compat_op op = {event_type, mode};
    evs__stype *t = type_get(r, event_type);
    if (!t) rc = evs__err(EVS_ENOMEM, "out of memory");
    else if (!(rc = evs__schema_write(r, compat_write, &op))) t->compat = mode;
    pthread_rwlock_unlock(&r->lock);
    return rc;
}

int evs_schema_set_compat(evs_schema_registry *r, const char *event_type, evs_schema_compat mode) {
    if (!r) return evs__err(EVS_EINVAL, "schema set compat: registry is NULL");
    int rc = check_name("event type", event_type);
    if (rc) return rc;
    if (mode < EVS_COMPAT_BACKWARD || mode > EVS_COMPAT_NONE)
        return evs__err(EVS_EINVAL, "unknown compatibility mode %d", (int)mode);
    EVS__SCHEMA_RETRY(compat_once(r, event_type, mode));
}

typedef struct dep_op {
    const char *type;
    uint32_t version;
    evs__sversion copy;
} dep_op;

static int dep_write(evs_schema_registry *r, evs__kv_txn *txn, void *arg) {
    dep_op *op = arg;
    uint8_t key[EVS_MAX_TYPE_NAME + 5];
    size_t kl = evs__schema_key(key, op->type, op->version);
    (void)r;
    return put_json(txn, EVS__SK_VERSIONS, key, kl, version_json(&op->copy));
}

static int deprecate_once(evs_schema_registry *r, const char *event_type, uint32_t version, int deprecated) {
    int rc = EVS_OK;
    evs__schema_wrlock_fresh(r);
    evs__stype *t = evs__schema_find(r, event_type);
    if (!t || version == 0 || version > t->nv) {
        rc = evs__err(EVS_ENOTFOUND, "%s has no schema version %u", event_type, version);
        goto out;
    }
    evs__sversion *v = &t->v[version - 1];
    if (!!v->deprecated == !!deprecated) goto out; /* already so */
    dep_op op = {event_type, version, *v};
    op.copy.deprecated = deprecated != 0;
    op.copy.deprecated_at = deprecated ? evs_now_ns() : 0;
    if ((rc = evs__schema_write(r, dep_write, &op))) goto out;
    v->deprecated = op.copy.deprecated;
    v->deprecated_at = op.copy.deprecated_at;
out:
    pthread_rwlock_unlock(&r->lock);
    return rc;
}

int evs_schema_deprecate(evs_schema_registry *r, const char *event_type, uint32_t version, int deprecated) {
    if (!r) return evs__err(EVS_EINVAL, "schema deprecate: registry is NULL");
    int rc = check_name("event type", event_type);
    if (rc) return rc;
    EVS__SCHEMA_RETRY(deprecate_once(r, event_type, version, deprecated));
}

/* ----------------------------------------------------------------- reads */

static void fill_info(const evs__stype *t, uint32_t version, evs_schema_info *out) {
    const evs__sversion *v = &t->v[version - 1];
    memset(out, 0, sizeof *out);
    snprintf(out->event_type, sizeof out->event_type, "%s", t->name);
    out->version = version;
    out->latest = (uint32_t)t->nv;
    out->deprecated = v->deprecated;
    out->compat = t->compat;
    out->registered_at = v->registered_at;
    out->deprecated_at = v->deprecated_at;
    snprintf(out->migration_path, sizeof out->migration_path, "%s", v->migration_path ? v->migration_path : "");
    if (version < t->nv) {
        if (t->up[version - 1]) out->upcaster = t->up[version - 1]->kind;
        else if (v->implicit_next) out->upcaster = EVS__UP_IMPLICIT;
    }
}

int evs_schema_get(evs_schema_registry *r, const char *event_type, uint32_t version, evs_schema_info *out, char **text,
                   size_t *text_len) {
    if (!r || !event_type) return evs__err(EVS_EINVAL, "schema get: registry and event type are required");
    if (text) *text = NULL;
    int rc = EVS_OK;
    evs__schema_refresh(r, 0);
    pthread_rwlock_rdlock(&r->lock);
    const evs__stype *t = evs__schema_find(r, event_type);
    if (!t || t->nv == 0) {
        rc = evs__err(EVS_ENOTFOUND, "no schema is registered for event type \"%s\"", event_type);
        goto out;
    }
    if (version == 0) version = (uint32_t)t->nv;
    if (version > t->nv) {
        rc = evs__err(EVS_ENOTFOUND, "%s has no schema version %u (the latest is %zu)", event_type, version, t->nv);
        goto out;
    }
    if (out) fill_info(t, version, out);
    if (text) {
        const evs__sversion *v = &t->v[version - 1];
        *text = malloc(v->text_len + 1);
        if (!*text) {
            rc = evs__err(EVS_ENOMEM, "out of memory");
            goto out;
        }
        memcpy(*text, v->text, v->text_len + 1);
        if (text_len) *text_len = v->text_len;
    }
out:
    pthread_rwlock_unlock(&r->lock);
    return rc;
}

int evs_schema_list(evs_schema_registry *r, const char *after_type, uint32_t after_version, evs_schema_info *out,
                    size_t max, size_t *count) {
    if (!r || !count || (max && !out)) return evs__err(EVS_EINVAL, "schema list: registry, out and count are required");
    *count = 0;
    evs__schema_refresh(r, 0);
    pthread_rwlock_rdlock(&r->lock);
    for (size_t i = 0; i < r->nt && *count < max; i++) {
        const evs__stype *t = r->t[i];
        int c = after_type ? strcmp(t->name, after_type) : 1;
        if (c < 0) continue;
        for (uint32_t v = 1; v <= t->nv && *count < max; v++) {
            if (c == 0 && v <= after_version) continue;
            fill_info(t, v, &out[(*count)++]);
        }
    }
    pthread_rwlock_unlock(&r->lock);
    return EVS_OK;
}

int evs_schema_validate(evs_schema_registry *r, const char *event_type, uint32_t version, const char *data, size_t len,
                        evs_schema_violation *v) {
    if (!r || !event_type || !data) return evs__err(EVS_EINVAL, "schema validate: registry, type and data are required");
    evs_json_error jerr;
    if (evs__json_validate_object(data, len, &jerr)) return evs__err(EVS_EJSON, "data: %s", jerr.msg);
    if (!version) version = 1;
    evs__schema_refresh(r, EVS__SCHEMA_RECHECK_NS);
    pthread_rwlock_rdlock(&r->lock);
    const evs__stype *t = evs__schema_find(r, event_type);
    int rc;
    if (!t || version > t->nv) {
        rc = evs__err(EVS_ENOTFOUND, "%s has no schema version %u", event_type, version);
    } else if (!t->v[version - 1].js) {
        evs__jschema_set(v, "", "schema", "", "%s", t->v[version - 1].broken);
        rc = evs__err(EVS_EINVAL, "%s", t->v[version - 1].broken);
    } else {
        rc = evs__jschema_check(t->v[version - 1].js, data, len, v);
        if (rc) evs__err_prefix(rc, "%s version %u: ", event_type, version);
    }
    pthread_rwlock_unlock(&r->lock);
    return rc;
}

/* -------------------------------------------------------------- policies */

typedef struct pol_op {
    char key[EVS_MAX_TYPE_NAME + 2];
    const evs_schema_policy *p;   /* NULL: delete */
} pol_op;

static int pol_write(evs_schema_registry *r, evs__kv_txn *txn, void *arg) {
    pol_op *op = arg;
    (void)r;
    if (op->p) return put_json(txn, EVS__SK_POLICIES, op->key, strlen(op->key), policy_json(op->p));
    evs__kv_val k = {strlen(op->key), op->key};
    int rc = evs__kv_del(txn, EVS__SK_POLICIES, &k);
    if (rc == EVS__KV_NOTFOUND) return evs__err(EVS_ENOTFOUND, "no policy is set for \"%s\"", op->key + 1);
    return evs__schema_kv_err(rc, "delete policy");
}

static int policy_args(evs_policy_scope scope, const char *name, pol_op *op) {
    int rc;
    if (scope == EVS_POLICY_DEFAULT) {
        snprintf(op->key, sizeof op->key, "d");
        return EVS_OK;
    }
    if (scope != EVS_POLICY_STREAM_TYPE && scope != EVS_POLICY_EVENT_TYPE)
        return evs__err(EVS_EINVAL, "unknown policy scope %d", (int)scope);
    if ((rc = check_name(scope == EVS_POLICY_STREAM_TYPE ? "stream type" : "event type", name))) return rc;
    snprintf(op->key, sizeof op->key, "%c%s", scope == EVS_POLICY_STREAM_TYPE ? 's' : 'e', name);
    return EVS_OK;
}

static int set_policy_once(evs_schema_registry *r, evs_policy_scope scope, const char *name,
                           const evs_schema_policy *p, pol_op *opp);

int evs_schema_set_policy(evs_schema_registry *r, evs_policy_scope scope, const char *name, const evs_schema_policy *p) {
    if (!r || !p) return evs__err(EVS_EINVAL, "schema set policy: registry and policy are required");
    if ((unsigned)p->validation > EVS_VALIDATION_OFF || (unsigned)p->deprecated > EVS_DEPRECATED_ALLOW)
        return evs__err(EVS_EINVAL, "schema set policy: unknown validation or deprecation value");
    pol_op op = {.p = p};
    int rc = policy_args(scope, name, &op);
    if (rc) return rc;
    EVS__SCHEMA_RETRY(set_policy_once(r, scope, name, p, &op));
}

static int set_policy_once(evs_schema_registry *r, evs_policy_scope scope, const char *name,
                           const evs_schema_policy *p, pol_op *opp) {
    pol_op op = *opp;
    int rc = EVS_OK;
    evs__schema_wrlock_fresh(r);
    /* room first, so that memory follows what was committed */
    evs__stype *t = scope == EVS_POLICY_EVENT_TYPE ? type_get(r, name) : NULL;
    if (scope == EVS_POLICY_EVENT_TYPE && !t) rc = evs__err(EVS_ENOMEM, "out of memory");
    if (!rc && scope == EVS_POLICY_STREAM_TYPE && !spolicy_find(r, name, strlen(name)) && r->nsp == r->capsp) {
        size_t ncap = r->capsp ? r->capsp * 2 : 8;
        evs__spolicy *np = realloc(r->sp, ncap * sizeof *np);
        if (!np) rc = evs__err(EVS_ENOMEM, "out of memory");
        else r->sp = np, r->capsp = ncap;
    }
    char *dup = !rc && scope == EVS_POLICY_STREAM_TYPE ? strdup(name) : NULL;
    if (!rc && scope == EVS_POLICY_STREAM_TYPE && !dup) rc = evs__err(EVS_ENOMEM, "out of memory");
    if (!rc) rc = evs__schema_write(r, pol_write, &op);
    if (!rc) {
        if (scope == EVS_POLICY_DEFAULT) {
            r->def = *p;
        } else if (scope == EVS_POLICY_EVENT_TYPE) {
            t->has_policy = 1;
            t->policy = *p;
        } else {
            evs__spolicy *hit = spolicy_find(r, name, strlen(name));
            if (hit) {
                hit->policy = *p;
            } else {
                size_t at = 0;
                while (at < r->nsp && strcmp(r->sp[at].name, name) < 0) at++;
                memmove(r->sp + at + 1, r->sp + at, (r->nsp - at) * sizeof *r->sp);
                r->sp[at].name = dup;
                r->sp[at].policy = *p;
                r->nsp++;
                dup = NULL;
            }
        }
    }
    free(dup);
    pthread_rwlock_unlock(&r->lock);
    return rc;
}

static int clear_policy_once(evs_schema_registry *r, evs_policy_scope scope, const char *name, pol_op *op);

int evs_schema_clear_policy(evs_schema_registry *r, evs_policy_scope scope, const char *name) {
    if (!r) return evs__err(EVS_EINVAL, "schema clear policy: registry is NULL");
    if (scope == EVS_POLICY_DEFAULT) return evs__err(EVS_EINVAL, "the default policy cannot be cleared, only set");
    pol_op op = {.p = NULL};
    int rc = policy_args(scope, name, &op);
    if (rc) return rc;
    EVS__SCHEMA_RETRY(clear_policy_once(r, scope, name, &op));
}

static int clear_policy_once(evs_schema_registry *r, evs_policy_scope scope, const char *name, pol_op *op) {
    int rc;
    evs__schema_wrlock_fresh(r);
    if (!(rc = evs__schema_write(r, pol_write, op))) {
        if (scope == EVS_POLICY_EVENT_TYPE) {
            evs__stype *t = evs__schema_find(r, name);
            if (t) t->has_policy = 0;
        } else {
            evs__spolicy *hit = spolicy_find(r, name, strlen(name));
            if (hit) {
                size_t at = (size_t)(hit - r->sp);
                free(hit->name);
                memmove(r->sp + at, r->sp + at + 1, (r->nsp - at - 1) * sizeof *r->sp);
                r->nsp--;
            }
        }
    }
    pthread_rwlock_unlock(&r->lock);
    return rc;
}

int evs_schema_get_policy(evs_schema_registry *r, evs_policy_scope scope, const char *name, evs_schema_policy *out) {
    if (!r || !out) return evs__err(EVS_EINVAL, "schema get policy: registry and out are required");
    pol_op op;
    int rc = policy_args(scope, name, &op);
    if (rc) return rc;
    evs__schema_refresh(r, 0);
    pthread_rwlock_rdlock(&r->lock);
    if (scope == EVS_POLICY_DEFAULT) {
        *out = r->def;
    } else if (scope == EVS_POLICY_EVENT_TYPE) {
        const evs__stype *t = evs__schema_find(r, name);
        if (t && t->has_policy) *out = t->policy;
        else rc = evs__err(EVS_ENOTFOUND, "no policy is set for event type \"%s\"", name);
    } else {
        const evs__spolicy *p = spolicy_find(r, name, strlen(name));
        if (p) *out = p->policy;
        else rc = evs__err(EVS_ENOTFOUND, "no policy is set for stream type \"%s\"", name);
    }
    pthread_rwlock_unlock(&r->lock);
    return rc;
}

int evs_schema_resolve_policy(evs_schema_registry *r, const char *event_type, const char *stream_type,
                              evs_schema_policy *out) {
    if (!r || !event_type || !out) return evs__err(EVS_EINVAL, "schema resolve policy: registry, type and out are required");
    evs__schema_refresh(r, EVS__SCHEMA_RECHECK_NS);
    pthread_rwlock_rdlock(&r->lock);
    *out = resolve(r, evs__schema_find(r, event_type), stream_type, stream_type ? strlen(stream_type) : 0);
    pthread_rwlock_unlock(&r->lock);
    return EVS_OK;
}

/* ----------------------------------------------------------------- stats */

int evs_schema_stats(evs_schema_registry *r, const char *after, evs_schema_type_stats *out, size_t max, size_t *count) {
    if (!r || !count || (max && !out)) return evs__err(EVS_EINVAL, "schema stats: registry, out and count are required");
    *count = 0;
    evs__schema_refresh(r, 0);
    pthread_rwlock_rdlock(&r->lock);
    for (size_t i = 0; i < r->nt && *count < max; i++) {
        evs__stype *t = r->t[i];
        if (!t->nv || (after && strcmp(t->name, after) <= 0)) continue;
        evs_schema_type_stats *o = &out[(*count)++];
        memset(o, 0, sizeof *o);
        snprintf(o->event_type, sizeof o->event_type, "%s", t->name);
        o->validated = atomic_load(&t->validated);
        o->refused = atomic_load(&t->refused);
        o->warned = atomic_load(&t->warned);
        o->deprecated_appends = atomic_load(&t->deprecated_appends);
        o->upcasted = atomic_load(&t->upcasted);
        o->upcast_failures = atomic_load(&t->upcast_failures);
        pthread_mutex_lock(&t->last_mu);
        snprintf(o->last_failure, sizeof o->last_failure, "%s", t->last_failure);
        pthread_mutex_unlock(&t->last_mu);
    }
    pthread_rwlock_unlock(&r->lock);
    return EVS_OK;
}
