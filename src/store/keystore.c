/*
 * keystore.c — the subject key store of crypto-shredding (evstore_crypt.h):
 * one small file per subject in DIR/subject-keys/, each holding that
 * subject's 32-byte data key wrapped by the master key, and a cache of the
 * unwrapped keys.  crypt.c seals and opens event data with them.
 *
 * FILES.  DIR/subject-keys/MASTER proves which master key the store uses:
 *   0   8  magic "EVSMKC1\n"
 *   8  24  nonce
 *   32 16  XChaCha20-Poly1305 tag of the empty message, additional data
 *          "evstore master check v1"
 * A key file is named by the hex BLAKE2b-128 of the subject, ".key":
 *   0   8  magic "EVSKEY1\n"
 *   8   1  state: 1 live, 2 forgotten
 *   9   1  zero
 *   10  2  subject length n (1..255)
 *   12  8  i64 ns: when created (live) or forgotten
 *   20 24  nonce                       (zero when forgotten)
 *   44 48  wrapped key: XChaCha20-Poly1305 of the 32-byte data key, additional
 *          data "evstore subject key v1" + subject (zero when forgotten)
 *   92  n  subject
 *   92+n 4 CRC32C of bytes 0..92+n
 * The additional data binds a wrapped key to its subject: a key file copied
 * under another subject's name does not unwrap.
 *
 * CRASH SAFETY.  Every file is written whole to NAME.tmp, fsync'd, renamed
 * into place, and the directory fsync'd, so a file is either the old one or
 * the new one, never torn; leftover .tmp files are removed at open.  A new
 * key is durable before the append that uses it is submitted; a forget has
 * replaced the key file (the rename) and synced the directory before it
 * returns.  The old file's blocks are not scrubbed by the file system; what
 * they held was wrapped by the master key.
 *
 * THREADS.  ks->mu serialises file writes (key creation and forget); the
 * cache is an open-addressing table under ks->lock, read-locked by every
 * reader and appender.  Only the store's writer process writes key files
 * (the store's LOCK); a read-only open reads them and keeps what it read
 * until it is closed.
 *
 * ANOTHER ENGINE (engine/engine.h key_*, e.g. src/pg/pg_keys.c).  The same
 * bytes, kept by the engine instead of files: a key row holds nonce ||
 * wrapped key (72 bytes, the same additional data), the master check is
 * the MASTER file's 48 bytes.  The master key still comes only from the
 * caller (evs_store_use_master_key), never from the engine.  Creation is
 * the engine's (one key per subject whichever handle creates it first);
 * several processes share the keys, so the cache cannot keep a live key for
 * ever: a live entry is used while the engine's key generation is the one
 * it was read under (the engine raises it when any handle forgets a
 * subject) and for at most KS_ENGINE_TTL_NS besides; a forgotten entry is
 * kept (forgetting is final).  The same table caches each stream's
 * "$encrypt" mode for crypt.c (kind KS_MODE), with the same age limit.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "store/crypt.h"
#include "store/store_internal.h"

#define MASTER_MAGIC "EVSMKC1\n"
#define KEY_MAGIC "EVSKEY1\n"
#define MASTER_AD "evstore master check v1"
#define KEY_AD "evstore subject key v1"
#define MASTER_FILE_LEN (8 + 24 + 16)
#define KEY_HDR 92
#define NONCE_LEN crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define TAG_LEN crypto_aead_xchacha20poly1305_ietf_ABYTES
#define KS_DIR_MAX (PATH_MAX - 48) /* the store refuses directories longer than PATH_MAX - 64 */
#define ROW_LEN (NONCE_LEN + EVS_DATA_KEY_BYTES + TAG_LEN) /* an engine's key row: nonce || wrapped key */
/* How long a cached live key (or stream mode) of another engine is used without asking the engine again:
   the bound on using a key another process forgot when its notification was lost (pg_keys.c) */
#define KS_ENGINE_TTL_NS 1000000000LL

enum { KS_KEY = 0, KS_MODE = 1 }; /* what a cache entry holds: a subject's key, or a stream's "$encrypt" mode */

typedef struct ks_entry {
    char *subject;                /* or the stream name (KS_MODE) */
    size_t len;
    uint64_t hash;
    int kind;
    int state;                    /* KS_MODE: the mode, 0 none, 1 stream, 2 tag */
    uint8_t key[EVS_DATA_KEY_BYTES];
    int64_t at;                   /* another engine: when it was read (monotonic ns) */
    uint64_t gen;                 /* ... and under which key generation */
    char *prefix;                 /* KS_MODE 2: the tag prefix */
    size_t plen;
} ks_entry;

struct evs__keystore {
    int has_master;
    uint8_t master[EVS_MASTER_KEY_BYTES];
    char source[PATH_MAX + 32];   /* where the master key came from, for messages */
    pthread_mutex_t mu;           /* file writes */
    pthread_rwlock_t lock;        /* the cache */
    int inited;
    ks_entry **slots;
    size_t nslots, count;
    int dir_made;
};

