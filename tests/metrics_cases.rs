//! Hand-computed cases, errors, the tensor entry points and the report formats.

use aia::metrics::{
    measure, measure_tensors, AnnotationMetrics, MetricsError, MetricsTable, Thresholds,
};
use aia::threshold::{calibrate, calibrate_tensors, matthews_corrcoef, ThresholdSearch, GRID};
use burn::backend::Flex;
use burn::tensor::Tensor;

const TOL: f64 = 1e-6;

// 4 images x 3 labels. Label 2's only positive scores exactly 0.5: not predicted at 0.5.
const SCORES: [f32; 12] = [
    0.9, 0.6, 0.1, //
    0.4, 0.7, 0.2, //
    0.8, 0.3, 0.5, //
    0.2, 0.55, 0.05,
];
const TARGETS: [f32; 12] = [
    1.0, 0.0, 0.0, //
    1.0, 1.0, 0.0, //
    0.0, 0.0, 1.0, //
    0.0, 1.0, 0.0,
];

fn assert_close(got: f64, want: f64, what: &str) {
    assert!((got - want).abs() < TOL, "{what}: got {got}, want {want}");
}

#[test]
fn hand_computed_metrics_at_one_half() {
    let m = measure(&SCORES, &TARGETS, 3, &Thresholds::Global(0.5)).unwrap();
    // Label 0: predicted rows 0, 2; present rows 0, 1 -> tp 1 of 2 predicted, 2 present.
    // Label 1: predicted rows 0, 1, 3; present rows 1, 3 -> tp 2 of 3 predicted, 2 present.
    // Label 2: nothing predicted (0.5 is not > 0.5); present row 2 -> tp 0.
    let counts: Vec<_> = m
        .per_label
        .iter()
        .map(|l| (l.true_positives, l.predicted, l.support))
        .collect();
    assert_eq!(counts, [(1, 2, 2), (2, 3, 2), (0, 0, 1)]);
    assert_close(
        m.per_class.precision,
        (0.5 + 2.0 / 3.0) / 3.0,
        "per-class P",
    );
    assert_close(m.per_class.recall, (0.5 + 1.0) / 3.0, "per-class R");
    // F1 of the two means, not the mean of the per-label F1s.
    let (p, r) = (7.0 / 18.0, 0.5);
    assert_close(m.per_class.f1, 2.0 * p * r / (p + r), "per-class F1");
    assert_close(m.overall.precision, 3.0 / 5.0, "overall P");
    assert_close(m.overall.recall, 3.0 / 5.0, "overall R");
    assert_close(m.overall.f1, 0.6, "overall F1");
    assert_eq!(m.n_plus, 2);
    // AP: label 0 ranks pos, neg, pos -> 1/2 * 1 + 1/2 * 2/3; label 1 likewise; label 2 -> 1.
    let ap = 0.5 + 1.0 / 3.0;
    let aps: Vec<f64> = m
        .per_label
        .iter()
        .map(|l| l.average_precision.unwrap())
        .collect();
    for (got, want) in aps.iter().zip([ap, ap, 1.0]) {
        assert_close(*got, want, "AP");
    }
    assert_close(
        m.mean_average_precision.unwrap(),
        (2.0 * ap + 1.0) / 3.0,
        "mAP",
    );
    assert_eq!((m.num_samples, m.num_labels), (4, 3));
}

#[test]
fn hand_computed_metrics_with_per_label_thresholds() {
    let m = measure(
        &SCORES,
        &TARGETS,
        3,
        &Thresholds::from(vec![0.85, 0.5, 0.45]),
    )
    .unwrap();
    assert_close(
        m.per_class.precision,
        (1.0 + 2.0 / 3.0 + 1.0) / 3.0,
        "per-class P",
    );
    assert_close(m.per_class.recall, (0.5 + 1.0 + 1.0) / 3.0, "per-class R");
    assert_close(m.overall.precision, 4.0 / 5.0, "overall P");
    assert_close(m.overall.recall, 4.0 / 5.0, "overall R");
    assert_eq!(m.n_plus, 3);
    let thresholds: Vec<f32> = m.per_label.iter().map(|l| l.threshold).collect();
    assert_eq!(thresholds, [0.85, 0.5, 0.45]);
}

