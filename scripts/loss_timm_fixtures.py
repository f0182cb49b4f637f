#!/usr/bin/env python3
"""Reference values of the loss options, computed with timm's AsymmetricLossMultiLabel itself.

Writes tests/fixtures/loss/timm.json: logits and binary targets covering the clamps (the eps
clamp of the positive term, the probability margin `clip` of the negative term) and the
threshold switch of the `proposed` preset, soft targets beside them, and for each case (every
option alone, then a few together, label smoothing with and without focusing, soft targets)
the loss and its gradient with respect to the logits.

timm casts its inputs to float32 (`x.float()`, a guard against fp16); the fixtures run the same
code in float64, with `Tensor.float` left as the identity while it runs, so that the reference is
exact beyond the float32 rounding of the kernels under test.

The `proposed` preset's logit margin and threshold switch are not timm options. Its cases are
built from timm's loss with `reduction='none'` on hard targets: the negatives' terms at `x`, the
positives' at `x - pos_margin`, with `gamma_pos = 0` (plain cross-entropy) where
`sigmoid(x - pos_margin) >= threshold`; the chosen elements are then reduced as timm reduces.
That composition holds for hard targets only, so the preset is not combined with smoothing or
soft targets here (scripts/loss_fixtures.py checks it on soft targets).

`none` cases multiply the per-element losses by fixed random upstream gradients before the
backward pass, so the gradient checks each element's own incoming gradient.

Run:  /work/venv/bin/python scripts/loss_timm_fixtures.py
"""

import json
import math
import pathlib

import numpy as np
import timm
import torch
from timm.loss import AsymmetricLossMultiLabel

EPS = 1e-8

# name: options of AsymmetricLossMultiLabel (gamma_neg, gamma_pos, clip, smoothing, reduction,
# weight, pos_weight, disable_torch_grad_focal_loss), plus pos_margin/threshold for the paper's
# preset. "weight"/"pos_weight" name a vector drawn below ("class", "pos") or give a scalar.
CASES = {
    # timm's defaults, then each option alone.
    "timm_default": {},
    "reduction_sum": {"reduction": "sum"},
    "reduction_mean": {"reduction": "mean"},
    "reduction_none": {"reduction": "none"},
    "smoothing": {"gamma_neg": 0, "gamma_pos": 0, "smoothing": 0.1},
    # Smoothing with focusing: one weight (1 - pt)^(mixed gamma) on the mixed cross-entropy.
    "smoothing_default": {"smoothing": 0.1},
    "smoothing_fractional": {"gamma_neg": 2.5, "gamma_pos": 1.5, "smoothing": 0.2,
                             "clip": 0.1, "reduction": "mean"},
    "smoothing_focal_all": {"smoothing": 0.15, "gamma_neg": 3, "gamma_pos": 2,
                            "weight": "class", "pos_weight": "pos", "reduction": "none"},
    "smoothing_detached_all": {"smoothing": 0.1, "weight": "class", "pos_weight": 2.5,
                               "disable_torch_grad_focal_loss": True, "reduction": "sum"},
    # Soft targets as a user passes them (timm takes dense soft targets).
    "soft_default": {"targets": "soft"},
    "soft_fractional_none": {"targets": "soft", "gamma_neg": 2.5, "gamma_pos": 1.5,
                             "pos_weight": "pos", "reduction": "none"},
    "soft_smoothing_no_clip": {"targets": "soft", "smoothing": 0.1, "clip": 0.0,
                               "weight": "class", "reduction": "mean"},
    "weight": {"weight": "class"},
    "pos_weight_scalar": {"pos_weight": 2.5},
    "pos_weight_per_class": {"pos_weight": "pos"},
    "detach_focusing": {"disable_torch_grad_focal_loss": True},
    # The crate's `asymmetric` preset and plain BCE (no clip: the eps clamps at both ends).
    "asymmetric": {"gamma_pos": 0, "reduction": "mean"},
    "bce_no_clip": {"gamma_neg": 0, "gamma_pos": 0, "clip": 0.0, "reduction": "mean"},
    # Together.
    "all_focal": {"reduction": "sum", "weight": "class", "pos_weight": "pos",
                  "disable_torch_grad_focal_loss": True, "gamma_neg": 2, "gamma_pos": 3},
    "all_smoothing": {"gamma_neg": 0, "gamma_pos": 0, "smoothing": 0.2, "weight": "class",
                      "pos_weight": 0.7, "reduction": "none"},
    "fractional_weighted": {"gamma_neg": 2.5, "gamma_pos": 1.5, "clip": 0.1, "weight": "class",
                            "reduction": "mean"},
    # The paper's preset: logit margin 1.1 and the threshold switch at 0.25.
    "proposed": {"gamma_pos": 3, "pos_margin": 1.1, "threshold": 0.25, "reduction": "mean"},
    "proposed_all": {"gamma_pos": 3, "pos_margin": 1.1, "threshold": 0.25,
                     "reduction": "batchmean", "weight": "class", "pos_weight": "pos",
                     "disable_torch_grad_focal_loss": True},
    "proposed_none": {"gamma_pos": 3, "pos_margin": 1.1, "threshold": 0.25,
                      "reduction": "none", "pos_weight": 1.5},
}

