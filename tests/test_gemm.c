/* brisk_gemm: every code path (AVX-512, AVX2 + FMA, portable) and every split of the output
 * between 1..16 threads gives exactly the bits of a plain loop that computes each element as
 * one chain of fmaf in increasing k; and the result agrees with OpenBLAS's sgemm (an
 * independent implementation) to float rounding. */
#include "test_util.h"

#include "brisk/gemm.h"
#include "brisk/rng.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

static const char *const isas[] = {"avx512", "avx2", "portable"};

static void fill(float *p, size_t n, uint32_t sub)
{
    for (size_t i = 0; i < n; i++)
        p[i] = brisk_rng_normal(7, 11, sub, i);
}

/* The definition, written out: one fmaf chain per element from its initial value. */
static void reference(const brisk_gemm_args *g, float *C)
{
    for (int m = 0; m < g->M; m++)
        for (int n = 0; n < g->N; n++) {
            float c = g->init == BRISK_GEMM_ACCUM     ? C[m * g->ldc + n]
                      : g->init == BRISK_GEMM_ROWBIAS ? g->bias[m]
                                                      : 0.0f;
            for (int k = 0; k < g->K; k++) {
                const float a = g->a_rows ? g->a_rows[m][k * g->a_ks]
                                          : g->A[m * g->a_rs + k * g->a_ks];
                const float b = g->b_rows ? g->b_rows[k][n] : g->B[k * g->ldb + n];
                c = fmaf(a, b, c);
            }
            C[m * g->ldc + n] = c;
        }
}

/* One product of the given shape with A stored row-wise (a_ks = 1) or column-wise (a_rs = 1),
 * and padded leading dimensions, checked for every ISA the CPU runs and every split. ind 1:
 * A's rows through a_rows, ind 2: B's rows through b_rows, in reverse order (A or B NULL, so
 * that a path that ignored the pointers would crash). */
static int check_shape(int M, int N, int K, int a_cols, brisk_gemm_init init, uint32_t seed,
                       int ind)
{
    const int lda = (a_cols ? M : K) + 3, ldb = N + 5, ldc = N + 2;
    float *A = malloc(sizeof(float) * (size_t)(a_cols ? K : M) * (size_t)lda + 4);
    float *B = malloc(sizeof(float) * (size_t)(K ? K : 1) * (size_t)ldb);
    float *C0 = malloc(sizeof(float) * (size_t)(M ? M : 1) * (size_t)ldc);
    float *want = malloc(sizeof(float) * (size_t)(M ? M : 1) * (size_t)ldc);
    float *got = malloc(sizeof(float) * (size_t)(M ? M : 1) * (size_t)ldc);
    float *bias = malloc(sizeof(float) * (size_t)(M ? M : 1));
    assert_true(A && B && C0 && want && got && bias);
    fill(A, (size_t)(a_cols ? K : M) * (size_t)lda, seed);
    fill(B, (size_t)(K ? K : 1) * (size_t)ldb, seed + 1);
    fill(C0, (size_t)(M ? M : 1) * (size_t)ldc, seed + 2);
    fill(bias, (size_t)(M ? M : 1), seed + 3);
    brisk_gemm_args g = {.M = M, .N = N, .K = K, .A = A, .a_rs = a_cols ? 1 : lda,
                         .a_ks = a_cols ? lda : 1, .B = B, .ldb = ldb, .C = want, .ldc = ldc,
                         .bias = bias, .init = init};
    const float **rows = malloc(sizeof *rows * (size_t)(M > K ? M + 1 : K + 1));
    assert_non_null(rows);
    if (ind == 1) {
        for (int m = 0; m < M; m++)
            rows[m] = A + (ptrdiff_t)(M - 1 - m) * g.a_rs;
        g.a_rows = rows;
        g.A = NULL;
    } else if (ind == 2) {
        for (int k = 0; k < K; k++)
            rows[k] = B + (ptrdiff_t)(K - 1 - k) * ldb;
        g.b_rows = rows;
        g.B = NULL;
    }
    memcpy(want, C0, sizeof(float) * (size_t)(M ? M : 1) * (size_t)ldc);
    reference(&g, want);
    g.C = got;
    int paths = 0;
    for (int i = 0; i < 3; i++) {
        if (brisk_gemm_set_isa(isas[i]) < 0)
            continue;
        paths++;
        for (int nth = 1; nth <= 16; nth++) {
            /* Outside the product the padding must stay as it was; inside, every element is
             * computed once: with ACCUM a second visit would add the product twice. */
            memcpy(got, C0, sizeof(float) * (size_t)(M ? M : 1) * (size_t)ldc);
            for (int ith = nth - 1; ith >= 0; ith--)
                brisk_gemm(&g, ith, nth);
            for (int m = 0; m < M; m++)
                for (int n = 0; n < ldc; n++) {
                    const float w = n < N ? want[m * ldc + n] : C0[m * ldc + n];
                    if (memcmp(&got[m * ldc + n], &w, sizeof w)) {
                        print_error("%s, %d threads, M %d N %d K %d %s init %d rows %d: "
                                    "C[%d][%d] = %.9g, expected %.9g\n", isas[i], nth, M, N,
                                    K, a_cols ? "A by columns" : "A by rows", init, ind, m, n,
                                    (double)got[m * ldc + n], (double)w);
                        fail();
                    }
                }
        }
    }
    brisk_gemm_set_isa(NULL);
    free(rows);
    free(A);
    free(B);
    free(C0);
    free(want);
    free(got);
    free(bias);
    return paths;
}

