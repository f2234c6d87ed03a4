/* brisk/data.h: data sets kept as uint8, IDX files (plain or gzip), a synthetic task, the
 * validation split, per-epoch shuffles and per-batch normalisation.
 */
#ifndef BRISK_DATA_H
#define BRISK_DATA_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* n samples of D uint8 features each and one uint8 label each. Owns x and y. */
typedef struct brisk_dataset {
    int64_t n;
    int d;        /* D features per sample (rows * cols for images) */
    int rows;     /* image height, 0 when the samples are not images */
    int cols;     /* image width, 0 when the samples are not images */
    int classes;  /* 1 + the largest label */
    uint8_t *x;   /* (n, d) */
    uint8_t *y;   /* (n) */
} brisk_dataset;

/* Reads an idx3-ubyte image file and an idx1-ubyte label file, each plain or gzip. Checks the
 * magic, the dimensions, overflow of their product, the sizes against the file before
 * allocating, truncation, trailing bytes and that both files hold the same number of samples.
 * On error returns a negative BRISK_E* code, leaves *out zeroed, and the detail names the file
 * and the field. */
int brisk_idx_load(const char *images_path, const char *labels_path, brisk_dataset *out);

/* Loads `<dir>/<prefix>-images-idx3-ubyte[.gz]` and `<dir>/<prefix>-labels-idx1-ubyte[.gz]`
 * (prefix "train" or "t10k", as MNIST and Fashion-MNIST ship them). BRISK_ENOENT names the
 * missing file. */
int brisk_dataset_load_dir(const char *dir, const char *prefix, brisk_dataset *out);

/* A seeded classification task generated in memory: `classes` random prototypes in
 * [0, 255]^d; sample i takes a random class and adds Gaussian noise of standard deviation
 * `noise` (in pixel units) to its prototype, clamped and rounded to uint8. `first` offsets
 * the sample counter, so [0, n) and [n, n + m) of the same seed are disjoint draws (use it for
 * a test set). */
int brisk_dataset_synthetic(int64_t n, int d, int classes, float noise, uint64_t seed,
                            int64_t first, brisk_dataset *out);

void brisk_dataset_free(brisk_dataset *ds); /* accepts NULL and zeroed data sets */

/* A seeded split of [0, n): the first n_train entries of *order (owned by the caller, free())
 * are the training indices, the remaining n - n_train the validation ones, each part sorted.
 * n_val = round(n * val_fraction), val_fraction in [0, 1). */
int brisk_split(int64_t n, double val_fraction, uint64_t seed, int32_t **order,
                int64_t *n_train);

/* out = a permutation of base[0, n) that depends only on (seed, epoch): Fisher-Yates over a
 * copy of base, so any epoch's order can be recomputed (for exact resume). */
void brisk_shuffle(const int32_t *base, int32_t *out, int64_t n, uint64_t seed, uint32_t epoch);

/* Checks that every label fits a model with `outputs` outputs: 0..outputs-1, or 0..1 for a
 * single output (binary). Returns BRISK_OK or BRISK_EINVAL with a detail naming `name` (the
 * labels' file, say), the first bad label and its sample. */
int brisk_dataset_check_labels(const brisk_dataset *ds, int outputs, const char *name);

/* Mean and standard deviation of all features of the samples idx[0, n), for normalisation. */
void brisk_dataset_stats(const brisk_dataset *ds, const int32_t *idx, int64_t n, float *mean,
                         float *std);

/* Gathers samples idx[0, n) as floats (x - mean) / std into x_out (n, D), labels into y_out. */
void brisk_dataset_gather(const brisk_dataset *ds, const int32_t *idx, int n, float mean,
                          float std, float *x_out, uint8_t *y_out);

#ifdef __cplusplus
}
#endif

#endif
