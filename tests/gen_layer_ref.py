#!/usr/bin/python3
"""Generates tests/layer_ref.h: PyTorch's values for every layer kind Brisk ships.

For each case (a small model built from a Brisk layer list by brisk_torch.build) it records
the input, the labels, every parameter and buffer, then what PyTorch computes in training
mode: the logits, the batch-mean loss and the gradient of every parameter; the running
statistics after that step (batchnorm); and the logits in evaluation mode afterwards.
test_layer_ref.c loads the same values into Brisk and compares.

Dropout's mask cannot come from PyTorch's generator: Brisk draws it from its counter-based
Philox stream keyed by (seed, step, layer, sample index, unit), which this script
re-implements from that definition (brisk/rng.h), so the test also checks the keying.

Run: python3 tests/gen_layer_ref.py > tests/layer_ref.h   (Debian's python3-torch)
"""
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import brisk_torch  # noqa: E402

M32 = 0xFFFFFFFF
SEED, STEP, SAMPLE0 = 7, 3, 10  # the pass keys the C test uses
STREAM_DROPOUT = 5

# (layer list, per-sample input shape, loss, samples)
CASES = [
    ("dense:7,relu,dense:6,leaky_relu:0.2,dense:5,gelu,dense:5,tanh,dense:4,sigmoid,dense:3",
     (6,), "ce", 4),
    ("dense:5,tanh,dense:3", (6,), "bce", 4),
    ("dense:5:nobias,gelu,dense:3", (6,), "mse", 4),
    ("dense:5,sigmoid,dense:1", (4,), "bce", 5),
    ("conv:3:3:pad1,relu,conv:4:3:s2:pad1:nobias,flatten,dense:5", (2, 7, 7), "ce", 3),
    ("conv:3:2,maxpool:2,tanh,conv:3:1,avgpool:2:s1,gelu,gap,flatten,dense:4", (2, 9, 9),
     "ce", 3),
    ("conv:2:3:pad1,maxpool:3:s2,leaky_relu:0.1,conv:3:5:pad2:s3,flatten,dense:3", (1, 9, 8),
     "ce", 3),
    ("conv:3:3:pad1,relu,conv:4:3:pad1,relu,maxpool:2,conv:3:2:pad2,tanh,flatten,dense:5",
     (2, 8, 8), "ce", 3),
    ("conv:3:3:pad1,batchnorm,relu,flatten,dense:6,batchnorm,tanh,dense:3", (2, 5, 5), "ce", 4),
    # residual connections: from the input, and two from one activation's output
    ("conv:3:3:pad1,relu,conv:3:3:pad1,res:3,tanh,flatten,dense:4", (3, 5, 5), "ce", 3),
    ("dense:6,tanh,dense:6,gelu,dense:6,res:3,res:4,sigmoid,dense:3", (6,), "mse", 4),
    # more channels, on a non-square image
    ("conv:9:3:pad1,relu,conv:8:3:pad1,tanh,flatten,dense:4", (8, 4, 6), "ce", 3),
    ("conv:3:3,layernorm,tanh,flatten,dense:4,layernorm,sigmoid,dense:3", (2, 5, 5), "ce", 3),
    ("dense:8,dropout:0.4,relu,dense:6,dropout:0.25,dense:3", (6,), "ce", 5),
    # sequences (T positions of token ids): a GPT block with the head tied to the embedding;
    # dropout on the embeddings, the attention weights and a residual branch; 37 positions
    # (two blocks of the attention's products), a tied head with a bias
    ("embed:11:8,posembed:6,layernorm,attention:2,res:2,layernorm,dense:16,gelu:tanh,dense:8,"
     "res:4,layernorm,dense:11:nobias:tied", (5, 1), "ce", 3),
    ("embed:9:8,posembed,dropout:0.2,attention:2:drop0.3,dropout:0.1,res:3,layernorm,dense:9",
     (6, 1), "ce", 2),
    ("embed:7:8,posembed:40,attention:4,res:1,layernorm,dense:7:tied", (37, 1), "ce", 2),
    # label smoothing ("ce:E": F.cross_entropy(..., label_smoothing=E)): per sample, and per
    # position of a sequence (the token loss's own kernel)
    ("dense:7,relu,dense:5", (6,), "ce:0.1", 4),
    ("embed:9:8,posembed,attention:2,res:2,layernorm,dense:9", (6, 1), "ce:0.25", 2),
    # mixup's loss ("ce:E:mixL"): L * CE(z, y) + (1 - L) * CE(z, y.flip(0)), the partner of
    # sample i being sample n - 1 - i (timm's Mixup), with and without label smoothing
    ("dense:7,relu,dense:4", (6,), "ce:0.1:mix0.7", 4),
    ("conv:2:3:pad1,batchnorm,relu,flatten,dense:4", (1, 4, 4), "ce:0:mix0.35", 5),
]


