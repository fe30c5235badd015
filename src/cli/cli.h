/* The operator commands besides running the server: `syncv3 check` and
 * `syncv3 migrate status|up`. Each prints what it found on out (problems on
 * errout, one line each) and returns the process exit status. They read the
 * same SYNCV3_* variables as the server and never start pollers or
 * listeners. */
#ifndef SYNCV3_CLI_CLI_H
#define SYNCV3_CLI_CLI_H

#include <stdio.h>

#include "base/config.h"

/* Validates the configuration, asks the homeserver for
 * /_matrix/client/versions, connects to the database and reads its schema
 * version, and checks that SYNCV3_SECRET decrypts the stored tokens. Returns
 * 0 when everything is usable, 1 otherwise. Nothing is written anywhere. */
int cli_check(config_getenv_fn get, FILE *out, FILE *errout);

/* `syncv3 migrate <args>` (args without "migrate"): "status" prints the
 * applied, latest and pending schema versions without changing anything;
 * "up" applies the pending migrations first. Needs only SYNCV3_DB. Returns 0,
 * 1 when the database cannot be used, 2 for bad arguments. */
int cli_migrate(int argc, char **argv, config_getenv_fn get, FILE *out, FILE *errout);

/* The usage lines of the commands, for --help. */
void cli_print_usage(FILE *out);

#endif
