/* brisk/data.h: data sets (uint8 or float32 features; class labels or float regression
 * targets), read from IDX files (plain or gzip), NumPy .npy files, CSV files or the caller's
 * arrays; token sequences for language models, from text, .npy or llm.c's token files; a
 * synthetic task, the validation split, per-epoch shuffles and normalisation.
 */
#ifndef BRISK_DATA_H
#define BRISK_DATA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* n samples of D features each, stored as uint8 (x: IDX files and uint8 arrays keep this
 * compact form) or as float32 (xf), with either one class label each (y) or `targets` float
 * regression targets each (yf). A per-sample shape of (channels, rows, cols) makes the
 * samples images; rows = cols = 0 means vectors of D features. The trainer takes images for
 * a model whose input is an image only when channels, rows and cols all match it; vectors of
 * C * H * W features stand for (C, H, W) images (row-major, channels first, as PyTorch and
 * NumPy lay them out), and images for vectors of their size (a dense model on image data).
 * brisk_dataset_free releases what the data set owns: x and y, and the buffers a loader
 * allocated for xf and yf; arrays the caller lent (brisk_dataset_wrap) stay the caller's. */
typedef struct brisk_dataset {
    int64_t n;
    int d;          /* D features per sample (channels * rows * cols for images) */
    int rows;       /* image height, 0 when the samples are not images */
    int cols;       /* image width, 0 when the samples are not images */
    int classes;    /* 1 + the largest label; 0 with regression targets */
    uint8_t *x;     /* (n, d) uint8 features, or NULL when xf holds them */
    uint8_t *y;     /* (n) class labels, or NULL with regression targets */
    int channels;   /* image channels (0 counts as 1) */
    int targets;    /* regression targets per sample (yf), 0 with class labels */
    const float *xf; /* (n, d) float32 features when x is NULL, row-major */
    const float *yf; /* (n, targets) float32 targets when targets > 0, row-major */
    void *owned[2]; /* buffers behind xf and yf that brisk_dataset_free releases */
    int borrowed;   /* y is the caller's array (brisk_dataset_wrap): only read, never freed */
    /* Token data (brisk_dataset_tokens, brisk_dataset_load_tokens): a stream of n_tokens
     * token ids and the window length T = seq_len. Sample j is the window
     * tokens[j T, j T + T + 1): its inputs the first T ids, its targets the next id at each
     * position. n = (n_tokens - 1) / T windows, d = T, classes = the vocabulary (ids are
     * 0..classes-1); x, xf, y and yf are NULL. NULL for other data. */
    const int32_t *tokens;
    int64_t n_tokens;
    int seq_len;
    double bytes_per_token; /* token data from text, a token a byte: 1; 0 when unknown */
} brisk_dataset;

/* What a loader makes of the label column or array. */
typedef enum brisk_target_kind {
    BRISK_TARGET_CLASSES,   /* integer class labels 0..255 (classification) */
    BRISK_TARGET_VALUES     /* float targets (regression) */
} brisk_target_kind;

/* A data set over the caller's arrays, without copying them: x (n, d) float32 features,
 * row-major, and either labels (n class labels, uint8) or targets (n, n_targets) float32.
 * Exactly one of labels and targets is non-NULL. The arrays must outlive the data set. shape
 * is the per-sample shape: NULL, or {channels, rows, cols} with a product of d. Checks the
 * sizes, that every value is finite and, with labels, sets classes. */
int brisk_dataset_wrap(int64_t n, int d, const int *shape, const float *x,
                       const uint8_t *labels, const float *targets, int n_targets,
                       brisk_dataset *out);

/* Reads features and labels (or targets) from two NumPy .npy files (format versions 1-3,
 * C order, little-endian): x of shape (N, D), (N, H, W) or (N, C, H, W) and dtype float32,
 * float64, uint8, int32 or int64 (uint8 stays uint8 in memory; the others become float32);
 * y of shape (N) or, for regression, (N, K). Class labels must be integers 0..255 (any
 * integer dtype, or floats with integral values); targets any finite numbers. Everything in
 * the header is checked against the file before allocating; errors name the file and the
 * field. */
int brisk_dataset_load_npy(const char *x_path, const char *y_path, brisk_target_kind kind,
                           brisk_dataset *out);

