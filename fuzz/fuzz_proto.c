/* Fuzzes the /eval protocol's message parsing (worker/proto.c): the whole
 * input is one websocket text message. Every field a successful parse
 * returns is read in full, and the promises proto.h makes (ids are short
 * NUL-free strings, lengths match, timeouts are capped) are checked, on
 * failure too since the worker names the id in its error reply. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "proto.h"

/* Reads s[0..n] (the terminating NUL included) so that ASan sees every byte. */
static void fz_bytes(const char *s, size_t n)
{
    FZ_CHECK(s != NULL && s[n] == '\0');
    unsigned acc = 0;
    for (size_t i = 0; i < n; i++)
        acc += (unsigned char)s[i];
    fz_sink += acc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    proto_msg_t m;
    char err[160];
    /* Also a short error buffer: messages must be cut, not overflow it. */
    size_t errlen = (size & 1) ? sizeof(err) : 8;
    err[0] = '\0';
    int r = proto_parse((const char *)data, size, &m, err, errlen);
    FZ_CHECK(r == 0 || r == -1);
    if (m.id != NULL) {
        size_t n = strlen(m.id);
        FZ_CHECK(n > 0 && n <= PROTO_MAX_ID);
        fz_bytes(m.id, n);
    }
    if (r < 0) {
        FZ_CHECK(err[0] != '\0' && strlen(err) < errlen);
        proto_msg_free(&m);
        FZ_CHECK(m.root == NULL);
        return 0;
    }
    FZ_CHECK(m.root != NULL && m.id != NULL);
    switch (m.type) {
    case PROTO_RUN:
        FZ_CHECK(m.runtime != NULL);
        fz_bytes(m.runtime, strlen(m.runtime));
        fz_bytes(m.code, m.code_len);
        FZ_CHECK(m.timeout_ms >= 0 && m.timeout_ms <= 86400000);
        FZ_CHECK(m.stdin_open == 0 || m.stdin_open == 1);
        if (m.has_stdin)
            fz_bytes(m.stdin_data, m.stdin_len);
        else
            FZ_CHECK(m.stdin_data == NULL && m.stdin_len == 0);
        break;
    case PROTO_STDIN:
        FZ_CHECK(m.has_stdin);
        fz_bytes(m.stdin_data, m.stdin_len);
        break;
    case PROTO_STDIN_CLOSE:
    case PROTO_KILL:
        FZ_CHECK(!m.has_stdin && m.code == NULL && m.runtime == NULL);
        break;
    default:
        FZ_CHECK(!"unknown message type returned");
    }
    proto_msg_free(&m);
    FZ_CHECK(m.root == NULL);
    return 0;
}
