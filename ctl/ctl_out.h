/* ctl_out: wslbctl's output, with an optional live progress line.
 *
 * On a terminal the progress line sits at the bottom of stderr. Every
 * other write goes through here: the progress line is erased, the text is
 * written whole, and the progress line is drawn again, so streamed output
 * is never spliced with it. Without a terminal there is no progress line
 * and writes pass straight through. */
#ifndef CTL_OUT_H
#define CTL_OUT_H

#include <stddef.h>

typedef struct ctl_out {
    int progress;   /* draw a progress line on stderr */
    int shown;      /* it is on the screen now */
    char line[512]; /* its text */
} ctl_out_t;

void ctl_out_init(ctl_out_t *o, int progress);
/* Writes n bytes to fd (1 or 2) as one piece. */
void ctl_out_write(ctl_out_t *o, int fd, const char *p, size_t n);
void ctl_out_printf(ctl_out_t *o, int fd, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Replaces the progress line (cut to the terminal's width). */
void ctl_out_progress(ctl_out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Erases the progress line for good. */
void ctl_out_done(ctl_out_t *o);

#endif
