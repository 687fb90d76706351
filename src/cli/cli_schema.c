/*
 * cli_schema.c — `evstore schema ...`: the schema registry of a local store
 * (include/evstore_schema.h).  Commands that change the registry open the
 * store for writing (its lock makes sure no server has it open: the server
 * will take these actions over HTTP); the others open it read-only and work
 * beside a running server.  Output is JSON lines on stdout.
 *
 *   evstore schema register TYPE FILE [--version N] [--migration-path TEXT]
 *   evstore schema check TYPE FILE
 *   evstore schema list [TYPE] | show TYPE [VERSION]
 *   evstore schema deprecate TYPE VERSION [--undo]
 *   evstore schema compat TYPE backward|forward|full|none
 *   evstore schema policy default|stream-type NAME|event-type NAME
 *                         [--validation enforce|warn|off] [--deprecated warn|refuse|allow] [--clear]
 *   evstore schema upcaster TYPE FROM FILE.lua | upcaster TYPE FROM --remove
 *   evstore schema validate TYPE VERSION FILE
 *
 * FILE may be "-" for stdin.  A refused schema or document prints the JSON
 * pointer, the keyword and the reason on stderr, and exits 4 (invalid) or
 * 3 (not compatible).
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "cli/cli_schema.h"

#define MAX_POS 4

typedef struct schema_args {
    const char *pos[MAX_POS];
    int npos;
    const char *dir, *url;
    uint64_t version;
    int has_version;
    const char *migration_path;
    const char *validation, *deprecated;
    int clear, undo, remove, help;
} schema_args;

static const char schema_help[] =
    "Usage: evstore schema ACTION ... [-d DIR | --url URL]\n"
    "\n"
    "The schema registry of a local store: JSON Schemas per event type and\n"
    "version, checked on every append (see docs/schemas.md for the subset).\n"
    "\n"
    "  register TYPE FILE [--version N] [--migration-path TEXT]\n"
    "        register the next version of TYPE's schema; refused when it does not\n"
    "        compile or is not compatible with the previous version (TYPE's mode)\n"
    "  check TYPE FILE          what register would say, registering nothing\n"
    "  list [TYPE]              every version (of every type, or of TYPE)\n"
    "  show TYPE [VERSION]      one version (default: the latest) with its schema\n"
    "  deprecate TYPE VERSION [--undo]\n"
    "        mark a version deprecated: appends of it are warned or refused by policy\n"
    "  compat TYPE backward|forward|full|none\n"
    "        how a new version must relate to the previous one (default backward:\n"
    "        every event valid under the previous version stays valid)\n"
    "  policy default|stream-type NAME|event-type NAME [--validation enforce|warn|off]\n"
    "         [--deprecated warn|refuse|allow] [--clear]\n"
    "        what appends of types with schemas go through; without options, show it\n"
    "  upcaster TYPE FROM FILE.lua | upcaster TYPE FROM --remove\n"
    "        declare (or remove) the Lua step turning version FROM into FROM + 1\n"
    "  validate TYPE VERSION FILE   check one event's data against a version\n"
    "\n"
    "FILE may be - for stdin.  Commands that change the registry need the store to\n"
    "themselves (not while `evstore serve` runs on it); the others read it beside a server.\n"
    "With --url URL (default: $EVSTORE_URL) list, show, register, check, validate,\n"
    "deprecate and compat go to a running `evstore serve` instead, with the same output.\n"
    "\n"
    "Exit status: 0 ok, 1 usage, 2 not found, 3 not compatible or version taken,\n"
    "4 invalid schema or data, 5 I/O error.\n";

static int parse(int argc, char **argv, schema_args *o) {
    evs__cli_args a;
    const char *opt_dir = NULL, *opt_url = NULL, *v;
    int t, code;
    memset(o, 0, sizeof *o);
    evs__cli_args_init(&a, "schema", argc, argv);
    while ((t = evs__cli_args_next(&a)) != EVS_CLI_END) {
        if (t == EVS_CLI_POSITIONAL) {
            if (o->npos == MAX_POS) return evs__cli_usage("schema", "unexpected argument \"%s\"", a.arg);
            o->pos[o->npos++] = a.arg;
        } else if (evs__cli_is(&a, "--help", "-h")) {
            o->help = 1;
            return EVS_CLI_OK;
        } else if (evs__cli_is(&a, "--dir", "-d")) {
            if ((code = evs__cli_value(&a, &opt_dir))) return code;
        } else if (evs__cli_is(&a, "--url", NULL)) {
            if ((code = evs__cli_value(&a, &opt_url))) return code;
        } else if (evs__cli_is(&a, "--version", NULL)) {
            if ((code = evs__cli_value(&a, &v)) || (code = evs__cli_u64(&a, "--version", v, EVS_SCHEMA_MAX_VERSIONS, &o->version)))
                return code;
            if (o->version == 0) return evs__cli_usage("schema", "--version must be at least 1");
            o->has_version = 1;
        } else if (evs__cli_is(&a, "--migration-path", NULL)) {
            if ((code = evs__cli_value(&a, &o->migration_path))) return code;
        } else if (evs__cli_is(&a, "--validation", NULL)) {
            if ((code = evs__cli_value(&a, &o->validation))) return code;
        } else if (evs__cli_is(&a, "--deprecated", NULL)) {
            if ((code = evs__cli_value(&a, &o->deprecated))) return code;
        } else if (evs__cli_is(&a, "--clear", NULL)) {
            if ((code = evs__cli_flag(&a))) return code;
            o->clear = 1;
        } else if (evs__cli_is(&a, "--undo", NULL)) {
            if ((code = evs__cli_flag(&a))) return code;
            o->undo = 1;
        } else if (evs__cli_is(&a, "--remove", NULL)) {
            if ((code = evs__cli_flag(&a))) return code;
            o->remove = 1;
        } else {
            return evs__cli_unknown(&a);
        }
    }
    return evs__cli_target(&a, opt_dir, opt_url, &o->dir, &o->url);
}

static int need(const schema_args *o, int n, const char *what) {
    if (o->npos < n) return evs__cli_usage("schema", "%s: missing %s", o->pos[0], what);
    if (o->npos > n && strcmp(o->pos[0], "list") && strcmp(o->pos[0], "show") && strcmp(o->pos[0], "policy") &&
        strcmp(o->pos[0], "upcaster"))
        return evs__cli_usage("schema", "%s: unexpected argument \"%s\"", o->pos[0], o->pos[n]);
    return EVS_CLI_OK;
}

static int parse_version(const char *text, uint64_t *out) {
    evs__cli_args a;
    evs__cli_args_init(&a, "schema", 0, NULL);
    int code = evs__cli_u64(&a, "VERSION", text, EVS_SCHEMA_MAX_VERSIONS, out);
    if (!code && *out == 0) return evs__cli_usage("schema", "VERSION must be at least 1");
    return code;
}

int evs__cli_open_schemas(evs_store *s, const char *dir, evs_schema_registry **out) {
    *out = NULL;
    char path[PATH_MAX];
    struct stat st;
    snprintf(path, sizeof path, "%s/schemas", dir);
    if (stat(path, &st) != 0) return EVS_CLI_OK;
    evs__cli_clear_error();
    int rc = evs_schema_open(s, out);
    return rc ? evs__cli_lib_fail(rc, "open the schema registry of %s", dir) : EVS_CLI_OK;
}

static void print_info(const evs_schema_info *i) {
    static const char *const up[] = {"none", "c", "lua", "implicit"};
    printf("{\"event_type\":");
    evs__cli_json_str(stdout, i->event_type, strlen(i->event_type));
    printf(",\"version\":%u,\"latest\":%u,\"compat\":\"%s\",\"deprecated\":%s,\"registered_at\":", i->version, i->latest,
           evs_schema_compat_name(i->compat), i->deprecated ? "true" : "false");
    evs__cli_json_time(stdout, i->registered_at);
    printf(",\"deprecated_at\":");
    evs__cli_json_time(stdout, i->deprecated_at);
    printf(",\"migration_path\":");
    if (i->migration_path[0]) evs__cli_json_str(stdout, i->migration_path, strlen(i->migration_path));
    else fputs("null", stdout);
    printf(",\"upcast_to_next\":");
    if (i->version < i->latest) printf("\"%s\"", up[i->upcaster & 3]);
    else fputs("null", stdout);
}

static void print_violation(const char *what, const evs_schema_violation *v) {
    fprintf(stderr, "evstore: %s: ", what);
    if (v->pointer[0] || v->keyword[0])
        fprintf(stderr, "at %s: %s: ", v->pointer[0] ? v->pointer : "(root)", v->keyword[0] ? v->keyword : "-");
    fprintf(stderr, "%s\n", v->message);
}

static void print_policy(const char *scope, const char *name, const evs_schema_policy *p) {
    printf("{\"scope\":\"%s\",\"name\":", scope);
    if (name) evs__cli_json_str(stdout, name, strlen(name));
    else fputs("null", stdout);
    printf(",\"validation\":\"%s\",\"deprecated\":\"%s\"}\n", evs_validation_name(p->validation),
           evs_deprecated_policy_name(p->deprecated));
}

/* A schema (or data) file: text or an exit code after printing why. */
static char *load(const char *path, size_t max, size_t *len, int *code) {
    char *t = evs__cli_read_file(path, max, len);
    if (!t)
        *code = evs__cli_fail(errno == EFBIG ? EVS_CLI_INVALID : EVS_CLI_NOTFOUND, "schema: cannot read %s: %s", path,
                              errno == EFBIG ? "too large" : strerror(errno));
    return t;
}