/* ------------------------------------------------------------ master key */

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int evs_master_key_parse(const char *text, size_t len, uint8_t key[EVS_MASTER_KEY_BYTES]) {
    if (!text || !key) return evs__err(EVS_EINVAL, "master key: NULL argument");
    size_t a = 0, b = len;
    while (a < b && (text[a] == ' ' || text[a] == '\t' || text[a] == '\n' || text[a] == '\r')) a++;
    while (b > a && (text[b - 1] == ' ' || text[b - 1] == '\t' || text[b - 1] == '\n' || text[b - 1] == '\r')) b--;
    if (b - a != 2 * EVS_MASTER_KEY_BYTES)
        return evs__err(EVS_EINVAL, "master key: expected 64 hexadecimal digits (32 bytes), found %zu characters",
                        b - a);
    uint8_t tmp[EVS_MASTER_KEY_BYTES];
    for (size_t i = 0; i < EVS_MASTER_KEY_BYTES; i++) {
        int hi = hexval((unsigned char)text[a + 2 * i]), lo = hexval((unsigned char)text[a + 2 * i + 1]);
        if (hi < 0 || lo < 0) {
            sodium_memzero(tmp, sizeof tmp);
            return evs__err(EVS_EINVAL, "master key: character %zu is not a hexadecimal digit",
                            a + 2 * i + (hi < 0 ? 1 : 2));
        }
        tmp[i] = (uint8_t)(hi << 4 | lo);
    }
    memcpy(key, tmp, sizeof tmp);
    sodium_memzero(tmp, sizeof tmp);
    return EVS_OK;
}

static int ks_get(evs_store *s, evs__keystore **out) {
    /* the codes are returned as constants, not through evs__err: the callers' optimiser then sees that
       *out is set whenever EVS_OK comes back (GCC -O3 -Wmaybe-uninitialized) */
    if (!s->ks) {
        if (sodium_init() < 0) {
            evs__err(EVS_EIO, "libsodium could not be initialised");
            return EVS_EIO;
        }
        evs__keystore *ks = calloc(1, sizeof *ks);
        if (!ks) {
            evs__err(EVS_ENOMEM, "out of memory for the key store");
            return EVS_ENOMEM;
        }
        pthread_mutex_init(&ks->mu, NULL);
        pthread_rwlock_init(&ks->lock, NULL);
        ks->inited = 1;
        s->ks = ks;
    }
    *out = s->ks;
    return EVS_OK;
}

int evs_store_set_master_key(evs_store *s, const uint8_t key[EVS_MASTER_KEY_BYTES]) {
    evs__keystore *ks;
    int rc;
    if (!s || !key) return evs__err(EVS_EINVAL, "set_master_key: NULL argument");
    if (s->dir || s->engine) return evs__err(EVS_EINVAL, "set_master_key: the store is already open");
    if ((rc = ks_get(s, &ks))) return rc;
    memcpy(ks->master, key, EVS_MASTER_KEY_BYTES);
    ks->has_master = 1;
    snprintf(ks->source, sizeof ks->source, "the master key given");
    return EVS_OK;
}

int evs_store_use_master_key(evs_store *s, const char *path) {
    uint8_t key[EVS_MASTER_KEY_BYTES];
    char buf[256];
    int rc;
    if (!s) return evs__err(EVS_EINVAL, "use_master_key: store is NULL");
    if (!path) {
        const char *env = getenv("EVSTORE_MASTER_KEY");
        if (!env || !*env) return EVS_OK;
        if ((rc = evs_master_key_parse(env, strlen(env), key)))
            return evs__err_prefix(rc, "environment variable EVSTORE_MASTER_KEY: ");
        rc = evs_store_set_master_key(s, key);
        sodium_memzero(key, sizeof key);
        if (!rc) snprintf(s->ks->source, sizeof s->ks->source, "EVSTORE_MASTER_KEY");
        return rc;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return evs__err_errno(-errno, "master key file %s cannot be opened", path);
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        return evs__err(EVS_EINVAL, "master key file %s is not a regular file", path);
    }
    if (st.st_mode & 077) {
        close(fd);
        return evs__err(EVS_EINVAL, "master key file %s is readable or writable by others (mode %03o); "
                        "`chmod 600 %s` first", path, (unsigned)(st.st_mode & 0777), path);
    }
    ssize_t n = read(fd, buf, sizeof buf);
    int e = errno;
    close(fd);
    if (n < 0) return evs__err_errno(-e, "master key file %s cannot be read", path);
    rc = evs_master_key_parse(buf, (size_t)n, key);
    sodium_memzero(buf, sizeof buf);
    if (rc) return evs__err_prefix(rc, "master key file %s: ", path);
    rc = evs_store_set_master_key(s, key);
    sodium_memzero(key, sizeof key);
    if (!rc) snprintf(s->ks->source, sizeof s->ks->source, "%s", path);
    return rc;
}

/* ------------------------------------------------------------ files */

static int fsync_path(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_DIRECTORY);
    if (fd < 0) return evs__err_errno(-errno, "cannot open %s to sync it", path);
    int rc = fsync(fd) ? evs__err_errno(-errno, "cannot sync %s", path) : EVS_OK;
    close(fd);
    return rc;
}

