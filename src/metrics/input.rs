//! Checking score/target matrices and reading them off Burn tensors.

use burn::tensor::{backend::Backend, Tensor};

use super::MetricsError;

/// A validated row-major `[rows, cols]` matrix of finite scores with binary targets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScoreMatrix<'a> {
    /// Scores, row-major, all finite.
    pub scores: &'a [f32],
    /// Targets, row-major, each 0.0 or 1.0.
    pub targets: &'a [f32],
    /// Number of samples.
    pub rows: usize,
    /// Number of labels.
    pub cols: usize,
}

impl<'a> ScoreMatrix<'a> {
    /// Checks the shapes, that every score is finite and every target is 0 or 1.
    pub fn new(
        scores: &'a [f32],
        targets: &'a [f32],
        num_classes: usize,
    ) -> Result<Self, MetricsError> {
        if num_classes == 0 {
            return Err(MetricsError::NoClasses);
        }
        if scores.len() != targets.len() {
            return Err(MetricsError::LengthMismatch {
                scores: scores.len(),
                targets: targets.len(),
            });
        }
        if !scores.len().is_multiple_of(num_classes) {
            return Err(MetricsError::Ragged {
                len: scores.len(),
                num_classes,
            });
        }
        if scores.is_empty() {
            return Err(MetricsError::NoSamples);
        }
        let at = |i: usize| (i / num_classes, i % num_classes);
        if let Some(i) = first_where(scores, |s| !s.is_finite()) {
            let (row, label) = at(i);
            return Err(MetricsError::NonFiniteScore {
                row,
                label,
                value: scores[i],
            });
        }
        if let Some(i) = first_where(targets, |y| (y != 0.0) & (y != 1.0)) {
            let (row, label) = at(i);
            return Err(MetricsError::NonBinaryTarget {
                row,
                label,
                value: targets[i],
            });
        }
        Ok(Self {
            scores,
            targets,
            rows: scores.len() / num_classes,
            cols: num_classes,
        })
    }
}

/// Index of the first value where `bad` holds. Checks whole chunks with a branch-free fold
/// (which vectorises) and only looks for the position in a chunk that has one.
fn first_where(values: &[f32], bad: impl Fn(f32) -> bool) -> Option<usize> {
    const CHUNK: usize = 256;
    values.chunks(CHUNK).enumerate().find_map(|(k, chunk)| {
        chunk
            .iter()
            .fold(false, |any, &v| any | bad(v))
            .then(|| k * CHUNK + chunk.iter().position(|&v| bad(v)).unwrap_or(0))
    })
}

/// Reads `[N, C]` scores and targets back to the host as row-major `f32`, checking that their
/// shapes agree; returns both buffers and `C`.
pub(crate) fn tensors_to_rows<B: Backend>(
    scores: Tensor<B, 2>,
    targets: Tensor<B, 2>,
) -> Result<(Vec<f32>, Vec<f32>, usize), MetricsError> {
    let (s_dims, t_dims) = (scores.dims(), targets.dims());
    if s_dims != t_dims {
        return Err(MetricsError::Shape(format!(
            "scores are {s_dims:?} but targets are {t_dims:?}"
        )));
    }
    let read = |t: Tensor<B, 2>, what: &'static str| -> Result<Vec<f32>, MetricsError> {
        let data = t
            .try_into_data()
            .map_err(|e| MetricsError::TensorRead {
                what,
                message: format!("{e:?}"),
            })?
            .convert::<f32>();
        data.into_vec::<f32>()
            .map_err(|e| MetricsError::TensorRead {
                what,
                message: format!("{e:?}"),
            })
    };
    Ok((
        read(scores, "scores")?,
        read(targets, "targets")?,
        s_dims[1],
    ))
}
