/* ctl_out: output around a progress line (see ctl_out.h). */
#include "ctl_out.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* Whole writes, retried on EINTR and short counts. */
static void ctl_out_raw(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* a closed pipe: nothing sensible left to do with output */
        p += w;
        n -= (size_t)w;
    }
}

static void ctl_out_erase(ctl_out_t *o)
{
    if (o->shown)
        ctl_out_raw(2, "\r\033[K", 4);
    o->shown = 0;
}

static void ctl_out_draw(ctl_out_t *o)
{
    if (!o->progress || o->line[0] == '\0')
        return;
    struct winsize ws;
    size_t cols = ioctl(2, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1 ? ws.ws_col : 80;
    size_t n = strlen(o->line);
    /* A wrapped line could not be erased with one carriage return. */
    if (n > cols - 1)
        n = cols - 1;
    ctl_out_raw(2, "\r\033[K", 4);
    ctl_out_raw(2, o->line, n);
    o->shown = 1;
}

void ctl_out_init(ctl_out_t *o, int progress)
{
    memset(o, 0, sizeof(*o));
    o->progress = progress;
}

void ctl_out_write(ctl_out_t *o, int fd, const char *p, size_t n)
{
    int redraw = o->shown;
    ctl_out_erase(o);
    ctl_out_raw(fd, p, n);
    if (redraw)
        ctl_out_draw(o);
}

void ctl_out_printf(ctl_out_t *o, int fd, const char *fmt, ...)
{
    char *s = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n >= 0)
        ctl_out_write(o, fd, s, (size_t)n);
    free(s);
}

void ctl_out_progress(ctl_out_t *o, const char *fmt, ...)
{
    if (!o->progress)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->line, sizeof(o->line), fmt, ap);
    va_end(ap);
    /* Only printable bytes: an id with an escape must not drive the terminal. */
    for (char *p = o->line; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    ctl_out_draw(o);
}

void ctl_out_done(ctl_out_t *o)
{
    ctl_out_erase(o);
    o->line[0] = '\0';
}
