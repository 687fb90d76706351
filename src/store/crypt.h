/*
 * crypt.h — crypto-shredding inside the store (internal): the key store
 * (keystore.c) and the sealing and opening of event data (crypt.c).  The
 * public side is include/evstore_crypt.h.  store.c and read.c call the
 * three hooks at the bottom and nothing else.
 */
#ifndef EVS_CRYPT_H
#define EVS_CRYPT_H

#include <stddef.h>
#include <stdint.h>

#include "core/json.h"
#include "evstore.h"
#include "evstore_crypt.h"

#define EVS_KEYSTORE_DIR "subject-keys"
#define EVS_DATA_KEY_BYTES 32u

/* ---- key store (keystore.c) */

typedef struct evs__keystore evs__keystore;

/* At open (after the lock): check the master key against DIR/subject-keys/MASTER. */
int evs__keystore_open(evs_store *s);
/* At teardown: drop the cached keys (zeroed). */
void evs__keystore_close(evs_store *s);
/* At evs_store_close: free everything, the master key zeroed.  NULL-safe. */
void evs__keystore_free(evs_store *s);
/*
 * The data key of a subject into key: EVS_OK with *state LIVE (key
 * filled) or FORGOTTEN (key untouched); with create, a subject that has no
 * key gets one (durable before return); without, EVS_ENOTFOUND.  EVS_EKEY
 * when a live key is needed and there is no master key.
 */
int evs__key_get(evs_store *s, const char *subject, size_t n, int create, uint8_t key[EVS_DATA_KEY_BYTES],
                 int *state);
/* Replace the subject's key file by a tombstone (crash-safe).  EVS_ENOTFOUND when it has none. */
int evs__key_forget(evs_store *s, const char *subject, size_t n);
/*
 * The "$encrypt" mode of a stream on another engine, as cached (keystore.c,
 * for crypt.c): 0 none, 1 stream, 2 tag (prefix, NUL-terminated, into
 * prefix; *plen), KS_MODE_ABSENT when never cached, KS_MODE_STALE when
 * cached too long ago to be used.  mode_put caches an answer read from the
 * engine (out of memory: not cached).
 */
#define KS_MODE_ABSENT (-1)
#define KS_MODE_STALE (-2)
int evs__ks_mode_get(evs_store *s, const char *stream, size_t n, char *prefix, size_t cap, size_t *plen);
void evs__ks_mode_put(evs_store *s, const char *stream, size_t n, int mode, const char *prefix, size_t plen);

/* ---- data (crypt.c) */

/* Is v a valid "$encrypt" metadata value ("stream" or "tag:PREFIX")?  EVS_OK or EVS_EINVAL naming it. */
int evs__crypt_check_mode(evs_json_span v);

/* What the append hook allocated; freed by evs__crypt_seal_free. */
typedef struct evs__crypt_seal {
    char **env;                   /* per event: the envelope replacing data, or NULL */
    size_t n;
} evs__crypt_seal;

/* What a reader keeps for decrypted data: one buffer reused event after event. */
typedef struct evs__crypt_rd {
    char *buf;
    size_t cap;
    char subject[EVS_MAX_SUBJECT + 1]; /* the last event's subject, "" when it was plaintext */
    size_t subject_len;
} evs__crypt_rd;

/*
 * Append hook (store.c, after validation): encrypt the data of events
 * (ev[i].data replaced by an envelope owned by *seal) when the stream's
 * metadata asks for it; refuse plaintext that looks like an envelope.
 */
int evs__crypt_seal_append(evs_store *s, const char *stream, size_t slen, evs_event_in *ev, size_t n,
                           const evs_uuid *ids, evs__crypt_seal *seal);
void evs__crypt_seal_free(evs__crypt_seal *seal);

/*
 * Read hook (read.c, evs_reader_next): if ev's data is an envelope, point
 * ev->data at the plaintext (in rd) or, for a forgotten subject, at "null"
 * with ev->redacted = 1.  EVS_EKEY / EVS_ECORRUPT naming the event.
 */
int evs__crypt_open_event(evs_store *s, evs__crypt_rd *rd, evs_event *ev);
void evs__crypt_rd_free(evs__crypt_rd *rd);

/* The reader's crypt state (read.c), for export. */
const evs__crypt_rd *evs__reader_crypt(const evs_reader *r);

/* Append to a reserved "$" stream the store itself keeps (store.c; "$subjects"). */
int evs__append_reserved(evs_store *s, const char *stream, const evs_event_in *ev, evs_append_result *res);

/* The "$encrypt" mode of a stream from its metadata (meta.c): 0 none, 1 stream, 2 tag (prefix into buf). */
int evs__meta_encrypt(evs_store *s, const char *stream, size_t len, char *prefix, size_t cap, size_t *prefix_len);
/* The same from a metadata object (crypt.c): 0 none, 1 stream, 2 tag (prefix, NUL-terminated, into buf). */
int evs__crypt_mode_of(const char *json, size_t len, char *prefix, size_t cap, size_t *prefix_len);
/*
 * The "$encrypt" mode of a stream on another engine (crypt.c): the cached
 * answer while fresh; a stream never seen is taken as plaintext without
 * asking (the engine refuses unsealed events in an encrypted stream with
 * EVS_EKEY, and the caller asks again with force); a stale entry or force:
 * the metadata read again.  The mode, or an error < 0.
 */
int evs__crypt_engine_mode(evs_store *s, const char *stream, size_t len, int force, char *prefix, size_t cap,
                           size_t *prefix_len);

#endif
