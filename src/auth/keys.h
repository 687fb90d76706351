/*
 * keys.h — API keys of a store: who may call `evstore serve` and what each
 * key may do.  The server (src/server/auth.c) asks this module to verify the
 * key of every request; the CLI (`evstore key ...`) creates, lists and
 * revokes keys in the store directly.  Above the bus (whose kv interface
 * keeps the keys of a PostgreSQL store), below server and CLI.
 *
 * A key is shown once, at creation, as
 *     evs_<id>_<secret>
 * where <id> is 12 lower-case hex digits (6 random bytes, the lookup key,
 * not secret) and <secret> is 32 random bytes in base64url without padding
 * (43 characters).  Only a hash of the secret is stored: BLAKE2b-256
 * (crypto_generichash) keyed with the store's own random server secret
 * (32 bytes).  Why a fast keyed hash and not Argon2id: docs/decisions.md
 * ("API keys: a keyed BLAKE2b, not Argon2id").  Hashes are compared with
 * crypto_verify_32 (constant time); an unknown id costs the same hash and
 * compare against a dummy.
 *
 * The keys, as a document:
 *   {"format": 1, "keys": [{"id": "0a1b2c3d4e5f", "name": "ci", "role": "writer",
 *     "grants": ["append:order-*:OrderPlaced,OrderPaid"], "hash": "<64 hex>",
 *     "created_at": "2026-12-05T05:30:00Z", "revoked_at": null}]}
 * Revoked keys stay listed (with revoked_at) and never verify again.
 *
 * Where (keys.c):
 *   embedded store, directory DIR: the document is DIR/keys.json (written
 *     whole: temporary file, fsync, rename, fsync of DIR), the secret
 *     DIR/keys.secret (mode 0600).  Changes take DIR/keys.lock (flock) and
 *     re-read the file first, so a CLI and a server changing keys at once
 *     lose nothing; a keystore re-reads the file when it changed on disk
 *     (evs__keys_verify checks), so a key created or revoked by the CLI
 *     counts for a running server from its next request.
 *   PostgreSQL store: the document, the secret and a generation are rows
 *     of evs_bus_kv (db 40 and 41), shared by every server on the database.
 *     A change runs in one kv write transaction (re-read, write, bump the
 *     generation); list and active compare the generation first, verify at
 *     most every EVS__KEYS_RECHECK_NS, so a key created or revoked through
 *     any server or the CLI counts on every server within that time.
 *
 * Permissions: read, append, subscribe, admin (admin implies the others),
 * each granted on streams and optionally event types:
 *     PERM[+PERM...]:STREAMS[:TYPE,TYPE...]
 * STREAMS is "$all" (every stream; "*" is the same), "prefix*" (names that
 * start with prefix) or an exact stream name (without ':').  Roles are
 * presets: admin (admin on $all), writer (read+append+subscribe on $all),
 * reader (read+subscribe on $all), none (only the explicit grants); explicit
 * grants add to the role's.
 *
 * Thread rules: a keystore is thread-safe (a rwlock); principals are
 * immutable and reference-counted, so a request or a live stream keeps the
 * one it verified with even if the key is revoked meanwhile.
 */
#ifndef EVS_AUTH_KEYS_H
#define EVS_AUTH_KEYS_H

#include <jansson.h>
#include <stdatomic.h>
#include <stddef.h>

#include "evstore.h"

/* Permission bits. */
enum { EVS_PERM_READ = 1, EVS_PERM_APPEND = 2, EVS_PERM_SUBSCRIBE = 4, EVS_PERM_ADMIN = 8 };
#define EVS_PERM_EVERY (EVS_PERM_READ | EVS_PERM_APPEND | EVS_PERM_SUBSCRIBE | EVS_PERM_ADMIN)

#define EVS_KEY_ID_LEN 12          /* hex digits */
#define EVS_KEY_SECRET_BYTES 32
#define EVS_KEY_TEXT_MAX 80        /* "evs_" id "_" secret, NUL included */
#define EVS_KEY_MAX_GRANTS 16
#define EVS_KEY_MAX_NAME 64
#define EVS_KEY_MAX_TYPES_TEXT 511 /* a grant's "A,B,C" */
/* PostgreSQL: how stale the keys a verify answers from may be (the generation is compared at most this often) */
#define EVS__KEYS_RECHECK_NS (200 * 1000000LL)