#[test]
fn global_threshold_equals_the_same_threshold_per_label() {
    for t in [0.05, 0.3, 0.55, 0.9] {
        let a = measure(&SCORES, &TARGETS, 3, &Thresholds::Global(t)).unwrap();
        let mut b = measure(&SCORES, &TARGETS, 3, &Thresholds::from(vec![t; 3])).unwrap();
        b.per_label.iter_mut().for_each(|l| l.threshold = t);
        assert_eq!(a, b);
    }
}

#[test]
fn mcc_hand_values() {
    assert_eq!(matthews_corrcoef(2, 1, 2, 1), 1.0 / 3.0);
    // (6*10 - 2*4) / sqrt(8 * 10 * 12 * 14)
    let want = 52.0 / (8.0f64 * 10.0 * 12.0 * 14.0).sqrt();
    assert!((matthews_corrcoef(6, 2, 10, 4) - want).abs() < 1e-15);
    assert_eq!(matthews_corrcoef(4, 0, 6, 0), 1.0);
    assert_eq!(matthews_corrcoef(0, 3, 0, 2), -1.0);
    // Undefined (a whole row or column of the confusion matrix empty): 0, as scikit-learn.
    assert_eq!(matthews_corrcoef(0, 0, 7, 3), 0.0);
    assert_eq!(matthews_corrcoef(5, 5, 0, 0), 0.0);
    assert_eq!(matthews_corrcoef(0, 0, 9, 0), 0.0);
}

#[test]
fn exact_mode_finds_the_cut_the_grid_misses() {
    // Perfectly separable between 0.36 and 0.37, which no grid value splits.
    let scores = [0.42, 0.40, 0.37, 0.36, 0.30, 0.02];
    let targets = [1.0, 1.0, 1.0, 0.0, 0.0, 0.0];
    let grid = calibrate(&scores, &targets, 1, ThresholdSearch::Grid).unwrap();
    // 0.35 keeps four (tp 3, fp 1), 0.40 keeps two (tp 2, fn 1): both MCC 1/sqrt(2);
    // the tie goes to the smaller threshold.
    assert_eq!(grid.thresholds, [0.35]);
    assert!((grid.mcc[0] - 0.5f64.sqrt()).abs() < 1e-15);
    let exact = calibrate(&scores, &targets, 1, ThresholdSearch::Exact).unwrap();
    assert_eq!(exact.mcc, [1.0]);
    let t = exact.thresholds[0];
    assert_eq!(
        t,
        ((0.36f32 as f64 + 0.37f32 as f64) / 2.0) as f32,
        "the midpoint"
    );
    let m = measure(&scores, &targets, 1, &exact.to_thresholds()).unwrap();
    assert_close(m.per_class.f1, 1.0, "perfect split");
}

#[test]
fn exact_cut_between_neighbouring_floats_keeps_the_split_under_strict_evaluation() {
    let lo = 0.3f32;
    let hi = lo.next_up();
    let scores = [hi, lo, hi, lo];
    let targets = [1.0, 0.0, 1.0, 0.0];
    let exact = calibrate(&scores, &targets, 1, ThresholdSearch::Exact).unwrap();
    // No f32 lies strictly between them: the threshold is `lo`, and `score > lo` is `score >= hi`.
    assert_eq!(exact.thresholds, [lo]);
    assert_eq!(exact.mcc, [1.0]);
    let m = measure(&scores, &targets, 1, &exact.to_thresholds()).unwrap();
    assert_eq!(
        (m.per_label[0].true_positives, m.per_label[0].predicted),
        (2, 2)
    );
}

#[test]
fn exact_mode_keeps_everything_when_no_cut_correlates() {
    // Anti-correlated: every proper cut has a negative MCC; predicting all gives 0.
    let scores = [0.9, 0.1, 0.2];
    let targets = [0.0, 1.0, 1.0];
    let exact = calibrate(&scores, &targets, 1, ThresholdSearch::Exact).unwrap();
    assert_eq!(exact.mcc, [0.0]);
    assert_eq!(exact.thresholds, [0.1f32.next_down()]);
    let m = measure(&scores, &targets, 1, &exact.to_thresholds()).unwrap();
    assert_eq!(m.per_label[0].predicted, 3);
}

