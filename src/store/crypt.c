/*
 * crypt.c — sealing and opening of event data for crypto-shredding
 * (evstore_crypt.h), forget and export.  The keys come from keystore.c;
 * store.c calls evs__crypt_seal_append after validating an append, read.c
 * calls evs__crypt_open_event on every event a reader returns, so every
 * read path above the store (streams, $all, filters, subscriptions,
 * projections, the server and the CLI) sees plaintext or a redacted event.
 *
 * ENVELOPE.  Encrypted data is stored as a JSON object, so everything that
 * looks at raw records (check, backup verify, the index) still sees JSON:
 *   {"$enc":"xc20p1","subject":"<subject>","ct":"<base64url, no padding>"}
 * ct = nonce (24 bytes) || XChaCha20-Poly1305(data) with additional data
 * event_id (16 bytes) || subject, so a ciphertext moved to another event or
 * subject does not open.  Data that starts with the bytes {"$enc": is
 * refused at append on every stream: nothing plaintext can pose as an
 * envelope.
 *
 * NONCE.  nonce = BLAKE2b-192 keyed with the data key over "evs nonce v1"
 * || event_id || data: deterministic, so an idempotent retry (same id, same
 * data) produces the same bytes and the store's byte-for-byte retry check
 * holds, while two different plaintexts under one key never share a nonce
 * (a synthetic IV; XChaCha's 192-bit nonce makes a collision negligible).
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "core/json.h"
#include "core/sb.h"
#include "store/crypt.h"
#include "store/store_internal.h"
#include "store/store_access.h"

#define ENV_PREFIX "{\"$enc\":\"xc20p1\","
#define ENV_GUARD "{\"$enc\":"
#define NONCE_LEN crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define TAG_LEN crypto_aead_xchacha20poly1305_ietf_ABYTES
#define NONCE_DOMAIN "evs nonce v1"
#define SUBJECTS_STREAM "$subjects"

/* ------------------------------------------------------------ mode */

int evs__crypt_check_mode(evs_json_span v) {
    char m[EVS_MAX_SUBJECT + 8];
    long n = v.type == EVS_JSON_STRING ? evs__json_string_decode(v, m, sizeof m) : -1;
    if (n < 0 || (strcmp(m, "stream") && (strncmp(m, "tag:", 4) || n < 5)))
        return evs__err(EVS_EINVAL, "metadata: \"$encrypt\" must be \"stream\" or \"tag:PREFIX\" (e.g. "
                        "\"tag:customer:\"), not %.*s", (int)(v.n > 60 ? 60 : v.n), v.p);
    return EVS_OK;
}

int evs__crypt_mode_of(const char *json, size_t len, char *prefix, size_t cap, size_t *prefix_len) {
    int mode = 0;
    char m[EVS_MAX_SUBJECT + 8];
    if (!json || len <= 10 || !memmem(json, len, "\"$encrypt\"", 10)) return 0;
    evs_json_iter it;
    evs_json_span k, v;
    evs__json_iter_init(&it, evs__json_root(json, len));
    while (evs__json_iter_member(&it, &k, &v)) {
        long n;
        if (!evs__json_string_eq(k, "$encrypt") || (n = evs__json_string_decode(v, m, sizeof m)) < 0) continue;
        if (!strcmp(m, "stream")) mode = 1;
        else if (!strncmp(m, "tag:", 4) && (size_t)n - 4 < cap) {
            mode = 2;
            memcpy(prefix, m + 4, (size_t)n - 3);
            *prefix_len = (size_t)n - 4;
        }
    }
    return mode;
}

