/* st: the lb's static files (--static DIR), served from memory.
 *
 * st_create() reads every regular file under DIR once, before anything is
 * served, and st_reload() reads them again for a configuration reload. A
 * request is then answered by st_respond(), which renders the complete
 * response into a buffer: serving a file is a memory copy and the proxy
 * threads never touch the disk.
 *
 * What is loaded: regular files only, found by walking DIR one directory
 * descriptor at a time with O_NOFOLLOW, so no symlink under DIR is ever
 * followed (they are skipped with a warning, as are FIFOs, sockets and
 * devices, which are never opened). Names starting with '.' are skipped
 * (.git, .htpasswd, editor swap files). DIR itself may be a symlink: that is
 * the operator's choice, not something a file under it can make. Every file
 * must fit --static-max-file-kb and all of them --static-max-total-kb, or the
 * load fails (at start: the lb does not start; on reload: the old set stays).
 *
 * What is answered: GET and HEAD of a file (200, or 304 when If-None-Match
 * holds its ETag); a directory path ending in '/' serves that directory's
 * index.html, one without the slash is redirected (301) to it; there are no
 * listings. Other methods on a file get 405 with Allow. A path that is not
 * clean (bad percent-encoding, NUL or control bytes, backslashes, an encoded
 * '/', '.' or '..' segments, '//') gets 400. The query string is ignored.
 * Anything else is not st's: st_respond() says so and the caller goes on
 * (proxy, or 404).
 *
 * Every response carries a strong ETag (a SHA-256 prefix of the content),
 * Cache-Control: no-cache (the names carry no content hash, so a browser
 * must revalidate to pick up a deploy; the ETag makes that a 304), the
 * Content-Security-Policy, X-Content-Type-Options: nosniff, Referrer-Policy
 * and X-Frame-Options, and Connection: close. */
#ifndef LB_STATIC_H
#define LB_STATIC_H

#include <stddef.h>
#include <time.h>

#include "buf.h"
#include "http.h"
#include "met.h"

#define ST_DEFAULT_MAX_FILE  (1024 * 1024)
#define ST_DEFAULT_MAX_TOTAL (16 * 1024 * 1024)
#define ST_MAX_FILES         4096
#define ST_MAX_DEPTH         16
#define ST_MAX_PATH          1024 /* longest relative path served, in bytes */

/* Only what the bundled page needs: its own scripts, styles and images, and
 * websockets to the same origin ('self' covers ws: and wss: on the page's
 * host and port in CSP Level 3 browsers). No inline script or style. */
#define ST_DEFAULT_CSP                                                                             \
    "default-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; "                \
    "frame-ancestors 'none'; object-src 'none'"

typedef struct st st_t;

typedef struct st_opts {
    size_t max_file;  /* bytes per file; 0 = ST_DEFAULT_MAX_FILE */
    size_t max_total; /* bytes for all files; 0 = ST_DEFAULT_MAX_TOTAL */
    const char *csp;  /* Content-Security-Policy value; NULL = ST_DEFAULT_CSP; copied */
    /* Where to register wslb_lb_static_* metrics; NULL = none. Must outlive
     * the st_t. */
    met_registry_t *metrics;
} st_opts_t;

enum st_result {
    ST_NO_MEMORY = -1, /* out may hold a partial response: drop the connection */
    ST_PASS = 0,       /* not a static file: the caller decides (proxy, 404) */
    ST_DONE = 1,       /* a complete response was appended to out */
};

/* Loads DIR (copied) with opts (NULL = defaults). NULL with err when DIR
 * cannot be read or breaks a limit. Call before any thread serves. */
st_t *st_create(const char *dir, const st_opts_t *opts, char *err, size_t errlen);
/* Any thread: reads DIR again and swaps the new set in; requests being
 * rendered finish with the old one. -1 with err keeps the current set. */
int st_reload(st_t *s, char *err, size_t errlen);
/* NULL is a no-op; no thread may be in st_respond(). */
void st_free(st_t *s);

/* Files and bytes currently loaded. */
size_t st_files(st_t *s);
size_t st_bytes(st_t *s);

/* Any thread. Renders the answer to the request h (method, path, query and
 * headers; parsed by http_parse_request) into out, with now as its Date,
 * and sets *status. Pure apart from a read lock against st_reload(): the
 * same set, request and time give the same bytes. */
int st_respond(st_t *s, const http_head_t *h, time_t now, buf_t *out, int *status);
/* Counts one response with status in wslb_lb_static_responses_total. */
void st_count(st_t *s, int status);

/* Percent-decodes and checks a request path (without query). Writes the
 * path relative to DIR, without the leading '/', NUL-terminated, to
 * out[outlen]: "" for "/", "sub/" for "/sub/". Returns its length, -1 when
 * the path is not clean (answer 400), -2 when it does not start with '/' or
 * does not fit (not a file st can have). */
int st_path_clean(const char *p, size_t n, char *out, size_t outlen);
/* The Content-Type st sends for a file name, by extension. */
const char *st_content_type(const char *name);

#endif
