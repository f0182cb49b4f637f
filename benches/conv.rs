//! Every convolution of TResNet-M (or L, XL) at 224x224, batch 8, layer by layer, through
//! [`aia::kernels::conv2d`] on the crate's default backend (flex on the CPU): the forward, and the
//! forward with the backward of both gradients (input and weight, from `y.sum()`) under autodiff.
//!
//! The shapes, with how many times each runs in one forward pass, are those of timm's model as
//! `scripts/conv_bench_torch.py --write-shapes` lists them (benches/conv_shapes/MODEL.json); that
//! script then times PyTorch on the same shapes and prints both side by side, with the total over
//! the model.
//!
//! `cargo bench --bench conv` (about three minutes on 2 cores); `AIA_BENCH_MODEL=l` (or `xl`)
//! times TResNet-L's (XL's) convolutions, in the criterion group `conv_tresnet_l` (`_xl`), and
//! `AIA_BENCH_BATCH=64` (any batch) the same shapes at that batch, in `conv_tresnet_m_b64`.

use std::time::Duration;

use aia::backend::{DefaultBackend, TrainBackend};
use aia::kernels::conv2d;
use aia::model::TResNetVariant;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Distribution, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use serde::Deserialize;

mod common;

/// One convolution of the model (the fields of benches/conv_shapes/*.json that the bench uses).
#[derive(Deserialize)]
struct Shape {
    batch: usize,
    in_channels: usize,
    height: usize,
    width: usize,
    out_channels: usize,
    kernel_h: usize,
    kernel_w: usize,
    stride_h: usize,
    stride_w: usize,
    pad_h: usize,
    pad_w: usize,
    groups: usize,
    bias: bool,
}

impl Shape {
    /// The bench id, as the PyTorch script names it.
    fn name(&self) -> String {
        format!(
            "{}x{}x{}_to_{}_k{}s{}",
            self.in_channels,
            self.height,
            self.width,
            self.out_channels,
            self.kernel_h,
            self.stride_h
        )
    }

    fn options(&self) -> ConvOptions<2> {
        ConvOptions::new(
            [self.stride_h, self.stride_w],
            [self.pad_h, self.pad_w],
            [1, 1],
            self.groups,
        )
    }

    /// Random input and weight, and a bias where the layer has one.
    fn inputs<B: burn::tensor::backend::Backend>(
        &self,
    ) -> (Tensor<B, 4>, Tensor<B, 4>, Option<Tensor<B, 1>>) {
        let device = Default::default();
        let normal = Distribution::Normal(0.0, 1.0);
        let x = [self.batch, self.in_channels, self.height, self.width];
        let w = [
            self.out_channels,
            self.in_channels / self.groups,
            self.kernel_h,
            self.kernel_w,
        ];
        (
            Tensor::random(x, normal, &device),
            Tensor::random(w, normal, &device) * 0.05,
            self.bias
                .then(|| Tensor::zeros([self.out_channels], &device)),
        )
    }
}

fn shapes(variant: TResNetVariant) -> Vec<Shape> {
    let json = match variant {
        TResNetVariant::M => include_str!("conv_shapes/tresnet_m.json"),
        TResNetVariant::L => include_str!("conv_shapes/tresnet_l.json"),
        TResNetVariant::Xl => include_str!("conv_shapes/tresnet_xl.json"),
    };
    serde_json::from_str(json).expect("benches/conv_shapes/*.json")
}

fn bench_conv(c: &mut Criterion) {
    let variant = common::variant();
    let batch = common::batch();
    let suffix = batch.map_or(String::new(), |n| format!("_b{n}"));
    let mut group = c.benchmark_group(format!("conv_tresnet_{variant}{suffix}"));
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for mut shape in shapes(variant) {
        shape.batch = batch.unwrap_or(shape.batch);
        let id = |pass: &str| BenchmarkId::new(pass, shape.name());
        let (x, w, b) = shape.inputs::<DefaultBackend>();
        group.bench_function(id("forward"), |bench| {
            bench.iter(|| conv2d(x.clone(), w.clone(), b.clone(), shape.options()).into_data())
        });
        let (x, w, b) = shape.inputs::<TrainBackend>();
        group.bench_function(id("forward_backward"), |bench| {
            bench.iter(|| {
                let (x, w) = (x.clone().require_grad(), w.clone().require_grad());
                let y = conv2d(x.clone(), w.clone(), b.clone(), shape.options());
                let grads = y.sum().backward();
                (x.grad(&grads), w.grad(&grads))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_conv);
criterion_main!(benches);
