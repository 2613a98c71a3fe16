/* log: leveled, timestamped logging to stderr (see log.h). */
#include "log.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* Longest line written; longer ones are cut and marked with "...". */
#define LOG_LINE_MAX 4096
/* Room kept at the end of a line for what closes it ("...", "}, newline). */
#define LOG_TAIL 16
/* Room a numeric field may take besides its key. */
#define LOG_NUM_ROOM 32

/* Process-wide by design (see log.h). Accessed with relaxed atomics because
 * worker threads read them while the main thread may change them at startup. */
static int log_level = LOG_LVL_INFO;
static int log_format = LOG_FMT_TEXT;
static const char *log_tag = NULL;

static const char *const log_names[] = {"debug", "info", "warn", "error", "off"};
static const char *const log_labels[] = {"DEBUG", "INFO", "WARN", "ERROR", "OFF"};

void log_set_level(enum log_level lvl)
{
    if ((int)lvl < LOG_LVL_DEBUG || lvl > LOG_LVL_OFF)
        lvl = LOG_LVL_INFO;
    __atomic_store_n(&log_level, (int)lvl, __ATOMIC_RELAXED);
}

enum log_level log_get_level(void)
{
    return (enum log_level)__atomic_load_n(&log_level, __ATOMIC_RELAXED);
}

int log_parse_level(const char *name, enum log_level *out)
{
    if (name == NULL)
        return -1;
    for (int i = LOG_LVL_DEBUG; i <= LOG_LVL_OFF; i++) {
        if (strcasecmp(name, log_names[i]) == 0) {
            if (out != NULL)
                *out = (enum log_level)i;
            return 0;
        }
    }
    /* "warning" is what people type as often as "warn". */
    if (strcasecmp(name, "warning") == 0) {
        if (out != NULL)
            *out = LOG_LVL_WARN;
        return 0;
    }
    return -1;
}

void log_set_format(enum log_format fmt)
{
    __atomic_store_n(&log_format, fmt == LOG_FMT_JSON ? LOG_FMT_JSON : LOG_FMT_TEXT,
                     __ATOMIC_RELAXED);
}

enum log_format log_get_format(void)
{
    return (enum log_format)__atomic_load_n(&log_format, __ATOMIC_RELAXED);
}

int log_parse_format(const char *name, enum log_format *out)
{
    enum log_format f;
    if (name != NULL && strcasecmp(name, "text") == 0)
        f = LOG_FMT_TEXT;
    else if (name != NULL && strcasecmp(name, "json") == 0)
        f = LOG_FMT_JSON;
    else
        return -1;
    if (out != NULL)
        *out = f;
    return 0;
}

void log_set_tag(const char *tag)
{
    __atomic_store_n(&log_tag, tag, __ATOMIC_RELAXED);
}

/* ---- rendering (pure) ------------------------------------------------------ */

/* A line being built: never more than cap bytes, so a NUL always fits. */
typedef struct log_out {
    char *p;
    size_t n, cap;
    int cut; /* a value did not fit: nothing more is added */
} log_out_t;

static void lo_put(log_out_t *o, const char *s, size_t k)
{
    if (k > o->cap - o->n)
        k = o->cap - o->n;
    memcpy(o->p + o->n, s, k);
    o->n += k;
}

static void lo_str(log_out_t *o, const char *s)
{
    lo_put(o, s, strlen(s));
}

/* Whether k more bytes fit before the tail kept for closing the line. */
static int lo_room(const log_out_t *o, size_t k)
{
    return !o->cut && o->n + k + LOG_TAIL <= o->cap;
}

/* The escaped form of one byte: in text only \, (when quoted) " and bytes
 * outside printable ASCII change; in JSON what RFC 8259 requires, plus
 * every byte above 0x7e as \u00HH. Returns its length in e[0..8). */
