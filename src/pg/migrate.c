/*
 * migrate.c — the PostgreSQL engine's schema and the migrations that
 * create or upgrade it.
 *
 * Every open runs evs__pg_migrate: under a session advisory lock (so that
 * several evstore servers starting at once migrate one after another), it
 * reads the highest version in event_store_migrations and applies each
 * later migration in a transaction of its own together with the row that
 * records it.  A migration is never edited once released; a change is a
 * new entry at the end of the list.  A database whose schema is newer
 * than this build knows is refused (EVS_EFORMAT), never downgraded.
 *
 * The schema (docs/postgresql.md explains each change from the seed's):
 *
 *   event_store          one row per event.  global_position is the
 *                        primary key, given by evs_append, not a sequence;
 *                        aggregate_id is the stream, (aggregate_id,
 *                        stream_position) unique; event_id unique;
 *                        event_data and metadata are bytea: the bytes an
 *                        appender sent come back exactly (JSONB would
 *                        reorder keys and drop duplicates and whitespace).
 *   event_streams        one row per stream: its version and type, so an
 *                        append reads one row, not max() over its events;
 *                        guarded when its metadata has a tombstone or
 *                        "$encrypt" (the database then checks its appends).
 *   event_store_head     one row: the last global position and recorded_at.
 *                        evs_append locks it (FOR UPDATE) first, so appends
 *                        take positions in the order they commit: the
 *                        global order is gapless and a reader that sees
 *                        position n sees every position below n.
 *   event_store_json     a view with event_data and metadata as jsonb, for
 *                        people querying the store with SQL.
 *   evs_bus_kv           the consumer bus: records, DLQ, projection state
 *                        (src/pg/pg_kv.h; src/bus/kv.h).
 *   evs_subject_keys     crypto-shredding: each subject's wrapped data key,
 *   evs_subject_master   and the check of the master key (src/pg/pg_keys.c).
 *
 * evs_append(...) and, for a group commit's appends together,
 * evs_append_batch(...) are the only ways events are written; see their
 * comments below.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "pg/pg_internal.h"

/* pg_advisory_lock key of the migration step ("evstore" in ASCII, as a number) */
#define EVS_PG_MIGRATE_LOCK "7310305402963043685"

typedef struct migration {
    int version;
    const char *what;
    const char *sql;
} migration;

/*
 * evs_append's text in parts, for the same reason as evs_append_batch's
 * below: the signature, variables, idempotent path and expected-version
 * check; the event INSERT; the stream row (migration 2's upsert, 10's
 * update, then an insert only for a new stream); the head row (2's own
 * statement; 10 moves it inside the event INSERT); the NOTIFY and answer.
 */
#define EVS_APPEND_HEAD \
    "evs_append(p_stream text, p_expected bigint, p_ids uuid[], p_stypes text[], p_types text[],\n" \
    "    p_versions integer[], p_data bytea[], p_meta bytea[], p_tags text[], p_causation uuid[],\n" \
    "    p_correlation uuid[], p_occurred timestamptz[])\n" \
    "  RETURNS TABLE (status integer, first_stream_position bigint, first_global_position bigint,\n" \
    "                 recorded_at timestamptz, actual bigint, detail text)\n" \
    "  LANGUAGE plpgsql AS $f$\n" \
    "#variable_conflict use_column\n" \
    "DECLARE\n" \
    "  v_n integer := cardinality(p_ids);\n" \
    "  v_head bigint; v_last timestamptz; v_now timestamptz; v_version bigint;\n" \
    "  v_found integer := 0; v_g0 bigint; v_sp0 bigint; v_rec timestamptz; e record; k integer; v_what text;\n" \
    "BEGIN\n" \
    "  SELECT h.global_position, h.recorded_at INTO v_head, v_last FROM event_store_head h WHERE h.id = 1 FOR UPDATE;\n" \
    "  SELECT s.version INTO v_version FROM event_streams s WHERE s.aggregate_id = p_stream;\n" \
    "  v_version := coalesce(v_version, 0);\n" \
    "  IF EXISTS (SELECT 1 FROM event_store x WHERE x.event_id = ANY (p_ids)) THEN\n" \
    "    FOR k IN 1 .. v_n LOOP\n" \
    "      SELECT * INTO e FROM event_store x WHERE x.event_id = p_ids[k];\n" \
    "      CONTINUE WHEN NOT FOUND;\n" \
    "      IF k = 1 THEN v_g0 := e.global_position; v_sp0 := e.stream_position; v_rec := e.recorded_at; END IF;\n" \
    "      IF k = 1 OR (v_found = k - 1 AND e.aggregate_id = p_stream AND e.stream_position = v_sp0 + k - 1\n" \
    "                   AND e.global_position = v_g0 + k - 1) THEN\n" \
    "        IF e.aggregate_id <> p_stream THEN\n" \
    "          RETURN QUERY SELECT 3, 0::bigint, 0::bigint, NULL::timestamptz, v_version, format(\n" \
    "            'event %s: event_id %s is already stored in another stream (global position %s)',\n" \
    "            k, p_ids[k], e.global_position);\n" \
    "          RETURN;\n" \
    "        END IF;\n" \
    "        v_found := v_found + 1;\n" \
    "        CONTINUE;\n" \
    "      END IF;\n" \
    "      RETURN QUERY SELECT 3, 0::bigint, 0::bigint, NULL::timestamptz, v_version, format(\n" \
    "        'event %s: event_id %s is already stored at stream position %s (global %s), which this append does not repeat',\n" \
    "        k, p_ids[k], e.stream_position, e.global_position);\n" \
    "      RETURN;\n" \
    "    END LOOP;\n" \
    "    IF v_found <> v_n THEN\n" \
    "      RETURN QUERY SELECT 3, 0::bigint, 0::bigint, NULL::timestamptz, v_version, format(\n" \
    "        'event %s: event_id %s is new but earlier events of this append are already stored; an idempotent retry must repeat the original append exactly',\n" \
    "        v_found + 1, p_ids[v_found + 1]);\n" \
    "      RETURN;\n" \
    "    END IF;\n" \
    "    IF NOT (p_expected = -1 OR p_expected = -2 OR (p_expected >= 0 AND p_expected + 1 = v_sp0)) THEN\n" \
    "      RETURN QUERY SELECT 2, 0::bigint, 0::bigint, NULL::timestamptz, v_version, NULL::text;\n" \
    "      RETURN;\n" \
    "    END IF;\n" \
    "    FOR k IN 1 .. v_n LOOP\n" \
    "      SELECT * INTO e FROM event_store x WHERE x.event_id = p_ids[k];\n" \
    "      v_what := CASE\n" \
    "        WHEN e.event_type <> p_types[k] THEN 'event_type'\n" \
    "        WHEN e.event_data <> p_data[k] THEN 'data'\n" \
    "        WHEN e.metadata <> p_meta[k] THEN 'metadata'\n" \
    "        WHEN e.stream_type <> p_stypes[k] THEN 'stream_type'\n" \
    "        WHEN e.tags IS DISTINCT FROM (CASE WHEN p_tags[k] IS NULL THEN NULL\n" \
    "             ELSE ARRAY(SELECT jsonb_array_elements_text(p_tags[k]::jsonb)) END) THEN 'tags'\n" \
    "        WHEN e.causation_id IS DISTINCT FROM p_causation[k] THEN 'causation_id'\n" \
    "        WHEN e.correlation_id IS DISTINCT FROM p_correlation[k] THEN 'correlation_id'\n" \
    "        WHEN e.event_version <> p_versions[k] THEN 'event_version'\n" \
    "        END;\n" \
    "      IF v_what IS NOT NULL THEN\n" \
    "        RETURN QUERY SELECT 3, 0::bigint, 0::bigint, NULL::timestamptz, v_version, format(\n" \
    "          'event %s: event_id %s is already stored (global position %s, stream position %s) with other %s; a retry must repeat the stored event exactly, and a new event needs a new event_id',\n" \
    "          k, p_ids[k], e.global_position, e.stream_position, v_what);\n" \
    "        RETURN;\n" \
    "      END IF;\n" \
    "    END LOOP;\n" \
    "    RETURN QUERY SELECT 1, v_sp0, v_g0, v_rec, v_version, NULL::text;\n" \
    "    RETURN;\n" \
    "  END IF;\n" \
    "  IF NOT (p_expected = -1 OR (p_expected = -2 AND v_version > 0) OR p_expected = v_version) THEN\n" \
    "    RETURN QUERY SELECT 2, 0::bigint, 0::bigint, NULL::timestamptz, v_version, NULL::text;\n" \
    "    RETURN;\n" \
    "  END IF;\n" \
    /* recorded_at never goes backwards, even when the clock does */ \
    "  v_now := greatest(clock_timestamp(), v_last);\n"

