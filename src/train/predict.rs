//! Scoring a split with a model: the sigmoid scores and targets the metrics need.

use burn::data::dataloader::DataLoader;
use burn::tensor::backend::Backend;
use burn::tensor::{activation::sigmoid, Tensor};

use super::{MultiLabelModel, TrainError};
use crate::data::AnnotationBatch;

/// The scores of a model on a split, in the loader's order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Predictions {
    /// Sigmoid probabilities, `[images, num_classes]` row-major.
    pub scores: Vec<f32>,
    /// Multi-hot targets, `[images, num_classes]` row-major.
    pub targets: Vec<f32>,
    /// Labels per image.
    pub num_classes: usize,
}

impl Predictions {
    /// The number of images scored.
    pub fn images(&self) -> usize {
        self.scores.len().checked_div(self.num_classes).unwrap_or(0)
    }
}

/// Reads a tensor as `f32` values.
pub(crate) fn to_f32<B: Backend, const D: usize>(
    tensor: Tensor<B, D>,
) -> Result<Vec<f32>, TrainError> {
    tensor
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| TrainError::Data(format!("reading a tensor: {e:?}")))
}

/// Checks that a batch's logits and targets have the same shape.
pub(crate) fn check_shapes<B: Backend>(
    logits: &Tensor<B, 2>,
    targets: &Tensor<B, 2>,
    what: &str,
    batch: usize,
) -> Result<(), TrainError> {
    if logits.dims() != targets.dims() {
        return Err(TrainError::Data(format!(
            "{what}, batch {batch}: the model gives logits {:?} but the targets are {:?}",
            logits.dims(),
            targets.dims()
        )));
    }
    Ok(())
}

/// Scores every batch of `loader` (use an inference model, e.g. `model.valid()`), calling
/// `on_batch(logits, targets)` on each before collecting it; `what` names the pass in errors.
pub(crate) fn predict_with<B, M>(
    model: &M,
    loader: &dyn DataLoader<B, AnnotationBatch<B>>,
    what: &str,
    mut on_batch: impl FnMut(&Tensor<B, 2>, &Tensor<B, 2>),
) -> Result<Predictions, TrainError>
where
    B: Backend,
    M: MultiLabelModel<B> + ?Sized,
{
    let mut predictions = Predictions::default();
    let mut num_classes = None;
    for (index, batch) in loader.iter().enumerate() {
        let logits = model.forward(batch.images);
        check_shapes(&logits, &batch.targets, what, index + 1)?;
        let classes = logits.dims()[1];
        let first = *num_classes.get_or_insert(classes);
        if first != classes {
            return Err(TrainError::Data(format!(
                "{what}, batch {}: {classes} classes, the earlier batches {first}",
                index + 1
            )));
        }
        on_batch(&logits, &batch.targets);
        predictions.scores.extend(to_f32(sigmoid(logits))?);
        predictions.targets.extend(to_f32(batch.targets)?);
    }
    predictions.num_classes = num_classes
        .ok_or_else(|| TrainError::Data(format!("{what}: the loader yielded no batch")))?;
    Ok(predictions)
}

/// The sigmoid scores and targets of `model` on every batch of `loader`, for the metrics and the
/// threshold calibration (e.g. a best model loaded with [`load_model`](super::load_model) on the
/// inference backend).
pub fn predict<B, M>(
    model: &M,
    loader: &dyn DataLoader<B, AnnotationBatch<B>>,
) -> Result<Predictions, TrainError>
where
    B: Backend,
    M: MultiLabelModel<B> + ?Sized,
{
    predict_with(model, loader, "prediction", |_, _| {})
}
