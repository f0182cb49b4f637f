use burn::data::dataloader::batcher::Batcher;
use burn::tensor::activation::sigmoid;
use burn::tensor::backend::Backend;
use rayon::prelude::*;

use crate::data::{AnnotationBatcher, AnnotationDataset, DataError};
use crate::model::TResNet;
use crate::Result;

/// Sigmoid scores of `model` on every image of `dataset`, in the data set's order, with the
/// matching targets: two row-major `[N, C]` buffers.
///
/// Images are decoded in parallel, a batch at a time; unreadable images are errors naming the
/// file (the data set's skip mode has already dropped those it was told to).
pub fn predict_scores<B: Backend>(
    model: &TResNet<B>,
    dataset: &AnnotationDataset,
    batcher: &AnnotationBatcher,
    batch_size: usize,
    device: &B::Device,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let n = burn::data::dataset::Dataset::len(dataset);
    let classes = model.num_classes();
    let mut scores = Vec::with_capacity(n * classes);
    let mut targets = Vec::with_capacity(n * classes);
    for start in (0..n).step_by(batch_size.max(1)) {
        let end = (start + batch_size.max(1)).min(n);
        let items = (start..end)
            .into_par_iter()
            .map(|i| dataset.try_get(i))
            .collect::<Result<Vec<_>, DataError>>()?
            .into_iter()
            .flatten()
            .collect::<Vec<_>>();
        if items.is_empty() {
            continue;
        }
        let batch = batcher.batch(items, device);
        let probabilities = sigmoid(model.try_forward(batch.images)?);
        scores.extend(read_f32(probabilities)?);
        targets.extend(read_f32(batch.targets)?);
    }
    Ok((scores, targets))
}

fn read_f32<B: Backend, const D: usize>(tensor: burn::tensor::Tensor<B, D>) -> Result<Vec<f32>> {
    tensor
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| crate::model::ModelError::InvalidInput(format!("reading scores: {e:?}")).into())
}
