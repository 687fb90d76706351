/*
 * cli_key.c — `evstore key create|list|revoke`: the API keys of a store
 * (src/auth/keys.h), in DIR or a PostgreSQL store's database directly (-d;
 * running servers see the change from their next request, on PostgreSQL
 * within EVS__KEYS_RECHECK_NS) or through a running server's /keys routes
 * (--url, with an admin key in EVSTORE_API_KEY).
 *
 * create prints the key's record with its text as one JSON line; the text
 * is shown this once and never again (only its hash is stored).
 */
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/keys.h"
#include "cli/cli.h"
#include "cli/cli_http.h"

static const char key_help[] =
    "Usage: evstore key create --role ROLE [--grant PERM:STREAMS[:TYPES]]... [--name N] (-d DIR | --url URL)\n"
    "       evstore key list (-d DIR | --url URL)\n"
    "       evstore key revoke ID (-d DIR | --url URL)\n"
    "\n"
    "API keys for `evstore serve --auth`.  A key is shown once, by create, as\n"
    "evs_<id>_<secret>; only a hash of it is kept (DIR/keys.json; on PostgreSQL in\n"
    "the database, shared by every server on it).  Clients send it as\n"
    "Authorization: Bearer KEY (the evstore command: EVSTORE_API_KEY).\n"
    "\n"
    "Roles: admin (everything), writer (read, append, subscribe on $all), reader\n"
    "(read, subscribe on $all), none (only the grants).  A grant adds a permission:\n"
    "  PERM     read, append, subscribe, admin, or several joined by '+'\n"
    "  STREAMS  $all, a prefix ending in '*' (order-*), or one stream name\n"
    "  TYPES    optional: event types, comma-separated\n"
    "e.g. --role none --grant append:order-* --grant read+subscribe:order-*:OrderPlaced\n"
    "\n"
    "Options:\n"
    "  -d, --dir DIR    the store directory or postgresql:// URL (default:\n"
    "                   $EVSTORE_DIR); running servers on it see the change from\n"
    "                   their next request (on PostgreSQL within 0.2 s)\n"
    "  --url URL        a running server (default: $EVSTORE_URL); needs an admin key\n"
    "                   in EVSTORE_API_KEY when the server has auth on\n"
    "  --role ROLE      admin, writer, reader or none (create)\n"
    "  --grant G        a grant as above, repeatable, at most 16 (create)\n"
    "  --name N         a label shown by list (create)\n"
    "  -h, --help       show this help\n"
    "\n"
    "Exit status: 0 done, 1 usage (or a key refused by the server), 2 no such key,\n"
    "4 a bad role or grant, 5 the keys could not be read or written.\n";

typedef struct key_args {
    const char *act, *id, *role, *name, *dir, *url;
    const char *grants[EVS_KEY_MAX_GRANTS];
    size_t ngrants;
} key_args;

static int print_json(json_t *v) {
    char *t = v ? json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    if (!t) return evs__cli_fail(EVS_CLI_IO, "out of memory");
    puts(t);
    sodium_memzero(t, strlen(t)); /* it may hold the key */
    free(t);
    return EVS_CLI_OK;
}

static int local(const key_args *k) {
    evs__keystore *ks;
    int rc = evs__keys_open(k->dir, strcmp(k->act, "create") == 0, &ks);
    if (rc == EVS_ENOTFOUND && strcmp(k->act, "list") == 0) return EVS_CLI_OK; /* no keys made yet: none to list */
    if (rc) return evs__cli_lib_fail(rc, "keys of %s", k->dir);
    int code = EVS_CLI_OK;
    if (strcmp(k->act, "create") == 0) {
        char key[EVS_KEY_TEXT_MAX];
        json_t *info = NULL;
        if ((rc = evs__keys_create(ks, k->role, k->grants, k->ngrants, k->name, key, sizeof key, &info))) {
            code = evs__cli_lib_fail(rc, "key create");
        } else {
            json_object_set_new(info, "key", json_string(key));
            sodium_memzero(key, sizeof key);
            code = print_json(info);
            json_decref(info);
            fprintf(stderr, "evstore: the key is shown this once: keep it; only its hash is stored\n");
        }
    } else if (strcmp(k->act, "list") == 0) {
        json_t *all = evs__keys_list(ks);
        json_t *e;
        size_t i;
        if (!all) code = evs__cli_fail(EVS_CLI_IO, "out of memory");
        json_array_foreach(json_object_get(all, "keys"), i, e) if ((code = print_json(e))) break;
        json_decref(all);
    } else if ((rc = evs__keys_revoke(ks, k->id))) {
        code = evs__cli_lib_fail(rc, "key revoke");
    }
    evs__keys_close(ks);
    return code;
}

