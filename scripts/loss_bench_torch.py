#!/usr/bin/env python3
"""Time the PyTorch reference of the asymmetric loss on the shapes of `cargo bench --bench loss`,
and print it beside the criterion results of that bench when they exist.

The reference is the literal formula of scripts/loss_fixtures.py (the paper's preset), in float32
on the CPU with as many threads as the machine has cores, forward and forward+backward.

Run `cargo bench --bench loss` first, then:
    /work/venv/bin/python scripts/loss_bench_torch.py [--criterion DIR]
DIR defaults to $CARGO_TARGET_DIR/criterion, else target/criterion.
"""

import argparse
import json
import os
import pathlib
import statistics
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from loss_fixtures import asymmetric_loss  # noqa: E402

SHAPES = [(32, 260), (256, 1000), (1024, 9605)]
PROPOSED = dict(gamma_neg=4.0, gamma_pos=3.0, pos_margin=1.1, neg_margin=0.05, threshold=0.25,
                reduction="mean")


def median_seconds(fn, budget_s):
    """Median wall time of fn over repeated runs (at least 5, about budget_s in total)."""
    fn()  # warm-up
    times = []
    start = time.perf_counter()
    while len(times) < 5 or (time.perf_counter() - start < budget_s and len(times) < 200):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def torch_times(rows, cols):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(rows, cols, generator=g) * 3.0
    y = (torch.rand(rows, cols, generator=g) < 0.05).float()

    def fwd():
        with torch.no_grad():
            asymmetric_loss(x, y, **PROPOSED)

    def fwd_bwd():
        xg = x.clone().requires_grad_(True)
        asymmetric_loss(xg, y, **PROPOSED).backward()

    budget = 3.0 if rows * cols > 1_000_000 else 1.0
    return median_seconds(fwd, budget), median_seconds(fwd_bwd, budget)


def criterion_estimates(bench_dir):
    """The file of criterion's latest estimates of the bench whose results are in bench_dir."""
    return bench_dir / "new" / "estimates.json"


def criterion_median(bench_dir):
    """Criterion's median estimate of the bench whose results are in bench_dir, in seconds, or
    None where it has not run."""
    path = criterion_estimates(bench_dir)
    if not path.exists():
        return None
    return json.loads(path.read_text())["median"]["point_estimate"] * 1e-9


def criterion_seconds(root, rows, cols, name):
    """Criterion's median estimate of one bench, in seconds, or None."""
    return criterion_median(root / f"loss_{rows}x{cols}" / name / f"{rows}x{cols}")


def fmt(s):
    if s is None:
        return "-"
    if s >= 1:
        return f"{s:.3f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3f} ms"
    return f"{s * 1e6:.1f} us"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", "target")) / "criterion"
    ap.add_argument("--criterion", type=pathlib.Path, default=default)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"criterion results from {args.criterion}")

    header = (f"{'shape':>11} {'pass':>8} {'torch':>11} {'composed':>11} {'fused':>11} "
              f"{'copy':>11} {'torch/fused':>12} {'torch/comp':>11} {'fused/copy':>11}")
    print(header)
    for rows, cols in SHAPES:
        t_fwd, t_fb = torch_times(rows, cols)
        copy = criterion_seconds(args.criterion, rows, cols, "copy_baseline")
        for label, t in (("fwd", t_fwd), ("fwd+bwd", t_fb)):
            suffix = "fwd" if label == "fwd" else "fwd_bwd"
            fused = criterion_seconds(args.criterion, rows, cols, f"fused_{suffix}")
            comp = criterion_seconds(args.criterion, rows, cols, f"composed_{suffix}")

            def ratio(a, b):
                return f"{a / b:.1f}x" if a and b else "-"

            print(f"{rows:>5}x{cols:<5} {label:>8} {fmt(t):>11} {fmt(comp):>11} {fmt(fused):>11} "
                  f"{fmt(copy):>11} {ratio(t, fused):>12} {ratio(t, comp):>11} "
                  f"{ratio(fused, copy):>11}")


if __name__ == "__main__":
    main()
