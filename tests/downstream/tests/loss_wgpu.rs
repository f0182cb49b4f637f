//! The loss on Burn's wgpu backends (runs on a software Vulkan driver such as Debian's
//! `mesa-vulkan-drivers`), as a user's crate builds them, with Burn's default features:
//!
//! - unfused, `CubeBackend<WgpuRuntime, ..>`: the crate's CubeCL kernel;
//! - `burn::backend::Wgpu`, i.e. `Fusion<CubeBackend<..>>`: the composed loss, which the fusion
//!   backend compiles into its own kernels.
//!
//! Both are held to the PyTorch fixtures, to timm's (every option of the loss) and to the CPU
//! kernel at the same tolerance.
//!
//! `cargo test --release --features wgpu --test loss_wgpu` (in `tests/downstream`)
#![cfg(feature = "wgpu")]

#[path = "../../loss_common/mod.rs"]
mod common;

use aia::loss::{AsymmetricLossConfig, LossPreset, Reduction};
use burn::backend::wgpu::{CubeBackend, WgpuRuntime};
use burn::backend::{Flex, Wgpu};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};
use common::{assert_close, check_fixtures, check_timm_fixtures, loss_and_grads, Impl};

/// `burn::backend::Wgpu` without the fusion layer.
type Unfused = CubeBackend<WgpuRuntime, f32, i32, u32>;

#[test]
fn the_default_wgpu_backend_is_fused() {
    let name = std::any::type_name::<Wgpu>();
    assert!(name.contains("Fusion<"), "{name}");
}

#[test]
fn cubecl_kernel_matches_torch_fixtures() {
    check_fixtures::<Unfused>(Impl::Fused);
}

#[test]
fn fused_backend_matches_torch_fixtures() {
    check_fixtures::<Wgpu>(Impl::Fused);
}

#[test]
fn cubecl_kernel_matches_timm_fixtures() {
    check_timm_fixtures::<Unfused>(Impl::Fused);
}

#[test]
fn fused_backend_matches_timm_fixtures() {
    check_timm_fixtures::<Wgpu>(Impl::Fused);
}

/// Every preset, a fractional-gamma `sum` configuration, and every option on (for `cols`
/// classes).
fn configs(cols: usize) -> Vec<(&'static str, AsymmetricLossConfig)> {
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
    configs.push((
        "all_options",
        AsymmetricLossConfig::proposed()
            .with_reduction(Reduction::BatchMean)
            .with_smoothing(0.1)
            .with_weight(Some((0..cols).map(|c| (c % 5) as f64 * 0.5).collect()))
            .with_pos_weight(Some((0..cols).map(|c| 0.5 + (c % 3) as f64).collect()))
            .with_detach_focusing(true),
    ));
    configs
}

/// `G`'s loss and gradients agree with the CPU kernel's on random inputs (hard and soft
/// targets), with logits far enough out (±30) to saturate the sigmoid.
fn matches_cpu_kernel<G: Backend>() {
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
        let xg = Tensor::<G, 2>::from_data(x.to_data(), &gpu);
        let yg = Tensor::<G, 2>::from_data(y.to_data(), &gpu);
        for (name, config) in configs(cols) {
            let loss = config.init();
            let want = loss_and_grads(Impl::Fused, &loss, x.clone(), y.clone());
            let got = loss_and_grads(Impl::Fused, &loss, xg.clone(), yg.clone());
            let what = format!("{} {name} {rows}x{cols}", std::any::type_name::<G>());
            assert_close(&[got.0], &[want.0], &format!("{what} loss"));
            assert_close(&got.1, &want.1, &format!("{what} d/dlogits"));
            assert_close(&got.2, &want.2, &format!("{what} d/dtargets"));
        }
    }
}

#[test]
fn cubecl_kernel_matches_cpu_kernel() {
    matches_cpu_kernel::<Unfused>();
}

#[test]
fn fused_backend_matches_cpu_kernel() {
    matches_cpu_kernel::<Wgpu>();
}
