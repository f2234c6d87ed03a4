/* brisk/layer.h: the layer interface. A model is a sequence of layers, each an operations
 * table (brisk_layer_ops) and an instance (brisk_layer). Brisk's own layers (dense, conv2d,
 * pooling, activations, dropout, batchnorm, layernorm, flatten) use exactly this interface; a
 * program can write its own layer against it, register its kind (brisk_layer_register) and
 * use it in a model description like any other (examples/custom_layer.c).
 *
 * Data layout. Shapes are per sample: (C, H, W) for images, (D) for vectors, (C, T) for
 * sequences (T positions of C features each). A layer's input and output hold n columns
 * feature-major: feature f of column j at [f * ld + j]. For vectors and images a column is a
 * sample, with the features of an image in (c, h, w) order (as PyTorch flattens them). For
 * sequences a column is a position: position t of sample i is column i * T + t, so that n and
 * ld count positions, a layer that works position by position (dense, layernorm, the
 * activations) is the same code as for vectors, and the C features of one position are one
 * column, as PyTorch's (B, T, C) tensors hold them in rows. Columns j in [n, ld) are padding:
 * they hold finite values that mean nothing; a layer never lets them into a result for the
 * samples (reductions over columns stop at n).
 *
 * Threads. Kernels never create threads. forward and backward are called by every thread of
 * a team (brisk/team.h) with the same arguments; each thread computes its part and the team
 * meets at a barrier before the next layer. A layer that needs several phases meets its team
 * at brisk_team_barrier between them. Whatever the team's size, every output element must be
 * computed in the same order (brisk/gemm.h does this for matrix products), so that results
 * are bitwise the same for any number of threads.
 *
 * Parameters. In setup a layer declares its tensors with brisk_layer_add_tensor: trained
 * ones live in the model's parameter slab (and have gradients and optimizer state), buffers
 * (running statistics) in its buffer slab. Names are "<index>.<suffix>" with the layer's
 * index in the model, which is its index in the equivalent torch.nn.Sequential, so that
 * PyTorch loads a checkpoint's tensors with load_state_dict.
 */
#ifndef BRISK_LAYER_H
#define BRISK_LAYER_H

#include "brisk/gemm.h"
#include "brisk/team.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BRISK_MAX_DIMS 4
#define BRISK_MAX_LAYERS 160 /* in a model */
#define BRISK_LAYER_MAX_ARGS 8
#define BRISK_LAYER_MAX_TENSORS 4

/* A per-sample shape: rank 1 is a vector (c features; h = w = 1), rank 3 an image (c
 * channels of h x w), rank 2 a sequence (w positions of c features each; h = 1). */
typedef struct brisk_shape {
    int rank;
    int c, h, w;
} brisk_shape;

static inline brisk_shape brisk_shape_vec(int d)
{
    brisk_shape s = {1, d, 1, 1};
    return s;
}
static inline brisk_shape brisk_shape_img(int c, int h, int w)
{
    brisk_shape s = {3, c, h, w};
    return s;
}
static inline brisk_shape brisk_shape_seq(int c, int t)
{
    brisk_shape s = {2, c, 1, t};
    return s;
}
/* Values per sample. */
static inline size_t brisk_shape_size(brisk_shape s)
{
    return (size_t)s.c * (size_t)s.h * (size_t)s.w;
}
/* Columns per sample: the positions of a sequence, 1 otherwise. */
static inline int brisk_shape_positions(brisk_shape s)
{
    return s.rank == 2 ? s.w : 1;
}
/* Features per column (rows of a layer's feature-major data): c for a sequence, every value
 * of a sample otherwise. */
static inline size_t brisk_shape_features(brisk_shape s)
{
    return s.rank == 2 ? (size_t)s.c : brisk_shape_size(s);
}

/* How a tensor starts. FAN: the model's weight initialisation (He, Glorot or GPT-2's,
 * brisk/model.h) from the fan-in and fan-out declared with it. EMBEDDING: a table of
 * embeddings, N(0, 1) as torch.nn.Embedding (N(0, 0.02) with GPT-2's initialisation). */
