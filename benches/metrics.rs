//! MCC threshold calibration at IAPR TC-12's size (17,665 training images x 291 labels), grid and
//! exact, on one core and on rayon's default pool; `evaluate` at the test split's size.
//!
//! Before timing, prints what exact thresholds gain over the grid on a synthetic but realistic
//! score distribution (calibrated on a training split, measured on a test split).

use std::time::Duration;

use aia::metrics::{measure, MetricsTable, Thresholds};
use aia::threshold::{calibrate, ThresholdSearch};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const LABELS: usize = 291;
const TRAIN: usize = 17_665;
const TEST: usize = 1_962;

/// Per-label score model: logits of negatives ~ N(neg, sd), of positives ~ N(pos, sd).
struct Label {
    prevalence: f64,
    neg: f64,
    pos: f64,
    sd: f64,
}

/// Labels like a trained annotator's: rare labels (0.1%..15%, mean about 2% as in IAPR TC-12),
/// negatives mostly near 0, positives spread, the rarer the less separable and the lower.
fn labels(rng: &mut StdRng) -> Vec<Label> {
    (0..LABELS)
        .map(|i| {
            let prevalence = 0.001 * 150f64.powf(i as f64 / (LABELS - 1) as f64);
            let rarity = 1.0 - i as f64 / (LABELS - 1) as f64;
            Label {
                prevalence,
                neg: rng.random_range(-5.0..-2.5),
                pos: rng.random_range(-1.5..1.5) - 1.5 * rarity,
                sd: rng.random_range(1.0..2.0),
            }
        })
        .collect()
}

fn normal(rng: &mut StdRng) -> f64 {
    // Box-Muller.
    let (u, v): (f64, f64) = (rng.random_range(f64::EPSILON..1.0), rng.random());
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

fn sample(labels: &[Label], rows: usize, rng: &mut StdRng) -> (Vec<f32>, Vec<f32>) {
    let mut scores = Vec::with_capacity(rows * labels.len());
    let mut targets = Vec::with_capacity(rows * labels.len());
    for _ in 0..rows {
        for l in labels {
            let y = rng.random_bool(l.prevalence);
            let mean = if y { l.pos } else { l.neg };
            let logit = mean + l.sd * normal(rng);
            scores.push((1.0 / (1.0 + (-logit).exp())) as f32);
            targets.push(y as u8 as f32);
        }
    }
    (scores, targets)
}

/// Exact versus grid thresholds, calibrated on `train`, measured on `train` and on `test`.
fn report_exact_gain(train: &(Vec<f32>, Vec<f32>), test: &(Vec<f32>, Vec<f32>)) {
    let grid = calibrate(&train.0, &train.1, LABELS, ThresholdSearch::Grid).unwrap();
    let exact = calibrate(&train.0, &train.1, LABELS, ThresholdSearch::Exact).unwrap();
    println!(
        "Synthetic IAPR-sized set, thresholds calibrated on {TRAIN} images \
         (mean MCC grid {:.4}, exact {:.4}):",
        grid.mean_mcc(),
        exact.mean_mcc()
    );
    for (split, data) in [("calibration split", train), ("held-out split", test)] {
        let mut table = MetricsTable::default();
        for (name, t) in [
            ("0.5", Thresholds::Global(0.5)),
            ("MCC grid", grid.to_thresholds()),
            ("MCC exact", exact.to_thresholds()),
        ] {
            table.push(name, measure(&data.0, &data.1, LABELS, &t).unwrap());
        }
        let f1 = |i: usize| table.rows()[i].1.per_class.f1;
        println!("{split} ({} images):\n{table}", data.0.len() / LABELS);
        println!("exact - grid per-class F1: {:+.4}\n", f1(2) - f1(1));
    }
}

fn bench(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(5);
    let labels = labels(&mut rng);
    let train = sample(&labels, TRAIN, &mut rng);
    let test = sample(&labels, TEST, &mut rng);
    report_exact_gain(&train, &test);

    let one_core = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let mut group = c.benchmark_group(format!("calibrate_{TRAIN}x{LABELS}"));
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for search in [ThresholdSearch::Grid, ThresholdSearch::Exact] {
        group.bench_function(BenchmarkId::new(search.to_string(), "one_core"), |b| {
            b.iter(|| one_core.install(|| calibrate(&train.0, &train.1, LABELS, search).unwrap()))
        });
        group.bench_function(BenchmarkId::new(search.to_string(), "all_cores"), |b| {
            b.iter(|| calibrate(&train.0, &train.1, LABELS, search).unwrap())
        });
    }
    group.finish();

    let thresholds = calibrate(&train.0, &train.1, LABELS, ThresholdSearch::Exact)
        .unwrap()
        .to_thresholds();
    let mut group = c.benchmark_group(format!("evaluate_{TEST}x{LABELS}"));
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    group.bench_function("one_core", |b| {
        b.iter(|| one_core.install(|| measure(&test.0, &test.1, LABELS, &thresholds).unwrap()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
