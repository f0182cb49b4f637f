//! The asymmetric loss (the paper's preset) on the default CPU backend: fused kernel against the
//! composed tensor-op reference, forward and forward+backward, beside a memory-copy baseline of
//! the same size (read two arrays, write one).
//!
//! `fused_fwd_bwd_options` is the fused forward+backward with every option of the loss on
//! (batchmean reduction, label smoothing, per-class weights, per-class positive weights, detached
//! focusing), beside `fused_fwd_bwd`, the same preset without them; `fused_fwd_bwd_weights` has
//! every option but smoothing, whose soft targets take the kernel's soft-target path (both
//! logarithms of the loss and the focusing weight's power `exp(g ln B)` for every element, where
//! binary targets need one logarithm and a few products).
//!
//! `cargo bench --bench loss`; `scripts/loss_bench_torch.py` times PyTorch on the same shapes
//! and prints both side by side.

use std::hint::black_box;
use std::time::Duration;

use aia::kernels::zeroed_f32;
use aia::loss::{AsymmetricLoss, AsymmetricLossConfig, Reduction};
use burn::backend::{Autodiff, Flex};
use burn::tensor::{Distribution, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rayon::prelude::*;

type B = Flex;
type Ad = Autodiff<Flex>;

/// The benchmarked shapes: the paper's Corel-5k batch, ImageNet-sized, Open-Images-sized.
const SHAPES: [(usize, usize); 3] = [(32, 260), (256, 1000), (1024, 9605)];

/// Read `a` and `b`, write a new array: the memory traffic of the fused forward+backward, with
/// the same chunking over the same threads, and a fresh output allocated as the fused kernel
/// allocates its gradient.
fn memory_copy(a: &[f32], b: &[f32]) -> Vec<f32> {
    const CHUNK: usize = 16 * 1024;
    let mut out = zeroed_f32(a.len());
    if a.len() <= CHUNK {
        out.iter_mut()
            .zip(a.iter().zip(b))
            .for_each(|(o, (x, y))| *o = x + y);
    } else {
        out.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
            .for_each(|(o, (x, y))| {
                o.iter_mut()
                    .zip(x.iter().zip(y))
                    .for_each(|(o, (x, y))| *o = x + y)
            });
    }
    out
}

fn fwd_bwd(loss: &AsymmetricLoss, x: &Tensor<B, 2>, y: &Tensor<B, 2>, fused: bool) -> Tensor<B, 2> {
    let xa = Tensor::<Ad, 2>::from_inner(x.clone()).require_grad();
    let ya = Tensor::<Ad, 2>::from_inner(y.clone());
    let l = if fused {
        loss.forward(xa.clone(), ya)
    } else {
        loss.forward_composed(xa.clone(), ya)
    };
    xa.grad(&l.backward()).expect("gradient of the logits")
}

fn bench_loss(c: &mut Criterion) {
    let loss = AsymmetricLossConfig::proposed().init();
    let device = Default::default();
    for (rows, cols) in SHAPES {
        let x = Tensor::<B, 2>::random([rows, cols], Distribution::Normal(0.0, 3.0), &device);
        let y = Tensor::<B, 2>::random([rows, cols], Distribution::Bernoulli(0.05), &device);
        let xs: Vec<f32> = x.to_data().to_vec().unwrap();
        let ys: Vec<f32> = y.to_data().to_vec().unwrap();

        let with_options = AsymmetricLossConfig::proposed()
            .with_reduction(Reduction::BatchMean)
            .with_smoothing(0.1)
            .with_weight(Some(
                (0..cols).map(|c| 0.5 + (c % 4) as f64 * 0.5).collect(),
            ))
            .with_pos_weight(Some((0..cols).map(|c| 1.0 + (c % 3) as f64).collect()))
            .with_detach_focusing(true);
        let weights_only = with_options.clone().with_smoothing(0.0).init();
        let with_options = with_options.init();
        let big = rows * cols > 1_000_000;
        let mut group = c.benchmark_group(format!("loss_{rows}x{cols}"));
        group
            .sample_size(if big { 10 } else { 30 })
            .warm_up_time(Duration::from_millis(if big { 1000 } else { 300 }))
            .measurement_time(Duration::from_secs(if big { 4 } else { 1 }));
        let id = |name: &str| BenchmarkId::new(name, format!("{rows}x{cols}"));

        group.bench_function(id("copy_baseline"), |b| {
            b.iter(|| black_box(memory_copy(&xs, &ys)))
        });
        group.bench_function(id("fused_fwd"), |b| {
            b.iter(|| black_box(loss.forward(x.clone(), y.clone())))
        });
        group.bench_function(id("fused_fwd_bwd"), |b| {
            b.iter(|| black_box(fwd_bwd(&loss, &x, &y, true)))
        });
        group.bench_function(id("fused_fwd_bwd_options"), |b| {
            b.iter(|| black_box(fwd_bwd(&with_options, &x, &y, true)))
        });
        group.bench_function(id("fused_fwd_bwd_weights"), |b| {
            b.iter(|| black_box(fwd_bwd(&weights_only, &x, &y, true)))
        });
        group.bench_function(id("composed_fwd"), |b| {
            b.iter(|| black_box(loss.forward_composed(x.clone(), y.clone())))
        });
        group.bench_function(id("composed_fwd_bwd"), |b| {
            b.iter(|| black_box(fwd_bwd(&loss, &x, &y, false)))
        });
        group.finish();
    }
}

criterion_group!(benches, bench_loss);
criterion_main!(benches);