def philox(ctr, key):
    c0, c1, c2, c3 = ctr
    k0, k1 = key
    for _ in range(10):
        p0 = 0xD2511F53 * c0
        p1 = 0xCD9E8D57 * c2
        c0, c1, c2, c3 = ((p1 >> 32) ^ c1 ^ k0) & M32, p1 & M32, ((p0 >> 32) ^ c3 ^ k1) & M32, p0 & M32
        k0 = (k0 + 0x9E3779B9) & M32
        k1 = (k1 + 0xBB67AE85) & M32
    return c0, c1, c2, c3


def rng_block(seed, stream, sub, counter):
    return philox((counter & M32, (counter >> 32) & M32, sub, stream), (seed & M32, seed >> 32))


def rng_u64(seed, stream, sub, counter):
    o = rng_block(seed, stream, sub, counter)
    return (o[0] << 32) | o[1]


def rng_uniform(seed, stream, sub, counter):
    return (rng_block(seed, stream, sub, counter)[0] >> 8) / 16777216.0


class KeyedDropout(nn.Module):
    """Brisk's dropout for one training pass: unit f of sample i is kept when
    uniform(key, DROPOUT, layer, (sample0 + i) F + f) >= p, key = u64(seed, DROPOUT, layer,
    step); kept values are scaled by 1 / (1 - p)."""

    def __init__(self, p, layer):
        super().__init__()
        self.p, self.layer = p, layer

    def forward(self, x):
        if not self.training:
            return x
        # A column is a sample, or a position of a sequence ((B, T, C): column b T + t).
        cols = x.shape[0] * (x.shape[1] if x.dim() == 3 else 1)
        feat = x.shape[-1] if x.dim() == 3 else x[0].numel()
        col0 = SAMPLE0 * (x.shape[1] if x.dim() == 3 else 1)
        key = rng_u64(SEED, STREAM_DROPOUT, self.layer, STEP)
        mask = torch.tensor([[rng_uniform(key, STREAM_DROPOUT, self.layer,
                                          (col0 + i) * feat + f) >= self.p
                              for f in range(feat)] for i in range(cols)], dtype=x.dtype)
        scale = torch.tensor(1.0, dtype=torch.float32) / (1.0 - torch.tensor(self.p))
        return x * mask.reshape(x.shape) * scale


class KeyedAttentionDropout:
    """Brisk's dropout on attention weights (B, H, T, T) [b, h, t, s]: kept when
    uniform(key, DROPOUT, layer, (((SAMPLE0 + b) H + h) T + t) T + s) >= p."""

    def __init__(self, p, layer):
        self.p, self.layer = p, layer

    def __call__(self, att):
        B, H, T, _ = att.shape
        key = rng_u64(SEED, STREAM_DROPOUT, self.layer, STEP)
        mask = torch.tensor([[[[rng_uniform(key, STREAM_DROPOUT, self.layer,
                                            (((SAMPLE0 + b) * H + h) * T + t) * T + s) >= self.p
                                for s in range(T)] for t in range(T)] for h in range(H)]
                             for b in range(B)], dtype=att.dtype)
        scale = torch.tensor(1.0, dtype=torch.float32) / (1.0 - torch.tensor(self.p, dtype=torch.float32))
        return att * mask * scale


