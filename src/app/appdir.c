/*
 * appdir.c — where an application's definitions come from, and the
 * registry shown as JSON (evstore_app.h, "app directories").
 *
 *   evs_app_load_dir      DIR/NAME.lua aggregates and DIR/queries.json
 *   evs_app_put_lua_aggregate, evs_app_load_stored
 *                         aggregate scripts kept in the store
 *   evs_app_describe      aggregates, handlers and queries as JSON
 *
 * Kept scripts live in one file, DIR/app/aggregates.json:
 *
 *     {"format": 1, "aggregates": {"order": {"source": "...", "updated_at": NS}}}
 *
 * It is user configuration, not derived data, so unlike the rest of
 * DIR/app/ (an LMDB environment written without sync: snapshots and
 * results can be rebuilt or forgotten) it is written durably: the whole
 * file to a temporary name, fsync, rename over the old one, fsync of the
 * directory.  A put writes the file before the new script becomes
 * visible, so an acknowledged put survives a crash, and a put that could
 * not be written changes nothing.  Puts are serialised by put_mu; scripts
 * are few and at most 1 MiB each, so rewriting the file is cheap next to
 * the fsyncs.
 *
 * On PostgreSQL there is no directory: each kept script is a row of the
 * app's "aggregates" table (evs_bus_kv db 23, key the type, value the same
 * {"source", "updated_at"} object), written in a committed transaction
 * before it becomes visible, as the file is.  Every server on the database
 * loads the rows at start (evs_app_load_stored); a put through one server
 * reaches another at its next start.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/app_access.h"
#include "app/app_internal.h"
#include "store/store_access.h"

#define STORED_FILE "aggregates.json"
#define STORED_FORMAT 1
#define MAX_QUERIES_FILE ((size_t)1 << 20)

/* ------------------------------------------------------------------ files */

/* (app_access.h) */
int evs__app_slurp(const char *path, size_t max, char **buf, size_t *len) {
    *buf = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT) return evs__err(EVS_ENOTFOUND, "%s: no such file", path);
        return evs__err_errno(-e, "cannot open %s", path);
    }
    struct stat st;
    if (fstat(fd, &st)) {
        int e = errno;
        close(fd);
        return evs__err_errno(-e, "cannot stat %s", path);
    }
    if ((size_t)st.st_size > max) {
        close(fd);
        return evs__err(EVS_ELIMIT, "%s is %lld bytes, at most %zu", path, (long long)st.st_size, max);
    }
    char *b = malloc((size_t)st.st_size + 1);
    if (!b) {
        close(fd);
        return evs__err(EVS_ENOMEM, "out of memory");
    }
    size_t n = 0;
    while (n < (size_t)st.st_size) {
        ssize_t r = read(fd, b + n, (size_t)st.st_size - n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = r < 0 ? errno : EIO;
            free(b);
            close(fd);
            return evs__err_errno(-e, "cannot read %s", path);
        }
        n += (size_t)r;
    }
    close(fd);
    b[n] = 0;
    *buf = b;
    *len = n;
    return EVS_OK;
}

/* Write text to path durably: a temporary file, fsync, rename, fsync of the directory. */
static int write_durably(const char *dir, const char *path, const char *text, size_t len) {
    char tmp[4200];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp)
        return evs__err(EVS_EINVAL, "path too long: %s", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return evs__err_errno(-errno, "cannot create %s", tmp);
    size_t off = 0;
    int rc = EVS_OK;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            rc = evs__err_errno(w < 0 ? -errno : -EIO, "cannot write %s", tmp);
            break;
        }
        off += (size_t)w;
    }
    if (!rc && fsync(fd)) rc = evs__err_errno(-errno, "cannot sync %s", tmp);
    if (close(fd) && !rc) rc = evs__err_errno(-errno, "cannot close %s", tmp);
    if (!rc && rename(tmp, path)) rc = evs__err_errno(-errno, "cannot rename %s to %s", tmp, path);
    if (rc) {
        unlink(tmp);
        return rc;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return evs__err_errno(-errno, "cannot open %s", dir);
    if (fsync(dfd)) rc = evs__err_errno(-errno, "cannot sync %s", dir);
    close(dfd);
    return rc;
}

