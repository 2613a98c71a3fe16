/* wb_spawn: the unsandboxed baseline of an evaluation (`wsbench spawn`).
 *
 * Runs one command to completion over and over, at most -c at once, each in
 * a directory of its own (a "slot") into which the program file is written
 * just before the run, as the worker writes it into a slot's work dir. A
 * run is timed from writing that file until the child is reaped and its
 * stdout and stderr are at end of file: what the worker's own evaluation
 * wall time covers, without the sandbox and without the websocket. The same
 * driver runs the command bare (fork/exec) or under another sandbox (for
 * instance bwrap), with "{dir}" in any argument replaced by the slot's
 * directory. Bounded by a count, a duration and a per-run timeout. */
#ifndef BENCH_WB_SPAWN_H
#define BENCH_WB_SPAWN_H

#include <stddef.h>
#include <stdint.h>

#include "wb_hist.h"

#define WB_SPAWN_MAX_CONC 256
#define WB_SPAWN_MAX_ARGS 128

typedef struct wb_spawn_opts {
    long conc;          /* runs at once */
    long count;         /* runs to complete; 0: until the duration ends */
    double duration;    /* seconds, upper bound of the whole measurement */
    double run_timeout; /* a run older than this is killed and counted failed */
    const char *code;   /* written to file in the slot's directory before each run */
    const char *file;   /* program file name, e.g. main.py */
    const char *root;   /* existing directory for the slots (slot0, slot1, ...) */
    char *const *argv;  /* the command, NULL-terminated; "{dir}" = the slot's directory */
} wb_spawn_opts_t;

typedef struct wb_spawn_result {
    double elapsed;      /* seconds from the first start to the last completion */
    uint64_t runs;       /* runs that exited with status 0 (timed in lat) */
    uint64_t failed;     /* non-zero status, signal, or could not start */
    uint64_t timeouts;   /* of failed: killed at run_timeout */
    double cpu_self_us;  /* the driver's own CPU (user + system) */
    double cpu_child_us; /* the runs' CPU, from wait4's rusage, counted runs only */
    wb_hist_t lat;       /* per counted run, microseconds */
    char first_err[160];
} wb_spawn_result_t;

/* Copies argv into out (at most cap - 1 entries plus NULL), writing each
 * argument with every "{dir}" replaced by dir into buf. Returns 0, or -1
 * with err when out or buf are too small. */
int wb_spawn_expand(char *const *argv, const char *dir, char **out, size_t cap, char *buf,
                    size_t buflen, char *err, size_t errlen);

/* Runs o to completion (count reached, duration over, or SIGINT/SIGTERM
 * when the caller routes them to wb_spawn_stop) and fills res. Children
 * still running at the end are killed and reaped, never counted. Returns 0,
 * or -1 with err when the run could not start. */
int wb_spawn_run(const wb_spawn_opts_t *o, wb_spawn_result_t *res, char *err, size_t errlen);

/* Async-signal-safe: asks a running wb_spawn_run to stop starting runs and end. */
void wb_spawn_stop(void);

/* The `wsbench spawn` command line: argv[0] is "spawn". Returns the exit status. */
int wb_spawn_main(int argc, char **argv);

#endif
