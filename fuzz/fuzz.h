/* fuzz.h: what every libFuzzer target shares. */
#ifndef FUZZ_FUZZ_H
#define FUZZ_FUZZ_H

#include <stdio.h>
#include <stdlib.h>

/* A property the code under test must keep; abort() makes libFuzzer keep the
 * input as a crash. */
#define FZ_CHECK(c)                                                                                \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "check failed: %s (%s:%d)\n", #c, __FILE__, __LINE__);                 \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Results are summed into this so the compiler cannot drop the reads. */
static volatile unsigned fz_sink;

#endif
