//! The loss kernels' dispatch and their use of the tensors' storage.

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Distribution, Tensor, TensorData};

use super::*;
use crate::loss::LossPreset;

type F = Flex;

/// The dispatch reaches the CPU kernel on Flex and under autodiff: the loss and the gradient are
/// the kernel's own, bit for bit.
#[test]
fn flex_and_autodiff_flex_run_the_cpu_kernel() {
    let device = Default::default();
    let x = Tensor::<F, 2>::random([40, 70], Distribution::Uniform(-8.0, 8.0), &device);
    let y = Tensor::<F, 2>::random([40, 70], Distribution::Bernoulli(0.3), &device);
    let (xs, ys): (Vec<f32>, Vec<f32>) =
        (x.to_data().to_vec().unwrap(), y.to_data().to_vec().unwrap());
    for preset in LossPreset::ALL {
        let params = LossParams::from_config(&preset.config());
        let mut want_grad = vec![0.0; xs.len()];
        let want = asymmetric_loss_cpu(&xs, &ys, 70, &params, Some(&mut want_grad)) as f32;
        let plain = asymmetric_loss(x.clone(), y.clone(), &params).into_scalar();
        assert_eq!(plain, want, "{preset} on Flex");
        let xa = Tensor::<Autodiff<F>, 2>::from_inner(x.clone()).require_grad();
        let ya = Tensor::<Autodiff<F>, 2>::from_inner(y.clone());
        let loss = asymmetric_loss(xa.clone(), ya, &params);
        let grad = xa.grad(&loss.backward()).unwrap();
        assert_eq!(loss.into_scalar(), want, "{preset} on Autodiff<Flex>");
        assert_eq!(
            grad.into_data().to_vec::<f32>().unwrap(),
            want_grad,
            "{preset} gradient"
        );
    }
}

#[test]
fn handed_over_logits_become_the_gradient() {
    let device = Default::default();
    let values = |t: burn::tensor::ops::FloatTensor<F>| {
        float::<F, 2>(t).into_data().to_vec::<f32>().unwrap()
    };
    // Large enough for the parallel path; soft targets take the kernel's general path.
    for soft in [false, true] {
        let x = Tensor::<F, 2>::random([300, 130], Distribution::Uniform(-30.0, 30.0), &device);
        let dist = if soft {
            Distribution::Uniform(0.0, 1.0)
        } else {
            Distribution::Bernoulli(0.3)
        };
        let y = Tensor::<F, 2>::random([300, 130], dist, &device);
        let logits: Vec<f32> = x.to_data().to_vec().unwrap();
        for preset in LossPreset::ALL {
            let params = LossParams::from_config(&preset.config());
            let targets = || y.clone().into_primitive().tensor();
            // Logits still held by `x`: the gradient goes to a new buffer.
            let shared = x.clone().into_primitive().tensor();
            let (loss_shared, grad_shared) =
                F::asymmetric_loss_with_grad(shared, targets(), &params);
            // Logits nobody else holds: their storage becomes the gradient.
            let owned =
                Tensor::<F, 2>::from_data(TensorData::new(logits.clone(), [300, 130]), &device)
                    .into_primitive()
                    .tensor();
            let at = owned.as_slice::<f32>().unwrap().as_ptr();
            let (loss_owned, grad_owned) = F::asymmetric_loss_with_grad(owned, targets(), &params);
            assert_eq!(
                grad_owned.as_slice::<f32>().unwrap().as_ptr(),
                at,
                "{preset}"
            );
            assert_eq!(
                values(grad_owned),
                values(grad_shared),
                "{preset} soft={soft}"
            );
            let (a, b) = (values(loss_owned)[0], values(loss_shared)[0]);
            assert!((a - b).abs() <= 1e-6 * b.abs(), "{preset}: {a} vs {b}");
        }
        // Shared logits are left as they were.
        assert_eq!(x.into_data().to_vec::<f32>().unwrap(), logits);
    }
}

#[derive(serde::Deserialize)]
struct TimmFixtures {
    shape: [usize; 2],
    logits: Vec<f32>,
    targets: Vec<f32>,
    soft_targets: Vec<f32>,
    upstream: Vec<f32>,
    cases: Vec<TimmCase>,
}

#[derive(serde::Deserialize)]
struct TimmCase {
    name: String,
    gamma_neg: f64,
    gamma_pos: f64,
    pos_margin: f64,
    neg_margin: f64,
    #[serde(alias = "threshold")]
    switch_probability: f64,
    eps: f64,
    reduction: String,
    smoothing: f64,
    weight: Option<Vec<f64>>,
    pos_weight: Option<Vec<f64>>,
    detach_focusing: bool,
    soft: bool,
    loss: Vec<f64>,
    grad_logits: Vec<f64>,
}

fn assert_close(got: &[f32], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let tol = 1e-6 + 1e-5 * w.abs();
        assert!(
            (g as f64 - w).abs() <= tol,
            "{what}[{i}]: got {g}, want {w}"
        );
    }
}

