/* wk: helpers on the worker context shared by its modules. */
#include "wk.h"

void wk_on_run_change(wk_t *w)
{
    /* The drain step runs from an idle watcher, never inside the callback of
     * the connection or run that changed. */
    if (w->draining != DRAIN_NONE && w->draining != DRAIN_LEAVING)
        ev_idle_start(w->loop, &w->drain_check);
}