typedef enum brisk_tensor_init {
    BRISK_TENSOR_ZERO,
    BRISK_TENSOR_ONE,
    BRISK_TENSOR_FAN,
    BRISK_TENSOR_EMBEDDING
} brisk_tensor_init;

/* A named view into a slab: floats [offset, offset + count). */
typedef struct brisk_tensor_view {
    char name[48];             /* "<layer index>.<suffix>", e.g. "0.weight" */
    size_t offset;             /* in floats, a multiple of 16 (64 bytes) */
    size_t count;              /* elements */
    int ndim, shape[BRISK_MAX_DIMS];
    int rows, cols;            /* as a matrix: shape[0], and the product of the rest */
    int layer;                 /* the layer it belongs to */
    int buffer;                /* 1: in the buffer slab, not trained */
    brisk_tensor_init init;
    int fan_in, fan_out;
} brisk_tensor_view;

typedef enum brisk_pass { BRISK_PASS_EVAL, BRISK_PASS_TRAIN } brisk_pass;

typedef struct brisk_layer brisk_layer;

/* What a forward call gets. Pointers are owned by the model's workspace. */
typedef struct brisk_forward_args {
    const float *x;        /* (in features, ld) */
    float *y;              /* (out features, ld) */
    int n, ld;             /* columns in [0, n); padding columns up to ld */
    int positions;         /* columns per sample: T for sequences, else 1 (n is a multiple) */
    /* The first layer only: its input as the caller filled it, row-major (sample i's
     * features at x_rows[i * x_rows_ld]; for a sequence, position t's at + t * C); NULL for
     * the others. */
    const float *x_rows;
    int x_rows_ld;
    const float *params;   /* the parameter slab (the layer's tensors at their offsets) */
    const float *buffers;  /* the buffer slab (running statistics), read-only here */
    void *scratch;         /* the layer's own memory for this shard (scratch_bytes) */
    brisk_pass pass;
    /* Counter-based randomness (dropout): the same for any team, shard plan or process. */
    uint64_t seed;
    int64_t step;          /* the optimizer step this pass belongs to */
    int64_t sample0;       /* position of column 0 of this shard among the batch's columns
                            * (its first sample's position in the batch, times positions) */
    float *stats;          /* train pass: stats_len floats of this shard's statistics */
    /* Elementwise activation to fuse into the output (NULL: none): when set, the layer
     * computes y as usual and also act_y = act(y) on the block each thread computed. For a
     * layer with BRISK_LAYER_ACT_IN_PLACE, act_y may be y: act is then applied in place. */
    const brisk_layer *act;
    float *act_y;
    const brisk_team *team;
    /* BRISK_LAYER_SKIP layers: the earlier output they add, (in features, ld). */
    const float *skip;
    /* The model's precision (brisk_model_config): what a layer's matrix products and other
     * multiplications of weights by activations take as their brisk_gemm_args precision. */
    brisk_gemm_precision precision;
} brisk_forward_args;

/* What a backward call gets (after a BRISK_PASS_TRAIN forward of the same shard). */
typedef struct brisk_backward_args {
    const float *x, *y;    /* the forward's input and output */
    const float *dy;       /* (out features, ld) gradient of the loss with respect to y */
    float *dx;             /* (in features, ld) to overwrite; NULL for the first layer */
    int n, ld;
    int positions;
    const float *x_rows;   /* as in brisk_forward_args */
    int x_rows_ld;
    const float *params;
    const float *buffers;
    float *grads;          /* the shard's gradient slab: overwrite the layer's tensors */
    void *scratch;
    /* Elementwise activation below this layer to fuse into dx (NULL: none): when set, dx is
     * multiplied by act's derivative at act_x (its input) / act_y (its output). */
    const brisk_layer *act;
    const float *act_x, *act_y;
    const brisk_team *team;
    /* The forward's keys (brisk_forward_args), for layers that recompute a dropout mask. */
    uint64_t seed;
    int64_t step;
    int64_t sample0;
    brisk_gemm_precision precision; /* as in brisk_forward_args */
} brisk_backward_args;