#define EVS_APPEND_EVENTS \
    "  INSERT INTO event_store (global_position, event_id, aggregate_id, stream_type, stream_position, event_type,\n" \
    "      event_version, event_data, metadata, tags, causation_id, correlation_id, occurred_at, recorded_at)\n" \
    "    SELECT v_head + i, p_ids[i], p_stream, p_stypes[i], v_version + i, p_types[i], p_versions[i], p_data[i],\n" \
    "           p_meta[i], CASE WHEN p_tags[i] IS NULL THEN NULL\n" \
    "                      ELSE ARRAY(SELECT jsonb_array_elements_text(p_tags[i]::jsonb)) END,\n" \
    "           p_causation[i], p_correlation[i], p_occurred[i], v_now\n" \
    "    FROM generate_series(1, v_n) AS i;\n"

#define EVS_APPEND_STREAM_V2 \
    "  INSERT INTO event_streams AS s VALUES (p_stream, p_stypes[1], v_version + v_n, v_head + 1, v_head + v_n, v_now, v_now)\n" \
    "    ON CONFLICT (aggregate_id) DO UPDATE SET version = EXCLUDED.version,\n" \
    "      last_global_position = EXCLUDED.last_global_position, updated_at = EXCLUDED.updated_at;\n"

#define EVS_APPEND_HEADROW_V2 \
    "  UPDATE event_store_head SET global_position = v_head + v_n, recorded_at = v_now WHERE id = 1;\n"

/* the stream's row: an update (whose trigger runs only for a guarded row), an insert only for a new stream */
#define EVS_APPEND_STREAM_V10 \
    "  UPDATE event_streams AS s SET version = v_version + v_n, last_global_position = v_head + v_n, updated_at = v_now\n" \
    "    WHERE s.aggregate_id = p_stream;\n" \
    "  IF NOT FOUND THEN\n" \
    "    INSERT INTO event_streams AS s VALUES (p_stream, p_stypes[1], v_version + v_n, v_head + 1, v_head + v_n, v_now, v_now)\n" \
    "      ON CONFLICT (aggregate_id) DO UPDATE SET version = EXCLUDED.version,\n" \
    "        last_global_position = EXCLUDED.last_global_position, updated_at = EXCLUDED.updated_at;\n" \
    "  END IF;\n"

#define EVS_APPEND_HEADROW_V10 \
    "  WITH h AS (UPDATE event_store_head SET global_position = v_head + v_n, recorded_at = v_now WHERE id = 1)\n"

#define EVS_APPEND_TAIL \
    "  PERFORM pg_notify('" EVS_PG_CHANNEL "', (v_head + v_n)::text);\n" \
    "  RETURN QUERY SELECT 0, v_version + 1, v_head + 1, v_now, v_version, NULL::text;\n" \
    "END\n" \
    "$f$;\n"

/*
 * evs_append_batch's text in parts, so that a migration that re-creates it
 * replaces only what changes and keeps the rest word for word (migration
 * 4's text is unchanged by the split, as is 9's).  In order: the
 * signature; the variables (4's, 10's); the per-stream and per-append
 * arrays and the head lock; the check for stored or repeated event ids
 * (4's; 10's also reads the stream versions); the one-by-one path; the
 * stream versions and the start of the expected-version loop (4's, 10's);
 * the loop's middle; noting a stream's first append (4's, 10's); the end of
 * the loop and the event INSERT's head (10's also moves the head row in
 * it); its rows (4's, 9's); the stream rows, head, NOTIFY and answer (4's,
 * 10's).
 */
