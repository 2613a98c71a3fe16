/* st: static files served from memory (see static.h). */
#include "static.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "log.h"
#include "met_names.h"

typedef struct st_file {
    char *path;    /* relative to DIR, e.g. "index.html", "img/logo.svg" */
    char *data;    /* the whole content */
    size_t len;    /* bytes of data */
    char *hdr;     /* Content-Type, ETag, Cache-Control lines (CRLF each) */
    char etag[35]; /* "\"" + 32 hex + "\"" */
} st_file_t;

/* One loaded snapshot of DIR; immutable once built. */
typedef struct st_set {
    st_file_t *v; /* sorted by path */
    size_t n, cap;
    size_t bytes;
} st_set_t;

enum { ST_C_200, ST_C_301, ST_C_304, ST_C_400, ST_C_405, ST_C__COUNT };
static const int st_codes[ST_C__COUNT] = {200, 301, 304, 400, 405};

struct st {
    char *dir;
    size_t max_file, max_total;
    char *sec; /* the security header lines every response carries */
    pthread_rwlock_t lock;
    st_set_t *set;
    met_counter_t *responses[ST_C__COUNT];
    met_gauge_t *g_files, *g_bytes;
};

/* ---- content types ----------------------------------------------------------- */

static const struct {
    const char *ext;
    const char *type;
} st_types[] = {
    {"html", "text/html; charset=utf-8"},
    {"htm", "text/html; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"json", "application/json"},
    {"map", "application/json"},
    {"webmanifest", "application/manifest+json"},
    {"txt", "text/plain; charset=utf-8"},
    {"md", "text/markdown; charset=utf-8"},
    {"xml", "application/xml"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"avif", "image/avif"},
    {"ico", "image/x-icon"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"ttf", "font/ttf"},
    {"otf", "font/otf"},
    {"wasm", "application/wasm"},
    {"pdf", "application/pdf"},
};

const char *st_content_type(const char *name)
{
    const char *slash = strrchr(name, '/');
    const char *base = slash ? slash + 1 : name;
    const char *dot = strrchr(base, '.');
    if (dot != NULL && dot != base) {
        for (size_t i = 0; i < sizeof(st_types) / sizeof(st_types[0]); i++)
            if (strcasecmp(dot + 1, st_types[i].ext) == 0)
                return st_types[i].type;
    }
    /* With nosniff, the browser takes this at its word: never runs it. */
    return "application/octet-stream";
}

/* ---- paths -------------------------------------------------------------------- */

static int st_hex(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Checks one decoded segment out[from..to): not "." or "..", not empty
 * unless it is the last one (a trailing slash). */
static int st_segment_ok(const char *seg, size_t n, int last)
{
    if (n == 0)
        return last;
    if ((n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
        return 0;
    return 1;
}

int st_path_clean(const char *p, size_t n, char *out, size_t outlen)
{
    size_t o = 0, seg = 0;

    if (n == 0 || p[0] != '/' || outlen == 0)
        return -2;
    for (size_t i = 1; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '/') {
            if (!st_segment_ok(out + seg, o - seg, 0))
                return -1;
            if (o + 1 >= outlen)
                return -2;
            out[o++] = '/';
            seg = o;
            continue;
        }
        if (c == '%') {
            int hi = i + 2 < n ? st_hex((unsigned char)p[i + 1]) : -1;
            int lo = i + 2 < n ? st_hex((unsigned char)p[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return -1;
            c = (unsigned char)(hi << 4 | lo);
            i += 2;
            /* An encoded '/' would be a separator nobody sees; a file name
             * cannot hold one anyway. */
            if (c == '/')
                return -1;
        }
        /* NUL would end the name early; backslashes are separators
         * elsewhere; control bytes are never in a name worth serving. */
        if (c < 0x20 || c == 0x7f || c == '\\')
            return -1;
        if (o + 1 >= outlen)
            return -2;
        out[o++] = (char)c;
    }
    if (!st_segment_ok(out + seg, o - seg, 1))
        return -1;
    out[o] = '\0';
    return (int)o;
}

/* ---- loading ---------------------------------------------------------------------- */

static void st_set_free(st_set_t *set)
{
    if (set == NULL)
        return;
    for (size_t i = 0; i < set->n; i++) {
        free(set->v[i].path);
        free(set->v[i].data);
        free(set->v[i].hdr);
    }
    free(set->v);
    free(set);
}

static int st_file_cmp(const void *a, const void *b)
{
    return strcmp(((const st_file_t *)a)->path, ((const st_file_t *)b)->path);
}

/* Strong ETag: 128 bits of SHA-256 of the content, enough that two versions
 * of a file never share one. */
static int st_etag(const char *data, size_t len, char out[35])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen < 16)
        return -1;
    out[0] = '"';
    for (int i = 0; i < 16; i++)
        snprintf(out + 1 + 2 * i, 3, "%02x", md[i]);
    out[33] = '"';
    out[34] = '\0';
    return 0;
}

/* Reads fd to its end or until want bytes, into p; *got says how many.
 * 0, or -1 with errno. */
static int st_read_fd(int fd, char *p, size_t want, size_t *got)
{
    *got = 0;
    while (*got < want) {
        ssize_t r = read(fd, p + *got, want - *got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        *got += (size_t)r;
    }
    return 0;
}

/* Fills f's ETag and its header lines from its data; -1 when out of memory
 * or the hash fails. */
static int st_file_meta(st_file_t *f)
{
    buf_t h = BUF_INIT;
    if (st_etag(f->data, f->len, f->etag) < 0)
        return -1;
    if (buf_printf(&h, "Content-Type: %s\r\nETag: %s\r\nCache-Control: no-cache\r\n",
                   st_content_type(f->path), f->etag) < 0 ||
        buf_append(&h, "", 1) < 0) {
        buf_free(&h);
        return -1;
    }
    f->hdr = h.data; /* NUL-terminated above; owned by f from here */
    return 0;
}

/* Reads the regular file name (in directory dfd) whose lstat is sb into a new
 * entry of set. Precondition: sb says regular and within the size cap. */
static int st_load_file(st_t *s, st_set_t *set, int dfd, const char *name, const char *rel,
                        const struct stat *sb, char *err, size_t errlen)
{
    st_file_t f = {0};
    struct stat fsb;
    size_t got = 0;
    /* O_NOFOLLOW: a symlink swapped in since the lstat fails here; O_NONBLOCK:
     * so does a FIFO, instead of blocking the open. */
    int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s/%s: %s", s->dir, rel, strerror(errno));
        return -1;
    }
    if (fstat(fd, &fsb) < 0 || !S_ISREG(fsb.st_mode) || fsb.st_ino != sb->st_ino ||
        fsb.st_dev != sb->st_dev) {
        snprintf(err, errlen, "%s/%s: changed while being read", s->dir, rel);
        goto fail;
    }
    /* One byte more than the cap, so that a file that grew is noticed. */
    size_t want = (size_t)fsb.st_size < s->max_file ? (size_t)fsb.st_size + 1 : s->max_file + 1;
    f.data = malloc(want);
    f.path = strdup(rel);
    if (f.data == NULL || f.path == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (st_read_fd(fd, f.data, want, &got) < 0) {
        snprintf(err, errlen, "%s/%s: %s", s->dir, rel, strerror(errno));
        goto fail;
    }
    if (got > s->max_file) {
        snprintf(err, errlen, "%s/%s: over the %zu KiB per-file cap (--static-max-file-kb)", s->dir,
                 rel, s->max_file / 1024);
        goto fail;
    }
    if (set->bytes + got > s->max_total) {
        snprintf(err, errlen, "%s: over the %zu KiB total cap (--static-max-total-kb) at %s",
                 s->dir, s->max_total / 1024, rel);
        goto fail;
    }
    f.len = got;
    if (st_file_meta(&f) < 0) {
        snprintf(err, errlen, "%s/%s: out of memory", s->dir, rel);
        goto fail;
    }
    if (set->n == set->cap) {
        size_t nc = set->cap ? set->cap * 2 : 16;
        st_file_t *nv = realloc(set->v, nc * sizeof(*nv));
        if (nv == NULL) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        set->v = nv;
        set->cap = nc;
    }
    set->v[set->n++] = f;
    set->bytes += got;
    close(fd);
    return 0;
fail:
    free(f.data);
    free(f.path);
    free(f.hdr);
    close(fd);
    return -1;
}

/* Loads every entry of the directory dfd (whose path under DIR is rel,
 * "" for DIR itself) into set. Takes ownership of dfd. */
static int st_walk(st_t *s, st_set_t *set, int dfd, const char *rel, int depth, char *err,
                   size_t errlen)
{
    DIR *d = fdopendir(dfd);
    if (d == NULL) {
        snprintf(err, errlen, "%s/%s: %s", s->dir, rel, strerror(errno));
        close(dfd);
        return -1;
    }
    int rc = 0;
    struct dirent *e;
    char sub[ST_MAX_PATH];
    while (rc == 0) {
        errno = 0;
        if ((e = readdir(d)) == NULL) {
            if (errno != 0) {
                snprintf(err, errlen, "%s/%s: %s", s->dir, rel, strerror(errno));
                rc = -1;
            }
            break;
        }
        const char *name = e->d_name;
        if (name[0] == '.')
            continue; /* ".", "..", and hidden files: never served */
        /* A name must be reachable by a clean request path: no backslash or
         * control byte, and its whole path short enough. */
        int bad = 0;
        for (const char *q = name; *q; q++)
            bad |= (unsigned char)*q < 0x20 || *q == 0x7f || *q == '\\';
        int n = snprintf(sub, sizeof(sub), "%s%s%s", rel, *rel ? "/" : "", name);
        if (bad || n < 0 || (size_t)n >= sizeof(sub) - 1) {
            log_warn("static: skipping an entry of %s/%s: its name cannot be requested", s->dir,
                     rel);
            continue;
        }
        struct stat sb;
        if (fstatat(dfd, name, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
            snprintf(err, errlen, "%s/%s: %s", s->dir, sub, strerror(errno));
            rc = -1;
        } else if (S_ISLNK(sb.st_mode)) {
            log_warn("static: not following the symlink %s/%s", s->dir, sub);
        } else if (S_ISDIR(sb.st_mode)) {
            if (depth + 1 > ST_MAX_DEPTH) {
                snprintf(err, errlen, "%s/%s: deeper than %d directories", s->dir, sub,
                         ST_MAX_DEPTH);
                rc = -1;
                break;
            }
            int cfd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (cfd < 0) {
                snprintf(err, errlen, "%s/%s: %s", s->dir, sub, strerror(errno));
                rc = -1;
            } else {
                rc = st_walk(s, set, cfd, sub, depth + 1, err, errlen);
            }
        } else if (!S_ISREG(sb.st_mode)) {
            log_warn("static: skipping %s/%s: not a regular file", s->dir, sub);
        } else if ((size_t)sb.st_size > s->max_file) {
            snprintf(err, errlen,
                     "%s/%s: %lld bytes, over the %zu KiB per-file cap "
                     "(--static-max-file-kb)",
                     s->dir, sub, (long long)sb.st_size, s->max_file / 1024);
            rc = -1;
        } else if (set->n >= ST_MAX_FILES) {
            snprintf(err, errlen, "%s: more than %d files", s->dir, ST_MAX_FILES);
            rc = -1;
        } else {
            rc = st_load_file(s, set, dfd, name, sub, &sb, err, errlen);
        }
    }
    closedir(d); /* closes dfd */
    return rc;
}

/* Reads DIR into a new set; NULL with err. */
static st_set_t *st_load(st_t *s, char *err, size_t errlen)
{
    st_set_t *set = calloc(1, sizeof(*set));
    if (set == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    /* DIR itself is followed if it is a symlink (a deploy's "current"
     * link); nothing below it is. */
    int dfd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        snprintf(err, errlen, "%s: %s", s->dir, strerror(errno));
        goto fail;
    }
    if (st_walk(s, set, dfd, "", 0, err, errlen) < 0)
        goto fail;
    if (set->n > 0)
        qsort(set->v, set->n, sizeof(set->v[0]), st_file_cmp);
    return set;
fail:
    st_set_free(set);
    return NULL;
}

static void st_publish(st_t *s, const st_set_t *set)
{
    if (s->g_files != NULL) {
        met_set(s->g_files, (int64_t)set->n);
        met_set(s->g_bytes, (int64_t)set->bytes);
    }
}

st_t *st_create(const char *dir, const st_opts_t *opts, char *err, size_t errlen)
{
    st_opts_t def = {0};
    if (opts == NULL)
        opts = &def;
    st_t *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    /* Writer first: under a steady stream of requests a reload must still
     * get its turn (glibc prefers readers by default). */
    pthread_rwlockattr_t la;
    pthread_rwlockattr_init(&la);
    pthread_rwlockattr_setkind_np(&la, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&s->lock, &la);
    pthread_rwlockattr_destroy(&la);
    s->max_file = opts->max_file ? opts->max_file : ST_DEFAULT_MAX_FILE;
    s->max_total = opts->max_total ? opts->max_total : ST_DEFAULT_MAX_TOTAL;
    const char *csp = opts->csp ? opts->csp : ST_DEFAULT_CSP;
    for (const char *q = csp; *q; q++) {
        if ((unsigned char)*q < 0x20 || *q == 0x7f) {
            snprintf(err, errlen, "the Content-Security-Policy holds a control character");
            goto fail;
        }
    }
    buf_t sec = BUF_INIT;
    if (*csp && buf_printf(&sec, "Content-Security-Policy: %s\r\n", csp) < 0)
        goto oom;
    if (buf_append_str(&sec, "X-Content-Type-Options: nosniff\r\n"
                             "Referrer-Policy: no-referrer\r\n"
                             "X-Frame-Options: DENY\r\n") < 0 ||
        buf_append(&sec, "", 1) < 0) {
        buf_free(&sec);
        goto oom;
    }
    s->sec = sec.data;
    s->dir = strdup(dir);
    if (s->dir == NULL)
        goto oom;
    if (opts->metrics != NULL) {
        for (int i = 0; i < ST_C__COUNT; i++) {
            char label[24];
            snprintf(label, sizeof(label), "code=\"%d\"", st_codes[i]);
            s->responses[i] = met_counter(opts->metrics, MN_LB_STATIC_RESPONSES, label,
                                          "Responses the lb served from --static, by status code");
        }
        s->g_files =
            met_gauge(opts->metrics, MN_LB_STATIC_FILES, NULL, "Files loaded from --static");
        s->g_bytes = met_gauge(opts->metrics, MN_LB_STATIC_BYTES, NULL,
                               "Bytes of the files loaded from --static");
        if (s->g_files == NULL || s->g_bytes == NULL)
            goto oom;
    }
    s->set = st_load(s, err, errlen);
    if (s->set == NULL)
        goto fail;
    st_publish(s, s->set);
    return s;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    st_free(s);
    return NULL;
}

int st_reload(st_t *s, char *err, size_t errlen)
{
    st_set_t *set = st_load(s, err, errlen);
    if (set == NULL)
        return -1;
    pthread_rwlock_wrlock(&s->lock);
    st_set_t *old = s->set;
    s->set = set;
    pthread_rwlock_unlock(&s->lock);
    st_publish(s, set);
    st_set_free(old);
    return 0;
}

void st_free(st_t *s)
{
    if (s == NULL)
        return;
    st_set_free(s->set);
    pthread_rwlock_destroy(&s->lock);
    free(s->sec);
    free(s->dir);
    free(s);
}

size_t st_files(st_t *s)
{
    pthread_rwlock_rdlock(&s->lock);
    size_t n = s->set->n;
    pthread_rwlock_unlock(&s->lock);
    return n;
}

size_t st_bytes(st_t *s)
{
    pthread_rwlock_rdlock(&s->lock);
    size_t n = s->set->bytes;
    pthread_rwlock_unlock(&s->lock);
    return n;
}

void st_count(st_t *s, int status)
{
    for (int i = 0; i < ST_C__COUNT; i++)
        if (st_codes[i] == status && s->responses[i] != NULL)
            met_inc(s->responses[i], 1);
}

/* ---- answering ----------------------------------------------------------------------- */

static const st_file_t *st_find(const st_set_t *set, const char *path)
{
    st_file_t key = {.path = (char *)path};
    if (set->n == 0)
        return NULL;
    return bsearch(&key, set->v, set->n, sizeof(set->v[0]), st_file_cmp);
}

/* Whether an If-None-Match value (a list of entity tags, or "*") holds etag.
 * Weak comparison, as RFC 9110 13.1.2 asks: W/"x" matches "x". A malformed
 * list matches nothing past the point where it breaks. */
static int st_inm_match(http_str_t v, const char *etag)
{
    size_t i = 0, elen = strlen(etag);
    while (i < v.n) {
        char c = v.p[i];
        if (c == ' ' || c == '\t' || c == ',') {
            i++;
            continue;
        }
        if (c == '*')
            return 1;
        if (c == 'W' && i + 1 < v.n && v.p[i + 1] == '/')
            i += 2;
        if (i >= v.n || v.p[i] != '"')
            return 0;
        size_t j = i + 1;
        while (j < v.n && v.p[j] != '"')
            j++;
        if (j >= v.n)
            return 0;
        if (j + 1 - i == elen && memcmp(v.p + i, etag, elen) == 0)
            return 1;
        i = j + 1;
    }
    return 0;
}

/* Every If-None-Match line counts (a list may be split over several). */
static int st_not_modified(const http_head_t *h, const char *etag)
{
    for (size_t i = 0; i < h->nheaders; i++)
        if (http_str_caseeq(h->headers[i].name, "If-None-Match") &&
            st_inm_match(h->headers[i].value, etag))
            return 1;
    return 0;
}

/* IMF-fixdate (RFC 9110 5.6.7), independent of the locale. */
static void st_date(time_t now, char out[40])
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    if (gmtime_r(&now, &tm) == NULL) {
        snprintf(out, 40, "Thu, 01 Jan 1970 00:00:00 GMT");
        return;
    }
    snprintf(out, 40, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7], tm.tm_mday,
             months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* Status line, Date, the security headers and Connection: close. */
static int st_head(const st_t *s, buf_t *out, int status, time_t now)
{
    char date[40];
    st_date(now, date);
    return buf_printf(out, "HTTP/1.1 %d %s\r\nDate: %s\r\n%sConnection: close\r\n", status,
                      http_reason(status), date, s->sec);
}

/* A short text answer of st's own (301, 400, 405). */
static int st_small(const st_t *s, buf_t *out, int status, time_t now, const char *extra,
                    const char *body, int head_only)
{
    size_t blen = strlen(body);
    if (st_head(s, out, status, now) < 0 ||
        buf_printf(out, "Content-Type: text/plain; charset=utf-8\r\nContent-Length: %zu\r\n%s\r\n",
                   blen, extra ? extra : "") < 0)
        return ST_NO_MEMORY;
    if (!head_only && buf_append(out, body, blen) < 0)
        return ST_NO_MEMORY;
    return ST_DONE;
}

/* The query part of the URL ("?..." or ""), when it is safe to echo in a
 * Location header: visible ASCII only. */
static http_str_t st_query(const http_head_t *h)
{
    http_str_t q = {"", 0};
    if (h->url.n > h->path.n && h->url.p[h->path.n] == '?') {
        q.p = h->url.p + h->path.n;
        q.n = h->url.n - h->path.n;
        for (size_t i = 0; i < q.n; i++)
            if ((unsigned char)q.p[i] <= 0x20 || (unsigned char)q.p[i] >= 0x7f || q.p[i] == '#')
                return (http_str_t){"", 0};
    }
    return q;
}

/* Precondition: s->lock held for reading. */
static int st_respond_locked(const st_t *s, const http_head_t *h, time_t now, buf_t *out,
                             int *status)
{
    char rel[ST_MAX_PATH + 16];
    int get = http_str_eq(h->method_str, "GET");
    int head = http_str_eq(h->method_str, "HEAD");

    int n = st_path_clean(h->path.p, h->path.n, rel, ST_MAX_PATH);
    if (n == -1) {
        *status = 400;
        return st_small(s, out, 400, now, NULL, "bad request path\n", head);
    }
    if (n < 0)
        return ST_PASS;
    int dir = n == 0 || rel[n - 1] == '/';
    if (dir)
        memcpy(rel + n, "index.html", sizeof("index.html"));
    const st_file_t *f = st_find(s->set, rel);
    if (f == NULL && !dir) {
        /* "/docs" where "/docs/" has an index: send the browser there, so
         * that the page's relative links resolve inside the directory. */
        memcpy(rel + n, "/index.html", sizeof("/index.html"));
        if (st_find(s->set, rel) == NULL)
            return ST_PASS;
        if (!get && !head) {
            *status = 405;
            return st_small(s, out, 405, now, "Allow: GET, HEAD\r\n", "method not allowed\n", 0);
        }
        http_str_t q = st_query(h);
        char loc[ST_MAX_PATH * 3 + 64];
        if (h->path.n + 1 + q.n + 16 > sizeof(loc))
            return ST_PASS;
        snprintf(loc, sizeof(loc), "Location: %.*s/%.*s\r\n", (int)h->path.n, h->path.p, (int)q.n,
                 q.p);
        *status = 301;
        return st_small(s, out, 301, now, loc, "moved permanently\n", head);
    }
    if (f == NULL)
        return ST_PASS;
    if (!get && !head) {
        *status = 405;
        return st_small(s, out, 405, now, "Allow: GET, HEAD\r\n", "method not allowed\n", 0);
    }
    if (st_not_modified(h, f->etag)) {
        *status = 304;
        if (st_head(s, out, 304, now) < 0 ||
            buf_printf(out, "ETag: %s\r\nCache-Control: no-cache\r\n\r\n", f->etag) < 0)
            return ST_NO_MEMORY;
        return ST_DONE;
    }
    *status = 200;
    if (st_head(s, out, 200, now) < 0 ||
        buf_printf(out, "%sContent-Length: %zu\r\n\r\n", f->hdr, f->len) < 0)
        return ST_NO_MEMORY;
    if (get && f->len > 0 && buf_append(out, f->data, f->len) < 0)
        return ST_NO_MEMORY;
    return ST_DONE;
}

int st_respond(st_t *s, const http_head_t *h, time_t now, buf_t *out, int *status)
{
    *status = 0;
    pthread_rwlock_rdlock(&s->lock);
    int r = st_respond_locked(s, h, now, out, status);
    pthread_rwlock_unlock(&s->lock);
    return r;
}
