/*
 * cli_schema.h — `evstore schema ...` (cli_schema.c), and the helper the
 * other local commands use to validate through a store's registry.
 */
#ifndef EVS_CLI_SCHEMA_H
#define EVS_CLI_SCHEMA_H

#include "evstore.h"
#include "evstore_schema.h"

int evs__cli_schema(int argc, char **argv);

/*
 * Open the schema registry of a store opened by a command, when the store
 * has one (DIR/schemas/), so that appends are validated as the library
 * would; *out stays NULL when there is none.  Returns an exit code after
 * printing why.  Ownership: *out is the caller's (evs_schema_close before
 * the store is closed).
 */
int evs__cli_open_schemas(evs_store *s, const char *dir, evs_schema_registry **out);

/*
 * `evstore schema ACT ... --url URL` (cli_schema_remote.c): pos as given
 * (pos[0] is ACT), text/len the FILE's content when the action takes one.
 * For deprecate, undo is passed as a non-NULL migration_path.  Returns the
 * exit code after printing.
 */
int evs__cli_schema_remote(const char *url, const char *act, const char *const *pos, int npos, const char *text,
                           size_t len, uint64_t version, const char *migration_path);

#endif
