/* Fuzzes the PROXY protocol parser (lb/pp.c) the way the lb feeds it: the
 * bytes of a connection in pieces. Whatever the pieces, the outcome and the
 * header length must be those of feeding everything at once, no more bytes
 * than the bounds may be taken, and an address is given only when the
 * header says there is one.
 *
 * Input: byte 0 is the piece size (1 + byte % 32); the rest is the stream. */
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include "fuzz.h"
#include "pp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = 1 + data[0] % 32;
    data++, size--;

    pp_t whole;
    pp_info_t wi;
    size_t wused = 0;
    const char *err = NULL;
    pp_init(&whole);
    int wrc = pp_feed(&whole, data, size, &wused, &wi, &err);
    FZ_CHECK(wused <= size);
    FZ_CHECK(wrc >= PP_MISSING && wrc <= PP_DONE);
    FZ_CHECK(wrc == PP_AGAIN ? wused == size : 1);
    FZ_CHECK(wused <= 16 + PP_V2_MAX_LEN);
    if (wrc < 0)
        FZ_CHECK(err != NULL);
    if (wrc == PP_DONE) {
        FZ_CHECK(wi.version == 1 || wi.version == 2);
        if (wi.version == 1)
            FZ_CHECK(wused <= PP_V1_MAX);
        if (wi.has_addr) {
            int af = wi.src.ss.ss_family;
            FZ_CHECK(af == AF_INET || af == AF_INET6);
            FZ_CHECK(wi.dst.ss.ss_family == af);
        }
    }

    pp_t p;
    pp_info_t pi;
    pp_init(&p);
    size_t off = 0, total = 0;
    int rc = PP_AGAIN;
    while (off < size && rc == PP_AGAIN) {
        size_t k = size - off < step ? size - off : step, used = 0;
        rc = pp_feed(&p, data + off, k, &used, &pi, &err);
        FZ_CHECK(used <= k);
        total += used;
        off += k;
    }
    FZ_CHECK(rc == wrc);
    if (rc == PP_DONE) {
        FZ_CHECK(total == wused);
        FZ_CHECK(pi.has_addr == wi.has_addr && pi.version == wi.version);
        if (pi.has_addr)
            FZ_CHECK(pi.src.len == wi.src.len && memcmp(&pi.src.ss, &wi.src.ss, pi.src.len) == 0 &&
                     memcmp(&pi.dst.ss, &wi.dst.ss, pi.dst.len) == 0);
    }
    fz_sink += (unsigned)total;
    return 0;
}