typedef struct brisk_layer_ops {
    const char *kind;      /* the name in a model description ("dense", "conv", ...) */
    /* Reads the arguments of a description item ("conv:32:3:pad1": argc 3, argv {"32", "3",
     * "pad1"}) into l->args; on a bad one returns nonzero with a message in err. */
    int (*parse)(brisk_layer *l, int argc, const char *const *argv, char *err, size_t errlen);
    /* Sets l->out from l->in and declares the tensors; on an input it cannot take returns
     * nonzero with a message in err. */
    int (*setup)(brisk_layer *l, char *err, size_t errlen);
    /* Scratch memory for a shard of up to max_rows columns (max_rows samples times their
     * positions), ld columns apart; 0 for none. May be NULL. */
    size_t (*scratch_bytes)(const brisk_layer *l, int max_rows, int ld);
    void (*forward)(const brisk_layer *l, const brisk_forward_args *a);
    void (*backward)(const brisk_layer *l, const brisk_backward_args *a);
    /* The description item that rebuilds the layer (written into checkpoints). */
    int (*describe)(const brisk_layer *l, char *buf, size_t size);
    /* Optional: the running statistics update from every shard's statistics, in shard order
     * (stats[s] has l->stats_len floats), applied to the buffer slab once per step. */
    void (*merge_stats)(const brisk_layer *l, float *buffers, const float *const *stats, int S);
    /* Optional, elementwise activations only: a = f(z) and d *= f'(z) (given z and a = f(z)),
     * on count contiguous values. A layer with these may be fused into the matrix products
     * around it (its own forward and backward then do not run). */
    void (*act)(const brisk_layer *l, const float *z, float *a, size_t count);
    void (*act_grad)(const brisk_layer *l, const float *z, const float *a, float *d,
                     size_t count);
    /* Optional: frees l->state. */
    void (*destroy)(brisk_layer *l);
    int flags;             /* BRISK_LAYER_* below */
    /* Optional: the floating-point operations of the forward pass per sample (a multiply-add
     * counts 2), for summaries; a training step takes about three times as many. NULL: few
     * enough not to count (elementwise layers). */
    double (*flops)(const brisk_layer *l);
} brisk_layer_ops;

/* The output is the input, reinterpreted (flatten): no buffer, no pass. */
#define BRISK_LAYER_ALIAS 1
/* Evaluation is the identity (dropout): the output buffer is the input's then. */
#define BRISK_LAYER_EVAL_IDENTITY 2
/* A layer whose forward and backward can take an `act` to fuse (dense, conv). */
#define BRISK_LAYER_FUSES_ACT 4
/* A layer whose backward can take an `act` to fuse into dx (pooling). */
#define BRISK_LAYER_FUSES_ACT_BACKWARD 8
/* A skip connection (res:K, with K in args[0]): the model passes it the output of the layer
 * K + 1 items back (the input of the K items before it) as `skip`, and adds the layer's dy to
 * that output's gradient; the layer's own backward computes dx as for any layer. */
#define BRISK_LAYER_SKIP 16
/* An activation after which a weight starts with Glorot's initialisation rather than He's,
 * when the model's init is auto (tanh, sigmoid). */
#define BRISK_LAYER_GLOROT_INIT 32
/* A normalisation (batchnorm, layernorm): the weight initialisation of a layer before it is
 * decided by the first activation after it. */
#define BRISK_LAYER_NORMALIZES 64
/* Counts the batches it has seen, as PyTorch's BatchNorm does: checkpoints carry an int64
 * "<index>.num_batches_tracked" for it (the optimizer steps taken). */
#define BRISK_LAYER_COUNTS_BATCHES 128
/* The first tensor's rows are units over the whole input (dense): TensorBoard's weight
 * image shows each as an image of the input, when the data are images. */
#define BRISK_LAYER_UNIT_IMAGES 256
/* The first tensor is (out, in, kh, kw) filters (conv): TensorBoard's weight image shows each
 * filter's first input channel. */
#define BRISK_LAYER_FILTER_IMAGES 512
/* An elementwise activation whose derivative is 1 where its output is positive and 0
 * elsewhere (ReLU): a max pool after it routes the gradient through it by its own output. */
