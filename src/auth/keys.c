/*
 * keys.c — API keys (keys.h): the keys and the server secret, creating,
 * revoking and verifying keys, and the permission checks of a principal.
 *
 * Two places keep them, with the same document and the same checks:
 *   files     a store directory (the embedded engine): DIR/keys.json,
 *             DIR/keys.secret, DIR/keys.lock, as keys.h describes;
 *   database  a store on PostgreSQL, through the kv interface (src/bus/kv.h,
 *             table evs_bus_kv): the text keys.json would hold as one row of
 *             db 40, the server secret and a generation in db 41.  Every
 *             server on the database verifies against the same secret and
 *             keys (why kv and not a table of its own: docs/decisions.md).
 * Only reading, writing and noticing a change differ.  Files: a change
 * takes keys.lock and re-reads the file; a reader notices a change by the
 * file's stat.  Database: a change runs in a kv write transaction (the
 * writers' advisory lock: changes of every server run one at a time),
 * re-reads the document in it, writes it whole and bumps the generation;
 * a reader compares the generation (one small query) before list and
 * active, and at most every EVS__KEYS_RECHECK_NS before a verify, so a key
 * created or revoked through any server counts on every other within it.
 *
 * The in-memory table is an array of entries, each with its stored hash and
 * a principal built from its role and grants.  A reload builds a whole new
 * table and swaps it in under the write lock; principals handed out earlier
 * stay valid (reference-counted).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auth/keys.h"
#include "bus/kv.h"
#include "core/core.h"
#include "store/store_engine.h"
#include "store/store_access.h"

#define KEYS_FILE "keys.json"
#define SECRET_FILE "keys.secret"
#define LOCK_FILE "keys.lock"
#define MAX_KEYS 4096
#define MAX_KEYS_FILE ((size_t)16 << 20)

/* The database: evs_bus_kv db 40 holds the document, db 41 the secret and the generation (42..44 kept for keys). */
enum { KT_KEYS, KT_META, KT_NTABLES };
static const evs__kv_layout keys_layout = {
    .what = "API keys",
    .ntables = KT_NTABLES,
    .lmdb_names = {NULL, NULL}, /* PostgreSQL only: an embedded store keeps files */
    .pg_db = {40, 41},
};
#define KV_DOC "keys.json"
#define KV_SECRET "secret"
#define KV_GEN "gen"
#define DB_DOC_NAME "the API keys in the database (evs_bus_kv db 40)"

typedef struct key_entry {
    char id[EVS_KEY_ID_LEN + 1];
    unsigned char hash[crypto_generichash_BYTES];
    int revoked;
    evs__principal *who;
    json_t *rec;                 /* the stored record (hash included) */
} key_entry;

typedef struct key_table {
    key_entry *e;
    size_t n;
} key_table;

struct evs__keystore {
    char *dir;                   /* files: the store directory; NULL on a database */
    unsigned char secret[crypto_generichash_KEYBYTES];
    pthread_rwlock_t lock;
    key_table t;
    int reload_warned;
    /* files: keys.json as last read (a change on disk means re-read it) */
    int have_file;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    /* a database */
    evs__kv *kv;                 /* NULL: files */
    evs_store *own;              /* the store evs__keys_open opened on a URL (closed with the keystore) */
    pthread_mutex_t sync_mu;     /* one refresh or change at a time; gen and reload_warned under it */
    uint64_t gen;                /* the generation t reflects */
    _Atomic int64_t checked_ns;  /* when (monotonic) the last good comparison of the generation started */
};

/* --------------------------------------------------------- principals */

evs__principal *evs__principal_ref(evs__principal *p) {
    if (p) atomic_fetch_add(&p->refs, 1);
    return p;
}

void evs__principal_unref(evs__principal *p) {
    if (p && atomic_fetch_sub(&p->refs, 1) == 1) free(p);
}

const char *evs__perm_name(unsigned perm) {
    switch (perm) {
    case EVS_PERM_READ: return "read";
    case EVS_PERM_APPEND: return "append";
    case EVS_PERM_SUBSCRIBE: return "subscribe";
    case EVS_PERM_ADMIN: return "admin";
    default: return "?";
    }
}

/* The grant's permissions, admin standing for all of them. */
static unsigned grant_perms(const evs__grant *g) { return g->perms & EVS_PERM_ADMIN ? EVS_PERM_EVERY : g->perms; }

/* type (n bytes) is one of the comma-separated list. */
static int type_listed(const char *list, const char *type, size_t n) {
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == n && memcmp(p, type, n) == 0) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

static int grant_covers_stream(const evs__grant *g, const char *s, size_t n) {
    if (g->all) return 1;
    size_t gl = strlen(g->streams);
    if (g->prefix) return n >= gl && memcmp(s, g->streams, gl) == 0;
    return n == gl && memcmp(s, g->streams, gl) == 0;
}

int evs__principal_allows(const evs__principal *p, unsigned perm, const char *stream, size_t stream_len,
                          const char *type, size_t type_len) {
    for (size_t i = 0; i < p->ngrants; i++) {
        const evs__grant *g = &p->grants[i];
        if (!(grant_perms(g) & perm) || !grant_covers_stream(g, stream, stream_len)) continue;
        if (g->types[0] && type && !type_listed(g->types, type, type_len)) continue;
        return 1;
    }
    return 0;
}

