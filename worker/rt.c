/* rt: runtimes table; see rt.h for the file format. */
#include "rt.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

#define RT_MAX_FILE (1 << 20)
#define RT_MAX_ARGS 64

static void rt_runtime_clear(rt_runtime_t *r)
{
    free(r->name);
    free(r->file);
    rt_argv_free(r->run_argv);
    rt_argv_free(r->build_argv);
    memset(r, 0, sizeof(*r));
}

void rt_argv_free(char **argv)
{
    if (argv == NULL)
        return;
    for (char **p = argv; *p != NULL; p++)
        free(*p);
    free(argv);
}

void rt_free(rt_table_t *t)
{
    for (size_t i = 0; i < t->n; i++)
        rt_runtime_clear(&t->v[i]);
    free(t->v);
    t->v = NULL;
    t->n = 0;
}

const rt_runtime_t *rt_find(const rt_table_t *t, const char *name)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->v[i].name, name) == 0)
            return &t->v[i];
    return NULL;
}

/* Splits on blanks with '...' and "..." grouping and backslash escapes inside
 * double quotes. No expansion of any kind: the result is exec'ed directly. */
char **rt_split(const char *cmd, char *err, size_t errlen)
{
    char **argv = calloc(RT_MAX_ARGS + 1, sizeof(char *));
    size_t argc = 0, len = strlen(cmd);
    char *word = malloc(len + 1);
    if (argv == NULL || word == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    const char *p = cmd;
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0')
            break;
        size_t wn = 0;
        while (*p != '\0' && *p != ' ' && *p != '\t') {
            if (*p == '\'' || *p == '"') {
                char q = *p++;
                while (*p != '\0' && *p != q) {
                    if (q == '"' && *p == '\\' && (p[1] == '"' || p[1] == '\\'))
                        p++;
                    word[wn++] = *p++;
                }
                if (*p != q) {
                    snprintf(err, errlen, "unterminated quote");
                    goto fail;
                }
                p++;
            } else {
                word[wn++] = *p++;
            }
        }
        if (argc == RT_MAX_ARGS) {
            snprintf(err, errlen, "more than %d arguments", RT_MAX_ARGS);
            goto fail;
        }
        word[wn] = '\0';
        if ((argv[argc] = strdup(word)) == NULL) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        argc++;
    }
    if (argc == 0) {
        snprintf(err, errlen, "empty command");
        goto fail;
    }
    free(word);
    return argv;
fail:
    free(word);
    rt_argv_free(argv);
    return NULL;
}

static int rt_name_ok(const char *s)
{
    if (*s == '\0' || strlen(s) > 64)
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' && *s != '.' && *s != '+')
            return 0;
    return 1;
}