static int act_policy(evs_schema_registry *reg, const schema_args *o) {
    evs_policy_scope scope;
    const char *name = NULL, *sname = o->pos[1];
    if (strcmp(sname, "default") == 0) scope = EVS_POLICY_DEFAULT;
    else if (strcmp(sname, "stream-type") == 0) scope = EVS_POLICY_STREAM_TYPE;
    else if (strcmp(sname, "event-type") == 0) scope = EVS_POLICY_EVENT_TYPE;
    else return evs__cli_usage("schema", "policy: scope must be default, stream-type NAME or event-type NAME");
    if (scope != EVS_POLICY_DEFAULT) {
        if (o->npos < 3) return evs__cli_usage("schema", "policy %s: missing NAME", sname);
        name = o->pos[2];
    }
    if (o->npos > (scope == EVS_POLICY_DEFAULT ? 2 : 3))
        return evs__cli_usage("schema", "policy: unexpected argument \"%s\"", o->pos[scope == EVS_POLICY_DEFAULT ? 2 : 3]);
    int rc;
    evs_schema_policy p;
    if (o->clear) {
        if (o->validation || o->deprecated) return evs__cli_usage("schema", "policy: --clear takes no other option");
        if ((rc = evs_schema_clear_policy(reg, scope, name))) return evs__cli_lib_fail(rc, "schema policy");
        printf("{\"scope\":\"%s\",\"name\":", sname);
        if (name) evs__cli_json_str(stdout, name, strlen(name));
        else fputs("null", stdout);
        printf(",\"cleared\":true}\n");
        return EVS_CLI_OK;
    }
    /* the scope's own policy, else (to change one part of it) the default */
    rc = evs_schema_get_policy(reg, scope, name, &p);
    if (!o->validation && !o->deprecated) {
        if (rc) return evs__cli_lib_fail(rc, "schema policy");
        print_policy(sname, name, &p);
        return EVS_CLI_OK;
    }
    if (rc == EVS_ENOTFOUND) rc = evs_schema_get_policy(reg, EVS_POLICY_DEFAULT, NULL, &p);
    if (rc) return evs__cli_lib_fail(rc, "schema policy");
    if (o->validation && (rc = evs_validation_parse(o->validation, &p.validation))) return evs__cli_lib_fail(rc, "schema policy");
    if (o->deprecated && (rc = evs_deprecated_policy_parse(o->deprecated, &p.deprecated)))
        return evs__cli_lib_fail(rc, "schema policy");
    if ((rc = evs_schema_set_policy(reg, scope, name, &p))) return evs__cli_lib_fail(rc, "schema policy");
    print_policy(sname, name, &p);
    return EVS_CLI_OK;
}