#define EVS_BATCH_SIG \
    "evs_append_batch(p_snames text[], p_sidx integer[], p_expected bigint[], p_count integer[],\n" \
    "    p_app integer[], p_ids uuid[], p_stypes text[], p_types text[], p_versions integer[], p_data bytea[],\n" \
    "    p_meta bytea[], p_tags text[], p_causation uuid[], p_correlation uuid[], p_occurred timestamptz[])\n" \
    "  RETURNS TABLE (status integer, first_stream_position bigint, first_global_position bigint,\n" \
    "                 recorded_at timestamptz, actual bigint, detail text)\n" \
    "  LANGUAGE plpgsql AS $f$\n" \
    "#variable_conflict use_column\n" \
    "DECLARE\n" \
    "  v_m integer := cardinality(p_sidx);\n" \
    "  v_ns integer := cardinality(p_snames);\n"

#define EVS_BATCH_VARS_V4 "  v_head bigint; v_last timestamptz; v_now timestamptz; v_g bigint; v_v bigint;\n"

/* v_stored: an event id of the batch is stored already; v_new: the batch creates a stream */
#define EVS_BATCH_VARS_V10 \
    "  v_head bigint; v_last timestamptz; v_now timestamptz; v_g bigint; v_v bigint;\n" \
    "  v_stored boolean; v_new boolean := false;\n"

#define EVS_BATCH_ARRAYS \
    /* per stream: version before the batch, version as the appends so far left it, the first and */ \
    /* last global position the batch gives it, the stream type of its first event (a new stream's row) */ \
    "  v_old bigint[]; v_ver bigint[];\n" \
    "  v_sfirst bigint[] := array_fill(NULL::bigint, ARRAY[v_ns]);\n" \
    "  v_slast bigint[] := array_fill(NULL::bigint, ARRAY[v_ns]);\n" \
    "  v_stype text[] := array_fill(NULL::text, ARRAY[v_ns]);\n" \
    /* per append: outcome, first stream and global position, the stream's version seen, index of its first event */ \
    "  v_st integer[] := array_fill(2, ARRAY[v_m]);\n" \
    "  v_sp0 bigint[] := array_fill(0::bigint, ARRAY[v_m]);\n" \
    "  v_g0 bigint[] := array_fill(0::bigint, ARRAY[v_m]);\n" \
    "  v_act bigint[] := array_fill(0::bigint, ARRAY[v_m]);\n" \
    "  v_off integer[] := array_fill(0, ARRAY[v_m]);\n" \
    "  k integer; j integer; v_e integer := 1;\n" \
    "BEGIN\n" \
    "  SELECT h.global_position, h.recorded_at INTO v_head, v_last FROM event_store_head h WHERE h.id = 1 FOR UPDATE;\n"

#define EVS_BATCH_IDS_V4 \
    "  IF EXISTS (SELECT 1 FROM event_store x WHERE x.event_id = ANY (p_ids))\n" \
    "     OR (SELECT count(DISTINCT u.id) FROM unnest(p_ids) AS u(id)) <> cardinality(p_ids) THEN\n"

/* the streams' versions (NULL: no such stream) and the stored ids in one statement */
#define EVS_BATCH_IDS_V10 \
    "  SELECT array_agg(s.version ORDER BY u.j), EXISTS (SELECT 1 FROM event_store x WHERE x.event_id = ANY (p_ids))\n" \
    "    INTO v_old, v_stored\n" \
    "    FROM unnest(p_snames) WITH ORDINALITY AS u(name, j) LEFT JOIN event_streams s ON s.aggregate_id = u.name;\n" \
    "  IF v_stored OR (SELECT count(DISTINCT u.id) FROM unnest(p_ids) AS u(id)) <> cardinality(p_ids) THEN\n"

#define EVS_BATCH_ONE_BY_ONE \
    "    FOR k IN 1 .. v_m LOOP\n" \
    "      j := v_e + p_count[k] - 1;\n" \
    "      RETURN QUERY SELECT * FROM evs_append(p_snames[p_sidx[k]], p_expected[k], p_ids[v_e:j], p_stypes[v_e:j],\n" \
    "          p_types[v_e:j], p_versions[v_e:j], p_data[v_e:j], p_meta[v_e:j], p_tags[v_e:j], p_causation[v_e:j],\n" \
    "          p_correlation[v_e:j], p_occurred[v_e:j]);\n" \
    "      v_e := j + 1;\n" \
    "    END LOOP;\n" \
    "    RETURN;\n" \
    "  END IF;\n"

#define EVS_BATCH_LOOP_V4 \
    "  SELECT array_agg(coalesce(s.version, 0) ORDER BY u.j) INTO v_old\n" \
    "    FROM unnest(p_snames) WITH ORDINALITY AS u(name, j) LEFT JOIN event_streams s ON s.aggregate_id = u.name;\n" \
    "  v_ver := v_old;\n" \
    "  v_g := v_head;\n" \
    "  FOR k IN 1 .. v_m LOOP\n" \
    "    j := p_sidx[k];\n" \
    "    v_v := v_ver[j];\n"

#define EVS_BATCH_LOOP_V10 \
    "  v_ver := v_old;\n" \
    "  v_g := v_head;\n" \
    "  FOR k IN 1 .. v_m LOOP\n" \
    "    j := p_sidx[k];\n" \
    "    v_v := coalesce(v_ver[j], 0);\n"

#define EVS_BATCH_CHECK \
    "    v_off[k] := v_e;\n" \
    "    v_e := v_e + p_count[k];\n" \
    "    v_act[k] := v_v;\n" \
    "    CONTINUE WHEN NOT (p_expected[k] = -1 OR (p_expected[k] = -2 AND v_v > 0) OR p_expected[k] = v_v);\n" \
    "    v_st[k] := 0;\n" \
    "    v_sp0[k] := v_v + 1;\n" \
    "    v_g0[k] := v_g + 1;\n"

#define EVS_BATCH_FIRST_V4 \
    "    IF v_sfirst[j] IS NULL THEN v_sfirst[j] := v_g + 1; v_stype[j] := p_stypes[v_off[k]]; END IF;\n"

#define EVS_BATCH_FIRST_V10 \
    "    IF v_sfirst[j] IS NULL THEN\n" \
    "      v_sfirst[j] := v_g + 1; v_stype[j] := p_stypes[v_off[k]]; v_new := v_new OR v_old[j] IS NULL;\n" \
    "    END IF;\n"

#define EVS_BATCH_LOOP_END \
    "    v_ver[j] := v_v + p_count[k];\n" \
    "    v_g := v_g + p_count[k];\n" \
    "    v_slast[j] := v_g;\n" \
    "  END LOOP;\n" \
    /* recorded_at never goes backwards, even when the clock does */ \
    "  v_now := greatest(clock_timestamp(), v_last);\n" \
    "  IF v_g > v_head THEN\n"

