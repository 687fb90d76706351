/*
 * pg.h — the PostgreSQL storage engine (src/pg), as the store layer sees
 * it: one table of operations (engine/engine.h).  evs_store_open selects it
 * for a "postgresql://" or "postgres://" URL.
 */
#ifndef EVS_PG_H
#define EVS_PG_H

#include "engine/engine.h"

/* The engine's table.  Static storage; never freed. */
const evs_engine *evs__pg_engine(void);

#endif