DEFAULTS = {
    "gamma_neg": 4.0,
    "gamma_pos": 1.0,
    "clip": 0.05,
    "smoothing": 0.0,
    "reduction": "batchmean",
    "weight": None,
    "pos_weight": None,
    "disable_torch_grad_focal_loss": False,
    "pos_margin": 0.0,
    "threshold": 0.0,
    "targets": "hard",
}


class Float64:
    """Keeps `Tensor.float` from casting while timm's forward runs."""

    def __enter__(self):
        self.saved = torch.Tensor.float
        torch.Tensor.float = lambda t, *args, **kwargs: t

    def __exit__(self, *exc):
        torch.Tensor.float = self.saved


def timm_loss(x, y, o, vectors, reduction):
    weight = o["weight"]
    pos_weight = o["pos_weight"]
    loss = AsymmetricLossMultiLabel(
        gamma_neg=o["gamma_neg"],
        gamma_pos=o["gamma_pos"],
        clip=o["clip"],
        eps=EPS,
        disable_torch_grad_focal_loss=o["disable_torch_grad_focal_loss"],
        smoothing=o["smoothing"],
        reduction=reduction,
        weight=None if weight is None else vectors[weight],
        pos_weight=vectors[pos_weight] if isinstance(pos_weight, str) else pos_weight,
    )
    with Float64():
        return loss(x, y)


def reduce(per_element, reduction, rows):
    if reduction == "batchmean":
        return per_element.sum() / rows
    if reduction == "sum":
        return per_element.sum()
    if reduction == "mean":
        return per_element.mean()
    return per_element


def case_loss(x, y, o, vectors):
    """The case's loss on (x, y), through timm."""
    if o["pos_margin"] == 0:
        return timm_loss(x, y, o, vectors, o["reduction"])
    # The paper's positive term: timm's at x - margin, plain cross-entropy past the threshold.
    margin, threshold = o["pos_margin"], o["threshold"]
    neg = timm_loss(x, y, o, vectors, "none")
    focal = timm_loss(x - margin, y, o, vectors, "none")
    plain = timm_loss(x - margin, y, dict(o, gamma_pos=0.0), vectors, "none")
    confident = torch.sigmoid(x.detach() - margin) >= threshold
    per_element = torch.where(y == 1, torch.where(confident, plain, focal), neg)
    return reduce(per_element, o["reduction"], x.shape[0])


def short(v):
    """`v` rounded to 12 significant digits."""
    return float(f"{v:.12g}")


def f32_at_or_above(v):
    """The smallest float32 that is >= v (v a Python float)."""
    f = np.float32(v)
    if float(f) < v:
        f = np.nextafter(f, np.float32(np.inf))
    return f


def special_logits():
    """Logits at the switch points of the formulas, and beside them."""
    points = []
    def around(switch):
        return [np.float32(switch + d) for d in (1e-3, -1e-3, 1e-5, -1e-5)]
    # The threshold switch of `proposed` (sigmoid(x - 1.1) = 0.25), which the crate decides
    # exactly: also the float32 logits on either side of it.
    switch = 1.1 + math.log(0.25 / 0.75)
    at = f32_at_or_above(switch)
    points += [at, np.nextafter(at, np.float32(-np.inf))] + around(switch)
    # The clamps are decided on float32 probabilities, so a logit within rounding of one may
    # fall on either side: they are approached from 1e-5 away. The probability margin of the
    # negative term (sigmoid(x) = clip):
    for clip in [0.05, 0.1]:
        points += around(math.log(clip / (1 - clip)))
    # The eps clamp of the positive term, without and with the logit margin.
    for margin in [0.0, 1.1]:
        points += around(margin + math.log(EPS / (1 - EPS)))
    # The eps clamp of the negative term without clip (1 - sigmoid(x) = eps).
    points += around(-math.log(EPS / (1 - EPS)))
    points += [np.float32(v) for v in (-1e4, -100.0, -50.0, 0.0, 50.0, 100.0, 1e4)]
    return np.array(points, dtype=np.float32)


