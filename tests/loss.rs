//! The asymmetric loss family against PyTorch fixtures, the fused kernels against the composed
//! reference, and the error cases.

#[path = "loss_common/mod.rs"]
mod common;

use aia::loss::{AsymmetricLossConfig, LossError, LossPreset, Reduction};
use burn::backend::{Autodiff, Flex};
use burn::tensor::{Distribution, Tensor, TensorData};

use common::{assert_close, check_fixtures, check_timm_fixtures, compare_fused_composed, Impl};

type F = Flex;
type Ad = Autodiff<Flex>;

#[test]
fn composed_matches_torch_fixtures() {
    check_fixtures::<F>(Impl::Composed);
}

#[test]
fn fused_matches_torch_fixtures() {
    check_fixtures::<F>(Impl::Fused);
}

#[cfg(feature = "ndarray")]
#[test]
fn ndarray_fused_and_composed_match_torch_fixtures() {
    check_fixtures::<burn::backend::NdArray>(Impl::Fused);
    check_fixtures::<burn::backend::NdArray>(Impl::Composed);
    check_timm_fixtures::<burn::backend::NdArray>(Impl::Fused);
    check_timm_fixtures::<burn::backend::NdArray>(Impl::Composed);
}

#[test]
fn composed_matches_timm_fixtures() {
    check_timm_fixtures::<F>(Impl::Composed);
}

#[test]
fn fused_matches_timm_fixtures() {
    check_timm_fixtures::<F>(Impl::Fused);
}

#[test]
fn fused_matches_composed_on_random_inputs() {
    // 7x33 leaves a tail after the 16-lane blocks; 300x130 is split across threads.
    for (rows, cols) in [(7, 33), (300, 130)] {
        compare_fused_composed::<F>(rows, cols, 12.0, false);
    }
}

#[test]
fn fused_matches_composed_with_soft_targets() {
    // Soft targets take the kernel's general path, which computes both terms.
    compare_fused_composed::<F>(7, 33, 12.0, true);
    compare_fused_composed::<F>(300, 130, 30.0, true);
}

/// A backend the crate has no kernel for (here Flex under autodiff with gradient checkpointing)
/// runs the composed reference: the same loss and gradients as the composed path, through the
/// same `forward` call and with no bound beyond Burn's.
#[test]
fn forward_runs_on_a_backend_without_a_kernel() {
    use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
    type Other = Autodiff<Flex, BalancedCheckpointing>;

    let device = Default::default();
    let x = Tensor::<F, 2>::random([9, 21], Distribution::Uniform(-8.0, 8.0), &device);
    let y = Tensor::<F, 2>::random([9, 21], Distribution::Bernoulli(0.3), &device);
    for preset in LossPreset::ALL {
        let loss = preset.config().init();
        let grads_of = |composed: bool| {
            let xo = Tensor::<Other, 2>::from_inner(x.clone()).require_grad();
            let yo = Tensor::<Other, 2>::from_inner(y.clone());
            let l = if composed {
                loss.forward_composed(xo.clone(), yo)
            } else {
                loss.forward(xo.clone(), yo)
            };
            let g = xo.grad(&l.backward()).unwrap();
            (l.into_scalar(), g.into_data().to_vec::<f32>().unwrap())
        };
        assert_eq!(grads_of(false), grads_of(true), "{preset}");
        // And it agrees with the fused kernel on the default autodiff backend.
        let (want, want_grad, _) = common::loss_and_grads(Impl::Fused, &loss, x.clone(), y.clone());
        let (got, got_grad) = grads_of(false);
        assert_close(&[got], &[want], &format!("{preset} loss"));
        assert_close(&got_grad, &want_grad, &format!("{preset} gradient"));
    }
}

