//! TResNet-M throughput on the crate's default backend (flex on the CPU): inference and one
//! training step (forward, backward, Adam) at 224x224, batch 8. Compare with
//! `scripts/model_bench_torch.py`, which times timm's tresnet_m the same way with PyTorch.
//!
//! `cargo bench --bench model` (about two minutes on 2 cores).

use std::time::Duration;

use aia::backend::{DefaultBackend, TrainBackend};
use aia::model::TResNetConfig;
use burn::nn::loss::BinaryCrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::{Distribution, Int, Tensor};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const BATCH: usize = 8;
const SIZE: usize = 224;
const LABELS: usize = 1000;

fn inference(c: &mut Criterion) {
    let device = Default::default();
    let model = TResNetConfig::m().init::<DefaultBackend>(&device);
    let x =
        Tensor::<DefaultBackend, 4>::random([BATCH, 3, SIZE, SIZE], Distribution::Default, &device);
    let mut group = c.benchmark_group("tresnet_m");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(3))
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("inference_224_b8", |b| {
        b.iter(|| {
            let logits = model.forward(x.clone());
            // Reading the result back forces the whole computation on lazy backends.
            logits.into_data()
        })
    });
    group.finish();
}

fn train_step(c: &mut Criterion) {
    let device = Default::default();
    let mut model = Some(TResNetConfig::m().init::<TrainBackend>(&device));
    let mut optim = AdamConfig::new().init();
    let loss_fn = BinaryCrossEntropyLossConfig::new()
        .with_logits(true)
        .init(&device);
    let x =
        Tensor::<TrainBackend, 4>::random([BATCH, 3, SIZE, SIZE], Distribution::Default, &device);
    let targets =
        Tensor::<TrainBackend, 2>::random([BATCH, LABELS], Distribution::Default, &device)
            .lower_elem(0.01)
            .int();
    let targets: Tensor<TrainBackend, 2, Int> = targets;
    let mut group = c.benchmark_group("tresnet_m");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(5))
        .measurement_time(Duration::from_secs(40))
        .throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("train_step_224_b8", |b| {
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
