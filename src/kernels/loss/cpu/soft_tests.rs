//! Tests shared by the intrinsics loops: their inputs, and the soft-target loops of every
//! instruction set against the scalar loop.

use super::{avx2, avx512, ConstPow, Elem, FloatPow, IntPow, Pow};
use crate::loss::{AsymmetricLossConfig, LossParams};

/// Logits over the whole range, with exact switch points, and targets alternating in runs.
pub(super) fn inputs(n: usize, p: &LossParams) -> (Vec<f32>, Vec<f32>) {
    let special = [
        0.0,
        p.switch_logit,
        p.pos_margin,
        -1e4,
        1e4,
        30.0,
        -30.0,
        88.0,
        -88.0,
    ];
    let x = (0..n)
        .map(|i| match i % 11 {
            j if j < special.len() && i % 3 == 0 => special[j],
            _ => ((i as f32 * 0.618_034).fract() - 0.5) * 60.0,
        })
        .collect();
    let y = (0..n).map(|i| ((i / 3 + i / 7) % 2) as f32).collect();
    (x, y)
}

/// A soft-target intrinsics loop.
#[derive(Debug, Clone, Copy)]
enum SoftLoop {
    Avx2,
    Avx512,
}

impl SoftLoop {
    /// The loops this CPU runs.
    fn supported() -> Vec<Self> {
        let mut loops = Vec::new();
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            loops.push(Self::Avx2);
        }
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512dq") {
            loops.push(Self::Avx512);
        }
        loops
    }

    /// # Safety
    ///
    /// As the loop's `run_soft`, which this CPU must run.
    unsafe fn run<N: Pow, Q: Pow, const GRAD: bool, const MARGIN: bool, const W: bool>(
        self,
        k: &Elem<N, Q>,
        x: &[f32],
        y: &[f32],
        g: &mut [f32],
        l: &mut [f32],
    ) -> f64 {
        // SAFETY: forwarded from the caller.
        unsafe {
            match self {
                Self::Avx2 => avx2::run_soft::<N, Q, GRAD, MARGIN, W>(k, 0, x, y, g, l),
                Self::Avx512 => avx512::run_soft::<N, Q, GRAD, MARGIN, W>(k, 0, x, y, g, l),
            }
        }
    }
}

/// Each soft-target intrinsics loop this CPU runs against the scalar general loop, element by
/// element: soft, smoothed and hard targets, integer and fractional exponents, with and without
/// the margin, the weights and the detached focusing.
#[test]
fn soft_loops_match_the_scalar_loop() {
    let loops = SoftLoop::supported();
    if loops.is_empty() {
        println!("skipped: neither AVX2 and FMA nor AVX-512 on this CPU");
        return;
    }
    for l in loops {
        run_checks(l);
    }
}

/// The cases of [`soft_loops_match_the_scalar_loop`] on one loop.
fn run_checks(soft: SoftLoop) {
    fn check<N: Pow, Q: Pow, const MARGIN: bool, const W: bool>(
        soft: SoftLoop,
        config: AsymmetricLossConfig,
        pow_neg: N,
        pow_pos: Q,
    ) {
        let classes = 7;
        let config = config
            .with_weight(W.then(|| (0..classes).map(|c| c as f64 * 0.3).collect()))
            .with_pos_weight(W.then(|| (0..classes).map(|c| 0.5 + c as f64).collect()));
        let p = LossParams::from_config(&config);
        assert_eq!(p.pos_margin > 0.0, MARGIN);
        let k = Elem {
            p: p.clone(),
            scale: 0.25,
            pow_neg,
            pow_pos,
            classes,
        };
        for n in [1, 16, 17, 300, 1000] {
            let (x, hard) = inputs(n, &p);
            // Every third target soft, the others hard.
            let y: Vec<f32> = hard
                .iter()
                .enumerate()
                .map(|(i, &h)| {
                    if i % 3 == 0 {
                        (i as f32 * 0.377).fract()
                    } else {
                        h
                    }
                })
                .collect();
            let mut g = vec![f32::NAN; n];
            let mut l = vec![f32::NAN; n];
            // SAFETY: the loop runs on this CPU (SoftLoop::supported); equal lengths.
            let sum = unsafe { soft.run::<N, Q, true, MARGIN, W>(&k, &x, &y, &mut g, &mut l) };
            let fwd = unsafe { soft.run::<N, Q, false, MARGIN, W>(&k, &x, &y, &mut [], &mut []) };
            let mut want_sum = 0.0f64;
            for i in 0..n {
                let (cw, pw) = if W {
                    (
                        p.weight.as_ref().unwrap()[i % classes],
                        p.pos_weight.as_ref().unwrap()[i % classes],
                    )
                } else {
                    (1.0, 1.0)
                };
                let ys = y[i] * (1.0 - p.smoothing) + 0.5 * p.smoothing;
                let (wl, wd) = k.elem::<true, MARGIN, true>(x[i], ys, cw, pw);
                want_sum += wl as f64;
                let what = format!("{soft:?} {config:?} n={n} x={} y={}", x[i], y[i]);
                // exp(g ln B) against products: a few ulp of the exponent's argument; and
                // an ulp of 1 where the margin's shared exponential rounds s(-x) near 1.
                let close = |a: f32, b: f32| (a - b).abs() <= 2e-5 * b.abs() + 3e-7;
                assert!(close(l[i], wl), "{what}: loss {} vs {wl}", l[i]);
                assert!(close(g[i], wd), "{what}: grad {} vs {wd}", g[i]);
            }
            for got in [sum, fwd] {
                assert!(
                    (got - want_sum).abs() <= 2e-5 * want_sum.abs() + 1e-9,
                    "{soft:?} {config:?} n={n}: loss {got} vs {want_sum}"
                );
            }
        }
    }
    let proposed = AsymmetricLossConfig::proposed;
    check::<_, _, true, false>(soft, proposed(), ConstPow::<4>, ConstPow::<3>);
    check::<_, _, true, true>(
        soft,
        proposed().with_smoothing(0.1),
        ConstPow::<4>,
        ConstPow::<3>,
    );
    check::<_, _, true, true>(
        soft,
        proposed().with_smoothing(0.2).with_detach_focusing(true),
        ConstPow::<4>,
        ConstPow::<3>,
    );
    let timm = AsymmetricLossConfig::asymmetric().with_gamma_pos(1.0);
    check::<_, _, false, false>(soft, timm.clone(), IntPow(4), IntPow(1));
    check::<_, _, false, true>(soft, timm.with_smoothing(0.1), IntPow(4), IntPow(1));
    let fractional = AsymmetricLossConfig::bce()
        .with_gamma_neg(2.5)
        .with_gamma_pos(1.5)
        .with_smoothing(0.05);
    check::<_, _, false, true>(soft, fractional, FloatPow(2.5), FloatPow(1.5));
    check::<_, _, false, false>(soft, AsymmetricLossConfig::bce(), IntPow(0), IntPow(0));
}
