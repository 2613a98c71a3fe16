/* Fuzzes the lb's static files (lb/static.c): st_path_clean on raw paths and
 * st_respond on parsed requests, against a real directory made at start that
 * holds a few files, a subdirectory with an index, and symlinks to a secret
 * file outside it.
 *
 * Besides not crashing, a cleaned path has no empty, "." or ".." segment and
 * no NUL, control byte or backslash; an answer is a complete response with
 * one of the statuses st sends, never holds the secret (unless the request
 * did, for a redirect to echo), carries the body its
 * Content-Length says (none for HEAD and 304), a 200 carries exactly the
 * bytes of the file its path names, a 301's Location is the path plus '/',
 * and the same request gives the same bytes twice.
 *
 * Input: byte 0 bit 0 selects a raw path for st_path_clean (the rest of the
 * input) or a request for st_respond (the rest, parsed as a head; bit 1 adds
 * an If-None-Match line with the ETag of index.html). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"
#include "buf.h"
#include "http.h"
#include "log.h"
#include "static.h"

#define FZ_SECRET "fuzz-secret-outside-the-dir"

static const struct {
    const char *rel, *content;
} fz_files[] = {
    {"index.html", "<!doctype html><p>index</p>\n"},
    {"app.js", "console.log('app');\n"},
    {"a b.txt", "space in the name\n"},
    {"sub/index.html", "<p>sub index</p>\n"},
    {"sub/x.css", "p{}\n"},
    {"empty.txt", ""},
};

static st_t *fz_st;
static char fz_etag[64];

static void fz_put(const char *root, const char *rel, const char *content)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", root, rel);
    FILE *f = fopen(p, "w");
    FZ_CHECK(f != NULL);
    fputs(content, f);
    fclose(f);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    static char root[] = "/tmp/wslb-fuzz-static-XXXXXX";
    char dir[128], p[256], q[256];
    log_set_level(LOG_LVL_OFF);
    FZ_CHECK(mkdtemp(root) != NULL);
    snprintf(dir, sizeof(dir), "%s/web", root);
    FZ_CHECK(mkdir(dir, 0700) == 0);
    snprintf(p, sizeof(p), "%s/sub", dir);
    FZ_CHECK(mkdir(p, 0700) == 0);
    fz_put(root, "secret", FZ_SECRET);
    for (size_t i = 0; i < sizeof(fz_files) / sizeof(fz_files[0]); i++)
        fz_put(dir, fz_files[i].rel, fz_files[i].content);
    snprintf(p, sizeof(p), "%s/secret", root);
    snprintf(q, sizeof(q), "%s/secret", dir);
    FZ_CHECK(symlink(p, q) == 0);
    snprintf(q, sizeof(q), "%s/sub/up", dir);
    FZ_CHECK(symlink("..", q) == 0);
    snprintf(q, sizeof(q), "%s/root", dir);
    FZ_CHECK(symlink(root, q) == 0);
    char err[256];
    fz_st = st_create(dir, NULL, err, sizeof(err));
    FZ_CHECK(fz_st != NULL);
    /* Everything is in memory now: the files can go. */
    snprintf(p, sizeof(p), "rm -rf '%s'", root);
    FZ_CHECK(system(p) == 0);

    buf_t b = BUF_INIT;
    http_head_t h;
    int status;
    const char *req = "GET / HTTP/1.1\r\n\r\n";
    FZ_CHECK(http_parse_request(req, strlen(req), 0, &h) > 0);
    FZ_CHECK(st_respond(fz_st, &h, 0, &b, &status) == ST_DONE && status == 200);
    FZ_CHECK(buf_append(&b, "", 1) == 0);
    const char *e = strstr(buf_head(&b), "\r\nETag: ");
    FZ_CHECK(e != NULL);
    snprintf(fz_etag, sizeof(fz_etag), "%.34s", e + 8);
    buf_free(&b);
    return 0;
}

static void fz_clean(const char *p, size_t n)
{
    char out[ST_MAX_PATH];
    int r = st_path_clean(p, n, out, sizeof(out));
    FZ_CHECK(r >= -2);
    if (r < 0)
        return;
    FZ_CHECK((size_t)r == strlen(out) && (size_t)r < sizeof(out) && r <= (int)n);
    FZ_CHECK(out[0] != '/');
    const char *seg = out;
    for (int i = 0; i <= r; i++) {
        char c = out[i];
        FZ_CHECK(c != '\\' && (c == '\0' || ((unsigned char)c >= 0x20 && c != 0x7f)));
        if (c == '/' || c == '\0') {
            size_t len = (size_t)(out + i - seg);
            /* Empty only as the last segment (a trailing slash or "/"). */
            FZ_CHECK(len > 0 || c == '\0');
            FZ_CHECK(!(len == 1 && seg[0] == '.'));
            FZ_CHECK(!(len == 2 && seg[0] == '.' && seg[1] == '.'));
            seg = out + i + 1;
        }
    }
}