int evs__principal_allows_all(const evs__principal *p, unsigned perm) {
    for (size_t i = 0; i < p->ngrants; i++)
        if ((grant_perms(&p->grants[i]) & perm) && p->grants[i].all && !p->grants[i].types[0]) return 1;
    return 0;
}

int evs__principal_allows_any(const evs__principal *p, unsigned perm) {
    for (size_t i = 0; i < p->ngrants; i++)
        if (grant_perms(&p->grants[i]) & perm) return 1;
    return 0;
}

int evs__grant_parse(const char *text, evs__grant *g) {
    memset(g, 0, sizeof *g);
    const char *c1 = strchr(text, ':');
    if (!c1) return evs__err(EVS_EINVAL, "grant \"%.80s\": expected PERM:STREAMS[:TYPES], e.g. read:order-*", text);
    /* permissions: read, append, subscribe, admin, joined by '+' */
    for (const char *p = text; p < c1;) {
        const char *e = memchr(p, '+', (size_t)(c1 - p));
        size_t l = e ? (size_t)(e - p) : (size_t)(c1 - p);
        unsigned bit = 0;
        static const unsigned bits[] = {EVS_PERM_READ, EVS_PERM_APPEND, EVS_PERM_SUBSCRIBE, EVS_PERM_ADMIN};
        for (size_t i = 0; i < 4; i++)
            if (strlen(evs__perm_name(bits[i])) == l && memcmp(evs__perm_name(bits[i]), p, l) == 0) bit = bits[i];
        if (!bit)
            return evs__err(EVS_EINVAL, "grant \"%.80s\": unknown permission \"%.*s\" (read, append, subscribe, admin)",
                            text, (int)(l > 40 ? 40 : l), p);
        g->perms |= bit;
        p = e ? e + 1 : c1;
    }
    const char *s = c1 + 1;
    const char *c2 = strchr(s, ':');
    size_t sl = c2 ? (size_t)(c2 - s) : strlen(s);
    if (sl == 0) return evs__err(EVS_EINVAL, "grant \"%.80s\": no streams (use $all, PREFIX* or a stream name)", text);
    if ((sl == 4 && memcmp(s, "$all", 4) == 0) || (sl == 1 && s[0] == '*')) {
        g->all = 1;
    } else {
        if (s[sl - 1] == '*') {
            g->prefix = 1;
            sl--;
        }
        if (sl > EVS_MAX_STREAM_NAME)
            return evs__err(EVS_EINVAL, "grant \"%.80s\": the stream name is over %u bytes", text, EVS_MAX_STREAM_NAME);
        if (memchr(s, '*', sl))
            return evs__err(EVS_EINVAL, "grant \"%.80s\": '*' may only end the stream prefix", text);
        memcpy(g->streams, s, sl);
        g->streams[sl] = '\0';
    }
    if (c2) {
        const char *t = c2 + 1;
        size_t tl = strlen(t);
        if (tl == 0 || t[0] == ',' || t[tl - 1] == ',' || strstr(t, ",,"))
            return evs__err(EVS_EINVAL, "grant \"%.80s\": event types must be a comma-separated list of names", text);
        if (tl > EVS_KEY_MAX_TYPES_TEXT)
            return evs__err(EVS_EINVAL, "grant \"%.80s\": the event type list is over %u bytes", text,
                            EVS_KEY_MAX_TYPES_TEXT);
        memcpy(g->types, t, tl + 1);
    }
    return EVS_OK;
}

/* The preset grants of a role; -1 for an unknown role. */
static int role_grant(const char *role, evs__grant *g) {
    memset(g, 0, sizeof *g);
    g->all = 1;
    if (strcmp(role, "admin") == 0) g->perms = EVS_PERM_ADMIN;
    else if (strcmp(role, "writer") == 0) g->perms = EVS_PERM_READ | EVS_PERM_APPEND | EVS_PERM_SUBSCRIBE;
    else if (strcmp(role, "reader") == 0) g->perms = EVS_PERM_READ | EVS_PERM_SUBSCRIBE;
    else if (strcmp(role, "none") == 0) g->perms = 0;
    else return -1;
    return 0;
}

/* A principal from id, name, role and grant texts; EVS_EINVAL naming a bad one. Ownership: *out, refs 1. */
static int principal_make(const char *id, const char *name, const char *role, const char *const *grants, size_t n,
                          evs__principal **out) {
    *out = NULL;
    evs__grant preset;
    if (role_grant(role, &preset))
        return evs__err(EVS_EINVAL, "unknown role \"%.40s\" (admin, writer, reader, none)", role);
    if (n > EVS_KEY_MAX_GRANTS) return evs__err(EVS_EINVAL, "%zu grants, at most %u", n, EVS_KEY_MAX_GRANTS);
    evs__principal *p = calloc(1, sizeof *p + (n + 1) * sizeof(evs__grant));
    if (!p) return evs__err(EVS_ENOMEM, "out of memory");
    atomic_init(&p->refs, 1);
    snprintf(p->id, sizeof p->id, "%s", id);
    snprintf(p->name, sizeof p->name, "%s", name ? name : "");
    snprintf(p->role, sizeof p->role, "%s", role);
    if (preset.perms) p->grants[p->ngrants++] = preset;
    for (size_t i = 0; i < n; i++) {
        int rc = evs__grant_parse(grants[i], &p->grants[p->ngrants]);
        if (rc) {
            free(p);
            return rc;
        }
        p->ngrants++;
    }
    *out = p;
    return EVS_OK;
}