/* Reads a CSV file: a header row of column names, then one sample per line, comma-separated
 * numbers (blank lines and a final newline are fine; fields may be quoted). label_column
 * names the label or target column by its header name or by its 0-based index ("0", or "-1"
 * for the last); every other column is a feature. Errors give the line and the column. */
int brisk_dataset_load_csv(const char *path, const char *label_column, brisk_target_kind kind,
                           brisk_dataset *out);

/* Features alone, for prediction on new samples: a .npy file as above, or a CSV file whose
 * every column is a feature (by the name's extension). The data set has no labels. */
int brisk_dataset_load_features(const char *path, brisk_dataset *out);

/* Reads one .npy file into a float32 array (any dtype above converted), for programs that
 * handle their own arrays. *data is the caller's to free(); shape gets up to 4 sizes. */
int brisk_npy_read(const char *path, float **data, int *ndim, int64_t shape[4]);

/* Writes n_rows x n_cols float32 values as a .npy file (a 1-D array when n_cols is 0). */
int brisk_npy_write(const char *path, const float *data, int64_t n_rows, int n_cols);

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

/* Token data over the caller's stream (not copied; it must outlive the data set): windows of
 * seq_len + 1 ids (brisk_dataset above), vocab the vocabulary (every id must be in
 * 0..vocab-1; vocab 0: 1 + the largest id). BRISK_EINVAL (naming the id and its position) for
 * a bad id, a seq_len outside 1..65536 or a stream shorter than one window. */
int brisk_dataset_tokens(const int32_t *tokens, int64_t n_tokens, int seq_len, int vocab,
                         brisk_dataset *out);

/* Reads a token stream into token data of windows of seq_len + 1, by the file's content:
 * - llm.c's token files: int32 header[256] = {20240520, 1, count, ...}, then count uint16
 *   ids (vocabulary: 1 + the largest id, or 50257 when one is over 255: GPT-2's);
 * - a NumPy .npy file (the \x93NUMPY magic): a 1-D array of whole numbers (any integer or
 *   float dtype; vocabulary: 1 + the largest);
 * - anything else is text, one token per byte (vocabulary 256), as a byte-level language
 *   model reads it.
 * Every error names the file and the field (the header's magic, version or count against the
 * file's size, an element that is not a token id, a stream shorter than one window). */
int brisk_dataset_load_tokens(const char *path, int seq_len, brisk_dataset *out);

/* The windows idx[0, n) of token data: inputs into x_out (n, T) as floats (exact below
 * 2^24), and when targets_out is not NULL the targets (n, T), targets_out[i T + t] the id
 * after input t of window i. */
void brisk_dataset_gather_tokens(const brisk_dataset *ds, const int32_t *idx, int n,
                                 float *x_out, int32_t *targets_out);

/* A seeded split of [0, n): the first n_train entries of *order (owned by the caller, free())
 * are the training indices, the remaining n - n_train the validation ones, each part sorted.
 * n_val = round(n * val_fraction), val_fraction in [0, 1). */
int brisk_split(int64_t n, double val_fraction, uint64_t seed, int32_t **order,
                int64_t *n_train);

/* out = a permutation of base[0, n) that depends only on (seed, epoch): Fisher-Yates over a
 * copy of base, so any epoch's order can be recomputed (for exact resume). */
void brisk_shuffle(const int32_t *base, int32_t *out, int64_t n, uint64_t seed, uint32_t epoch);

/* Checks that every label fits a model with `outputs` outputs: 0..outputs-1, or 0..1 for a
 * single output (binary); with regression targets, that there are `outputs` of them per
 * sample. Returns BRISK_OK or BRISK_EINVAL with a detail naming `name` (the labels' file,
 * say), the first bad label and its sample. */
int brisk_dataset_check_labels(const brisk_dataset *ds, int outputs, const char *name);

/* Mean and standard deviation of all features of the samples idx[0, n), for normalisation
 * (a std of 0 becomes 1). */
void brisk_dataset_stats(const brisk_dataset *ds, const int32_t *idx, int64_t n, float *mean,
                         float *std);

/* The same per feature: mean[j] and std[j] over the samples idx[0, n), D each (a feature
 * that never changes gets std 1). Sums in sample order, so the result depends only on idx.
 * BRISK_EINVAL (naming it) for a NULL argument or an index outside the data set. */
