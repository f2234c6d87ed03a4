/* The SPSC ring: exact fill, wrap at every offset, oversize rejection, drop accounting, and a
 * stress test with 8 producers (one ring each) and one consumer checking sequence numbers and
 * payload checksums. Runs under TSan in CI (label tsan).
 * BRISK_RING_STRESS_N sets the records per producer (default 1e7). */
#include "test_util.h"

#include "brisk/error.h"
#include "brisk/ring.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static void fill_pattern(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(seed * 131u + i * 7u + 1u);
}

static void test_create_rejects_bad_capacity(void **state)
{
    (void)state;
    brisk_ring *r = (brisk_ring *)1;
    assert_int_equal(brisk_ring_create(0, &r), BRISK_EINVAL);
    assert_null(r);
    assert_int_equal(brisk_ring_create(32, &r), BRISK_EINVAL);
    assert_int_equal(brisk_ring_create(1000, &r), BRISK_EINVAL);
    assert_int_equal(brisk_ring_create(64, &r), BRISK_OK);
    assert_int_equal(brisk_ring_capacity(r), 64);
    brisk_ring_destroy(r);
    brisk_ring_destroy(NULL);
}

static void test_exact_fill(void **state)
{
    (void)state;
    brisk_ring *r;
    assert_int_equal(brisk_ring_create(256, &r), BRISK_OK);
    uint8_t rec[24], out[256];
    int got;
    /* 8 records of 24 bytes take 8 x 32 = 256 bytes: exactly full. */
    for (unsigned i = 0; i < 8; i++) {
        fill_pattern(rec, sizeof rec, i);
        assert_int_equal(brisk_ring_push(r, rec, sizeof rec), BRISK_OK);
    }
    assert_int_equal(brisk_ring_push(r, rec, 0), BRISK_EFULL); /* even an empty record */
    assert_int_equal(brisk_ring_dropped(r), 1);
    assert_int_equal(brisk_ring_head(r) - brisk_ring_tail(r), 256);
    /* One out, one in (this one wraps), then everything comes out in order. */
    assert_int_equal(brisk_ring_pop(r, out, sizeof out, &got), 24);
    assert_int_equal(got, 1);
    fill_pattern(rec, sizeof rec, 8);
    assert_int_equal(brisk_ring_push(r, rec, sizeof rec), BRISK_OK);
    for (unsigned i = 1; i <= 8; i++) {
        fill_pattern(rec, sizeof rec, i);
        assert_int_equal(brisk_ring_pop(r, out, sizeof out, &got), 24);
        assert_memory_equal(out, rec, sizeof rec);
    }
    assert_int_equal(brisk_ring_pop(r, out, sizeof out, &got), 0);
    assert_int_equal(got, 0);
    /* The largest record fills an empty ring exactly. */
    uint8_t big[248];
    fill_pattern(big, sizeof big, 99);
    assert_int_equal(brisk_ring_push(r, big, sizeof big), BRISK_OK);
    assert_int_equal(brisk_ring_push(r, big, 0), BRISK_EFULL);
    assert_int_equal(brisk_ring_pop(r, out, sizeof out, &got), 248);
    assert_memory_equal(out, big, sizeof big);
    assert_int_equal(brisk_ring_dropped(r), 2);
    brisk_ring_destroy(r);
}

static void test_wrap_at_every_offset(void **state)
{
    (void)state;
    enum { CAP = 128 };
    uint8_t rec[CAP], out[CAP], filler[CAP] = {0};
    for (size_t start = 0; start < CAP; start += 8) {
        for (size_t n = 0; n <= CAP - 8; n++) {
            brisk_ring *r;
            int got;
            assert_int_equal(brisk_ring_create(CAP, &r), BRISK_OK);
            if (start > 0) { /* move both positions to `start` */
                assert_int_equal(brisk_ring_push(r, filler, start - 8), BRISK_OK);
                assert_int_equal(brisk_ring_pop(r, out, sizeof out, &got), (long)(start - 8));
            }
            fill_pattern(rec, n, (unsigned)(start + n));
            assert_int_equal(brisk_ring_push(r, rec, n), BRISK_OK);
            /* The ring now holds exactly one record; anything that no longer fits drops. */
            const size_t left = CAP - BRISK_RING_RECORD_BYTES(n);
            if (left >= 8) {
                assert_int_equal(brisk_ring_push(r, filler, left - 8), BRISK_OK);
                assert_int_equal(brisk_ring_push(r, filler, 0), BRISK_EFULL);
            }
            assert_int_equal(brisk_ring_pop(r, out, sizeof out, &got), (long)n);
            if (memcmp(out, rec, n) != 0) {
                print_error("record of %zu bytes at offset %zu came back different\n", n, start);
                fail();
            }
            brisk_ring_destroy(r);
        }
    }
}

