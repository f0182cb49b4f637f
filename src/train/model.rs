//! What the training loop trains: a multi-label model, a loss and the data of each epoch.

use std::sync::Arc;

use burn::data::dataloader::DataLoader;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::data::AnnotationBatch;
use crate::loss::AsymmetricLoss;
use crate::model::TResNet;

/// A model mapping images to one logit per label.
///
/// The loop needs it on the autodiff backend (training) and on its inner backend (validation,
/// through [`AutodiffModule::valid`](burn::module::AutodiffModule::valid)); a model written
/// generically over `B: Backend` gets both from one `impl<B: Backend> MultiLabelModel<B>`.
pub trait MultiLabelModel<B: Backend> {
    /// Logits `[batch, classes]` of images `[batch, 3, height, width]`.
    fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2>;
}

impl<B: Backend> MultiLabelModel<B> for TResNet<B> {
    fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        TResNet::forward(self, images)
    }
}

/// A multi-label loss of logits against multi-hot targets, reduced to one value.
///
/// The loop calls it on the autodiff backend (training) and on its inner backend (validation
/// loss), hence a trait rather than a closure: a loss written generically over `B: Backend`
/// implements both with one `impl<B: Backend> MultiLabelLoss<B>`.
pub trait MultiLabelLoss<B: Backend> {
    /// The loss `[1]` of logits `[batch, classes]` against targets `[batch, classes]` in {0, 1}.
    fn forward(&self, logits: Tensor<B, 2>, targets: Tensor<B, 2>) -> Tensor<B, 1>;
}

impl<B: Backend> MultiLabelLoss<B> for AsymmetricLoss {
    fn forward(&self, logits: Tensor<B, 2>, targets: Tensor<B, 2>) -> Tensor<B, 1> {
        AsymmetricLoss::forward(self, logits, targets)
    }
}

/// The data loader of the batches of a training epoch.
pub type AnnotationLoader<B> = Arc<dyn DataLoader<B, AnnotationBatch<B>>>;

/// The training data, one loader per epoch.
///
/// The loop asks for each epoch's loader by its number (1-based), so a shuffled order can be a
/// pure function of the seed and the epoch (`DataLoaderBuilder::shuffle(seed + epoch)`) and a
/// resumed run sees the same batches as an uninterrupted one. burn's loaders advance their own
/// shuffling RNG at every pass instead, which a resumed run could not replay.
///
/// Bit-exact resume also needs each epoch's batches to come in a fixed order: burn's
/// multi-threaded loader (`num_workers > 0`) yields them in the order its workers finish, so a
/// resumed run then matches an uninterrupted one only statistically. Random augmentations should
/// likewise draw from an RNG seeded by the seed and the epoch.
///
/// Any `Fn(usize) -> AnnotationLoader<B>` is one; `|_| loader.clone()` serves the same (unshuffled
/// or order-insensitive) loader every epoch.
pub trait TrainLoader<B: Backend> {
    /// The loader of epoch `epoch` (1-based).
    fn epoch(&self, epoch: usize) -> AnnotationLoader<B>;
}

impl<B: Backend, F: Fn(usize) -> AnnotationLoader<B>> TrainLoader<B> for F {
    fn epoch(&self, epoch: usize) -> AnnotationLoader<B> {
        self(epoch)
    }
}