/* ------------------------------------------------------- app directories */

static int name_cmp(const void *x, const void *y) { return strcmp(*(char *const *)x, *(char *const *)y); }

static int load_queries(evs_app *a, const char *path) {
    char *text = NULL;
    size_t len = 0;
    int rc = evs__app_slurp(path, MAX_QUERIES_FILE, &text, &len);
    if (rc == EVS_ENOTFOUND) return EVS_OK; /* queries are optional */
    if (rc) return rc;
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!root) return evs__err(EVS_EJSON, "%s: line %d, column %d: %s", path, je.line, je.column, je.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return evs__err(EVS_EINVAL, "%s: expected an object of queries by name", path);
    }
    const char *name, *k;
    json_t *q, *v;
    json_object_foreach(root, name, q) {
        const char *fields[EVS_APP_MAX_FIELDS];
        evs_query_def d;
        memset(&d, 0, sizeof d);
        d.name = name;
        if (!json_is_object(q)) {
            rc = evs__err(EVS_EINVAL, "%s: query \"%s\" must be an object", path, name);
            break;
        }
        json_object_foreach(q, k, v) {
            if (strcmp(k, "projection") == 0 && json_is_string(v)) {
                d.projection = json_string_value(v);
            } else if (strcmp(k, "fields") == 0 && json_is_array(v) && json_array_size(v) <= EVS_APP_MAX_FIELDS) {
                size_t i;
                json_t *f;
                json_array_foreach(v, i, f) {
                    if (!json_is_string(f) || !json_string_length(f)) {
                        rc = evs__err(EVS_EINVAL, "%s: query \"%s\": fields[%zu] must be a non-empty string", path, name, i);
                        break;
                    }
                    fields[i] = json_string_value(f);
                }
                d.fields = fields;
                d.n_fields = json_array_size(v);
            } else if ((strcmp(k, "default_limit") == 0 || strcmp(k, "max_limit") == 0) && json_is_integer(v) &&
                       json_integer_value(v) >= 1 && json_integer_value(v) <= 100000) {
                if (k[0] == 'd') d.default_limit = (uint32_t)json_integer_value(v);
                else d.max_limit = (uint32_t)json_integer_value(v);
            } else {
                rc = evs__err(EVS_EINVAL,
                              "%s: query \"%s\": \"%s\" is not one of projection (a name), fields (an array of at "
                              "most %u names), default_limit, max_limit (1..100000)",
                              path, name, k, EVS_APP_MAX_FIELDS);
            }
            if (rc) break;
        }
        if (rc) break;
        if (!d.projection) {
            rc = evs__err(EVS_EINVAL, "%s: query \"%s\" names no projection", path, name);
            break;
        }
        if ((rc = evs_app_register_query(a, &d))) {
            rc = evs__err_prefix(rc, "%s: ", path);
            break;
        }
    }
    json_decref(root);
    return rc;
}

/* (app_access.h) */
int evs__app_list_lua(const char *dir, char ***out, size_t *count) {
    *out = NULL;
    *count = 0;
    DIR *d = opendir(dir);
    if (!d) {
        int e = errno;
        if (e == ENOENT) return evs__err(EVS_ENOTFOUND, "directory %s does not exist", dir);
        return evs__err_errno(-e, "cannot open the directory %s", dir);
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = EVS_OK;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l <= 4 || strcmp(de->d_name + l - 4, ".lua") != 0 || de->d_name[0] == '.') continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            char **nn = realloc(names, nc * sizeof *nn);
            if (!nn) {
                rc = evs__err(EVS_ENOMEM, "out of memory");
                break;
            }
            names = nn;
            cap = nc;
        }
        if (!(names[n] = strdup(de->d_name))) {
            rc = evs__err(EVS_ENOMEM, "out of memory");
            break;
        }
        n++;
    }
    closedir(d);
    if (rc) {
        evs__app_names_free(names, n);
        return rc;
    }
    if (n) qsort(names, n, sizeof *names, name_cmp);
    *out = names;
    *count = n;
    return EVS_OK;
}

