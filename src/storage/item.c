/* storage/item.c — the compact item layout: planning, header encoding, accessors, reference release. */
#include <stdlib.h>
#include <string.h>

#include "storage/internal.h"

static unsigned vlen_width(size_t nbytes) { return nbytes < 256 ? 1 : nbytes < 65536 ? 2 : 4; }
static unsigned vlen_code(unsigned w) { return w == 1 ? 0 : w == 2 ? 1 : 2; }
static unsigned code_width(unsigned code) { return code == 0 ? 1 : code == 1 ? 2 : 4; }

/*
 * The nominal size of an item without flags or expiry: a 7-byte header (the
 * widest length field) + key + value, plus an 8-byte pointer when the value
 * lives outside the arena. The arena stores 4 to 7 header bytes for it.
 */
size_t mk_cache_item_size(size_t nkey, size_t nbytes)
{
    if (nkey > 255 || nbytes > SIZE_MAX / 2)
        return SIZE_MAX;
    size_t n = 7 + nkey + nbytes;
    return n > MK_EXT_MIN ? n + 8 : n;
}

void mk_layout_plan(mk_layout *l, uintptr_t at, size_t nkey, size_t nbytes, bool flags, bool exp, bool xcas,
                    bool ext)
{
    unsigned w = ext ? 4 : vlen_width(nbytes);
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
    if (xcas) {
        l->meta |= MK_M_XCAS;
        pos += 8;
    }
    if (ext) {
        l->meta |= MK_M_EXT;
        pos += 8;
    }
    l->nkey = nkey;
    l->nbytes = nbytes;
    l->size = pos + nkey + (ext ? 0 : nbytes);
}

/* Offsets of the optional fields and the key, from the header. */
typedef struct offs { size_t flags, exp, xcas, ext, key; } offs;

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
    if (it->meta & MK_M_EXT) {
        o.ext = pos;
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
    offs o = offsets(it);
    return o.key + it->nkey + ((it->meta & MK_M_EXT) ? 0 : mk_item_nbytes(it));
}

size_t mk_item_charge(const mk_item *it)
{
    size_t n = mk_item_arena_size(it);
    if (it->meta & MK_M_EXT)
        n += mk_item_nbytes(it);
    return n;
}

void mk_item_init(mk_item *it, const mk_layout *l, const char *key, uint32_t flags, int64_t exp_at,
                  uint64_t xcas, char *ext)
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
    if (l->meta & MK_M_EXT)
        memcpy((char *)it + o.ext, &ext, sizeof ext);
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

char *mk_item_ext(const mk_item *it)
{
    if (!(it->meta & MK_M_EXT))
        return NULL;
    char *p;
    memcpy(&p, at(it, offsets(it).ext), sizeof p);
    return p;
}

const char *mk_item_key(const mk_item *it) { return at(it, offsets(it).key); }
size_t mk_item_nkey(const mk_item *it) { return it->nkey; }

char *mk_item_data(mk_item *it)
{
    if (it->meta & MK_M_EXT)
        return mk_item_ext(it) + MK_EXT_HDR;
    return (char *)it + offsets(it).key + it->nkey;
}

uint32_t mk_item_flags(const mk_item *it)
{
    uint32_t f = 0;
    if (it->meta & MK_M_FLAGS)
        memcpy(&f, at(it, offsets(it).flags), 4);
    return f;
}

uint64_t mk_item_seq(const mk_item *it)
{
    if (it->meta & MK_M_XCAS) {
        uint64_t v;
        memcpy(&v, at(it, offsets(it).xcas), 8);
        return v;
    }
    const mk_seghdr *h = mk_seghdr_of(it);
    return h->seq << 24 | (uint64_t)((uintptr_t)it - (uintptr_t)h);
}

uint64_t mk_item_cas(const mk_item *it)
{
    return mk_seghdr_of(it)->nocas ? 0 : mk_item_seq(it);
}

void mk_item_view_of(const mk_item *it, mk_item_view *v)
{
    offs o = offsets(it);
    v->nbytes = mk_item_nbytes(it);
    v->flags = 0;
    if (it->meta & MK_M_FLAGS)
        memcpy(&v->flags, at(it, o.flags), 4);
    const mk_seghdr *h = mk_seghdr_of(it);
    if (h->nocas)
        v->cas = 0;
    else if (it->meta & MK_M_XCAS)
        memcpy(&v->cas, at(it, o.xcas), 8);
    else
        v->cas = h->seq << 24 | (uint64_t)((uintptr_t)it - (uintptr_t)h);
    if (it->meta & MK_M_EXT) {
        const char *e;
        memcpy(&e, at(it, o.ext), sizeof e);
        v->data = e + MK_EXT_HDR;
    } else {
        v->data = at(it, o.key) + it->nkey;
    }
}

void mk_item_ref(mk_cache *c, mk_item *it)
{
    if (it->meta & MK_M_EXT)
        mk_ext_ref(it);
    atomic_fetch_add_explicit(&c->segm[mk_segid_of(c, it)].refs, 1, memory_order_relaxed);
}

void mk_item_put(mk_cache *c, mk_item *it)
{
    if (!it)
        return;
    uint32_t id = mk_segid_of(c, it);
    if (it->meta & MK_M_EXT)
        mk_ext_unref(c, it);
    mk_seg_unref(c, id);
}