#define EVS_BATCH_INSERT \
    "    INSERT INTO event_store (global_position, event_id, aggregate_id, stream_type, stream_position, event_type,\n" \
    "        event_version, event_data, metadata, tags, causation_id, correlation_id, occurred_at, recorded_at)\n"

#define EVS_BATCH_INSERT_V10 \
    "    WITH h AS (UPDATE event_store_head SET global_position = v_g, recorded_at = v_now WHERE id = 1)\n" \
    EVS_BATCH_INSERT

#define EVS_BATCH_ROWS_V4 \
    "      SELECT v_g0[u.a] + (u.i - v_off[u.a]), u.id, p_snames[p_sidx[u.a]], u.stype, v_sp0[u.a] + (u.i - v_off[u.a]),\n" \
    "             u.etype, u.ver, u.data, u.meta, CASE WHEN u.tags IS NULL THEN NULL\n" \
    "                  ELSE ARRAY(SELECT jsonb_array_elements_text(u.tags::jsonb)) END,\n" \
    "             u.caus, u.corr, u.occ, v_now\n" \
    "      FROM unnest(p_app, p_ids, p_stypes, p_types, p_versions, p_data, p_meta, p_tags, p_causation, p_correlation,\n" \
    "                  p_occurred) WITH ORDINALITY AS u(a, id, stype, etype, ver, data, meta, tags, caus, corr, occ, i)\n" \
    "      WHERE v_st[u.a] = 0;\n"

#define EVS_BATCH_ROWS_V9 \
    "      SELECT v_g0[p_app[i]] + (i - v_off[p_app[i]]), p_ids[i], p_snames[p_sidx[p_app[i]]], p_stypes[i],\n" \
    "             v_sp0[p_app[i]] + (i - v_off[p_app[i]]), p_types[i], p_versions[i], p_data[i], p_meta[i],\n" \
    "             CASE WHEN p_tags[i] IS NULL THEN NULL ELSE ARRAY(SELECT jsonb_array_elements_text(p_tags[i]::jsonb)) END,\n" \
    "             p_causation[i], p_correlation[i], p_occurred[i], v_now\n" \
    "      FROM generate_series(1, cardinality(p_ids)) AS i\n" \
    "      WHERE v_st[p_app[i]] = 0;\n"

#define EVS_BATCH_NOTIFY "    PERFORM pg_notify('" EVS_PG_CHANNEL "', v_g::text);\n"

#define EVS_BATCH_TAIL_V4 \
    "    INSERT INTO event_streams AS s\n" \
    "      SELECT u.name, v_stype[u.j], v_ver[u.j], v_sfirst[u.j], v_slast[u.j], v_now, v_now\n" \
    "      FROM unnest(p_snames) WITH ORDINALITY AS u(name, j) WHERE v_sfirst[u.j] IS NOT NULL\n" \
    "      ON CONFLICT (aggregate_id) DO UPDATE SET version = EXCLUDED.version,\n" \
    "        last_global_position = EXCLUDED.last_global_position, updated_at = EXCLUDED.updated_at;\n" \
    "    UPDATE event_store_head SET global_position = v_g, recorded_at = v_now WHERE id = 1;\n" \
    EVS_BATCH_NOTIFY \
    "  END IF;\n" \
    "  RETURN QUERY SELECT v_st[g.k], v_sp0[g.k], v_g0[g.k], CASE WHEN v_st[g.k] = 0 THEN v_now END, v_act[g.k],\n" \
    "                      NULL::text\n" \
    "    FROM generate_series(1, v_m) AS g(k);\n" \
    "END\n" \
    "$f$;\n"

/* existing streams are updated (their trigger fires only for a guarded one), new ones inserted; the answer
   row by row with RETURN NEXT, which plpgsql runs without a statement */
#define EVS_BATCH_TAIL_V10 \
    "    UPDATE event_streams AS s SET version = v_ver[u.j], last_global_position = v_slast[u.j], updated_at = v_now\n" \
    "      FROM unnest(p_snames) WITH ORDINALITY AS u(name, j)\n" \
    "      WHERE s.aggregate_id = u.name AND v_sfirst[u.j] IS NOT NULL AND v_old[u.j] IS NOT NULL;\n" \
    "    IF v_new THEN\n" \
    "      INSERT INTO event_streams AS s\n" \
    "        SELECT u.name, v_stype[u.j], v_ver[u.j], v_sfirst[u.j], v_slast[u.j], v_now, v_now\n" \
    "        FROM unnest(p_snames) WITH ORDINALITY AS u(name, j) WHERE v_sfirst[u.j] IS NOT NULL AND v_old[u.j] IS NULL\n" \
    "        ON CONFLICT (aggregate_id) DO UPDATE SET version = EXCLUDED.version,\n" \
    "          last_global_position = EXCLUDED.last_global_position, updated_at = EXCLUDED.updated_at;\n" \
    "    END IF;\n" \
    EVS_BATCH_NOTIFY \
    "  END IF;\n" \
    "  FOR k IN 1 .. v_m LOOP\n" \
    "    status := v_st[k]; first_stream_position := v_sp0[k]; first_global_position := v_g0[k];\n" \
    "    recorded_at := CASE WHEN v_st[k] = 0 THEN v_now END; actual := v_act[k];\n" \
    "    RETURN NEXT;\n" \
    "  END LOOP;\n" \
    "END\n" \
    "$f$;\n"

#define EVS_BATCH_V4_UPTO_ROWS \
    EVS_BATCH_SIG EVS_BATCH_VARS_V4 EVS_BATCH_ARRAYS EVS_BATCH_IDS_V4 EVS_BATCH_ONE_BY_ONE EVS_BATCH_LOOP_V4 \
    EVS_BATCH_CHECK EVS_BATCH_FIRST_V4 EVS_BATCH_LOOP_END EVS_BATCH_INSERT

/*
 * The stream row's trigger function, in two parts: migration 10 adds one
 * line between them (a new stream row of an encrypted stream is guarded).
 */