void evs__app_names_free(char **names, size_t n) {
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
}

int evs_app_load_dir(evs_app *a, const char *dir) {
    if (!a || !dir) return evs__err(EVS_EINVAL, "app_load_dir: NULL argument");
    char **names;
    size_t n;
    int rc = evs__app_list_lua(dir, &names, &n);
    if (rc == EVS_ENOTFOUND) return evs__err(EVS_ENOTFOUND, "app directory %s does not exist", dir);
    if (rc) return evs__err_prefix(rc, "app directory: ");
    for (size_t i = 0; !rc && i < n; i++) {
        char path[4200], type[EVS_APP_MAX_NAME + 1];
        size_t tl = strlen(names[i]) - 4;
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, names[i]) >= sizeof path) {
            rc = evs__err(EVS_EINVAL, "path too long: %s/%s", dir, names[i]);
            break;
        }
        if (tl > EVS_APP_MAX_NAME) {
            rc = evs__err(EVS_EINVAL, "%s: the aggregate type (the file's name) is %zu bytes, at most %u", path, tl,
                          EVS_APP_MAX_NAME);
            break;
        }
        memcpy(type, names[i], tl);
        type[tl] = 0;
        char *src = NULL;
        size_t len = 0;
        if (!(rc = evs__app_slurp(path, EVS_APP_MAX_SOURCE, &src, &len)))
            rc = evs__app_add_lua(a, type, src, len, EVS__ORIGIN_APP_DIR, path, EVS__LUA_ADD, NULL);
        if (rc && !strstr(evs_errmsg(), path)) evs__err_prefix(rc, "%s: ", path);
        free(src);
    }
    evs__app_names_free(names, n);
    if (rc) return rc;
    char qpath[4200];
    if ((size_t)snprintf(qpath, sizeof qpath, "%s/queries.json", dir) >= sizeof qpath)
        return evs__err(EVS_EINVAL, "path too long: %s", dir);
    return load_queries(a, qpath);
}

/* ----------------------------------------------------------- kept scripts */

static int stored_paths(evs_app *a, char *dir, size_t dcap, char *path, size_t pcap) {
    const char *sd = evs__store_dir(a->store);
    if (!sd) return evs__err(EVS_ECLOSED, "the store is not open");
    if ((size_t)snprintf(dir, dcap, "%s/app", sd) >= dcap ||
        (size_t)snprintf(path, pcap, "%s/app/%s", sd, STORED_FILE) >= pcap)
        return evs__err(EVS_EINVAL, "store path too long");
    return EVS_OK;
}

/* Check one kept script's entry ({"source": "...", ...}); where names the file or table for the message. */
static int stored_entry_ok(const char *where, const char *name, json_t *v) {
    if (json_is_string(json_object_get(v, "source"))) return EVS_OK;
    return evs__err(EVS_ECORRUPT, "%s: aggregate \"%s\" has no source", where, name);
}

/* The kept scripts from a file: *root an object {"format", "aggregates"} (a fresh one when there is no file). */
static int stored_read(const char *path, json_t **root) {
    char *text = NULL;
    size_t len = 0;
    *root = NULL;
    int rc = evs__app_slurp(path, (size_t)256 << 20, &text, &len);
    if (rc == EVS_ENOTFOUND) {
        *root = json_pack("{s:i,s:{}}", "format", STORED_FORMAT, "aggregates");
        return *root ? EVS_OK : evs__err(EVS_ENOMEM, "out of memory");
    }
    if (rc) return rc;
    json_error_t je;
    json_t *r = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    json_t *aggs = r ? json_object_get(r, "aggregates") : NULL;
    if (!r || !json_is_object(r) || json_integer_value(json_object_get(r, "format")) != STORED_FORMAT ||
        !json_is_object(aggs)) {
        json_decref(r);
        return evs__err(EVS_ECORRUPT, "%s is not a file of aggregate scripts (format %d)%s%s", path, STORED_FORMAT,
                        r ? "" : ": ", r ? "" : je.text);
    }
    const char *k;
    json_t *v;
    json_object_foreach(aggs, k, v) {
        if ((rc = stored_entry_ok(path, k, v))) {
            json_decref(r);
            return rc;
        }
    }
    *root = r;
    return EVS_OK;
}