static void test_oversize_and_small_buffer(void **state)
{
    (void)state;
    brisk_ring *r;
    int got;
    assert_int_equal(brisk_ring_create(64, &r), BRISK_OK);
    uint8_t rec[100] = {1, 2, 3}, out[64];
    assert_int_equal(brisk_ring_push(r, rec, 57), BRISK_EOVERFLOW); /* 8 + 64 > 64 */
    assert_int_equal(brisk_ring_push(r, rec, 100), BRISK_EOVERFLOW);
    assert_int_equal(brisk_ring_dropped(r), 2);
    assert_int_equal(brisk_ring_push(r, rec, 56), BRISK_OK);
    assert_int_equal(brisk_ring_pop(r, out, 10, &got), BRISK_EOVERFLOW);
    assert_int_equal(got, 0);
    assert_int_equal(brisk_ring_pop(r, out, sizeof out, &got), 56); /* it stayed */
    assert_memory_equal(out, rec, 56);
    brisk_ring_destroy(r);
}

static void test_gathered_push(void **state)
{
    (void)state;
    brisk_ring *r;
    int got;
    assert_int_equal(brisk_ring_create(64, &r), BRISK_OK);
    uint8_t out[64];
    for (int k = 0; k < 20; k++) { /* crosses the end of the buffer several times */
        brisk_ring_iov iov[3] = {{"abc", 3}, {"", 0}, {"defghij", 7}};
        assert_int_equal(brisk_ring_pushv(r, iov, 3), BRISK_OK);
        assert_int_equal(brisk_ring_pop(r, out, sizeof out, &got), 10);
        assert_memory_equal(out, "abcdefghij", 10);
    }
    brisk_ring_destroy(r);
}

/* Stress: the record is {seq, len, checksum, payload[len]}. */
enum { PRODUCERS = 8, MAX_PAYLOAD = 48 };

typedef struct stress_rec {
    uint64_t seq;
    uint32_t len;
    uint32_t sum;
    uint8_t payload[MAX_PAYLOAD];
} stress_rec;

typedef struct stress {
    brisk_ring *rings[PRODUCERS];
    uint64_t n;
    uint64_t dropped[PRODUCERS];
    _Atomic int producers_done;
} stress;

typedef struct producer_arg {
    stress *s;
    int id;
} producer_arg;