/// Every CPU path this machine runs (the intrinsics loop, the AVX-512 and AVX2 builds of the
/// general loop, the portable loop) against timm's `AsymmetricLossMultiLabel`: value and gradient,
/// each option alone and together, smoothing with focusing, soft targets, reduced and per
/// element, the in-place entry point too.
#[test]
fn every_cpu_path_matches_timm() {
    use super::cpu::{kernel, CpuPath};
    use crate::loss::{AsymmetricLossConfig, Reduction};

    let f: TimmFixtures =
        serde_json::from_str(include_str!("../../../tests/fixtures/loss/timm.json")).unwrap();
    let [rows, classes] = f.shape;
    let n = rows * classes;
    let paths = CpuPath::supported();
    println!("CPU paths: {paths:?}");
    for case in &f.cases {
        let config = AsymmetricLossConfig::new()
            .with_gamma_neg(case.gamma_neg)
            .with_gamma_pos(case.gamma_pos)
            .with_pos_margin(case.pos_margin)
            .with_neg_margin(case.neg_margin)
            .with_switch_probability(case.switch_probability)
            .with_eps(case.eps)
            .with_reduction(case.reduction.parse().unwrap())
            .with_smoothing(case.smoothing)
            .with_weight(case.weight.clone())
            .with_pos_weight(case.pos_weight.clone())
            .with_detach_focusing(case.detach_focusing);
        let params = LossParams::from_config(&config);
        let targets = if case.soft {
            &f.soft_targets
        } else {
            &f.targets
        };
        for &path in &paths {
            let what = format!("{} on {path:?}", case.name);
            let mut g = vec![f32::NAN; n];
            if params.reduction == Reduction::None {
                let mut l = vec![f32::NAN; n];
                kernel(
                    path,
                    &f.logits,
                    targets,
                    classes,
                    &params,
                    Some(&mut g),
                    Some(&mut l),
                );
                assert_close(&l, &case.loss, &format!("{what} losses"));
                let mut l2 = vec![f32::NAN; n];
                kernel(
                    path,
                    &f.logits,
                    targets,
                    classes,
                    &params,
                    None,
                    Some(&mut l2),
                );
                assert_eq!(l, l2, "{what}: losses with and without the gradient");
                g.iter_mut().zip(&f.upstream).for_each(|(g, u)| *g *= u);
            } else {
                let v = kernel(
                    path,
                    &f.logits,
                    targets,
                    classes,
                    &params,
                    Some(&mut g),
                    None,
                );
                assert_close(&[v as f32], &case.loss, &format!("{what} loss"));
                let v2 = kernel(path, &f.logits, targets, classes, &params, None, None);
                assert_eq!(v, v2, "{what}: loss with and without the gradient");
            }
            assert_close(&g, &case.grad_logits, &format!("{what} gradient"));
        }
        if params.reduction != Reduction::None {
            let mut values = f.logits.clone();
            let v = asymmetric_loss_cpu_in_place(&mut values, targets, classes, &params);
            assert_close(&[v as f32], &case.loss, &format!("{} in place", case.name));
            assert_close(
                &values,
                &case.grad_logits,
                &format!("{} in place", case.name),
            );
        }
    }
}

/// The per-class weights where the chunks split rows (large inputs run in parallel, in chunks
/// that start mid-row), on every path: each element gets its own class's weights.
#[test]
fn weights_follow_the_class_across_chunks_and_paths() {
    use super::cpu::{kernel, CpuPath};
    use crate::loss::{AsymmetricLossConfig, Reduction};

    let (rows, classes) = (97, 1003);
    let n = rows * classes;
    let x: Vec<f32> = (0..n)
        .map(|i| ((i as f32 * 0.618_034).fract() - 0.5) * 30.0)
        .collect();
    let y: Vec<f32> = (0..n).map(|i| ((i / 3 + i / 7) % 2) as f32).collect();
    let weight: Vec<f64> = (0..classes).map(|c| (c % 11) as f64 / 5.0).collect();
    let pos_weight: Vec<f64> = (0..classes).map(|c| 0.5 + (c % 4) as f64).collect();
    for smoothing in [0.0, 0.1] {
        let config = AsymmetricLossConfig::proposed()
            .with_weight(Some(weight.clone()))
            .with_pos_weight(Some(pos_weight.clone()))
            .with_smoothing(smoothing)
            .with_reduction(Reduction::None);
        let params = LossParams::from_config(&config);
        for path in CpuPath::supported() {
            // The reference: each element on its own, with its class's weights as scalars.
            let mut want_l = vec![0.0; n];
            let mut want_g = vec![0.0; n];
            for i in 0..n {
                let params = LossParams {
                    weight: Some(vec![weight[i % classes] as f32].into()),
                    pos_weight: Some(vec![pos_weight[i % classes] as f32].into()),
                    ..params.clone()
                };
                let (mut l, mut g) = ([0.0], [0.0]);
                let (x, y) = (&x[i..=i], &y[i..=i]);
                kernel(path, x, y, 1, &params, Some(&mut g), Some(&mut l));
                (want_l[i], want_g[i]) = (l[0], g[0]);
            }
            let mut l = vec![0.0; n];
            let mut g = vec![0.0; n];
            kernel(path, &x, &y, classes, &params, Some(&mut g), Some(&mut l));
            for i in 0..n {
                let close = |a: f32, b: f32| (a - b).abs() <= 1e-6 * b.abs().max(1e-3);
                assert!(
                    close(l[i], want_l[i]),
                    "{path:?} s={smoothing} loss {i}: {} vs {}",
                    l[i],
                    want_l[i]
                );
                assert!(
                    close(g[i], want_g[i]),
                    "{path:?} s={smoothing} grad {i}: {} vs {}",
                    g[i],
                    want_g[i]
                );
            }
        }
    }
}
