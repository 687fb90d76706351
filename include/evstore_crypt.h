/*
 * evstore_crypt.h — crypto-shredding: per-subject data keys for event data
 * (src/store/crypt.c, src/store/keystore.c).  Builds on evstore.h.
 *
 * A stream opts in through its metadata (evs_stream_set_metadata):
 *   "$encrypt": "stream"          every event's data is encrypted under the
 *                                 key of the subject "<stream name>";
 *   "$encrypt": "tag:PREFIX"      under the key of the event's one tag that
 *                                 starts with PREFIX (e.g. "tag:customer:"
 *                                 and the tag "customer:42": subject
 *                                 "customer:42"); an event with no such tag,
 *                                 or more than one, is refused.
 * data is encrypted after validation (schemas see plaintext) with
 * XChaCha20-Poly1305; the nonce is derived from the key, the event id and
 * the plaintext, so an idempotent retry stores the same bytes.  Data keys
 * live in DIR/subject-keys/ (on PostgreSQL: the table evs_subject_keys,
 * shared by every server on the database), each wrapped by the master key,
 * which is never stored with them.
 *
 * Readers (evs_reader_next, and so every read path above it) return the
 * plaintext.  Forgetting a subject destroys its key for good: its events
 * keep their positions but read as data null with ev->redacted = 1 (JSON:
 * "data":null,"$redacted":true); appends to a forgotten subject are
 * refused (EVS_EKEY).  Without a master key a store opens, plaintext
 * streams work, appends to encrypted streams and reads of encrypted events
 * of live subjects fail with EVS_EKEY naming the event.
 *
 * Thread rules: as evs_store.  Backups (evstore_backup.h) never copy the
 * key store.
 */
#ifndef EVSTORE_CRYPT_H
#define EVSTORE_CRYPT_H

#include "evstore.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EVS_MASTER_KEY_BYTES 32u
#define EVS_MAX_SUBJECT 255u    /* bytes of a subject name (a stream name or a tag) */

/*
 * Parse a master key: 64 hexadecimal digits, optionally surrounded by
 * whitespace (a trailing newline).  EVS_EINVAL naming what is wrong (never
 * quoting the key).
 */
int evs_master_key_parse(const char *text, size_t len, uint8_t key[EVS_MASTER_KEY_BYTES]);

/* Use key as the master key (copied).  Before evs_store_open. */
int evs_store_set_master_key(evs_store *s, const uint8_t key[EVS_MASTER_KEY_BYTES]);

/*
 * The master key from a file (path not NULL: EVS_EINVAL/-errno naming the
 * file when it is unreadable, not 64 hex digits, or readable by others),
 * else from the environment variable EVSTORE_MASTER_KEY when set, else
 * none (EVS_OK).  Before evs_store_open.  Opening a store whose key store
 * was made with another master key fails with EVS_EKEY, changing nothing.
 */
int evs_store_use_master_key(evs_store *s, const char *path);

/*
 * Forget a subject: its data key is destroyed (the key file is replaced by
 * a tombstone: write, fsync, rename, fsync of the directory), then a
 * "$subject-forgotten" event {"subject": ...} is appended to the stream
 * "$subjects" as an audit record.  Forgetting a forgotten subject appends
 * the audit event again (so a crash between the two steps is completed by
 * running it again).  EVS_ENOTFOUND when the subject never had a key.
 * Appends racing with a forget are either refused or stored redacted.
 */
int evs_subject_forget(evs_store *s, const char *subject, evs_append_result *audit);

/* Called once per event, in global order; nonzero stops (returned as is). */
typedef int (*evs_event_cb)(void *arg, const evs_event *ev);

/*
 * Every event encrypted under subject's key (events of the stream named
 * subject and events tagged subject), decrypted, in global order.
 * *count (may be NULL) receives how many.  EVS_ENOTFOUND when the subject
 * has no key, EVS_EDELETED when it was forgotten, EVS_EKEY without the
 * master key.
 */
int evs_subject_export(evs_store *s, const char *subject, evs_event_cb cb, void *arg, uint64_t *count);

/* Subject key states. */
#define EVS_SUBJECT_NONE 0
#define EVS_SUBJECT_LIVE 1
#define EVS_SUBJECT_FORGOTTEN 2

/* Does subject have a key: EVS_SUBJECT_LIVE, _FORGOTTEN or _NONE (or an error < 0). */
int evs_subject_state(evs_store *s, const char *subject);

/*
 * Copy the key store of the store in from_dir (the live one; it may be
 * open in another process) into the store in to_dir (a restored backup):
 * every key file as it is now, tombstones included, so a subject forgotten
 * since the backup stays forgotten.  Files are written whole (tmp, fsync,
 * rename).  *copied (may be NULL) receives how many files.  EVS_ENOTFOUND
 * when from_dir has no key store.
 */
int evs_subject_keys_copy(const char *from_dir, const char *to_dir, size_t *copied);

#ifdef __cplusplus
}
#endif
#endif /* EVSTORE_CRYPT_H */
