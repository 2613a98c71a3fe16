/* rt: the runtimes a worker offers (python3, sh, c, ...).
 *
 * A runtimes file holds sections:
 *
 *     [python3]
 *     file = main.py
 *     run = /usr/bin/python3 -I main.py
 *
 *     [c]
 *     file = main.c
 *     build = /usr/bin/gcc -O2 -o main main.c
 *     run = ./main
 *
 * Commands are split on blanks; single and double quotes group words. A
 * command whose program does not exist makes the runtime unavailable (it is
 * dropped with a log line) rather than failing every run. */
#ifndef WORKER_RT_H
#define WORKER_RT_H

#include <stddef.h>

typedef struct rt_runtime {
    char *name;
    char *file;        /* name of the source file in the work dir */
    char **run_argv;   /* NULL-terminated */
    char **build_argv; /* NULL-terminated, or NULL when there is no build step */
} rt_runtime_t;

typedef struct rt_table {
    rt_runtime_t *v;
    size_t n;
} rt_table_t;

/* Parses a runtimes file into t (appending; a section that repeats a name
 * replaces it). Returns -1 with "FILE:LINE: reason" in err. */
int rt_load_file(rt_table_t *t, const char *path, char *err, size_t errlen);
/* Same, from memory (used by the file loader and by tests/fuzzing). */
int rt_load_string(rt_table_t *t, const char *text, size_t len, const char *origin, char *err,
                   size_t errlen);
/* Adds the built-in python3, sh and c runtimes whose programs exist. */
int rt_load_defaults(rt_table_t *t);
/* Drops runtimes whose programs are missing; logs each. */
void rt_prune_missing(rt_table_t *t);
const rt_runtime_t *rt_find(const rt_table_t *t, const char *name);
/* Splits a command line into a NULL-terminated argv; NULL on bad quoting. */
char **rt_split(const char *cmd, char *err, size_t errlen);
void rt_argv_free(char **argv);
void rt_free(rt_table_t *t);

#endif