int evs__crypt_engine_mode(evs_store *s, const char *stream, size_t len, int force, char *prefix, size_t cap,
                           size_t *prefix_len) {
    int mode = force ? KS_MODE_STALE : evs__ks_mode_get(s, stream, len, prefix, cap, prefix_len);
    if (mode >= 0) return mode;
    if (mode == KS_MODE_ABSENT) return 0; /* optimistic: the engine refuses plaintext where it must not go */
    char *json = NULL;
    size_t jl = 0;
    int rc = evs_stream_get_metadata(s, stream, &json, &jl, NULL, NULL);
    if (rc == EVS_ENOTFOUND) {
        evs__err_clear();
        mode = 0;
    } else if (rc) {
        return rc;
    } else {
        mode = evs__crypt_mode_of(json, jl, prefix, cap, prefix_len);
    }
    free(json);
    evs__ks_mode_put(s, stream, len, mode, prefix, mode == 2 ? *prefix_len : 0);
    return mode;
}

/* ------------------------------------------------------------ seal */

static void make_nonce(const uint8_t key[EVS_DATA_KEY_BYTES], const evs_uuid *id, const char *data, size_t len,
                       uint8_t nonce[NONCE_LEN]) {
    crypto_generichash_state st;
    crypto_generichash_init(&st, key, EVS_DATA_KEY_BYTES, NONCE_LEN);
    crypto_generichash_update(&st, (const uint8_t *)NONCE_DOMAIN, strlen(NONCE_DOMAIN));
    crypto_generichash_update(&st, id->b, 16);
    crypto_generichash_update(&st, (const uint8_t *)data, len);
    crypto_generichash_final(&st, nonce, NONCE_LEN);
}

static int make_ad(const evs_uuid *id, const char *subject, size_t n, uint8_t *ad) {
    memcpy(ad, id->b, 16);
    memcpy(ad + 16, subject, n);
    return (int)(16 + n);
}

