/* ctl_cmd: a rollout's command: the {id}/{host}/{port} template, the child
 * process in its own process group, and its output split into lines.
 *
 * The child runs `/bin/sh -c CMD` with stdin from /dev/null, stdout and
 * stderr on pipes, and WSLB_ID, WSLB_HOST, WSLB_PORT and WSLB_ADDR in its
 * environment. Its own process group keeps a terminal's Ctrl-C away from it:
 * wslbctl decides when the command may be stopped. */
#ifndef CTL_CMD_H
#define CTL_CMD_H

#include <stddef.h>
#include <sys/types.h>

#include "buf.h"

/* Lines longer than this are passed on in pieces of this size, so one
 * endless line cannot exhaust memory; nothing is dropped. */
#define CTL_LINE_MAX (1u << 20)

typedef void ctl_line_fn(void *ud, int fd, const char *line, size_t n);

/* Splits one stream into lines. */
typedef struct ctl_lines {
    buf_t pend; /* the line in progress */
} ctl_lines_t;

/* Pure: feeds n bytes; calls fn for every complete line (without its
 * newline), and for every CTL_LINE_MAX piece of an overlong one. Returns 0
 * or -1 (memory). */
int ctl_lines_feed(ctl_lines_t *l, int fd, const char *p, size_t n, ctl_line_fn *fn, void *ud);
/* The last line, when the stream ended without a newline. */
void ctl_lines_flush(ctl_lines_t *l, int fd, ctl_line_fn *fn, void *ud);
void ctl_lines_free(ctl_lines_t *l);

/* Pure: expands {id}, {host} and {port} in tmpl into out. Values go in
 * verbatim, so each must consist of characters a shell takes literally
 * (A-Z a-z 0-9 . _ : @ % + = , / -); otherwise -1 with err (the command can
 * use "$WSLB_ID" instead). Other braces are left alone. */
int ctl_subst(const char *tmpl, const char *id, const char *host, const char *port, buf_t *out,
              char *err, size_t errlen);

typedef struct ctl_cmd {
    pid_t pid; /* also its process group; 0 when none */
    int fd[2]; /* stdout and stderr pipes; -1 once closed */
    int exited, status;
    ctl_lines_t lines[2];
} ctl_cmd_t;

/* Starts cmdline. Returns 0, or -1 with err. */
int ctl_cmd_start(ctl_cmd_t *c, const char *cmdline, const char *id, const char *host,
                  const char *port, char *err, size_t errlen);
/* Reads what pipe k (0 stdout, 1 stderr) holds, up to 64 KiB, and passes
 * complete lines to fn; at EOF flushes the last line and closes the pipe. */
void ctl_cmd_pump(ctl_cmd_t *c, int k, ctl_line_fn *fn, void *ud);
/* Reaps the child if it ended (non-blocking); 1 when it has. */
int ctl_cmd_reap(ctl_cmd_t *c);
/* Signals the whole process group. */
void ctl_cmd_kill(ctl_cmd_t *c, int sig);
/* Flushes and closes what is left (after the child ended); resets c. */
void ctl_cmd_close(ctl_cmd_t *c, ctl_line_fn *fn, void *ud);
/* "exited with status 1", "killed by signal 9". */
const char *ctl_cmd_describe(int status, char *buf, size_t len);

#endif
