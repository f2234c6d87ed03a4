"""Brisk model descriptions as torch.nn.Sequential, for the reference tests and benchmarks.

build(spec, input_shape) turns a Brisk layer list ("conv:32:3:pad1,relu,maxpool:2,flatten,
dense:10"), the preset "cnn" or the MLP shorthand ("784-256-10", with act) into a
torch.nn.Sequential whose state_dict has exactly the names, shapes and layouts of a Brisk
checkpoint's tensors ("0.weight", "3.running_mean", ...), so that
model.load_state_dict(tensors) loads one. input_shape is (C, H, W) or (D,) per sample.

Brisk's conventions it mirrors: batchnorm is BatchNorm2d on images and BatchNorm1d on vectors
(eps 1e-5, momentum 0.1); layernorm normalises all features of a sample (LayerNorm over the
whole per-sample shape, eps 1e-5); gelu is exact; gap is AdaptiveAvgPool2d(1), which keeps
(C, 1, 1); pooling has no padding and a stride of K by default.

Sequences (language models): a per-sample shape of two numbers is a sequence (T, C), PyTorch's
(B, T, C) per sample; token ids are (T, 1) and enter the model as a (B, T) integer tensor.
embed:V:C is nn.Embedding (B, T) -> (B, T, C); posembed adds a learned (maxT, C) table (GPT-2's
wpe); attention:H is nanoGPT's CausalSelfAttention (c_attn, c_proj, causal softmax), dense and
layernorm act position by position (nn.Linear, nn.LayerNorm(C)), gelu:tanh is
nn.GELU(approximate="tanh"), and dense:V:tied uses the embedding's weight (GPT-2's lm_head), so
its own state_dict has no weight, as a Brisk checkpoint has none for it.
"""

CNN = ("conv:32:3:pad1,relu,maxpool:2,conv:64:3:pad1,relu,maxpool:2,flatten,dense:128,relu,"
       "dropout:0.3,dense:10")


def expand(spec, act="relu"):
    """The layer list a description stands for (presets and the shorthand expanded)."""
    if spec == "cnn":
        return CNN
    if spec and all(ch.isdigit() or ch == "-" for ch in spec):
        widths = spec.split("-")
        items = []
        for i, w in enumerate(widths[1:]):
            items.append("dense:" + w)
            if i + 2 < len(widths):
                items.append(act)
        return ",".join(items)
    return spec


def input_of_meta(text):
    """The per-sample shape a checkpoint's brisk.input holds: "1x28x28", "784", or
    "seq:128x1" (a sequence: 128 positions of 1 feature, token ids)."""
    if text.startswith("seq:"):
        return tuple(int(d) for d in text[4:].split("x"))
    return tuple(int(d) for d in text.split("x"))


def input_shape(spec, default=(1, 28, 28)):
    """The per-sample input shape: the shorthand's first width, else default."""
    if spec and all(ch.isdigit() or ch == "-" for ch in spec):
        return (int(spec.split("-")[0]),)
    return tuple(default)


def _options(args, allowed):
    out = {}
    flags = ("nobias", "tied")
    for a in args:
        for key in allowed:
            if key not in flags and a.startswith(key) and a[len(key):].replace(".", "", 1).isdigit():
                v = a[len(key):]
                out[key] = float(v) if "." in v else int(v)
                break
        else:
            if a in flags and a in allowed:
                out[a] = True
            else:
                raise ValueError("unknown option %r" % a)
    return out


