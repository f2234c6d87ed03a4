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
            o = _options(args[1:], ["nobias"])
            prm = {"n": int(args[0]), "bias": not o.get("nobias")}
            out = (prm["n"],)
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
        elif kind == "dropout":
            prm = {"p": float(args[0])}
        elif kind == "res":
            prm = {"k": int(args[0])}
        elif kind not in ("relu", "gelu", "tanh", "sigmoid", "batchnorm", "layernorm"):
            raise ValueError("layer kind %r has no PyTorch counterpart here" % kind)
        yield i, kind, prm, shape, out
        shape = out


_CLASSES = {}


def _residual_classes():
    """Residual (res:K, no parameters) and a Sequential that feeds it: y = x + the input of
    the K modules before it. The module indices, and so the state_dict names, stay those of
    a plain Sequential."""
    if not _CLASSES:
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


def build(spec, shape, act="relu"):
    """torch.nn.Sequential for a Brisk description on inputs of the given per-sample shape
    (a Sequential subclass when it has res items); returns (model, output shape)."""
    import torch.nn as nn

    mods, shape = [], tuple(shape)
    for _, kind, prm, shape_in, shape in layers(spec, shape, act):
        if kind == "dense":
            mods.append(nn.Linear(shape_in[0], prm["n"], bias=prm["bias"]))
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
        elif kind == "layernorm":
            mods.append(nn.LayerNorm(list(shape_in), eps=1e-5))
        elif kind == "res":
            mods.append(_residual_classes()[0](prm["k"]))
        else:
            mods.append({"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh,
                         "sigmoid": nn.Sigmoid}[kind]())
    if any(m.__class__.__name__ == "Residual" for m in mods):
        return _residual_classes()[1](*mods), shape
    return nn.Sequential(*mods), shape