#define BRISK_LAYER_STEP_GRADIENT 1024
/* A token embedding: its input is token ids, and its first tensor (vocabulary, features) is
 * the table a later layer may share (`tied`, below). The model's vocabulary is its rows. */
#define BRISK_LAYER_EMBEDDING 2048
/* A layer that may use the token embedding's table as its own first tensor (dense:V:tied,
 * the language-model head with weights tied to the embedding): the model points `tied` at
 * that table before setup. */
#define BRISK_LAYER_TIES 4096
/* An elementwise activation that computes its derivative from its output alone, never its
 * input (relu, tanh, sigmoid), and whose forward may write over its input (a[i] from z[i]
 * only): after a layer with BRISK_LAYER_ACT_IN_PLACE, a training pass keeps no
 * pre-activation output. */
#define BRISK_LAYER_GRAD_FROM_OUTPUT 8192
/* A layer that fuses an activation (BRISK_LAYER_FUSES_ACT) and takes y == act_y: it writes
 * its output and applies act to it in place, and its backward does not read its own y (dense,
 * conv). With a BRISK_LAYER_GRAD_FROM_OUTPUT activation after it, a training pass gives it
 * y == act_y, saving a pass over memory as large as the output. */
#define BRISK_LAYER_ACT_IN_PLACE 16384

struct brisk_layer {
    const brisk_layer_ops *ops;
    int index;                           /* in the model (the torch.nn.Sequential index) */
    brisk_shape in, out;
    double args[BRISK_LAYER_MAX_ARGS];   /* parsed by ops->parse */
    int n_tensors;
    brisk_tensor_view tensors[BRISK_LAYER_MAX_TENSORS]; /* declared in setup; the model sets
                                                          * their offsets */
    brisk_shape skip_in;                 /* BRISK_LAYER_SKIP: the shape of the output it adds,
                                          * set by the model before setup */
    /* BRISK_LAYER_TIES: the embedding table (the first tensor of the model's first
     * BRISK_LAYER_EMBEDDING layer before this one), or NULL; set before setup, its offset
     * once the model is laid out. A layer that uses it writes its gradient (overwriting);
     * the embedding, whose backward runs later, then adds its own. */
    const brisk_tensor_view *tied;
    /* BRISK_LAYER_EMBEDDING: set by the model when a later layer uses its table, so that its
     * backward adds to the table's gradient rather than overwriting it. */
    int shared;
    size_t stats_len;                    /* floats of per-shard statistics (set in setup) */
    void *state;                         /* the layer's own (ops->destroy frees it) */
    /* Set in setup to 1 when forward and backward write everything that another member of
     * the team reads inside claimed loops (brisk_share_next), never in a fixed share: then
     * a team's barriers need not wait for a member that has nothing left to do, which keeps
     * a team going when another program takes one of its cores. 0 (the default) is always
     * correct. */
    int claims;
};

/* In setup: declares the layer's next tensor, "<index>.<suffix>", of the given shape (its
 * element count must fit the int range). Returns its position k in the layer (0, 1, ...) or
 * a negative BRISK_E* code. */
int brisk_layer_add_tensor(brisk_layer *l, const char *suffix, int ndim, const int *shape,
                           brisk_tensor_init init, int fan_in, int fan_out, int buffer);

/* The layer's k-th tensor: its view, and its data in a slab (the parameter slab, a gradient
 * slab, or the buffer slab for buffers). */
const brisk_tensor_view *brisk_layer_tensor(const brisk_layer *l, int k);
float *brisk_layer_data(const brisk_layer *l, int k, const float *slab);

/* Makes a layer kind known to the model description parser (ops must outlive every model
 * that uses it). Returns BRISK_OK, or BRISK_EINVAL for a kind that exists or a table without
 * parse, setup, forward, backward or describe. */
int brisk_layer_register(const brisk_layer_ops *ops);

/* The ops of a kind (built in or registered), or NULL. */
const brisk_layer_ops *brisk_layer_find(const char *kind);

#ifdef __cplusplus
}
#endif

#endif
