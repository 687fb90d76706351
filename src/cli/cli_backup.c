/*
 * cli_backup.c — the backup commands: option parsing and JSON reports over
 * evs_backup, evs_restore and evs_verify_backup (include/evstore_backup.h).
 * They work on directories, so they run while `evstore serve` (or another
 * program) holds the store: the backup copies a consistent point of it.
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "cli/cli_backup.h"
#include "evstore_backup.h"

static const char evs_backup_help[] =
    "Usage: evstore backup -d DIR [--incremental] [--link] DEST\n"
    "\n"
    "Copy the store in DIR to the directory DEST, consistent at one point of the\n"
    "global order (the head when the backup started; every event acknowledged\n"
    "before it is in the backup, nothing after it), while the store may be open\n"
    "and appended to by another process.  Writes DEST/backup.json last: the\n"
    "head, the time, the store id, and every file's size and block checksums.\n"
    "\n"
    "DEST must not exist, be empty, or hold a backup of the same store: that\n"
    "backup is updated (incremental: sealed segments already there are kept,\n"
    "the newest segment, the index and the consumers' state are copied again).\n"
    "A DEST an interrupted backup left (backup.partial) takes a rerun: a first\n"
    "backup is taken again from the start (all else in DEST removed first), an\n"
    "update is done again.\n"
    "Prints a JSON report: head, files copied/linked/reused, bytes read and\n"
    "written, apparent_bytes (ls -l) and real_bytes (du: holes not counted).\n"
    "\n"
    "Options:\n"
    "  -d, --dir DIR     the store directory (default: $EVSTORE_DIR)\n"
    "  --incremental     require DEST to hold a backup to update\n"
    "  --link            hard-link sealed segments when DEST is on the same\n"
    "                    filesystem (they then share blocks with the store: a\n"
    "                    guard against deletion, not against damage)\n"
    "  -h, --help        show this help\n"
    "\n"
    "Exit status: 0 done, 1 usage, 2 no store at DIR, 4 DEST is not empty and\n"
    "holds no backup of this store (nothing is written), 5 I/O error (also:\n"
    "DEST cannot be created).\n";

static const char evs_restore_help[] =
    "Usage: evstore restore BACKUP DIR [--to-position P | --to-time T]\n"
    "\n"
    "Create a new store in DIR from the backup in BACKUP.  With --to-position\n"
    "or --to-time, keep only the appends whose events are all at or before P\n"
    "(an append is atomic: one that straddles P is dropped whole), or that\n"
    "were recorded at or before T (RFC 3339 or ns since the epoch).  A cut\n"
    "store is a new store: positions after its head are free again.  Its\n"
    "index is rebuilt from the log, app/data.mdb and sagas/data.mdb (derived:\n"
    "snapshots, command results, the saga catalog) are left out, and consumers\n"
    "whose checkpoint lies beyond its head are removed (named in the report's\n"
    "notes).  Every block copied is checked against the backup's\n"
    "manifest.  Prints a JSON report: backup_head, head, dropped_events.\n"
    "\n"
    "DIR must not exist or be empty: restore never writes over a store.  The\n"
    "store is built beside DIR (.DIR.restoring-PID) and renamed onto it when\n"
    "complete and durable, so an interrupted restore leaves DIR as it was: run\n"
    "it again (that run removes what the interrupted one left).  DIR must not\n"
    "be a mount point.  DIR may be \".\" or a symbolic link: the directory it\n"
    "leads to is replaced by a new directory (the link stays).  The new one\n"
    "keeps the empty directory's mode, not its owner, ACLs or extended\n"
    "attributes, and a shell sitting in DIR must `cd` into it again.\n"
    "\n"
    "Options:\n"
    "  --to-position P   cut after global position P\n"
    "  --to-time T       cut after the appends recorded at or before T\n"
    "  --keys-from LIVE  copy the subject keys of encrypted streams from the live\n"
    "                    store LIVE (backups never hold keys: subjects forgotten\n"
    "                    since the backup stay forgotten); checked before anything\n"
    "                    is written; a store without a key store gives 0 keys\n"
    "  -h, --help        show this help\n"
    "\n"
    "Exit status: 0 done, 1 usage (also: no store at LIVE), 2 no backup at\n"
    "BACKUP, 4 DIR is not empty, is a mount point or does not name a\n"
    "directory, or BACKUP is incomplete, 5 the backup is damaged or an I/O\n"
    "error (also: DIR's parent cannot be created).\n";

static const char evs_verify_help[] =
    "Usage: evstore verify-backup BACKUP\n"
    "\n"
    "Check every file of the backup against its manifest (size, the checksum\n"
    "of every 1 MiB block, zeros after the copied data) and every log record's\n"
    "checksum up to the backup point.  Prints a JSON report; on damage exits 5\n"
    "and names the file and offset on stderr.\n"
    "\n"
    "Options:\n"
    "  -h, --help        show this help\n"
    "\n"
    "Exit status: 0 the backup is sound, 1 usage, 2 no backup at BACKUP,\n"
    "4 BACKUP is incomplete, 5 damage found (or an I/O error).\n";

int evs__cli_backup(int argc, char **argv) {
    evs__cli_args a;
    const char *opt_dir = NULL, *dir = NULL, *dest = NULL;
    unsigned flags = 0;
    int code = EVS_CLI_OK, t;
    evs__cli_args_init(&a, "backup", argc, argv);
    while ((t = evs__cli_args_next(&a)) != EVS_CLI_END) {
        if (t == EVS_CLI_POSITIONAL) {
            if (dest) return evs__cli_usage(a.cmd, "unexpected argument \"%s\"", a.arg);
            dest = a.arg;
        } else if (evs__cli_is(&a, "--help", "-h")) {
            fputs(evs_backup_help, stdout);
            return evs__cli_finish_output(EVS_CLI_OK);
        } else if (evs__cli_is(&a, "--dir", "-d")) {
            if ((code = evs__cli_value(&a, &opt_dir))) return code;
        } else if (evs__cli_is(&a, "--incremental", NULL)) {
            if ((code = evs__cli_flag(&a))) return code;
            flags |= EVS_BACKUP_INCREMENTAL;
        } else if (evs__cli_is(&a, "--link", NULL)) {
            if ((code = evs__cli_flag(&a))) return code;
            flags |= EVS_BACKUP_LINK;
        } else {
            return evs__cli_unknown(&a);
        }
    }
    if ((code = evs__cli_dir(&a, opt_dir, &dir))) return code;
    if (!dest) return evs__cli_usage(a.cmd, "missing DEST, the backup directory");
    if (!dest[0]) return evs__cli_usage(a.cmd, "DEST: the backup directory name is empty");
    evs_backup_report r;
    evs__cli_clear_error();
    int rc = evs_backup(dir, dest, flags, &r);
    if (rc) return evs__cli_lib_fail(rc, "backup %s to %s", dir, dest);
    char ts[40];
    evs_time_format(r.time_ns, ts);
    printf("{\"ok\":true,\"head\":%llu,\"incremental\":%s,\"previous_head\":%llu,\"time\":\"%s\","
           "\"store_id\":\"%s\",\"files\":%llu,\"files_copied\":%llu,\"files_linked\":%llu,"
           "\"files_reused\":%llu,\"bytes_read\":%llu,\"bytes_written\":%llu,\"apparent_bytes\":%llu,"
           "\"real_bytes\":%llu}\n",
           (unsigned long long)r.head, r.incremental ? "true" : "false", (unsigned long long)r.previous_head, ts,
           r.store_id, (unsigned long long)r.files, (unsigned long long)r.files_copied,
           (unsigned long long)r.files_linked, (unsigned long long)r.files_reused,
           (unsigned long long)r.bytes_read, (unsigned long long)r.bytes_written,
           (unsigned long long)r.apparent_bytes, (unsigned long long)r.real_bytes);
    return evs__cli_finish_output(EVS_CLI_OK);
}

int evs__cli_restore(int argc, char **argv) {
    evs__cli_args a;
    const char *backup = NULL, *dir = NULL, *val, *keys_from = NULL;
    evs_restore_opts o;
    int code = EVS_CLI_OK, t;
    memset(&o, 0, sizeof o);
    evs__cli_args_init(&a, "restore", argc, argv);
    while ((t = evs__cli_args_next(&a)) != EVS_CLI_END) {
        if (t == EVS_CLI_POSITIONAL) {
            if (!backup) backup = a.arg;
            else if (!dir) dir = a.arg;
            else return evs__cli_usage(a.cmd, "unexpected argument \"%s\"", a.arg);
        } else if (evs__cli_is(&a, "--help", "-h")) {
            fputs(evs_restore_help, stdout);
            return evs__cli_finish_output(EVS_CLI_OK);
        } else if (evs__cli_is(&a, "--to-position", NULL)) {
            if ((code = evs__cli_value(&a, &val))) return code;
            if ((code = evs__cli_u64(&a, "--to-position", val, UINT64_MAX - 1, &o.to_position))) return code;
            o.has_position = 1;
        } else if (evs__cli_is(&a, "--to-time", NULL)) {
            if ((code = evs__cli_value(&a, &val))) return code;
            if (evs_time_parse(val, strlen(val), &o.to_time_ns))
                return evs__cli_usage(a.cmd, "--to-time %s: not an RFC 3339 time or a count of ns", val);
            o.has_time = 1;
        } else if (evs__cli_is(&a, "--keys-from", NULL)) {
            if ((code = evs__cli_value(&a, &keys_from))) return code;
        } else {
            return evs__cli_unknown(&a);
        }
    }
    if (!backup || !dir) return evs__cli_usage(a.cmd, "expected BACKUP and DIR");
    if (o.has_position && o.has_time) return evs__cli_usage(a.cmd, "give --to-position or --to-time, not both");
    /* a misspelt LIVE is a bad argument: refused (exit 1) before anything runs; evs_restore checks it
       again before writing, for the library's callers */
    char live_log[4200];
    struct stat st;
    snprintf(live_log, sizeof live_log, "%s/log", keys_from ? keys_from : "");
    if (keys_from && (stat(live_log, &st) || !S_ISDIR(st.st_mode)))
        return evs__cli_usage(a.cmd, "--keys-from %s: no store there (no %s)", keys_from, live_log);
    o.keys_from = keys_from;
    evs_restore_report r;
    evs__cli_clear_error();
    int rc = evs_restore(backup, dir, &o, &r);
    if (rc) return evs__cli_lib_fail(rc, "restore %s into %s", backup, dir);
    printf("{\"ok\":true,\"backup_head\":%llu,\"head\":%llu,\"dropped_events\":%llu,\"consumers_removed\":%llu",
           (unsigned long long)r.backup_head, (unsigned long long)r.head, (unsigned long long)r.dropped_events,
           (unsigned long long)r.consumers_removed);
    if (keys_from) printf(",\"key_files\":%llu", (unsigned long long)r.key_files);
    if (r.notes[0]) {
        fputs(",\"notes\":", stdout);
        evs__cli_json_str(stdout, r.notes, strlen(r.notes));
    }
    fputs("}\n", stdout);
    return evs__cli_finish_output(EVS_CLI_OK);
}

