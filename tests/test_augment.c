/* Image augmentation (brisk/data.h): the grammar and its refusals, and what each transform
 * does to a sample: the crop is a shift by -P..P each way with raw black coming in, the flip a
 * mirror or nothing, the erasing one zero rectangle of 2% to 33% of the image; draws depend on
 * (seed, epoch, sample) only, and their frequencies are the stated ones. */
#include "test_util.h"

#include "brisk/data.h"
#include "brisk/error.h"

#include <math.h>
#include <string.h>

static void test_parse_and_format(void **state)
{
    (void)state;
    brisk_augment a;
    char buf[64];
    assert_int_equal(brisk_augment_parse("erase:0.25,flip,crop:4", &a), BRISK_OK);
    assert_int_equal(a.crop, 4);
    assert_int_equal(a.flip, 1);
    assert_true(a.erase == 0.25f);
    brisk_augment_format(&a, buf, sizeof buf);
    assert_string_equal(buf, "crop:4,flip,erase:0.25");
    assert_int_equal(brisk_augment_parse(buf, &a), BRISK_OK); /* the round trip */
    assert_true(brisk_augment_enabled(&a));
    const char *texts[] = {"flip", "crop:2", "erase:1", "crop:1,erase:0.5"};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(brisk_augment_parse(texts[i], &a), BRISK_OK);
        brisk_augment_format(&a, buf, sizeof buf);
        assert_string_equal(buf, texts[i]);
    }
    for (int i = 0; i < 2; i++) {
        assert_int_equal(brisk_augment_parse(i ? "none" : "", &a), BRISK_OK);
        assert_false(brisk_augment_enabled(&a));
        brisk_augment_format(&a, buf, sizeof buf);
        assert_string_equal(buf, "none");
    }
    const struct {
        const char *text, *says;
    } bad[] = {{"crop", "crop needs its padding"},      {"crop:0", "crop needs"},
               {"crop:4x", "crop needs"},               {"crop:2,crop:2", "twice"},
               {"flip:1", "flip takes no value"},       {"flip,flip", "flip is given twice"},
               {"erase:0", "erase needs"},              {"erase:1.5", "erase needs"},
               {"erase:nan", "erase needs"},            {"rotate:5", "unknown 'rotate'"},
               {"flip,", "an empty part"},              {",flip", "an empty part"},
               {"flip,,crop:1", "an empty part"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(brisk_augment_parse(bad[i].text, &a), BRISK_EINVAL);
        assert_non_null(strstr(brisk_error_detail(), bad[i].says));
        assert_non_null(strstr(brisk_error_detail(), bad[i].text));
    }
    assert_int_equal(brisk_augment_parse(NULL, &a), BRISK_EINVAL);
    /* Shapes: images only, a crop no larger than the image. */
    a = (brisk_augment){3, 0, 0};
    assert_int_equal(brisk_augment_check(&a, 1, 28, 28), BRISK_OK);
    assert_int_equal(brisk_augment_check(&a, 0, 0, 0), BRISK_EINVAL);
    assert_non_null(strstr(brisk_error_detail(), "need images"));
    assert_int_equal(brisk_augment_check(&a, 1, 2, 28), BRISK_EINVAL);
    a = (brisk_augment){0, 0, 0};
    assert_int_equal(brisk_augment_check(&a, 0, 0, 0), BRISK_OK);
}

enum { C = 2, H = 9, W = 11, PLANE = H * W };

/* A sample whose every value says where it came from: c * 1000 + y * 100 + x + 1. */
static void fill(float *x)
{
    for (int c = 0; c < C; c++)
        for (int y = 0; y < H; y++)
            for (int k = 0; k < W; k++)
                x[c * PLANE + y * W + k] = (float)(c * 1000 + y * 100 + k + 1);
}

