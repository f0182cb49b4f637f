//! `metrics` and `threshold` against the scikit-learn / numpy references written by
//! `scripts/metrics_fixtures.py` (tests/fixtures/metrics/*.json).

use std::path::Path;

use aia::metrics::{measure, AnnotationMetrics, Thresholds};
use aia::threshold::{calibrate, ThresholdSearch};
use serde_json::Value;

const CASES: [&str; 5] = ["random", "knife_edges", "ties", "degenerate", "realistic"];
const TOL: f64 = 1e-6;

struct Case {
    name: &'static str,
    json: Value,
    scores: Vec<f32>,
    targets: Vec<f32>,
    num_classes: usize,
}

fn load(name: &'static str) -> Case {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/metrics")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let json: Value = serde_json::from_str(&text).unwrap();
    let scores = f32s(&json["scores"]);
    let targets = json["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let num_classes = json["num_classes"].as_u64().unwrap() as usize;
    Case {
        name,
        json,
        scores,
        targets,
        num_classes,
    }
}

/// Values written as float32 by the script (through float64 JSON numbers).
fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// Floats written as Python `repr` strings, parsed exactly (serde_json's number parsing may be
/// one ulp off).
fn exact_f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().parse().unwrap())
        .collect()
}

fn close(what: &str, got: f64, want: f64) {
    assert!(
        (got - want).abs() <= TOL,
        "{what}: got {got}, scikit-learn/numpy reference {want}"
    );
}

#[test]
fn grid_thresholds_are_the_papers_sklearn_argmax() {
    for name in CASES {
        let case = load(name);
        let cal = calibrate(
            &case.scores,
            &case.targets,
            case.num_classes,
            ThresholdSearch::Grid,
        )
        .unwrap();
        let want = f32s(&case.json["grid_thresholds"]);
        assert_eq!(cal.thresholds, want, "{name}: grid thresholds");
        // Same arithmetic as scikit-learn, so the very same floats.
        assert_eq!(
            cal.mcc,
            exact_f64s(&case.json["grid_mcc"]),
            "{name}: grid MCCs"
        );
    }
}

#[test]
fn exact_thresholds_reach_the_brute_force_best_mcc() {
    for name in CASES {
        let case = load(name);
        let cal = calibrate(
            &case.scores,
            &case.targets,
            case.num_classes,
            ThresholdSearch::Exact,
        )
        .unwrap();
        assert_eq!(
            cal.mcc,
            exact_f64s(&case.json["exact_mcc"]),
            "{name}: exact MCCs"
        );
        assert_eq!(
            cal.thresholds,
            f32s(&case.json["exact_thresholds"]),
            "{name}: exact thresholds"
        );
        let grid_mcc = exact_f64s(&case.json["grid_mcc"]);
        for (label, (e, g)) in cal.mcc.iter().zip(&grid_mcc).enumerate() {
            assert!(e >= g, "{name}: label {label}: exact MCC {e} < grid {g}");
        }
    }
}

fn check_metrics(case: &Case, setting: &str, got: &AnnotationMetrics) {
    let want = &case.json["metrics"][setting];
    let ctx = format!("{} / {setting}", case.name);
    for part in ["per_class", "overall"] {
        let (g, w) = match part {
            "per_class" => (&got.per_class, &want["per_class"]),
            _ => (&got.overall, &want["overall"]),
        };
        close(
            &format!("{ctx}: {part} precision"),
            g.precision,
            w["precision"].as_f64().unwrap(),
        );
        close(
            &format!("{ctx}: {part} recall"),
            g.recall,
            w["recall"].as_f64().unwrap(),
        );
        close(
            &format!("{ctx}: {part} f1"),
            g.f1,
            w["f1"].as_f64().unwrap(),
        );
    }
    assert_eq!(
        got.n_plus as u64,
        want["n_plus"].as_u64().unwrap(),
        "{ctx}: N+"
    );
    match want["mean_average_precision"].as_f64() {
        Some(w) => close(
            &format!("{ctx}: mAP"),
            got.mean_average_precision.unwrap(),
            w,
        ),
        None => assert_eq!(got.mean_average_precision, None, "{ctx}: mAP"),
    }
    let column = |key: &str| want[key].as_array().unwrap().clone();
    let (tp, pred, support) = (
        column("true_positives"),
        column("predicted"),
        column("support"),
    );
    let (p, r, f1, ap) = (
        column("label_precision"),
        column("label_recall"),
        column("label_f1"),
        column("average_precision"),
    );
    assert_eq!(got.per_label.len(), case.num_classes);
    for (c, l) in got.per_label.iter().enumerate() {
        let lctx = format!("{ctx}: label {c}");
        assert_eq!(l.index, c);
        assert_eq!(l.true_positives, tp[c].as_u64().unwrap(), "{lctx}: tp");
        assert_eq!(l.predicted, pred[c].as_u64().unwrap(), "{lctx}: predicted");
        assert_eq!(l.support, support[c].as_u64().unwrap(), "{lctx}: support");
        close(
            &format!("{lctx}: precision"),
            l.precision,
            p[c].as_f64().unwrap(),
        );
        close(&format!("{lctx}: recall"), l.recall, r[c].as_f64().unwrap());
        close(&format!("{lctx}: f1"), l.f1, f1[c].as_f64().unwrap());
        match ap[c].as_f64() {
            Some(w) => close(&format!("{lctx}: AP"), l.average_precision.unwrap(), w),
            None => assert_eq!(l.average_precision, None, "{lctx}: AP"),
        }
    }
}

#[test]
fn metrics_match_the_reference_for_every_threshold_setting() {
    for name in CASES {
        let case = load(name);
        let settings = [
            ("global_0.5", Thresholds::Global(0.5)),
            (
                "grid",
                Thresholds::from(f32s(&case.json["grid_thresholds"])),
            ),
            (
                "exact",
                Thresholds::from(f32s(&case.json["exact_thresholds"])),
            ),
        ];
        for (setting, thresholds) in settings {
            let got = measure(&case.scores, &case.targets, case.num_classes, &thresholds).unwrap();
            check_metrics(&case, setting, &got);
            for (l, t) in got.per_label.iter().enumerate() {
                assert_eq!(t.threshold, thresholds.get(l));
            }
        }
    }
}

#[test]
fn exact_thresholds_reproduce_their_calibration_mcc_under_strict_evaluation() {
    // The reference evaluated the exact thresholds with `score > t`: the resulting
    // per-label counts must be those of the best cut, whose MCC the script recorded.
    for name in CASES {
        let case = load(name);
        let exact = &case.json["metrics"]["exact"];
        let mcc = exact_f64s(&case.json["exact_mcc"]);
        let rows = case.json["rows"].as_u64().unwrap();
        for c in 0..case.num_classes {
            let tp = exact["true_positives"][c].as_u64().unwrap();
            let pred = exact["predicted"][c].as_u64().unwrap();
            let pos = exact["support"][c].as_u64().unwrap();
            let (fp, fn_) = (pred - tp, pos - tp);
            let tn = rows - tp - fp - fn_;
            let got = aia::threshold::matthews_corrcoef(tp, fp, tn, fn_);
            assert_eq!(got, mcc[c], "{name}: label {c}");
        }
    }
}
