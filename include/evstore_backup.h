/*
 * evstore_backup.h — online backup of a store directory, restore to a
 * position or a time, and verification of a backup (`evstore backup`,
 * `restore`, `verify-backup`; docs/operations.md).
 *
 * A backup is a directory: the log's segments, a snapshot of the index,
 * copies of the other state directories (consumers/, schemas/, sagas/,
 * app/) and a manifest, backup.json, written last.  It is consistent at one
 * point of the global order, the backup point: the head of the index
 * snapshot.  Every event acknowledged before the backup started lies at or
 * below it; nothing after it is in the backup.  See src/backup/backup.c for
 * why the order of the copies makes that hold while another process
 * appends.
 *
 * Thread and process rules: these functions work on directories, not on an
 * open evs_store.  They may run while another process (evstore serve, a
 * program using the library) has the store open and appends.  They must not
 * be called by a process that itself has the store (or its bus, sagas or
 * schema registry) open: LMDB forbids opening one environment twice in one
 * process.
 */
#ifndef EVSTORE_BACKUP_H
#define EVSTORE_BACKUP_H

#include <stdint.h>

#include "evstore.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The manifest's name inside a backup directory. */
#define EVS_BACKUP_MANIFEST "backup.json"
/* Present while a backup is being written; a backup holding it is refused by restore and verify. */
#define EVS_BACKUP_PARTIAL "backup.partial"

/* Backup flags. */
#define EVS_BACKUP_INCREMENTAL 0x1u /* DEST must hold a backup of the same store (else: error) */
#define EVS_BACKUP_LINK 0x2u        /* hard-link sealed segments when DEST is on the same filesystem */

typedef struct evs_backup_report {
    uint64_t head;             /* the backup point: last global position in the backup (0: empty) */
    uint64_t previous_head;    /* incremental: the head of the backup it updated */
    int incremental;           /* 1 when an existing backup in DEST was updated */
    uint64_t files;            /* files in the manifest */
    uint64_t files_copied, files_linked, files_reused;
    uint64_t bytes_read;       /* bytes read from the store */
    uint64_t bytes_written;    /* bytes written to DEST (holes not counted) */
    uint64_t apparent_bytes;   /* sum of the files' sizes (ls -l) */
    uint64_t real_bytes;       /* blocks the files occupy (du); linked files included */
    int64_t time_ns;           /* when the backup point was taken */
    char store_id[17];         /* 16 hex digits: the salt of the store's first segment */
} evs_backup_report;

/*
 * Back up the store in dir to dest.  dest must not exist, be empty, or hold
 * a backup of the same store (which is then updated incrementally: sealed
 * segments already there and unchanged in the store are kept; the rest is
 * copied again).  flags: EVS_BACKUP_*.  The report (may be NULL) says what
 * was done.  On failure dest holds EVS_BACKUP_PARTIAL and is refused by
 * restore and verify until a backup into it succeeds (a dest holding it and
 * no manifest, left by a first backup, is backed up into from the start,
 * over what is there); the store is never
 * changed.  Errors: EVS_EINVAL (dest is not empty and holds no backup, or a
 * backup of another store), EVS_ENOTFOUND (dir is not a store), EVS_EIO,
 * EVS_ECORRUPT (the store's first segment is damaged).
 */
int evs_backup(const char *dir, const char *dest, unsigned flags, evs_backup_report *rep);

/* Restore options. */
typedef struct evs_restore_opts {
    int has_position;          /* keep only appends whose events are all <= to_position */
    uint64_t to_position;
    int has_time;              /* keep only appends recorded at or before to_time_ns */
    int64_t to_time_ns;
    const char *keys_from;     /* NULL, or a live store whose subject keys the restored store gets */
} evs_restore_opts;

typedef struct evs_restore_report {
    uint64_t backup_head;      /* the backup's head */
    uint64_t head;             /* the restored store's head */
    uint64_t dropped_events;   /* backup_head - head */
    uint64_t consumers_removed;/* consumers whose checkpoint lay beyond the restored head */
    uint64_t key_files;        /* key files copied from keys_from (0: none, or it has no key store) */
    char notes[1024];          /* what was left out and why, "" when nothing */
} evs_restore_report;

/*
 * Create a new store in dir from the backup, optionally cut at a position
 * or a time (o may be NULL).  Appends are atomic, so the cut falls between
 * appends: an append with any event after the point is dropped whole.  A
 * cut store gets its index rebuilt from the log, loses the derived
 * app/data.mdb and sagas/data.mdb (rebuilt by their layers; the definitions
 * beside them are kept), and loses the consumers whose
 * checkpoint lies beyond its head (named in rep->notes).  With
 * o->keys_from, the subject keys of that live store are copied in
 * (evs_subject_keys_copy) before the store is renamed into place; a store
 * without a key store gives none.  keys_from is checked before anything is
 * written: EVS_ENOTFOUND when it is not a store.
 *
 * dir must not exist or be empty.  The store is built in a directory
 * beside it (DIR's parent/.NAME.restoring-PID, same filesystem), made
 * durable and renamed onto dir, so dir is never seen half restored: after
 * a failure, a crash or a kill it is as it was (absent or empty) and the
 * restore can simply be run again; that run removes what an interrupted
 * one left beside dir.  dir must therefore not be a mount point.  The
 * backup is read only; every block copied is checked against the manifest.
 */
int evs_restore(const char *backup, const char *dir, const evs_restore_opts *o, evs_restore_report *rep);

typedef struct evs_verify_report {
    uint64_t files;
    uint64_t bytes;            /* bytes checked */
    uint64_t records, events;  /* log records (appends) and events verified */
    uint64_t head;
    uint64_t errors;
    char first_error[600];     /* "log/00000002.seg offset 81920: checksum mismatch" */
} evs_verify_report;

/*
 * Check every file of a backup against its manifest (size, checksum of
 * every 1 MiB block, zeros after the copied data) and every log record's
 * checksum up to the backup point.  EVS_OK when all hold, EVS_ECORRUPT
 * when anything is damaged or missing (rep->first_error names the file and
 * offset), EVS_EINVAL / EVS_ENOTFOUND when backup is not a (complete)
 * backup.
 */
int evs_verify_backup(const char *backup, evs_verify_report *rep);

#ifdef __cplusplus
}
#endif

#endif
