/*
 * backup_internal.h — what the backup files share (src/backup/): the file
 * records of a manifest, copying with block checksums and holes, LMDB
 * snapshots, the manifest's reading and writing, and small directory
 * helpers.  backup.c takes backups; restore.c restores them; verify.c
 * checks them; files.c holds the rest.  The method and its reasons are at
 * the top of backup.c.
 */
#ifndef EVS_BACKUP_INTERNAL_H
#define EVS_BACKUP_INTERNAL_H

#include <stdint.h>
#include <sys/stat.h>

#include "evstore_backup.h"
#include "log/log.h"

#define BK_BLOCK (1u << 20)   /* checksum granularity, and the copy buffer */
#define BK_CHUNK (64u << 10)  /* holes are made at this granularity */
#define BK_PATH 4096
#define BK_SEG_HDR 64u
#define BK_LOG_FORMAT 1

/* ------------------------------------------------------------ file records */

typedef struct evs__bk_file {
    char path[256];            /* relative to the backup: "log/00000001.seg" */
    uint64_t size;             /* the file's size */
    uint64_t data_size;        /* bytes copied; the rest is zero */
    uint32_t *crc;             /* one per BK_BLOCK of [0, data_size) */
    size_t ncrc;
    const char *how;           /* "copied", "linked", "reused", "snapshot" */
    int64_t src_mtime_ns;      /* the source's, for reuse by a later incremental backup */
    uint64_t src_size;
} evs__bk_file;

typedef struct evs__bk_list {
    evs__bk_file *v;
    size_t n, cap;
} evs__bk_list;

typedef struct evs__bk_manifest {
    char store_id[17];
    uint64_t head, next_gpos;
    evs_lsn end;
    uint32_t index_format;
    int64_t time_ns;
    evs__bk_list files;
} evs__bk_manifest;

void evs__bk_list_free(evs__bk_list *l);
/* A new zeroed entry at the end of l; NULL when out of memory (error set).  Owned by l. */
evs__bk_file *evs__bk_list_add(evs__bk_list *l, const char *path);
const evs__bk_file *evs__bk_list_find(const evs__bk_list *l, const char *path);
int64_t evs__bk_mtime_ns(const struct stat *st);
int evs__bk_fsync_dir(const char *path);
/* syncfs of dir's filesystem: everything written there durable (before a manifest). */
int evs__bk_sync_dest(const char *dir);
/* mkdir path / mkdir -p path; EVS_EIO naming the path and the OS's reason when it cannot be made. */
int evs__bk_mkdir_p1(const char *path);
int evs__bk_mkdir_all(const char *path);
/* Create every directory of rel's parent path under root (EVS_EIO as above). */
int evs__bk_mkdirs_for(const char *root, const char *rel);
/*
 * Read src's first `limit` bytes into dst_tmp (NULL: read and checksum
 * only), zero chunks as holes, sized like src; f gets sizes and block
 * checksums (f->crc malloc'd into f, freed by evs__bk_list_free or the
 * caller); with expect, a block that differs is EVS_ECORRUPT naming label
 * and offset.
 */
int evs__bk_copy_range(const char *src, const char *label, const char *dst_tmp, uint64_t limit,
                       const evs__bk_file *expect, evs__bk_file *f, uint64_t *read_bytes, uint64_t *written);
/* The same into root/rel through rel.tmp and a rename. */
int evs__bk_copy_into(const char *src, const char *root, const char *rel, uint64_t limit, const evs__bk_file *expect,
                      evs__bk_file *f, uint64_t *rd, uint64_t *wr);
/* A compact copy of the LMDB environment in env_dir (read-only open) into the file out. */
int evs__bk_env_snapshot(const char *env_dir, const char *out);
/* The checkpoint (end, next position) and format of an index snapshot file. */
int evs__bk_index_point(const char *file, evs_lsn *end, uint64_t *next_gpos, uint32_t *format);
int evs__bk_manifest_write(const char *dest, const evs__bk_manifest *m, const evs_backup_report *r);
/* Read backup/backup.json (EVS_ENOTFOUND: none; EVS_EINVAL: not one).  m->files is the caller's. */
int evs__bk_manifest_read(const char *backup, evs__bk_manifest *m);
/* A complete backup's manifest: refuses one holding EVS_BACKUP_PARTIAL. */
int evs__bk_open_backup(const char *backup, evs__bk_manifest *m);
/* 16 hex digits of the salt of dir's segment 1 (its magic and checksum checked). */
int evs__bk_store_id(const char *dir, char out[17]);
/* 1 when dir does not exist or is empty, 0 when it has entries, <0 on error. */
int evs__bk_dir_empty(const char *dir);
/* Remove everything below dir (not dir itself). */
void evs__bk_rm_contents(const char *dir);
/* The same, keeping dir's entry named keep (NULL: none). */
void evs__bk_rm_contents_but(const char *dir, const char *keep);

#endif
