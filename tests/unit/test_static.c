/* Unit tests for lb/static.c: path cleaning, loading a real directory
 * (symlinks, FIFOs, hidden files, caps) and every answer st_respond renders. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "static.h"
#include "buf.h"
#include "http.h"
#include "log.h"
#include "met.h"

#define INDEX_HTML "<!doctype html><title>t</title><script src=app.js></script>\n"
#define SUB_INDEX  "sub index\n"
#define SECRET     "SECRET outside the static dir\n"

typedef struct fixture {
    char root[64];    /* holds both dirs */
    char dir[96];     /* the --static dir */
    char outside[96]; /* a sibling the links point into */
    st_t *st;
} fixture_t;

static void put_file(const char *dir, const char *rel, const char *content)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, rel);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
}

static void put_dir(const char *dir, const char *rel)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, rel);
    assert_int_equal(mkdir(p, 0755), 0);
}

static void put_link(const char *dir, const char *rel, const char *target)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, rel);
    assert_int_equal(symlink(target, p), 0);
}

static void rm_rf(const char *path)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
    assert_int_equal(system(cmd), 0);
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    char p[512];
    snprintf(f->root, sizeof(f->root), "/tmp/wslb-static-XXXXXX");
    assert_non_null(mkdtemp(f->root));
    snprintf(f->dir, sizeof(f->dir), "%s/web", f->root);
    snprintf(f->outside, sizeof(f->outside), "%s/outside", f->root);
    assert_int_equal(mkdir(f->dir, 0755), 0);
    assert_int_equal(mkdir(f->outside, 0755), 0);
    put_file(f->outside, "secret.txt", SECRET);

    put_file(f->dir, "index.html", INDEX_HTML);
    put_file(f->dir, "app.js", "console.log(1);\n");
    put_file(f->dir, "style.css", "body{}\n");
    put_file(f->dir, "logo.svg", "<svg/>\n");
    put_file(f->dir, "data.JSON", "{}\n");
    put_file(f->dir, "blob.xyz", "?\n");
    put_file(f->dir, "a b.txt", "space\n");
    put_file(f->dir, "empty.txt", "");
    put_file(f->dir, ".hidden", "hidden\n");
    put_dir(f->dir, "sub");
    put_file(f->dir, "sub/index.html", SUB_INDEX);
    put_file(f->dir, "sub/page.txt", "page\n");
    put_dir(f->dir, "noindex");
    put_file(f->dir, "noindex/file.txt", "x\n");
    put_dir(f->dir, ".git");
    put_file(f->dir, ".git/config", "hidden\n");
    /* Links out of the dir (and one inside it): none is followed. */
    snprintf(p, sizeof(p), "%s/secret.txt", f->outside);
    put_link(f->dir, "secret.txt", p);
    put_link(f->dir, "out", f->outside);
    put_link(f->dir, "rel-out.txt", "../outside/secret.txt");
    put_link(f->dir, "inside.html", "index.html");
    put_link(f->dir, "sub/up", "..");
    snprintf(p, sizeof(p), "%s/fifo", f->dir);
    assert_int_equal(mkfifo(p, 0644), 0);

    char err[256] = "";
    f->st = st_create(f->dir, NULL, err, sizeof(err));
    assert_non_null(f->st);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    st_free(f->st);
    rm_rf(f->root);
    free(f);
    return 0;
}

/* The answer to a raw request: status, head and body split. */
typedef struct answer {
    int r, status;
    buf_t out;
    char head[4096];
    const char *body;
    size_t body_len;
} answer_t;

static void ask_at(st_t *st, const char *req, time_t now, answer_t *a)
{
    http_head_t h;
    memset(a, 0, sizeof(*a));
    assert_true(http_parse_request(req, strlen(req), 0, &h) > 0);
    a->r = st_respond(st, &h, now, &a->out, &a->status);
    if (a->r != ST_DONE)
        return;
    assert_int_equal(buf_append(&a->out, "", 1), 0);
    const char *all = buf_head(&a->out);
    const char *end = strstr(all, "\r\n\r\n");
    assert_non_null(end);
    size_t hl = (size_t)(end - all) + 4;
    assert_true(hl < sizeof(a->head));
    memcpy(a->head, all, hl);
    a->head[hl] = '\0';
    a->body = all + hl;
    a->body_len = buf_size(&a->out) - 1 - hl;
}

