/* log: leveled, timestamped logging to stderr (see log.h). */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Longest line written; longer messages are cut and marked with "...". */
#define LOG_LINE_MAX 4096

/* Process-wide by design (see log.h). Accessed with relaxed atomics because
 * worker threads read it while the main thread may change it at startup. */
static int log_level = LOG_LVL_INFO;
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

void log_set_tag(const char *tag)
{
    __atomic_store_n(&log_tag, tag, __ATOMIC_RELAXED);
}

/* Formats the line into a stack buffer and emits it with one write(2) so
 * lines from concurrent threads never interleave. errno is preserved because
 * callers often log and then inspect errno. */
void log_msg(enum log_level lvl, const char *fmt, ...)
{
    if ((int)lvl < LOG_LVL_DEBUG || lvl >= LOG_LVL_OFF || lvl < log_get_level())
        return;
    int saved_errno = errno;
    char line[LOG_LINE_MAX];
    size_t n = 0;

    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n += strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    const char *tag = __atomic_load_n(&log_tag, __ATOMIC_RELAXED);
    int w = snprintf(line + n, sizeof(line) - n, ".%03ldZ %-5s %s%s", ts.tv_nsec / 1000000L,
                     log_labels[lvl], tag ? tag : "", tag ? ": " : "");
    if (w > 0)
        n += (size_t)w < sizeof(line) - n ? (size_t)w : sizeof(line) - n - 1;

    va_list ap;
    va_start(ap, fmt);
    w = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    va_end(ap);
    if (w < 0)
        w = 0;
    if ((size_t)w >= sizeof(line) - n) {
        /* Truncated: keep room for the marker and the newline. */
        n = sizeof(line) - 5;
        memcpy(line + n, "...", 3);
        n += 3;
    } else {
        n += (size_t)w;
    }
    /* Drop a trailing newline the caller may have added; we add our own. */
    while (n > 0 && line[n - 1] == '\n')
        n--;
    line[n++] = '\n';

    const char *p = line;
    while (n > 0) {
        ssize_t r = write(STDERR_FILENO, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        p += r;
        n -= (size_t)r;
    }
    errno = saved_errno;
}