#[test]
fn degenerate_labels_get_the_first_grid_value_in_both_searches() {
    // Columns: no positive, all positive, constant score with mixed targets.
    let scores = [0.9, 0.2, 0.4, 0.1, 0.8, 0.4, 0.5, 0.5, 0.4];
    let targets = [0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0];
    for search in [ThresholdSearch::Grid, ThresholdSearch::Exact] {
        let cal = calibrate(&scores, &targets, 3, search).unwrap();
        assert_eq!(cal.thresholds, [GRID[0]; 3], "{search}");
        assert_eq!(cal.mcc, [0.0; 3], "{search}");
    }
}

#[test]
fn grid_compares_in_f32_like_the_papers_numpy_code() {
    // f32(0.7) is below 0.7: a score equal to it passes `>= 0.7` in float32 (numpy, PyTorch).
    let edge = 0.7f32;
    assert!((edge as f64) < 0.7);
    let scores = [edge, edge, 0.69, 0.1];
    let targets = [1.0, 1.0, 0.0, 0.0];
    let grid = calibrate(&scores, &targets, 1, ThresholdSearch::Grid).unwrap();
    // 0.05..0.65 all keep three (MCC 0.577); only 0.70 separates perfectly.
    assert_eq!(grid.thresholds, [0.7]);
    assert_eq!(grid.mcc, [1.0]);
}

#[test]
fn shape_errors_are_reported() {
    let t = Thresholds::Global(0.5);
    let err = measure(&[0.1; 6], &[0.0; 5], 3, &t).unwrap_err();
    assert!(matches!(
        err,
        MetricsError::LengthMismatch {
            scores: 6,
            targets: 5
        }
    ));
    assert_eq!(err.to_string(), "shape mismatch: 6 scores but 5 targets");
    let err = measure(&[0.1; 7], &[0.0; 7], 3, &t).unwrap_err();
    assert!(
        matches!(
            err,
            MetricsError::Ragged {
                len: 7,
                num_classes: 3
            }
        ),
        "{err}"
    );
    assert!(matches!(
        measure(&[0.1; 3], &[0.0; 3], 0, &t),
        Err(MetricsError::NoClasses)
    ));
    assert!(matches!(
        measure(&[], &[], 3, &t),
        Err(MetricsError::NoSamples)
    ));
    let err = calibrate(&[0.1; 6], &[0.0; 4], 2, ThresholdSearch::Exact).unwrap_err();
    assert!(matches!(err, MetricsError::LengthMismatch { .. }));
}