/* The kept scripts from the "aggregates" table (PostgreSQL), as stored_read gives them. */
static int stored_read_kv(evs_app *a, json_t **root) {
    static const char *where = "postgresql: the app's kept aggregate scripts";
    evs__kv_txn *txn;
    evs__kv_cursor *cur = NULL;
    json_t *r = json_pack("{s:i,s:{}}", "format", STORED_FORMAT, "aggregates");
    *root = NULL;
    if (!r) return evs__err(EVS_ENOMEM, "out of memory");
    int rc = evs__kv_begin(a->kv, NULL, EVS__KV_RDONLY, &txn);
    if (rc) {
        json_decref(r);
        return evs__app_kv_err(rc, "begin");
    }
    json_t *aggs = json_object_get(r, "aggregates");
    if ((rc = evs__kv_cursor_open(txn, EVS__AK_STORED, &cur))) goto out;
    evs__kv_val k = {0, NULL}, v;
    for (rc = evs__kv_cursor_get(cur, &k, &v, EVS__KV_FIRST); rc == 0; rc = evs__kv_cursor_get(cur, &k, &v, EVS__KV_NEXT)) {
        char name[EVS_APP_MAX_NAME + 1];
        if (k.size > EVS_APP_MAX_NAME) {
            rc = evs__err(EVS_ECORRUPT, "%s: a type name of %zu bytes", where, k.size);
            break;
        }
        memcpy(name, k.data, k.size);
        name[k.size] = 0;
        json_t *e = json_loadb(v.data, v.size, 0, NULL);
        if (!e || !json_is_object(e)) {
            json_decref(e);
            rc = evs__err(EVS_ECORRUPT, "%s: aggregate \"%s\" is not a JSON object", where, name);
            break;
        }
        if ((rc = stored_entry_ok(where, name, e)) || json_object_set_new(aggs, name, e)) {
            if (!rc) rc = evs__err(EVS_ENOMEM, "out of memory");
            break;
        }
    }
    if (rc == EVS__KV_NOTFOUND) rc = EVS_OK;
out:
    evs__kv_cursor_close(cur);
    evs__kv_abort(txn);
    if (rc) {
        json_decref(r);
        return evs__app_kv_err(rc, "read kept aggregate scripts");
    }
    *root = r;
    return EVS_OK;
}

static int stored_write(const char *dir, const char *path, json_t *root) {
    char *text = json_dumps(root, JSON_INDENT(1) | JSON_SORT_KEYS);
    if (!text) return evs__err(EVS_ENOMEM, "out of memory");
    size_t n = strlen(text);
    int rc = write_durably(dir, path, text, n);
    free(text);
    return rc;
}