/* A source file name is created inside the work dir: a plain name only. */
static int rt_file_ok(const char *s)
{
    return rt_name_ok(s) && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

/* Moves r into t, replacing a runtime of the same name. Takes ownership. */
static int rt_put(rt_table_t *t, rt_runtime_t *r)
{
    for (size_t i = 0; i < t->n; i++) {
        if (strcmp(t->v[i].name, r->name) == 0) {
            rt_runtime_clear(&t->v[i]);
            t->v[i] = *r;
            return 0;
        }
    }
    rt_runtime_t *nv = realloc(t->v, (t->n + 1) * sizeof(*nv));
    if (nv == NULL)
        return -1;
    t->v = nv;
    t->v[t->n++] = *r;
    return 0;
}

static char *rt_trim(char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\r')
        s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
        *--e = '\0';
    return s;
}

/* Checks a finished section and stores it; frees it on failure. */
static int rt_finish_section(rt_table_t *t, rt_runtime_t *r, const char *origin, int line,
                             char *err, size_t errlen)
{
    if (r->name == NULL)
        return 0;
    if (r->run_argv == NULL) {
        snprintf(err, errlen, "%s:%d: runtime [%s] has no 'run' command", origin, line, r->name);
        goto fail;
    }
    if (r->file == NULL) {
        snprintf(err, errlen, "%s:%d: runtime [%s] has no 'file'", origin, line, r->name);
        goto fail;
    }
    if (rt_put(t, r) < 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    memset(r, 0, sizeof(*r));
    return 0;
fail:
    rt_runtime_clear(r);
    return -1;
}

/* Applies one "key = value" line (s, trimmed) to the section cur. */
static int rt_parse_key(rt_runtime_t *cur, char *s, const char *origin, int lineno, char *err,
                        size_t errlen)
{
    char *eq = strchr(s, '=');
    if (eq == NULL) {
        snprintf(err, errlen, "%s:%d: expected 'key = value'", origin, lineno);
        return -1;
    }
    *eq = '\0';
    char *key = rt_trim(s), *val = rt_trim(eq + 1);
    if (cur->name == NULL) {
        snprintf(err, errlen, "%s:%d: '%.64s' outside a [runtime] section", origin, lineno, key);
        return -1;
    }
    if (strcmp(key, "file") == 0) {
        if (!rt_file_ok(val)) {
            snprintf(err, errlen, "%s:%d: file must be a plain file name", origin, lineno);
            return -1;
        }
        free(cur->file);
        if ((cur->file = strdup(val)) == NULL) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    } else if (strcmp(key, "run") == 0 || strcmp(key, "build") == 0) {
        char serr[128];
        char **argv = rt_split(val, serr, sizeof(serr));
        if (argv == NULL) {
            snprintf(err, errlen, "%s:%d: %s: %s", origin, lineno, key, serr);
            return -1;
        }
        char ***dst = key[0] == 'r' ? &cur->run_argv : &cur->build_argv;
        rt_argv_free(*dst);
        *dst = argv;
    } else {
        snprintf(err, errlen, "%s:%d: unknown key '%.64s'", origin, lineno, key);
        return -1;
    }
    return 0;
}

int rt_load_string(rt_table_t *t, const char *text, size_t len, const char *origin, char *err,
                   size_t errlen)
{
    rt_runtime_t cur = {0};
    int lineno = 0, rc = -1;
    char *copy = malloc(len + 1);
    if (copy == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    memcpy(copy, text, len);
    copy[len] = '\0';
    if (memchr(text, '\0', len) != NULL) {
        snprintf(err, errlen, "%s: contains a NUL byte", origin);
        goto done;
    }
    char *save = NULL;
    for (char *ln = strtok_r(copy, "\n", &save); ln != NULL; ln = strtok_r(NULL, "\n", &save)) {
        lineno++;
        char *s = rt_trim(ln);
        if (*s == '\0' || *s == '#' || *s == ';')
            continue;
        if (*s == '[') {
            char *end = strchr(s, ']');
            if (end == NULL || rt_trim(end + 1)[0] != '\0') {
                snprintf(err, errlen, "%s:%d: bad section header", origin, lineno);
                goto done;
            }
            *end = '\0';
            char *name = rt_trim(s + 1);
            if (!rt_name_ok(name)) {
                snprintf(err, errlen, "%s:%d: bad runtime name '%.64s'", origin, lineno, name);
                goto done;
            }
            if (rt_finish_section(t, &cur, origin, lineno, err, errlen) < 0)
                goto done;
            if ((cur.name = strdup(name)) == NULL)
                goto oom;
            continue;
        }
        if (rt_parse_key(&cur, s, origin, lineno, err, errlen) < 0)
            goto done;
    }
    if (rt_finish_section(t, &cur, origin, lineno, err, errlen) < 0)
        goto done;
    rc = 0;
    goto done;
oom:
    snprintf(err, errlen, "out of memory");
done:
    rt_runtime_clear(&cur);
    free(copy);
    return rc;
}

int rt_load_file(rt_table_t *t, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char *text = malloc(RT_MAX_FILE);
    size_t n = text ? fread(text, 1, RT_MAX_FILE, f) : 0;
    int rc = -1;
    if (text == NULL)
        snprintf(err, errlen, "out of memory");
    else if (ferror(f))
        snprintf(err, errlen, "%s: read error", path);
    else if (n == RT_MAX_FILE)
        snprintf(err, errlen, "%s: larger than %d bytes", path, RT_MAX_FILE);
    else
        rc = rt_load_string(t, text, n, path, err, errlen);
    free(text);
    fclose(f);
    return rc;
}

static const char rt_defaults[] = "[python3]\n"
                                  "file = main.py\n"
                                  "run = /usr/bin/python3 -I -S -B main.py\n"
                                  "[sh]\n"
                                  "file = main.sh\n"
                                  "run = /bin/sh main.sh\n"
                                  "[c]\n"
                                  "file = main.c\n"
                                  "build = /usr/bin/gcc -O2 -pipe -o main main.c -lm\n"
                                  "run = /work/main\n";

int rt_load_defaults(rt_table_t *t)
{
    char err[256];
    if (rt_load_string(t, rt_defaults, sizeof(rt_defaults) - 1, "built-in", err, sizeof(err)) < 0) {
        log_error("runtimes: %s", err);
        return -1;
    }
    rt_prune_missing(t);
    return 0;
}

/* A program path that is relative or under /work is produced by the build
 * step, so it cannot be checked before a run. */
static int rt_prog_missing(char **argv)
{
    if (argv == NULL)
        return 0;
    const char *p = argv[0];
    if (p[0] != '/' || strncmp(p, "/work/", 6) == 0)
        return 0;
    return access(p, X_OK) != 0;
}

void rt_prune_missing(rt_table_t *t)
{
    size_t j = 0;
    for (size_t i = 0; i < t->n; i++) {
        rt_runtime_t *r = &t->v[i];
        if (rt_prog_missing(r->run_argv) || rt_prog_missing(r->build_argv)) {
            log_warn("runtime '%s' unavailable: %s not found", r->name,
                     rt_prog_missing(r->build_argv) ? r->build_argv[0] : r->run_argv[0]);
            rt_runtime_clear(r);
            continue;
        }
        t->v[j++] = *r;
    }
    t->n = j;
}
