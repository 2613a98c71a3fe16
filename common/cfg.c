/* cfg: command-line flags plus an optional --config FILE (see cfg.h).
 *
 * Ownership: once cfg_parse() has run, every CFG_STR destination holds NULL
 * or a heap string and every CFG_LIST holds heap strings, all owned by the
 * table until cfg_free(). cfg_set() and cfg_load_file() rely on that (they
 * free a string they replace), so tests calling them directly must start
 * from NULL or heap strings. cfg_parse() runs once per table; call cfg_free()
 * whatever it returned. */
#include "cfg.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* A config file is a few dozen lines; the limits only stop a wrong path
 * (a log file, /dev/zero) from eating memory. */
#define CFG_FILE_MAX (1024 * 1024)
#define CFG_LINE_MAX 4096

static void cfg_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void cfg_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static const cfg_opt_t *cfg_find(const cfg_opt_t *opts, const char *name, size_t len)
{
    for (const cfg_opt_t *o = opts; o->name != NULL; o++) {
        if (strlen(o->name) == len && memcmp(o->name, name, len) == 0)
            return o;
    }
    return NULL;
}

static int cfg_parse_bool(const char *v, int *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

/* Appends a copy of v to the list; -1 on allocation failure (list intact). */
static int cfg_list_push(cfg_list_t *l, const char *v)
{
    char *copy = strdup(v);
    if (copy == NULL)
        return -1;
    char **nv = realloc(l->v, (l->n + 1) * sizeof(*nv));
    if (nv == NULL) {
        free(copy);
        return -1;
    }
    nv[l->n++] = copy;
    l->v = nv;
    return 0;
}

/* Sets option o from value (NULL only allowed for booleans, meaning true). */
static int cfg_apply(const cfg_opt_t *o, const char *value, char *err, size_t errlen)
{
    if (value == NULL && o->type != CFG_BOOL) {
        cfg_err(err, errlen, "--%s: missing value", o->name);
        return -1;
    }
    switch (o->type) {
    case CFG_STR: {
        char *copy = strdup(value);
        if (copy == NULL) {
            cfg_err(err, errlen, "--%s: out of memory", o->name);
            return -1;
        }
        char **dst = o->dst;
        free(*dst);
        *dst = copy;
        return 0;
    }
    case CFG_INT: {
        /* strtol would skip leading blanks; a value like " 5" is a typo. */
        if (value[0] == '\0' || isspace((unsigned char)value[0])) {
            cfg_err(err, errlen, "--%s: not a number: '%.64s'", o->name, value);
            return -1;
        }
        char *end;
        errno = 0;
        long v = strtol(value, &end, 10);
        if (*end != '\0' || errno == ERANGE) {
            cfg_err(err, errlen, "--%s: not a number: '%.64s'", o->name, value);
            return -1;
        }
        if ((o->min != 0 || o->max != 0) && (v < o->min || v > o->max)) {
            cfg_err(err, errlen, "--%s: %ld out of range [%ld, %ld]", o->name, v, o->min, o->max);
            return -1;
        }
        *(long *)o->dst = v;
        return 0;
    }
    case CFG_BOOL: {
        int b = 1;
        if (value != NULL && cfg_parse_bool(value, &b) < 0) {
            cfg_err(err, errlen, "--%s: not a boolean (true/false/yes/no/on/off/1/0): '%.64s'",
                    o->name, value);
            return -1;
        }
        *(int *)o->dst = b;
        return 0;
    }
    case CFG_LIST:
        if (cfg_list_push(o->dst, value) < 0) {
            cfg_err(err, errlen, "--%s: out of memory", o->name);
            return -1;
        }
        return 0;
    }
    cfg_err(err, errlen, "--%s: bad option type", o->name);
    return -1;
}

int cfg_set(const cfg_opt_t *opts, const char *name, const char *value, char *err, size_t errlen)
{
    const cfg_opt_t *o = cfg_find(opts, name, strlen(name));
    if (o == NULL) {
        cfg_err(err, errlen, "unknown option '%.64s'", name);
        return -1;
    }
    return cfg_apply(o, value, err, errlen);
}

/* Reads at most CFG_FILE_MAX bytes of path into a NUL-terminated heap block.
 * Returns it (caller frees) and its length, or NULL with err. */
static char *cfg_slurp(const char *path, size_t *lenp, char *err, size_t errlen)
{
    char *data = NULL;
    size_t len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        cfg_err(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    data = malloc(CFG_FILE_MAX + 1);
    if (data == NULL) {
        cfg_err(err, errlen, "%s: out of memory", path);
        goto fail;
    }
    for (;;) {
        ssize_t r = read(fd, data + len, CFG_FILE_MAX + 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            cfg_err(err, errlen, "%s: %s", path, strerror(errno));
            goto fail;
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len > CFG_FILE_MAX) {
            cfg_err(err, errlen, "%s: larger than %d bytes", path, CFG_FILE_MAX);
            goto fail;
        }
    }
    close(fd);
    data[len] = '\0';
    *lenp = len;
    return data;

fail:
    free(data);
    close(fd);
    return NULL;
}

static char *cfg_trim(char *s, char *end, char **endp)
{
    while (s < end && isspace((unsigned char)*s))
        s++;
    while (end > s && isspace((unsigned char)end[-1]))
        end--;
    *endp = end;
    return s;
}

/* Parses the file line by line; stops at the first bad line. Lines are
 * handled in place inside one buffer, so NUL bytes and overlong lines are
 * detected rather than silently cutting the text. */
int cfg_load_file(const cfg_opt_t *opts, const char *path, char *err, size_t errlen)
{
    size_t len;
    char *data = cfg_slurp(path, &len, err, errlen);
    if (data == NULL)
        return -1;
    int rc = -1;
    char *p = data, *end = data + len;
    for (unsigned lineno = 1; p < end; lineno++) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *le = nl ? nl : end;
        char *next = nl ? nl + 1 : end;
        if (le - p > CFG_LINE_MAX) {
            cfg_err(err, errlen, "%s:%u: line longer than %d bytes", path, lineno, CFG_LINE_MAX);
            goto out;
        }
        if (memchr(p, '\0', (size_t)(le - p)) != NULL) {
            cfg_err(err, errlen, "%s:%u: NUL byte in line", path, lineno);
            goto out;
        }
        char *lend;
        char *line = cfg_trim(p, le, &lend);
        p = next;
        if (line == lend || *line == '#')
            continue;
        char *eq = memchr(line, '=', (size_t)(lend - line));
        if (eq == NULL) {
            cfg_err(err, errlen, "%s:%u: expected 'key = value'", path, lineno);
            goto out;
        }
        char *kend, *vend;
        char *key = cfg_trim(line, eq, &kend);
        char *val = cfg_trim(eq + 1, lend, &vend);
        /* Accept "--name = v" too, so flags can be pasted into a file. */
        if (kend - key > 2 && key[0] == '-' && key[1] == '-')
            key += 2;
        if (key == kend) {
            cfg_err(err, errlen, "%s:%u: missing key before '='", path, lineno);
            goto out;
        }
        if (vend - val >= 2 && (*val == '"' || *val == '\'') && vend[-1] == *val) {
            val++;
            vend--;
        }
        *kend = '\0';
        *vend = '\0';
        const cfg_opt_t *o = cfg_find(opts, key, (size_t)(kend - key));
        if (o == NULL) {
            cfg_err(err, errlen, "%s:%u: unknown option '%.64s'", path, lineno, key);
            goto out;
        }
        char sub[256];
        if (cfg_apply(o, val, sub, sizeof(sub)) < 0) {
            cfg_err(err, errlen, "%s:%u: %s", path, lineno, sub);
            goto out;
        }
    }
    rc = 0;
out:
    free(data);
    return rc;
}

/* Copies string defaults (and list items) to the heap so cfg_free() can free
 * everything uniformly. On failure the entries not yet copied are reset to
 * NULL/empty so that cfg_free() never frees a static string. */
static int cfg_own_defaults(const cfg_opt_t *opts, char *err, size_t errlen)
{
    int rc = 0;
    for (const cfg_opt_t *o = opts; o->name != NULL; o++) {
        if (o->type == CFG_STR) {
            char **dst = o->dst;
            if (*dst != NULL) {
                *dst = rc == 0 ? strdup(*dst) : NULL;
                if (*dst == NULL)
                    rc = -1;
            }
        } else if (o->type == CFG_LIST) {
            cfg_list_t *l = o->dst;
            cfg_list_t old = *l;
            l->v = NULL;
            l->n = 0;
            for (size_t i = 0; rc == 0 && i < old.n; i++) {
                if (cfg_list_push(l, old.v[i]) < 0)
                    rc = -1;
            }
        }
    }
    if (rc < 0)
        cfg_err(err, errlen, "out of memory");
    return rc;
}

static const char *cfg_basename(const char *prog)
{
    if (prog == NULL)
        return "prog";
    const char *s = strrchr(prog, '/');
    return s ? s + 1 : prog;
}

/* Splits "--name=value" / "--name value" at argv[*i]. Sets *o to the option
 * (NULL for the built-ins, whose name is returned in *builtin), *val to the
 * value or NULL, and advances *i past a consumed value. */
static int cfg_arg(const cfg_opt_t *opts, int argc, char **argv, int *i, const cfg_opt_t **o,
                   const char **builtin, const char **val, int *negate, char *err, size_t errlen)
{
    const char *a = argv[*i];
    *o = NULL;
    *builtin = NULL;
    *val = NULL;
    *negate = 0;
    /* "-h" is the one short flag: it is what people type first. */
    if (strcmp(a, "-h") == 0) {
        *builtin = "help";
        return 0;
    }
    if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
        cfg_err(err, errlen, "unexpected argument '%.64s'", a);
        return -1;
    }
    const char *name = a + 2;
    const char *eq = strchr(name, '=');
    size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
    if (eq != NULL)
        *val = eq + 1;

    static const char *const builtins[] = {"help", "version", "config"};
    for (size_t k = 0; k < 3; k++) {
        if (strlen(builtins[k]) == nlen && memcmp(builtins[k], name, nlen) == 0)
            *builtin = builtins[k];
    }
    int takes_value;
    if (*builtin != NULL) {
        takes_value = strcmp(*builtin, "config") == 0;
        if (!takes_value && eq != NULL) {
            cfg_err(err, errlen, "--%s takes no value", *builtin);
            return -1;
        }
    } else {
        *o = cfg_find(opts, name, nlen);
        if (*o == NULL && nlen > 3 && memcmp(name, "no-", 3) == 0) {
            /* "--no-foo" turns a boolean off. */
            const cfg_opt_t *b = cfg_find(opts, name + 3, nlen - 3);
            if (b != NULL && b->type == CFG_BOOL && eq == NULL) {
                *o = b;
                *negate = 1;
            }
        }
        if (*o == NULL) {
            cfg_err(err, errlen, "unknown option '--%.*s'", (int)(nlen > 64 ? 64 : nlen), name);
            return -1;
        }
        /* A boolean never swallows the next argument: "--verbose x" would be
         * ambiguous. Use "--verbose=false" to turn one off. */
        takes_value = (*o)->type != CFG_BOOL;
    }
    if (takes_value && eq == NULL) {
        if (*i + 1 >= argc || strncmp(argv[*i + 1], "--", 2) == 0) {
            cfg_err(err, errlen, "--%.*s: missing value", (int)(nlen > 64 ? 64 : nlen), name);
            return -1;
        }
        *val = argv[++*i];
    }
    return 0;
}