typedef struct evs__grant {
    unsigned perms;                        /* EVS_PERM_*; admin implies the others */
    int all;                               /* every stream */
    int prefix;                            /* streams[] is a prefix (given as "prefix*") */
    char streams[EVS_MAX_STREAM_NAME + 1];
    char types[EVS_KEY_MAX_TYPES_TEXT + 1]; /* "": every type; else comma-separated */
} evs__grant;

/* Who a verified key is and what it may do: immutable once made, shared by reference. */
typedef struct evs__principal {
    _Atomic int refs;
    char id[EVS_KEY_ID_LEN + 1];
    char name[EVS_KEY_MAX_NAME + 1];
    char role[16];
    size_t ngrants;
    evs__grant grants[];
} evs__principal;

/* A new reference to p (NULL stays NULL). */
evs__principal *evs__principal_ref(evs__principal *p);
/* Drop a reference; the last one frees it.  NULL is a no-op. */
void evs__principal_unref(evs__principal *p);
/* perm on this stream and, when type is not NULL, this event type (NULL: on some types of it). */
int evs__principal_allows(const evs__principal *p, unsigned perm, const char *stream, size_t stream_len,
                          const char *type, size_t type_len);
/* perm on every stream and every type. */
int evs__principal_allows_all(const evs__principal *p, unsigned perm);
/* perm on at least some streams (the route then filters what it shows). */
int evs__principal_allows_any(const evs__principal *p, unsigned perm);
/* "read", "append", "subscribe", "admin" for one bit. */
const char *evs__perm_name(unsigned perm);

/*
 * Parse one grant "PERM[+PERM]:STREAMS[:TYPES]" into g; EVS_EINVAL with a
 * message naming what is wrong.
 */
int evs__grant_parse(const char *text, evs__grant *g);

typedef struct evs__keystore evs__keystore;

/*
 * Open the keys at where: a store directory (read DIR/keys.secret, created,
 * mode 0600, when missing and create is set, and DIR/keys.json, none yet:
 * no keys), or a postgresql:// URL (a store of the keystore's own is opened
 * on it, read-only unless create is set, and closed with the keystore; as
 * evs__keys_open_store then).  A damaged or wrongly sized secret, a secret
 * readable by others, or a document that is not what this module writes is
 * an error naming the file or row and the fault (EVS_EFORMAT, EVS_EJSON),
 * and nothing is changed.  No secret and create not set: EVS_ENOTFOUND.
 * Ownership: *out is the caller's; release with evs__keys_close.
 */
int evs__keys_open(const char *where, int create, evs__keystore **out);
/*
 * Open the keys of an open store: its directory's files on the embedded
 * engine, its database's rows on PostgreSQL (the secret is made there, in
 * a write transaction, when missing and create is set).  s must outlive
 * the keystore.  Ownership: *out is the caller's (evs__keys_close).
 */
int evs__keys_open_store(evs_store *s, int create, evs__keystore **out);
void evs__keys_close(evs__keystore *ks);

/*
 * Create a key with role ("admin", "writer", "reader", "none") and grants
 * (texts as above, n of them), name optional.  key (cap >= EVS_KEY_TEXT_MAX)
 * receives the key text, the only time it exists; *info (may be NULL) the
 * record as key list shows it (the caller's, json_decref).
 */
int evs__keys_create(evs__keystore *ks, const char *role, const char *const *grants, size_t n, const char *name,
                     char *key, size_t cap, json_t **info);
/* Revoke key id: EVS_ENOTFOUND when there is none; revoking twice is fine (the first time stays). */
int evs__keys_revoke(evs__keystore *ks, const char *id);
/* Every key as {"keys": [...]}, never a hash or secret (the caller's, json_decref); NULL when out of memory. */
json_t *evs__keys_list(evs__keystore *ks);
/* Keys that are not revoked. */
size_t evs__keys_active(evs__keystore *ks);

/* Why a presented key did not verify (the label of evstore_auth_failures_total). */
enum { EVS_AUTH_OK, EVS_AUTH_MALFORMED, EVS_AUTH_UNKNOWN, EVS_AUTH_REVOKED };
/*
 * Verify a presented key text: EVS_AUTH_OK with *who (a reference, the
 * caller's to evs__principal_unref), else one of the reasons.  Re-reads
 * the keys first if they changed (keys.json on disk; on PostgreSQL the
 * generation, compared at most every EVS__KEYS_RECHECK_NS).  Timing: the
 * hash and the constant-time compare run whether or not the id is known.
 */
int evs__keys_verify(evs__keystore *ks, const char *presented, evs__principal **who);

#endif