/* The envelope of data under key, malloc'd into *out. */
static int seal_one(const uint8_t key[EVS_DATA_KEY_BYTES], const evs_uuid *id, const char *subject, size_t sn,
                    const char *data, size_t len, char **out, size_t *out_len) {
    size_t raw = NONCE_LEN + len + TAG_LEN;
    uint8_t *ct = malloc(raw);
    size_t b64cap = sodium_base64_ENCODED_LEN(raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char *b64 = malloc(b64cap);
    evs__sb b = {0};
    uint8_t ad[16 + EVS_MAX_SUBJECT];
    int rc = EVS_OK;
    if (!ct || !b64) {
        rc = evs__err(EVS_ENOMEM, "out of memory encrypting %zu bytes", len);
        goto out;
    }
    make_nonce(key, id, data, len, ct);
    unsigned long long cl;
    int adl = make_ad(id, subject, sn, ad);
    crypto_aead_xchacha20poly1305_ietf_encrypt(ct + NONCE_LEN, &cl, (const uint8_t *)data, len, ad, (size_t)adl, NULL,
                                               ct, key);
    sodium_bin2base64(b64, b64cap, ct, raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    evs__sb_adds(&b, ENV_PREFIX "\"subject\":");
    evs__sb_json_str(&b, subject, sn);
    evs__sb_adds(&b, ",\"ct\":\"");
    evs__sb_adds(&b, b64);
    evs__sb_adds(&b, "\"}");
    if (b.oom) {
        rc = evs__err(EVS_ENOMEM, "out of memory encrypting %zu bytes", len);
        goto out;
    }
    *out = evs__sb_take(&b, out_len);
out:
    evs__sb_free(&b);
    free(ct);
    free(b64);
    return rc;
}

/* The subject of event i under mode/prefix. */
static int subject_of(const char *stream, size_t slen, int mode, const char *prefix, size_t plen,
                      const evs_event_in *e, size_t i, const char **subj, size_t *sn) {
    if (mode == 1) {
        *subj = stream;
        *sn = slen;
        return EVS_OK;
    }
    const char *found = NULL;
    for (size_t t = 0; t < e->ntags; t++) {
        if (strncmp(e->tags[t], prefix, plen)) continue;
        if (found)
            return evs__err(EVS_EINVAL, "event %zu: stream \"%.*s\" encrypts by the tag starting with \"%s\", and "
                            "the event carries two (\"%s\", \"%s\")", i + 1, (int)slen, stream, prefix, found,
                            e->tags[t]);
        found = e->tags[t];
    }
    if (!found || !found[plen])
        return evs__err(EVS_EINVAL, "event %zu: stream \"%.*s\" encrypts by the tag starting with \"%s\" (its "
                        "\"$encrypt\" metadata), and the event carries no such tag", i + 1, (int)slen, stream, prefix);
    *subj = found;
    *sn = strlen(found);
    return EVS_OK;
}

int evs__crypt_seal_append(evs_store *s, const char *stream, size_t slen, evs_event_in *ev, size_t n,
                           const evs_uuid *ids, evs__crypt_seal *seal) {
    memset(seal, 0, sizeof *seal);
    for (size_t i = 0; i < n; i++)
        if (ev[i].data_len >= strlen(ENV_GUARD) && !memcmp(ev[i].data, ENV_GUARD, strlen(ENV_GUARD)))
            return evs__err(EVS_EINVAL, "event %zu: data must not start with {\"$enc\": (the store's envelope of "
                            "encrypted data)", i + 1);
    char prefix[EVS_MAX_SUBJECT + 1];
    size_t plen = 0;
    int mode = stream[0] == '$' ? 0
               : s->engine ? evs__crypt_engine_mode(s, stream, slen, 0, prefix, sizeof prefix, &plen)
                           : evs__meta_encrypt(s, stream, slen, prefix, sizeof prefix, &plen);
    if (mode < 0) return mode;
    if (!mode) return EVS_OK;
    if (!(seal->env = calloc(n, sizeof *seal->env))) return evs__err(EVS_ENOMEM, "out of memory encrypting");
    seal->n = n;
    uint8_t key[EVS_DATA_KEY_BYTES];
    int rc = EVS_OK;
    for (size_t i = 0; i < n && !rc; i++) {
        const char *subj = NULL;
        size_t sn = 0, el;
        int state;
        if ((rc = subject_of(stream, slen, mode, prefix, plen, &ev[i], i, &subj, &sn))) break;
        if ((rc = evs__key_get(s, subj, sn, 1, key, &state))) {
            rc = evs__err_prefix(rc, "event %zu: ", i + 1);
            break;
        }
        if (state == EVS_SUBJECT_FORGOTTEN) {
            rc = evs__err(EVS_EKEY, "event %zu: subject \"%.*s\" was forgotten; events under it are refused", i + 1,
                          (int)sn, subj);
            break;
        }
        if ((rc = seal_one(key, &ids[i], subj, sn, ev[i].data, ev[i].data_len, &seal->env[i], &el))) break;
        ev[i].data = seal->env[i];
        ev[i].data_len = el;
    }
    sodium_memzero(key, sizeof key);
    return rc;
}

void evs__crypt_seal_free(evs__crypt_seal *seal) {
    if (!seal->env) return;
    for (size_t i = 0; i < seal->n; i++) free(seal->env[i]);
    free(seal->env);
    seal->env = NULL;
}

/* ------------------------------------------------------------ open */

/*
 * base64url without padding to bytes: a table decoder.  libsodium's decoder
 * is constant-time, which the ciphertext (public bytes) does not need, and
 * it was the largest single cost of opening an event (bench_crypt).
 * Returns the decoded length, or -1 for a character outside the alphabet or
 * a length that no encoding has.
 */
static long b64url_decode(const char *in, size_t n, uint8_t *out, size_t cap) {
    static int8_t tab[256];
    static int ready; /* idempotent fill: racing threads write the same bytes */
    if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {
        int8_t t[256];
        memset(t, -1, sizeof t);
        const char *abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        for (int i = 0; i < 64; i++) t[(unsigned char)abc[i]] = (int8_t)i;
        for (int i = 0; i < 256; i++) __atomic_store_n(&tab[i], t[i], __ATOMIC_RELAXED);
        __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
    }
    if (n % 4 == 1 || n / 4 * 3 + 2 > cap) return -1;
    size_t w = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = __atomic_load_n(&tab[(unsigned char)in[i]], __ATOMIC_RELAXED);
        if (v < 0) return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[w++] = (uint8_t)(acc >> bits);
        }
    }
    if (acc & ((1u << bits) - 1)) return -1; /* non-zero leftover bits: not a canonical encoding */
    return (long)w;
}