static void ask(st_t *st, const char *req, answer_t *a)
{
    ask_at(st, req, 784111777, a);
}

static void done(answer_t *a)
{
    buf_free(&a->out);
}

/* The value of a header line in an answer's head ("" when absent). */
static const char *hval(const answer_t *a, const char *name, char *out, size_t outlen)
{
    char key[96];
    snprintf(key, sizeof(key), "\r\n%s: ", name);
    const char *p = strstr(a->head, key);
    out[0] = '\0';
    if (p == NULL)
        return out;
    p += strlen(key);
    size_t n = strcspn(p, "\r");
    snprintf(out, outlen, "%.*s", (int)n, p);
    return out;
}

static void test_path_clean(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int rc;
        const char *out;
    } cases[] = {
        {"/", 0, ""},
        {"/index.html", 10, "index.html"},
        {"/a/b/", 4, "a/b/"},
        {"/a%20b", 3, "a b"},
        {"/%41%62", 2, "Ab"},
        {"/...", 3, "..."},
        {"/a..b/.c", 7, "a..b/.c"},
        {"/..", -1, NULL},
        {"/../etc/passwd", -1, NULL},
        {"/a/../b", -1, NULL},
        {"/a/..", -1, NULL},
        {"/.", -1, NULL},
        {"/./a", -1, NULL},
        {"/a/./", -1, NULL},
        {"/%2e%2e/x", -1, NULL},
        {"/%2E%2e", -1, NULL},
        {"/.%2e/", -1, NULL},
        {"/%2e/a", -1, NULL},
        {"//a", -1, NULL},
        {"/a//b", -1, NULL},
        {"/a\\b", -1, NULL},
        {"/a%5cb", -1, NULL},
        {"/a%5C..%5Cb", -1, NULL},
        {"/a%00b", -1, NULL},
        {"/a%2fb", -1, NULL},
        {"/a%2F..%2Fb", -1, NULL},
        {"/%zz", -1, NULL},
        {"/%4", -1, NULL},
        {"/%", -1, NULL},
        {"/a%0a", -1, NULL},
        {"/a%7f", -1, NULL},
        {"", -2, NULL},
        {"*", -2, NULL},
        {"index.html", -2, NULL},
        {"http://host/index.html", -2, NULL},
    };
    char out[64];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = st_path_clean(cases[i].in, strlen(cases[i].in), out, sizeof(out));
        if (rc != cases[i].rc)
            fail_msg("st_path_clean(%s) = %d, want %d", cases[i].in, rc, cases[i].rc);
        if (rc >= 0)
            assert_string_equal(out, cases[i].out);
    }
    /* A path that does not fit the output is not one st can have. */
    char lng[200];
    memset(lng, 'a', sizeof(lng));
    lng[0] = '/';
    assert_int_equal(st_path_clean(lng, sizeof(lng), out, sizeof(out)), -2);
    /* Bytes after the length are not looked at. */
    assert_int_equal(st_path_clean("/ab/../c", 3, out, sizeof(out)), 2);
    assert_string_equal(out, "ab");
}

static void test_content_types(void **state)
{
    (void)state;
    assert_string_equal(st_content_type("index.html"), "text/html; charset=utf-8");
    assert_string_equal(st_content_type("a/app.js"), "text/javascript; charset=utf-8");
    assert_string_equal(st_content_type("style.css"), "text/css; charset=utf-8");
    assert_string_equal(st_content_type("logo.SVG"), "image/svg+xml");
    assert_string_equal(st_content_type("x.wasm"), "application/wasm");
    assert_string_equal(st_content_type("noext"), "application/octet-stream");
    assert_string_equal(st_content_type(".html"), "application/octet-stream");
    assert_string_equal(st_content_type("dir.js/file"), "application/octet-stream");
}

static void test_loads_regular_files_only(void **state)
{
    fixture_t *f = *state;
    /* index.html app.js style.css logo.svg data.JSON blob.xyz "a b.txt"
     * empty.txt sub/index.html sub/page.txt noindex/file.txt */
    assert_int_equal(st_files(f->st), 11);
    answer_t a;
    static const char *const never[] = {
        "GET /secret.txt HTTP/1.1\r\n\r\n",
        "GET /out/secret.txt HTTP/1.1\r\n\r\n",
        "GET /rel-out.txt HTTP/1.1\r\n\r\n",
        "GET /inside.html HTTP/1.1\r\n\r\n",
        "GET /sub/up/index.html HTTP/1.1\r\n\r\n",
        "GET /fifo HTTP/1.1\r\n\r\n",
        "GET /.hidden HTTP/1.1\r\n\r\n",
        "GET /.git/config HTTP/1.1\r\n\r\n",
        "GET /out/ HTTP/1.1\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(never) / sizeof(never[0]); i++) {
        ask(f->st, never[i], &a);
        if (a.r != ST_PASS)
            fail_msg("%s answered %d", never[i], a.status);
        done(&a);
    }
}

