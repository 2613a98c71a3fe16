/* util: small language helpers every program here shares. */
#ifndef COMMON_UTIL_H
#define COMMON_UTIL_H

#include <stddef.h>

/* The struct that embeds `member` at ptr, as libev's docs suggest for
 * watchers kept inside a connection:
 *   struct conn *c = container_of(w, struct conn, rio); */
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#endif
