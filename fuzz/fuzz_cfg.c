/* Fuzzes config file parsing (common/cfg.c) through the real file path:
 * the input is written to a memfd and read back by cfg_load_file() as
 * /proc/self/fd/N, into a table holding every option type. Afterwards each
 * destination must hold a value its type allows, errors must name the file,
 * cfg_set() must accept what the file could, and cfg_free() must release
 * everything. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "cfg.h"

/* The destinations, reset before every input. */
typedef struct fz_conf {
    char *listen;
    char *id;
    long port;
    long any;
    long neg;
    int verbose;
    int flag;
    cfg_list_t backends;
} fz_conf_t;

static fz_conf_t fz_c;
static int fz_fd = -1;
static char fz_path[64];

static const cfg_opt_t fz_opts[] = {
    {"listen", CFG_STR, &fz_c.listen, "HOST:PORT", "listen address", 0, 0},
    {"id", CFG_STR, &fz_c.id, "NAME", "identity", 0, 0},
    {"port", CFG_INT, &fz_c.port, "N", "bounded integer", 1, 65535},
    {"any", CFG_INT, &fz_c.any, "N", "unbounded integer", 0, 0},
    {"neg", CFG_INT, &fz_c.neg, "N", "negative range", -100, -1},
    {"verbose", CFG_BOOL, &fz_c.verbose, NULL, "a boolean", 0, 0},
    {"flag", CFG_BOOL, &fz_c.flag, NULL, "another boolean", 0, 0},
    {"backend", CFG_LIST, &fz_c.backends, "HOST:PORT", "repeatable", 0, 0},
    CFG_END,
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_fd = memfd_create("fuzz-cfg", MFD_CLOEXEC);
    if (fz_fd < 0) {
        perror("memfd_create");
        abort();
    }
    snprintf(fz_path, sizeof(fz_path), "/proc/self/fd/%d", fz_fd);
    return 0;
}

static void fz_str(const char *s)
{
    if (s != NULL)
        fz_sink += (unsigned)strlen(s);
}

static void fz_check_values(void)
{
    fz_str(fz_c.listen);
    fz_str(fz_c.id);
    FZ_CHECK(fz_c.port == 80 || (fz_c.port >= 1 && fz_c.port <= 65535));
    FZ_CHECK(fz_c.neg == -5 || (fz_c.neg >= -100 && fz_c.neg <= -1));
    FZ_CHECK(fz_c.verbose == 0 || fz_c.verbose == 1);
    FZ_CHECK(fz_c.flag == 0 || fz_c.flag == 1);
    FZ_CHECK((fz_c.backends.n == 0) == (fz_c.backends.v == NULL));
    for (size_t i = 0; i < fz_c.backends.n; i++)
        fz_str(fz_c.backends.v[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Defaults the way cfg_parse leaves them: heap strings or NULL. */
    memset(&fz_c, 0, sizeof(fz_c));
    fz_c.listen = strdup("127.0.0.1:9001");
    fz_c.port = 80;
    fz_c.neg = -5;
    if (fz_c.listen == NULL)
        return 0;

    if (ftruncate(fz_fd, 0) < 0 || pwrite(fz_fd, data, size, 0) != (ssize_t)size) {
        perror("memfd write");
        abort();
    }
    char err[256] = "";
    int r = cfg_load_file(fz_opts, fz_path, err, sizeof(err));
    FZ_CHECK(r == 0 || r == -1);
    if (r < 0)
        FZ_CHECK(strncmp(err, fz_path, strlen(fz_path)) == 0);
    fz_check_values();

    /* The first line as "name=value" through cfg_set, as a flag would be. */
    const uint8_t *nl = memchr(data, '\n', size);
    size_t n = nl ? (size_t)(nl - data) : size;
    char *line = malloc(n + 1);
    if (line != NULL) {
        memcpy(line, data, n);
        line[n] = '\0';
        char *eq = strchr(line, '=');
        if (eq != NULL) {
            *eq = '\0';
            err[0] = '\0';
            int sr = cfg_set(fz_opts, line, eq + 1, err, sizeof(err));
            FZ_CHECK(sr == 0 || (sr == -1 && err[0] != '\0'));
            fz_check_values();
        }
        free(line);
    }

    cfg_free(fz_opts);
    FZ_CHECK(fz_c.listen == NULL && fz_c.id == NULL && fz_c.backends.v == NULL);
    return 0;
}
