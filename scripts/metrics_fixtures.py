#!/usr/bin/env python3
"""Reference fixtures for `aia::metrics` and `aia::threshold` (numpy + scikit-learn).

Writes tests/fixtures/metrics/<case>.json for a few random and adversarial score matrices:

- the paper's grid thresholds: for each label, `sklearn.metrics.matthews_corrcoef` between the
  targets and `score >= t` for t in 0.05, 0.10, ..., 0.70 (Python float literals compared with a
  float32 array, as the paper's code does), first argmax;
- the exact best MCC per label by brute force: every distinct score u as `score >= u`, scored by
  scikit-learn, first argmax in ascending u (ties to the lower cut), and the threshold that the
  crate documents for that cut (midpoint of the cut's score and the next lower distinct score,
  in float32; just below the minimum when every sample is kept; 0.05 for degenerate labels);
- the metrics (per-class / overall P, R, F1, N+, per-label counts, AP from
  `sklearn.metrics.average_precision_score`, mAP) for thresholds 0.5, the grid's and the exact
  ones, with `score > t` compared in float32 and everything else in float64.

Run from the repository root: /work/venv/bin/python scripts/metrics_fixtures.py
"""

import json
import os

import numpy as np
import torch
from sklearn.metrics import average_precision_score, matthews_corrcoef

OUT = os.path.join("tests", "fixtures", "metrics")
EPS = 1e-7
GRID = [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7]
F32_GRID = np.array(GRID, dtype=np.float32)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def to_f32(x):
    return np.asarray(x, dtype=np.float32)


def grid_thresholds(scores, targets):
    best_t, best_mcc = [], []
    for c in range(scores.shape[1]):
        col = scores[:, c]
        mccs = []
        for t in GRID:
            pred = (col >= t).astype(np.float32)  # numpy casts the Python float to float32
            mccs.append(matthews_corrcoef(targets[:, c], pred))
        k = int(np.argmax(mccs))
        best_t.append(GRID[k])
        best_mcc.append(float(mccs[k]))
    return best_t, best_mcc


def exact_thresholds(scores, targets):
    best_t, best_mcc = [], []
    for c in range(scores.shape[1]):
        col, y = scores[:, c], targets[:, c]
        distinct = np.unique(col)  # ascending
        if y.sum() == 0 or y.sum() == len(y) or len(distinct) == 1:
            best_t.append(float(np.float32(0.05)))
            best_mcc.append(0.0)
            continue
        mccs = [matthews_corrcoef(y, (col >= u).astype(np.float32)) for u in distinct]
        k = int(np.argmax(mccs))  # ascending u: ties go to the lower cut
        hi = distinct[k]
        if k == 0:
            t = np.nextafter(hi, np.float32(-np.inf), dtype=np.float32)
        else:
            lo = distinct[k - 1]
            t = np.float32((np.float64(lo) + np.float64(hi)) / 2)
            if not t < hi:
                t = lo
        best_t.append(float(t))
        best_mcc.append(float(mccs[k]))
    return best_t, best_mcc


def metrics(scores, targets, thresholds):
    """The paper's formulas (its reference code's), counts from `score > t` in float32, ratios in float64."""
    t = np.broadcast_to(to_f32(thresholds), (scores.shape[1],))
    pred = scores > t[None, :]
    y = targets.astype(bool)
    tp = (pred & y).sum(0).astype(np.float64)
    predicted = pred.sum(0).astype(np.float64)
    actual = y.sum(0).astype(np.float64)
    p_c, r_c = tp / (predicted + EPS), tp / (actual + EPS)
    f1 = lambda p, r: 2 * p * r / (p + r + EPS)
    pcp, pcr = p_c.mean(), r_c.mean()
    pip, pir = tp.sum() / (predicted.sum() + EPS), tp.sum() / (actual.sum() + EPS)
    aps = [
        float(average_precision_score(y[:, c], scores[:, c])) if actual[c] > 0 else None
        for c in range(scores.shape[1])
    ]
    present = [a for a in aps if a is not None]
    result = {
        "per_class": {"precision": pcp, "recall": pcr, "f1": f1(pcp, pcr)},
        "overall": {"precision": pip, "recall": pir, "f1": f1(pip, pir)},
        "n_plus": int((tp > 0).sum()),
        "mean_average_precision": float(np.mean(present)) if present else None,
        "true_positives": tp.astype(int).tolist(),
        "predicted": predicted.astype(int).tolist(),
        "support": actual.astype(int).tolist(),
        "label_precision": p_c.tolist(),
        "label_recall": r_c.tolist(),
        "label_f1": f1(p_c, r_c).tolist(),
        "average_precision": aps,
    }
    torch_check(scores, targets, t, result)
    return result


def torch_check(scores, targets, t, result):
    """The same numbers from torch in float32, following the paper's formulas: a second opinion
    on the float64 reference (agreement to float32 precision)."""
    s, y = torch.from_numpy(scores), torch.from_numpy(targets.astype(np.float32))
    out = torch.gt(s, torch.from_numpy(np.array(t, dtype=np.float32))[None, :]).float()
    tp = (y * out).sum(0)
    pcp = torch.mean(tp / (out.sum(0) + EPS)).item()
    pcr = torch.mean(tp / (y.sum(0) + EPS)).item()
    pip = (tp.sum() / (out.sum() + EPS)).item()
    pir = (tp.sum() / (y.sum() + EPS)).item()
    for a, b in [(pcp, "per_class"), (pip, "overall")]:
        assert abs(a - result[b]["precision"]) < 1e-5, (a, result[b])
    for a, b in [(pcr, "per_class"), (pir, "per_image")]:
        assert abs(a - result[b]["recall"]) < 1e-5, (a, result[b])
    assert int(torch.gt(tp, 0).sum()) == result["n_plus"]