/* Write buf to dir/name whole: NAME.tmp, fsync, rename, fsync dir. */
static int write_atomic(const char *dir, const char *name, const uint8_t *buf, size_t len) {
    char tmp[PATH_MAX], path[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s/%s.tmp", dir, name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return evs__err_errno(-errno, "cannot create %s", tmp);
    int rc = EVS_OK;
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, buf + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            rc = evs__err_errno(w < 0 ? -errno : -EIO, "cannot write %s", tmp);
            break;
        }
        off += (size_t)w;
    }
    if (!rc && fsync(fd)) rc = evs__err_errno(-errno, "cannot sync %s", tmp);
    close(fd);
    if (!rc && rename(tmp, path)) rc = evs__err_errno(-errno, "cannot rename %s", tmp);
    if (rc) unlink(tmp);
    else rc = fsync_path(dir);
    return rc;
}

/* Read at most cap bytes of a file: length, or -1 (ENOENT: *missing = 1). */
static ssize_t read_small(const char *path, uint8_t *buf, size_t cap, int *missing) {
    *missing = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) *missing = 1;
        else evs__err_errno(-errno, "cannot open %s", path);
        return -1;
    }
    size_t off = 0;
    while (off < cap) {
        ssize_t r = read(fd, buf + off, cap - off);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            evs__err_errno(-errno, "cannot read %s", path);
            close(fd);
            return -1;
        }
        if (r == 0) break;
        off += (size_t)r;
    }
    close(fd);
    return (ssize_t)off;
}

static void ks_dir(const evs_store *s, char *out, size_t cap) { snprintf(out, cap, "%s/" EVS_KEYSTORE_DIR, s->dir); }

static void key_name(const char *subject, size_t n, char name[40]) {
    uint8_t h[16];
    crypto_generichash(h, sizeof h, (const uint8_t *)subject, n, NULL, 0);
    sodium_bin2hex(name, 33, h, sizeof h);
    memcpy(name + 32, ".key", 5);
}

/* The bytes of a MASTER file for our master key: magic, nonce, the tag of the empty message. */
static void master_check_make(const evs__keystore *ks, uint8_t f[MASTER_FILE_LEN]) {
    memcpy(f, MASTER_MAGIC, 8);
    randombytes_buf(f + 8, NONCE_LEN);
    unsigned long long cl;
    crypto_aead_xchacha20poly1305_ietf_encrypt(f + 32, &cl, NULL, 0, (const uint8_t *)MASTER_AD, strlen(MASTER_AD),
                                               NULL, f + 8, ks->master);
}

/* mkdir DIR/subject-keys (0700) and the MASTER file, once.  Caller holds mu. */
static int ensure_dir(evs_store *s, evs__keystore *ks) {
    if (ks->dir_made) return EVS_OK;
    char dir[KS_DIR_MAX], path[PATH_MAX];
    ks_dir(s, dir, sizeof dir);
    int rc;
    if (mkdir(dir, 0700) == 0) {
        if ((rc = fsync_path(s->dir))) return rc;
    } else if (errno != EEXIST) {
        return evs__err_errno(-errno, "cannot create the key store %s", dir);
    }
    snprintf(path, sizeof path, "%s/MASTER", dir);
    struct stat st;
    if (stat(path, &st) != 0) {
        uint8_t f[MASTER_FILE_LEN];
        master_check_make(ks, f);
        if ((rc = write_atomic(dir, "MASTER", f, sizeof f))) return rc;
    }
    ks->dir_made = 1;
    return EVS_OK;
}

/* Does f (a MASTER file's bytes, n of them) verify with our master key?  EVS_OK, EVS_ECORRUPT or EVS_EKEY. */
static int master_check_verify(evs__keystore *ks, const uint8_t *f, size_t n, const char *where) {
    if (n != MASTER_FILE_LEN || memcmp(f, MASTER_MAGIC, 8))
        return evs__err(EVS_ECORRUPT, "key store %s is malformed (%zu bytes)", where, n);
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(NULL, NULL, NULL, f + 32, TAG_LEN, (const uint8_t *)MASTER_AD,
                                                   strlen(MASTER_AD), f + 8, ks->master))
        return evs__err(EVS_EKEY, "the master key from %s is not the one of this store's key store (%s does not "
                        "verify with it); nothing was changed", ks->source, where);
    return EVS_OK;
}

#define ENGINE_MASTER_WHERE "the database's evs_subject_master"

/* Another engine: check (or, first of all, store) the master check.  Caller holds mu. */
static int ensure_engine_master(evs_store *s, evs__keystore *ks) {
    if (ks->dir_made) return EVS_OK;
    uint8_t f[MASTER_FILE_LEN], got[MASTER_FILE_LEN + 1];
    size_t n;
    master_check_make(ks, f);
    int rc = s->engine->key_master(s->eng, f, sizeof f, got, sizeof got, &n);
    /* another server may have stored its check first: ours must verify with what is there */
    if (!rc) rc = master_check_verify(ks, got, n, ENGINE_MASTER_WHERE);
    if (!rc) ks->dir_made = 1;
    return rc;
}

