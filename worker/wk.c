/* wk: helpers on the worker context shared by its modules. */
#include "wk.h"

#include <string.h>

#include "slot.h"

void wk_on_run_change(wk_t *w)
{
    /* The drain step runs from an idle watcher, never inside the callback of
     * the connection or run that changed. */
    if (w->draining != DRAIN_NONE && w->draining != DRAIN_LEAVING)
        ev_idle_start(w->loop, &w->drain_check);
}

unsigned wk_slots_broken(const wk_t *w)
{
    return slot_count(w->slots, SLOT_BROKEN);
}

int wk_unusable(const wk_t *w)
{
    return w->slots != NULL && slot_count(w->slots, SLOT_BROKEN) == slot_total(w->slots);
}

int wk_lb_take(wk_t *w, const char *id, size_t len)
{
    int free_slot = -1;
    if (len == 0 || len >= sizeof(w->by_lb[0].id))
        return -1;
    for (int i = 0; i < WK_MAX_LBS; i++) {
        wk_lbcount_t *e = &w->by_lb[i];
        if (e->id[0] == '\0' || e->n == 0) {
            if (free_slot < 0)
                free_slot = i;
            continue;
        }
        if (strlen(e->id) == len && memcmp(e->id, id, len) == 0) {
            e->n++;
            return i;
        }
    }
    if (free_slot < 0)
        return -1;
    /* An entry whose count fell to 0 is reused: an lb that restarted has a
     * new id, and the old one must not pin a slot forever. */
    memcpy(w->by_lb[free_slot].id, id, len);
    w->by_lb[free_slot].id[len] = '\0';
    w->by_lb[free_slot].n = 1;
    return free_slot;
}

void wk_lb_release(wk_t *w, int slot)
{
    if (slot >= 0 && slot < WK_MAX_LBS && w->by_lb[slot].n > 0)
        w->by_lb[slot].n--;
}
