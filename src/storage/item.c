/* storage/item.c — the compact item layout: planning, header encoding, accessors, reference release. */
#include <stdlib.h>
#include <string.h>

#include "storage/internal.h"

static unsigned vlen_width(size_t nbytes) { return nbytes < 256 ? 1 : nbytes < 65536 ? 2 : 4; }
static unsigned vlen_code(unsigned w) { return w == 1 ? 0 : w == 2 ? 1 : 2; }
static unsigned code_width(unsigned code) { return code == 0 ? 1 : code == 1 ? 2 : 4; }

/*
 * The nominal size of an item without flags or expiry: a 7-byte header (the
 * widest length field) + key + value. The arena stores 4 to 7 header bytes for it.
 */
size_t mk_cache_item_size(size_t nkey, size_t nbytes)
{
    if (nkey > 255 || nbytes > SIZE_MAX / 2)
        return SIZE_MAX;
    return 7 + nkey + nbytes;
}

void mk_layout_plan(mk_layout *l, uintptr_t at, size_t nkey, size_t nbytes, bool flags, bool exp, mk_xcas xcas,
                    bool span)
{
    unsigned w = span ? 4 : vlen_width(nbytes);
    size_t pos = 3 + w;
    l->meta = (uint8_t)vlen_code(w);
    if (flags) {
        l->meta |= MK_M_FLAGS;
        pos += 4;
    }
    if (exp) {
        l->meta |= MK_M_EXP;
        pos += (4 - ((at + pos) & 3)) & 3;
        pos += 4;
    }
    if (xcas != MK_XCAS_NONE) {
        l->meta |= MK_M_XCAS;
        if (xcas == MK_XCAS_EXPLICIT)
            l->meta |= MK_M_ECAS;
        pos += 8;
    }
    if (span)
        l->meta |= MK_M_SPAN;
    l->nkey = nkey;
    l->nbytes = nbytes;
    l->hdr = pos + nkey;
    l->size = l->hdr + nbytes;
}

/* Offsets of the optional fields and the key, from the header. */
typedef struct offs { size_t flags, exp, xcas, key; } offs;

static offs offsets(const mk_item *it)
{
    offs o = {0};
    size_t pos = 3 + code_width(it->meta & MK_M_VLEN);
    if (it->meta & MK_M_FLAGS) {
        o.flags = pos;
        pos += 4;
    }
    if (it->meta & MK_M_EXP) {
        pos += (4 - (((uintptr_t)it + pos) & 3)) & 3;
        o.exp = pos;
        pos += 4;
    }
    if (it->meta & MK_M_XCAS) {
        o.xcas = pos;
        pos += 8;
    }
    o.key = pos;
    return o;
}

static const char *at(const mk_item *it, size_t off) { return (const char *)it + off; }