/* evs__keystore_open on another engine: the master key, if given, must verify with the check stored. */
static int keystore_open_engine(evs_store *s, evs__keystore *ks) {
    uint8_t got[MASTER_FILE_LEN + 1];
    size_t n;
    if (!s->engine->key_get) return EVS_OK; /* no encrypted streams there: crypt.c says so when asked */
    int rc = s->engine->key_master(s->eng, NULL, 0, got, sizeof got, &n);
    if (rc || !n || !ks->has_master) return rc;
    if ((rc = master_check_verify(ks, got, n, ENGINE_MASTER_WHERE))) return rc;
    ks->dir_made = 1;
    return EVS_OK;
}

int evs__keystore_open(evs_store *s) {
    evs__keystore *ks;
    int rc;
    if ((rc = ks_get(s, &ks))) return rc;
    if (s->engine) {
        ks->dir_made = 0;
        return keystore_open_engine(s, ks);
    }
    ks->dir_made = 0;
    char dir[KS_DIR_MAX], path[KS_DIR_MAX + 300];
    ks_dir(s, dir, sizeof dir);
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? EVS_OK : evs__err_errno(-errno, "cannot open the key store %s", dir);
    struct dirent *e;
    while (!s->readonly && (e = readdir(d))) {
        size_t nl = strlen(e->d_name);
        if (nl > 4 && !strcmp(e->d_name + nl - 4, ".tmp")) { /* a write a crash interrupted */
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    }
    closedir(d);
    snprintf(path, sizeof path, "%s/MASTER", dir);
    uint8_t f[MASTER_FILE_LEN + 1];
    int missing;
    ssize_t n = read_small(path, f, sizeof f, &missing);
    if (n < 0) return missing ? EVS_OK : EVS_EIO;
    if (n != MASTER_FILE_LEN || memcmp(f, MASTER_MAGIC, 8))
        return evs__err(EVS_ECORRUPT, "key store file %s is malformed (%zd bytes)", path, n);
    if (!ks->has_master) return EVS_OK; /* opens; encrypted data is refused later, event by event */
    if ((rc = master_check_verify(ks, f, (size_t)n, path))) return rc;
    ks->dir_made = 1;
    return EVS_OK;
}

void evs__keystore_close(evs_store *s) {
    evs__keystore *ks = s->ks;
    if (!ks) return;
    pthread_rwlock_wrlock(&ks->lock);
    for (size_t i = 0; i < ks->nslots; i++)
        if (ks->slots[i]) {
            sodium_memzero(ks->slots[i]->key, EVS_DATA_KEY_BYTES);
            free(ks->slots[i]->subject);
            free(ks->slots[i]->prefix);
            free(ks->slots[i]);
        }
    free(ks->slots);
    ks->slots = NULL;
    ks->nslots = ks->count = 0;
    pthread_rwlock_unlock(&ks->lock);
}

void evs__keystore_free(evs_store *s) {
    if (!s || !s->ks) return;
    evs__keystore_close(s);
    sodium_memzero(s->ks->master, sizeof s->ks->master);
    pthread_mutex_destroy(&s->ks->mu);
    pthread_rwlock_destroy(&s->ks->lock);
    free(s->ks);
    s->ks = NULL;
}

/* ------------------------------------------------------------ cache */

static uint64_t subj_hash(int kind, const char *p, size_t n) {
    uint64_t h = 1469598103934665603ull ^ (uint64_t)kind; /* FNV-1a: the table's, not a secret */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h;
}

/* Caller holds lock (either way). */
static ks_entry *cache_find_kind(evs__keystore *ks, int kind, const char *subject, size_t n, uint64_t h) {
    if (!ks->nslots) return NULL;
    size_t mask = ks->nslots - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        ks_entry *e = ks->slots[i];
        if (!e) return NULL;
        if (e->hash == h && e->kind == kind && e->len == n && !memcmp(e->subject, subject, n)) return e;
    }
}

static ks_entry *cache_find(evs__keystore *ks, const char *subject, size_t n, uint64_t h) {
    return cache_find_kind(ks, KS_KEY, subject, n, h);
}

/* Insert or update an entry of kind; caller holds lock for writing.  The entry, or NULL (out of memory). */
static ks_entry *cache_put_kind(evs__keystore *ks, int kind, const char *subject, size_t n) {
    uint64_t h = subj_hash(kind, subject, n);
    ks_entry *e = cache_find_kind(ks, kind, subject, n, h);
    if (!e) {
        if ((ks->count + 1) * 2 > ks->nslots) {
            size_t ns = ks->nslots ? ks->nslots * 2 : 64;
            ks_entry **sl = calloc(ns, sizeof *sl);
            if (!sl) return NULL;
            for (size_t i = 0; i < ks->nslots; i++)
                if (ks->slots[i]) {
                    size_t j = ks->slots[i]->hash & (ns - 1);
                    while (sl[j]) j = (j + 1) & (ns - 1);
                    sl[j] = ks->slots[i];
                }
            free(ks->slots);
            ks->slots = sl;
            ks->nslots = ns;
        }
        if (!(e = calloc(1, sizeof *e)) || !(e->subject = malloc(n + 1))) {
            free(e);
            return NULL;
        }
        memcpy(e->subject, subject, n);
        e->subject[n] = 0;
        e->len = n;
        e->hash = h;
        e->kind = kind;
        size_t j = h & (ks->nslots - 1);
        while (ks->slots[j]) j = (j + 1) & (ks->nslots - 1);
        ks->slots[j] = e;
        ks->count++;
    }
    return e;
}