#define EVS_REFUSE_HEAD \
    "CREATE OR REPLACE FUNCTION evs_refuse_tombstoned() RETURNS trigger LANGUAGE plpgsql AS $f$\n" \
    "DECLARE v_tomb boolean; v_enc text; v_from bigint := 0; v_bad bigint;\n" \
    "BEGIN\n" \
    "  SELECT m.tombstone, m.encrypt INTO v_tomb, v_enc FROM event_stream_metadata m\n" \
    "    WHERE m.aggregate_id = NEW.aggregate_id;\n" \
    "  IF NOT FOUND THEN RETURN NEW; END IF;\n" \
    "  IF v_tomb THEN\n" \
    "    RAISE EXCEPTION USING ERRCODE = '" EVS_PG_SQLSTATE_DELETED "',\n" \
    "      MESSAGE = format('stream \"%s\" is hard-deleted (tombstone): it can never be written again', NEW.aggregate_id);\n" \
    "  END IF;\n" \
    "  IF v_enc IS NULL THEN RETURN NEW; END IF;\n"

#define EVS_REFUSE_TAIL \
    "  IF TG_OP = 'UPDATE' THEN v_from := OLD.version;\n" \
    "  ELSIF EXISTS (SELECT 1 FROM event_streams s WHERE s.aggregate_id = NEW.aggregate_id) THEN RETURN NEW;\n" \
    "  END IF;\n" \
    "  SELECT e.stream_position INTO v_bad FROM event_store e\n" \
    "    WHERE e.aggregate_id = NEW.aggregate_id AND e.stream_position > v_from AND e.stream_position <= NEW.version\n" \
    "      AND substring(e.event_data FROM 1 FOR 17) <> decode('7b2224656e63223a22786332307031222c', 'hex')\n" \
    "    LIMIT 1;\n" \
    "  IF FOUND THEN\n" \
    "    RAISE EXCEPTION USING ERRCODE = '" EVS_PG_SQLSTATE_PLAINTEXT "',\n" \
    "      MESSAGE = format('stream \"%s\" is encrypted (\"$encrypt\": \"%s\" in its metadata) and its event at " \
    "position %s is not sealed', NEW.aggregate_id, v_enc, v_bad);\n" \
    "  END IF;\n" \
    "  RETURN NEW;\n" \
    "END\n" \
    "$f$;\n"

/*
 * The append functions' ALTER FUNCTION heads, and the settings every
 * function of the write path carries (migrations 7 and 8; CREATE OR
 * REPLACE drops them, so a migration that re-creates one sets them again).
 */
#define EVS_ALTER_APPEND \
    "ALTER FUNCTION evs_append(text, bigint, uuid[], text[], text[], integer[], bytea[], bytea[], text[], uuid[],\n" \
    "    uuid[], timestamptz[])"
#define EVS_ALTER_BATCH \
    "ALTER FUNCTION evs_append_batch(text[], integer[], bigint[], integer[], integer[], uuid[], text[], text[],\n" \
    "    integer[], bytea[], bytea[], text[], uuid[], uuid[], timestamptz[])"
#define EVS_PLAN_ONCE "SET enable_seqscan = off SET plan_cache_mode = force_generic_plan"

