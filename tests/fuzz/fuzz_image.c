/* tests/fuzz/fuzz_image.c — libFuzzer target for warm restart: a memory-file image whose segments hold arbitrary bytes under valid checksums must restore without a crash, and every restored item must read back within bounds. */
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

#include "storage/internal.h"

/*
 * The checksums would turn almost every input away at the door, so the harness
 * writes a clean image of a small cache, pours the input over its segments
 * (headers included) and then seals each segment again with a correct CRC:
 * what is left to reject malformed items and chains is the restore's own
 * checking of what it reads.
 */

#define MEM (8u * MK_SEG_SIZE)

static char path[64];

static mk_cache *open_cache(void)
{
    mk_cache_config cfg = {.mem_limit = MEM, .item_size_max = MEM / 2, .evict = true, .use_cas = true,
                           .mem_file = path, .now = 1000};
    return mk_cache_create(&cfg);
}

static void reseal(char *seg)
{
    mk_seghdr *h = (mk_seghdr *)(void *)seg;
    if (h->wpos < MK_SEG_HDR || h->wpos > MK_SEG_SIZE)
        h->wpos = MK_SEG_SIZE;
    uint32_t crc = (uint32_t)crc32(0, (const unsigned char *)h, offsetof(mk_seghdr, crc));
    h->crc = (uint32_t)crc32(crc, (const unsigned char *)seg + MK_SEG_HDR, h->wpos - MK_SEG_HDR);
}

static bool keep_reading(void *ctx, const mk_item_view *v)
{
    (void)v;
    *(int *)ctx += 1;
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0])
        snprintf(path, sizeof path, "/tmp/fuzz_image_%d.img", (int)getpid());
    mk_cache *c = open_cache();
    if (!c)
        abort();
    /* a few real items first, so inputs can mutate something that parses */
    for (int i = 0; i < 20; i++) {
        char k[16];
        snprintf(k, sizeof k, "key%d", i);
        mk_item *it;
        if (mk_cache_alloc(c, k, strlen(k), (uint32_t)i, 0, (size_t)(i * 997 % 9000), 1000, &it) == MK_C_OK) {
            for (size_t off = 0; off < mk_item_nbytes(it);) {
                char *p;
                size_t n = mk_item_piece(it, off, &p);
                memset(p, 'a' + i, n);
                off += n;
            }
            mk_cache_store(c, it, MK_STORE_SET, 0, 1000, NULL);
            mk_item_put(c, it);
        }
    }
    mk_cache_save(c, 1000);
    mk_cache_destroy(c);

    int fd = open(path, O_RDWR);
    if (fd < 0)
        abort();
    size_t len = 4096 + MEM;
    char *img = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (img == MAP_FAILED)
        abort();
    /* the input lands at an offset it chooses (its first two bytes), over the segments */
    size_t at = size >= 2 ? (size_t)(data[0] | data[1] << 8) * 8 % MEM : 0;
    size_t n = size > 2 ? size - 2 : 0;
    if (n > MEM - at)
        n = MEM - at;
    memcpy(img + 4096 + at, data + (size - n), n);
    for (size_t s = 0; s < MEM / MK_SEG_SIZE; s++)
        reseal(img + 4096 + s * MK_SEG_SIZE);
    munmap(img, len);
    close(fd);

    c = open_cache();
    if (!c)
        abort();
    /* every restored item is readable end to end */
    int hits = 0;
    for (int i = 0; i < 20; i++) {
        char k[16];
        snprintf(k, sizeof k, "key%d", i);
        mk_item *it;
        mk_cache_read(c, k, strlen(k), 1000, keep_reading, &hits, &it);
        mk_item_put(c, it);
        if (mk_cache_get(c, k, strlen(k), 1000, &it) == MK_C_OK) {
            volatile char sum = 0;
            for (size_t off = 0; off < mk_item_nbytes(it);) {
                char *p;
                size_t k2 = mk_item_piece(it, off, &p);
                sum ^= p[0] ^ p[k2 - 1];
                off += k2;
            }
            mk_item_put(c, it);
        }
    }
    /* then enough new items to evict and compact everything that was restored */
    for (int i = 0; i < 600; i++) {
        char k[16];
        snprintf(k, sizeof k, "new%d", i);
        mk_item *it;
        if (mk_cache_alloc(c, k, strlen(k), 0, 0, (size_t)(i % 3 ? 900 : 9000), 1000, &it) == MK_C_OK) {
            mk_item_write(it, 0, "v", 1);
            mk_cache_store(c, it, MK_STORE_SET, 0, 1000, NULL);
            mk_item_put(c, it);
        }
    }
    mk_cache_maintain(c, 1001);
    mk_cache_stats st;
    mk_cache_get_stats(c, &st);
    if (st.mem_used > st.mem_limit)
        abort();
    mk_cache_destroy(c); /* (no save: the next run starts from a fresh image) */
    unlink(path);
    return 0;
}