def main():
    torch.set_default_dtype(torch.float64)
    rng = np.random.default_rng(15)
    grid = np.linspace(-24, 24, 97, dtype=np.float32)  # steps of 0.5
    values = np.concatenate([grid, special_logits()])
    k = values.size
    # Row 0: every value as a negative; row 1: as a positive; rows 2-3: shuffled with random
    # targets; row 4: typical logits.
    logits = np.stack([
        values,
        values,
        rng.permutation(values),
        rng.permutation(values),
        (rng.standard_normal(k) * 4).astype(np.float32),
    ]).astype(np.float32)
    targets = np.stack([
        np.zeros(k),
        np.ones(k),
        rng.integers(0, 2, k),
        rng.integers(0, 2, k),
        rng.integers(0, 2, k),
    ]).astype(np.float32)
    vectors_np = {
        "class": rng.uniform(0.0, 2.0, k).astype(np.float32),
        "pos": rng.uniform(0.5, 3.0, k).astype(np.float32),
    }
    vectors = {name: torch.tensor(v, dtype=torch.float64) for name, v in vectors_np.items()}
    upstream = rng.uniform(-1.0, 2.0, logits.shape).astype(np.float32)
    # Soft targets: uniform in (0, 1), with exact 0s and 1s among them.
    soft = rng.uniform(0.0, 1.0, logits.shape)
    soft[:, ::7] = targets[:, ::7]
    soft = soft.astype(np.float32)

    cases = []
    for name, overrides in CASES.items():
        o = dict(DEFAULTS, **overrides)
        x = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
        is_soft = o["targets"] == "soft"
        assert not (is_soft or o["smoothing"]) or o["pos_margin"] == 0, name
        y = torch.tensor(soft if is_soft else targets, dtype=torch.float64)
        loss = case_loss(x, y, o, vectors)
        if o["reduction"] == "none":
            (loss * torch.tensor(upstream, dtype=torch.float64)).sum().backward()
            value = loss.detach().flatten().tolist()
        else:
            loss.backward()
            value = [loss.item()]
        # 12 significant digits: far beyond the float32 kernels' precision, a third of the file.
        value = [short(v) for v in value]
        assert all(math.isfinite(v) for v in value) and torch.isfinite(x.grad).all(), name
        weight, pos_weight = o["weight"], o["pos_weight"]
        cases.append({
            "name": name,
            "gamma_neg": float(o["gamma_neg"]),
            "gamma_pos": float(o["gamma_pos"]),
            "pos_margin": float(o["pos_margin"]),
            "neg_margin": float(o["clip"]),
            "threshold": float(o["threshold"]),
            "eps": EPS,
            "reduction": o["reduction"],
            "smoothing": float(o["smoothing"]),
            "weight": None if weight is None else [float(v) for v in vectors_np[weight]],
            "pos_weight": (None if pos_weight is None
                           else [float(v) for v in vectors_np[pos_weight]]
                           if isinstance(pos_weight, str) else [float(pos_weight)]),
            "detach_focusing": bool(o["disable_torch_grad_focal_loss"]),
            "soft": is_soft,
            "loss": value,
            "grad_logits": [short(v) for v in x.grad.flatten().tolist()],
        })

    out = {
        "generator": "scripts/loss_timm_fixtures.py (timm %s, torch %s, float64)"
                     % (timm.__version__, torch.__version__),
        "shape": list(logits.shape),
        "logits": [float(v) for v in logits.flatten()],
        "targets": [float(v) for v in targets.flatten()],
        "soft_targets": [float(v) for v in soft.flatten()],
        "upstream": [float(v) for v in upstream.flatten()],
        "cases": cases,
    }
    path = pathlib.Path(__file__).resolve().parent.parent / "tests/fixtures/loss/timm.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out))
    print(f"wrote {path} ({path.stat().st_size} bytes, shape {list(logits.shape)})")
    for c in cases:
        shown = c["loss"][0] if len(c["loss"]) == 1 else f"{len(c['loss'])} values"
        print(f"  {c['name']:>21}: loss {shown}")


if __name__ == "__main__":
    main()
