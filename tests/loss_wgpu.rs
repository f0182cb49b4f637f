//! The CubeCL kernel through Burn's wgpu backend (runs on a software Vulkan driver such as
//! Debian's `mesa-vulkan-drivers`): against the PyTorch fixtures and the composed reference.
//!
//! `cargo test --release --features wgpu --test loss_wgpu`
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
fn composed_on_wgpu_matches_torch_fixtures() {
    check_fixtures::<Wgpu>(Impl::Composed);
}

#[test]
fn cubecl_kernel_matches_composed() {
    compare_fused_composed::<Wgpu>(7, 33, 12.0, false);
    compare_fused_composed::<Wgpu>(300, 130, 30.0, true);
}