static const migration MIGRATIONS[] = {
    {1, "tables: event_store, event_streams, event_store_head",
     "CREATE TABLE event_store (\n"
     "  global_position bigint PRIMARY KEY,\n"
     "  event_id uuid NOT NULL UNIQUE,\n"
     "  aggregate_id text COLLATE \"C\" NOT NULL,\n"
     "  stream_type text NOT NULL,\n"
     "  stream_position bigint NOT NULL,\n"
     "  event_type text NOT NULL,\n"
     "  event_version integer NOT NULL,\n"
     "  event_data bytea NOT NULL,\n"
     "  metadata bytea NOT NULL,\n"
     "  tags text[],\n"
     "  causation_id uuid,\n"
     "  correlation_id uuid,\n"
     "  occurred_at timestamptz NOT NULL,\n"
     "  recorded_at timestamptz NOT NULL,\n"
     "  UNIQUE (aggregate_id, stream_position));\n"
     "CREATE INDEX event_store_type_idx ON event_store (event_type, global_position);\n"
     "CREATE INDEX event_store_stream_type_idx ON event_store (stream_type, global_position);\n"
     "CREATE INDEX event_store_correlation_idx ON event_store (correlation_id, global_position)\n"
     "  WHERE correlation_id IS NOT NULL;\n"
     "CREATE INDEX event_store_tags_idx ON event_store USING gin (tags);\n"
     "CREATE TABLE event_streams (\n"
     "  aggregate_id text COLLATE \"C\" PRIMARY KEY,\n"
     "  stream_type text NOT NULL,\n"
     "  version bigint NOT NULL,\n"
     "  first_global_position bigint NOT NULL,\n"
     "  last_global_position bigint NOT NULL,\n"
     "  created_at timestamptz NOT NULL,\n"
     "  updated_at timestamptz NOT NULL);\n"
     "CREATE TABLE event_store_head (\n"
     "  id integer PRIMARY KEY CHECK (id = 1),\n"
     "  global_position bigint NOT NULL,\n"
     "  recorded_at timestamptz NOT NULL);\n"
     "INSERT INTO event_store_head VALUES (1, 0, '-infinity');\n"
     "CREATE VIEW event_store_json AS\n"
     "  SELECT global_position, event_id, aggregate_id, stream_type, stream_position, event_type, event_version,\n"
     "         convert_from(event_data, 'UTF8')::jsonb AS event_data, convert_from(metadata, 'UTF8')::jsonb AS metadata,\n"
     "         tags, causation_id, correlation_id, occurred_at, recorded_at\n"
     "  FROM event_store;\n"},
    /*
     * evs_append: append p_ids' events to p_stream if its version matches
     * p_expected (-1 any, -2 exists, >= 0 exactly; 0 is "no stream").
     * It returns one row instead of raising, so a caller never sees a raw
     * unique violation: status 0 appended, 1 an idempotent retry (all ids
     * already stored at the positions this append names, same content:
     * the original positions), 2 conflict (actual = the stream's version),
     * 3 an event id stored elsewhere or with other content (detail says
     * which).  The head row is locked first and held to commit: appends are
     * serialised there, so global positions have no gaps and a later
     * position never commits before an earlier one; the NOTIFY is
     * delivered at commit, in the same order.
     */
    {2, "function evs_append",
     "CREATE FUNCTION " EVS_APPEND_HEAD EVS_APPEND_EVENTS EVS_APPEND_STREAM_V2 EVS_APPEND_HEADROW_V2 EVS_APPEND_TAIL},
    /*
     * Stream metadata (pg_meta.c): the object in force per stream, kept in
     * the same transaction as its "$metadata" event in the stream "$$"+name
     * (the history, and the metadata version); readers join it to hide what
     * it hides.  A hard-deleted stream can never be written again: the
     * trigger refuses the stream row's insert or update that every append
     * makes, under the head lock the append and the delete both take.
     */
    {3, "stream metadata: event_stream_metadata, tombstones refused",
     "CREATE TABLE event_stream_metadata (\n"
     "  aggregate_id text COLLATE \"C\" PRIMARY KEY,\n"
     "  metadata bytea NOT NULL,\n"
     "  meta_version bigint NOT NULL,\n"
     "  max_age bigint,\n"
     "  max_count bigint,\n"
     "  truncate_before bigint NOT NULL DEFAULT 0,\n"
     "  tombstone boolean NOT NULL DEFAULT false);\n"
     "CREATE FUNCTION evs_refuse_tombstoned() RETURNS trigger LANGUAGE plpgsql AS $f$\n"
     "BEGIN\n"
     "  IF EXISTS (SELECT 1 FROM event_stream_metadata m WHERE m.aggregate_id = NEW.aggregate_id AND m.tombstone) THEN\n"
     "    RAISE EXCEPTION USING ERRCODE = '" EVS_PG_SQLSTATE_DELETED "',\n"
     "      MESSAGE = format('stream \"%s\" is hard-deleted (tombstone): it can never be written again', NEW.aggregate_id);\n"
     "  END IF;\n"
     "  RETURN NEW;\n"
     "END\n"
     "$f$;\n"
     "CREATE TRIGGER event_streams_tombstone BEFORE INSERT OR UPDATE ON event_streams\n"
     "  FOR EACH ROW EXECUTE FUNCTION evs_refuse_tombstoned();\n"},
    /*
     * evs_append_batch: a group commit's appends in one call (pg_append.c,
     * run_batch).  Append a (1 .. cardinality(p_sidx)) goes to stream
     * p_snames[p_sidx[a]] with expected version p_expected[a] and carries
     * p_count[a] events; the event arrays hold every append's events one
     * after the other, and p_app[i] names the append of event i.  It
     * answers one row per append, in order, exactly as evs_append would
     * have answered the appends called one after the other in a single
     * transaction: an append sees the versions the earlier appends of the
     * batch left, and a conflict fails that append alone.
     *
     * Why: evs_append called once per append inside the head-row lock cost
     * a plpgsql call, four statements, an update of the head row and a
     * NOTIFY per append; here a batch costs one of each, the versions of
     * all its streams are read in one statement, the expected versions are
     * checked in a loop over arrays (no SQL), and the events of every
     * append that passed go in with one INSERT.
     *
     * When an event id of the batch is already stored, or appears in two
     * appends of the batch (an idempotent retry, or a duplicate), it calls
     * evs_append for each append in turn instead: that path keeps the
     * idempotency rules in one place, and each call sees the rows the
     * earlier ones inserted.  Rare, so its cost does not matter.
     */
    {4, "function evs_append_batch",
     "CREATE FUNCTION " EVS_BATCH_V4_UPTO_ROWS EVS_BATCH_ROWS_V4 EVS_BATCH_TAIL_V4},
    /* the consumer bus's tables, one ordered key-value table (src/pg/pg_kv.h) */
    {5, "table: evs_bus_kv (consumers, DLQ, projection state)",
     "CREATE TABLE IF NOT EXISTS evs_bus_kv (\n"
     "  db smallint NOT NULL,\n"
     "  k bytea NOT NULL,\n"
     "  v bytea NOT NULL,\n"
     "  PRIMARY KEY (db, k));\n"},
    /*
     * Crypto-shredding (pg_keys.c; the embedded engine's is DIR/subject-keys/,
     * src/store/keystore.c).  evs_subject_keys: one row per subject, its data
     * key wrapped by the master key (nonce || XChaCha20-Poly1305 of the key,
     * the same bytes as a key file's); a forget sets wrapped to NULL for
     * good and keeps the row, so the subject stays forgotten: a later append
     * under it is refused, never given a fresh key.  evs_subject_master: the
     * check that proves which master key made the keys (never the key).
     * event_stream_metadata.encrypt: the "$encrypt" value in force, so the
     * stream row's trigger refuses events that are not sealed envelopes in
     * an encrypted stream: a server that has not yet seen the metadata
     * another server wrote cannot store plaintext there (it is told EV002,
     * reads the metadata, seals and retries).
     */
    {6, "crypto-shredding: evs_subject_keys, evs_subject_master, encrypted streams refuse plaintext",
     "ALTER TABLE event_stream_metadata ADD COLUMN encrypt text;\n"
     "CREATE TABLE evs_subject_keys (\n"
     "  subject text COLLATE \"C\" PRIMARY KEY,\n"
     "  wrapped bytea,\n"
     "  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),\n"
     "  forgotten_at timestamptz,\n"
     "  CHECK ((wrapped IS NULL) = (forgotten_at IS NOT NULL)));\n"
     "CREATE TABLE evs_subject_master (\n"
     "  id integer PRIMARY KEY CHECK (id = 1),\n"
     "  check_blob bytea NOT NULL,\n"
     "  created_at timestamptz NOT NULL DEFAULT clock_timestamp());\n"
     /* the subject's key, stored first if p_wrapped is given and the subject has no row: one key per subject
        however many servers create it at once (the loser's INSERT waits for the winner, then reads its row) */
     "CREATE FUNCTION evs_subject_key(p_subject text, p_wrapped bytea)\n"
     "  RETURNS TABLE (o_state integer, o_wrapped bytea) LANGUAGE plpgsql AS $f$\n"
     "BEGIN\n"
     "  IF p_wrapped IS NOT NULL THEN\n"
     "    INSERT INTO evs_subject_keys (subject, wrapped) VALUES (p_subject, p_wrapped) ON CONFLICT (subject) DO NOTHING;\n"
     "    IF FOUND THEN RETURN QUERY SELECT 1, p_wrapped; RETURN; END IF;\n"
     "  END IF;\n"
     "  RETURN QUERY SELECT CASE WHEN k.wrapped IS NULL THEN 2 ELSE 1 END, k.wrapped\n"
     "    FROM evs_subject_keys k WHERE k.subject = p_subject;\n"
     "END\n"
     "$f$;\n"
     /* forget: the wrapped key dropped for good, every server told (NOTIFY at commit); false: no such subject */
     "CREATE FUNCTION evs_forget_subject(p_subject text) RETURNS boolean LANGUAGE plpgsql AS $f$\n"
     "BEGIN\n"
     "  UPDATE evs_subject_keys SET wrapped = NULL, forgotten_at = clock_timestamp()\n"
     "    WHERE subject = p_subject AND wrapped IS NOT NULL;\n"
     "  IF FOUND THEN PERFORM pg_notify('" EVS_PG_KEYS_CHANNEL "', p_subject); RETURN true; END IF;\n"
     "  RETURN EXISTS (SELECT 1 FROM evs_subject_keys k WHERE k.subject = p_subject);\n"
     "END\n"
     "$f$;\n"
     "CREATE FUNCTION evs_subject_master_check(p_check bytea) RETURNS bytea LANGUAGE plpgsql AS $f$\n"
     "BEGIN\n"
     "  IF p_check IS NOT NULL THEN\n"
     "    INSERT INTO evs_subject_master (id, check_blob) VALUES (1, p_check) ON CONFLICT (id) DO NOTHING;\n"
     "  END IF;\n"
     "  RETURN (SELECT m.check_blob FROM evs_subject_master m WHERE m.id = 1);\n"
     "END\n"
     "$f$;\n"
     /* the stream row's trigger (migration 3) also refuses plaintext in an encrypted stream: one probe of
        event_stream_metadata as before; only an encrypted stream's new events are looked at.  A BEFORE INSERT
        for a stream that exists is followed by the ON CONFLICT's BEFORE UPDATE, which knows the old version */
     EVS_REFUSE_HEAD EVS_REFUSE_TAIL},
    /*
     * The write path's lookups plan as index lookups however young the
     * tables are.  plpgsql keeps a statement's generic plan for the life of
     * the session, and a generic plan made while event_store or
     * event_streams were nearly empty (no statistics yet: ten pages
     * assumed) is a sequential scan: each append then reads the whole table
     * to look its event ids and streams up, and appends slow down as the
     * store grows until autovacuum's next ANALYZE (at most a minute, each
     * time) replans them.  Measured: 8-client appends to a fresh database
     * fell from 3,742 to 1,739 appends/s over three 3 s rounds
     * (docs/benchmarks.md).  Every lookup these functions make has an
     * index (event_id, the stream's name, the metadata's name, the
     * stream's positions), so a sequential scan is never the better plan.
     */
    {7, "appends plan index lookups on young tables",
     EVS_ALTER_APPEND " SET enable_seqscan = off;\n"
     EVS_ALTER_BATCH " SET enable_seqscan = off;\n"
     "ALTER FUNCTION evs_refuse_tombstoned() SET enable_seqscan = off;\n"},
    /*
     * The write path's statements are planned once per session, not once
     * per call.  plpgsql plans a statement with parameters afresh for each
     * call ("custom plans") until it judges a plan without them no dearer;
     * the INSERT ... SELECT of the append functions never got there, so
     * every append paid the planner: 15 % of the backend's CPU in a profile
     * of one-event appends, and 0.28 against 0.18 ms a call without the
     * WAL flush (docs/benchmarks.md).  Each statement has one good plan
     * whatever the arrays hold (index lookups; migration 7 keeps them so
     * on young tables), so the generic plan is always the right one.  A
     * later migration that re-creates one of these functions must set both
     * settings again: CREATE OR REPLACE drops a function's SET clauses.
     */
    {8, "append functions plan once per session",
     EVS_ALTER_APPEND " SET plan_cache_mode = force_generic_plan;\n"
     EVS_ALTER_BATCH " SET plan_cache_mode = force_generic_plan;\n"
     "ALTER FUNCTION evs_refuse_tombstoned() SET plan_cache_mode = force_generic_plan;\n"},
    /*
     * evs_append_batch reads its events' rows by index from the arrays
     * instead of unnest()ing eleven arrays together.  unnest of several
     * arrays is a ROWS FROM of eleven function scans, each with its own
     * tuplestore, whose tuple array alone is 16 KB: a batch's INSERT set
     * up over 176 KB of executor memory and gave it back at its end, and
     * glibc handed the top of the heap back to the kernel and took it
     * again at every call (brk: 8-15 % of the backend's samples).  The arrays are plpgsql
     * arguments, expanded once per call, so p_data[i] is a direct lookup.
     * Measured with pgbench, batches of 8 one-event appends without the WAL
     * flush: 0.73 -> 0.48 ms a call (docs/benchmarks.md).  CREATE OR
     * REPLACE drops the function's settings: migrations 7 and 8's are set
     * again.
     */
    {9, "evs_append_batch inserts its rows by index, not through unnest",
     "CREATE OR REPLACE FUNCTION " EVS_BATCH_V4_UPTO_ROWS EVS_BATCH_ROWS_V9 EVS_BATCH_TAIL_V4
     EVS_ALTER_BATCH "\n"
     "  " EVS_PLAN_ONCE ";\n"},
    /*
     * A group commit costs fewer statements and no trigger calls.
     * Migration 3's trigger ran for every stream row an append wrote, twice
     * for an existing stream (before the upsert's insert, then before its
     * update), and each call probed event_stream_metadata: sixteen calls
     * for a batch of eight appends, though few streams ever have a
     * tombstone or "$encrypt".  Now event_streams.guarded says which do:
     * event_stream_metadata's trigger keeps it, in the transaction that
     * writes the metadata (which holds the head lock: no append can pass
     * between), and a new stream row takes it from the check it runs.  An
     * update of a stream row runs the check only WHEN the row is guarded
     * and its version moves; an insert, a new stream, always runs it.
     * evs_append_batch updates the existing streams' rows and inserts only
     * the new ones, reads the streams' versions and looks for stored ids in
     * one statement, moves the head row with its event INSERT, and answers
     * with RETURN NEXT: four statements where it ran seven (the C side now
     * also prepares its call once per connection, pg_append.c).  evs_append
     * likewise updates its stream's row, inserts it only for a new stream,
     * and moves the head row inside its event INSERT.
     * Measured with pgbench, batches of 8 one-event appends without the
     * WAL flush: 0.51 -> 0.42 ms a call on a quiet machine; bench_pg W2
     * ~+20 % (docs/benchmarks.md).  The functions re-created here get
     * migrations 7 and 8's settings again.
     */
    {10, "appends fire the stream row's trigger only for guarded streams; fewer statements per append and batch",
     /* the old trigger goes first: it would refuse the marking of a hard-deleted stream's row */
     "ALTER TABLE event_streams ADD COLUMN guarded boolean NOT NULL DEFAULT false;\n"
     "DROP TRIGGER event_streams_tombstone ON event_streams;\n"
     "UPDATE event_streams s SET guarded = true FROM event_stream_metadata m\n"
     "  WHERE m.aggregate_id = s.aggregate_id AND (m.tombstone OR m.encrypt IS NOT NULL);\n"
     EVS_REFUSE_HEAD "  NEW.guarded := true;\n" EVS_REFUSE_TAIL
     "ALTER FUNCTION evs_refuse_tombstoned() " EVS_PLAN_ONCE ";\n"
     "CREATE TRIGGER event_streams_tombstone BEFORE INSERT ON event_streams\n"
     "  FOR EACH ROW EXECUTE FUNCTION evs_refuse_tombstoned();\n"
     "CREATE TRIGGER event_streams_guarded BEFORE UPDATE ON event_streams\n"
     "  FOR EACH ROW WHEN (NEW.guarded AND NEW.version IS DISTINCT FROM OLD.version)\n"
     "  EXECUTE FUNCTION evs_refuse_tombstoned();\n"
     "CREATE FUNCTION evs_guard_stream() RETURNS trigger LANGUAGE plpgsql\n"
     "  " EVS_PLAN_ONCE " AS $f$\n"
     "BEGIN\n"
     "  UPDATE event_streams s SET guarded = (NEW.tombstone OR NEW.encrypt IS NOT NULL)\n"
     "    WHERE s.aggregate_id = NEW.aggregate_id AND s.guarded <> (NEW.tombstone OR NEW.encrypt IS NOT NULL);\n"
     "  RETURN NULL;\n"
     "END\n"
     "$f$;\n"
     "CREATE TRIGGER event_stream_metadata_guard AFTER INSERT OR UPDATE ON event_stream_metadata\n"
     "  FOR EACH ROW EXECUTE FUNCTION evs_guard_stream();\n"
     "CREATE OR REPLACE FUNCTION " EVS_APPEND_HEAD EVS_APPEND_HEADROW_V10 EVS_APPEND_EVENTS EVS_APPEND_STREAM_V10
     EVS_APPEND_TAIL
     EVS_ALTER_APPEND " " EVS_PLAN_ONCE ";\n"
     "CREATE OR REPLACE FUNCTION " EVS_BATCH_SIG EVS_BATCH_VARS_V10 EVS_BATCH_ARRAYS EVS_BATCH_IDS_V10
     EVS_BATCH_ONE_BY_ONE EVS_BATCH_LOOP_V10 EVS_BATCH_CHECK EVS_BATCH_FIRST_V10 EVS_BATCH_LOOP_END
     EVS_BATCH_INSERT_V10 EVS_BATCH_ROWS_V9 EVS_BATCH_TAIL_V10
     EVS_ALTER_BATCH "\n"
     "  " EVS_PLAN_ONCE ";\n"},
};