/* ------------------------------------------------------------- the table */

static void table_free(key_table *t) {
    for (size_t i = 0; i < t->n; i++) {
        evs__principal_unref(t->e[i].who);
        json_decref(t->e[i].rec);
    }
    free(t->e);
    t->e = NULL;
    t->n = 0;
}

static int is_hex(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return s[n] == '\0';
}

/* One record of keys.json into e (rec taken with a new reference); EVS_EFORMAT naming the fault. */
static int entry_from(const char *path, size_t idx, json_t *rec, key_entry *e) {
    memset(e, 0, sizeof *e);
    const char *id = json_string_value(json_object_get(rec, "id"));
    const char *role = json_string_value(json_object_get(rec, "role"));
    const char *hash = json_string_value(json_object_get(rec, "hash"));
    json_t *name = json_object_get(rec, "name"), *grants = json_object_get(rec, "grants");
    json_t *rev = json_object_get(rec, "revoked_at");
    if (!json_is_object(rec)) return evs__err(EVS_EFORMAT, "%s: keys[%zu] is not an object", path, idx);
    if (!id || strlen(id) != EVS_KEY_ID_LEN || !is_hex(id, EVS_KEY_ID_LEN))
        return evs__err(EVS_EFORMAT, "%s: keys[%zu].id must be %d lower-case hex digits", path, idx, EVS_KEY_ID_LEN);
    if (!role) return evs__err(EVS_EFORMAT, "%s: key %s has no role", path, id);
    if (!hash || strlen(hash) != 2 * crypto_generichash_BYTES || !is_hex(hash, 2 * crypto_generichash_BYTES))
        return evs__err(EVS_EFORMAT, "%s: key %s: hash must be %d hex digits", path, id, 2 * crypto_generichash_BYTES);
    if (name && !json_is_string(name) && !json_is_null(name))
        return evs__err(EVS_EFORMAT, "%s: key %s: name must be a string", path, id);
    if (!json_is_array(grants)) return evs__err(EVS_EFORMAT, "%s: key %s: grants must be an array", path, id);
    if (rev && !json_is_string(rev) && !json_is_null(rev))
        return evs__err(EVS_EFORMAT, "%s: key %s: revoked_at must be a time or null", path, id);
    size_t ng = json_array_size(grants);
    if (ng > EVS_KEY_MAX_GRANTS) return evs__err(EVS_EFORMAT, "%s: key %s: over %u grants", path, id, EVS_KEY_MAX_GRANTS);
    const char *gt[EVS_KEY_MAX_GRANTS];
    for (size_t i = 0; i < ng; i++)
        if (!(gt[i] = json_string_value(json_array_get(grants, i))))
            return evs__err(EVS_EFORMAT, "%s: key %s: grants[%zu] is not a string", path, id, i);
    int rc = principal_make(id, json_string_value(name), role, gt, ng, &e->who);
    if (rc) return evs__err_prefix(EVS_EFORMAT, "%s: key %s: ", path, id);
    snprintf(e->id, sizeof e->id, "%s", id);
    sodium_hex2bin(e->hash, sizeof e->hash, hash, strlen(hash), NULL, NULL, NULL);
    e->revoked = rev && json_is_string(rev);
    e->rec = json_incref(rec);
    return EVS_OK;
}

static void path_of(const evs__keystore *ks, const char *file, char *out, size_t cap) {
    snprintf(out, cap, "%s/%s", ks->dir, file);
}

/* Where the keys are, for messages: the directory, or the database. */
static const char *where_of(const evs__keystore *ks) { return ks->kv ? "the database" : ks->dir; }

/* Parse a keys document (what keys.json holds; name says where it came from) into t. */
static int table_parse(const char *name, const char *text, size_t len, key_table *t) {
    memset(t, 0, sizeof *t);
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) return evs__err(EVS_EJSON, "%s: line %d, column %d: %s", name, je.line, je.column, je.text);
    int rc = EVS_OK;
    json_t *keys = json_object_get(root, "keys");
    json_t *fmt = json_object_get(root, "format");
    if (!json_is_object(root) || !json_is_integer(fmt) || !json_is_array(keys)) {
        rc = evs__err(EVS_EFORMAT, "%s: expected {\"format\": 1, \"keys\": [...]}", name);
        goto out;
    }
    if (json_integer_value(fmt) != 1) {
        rc = evs__err(EVS_EFORMAT, "%s: format %lld is not one this version reads (1)", name,
                      (long long)json_integer_value(fmt));
        goto out;
    }
    size_t n = json_array_size(keys);
    if (n > MAX_KEYS) {
        rc = evs__err(EVS_EFORMAT, "%s: %zu keys, at most %d", name, n, MAX_KEYS);
        goto out;
    }
    if (n && !(t->e = calloc(n, sizeof *t->e))) {
        rc = evs__err(EVS_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if ((rc = entry_from(name, i, json_array_get(keys, i), &t->e[i]))) goto out;
        t->n++;
        for (size_t j = 0; j + 1 < t->n; j++)
            if (strcmp(t->e[j].id, t->e[i].id) == 0) {
                rc = evs__err(EVS_EFORMAT, "%s: key id %s is listed twice", name, t->e[i].id);
                goto out;
            }
    }
out:
    json_decref(root);
    if (rc) table_free(t);
    return rc;
}