int evs__cli_schema(int argc, char **argv) {
    schema_args o;
    evs_store *s = NULL;
    evs_schema_registry *reg = NULL;
    char *text = NULL;
    size_t len = 0;
    int code = parse(argc, argv, &o), rc = EVS_OK;
    if (code || o.help) {
        if (o.help) fputs(schema_help, stdout);
        return code ? code : evs__cli_finish_output(EVS_CLI_OK);
    }
    if (o.npos < 1) return evs__cli_usage("schema", "missing action (register, check, list, show, deprecate, compat, "
                                                    "policy, upcaster, validate)");
    const char *act = o.pos[0];
    static const char *const writes[] = {"register", "deprecate", "compat", "policy", "upcaster", NULL};
    static const char *const reads[] = {"check", "list", "show", "validate", NULL};
    int write = 0, known = 0;
    for (int i = 0; writes[i]; i++) write |= strcmp(act, writes[i]) == 0;
    for (int i = 0; reads[i]; i++) known |= strcmp(act, reads[i]) == 0;
    if (!write && !known) return evs__cli_usage("schema", "unknown action \"%s\"", act);
    /* policy without options only reads */
    if (strcmp(act, "policy") == 0 && !o.validation && !o.deprecated && !o.clear) write = 0;
    /* arguments first: nothing is opened for a command that cannot run */
    uint64_t ver = 0;
    if (!strcmp(act, "register") || !strcmp(act, "check")) {
        if ((code = need(&o, 3, "TYPE and FILE"))) return code;
        if (!(text = load(o.pos[2], EVS_SCHEMA_MAX_BYTES, &len, &code))) return code;
    } else if (!strcmp(act, "show")) {
        if ((code = need(&o, 2, "TYPE"))) return code;
        if (o.npos > 3) return evs__cli_usage("schema", "show: unexpected argument \"%s\"", o.pos[3]);
        if (o.npos == 3 && (code = parse_version(o.pos[2], &ver))) return code;
    } else if (!strcmp(act, "list")) {
        if (o.npos > 2) return evs__cli_usage("schema", "list: unexpected argument \"%s\"", o.pos[2]);
    } else if (!strcmp(act, "deprecate")) {
        if ((code = need(&o, 3, "TYPE and VERSION")) || (code = parse_version(o.pos[2], &ver))) return code;
    } else if (!strcmp(act, "compat")) {
        evs_schema_compat m;
        if ((code = need(&o, 3, "TYPE and MODE"))) return code;
        if (evs_schema_compat_parse(o.pos[2], &m)) return evs__cli_usage("schema", "%s", evs_errmsg());
    } else if (!strcmp(act, "policy")) {
        if ((code = need(&o, 2, "scope (default, stream-type NAME, event-type NAME)"))) return code;
    } else if (!strcmp(act, "upcaster")) {
        if ((code = need(&o, 3, "TYPE and FROM")) || (code = parse_version(o.pos[2], &ver))) return code;
        if (o.remove ? o.npos != 3 : o.npos != 4)
            return evs__cli_usage("schema", "upcaster: give TYPE FROM FILE.lua, or TYPE FROM --remove");
        if (!o.remove && !(text = load(o.pos[3], EVS_SCHEMA_MAX_UPCASTER_BYTES, &len, &code))) return code;
    } else if (!strcmp(act, "validate")) {
        if ((code = need(&o, 4, "TYPE, VERSION and FILE")) || (code = parse_version(o.pos[2], &ver))) return code;
        if (!(text = load(o.pos[3], EVS_MAX_EVENT_BYTES, &len, &code))) return code;
    }
    if (o.url) {
        code = evs__cli_schema_remote(o.url, act, (const char *const *)o.pos, o.npos, text, len, o.version,
                                      !strcmp(act, "deprecate") ? (o.undo ? "" : NULL) : o.migration_path);
        free(text);
        return code;
    }
    if ((code = evs__cli_open(o.dir, write ? EVS_OPEN_CREATE : EVS_OPEN_READONLY, &s))) goto out;
    evs__cli_clear_error();
    if ((rc = evs_schema_open(s, &reg))) {
        code = evs__cli_lib_fail(rc, "open the schema registry of %s", o.dir);
        goto out;
    }
    if (!strcmp(act, "register") || !strcmp(act, "check")) {
        evs_schema_def d = {o.pos[1], (uint32_t)o.version, text, len, o.migration_path};
        evs_schema_violation why;
        uint32_t v = 0;
        memset(&why, 0, sizeof why);
        rc = act[0] == 'r' ? evs_schema_register(reg, &d, &v, &why) : evs_schema_check(reg, &d, &why);
        if (rc) {
            code = evs__cli_exit_code(rc);
            fprintf(stderr, "evstore: schema %s: %s\n", act, evs_errmsg());
            goto out;
        }
        if (act[0] == 'r') {
            evs_schema_info i;
            if ((rc = evs_schema_get(reg, o.pos[1], v, &i, NULL, NULL))) goto fail;
            print_info(&i);
            printf("}\n");
        } else {
            evs_schema_info i;
            uint32_t next = evs_schema_get(reg, o.pos[1], 0, &i, NULL, NULL) == EVS_OK ? i.latest + 1 : 1;
            printf("{\"event_type\":");
            evs__cli_json_str(stdout, o.pos[1], strlen(o.pos[1]));
            printf(",\"compatible\":true,\"next_version\":%u}\n", o.version ? (uint32_t)o.version : next);
        }
    } else if (!strcmp(act, "list")) {
        evs_schema_info page[64];
        char after[EVS_MAX_TYPE_NAME + 1] = "";
        uint32_t after_v = 0;
        size_t n;
        if (o.npos == 2) {
            /* start just before the type */
            evs_schema_info one;
            if ((rc = evs_schema_get(reg, o.pos[1], 1, &one, NULL, NULL))) goto fail;
            snprintf(after, sizeof after, "%s", o.pos[1]);
        }
        do {
            if ((rc = evs_schema_list(reg, after[0] ? after : NULL, after_v, page, 64, &n))) goto fail;
            for (size_t i = 0; i < n; i++) {
                if (o.npos == 2 && strcmp(page[i].event_type, o.pos[1])) {
                    n = 0;
                    break;
                }
                print_info(&page[i]);
                printf("}\n");
            }
            if (n) {
                snprintf(after, sizeof after, "%s", page[n - 1].event_type);
                after_v = page[n - 1].version;
            }
        } while (n == 64);
    } else if (!strcmp(act, "show")) {
        evs_schema_info i;
        char *st = NULL;
        size_t sl = 0;
        if ((rc = evs_schema_get(reg, o.pos[1], (uint32_t)ver, &i, &st, &sl))) goto fail;
        print_info(&i);
        printf(",\"schema\":%s}\n", st);
        free(st);
    } else if (!strcmp(act, "deprecate")) {
        if ((rc = evs_schema_deprecate(reg, o.pos[1], (uint32_t)ver, !o.undo))) goto fail;
        evs_schema_info i;
        if ((rc = evs_schema_get(reg, o.pos[1], (uint32_t)ver, &i, NULL, NULL))) goto fail;
        print_info(&i);
        printf("}\n");
    } else if (!strcmp(act, "compat")) {
        evs_schema_compat m;
        evs_schema_compat_parse(o.pos[2], &m);
        if ((rc = evs_schema_set_compat(reg, o.pos[1], m))) goto fail;
        printf("{\"event_type\":");
        evs__cli_json_str(stdout, o.pos[1], strlen(o.pos[1]));
        printf(",\"compat\":\"%s\"}\n", evs_schema_compat_name(m));
    } else if (!strcmp(act, "policy")) {
        code = act_policy(reg, &o);
    } else if (!strcmp(act, "upcaster")) {
        rc = o.remove ? evs_schema_remove_upcaster(reg, o.pos[1], (uint32_t)ver)
                      : evs_schema_add_lua_upcaster(reg, o.pos[1], (uint32_t)ver, text, len);
        if (rc) goto fail;
        printf("{\"event_type\":");
        evs__cli_json_str(stdout, o.pos[1], strlen(o.pos[1]));
        printf(",\"from\":%llu,\"to\":%llu,\"upcaster\":%s}\n", (unsigned long long)ver, (unsigned long long)ver + 1,
               o.remove ? "null" : "\"lua\"");
    } else if (!strcmp(act, "validate")) {
        evs_schema_violation v;
        memset(&v, 0, sizeof v);
        rc = evs_schema_validate(reg, o.pos[1], (uint32_t)ver, text, len, &v);
        if (rc == EVS_EINVAL) {
            print_violation("schema validate", &v);
            printf("{\"valid\":false,\"pointer\":");
            evs__cli_json_str(stdout, v.pointer, strlen(v.pointer));
            printf(",\"keyword\":");
            evs__cli_json_str(stdout, v.keyword, strlen(v.keyword));
            printf(",\"message\":");
            evs__cli_json_str(stdout, v.message, strlen(v.message));
            printf("}\n");
            code = EVS_CLI_INVALID;
            rc = EVS_OK;
        } else if (rc == EVS_OK) {
            printf("{\"valid\":true}\n");
        } else {
            goto fail;
        }
    }
    goto out;
fail:
    code = evs__cli_lib_fail(rc, "schema %s", act);
out:
    evs_schema_close(reg);
    code = evs__cli_close(s, o.dir, code);
    free(text);
    return code ? code : evs__cli_finish_output(EVS_CLI_OK);
}