size_t mk_item_nbytes(const mk_item *it)
{
    unsigned w = code_width(it->meta & MK_M_VLEN);
    uint32_t v = 0;
    const uint8_t *p = it->rest;
    for (unsigned i = 0; i < w; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

size_t mk_item_arena_size(const mk_item *it)
{
    return offsets(it).key + it->nkey + mk_item_nbytes(it);
}

void mk_item_init(mk_item *it, const mk_layout *l, const char *key, uint32_t flags, int64_t exp_at,
                  uint64_t xcas)
{
    it->meta = l->meta;
    it->state = 0;
    it->nkey = (uint8_t)l->nkey;
    unsigned w = code_width(l->meta & MK_M_VLEN);
    for (unsigned i = 0; i < w; i++)
        it->rest[i] = (uint8_t)(l->nbytes >> (8 * i));
    offs o = offsets(it);
    if (l->meta & MK_M_FLAGS)
        memcpy((char *)it + o.flags, &flags, 4);
    if (l->meta & MK_M_EXP) {
        _Atomic uint32_t *e = (_Atomic uint32_t *)(void *)((char *)it + o.exp);
        atomic_init(e, 0);
        mk_item_set_exp(it, exp_at);
    }
    if (l->meta & MK_M_XCAS)
        memcpy((char *)it + o.xcas, &xcas, 8);
    memcpy((char *)it + o.key, key, l->nkey);
}

bool mk_item_has_exp(const mk_item *it) { return (it->meta & MK_M_EXP) != 0; }

/* Expiry is kept in 32 bits of unix seconds (until 2106): <0 becomes 1 (long past), 0 = never. */
void mk_item_set_exp(mk_item *it, int64_t exp_at)
{
    uint32_t v = exp_at == 0 ? 0 : exp_at < 0 ? 1 : exp_at > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)exp_at;
    _Atomic uint32_t *e = (_Atomic uint32_t *)(void *)((char *)it + offsets(it).exp);
    atomic_store_explicit(e, v, memory_order_relaxed);
}

int64_t mk_item_exp_at(const mk_item *it)
{
    if (!(it->meta & MK_M_EXP))
        return 0;
    _Atomic uint32_t *e = (_Atomic uint32_t *)(void *)((char *)it + offsets(it).exp);
    return atomic_load_explicit(e, memory_order_relaxed);
}

const char *mk_item_key(const mk_item *it) { return at(it, offsets(it).key); }
size_t mk_item_nkey(const mk_item *it) { return it->nkey; }

char *mk_item_data(mk_item *it)
{
    return (char *)it + offsets(it).key + it->nkey;
}

size_t mk_item_piece(const mk_item *it, size_t off, char **p)
{
    size_t n = mk_item_nbytes(it);
    char *d = (char *)it + offsets(it).key + it->nkey;
    if (!(it->meta & MK_M_SPAN)) {
        *p = d + off;
        return n - off;
    }
    const mk_seghdr *h = mk_seghdr_of(it);
    size_t room = (size_t)((const char *)h + MK_SEG_SIZE - d); /* value bytes in the item's first segment */
    if (room > n)
        room = n;
    if (off < room) {
        *p = d + off;
        return room - off;
    }
    off -= room;
    n -= room;
    h = mk_seghdr_next(h);
    while (off >= MK_SEG_PAY) {
        off -= MK_SEG_PAY;
        n -= MK_SEG_PAY;
        h = mk_seghdr_next(h);
    }
    *p = (char *)h + MK_SEG_HDR + off;
    return (n < MK_SEG_PAY ? n : MK_SEG_PAY) - off;
}

/* Copy n bytes between a value (from off) and buf, piece by piece: into the value if `in`, else out of it. */
static void transfer(const mk_item *it, size_t off, char *buf, size_t n, bool in)
{
    while (n > 0) {
        char *p;
        size_t k = mk_item_piece(it, off, &p);
        if (k > n)
            k = n;
        memcpy(in ? p : buf, in ? buf : p, k);
        buf += k, off += k, n -= k;
    }
}

void mk_item_write(mk_item *it, size_t off, const void *src, size_t n) { transfer(it, off, (char *)src, n, true); }

void mk_item_read(const mk_item *it, size_t off, void *dst, size_t n) { transfer(it, off, dst, n, false); }

void mk_item_copy(mk_item *dst, size_t doff, const mk_item *src, size_t soff, size_t n)
{
    while (n > 0) {
        char *p;
        size_t k = mk_item_piece(src, soff, &p);
        if (k > n)
            k = n;
        mk_item_write(dst, doff, p, k);
        doff += k, soff += k, n -= k;
    }
}

uint32_t mk_item_flags(const mk_item *it)
{
    uint32_t f = 0;
    if (it->meta & MK_M_FLAGS)
        memcpy(&f, at(it, offsets(it).flags), 4);
    return f;
}

/* The item's place in the arena, as a number that grows with allocation order. */
static uint64_t place_of(const mk_item *it)
{
    const mk_seghdr *h = mk_seghdr_of(it);
    return h->seq << 24 | (uint64_t)((uintptr_t)it - (uintptr_t)h);
}

static uint64_t xcas_field(const mk_item *it, const offs *o)
{
    uint64_t v;
    memcpy(&v, at(it, o->xcas), 8);
    return v;
}

uint64_t mk_item_seq(const mk_item *it)
{
    if ((it->meta & (MK_M_XCAS | MK_M_ECAS)) == MK_M_XCAS) {
        offs o = offsets(it);
        return xcas_field(it, &o);
    }
    return place_of(it);
}

uint64_t mk_item_unique(const mk_item *it)
{
    if (it->meta & MK_M_XCAS) {
        offs o = offsets(it);
        return xcas_field(it, &o);
    }
    return place_of(it);
}

mk_xcas mk_item_xmode(const mk_item *it)
{
    return (it->meta & MK_M_ECAS) ? MK_XCAS_EXPLICIT : MK_XCAS_KEEP;
}

uint64_t mk_item_cas(const mk_item *it)
{
    return mk_seghdr_of(it)->nocas ? 0 : mk_item_unique(it);
}

void mk_item_view_of(const mk_item *it, mk_item_view *v)
{
    offs o = offsets(it);
    v->nbytes = mk_item_nbytes(it);
    v->flags = 0;
    if (it->meta & MK_M_FLAGS)
        memcpy(&v->flags, at(it, o.flags), 4);
    if (mk_seghdr_of(it)->nocas)
        v->cas = 0;
    else
        v->cas = (it->meta & MK_M_XCAS) ? xcas_field(it, &o) : place_of(it);
    v->data = at(it, o.key) + it->nkey; /* the whole value unless MK_M_SPAN: callers copy only small ones */
}

static void ref_one(mk_cache *c, uint32_t id, uint32_t bytes, void *arg)
{
    (void)bytes, (void)arg;
    atomic_fetch_add_explicit(&c->segm[id].refs, 1, memory_order_relaxed);
}

void mk_item_ref(mk_cache *c, mk_item *it)
{
    if (it->meta & MK_M_SPAN)
        mk_span_each(c, it, ref_one, NULL);
    else
        atomic_fetch_add_explicit(&c->segm[mk_segid_of(c, it)].refs, 1, memory_order_relaxed);
}

static void unref_one(mk_cache *c, uint32_t id, uint32_t bytes, void *arg)
{
    (void)bytes, (void)arg;
    mk_seg_unref(c, id);
}

void mk_item_put(mk_cache *c, mk_item *it)
{
    if (!it)
        return;
    if (it->meta & MK_M_SPAN)
        mk_span_each(c, it, unref_one, NULL); /* reads each segment's link before dropping it */
    else
        mk_seg_unref(c, mk_segid_of(c, it));
}