int cfg_parse(const cfg_opt_t *opts, int argc, char **argv, const char *summary,
              const char *version, char *err, size_t errlen)
{
    const char *prog = cfg_basename(argc > 0 ? argv[0] : NULL);
    const cfg_opt_t *o;
    const char *builtin, *val;
    int negate;

    if (cfg_own_defaults(opts, err, errlen) < 0)
        return CFG_ERR;

    /* Pass 1: validate every argument and act on --help/--version before
     * anything is loaded, so they work even next to a broken config file. */
    for (int i = 1; i < argc; i++) {
        if (cfg_arg(opts, argc, argv, &i, &o, &builtin, &val, &negate, err, errlen) < 0)
            return CFG_ERR;
        if (builtin != NULL && strcmp(builtin, "help") == 0) {
            cfg_usage(opts, stdout, prog, summary);
            return CFG_EXIT;
        }
        if (builtin != NULL && strcmp(builtin, "version") == 0) {
            printf("%s %s\n", prog, version ? version : "unknown");
            return CFG_EXIT;
        }
    }
    /* Pass 2: config files, in the order given. */
    for (int i = 1; i < argc; i++) {
        cfg_arg(opts, argc, argv, &i, &o, &builtin, &val, &negate, NULL, 0);
        if (builtin != NULL && cfg_load_file(opts, val, err, errlen) < 0)
            return CFG_ERR;
    }
    /* Pass 3: flags override the files. */
    for (int i = 1; i < argc; i++) {
        cfg_arg(opts, argc, argv, &i, &o, &builtin, &val, &negate, NULL, 0);
        if (o == NULL)
            continue;
        if (cfg_apply(o, negate ? "false" : val, err, errlen) < 0)
            return CFG_ERR;
    }
    return CFG_OK;
}

