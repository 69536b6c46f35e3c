/* tools/memkit/cli.h — shared bits of the memkit command-line tool: exit codes and the top command. */
#ifndef MK_TOOLS_CLI_H
#define MK_TOOLS_CLI_H

#include "memkit.h"

#define EXIT_MISS 1   /* a miss, or a refused store */
#define EXIT_ERR 2    /* usage, connection or server errors */
#define EXIT_WIN 3    /* lease: this caller won; recompute the value and store it */
#define EXIT_BUSY 4   /* lease: another caller is recomputing it */

/* memkit top: per-second rates of every server's stats, refreshed in place on a
 * terminal (appended blocks otherwise). iterations <= 0: until interrupted.
 * Returns the exit status. */
int cli_top(mk_client *c, int interval_ms, int iterations);

#endif /* MK_TOOLS_CLI_H */
