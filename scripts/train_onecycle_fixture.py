"""Reference values for `aia::train`'s one-cycle schedule and Adam with a cycled beta1.

Runs PyTorch's `OneCycleLR` (cosine, two phases, cycle_momentum=True) on `torch.optim.Adam`, stepped
once per batch as in the paper's recipe, and records for every step the learning rate and beta1 the
optimizer used, plus the parameters of a tiny vector after each Adam step under a fixed gradient
sequence. Writes tests/fixtures/train/onecycle_adam.json.

Usage: /work/venv/bin/python scripts/train_onecycle_fixture.py
"""

import json
import math
import pathlib

import torch

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "train" / "onecycle_adam.json"


def gradient(step: int, size: int) -> list[float]:
    """A deterministic gradient whose sign and scale change over time, so beta1 matters."""
    return [math.sin(1.3 * step + 0.7 * i) * (i + 1) + 0.25 * math.cos(0.4 * step * (i + 1)) for i in range(size)]


def run(case: dict) -> dict:
    torch.manual_seed(0)
    size = len(case["initial"])
    param = torch.nn.Parameter(torch.tensor(case["initial"], dtype=torch.float32))
    optimizer = torch.optim.Adam(
        [param], lr=case["max_lr"], betas=(0.9, case["beta_2"]), eps=case["epsilon"],
        weight_decay=case["weight_decay"],
    )
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=case["max_lr"],
        total_steps=case["total_steps"],
        pct_start=case["pct_start"],
        anneal_strategy="cos",
        div_factor=case["div_factor"],
        final_div_factor=case["final_div_factor"],
        three_phase=False,
        cycle_momentum=True,
        base_momentum=case["base_momentum"],
        max_momentum=case["max_momentum"],
    )
    lrs, beta1s, grads, params = [], [], [], []
    for step in range(case["total_steps"]):
        group = optimizer.param_groups[0]
        lrs.append(float(group["lr"]))
        beta1s.append(float(group["betas"][0]))
        g = gradient(step, size)
        grads.append(g)
        optimizer.zero_grad()
        # The gradient of sum(param * g) with respect to param is exactly g.
        (param * torch.tensor(g, dtype=torch.float32)).sum().backward()
        optimizer.step()
        scheduler.step()
        params.append(param.detach().tolist())
    return {**case, "lr": lrs, "beta_1": beta1s, "gradients": grads, "parameters": params}


CASES = [
    # The paper's recipe: max_lr 1e-4, pct_start 0.2 (end of warm-up at an integer step).
    {"name": "paper", "max_lr": 1e-4, "total_steps": 50, "pct_start": 0.2, "div_factor": 25.0,
     "final_div_factor": 1e4, "base_momentum": 0.85, "max_momentum": 0.95, "beta_2": 0.999,
     "epsilon": 1e-8, "weight_decay": 0.0, "initial": [0.5, -1.0, 2.0, 0.0, -0.25]},
    # A large rate so the parameters move far, a warm-up ending between two steps, weight decay.
    {"name": "fractional", "max_lr": 0.05, "total_steps": 37, "pct_start": 0.3, "div_factor": 10.0,
     "final_div_factor": 100.0, "base_momentum": 0.8, "max_momentum": 0.97, "beta_2": 0.99,
     "epsilon": 1e-8, "weight_decay": 0.01, "initial": [1.5, -0.75, 0.1, 3.0]},
    # A run so short that pct_start * total_steps - 1 < 0: PyTorch skips the warm-up.
    {"name": "short", "max_lr": 0.01, "total_steps": 4, "pct_start": 0.2, "div_factor": 25.0,
     "final_div_factor": 1e4, "base_momentum": 0.85, "max_momentum": 0.95, "beta_2": 0.999,
     "epsilon": 1e-8, "weight_decay": 0.0, "initial": [0.3, -0.6]},
]

if __name__ == "__main__":
    OUT.parent.mkdir(parents=True, exist_ok=True)
    data = {"torch": torch.__version__, "cases": [run(case) for case in CASES]}
    OUT.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {OUT}")
