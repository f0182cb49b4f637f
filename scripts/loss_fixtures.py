#!/usr/bin/env python3
"""Reference values of the asymmetric multi-label loss family, computed with PyTorch.

Writes tests/fixtures/loss/asymmetric.json: logits and targets covering every branch of the
formula, and for each preset (plus two extra configurations that exercise fractional gammas
and the `sum` reduction) the expected loss and its gradient with respect to logits and targets,
on multi-hot targets and (cases named `*_soft`) on soft targets.

The formula is written here literally, in float64 and differentiated by torch.autograd, so the
Rust implementations are checked against an independent derivation. For a hard target it is the
paper's: one term, with its own focusing weight. A soft target weighs its mixed cross-entropy by
one weight, as timm's AsymmetricLossMultiLabel does: `(1 - pt)^g` with `1 - pt = y (1 - p) +
(1 - y) q` and `g = y gamma_pos + (1 - y) gamma_neg`, the positive parts taken at the shifted
logit and `gamma_pos` 0 where the threshold switch says confident. The targets' gradient is that
of this formula (at hard targets too: the weight depends on the target).

Run:  /work/venv/bin/python scripts/loss_fixtures.py
"""

import json
import math
import pathlib

import numpy as np
import torch

EPS = 1e-8

PRESETS = {
    # name: (gamma_neg, gamma_pos, pos_margin, neg_margin, threshold, reduction)
    "bce": (0.0, 0.0, 0.0, 0.0, 0.0, "mean"),
    "focal": (3.0, 3.0, 0.0, 0.0, 0.0, "mean"),
    "asymmetric": (4.0, 0.0, 0.0, 0.05, 0.0, "mean"),
    "proposed": (4.0, 3.0, 1.1, 0.05, 0.25, "mean"),
    # Not presets: fractional gammas take the general power path, and `sum` the other reduction.
    "fractional_sum": (2.5, 1.5, 0.5, 0.1, 0.6, "sum"),
    "proposed_sum": (4.0, 3.0, 1.1, 0.05, 0.25, "sum"),
}


def asymmetric_loss(x, y, gamma_neg, gamma_pos, pos_margin, neg_margin, threshold, reduction):
    """The loss, with timm's one focusing weight for soft targets."""
    s = torch.sigmoid(x)
    # Negative part: the probability is shifted down by the margin, then clipped at zero.
    q = (s - neg_margin).clamp(min=0) if neg_margin > 0 else s
    # Positive part: the logit is shifted by the margin; confident positives get plain BCE.
    if pos_margin > 0:
        p = torch.sigmoid(x - pos_margin)
        gp = torch.where(p >= threshold, torch.zeros_like(p), torch.full_like(p, gamma_pos))
    else:
        p = s
        gp = torch.full_like(p, gamma_pos)
    ce = y * torch.log(p.clamp(min=EPS)) + (1 - y) * torch.log((1 - q).clamp(min=EPS))
    base = y * (1 - p) + (1 - y) * q
    gamma = y * gp + (1 - y) * gamma_neg
    per_element = -ce * torch.pow(base, gamma)
    return per_element.mean() if reduction == "mean" else per_element.sum()


def short(v):
    """`v` rounded to 12 significant digits: far beyond the float32 kernels' precision."""
    return float(f"{v:.12g}")


def f32_at_or_above(v):
    """The smallest float32 that is >= v (v a Python float)."""
    f = np.float32(v)
    if float(f) < v:
        f = np.nextafter(f, np.float32(np.inf))
    return f


def special_logits():
    """Logits at the switch points of the formula, and beside them."""
    points = []
    # Threshold switch of `proposed` (p = 0.25 with pos_margin 1.1) and of `fractional_sum`.
    for margin, thr in [(1.1, 0.25), (0.5, 0.6)]:
        switch = margin + math.log(thr / (1 - thr))
        at = f32_at_or_above(switch)
        below = np.nextafter(at, np.float32(-np.inf))
        points += [at, below, np.float32(switch + 1e-3), np.float32(switch - 1e-3)]
    # Negative-margin switch (s(x) = neg_margin).
    for margin in [0.05, 0.1]:
        switch = math.log(margin / (1 - margin))
        at = f32_at_or_above(switch)
        points += [at, np.nextafter(at, np.float32(-np.inf)), np.float32(switch + 1e-3),
                   np.float32(switch - 1e-3)]
    # Far outside the eps clamps, and zero.
    points += [np.float32(v) for v in (-1e4, -100.0, -50.0, 0.0, 50.0, 100.0, 1e4)]
    return np.array(points, dtype=np.float32)


def main():
    rng = np.random.default_rng(2)
    grid = np.linspace(-30, 30, 121, dtype=np.float32)  # steps of 0.5
    values = np.concatenate([grid, special_logits()])
    k = values.size
    # Row 0: every value as a negative (an all-negative row); row 1: as a positive (all-positive
    # row); row 2: the same values shuffled with random targets; row 3: typical logits.
    logits = np.stack([
        values,
        values,
        rng.permutation(values),
        (rng.standard_normal(k) * 4).astype(np.float32),
    ]).astype(np.float32)
    targets = np.stack([
        np.zeros(k),
        np.ones(k),
        rng.integers(0, 2, k),
        rng.integers(0, 2, k),
    ]).astype(np.float32)

    # Soft targets: every value in (0, 1), with smoothed hard ones (0.05, 0.95) among them.
    soft = rng.uniform(0.0, 1.0, logits.shape)
    soft[:, ::5] = np.where(targets[:, ::5] > 0, 0.95, 0.05)
    # At the negative margin's switch (sigmoid(x) = neg_margin) the weight of a soft target has
    # a kink in x (q's slope jumps from 0), which float32 and float64 may put on either side of
    # a logit an ulp away: the targets there stay hard, where the weight q^gamma is smooth.
    for margin in [0.05, 0.1]:
        near = np.abs(logits - math.log(margin / (1 - margin))) < 1e-4
        soft[near] = targets[near]
    soft = soft.astype(np.float32)

    cases = []
    for (name, (gn, gp, mp, mn, thr, reduction)), soft_case in [
        (item, s) for s in (False, True) for item in PRESETS.items()
    ]:
        name = name + "_soft" if soft_case else name
        x = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
        y = torch.tensor(soft if soft_case else targets, dtype=torch.float64, requires_grad=True)
        loss = asymmetric_loss(x, y, gn, gp, mp, mn, thr, reduction)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(x.grad).all() and torch.isfinite(y.grad).all()
        cases.append({
            "name": name,
            "gamma_neg": gn,
            "gamma_pos": gp,
            "pos_margin": mp,
            "neg_margin": mn,
            "threshold": thr,
            "eps": EPS,
            "reduction": reduction,
            "soft": soft_case,
            "loss": short(loss.item()),
            "grad_logits": [short(v) for v in x.grad.flatten().tolist()],
            "grad_targets": [short(v) for v in y.grad.flatten().tolist()],
        })

    out = {
        "generator": "scripts/loss_fixtures.py (torch %s, float64)" % torch.__version__,
        "shape": list(logits.shape),
        "logits": [float(v) for v in logits.flatten()],
        "targets": [float(v) for v in targets.flatten()],
        "soft_targets": [float(v) for v in soft.flatten()],
        "cases": cases,
    }
    path = pathlib.Path(__file__).resolve().parent.parent / "tests/fixtures/loss/asymmetric.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out))
    print(f"wrote {path} ({path.stat().st_size} bytes, shape {list(logits.shape)})")
    for c in cases:
        print(f"  {c['name']:>20}: loss {c['loss']:.10g}")


if __name__ == "__main__":
    main()
