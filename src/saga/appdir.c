/*
 * appdir.c — the saga definitions of an application directory
 * (evs_saga_load_dir): DIR/sagas/NAME.lua, with DIR/sagas/NAME.json as its
 * settings.  What `evstore serve --app-dir DIR` and the local `evstore saga`
 * actions load, so that both run the same definitions.
 *
 * The type is the file's stem without a "_saga" ending: an app directory
 * keeps aggregates and sagas side by side, and "order_saga.lua" reads
 * better next to "order.lua" while the saga is still called "order" (its
 * streams are saga-order-{id}).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app_access.h"
#include "saga/saga_internal.h"

#define MAX_SETTINGS ((size_t)1 << 20)

/* One script and its settings file. */
static int load_one(evs_saga_engine *e, const char *sdir, const char *file) {
    char path[4200], spath[4200], type[EVS_SAGA_MAX_NAME + 1];
    size_t stem = strlen(file) - 4, tl = stem;
    if (tl > 5 && memcmp(file + tl - 5, "_saga", 5) == 0) tl -= 5;
    if ((size_t)snprintf(path, sizeof path, "%s/%s", sdir, file) >= sizeof path ||
        (size_t)snprintf(spath, sizeof spath, "%s/%.*s.json", sdir, (int)stem, file) >= sizeof spath)
        return evs__err(EVS_EINVAL, "path too long: %s/%s", sdir, file);
    if (tl > EVS_SAGA_MAX_NAME)
        return evs__err(EVS_EINVAL, "%s: the saga type (the file's name) is %zu bytes, at most %u", path, tl,
                        EVS_SAGA_MAX_NAME);
    memcpy(type, file, tl);
    type[tl] = 0;
    char *src = NULL, *settings = NULL;
    size_t len = 0, slen = 0;
    int rc = evs__app_slurp(spath, MAX_SETTINGS, &settings, &slen);
    if (rc == EVS_ENOTFOUND) {
        rc = EVS_OK;
    } else if (!rc) {
        json_error_t je;
        json_t *j = json_loadb(settings, slen, JSON_REJECT_DUPLICATES, &je);
        if (!j) rc = evs__err(EVS_EINVAL, "%s: line %d, column %d: %s", spath, je.line, je.column, je.text);
        else if (!json_is_object(j)) rc = evs__err(EVS_EINVAL, "%s: the settings must be a JSON object", spath);
        json_decref(j);
    }
    if (!rc) rc = evs__app_slurp(path, EVS_APP_MAX_SOURCE, &src, &len);
    if (!rc) rc = evs_saga_register_lua(e, type, src, len, settings);
    if (rc && !strstr(evs_errmsg(), path) && !strstr(evs_errmsg(), spath)) evs__err_prefix(rc, "%s: ", path);
    free(src);
    free(settings);
    return rc;
}

int evs_saga_load_dir(evs_saga_engine *e, const char *dir, size_t *count) {
    if (count) *count = 0;
    if (!e || !dir) return evs__err(EVS_EINVAL, "saga_load_dir: NULL argument");
    char sdir[4110];
    if ((size_t)snprintf(sdir, sizeof sdir, "%s/sagas", dir) >= sizeof sdir)
        return evs__err(EVS_EINVAL, "path too long: %s", dir);
    char **names;
    size_t n;
    int rc = evs__app_list_lua(sdir, &names, &n);
    if (rc == EVS_ENOTFOUND) return EVS_OK; /* an app without sagas */
    for (size_t i = 0; !rc && i < n; i++) {
        rc = load_one(e, sdir, names[i]);
        if (!rc && count) (*count)++;
    }
    evs__app_names_free(names, n);
    return rc;
}