/* The content of the file a clean path names ("" = "index.html"). */
static const char *fz_content(const char *rel)
{
    char path[ST_MAX_PATH + 16];
    size_t n = strlen(rel);
    snprintf(path, sizeof(path), "%s%s", rel, n == 0 || rel[n - 1] == '/' ? "index.html" : "");
    for (size_t i = 0; i < sizeof(fz_files) / sizeof(fz_files[0]); i++)
        if (strcmp(path, fz_files[i].rel) == 0)
            return fz_files[i].content;
    return NULL;
}

static void fz_respond(const char *req, size_t len)
{
    http_head_t h;
    if (http_parse_request(req, len, 0, &h) <= 0)
        return;
    buf_t a = BUF_INIT, b = BUF_INIT;
    int sa, sb;
    int ra = st_respond(fz_st, &h, 1000000000, &a, &sa);
    int rb = st_respond(fz_st, &h, 1000000000, &b, &sb);
    FZ_CHECK(ra == rb && sa == sb);
    FZ_CHECK(ra == ST_PASS || ra == ST_DONE);
    if (ra == ST_PASS) {
        FZ_CHECK(buf_size(&a) == 0);
        goto out;
    }
    FZ_CHECK(buf_size(&a) == buf_size(&b) && memcmp(buf_head(&a), buf_head(&b), buf_size(&a)) == 0);
    FZ_CHECK(sa == 200 || sa == 301 || sa == 304 || sa == 400 || sa == 405);
    FZ_CHECK(buf_append(&a, "", 1) == 0);
    const char *all = buf_head(&a);
    size_t total = buf_size(&a) - 1;
    /* The secret's bytes come back only if the request carried them (a
     * redirect repeats the path and query). */
    FZ_CHECK(memmem(all, total, FZ_SECRET, strlen(FZ_SECRET)) == NULL ||
             memmem(req, len, FZ_SECRET, strlen(FZ_SECRET)) != NULL);
    char line[32];
    snprintf(line, sizeof(line), "HTTP/1.1 %d ", sa);
    FZ_CHECK(strncmp(all, line, strlen(line)) == 0);
    const char *end = strstr(all, "\r\n\r\n");
    FZ_CHECK(end != NULL);
    size_t hl = (size_t)(end - all) + 4, body = total - hl;
    int head_only = http_str_eq(h.method_str, "HEAD");
    const char *cl = strstr(all, "\r\nContent-Length: ");
    FZ_CHECK((cl != NULL && cl < end) == (sa != 304));
    if (cl != NULL && cl < end) {
        size_t want = strtoul(cl + 18, NULL, 10);
        FZ_CHECK(body == ((head_only && sa != 405) ? 0 : want));
    } else {
        FZ_CHECK(body == 0);
    }
    char rel[ST_MAX_PATH];
    int r = st_path_clean(h.path.p, h.path.n, rel, sizeof(rel));
    FZ_CHECK((sa == 400) == (r == -1));
    if (sa == 200) {
        const char *content = fz_content(rel);
        FZ_CHECK(content != NULL);
        FZ_CHECK(head_only ? body == 0
                           : body == strlen(content) && memcmp(all + hl, content, body) == 0);
    }
    if (sa == 301) {
        const char *loc = strstr(all, "\r\nLocation: ");
        FZ_CHECK(loc != NULL && loc < end);
        loc += 12;
        FZ_CHECK(strncmp(loc, h.path.p, h.path.n) == 0 && loc[h.path.n] == '/');
        size_t ll = strcspn(loc, "\r\n");
        FZ_CHECK(loc[ll] == '\r' && loc[ll + 1] == '\n');
    }
out:
    buf_free(&a);
    buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    char *buf = malloc(size + 64 + sizeof(fz_etag));
    if (buf == NULL)
        return 0;
    size_t len = size - 1;
    memcpy(buf, data + 1, len);
    if (data[0] & 1) {
        fz_clean(buf, len);
    } else {
        /* Bit 1: an If-None-Match for index.html right after the request
         * line, when there is one. */
        char *nl = memchr(buf, '\n', len);
        if ((data[0] & 2) && nl != NULL) {
            char extra[96];
            int n = snprintf(extra, sizeof(extra), "If-None-Match: %s\r\n", fz_etag);
            size_t at = (size_t)(nl + 1 - buf);
            memmove(buf + at + n, buf + at, len - at);
            memcpy(buf + at, extra, (size_t)n);
            len += (size_t)n;
        }
        fz_respond(buf, len);
    }
    free(buf);
    return 0;
}
