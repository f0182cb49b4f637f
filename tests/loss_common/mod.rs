//! Shared by the loss tests: the PyTorch fixtures and the comparisons.
#![allow(dead_code)]

use aia::loss::{AsymmetricLoss, AsymmetricLossConfig, LossPreset, Reduction};
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor, TensorData};
use serde::Deserialize;

/// The tolerance against the PyTorch fixtures: 1e-5 relative, 1e-6 absolute.
pub const RTOL: f64 = 1e-5;
/// See [`RTOL`].
pub const ATOL: f64 = 1e-6;

#[derive(Deserialize)]
pub struct Fixtures {
    pub shape: [usize; 2],
    pub logits: Vec<f32>,
    pub targets: Vec<f32>,
    /// The targets of the cases marked `soft`.
    pub soft_targets: Vec<f32>,
    pub cases: Vec<Case>,
}

#[derive(Deserialize)]
pub struct Case {
    pub name: String,
    pub gamma_neg: f64,
    pub gamma_pos: f64,
    pub pos_margin: f64,
    pub neg_margin: f64,
    #[serde(alias = "threshold")]
    pub switch_probability: f64,
    pub eps: f64,
    pub reduction: String,
    /// Whether the case is on the soft targets.
    pub soft: bool,
    pub loss: f64,
    pub grad_logits: Vec<f64>,
    pub grad_targets: Vec<f64>,
}

impl Case {
    pub fn config(&self) -> AsymmetricLossConfig {
        AsymmetricLossConfig::new()
            .with_gamma_neg(self.gamma_neg)
            .with_gamma_pos(self.gamma_pos)
            .with_pos_margin(self.pos_margin)
            .with_neg_margin(self.neg_margin)
            .with_switch_probability(self.switch_probability)
            .with_eps(self.eps)
            .with_reduction(match self.reduction.as_str() {
                "mean" => Reduction::Mean,
                "sum" => Reduction::Sum,
                other => panic!("unknown reduction {other}"),
            })
    }
}

/// Read at compile time, relative to this file, so the crates under `tests/` that include this
/// module find the fixtures too.
pub fn fixtures() -> Fixtures {
    let text = include_str!("../fixtures/loss/asymmetric.json");
    serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("tests/fixtures/loss/asymmetric.json: {e}"))
}

pub fn assert_close<A: Copy + Into<f64>, E: Copy + Into<f64>>(got: &[A], want: &[E], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let mut worst = (0.0f64, 0usize);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let (g, w): (f64, f64) = (g.into(), w.into());
        let excess = (g - w).abs() / (ATOL + RTOL * w.abs());
        assert!(!g.is_nan(), "{what}[{i}]: got NaN, want {w}");
        if excess > worst.0 {
            worst = (excess, i);
        }
    }
    let i = worst.1;
    assert!(
        worst.0 <= 1.0,
        "{what}[{i}]: got {}, want {} (|diff| is {:.2}x the tolerance)",
        got[i].into(),
        want[i].into(),
        worst.0
    );
}

#[derive(Clone, Copy, Debug)]
pub enum Impl {
    Fused,
    Composed,
}

pub fn run<B: Backend>(
    which: Impl,
    loss: &AsymmetricLoss,
    x: Tensor<B, 2>,
    y: Tensor<B, 2>,
) -> Tensor<B, 1> {
    match which {
        Impl::Fused => loss.forward(x, y),
        Impl::Composed => loss.forward_composed(x, y),
    }
}

/// Loss and gradients (logits, targets) of one implementation under autodiff.
pub fn loss_and_grads<B: Backend>(
    which: Impl,
    loss: &AsymmetricLoss,
    x: Tensor<B, 2>,
    y: Tensor<B, 2>,
) -> (f32, Vec<f32>, Vec<f32>) {
    let x = Tensor::<Autodiff<B>, 2>::from_inner(x).require_grad();
    let y = Tensor::<Autodiff<B>, 2>::from_inner(y).require_grad();
    let l = run(which, loss, x.clone(), y.clone());
    let grads = l.backward();
    let gx = x.grad(&grads).expect("logits gradient");
    let gy = y.grad(&grads).expect("targets gradient");
    (
        l.into_data().convert::<f32>().to_vec::<f32>().unwrap()[0],
        gx.into_data().convert::<f32>().to_vec().unwrap(),
        gy.into_data().convert::<f32>().to_vec().unwrap(),
    )
}

