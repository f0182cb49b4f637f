use burn::tensor::{backend::Backend, Tensor};

/// A batch of normalised images and their multi-hot targets, as the training loop consumes it.
#[derive(Debug, Clone)]
pub struct AnnotationBatch<B: Backend> {
    /// Images, `[batch, 3, height, width]`, normalised with the data set's mean and std.
    pub images: Tensor<B, 4>,
    /// Multi-hot targets, `[batch, classes]`, 1.0 where the label is present.
    pub targets: Tensor<B, 2>,
}