static size_t log_esc1(unsigned char ch, enum log_format fmt, int quoted, char e[8])
{
    static const char hex[] = "0123456789abcdef";
    if (fmt == LOG_FMT_JSON) {
        const char *named = ch == '"'    ? "\\\""
                            : ch == '\\' ? "\\\\"
                            : ch == '\n' ? "\\n"
                            : ch == '\r' ? "\\r"
                            : ch == '\t' ? "\\t"
                                         : NULL;
        if (named != NULL) {
            memcpy(e, named, 2);
            return 2;
        }
        if (ch < 0x20 || ch > 0x7e) {
            memcpy(e, "\\u00", 4);
            e[4] = hex[ch >> 4];
            e[5] = hex[ch & 15];
            return 6;
        }
    } else {
        if (ch == '\\' || (quoted && ch == '"')) {
            e[0] = '\\';
            e[1] = (char)ch;
            return 2;
        }
        if (ch < 0x20 || ch > 0x7e) {
            e[0] = '\\';
            e[1] = 'x';
            e[2] = hex[ch >> 4];
            e[3] = hex[ch & 15];
            return 4;
        }
    }
    e[0] = (char)ch;
    return 1;
}

/* Appends s escaped; when it does not fit, as much as does and "...", and
 * marks the line cut. */
static void lo_esc(log_out_t *o, const char *s, enum log_format fmt, int quoted)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char e[8];
        size_t k = log_esc1(*p, fmt, quoted, e);
        if (!lo_room(o, k + 3)) {
            lo_str(o, "...");
            o->cut = 1;
            return;
        }
        lo_put(o, e, k);
    }
}

/* Plain printable ASCII without quotes or backslashes, not empty: a text
 * value that needs no quotes. */
static int log_bare_ok(const char *s)
{
    if (*s == '\0')
        return 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= 0x20 || *p > 0x7e || *p == '"' || *p == '\\')
            return 0;
    return 1;
}

/* A numeric field's value as both formats write it; `none` is what stands
 * for a missing one ("-" in text, null in JSON). */
static const char *lo_num(char *num, size_t n, const log_field_t *f, const char *none)
{
    switch (f->type) {
    case LOG_F_INT:
        snprintf(num, n, "%lld", (long long)f->i);
        return num;
    case LOG_F_UINT:
        snprintf(num, n, "%llu", (unsigned long long)f->u);
        return num;
    case LOG_F_MS:
        if (!isfinite(f->d))
            return none;
        snprintf(num, n, "%.1f", f->d);
        return num;
    default:
        return none;
    }
}

static void lo_field_text(log_out_t *o, const log_field_t *f, int first)
{
    char num[LOG_NUM_ROOM];
    if (f->type == LOG_F_TEXT) {
        if (!first)
            lo_str(o, " ");
        lo_esc(o, f->s ? f->s : "", LOG_FMT_TEXT, 0);
        return;
    }
    if (f->type == LOG_F_FLAG && !f->i)
        return;
    if (!lo_room(o, strlen(f->key) + 2)) {
        o->cut = 1;
        return;
    }
    if (!first)
        lo_str(o, " ");
    lo_str(o, f->key);
    if (f->type == LOG_F_FLAG)
        return;
    lo_str(o, "=");
    switch (f->type) {
    case LOG_F_STR:
    case LOG_F_QSTR: {
        const char *s = f->s ? f->s : "";
        int quoted = f->type == LOG_F_QSTR || !log_bare_ok(s);
        if (quoted)
            lo_str(o, "\"");
        lo_esc(o, s, LOG_FMT_TEXT, quoted);
        if (quoted)
            lo_str(o, "\"");
        return;
    }
    default:
        lo_str(o, lo_num(num, sizeof(num), f, "-"));
        return;
    }
}

static void lo_field_json(log_out_t *o, const log_field_t *f)
{
    char num[LOG_NUM_ROOM];
    if (!lo_room(o, strlen(f->key) + LOG_NUM_ROOM)) {
        o->cut = 1;
        return;
    }
    lo_str(o, ",\"");
    lo_esc(o, f->key, LOG_FMT_JSON, 1);
    lo_str(o, "\":");
    switch (f->type) {
    case LOG_F_STR:
    case LOG_F_QSTR:
    case LOG_F_TEXT:
        lo_str(o, "\"");
        lo_esc(o, f->s ? f->s : "", LOG_FMT_JSON, 1);
        lo_str(o, "\"");
        return;
    case LOG_F_FLAG:
        lo_str(o, f->i ? "true" : "false");
        return;
    default:
        lo_str(o, lo_num(num, sizeof(num), f, "null"));
        return;
    }
}

