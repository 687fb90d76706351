/*
 * routes_schema.c — the schema registry over HTTP (include/evstore_schema.h):
 * every version of every type, one type's versions, one version with its
 * schema, and registering a version (the body is the JSON Schema itself, as
 * the CLI's FILE; --version and --migration-path are query parameters).
 * Answers use the CLI's field names, so `evstore schema` output and these
 * bodies read alike.  Validation of appends is not here: the registry's
 * hook checks every append (serve.c opens it); this file only turns a
 * refusal into its 422 with the JSON pointer and the rule.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "evstore_schema.h"
#include "server/query.h"
#include "server/routes_proj.h"
#include "server/routes_schema.h"

#define LIST_PAGE 64

static void info_json(evs__sb *b, const evs_schema_info *i) {
    static const char *const up[] = {"none", "c", "lua", "implicit"};
    evs__sb_adds(b, "{\"event_type\":");
    evs__sb_json_str(b, i->event_type, strlen(i->event_type));
    evs__sb_printf(b, ",\"version\":%u,\"latest\":%u,\"compat\":\"%s\",\"deprecated\":%s,\"registered_at\":", i->version,
                   i->latest, evs_schema_compat_name(i->compat), i->deprecated ? "true" : "false");
    evs__sb_json_time(b, i->registered_at);
    evs__sb_adds(b, ",\"deprecated_at\":");
    if (i->deprecated_at) evs__sb_json_time(b, i->deprecated_at);
    else evs__sb_adds(b, "null");
    evs__sb_adds(b, ",\"migration_path\":");
    if (i->migration_path[0]) evs__sb_json_str(b, i->migration_path, strlen(i->migration_path));
    else evs__sb_adds(b, "null");
    evs__sb_adds(b, ",\"upcast_to_next\":");
    if (i->version < i->latest) evs__sb_printf(b, "\"%s\"", up[i->upcaster & 3]);
    else evs__sb_adds(b, "null");
}

static void violation_json(evs__sb *b, int rc, const evs_schema_violation *v) {
    evs__sb_printf(b, "{\"code\":\"%s\",\"pointer\":", evs_errname(rc));
    evs__sb_json_str(b, v->pointer, strlen(v->pointer));
    evs__sb_adds(b, ",\"keyword\":");
    evs__sb_json_str(b, v->keyword, strlen(v->keyword));
    evs__sb_adds(b, ",\"schema_path\":");
    evs__sb_json_str(b, v->schema_path, strlen(v->schema_path));
    evs__sb_adds(b, "}");
}

/* A library failure with the violation as detail (status by the one table). */
static enum MHD_Result respond_violation(evs__req *rq, int rc, const char *context, const evs_schema_violation *v) {
    evs__sb d = {0};
    violation_json(&d, rc, v);
    const char *msg = evs_errmsg();
    enum MHD_Result mr = evs__respond_error(rq, evs__http_status(rc), d.oom ? NULL : d.p, "%s: %s", context,
                                            msg && *msg ? msg : evs_strerror(rc));
    evs__sb_free(&d);
    return mr;
}

void evs__schema_forget(void) { evs_schema_last_violation(NULL); }

enum MHD_Result evs__respond_append_failed(evs__req *rq, int rc, const char *context) {
    evs_schema_violation v;
    if (rc == EVS_EINVAL) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", evs_errmsg()); /* reading the violation resets the message */
        if (evs_schema_last_violation(&v) == EVS_OK) {
            evs__err(rc, "%s", msg);
            return respond_violation(rq, rc, context, &v);
        }
        evs__err(rc, "%s", msg);
    }
    return evs__respond_lib(rq, rc, context);
}

