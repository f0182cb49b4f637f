//! The asymmetric multi-label loss family (issue #2).

/// Errors of the loss module.
#[derive(Debug, thiserror::Error)]
pub enum LossError {
    /// Logits and targets do not have the same shape.
    #[error("logits have shape {logits:?} but targets have shape {targets:?}")]
    ShapeMismatch {
        /// Shape of the logits.
        logits: Vec<usize>,
        /// Shape of the targets.
        targets: Vec<usize>,
    },
}
