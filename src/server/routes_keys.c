/*
 * routes_keys.c — /keys (routes_keys.h) over the store's keystore
 * (src/auth/keys.c).  The created key's text is written into the answer and
 * wiped from our buffer; nothing else ever sees it (no log, no metrics).
 */
#include <jansson.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "auth/keys.h"
#include "server/query.h"
#include "server/routes_keys.h"

static enum MHD_Result respond_json(evs__req *rq, unsigned status, json_t *v) {
    char *text = v ? json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(v);
    if (!text) return evs__respond_error(rq, EVS_HTTP_UNAVAILABLE, NULL, "out of memory");
    size_t n = strlen(text);
    char *body = realloc(text, n + 2);
    if (!body) {
        free(text);
        return evs__respond_error(rq, EVS_HTTP_UNAVAILABLE, NULL, "out of memory");
    }
    body[n] = '\n';
    body[n + 1] = '\0';
    return evs__respond(rq, status, body, n + 1, NULL);
}

enum MHD_Result evs__route_keys_list(evs__req *rq) {
    return respond_json(rq, EVS_HTTP_OK, evs__keys_list(rq->srv->keys));
}

enum MHD_Result evs__route_keys_create(evs__req *rq) {
    json_t *root = NULL;
    enum MHD_Result mr;
    if (evs__req_json(rq, &root, &mr)) return mr;
    const char *role = NULL, *name = NULL;
    const char *grants[EVS_KEY_MAX_GRANTS];
    size_t n = 0;
    const char *k;
    json_t *v;
    if (!json_is_object(root)) {
        mr = evs__respond_error(rq, EVS_HTTP_UNPROCESSABLE, NULL,
                                "expected {\"role\": \"admin|writer|reader|none\", \"grants\": [...], \"name\": \"...\"}");
        goto out;
    }
    json_object_foreach(root, k, v) {
        if (strcmp(k, "role") == 0 && json_is_string(v)) {
            role = json_string_value(v);
        } else if (strcmp(k, "name") == 0 && (json_is_string(v) || json_is_null(v))) {
            name = json_string_value(v);
        } else if (strcmp(k, "grants") == 0 && json_is_array(v)) {
            if (json_array_size(v) > EVS_KEY_MAX_GRANTS) {
                mr = evs__respond_error(rq, EVS_HTTP_UNPROCESSABLE, NULL, "at most %d grants", EVS_KEY_MAX_GRANTS);
                goto out;
            }
            for (n = 0; n < json_array_size(v); n++)
                if (!(grants[n] = json_string_value(json_array_get(v, n)))) {
                    mr = evs__respond_error(rq, EVS_HTTP_UNPROCESSABLE, NULL,
                                            "grants[%zu] must be a string PERM:STREAMS[:TYPES]", n);
                    goto out;
                }
        } else {
            mr = evs__respond_error(rq, EVS_HTTP_UNPROCESSABLE, NULL,
                                    "member \"%.40s\": a key takes role (a string), grants (an array of strings) "
                                    "and name (a string)", k);
            goto out;
        }
    }
    if (!role) role = n ? "none" : NULL;
    if (!role) {
        mr = evs__respond_error(rq, EVS_HTTP_UNPROCESSABLE, NULL, "give a role (admin, writer, reader) or grants");
        goto out;
    }
    char key[EVS_KEY_TEXT_MAX];
    json_t *info = NULL;
    int rc = evs__keys_create(rq->srv->keys, role, grants, n, name, key, sizeof key, &info);
    if (rc) {
        mr = evs__respond_lib(rq, rc, "create key");
        goto out;
    }
    json_object_set_new(info, "key", json_string(key));
    sodium_memzero(key, sizeof key);
    mr = respond_json(rq, EVS_HTTP_CREATED, info);
out:
    json_decref(root);
    return mr;
}

enum MHD_Result evs__route_keys_revoke(evs__req *rq) {
    int rc = evs__keys_revoke(rq->srv->keys, rq->id);
    if (rc) return evs__respond_lib(rq, rc, "revoke key");
    json_t *all = evs__keys_list(rq->srv->keys), *one = NULL, *e;
    size_t i;
    json_array_foreach(json_object_get(all, "keys"), i, e) {
        const char *id = json_string_value(json_object_get(e, "id"));
        if (id && strcmp(id, rq->id) == 0) one = json_incref(e);
    }
    json_decref(all);
    return respond_json(rq, EVS_HTTP_OK, one);
}