/* A subject's key into the cache; caller holds lock for writing.  gen: the engine's key generation it was read
   under (0 on the embedded engine). */
static int cache_put(evs__keystore *ks, const char *subject, size_t n, int state, const uint8_t *key, uint64_t gen) {
    ks_entry *e = cache_put_kind(ks, KS_KEY, subject, n);
    if (!e) return evs__err(EVS_ENOMEM, "out of memory caching subject keys");
    e->state = state;
    e->at = evs__mono_ns();
    e->gen = gen;
    if (key) memcpy(e->key, key, EVS_DATA_KEY_BYTES);
    else sodium_memzero(e->key, EVS_DATA_KEY_BYTES);
    return EVS_OK;
}

/* May a cached entry be used?  Embedded: always.  Another engine: a forgotten key always (forgetting is
   final); a live key or a mode while the key generation is unchanged and the entry is young enough. */
static int cache_fresh(const evs_store *s, const ks_entry *e, uint64_t gen, int64_t now) {
    if (!s->engine) return 1;
    if (e->kind == KS_KEY && e->state == EVS_SUBJECT_FORGOTTEN) return 1;
    return (e->kind == KS_MODE || e->gen == gen) && now - e->at <= KS_ENGINE_TTL_NS;
}

int evs__ks_mode_get(evs_store *s, const char *stream, size_t n, char *prefix, size_t cap, size_t *plen) {
    evs__keystore *ks;
    if (ks_get(s, &ks)) return evs__err_clear(), -1;
    int mode = KS_MODE_ABSENT;
    pthread_rwlock_rdlock(&ks->lock);
    ks_entry *e = cache_find_kind(ks, KS_MODE, stream, n, subj_hash(KS_MODE, stream, n));
    if (e && !cache_fresh(s, e, 0, evs__mono_ns())) mode = KS_MODE_STALE;
    else if (e && (e->state != 2 || e->plen < cap)) {
        mode = e->state;
        if (mode == 2) {
            memcpy(prefix, e->prefix, e->plen + 1);
            *plen = e->plen;
        }
    }
    pthread_rwlock_unlock(&ks->lock);
    return mode;
}

void evs__ks_mode_put(evs_store *s, const char *stream, size_t n, int mode, const char *prefix, size_t plen) {
    evs__keystore *ks;
    if (ks_get(s, &ks)) {
        evs__err_clear(); /* not cached: asked again next time */
        return;
    }
    char *p = NULL;
    if (mode == 2 && (p = malloc(plen + 1))) {
        memcpy(p, prefix, plen);
        p[plen] = 0;
    }
    if (mode == 2 && !p) return;
    pthread_rwlock_wrlock(&ks->lock);
    ks_entry *e = cache_put_kind(ks, KS_MODE, stream, n);
    if (e) {
        free(e->prefix);
        e->prefix = p;
        e->plen = p ? plen : 0;
        e->state = mode;
        e->at = evs__mono_ns();
        p = NULL;
    }
    pthread_rwlock_unlock(&ks->lock);
    free(p);
}

/* ------------------------------------------------------------ key files */

static void key_ad(const char *subject, size_t n, uint8_t *ad, size_t *adlen) {
    size_t k = strlen(KEY_AD);
    memcpy(ad, KEY_AD, k);
    memcpy(ad + k, subject, n);
    *adlen = k + n;
}

/* Wrap key for subject: a fresh nonce, and the key sealed under the master key (wrapped: 48 bytes). */
static void wrap(const evs__keystore *ks, const char *subject, size_t n, const uint8_t key[EVS_DATA_KEY_BYTES],
                 uint8_t nonce[NONCE_LEN], uint8_t *wrapped) {
    uint8_t ad[64 + EVS_MAX_SUBJECT];
    size_t adlen;
    unsigned long long cl;
    key_ad(subject, n, ad, &adlen);
    randombytes_buf(nonce, NONCE_LEN);
    crypto_aead_xchacha20poly1305_ietf_encrypt(wrapped, &cl, key, EVS_DATA_KEY_BYTES, ad, adlen, NULL, nonce,
                                               ks->master);
}

/* The reverse: 0, or -1 when it does not verify (another master key, another subject, altered bytes). */
static int unwrap(const evs__keystore *ks, const char *subject, size_t n, const uint8_t *nonce, const uint8_t *wrapped,
                  uint8_t key[EVS_DATA_KEY_BYTES]) {
    uint8_t ad[64 + EVS_MAX_SUBJECT];
    size_t adlen;
    key_ad(subject, n, ad, &adlen);
    return crypto_aead_xchacha20poly1305_ietf_decrypt(key, NULL, NULL, wrapped, EVS_DATA_KEY_BYTES + TAG_LEN, ad, adlen,
                                                      nonce, ks->master);
}