static void test_crop_is_a_shift(void **state)
{
    (void)state;
    const brisk_augment a = {3, 0, 0};
    const float mean = 100.0f, std = 50.0f, black = (0.0f - mean) / std;
    int seen[7][7] = {{0}};
    for (int s = 0; s < 2000; s++) {
        float x[C * PLANE];
        fill(x);
        brisk_augment_apply(&a, C, H, W, 42, 1, s, &mean, &std, 1, x);
        /* Find the shift from a pixel that came from inside, then check every pixel. */
        int dy = 99, dx = 99;
        for (int j = 0; j < PLANE && dy == 99; j++)
            if (x[j] != black) {
                const int v = (int)x[j] - 1;
                dy = v / 100 - j / W;
                dx = v % 100 - j % W;
            }
        assert_true(dy >= -3 && dy <= 3 && dx >= -3 && dx <= 3);
        seen[dy + 3][dx + 3]++;
        for (int c = 0; c < C; c++)
            for (int y = 0; y < H; y++)
                for (int k = 0; k < W; k++) {
                    const int sy = y + dy, sx = k + dx;
                    const float want = sy < 0 || sy >= H || sx < 0 || sx >= W
                                           ? black
                                           : (float)(c * 1000 + sy * 100 + sx + 1);
                    assert_true(x[c * PLANE + y * W + k] == want);
                }
    }
    for (int i = 0; i < 7; i++) /* 49 shifts, about 41 each */
        for (int k = 0; k < 7; k++)
            assert_in_range(seen[i][k], 15, 75);
}

static void test_flip_and_keys(void **state)
{
    (void)state;
    const brisk_augment a = {0, 1, 0};
    int flipped = 0;
    for (int s = 0; s < 4000; s++) {
        float x[C * PLANE], ref[C * PLANE];
        fill(x);
        fill(ref);
        brisk_augment_apply(&a, C, H, W, 7, 3, s, NULL, NULL, 0, x);
        const int f = x[0] != ref[0];
        flipped += f;
        for (int c = 0; c < C; c++)
            for (int y = 0; y < H; y++)
                for (int k = 0; k < W; k++)
                    assert_true(x[c * PLANE + y * W + k] ==
                                ref[c * PLANE + y * W + (f ? W - 1 - k : k)]);
    }
    assert_in_range(flipped, 1850, 2150);
    /* The same (seed, epoch, sample): the same result; another epoch or seed: another draw. */
    const brisk_augment all = {2, 1, 1.0f};
    int differ_epoch = 0, differ_seed = 0;
    for (int s = 0; s < 50; s++) {
        float x1[C * PLANE], x2[C * PLANE], x3[C * PLANE], x4[C * PLANE];
        fill(x1), fill(x2), fill(x3), fill(x4);
        brisk_augment_apply(&all, C, H, W, 5, 2, s, NULL, NULL, 0, x1);
        brisk_augment_apply(&all, C, H, W, 5, 2, s, NULL, NULL, 0, x2);
        brisk_augment_apply(&all, C, H, W, 5, 3, s, NULL, NULL, 0, x3);
        brisk_augment_apply(&all, C, H, W, 6, 2, s, NULL, NULL, 0, x4);
        assert_memory_equal(x1, x2, sizeof x1);
        differ_epoch += memcmp(x1, x3, sizeof x1) != 0;
        differ_seed += memcmp(x1, x4, sizeof x1) != 0;
    }
    assert_true(differ_epoch >= 45 && differ_seed >= 45);
}

static void test_erase_rectangle(void **state)
{
    (void)state;
    const brisk_augment a = {0, 0, 0.25f};
    int erased = 0;
    enum { CH = 1, HH = 28, WW = 28 };
    for (int s = 0; s < 4000; s++) {
        float x[CH * HH * WW];
        for (int j = 0; j < CH * HH * WW; j++)
            x[j] = 1.0f + (float)j;
        brisk_augment_apply(&a, CH, HH, WW, 11, 1, s, NULL, NULL, 0, x);
        int y0 = HH, y1 = -1, x0 = WW, x1 = -1, zeros = 0;
        for (int y = 0; y < HH; y++)
            for (int k = 0; k < WW; k++) {
                const float v = x[y * WW + k];
                if (v == 0.0f) {
                    zeros++;
                    y0 = y < y0 ? y : y0, y1 = y > y1 ? y : y1;
                    x0 = k < x0 ? k : x0, x1 = k > x1 ? k : x1;
                } else {
                    assert_true(v == 1.0f + (float)(y * WW + k));
                }
            }
        if (!zeros)
            continue;
        erased++;
        const int eh = y1 - y0 + 1, ew = x1 - x0 + 1;
        assert_int_equal(zeros, eh * ew); /* one filled rectangle */
        const double frac = (double)zeros / (HH * WW), ratio = (double)eh / ew;
        /* 2% to 33% of the area and a ratio of 0.3 to 3.3, up to the rounding of sides */
        assert_true(frac > 0.012 && frac < 0.37);
        assert_true(ratio > 0.2 && ratio < 5.0);
    }
    assert_in_range(erased, 880, 1120); /* p 0.25 of 4000, a few of the ten tries failing */
}

