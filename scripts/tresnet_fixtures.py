#!/usr/bin/env python3
"""Parity fixtures for the Rust TResNet (tests/model_parity.rs, tests/model_weights.rs).

Builds small TResNets with timm's own class, randomises every weight *and* BatchNorm statistic
(so that no block is the identity and eval-mode BN matters), and writes to tests/fixtures/model/:

- tiny_a.safetensors           layers [1,1,1,1], width 0.125, 7 classes
- tiny_b.safetensors, .pth     layers [1,2,2,1], width 0.0625, 5 classes (bare state_dict)
- io.safetensors               inputs and timm's eval-mode logits / pooled features:
    a_x64 [2,3,64,64] (+ train-mode logits, running stats, gradients: TRAIN_KEYS), a_x44x60 [1,3,44,60] (odd stage sizes: 11x15 -> 6x8 -> 3x4 -> 2x2),
    b_x96x64 [1,3,96,64], b_x64 [1,3,64,64]; for each `<name>_logits` and `<name>_features`.
- tresnet_m_keys.json          timm's tresnet_m state-dict keys, shapes, and parameter count.

Usage: /work/venv/bin/python scripts/tresnet_fixtures.py   (torch, timm, safetensors)
"""
import copy
import json
import os

import timm
import torch
from safetensors.torch import save_file
from timm.models.tresnet import TResNet

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "model")


TRAIN_KEYS = [
    "body.conv1.bn.running_mean",
    "body.conv1.bn.running_var",
    "body.layer3.0.conv2.bn.running_var",
    "body.conv1.conv.weight",
    "body.layer2.0.conv1.bn.weight",
    "body.layer3.0.se.fc1.weight",
    "body.layer4.0.conv3.bn.bias",
    "body.layer2.0.conv2.conv.weight",
    "body.layer3.0.conv1.conv.weight",
    "body.layer4.0.conv3.conv.weight",
    "body.layer3.0.downsample.1.conv.weight",
    "head.fc.weight",
]


def randomise(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Random BN affine + statistics (incl. timm's zero-init last BNs) and an O(1) classifier."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = torch.rand(c, generator=gen) * 0.8 + 0.6
            m.bias.data = torch.randn(c, generator=gen) * 0.2
            m.running_mean.data = torch.randn(c, generator=gen) * 0.2
            m.running_var.data = torch.rand(c, generator=gen) * 1.5 + 0.5
        elif isinstance(m, torch.nn.Conv2d) and m.bias is not None:
            m.bias.data = torch.randn(m.bias.shape, generator=gen) * 0.2
        elif isinstance(m, torch.nn.Linear):
            m.weight.data = torch.randn(m.weight.shape, generator=gen) / m.in_features ** 0.5
            m.bias.data = torch.randn(m.bias.shape, generator=gen) * 0.1


def build(layers, width, classes, seed):
    torch.manual_seed(seed)
    model = TResNet(layers=layers, width_factor=width, num_classes=classes)
    randomise(model, torch.Generator().manual_seed(seed + 1))
    return model.eval()


def run(model, x):
    with torch.no_grad():
        features = model.forward_head(model.forward_features(x), pre_logits=True)
        logits = model(x)
    return logits.contiguous(), features.contiguous()


def count(name):
    return sum(p.numel() for p in timm.create_model(name, pretrained=False).parameters())


def main():
    os.makedirs(OUT, exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    io = {}

    a = build([1, 1, 1, 1], 0.125, 7, seed=10)
    save_file(a.state_dict(), os.path.join(OUT, "tiny_a.safetensors"))
    for name, shape in [("a_x64", (2, 3, 64, 64)), ("a_x44x60", (1, 3, 44, 60))]:
        x = torch.rand(shape, generator=gen)
        io[name], (io[name + "_logits"], io[name + "_features"]) = x, run(a, x)
    # Training mode: BatchNorm normalises with the batch's own statistics and updates its
    # running ones; gradients of sum(logits * w) for a few parameters.
    t = copy.deepcopy(a).train()
    logits = t(io["a_x64"])
    io["a_x64_train_logits"] = logits.detach().contiguous()
    w = torch.randn(logits.shape, generator=gen)
    (logits * w).sum().backward()
    io["a_train_w"] = w
    for key in TRAIN_KEYS:
        name = key.replace(".", "_")
        value = t.state_dict()[key] if "running" in key else t.get_parameter(key).grad
        io["a_train_" + name] = value.detach().contiguous()

    b = build([1, 2, 2, 1], 0.0625, 5, seed=20)
    save_file(b.state_dict(), os.path.join(OUT, "tiny_b.safetensors"))
    torch.save(b.state_dict(), os.path.join(OUT, "tiny_b.pth"))
    for name, shape in [("b_x96x64", (1, 3, 96, 64)), ("b_x64", (1, 3, 64, 64))]:
        x = torch.rand(shape, generator=gen)
        io[name], (io[name + "_logits"], io[name + "_features"]) = x, run(b, x)

    save_file({k: v.contiguous() for k, v in io.items()}, os.path.join(OUT, "io.safetensors"))
    for k, v in io.items():
        if k.endswith("logits") or k.endswith("features"):  # magnitudes: 1e-4 must be tight
            print(f"{k}: {tuple(v.shape)} mean|x| {v.abs().mean():.3f} max|x| {v.abs().max():.3f}")

    m = timm.create_model("tresnet_m", pretrained=False)
    params = dict(m.named_parameters())
    keys = [
        {"key": k, "shape": list(v.shape), "param": k in params}
        for k, v in m.state_dict().items()
        if not k.endswith("num_batches_tracked")
    ]
    with open(os.path.join(OUT, "tresnet_m_keys.json"), "w") as f:
        json.dump(
            {
                "timm_version": timm.__version__,
                "num_params": sum(p.numel() for p in m.parameters()),
                "num_params_l": count("tresnet_l"),
                "num_params_xl": count("tresnet_xl"),
                "tensors": keys,
            },
            f,
            indent=0,
        )
    print("tresnet_m params", sum(p.numel() for p in m.parameters()))


if __name__ == "__main__":
    main()
