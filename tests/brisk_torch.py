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


def input_shape(spec, default=(1, 28, 28)):
    """The per-sample input shape: the shorthand's first width, else default."""
    if spec and all(ch.isdigit() or ch == "-" for ch in spec):
        return (int(spec.split("-")[0]),)
    return tuple(default)


def _options(args, allowed):
    out = {}
    for a in args:
        for key in allowed:
            if key != "nobias" and a.startswith(key) and a[len(key):].isdigit():
                out[key] = int(a[len(key):])
                break
        else:
            if a == "nobias" and "nobias" in allowed:
                out["nobias"] = True
            else:
                raise ValueError("unknown option %r" % a)
    return out


def build(spec, shape, act="relu"):
    """torch.nn.Sequential for a Brisk description on inputs of the given per-sample shape;
    returns (model, output shape)."""
    import torch.nn as nn

    shape = tuple(shape)
    layers = []
    for item in expand(spec, act).split(","):
        parts = item.split(":")
        kind, args = parts[0], parts[1:]
        if kind == "dense":
            o = _options(args[1:], ["nobias"])
            layers.append(nn.Linear(shape[0], int(args[0]), bias=not o.get("nobias")))
            shape = (int(args[0]),)
        elif kind == "conv":
            out, k = int(args[0]), int(args[1])
            o = _options(args[2:], ["s", "pad", "nobias"])
            s, p = o.get("s", 1), o.get("pad", 0)
            layers.append(nn.Conv2d(shape[0], out, k, stride=s, padding=p,
                                    bias=not o.get("nobias")))
            shape = (out, (shape[1] + 2 * p - k) // s + 1, (shape[2] + 2 * p - k) // s + 1)
        elif kind in ("maxpool", "avgpool"):
            k = int(args[0])
            s = _options(args[1:], ["s"]).get("s", k)
            layers.append((nn.MaxPool2d if kind == "maxpool" else nn.AvgPool2d)(k, s))
            shape = (shape[0], (shape[1] - k) // s + 1, (shape[2] - k) // s + 1)
        elif kind == "gap":
            layers.append(nn.AdaptiveAvgPool2d(1))
            shape = (shape[0], 1, 1)
        elif kind == "flatten":
            layers.append(nn.Flatten())
            n = 1
            for d in shape:
                n *= d
            shape = (n,)
        elif kind == "relu":
            layers.append(nn.ReLU())
        elif kind == "leaky_relu":
            layers.append(nn.LeakyReLU(float(args[0]) if args else 0.01))
        elif kind == "gelu":
            layers.append(nn.GELU())
        elif kind == "tanh":
            layers.append(nn.Tanh())
        elif kind == "sigmoid":
            layers.append(nn.Sigmoid())
        elif kind == "dropout":
            layers.append(nn.Dropout(float(args[0])))
        elif kind == "batchnorm":
            bn = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
            layers.append(bn(shape[0], eps=1e-5, momentum=0.1))
        elif kind == "layernorm":
            layers.append(nn.LayerNorm(list(shape), eps=1e-5))
        else:
            raise ValueError("layer kind %r has no PyTorch counterpart here" % kind)
    return nn.Sequential(*layers), shape