#[test]
fn fused_forward_is_the_same_with_and_without_autodiff() {
    let device = Default::default();
    let x = Tensor::<F, 2>::random([9, 21], Distribution::Uniform(-8.0, 8.0), &device);
    let y = Tensor::<F, 2>::random([9, 21], Distribution::Bernoulli(0.3), &device);
    for preset in LossPreset::ALL {
        let loss = preset.config().init();
        let plain = loss.forward(x.clone(), y.clone()).into_scalar();
        let tracked = loss
            .forward(
                Tensor::<Ad, 2>::from_inner(x.clone()).require_grad(),
                Tensor::<Ad, 2>::from_inner(y.clone()),
            )
            .into_scalar();
        assert_eq!(plain, tracked, "{preset}");
    }
}

#[test]
fn extreme_logits_give_finite_loss_and_gradient() {
    let device = Default::default();
    let x = Tensor::<Ad, 2>::from_floats([[1e4, -1e4, 1e4, -1e4, 0.0, 88.0, -88.0]], &device)
        .require_grad();
    let y = Tensor::<Ad, 2>::from_floats([[1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0]], &device);
    for preset in LossPreset::ALL {
        let loss = preset.config().init();
        for fused in [true, false] {
            let l = if fused {
                loss.forward(x.clone(), y.clone())
            } else {
                loss.forward_composed(x.clone(), y.clone())
            };
            let grads = l.backward();
            let g: Vec<f32> = x.grad(&grads).unwrap().into_data().to_vec().unwrap();
            let value = l.into_scalar();
            assert!(value.is_finite(), "{preset} fused={fused}: loss {value}");
            assert!(
                g.iter().all(|v| v.is_finite()),
                "{preset} fused={fused}: {g:?}"
            );
            // The clamps bound every term by -ln(eps): 18.42 per element.
            assert!(value <= 18.43, "{preset} fused={fused}: loss {value}");
        }
    }
}

#[test]
fn incoming_gradient_scales_the_fused_gradient() {
    let device = Default::default();
    let x =
        Tensor::<Ad, 2>::random([5, 40], Distribution::Uniform(-6.0, 6.0), &device).require_grad();
    let y = Tensor::<Ad, 2>::random([5, 40], Distribution::Bernoulli(0.5), &device);
    let loss = AsymmetricLossConfig::proposed().init();
    let g1 = x
        .grad(&loss.forward(x.clone(), y.clone()).backward())
        .unwrap();
    let g3 = x
        .grad(
            &loss
                .forward(x.clone(), y.clone())
                .mul_scalar(3.0)
                .backward(),
        )
        .unwrap();
    assert_close(
        &g3.into_data().to_vec::<f32>().unwrap(),
        &g1.mul_scalar(3.0).into_data().to_vec::<f32>().unwrap(),
        "3 * loss",
    );
}

#[test]
fn non_contiguous_inputs_are_read_correctly() {
    let device = Default::default();
    let x = Tensor::<F, 2>::random([33, 7], Distribution::Uniform(-5.0, 5.0), &device);
    let y = Tensor::<F, 2>::random([33, 7], Distribution::Bernoulli(0.4), &device);
    let loss = AsymmetricLossConfig::proposed().init();
    let fused = loss.forward(x.clone().transpose(), y.clone().transpose());
    let composed = loss.forward_composed(x.transpose(), y.transpose());
    assert_close(
        &fused.into_data().to_vec::<f32>().unwrap(),
        &composed.into_data().to_vec::<f32>().unwrap(),
        "transposed",
    );
}

