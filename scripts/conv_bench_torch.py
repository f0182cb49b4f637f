#!/usr/bin/env python3
"""Every convolution of timm's tresnet_m (or tresnet_l, tresnet_xl), timed layer by layer with
PyTorch, beside `cargo bench --bench conv`.

`--write-shapes` runs the model once (224x224, batch 8) with a hook on each `nn.Conv2d` and writes
the distinct convolutions, with how many times each runs in one forward pass, to
benches/conv_shapes/MODEL.json, which `cargo bench --bench conv` reads. Otherwise it times
`torch.nn.functional.conv2d` on each of those shapes with the bench's threads (2 by default):
the forward under `no_grad`, and forward plus backward (the gradients of the input and of the
weight from `y.sum()`), and prints them beside the criterion results of the Rust bench when
they exist, with the model's total over all layers (each shape times its count).

    /work/venv/bin/python scripts/conv_bench_torch.py --write-shapes [--model tresnet_l]
    [AIA_BENCH_MODEL=tresnet_l] cargo bench --bench conv
    /work/venv/bin/python scripts/conv_bench_torch.py [--model tresnet_l] [--criterion DIR]
        [--threads 2] [--batch 64]

MODEL is tresnet_m (the default), tresnet_l or tresnet_xl; DIR defaults to
$CARGO_TARGET_DIR/criterion, else target/criterion. `--batch` times the shapes at another batch
than the listed 8, beside the bench run with the same `AIA_BENCH_BATCH`.
"""

import argparse
import json
import os
import pathlib
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from loss_bench_torch import criterion_median, median_seconds  # noqa: E402

SHAPES = pathlib.Path(__file__).resolve().parent.parent / "benches" / "conv_shapes"
MODELS = ("tresnet_m", "tresnet_l", "tresnet_xl")


def list_shapes(model_name, batch, size):
    """The distinct nn.Conv2d calls of the model's forward pass, in order of first use."""
    import timm

    model = timm.create_model(model_name, pretrained=False).eval()
    seen = {}

    def hook(module, inputs, _output):
        n, c, h, w = inputs[0].shape
        key = (n, c, h, w, module.out_channels, *module.kernel_size, *module.stride,
               *module.padding, module.groups, module.bias is not None)
        seen[key] = seen.get(key, 0) + 1

    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.rand(batch, 3, size, size))
    names = ("batch", "in_channels", "height", "width", "out_channels", "kernel_h", "kernel_w",
             "stride_h", "stride_w", "pad_h", "pad_w", "groups", "bias")
    return [dict(zip(names, k), count=v) for k, v in seen.items()]


def name(s):
    """The bench id of a shape, as benches/conv.rs names it."""
    return (f"{s['in_channels']}x{s['height']}x{s['width']}_to_{s['out_channels']}"
            f"_k{s['kernel_h']}s{s['stride_h']}")


def torch_times(s):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(s["batch"], s["in_channels"], s["height"], s["width"], generator=g)
    w = torch.randn(s["out_channels"], s["in_channels"] // s["groups"], s["kernel_h"],
                    s["kernel_w"], generator=g) * 0.05
    b = torch.zeros(s["out_channels"]) if s["bias"] else None
    kw = dict(stride=(s["stride_h"], s["stride_w"]), padding=(s["pad_h"], s["pad_w"]),
              groups=s["groups"])

    def fwd():
        with torch.no_grad():
            torch.nn.functional.conv2d(x, w, b, **kw)

    def fwd_bwd():
        xg, wg = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
        torch.nn.functional.conv2d(xg, wg, b, **kw).sum().backward()

    return median_seconds(fwd, 1.0), median_seconds(fwd_bwd, 1.0)


def criterion_seconds(root, group, s, bench):
    return criterion_median(root / group / bench / name(s))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", "target")) / "criterion"
    ap.add_argument("--criterion", type=pathlib.Path, default=default)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", choices=MODELS, default="tresnet_m")
    ap.add_argument("--batch", type=int, help="the batch of AIA_BENCH_BATCH (default: 8)")
    ap.add_argument("--write-shapes", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    shapes_file = SHAPES / f"{args.model}.json"
    if args.write_shapes:
        shapes = list_shapes(args.model, batch=8, size=224)
        shapes_file.write_text(json.dumps(shapes, indent=1) + "\n")
        print(f"{len(shapes)} convolutions written to {shapes_file}")
        return

    shapes = json.loads(shapes_file.read_text())
    group = f"conv_{args.model}"
    if args.batch:
        group += f"_b{args.batch}"
        shapes = [dict(s, batch=args.batch) for s in shapes]
    print(f"{args.model}: torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"batch {shapes[0]['batch']}; criterion results from {args.criterion / group}")
    print(f"{'convolution':>28} {'count':>5} {'torch fwd':>10} {'aia fwd':>10} {'aia/torch':>9} "
          f"{'torch f+b':>10} {'aia f+b':>10} {'aia/torch':>9}")
    def ratio(a, t):
        return f"{a / t:.2f}x" if a else "-"

    def ms(v):
        return f"{v * 1e3:.3f}" if v else "-"

    totals = [0.0, 0.0, 0.0, 0.0]
    for s in shapes:
        t_fwd, t_fb = torch_times(s)
        a_fwd = criterion_seconds(args.criterion, group, s, "forward")
        a_fb = criterion_seconds(args.criterion, group, s, "forward_backward")
        print(f"{name(s):>28} {s['count']:>5} {ms(t_fwd):>10} {ms(a_fwd):>10} "
              f"{ratio(a_fwd, t_fwd):>9} {ms(t_fb):>10} {ms(a_fb):>10} {ratio(a_fb, t_fb):>9}")
        for i, v in enumerate((t_fwd, a_fwd or 0.0, t_fb, a_fb or 0.0)):
            totals[i] += v * s["count"]
    print(f"{'whole model (ms)':>28} {'':>5} {ms(totals[0]):>10} {ms(totals[1]):>10} "
          f"{ratio(totals[1], totals[0]):>9} {ms(totals[2]):>10} {ms(totals[3]):>10} "
          f"{ratio(totals[3], totals[2]):>9}")


if __name__ == "__main__":
    main()
