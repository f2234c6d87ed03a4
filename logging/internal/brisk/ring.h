/* brisk/ring.h: a lock-free single-producer single-consumer ring of variable-size records.
 *
 * One thread pushes, one other thread pops; no locks, C11 acquire/release atomics only. The
 * producer's index and the consumer's index sit on separate cache lines, and each side keeps a
 * cached copy of the other's index so that it touches the shared line only when the cached
 * value says the ring looks full (producer) or empty (consumer).
 *
 * Layout: capacity is a power of two; positions are 64-bit byte counters that never wrap. A
 * record is an 8-byte header (payload size) followed by the payload, padded to 8 bytes, so a
 * header never straddles the end of the buffer while a payload may: it is copied in two parts.
 * A ring of capacity C holds exactly C bytes of records (BRISK_RING_RECORD_BYTES each).
 *
 * A push never blocks: when the record does not fit it is dropped and counted.
 */
#ifndef BRISK_RING_H
#define BRISK_RING_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct brisk_ring brisk_ring;

/* Smallest and largest capacities brisk_ring_create accepts. */
#define BRISK_RING_MIN_CAPACITY ((size_t)64)
#define BRISK_RING_MAX_CAPACITY ((size_t)1 << 31)

/* Bytes a record with an n-byte payload occupies in the ring. */
#define BRISK_RING_RECORD_BYTES(n) ((size_t)8 + (((size_t)(n) + 7) & ~(size_t)7))

/* One piece of a gathered push. */
typedef struct brisk_ring_iov {
    const void *data;
    size_t n;
} brisk_ring_iov;

/* Creates an empty ring of `capacity` bytes (a power of two within the bounds above).
 * Returns BRISK_OK and the ring in *out (owned by the caller; brisk_ring_destroy), or
 * BRISK_EINVAL (bad capacity) or BRISK_ENOMEM. */
int brisk_ring_create(size_t capacity, brisk_ring **out);

/* Frees the ring (NULL is fine). No thread may use it any more. */
void brisk_ring_destroy(brisk_ring *r);

size_t brisk_ring_capacity(const brisk_ring *r);

/* Producer side. Copies the payload data[0, n) as one record. Returns BRISK_OK, or drops the
 * record, counts it and returns BRISK_EFULL (no room now) or BRISK_EOVERFLOW (it could never
 * fit: BRISK_RING_RECORD_BYTES(n) > capacity). */
int brisk_ring_push(brisk_ring *r, const void *data, size_t n);

/* The same with the payload gathered from `count` pieces, in order. */
int brisk_ring_pushv(brisk_ring *r, const brisk_ring_iov *iov, int count);

/* The same, but only when the ring would still have `reserve` free bytes after the record:
 * bulk records (histograms, images) keep that much room for small ones pushed after them
 * while the consumer is behind. BRISK_EOVERFLOW when the record and the reserve could never
 * fit together. */
int brisk_ring_pushv_reserve(brisk_ring *r, const brisk_ring_iov *iov, int count,
                             size_t reserve);

/* Records dropped so far (by the producer; any thread may read it). */
uint64_t brisk_ring_dropped(const brisk_ring *r);

/* Consumer side. Copies the oldest record's payload into out[0, cap) and removes it.
 * Returns the payload size (>= 0) with *got = 1, or 0 with *got = 0 when the ring is empty,
 * or BRISK_EOVERFLOW when cap is too small (the record stays). A capacity-sized buffer always
 * suffices. */
long brisk_ring_pop(brisk_ring *r, void *out, size_t cap, int *got);

/* Producer position (bytes ever pushed): the consumer has seen everything pushed before a
 * moment once its own position reaches the value read at that moment. Any thread. */
uint64_t brisk_ring_head(const brisk_ring *r);

/* Consumer position (bytes ever popped). Consumer thread only. (The producer sees the
 * consumer's progress in steps of capacity/16 bytes, and all of it once the ring is empty.) */
uint64_t brisk_ring_tail(const brisk_ring *r);

#ifdef __cplusplus
}
#endif

#endif
