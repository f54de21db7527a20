#!/usr/bin/env python3
"""Parity fixtures for the Swift `daft` tests (PyTorch / NumPy reference values).

How to run (from the repository root):

    pip install torch safetensors torchvision scipy numpy   # torchvision only for the key/shape check
    python3 Tests/Fixtures/make_fixtures.py

Deterministic: fixed seeds, one CPU thread, deterministic algorithms, and the safetensors header is
rewritten in a canonical order (safetensors' Rust writer emits `__metadata__` in hash order), so a rerun
on the same torch/numpy versions gives byte-identical files.  All model tensors are float32, ridge
tensors float64, labels int64, `num_batches_tracked` int64 with shape [].

Files written next to this script (see README.md beside it for the full key layout and tolerances):

  parity_resnet20.safetensors   small stem, BasicBlock 16/32/64 x 3/3/3, 1 channel, 10 classes, 8x1x28x28
  parity_resnet18n.safetensors  ImageNet stem, BasicBlock 8/16/32/64 x 2/2/2/2, 3 ch, 7 classes, 4x3x64x64
  parity_resnet50n.safetensors  ImageNet stem, Bottleneck 8/16/32/64 x 3/4/6/3, 3 ch, 5 classes, 4x3x64x64
      param.<sd name>   initial state_dict;  input;  labels;  logits_eval;  logits_train;  loss [1];
      grad.<param>      gradients of the first train-mode step;
      after1.<bn buf>   BN running_mean/running_var/num_batches_tracked after the first train forward;
      after3.<sd name>  state_dict after 3 SGD steps (step 1 IS the logits_train/grad step);
      losses_steps [3]  loss of each of the 3 steps.
  schedule.safetensors          CosineAnnealingLR values (torch scheduler) + closed-form equivalents.
  bn_conversion.safetensors     DAFT BN conversion (method.md s.2) of the resnet20 initial weights.
  priors.safetensors            L2-SP penalty/gradients and the feature-space prior (method.md s.5).
  ridge.safetensors             closed-form ridge head incl. incremental domains (method.md s.6).

The script also measures float32 noise: every model quantity is recomputed with the same weights in
float64 and the max |float32 - float64| is printed and stored in metadata as `float32_noise_*`.
"""

import copy
import json
import math
import os
import struct
import sys

import numpy as np
import scipy.linalg
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.set_default_dtype(torch.float32)

OUT = os.path.dirname(os.path.abspath(__file__))
BN_EPS = 1e-5
BN_MOMENTUM = 0.1