def layers(spec, shape, act="relu"):
    """Walks a Brisk description without torch: yields (index, kind, params, in_shape,
    out_shape) per layer, params holding the parsed numbers and options (n, out, k, s, pad,
    bias, slope, p) that the kind takes."""
    shape = tuple(shape)
    for i, item in enumerate(expand(spec, act).split(",")):
        parts = item.split(":")
        kind, args = parts[0], parts[1:]
        prm, out = {}, shape
        if kind == "dense":
            o = _options(args[1:], ["nobias", "tied"])
            prm = {"n": int(args[0]), "bias": not o.get("nobias"), "tied": bool(o.get("tied"))}
            out = (shape[0], prm["n"]) if len(shape) == 2 else (prm["n"],)
        elif kind == "embed":
            prm = {"v": int(args[0]), "c": int(args[1])}
            out = (shape[0], prm["c"])
        elif kind == "posembed":
            prm = {"maxt": int(args[0]) if args else shape[0]}
        elif kind == "attention":
            prm = {"h": int(args[0]), "drop": _options(args[1:], ["drop"]).get("drop", 0.0)}
        elif kind == "conv":
            o = _options(args[2:], ["s", "pad", "nobias"])
            prm = {"out": int(args[0]), "k": int(args[1]), "s": o.get("s", 1),
                   "pad": o.get("pad", 0), "bias": not o.get("nobias")}
            k, s, p = prm["k"], prm["s"], prm["pad"]
            out = (prm["out"], (shape[1] + 2 * p - k) // s + 1, (shape[2] + 2 * p - k) // s + 1)
        elif kind in ("maxpool", "avgpool"):
            k = int(args[0])
            prm = {"k": k, "s": _options(args[1:], ["s"]).get("s", k)}
            out = (shape[0], (shape[1] - k) // prm["s"] + 1, (shape[2] - k) // prm["s"] + 1)
        elif kind == "gap":
            out = (shape[0], 1, 1)
        elif kind == "flatten":
            n = 1
            for d in shape:
                n *= d
            out = (n,)
        elif kind == "leaky_relu":
            prm = {"slope": float(args[0]) if args else 0.01}
        elif kind == "gelu":
            prm = {"approximate": "tanh" if args == ["tanh"] else "none"}
        elif kind == "dropout":
            prm = {"p": float(args[0])}
        elif kind == "res":
            prm = {"k": int(args[0])}
        elif kind not in ("relu", "tanh", "sigmoid", "batchnorm", "layernorm"):
            raise ValueError("layer kind %r has no PyTorch counterpart here" % kind)
        yield i, kind, prm, shape, out
        shape = out


_CLASSES = {}


def _residual_classes():
    """Residual (res:K, no parameters) and a Sequential that feeds it: y = x + the input of
    the K modules before it. The module indices, and so the state_dict names, stay those of
    a plain Sequential."""
    if "Residual" not in _CLASSES:
        import torch.nn as nn

        class Residual(nn.Module):
            def __init__(self, k):
                super().__init__()
                self.k = k

            def extra_repr(self):
                return "k=%d" % self.k

        class SkipSequential(nn.Sequential):
            def forward(self, x):
                outs = [x]  # outs[i]: the input of module i
                for m in self:
                    x = x + outs[-1 - m.k] if isinstance(m, Residual) else m(x)
                    outs.append(x)
                return x

        _CLASSES.update(Residual=Residual, SkipSequential=SkipSequential)
    return _CLASSES["Residual"], _CLASSES["SkipSequential"]


def _sequence_classes():
    """The sequence modules: position embedding, causal self-attention, a head tied to the
    token embedding."""
    if "Attention" not in _CLASSES:
        import math

        import torch
        import torch.nn as nn
        import torch.nn.functional as F

        class TokenEmbedding(nn.Embedding):
            def forward(self, x):  # (B, T) ids, or (B, T, 1) ids as floats
                if x.dim() == 3:
                    x = x.squeeze(-1)
                return super().forward(x.long())

        class PosEmbedding(nn.Module):
            def __init__(self, maxt, c):
                super().__init__()
                self.weight = nn.Parameter(torch.zeros(maxt, c))

            def forward(self, x):
                return x + self.weight[:x.shape[1]]

        class CausalSelfAttention(nn.Module):
            """nanoGPT's: qkv = c_attn(x), per head softmax(q k^T / sqrt(hd)) with the causal
            mask, attention dropout (att_drop, a callable on (B, H, T, T) weights), c_proj."""

            def __init__(self, c, h):
                super().__init__()
                self.n_head = h
                self.c_attn = nn.Linear(c, 3 * c)
                self.c_proj = nn.Linear(c, c)
                self.att_drop = None

            def forward(self, x):
                B, T, C = x.shape
                hd = C // self.n_head
                q, k, v = self.c_attn(x).split(C, dim=2)
                q = q.view(B, T, self.n_head, hd).transpose(1, 2)
                k = k.view(B, T, self.n_head, hd).transpose(1, 2)
                v = v.view(B, T, self.n_head, hd).transpose(1, 2)
                att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
                mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
                att = F.softmax(att.masked_fill(mask, float("-inf")), dim=-1)
                if self.att_drop is not None and self.training:
                    att = self.att_drop(att)
                y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
                return self.c_proj(y)

        class TiedLinear(nn.Module):
            """y = x E^T (+ b), E the token embedding's weight: held, not registered, so that
            the state_dict has the bias alone, like a Brisk checkpoint."""

            def __init__(self, emb, bias, n):
                super().__init__()
                self.__dict__["emb"] = emb
                self.bias = nn.Parameter(torch.zeros(n)) if bias else None

            def forward(self, x):
                return F.linear(x, self.emb.weight, self.bias)

        _CLASSES.update(TokenEmbedding=TokenEmbedding, PosEmbedding=PosEmbedding,
                        Attention=CausalSelfAttention, TiedLinear=TiedLinear)
    return _CLASSES


def build(spec, shape, act="relu"):
    """torch.nn.Sequential for a Brisk description on inputs of the given per-sample shape
    (a Sequential subclass when it has res items); returns (model, output shape)."""
    import torch.nn as nn

    mods, shape, emb = [], tuple(shape), None
    for _, kind, prm, shape_in, shape in layers(spec, shape, act):
        if kind == "dense" and prm["tied"]:
            if emb is None:
                raise ValueError("dense:%d:tied without an embed layer before it" % prm["n"])
            mods.append(_sequence_classes()["TiedLinear"](emb, prm["bias"], prm["n"]))
        elif kind == "dense":
            mods.append(nn.Linear(shape_in[-1], prm["n"], bias=prm["bias"]))
        elif kind == "embed":
            mods.append(_sequence_classes()["TokenEmbedding"](prm["v"], prm["c"]))
            emb = emb or mods[-1]
        elif kind == "posembed":
            mods.append(_sequence_classes()["PosEmbedding"](prm["maxt"], shape_in[-1]))
        elif kind == "attention":
            mods.append(_sequence_classes()["Attention"](shape_in[-1], prm["h"]))
        elif kind == "conv":
            mods.append(nn.Conv2d(shape_in[0], prm["out"], prm["k"], stride=prm["s"],
                                  padding=prm["pad"], bias=prm["bias"]))
        elif kind in ("maxpool", "avgpool"):
            mods.append((nn.MaxPool2d if kind == "maxpool" else nn.AvgPool2d)(prm["k"], prm["s"]))
        elif kind == "gap":
            mods.append(nn.AdaptiveAvgPool2d(1))
        elif kind == "flatten":
            mods.append(nn.Flatten())
        elif kind == "leaky_relu":
            mods.append(nn.LeakyReLU(prm["slope"]))
        elif kind == "dropout":
            mods.append(nn.Dropout(prm["p"]))
        elif kind == "batchnorm":
            bn = nn.BatchNorm2d if len(shape_in) == 3 else nn.BatchNorm1d
            mods.append(bn(shape_in[0], eps=1e-5, momentum=0.1))
        elif kind == "layernorm":  # a sequence's positions each over their C features
            mods.append(nn.LayerNorm([shape_in[-1]] if len(shape_in) == 2 else list(shape_in),
                                     eps=1e-5))
        elif kind == "res":
            mods.append(_residual_classes()[0](prm["k"]))
        elif kind == "gelu":
            mods.append(nn.GELU(approximate=prm["approximate"]))
        else:
            mods.append({"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[kind]())
    if any(m.__class__.__name__ == "Residual" for m in mods):
        return _residual_classes()[1](*mods), shape
    return nn.Sequential(*mods), shape
