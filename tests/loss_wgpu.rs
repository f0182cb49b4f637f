//! The CubeCL kernel through Burn's wgpu backend (runs on a software Vulkan driver such as
//! Debian's `mesa-vulkan-drivers`): against the PyTorch fixtures and the composed reference.
//!
//! `cargo test --release --features wgpu --test loss_wgpu`
//!
//! The composed reference is not held to the fixtures here: Burn's generic sigmoid on CubeCL,
//! `exp(-ln(1 + exp(-x)))`, is a little less precise for large logits than the 1e-5 tolerance.
#![cfg(feature = "wgpu")]

#[path = "loss_common/mod.rs"]
mod common;

use aia::loss::{AsymmetricLossConfig, LossPreset, Reduction};
use burn::backend::{Flex, Wgpu};
use burn::tensor::{Distribution, Tensor};
use common::{assert_close, check_fixtures, loss_and_grads, Impl};

#[test]
fn cubecl_kernel_matches_torch_fixtures() {
    check_fixtures::<Wgpu>(Impl::Fused);
}

/// The CubeCL kernel and the CPU kernel agree on the same random inputs (hard and soft targets,
/// every preset and a fractional-gamma `sum` configuration).
#[test]
fn cubecl_kernel_matches_cpu_kernel() {
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
    let cpu = Default::default();
    let gpu = Default::default();
    for (rows, cols, soft) in [(7, 33, false), (300, 130, true)] {
        let x = Tensor::<Flex, 2>::random([rows, cols], Distribution::Uniform(-30.0, 30.0), &cpu);
        let dist = if soft {
            Distribution::Uniform(0.0, 1.0)
        } else {
            Distribution::Bernoulli(0.3)
        };
        let y = Tensor::<Flex, 2>::random([rows, cols], dist, &cpu);
        let xg = Tensor::<Wgpu, 2>::from_data(x.to_data(), &gpu);
        let yg = Tensor::<Wgpu, 2>::from_data(y.to_data(), &gpu);
        for (name, config) in &configs {
            let loss = config.init();
            let want = loss_and_grads(Impl::Fused, &loss, x.clone(), y.clone());
            let got = loss_and_grads(Impl::Fused, &loss, xg.clone(), yg.clone());
            let what = format!("{name} {rows}x{cols}");
            assert_close(&[got.0], &[want.0], &format!("{what} loss"));
            assert_close(&got.1, &want.1, &format!("{what} d/dlogits"));
            assert_close(&got.2, &want.2, &format!("{what} d/dtargets"));
        }
    }
}