pub fn check_fixtures<B: Backend>(which: Impl) {
    let f = fixtures();
    let device = Default::default();
    let x = Tensor::<B, 2>::from_data(TensorData::new(f.logits.clone(), f.shape), &device);
    let hard = Tensor::<B, 2>::from_data(TensorData::new(f.targets.clone(), f.shape), &device);
    let soft = Tensor::<B, 2>::from_data(TensorData::new(f.soft_targets.clone(), f.shape), &device);
    assert_eq!(f.cases.len(), 12);
    for case in &f.cases {
        let loss = case.config().init();
        let y = if case.soft {
            soft.clone()
        } else {
            hard.clone()
        };
        let (value, gx, gy) = loss_and_grads(which, &loss, x.clone(), y);
        let what = format!("{which:?} {}", case.name);
        assert_close(&[value], &[case.loss], &format!("{what} loss"));
        assert_close(&gx, &case.grad_logits, &format!("{what} d/dlogits"));
        assert_close(&gy, &case.grad_targets, &format!("{what} d/dtargets"));
    }
}

/// Fused and composed agree (loss and both gradients) on random inputs of this size, with hard
/// (0/1) or soft (uniform in [0, 1]) targets.
pub fn compare_fused_composed<B: Backend>(rows: usize, cols: usize, range: f64, soft: bool) {
    let device = Default::default();
    let x = Tensor::<B, 2>::random([rows, cols], Distribution::Uniform(-range, range), &device);
    let targets = if soft {
        Distribution::Uniform(0.0, 1.0)
    } else {
        Distribution::Bernoulli(0.3)
    };
    let y = Tensor::<B, 2>::random([rows, cols], targets, &device);
    let mut configs: Vec<_> = LossPreset::ALL
        .iter()
        .map(|p| (p.name(), p.config()))
        .collect();
    configs.push((
        "fractional",
        AsymmetricLossConfig::new()
            .with_gamma_neg(2.5)
            .with_gamma_pos(1.5)
            .with_reduction(Reduction::Sum),
    ));
    // Every option on, with and without the margin, and smoothing with fractional focusing.
    let class_weight: Vec<f64> = (0..cols).map(|c| (c % 5) as f64 * 0.5).collect();
    let pos_weight: Vec<f64> = (0..cols).map(|c| 0.5 + (c % 3) as f64).collect();
    let all = |c: AsymmetricLossConfig| {
        c.with_reduction(Reduction::BatchMean)
            .with_smoothing(0.1)
            .with_weight(Some(class_weight.clone()))
            .with_pos_weight(Some(pos_weight.clone()))
            .with_detach_focusing(true)
    };
    configs.push((
        "proposed_all_options",
        all(AsymmetricLossConfig::proposed()),
    ));
    configs.push(("focal_all_options", all(AsymmetricLossConfig::focal())));
    configs.push((
        "fractional_smoothing",
        AsymmetricLossConfig::new()
            .with_gamma_neg(2.5)
            .with_gamma_pos(1.5)
            .with_smoothing(0.3)
            .with_pos_weight(Some(vec![2.0])),
    ));
    configs.push((
        "asymmetric_weighted_sum",
        AsymmetricLossConfig::asymmetric()
            .with_weight(Some(class_weight.clone()))
            .with_reduction(Reduction::Sum),
    ));
    for (name, config) in configs {
        let loss = config.init();
        let fused = loss_and_grads(Impl::Fused, &loss, x.clone(), y.clone());
        let composed = loss_and_grads(Impl::Composed, &loss, x.clone(), y.clone());
        let what = format!("{name} {rows}x{cols}");
        assert_close(&[fused.0], &[composed.0], &format!("{what} loss"));
        assert_close(&fused.1, &composed.1, &format!("{what} d/dlogits"));
        assert_close(&fused.2, &composed.2, &format!("{what} d/dtargets"));
    }
}

