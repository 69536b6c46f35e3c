/* storage/span.c — large items: allocation packed back to back across segment boundaries, their segment chains, claiming their bytes as live. */
#include <stdlib.h>

#include "storage/internal.h"

/*
 * The large head writes items of more than MK_LARGE_MIN bytes one after the
 * other with no gap: an item that does not fit in the rest of the open segment
 * starts there anyway (if its header and key fit) and its value continues into
 * fresh segments chained through mk_seghdr.next. The last of those stays open
 * for the next large item, so no segment tail is wasted and a large value
 * costs its own size. Each segment of the chain goes on the FIFO when it is
 * filled; what decides an item's fate is the walk of the segment it starts in,
 * and the others stay (they hold live bytes) until it is gone.
 */

void mk_span_each(mk_cache *c, const mk_item *it, void (*f)(mk_cache *c, uint32_t id, uint32_t bytes, void *arg),
                  void *arg)
{
    const mk_seghdr *h = mk_seghdr_of(it);
    size_t total = mk_item_arena_size(it);
    size_t in = MK_SEG_SIZE - (size_t)((const char *)it - (const char *)h);
    if (in > total)
        in = total;
    total -= in;
    int32_t next = total ? h->next : -1; /* read before f, which may drop the last reference */
    f(c, h->id, (uint32_t)in, arg);
    while (total > 0 && next >= 0) {
        uint32_t id = (uint32_t)next;
        h = (const mk_seghdr *)mk_seg_base(c, id);
        size_t k = total < MK_SEG_PAY ? total : MK_SEG_PAY;
        total -= k;
        next = total ? h->next : -1;
        f(c, id, (uint32_t)k, arg);
    }
}

typedef struct claim { uint32_t first; bool dead; int sign; } claim;

static void claim_one(mk_cache *c, uint32_t id, uint32_t bytes, void *arg)
{
    claim *cl = arg;
    if (id == cl->first)
        return; /* the first segment is judged under the shard lock, like any item's */
    mk_segm *m = &c->segm[id];
    if (cl->sign > 0)
        atomic_fetch_add(&m->live, bytes); /* seq_cst: ordered before the load of `dead` below */
    else
        atomic_fetch_sub(&m->live, bytes);
    if (cl->sign > 0 && atomic_load(&m->dead))
        cl->dead = true;
}

/*
 * A segment being evicted sets `dead` and then reads `live`; a claim adds to
 * `live` and then reads `dead`. One of the two sees the other: either the
 * evictor keeps the segment (live > 0) or the claim fails and is undone.
 */
bool mk_span_claim(mk_cache *c, const mk_item *it)
{
    claim cl = {.first = mk_segid_of(c, it), .dead = false, .sign = 1};
    mk_span_each(c, it, claim_one, &cl);
    if (!cl.dead)
        return true;
    mk_span_unclaim(c, it);
    return false;
}

void mk_span_unclaim(mk_cache *c, const mk_item *it)
{
    claim cl = {.first = mk_segid_of(c, it), .dead = false, .sign = -1};
    mk_span_each(c, it, claim_one, &cl);
}

/* Put a fresh segment of the chain in order after `prev`; `fill` bytes of value of `it` land in it. */
static void chain(mk_cache *c, int32_t prev, int32_t id, size_t fill, const mk_item *it)
{
    ((mk_seghdr *)mk_seg_base(c, (uint32_t)prev))->next = id;
    mk_segm *m = &c->segm[id];
    mk_seghdr *h = (mk_seghdr *)mk_seg_base(c, (uint32_t)id);
    m->first = (uint32_t)(MK_SEG_HDR + fill); /* MK_SEG_SIZE when the value fills it */
    m->wpos = m->first;
    h->first = m->first;
    h->owner = mk_off_of(c, it);
    h->owner_seq = mk_seghdr_of(it)->seq;
}

mk_item *mk_span_alloc(mk_cache *c, mk_head *hd, const mk_layout *l, const char *key, uint32_t flags,
                       int64_t exp_at, uint64_t cas, int64_t now)
{
    int32_t id = hd->seg;
    mk_segm *m = &c->segm[id];
    size_t need = m->wpos + l->size - MK_SEG_SIZE; /* bytes past the open segment */
    uint32_t k = (uint32_t)((need + MK_SEG_PAY - 1) / MK_SEG_PAY);
    int32_t ids[64], *more = k <= 64 ? ids : malloc(k * sizeof *more);
    if (!more)
        return NULL;
    uint32_t got = 0;
    for (; got < k; got++) {
        more[got] = mk_seg_get(c, MK_SEG_FOR_SPILL, MK_KIND_LARGE, now);
        if (more[got] < 0)
            break;
    }
    mk_item *it = NULL;
    if (got == k) {
        it = (mk_item *)(mk_seg_base(c, (uint32_t)id) + m->wpos);
        mk_item_init(it, l, key, flags, exp_at, cas);
        m->wpos = MK_SEG_SIZE;
        atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
        int32_t prev = id;
        for (uint32_t i = 0; i < k; i++) {
            size_t fill = need < MK_SEG_PAY ? need : MK_SEG_PAY;
            need -= fill;
            chain(c, prev, more[i], fill, it);
            atomic_fetch_add_explicit(&c->segm[more[i]].refs, 1, memory_order_relaxed);
            prev = more[i];
        }
        /* the filled ones go on the FIFO in order; the last stays open unless the value filled it */
        mk_seg_seal(c, id);
        for (uint32_t i = 0; i + 1 < k; i++)
            mk_seg_seal(c, more[i]);
        hd->seg = more[k - 1];
        if (c->segm[more[k - 1]].wpos == MK_SEG_SIZE) {
            mk_seg_seal(c, more[k - 1]);
            hd->seg = -1;
        }
    } else {
        for (uint32_t i = 0; i < got; i++) /* no room: give back what we got (empty, freed when evicted) */
            mk_seg_seal(c, more[i]);
    }
    if (more != ids)
        free(more);
    return it;
}