static int bad_env(const evs_event *ev, const char *what) {
    return evs__err(EVS_ECORRUPT, "event at global position %llu (stream \"%.*s\" position %llu): %s",
                    (unsigned long long)ev->global_position, (int)ev->stream_len, ev->stream,
                    (unsigned long long)ev->stream_position, what);
}

int evs__crypt_open_event(evs_store *s, evs__crypt_rd *rd, evs_event *ev) {
    rd->subject[0] = 0;
    rd->subject_len = 0;
    ev->redacted = 0;
    if (ev->data_len < sizeof ENV_PREFIX - 1 || memcmp(ev->data, ENV_PREFIX, sizeof ENV_PREFIX - 1)) return EVS_OK;
    /* the envelope is ours, in one layout (seal_one): read it in place rather than iterate it as JSON */
    evs_json_span ct = {0}, sv = {0};
    long sn = -1;
    const char *p = ev->data + sizeof ENV_PREFIX - 1, *end = ev->data + ev->data_len;
    static const char SUBJ[] = "\"subject\":\"", CT[] = ",\"ct\":\"";
    if ((size_t)(end - p) > sizeof SUBJ && !memcmp(p, SUBJ, sizeof SUBJ - 1)) {
        const char *q = p + sizeof SUBJ - 1;
        while (q < end && *q != '"') q += *q == '\\' ? 2 : 1;
        if (q < end) {
            sv = (evs_json_span){p + sizeof SUBJ - 2, (size_t)(q + 1 - (p + sizeof SUBJ - 2)), EVS_JSON_STRING};
            sn = evs__json_string_decode(sv, rd->subject, sizeof rd->subject);
            p = q + 1;
            if ((size_t)(end - p) > sizeof CT + 1 && !memcmp(p, CT, sizeof CT - 1) && end[-1] == '}' &&
                end[-2] == '"')
                ct = (evs_json_span){p + sizeof CT - 2, (size_t)(end - 1 - (p + sizeof CT - 2)), EVS_JSON_STRING};
        }
    }
    if (sn <= 0 || !ct.p || ct.n < 2) return bad_env(ev, "malformed envelope of encrypted data");
    rd->subject_len = (size_t)sn;
    uint8_t key[EVS_DATA_KEY_BYTES];
    int state, rc = evs__key_get(s, rd->subject, (size_t)sn, 0, key, &state);
    if (rc == EVS_ENOTFOUND && s->engine)
        return evs__err(EVS_EKEY, "event at global position %llu (stream \"%.*s\"): subject \"%s\" has no key in "
                        "the %s engine's subject keys", (unsigned long long)ev->global_position, (int)ev->stream_len,
                        ev->stream, rd->subject, s->engine->name);
    if (rc == EVS_ENOTFOUND)
        return evs__err(EVS_EKEY, "event at global position %llu (stream \"%.*s\"): subject \"%s\" has no key in "
                        "%s/" EVS_KEYSTORE_DIR " (a restored store needs its keys: restore --keys-from LIVE_DIR)",
                        (unsigned long long)ev->global_position, (int)ev->stream_len, ev->stream, rd->subject,
                        s->dir);
    if (rc) {
        char why[512];
        snprintf(why, sizeof why, "%s", evs_errmsg());
        return evs__err(rc, "event at global position %llu (stream \"%.*s\"): %s",
                        (unsigned long long)ev->global_position, (int)ev->stream_len, ev->stream, why);
    }
    if (state == EVS_SUBJECT_FORGOTTEN) {
        ev->data = "null";
        ev->data_len = 4;
        ev->redacted = 1;
        return EVS_OK;
    }
    /* base64 text between the quotes; the decoded size bounds the buffer */
    size_t b64n = ct.n - 2, raw_cap = b64n / 4 * 3 + 3, raw;
    if (rd->cap < raw_cap * 2 + 1) {
        size_t cap = raw_cap * 2 + 64;
        char *nb = realloc(rd->buf, cap);
        if (!nb) {
            sodium_memzero(key, sizeof key);
            return evs__err(EVS_ENOMEM, "out of memory decrypting %zu bytes", raw_cap);
        }
        rd->buf = nb;
        rd->cap = cap;
    }
    uint8_t *rawp = (uint8_t *)rd->buf + raw_cap; /* ciphertext in the upper half, plaintext below */
    long got = b64url_decode(ct.p + 1, b64n, rawp, raw_cap);
    raw = got < 0 ? 0 : (size_t)got;
    if (got < 0 || raw < NONCE_LEN + TAG_LEN) {
        sodium_memzero(key, sizeof key);
        return bad_env(ev, "encrypted data is not valid base64 of a nonce and a ciphertext");
    }
    uint8_t ad[16 + EVS_MAX_SUBJECT];
    int adl = make_ad(&ev->event_id, rd->subject, (size_t)sn, ad);
    unsigned long long pl;
    rc = crypto_aead_xchacha20poly1305_ietf_decrypt((uint8_t *)rd->buf, &pl, NULL, rawp + NONCE_LEN, raw - NONCE_LEN,
                                                    ad, (size_t)adl, rawp, key);
    sodium_memzero(key, sizeof key);
    if (rc) return bad_env(ev, "encrypted data fails authentication (altered, or not this event's)");
    ev->data = rd->buf;
    ev->data_len = (size_t)pl;
    return EVS_OK;
}