def f32_list(a):
    # 9 significant digits identify a float32 uniquely, and survive a detour through float64.
    return [float(f"{v:.9g}") for v in np.asarray(a, dtype=np.float32).ravel()]


def write_case(name, description, scores, targets):
    scores = to_f32(scores)
    targets = np.asarray(targets, dtype=np.int64)
    assert scores.shape == targets.shape and scores.ndim == 2
    grid_t, grid_mcc = grid_thresholds(scores, targets)
    exact_t, exact_mcc = exact_thresholds(scores, targets)
    assert all(e >= g for e, g in zip(exact_mcc, grid_mcc)), name
    case = {
        "description": description,
        "rows": scores.shape[0],
        "num_classes": scores.shape[1],
        "scores": f32_list(scores),
        "targets": targets.ravel().tolist(),
        "grid_thresholds": grid_t,
        # repr strings: parsed exactly, to check that the MCCs are the very same floats
        "grid_mcc": [repr(v) for v in grid_mcc],
        "exact_thresholds": f32_list(exact_t),
        "exact_mcc": [repr(v) for v in exact_mcc],
        "metrics": {
            "global_0.5": metrics(scores, targets, 0.5),
            "grid": metrics(scores, targets, grid_t),
            "exact": metrics(scores, targets, exact_t),
        },
    }
    path = os.path.join(OUT, f"{name}.json")
    with open(path, "w") as f:
        json.dump(case, f, separators=(",", ":"))
        f.write("\n")
    print(f"{path}: {scores.shape}, {os.path.getsize(path)} bytes")


def knife_edge_values():
    """Each grid value as float32 and its two float32 neighbours."""
    up = np.nextafter(F32_GRID, np.float32(1), dtype=np.float32)
    down = np.nextafter(F32_GRID, np.float32(0), dtype=np.float32)
    return np.concatenate([F32_GRID, up, down])


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(5)

    # Random: scores loosely correlated with the targets.
    n, c = 150, 10
    y = rng.random((n, c)) < rng.uniform(0.05, 0.5, c)
    s = sigmoid(rng.normal(-1.0, 1.2, (n, c)) + 1.5 * y)
    write_case("random", "sigmoid scores loosely correlated with Bernoulli targets", s, y)

    # Knife edges: scores exactly at the float32 grid values and their neighbours, with ties.
    n, c = 120, 8
    edges = knife_edge_values()
    y = rng.random((n, c)) < 0.35
    s = np.where(
        rng.random((n, c)) < 0.7,
        rng.choice(edges, (n, c)),
        sigmoid(rng.normal(-0.5, 1.0, (n, c)) + y),
    )
    s = np.where(y & (rng.random((n, c)) < 0.5), np.maximum(s, rng.choice(edges, (n, c))), s)
    write_case("knife_edges", "scores on the float32 grid values and their neighbours", s, y)

    # Ties: scores quantised to 0.01 or 0.05, many equal scores across both classes.
    n, c = 100, 8
    y = rng.random((n, c)) < 0.3
    raw = sigmoid(rng.normal(-0.8, 1.0, (n, c)) + 1.2 * y)
    step = np.where(np.arange(c) % 2 == 0, 0.05, 0.01)
    s = np.round(raw / step) * step
    write_case("ties", "scores rounded to multiples of 0.05 or 0.01", s, y)

    # Degenerate and adversarial labels, one per column.
    n = 60
    cols = []
    base = sigmoid(rng.normal(0, 1.5, n))
    cols.append((base, np.zeros(n, bool)))  # no positive
    cols.append((base, np.ones(n, bool)))  # all positive
    y = rng.random(n) < 0.4
    cols.append((np.full(n, 0.3), y))  # constant score
    cols.append((np.full(n, F32_GRID[6]), y))  # constant, on a grid value below its decimal
    cols.append((sigmoid(rng.normal(0, 1, n) - 2.0 * y), y))  # anti-correlated
    one = np.zeros(n, bool)
    one[7] = True
    cols.append((base, one))  # a single positive
    cols.append((base, ~one))  # a single negative
    cols.append((np.where(y, 0.6, 0.2) + rng.uniform(-0.05, 0.05, n), y))  # separable
    zeros = np.where(rng.random(n) < 0.5, -0.0, 0.0)
    cols.append((np.where(rng.random(n) < 0.3, 1.0, zeros), y))  # only 0.0, -0.0 and 1.0
    cols.append((rng.uniform(0.0, 0.04, n), y))  # all below the grid
    s = np.stack([a for a, _ in cols], 1)
    y = np.stack([b for _, b in cols], 1)
    write_case(
        "degenerate",
        "no positive, all positive, constant, constant on a grid value, anti-correlated, "
        "single positive, single negative, separable, only 0/-0/1, all below the grid",
        s,
        y,
    )

    # Realistic: sparse labels, positives and negatives from two beta distributions.
    n, c = 600, 24
    prevalence = np.geomspace(0.005, 0.15, c)
    y = rng.random((n, c)) < prevalence
    s = np.where(y, rng.beta(4, 3, (n, c)), rng.beta(1, 8, (n, c)))
    write_case("realistic", "sparse labels, beta-distributed scores", s, y)


if __name__ == "__main__":
    main()