#[test]
fn checked_forward_rejects_bad_inputs() {
    let device = Default::default();
    let loss = AsymmetricLossConfig::proposed().init();
    let x = Tensor::<F, 2>::from_floats([[0.5, -1.0, 2.0], [1.0, 0.0, -3.0]], &device);
    let y = Tensor::<F, 2>::from_floats([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]], &device);

    let ok = loss.forward_checked(x.clone(), y.clone()).unwrap();
    assert_eq!(
        ok.into_scalar(),
        loss.forward(x.clone(), y.clone()).into_scalar()
    );

    let wide = Tensor::<F, 2>::zeros([2, 4], &device);
    match loss.forward_checked(x.clone(), wide) {
        Err(LossError::ShapeMismatch { logits, targets }) => {
            assert_eq!((logits, targets), (vec![2, 3], vec![2, 4]));
        }
        other => panic!("expected a shape mismatch, got {other:?}"),
    }

    let soft = Tensor::<F, 2>::from_floats([[1.0, 0.0, 0.0], [0.0, 0.5, 1.0]], &device);
    match loss.forward_checked(x.clone(), soft) {
        Err(LossError::TargetNotBinary { row, col, value }) => {
            assert_eq!((row, col, value), (1, 1, 0.5));
        }
        other => panic!("expected a non-binary target, got {other:?}"),
    }

    let nan = Tensor::<F, 2>::from_data(
        TensorData::from([[0.5f32, -1.0, 2.0], [1.0, 0.0, f32::NAN]]),
        &device,
    );
    match loss.forward_checked(nan, y) {
        Err(e @ LossError::NanLogit { row: 1, col: 2 }) => {
            assert!(e.to_string().contains("row 1, class 2"), "{e}");
        }
        other => panic!("expected a NaN logit, got {other:?}"),
    }
}

#[test]
fn presets_have_the_table_values_and_parse_by_name() {
    let table = [
        ("bce", 0.0, 0.0, 0.0, 0.0),
        ("focal", 3.0, 3.0, 0.0, 0.0),
        ("asymmetric", 4.0, 0.0, 0.0, 0.05),
        ("proposed", 4.0, 3.0, 1.1, 0.05),
    ];
    for (name, gn, gp, pm, nm) in table {
        let preset: LossPreset = name.parse().unwrap();
        assert_eq!(preset.to_string(), name);
        let c = preset.config();
        assert_eq!(
            (c.gamma_neg, c.gamma_pos, c.pos_margin, c.neg_margin),
            (gn, gp, pm, nm),
            "{name}"
        );
        assert_eq!(c.eps, 1e-8);
        assert_eq!(c.reduction, Reduction::Mean);
    }
    assert_eq!(AsymmetricLossConfig::proposed().switch_probability, 0.25);
    assert_eq!(
        LossPreset::default().config(),
        AsymmetricLossConfig::default()
    );
    assert!(matches!(
        "huber".parse::<LossPreset>(),
        Err(LossError::UnknownPreset(s)) if s == "huber"
    ));
}

#[test]
fn bce_preset_is_plain_binary_cross_entropy() {
    // Hand-computed: -(ln s(2) + ln(1 - s(-1))) / 2 with s the sigmoid.
    let device = Default::default();
    let x = Tensor::<F, 2>::from_floats([[2.0, -1.0]], &device);
    let y = Tensor::<F, 2>::from_floats([[1.0, 0.0]], &device);
    let s = |v: f64| 1.0 / (1.0 + (-v).exp());
    let want = -((s(2.0)).ln() + (1.0 - s(-1.0)).ln()) / 2.0;
    let loss = AsymmetricLossConfig::bce().init();
    for got in [
        loss.forward(x.clone(), y.clone()).into_scalar(),
        loss.forward_composed(x, y).into_scalar(),
    ] {
        assert!((got as f64 - want).abs() < 1e-6, "{got} vs {want}");
    }
}

