#include "brisk/ring.h"

#include "brisk/error.h"

#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Who touches what (each group on its own cache line, so that one side's private writes never
 * evict the line the other side reads):
 *   head, tail_cache, dropped: written by the producer only (dropped is read by anyone).
 *   tail, tail_local, head_cache: written by the consumer only. tail_local is the consumer's
 *   exact position; it publishes it to `tail` (the line the producer reads) only every
 *   capacity/16 bytes and whenever the ring runs empty, so that a producer hammering a full
 *   ring and a consumer popping it do not bounce that cache line once per record.
 *   buf[head, head + need) is the producer's until it publishes head with a release store;
 *   buf[tail, head) is the consumer's until it publishes tail with a release store.
 * The acquire load of the other side's index pairs with that release store, so the bytes
 * behind the index are visible before the index is. */
struct brisk_ring {
    alignas(64) _Atomic uint64_t head; /* published by the producer */
    alignas(64) uint64_t tail_cache;   /* producer-private (dropped is read rarely) */
    _Atomic uint64_t dropped;
    alignas(64) _Atomic uint64_t tail; /* published by the consumer */
    alignas(64) uint64_t tail_local;   /* consumer-private */
    uint64_t tail_shown;               /* the last value stored to tail */
    uint64_t head_cache;
    alignas(64) uint8_t *buf; /* read-only after create */
    uint64_t mask;
};

int brisk_ring_create(size_t capacity, brisk_ring **out)
{
    *out = NULL;
    if (capacity < BRISK_RING_MIN_CAPACITY || capacity > BRISK_RING_MAX_CAPACITY ||
        (capacity & (capacity - 1)) != 0)
        return brisk_error_set(BRISK_EINVAL,
                               "ring capacity %zu: must be a power of two in [%zu, %zu]",
                               capacity, BRISK_RING_MIN_CAPACITY, BRISK_RING_MAX_CAPACITY);
    brisk_ring *r = aligned_alloc(64, (sizeof *r + 63) & ~(size_t)63);
    if (!r)
        return brisk_error_set(BRISK_ENOMEM, "ring: out of memory");
    memset(r, 0, sizeof *r);
    r->buf = aligned_alloc(64, capacity);
    if (!r->buf) {
        free(r);
        return brisk_error_set(BRISK_ENOMEM, "ring: out of memory for %zu bytes", capacity);
    }
    atomic_init(&r->head, 0);
    atomic_init(&r->tail, 0);
    atomic_init(&r->dropped, 0);
    r->mask = capacity - 1;
    *out = r;
    return BRISK_OK;
}

void brisk_ring_destroy(brisk_ring *r)
{
    if (!r)
        return;
    free(r->buf);
    free(r);
}

size_t brisk_ring_capacity(const brisk_ring *r)
{
    return (size_t)r->mask + 1;
}

/* Copies n bytes to the ring at position pos, in two parts when they cross the end. */
static void ring_write(brisk_ring *r, uint64_t pos, const void *src, size_t n)
{
    if (n == 0) /* src may be NULL then */
        return;
    size_t off = (size_t)(pos & r->mask), cap = (size_t)r->mask + 1;
    size_t first = n < cap - off ? n : cap - off;
    memcpy(r->buf + off, src, first);
    if (n > first)
        memcpy(r->buf, (const uint8_t *)src + first, n - first);
}

static void ring_read(const brisk_ring *r, uint64_t pos, void *dst, size_t n)
{
    size_t off = (size_t)(pos & r->mask), cap = (size_t)r->mask + 1;
    size_t first = n < cap - off ? n : cap - off;
    memcpy(dst, r->buf + off, first);
    if (n > first)
        memcpy((uint8_t *)dst + first, r->buf, n - first);
}

static int ring_drop(brisk_ring *r, int err)
{
    /* Only the producer writes it; the atomic makes the value readable from other threads. */
    atomic_store_explicit(&r->dropped,
                          atomic_load_explicit(&r->dropped, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    return err;
}

int brisk_ring_pushv(brisk_ring *r, const brisk_ring_iov *iov, int count)
{
    return brisk_ring_pushv_reserve(r, iov, count, 0);
}

int brisk_ring_pushv_reserve(brisk_ring *r, const brisk_ring_iov *iov, int count,
                             size_t reserve)
{
    size_t n = 0;
    for (int i = 0; i < count; i++)
        n += iov[i].n;
    const uint64_t cap = r->mask + 1;
    if (n > cap || reserve > cap || BRISK_RING_RECORD_BYTES(n) > cap - reserve)
        return ring_drop(r, BRISK_EOVERFLOW);
    /* Room for the record and, behind it, the reserve. */
    const uint64_t need = BRISK_RING_RECORD_BYTES(n) + reserve;
    const uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    if (head + need - r->tail_cache > cap) {
        r->tail_cache = atomic_load_explicit(&r->tail, memory_order_acquire);
        if (head + need - r->tail_cache > cap)
            return ring_drop(r, BRISK_EFULL);
    }
    /* Positions are multiples of 8, so the 8-byte header is always contiguous. */
    const uint64_t hdr = n;
    memcpy(r->buf + (head & r->mask), &hdr, sizeof hdr);
    uint64_t pos = head + sizeof hdr;
    for (int i = 0; i < count; i++) {
        ring_write(r, pos, iov[i].data, iov[i].n);
        pos += iov[i].n;
    }
    atomic_store_explicit(&r->head, head + (need - reserve), memory_order_release);
    return BRISK_OK;
}

int brisk_ring_push(brisk_ring *r, const void *data, size_t n)
{
    brisk_ring_iov one = {data, n};
    return brisk_ring_pushv(r, &one, 1);
}

uint64_t brisk_ring_dropped(const brisk_ring *r)
{
    return atomic_load_explicit(&r->dropped, memory_order_relaxed);
}

long brisk_ring_pop(brisk_ring *r, void *out, size_t cap, int *got)
{
    *got = 0;
    const uint64_t tail = r->tail_local;
    if (tail == r->head_cache) {
        r->head_cache = atomic_load_explicit(&r->head, memory_order_acquire);
        if (tail == r->head_cache) {
            /* Empty: hand all the room back to the producer. */
            if (r->tail_shown != tail) {
                r->tail_shown = tail;
                atomic_store_explicit(&r->tail, tail, memory_order_release);
            }
            return 0;
        }
    }
    uint64_t n;
    memcpy(&n, r->buf + (tail & r->mask), sizeof n);
    BRISK_ASSERT(BRISK_RING_RECORD_BYTES(n) <= r->head_cache - tail);
    if (n > cap)
        return BRISK_EOVERFLOW;
    ring_read(r, tail + sizeof n, out, (size_t)n);
    r->tail_local = tail + BRISK_RING_RECORD_BYTES(n);
    if (r->tail_local - r->tail_shown >= (r->mask + 1) / 16) {
        r->tail_shown = r->tail_local;
        atomic_store_explicit(&r->tail, r->tail_local, memory_order_release);
    }
    *got = 1;
    return (long)n;
}

uint64_t brisk_ring_head(const brisk_ring *r)
{
    return atomic_load_explicit(&r->head, memory_order_acquire);
}

uint64_t brisk_ring_tail(const brisk_ring *r)
{
    return r->tail_local;
}
