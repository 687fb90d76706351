/*
 * store_engine.h — which storage engine a store location names.  Kept out
 * of src/engine (below the engines) because answering it means knowing the
 * engines: the store sits above them and picks one.
 */
#ifndef EVS_STORE_STORE_ENGINE_H
#define EVS_STORE_STORE_ENGINE_H

#include "engine/engine.h"

/* The engine that handles `where` (a URL scheme it knows), or NULL for a directory. */
const evs_engine *evs__engine_for(const char *where);

#endif