/* Mixup's weight: Beta(alpha, alpha) by its mean and variance, 1/(4 (2 alpha + 1)), for
 * alpha below, at and above 1; within [0, 1]; a function of (seed, step) only. */
static void test_mixup_lambda(void **state)
{
    (void)state;
    const double alphas[] = {0.2, 1.0, 2.0};
    for (int a = 0; a < 3; a++) {
        const int n = 20000;
        double sum = 0, sq = 0;
        for (int s = 0; s < n; s++) {
            const double l = brisk_mixup_lambda(42, s, alphas[a]);
            assert_true(l >= 0 && l <= 1);
            sum += l;
            sq += l * l;
        }
        const double mean = sum / n, var = sq / n - mean * mean,
                     want = 1.0 / (4 * (2 * alphas[a] + 1));
        assert_true(fabs(mean - 0.5) < 0.01);
        assert_true(fabs(var - want) < 0.06 * want);
        assert_true(brisk_mixup_lambda(42, 7, alphas[a]) == brisk_mixup_lambda(42, 7, alphas[a]));
        assert_true(brisk_mixup_lambda(42, 7, alphas[a]) != brisk_mixup_lambda(43, 7, alphas[a]));
    }
    assert_true(brisk_mixup_lambda(1, 1, 0) == 1.0); /* off */
    assert_true(brisk_mixup_lambda(1, 1, NAN) == 1.0);
}

/* Cutmix's box: sides int(H sqrt(1 - lam)) around a uniform centre, clipped; the returned
 * weight is 1 - its share of the image; every box inside the image. */
static void test_cutmix_box(void **state)
{
    (void)state;
    int area_sum = 0, n = 4000;
    for (int s = 0; s < n; s++) {
        int y0, y1, x0, x1;
        const double lam = brisk_cutmix_box(9, s, 1.0, 28, 20, &y0, &y1, &x0, &x1);
        assert_true(y0 >= 0 && y0 <= y1 && y1 <= 28 && x0 >= 0 && x0 <= x1 && x1 <= 20);
        const double l0 = brisk_mixup_lambda(9, s, 1.0), cut = sqrt(1 - l0);
        assert_true(y1 - y0 <= (int)(28 * cut) && x1 - x0 <= (int)(20 * cut));
        assert_true(lam == 1.0 - (double)((y1 - y0) * (x1 - x0)) / (28.0 * 20.0));
        area_sum += (y1 - y0) * (x1 - x0);
    }
    /* Beta(1, 1): lam uniform, so the unclipped box averages half the image; clipping at the
     * edges takes a good part of that away. */
    const double mean_share = (double)area_sum / n / (28.0 * 20.0);
    assert_true(mean_share > 0.2 && mean_share < 0.5);
    /* No image, or nowhere to write the box: no box, the own label's weight 1 (no abort). */
    int y0 = 5, y1 = 5, x0 = 5, x1 = 5;
    assert_true(brisk_cutmix_box(9, 1, 1.0, 0, 20, &y0, &y1, &x0, &x1) == 1.0);
    assert_true(y0 == 0 && y1 == 0 && x0 == 0 && x1 == 0);
    assert_true(brisk_cutmix_box(9, 1, 1.0, 28, -3, &y0, &y1, &x0, &x1) == 1.0);
    assert_true(brisk_cutmix_box(9, 1, 1.0, 28, 20, NULL, &y1, &x0, &x1) == 1.0);
    /* apply with nothing to apply to, or a bad shape: nothing happens (no abort). */
    float one = 3.0f;
    const brisk_augment all = {2, 1, 1.0f};
    brisk_augment_apply(NULL, 1, 1, 1, 1, 0, 0, NULL, NULL, 0, &one);
    brisk_augment_apply(&all, 1, 1, 1, 1, 0, 0, NULL, NULL, 0, NULL);
    brisk_augment_apply(&all, 1, 0, 5, 1, 0, 0, NULL, NULL, 0, &one);
    assert_true(one == 3.0f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_and_format),
        cmocka_unit_test(test_crop_is_a_shift),
        cmocka_unit_test(test_flip_and_keys),
        cmocka_unit_test(test_erase_rectangle),
        cmocka_unit_test(test_mixup_lambda),
        cmocka_unit_test(test_cutmix_box),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
