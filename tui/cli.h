/*
 * cli.h: the smelt subcommands. Each lives in tui/cmd_<name>.c, takes the
 * arguments after the subcommand name (argv[0] is the subcommand) and
 * returns the process exit code: 0 success, 1 failure (one message on
 * stderr), 2 usage error.
 */
#ifndef SMELT_CLI_H
#define SMELT_CLI_H

int cmd_inspect(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_diverge(int argc, char **argv);
int cmd_methods(int argc, char **argv);
int cmd_pull(int argc, char **argv);
int cmd_tui(int argc, char **argv);

/* Print "smelt: <msg>" on stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