static void test_every_path_and_split_is_the_fma_chain(void **state)
{
    (void)state;
    /* Edges of the 6-row blocks and of 16/8-wide vectors, one block of K, several. */
    const int Ms[] = {1, 5, 6, 7, 13, 40};
    const int Ns[] = {1, 8, 15, 16, 17, 64, 70, 129};
    const int Ks[] = {0, 1, 3, 256, 300};
    uint32_t seed = 1;
    int paths = 0;
    for (size_t a = 0; a < sizeof Ms / sizeof *Ms; a++)
        for (size_t b = 0; b < sizeof Ns / sizeof *Ns; b++)
            for (size_t c = 0; c < sizeof Ks / sizeof *Ks; c++, seed += 4)
                for (int ind = 0; ind < 3; ind++)
                    paths = check_shape(Ms[a], Ns[b], Ks[c], (int)(seed & 4) != 0,
                                        (brisk_gemm_init)(seed % 3), seed, ind);
    print_message("checked %d code paths (this CPU: %s is the default)\n", paths,
                  brisk_gemm_isa());
    assert_true(paths >= 1);
}

static void test_split_covers_once(void **state)
{
    (void)state;
    const int shapes[][2] = {{1, 1}, {10, 64}, {10, 1024}, {1024, 64}, {7, 3}, {100, 100},
                             {6, 2000}, {0, 5}, {5, 0}, {32, 3584}, {62, 640}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const int M = shapes[s][0], N = shapes[s][1];
        for (int nth = 1; nth <= 33; nth++) {
            int *seen = calloc((size_t)(M * N + 1), sizeof *seen);
            assert_non_null(seen);
            for (int ith = 0; ith < nth; ith++) {
                int m0, m1, n0, n1;
                brisk_gemm_split(M, N, ith, nth, &m0, &m1, &n0, &n1);
                assert_true(m0 >= 0 && n0 >= 0 && (m0 >= m1 || m1 <= M) &&
                            (n0 >= n1 || n1 <= N));
                for (int m = m0; m < m1; m++)
                    for (int n = n0; n < n1; n++)
                        seen[m * N + n]++;
            }
            for (int i = 0; i < M * N; i++)
                if (seen[i] != 1) {
                    print_error("(%d, %d) split %d ways: element %d computed %d times\n", M, N,
                                nth, i, seen[i]);
                    fail();
                }
            free(seen);
        }
    }
    /* Whole 6-row blocks would give 2 threads 18 and 14 of 32 rows; columns even it out. */
    for (int ith = 0; ith < 2; ith++) {
        int m0, m1, n0, n1;
        brisk_gemm_split(32, 3584, ith, 2, &m0, &m1, &n0, &n1);
        assert_int_equal((m1 - m0) * (n1 - n0), 32 * 1792);
    }
}

static void test_agrees_with_openblas(void **state)
{
    (void)state;
    /* The shapes of 784-1024-1024-10's layers on 64 samples: forward, weight gradient,
     * input gradient. */
    const int out = 1024, in = 784, n = 64;
    float *W = malloc(sizeof(float) * out * in), *x = malloc(sizeof(float) * in * n);
    float *z = malloc(sizeof(float) * out * n), *zr = malloc(sizeof(float) * out * n);
    assert_true(W && x && z && zr);
    fill(W, (size_t)out * in, 21);
    fill(x, (size_t)in * n, 22);
    /* z (out, n) = W (out, in) x (in, n) */
    const brisk_gemm_args g = {.M = out, .N = n, .K = in, .A = W, .a_rs = in, .a_ks = 1,
                               .B = x, .ldb = n, .C = z, .ldc = n, .init = BRISK_GEMM_ZERO};
    brisk_gemm(&g, 0, 1);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, out, n, in, 1.0f, W, in, x, n, 0.0f,
                zr, n);
    double diff = 0, ref = 0;
    for (int i = 0; i < out * n; i++) {
        diff += ((double)z[i] - zr[i]) * ((double)z[i] - zr[i]);
        ref += (double)zr[i] * zr[i];
    }
    print_message("relative difference to OpenBLAS: %.3g\n", sqrt(diff / ref));
    assert_true(ref > 0 && sqrt(diff / ref) < 1e-5);
    free(W);
    free(x);
    free(z);
    free(zr);
}

static void test_isa_names(void **state)
{
    (void)state;
    assert_int_equal(brisk_gemm_set_isa("sse9"), -1);
    assert_int_equal(brisk_gemm_set_isa("portable"), 0);
    assert_string_equal(brisk_gemm_isa(), "portable");
    assert_int_equal(brisk_gemm_set_isa(NULL), 0);
    assert_true(!strcmp(brisk_gemm_isa(), "avx512") || !strcmp(brisk_gemm_isa(), "avx2") ||
                !strcmp(brisk_gemm_isa(), "portable"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_path_and_split_is_the_fma_chain),
        cmocka_unit_test(test_split_covers_once),
        cmocka_unit_test(test_agrees_with_openblas),
        cmocka_unit_test(test_isa_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
