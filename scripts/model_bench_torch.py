#!/usr/bin/env python3
"""Times timm's tresnet_m (or --model tresnet_l, tresnet_xl) with PyTorch on the CPU, as
benches/model.rs times ours, and prints the two side by side.

- inference: eval mode, torch.inference_mode, batch 8 at 224x224 by default;
- training step: train mode, forward, BCE-with-logits on random multi-hot targets (1000 labels),
  backward, Adam step; batch 8 at 224x224 by default.

Usage: /work/venv/bin/python scripts/model_bench_torch.py [--threads 2] [--iters 10]
    [--batch 8] [--size 224] [--only inference|train] [--model tresnet_m] [--criterion DIR]
    [--table]

Prints seconds per iteration (median) and images per second for each, and beside them the
median of `cargo bench --bench model` for the same work where its criterion results are in DIR
(default: $CARGO_TARGET_DIR/criterion, else target/criterion). `--table` times every
configuration of which DIR holds a result for the model (after a whole `cargo bench --bench
model`: inference at 224x224 batch 8, 448x448 batch 2 and 1, a training step at 224x224 batch 8
and 448x448 batch 2) and prints one Markdown table of both, with how long ago criterion wrote
each result (an old one is from another run) and the host's steal time during PyTorch's runs.
"""
import argparse
import os
import pathlib
import re
import statistics
import sys
import time

import timm
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from loss_bench_torch import criterion_estimates, criterion_median  # noqa: E402

LABELS = 1000
# The bench ids of benches/model.rs: `inference_{size}_b{batch}`, `train_step_{size}_b{batch}`.
BENCH_ID = re.compile(r"(inference|train_step)_(\d+)_b(\d+)")


def timed(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def inference_seconds(model, batch, size, iters):
    """Median seconds of one eval-mode forward pass."""
    x = torch.rand(batch, 3, size, size)
    model.eval()

    def infer():
        with torch.inference_mode():
            model(x)

    return timed(infer, warmup=2, iters=iters)


def train_step_seconds(model, batch, size, iters):
    """Median seconds of one training step: forward, loss, backward, Adam."""
    x = torch.rand(batch, 3, size, size)
    model.train()
    optim = torch.optim.Adam(model.parameters(), lr=1e-4)
    targets = (torch.rand(batch, LABELS) < 0.01).float()
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def step():
        optim.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), targets)
        loss.backward()
        optim.step()

    return timed(step, warmup=2, iters=iters)


def criterion_result(root, model, bench, size, batch):
    """(median seconds, seconds since criterion wrote it) of the Rust bench, or None."""
    bench_dir = root / model / f"{bench}_{size}_b{batch}"
    median = criterion_median(bench_dir)
    if median is None:
        return None
    return median, time.time() - criterion_estimates(bench_dir).stat().st_mtime


def configurations(root, model):
    """Every (bench, size, batch) of which criterion holds a result for the model, inference
    first, smaller maps first, then larger batches (the order of benches/model.rs)."""
    found = []
    group = root / model
    for entry in group.iterdir() if group.is_dir() else []:
        match = BENCH_ID.fullmatch(entry.name)
        if match:
            found.append((match[1], int(match[2]), int(match[3])))
    return sorted(found, key=lambda c: (c[0] != "inference", c[1], -c[2]))


def steal_seconds():
    """The host's steal time so far (the `cpu` line of /proc/stat), or None off Linux."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def duration(seconds):
    return f"{seconds * 1e3:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def age(seconds):
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.0f} h"


def describe(bench, size, batch):
    kind = "inference" if bench == "inference" else "training step"
    return f"{kind}, {size}x{size}, batch {batch}"


def table(model, args):
    root = args.criterion
    configs = configurations(root, args.model)
    if not configs:
        raise SystemExit(f"no results of `cargo bench --bench model` for {args.model} in "
                         f"{root / args.model}: run the bench first, or name --criterion")
    timers = {"inference": inference_seconds, "train_step": train_step_seconds}
    steal = steal_seconds()
    rows = []
    for bench, size, batch in configs:
        torch_s = timers[bench](model, batch, size, args.iters)
        aia_s, written = criterion_result(root, args.model, bench, size, batch)
        rows.append((describe(bench, size, batch), aia_s, torch_s, written))
        print(f"{rows[-1][0]}: PyTorch {duration(torch_s)}", flush=True)
    print(f"\n| {args.model} | aia | PyTorch + timm | PyTorch / aia | aia's result written |")
    print("|---|---|---|---|---|")
    for what, aia_s, torch_s, written in rows:
        print(f"| {what} | {duration(aia_s)} | {duration(torch_s)} | {torch_s / aia_s:.2f}x "
              f"| {age(written)} ago |")
    if steal is not None:
        print(f"\nsteal time during PyTorch's runs: {steal_seconds() - steal:.1f} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", "target")) / "criterion"
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--only", choices=["inference", "train"], default=None)
    parser.add_argument("--model", choices=["tresnet_m", "tresnet_l", "tresnet_xl"],
                        default="tresnet_m")
    parser.add_argument("--criterion", type=pathlib.Path, default=default)
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = timm.create_model(args.model, pretrained=False)
    print(f"torch {torch.__version__}, timm {timm.__version__}, threads {torch.get_num_threads()}")
    if args.table:
        table(model, args)
        return

    benches = {"inference": ("inference", inference_seconds),
               "train": ("train_step", train_step_seconds)}
    for only, (bench, timer) in benches.items():
        if args.only not in (None, only):
            continue
        t = timer(model, args.batch, args.size, args.iters)
        line = (f"{describe(bench, args.size, args.batch)}: {t:.3f} s/iter, "
                f"{args.batch / t:.2f} img/s")
        aia = criterion_result(args.criterion, args.model, bench, args.size, args.batch)
        if aia:
            aia_s, written = aia
            line += (f"; aia {aia_s:.3f} s/iter ({age(written)} ago), "
                     f"PyTorch / aia {t / aia_s:.2f}x")
        print(line, flush=True)


if __name__ == "__main__":
    main()