/* The document of t, as keys.json holds it.  Ownership: the caller's (free); NULL when out of memory (message set). */
static char *table_dump(const key_table *t) {
    json_t *root = json_pack("{s:i,s:[]}", "format", 1, "keys");
    json_t *arr = json_object_get(root, "keys");
    for (size_t i = 0; arr && i < t->n; i++) json_array_append(arr, t->e[i].rec);
    char *text = root ? json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(root);
    if (!text) evs__err(EVS_ENOMEM, "out of memory");
    return text;
}

/* -------------------------------------------------------------- files */

/* Read keys.json into t (empty when there is no file); st gets its stat (st_ino 0: none). */
static int file_read(const evs__keystore *ks, key_table *t, struct stat *st) {
    char path[4200];
    path_of(ks, KEYS_FILE, path, sizeof path);
    memset(t, 0, sizeof *t);
    memset(st, 0, sizeof *st);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return EVS_OK;
        return evs__err_errno(-errno, "opening %s", path);
    }
    int rc = EVS_OK;
    char *text = NULL;
    size_t len = 0;
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode) || (size_t)st->st_size > MAX_KEYS_FILE) {
        rc = evs__err(EVS_EFORMAT, "%s: not a regular file of at most %zu bytes", path, MAX_KEYS_FILE);
        goto out;
    }
    if (!(text = malloc((size_t)st->st_size + 1))) {
        rc = evs__err(EVS_ENOMEM, "out of memory");
        goto out;
    }
    while (len < (size_t)st->st_size) {
        ssize_t r = read(fd, text + len, (size_t)st->st_size - len);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            rc = evs__err_errno(-errno, "reading %s", path);
            goto out;
        }
        if (r == 0) break;
        len += (size_t)r;
    }
    rc = table_parse(path, text, len, t);
out:
    free(text);
    close(fd);
    return rc;
}

/* Write the records of t as keys.json, whole (tmp, fsync, rename, fsync of the directory). */
static int file_write(const evs__keystore *ks, const key_table *t) {
    char path[4200], tmp[4220];
    path_of(ks, KEYS_FILE, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    char *text = table_dump(t);
    if (!text) return EVS_ENOMEM;
    int rc = EVS_OK;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = evs__err_errno(-errno, "creating %s", tmp);
        goto out;
    }
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
            rc = evs__err_errno(-errno, "writing %s", tmp);
            break;
        }
        off += (size_t)w;
    }
    if (!rc && (write(fd, "\n", 1) != 1 || fsync(fd) != 0)) rc = evs__err_errno(-errno, "syncing %s", tmp);
    if (close(fd) != 0 && !rc) rc = evs__err_errno(-errno, "closing %s", tmp);
    if (!rc && rename(tmp, path) != 0) rc = evs__err_errno(-errno, "renaming %s", tmp);
    if (rc) {
        unlink(tmp);
        goto out;
    }
    int dfd = open(ks->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        if (fsync(dfd) != 0) rc = evs__err_errno(-errno, "syncing %s", ks->dir);
        close(dfd);
    }
out:
    free(text);
    return rc;
}

static void remember_stat(evs__keystore *ks, const struct stat *st) {
    ks->have_file = st->st_ino != 0;
    ks->dev = st->st_dev;
    ks->ino = st->st_ino;
    ks->size = st->st_size;
    ks->mtime = st->st_mtim;
}

/* keys.json differs from what was read (or appeared, or went away). */
static int changed_on_disk(const evs__keystore *ks) {
    char path[4200];
    path_of(ks, KEYS_FILE, path, sizeof path);
    struct stat st;
    if (stat(path, &st) != 0) return ks->have_file;
    return !ks->have_file || st.st_ino != ks->ino || st.st_dev != ks->dev || st.st_size != ks->size ||
           st.st_mtim.tv_sec != ks->mtime.tv_sec || st.st_mtim.tv_nsec != ks->mtime.tv_nsec;
}

static int secret_load(evs__keystore *ks, int create) {
    char path[4200];
    path_of(ks, SECRET_FILE, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno == ENOENT && create) {
        unsigned char s[crypto_generichash_KEYBYTES];
        randombytes_buf(s, sizeof s);
        char tmp[4220];
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        int w = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (w < 0) return evs__err_errno(-errno, "creating %s", tmp);
        int ok = write(w, s, sizeof s) == (ssize_t)sizeof s && fsync(w) == 0;
        ok &= close(w) == 0;
        /* link, not rename: two processes creating it at once keep the first one's */
        if (!ok || (link(tmp, path) != 0 && errno != EEXIST)) {
            int e = errno;
            unlink(tmp);
            sodium_memzero(s, sizeof s);
            return evs__err_errno(-e, "writing %s", path);
        }
        unlink(tmp);
        sodium_memzero(s, sizeof s);
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    }
    if (fd < 0) {
        if (errno == ENOENT) return evs__err(EVS_ENOTFOUND, "%s does not exist: no keys were created in %s", path, ks->dir);
        return evs__err_errno(-errno, "opening %s", path);
    }
    struct stat st;
    int rc = EVS_OK;
    if (fstat(fd, &st) != 0) {
        rc = evs__err_errno(-errno, "reading %s", path);
    } else if (!S_ISREG(st.st_mode)) {
        rc = evs__err(EVS_EFORMAT, "%s is not a regular file", path);
    } else if (st.st_mode & 077) {
        rc = evs__err(EVS_EFORMAT, "%s is readable by others (mode %03o): run chmod 600 %s", path,
                      (unsigned)(st.st_mode & 0777), path);
    } else if (st.st_size != (off_t)sizeof ks->secret) {
        rc = evs__err(EVS_EFORMAT, "%s is %lld bytes, a server secret is %zu", path, (long long)st.st_size,
                      sizeof ks->secret);
    } else if (read(fd, ks->secret, sizeof ks->secret) != (ssize_t)sizeof ks->secret) {
        rc = evs__err_errno(-EIO, "reading %s", path);
    }
    close(fd);
    return rc;
}