/* {"types":[{"event_type","latest","compat","versions":[...]}]} */
enum MHD_Result evs__route_schema_list(evs__req *rq) {
    evs_schema_registry *reg = rq->srv->schemas;
    evs_schema_info page[LIST_PAGE];
    char after[EVS_MAX_TYPE_NAME + 1] = "";
    uint32_t after_v = 0;
    size_t n;
    int rc, open = 0;
    evs__sb out = {0};
    evs__sb_adds(&out, "{\"types\":[");
    do {
        if ((rc = evs_schema_list(reg, after[0] ? after : NULL, after_v, page, LIST_PAGE, &n))) {
            evs__sb_free(&out);
            return evs__respond_lib(rq, rc, "list schemas");
        }
        for (size_t i = 0; i < n; i++) {
            if (page[i].version == 1) {
                if (open) evs__sb_adds(&out, "]},");
                evs__sb_adds(&out, "{\"event_type\":");
                evs__sb_json_str(&out, page[i].event_type, strlen(page[i].event_type));
                evs__sb_printf(&out, ",\"latest\":%u,\"compat\":\"%s\",\"versions\":[", page[i].latest,
                               evs_schema_compat_name(page[i].compat));
                open = 1;
            } else {
                evs__sb_add(&out, ",", 1);
            }
            info_json(&out, &page[i]);
            evs__sb_adds(&out, "}");
        }
        if (n) {
            snprintf(after, sizeof after, "%s", page[n - 1].event_type);
            after_v = page[n - 1].version;
        }
    } while (n == LIST_PAGE);
    if (open) evs__sb_adds(&out, "]}");
    evs__sb_adds(&out, "]}\n");
    return evs__respond_sb(rq, EVS_HTTP_OK, &out);
}

/* The type's record and every version, or a 404 naming it. */
enum MHD_Result evs__route_schema_type(evs__req *rq) {
    evs_schema_registry *reg = rq->srv->schemas;
    const char *type = rq->part;
    evs_schema_info i;
    int rc = evs_schema_get(reg, type, 0, &i, NULL, NULL);
    if (rc == EVS_ENOTFOUND)
        return evs__respond_error(rq, EVS_HTTP_NOT_FOUND, NULL, "event type \"%s\" has no schema", type);
    if (rc) return evs__respond_lib(rq, rc, "schema");
    evs__sb out = {0};
    evs__sb_adds(&out, "{\"event_type\":");
    evs__sb_json_str(&out, type, strlen(type));
    evs__sb_printf(&out, ",\"latest\":%u,\"compat\":\"%s\",\"versions\":[", i.latest, evs_schema_compat_name(i.compat));
    for (uint32_t v = 1; v <= i.latest; v++) {
        evs_schema_info vi;
        if ((rc = evs_schema_get(reg, type, v, &vi, NULL, NULL))) {
            evs__sb_free(&out);
            return evs__respond_lib(rq, rc, "schema");
        }
        if (v > 1) evs__sb_add(&out, ",", 1);
        info_json(&out, &vi);
        evs__sb_adds(&out, "}");
    }
    evs__sb_adds(&out, "]}\n");
    return evs__respond_sb(rq, EVS_HTTP_OK, &out);
}