# ----------------------------------------------------------------------------------------------------
# Model: torchvision's ResNet structure with configurable stem, widths and blocks.
# state_dict names are identical to torchvision.models.resnet*.
# ----------------------------------------------------------------------------------------------------
def conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def conv1x1(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


def bn(c):
    return nn.BatchNorm2d(c, eps=BN_EPS, momentum=BN_MOMENTUM)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = bn(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = bn(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4  # torchvision v1.5: stride on the 3x3 conv

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = bn(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = bn(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = bn(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, block, widths, blocks, in_channels, num_classes, stem):
        super().__init__()
        assert len(widths) == len(blocks)
        self.inplanes = widths[0]
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, widths[0], 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        elif stem == "small":
            self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            raise ValueError(stem)
        self.bn1 = bn(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.num_stages = len(widths)
        for i, (w, n) in enumerate(zip(widths, blocks)):
            setattr(self, f"layer{i + 1}", self._make_layer(block, w, n, 1 if i == 0 else 2))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[-1] * block.expansion, num_classes)
        # torchvision's ResNet initialisation (what torchvision.models.resnetXX() does)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, block, planes, n, stride):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                       bn(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        for _ in range(1, n):
            layers.append(block(self.inplanes, planes))
        return nn.Sequential(*layers)

    def features(self, x, taps=None):
        """Forward to the penultimate pooled features; `taps` (dict) collects stage outputs."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
            if taps is not None:
                taps[f"layer{i + 1}"] = x
        x = torch.flatten(self.avgpool(x), 1)
        if taps is not None:
            taps["penultimate"] = x
        return x

    def forward(self, x, taps=None):
        return self.fc(self.features(x, taps))


MODELS = {
    "resnet20": dict(arch="resnet20", stem="small", block="basic", widths=[16, 32, 64], blocks=[3, 3, 3],
                     in_channels=1, num_classes=10, input=(8, 1, 28, 28), seed=20, data_seed=1047,
                     lr_backbone=0.02, lr_head=0.2, momentum=0.9, weight_decay=1e-4, nesterov=False),
    "resnet18n": dict(arch="resnet18", stem="imagenet", block="basic", widths=[8, 16, 32, 64],
                      blocks=[2, 2, 2, 2], in_channels=3, num_classes=7, input=(4, 3, 64, 64), seed=18, data_seed=1030,
                      lr_backbone=0.02, lr_head=0.2, momentum=0.9, weight_decay=5e-4, nesterov=True),
    # bn3 (the last BN of each bottleneck's residual branch) gets gamma ~ U(0.1, 0.3): with U(0.5, 1.5) there
    # too, 16 residual branches at full strength make the train-mode gradient explode towards the input
    # (|grad| ~ 1.6e3, torch's own float32-vs-float64 gradient noise 1.6e-4 relative, chaotic after 3 steps).
    "resnet50n": dict(arch="resnet50", stem="imagenet", block="bottleneck", widths=[8, 16, 32, 64],
                      blocks=[3, 4, 6, 3], in_channels=3, num_classes=5, input=(8, 3, 44, 44), seed=50, data_seed=1056,
                      lr_backbone=0.01, lr_head=0.1, momentum=0.8, weight_decay=0.0, nesterov=False,
                      bn3_weight=(0.1, 0.3)),
}


def make_batch(cfg, data_seed=None):
    torch.manual_seed(cfg["data_seed"] if data_seed is None else data_seed)
    x = torch.randn(*cfg["input"])
    y = torch.randint(0, cfg["num_classes"], (cfg["input"][0],), dtype=torch.int64)
    return x, y


def build(cfg):
    block = BasicBlock if cfg["block"] == "basic" else Bottleneck
    return ResNet(block, cfg["widths"], cfg["blocks"], cfg["in_channels"], cfg["num_classes"], cfg["stem"])


def randomise(model, bn3_weight=(0.5, 1.5)):
    """BN: weight~U(.5,1.5) (bottleneck bn3: U(bn3_weight)), bias~N(0,.1), running_mean~N(0,.1),
    running_var~U(.5,1.5), nbt=3; fc~N(0,.1)."""
    with torch.no_grad():
        for n, m in model.named_modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(*(bn3_weight if n.endswith(".bn3") else (0.5, 1.5)))
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.num_batches_tracked.fill_(3)
        model.fc.weight.normal_(0.0, 0.1)
        model.fc.bias.normal_(0.0, 0.1)


def make_model(name):
    cfg = MODELS[name]
    torch.manual_seed(cfg["seed"])
    model = build(cfg)
    randomise(model, cfg.get("bn3_weight", (0.5, 1.5)))
    return cfg, model


def bn_names(model):
    return [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]


def bn_buffer_names(model):
    return [f"{b}.{s}" for b in bn_names(model) for s in ("running_mean", "running_var", "num_batches_tracked")]


def check_against_torchvision():
    try:
        import torchvision
    except ImportError:
        print("torchvision not installed: skipping the key/shape check")
        return "skipped"
    for arch, block, blocks, tv in (("resnet18", BasicBlock, [2, 2, 2, 2], torchvision.models.resnet18),
                                    ("resnet50", Bottleneck, [3, 4, 6, 3], torchvision.models.resnet50)):
        ours = ResNet(block, [64, 128, 256, 512], blocks, 3, 1000, "imagenet").state_dict()
        ref = tv().state_dict()
        assert list(ours.keys()) == list(ref.keys()), arch
        for k in ref:
            assert ours[k].shape == ref[k].shape and ours[k].dtype == ref[k].dtype, (arch, k)
        print(f"torchvision check: {arch}: {len(ref)} state_dict entries, keys/order/shapes/dtypes identical")
    return "passed"


# ----------------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------------
def write(fname, tensors, metadata):
    path = os.path.join(OUT, fname)
    tensors = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
    metadata = {k: str(v) for k, v in metadata.items()}
    save_file(tensors, path, metadata=metadata)
    # canonicalise the header (metadata and tensor entries sorted) so reruns are byte-identical
    with open(path, "rb") as f:
        blob = f.read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    meta = header.pop("__metadata__", {})
    canon = {"__metadata__": dict(sorted(meta.items()))}
    canon.update(sorted(header.items()))
    hb = json.dumps(canon, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb + data)
    # verify round trip
    with safe_open(path, "pt") as f:
        assert f.metadata() == metadata
        assert set(f.keys()) == set(tensors.keys())
        for k in tensors:
            t = f.get_tensor(k)
            assert t.dtype == tensors[k].dtype and t.shape == tensors[k].shape and torch.equal(t, tensors[k]), k
    os.chmod(path, 0o644)
    size = os.path.getsize(path)
    print(f"wrote {fname}: {len(tensors)} tensors, {size / 1e6:.3f} MB")
    return size


def maxdiff(a, b):
    return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0


def fmt(x):
    return f"{x:.3e}"


# ----------------------------------------------------------------------------------------------------
# 1. Parity: forward (eval/train), loss, gradients, BN buffer updates, 3 SGD steps
# ----------------------------------------------------------------------------------------------------
def make_optimizer(model, cfg):
    backbone = [p for n, p in model.named_parameters() if not n.startswith("fc.")]
    head = [model.fc.weight, model.fc.bias]
    return torch.optim.SGD([
        {"params": backbone, "lr": cfg["lr_backbone"], "name": "backbone"},
        {"params": head, "lr": cfg["lr_head"], "name": "head"},
    ], lr=cfg["lr_backbone"], momentum=cfg["momentum"], weight_decay=cfg["weight_decay"],
        nesterov=cfg["nesterov"], dampening=0.0)


class KinkProbe:
    """Records the input of every ReLU and max-pool call during the train-mode forwards of run_parity.

    forwards[i] = list of (kind, tensor) in call order; i = 0, 1, 2 are the forwards of the 3 SGD steps
    (models theta_0, theta_1, theta_2) and i = 3 a forward of theta_3 (the after3 state) on a copy."""

    def __init__(self, model):
        self.forwards = []
        self.on = False
        for m in model.modules():
            if isinstance(m, (nn.ReLU, nn.MaxPool2d)):
                kind = "relu" if isinstance(m, nn.ReLU) else "pool"
                m.register_forward_pre_hook(lambda mod, inp, kind=kind: self._record(kind, inp[0]))

    def _record(self, kind, t):
        if self.on:  # clone: the ReLUs are in-place
            self.forwards[-1].append((kind, t.detach().clone()))

    def start(self):
        self.forwards.append([])
        self.on = True

    def stop(self):
        self.on = False


def pool_gaps(x, k=3, s=2, p=1):
    """Per max-pool window whose maximum is > 0: (largest - second largest candidate).  Windows whose
    maximum is 0 (all candidates ReLU-clipped) do not matter: the gradient there dies in the ReLU below."""
    u = F.pad(x, (p, p, p, p), value=float("-inf")).unfold(2, k, s).unfold(3, k, s)
    top = u.reshape(*u.shape[:4], k * k).topk(2, dim=-1).values
    return (top[..., 0] - top[..., 1])[top[..., 0] > 0]


def kink_margins(f64, f32=None):
    """Distances from the non-smooth points, measured in the float64 run (see README 'ReLU kinks').

    relu: min over every ReLU call (every element) of |x| / std(x) (std of that call's whole input tensor);
    relu_over_noise: min over calls of min|x64| / mean|x32 - x64| (margin in units of torch's own float32
    error at that layer); pool: smallest top-2 gap (absolute) of a max-pool window with a positive max.
    Each also per forward (list)."""
    out = {"relu": [], "relu_over_noise": [], "pool": [], "where": []}
    for i, calls in enumerate(f64):
        relu = [(j, t) for j, (kind, t) in enumerate(calls) if kind == "relu"]
        ms = [float(t.abs().min() / t.std()) for _, t in relu]
        j = int(np.argmin(ms))
        out["relu"].append(ms[j])
        out["where"].append(f"forward {i} relu call {j} {tuple(relu[j][1].shape)}")
        gaps = [pool_gaps(t) for kind, t in calls if kind == "pool"]
        out["pool"].append(min((float(g.min()) for g in gaps if g.numel()), default=float("inf")))
        if f32 is not None:
            out["relu_over_noise"].append(min(
                float(t.abs().min() / (f32[i][j][1].double() - t).abs().mean().clamp_min(1e-30)) for j, t in relu))
    return out


def run_parity(model, cfg, x, y, probe=None):
    """Returns the dict of all parity quantities for this model (in the model's dtype).  With a KinkProbe
    (installed on `model`), also records the ReLU/max-pool inputs of the 3 train forwards and of one more
    train-mode forward of the final state (on a copy, so nothing stored is affected)."""
    out = {}
    out["param"] = {k: v.clone() for k, v in model.state_dict().items()}
    model.eval()
    with torch.no_grad():
        out["logits_eval"] = model(x).clone()
    model.train()
    opt = make_optimizer(model, cfg)
    losses = []
    bufs = bn_buffer_names(model)
    for step in range(3):
        opt.zero_grad(set_to_none=False)
        if probe is not None:
            probe.start()
        logits = model(x)
        if probe is not None:
            probe.stop()
        loss = F.cross_entropy(logits, y)
        if step == 0:
            out["logits_train"] = logits.detach().clone()
            out["loss"] = loss.detach().reshape(1).clone()
            sd = model.state_dict()
            out["after1"] = {k: sd[k].clone() for k in bufs}
        loss.backward()
        if step == 0:
            out["grad"] = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
        opt.step()
        losses.append(loss.detach())
    out["losses_steps"] = torch.stack(losses).reshape(3)
    out["after3"] = {k: v.clone() for k, v in model.state_dict().items()}
    if probe is not None:
        probe.start()
        with torch.no_grad():
            copy.deepcopy(model).train()(x)
        probe.stop()
    return out


def noise_dicts(a, b):
    """max |a-b| over all entries of two name->tensor dicts (only floating entries)."""
    return max((maxdiff(a[k], b[k]) for k in a if a[k].is_floating_point()), default=0.0)


def rel_noise_dicts(a, b):
    """max over tensors of max|a-b| / max|b| (scale-free per tensor)."""
    r = 0.0
    for k in a:
        if a[k].is_floating_point():
            s = float(b[k].double().abs().max())
            if s > 0:
                r = max(r, maxdiff(a[k], b[k]) / s)
    return r


def parity(name, noise_table):
    cfg, x, y, r32, r64, km = evaluate_seed(name, MODELS[name]["data_seed"])
    assert seed_ok(r32, r64, km), f"{name}: data_seed {cfg['data_seed']} no longer meets the seed criterion"
    # consistency checks
    assert torch.equal(r32["losses_steps"][0], r32["loss"][0])
    for k in r32["after1"]:
        if k.endswith("num_batches_tracked"):
            assert int(r32["after1"][k]) == 4 and int(r32["after3"][k]) == 6
    noise = {
        "logits_eval": maxdiff(r32["logits_eval"], r64["logits_eval"]),
        "logits_train": maxdiff(r32["logits_train"], r64["logits_train"]),
        "loss": maxdiff(r32["loss"], r64["loss"]),
        "grad": noise_dicts(r32["grad"], r64["grad"]),
        "grad_rel": rel_noise_dicts(r32["grad"], r64["grad"]),
        "after1": noise_dicts(r32["after1"], r64["after1"]),
        "after3": noise_dicts(r32["after3"], r64["after3"]),
        "after3_rel": rel_noise_dicts(r32["after3"], r64["after3"]),
        "losses_steps": maxdiff(r32["losses_steps"], r64["losses_steps"]),
    }
    noise_table[name] = noise
    scale = {"logits_eval": float(r32["logits_eval"].abs().max()),
             "logits_train": float(r32["logits_train"].abs().max()),
             "loss": float(r32["loss"])}
    print(f"[{name}] |logits_eval|max={scale['logits_eval']:.3f} |logits_train|max={scale['logits_train']:.3f} "
          f"loss={scale['loss']:.4f} losses_steps={[round(float(v), 5) for v in r32['losses_steps']]}")
    print(f"[{name}] float32 noise (max |f32-f64|): " + ", ".join(f"{k}={fmt(v)}" for k, v in noise.items()))

    t = {}
    for k, v in r32["param"].items():
        t[f"param.{k}"] = v
    t["input"] = x
    t["labels"] = y
    t["logits_eval"] = r32["logits_eval"]
    t["logits_train"] = r32["logits_train"]
    t["loss"] = r32["loss"]
    for k, v in r32["grad"].items():
        t[f"grad.{k}"] = v
    for k, v in r32["after1"].items():
        t[f"after1.{k}"] = v
    for k, v in r32["after3"].items():
        t[f"after3.{k}"] = v
    t["losses_steps"] = r32["losses_steps"]
    meta = {
        "arch": cfg["arch"], "name": name, "stem": cfg["stem"], "block": cfg["block"],
        "widths": ",".join(map(str, cfg["widths"])), "blocks": ",".join(map(str, cfg["blocks"])),
        "in_channels": cfg["in_channels"], "num_classes": cfg["num_classes"],
        "input_shape": ",".join(map(str, cfg["input"])),
        "lr_backbone": repr(cfg["lr_backbone"]), "lr_head": repr(cfg["lr_head"]),
        "momentum": repr(cfg["momentum"]), "weight_decay": repr(cfg["weight_decay"]),
        "nesterov": "true" if cfg["nesterov"] else "false", "dampening": "0.0",
        "param_groups": "backbone=every parameter except fc.* (state_dict order); head=fc.weight,fc.bias",
        "weight_decay_applies_to": "every parameter of both groups (incl. BN weight/bias and fc.bias)",
        "steps": "3", "loss": "mean cross-entropy",
        "bn_eps": repr(BN_EPS), "bn_momentum": repr(BN_MOMENTUM),
        "seed": cfg["seed"], "data_seed": cfg["data_seed"], "torch_version": torch.__version__,
    }
    gnorm = math.sqrt(sum(float((g.double() ** 2).sum()) for g in r64["grad"].values()))
    meta["grad_norm"] = fmt(gnorm)
    stable = noise["after3_rel"] < 1e-2
    meta["after3_float32_reproducible"] = "true" if stable else "false"
    if not stable:
        meta["note"] = ("chaotic: |grad| ~ %.0f at init (BN train mode, batch %d, 50 layers), so float32 rounding is "
                        "amplified over the 3 steps; compare after3/losses_steps[1:] only loosely (or not); "
                        "param/logits/loss/grad/after1 are fine at the float32_noise_* levels" % (gnorm, cfg["input"][0]))
    for k, v in noise.items():
        meta[f"float32_noise_{k}"] = fmt(v)
    meta["min_relu_margin"] = fmt(min(km["relu"]))
    meta["min_relu_margin_per_state"] = ",".join(fmt(v) for v in km["relu"])
    meta["min_relu_margin_over_noise"] = f"{min(km['relu_over_noise']):.2f}"
    if cfg["stem"] == "imagenet":
        meta["min_maxpool_gap"] = fmt(min(km["pool"]))
    meta["kink_margins"] = (
        "float64 train-mode forwards of theta_0 (the grad step), theta_1, theta_2 and theta_3 (= after3): "
        "min_relu_margin = min over every ReLU input element of |x|/std(that ReLU call's input); "
        "min_relu_margin_over_noise = min over ReLU calls of min|x64| / mean|x32-x64| (torch's own float32 error "
        "at that call); min_maxpool_gap = smallest gap between the two largest candidates of a max-pool window "
        "whose max is > 0. data_seed = the seed with the largest min_relu_margin_over_noise among those whose "
        "float32_noise_grad_rel and float32_noise_after3_rel are <= 1e-5 and min_maxpool_gap >= 1e-5 "
        "(make_fixtures.py --scan-seeds)")
    if "bn3_weight" in cfg:
        meta["bn3_weight_init"] = "U(%g,%g)" % cfg["bn3_weight"]
    print(f"[{name}] kink margins: relu {meta['min_relu_margin_per_state']} (std units), over noise "
          f"{' '.join(f'{v:.2f}' for v in km['relu_over_noise'])}, pool gap {fmt(min(km['pool']))} ({km['where'][int(np.argmin(km['relu']))]})")
    write(f"parity_{name}.safetensors", t, meta)


# ----------------------------------------------------------------------------------------------------
# 2. Cosine schedule
# ----------------------------------------------------------------------------------------------------
def schedule():
    def torch_lrs(t_max, eta_min, n, base=0.1):
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=base)
        sch = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t_max, eta_min=eta_min)
        lrs = []
        for _ in range(n):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sch.step()
        return torch.tensor(lrs, dtype=torch.float64)

    def closed(t_max, eta_min, n, base=0.1):
        return torch.tensor([eta_min + (base - eta_min) * (1 + math.cos(math.pi * e / t_max)) / 2
                             for e in range(n)], dtype=torch.float64)

    a = torch_lrs(10, 0.001, 15)
    b = torch_lrs(7, 0.0, 7)
    ac, bc = closed(10, 0.001, 15), closed(7, 0.0, 7)
    da, db = maxdiff(a, ac), maxdiff(b, bc)
    print(f"[schedule] cosine_lr={[round(v, 6) for v in a.tolist()]}")
    print(f"[schedule] torch recursive vs closed form: max diff {da:.2e} (T_max=10), {db:.2e} (T_max=7)")
    assert da < 1e-12 and db < 1e-12
    write("schedule.safetensors",
          {"cosine_lr": a, "cosine_lr_steps": b, "cosine_lr_closed": ac, "cosine_lr_steps_closed": bc},
          {"base_lr": "0.1",
           "cosine_lr": "torch CosineAnnealingLR(T_max=10, eta_min=0.001), 15 epochs, lr in force during "
                        "epoch e (read before scheduler.step()); epochs past T_max follow torch (cosine rises)",
           "cosine_lr_steps": "torch CosineAnnealingLR(T_max=7, eta_min=0.0), 7 values",
           "cosine_lr_closed": "eta_min + (base-eta_min)*(1+cos(pi*e/T_max))/2, e=0..14, T_max=10, eta_min=0.001",
           "cosine_lr_steps_closed": "same closed form, T_max=7, eta_min=0, e=0..6",
           "T_max": "10", "eta_min": "0.001", "epochs": "15",
           "T_max_steps": "7", "eta_min_steps": "0.0", "steps": "7",
           "max_diff_torch_vs_closed": fmt(max(da, db))})


# ----------------------------------------------------------------------------------------------------
# 3. DAFT BN conversion
# ----------------------------------------------------------------------------------------------------
def bn_stats(model, data, batch_size):
    """Per-batch mean and unbiased variance of every BN layer's input, network in eval mode."""
    names = bn_names(model)
    mods = dict(model.named_modules())
    acc = {n: ([], []) for n in names}
    hooks = []
    for n in names:
        def hook(mod, inp, n=n):
            xin = inp[0].double()
            acc[n][0].append(xin.mean(dim=(0, 2, 3)))
            acc[n][1].append(xin.var(dim=(0, 2, 3), unbiased=True))
        hooks.append(mods[n].register_forward_pre_hook(hook))
    model.eval()
    with torch.no_grad():
        for i in range(0, data.shape[0], batch_size):
            model(data[i:i + batch_size])
    for h in hooks:
        h.remove()
    return {n: (torch.stack(acc[n][0]).mean(0), torch.stack(acc[n][1]).mean(0)) for n in names}


def convert(model, stats):
    conv = copy.deepcopy(model)
    mods = dict(conv.named_modules())
    with torch.no_grad():
        for n, (mu_t, var_t) in stats.items():
            m = mods[n]
            g, b = m.weight.double().clone(), m.bias.double().clone()
            mu_s, var_s = m.running_mean.double().clone(), m.running_var.double().clone()
            eps = m.eps
            m.weight.copy_(g * torch.sqrt(var_t + eps) / torch.sqrt(var_s + eps))
            m.bias.copy_(b + g * (mu_t - mu_s) / torch.sqrt(var_s + eps))
            m.running_mean.copy_(mu_t)
            m.running_var.copy_(var_t)
    return conv


def bn_conversion(noise_table):
    _, model = make_model("resnet20")
    torch.manual_seed(3001)
    data = torch.randn(32, 1, 28, 28) * 0.8 + 0.3
    B = 8
    stats = bn_stats(model, data, B)
    conv = convert(model, stats)
    model.eval()
    conv.eval()
    with torch.no_grad():
        lp = model(data)
        lc = conv(data)
    d = maxdiff(lp, lc)
    print(f"[bn_conversion] |logits|max={float(lp.abs().max()):.3f}, pretrained vs converted eval logits "
          f"max diff {d:.3e}")
    assert d < 1e-5, d
    for n in bn_names(model):
        assert torch.equal(conv.state_dict()[n + ".num_batches_tracked"], model.state_dict()[n + ".num_batches_tracked"])
    # float64 reference of the same conversion
    m64 = copy.deepcopy(model).double()
    stats64 = bn_stats(m64, data.double(), B)
    conv64 = convert(m64, stats64)
    with torch.no_grad():
        lc64 = conv64.eval()(data.double())
    noise = {
        "target_mean": max(maxdiff(stats[n][0], stats64[n][0]) for n in stats),
        "target_var": max(maxdiff(stats[n][1], stats64[n][1]) for n in stats),
        "converted": noise_dicts(conv.state_dict(), conv64.state_dict()),
        "converted_rel": rel_noise_dicts(conv.state_dict(), conv64.state_dict()),
        "logits_eval_converted": maxdiff(lc, lc64),
        "pretrained_vs_converted": d,
    }
    noise_table["bn_conversion"] = noise
    print("[bn_conversion] float32 noise: " + ", ".join(f"{k}={fmt(v)}" for k, v in noise.items()))
    t = {f"param.{k}": v for k, v in model.state_dict().items()}
    t["data"] = data
    t.update({f"converted.{k}": v for k, v in conv.state_dict().items()})
    for n, (mu, var) in stats.items():
        t[f"target_mean.{n}"] = mu.float()
        t[f"target_var.{n}"] = var.float()
    t["logits_eval_pretrained"] = lp
    t["logits_eval_converted"] = lc
    meta = {"arch": "resnet20", "stem": "small", "block": "basic", "widths": "16,32,64", "blocks": "3,3,3",
            "in_channels": "1", "num_classes": "10", "batch_size": str(B), "num_batches": "4",
            "data": "32x1x28x28 randn*0.8+0.3, batches taken in order [0:8],[8:16],[16:24],[24:32]",
            "stats": "eval mode; per batch per-channel mean and UNBIASED variance of the BN input over N,H,W; "
                     "target = plain mean over the 4 batches (computed in float64 from float32 activations)",
            "formula": "w'=w*sqrt(var_t+eps)/sqrt(var_s+eps); b'=b+w*(mu_t-mu_s)/sqrt(var_s+eps); "
                       "running_mean=mu_t; running_var=var_t; num_batches_tracked unchanged",
            "bn_eps": repr(BN_EPS), "pretrained": "= param.* of parity_resnet20.safetensors"}
    for k, v in noise.items():
        meta[f"float32_noise_{k}"] = fmt(v)
    write("bn_conversion.safetensors", t, meta)


# ----------------------------------------------------------------------------------------------------
# 4. Priors: L2-SP and the feature-space prior
# ----------------------------------------------------------------------------------------------------
ALPHA, BETA, LAMBDA = 0.01, 0.1, 0.5
FEATURE_LAYERS = ["layer2", "penultimate"]


def l2sp(params, params0):
    """params / params0: name -> tensor (requires_grad on params)."""
    pen = 0.0
    head = 0.0
    for n, p in params.items():
        if n.startswith("fc."):
            head = head + (p * p).sum()
        else:
            pen = pen + ((p - params0[n]) ** 2).sum()
    return ALPHA / 2 * pen + BETA / 2 * head


def feature_prior_loss(model, frozen, x, y, b):
    taps, taps0 = {}, {}
    model.train()
    frozen.train()
    logits = model(x, taps)
    with torch.no_grad():
        frozen(x, taps0)
    terms = []
    for layer in FEATURE_LAYERS:
        z, z0 = taps[layer], taps0[layer].detach()
        d2 = (z - z0) ** 2
        m = d2.mean(dim=(0, 2, 3)) if d2.dim() == 4 else d2.mean(dim=0)
        sigma2 = F.softplus(b[layer]) + 1e-5
        terms.append((m / sigma2 + torch.log(sigma2)).mean() / 2)
    prior = LAMBDA * torch.stack(terms).mean()
    ce = F.cross_entropy(logits, y)
    return ce, prior, ce + prior


def priors(noise_table):
    cfg, model0 = make_model("resnet20")
    x, y = make_batch(cfg)  # the batch of parity_resnet20
    theta0 = {k: v.clone() for k, v in model0.state_dict().items()}
    torch.manual_seed(4001)
    model = copy.deepcopy(model0)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if not n.startswith("fc."):
                p.add_(torch.randn_like(p) * 0.01)
    theta = {k: v.clone() for k, v in model.state_dict().items()}
    b_init = math.log(math.expm1(0.1))
    b = {"layer2": torch.full((32,), b_init) + 0.1 * torch.randn(32),
         "penultimate": torch.full((64,), b_init) + 0.1 * torch.randn(64)}

    # --- L2-SP in float64 (params cast from the float32 values) ---
    pnames = [n for n, _ in model.named_parameters()]
    P = {n: theta[n].double().clone().requires_grad_(True) for n in pnames}
    P0 = {n: theta0[n].double() for n in pnames}
    pen = l2sp(P, P0)
    pen.backward()
    l2sp_grad = {n: P[n].grad.detach().clone() for n in pnames}
    for n in pnames:  # analytic check
        expect = (BETA * P[n] if n.startswith("fc.") else ALPHA * (P[n] - P0[n])).detach()
        assert maxdiff(l2sp_grad[n], expect) < 1e-15
    P32 = {n: theta[n].clone().requires_grad_(True) for n in pnames}
    pen32 = l2sp(P32, {n: theta0[n] for n in pnames})
    pen, pen32 = pen.detach(), pen32.detach()
    print(f"[priors] l2sp_penalty={float(pen):.10g} (float32 eval differs by {abs(float(pen32) - float(pen)):.3e})")

    # --- feature prior, float32 and float64 ---
    def run(dtype):
        m = copy.deepcopy(model).to(dtype)
        frozen = copy.deepcopy(model0).to(dtype)
        for p in frozen.parameters():
            p.requires_grad_(False)
        frozen_before = {k: v.clone() for k, v in frozen.state_dict().items()}
        bb = {k: v.to(dtype).clone().requires_grad_(True) for k, v in b.items()}
        probe = KinkProbe(m)
        probe.start()
        ce, prior, total = feature_prior_loss(m, frozen, x.to(dtype), y, bb)
        probe.stop()
        total.backward()
        assert all(p.grad is None for p in frozen.parameters())
        # the frozen copy's parameters are untouched (its running stats moved, but they never feed back:
        # it runs in train mode, so its outputs depend only on batch statistics)
        for n, _ in frozen.named_parameters():
            assert torch.equal(frozen.state_dict()[n], frozen_before[n])
        g = {n: p.grad.detach().clone() for n, p in m.named_parameters()}
        gb = {k: v.grad.detach().clone() for k, v in bb.items()}
        return ce.detach(), prior.detach(), total.detach(), g, gb, probe.forwards

    ce32, pr32, tot32, g32, gb32, k32 = run(torch.float32)
    ce64, pr64, tot64, g64, gb64, k64 = run(torch.float64)
    km = kink_margins(k64, k32)
    noise = {
        "l2sp_penalty": abs(float(pen32) - float(pen)),
        "ce": abs(float(ce32) - float(ce64)),
        "feature_prior": abs(float(pr32) - float(pr64)),
        "total_loss": abs(float(tot32) - float(tot64)),
        "feat_grad": noise_dicts(g32, g64),
        "feat_grad_rel": rel_noise_dicts(g32, g64),
        "feat_grad_b": noise_dicts(gb32, gb64),
    }
    noise_table["priors"] = noise
    print(f"[priors] ce={float(ce32):.6f} feature_prior={float(pr32):.6f} total={float(tot32):.6f}")
    print("[priors] float32 noise: " + ", ".join(f"{k}={fmt(v)}" for k, v in noise.items()))

    t = {}
    t.update({f"theta0.{k}": v for k, v in theta0.items()})
    t.update({f"theta.{k}": v for k, v in theta.items()})
    t["input"] = x
    t["labels"] = y
    t["l2sp_penalty"] = pen.detach().reshape(1)
    t.update({f"l2sp_grad.{n}": v for n, v in l2sp_grad.items()})
    t["prior_b.layer2"] = b["layer2"]
    t["prior_b.penultimate"] = b["penultimate"]
    t["ce_loss"] = ce32.double().reshape(1)
    t["feature_prior"] = pr32.double().reshape(1)
    t["total_loss"] = tot32.double().reshape(1)
    t.update({f"feat_grad.{n}": v for n, v in g32.items()})
    t["feat_grad_b.layer2"] = gb32["layer2"]
    t["feat_grad_b.penultimate"] = gb32["penultimate"]
    meta = {"arch": "resnet20", "stem": "small", "block": "basic", "widths": "16,32,64", "blocks": "3,3,3",
            "in_channels": "1", "num_classes": "10",
            "theta0": "= param.* of parity_resnet20 (fc ~ N(0,0.1), not zero, so the beta term is tested)",
            "theta": "theta0 with every non-fc parameter + N(0,0.01); fc and all BN buffers equal theta0",
            "alpha": repr(ALPHA), "beta": repr(BETA),
            "l2sp": "alpha/2*sum_{params not fc.*}||theta-theta0||^2 + beta/2*(||fc.weight||^2+||fc.bias||^2); "
                    "computed in float64 from the float32 values; l2sp_grad = its gradient alone (F64)",
            "lambda": repr(LAMBDA), "feature_layers": ",".join(FEATURE_LAYERS),
            "feature_prior": "trained=theta, frozen=theta0 (deep copy), both BN TRAIN mode (batch stats), frozen "
                             "forward without grad; sigma2=softplus(b)+1e-5; per layer term=mean_c[m_c/sigma2_c+"
                             "log sigma2_c]/2 with m_c=mean over N(,H,W) of (z-z0)^2; prior=lambda*mean(terms); "
                             "total=CE(trained logits)+prior; computed in float32, stored as F64",
            "prior_b_init": f"log(expm1(0.1))={b_init!r} + N(0,0.1)",
            "feat_grad": "d total / d trained params (F32)"}
    for k, v in noise.items():
        meta[f"float32_noise_{k}"] = fmt(v)
    meta["min_relu_margin"] = fmt(km["relu"][0])
    meta["min_relu_margin_over_noise"] = f"{km['relu_over_noise'][0]:.2f}"
    meta["kink_margins"] = ("trained (theta) forward in float64: min over every ReLU input element of |x|/std(that "
                            "call's input); over_noise: min over calls of min|x64|/mean|x32-x64|")
    print(f"[priors] kink margins of the trained forward: relu {fmt(km['relu'][0])} (std units), "
          f"over noise {km['relu_over_noise'][0]:.2f}")
    write("priors.safetensors", t, meta)


# ----------------------------------------------------------------------------------------------------
# 5. Ridge head (NumPy float64)
# ----------------------------------------------------------------------------------------------------
RIDGE_LAMBDA = 0.3


def ridge_lift(X, W_e):
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    return np.maximum(Xn @ W_e, 0.0)


def ridge_stats(X, y, W_e, k):
    phi = ridge_lift(X, W_e)
    Y = np.zeros((X.shape[0], k))
    Y[np.arange(X.shape[0]), y] = 1.0
    return phi.T @ phi, phi.T @ Y


def ridge_solve(G, C, lam=RIDGE_LAMBDA):
    cf = scipy.linalg.cho_factor(G + lam * np.eye(G.shape[0]), lower=True)
    return scipy.linalg.cho_solve(cf, C)


def ridge():
    rng = np.random.default_rng(6)
    X = rng.standard_normal((200, 16))
    labels = rng.integers(0, 5, 200).astype(np.int64)
    W_e = np.random.default_rng(7).standard_normal((16, 64))
    G, C = ridge_stats(X, labels, W_e, 5)
    W = ridge_solve(G, C)
    resid = np.abs((G + RIDGE_LAMBDA * np.eye(64)) @ W - C).max()
    print(f"[ridge] W shape {W.shape}, residual {resid:.2e}, cond(G+lI)={np.linalg.cond(G + RIDGE_LAMBDA * np.eye(64)):.3e}")

    rng = np.random.default_rng(8)
    shifts = [0.0, 1.0, -1.5]
    ncls = [3, 4, 6]
    Xd, yd = [], []
    for s, k in zip(shifts, ncls):
        Xd.append(rng.standard_normal((80, 16)) + s + 0.5 * rng.standard_normal(16))
        yd.append(rng.integers(0, k, 80).astype(np.int64))
    Gs, Cs = [], []
    for Xk, yk, k in zip(Xd, yd, ncls):
        g, c = ridge_stats(Xk, yk, W_e, k)
        Gs.append(g)
        Cs.append(c)

    def pad(c, k):
        return np.concatenate([c, np.zeros((c.shape[0], k - c.shape[1]))], axis=1)

    G0, C0 = Gs[0], Cs[0]
    W_after_d0 = ridge_solve(G0, C0)
    G1, C1 = G0 + Gs[1], pad(C0, 4) + Cs[1]
    W_after_d1 = ridge_solve(G1, C1)
    G2, C2 = G1 + Gs[2], pad(C1, 6) + Cs[2]
    W_after_d2 = ridge_solve(G2, C2)
    Gj, Cj = ridge_stats(np.concatenate(Xd), np.concatenate(yd), W_e, 6)
    W_joint = ridge_solve(Gj, Cj)
    d = np.abs(W_after_d2 - W_joint).max()
    print(f"[ridge] incremental (3 domains) vs joint max diff {d:.2e}")
    assert d < 1e-10
    T = lambda a: torch.from_numpy(np.ascontiguousarray(a))
    t = {"X": T(X), "labels": T(labels), "W_e": T(W_e), "G": T(G), "C": T(C), "W": T(W),
         "X_d0": T(Xd[0]), "X_d1": T(Xd[1]), "X_d2": T(Xd[2]),
         "y_d0": T(yd[0]), "y_d1": T(yd[1]), "y_d2": T(yd[2]),
         "G_d0": T(Gs[0]), "G_d1": T(Gs[1]), "G_d2": T(Gs[2]),
         "C_d0": T(Cs[0]), "C_d1": T(Cs[1]), "C_d2": T(Cs[2]),
         "W_after_d0": T(W_after_d0), "W_after_d1": T(W_after_d1), "W_joint": T(W_joint)}
    meta = {"lambda": repr(RIDGE_LAMBDA), "num_classes": "5", "D": "64", "d": "16",
            "pipeline": "xn = X / ||X||_2 per row (X stored raw); phi = relu(xn @ W_e); G = phi^T phi; "
                        "C = phi^T onehot(y); W = cho_solve(G + lambda I, C); all float64",
            "W_e": "numpy default_rng(7).standard_normal((16,64))",
            "incremental": "domains d0 (classes 0-2), d1 (0-3), d2 (0-5), 80x16 each; G_dk/C_dk per-domain "
                           "stats (C_dk has the domain's own class count columns); C accumulates with zero-padded "
                           "new columns; W_after_d0 (64x3), W_after_d1 (64x4); W_joint = solve over all 240 "
                           "samples with 6 classes = the solution after d2",
            "num_classes_d0": "3", "num_classes_d1": "4", "num_classes_d2": "6",
            "max_diff_incremental_vs_joint": fmt(d), "solve_residual": fmt(resid)}
    write("ridge.safetensors", t, meta)


def evaluate_seed(name, data_seed):
    """float32 and float64 runs of the parity fixture `name` with the batch of `data_seed`: noise + margins."""
    cfg, model = make_model(name)
    x, y = make_batch(cfg, data_seed)
    m64 = copy.deepcopy(model).double()
    p32, p64 = KinkProbe(model), KinkProbe(m64)
    r32 = run_parity(model, cfg, x, y, p32)
    r64 = run_parity(m64, cfg, x.double(), y, p64)
    km = kink_margins(p64.forwards, p32.forwards)
    return cfg, x, y, r32, r64, km


def seed_ok(r32, r64, km, noise_max=1e-5, pool_min=1e-5):
    """The data-seed criterion (README 'ReLU kinks'): torch's own float32-vs-float64 noise of grad and
    after3 <= noise_max (relative per tensor) and no max-pool window with a near tie (gap >= pool_min)."""
    return (rel_noise_dicts(r32["grad"], r64["grad"]) <= noise_max
            and rel_noise_dicts(r32["after3"], r64["after3"]) <= noise_max and min(km["pool"]) >= pool_min)


def scan_seeds(names=None, n=64, k0=0):
    """How the data seeds were chosen: for data_seed = 1000 + seed + k, k < n, the float32-vs-float64 noise
    of the fixture and the distance of every ReLU input / max-pool tie from its kink (kink_margins) in the
    float64 run, over the 4 models theta_0..theta_3.  Among the seeds meeting seed_ok we took the one with
    the largest min ReLU margin over noise (relu_over_noise).  Chosen (k = 0..255 for resnet20, 0..63 for
    resnet18n and resnet50n): resnet20 1047 (k=27), resnet18n 1030 (k=12), resnet50n 1056 (k=6)."""
    for name in names or MODELS:
        best = None
        for k in range(k0, k0 + n):
            ds = 1000 + MODELS[name]["seed"] + k
            _, _, _, r32, r64, km = evaluate_seed(name, ds)
            ok = seed_ok(r32, r64, km)
            score = min(km["relu_over_noise"])
            print(f"{name} data_seed={ds} grad_rel={fmt(rel_noise_dicts(r32['grad'], r64['grad']))} "
                  f"after3_rel={fmt(rel_noise_dicts(r32['after3'], r64['after3']))} "
                  f"losses_steps={fmt(maxdiff(r32['losses_steps'], r64['losses_steps']))} "
                  f"relu_margin={fmt(min(km['relu']))} ({' '.join(fmt(v) for v in km['relu'])}) "
                  f"relu_over_noise={score:.2f} ({' '.join(f'{v:.2f}' for v in km['relu_over_noise'])}) "
                  f"pool_gap={fmt(min(km['pool']))} ok={ok}", flush=True)
            if ok and (best is None or score > best[1]):
                best = (ds, score)
        print(f"{name}: best data_seed {best}", flush=True)


def main():
    if "--scan-seeds" in sys.argv:
        names = [a for a in sys.argv[1:] if a in MODELS]
        n = [int(a.split("=")[1]) for a in sys.argv[1:] if a.startswith("--n=")]
        k0 = [int(a.split("=")[1]) for a in sys.argv[1:] if a.startswith("--k0=")]
        scan_seeds(names or None, *(n or [64]), *(k0 or []))
        return
    print(f"torch {torch.__version__}, numpy {np.__version__}, scipy {scipy.__version__}, python {sys.version.split()[0]}")
    check_against_torchvision()
    noise = {}
    total = 0
    for name in MODELS:
        parity(name, noise)
    schedule()
    bn_conversion(noise)
    priors(noise)
    ridge()
    for f in sorted(os.listdir(OUT)):
        if f.endswith(".safetensors"):
            total += os.path.getsize(os.path.join(OUT, f))
    print("\nfloat32 noise summary (max |float32 - float64|, same weights and inputs):")
    for group, d in noise.items():
        print(f"  {group}: " + ", ".join(f"{k}={fmt(v)}" for k, v in d.items()))
    print(f"total fixture size: {total / 1e6:.3f} MB")


if __name__ == "__main__":
    main()
