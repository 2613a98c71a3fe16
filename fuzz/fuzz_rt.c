/* Fuzzes the runtimes file parser (worker/rt.c). The input is a runtimes
 * file. Whatever it says, the table afterwards must hold only complete,
 * valid runtimes with unique names that rt_find returns, the same text
 * loaded twice must replace rather than duplicate, and rt_free must leave
 * nothing behind (LeakSanitizer runs at exit of each libFuzzer run). The
 * command splitter is also fed each line on its own. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "log.h"
#include "rt.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    log_set_level(LOG_LVL_OFF);
    return 0;
}

static void fz_argv(char **argv)
{
    size_t n = 0;
    FZ_CHECK(argv != NULL && argv[0] != NULL);
    for (; argv[n] != NULL; n++)
        fz_sink += (unsigned)strlen(argv[n]);
    FZ_CHECK(n >= 1 && n <= 64);
}

static void fz_check_table(const rt_table_t *t)
{
    for (size_t i = 0; i < t->n; i++) {
        const rt_runtime_t *r = &t->v[i];
        FZ_CHECK(r->name != NULL && r->file != NULL);
        size_t nl = strlen(r->name), fl = strlen(r->file);
        FZ_CHECK(nl > 0 && nl <= 64 && fl > 0 && fl <= 64);
        FZ_CHECK(strchr(r->file, '/') == NULL && strcmp(r->file, "..") != 0);
        fz_argv(r->run_argv);
        if (r->build_argv != NULL)
            fz_argv(r->build_argv);
        FZ_CHECK(rt_find(t, r->name) == r);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rt_table_t t = {0};
    char err[256] = "";
    const char *text = (const char *)data;

    int r = rt_load_string(&t, text, size, "fuzz.rt", err, sizeof(err));
    FZ_CHECK(r == 0 || (r == -1 && err[0] != '\0'));
    fz_check_table(&t);
    size_t n1 = t.n;
    if (r == 0) {
        /* Loading it again replaces every runtime by name. */
        FZ_CHECK(rt_load_string(&t, text, size, "fuzz.rt", err, sizeof(err)) == 0);
        FZ_CHECK(t.n == n1);
        fz_check_table(&t);
    }
    fz_sink += rt_find(&t, "python3") != NULL;
    fz_sink += rt_find(&t, "") != NULL;
    rt_free(&t);
    FZ_CHECK(t.v == NULL && t.n == 0);

    /* The command splitter on every line, as a run = value would be. */
    char *copy = malloc(size + 1);
    if (copy == NULL)
        return 0;
    memcpy(copy, data, size);
    copy[size] = '\0';
    char *save = NULL;
    for (char *ln = strtok_r(copy, "\n", &save); ln != NULL; ln = strtok_r(NULL, "\n", &save)) {
        char serr[128] = "";
        char **argv = rt_split(ln, serr, sizeof(serr));
        if (argv != NULL)
            fz_argv(argv);
        else
            FZ_CHECK(serr[0] != '\0');
        rt_argv_free(argv);
    }
    free(copy);
    return 0;
}
