/*
 * test_schema_suite.c — the official JSON-Schema-Test-Suite (draft 7), as
 * Debian packages it (json-schema-test-suite, installed by `make deps`),
 * run against evs_json_schema_compile / _validate.  The files are read
 * where the package put them (never copied into this repository);
 * EVS_JSON_SCHEMA_SUITE overrides the directory.
 *
 * One file per keyword of the subset.  Every test of every case runs:
 *   pass     the validator agrees with "valid"
 *   fail     it does not, or the schema of a case that uses only the
 *            subset does not compile
 *   skipped  the case's schema needs a keyword or form outside the subset
 *            (compile refuses it, saying so: "outside the supported
 *            subset", "not supported", remote $ref, $ref with siblings)
 * Counts are printed per keyword; any failure fails the test.
 */
#include <dirent.h>
#include <jansson.h>

#include "evstore_schema.h"
#include "testutil.h"

#ifndef EVS_SUITE_DEFAULT
#define EVS_SUITE_DEFAULT "/usr/share/json-schema-test-suite/tests/draft7"
#endif

static const char *const files[] = {
    "type",        "properties", "required", "additionalProperties", "enum",          "const",
    "minimum",     "maximum",    "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength",
    "pattern",     "items",      "ref",      "definitions",          "anyOf",         "oneOf",
    "allOf",       "boolean_schema", "optional/format/date-time", "optional/format/email",
};

/* The refusals that mean "outside the subset", as opposed to a bug. */
static int outside_subset(const evs_schema_violation *v) {
    static const char *const marks[] = {"outside the supported subset", "not supported", "only references within",
                                        "next to $ref", "only draft-06 and draft-07"};
    for (size_t i = 0; i < sizeof marks / sizeof marks[0]; i++)
        if (strstr(v->message, marks[i])) return 1;
    return 0;
}

typedef struct counts {
    int pass, fail, skipped;
} counts;

static void run_file(const char *dir, const char *name, counts *tot) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.json", dir, name);
    json_error_t je;
    json_t *doc = json_load_file(path, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!doc) {
        fprintf(stderr, "%s: %s (line %d)\n", path, je.text, je.line);
        CHECK(doc != NULL);
        return;
    }
    counts k = {0, 0, 0};
    size_t ci;
    json_t *cs;
    json_array_foreach(doc, ci, cs) {
        const char *cdesc = json_string_value(json_object_get(cs, "description"));
        json_t *tests = json_object_get(cs, "tests");
        char *stext = json_dumps(json_object_get(cs, "schema"), JSON_COMPACT | JSON_ENCODE_ANY);
        evs_json_schema *js = NULL;
        evs_schema_violation v;
        int rc = evs_json_schema_compile(stext, strlen(stext), &js, &v);
        if (rc) {
            if (outside_subset(&v)) {
                k.skipped += (int)json_array_size(tests);
                if (tu_verbose) printf("  skip %s / \"%s\": %s %s\n", name, cdesc, v.pointer, v.message);
            } else {
                k.fail += (int)json_array_size(tests);
                fprintf(stderr, "FAIL %s / \"%s\": schema refused: %s\n", name, cdesc, evs_errmsg());
            }
            free(stext);
            continue;
        }
        size_t ti;
        json_t *t;
        json_array_foreach(tests, ti, t) {
            char *data = json_dumps(json_object_get(t, "data"), JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
            int want = json_is_true(json_object_get(t, "valid"));
            int got = evs_json_schema_validate(js, data, strlen(data), &v);
            if ((got == EVS_OK) == want && (got == EVS_OK || got == EVS_EINVAL)) {
                k.pass++;
            } else {
                k.fail++;
                fprintf(stderr, "FAIL %s / \"%s\" / \"%s\": data %s: wanted %s, got %s (%s)\n", name, cdesc,
                        json_string_value(json_object_get(t, "description")), data, want ? "valid" : "invalid",
                        evs_errname(got), got ? evs_errmsg() : "");
            }
            free(data);
        }
        evs_json_schema_free(js);
        free(stext);
    }
    json_decref(doc);
    printf("%-28s %4d tests: %4d pass, %3d fail, %3d skipped (outside the subset)\n", name, k.pass + k.fail + k.skipped,
           k.pass, k.fail, k.skipped);
    CHECK_INT(k.fail, 0);
    tot->pass += k.pass;
    tot->fail += k.fail;
    tot->skipped += k.skipped;
}

int main(void) {
    tu_verbose = getenv("EVS_VERBOSE") != NULL;
    const char *dir = getenv("EVS_JSON_SCHEMA_SUITE");
    if (!dir || !*dir) dir = EVS_SUITE_DEFAULT;
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "the JSON-Schema-Test-Suite is not at %s: install the Debian package json-schema-test-suite "
                        "(make deps does) or set EVS_JSON_SCHEMA_SUITE\n", dir);
        return 1;
    }
    closedir(d);
    printf("JSON-Schema-Test-Suite draft 7 at %s\n", dir);
    counts tot = {0, 0, 0};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) run_file(dir, files[i], &tot);
    printf("%-28s %4d tests: %4d pass, %3d fail, %3d skipped\n", "total", tot.pass + tot.fail + tot.skipped, tot.pass,
           tot.fail, tot.skipped);
    CHECK(tot.pass >= 200); /* the draft 7 files of suite 2.0.0 give 225 */
    return TEST_REPORT();
}