#define NMIGRATIONS (sizeof MIGRATIONS / sizeof MIGRATIONS[0])

static int exec_ok(PGconn *c, const char *sql, const char *what) {
    PGresult *r = PQexec(c, sql);
    int rc = EVS_OK;
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) rc = evs__pg_err(c, r, what);
    PQclear(r);
    return rc;
}

int evs__pg_migrate(PGconn *c) {
    int rc, locked = 0, in_tx = 0;
    PGresult *r = NULL;
    char what[160];
    if ((rc = exec_ok(c, "SET client_min_messages = warning", "postgresql: set client_min_messages"))) return rc;
    if ((rc = exec_ok(c, "SELECT pg_advisory_lock(" EVS_PG_MIGRATE_LOCK ")", "postgresql: take the migration lock")))
        return rc;
    locked = 1;
    if ((rc = exec_ok(c,
                      "CREATE TABLE IF NOT EXISTS event_store_migrations (version integer PRIMARY KEY, "
                      "description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
                      "postgresql: create event_store_migrations")))
        goto out;
    r = PQexec(c, "SELECT coalesce(max(version), 0) FROM event_store_migrations");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        rc = evs__pg_err(c, r, "postgresql: read the schema version");
        goto out;
    }
    int have = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    r = NULL;
    if (have > MIGRATIONS[NMIGRATIONS - 1].version) {
        rc = evs__err(EVS_EFORMAT, "postgresql: the database's evstore schema is version %d, this build knows up to %d; "
                                   "use a newer evstore", have, MIGRATIONS[NMIGRATIONS - 1].version);
        goto out;
    }
    for (size_t i = 0; i < NMIGRATIONS; i++) {
        const migration *m = &MIGRATIONS[i];
        if (m->version <= have) continue;
        snprintf(what, sizeof what, "postgresql: migration %d (%s)", m->version, m->what);
        if ((rc = exec_ok(c, "BEGIN", what))) goto out;
        in_tx = 1;
        if ((rc = exec_ok(c, m->sql, what))) goto out;
        char ver[16];
        snprintf(ver, sizeof ver, "%d", m->version);
        const char *params[2] = {ver, m->what};
        r = PQexecParams(c, "INSERT INTO event_store_migrations (version, description) VALUES ($1, $2)", 2, NULL,
                         params, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            rc = evs__pg_err(c, r, what);
            goto out;
        }
        PQclear(r);
        r = NULL;
        if ((rc = exec_ok(c, "COMMIT", what))) goto out;
        in_tx = 0;
    }
out:
    PQclear(r);
    if (in_tx) {
        PGresult *rb = PQexec(c, "ROLLBACK");
        PQclear(rb);
    }
    if (locked) {
        /* keep the first error's message: the unlock's result is not reported */
        PGresult *u = PQexec(c, "SELECT pg_advisory_unlock(" EVS_PG_MIGRATE_LOCK ")");
        PQclear(u);
    }
    return rc;
}