static int version_of(evs__req *rq, uint32_t *out, enum MHD_Result *mr) {
    uint64_t v;
    if (evs__parse_u64(rq->id, EVS_SCHEMA_MAX_VERSIONS, &v) || v == 0) {
        *mr = evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, NULL, "version \"%.20s\" is not a schema version (1..%u)",
                                 rq->id, EVS_SCHEMA_MAX_VERSIONS);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

/* One version: its record and "schema", the text as registered. */
enum MHD_Result evs__route_schema_version(evs__req *rq) {
    enum MHD_Result mr;
    uint32_t v;
    if (version_of(rq, &v, &mr)) return mr;
    evs_schema_info i;
    char *text = NULL;
    size_t len = 0;
    int rc = evs_schema_get(rq->srv->schemas, rq->part, v, &i, &text, &len);
    if (rc == EVS_ENOTFOUND)
        return evs__respond_error(rq, EVS_HTTP_NOT_FOUND, NULL, "event type \"%s\" has no schema version %u",
                                  rq->part, v);
    if (rc) return evs__respond_lib(rq, rc, "schema");
    evs__sb out = {0};
    info_json(&out, &i);
    evs__sb_adds(&out, ",\"schema\":");
    evs__sb_add(&out, text, len);
    evs__sb_adds(&out, "}\n");
    free(text);
    return evs__respond_sb(rq, EVS_HTTP_OK, &out);
}

/* Register the body as the next version (or ?version=N exactly); 201 with its record. */
enum MHD_Result evs__route_schema_put(evs__req *rq) {
    evs_schema_registry *reg = rq->srv->schemas;
    enum MHD_Result mr = MHD_NO;
    const char *body = rq->body.p ? rq->body.p : "";
    size_t len = rq->body.len;
    uint64_t ver = 0;
    char *mig = NULL;
    if (evs__query_u64(rq, "version", 1, EVS_SCHEMA_MAX_VERSIONS, &ver, &mr) ||
        evs__query_text(rq, "migration_path", 500, &mig, &mr))
        return mr;
    if (evs__req_json_valid(rq, &mr)) goto out;
    evs_schema_def d = {rq->part, (uint32_t)ver, body, len, mig};
    evs_schema_violation why;
    memset(&why, 0, sizeof why);
    uint32_t got = 0;
    int rc = evs_schema_register(reg, &d, &got, &why);
    if (rc) {
        mr = respond_violation(rq, rc, "register schema", &why);
        goto out;
    }
    evs_schema_info i;
    if ((rc = evs_schema_get(reg, rq->part, got, &i, NULL, NULL))) {
        mr = evs__respond_lib(rq, rc, "schema");
        goto out;
    }
    evs__sb o = {0};
    info_json(&o, &i);
    evs__sb_adds(&o, "}\n");
    mr = evs__respond_sb(rq, EVS_HTTP_CREATED, &o);
out:
    free(mig);
    return mr;
}

/* --------------------------------------------------- checks without changes */

/* What registering the body would say: 200 {"compatible": true|false, ...}; a bad schema is 4xx. */
enum MHD_Result evs__route_schema_check(evs__req *rq) {
    enum MHD_Result mr;
    const char *body = rq->body.p ? rq->body.p : "";
    size_t len = rq->body.len;
    uint64_t ver = 0;
    if (evs__query_u64(rq, "version", 1, EVS_SCHEMA_MAX_VERSIONS, &ver, &mr)) return mr;
    if (evs__req_json_valid(rq, &mr)) return mr;
    evs_schema_def d = {rq->part, (uint32_t)ver, body, len, NULL};
    evs_schema_violation why;
    memset(&why, 0, sizeof why);
    int rc = evs_schema_check(rq->srv->schemas, &d, &why);
    if (rc && rc != EVS_ECONFLICT) return respond_violation(rq, rc, "check schema", &why);
    evs__sb out = {0};
    evs__sb_adds(&out, "{\"event_type\":");
    evs__sb_json_str(&out, rq->part, strlen(rq->part));
    if (rc == EVS_ECONFLICT) {
        const char *msg = evs_errmsg();
        evs__sb_adds(&out, ",\"compatible\":false,\"reason\":");
        evs__sb_json_str(&out, msg, strlen(msg));
        evs__sb_adds(&out, ",\"violation\":");
        violation_json(&out, rc, &why);
    } else {
        evs_schema_info i;
        uint32_t next = evs_schema_get(rq->srv->schemas, rq->part, 0, &i, NULL, NULL) == EVS_OK ? i.latest + 1 : 1;
        evs__sb_printf(&out, ",\"compatible\":true,\"next_version\":%u", ver ? (uint32_t)ver : next);
    }
    evs__sb_adds(&out, "}\n");
    return evs__respond_sb(rq, EVS_HTTP_OK, &out);
}

/* Validate the body as an event's data of this version: 200 {"valid": true|false, ...}. */
enum MHD_Result evs__route_schema_validate(evs__req *rq) {
    enum MHD_Result mr;
    uint32_t v;
    if (version_of(rq, &v, &mr)) return mr;
    const char *body = rq->body.p ? rq->body.p : "";
    if (evs__req_json_valid(rq, &mr)) return mr;
    evs_schema_violation why;
    memset(&why, 0, sizeof why);
    int rc = evs_schema_validate(rq->srv->schemas, rq->part, v, body, rq->body.len, &why);
    if (rc == EVS_ENOTFOUND)
        return evs__respond_error(rq, EVS_HTTP_NOT_FOUND, NULL, "event type \"%s\" has no schema version %u",
                                  rq->part, v);
    if (rc && rc != EVS_EINVAL) return evs__respond_lib(rq, rc, "validate");
    evs__sb out = {0};
    if (rc == EVS_OK) {
        evs__sb_adds(&out, "{\"valid\":true}\n");
    } else {
        evs__sb_adds(&out, "{\"valid\":false,\"pointer\":");
        evs__sb_json_str(&out, why.pointer, strlen(why.pointer));
        evs__sb_adds(&out, ",\"keyword\":");
        evs__sb_json_str(&out, why.keyword, strlen(why.keyword));
        evs__sb_adds(&out, ",\"schema_path\":");
        evs__sb_json_str(&out, why.schema_path, strlen(why.schema_path));
        evs__sb_adds(&out, ",\"message\":");
        evs__sb_json_str(&out, why.message, strlen(why.message));
        evs__sb_adds(&out, "}\n");
    }
    return evs__respond_sb(rq, EVS_HTTP_OK, &out);
}

/* ------------------------------------------------------------- changes */

/* POST .../{version}/deprecate marks, DELETE unmarks; the version's record. */
enum MHD_Result evs__route_schema_deprecate(evs__req *rq) {
    enum MHD_Result mr;
    uint32_t v;
    if (version_of(rq, &v, &mr)) return mr;
    int rc = evs_schema_deprecate(rq->srv->schemas, rq->part, v, rq->method != EVS_M_DELETE);
    if (rc == EVS_ENOTFOUND)
        return evs__respond_error(rq, EVS_HTTP_NOT_FOUND, NULL, "event type \"%s\" has no schema version %u",
                                  rq->part, v);
    if (rc) return evs__respond_lib(rq, rc, "deprecate");
    evs_schema_info i;
    if ((rc = evs_schema_get(rq->srv->schemas, rq->part, v, &i, NULL, NULL))) return evs__respond_lib(rq, rc, "schema");
    evs__sb out = {0};
    info_json(&out, &i);
    evs__sb_adds(&out, "}\n");
    return evs__respond_sb(rq, EVS_HTTP_OK, &out);
}

/* GET: the type's mode; PUT {"compat": "backward"|"forward"|"full"|"none"}: set it. */
enum MHD_Result evs__route_schema_compat(evs__req *rq) {
    evs_schema_registry *reg = rq->srv->schemas;
    int rc;
    if (rq->method == EVS_M_PUT) {
        enum MHD_Result mr;
        json_t *root;
        if (evs__req_json(rq, &root, &mr)) return mr;
        json_t *m = json_is_object(root) ? json_object_get(root, "compat") : NULL;
        evs_schema_compat c;
        if (!json_is_string(m) || json_object_size(root) != 1) {
            json_decref(root);
            return evs__respond_error(rq, EVS_HTTP_UNPROCESSABLE, "{\"field\":\"compat\"}",
                                      "expected {\"compat\": \"backward\"|\"forward\"|\"full\"|\"none\"} and nothing else");
        }
        rc = evs_schema_compat_parse(json_string_value(m), &c);
        json_decref(root);
        if (rc) return evs__respond_lib(rq, rc, "compat");
        if ((rc = evs_schema_set_compat(reg, rq->part, c))) return evs__respond_lib(rq, rc, "compat");
    }
    evs_schema_info i;
    rc = evs_schema_get(reg, rq->part, 0, &i, NULL, NULL);
    if (rc && rc != EVS_ENOTFOUND) return evs__respond_lib(rq, rc, "compat");
    if (rc == EVS_ENOTFOUND && rq->method != EVS_M_PUT)
        return evs__respond_error(rq, EVS_HTTP_NOT_FOUND, NULL, "event type \"%s\" has no schema", rq->part);
    evs__sb out = {0};
    evs__sb_adds(&out, "{\"event_type\":");
    evs__sb_json_str(&out, rq->part, strlen(rq->part));
    /* a type without versions keeps its mode too, but evs_schema_get cannot show it: say what was set */
    const char *shown = rc == EVS_OK ? evs_schema_compat_name(i.compat) : NULL;
    if (!shown) {
        json_t *root = NULL;
        enum MHD_Result mr;
        if (evs__req_json(rq, &root, &mr) == 0) shown = json_string_value(json_object_get(root, "compat"));
        evs__sb_printf(&out, ",\"compat\":\"%s\"}\n", shown ? shown : "backward");
        json_decref(root);
    } else {
        evs__sb_printf(&out, ",\"compat\":\"%s\"}\n", shown);
    }
    return evs__respond_sb(rq, EVS_HTTP_OK, &out);
}

/* PUT .../{version}/upcaster: the Lua step version -> version + 1; DELETE removes it (C or Lua). */
enum MHD_Result evs__route_schema_upcaster(evs__req *rq) {
    enum MHD_Result mr;
    uint32_t v;
    if (version_of(rq, &v, &mr)) return mr;
    int rc;
    json_t *root = NULL;
    if (rq->method == EVS_M_DELETE) {
        rc = evs_schema_remove_upcaster(rq->srv->schemas, rq->part, v);
    } else {
        const char *src;
        size_t n;
        if (evs__req_source(rq, &root, &src, &n, &mr)) return mr;
        rc = evs_schema_add_lua_upcaster(rq->srv->schemas, rq->part, v, src, n);
    }
    json_decref(root);
    if (rc) return evs__respond_lib(rq, rc, "upcaster");
    evs__sb out = {0};
    evs__sb_adds(&out, "{\"event_type\":");
    evs__sb_json_str(&out, rq->part, strlen(rq->part));
    evs__sb_printf(&out, ",\"from\":%u,\"to\":%u,\"upcaster\":%s}\n", v, v + 1,
                   rq->method == EVS_M_DELETE ? "null" : "\"lua\"");
    return evs__respond_sb(rq, rq->method == EVS_M_DELETE ? EVS_HTTP_OK : EVS_HTTP_CREATED, &out);
}

/* ------------------------------------------------------------- policies */

/* The scope of /schema-policies/default|stream-types/{stream_type}|event-types/{event_type}. */
static evs_policy_scope scope_of(evs__req *rq, const char **name, const char **sname) {
    if (strstr(rq->url, "/schema-policies/stream-types/")) {
        *name = rq->part;
        *sname = "stream-type";
        return EVS_POLICY_STREAM_TYPE;
    }
    if (strstr(rq->url, "/schema-policies/event-types/")) {
        *name = rq->part;
        *sname = "event-type";
        return EVS_POLICY_EVENT_TYPE;
    }
    *name = NULL;
    *sname = "default";
    return EVS_POLICY_DEFAULT;
}

static enum MHD_Result policy_answer(evs__req *rq, const char *sname, const char *name, const evs_schema_policy *p) {
    evs__sb out = {0};
    evs__sb_printf(&out, "{\"scope\":\"%s\",\"name\":", sname);
    if (name) evs__sb_json_str(&out, name, strlen(name));
    else evs__sb_adds(&out, "null");
    evs__sb_printf(&out, ",\"validation\":\"%s\",\"deprecated\":\"%s\"}\n", evs_validation_name(p->validation),
                   evs_deprecated_policy_name(p->deprecated));
    return evs__respond_sb(rq, EVS_HTTP_OK, &out);
}

/*
 * GET: the policy set at the scope (404 when a stream or event type has
 * none).  PUT {"validation": ..., "deprecated": ...}: either or both; a part
 * not given keeps the scope's value, else the default's (as the CLI).
 * DELETE: remove a stream- or event-type policy.
 */
enum MHD_Result evs__route_schema_policy(evs__req *rq) {
    evs_schema_registry *reg = rq->srv->schemas;
    const char *name, *sname;
    evs_policy_scope scope = scope_of(rq, &name, &sname);
    evs_schema_policy p;
    int rc;
    if (rq->method == EVS_M_DELETE) {
        if (scope == EVS_POLICY_DEFAULT)
            return evs__respond_error(rq, EVS_HTTP_UNPROCESSABLE, NULL, "the default policy cannot be removed; PUT another");
        rc = evs_schema_clear_policy(reg, scope, name);
        if (rc == EVS_ENOTFOUND)
            return evs__respond_error(rq, EVS_HTTP_NOT_FOUND, NULL, "%s \"%s\" has no policy", sname, name);
        if (rc) return evs__respond_lib(rq, rc, "policy");
        evs__sb out = {0};
        evs__sb_printf(&out, "{\"scope\":\"%s\",\"name\":", sname);
        evs__sb_json_str(&out, name, strlen(name));
        evs__sb_adds(&out, ",\"cleared\":true}\n");
        return evs__respond_sb(rq, EVS_HTTP_OK, &out);
    }
    rc = evs_schema_get_policy(reg, scope, name, &p);
    if (rq->method != EVS_M_PUT) {
        if (rc == EVS_ENOTFOUND)
            return evs__respond_error(rq, EVS_HTTP_NOT_FOUND, NULL, "%s \"%s\" has no policy of its own", sname, name);
        if (rc) return evs__respond_lib(rq, rc, "policy");
        return policy_answer(rq, sname, name, &p);
    }
    if (rc == EVS_ENOTFOUND) rc = evs_schema_get_policy(reg, EVS_POLICY_DEFAULT, NULL, &p);
    if (rc) return evs__respond_lib(rq, rc, "policy");
    enum MHD_Result mr;
    json_t *root;
    if (evs__req_json(rq, &root, &mr)) return mr;
    const char *key;
    json_t *val;
    int given = 0;
    if (!json_is_object(root)) {
        json_decref(root);
        return evs__respond_error(rq, EVS_HTTP_UNPROCESSABLE, NULL,
                                  "expected {\"validation\": \"enforce\"|\"warn\"|\"off\", \"deprecated\": "
                                  "\"warn\"|\"refuse\"|\"allow\"}");
    }
    json_object_foreach(root, key, val) {
        char d[96];
        snprintf(d, sizeof d, "{\"field\":\"%.40s\"}", strcmp(key, "validation") && strcmp(key, "deprecated") ? "" : key);
        if (strcmp(key, "validation") && strcmp(key, "deprecated")) {
            mr = evs__respond_error(rq, EVS_HTTP_UNPROCESSABLE, NULL,
                                    "unknown field \"%.60s\": a policy has validation and deprecated", key);
            json_decref(root);
            return mr;
        }
        rc = !json_is_string(val) ? evs__err(EVS_EINVAL, "%s must be a string", key)
             : key[0] == 'v'      ? evs_validation_parse(json_string_value(val), &p.validation)
                                  : evs_deprecated_policy_parse(json_string_value(val), &p.deprecated);
        if (rc) {
            mr = evs__respond_error(rq, EVS_HTTP_UNPROCESSABLE, d, "%s", evs_errmsg());
            json_decref(root);
            return mr;
        }
        given++;
    }
    json_decref(root);
    if (!given)
        return evs__respond_error(rq, EVS_HTTP_UNPROCESSABLE, NULL, "give validation, deprecated or both");
    if ((rc = evs_schema_set_policy(reg, scope, name, &p))) return evs__respond_lib(rq, rc, "policy");
    return policy_answer(rq, sname, name, &p);
}
