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

use burn::backend::Wgpu;
use common::{check_fixtures, compare_fused_composed, Impl};

#[test]
fn cubecl_kernel_matches_torch_fixtures() {
    check_fixtures::<Wgpu>(Impl::Fused);
}

#[test]
fn cubecl_kernel_matches_composed() {
    compare_fused_composed::<Wgpu>(7, 33, 12.0, false);
    compare_fused_composed::<Wgpu>(300, 130, 30.0, true);
}