int brisk_dataset_feature_stats(const brisk_dataset *ds, const int32_t *idx, int64_t n,
                                float *mean, float *std);

/* Gathers samples idx[0, n) as floats normalised per feature, (x[j] - mean[j]) / std[j],
 * into x_out (n, D), and their labels into y_out (when not NULL and the data set has labels).
 * count is 1 (one mean and std for every feature) or D; mean and std may be NULL (count 0:
 * the features as they are). */
void brisk_dataset_gather(const brisk_dataset *ds, const int32_t *idx, int n, const float *mean,
                          const float *std, int count, float *x_out, uint8_t *y_out);

/* Image augmentation for training, applied to a sample as it is gathered (no pass over the
 * data set, no copy of it), in torchvision's order and with its semantics:
 *   crop:P   RandomCrop(size, padding=P): the image padded by P pixels of black (a raw 0,
 *            normalised as the data are) and cut back at a random offset, 0..2P each way;
 *   flip     RandomHorizontalFlip(): mirrored left to right with probability 1/2;
 *   erase:E  RandomErasing(p=E) after the normalisation: with probability E, a rectangle of
 *            2% to 33% of the area, aspect ratio 0.3 to 3.3 (log-uniform; 10 tries to fit),
 *            set to 0 in every channel.
 * Every draw for a sample comes from the counter-based generator keyed by (seed, epoch, the
 * sample's index in the data set), so it is the same whichever thread or process gathers it,
 * and after a resume. */
typedef struct brisk_augment {
    int crop;    /* P, the padding; 0: off */
    int flip;    /* nonzero: on */
    float erase; /* E, the probability; 0: off */
} brisk_augment;

/* Reads "crop:4,flip,erase:0.25" (any of the three, in any order, each once; "" or "none":
 * off) into *out. BRISK_EINVAL naming the part that is wrong. */
int brisk_augment_parse(const char *text, brisk_augment *out);

/* The canonical text of a (crop, flip, erase, in that order; "none" when off), as
 * snprintf (returns what snprintf returns). */
int brisk_augment_format(const brisk_augment *a, char *buf, size_t size);

/* Nonzero when a changes anything. */
int brisk_augment_enabled(const brisk_augment *a);

/* BRISK_OK when a fits samples of (channels, rows, cols) (rows and cols 0: not images, which
 * only an augmentation that is off fits); else BRISK_EINVAL naming the part and the shape. */
int brisk_augment_check(const brisk_augment *a, int channels, int rows, int cols);

/* Mixup's weight for optimizer step `step` (0-based): a draw from Beta(alpha, alpha), alpha
 * > 0 (Zhang et al.; timm's Mixup draws one per batch), keyed by (seed, step) only, in
 * [0, 1]. The trainer mixes sample i of a step's batch of n with sample n - 1 - i (timm's
 * flip of the batch): lam x_i + (1 - lam) x_(n-1-i), and the loss weighs their labels the
 * same way (brisk_model_loss_mixed). */
double brisk_mixup_lambda(uint64_t seed, int64_t step, double alpha);

/* Cutmix's box for step `step` of images rows x cols (Yun et al.; timm's cutmix, one box per
 * batch): lam from Beta(alpha, alpha) as brisk_mixup_lambda, a box of sides int(rows
 * sqrt(1 - lam)) and int(cols sqrt(1 - lam)) centred on a uniform pixel and clipped to the
 * image: rows [*y0, *y1) and columns [*x0, *x1) of sample i come from its partner (sample
 * n - 1 - i). Returns the weight of sample i's own label, 1 - the box's share of the image;
 * for an empty image (or a NULL output) no box and 1. */
double brisk_cutmix_box(uint64_t seed, int64_t step, double alpha, int rows, int cols, int *y0,
                        int *y1, int *x0, int *x1);

/* Augments one gathered sample x (channels, rows, cols), in place, for sample `sample` of
 * the data set in epoch `epoch`. The black the crop pads with is what raw 0 becomes under
 * the gather's normalisation (mean, std, count as brisk_dataset_gather). Does nothing for a
 * NULL a or x, or a shape brisk_augment_check refuses. */
void brisk_augment_apply(const brisk_augment *a, int channels, int rows, int cols,
                         uint64_t seed, int64_t epoch, int64_t sample, const float *mean,
                         const float *std, int count, float *x);

#ifdef __cplusplus
}
#endif

#endif