static int remote(const key_args *k) {
    evs__cli_http *h;
    int code = evs__cli_http_open("key", k->url, &h);
    if (code) return code;
    evs__sb p = {0};
    char *body = NULL;
    if (strcmp(k->act, "create") == 0) {
        json_t *g = json_array();
        for (size_t i = 0; g && i < k->ngrants; i++) json_array_append_new(g, json_string(k->grants[i]));
        json_t *req = g ? json_pack("{s:s,s:o,s:s?}", "role", k->role, "grants", g, "name", k->name) : NULL;
        body = req ? json_dumps(req, JSON_COMPACT) : NULL;
        json_decref(req);
        if (!body) {
            code = evs__cli_fail(EVS_CLI_IO, "out of memory");
            goto out;
        }
        evs__sb_adds(&p, "/keys");
    } else if (strcmp(k->act, "list") == 0) {
        evs__sb_adds(&p, "/keys");
    } else {
        evs__sb_adds(&p, "/keys/");
        evs__cli_pct(&p, k->id, strlen(k->id));
        evs__cli_http_set_method(h, "DELETE");
    }
    if (p.oom) {
        code = evs__cli_fail(EVS_CLI_IO, "out of memory");
        goto out;
    }
    if ((code = evs__cli_http_request(h, p.p, body, body ? strlen(body) : 0, NULL))) goto out;
    if (evs__cli_http_status(h) / 100 != 2) {
        code = evs__cli_http_fail(h, p.p);
        goto out;
    }
    evs_json_span root, arr, el;
    if ((code = evs__cli_http_json(h, p.p, &root))) goto out;
    if (strcmp(k->act, "list") == 0) {
        evs_json_iter it;
        if (!evs__cli_json_member(root, "keys", &arr) || arr.type != EVS_JSON_ARRAY) {
            code = evs__cli_fail(EVS_CLI_IO, "%s: unexpected answer from the server (no \"keys\")", p.p);
            goto out;
        }
        evs__json_iter_init(&it, arr);
        while (evs__json_iter_element(&it, &el)) {
            fwrite(el.p, 1, el.n, stdout);
            fputc('\n', stdout);
        }
    } else if (strcmp(k->act, "create") == 0) {
        fwrite(root.p, 1, root.n, stdout);
        fputc('\n', stdout);
        fprintf(stderr, "evstore: the key is shown this once: keep it; only its hash is stored\n");
    }
out:
    free(body);
    evs__sb_free(&p);
    evs__cli_http_close(h);
    return code;
}

int evs__cli_key(int argc, char **argv) {
    key_args k;
    memset(&k, 0, sizeof k);
    evs__cli_args a;
    evs__cli_args_init(&a, "key", argc, argv);
    const char *opt_dir = NULL, *opt_url = NULL;
    int t, code;
    while ((t = evs__cli_args_next(&a)) != EVS_CLI_END) {
        if (t == EVS_CLI_POSITIONAL) {
            if (!k.act) k.act = a.arg;
            else if (!k.id) k.id = a.arg;
            else return evs__cli_usage("key", "unexpected argument \"%s\"", a.arg);
            continue;
        }
        if (evs__cli_is(&a, "--help", "-h")) {
            fputs(key_help, stdout);
            return evs__cli_finish_output(EVS_CLI_OK);
        }
        if (evs__cli_is(&a, "--dir", "-d")) code = evs__cli_value(&a, &opt_dir);
        else if (evs__cli_is(&a, "--url", NULL)) code = evs__cli_value(&a, &opt_url);
        else if (evs__cli_is(&a, "--role", NULL)) code = evs__cli_value(&a, &k.role);
        else if (evs__cli_is(&a, "--name", NULL)) code = evs__cli_value(&a, &k.name);
        else if (evs__cli_is(&a, "--grant", NULL)) {
            if (k.ngrants == EVS_KEY_MAX_GRANTS)
                return evs__cli_usage("key", "at most %d --grant options", EVS_KEY_MAX_GRANTS);
            code = evs__cli_value(&a, &k.grants[k.ngrants++]);
        } else return evs__cli_unknown(&a);
        if (code) return code;
    }
    if (!k.act) return evs__cli_usage("key", "give create, list or revoke");
    int create = strcmp(k.act, "create") == 0, revoke = strcmp(k.act, "revoke") == 0;
    if (!create && !revoke && strcmp(k.act, "list") != 0)
        return evs__cli_usage("key", "unknown action \"%s\" (create, list, revoke)", k.act);
    if (revoke && !k.id) return evs__cli_usage("key", "revoke takes the key's ID (see evstore key list)");
    if (!revoke && k.id) return evs__cli_usage("key", "unexpected argument \"%s\"", k.id);
    if (!create && (k.role || k.name || k.ngrants))
        return evs__cli_usage("key", "--role, --grant and --name are for create");
    if (create && !k.role) {
        if (!k.ngrants) return evs__cli_usage("key", "create needs --role (admin, writer, reader, none) or --grant");
        k.role = "none";
    }
    if ((code = evs__cli_target(&a, opt_dir, opt_url, &k.dir, &k.url))) return code;
    code = k.url ? remote(&k) : local(&k);
    return evs__cli_finish_output(code);
}
