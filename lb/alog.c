/* alog: the lb's access-log line (see alog.h). */
#include "alog.h"

size_t alog_fields(const alog_rec_t *r, log_field_t *f)
{
    size_t n = 0;
    f[n++] = LOG_STR("client", r->client ? r->client : "-");
    f[n++] = r->backend ? LOG_STR("backend", r->backend) : LOG_NULL("backend");
    /* Always quoted in text, as it always was: it holds a space. */
    f[n++] = r->req ? LOG_QSTR("req", r->req) : LOG_NULL("req");
    f[n++] = r->status ? LOG_INT("status", r->status) : LOG_NULL("status");
    f[n++] = r->uncounted ? LOG_NULL("ms") : LOG_MS("ms", r->ms);
    f[n++] = r->uncounted ? LOG_NULL("in") : LOG_UINT("in", r->in);
    f[n++] = r->uncounted ? LOG_NULL("out") : LOG_UINT("out", r->out);
    f[n++] = LOG_STR("reason", r->reason ? r->reason : "-");
    f[n++] = r->id ? LOG_STR("id", r->id) : LOG_NULL("id");
    f[n++] = LOG_FLAG("tls", r->tls);
    return n;
}

void alog_write(const alog_rec_t *r)
{
    log_field_t f[ALOG_NFIELDS];
    size_t n = alog_fields(r, f);
    log_event(LOG_LVL_INFO, "access", f, n);
}