/* Hold DIR/keys.lock for a change; the fd, or an error code (< 0). */
static int lock_file(const evs__keystore *ks) {
    char path[4200];
    path_of(ks, LOCK_FILE, path, sizeof path);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return evs__err_errno(-errno, "opening %s", path);
    while (flock(fd, LOCK_EX) != 0)
        if (errno != EINTR) {
            int e = errno;
            close(fd);
            return evs__err_errno(-e, "locking %s", path);
        }
    return fd;
}

/* ------------------------------------------------------------ database */

/* kv's own results (positive) as an evs error; evs codes pass through. */
static int kv_rc(int rc, const char *what) {
    if (rc <= 0) return rc;
    return evs__err(EVS_EIO, "API keys: %s: unexpected result %d", what, rc);
}

/* The stored document and generation, read in txn (one snapshot): t empty when no key was made yet. */
static int db_read(evs__kv_txn *txn, key_table *t, uint64_t *gen) {
    memset(t, 0, sizeof *t);
    int rc = kv_rc(evs__kv_gen_get(txn, KT_META, KV_GEN, gen), "reading the generation");
    if (rc) return rc;
    evs__kv_val k = {sizeof KV_DOC - 1, KV_DOC}, v;
    rc = evs__kv_get(txn, KT_KEYS, &k, &v);
    if (rc == EVS__KV_NOTFOUND) return EVS_OK;
    if ((rc = kv_rc(rc, "reading the keys"))) return rc;
    if (v.size > MAX_KEYS_FILE)
        return evs__err(EVS_EFORMAT, "%s: %zu bytes, at most %zu", DB_DOC_NAME, v.size, MAX_KEYS_FILE);
    return table_parse(DB_DOC_NAME, v.data, v.size, t);
}

/* The database's server secret into ks; made in txn (a write transaction) when there is none and create is set. */
static int db_secret(evs__keystore *ks, evs__kv_txn *txn, int create) {
    evs__kv_val k = {sizeof KV_SECRET - 1, KV_SECRET}, v;
    int rc = evs__kv_get(txn, KT_META, &k, &v);
    if (rc == EVS__KV_NOTFOUND && create) {
        randombytes_buf(ks->secret, sizeof ks->secret);
        evs__kv_val nv = {sizeof ks->secret, ks->secret};
        return kv_rc(evs__kv_put(txn, KT_META, &k, &nv, EVS__KV_NOOVERWRITE), "writing the server secret");
    }
    if (rc == EVS__KV_NOTFOUND)
        return evs__err(EVS_ENOTFOUND, "no keys were created in the database (it has no server secret, "
                                       "evs_bus_kv db 41)");
    if ((rc = kv_rc(rc, "reading the server secret"))) return rc;
    if (v.size != sizeof ks->secret)
        return evs__err(EVS_EFORMAT, "the server secret in the database (evs_bus_kv db 41) is %zu bytes, a server "
                                     "secret is %zu", v.size, sizeof ks->secret);
    memcpy(ks->secret, v.data, v.size);
    return EVS_OK;
}

/* ------------------------------------------------------------ lifecycle */

static int keystore_new(const char *dir, evs__keystore **out) {
    *out = NULL;
    if (sodium_init() < 0) return evs__err(EVS_EIO, "libsodium could not be initialised");
    evs__keystore *ks = calloc(1, sizeof *ks);
    if (!ks || (dir && !(ks->dir = strdup(dir)))) {
        free(ks);
        return evs__err(EVS_ENOMEM, "out of memory");
    }
    /* writers first: glibc's default lets a steady stream of verifying threads hold the read lock
       forever, and a reload (a revocation) would wait behind them */
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&ks->lock, &ra);
    pthread_rwlockattr_destroy(&ra);
    pthread_mutex_init(&ks->sync_mu, NULL);
    *out = ks;
    return EVS_OK;
}

int evs__keys_open(const char *where, int create, evs__keystore **out) {
    *out = NULL;
    int rc;
    if (evs__engine_for(where)) {
        /* a database named by its URL (the CLI): a store of the keystore's own on it; read-only unless
           creating, so that listing or revoking in a database that has no store creates nothing */
        evs_store *s = NULL;
        rc = evs_store_create(&s);
        if (!rc) rc = evs_store_open(s, where, create ? EVS_OPEN_CREATE : EVS_OPEN_READONLY);
        if (!rc) rc = evs__keys_open_store(s, create, out);
        if (rc) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", evs_errmsg());
            evs_store_close(s);
            return evs__err(rc, "%s", msg);
        }
        (*out)->own = s;
        return EVS_OK;
    }
    evs__keystore *ks;
    if ((rc = keystore_new(where, &ks))) return rc;
    rc = secret_load(ks, create);
    struct stat st;
    if (!rc) rc = file_read(ks, &ks->t, &st);
    if (rc) {
        evs__keys_close(ks);
        return rc;
    }
    remember_stat(ks, &st);
    *out = ks;
    return EVS_OK;
}

