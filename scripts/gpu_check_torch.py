#!/usr/bin/env python3
"""Times timm's tresnet_m with PyTorch on a CUDA GPU, beside `examples/gpu_check.rs`.

Random weights (pretrained=False: the GPU machine has no network), random images, batch 32 at
224x224 and 448x448 by default, two precisions:

- f32: plain NCHW float32, as aia runs (PyTorch's defaults otherwise: cuDNN may use TF32 for
  convolutions, matmuls stay f32; both flags are recorded in the JSON);
- amp: autocast (float16 by default, --amp-dtype bfloat16) and channels_last, as timm's
  benchmark.py runs with --amp --channels-last.

Two modes each:

- inference: eval mode under torch.inference_mode;
- train: train mode, forward, BCE-with-logits on random multi-hot targets over 1000 labels,
  backward, optimizer step (Adam by default, as aia's step; timm's published figures use SGD).
  No gradient scaler under float16, as timm's benchmark: the figures are timings, and a step
  that overflows costs the same.

Each figure is images per second over --iters back-to-back batches after --warmup synchronised
ones, the device synchronised before the clock stops.

Usage: python3 scripts/gpu_check_torch.py [--quick] [--json gpu/results/torch.json]
Exit status 2 without a CUDA device, 1 if any configuration failed, else 0.
"""
import argparse
import json
import os
import sys
import time
import traceback


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=None, help="write the figures to this JSON file")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--sizes", default="224,448", help="comma-separated image sides")
    parser.add_argument("--iters", type=int, default=None, help="timed batches (10; 3 quick)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed batches (3; 2 quick)")
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    parser.add_argument("--amp-dtype", choices=["float16", "bfloat16"], default="float16")
    parser.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    parser.add_argument("--precisions", default="f32,amp", help="comma-separated: f32, amp")
    return parser.parse_args()


def write_json(path, report):
    if not path:
        return
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=2)


def flag(read):
    """A backend flag, or None where this PyTorch no longer has it."""
    try:
        return bool(read())
    except Exception:  # noqa: BLE001 - a renamed flag must not stop the benchmark
        return None


def images_per_s(torch, batch, warmup, iters, step):
    for _ in range(warmup):
        step()
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    torch.cuda.synchronize()
    secs = time.perf_counter() - start
    return batch * iters / secs, secs / iters * 1e3


def run_one(torch, timm, args, precision, mode, size, warmup, iters):
    device = torch.device("cuda")
    amp = precision == "amp"
    memory_format = torch.channels_last if amp else torch.contiguous_format
    dtype = getattr(torch, args.amp_dtype)

    def autocast():
        return torch.autocast("cuda", dtype=dtype, enabled=amp)

    model = timm.create_model("tresnet_m", pretrained=False, num_classes=1000)
    model = model.to(device=device, memory_format=memory_format)
    x = torch.rand(args.batch, 3, size, size, device=device).contiguous(
        memory_format=memory_format)

    if mode == "inference":
        model.eval()

        def step():
            with torch.inference_mode(), autocast():
                return model(x)
    else:
        model.train()
        if args.optimizer == "adam":
            optim = torch.optim.Adam(model.parameters(), lr=1e-4)
        else:
            optim = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
        targets = (torch.rand(args.batch, 1000, device=device) < 0.01).float()
        loss_fn = torch.nn.BCEWithLogitsLoss()

        def step():
            optim.zero_grad(set_to_none=True)
            with autocast():
                logits = model(x)
            loss = loss_fn(logits.float(), targets)
            loss.backward()
            optim.step()

    try:
        return images_per_s(torch, args.batch, warmup, iters, step)
    finally:
        del model, x
        torch.cuda.empty_cache()


def main():
    args = parse_args()
    report = {"tool": "torch", "throughput": [], "errors": []}
    try:
        import timm
        import torch
    except Exception as e:  # noqa: BLE001 - any import failure ends the run the same way
        print(f"gpu_check_torch: cannot import torch and timm: {e}", file=sys.stderr)
        report["errors"].append(f"import: {e}")
        write_json(args.json, report)
        return 2
    if not torch.cuda.is_available():
        print("gpu_check_torch: PyTorch sees no CUDA device", file=sys.stderr)
        report["errors"].append("no CUDA device")
        write_json(args.json, report)
        return 2

    torch.manual_seed(0)
    # As timm's benchmark: let cuDNN pick its fastest algorithms for these fixed shapes.
    torch.backends.cudnn.benchmark = True
    warmup = args.warmup if args.warmup is not None else (2 if args.quick else 3)
    iters = args.iters if args.iters is not None else (3 if args.quick else 10)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    report.update({
        "torch": torch.__version__,
        "timm": timm.__version__,
        "device": torch.cuda.get_device_name(0),
        "amp_dtype": args.amp_dtype,
        "optimizer": args.optimizer,
        "cudnn_allow_tf32": flag(lambda: torch.backends.cudnn.allow_tf32),
        "matmul_allow_tf32": flag(lambda: torch.backends.cuda.matmul.allow_tf32),
        "quick": args.quick,
    })
    print(f"torch {torch.__version__}, timm {timm.__version__} on {report['device']}; "
          f"amp = autocast {args.amp_dtype} + channels_last; optimizer {args.optimizer}")

    started = time.perf_counter()
    for precision in precisions:
        for size in sizes:
            for mode in ("inference", "train"):
                what = f"{precision:<4} {mode:<9} {size}x{size} batch {args.batch}"
                try:
                    img_per_s, ms = run_one(torch, timm, args, precision, mode, size, warmup,
                                            iters)
                except Exception as e:  # noqa: BLE001 - record it, go on with the others
                    traceback.print_exc()
                    print(f"  {what}: failed: {e}", flush=True)
                    report["errors"].append(f"{what}: {e}")
                    torch.cuda.empty_cache()
                    continue
                print(f"  {what}: {img_per_s:>8.1f} img/s ({ms:.1f} ms/batch)", flush=True)
                report["throughput"].append({
                    "precision": precision, "mode": mode, "size": size, "batch": args.batch,
                    "iters": iters, "ms_per_batch": ms, "img_per_s": img_per_s,
                })
                report["elapsed_s"] = time.perf_counter() - started
                write_json(args.json, report)
    report["elapsed_s"] = time.perf_counter() - started
    write_json(args.json, report)
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