/// The fixtures of timm's `AsymmetricLossMultiLabel` (`scripts/loss_timm_fixtures.py`).
#[derive(Deserialize)]
pub struct TimmFixtures {
    pub shape: [usize; 2],
    pub logits: Vec<f32>,
    pub targets: Vec<f32>,
    /// The targets of the cases marked `soft`.
    pub soft_targets: Vec<f32>,
    /// The incoming gradient of the `none` cases' per-element losses.
    pub upstream: Vec<f32>,
    pub cases: Vec<TimmCase>,
}

#[derive(Deserialize)]
pub struct TimmCase {
    pub name: String,
    pub gamma_neg: f64,
    pub gamma_pos: f64,
    pub pos_margin: f64,
    pub neg_margin: f64,
    #[serde(alias = "threshold")]
    pub switch_probability: f64,
    pub eps: f64,
    pub reduction: String,
    pub smoothing: f64,
    pub weight: Option<Vec<f64>>,
    pub pos_weight: Option<Vec<f64>>,
    pub detach_focusing: bool,
    /// Whether the case is on the soft targets.
    pub soft: bool,
    /// One value, or the per-element losses with `none`.
    pub loss: Vec<f64>,
    pub grad_logits: Vec<f64>,
}

impl TimmCase {
    pub fn config(&self) -> AsymmetricLossConfig {
        AsymmetricLossConfig::new()
            .with_gamma_neg(self.gamma_neg)
            .with_gamma_pos(self.gamma_pos)
            .with_pos_margin(self.pos_margin)
            .with_neg_margin(self.neg_margin)
            .with_switch_probability(self.switch_probability)
            .with_eps(self.eps)
            .with_reduction(self.reduction.parse().expect("a reduction name"))
            .with_smoothing(self.smoothing)
            .with_weight(self.weight.clone())
            .with_pos_weight(self.pos_weight.clone())
            .with_detach_focusing(self.detach_focusing)
    }
}

pub fn timm_fixtures() -> TimmFixtures {
    let text = include_str!("../fixtures/loss/timm.json");
    serde_json::from_str(text).unwrap_or_else(|e| panic!("tests/fixtures/loss/timm.json: {e}"))
}

/// One implementation against every timm case: the loss (each element's with `none`) and the
/// gradient of the logits under autodiff (for the fixture's upstream gradients with `none`).
pub fn check_timm_fixtures<B: Backend>(which: Impl) {
    let f = timm_fixtures();
    let device = Default::default();
    type A<B> = Autodiff<B>;
    assert_eq!(f.cases.len(), 24);
    for case in &f.cases {
        let loss = case.config().try_init().expect("a valid configuration");
        let x = Tensor::<A<B>, 2>::from_data(TensorData::new(f.logits.clone(), f.shape), &device)
            .require_grad();
        let targets = if case.soft {
            &f.soft_targets
        } else {
            &f.targets
        };
        let y = Tensor::<A<B>, 2>::from_data(TensorData::new(targets.clone(), f.shape), &device);
        let l = run(which, &loss, x.clone(), y);
        let what = format!("{which:?} {}", case.name);
        let values: Vec<f32> = l.clone().into_data().convert::<f32>().to_vec().unwrap();
        assert_close(&values, &case.loss, &format!("{what} loss"));
        let root = if loss.reduction() == Reduction::None {
            let up = Tensor::<A<B>, 1>::from_data(
                TensorData::new(f.upstream.clone(), [values.len()]),
                &device,
            );
            (l * up).sum()
        } else {
            l
        };
        let gx: Vec<f32> = x
            .grad(&root.backward())
            .expect("logits gradient")
            .into_data()
            .convert::<f32>()
            .to_vec()
            .unwrap();
        assert_close(&gx, &case.grad_logits, &format!("{what} d/dlogits"));
    }
}