int evs__keys_open_store(evs_store *s, int create, evs__keystore **out) {
    *out = NULL;
    void *pg = evs__store_pg_engine(s);
    if (!pg) {
        const char *dir = evs__store_dir(s), *eng = evs__store_engine_name(s);
        if (dir) return evs__keys_open(dir, create, out);
        if (eng) return evs__err(EVS_ENOTSUP, "API keys are not supported by the %s storage engine", eng);
        return evs__err(EVS_ECLOSED, "API keys: the store is not open");
    }
    evs__keystore *ks;
    evs__kv_txn *txn = NULL;
    int rc = keystore_new(NULL, &ks);
    if (rc) return rc;
    int64_t start = evs__mono_ns();
    if ((rc = evs__kv_open_pg_as(&keys_layout, pg, &ks->kv))) goto fail;
    if ((rc = evs__kv_begin(ks->kv, NULL, create ? 0 : EVS__KV_RDONLY, &txn))) goto fail;
    if ((rc = db_secret(ks, txn, create)) || (rc = db_read(txn, &ks->t, &ks->gen))) goto fail;
    if (create) {
        rc = evs__kv_commit(txn);
        txn = NULL;
        if (rc) goto fail;
    }
    evs__kv_abort(txn);
    atomic_store(&ks->checked_ns, start);
    *out = ks;
    return EVS_OK;
fail:
    evs__kv_abort(txn);
    evs__keys_close(ks);
    return rc;
}

void evs__keys_close(evs__keystore *ks) {
    if (!ks) return;
    table_free(&ks->t);
    sodium_memzero(ks->secret, sizeof ks->secret);
    evs__kv_close(ks->kv);
    pthread_mutex_destroy(&ks->sync_mu);
    pthread_rwlock_destroy(&ks->lock);
    if (ks->own) evs_store_close(ks->own);
    free(ks->dir);
    free(ks);
}

/* ------------------------------------------------------------- changes */

/* Under the write lock: re-read what is stored into ks->t (from txn on a database). */
static int reload_locked(evs__keystore *ks, evs__kv_txn *txn) {
    key_table t;
    struct stat st;
    uint64_t gen = 0;
    int rc = ks->kv ? db_read(txn, &t, &gen) : file_read(ks, &t, &st);
    if (rc) return rc;
    table_free(&ks->t);
    ks->t = t;
    if (ks->kv) ks->gen = gen;
    else remember_stat(ks, &st);
    return EVS_OK;
}

/* A change under way: what excludes the other writers (the lock file, or the kv write transaction). */
typedef struct change {
    int lfd;
    evs__kv_txn *txn;
} change;

static void change_end(evs__keystore *ks, change *c) {
    pthread_rwlock_unlock(&ks->lock);
    if (ks->kv) {
        evs__kv_abort(c->txn);
        pthread_mutex_unlock(&ks->sync_mu);
    } else {
        close(c->lfd);
    }
}

/*
 * Begin a change: exclude the other writers of every process (keys.lock;
 * on a database the kv write transaction), then take the write lock and
 * re-read the keys, so a change starts from what is stored, never from a
 * stale copy.  On success the caller changes ks->t, calls change_write,
 * and change_end whatever happened; on failure nothing is held.
 */
static int change_begin(evs__keystore *ks, change *c) {
    memset(c, 0, sizeof *c);
    int rc;
    if (ks->kv) {
        pthread_mutex_lock(&ks->sync_mu);
        if ((rc = evs__kv_begin(ks->kv, NULL, 0, &c->txn))) {
            pthread_mutex_unlock(&ks->sync_mu);
            return rc;
        }
    } else if ((c->lfd = lock_file(ks)) < 0) {
        return c->lfd;
    }
    pthread_rwlock_wrlock(&ks->lock);
    if ((rc = reload_locked(ks, c->txn))) change_end(ks, c);
    return rc;
}

/* Store ks->t whole: the file, or the document and the next generation, committed. */
static int change_write(evs__keystore *ks, change *c) {
    if (!ks->kv) {
        int rc = file_write(ks, &ks->t);
        struct stat st;
        char path[4200];
        path_of(ks, KEYS_FILE, path, sizeof path);
        if (!rc && stat(path, &st) == 0) remember_stat(ks, &st);
        return rc;
    }
    char *text = table_dump(&ks->t);
    if (!text) return EVS_ENOMEM;
    evs__kv_val k = {sizeof KV_DOC - 1, KV_DOC}, v = {strlen(text), text};
    int rc = kv_rc(evs__kv_put(c->txn, KT_KEYS, &k, &v, 0), "writing the keys");
    free(text);
    if (!rc) rc = kv_rc(evs__kv_gen_put(c->txn, KT_META, KV_GEN, ks->gen + 1), "writing the generation");
    if (rc) return rc;
    evs__kv_txn *txn = c->txn;
    c->txn = NULL; /* commit ends it whatever it returns */
    if ((rc = evs__kv_commit(txn))) return rc;
    ks->gen++;
    return EVS_OK;
}

