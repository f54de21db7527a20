"""Writes torchvision ResNet state_dicts the way PyTorch users save them, for daft's interop tests.

    python make_torchvision_files.py OUT_DIR [NAME ...]   # only the named models (no shapes.json)

Every model comes from torchvision's own model code (`pip install --no-deps torchvision`; no weights are
downloaded), with random weights and non-trivial BatchNorm running statistics, saved with
`safetensors.torch.save_file(model.state_dict(), path)` and NO metadata. Beside each, `<name>.io.safetensors`
holds a random input `x` and the eval-mode logits `y` PyTorch computes. `shapes.json` lists, for every
torchvision ResNet constructor (built on the meta device: no memory), each state_dict entry's name and shape
in state_dict order.
"""
import json
import os
import sys

import torch
import torch.nn as nn
import torchvision
from safetensors.torch import save_file
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.num_batches_tracked.fill_(int(torch.randint(1, 1000, (1,), generator=g)))
    return model.eval()


def one_channel_resnet18_100():
    m = torchvision.models.resnet18(num_classes=100)
    m.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return m


MODELS = {
    "resnet18": (lambda: torchvision.models.resnet18(), 3),
    "resnet34": (lambda: torchvision.models.resnet34(), 3),
    "resnet50": (lambda: torchvision.models.resnet50(), 3),
    "resnet18_1ch_100": (one_channel_resnet18_100, 1),
    # a wide Bottleneck net with one block per stage (wide_resnet50_2's widths, few blocks)
    "wide_bottleneck_1111": (lambda: ResNet(Bottleneck, [1, 1, 1, 1], width_per_group=128, num_classes=10), 3),
    # narrowed BasicBlock widths are not constructible with torchvision's ResNet; ResNeXt is (and is refused)
    "resnext_tiny": (lambda: ResNet(Bottleneck, [1, 1, 1, 1], groups=4, width_per_group=16, num_classes=10), 3),
}


def main(out, only):
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    for i, (name, (build, channels)) in enumerate(MODELS.items()):
        if only and name not in only:
            continue
        model = randomize(build(), 100 + i)
        save_file(model.state_dict(), os.path.join(out, name + ".safetensors"))
        x = torch.randn(2, channels, 64, 64, generator=torch.Generator().manual_seed(i))
        with torch.no_grad():
            y = model(x)
        save_file({"x": x.contiguous(), "y": y.contiguous()}, os.path.join(out, name + ".io.safetensors"))
    if only:
        return
    # a state_dict that is not a ResNet
    save_file(torchvision.models.mobilenet_v2(num_classes=10).state_dict(), os.path.join(out, "mobilenet_v2.safetensors"))
    shapes = {}
    for arch in ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "wide_resnet50_2", "wide_resnet101_2"]:
        with torch.device("meta"):
            sd = getattr(torchvision.models, arch)().state_dict()
        shapes[arch] = [[k, list(v.shape)] for k, v in sd.items()]
    with open(os.path.join(out, "shapes.json"), "w") as f:
        json.dump(shapes, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
