//! A tiny learnable multi-label problem for the training-loop tests: 8×8 images whose labels
//! depend on their channel means, a conv + pool + dropout + linear model, BCE, and a measure
//! computing the paper's metrics at 0.5 by hand.
#![allow(dead_code)]

use std::sync::Arc;

use aia::data::AnnotationBatch;
use aia::metrics::{AnnotationMetrics, PrecisionRecallF1};
use aia::train::{AnnotationLoader, MultiLabelLoss, MultiLabelModel};
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataset::InMemDataset;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub const SIDE: usize = 8;
pub const CLASSES: usize = 4;

/// One image and its labels.
#[derive(Debug, Clone)]
pub struct Item {
    pub image: Vec<f32>,
    pub target: Vec<f32>,
}

/// `count` images: each channel is a random offset in [-1, 1] plus pixel noise; labels 0..3 say
/// whether channels 0..3 have a positive offset, label 3 whether channels 0 and 1 add up positive.
pub fn items(count: usize, seed: u64) -> Vec<Item> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            let offsets: [f32; 3] = std::array::from_fn(|_| rng.random_range(-1.0..1.0));
            let image = (0..3 * SIDE * SIDE)
                .map(|i| offsets[i / (SIDE * SIDE)] + rng.random_range(-0.5..0.5))
                .collect();
            let target = [
                offsets[0] > 0.0,
                offsets[1] > 0.0,
                offsets[2] > 0.0,
                offsets[0] + offsets[1] > 0.0,
            ]
            .map(|on| if on { 1.0 } else { 0.0 })
            .to_vec();
            Item { image, target }
        })
        .collect()
}

#[derive(Debug, Clone, Copy)]
pub struct ItemBatcher;

impl<B: Backend> Batcher<B, Item, AnnotationBatch<B>> for ItemBatcher {
    fn batch(&self, items: Vec<Item>, device: &B::Device) -> AnnotationBatch<B> {
        let n = items.len();
        let images: Vec<f32> = items.iter().flat_map(|item| item.image.clone()).collect();
        let targets: Vec<f32> = items.iter().flat_map(|item| item.target.clone()).collect();
        AnnotationBatch {
            images: Tensor::from_data(TensorData::new(images, [n, 3, SIDE, SIDE]), device),
            targets: Tensor::from_data(TensorData::new(targets, [n, CLASSES]), device),
        }
    }
}

/// A loader over `items`, shuffled with `shuffle` when given.
pub fn loader<B: Backend>(
    items: Vec<Item>,
    batch_size: usize,
    shuffle: Option<u64>,
) -> AnnotationLoader<B> {
    let builder = DataLoaderBuilder::new(ItemBatcher).batch_size(batch_size);
    let builder = match shuffle {
        Some(seed) => builder.shuffle(seed),
        None => builder,
    };
    builder.build(InMemDataset::new(items))
}

/// conv 3→6 (3×3) + ReLU + global average pool + dropout + linear 6→4.
#[derive(Module, Debug)]
pub struct TinyNet<B: Backend> {
    conv: Conv2d<B>,
    pool: AdaptiveAvgPool2d,
    dropout: Dropout,
    pub head: Linear<B>,
}

impl<B: Backend> TinyNet<B> {
    /// A model with its parameters initialised now (burn initialises lazily, and clones of a lazy
    /// parameter would each draw their own values).
    pub fn new(device: &B::Device) -> Self {
        let model = Self::lazy(device);
        let images = Tensor::zeros([1, 3, SIDE, SIDE], device);
        let _ = MultiLabelModel::forward(&model, images);
        model
    }

    /// A model whose parameters initialise on first use.
    pub fn lazy(device: &B::Device) -> Self {
        Self {
            conv: Conv2dConfig::new([3, 6], [3, 3])
                .with_padding(PaddingConfig2d::Same)
                .init(device),
            pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            dropout: DropoutConfig::new(0.2).init(),
            head: LinearConfig::new(6, CLASSES).init(device),
        }
    }
}

impl<B: Backend> MultiLabelModel<B> for TinyNet<B> {
    fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        let x = burn::tensor::activation::relu(self.conv.forward(images));
        let x = self.pool.forward(x).flatten::<2>(1, 3);
        self.head.forward(self.dropout.forward(x))
    }
}

/// Binary cross-entropy on logits, averaged over the batch and labels (numerically stable form).
#[derive(Debug, Clone, Copy)]
pub struct Bce;

impl<B: Backend> MultiLabelLoss<B> for Bce {
    fn forward(&self, logits: Tensor<B, 2>, targets: Tensor<B, 2>) -> Tensor<B, 1> {
        let positive = logits.clone().clamp_min(0.0);
        let softplus = logits.clone().abs().neg().exp().log1p();
        (positive - logits * targets + softplus).mean()
    }
}

/// [`measure`] as the training loop's end-of-epoch hook.
pub fn measure_epoch(
    scores: &[f32],
    targets: &[f32],
    classes: usize,
) -> Result<AnnotationMetrics, aia::train::TrainError> {
    Ok(measure(scores, targets, classes))
}

/// The paper's metrics at threshold 0.5, computed directly from their definitions.
pub fn measure(scores: &[f32], targets: &[f32], classes: usize) -> AnnotationMetrics {
    let images = scores.len() / classes;
    let predicted = |i: usize, c: usize| scores[i * classes + c] >= 0.5;
    let truth = |i: usize, c: usize| targets[i * classes + c] == 1.0;
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let f1 = |p: f64, r: f64| {
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    };
    let (mut precision, mut recall, mut n_plus) = (0.0, 0.0, 0);
    // Totals over every image and label, for the overall (micro-averaged) figures.
    let (mut all_tp, mut all_predicted, mut all_true) = (0, 0, 0);
    for c in 0..classes {
        let tp = (0..images)
            .filter(|&i| predicted(i, c) && truth(i, c))
            .count();
        let predicted_count = (0..images).filter(|&i| predicted(i, c)).count();
        let true_count = (0..images).filter(|&i| truth(i, c)).count();
        precision += ratio(tp, predicted_count) / classes as f64;
        recall += ratio(tp, true_count) / classes as f64;
        n_plus += usize::from(tp > 0);
        (all_tp, all_predicted, all_true) = (
            all_tp + tp,
            all_predicted + predicted_count,
            all_true + true_count,
        );
    }
    let (overall_precision, overall_recall) =
        (ratio(all_tp, all_predicted), ratio(all_tp, all_true));
    AnnotationMetrics {
        num_samples: images,
        num_labels: classes,
        per_class: PrecisionRecallF1 {
            precision,
            recall,
            f1: f1(precision, recall),
        },
        n_plus,
        overall: PrecisionRecallF1 {
            precision: overall_precision,
            recall: overall_recall,
            f1: f1(overall_precision, overall_recall),
        },
        ..Default::default()
    }
}

/// A training loader per epoch, shuffled with `seed + epoch`.
pub fn train_loader<B: Backend>(
    items: Vec<Item>,
    batch_size: usize,
    seed: u64,
) -> impl Fn(usize) -> AnnotationLoader<B> {
    let items = Arc::new(items);
    move |epoch| {
        loader::<B>(
            items.as_ref().clone(),
            batch_size,
            Some(seed + epoch as u64),
        )
    }
}