static const char *cfg_type_metavar(const cfg_opt_t *o)
{
    if (o->metavar != NULL)
        return o->metavar;
    switch (o->type) {
    case CFG_INT:
        return "N";
    case CFG_BOOL:
        return NULL;
    default:
        return "VALUE";
    }
}

static void cfg_usage_line(FILE *f, const char *name, const char *metavar, const char *help,
                           const char *extra)
{
    char left[128];
    snprintf(left, sizeof(left), "--%s%s%s", name, metavar ? " " : "", metavar ? metavar : "");
    if (strlen(left) < 24)
        fprintf(f, "  %-24s %s%s\n", left, help ? help : "", extra ? extra : "");
    else
        fprintf(f, "  %s\n  %-24s %s%s\n", left, "", help ? help : "", extra ? extra : "");
}

/* Prints one line per option with its metavar, help, default and bounds.
 * Safe to call before cfg_parse() (it only reads the destinations). */
void cfg_usage(const cfg_opt_t *opts, FILE *f, const char *prog, const char *summary)
{
    fprintf(f, "Usage: %s [OPTIONS]\n", prog ? prog : "prog");
    if (summary != NULL && *summary)
        fprintf(f, "%s\n", summary);
    fprintf(f, "\nOptions:\n");
    for (const cfg_opt_t *o = opts; o->name != NULL; o++) {
        char extra[160] = "";
        char def[112] = "";
        switch (o->type) {
        case CFG_STR:
            if (*(char **)o->dst != NULL)
                snprintf(def, sizeof(def), "%.100s", *(char **)o->dst);
            break;
        case CFG_INT: {
            long v = *(long *)o->dst;
            /* A default outside the bounds is a placeholder the program
             * replaces after parsing (e.g. "4 x max-evals"): its number
             * means nothing to the reader. */
            if ((o->min != 0 || o->max != 0) && (v < o->min || v > o->max))
                snprintf(def, sizeof(def), "auto");
            else
                snprintf(def, sizeof(def), "%ld", v);
            break;
        }
        case CFG_BOOL:
            if (*(int *)o->dst)
                snprintf(def, sizeof(def), "on");
            break;
        case CFG_LIST:
            break;
        }
        /* Tables often spell the default in the help text already, e.g.
         * "interval (1000)"; saying it twice is noise. */
        if (def[0] != '\0' && (o->help == NULL || strstr(o->help, def) == NULL))
            snprintf(extra, sizeof(extra), " (default: %s)", def);
        size_t el = strlen(extra);
        if (o->type == CFG_INT && (o->min != 0 || o->max != 0))
            snprintf(extra + el, sizeof(extra) - el, " [%ld..%ld]", o->min, o->max);
        else if (o->type == CFG_LIST && (o->help == NULL || strstr(o->help, "repeatable") == NULL))
            snprintf(extra + el, sizeof(extra) - el, " (repeatable)");
        cfg_usage_line(f, o->name, cfg_type_metavar(o), o->help, extra);
    }
    cfg_usage_line(f, "config", "FILE", "read options from FILE ('name = value' lines)", NULL);
    cfg_usage_line(f, "help", NULL, "show this help and exit (also -h)", NULL);
    cfg_usage_line(f, "version", NULL, "show the version and exit", NULL);
    fprintf(f, "\nValues go as --name VALUE or --name=VALUE; a boolean is set by --name\n"
               "and cleared by --name=false or --no-name. Flags override the config file.\n");
}

