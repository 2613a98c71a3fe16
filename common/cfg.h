/* cfg: command-line flags plus an optional --config FILE of `key = value`
 * lines that use the same names as the flags.
 *
 * Each daemon describes its options in one table. The config file is read
 * first and the command line overrides it, whatever their order; repeatable
 * options (CFG_LIST) accumulate from both. */
#ifndef COMMON_CFG_H
#define COMMON_CFG_H

#include <stddef.h>
#include <stdio.h>

enum cfg_type {
    CFG_STR,  /* dst: char ** (heap string owned by cfg after cfg_parse) */
    CFG_INT,  /* dst: long *, checked against [min, max] */
    CFG_BOOL, /* dst: int *; "--name" alone means true */
    CFG_LIST, /* dst: cfg_list_t *; repeatable */
};

typedef struct cfg_list {
    char **v;
    size_t n;
} cfg_list_t;

typedef struct cfg_opt {
    const char *name; /* without the leading "--" */
    enum cfg_type type;
    void *dst;
    const char *metavar; /* e.g. "HOST:PORT"; NULL for booleans */
    const char *help;
    long min, max; /* CFG_INT only; min == max == 0 means no bounds */
} cfg_opt_t;

/* Ends an option table. */
#define CFG_END                                                                                    \
    {                                                                                              \
        NULL, 0, NULL, NULL, NULL, 0, 0                                                            \
    }

enum { CFG_OK = 0, CFG_EXIT = 1, CFG_ERR = -1 };

/* Parses argv (argv[0] is the program). Accepts "--name value" and
 * "--name=value", "--config FILE", "--help" (or "-h") and "--version" (which
 * print to stdout and return CFG_EXIT). In the help, an integer default
 * outside the option's bounds reads "auto": it is a placeholder the program
 * fills in after parsing. String defaults already in *dst are copied to
 * the heap first, so cfg_free() can free every string. Returns CFG_OK,
 * CFG_EXIT, or CFG_ERR with a message like "--rise: not a number: 'x'" or
 * "app.conf:3: unknown option 'foo'" in err. */
int cfg_parse(const cfg_opt_t *opts, int argc, char **argv, const char *summary,
              const char *version, char *err, size_t errlen);
/* Reads one config file into the table (used by cfg_parse; exposed for tests). */
int cfg_load_file(const cfg_opt_t *opts, const char *path, char *err, size_t errlen);
/* Sets one option by name from a string, as the file and flags do. */
int cfg_set(const cfg_opt_t *opts, const char *name, const char *value, char *err, size_t errlen);
void cfg_usage(const cfg_opt_t *opts, FILE *f, const char *prog, const char *summary);
/* Reads a secret (a token, a shared header value) from a file: its first
 * line without surrounding blanks, refusing an empty one or one with control
 * characters. flag names the option in errors. Returns a heap string or NULL
 * with err. Both daemons read their shared secrets with it, so that a file
 * means the same thing to both. */
char *cfg_read_secret(const char *flag, const char *path, char *err, size_t errlen);

/* A decimal flag value (CFG_STR, e.g. "1.25") in [lo, hi], as thousandths
 * (1250): 0, or -1 with "--FLAG 'TEXT': want a number from LO to HI" in
 * err (*out unchanged). */
int cfg_parse_milli(const char *flag, const char *text, double lo, double hi, unsigned *out,
                    char *err, size_t errlen);
/* Frees every string and list the table's destinations hold. */
void cfg_free(const cfg_opt_t *opts);

#endif
