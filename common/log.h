/* log: leveled, timestamped logging to stderr.
 *
 * The level is the one piece of process-wide state the project allows besides
 * signal flags: every module logs, and threading a context through each call
 * would buy nothing. Lines are written with a single write(2) so that lines
 * from several threads never interleave. */
#ifndef COMMON_LOG_H
#define COMMON_LOG_H

enum log_level { LOG_LVL_DEBUG = 0, LOG_LVL_INFO, LOG_LVL_WARN, LOG_LVL_ERROR, LOG_LVL_OFF };

void log_set_level(enum log_level lvl);
enum log_level log_get_level(void);
/* Parses "debug|info|warn|error|off"; returns -1 on an unknown name. */
int log_parse_level(const char *name, enum log_level *out);
/* Prefix every line with this tag, e.g. "worker" or "lb" (not copied: keep it alive). */
void log_set_tag(const char *tag);

void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_get_level() <= LOG_LVL_DEBUG)                                                      \
            log_msg(LOG_LVL_DEBUG, __VA_ARGS__);                                                   \
    } while (0)
#define log_info(...)  log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)

#endif