size_t log_render(char *out, size_t outlen, enum log_format fmt, const struct timespec *ts,
                  enum log_level lvl, const char *tag, const char *event, const log_field_t *f,
                  size_t n)
{
    log_out_t o = {out, 0, outlen - 1, 0};
    char stamp[40], ms[8];
    struct tm tm;

    if ((int)lvl < LOG_LVL_DEBUG || lvl >= LOG_LVL_OFF)
        lvl = LOG_LVL_INFO;
    gmtime_r(&ts->tv_sec, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ms, sizeof(ms), ".%03ldZ", (ts->tv_nsec / 1000000L) % 1000);
    if (fmt == LOG_FMT_JSON) {
        lo_str(&o, "{\"ts\":\"");
        lo_str(&o, stamp);
        lo_str(&o, ms);
        lo_str(&o, "\",\"level\":\"");
        lo_str(&o, log_names[lvl]);
        lo_str(&o, "\"");
        if (tag != NULL) {
            lo_str(&o, ",\"daemon\":\"");
            lo_esc(&o, tag, LOG_FMT_JSON, 1);
            lo_str(&o, "\"");
        }
        lo_str(&o, ",\"event\":\"");
        lo_esc(&o, event ? event : "message", LOG_FMT_JSON, 1);
        lo_str(&o, "\"");
        for (size_t i = 0; i < n && !o.cut; i++)
            lo_field_json(&o, &f[i]);
        lo_str(&o, "}\n");
    } else {
        char head[96];
        snprintf(head, sizeof(head), "%s%s %-5s %s%s", stamp, ms, log_labels[lvl], tag ? tag : "",
                 tag ? ": " : "");
        lo_str(&o, head);
        if (event != NULL)
            lo_esc(&o, event, LOG_FMT_TEXT, 0);
        for (size_t i = 0; i < n && !o.cut; i++)
            lo_field_text(&o, &f[i], event == NULL && i == 0);
        if (o.cut && (o.n < 3 || memcmp(o.p + o.n - 3, "...", 3) != 0))
            lo_str(&o, "...");
        lo_str(&o, "\n");
    }
    out[o.n] = '\0';
    return o.n;
}

/* ---- writing ------------------------------------------------------------- */

static void log_write(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t r = write(STDERR_FILENO, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        p += r;
        n -= (size_t)r;
    }
}

void log_event(enum log_level lvl, const char *event, const log_field_t *f, size_t n)
{
    if ((int)lvl < LOG_LVL_DEBUG || lvl >= LOG_LVL_OFF || lvl < log_get_level())
        return;
    int saved_errno = errno;
    char line[LOG_LINE_MAX];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    size_t len = log_render(line, sizeof(line), log_get_format(), &ts, lvl,
                            __atomic_load_n(&log_tag, __ATOMIC_RELAXED), event, f, n);
    log_write(line, len);
    errno = saved_errno;
}

/* Formats the message, then renders it as one escaped line written with one
 * write(2), so lines from concurrent threads never interleave. errno is
 * preserved because callers often log and then inspect errno. */
void log_msg(enum log_level lvl, const char *fmt, ...)
{
    if ((int)lvl < LOG_LVL_DEBUG || lvl >= LOG_LVL_OFF || lvl < log_get_level())
        return;
    int saved_errno = errno;
    char msg[LOG_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (w < 0)
        msg[0] = '\0';
    /* Drop a trailing newline the caller may have added; we add our own. */
    size_t k = strlen(msg);
    while (k > 0 && msg[k - 1] == '\n')
        msg[--k] = '\0';
    log_field_t f = {.key = "msg", .type = LOG_F_TEXT, .s = msg};
    errno = saved_errno;
    log_event(lvl, NULL, &f, 1);
    errno = saved_errno;
}