static void test_get_head_and_headers(void **state)
{
    fixture_t *f = *state;
    answer_t a, h;
    char v[512];

    ask(f->st, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", &a);
    assert_int_equal(a.r, ST_DONE);
    assert_int_equal(a.status, 200);
    assert_true(strncmp(a.head, "HTTP/1.1 200 OK\r\n", 17) == 0);
    assert_int_equal(a.body_len, strlen(INDEX_HTML));
    assert_memory_equal(a.body, INDEX_HTML, a.body_len);
    assert_string_equal(hval(&a, "Content-Type", v, sizeof(v)), "text/html; charset=utf-8");
    char len[16];
    snprintf(len, sizeof(len), "%zu", strlen(INDEX_HTML));
    assert_string_equal(hval(&a, "Content-Length", v, sizeof(v)), len);
    assert_string_equal(hval(&a, "Cache-Control", v, sizeof(v)), "no-cache");
    assert_string_equal(hval(&a, "X-Content-Type-Options", v, sizeof(v)), "nosniff");
    assert_string_equal(hval(&a, "Referrer-Policy", v, sizeof(v)), "no-referrer");
    assert_string_equal(hval(&a, "Content-Security-Policy", v, sizeof(v)), ST_DEFAULT_CSP);
    assert_string_equal(hval(&a, "Connection", v, sizeof(v)), "close");
    assert_string_equal(hval(&a, "Date", v, sizeof(v)), "Sun, 06 Nov 1994 08:49:37 GMT");
    char etag[64];
    hval(&a, "ETag", etag, sizeof(etag));
    assert_int_equal(strlen(etag), 34);
    assert_true(etag[0] == '"' && etag[33] == '"');

    /* HEAD: the same head, no body. */
    ask(f->st, "HEAD / HTTP/1.1\r\n\r\n", &h);
    assert_int_equal(h.status, 200);
    assert_string_equal(h.head, a.head);
    assert_int_equal(h.body_len, 0);
    done(&h);

    /* The same request at the same time is the same bytes; the query is
     * ignored. */
    ask(f->st, "GET /index.html?v=2 HTTP/1.1\r\nHost: x\r\n\r\n", &h);
    assert_int_equal(h.status, 200);
    assert_int_equal(buf_size(&h.out), buf_size(&a.out));
    assert_memory_equal(buf_head(&h.out), buf_head(&a.out), buf_size(&a.out));
    done(&h);

    /* Other files: their types, their own ETags. */
    static const struct {
        const char *req, *type;
    } types[] = {
        {"GET /app.js HTTP/1.1\r\n\r\n", "text/javascript; charset=utf-8"},
        {"GET /style.css HTTP/1.1\r\n\r\n", "text/css; charset=utf-8"},
        {"GET /logo.svg HTTP/1.1\r\n\r\n", "image/svg+xml"},
        {"GET /data.JSON HTTP/1.1\r\n\r\n", "application/json"},
        {"GET /blob.xyz HTTP/1.1\r\n\r\n", "application/octet-stream"},
        {"GET /a%20b.txt HTTP/1.1\r\n\r\n", "text/plain; charset=utf-8"},
        {"GET /empty.txt HTTP/1.1\r\n\r\n", "text/plain; charset=utf-8"},
    };
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        ask(f->st, types[i].req, &h);
        assert_int_equal(h.status, 200);
        assert_string_equal(hval(&h, "Content-Type", v, sizeof(v)), types[i].type);
        assert_string_not_equal(hval(&h, "ETag", v, sizeof(v)), etag);
        done(&h);
    }
    done(&a);
}