static void utc_now(char *buf, size_t cap) {
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The record as listed: everything but the hash. */
static json_t *public_rec(const json_t *rec) {
    json_t *c = json_deep_copy(rec);
    if (c) json_object_del(c, "hash");
    return c;
}

int evs__keys_create(evs__keystore *ks, const char *role, const char *const *grants, size_t n, const char *name,
                     char *key, size_t cap, json_t **info) {
    if (info) *info = NULL;
    if (cap < EVS_KEY_TEXT_MAX) return evs__err(EVS_EINVAL, "key buffer too small");
    if (name && strlen(name) > EVS_KEY_MAX_NAME)
        return evs__err(EVS_EINVAL, "key name is %zu bytes, at most %d", strlen(name), EVS_KEY_MAX_NAME);
    /* checked before anything is written: a bad grant creates nothing */
    evs__principal *who = NULL;
    int rc = principal_make("", name, role, grants, n, &who);
    if (rc) return rc;
    if (!who->ngrants) {
        evs__principal_unref(who);
        return evs__err(EVS_EINVAL, "role none with no --grant: the key could do nothing");
    }
    unsigned char idb[EVS_KEY_ID_LEN / 2], sec[EVS_KEY_SECRET_BYTES], h[crypto_generichash_BYTES];
    char id[EVS_KEY_ID_LEN + 1], sec64[64], hhex[2 * crypto_generichash_BYTES + 1], now[32];
    change c;
    if ((rc = change_begin(ks, &c))) {
        evs__principal_unref(who);
        return rc;
    }
    if (ks->t.n >= MAX_KEYS) {
        rc = evs__err(EVS_ELIMIT, "%s already holds %d keys", where_of(ks), MAX_KEYS);
        goto out;
    }
    for (int tries = 0;; tries++) { /* ids are random: a repeat is astronomically rare, but checked */
        randombytes_buf(idb, sizeof idb);
        sodium_bin2hex(id, sizeof id, idb, sizeof idb);
        size_t i = 0;
        while (i < ks->t.n && strcmp(ks->t.e[i].id, id) != 0) i++;
        if (i == ks->t.n) break;
        if (tries > 8) {
            rc = evs__err(EVS_EIO, "no free key id");
            goto out;
        }
    }
    randombytes_buf(sec, sizeof sec);
    sodium_bin2base64(sec64, sizeof sec64, sec, sizeof sec, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    crypto_generichash(h, sizeof h, sec, sizeof sec, ks->secret, sizeof ks->secret);
    sodium_bin2hex(hhex, sizeof hhex, h, sizeof h);
    utc_now(now, sizeof now);
    json_t *ga = json_array();
    for (size_t i = 0; ga && i < n; i++) json_array_append_new(ga, json_string(grants[i]));
    json_t *rec = ga ? json_pack("{s:s,s:s?,s:s,s:o,s:s,s:s,s:n}", "id", id, "name", name && *name ? name : NULL,
                                 "role", role, "grants", ga, "hash", hhex, "created_at", now, "revoked_at")
                     : NULL;
    key_entry *ne = rec ? realloc(ks->t.e, (ks->t.n + 1) * sizeof *ks->t.e) : NULL;
    if (!ne) {
        json_decref(rec);
        rc = evs__err(EVS_ENOMEM, "out of memory");
        goto out;
    }
    ks->t.e = ne;
    key_entry *e = &ks->t.e[ks->t.n];
    if ((rc = entry_from(where_of(ks), ks->t.n, rec, e))) {
        json_decref(rec);
        goto out;
    }
    json_decref(rec); /* e holds it */
    ks->t.n++;
    if ((rc = change_write(ks, &c))) {
        ks->t.n--;
        evs__principal_unref(e->who);
        json_decref(e->rec);
        goto out;
    }
    snprintf(key, cap, "evs_%s_%s", id, sec64);
    if (info) *info = public_rec(e->rec);
out:
    change_end(ks, &c);
    evs__principal_unref(who);
    sodium_memzero(sec, sizeof sec);
    sodium_memzero(sec64, sizeof sec64);
    return rc;
}

int evs__keys_revoke(evs__keystore *ks, const char *id) {
    change c;
    int rc = change_begin(ks, &c);
    if (rc) return rc;
    size_t i = 0;
    while (i < ks->t.n && strcmp(ks->t.e[i].id, id) != 0) i++;
    if (i == ks->t.n) {
        rc = evs__err(EVS_ENOTFOUND, "no key %.40s in %s", id, where_of(ks));
        goto out;
    }
    if (ks->t.e[i].revoked) goto out;
    char now[32];
    utc_now(now, sizeof now);
    if (json_object_set_new(ks->t.e[i].rec, "revoked_at", json_string(now))) {
        rc = evs__err(EVS_ENOMEM, "out of memory");
        goto out;
    }
    ks->t.e[i].revoked = 1;
    if ((rc = change_write(ks, &c))) {
        ks->t.e[i].revoked = 0;
        json_object_set_new(ks->t.e[i].rec, "revoked_at", json_null());
    }
out:
    change_end(ks, &c);
    return rc;
}

/* ------------------------------------------------------------ reading */

static void warn_kept(evs__keystore *ks, int failed) {
    if (failed && !ks->reload_warned) fprintf(stderr, "evstore: keeping the keys read before: %s\n", evs_errmsg());
    if (failed) evs__err_clear();
    ks->reload_warned = failed;
}

/*
 * A database: compare the stored generation unless a comparison that
 * started at most max_age_ns before this call succeeded (0: one that
 * started after it), and reload when it moved.  Threads that find it stale
 * wait for one comparison, so what a verify answers from was stored at
 * most max_age_ns before it began.  A failure keeps the keys in memory
 * (said once) and is tried again by the next call.
 */
static void db_refresh(evs__keystore *ks, int64_t max_age_ns) {
    int64_t called = evs__mono_ns();
    if (max_age_ns && called - atomic_load(&ks->checked_ns) < max_age_ns) return;
    pthread_mutex_lock(&ks->sync_mu);
    if (atomic_load(&ks->checked_ns) >= called - max_age_ns) { /* another thread compared while this one waited */
        pthread_mutex_unlock(&ks->sync_mu);
        return;
    }
    int64_t start = evs__mono_ns();
    evs__kv_txn *txn;
    key_table t;
    uint64_t gen = 0;
    int loaded = 0;
    int rc = evs__kv_begin(ks->kv, NULL, EVS__KV_RDONLY, &txn);
    if (!rc) {
        rc = kv_rc(evs__kv_gen_get(txn, KT_META, KV_GEN, &gen), "reading the generation");
        if (!rc && gen != ks->gen) loaded = !(rc = db_read(txn, &t, &gen));
        evs__kv_abort(txn);
    }
    if (loaded) {
        pthread_rwlock_wrlock(&ks->lock);
        table_free(&ks->t);
        ks->t = t;
        ks->gen = gen;
        pthread_rwlock_unlock(&ks->lock);
    }
    if (!rc) atomic_store(&ks->checked_ns, start);
    warn_kept(ks, rc != EVS_OK);
    pthread_mutex_unlock(&ks->sync_mu);
}

/* Bring the keys up to date: files when keys.json changed on disk; a database as db_refresh says. */
static void refresh(evs__keystore *ks, int64_t max_age_ns) {
    if (ks->kv) {
        db_refresh(ks, max_age_ns);
        return;
    }
    pthread_rwlock_rdlock(&ks->lock);
    int stale = changed_on_disk(ks);
    pthread_rwlock_unlock(&ks->lock);
    if (!stale) return;
    pthread_rwlock_wrlock(&ks->lock);
    if (changed_on_disk(ks)) warn_kept(ks, reload_locked(ks, NULL) != EVS_OK);
    pthread_rwlock_unlock(&ks->lock);
}

json_t *evs__keys_list(evs__keystore *ks) {
    refresh(ks, 0);
    pthread_rwlock_rdlock(&ks->lock);
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < ks->t.n; i++) json_array_append_new(arr, public_rec(ks->t.e[i].rec));
    pthread_rwlock_unlock(&ks->lock);
    return arr ? json_pack("{s:o}", "keys", arr) : NULL;
}

size_t evs__keys_active(evs__keystore *ks) {
    refresh(ks, 0);
    pthread_rwlock_rdlock(&ks->lock);
    size_t n = 0;
    for (size_t i = 0; i < ks->t.n; i++) n += !ks->t.e[i].revoked;
    pthread_rwlock_unlock(&ks->lock);
    return n;
}

int evs__keys_verify(evs__keystore *ks, const char *presented, evs__principal **who) {
    *who = NULL;
    /* evs_<12 hex>_<43 base64url> */
    size_t len = strnlen(presented, EVS_KEY_TEXT_MAX);
    if (len != 4 + EVS_KEY_ID_LEN + 1 + 43 || memcmp(presented, "evs_", 4) != 0 ||
        presented[4 + EVS_KEY_ID_LEN] != '_')
        return EVS_AUTH_MALFORMED;
    char id[EVS_KEY_ID_LEN + 1];
    memcpy(id, presented + 4, EVS_KEY_ID_LEN);
    id[EVS_KEY_ID_LEN] = '\0';
    if (!is_hex(id, EVS_KEY_ID_LEN)) return EVS_AUTH_MALFORMED;
    unsigned char sec[EVS_KEY_SECRET_BYTES + 4];
    size_t slen = 0;
    if (sodium_base642bin(sec, sizeof sec, presented + 4 + EVS_KEY_ID_LEN + 1, 43, NULL, &slen, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        slen != EVS_KEY_SECRET_BYTES)
        return EVS_AUTH_MALFORMED;
    refresh(ks, EVS__KEYS_RECHECK_NS);
    unsigned char h[crypto_generichash_BYTES];
    static const unsigned char dummy[crypto_generichash_BYTES];
    pthread_rwlock_rdlock(&ks->lock);
    crypto_generichash(h, sizeof h, sec, EVS_KEY_SECRET_BYTES, ks->secret, sizeof ks->secret);
    const key_entry *e = NULL;
    for (size_t i = 0; i < ks->t.n && !e; i++)
        if (strcmp(ks->t.e[i].id, id) == 0) e = &ks->t.e[i];
    /* the same compare whether or not the id is known: the time says nothing about the secret */
    int same = crypto_verify_32(h, e ? e->hash : dummy) == 0;
    int rc = !e || !same ? EVS_AUTH_UNKNOWN : e->revoked ? EVS_AUTH_REVOKED : EVS_AUTH_OK;
    if (rc == EVS_AUTH_OK) *who = evs__principal_ref(e->who);
    pthread_rwlock_unlock(&ks->lock);
    sodium_memzero(sec, sizeof sec);
    sodium_memzero(h, sizeof h);
    return rc;
}