static uint32_t payload_sum(const uint8_t *p, uint32_t n, uint64_t seq)
{
    uint32_t h = 2166136261u ^ (uint32_t)seq;
    for (uint32_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

static void *stress_producer(void *arg)
{
    producer_arg *pa = arg;
    stress *s = pa->s;
    brisk_ring *r = s->rings[pa->id];
    stress_rec rec;
    uint64_t dropped = 0;
    for (uint64_t seq = 0; seq < s->n; seq++) {
        rec.seq = seq;
        rec.len = (uint32_t)((seq * 2654435761u + (uint64_t)pa->id) % (MAX_PAYLOAD + 1));
        for (uint32_t i = 0; i < rec.len; i++)
            rec.payload[i] = (uint8_t)(seq >> (i % 8) ^ (uint64_t)i ^ (uint64_t)pa->id);
        rec.sum = payload_sum(rec.payload, rec.len, seq);
        if (brisk_ring_push(r, &rec, offsetof(stress_rec, payload) + rec.len) != BRISK_OK) {
            /* Counted as dropped; then give the consumer a chance, so that most records
             * travel through the ring instead of being dropped (2 cores, 9 threads). */
            dropped++;
            sched_yield();
        }
    }
    s->dropped[pa->id] = dropped;
    atomic_fetch_add(&s->producers_done, 1);
    return NULL;
}

/* Bulk records keep a reserve free behind them: with the consumer stalled, they stop while
 * the reserve is still free, and small records fill it. */
static void test_reserve_keeps_room_for_small_records(void **state)
{
    (void)state;
    brisk_ring *r;
    assert_int_equal(brisk_ring_create(4096, &r), BRISK_OK);
    uint8_t big[496] = {0}, small[8] = {1};
    const brisk_ring_iov bulk = {big, sizeof big}, one = {small, sizeof small};
    int bulk_pushed = 0;
    while (brisk_ring_pushv_reserve(r, &bulk, 1, 1024) == BRISK_OK)
        bulk_pushed++;
    /* 504-byte records: (4096 - 1024) / 504 = 6 fit with the reserve free behind them. */
    assert_int_equal(bulk_pushed, 6);
    assert_int_equal(brisk_ring_dropped(r), 1);
    int small_pushed = 0;
    while (brisk_ring_pushv(r, &one, 1) == BRISK_OK)
        small_pushed++;
    assert_int_equal(small_pushed, (4096 - 6 * 504) / 16);
    /* A record that fits the ring but not with its reserve could never go in. */
    uint8_t huge[3200];
    const brisk_ring_iov h = {huge, sizeof huge};
    brisk_ring *r2;
    assert_int_equal(brisk_ring_create(4096, &r2), BRISK_OK);
    assert_int_equal(brisk_ring_pushv_reserve(r2, &h, 1, 1024), BRISK_EOVERFLOW);
    assert_int_equal(brisk_ring_pushv(r2, &h, 1), BRISK_OK);
    brisk_ring_destroy(r2);
    brisk_ring_destroy(r);
}

static void test_stress_8_producers(void **state)
{
    (void)state;
    stress s = {.n = 10000000};
    const char *env = getenv("BRISK_RING_STRESS_N");
    if (env)
        s.n = strtoull(env, NULL, 10);
    printf("stress: %d producers x %llu records\n", PRODUCERS, (unsigned long long)s.n);
    for (int i = 0; i < PRODUCERS; i++)
        assert_int_equal(brisk_ring_create(1 << 16, &s.rings[i]), BRISK_OK);
    pthread_t th[PRODUCERS];
    producer_arg args[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) {
        args[i] = (producer_arg){&s, i};
        assert_int_equal(pthread_create(&th[i], NULL, stress_producer, &args[i]), 0);
    }
    /* The consumer: this thread. */
    uint64_t consumed[PRODUCERS] = {0}, next[PRODUCERS] = {0}, gaps[PRODUCERS] = {0};
    stress_rec rec;
    int bad = 0;
    for (;;) {
        const int done = atomic_load(&s.producers_done) == PRODUCERS;
        uint64_t popped = 0;
        for (int i = 0; i < PRODUCERS; i++) {
            for (int k = 0; k < 256; k++) {
                int got;
                long n = brisk_ring_pop(s.rings[i], &rec, sizeof rec, &got);
                if (!got)
                    break;
                popped++;
                if (n < (long)offsetof(stress_rec, payload) ||
                    n != (long)(offsetof(stress_rec, payload) + rec.len) || rec.seq < next[i] ||
                    rec.sum != payload_sum(rec.payload, rec.len, rec.seq)) {
                    if (bad++ < 5)
                        print_error("producer %d: bad record seq %llu (expected >= %llu), %ld "
                                    "bytes\n",
                                    i, (unsigned long long)rec.seq,
                                    (unsigned long long)next[i], n);
                    continue;
                }
                gaps[i] += rec.seq - next[i];
                next[i] = rec.seq + 1;
                consumed[i]++;
            }
        }
        if (done && popped == 0)
            break;
    }
    for (int i = 0; i < PRODUCERS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    assert_int_equal(bad, 0);
    uint64_t total_dropped = 0;
    for (int i = 0; i < PRODUCERS; i++) {
        gaps[i] += s.n - next[i]; /* drops after the last record consumed */
        if (consumed[i] + s.dropped[i] != s.n || gaps[i] != s.dropped[i] ||
            brisk_ring_dropped(s.rings[i]) != s.dropped[i]) {
            print_error("producer %d: produced %llu, consumed %llu, dropped %llu (ring says "
                        "%llu), sequence gaps %llu\n",
                        i, (unsigned long long)s.n, (unsigned long long)consumed[i],
                        (unsigned long long)s.dropped[i],
                        (unsigned long long)brisk_ring_dropped(s.rings[i]),
                        (unsigned long long)gaps[i]);
            fail();
        }
        total_dropped += s.dropped[i];
        brisk_ring_destroy(s.rings[i]);
    }
    printf("stress: consumed %llu, dropped %llu\n",
           (unsigned long long)(PRODUCERS * s.n - total_dropped),
           (unsigned long long)total_dropped);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_rejects_bad_capacity),
        cmocka_unit_test(test_exact_fill),
        cmocka_unit_test(test_wrap_at_every_offset),
        cmocka_unit_test(test_oversize_and_small_buffer),
        cmocka_unit_test(test_gathered_push),
        cmocka_unit_test(test_reserve_keeps_room_for_small_records),
        cmocka_unit_test(test_stress_8_producers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