void evs__crypt_rd_free(evs__crypt_rd *rd) {
    if (rd->buf) sodium_memzero(rd->buf, rd->cap);
    free(rd->buf);
    rd->buf = NULL;
    rd->cap = 0;
}

/* ------------------------------------------------------------ API */

static int subject_arg(evs_store *s, const char *subject, const char *what, size_t *n) {
    *n = 0; /* written first: GCC -O3 cannot tell that evs__err() returns non-zero */
    if (s && s->engine && !s->engine->key_get) return evs__store_native_only(s, what);
    if (!s || (!s->dir && !s->engine)) return evs__err(EVS_ECLOSED, "%s: the store is not open", what);
    if (!subject) return evs__err(EVS_EINVAL, "%s: subject is NULL", what);
    *n = strnlen(subject, EVS_MAX_SUBJECT + 1);
    if (*n == 0 || *n > EVS_MAX_SUBJECT)
        return evs__err(EVS_EINVAL, "%s: a subject is 1..%u bytes", what, EVS_MAX_SUBJECT);
    return EVS_OK;
}

int evs_subject_state(evs_store *s, const char *subject) {
    size_t n;
    uint8_t key[EVS_DATA_KEY_BYTES];
    int state, rc = subject_arg(s, subject, "subject state", &n);
    if (rc) return rc;
    rc = evs__key_get(s, subject, n, 0, key, &state);
    sodium_memzero(key, sizeof key);
    if (rc == EVS_ENOTFOUND) return evs__err_clear(), EVS_SUBJECT_NONE;
    if (rc == EVS_EKEY) return EVS_SUBJECT_LIVE; /* a live key file that needs the master key */
    return rc ? rc : state;
}