int evs__cli_verify_backup(int argc, char **argv) {
    evs__cli_args a;
    const char *backup = NULL;
    int t;
    evs__cli_args_init(&a, "verify-backup", argc, argv);
    while ((t = evs__cli_args_next(&a)) != EVS_CLI_END) {
        if (t == EVS_CLI_POSITIONAL) {
            if (backup) return evs__cli_usage(a.cmd, "unexpected argument \"%s\"", a.arg);
            backup = a.arg;
        } else if (evs__cli_is(&a, "--help", "-h")) {
            fputs(evs_verify_help, stdout);
            return evs__cli_finish_output(EVS_CLI_OK);
        } else {
            return evs__cli_unknown(&a);
        }
    }
    if (!backup) return evs__cli_usage(a.cmd, "missing BACKUP, the backup directory");
    evs_verify_report r;
    evs__cli_clear_error();
    int rc = evs_verify_backup(backup, &r);
    if (rc && rc != EVS_ECORRUPT) return evs__cli_lib_fail(rc, "verify-backup %s", backup);
    printf("{\"ok\":%s,\"head\":%llu,\"files\":%llu,\"bytes\":%llu,\"records\":%llu,\"events\":%llu,"
           "\"errors\":%llu",
           rc ? "false" : "true", (unsigned long long)r.head, (unsigned long long)r.files,
           (unsigned long long)r.bytes, (unsigned long long)r.records, (unsigned long long)r.events,
           (unsigned long long)r.errors);
    if (r.first_error[0]) {
        fputs(",\"first_error\":", stdout);
        evs__cli_json_str(stdout, r.first_error, strlen(r.first_error));
    }
    fputs("}\n", stdout);
    if (rc)
        return evs__cli_fail(EVS_CLI_IO, "verify-backup %s: %llu problem%s; first: %s", backup,
                             (unsigned long long)r.errors, r.errors == 1 ? "" : "s", r.first_error);
    return evs__cli_finish_output(EVS_CLI_OK);
}
