#!/usr/bin/env python3
"""Times timm's tresnet_m (or --model tresnet_l, tresnet_xl) with PyTorch on the CPU, as
benches/model.rs times ours.

- inference: eval mode, torch.inference_mode, batch 8 at 224x224 by default;
- training step: train mode, forward, BCE-with-logits on random multi-hot targets (1000 labels),
  backward, Adam step; batch 8 at 224x224 by default.

Usage: /work/venv/bin/python scripts/model_bench_torch.py [--threads 2] [--iters 10]
    [--batch 8] [--size 224] [--only inference|train] [--model tresnet_m]
Prints seconds per iteration (median) and images per second for each.
"""
import argparse
import statistics
import time

import timm
import torch


def timed(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--only", choices=["inference", "train"], default=None)
    parser.add_argument("--model", choices=["tresnet_m", "tresnet_l", "tresnet_xl"],
                        default="tresnet_m")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    model = timm.create_model(args.model, pretrained=False)
    x = torch.rand(args.batch, 3, args.size, args.size)

    model.eval()

    def infer():
        with torch.inference_mode():
            model(x)

    if args.only != "train":
        t = timed(infer, warmup=2, iters=args.iters)
        print(f"inference  batch {args.batch} {args.size}x{args.size}: {t:.3f} s/iter, "
              f"{args.batch / t:.2f} img/s", flush=True)
    if args.only == "inference":
        return

    model.train()
    optim = torch.optim.Adam(model.parameters(), lr=1e-4)
    targets = (torch.rand(args.batch, 1000) < 0.01).float()
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def step():
        optim.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), targets)
        loss.backward()
        optim.step()

    t = timed(step, warmup=2, iters=args.iters)
    print(f"train step batch {args.batch} {args.size}x{args.size}: {t:.3f} s/iter, "
          f"{args.batch / t:.2f} img/s")
    print(f"torch {torch.__version__}, timm {timm.__version__}, threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