def loss_of(kind, logits, labels):
    if kind.startswith("ce"):  # sequences: over every position
        parts = kind.split(":")
        eps = float(parts[1]) if len(parts) > 1 else 0.0
        z, y = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)
        if len(parts) > 2:  # mixup
            lam = float(parts[2][3:])
            return (lam * F.cross_entropy(z, y, label_smoothing=eps) +
                    (1. - lam) * F.cross_entropy(z, y.flip(0), label_smoothing=eps))
        return F.cross_entropy(z, y, label_smoothing=eps)
    C = logits.shape[1]
    target = (labels.reshape(-1, 1).float() if C == 1
              else F.one_hot(labels, C).float())
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(logits, target)
    return F.mse_loss(logits, target)


def floats(name, values):
    vals = [float(v) for v in values]
    body = ",".join("%.9g" % v for v in vals) or "0"
    return "static const float %s[] = {%s};\n" % (name, body)


def ema_reference():
    """timm's ModelEmaV2 step, ema_v.copy_(ema_v * decay + (1. - decay) * model_v), on a
    batchnorm model's state (parameters and running statistics alike) as training changes it:
    the state after each of EMA_STEPS steps and the average after each."""
    g = torch.Generator().manual_seed(20261206)
    decay, n = 0.9, 37
    model = torch.randn(n, generator=g)  # the initial state: the average starts as a copy
    ema = model.clone()
    states, avgs = [model.clone()], []
    for _ in range(3):
        model = model + 0.1 * torch.randn(n, generator=g)  # what a step does to the state
        ema.copy_(ema * decay + (1. - decay) * model)
        states.append(model.clone())
        avgs.append(ema.clone())
    out = ["\n/* The moving average of the weights (timm's ModelEmaV2), decay %.17g. */\n" % decay,
           "#define EMA_REF_DECAY %.17g\n#define EMA_REF_N %d\n#define EMA_REF_STEPS 3\n"
           % (decay, n)]
    out.append(floats("ema_ref_states", torch.cat(states)))  # (EMA_REF_STEPS + 1, N)
    out.append(floats("ema_ref_averages", torch.cat(avgs)))  # (EMA_REF_STEPS, N)
    return "".join(out)