#[test]
fn no_reduction_gives_each_elements_loss_and_gradient() {
    let device = Default::default();
    let (rows, cols) = (37, 301);
    let x = Tensor::<F, 2>::random([rows, cols], Distribution::Uniform(-9.0, 9.0), &device);
    let y = Tensor::<F, 2>::random([rows, cols], Distribution::Bernoulli(0.3), &device);
    let up = Tensor::<F, 2>::random([rows, cols], Distribution::Uniform(-1.0, 2.0), &device);
    let weight: Vec<f64> = (0..cols).map(|c| (c % 7) as f64 / 3.0).collect();
    for config in [
        AsymmetricLossConfig::proposed(),
        AsymmetricLossConfig::proposed()
            .with_weight(Some(weight))
            .with_pos_weight(Some(vec![1.5]))
            .with_smoothing(0.05)
            .with_detach_focusing(true),
    ] {
        let loss = config.with_reduction(Reduction::None).init();
        let run = |composed: bool| {
            let xa = Tensor::<Ad, 2>::from_inner(x.clone()).require_grad();
            let ya = Tensor::<Ad, 2>::from_inner(y.clone()).require_grad();
            let l = if composed {
                loss.forward_composed(xa.clone(), ya.clone())
            } else {
                loss.forward(xa.clone(), ya.clone())
            };
            assert_eq!(l.dims(), [rows * cols]);
            let values: Vec<f32> = l.clone().into_data().to_vec().unwrap();
            let upa = Tensor::<Ad, 2>::from_inner(up.clone()).reshape([rows * cols]);
            let grads = (l * upa).sum().backward();
            let gx: Vec<f32> = xa.grad(&grads).unwrap().into_data().to_vec().unwrap();
            let gy: Vec<f32> = ya.grad(&grads).unwrap().into_data().to_vec().unwrap();
            (values, gx, gy)
        };
        let (fused, composed) = (run(false), run(true));
        assert_close(&fused.0, &composed.0, "per-element losses");
        assert_close(&fused.1, &composed.1, "d/dlogits");
        assert_close(&fused.2, &composed.2, "d/dtargets");
        // The reductions are sums of the same elements.
        let total: f64 = fused.0.iter().map(|&v| v as f64).sum();
        let reduced = |r: Reduction| loss.clone().with_reduction(r).forward(x.clone(), y.clone());
        let sum = reduced(Reduction::Sum).into_scalar() as f64;
        let batchmean = reduced(Reduction::BatchMean).into_scalar() as f64;
        assert!(
            (sum - total).abs() <= 1e-4 * total.abs(),
            "{sum} vs {total}"
        );
        assert!(
            (batchmean - total / rows as f64).abs() <= 1e-4 * total.abs() / rows as f64,
            "{batchmean}"
        );
        let elementwise = loss.forward_elementwise(x.clone(), y.clone());
        assert_eq!(elementwise.dims(), [rows, cols]);
    }
}

#[test]
fn options_are_validated() {
    let bad = [
        AsymmetricLossConfig::proposed().with_smoothing(1.0),
        AsymmetricLossConfig::proposed().with_smoothing(-0.1),
        AsymmetricLossConfig::proposed().with_smoothing(f64::NAN),
        AsymmetricLossConfig::proposed().with_weight(Some(vec![1.0, -1.0])),
        AsymmetricLossConfig::proposed().with_pos_weight(Some(vec![f64::INFINITY])),
        AsymmetricLossConfig::proposed().with_gamma_neg(-1.0),
        AsymmetricLossConfig::proposed().with_eps(0.0),
    ];
    for config in bad {
        match config.try_init() {
            Err(e @ LossError::InvalidOption { .. }) => {
                assert!(e.to_string().contains("loss option"))
            }
            other => panic!("{config:?}: expected an invalid option, got {other:?}"),
        }
    }
    assert!(matches!(
        AsymmetricLossConfig::proposed()
            .with_weight(Some(vec![]))
            .try_init(),
        Err(LossError::EmptyWeights("weight"))
    ));

    let device = Default::default();
    let x = Tensor::<F, 2>::zeros([2, 3], &device);
    let y = Tensor::<F, 2>::zeros([2, 3], &device);
    let loss = AsymmetricLossConfig::proposed()
        .with_pos_weight(Some(vec![1.0, 2.0]))
        .try_init()
        .unwrap();
    match loss.forward_checked(x.clone(), y.clone()) {
        Err(LossError::WeightLength { name, len, classes }) => {
            assert_eq!((name, len, classes), ("pos_weight", 2, 3))
        }
        other => panic!("expected a weight length error, got {other:?}"),
    }
    let config = AsymmetricLossConfig::proposed().with_weight(Some(vec![1.0; 4]));
    assert!(matches!(
        config.validate_for(3),
        Err(LossError::WeightLength {
            name: "weight",
            len: 4,
            classes: 3
        })
    ));
    assert!(config.validate_for(4).is_ok());

    for name in ["mean", "sum", "batchmean", "none"] {
        let r: Reduction = name.parse().unwrap();
        assert_eq!(r.name(), name);
    }
    assert!(matches!(
        "avg".parse::<Reduction>(),
        Err(LossError::UnknownReduction(s)) if s == "avg"
    ));
}