void cfg_free(const cfg_opt_t *opts)
{
    if (opts == NULL)
        return;
    for (const cfg_opt_t *o = opts; o->name != NULL; o++) {
        if (o->type == CFG_STR) {
            char **dst = o->dst;
            free(*dst);
            *dst = NULL;
        } else if (o->type == CFG_LIST) {
            cfg_list_t *l = o->dst;
            for (size_t i = 0; i < l->n; i++)
                free(l->v[i]);
            free(l->v);
            l->v = NULL;
            l->n = 0;
        }
    }
}

char *cfg_read_secret(const char *flag, const char *path, char *err, size_t errlen)
{
    char line[512];
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        snprintf(err, errlen, "%s %s: %s", flag, path, strerror(errno));
        return NULL;
    }
    char *got = fgets(line, sizeof(line), f);
    fclose(f);
    if (got == NULL)
        line[0] = '\0';
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ' ||
                     line[n - 1] == '\t'))
        line[--n] = '\0';
    char *s = line;
    while (*s == ' ' || *s == '\t')
        s++;
    if (*s == '\0') {
        snprintf(err, errlen, "%s %s: empty", flag, path);
        return NULL;
    }
    /* It travels in a header line: no control characters. */
    for (const char *q = s; *q; q++) {
        if ((unsigned char)*q < 0x20 || *q == 0x7f) {
            snprintf(err, errlen, "%s %s: control character in the first line", flag, path);
            return NULL;
        }
    }
    char *dup = strdup(s);
    if (dup == NULL)
        snprintf(err, errlen, "%s: out of memory", flag);
    return dup;
}

int cfg_parse_milli(const char *flag, const char *text, double lo, double hi, unsigned *out,
                    char *err, size_t errlen)
{
    char *end;
    errno = 0;
    double f = strtod(text, &end);
    /* !(in range) also refuses NaN */
    if (errno || end == text || *end || !(f >= lo && f <= hi)) {
        snprintf(err, errlen, "--%s '%s': want a number from %.1f to %g", flag, text, lo, hi);
        return -1;
    }
    *out = (unsigned)(f * 1000 + 0.5);
    return 0;
}
