/* log: leveled, timestamped logging to stderr, as text or JSON lines.
 *
 * The level and the format are the process-wide state the project allows
 * besides signal flags: every module logs, and threading a context through
 * each call would buy nothing. Lines are written with a single write(2) so
 * that lines from several threads never interleave.
 *
 * Whatever a message or field holds, one call is one line: in the text
 * format backslashes, control bytes and bytes outside printable ASCII are
 * written as \\ and \xHH, and in JSON every string is escaped (bytes above
 * 0x7e as \u00HH, so the line stays ASCII and the bytes can be recovered).
 * A client that puts a newline, a quote or raw bytes into something logged
 * can neither start a line nor forge a field. */
#ifndef COMMON_LOG_H
#define COMMON_LOG_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

enum log_level { LOG_LVL_DEBUG = 0, LOG_LVL_INFO, LOG_LVL_WARN, LOG_LVL_ERROR, LOG_LVL_OFF };
enum log_format { LOG_FMT_TEXT = 0, LOG_FMT_JSON };

void log_set_level(enum log_level lvl);
enum log_level log_get_level(void);
/* Parses "debug|info|warn|error|off"; returns -1 on an unknown name. */
int log_parse_level(const char *name, enum log_level *out);
void log_set_format(enum log_format fmt);
enum log_format log_get_format(void);
/* Parses "text|json"; returns -1 on an unknown name. */
int log_parse_format(const char *name, enum log_format *out);
/* Prefix every line with this tag, e.g. "worker" or "lb" (not copied: keep it alive). */
void log_set_tag(const char *tag);

void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* One field of a structured line (log_event). In text a field is key=value
 * and in JSON "key":value. */
enum log_ftype {
    LOG_F_STR,  /* s: bare in text when it is plain printable ASCII, else quoted */
    LOG_F_QSTR, /* s: always quoted in text */
    LOG_F_INT,  /* i */
    LOG_F_UINT, /* u */
    LOG_F_MS,   /* d: milliseconds with one decimal */
    LOG_F_FLAG, /* i: text shows the bare key when set and nothing otherwise */
    LOG_F_NULL, /* no value: "-" in text, null in JSON */
    LOG_F_TEXT, /* s: free text; text shows it without key or quotes */
};

typedef struct log_field {
    const char *key;
    enum log_ftype type;
    const char *s;
    int64_t i;
    uint64_t u;
    double d;
} log_field_t;

#define LOG_STR(k, v)  ((log_field_t){.key = (k), .type = LOG_F_STR, .s = (v)})
#define LOG_QSTR(k, v) ((log_field_t){.key = (k), .type = LOG_F_QSTR, .s = (v)})
#define LOG_INT(k, v)  ((log_field_t){.key = (k), .type = LOG_F_INT, .i = (v)})
#define LOG_UINT(k, v) ((log_field_t){.key = (k), .type = LOG_F_UINT, .u = (v)})
#define LOG_MS(k, v)   ((log_field_t){.key = (k), .type = LOG_F_MS, .d = (v)})
#define LOG_FLAG(k, v) ((log_field_t){.key = (k), .type = LOG_F_FLAG, .i = (v)})
#define LOG_NULL(k)    ((log_field_t){.key = (k), .type = LOG_F_NULL})

/* Writes one structured line: in text "<time> LEVEL tag: event k=v ...", in
 * JSON {"ts":..,"level":..,"daemon":tag,"event":event,"k":v,...}. */
void log_event(enum log_level lvl, const char *event, const log_field_t *f, size_t n);

/* Pure: renders the line log_event (event != NULL) or log_msg (event NULL,
 * one LOG_F_TEXT field "msg") would write, newline included, into out
 * (NUL-terminated). Cut lines end in "..." and stay valid JSON. Returns the
 * length. outlen must be at least 256. */
size_t log_render(char *out, size_t outlen, enum log_format fmt, const struct timespec *ts,
                  enum log_level lvl, const char *tag, const char *event, const log_field_t *f,
                  size_t n);

#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_get_level() <= LOG_LVL_DEBUG)                                                      \
            log_msg(LOG_LVL_DEBUG, __VA_ARGS__);                                                   \
    } while (0)
#define log_info(...)  log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)

#endif