#[test]
fn bad_values_are_reported_with_their_position() {
    let mut scores = SCORES;
    scores[5] = f32::NAN;
    let t = Thresholds::Global(0.5);
    for search in [
        None,
        Some(ThresholdSearch::Grid),
        Some(ThresholdSearch::Exact),
    ] {
        let err = match search {
            None => measure(&scores, &TARGETS, 3, &t).unwrap_err(),
            Some(search) => calibrate(&scores, &TARGETS, 3, search).unwrap_err(),
        };
        assert!(matches!(
            err,
            MetricsError::NonFiniteScore {
                row: 1,
                label: 2,
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "score of sample 1, label 2 is NaN: scores must be finite"
        );
    }
    scores[5] = f32::INFINITY;
    let err = measure(&scores, &TARGETS, 3, &t).unwrap_err();
    assert!(matches!(
        err,
        MetricsError::NonFiniteScore {
            row: 1,
            label: 2,
            ..
        }
    ));

    let mut targets = TARGETS;
    targets[4] = 0.5;
    let err = measure(&SCORES, &targets, 3, &t).unwrap_err();
    assert!(matches!(
        err,
        MetricsError::NonBinaryTarget {
            row: 1,
            label: 1,
            ..
        }
    ));
    assert!(err.to_string().contains("must be 0 or 1"), "{err}");
}

#[test]
fn threshold_errors_are_reported() {
    let err = measure(&SCORES, &TARGETS, 3, &Thresholds::from(vec![0.5, 0.5])).unwrap_err();
    assert!(matches!(
        err,
        MetricsError::ThresholdCount {
            expected: 3,
            got: 2
        }
    ));
    assert_eq!(
        err.to_string(),
        "2 per-label thresholds given for 3 classes"
    );
    let err = measure(
        &SCORES,
        &TARGETS,
        3,
        &Thresholds::from(vec![0.5, f32::NAN, 0.5]),
    )
    .unwrap_err();
    assert!(matches!(err, MetricsError::NanThreshold { label: 1 }));
    let err = measure(&SCORES, &TARGETS, 3, &Thresholds::Global(f32::NAN)).unwrap_err();
    assert!(matches!(err, MetricsError::NanThreshold { .. }));

    assert_eq!(
        "Exact".parse::<ThresholdSearch>().unwrap(),
        ThresholdSearch::Exact
    );
    assert_eq!(
        "grid".parse::<ThresholdSearch>().unwrap(),
        ThresholdSearch::Grid
    );
    let err = "mcc".parse::<ThresholdSearch>().unwrap_err();
    assert!(err.to_string().contains("\"mcc\""), "{err}");
    // Wrapped by the crate's error.
    let err: aia::Error = err.into();
    assert!(err.to_string().contains("expected \"grid\" or \"exact\""));
}

#[test]
fn tensors_give_the_slices_results() {
    let device = Default::default();
    let tensor = |v: &[f32]| Tensor::<Flex, 1>::from_floats(v, &device).reshape([4, 3]);
    let t = Thresholds::from(vec![0.85, 0.5, 0.45]);
    let from_tensors = measure_tensors(tensor(&SCORES), tensor(&TARGETS), &t).unwrap();
    assert_eq!(from_tensors, measure(&SCORES, &TARGETS, 3, &t).unwrap());
    for search in [ThresholdSearch::Grid, ThresholdSearch::Exact] {
        let cal = calibrate_tensors(tensor(&SCORES), tensor(&TARGETS), search).unwrap();
        assert_eq!(cal, calibrate(&SCORES, &TARGETS, 3, search).unwrap());
    }
    let wrong = Tensor::<Flex, 1>::from_floats(TARGETS, &device).reshape([3, 4]);
    let err = measure_tensors(tensor(&SCORES), wrong, &t).unwrap_err();
    assert!(matches!(err, MetricsError::Shape(_)));
    assert_eq!(
        err.to_string(),
        "shape mismatch: scores are [4, 3] but targets are [3, 4]"
    );
}

#[test]
fn report_prints_aligned_rows_and_round_trips_json() {
    let grid = calibrate(&SCORES, &TARGETS, 3, ThresholdSearch::Grid).unwrap();
    let exact = calibrate(&SCORES, &TARGETS, 3, ThresholdSearch::Exact).unwrap();
    let mut table = MetricsTable::default();
    for (name, t) in [
        ("0.5", Thresholds::Global(0.5)),
        ("MCC grid", grid.to_thresholds()),
        ("MCC exact", exact.to_thresholds()),
    ] {
        table.push(name, measure(&SCORES, &TARGETS, 3, &t).unwrap());
    }
    let text = table.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert!(lines[0].contains("N+") && lines[0].contains("F1"), "{text}");
    let bars = |l: &str| l.match_indices('|').map(|(i, _)| i).collect::<Vec<_>>();
    for l in &lines[2..] {
        assert_eq!(bars(l), bars(lines[0]), "columns line up:\n{text}");
    }
    // The 0.5 row: per-class P 0.389, R 0.500, F1 0.437, N+ 2.
    assert!(
        lines[2].starts_with("0.5 ") && lines[2].contains("0.389  0.500  0.437    2"),
        "{text}"
    );
    assert_eq!(table.to_markdown().lines().count(), 5);

    let m = &table.rows()[0].1;
    assert!(
        m.to_string()
            .starts_with("P 0.389  R 0.500  F1 0.437  N+ 2"),
        "{m}"
    );
    let json = m.to_json().unwrap();
    assert!(json.contains("\"n_plus\": 2"), "{json}");
    // serde_json parses floats to within an ulp, not always exactly.
    let back: AnnotationMetrics = serde_json::from_str(&json).unwrap();
    assert_eq!((back.n_plus, back.num_samples), (m.n_plus, m.num_samples));
    assert!((back.per_class.f1 - m.per_class.f1).abs() < 1e-15);
    assert!((back.overall.recall - m.overall.recall).abs() < 1e-15);
    assert_eq!(back.per_label.len(), 3);
    for (b, l) in back.per_label.iter().zip(&m.per_label) {
        assert_eq!(
            (b.true_positives, b.predicted, b.support),
            (l.true_positives, l.predicted, l.support)
        );
        assert_eq!(b.threshold, l.threshold);
        assert!((b.f1 - l.f1).abs() < 1e-15);
    }
    let back: MetricsTable = serde_json::from_str(&table.to_json().unwrap()).unwrap();
    let names: Vec<&str> = back.rows().iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["0.5", "MCC grid", "MCC exact"]);
}

#[test]
fn reports_written_before_the_renames_still_load() {
    // An evaluation table row and a calibration as `evaluation.json` held them when the overall
    // averages were called `per_image` and the threshold search `mode`.
    let row = r#"{"num_samples": 2, "num_labels": 1,
        "per_class": {"precision": 0.5, "recall": 1.0, "f1": 0.667},
        "per_image": {"precision": 0.25, "recall": 0.75, "f1": 0.375},
        "n_plus": 1, "mean_average_precision": 0.9,
        "per_label": [{"index": 0, "label": "sky", "support": 1, "predicted": 2,
            "true_positives": 1, "precision": 0.5, "recall": 1.0, "f1": 0.667,
            "threshold": 0.5, "average_precision": 0.9}]}"#;
    let m: AnnotationMetrics = serde_json::from_str(row).unwrap();
    assert_eq!((m.overall.precision, m.overall.recall), (0.25, 0.75));
    assert_eq!(m.mean_average_precision, Some(0.9));
    assert_eq!(m.per_label[0].label.as_deref(), Some("sky"));
    assert!(m.extra.is_empty());
    let json = m.to_json().unwrap();
    assert!(
        json.contains("\"overall\"") && !json.contains("per_image"),
        "{json}"
    );

    let calibration = r#"{"mode": "exact", "thresholds": [0.3], "mcc": [0.8]}"#;
    let calibration: aia::threshold::Calibration = serde_json::from_str(calibration).unwrap();
    assert_eq!(calibration.search, ThresholdSearch::Exact);
    assert_eq!(calibration.thresholds, [0.3]);
}