/*
 * Load a key file: EVS_OK with *state (and key when live and unwrappable),
 * EVS_ENOTFOUND when there is none.  need_key: a live key without the
 * master key is EVS_EKEY.
 */
static int key_load(evs_store *s, evs__keystore *ks, const char *subject, size_t n, int need_key, int *state,
                    uint8_t key[EVS_DATA_KEY_BYTES]) {
    char dir[KS_DIR_MAX], path[PATH_MAX], name[40];
    ks_dir(s, dir, sizeof dir);
    key_name(subject, n, name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    uint8_t f[KEY_HDR + EVS_MAX_SUBJECT + 4 + 1];
    int missing;
    ssize_t len = read_small(path, f, sizeof f, &missing);
    if (len < 0) return missing ? EVS_ENOTFOUND : EVS_EIO;
    if (len < KEY_HDR + 4 || memcmp(f, KEY_MAGIC, 8) || evs__get16(f + 10) != n || (size_t)len != KEY_HDR + n + 4 ||
        evs__get32(f + KEY_HDR + n) != evs__crc32c(0, f, KEY_HDR + n) || memcmp(f + KEY_HDR, subject, n) ||
        (f[8] != EVS_SUBJECT_LIVE && f[8] != EVS_SUBJECT_FORGOTTEN))
        return evs__err(EVS_ECORRUPT, "key file %s of subject \"%.*s\" is malformed or damaged", path, (int)n, subject);
    *state = f[8];
    if (*state == EVS_SUBJECT_FORGOTTEN) return EVS_OK;
    if (!ks->has_master) {
        if (!need_key) return EVS_OK;
        return evs__err(EVS_EKEY, "subject \"%.*s\" is encrypted and no master key is configured "
                        "(--master-key-file FILE or EVSTORE_MASTER_KEY)", (int)n, subject);
    }
    if (unwrap(ks, subject, n, f + 20, f + 44, key))
        return evs__err(EVS_EKEY, "key file %s of subject \"%.*s\" does not unwrap with the master key from %s "
                        "(wrong master key, or the file was altered)", path, (int)n, subject, ks->source);
    return EVS_OK;
}

/* Write a key file for subject: live with key, or a forgotten tombstone.  Caller holds mu. */
static int key_write(evs_store *s, evs__keystore *ks, const char *subject, size_t n, int state,
                     const uint8_t key[EVS_DATA_KEY_BYTES]) {
    char dir[KS_DIR_MAX], name[40];
    ks_dir(s, dir, sizeof dir);
    key_name(subject, n, name);
    uint8_t f[KEY_HDR + EVS_MAX_SUBJECT + 4];
    memset(f, 0, sizeof f);
    memcpy(f, KEY_MAGIC, 8);
    f[8] = (uint8_t)state;
    evs__put16(f + 10, (uint16_t)n);
    evs__put64(f + 12, (uint64_t)evs_now_ns());
    if (state == EVS_SUBJECT_LIVE) wrap(ks, subject, n, key, f + 20, f + 44);
    memcpy(f + KEY_HDR, subject, n);
    evs__put32(f + KEY_HDR + n, evs__crc32c(0, f, KEY_HDR + n));
    int rc = write_atomic(dir, name, f, KEY_HDR + n + 4);
    sodium_memzero(f, sizeof f);
    return rc;
}

static int subject_ok(const char *subject, size_t n) {
    if (n == 0 || n > EVS_MAX_SUBJECT)
        return evs__err(EVS_EINVAL, "subject must be 1..%u bytes, not %zu", EVS_MAX_SUBJECT, n);
    return EVS_OK;
}

static int no_master_err(const char *subject, size_t n) {
    return evs__err(EVS_EKEY, "subject \"%.*s\": encrypting needs a master key (--master-key-file FILE or "
                    "EVSTORE_MASTER_KEY)", (int)n, subject);
}

/*
 * evs__key_get on another engine, past the cache: the engine's row, created
 * there when asked and allowed (the engine decides atomically which key
 * wins, so what comes back may be another handle's), unwrapped here.  gen:
 * the key generation read before asking, kept with the cached entry.
 */
static int engine_key_get(evs_store *s, evs__keystore *ks, const char *subject, size_t n, int create,
                          uint8_t key[EVS_DATA_KEY_BYTES], int *state, uint64_t gen) {
    const evs_engine *eng = s->engine;
    if (!eng->key_get) return evs__engine_unsupported(eng, "an encrypted stream (\"$encrypt\" in its metadata)");
    uint8_t row[ROW_LEN + 1], mine[ROW_LEN];
    size_t rl = 0;
    int rc;
    if (create && ks->has_master && !s->readonly) {
        pthread_mutex_lock(&ks->mu);
        rc = ensure_engine_master(s, ks);
        pthread_mutex_unlock(&ks->mu);
        if (!rc) {
            randombytes_buf(key, EVS_DATA_KEY_BYTES);
            wrap(ks, subject, n, key, mine, mine + NONCE_LEN);
            rc = eng->key_get(s->eng, subject, n, mine, ROW_LEN, state, row, sizeof row, &rl);
        }
        sodium_memzero(mine, sizeof mine);
    } else {
        rc = eng->key_get(s->eng, subject, n, NULL, 0, state, row, sizeof row, &rl);
        if (!rc && *state == EVS_SUBJECT_NONE && create)
            rc = !ks->has_master ? no_master_err(subject, n)
                                 : evs__err(EVS_ECLOSED, "subject \"%.*s\": the store is open read-only", (int)n, subject);
    }
    if (rc) goto out;
    if (*state == EVS_SUBJECT_NONE) {
        rc = evs__err(EVS_ENOTFOUND, "subject \"%.*s\" has no key", (int)n, subject);
        goto out;
    }
    if (*state == EVS_SUBJECT_LIVE) {
        if (rl != ROW_LEN) {
            rc = evs__err(EVS_ECORRUPT, "the key of subject \"%.*s\" in the %s engine is %zu bytes, not %u (damaged)",
                          (int)n, subject, eng->name, rl, (unsigned)ROW_LEN);
            goto out;
        }
        if (!ks->has_master) {
            rc = evs__err(EVS_EKEY, "subject \"%.*s\" is encrypted and no master key is configured "
                          "(--master-key-file FILE or EVSTORE_MASTER_KEY)", (int)n, subject);
            goto out;
        }
        if (unwrap(ks, subject, n, row, row + NONCE_LEN, key)) {
            rc = evs__err(EVS_EKEY, "the key of subject \"%.*s\" in the %s engine does not unwrap with the master "
                          "key from %s (wrong master key, or the row was altered)", (int)n, subject, eng->name,
                          ks->source);
            goto out;
        }
    }
    pthread_rwlock_wrlock(&ks->lock);
    /* a forget through this handle may have finished while the row was read: forgetting is final, so a live
       row read before it never replaces the forgotten entry (the embedded path has mu for this) */
    ks_entry *e = cache_find(ks, subject, n, subj_hash(KS_KEY, subject, n));
    if (e && e->state == EVS_SUBJECT_FORGOTTEN) {
        *state = EVS_SUBJECT_FORGOTTEN;
        sodium_memzero(key, EVS_DATA_KEY_BYTES);
    } else {
        rc = cache_put(ks, subject, n, *state, *state == EVS_SUBJECT_LIVE ? key : NULL, gen);
    }
    pthread_rwlock_unlock(&ks->lock);
out:
    sodium_memzero(row, sizeof row);
    return rc;
}

int evs__key_get(evs_store *s, const char *subject, size_t n, int create, uint8_t key[EVS_DATA_KEY_BYTES],
                 int *state) {
    evs__keystore *ks;
    int rc;
    if ((rc = subject_ok(subject, n)) || (rc = ks_get(s, &ks))) return rc;
    uint64_t h = subj_hash(KS_KEY, subject, n);
    /* another engine: the generation before the cache and the engine are read, so a forget that lands in
       between leaves the entry stale */
    uint64_t gen = s->engine && s->engine->key_generation ? s->engine->key_generation(s->eng) : 0;
    int64_t now = s->engine ? evs__mono_ns() : 0;
    pthread_rwlock_rdlock(&ks->lock);
    ks_entry *e = cache_find(ks, subject, n, h);
    if (e && !cache_fresh(s, e, gen, now)) e = NULL;
    if (e) {
        *state = e->state;
        if (e->state == EVS_SUBJECT_LIVE) memcpy(key, e->key, EVS_DATA_KEY_BYTES);
    }
    pthread_rwlock_unlock(&ks->lock);
    if (e) return EVS_OK;
    if (s->engine) return engine_key_get(s, ks, subject, n, create, key, state, gen);
    /* not cached: the file, under mu so that two appenders do not both create it */
    pthread_mutex_lock(&ks->mu);
    pthread_rwlock_rdlock(&ks->lock);
    e = cache_find(ks, subject, n, h);
    if (e) {
        *state = e->state;
        if (e->state == EVS_SUBJECT_LIVE) memcpy(key, e->key, EVS_DATA_KEY_BYTES);
    }
    pthread_rwlock_unlock(&ks->lock);
    if (e) goto out;
    rc = key_load(s, ks, subject, n, 1, state, key);
    if (rc == EVS_ENOTFOUND && create) {
        if (!ks->has_master) {
            rc = no_master_err(subject, n);
            goto out;
        }
        if (s->readonly) {
            rc = evs__err(EVS_ECLOSED, "subject \"%.*s\": the store is open read-only", (int)n, subject);
            goto out;
        }
        randombytes_buf(key, EVS_DATA_KEY_BYTES);
        if ((rc = ensure_dir(s, ks)) || (rc = key_write(s, ks, subject, n, EVS_SUBJECT_LIVE, key))) goto out;
        *state = EVS_SUBJECT_LIVE;
    } else if (rc == EVS_ENOTFOUND) {
        rc = evs__err(EVS_ENOTFOUND, "subject \"%.*s\" has no key", (int)n, subject);
        goto out;
    }
    if (rc) goto out;
    pthread_rwlock_wrlock(&ks->lock);
    rc = cache_put(ks, subject, n, *state, *state == EVS_SUBJECT_LIVE ? key : NULL, 0);
    pthread_rwlock_unlock(&ks->lock);
out:
    pthread_mutex_unlock(&ks->mu);
    return rc;
}

int evs__key_forget(evs_store *s, const char *subject, size_t n) {
    evs__keystore *ks;
    int rc, state = 0;
    uint8_t key[EVS_DATA_KEY_BYTES];
    if ((rc = subject_ok(subject, n)) || (rc = ks_get(s, &ks))) return rc;
    if (s->readonly) return evs__err(EVS_ECLOSED, "forget: the store is open read-only");
    if (s->engine) {
        /* the engine drops the wrapped key for good and tells the other handles (key_generation) */
        if (!s->engine->key_forget) return evs__engine_unsupported(s->engine, "forgetting a subject");
        if ((rc = s->engine->key_forget(s->eng, subject, n))) return rc;
        pthread_rwlock_wrlock(&ks->lock);
        rc = cache_put(ks, subject, n, EVS_SUBJECT_FORGOTTEN, NULL, 0);
        pthread_rwlock_unlock(&ks->lock);
        return rc;
    }
    pthread_mutex_lock(&ks->mu);
    rc = key_load(s, ks, subject, n, 0, &state, key);
    sodium_memzero(key, sizeof key);
    if (rc == EVS_ENOTFOUND) rc = evs__err(EVS_ENOTFOUND, "subject \"%.*s\" has no key (nothing was encrypted "
                                           "under it)", (int)n, subject);
    /* the tombstone first (durable), then the cache: no reader decrypts after we return */
    if (!rc && state == EVS_SUBJECT_LIVE) rc = key_write(s, ks, subject, n, EVS_SUBJECT_FORGOTTEN, NULL);
    if (!rc) {
        pthread_rwlock_wrlock(&ks->lock);
        rc = cache_put(ks, subject, n, EVS_SUBJECT_FORGOTTEN, NULL, 0);
        pthread_rwlock_unlock(&ks->lock);
    }
    pthread_mutex_unlock(&ks->mu);
    return rc;
}

/* ------------------------------------------------------------ restore */

int evs_subject_keys_copy(const char *from_dir, const char *to_dir, size_t *copied) {
    char src[KS_DIR_MAX], dst[KS_DIR_MAX], path[KS_DIR_MAX + 300];
    if (copied) *copied = 0;
    if (!from_dir || !to_dir) return evs__err(EVS_EINVAL, "keys copy: NULL directory");
    const evs_engine *eng = evs__engine_for(from_dir) ? evs__engine_for(from_dir) : evs__engine_for(to_dir);
    if (eng) /* its keys are rows of the same database as its events: a restore of the database carries them */
        return evs__engine_unsupported(eng, "copying subject keys between store directories");
    if (strlen(from_dir) > PATH_MAX - 64 || strlen(to_dir) > PATH_MAX - 64)
        return evs__err(EVS_EINVAL, "keys copy: directory path is too long");
    snprintf(src, sizeof src, "%s/" EVS_KEYSTORE_DIR, from_dir);
    snprintf(dst, sizeof dst, "%s/" EVS_KEYSTORE_DIR, to_dir);
    struct stat st;
    if (stat(to_dir, &st) || !S_ISDIR(st.st_mode)) return evs__err(EVS_ENOTFOUND, "keys copy: no store at %s", to_dir);
    DIR *d = opendir(src);
    if (!d) {
        if (errno == ENOENT) return evs__err(EVS_ENOTFOUND, "%s has no key store (%s)", from_dir, src);
        return evs__err_errno(-errno, "cannot open the key store %s", src);
    }
    int rc = EVS_OK;
    if (mkdir(dst, 0700) && errno != EEXIST) rc = evs__err_errno(-errno, "cannot create %s", dst);
    size_t n = 0;
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        size_t nl = strlen(e->d_name);
        if (strcmp(e->d_name, "MASTER") && (nl != 36 || strcmp(e->d_name + 32, ".key"))) continue;
        uint8_t buf[KEY_HDR + EVS_MAX_SUBJECT + 8];
        int missing;
        snprintf(path, sizeof path, "%s/%s", src, e->d_name);
        ssize_t len = read_small(path, buf, sizeof buf, &missing);
        if (len < 0 && missing) continue; /* replaced under us: the rename's new file is read next time */
        if (len < 0) rc = EVS_EIO;
        else rc = write_atomic(dst, e->d_name, buf, (size_t)len);
        sodium_memzero(buf, sizeof buf);
        n++;
    }
    closedir(d);
    if (!rc) rc = fsync_path(to_dir);
    if (copied) *copied = n;
    return rc;
}