def main():
    torch.manual_seed(20261126)
    out = ["/* tests/layer_ref.h: PyTorch's values for every layer kind Brisk ships. */\n",
           "/* Generated by tests/gen_layer_ref.py with PyTorch %s: do not edit. */\n" % torch.__version__,
           "#ifndef LAYER_REF_H\n#define LAYER_REF_H\n#include <stdint.h>\n",
           "typedef struct ref_tensor { const char *name; int count; const float *v; } ref_tensor;\n",
           "typedef struct ref_case {\n"
           "    const char *spec; int shape[3]; int rank; const char *loss; int n;\n"
           "    const float *x; const uint8_t *labels;\n"
           "    const ref_tensor *init; int n_init;      /* parameters and buffers */\n"
           "    const float *logits; int outputs; double loss_value; /* training pass */\n"
           "    const ref_tensor *grads; int n_grads;\n"
           "    const ref_tensor *after; int n_after;    /* buffers after the step */\n"
           "    const float *eval_logits;\n"
           "    int positions; const int32_t *targets; /* sequences: a target per position */\n"
           "} ref_case;\n",
           "#define REF_SEED %d\n#define REF_STEP %d\n#define REF_SAMPLE0 %d\n" % (SEED, STEP, SAMPLE0)]
    entries = []
    for ci, (spec, shape, loss, n) in enumerate(CASES):
        model, out_shape = brisk_torch.build(spec, shape)
        for i, item in enumerate(spec.split(",")):
            if item.startswith("dropout:"):
                model[i] = KeyedDropout(float(item.split(":")[1]), i)
            if item.startswith("attention:") and ":drop" in item:
                model[i].att_drop = KeyedAttentionDropout(float(item.split(":drop")[1]), i)
        seq = len(shape) == 2
        with torch.no_grad():
            for name, t in model.named_parameters():
                if not name.endswith("weight") or t.dim() == 1:  # biases, norm scales
                    t.add_(0.3 * torch.randn_like(t))
            for name, t in model.named_buffers():
                if name.endswith("running_mean"):
                    t.copy_(0.2 * torch.randn_like(t))
                elif name.endswith("running_var"):
                    t.copy_(0.5 + torch.rand_like(t))
        C = out_shape[-1]
        if seq:  # token ids, and a target per position
            T = shape[0]
            x = torch.tensor([[(i * 7 + t * 3 + 1) % model[0].num_embeddings for t in range(T)]
                              for i in range(n)])
            labels = torch.tensor([[(i * 5 + t * 2 + 1) % C for t in range(T)] for i in range(n)])
        else:
            x = torch.randn((n,) + tuple(shape))
            labels = torch.tensor([(i * 5 + 1) % (2 if C == 1 else C) for i in range(n)])
        init = [(k, v.detach().clone().float()) for k, v in model.state_dict().items()]
        model.train()
        logits = model(x)
        lv = loss_of(loss, logits, labels)
        lv.backward()
        grads = [(k, p.grad.detach().clone()) for k, p in model.named_parameters()]
        after = [(k, v.detach().clone().float()) for k, v in model.named_buffers()]
        model.eval()
        with torch.no_grad():
            ev = model(x)
        p = "c%d_" % ci

        def tensors(tag, lst):
            s = ""
            for j, (k, v) in enumerate(lst):
                s += floats("%s%s%d" % (p, tag, j), v.flatten())
            s += "static const ref_tensor %s%s[] = {%s};\n" % (p, tag, ",".join(
                '{"%s", %d, %s%s%d}' % (k, v.numel(), p, tag, j) for j, (k, v) in enumerate(lst))
                or "{0, 0, 0}")
            return s

        out.append("\n/* case %d: %s on %s, loss %s, %d samples */\n" % (ci, spec, shape, loss, n))
        out.append(floats(p + "x", x.flatten()))
        if seq:
            out.append("static const int32_t %stargets[] = {%s};\n" % (p, ",".join(str(int(v)) for v in labels.flatten())))
            out.append("static const uint8_t %slabels[] = {0};\n" % p)
        else:
            out.append("static const uint8_t %slabels[] = {%s};\n" % (p, ",".join(str(int(v)) for v in labels)))
        out.append(tensors("init", init))
        out.append(floats(p + "logits", logits.detach().flatten()))
        out.append(tensors("grads", grads))
        out.append(tensors("after", after))
        out.append(floats(p + "eval", ev.flatten()))
        sh = list(shape) + [0] * (3 - len(shape))
        entries.append('{"%s", {%d, %d, %d}, %d, "%s", %d, %sx, %slabels, %sinit, %d, %slogits, %d, '
                       '%.17g, %sgrads, %d, %safter, %d, %seval, %d, %s}'
                       % (spec, sh[0], sh[1], sh[2], len(shape), loss, n, p, p, p, len(init), p, C,
                          float(lv), p, len(grads), p, len(after), p, shape[0] if seq else 1,
                          p + "targets" if seq else "0"))
    out.append("\nstatic const ref_case ref_cases[] = {\n    %s};\n" % ",\n    ".join(entries))
    out.append("#define N_REF_CASES %d\n" % len(entries))
    out.append(ema_reference())
    out.append("#endif\n")
    sys.stdout.write("".join(out))


if __name__ == "__main__":
    main()