static void test_etag_and_304(void **state)
{
    fixture_t *f = *state;
    answer_t a;
    char etag[64], req[512], v[128];

    ask(f->st, "GET /app.js HTTP/1.1\r\n\r\n", &a);
    hval(&a, "ETag", etag, sizeof(etag));
    done(&a);

    const char *const match[] = {"%s", "W/%s", "\"nope\", %s", "\"a\",W/%s , \"b\"", "*"};
    for (size_t i = 0; i < sizeof(match) / sizeof(match[0]); i++) {
        char inm[256];
        snprintf(inm, sizeof(inm), match[i], etag);
        snprintf(req, sizeof(req), "GET /app.js HTTP/1.1\r\nIf-None-Match: %s\r\n\r\n", inm);
        ask(f->st, req, &a);
        if (a.status != 304)
            fail_msg("If-None-Match: %s answered %d", inm, a.status);
        assert_int_equal(a.body_len, 0);
        assert_string_equal(hval(&a, "ETag", v, sizeof(v)), etag);
        assert_string_equal(hval(&a, "Cache-Control", v, sizeof(v)), "no-cache");
        assert_string_equal(hval(&a, "Content-Length", v, sizeof(v)), "");
        done(&a);
    }
    /* A list split over two lines counts. */
    snprintf(req, sizeof(req),
             "HEAD /app.js HTTP/1.1\r\nIf-None-Match: \"x\"\r\nIf-None-Match: %s\r\n\r\n", etag);
    ask(f->st, req, &a);
    assert_int_equal(a.status, 304);
    done(&a);

    /* Near misses are a full answer. */
    char cut[64];
    snprintf(cut, sizeof(cut), "%.*s\"", 20, etag);
    const char *const miss[] = {"\"0000\"", cut, "", "W/", "\"unterminated", etag + 1, "w/x"};
    for (size_t i = 0; i < sizeof(miss) / sizeof(miss[0]); i++) {
        snprintf(req, sizeof(req), "GET /app.js HTTP/1.1\r\nIf-None-Match: %s\r\n\r\n", miss[i]);
        ask(f->st, req, &a);
        if (a.status != 200)
            fail_msg("If-None-Match: %s answered %d", miss[i], a.status);
        done(&a);
    }
    /* Another file's ETag does not match this one. */
    ask(f->st, "GET /style.css HTTP/1.1\r\n\r\n", &a);
    hval(&a, "ETag", v, sizeof(v));
    done(&a);
    snprintf(req, sizeof(req), "GET /app.js HTTP/1.1\r\nIf-None-Match: %s\r\n\r\n", v);
    ask(f->st, req, &a);
    assert_int_equal(a.status, 200);
    done(&a);
}

static void test_traversal_and_bad_paths(void **state)
{
    fixture_t *f = *state;
    answer_t a;
    static const char *const bad[] = {
        "GET /../outside/secret.txt HTTP/1.1\r\n\r\n",
        "GET /%2e%2e/outside/secret.txt HTTP/1.1\r\n\r\n",
        "GET /sub/../index.html HTTP/1.1\r\n\r\n",
        "GET /sub/%2E%2E/%2e%2e/outside/secret.txt HTTP/1.1\r\n\r\n",
        "GET /sub%2f..%2f..%2foutside%2fsecret.txt HTTP/1.1\r\n\r\n",
        "GET /..%5c..%5coutside%5csecret.txt HTTP/1.1\r\n\r\n",
        "GET /index.html%00.txt HTTP/1.1\r\n\r\n",
        "GET //index.html HTTP/1.1\r\n\r\n",
        "GET /./index.html HTTP/1.1\r\n\r\n",
        "GET /sub/. HTTP/1.1\r\n\r\n",
        "GET /%zz HTTP/1.1\r\n\r\n",
        "HEAD /.. HTTP/1.1\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ask(f->st, bad[i], &a);
        if (a.r != ST_DONE || a.status != 400)
            fail_msg("%s: r=%d status=%d", bad[i], a.r, a.status);
        assert_null(strstr(buf_head(&a.out), "SECRET"));
        done(&a);
    }
    /* HEAD of a bad path: the head only. */
    ask(f->st, "HEAD /.. HTTP/1.1\r\n\r\n", &a);
    assert_int_equal(a.body_len, 0);
    done(&a);
    /* Not a path st can have: left to the caller. */
    ask(f->st, "GET http://x/index.html HTTP/1.1\r\n\r\n", &a);
    assert_int_equal(a.r, ST_PASS);
    done(&a);
    ask(f->st, "OPTIONS * HTTP/1.1\r\n\r\n", &a);
    assert_int_equal(a.r, ST_PASS);
    done(&a);
}