int evs_subject_forget(evs_store *s, const char *subject, evs_append_result *audit) {
    size_t n;
    int rc = subject_arg(s, subject, "forget", &n);
    if (rc) return rc;
    if (s->readonly) return evs__err(EVS_ECLOSED, "forget: the store is open read-only");
    if ((rc = evs__key_forget(s, subject, n))) return rc;
    /* the audit record: after the key is gone, so it never claims a forget that did not happen */
    evs__sb b = {0};
    evs__sb_adds(&b, "{\"subject\":");
    evs__sb_json_str(&b, subject, n);
    evs__sb_adds(&b, "}");
    if (b.oom) {
        evs__sb_free(&b);
        return evs__err(EVS_ENOMEM, "forget: out of memory for the audit event (the key is destroyed; run forget "
                        "again to record it)");
    }
    evs_event_in ev;
    memset(&ev, 0, sizeof ev);
    ev.event_type = "$subject-forgotten";
    ev.data = b.p;
    ev.data_len = b.len;
    evs_append_result res;
    rc = evs__append_reserved(s, SUBJECTS_STREAM, &ev, audit ? audit : &res);
    evs__sb_free(&b);
    if (rc) return evs__err_prefix(rc, "forget \"%s\": the key is destroyed but the audit event was not appended "
                                   "(run forget again): ", subject);
    return EVS_OK;
}

typedef struct exp_src {
    evs_reader *r;
    const evs_event *ev;
    int done;
} exp_src;

/* The next event of src that was encrypted under subject. */
static int exp_next(exp_src *x, const char *subject, size_t n) {
    for (;;) {
        x->ev = NULL;
        if (!x->r || x->done) return x->done = 1, EVS_OK;
        int rc = evs_reader_next(x->r, &x->ev);
        if (rc == EVS_DONE) return x->done = 1, EVS_OK;
        if (rc == EVS_ELOST) continue;
        if (rc) return rc;
        const evs__crypt_rd *rd = evs__reader_crypt(x->r);
        if (rd->subject_len == n && !memcmp(rd->subject, subject, n)) return EVS_OK;
    }
}

int evs_subject_export(evs_store *s, const char *subject, evs_event_cb cb, void *arg, uint64_t *count) {
    size_t n;
    int rc = subject_arg(s, subject, "export", &n);
    if (rc) return rc;
    if (!cb) return evs__err(EVS_EINVAL, "export: callback is NULL");
    if (count) *count = 0;
    int state = evs_subject_state(s, subject);
    if (state < 0) return state;
    if (state == EVS_SUBJECT_NONE) return evs__err(EVS_ENOTFOUND, "subject \"%s\" has no key: nothing was encrypted "
                                                   "under it", subject);
    if (state == EVS_SUBJECT_FORGOTTEN)
        return evs__err(EVS_EDELETED, "subject \"%s\" was forgotten: its events read as redacted", subject);
    /* the stream named subject and the events tagged subject, merged in global order */
    exp_src a = {0}, t = {0};
    rc = evs_read_stream(s, subject, 1, EVS_FORWARD, 0, &a.r);
    if (rc == EVS_ENOTFOUND || rc == EVS_EINVAL) rc = EVS_OK, a.r = NULL; /* no such stream, or not a stream name */
    const char *tags[1] = {subject};
    evs_filter f;
    memset(&f, 0, sizeof f);
    f.tags = tags;
    f.n_tags = 1;
    if (!rc) rc = evs_read_all(s, 1, EVS_FORWARD, &f, 0, &t.r);
    if (!rc) rc = exp_next(&a, subject, n);
    if (!rc) rc = exp_next(&t, subject, n);
    uint64_t c = 0;
    while (!rc && (a.ev || t.ev)) {
        exp_src *x = !t.ev || (a.ev && a.ev->global_position <= t.ev->global_position) ? &a : &t;
        if ((rc = cb(arg, x->ev))) break;
        c++;
        if (x == &a && t.ev && t.ev->global_position == a.ev->global_position) rc = exp_next(&t, subject, n);
        if (!rc) rc = exp_next(x, subject, n);
    }
    evs_reader_close(a.r);
    evs_reader_close(t.r);
    if (count) *count = c;
    return rc;
}