#[test]
fn label_table_names_labels_from_the_vocabulary() {
    let m = measure(&SCORES, &TARGETS, 3, &Thresholds::Global(0.5)).unwrap();
    let unnamed = m.label_table().to_string();
    assert!(
        unnamed.lines().nth(1).unwrap().starts_with("#0 "),
        "{unnamed}"
    );
    let vocabulary: Vec<String> = ["sky", "water", "tiger"].map(String::from).to_vec();
    let named = m.clone().with_vocabulary(Some(&vocabulary)).unwrap();
    let text = named.label_table().to_string();
    assert_eq!(text.lines().count(), 4);
    let tiger = text.lines().nth(3).unwrap();
    // tiger: support 1, predicted 0, tp 0, P R F1 0, AP 1, threshold 0.5
    let fields: Vec<&str> = tiger.split_whitespace().collect();
    assert_eq!(
        fields,
        ["tiger", "1", "0", "0", "0.000", "0.000", "0.000", "1.000", "0.5000"]
    );
    assert_eq!(named.per_label[1].label.as_deref(), Some("water"));
    assert_eq!(m.clone().with_vocabulary(None).unwrap(), m);
    let err = m.with_vocabulary(Some(&vocabulary[..2])).unwrap_err();
    assert!(matches!(
        err,
        MetricsError::VocabularyLength {
            expected: 3,
            got: 2
        }
    ));
}