static void test_directories(void **state)
{
    fixture_t *f = *state;
    answer_t a;
    char v[256];

    ask(f->st, "GET /sub/ HTTP/1.1\r\n\r\n", &a);
    assert_int_equal(a.status, 200);
    assert_int_equal(a.body_len, strlen(SUB_INDEX));
    assert_memory_equal(a.body, SUB_INDEX, a.body_len);
    done(&a);
    ask(f->st, "GET /sub HTTP/1.1\r\n\r\n", &a);
    assert_int_equal(a.status, 301);
    assert_string_equal(hval(&a, "Location", v, sizeof(v)), "/sub/");
    done(&a);
    ask(f->st, "GET /sub?x=1&y=%20 HTTP/1.1\r\n\r\n", &a);
    assert_int_equal(a.status, 301);
    assert_string_equal(hval(&a, "Location", v, sizeof(v)), "/sub/?x=1&y=%20");
    done(&a);
    /* A directory without index.html: no listing, nothing at all. */
    ask(f->st, "GET /noindex/ HTTP/1.1\r\n\r\n", &a);
    assert_int_equal(a.r, ST_PASS);
    done(&a);
    ask(f->st, "GET /noindex HTTP/1.1\r\n\r\n", &a);
    assert_int_equal(a.r, ST_PASS);
    done(&a);
    ask(f->st, "GET /noindex/file.txt HTTP/1.1\r\n\r\n", &a);
    assert_int_equal(a.status, 200);
    done(&a);
    ask(f->st, "GET /missing HTTP/1.1\r\n\r\n", &a);
    assert_int_equal(a.r, ST_PASS);
    done(&a);
}