#[test]
fn configs_written_before_the_options_still_load() {
    let old = r#"{"gamma_neg":4.0,"gamma_pos":3.0,"pos_margin":1.1,"neg_margin":0.05,
        "threshold":0.25,"eps":1e-8,"reduction":"Mean"}"#;
    let config: AsymmetricLossConfig = serde_json::from_str(old).unwrap();
    assert_eq!(config, AsymmetricLossConfig::proposed());
    assert_eq!(config.smoothing, 0.0);
    assert_eq!((config.weight, config.pos_weight), (None, None));
    assert!(!config.detach_focusing);
    let all = AsymmetricLossConfig::proposed()
        .with_reduction(Reduction::BatchMean)
        .with_smoothing(0.1)
        .with_weight(Some(vec![1.0, 2.0]))
        .with_pos_weight(Some(vec![3.0]))
        .with_detach_focusing(true);
    let back: AsymmetricLossConfig =
        serde_json::from_str(&serde_json::to_string(&all).unwrap()).unwrap();
    assert_eq!(back, all);
}

#[test]
fn detached_focusing_changes_the_gradient_not_the_value() {
    let device = Default::default();
    let x = Tensor::<F, 2>::random([6, 50], Distribution::Uniform(-6.0, 6.0), &device);
    let y = Tensor::<F, 2>::random([6, 50], Distribution::Bernoulli(0.4), &device);
    let attached = AsymmetricLossConfig::proposed().init();
    let detached = AsymmetricLossConfig::proposed()
        .with_detach_focusing(true)
        .init();
    let a = common::loss_and_grads(Impl::Fused, &attached, x.clone(), y.clone());
    let d = common::loss_and_grads(Impl::Fused, &detached, x, y);
    assert_eq!(a.0, d.0);
    assert_ne!(a.1, d.1);
}

#[test]
fn a_loss_reports_the_configuration_its_forward_uses() {
    type B = Flex;
    let device = Default::default();
    let logits = Tensor::<B, 2>::random([4, 6], Distribution::Normal(0.0, 2.0), &device);
    let targets = Tensor::<B, 2>::random([4, 6], Distribution::Bernoulli(0.3), &device);
    let config = AsymmetricLossConfig::asymmetric().with_gamma_neg(2.0);
    let summed = config.clone().with_reduction(Reduction::Sum).init();
    assert_eq!(
        summed.config(),
        &config.clone().with_reduction(Reduction::Sum)
    );
    assert_eq!(summed.reduction(), Reduction::Sum);

    // Changing the reduction of a built loss changes what it reports and what it computes alike.
    let mean = summed.clone().with_reduction(Reduction::Mean);
    assert_eq!(mean.reduction(), Reduction::Mean);
    assert_eq!(mean.config().reduction, Reduction::Mean);
    assert_eq!(mean.config().gamma_neg, 2.0);
    let sum = summed
        .forward(logits.clone(), targets.clone())
        .into_scalar();
    let avg = mean.forward(logits, targets).into_scalar();
    assert_close(&[avg], &[sum / 24.0], "mean = sum / elements");
}
