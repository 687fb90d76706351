/*
 * cli_backup.h — `evstore backup`, `evstore restore` and `evstore
 * verify-backup` (cli_backup.c) over the library's src/backup/.
 */
#ifndef EVS_CLI_BACKUP_H
#define EVS_CLI_BACKUP_H

int evs__cli_backup(int argc, char **argv);
int evs__cli_restore(int argc, char **argv);
int evs__cli_verify_backup(int argc, char **argv);

#endif