static void test_methods(void **state)
{
    fixture_t *f = *state;
    answer_t a;
    char v[64];
    static const char *const other[] = {
        "POST /index.html HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        "PUT / HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        "DELETE /app.js HTTP/1.1\r\n\r\n",
        "OPTIONS /sub HTTP/1.1\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
        ask(f->st, other[i], &a);
        assert_int_equal(a.status, 405);
        assert_string_equal(hval(&a, "Allow", v, sizeof(v)), "GET, HEAD");
        done(&a);
    }
    /* Only files are st's: a POST elsewhere goes on (to a backend). */
    ask(f->st, "POST /api HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &a);
    assert_int_equal(a.r, ST_PASS);
    done(&a);
}

static void test_size_caps(void **state)
{
    fixture_t *f = *state;
    char err[512] = "";
    /* index.html is the largest file. */
    st_opts_t o = {.max_file = strlen(INDEX_HTML) - 1};
    assert_null(st_create(f->dir, &o, err, sizeof(err)));
    assert_non_null(strstr(err, "index.html"));
    assert_non_null(strstr(err, "per-file cap"));
    o.max_file = strlen(INDEX_HTML);
    st_t *s = st_create(f->dir, &o, err, sizeof(err));
    assert_non_null(s);
    st_free(s);
    size_t total = st_bytes(f->st);
    st_opts_t t = {.max_total = total - 1};
    assert_null(st_create(f->dir, &t, err, sizeof(err)));
    assert_non_null(strstr(err, "total cap"));
    t.max_total = total;
    s = st_create(f->dir, &t, err, sizeof(err));
    assert_non_null(s);
    st_free(s);
    /* Missing directory, and one too deep. */
    assert_null(st_create("/nonexistent/wslb", NULL, err, sizeof(err)));
    char deep[512];
    snprintf(deep, sizeof(deep), "%s/deep", f->root);
    assert_int_equal(mkdir(deep, 0755), 0);
    char p[1024];
    snprintf(p, sizeof(p), "%s", deep);
    for (int i = 0; i <= ST_MAX_DEPTH; i++) {
        strcat(p, "/d");
        assert_int_equal(mkdir(p, 0755), 0);
    }
    assert_null(st_create(deep, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "deeper"));
}

static void test_reload_and_metrics(void **state)
{
    fixture_t *f = *state;
    char err[512] = "", etag1[64], etag2[64];
    met_registry_t *reg = met_create();
    st_opts_t o = {.metrics = reg, .csp = "default-src 'none'"};
    st_t *s = st_create(f->dir, &o, err, sizeof(err));
    assert_non_null(s);
    answer_t a;
    ask(s, "GET /app.js HTTP/1.1\r\n\r\n", &a);
    hval(&a, "ETag", etag1, sizeof(etag1));
    assert_string_equal(hval(&a, "Content-Security-Policy", err, sizeof(err)),
                        "default-src 'none'");
    st_count(s, a.status);
    done(&a);

    /* A new version is served only after the reload, with a new ETag. */
    put_file(f->dir, "app.js", "console.log(2);\n");
    put_file(f->dir, "new.txt", "new\n");
    ask(s, "GET /app.js HTTP/1.1\r\n\r\n", &a);
    assert_memory_equal(a.body, "console.log(1);\n", a.body_len);
    done(&a);
    assert_int_equal(st_reload(s, err, sizeof(err)), 0);
    ask(s, "GET /app.js HTTP/1.1\r\n\r\n", &a);
    assert_memory_equal(a.body, "console.log(2);\n", a.body_len);
    hval(&a, "ETag", etag2, sizeof(etag2));
    assert_string_not_equal(etag1, etag2);
    st_count(s, a.status);
    done(&a);
    ask(s, "GET /new.txt HTTP/1.1\r\n\r\n", &a);
    assert_int_equal(a.status, 200);
    st_count(s, a.status);
    done(&a);
    assert_int_equal(st_files(s), 12);

    /* A reload that fails keeps what was there. */
    char big[4096];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    st_opts_t small = {.max_file = 1024};
    st_t *s2 = st_create(f->dir, &small, err, sizeof(err));
    assert_non_null(s2);
    put_file(f->dir, "big.txt", big);
    assert_int_equal(st_reload(s2, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "big.txt"));
    ask(s2, "GET /new.txt HTTP/1.1\r\n\r\n", &a);
    assert_int_equal(a.status, 200);
    done(&a);
    st_free(s2);

    buf_t m = BUF_INIT;
    assert_int_equal(met_render(reg, &m), 0);
    assert_int_equal(buf_append(&m, "", 1), 0);
    assert_non_null(strstr(buf_head(&m), "wslb_lb_static_responses_total{code=\"200\"} 3"));
    assert_non_null(strstr(buf_head(&m), "wslb_lb_static_files 12"));
    buf_free(&m);
    st_free(s);
    met_free(reg);
    st_free(NULL);
}

typedef struct hammer {
    st_t *st;
    int stop;
    int bad;
    long served;
} hammer_t;

/* Serves app.js over and over; every answer must be one whole version. */
static void *hammer_main(void *arg)
{
    hammer_t *hm = arg;
    while (!__atomic_load_n(&hm->stop, __ATOMIC_ACQUIRE)) {
        answer_t a;
        ask(hm->st, "GET /app.js HTTP/1.1\r\n\r\n", &a);
        int ok = a.status == 200 && a.body_len == 16 &&
                 (memcmp(a.body, "console.log(1);\n", 16) == 0 ||
                  memcmp(a.body, "console.log(2);\n", 16) == 0);
        if (!ok)
            __atomic_store_n(&hm->bad, 1, __ATOMIC_RELEASE);
        done(&a);
        hm->served++;
    }
    return NULL;
}

/* Reloads while two threads serve: no answer mixes versions, nothing is
 * used after the reload frees it (ASan would say). */
static void test_reload_while_serving(void **state)
{
    fixture_t *f = *state;
    hammer_t hm[2] = {{.st = f->st}, {.st = f->st}};
    pthread_t t[2];
    char err[256];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hammer_main, &hm[i]), 0);
    for (int i = 0; i < 40; i++) {
        put_file(f->dir, "app.js", i % 2 ? "console.log(1);\n" : "console.log(2);\n");
        assert_int_equal(st_reload(f->st, err, sizeof(err)), 0);
    }
    for (int i = 0; i < 2; i++) {
        __atomic_store_n(&hm[i].stop, 1, __ATOMIC_RELEASE);
        pthread_join(t[i], NULL);
        assert_int_equal(hm[i].bad, 0);
        assert_true(hm[i].served > 0);
    }
}

int main(void)
{
    log_set_level(LOG_LVL_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_clean),
        cmocka_unit_test(test_content_types),
        cmocka_unit_test_setup_teardown(test_loads_regular_files_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_head_and_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_etag_and_304, setup, teardown),
        cmocka_unit_test_setup_teardown(test_traversal_and_bad_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_directories, setup, teardown),
        cmocka_unit_test_setup_teardown(test_methods, setup, teardown),
        cmocka_unit_test_setup_teardown(test_size_caps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload_and_metrics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload_while_serving, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
