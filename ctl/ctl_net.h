/* ctl_net: blocking TCP with a deadline on every step, for wslbctl.
 *
 * A command-line tool may block, but never without a bound: every call
 * takes an absolute deadline on ctl_now()'s clock and fails with "timed
 * out" when it passes. Descriptors are non-blocking underneath and waited
 * on with poll(2), so a silent peer costs at most the deadline. */
#ifndef CTL_NET_H
#define CTL_NET_H

#include <stddef.h>
#include <sys/types.h>

/* Monotonic seconds. */
double ctl_now(void);

/* Splits "HOST:PORT" or "[V6]:PORT" (HOST may be a name). Returns 0, or -1
 * with err. */
int ctl_net_split(const char *hostport, char *host, size_t hostlen, char *port, size_t portlen,
                  char *err, size_t errlen);

/* Resolves host (getaddrinfo: names bounded by the resolver's own timeouts)
 * and connects to the first address that answers before deadline. Returns a
 * non-blocking close-on-exec descriptor, or -1 with err such as
 * "connect 127.0.0.1:8081: Connection refused". */
int ctl_net_connect(const char *host, const char *port, double deadline, char *err, size_t errlen);

/* Writes all n bytes before deadline. Returns 0, or -1 with err. */
int ctl_net_write(int fd, const void *p, size_t n, double deadline, char *err, size_t errlen);

/* Reads up to n bytes, waiting until something arrives or deadline. Returns
 * the count, 0 at end of stream, or -1 with err. */
ssize_t ctl_net_read(int fd, void *p, size_t n, double deadline, char *err, size_t errlen);

#endif