/* Make the kept script of name what root says (its entry, or none): the row of name (PostgreSQL). */
static int stored_write_kv(evs_app *a, json_t *root, const char *name) {
    json_t *e = json_object_get(json_object_get(root, "aggregates"), name);
    char *text = e ? json_dumps(e, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (e && !text) return evs__err(EVS_ENOMEM, "out of memory");
    evs__kv_txn *txn = NULL;
    evs__kv_val k = {strlen(name), (void *)name}, v = {text ? strlen(text) : 0, text};
    int rc = evs__kv_begin(a->kv, NULL, 0, &txn);
    if (!rc) rc = e ? evs__kv_put(txn, EVS__AK_STORED, &k, &v, 0) : evs__kv_del(txn, EVS__AK_STORED, &k);
    if (rc == EVS__KV_NOTFOUND) rc = EVS_OK; /* nothing to delete */
    if (!rc) rc = evs__kv_commit(txn);
    else evs__kv_abort(txn);
    free(text);
    return rc ? evs__app_kv_err(rc, "write a kept aggregate script") : EVS_OK;
}

/* The kept scripts (*root as stored_read gives them), wherever the store keeps them. */
static int stored_load(evs_app *a, json_t **root) {
    char dir[4200], path[4300];
    if (a->pg) return stored_read_kv(a, root);
    int rc = stored_paths(a, dir, sizeof dir, path, sizeof path);
    return rc ? rc : stored_read(path, root);
}

/* Keep what root says of name: the whole file rewritten (embedded), or that one row (PostgreSQL). */
static int stored_save(evs_app *a, json_t *root, const char *name) {
    char dir[4200], path[4300];
    if (a->pg) return stored_write_kv(a, root, name);
    int rc = stored_paths(a, dir, sizeof dir, path, sizeof path);
    return rc ? rc : stored_write(dir, path, root);
}

int evs_app_put_lua_aggregate(evs_app *a, const char *name, const char *src, size_t len, int *what) {
    json_t *root = NULL, *before = NULL;
    int rc, w = 0;
    if (what) *what = 0;
    if (!a || !name || !src) return evs__err(EVS_EINVAL, "app_put_lua_aggregate: NULL argument");
    pthread_mutex_lock(&a->put_mu);
    /* checked first: a script that would be refused is never written */
    if ((rc = evs__app_add_lua(a, name, src, len, EVS__ORIGIN_STORED, NULL, EVS__LUA_CHECK, &w))) goto out;
    if (w == EVS_PUT_UNCHANGED) goto out;
    if ((rc = stored_load(a, &root))) goto out;
    json_t *aggs = json_object_get(root, "aggregates");
    json_t *old = json_object_get(aggs, name);
    if (old) before = json_incref(old);
    json_t *entry = json_pack("{s:s%,s:I}", "source", src, len, "updated_at", (json_int_t)evs_now_ns());
    if (!entry || json_object_set_new(aggs, name, entry)) {
        rc = evs__err(EVS_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = stored_save(a, root, name))) goto out;
    if ((rc = evs__app_add_lua(a, name, src, len, EVS__ORIGIN_STORED, NULL, EVS__LUA_PUT, &w))) {
        /* refused after all (a program registered a conflicting type meanwhile): the file as it was */
        int saved = rc;
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", evs_errmsg());
        if (before) json_object_set(aggs, name, before);
        else json_object_del(aggs, name);
        stored_save(a, root, name);
        rc = evs__err(saved, "%s", msg);
    }
out:
    pthread_mutex_unlock(&a->put_mu);
    json_decref(before);
    json_decref(root);
    if (!rc && what) *what = w;
    return rc;
}

int evs_app_load_stored(evs_app *a, char *report, size_t cap) {
    json_t *root = NULL;
    int rc;
    if (report && cap) report[0] = 0;
    if (!a) return evs__err(EVS_EINVAL, "app_load_stored: app is NULL");
    pthread_mutex_lock(&a->put_mu);
    if ((rc = stored_load(a, &root))) goto out;
    const char *name;
    json_t *v;
    json_object_foreach(json_object_get(root, "aggregates"), name, v) {
        json_t *s = json_object_get(v, "source");
        int r = evs__app_add_lua(a, name, json_string_value(s), json_string_length(s), EVS__ORIGIN_STORED, NULL,
                                 EVS__LUA_ADD, NULL);
        if (r && report && cap) {
            size_t used = strlen(report);
            snprintf(report + used, cap - used, "%sthe kept script of aggregate type \"%s\" is not loaded: %s",
                     used ? "\n" : "", name, evs_errmsg());
        }
    }
out:
    pthread_mutex_unlock(&a->put_mu);
    json_decref(root);
    return rc;
}

/* ---------------------------------------------------------------- describe */

static const char *const field_types[] = {"any", "string", "integer", "number", "boolean", "object", "array"};

static int field_cmp(const void *x, const void *y) {
    return strcmp(((const evs_field_spec *)x)->name, ((const evs_field_spec *)y)->name);
}

static json_t *agg_json(evs_app *a, const evs__agg *g, int with_source) {
    static const char *const origins[] = {"library", "app_dir", "stored"};
    char hex[2 * EVS__HASH_BYTES + 1];
    for (int i = 0; i < EVS__HASH_BYTES; i++) snprintf(hex + 2 * i, 3, "%02x", g->code_hash[i]);
    json_t *cmds = json_array();
    for (size_t i = 0; cmds && i < a->n_handlers; i++)
        if (a->handlers[i]->agg == g) json_array_append_new(cmds, json_string(a->handlers[i]->type));
    json_t *o = json_pack("{s:s,s:s,s:s,s:I,s:s,s:o*}", "name", g->name, "kind", g->lua ? "lua" : "c", "origin",
                          origins[g->origin], "schema_version", (json_int_t)g->schema, "code_hash", hex, "commands",
                          cmds);
    if (o && g->file) json_object_set_new(o, "file", json_string(g->file));
    if (o && with_source && g->lua) {
        size_t n;
        const char *src = evs__agg_lua_source(g->lua, &n);
        json_object_set_new(o, "source", json_stringn(src, n));
    }
    return o;
}

static json_t *handler_json(const evs__handler *h) {
    json_t *fields = json_array();
    evs_field_spec *sorted = h->n_fields ? malloc(h->n_fields * sizeof *sorted) : NULL;
    if (sorted) {
        memcpy(sorted, h->fields, h->n_fields * sizeof *sorted);
        qsort(sorted, h->n_fields, sizeof *sorted, field_cmp);
    }
    for (size_t i = 0; fields && sorted && i < h->n_fields; i++)
        json_array_append_new(fields, json_pack("{s:s,s:s,s:b}", "name", sorted[i].name, "type",
                                                field_types[sorted[i].type], "required", sorted[i].required));
    free(sorted);
    json_t *o = json_pack("{s:s,s:s,s:o*}", "command_type", h->type, "handler",
                          h->kind == EVS_HANDLER_APPEND ? "append" : "aggregate", "fields", fields);
    if (o && h->agg) json_object_set_new(o, "aggregate", json_string(h->agg->name));
    return o;
}

int evs_app_describe(evs_app *a, const char *aggregate, char **json, size_t *len) {
    if (!a || !json) return evs__err(EVS_EINVAL, "app_describe: NULL argument");
    *json = NULL;
    json_t *root = NULL;
    int rc = EVS_OK;
    pthread_rwlock_rdlock(&a->reg_lock);
    if (aggregate) {
        evs__agg *g = evs__app_find_agg(a, aggregate);
        if (!g) rc = evs__err(EVS_ENOTFOUND, "aggregate type \"%s\" is not registered", aggregate);
        else root = agg_json(a, g, 1);
    } else {
        json_t *aggs = json_array(), *cmds = json_array(), *qs = json_array();
        for (size_t i = 0; aggs && i < a->n_aggs; i++) json_array_append_new(aggs, agg_json(a, a->aggs[i], 0));
        for (size_t i = 0; cmds && i < a->n_handlers; i++) json_array_append_new(cmds, handler_json(a->handlers[i]));
        for (size_t i = 0; qs && i < a->n_queries; i++) json_array_append_new(qs, evs__query_json(a->queries[i]));
        root = json_pack("{s:o*,s:o*,s:o*}", "aggregates", aggs, "commands", cmds, "queries", qs);
    }
    pthread_rwlock_unlock(&a->reg_lock);
    if (rc) return rc;
    char *s = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    if (!s) return evs__err(EVS_ENOMEM, "out of memory");
    *json = s;
    if (len) *len = strlen(s);
    return EVS_OK;
}
