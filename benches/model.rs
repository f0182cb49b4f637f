//! TResNet-M throughput on the crate's default backend (flex on the CPU): inference at 224x224
//! batch 8, 448x448 batch 2 and 448x448 batch 1 (the latency of annotating one photo), and one
//! training step (forward, backward, and the trainer's Adam, `ScheduledAdam`, which is
//! `torch.optim.Adam`) at 224x224 batch 8 and 448x448 batch 2. Compare with
//! `scripts/model_bench_torch.py --batch B --size S`, which times timm's tresnet_m the same way
//! with PyTorch and prints this bench's result beside it; `--table` does so for every size this
//! bench ran.
//!
//! `cargo bench --bench model` (about four minutes on 2 cores); `-- inference` or `-- train` for
//! one half. `AIA_CPU_PATH=avx2` times the AVX2 path on an AVX-512 CPU. `AIA_BENCH_MODEL=l` (or
//! `xl`) times TResNet-L (XL) instead, in the criterion group `tresnet_l` (`tresnet_xl`), beside
//! `scripts/model_bench_torch.py --model tresnet_l`. `AIA_BENCH_BATCH=32` (any batch) times
//! inference and a training step at 224x224 and that batch instead.

use std::time::Duration;

use aia::backend::{DefaultBackend, TrainBackend};
use aia::train::ScheduledAdamConfig;
use burn::nn::loss::BinaryCrossEntropyLossConfig;
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::{Distribution, Int, Tensor};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

mod common;

const LABELS: usize = 1000;

/// (side, batch) of the inference benches.
const INFERENCE: &[(usize, usize)] = &[(224, 8), (448, 2), (448, 1)];
/// (side, batch) of the training benches.
const TRAINING: &[(usize, usize)] = &[(224, 8), (448, 2)];

/// The benches' (side, batch): `fixed`, or 224x224 at the batch `AIA_BENCH_BATCH` asks for.
fn sizes(fixed: &[(usize, usize)]) -> Vec<(usize, usize)> {
    common::batch().map_or_else(|| fixed.to_vec(), |batch| vec![(224, batch)])
}

fn inference(c: &mut Criterion) {
    let device = Default::default();
    let variant = common::variant();
    let model = variant.config().init::<DefaultBackend>(&device);
    let mut group = c.benchmark_group(format!("tresnet_{variant}"));
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(3))
        .measurement_time(Duration::from_secs(15));
    for (size, batch) in sizes(INFERENCE) {
        let x = Tensor::<DefaultBackend, 4>::random(
            [batch, 3, size, size],
            Distribution::Default,
            &device,
        );
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(format!("inference_{size}_b{batch}"), |b| {
            b.iter(|| {
                let logits = model.forward(x.clone());
                // Reading the result back forces the whole computation on lazy backends.
                logits.into_data()
            })
        });
    }
    group.finish();
}

fn train_step(c: &mut Criterion) {
    for (size, batch) in sizes(TRAINING) {
        train_step_at(c, size, batch);
    }
}

fn train_step_at(c: &mut Criterion, size: usize, batch: usize) {
    let device = Default::default();
    let variant = common::variant();
    let mut model = Some(variant.config().init::<TrainBackend>(&device));
    let mut optim = ScheduledAdamConfig::new().init();
    let loss_fn = BinaryCrossEntropyLossConfig::new()
        .with_logits(true)
        .init(&device);
    let x =
        Tensor::<TrainBackend, 4>::random([batch, 3, size, size], Distribution::Default, &device);
    let targets =
        Tensor::<TrainBackend, 2>::random([batch, LABELS], Distribution::Default, &device)
            .lower_elem(0.01)
            .int();
    let targets: Tensor<TrainBackend, 2, Int> = targets;
    let mut group = c.benchmark_group(format!("tresnet_{variant}"));
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(5))
        .measurement_time(Duration::from_secs(40))
        .throughput(Throughput::Elements(batch as u64));
    group.bench_function(format!("train_step_{size}_b{batch}"), |b| {
        b.iter(|| {
            let m = model.take().expect("model");
            let loss = loss_fn.forward(m.forward(x.clone()), targets.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &m);
            model = Some(optim.step(1e-4, m, grads));
        })
    });
    group.finish();
}

criterion_group!(benches, inference, train_step);
criterion_main!(benches);
