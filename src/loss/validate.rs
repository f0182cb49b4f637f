//! Input checks of [`AsymmetricLoss::forward_checked`](super::AsymmetricLoss::forward_checked).

use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Tensor};

use super::LossError;

/// Check shapes, binary targets and NaN-free logits; locate the first offender on failure.
pub(crate) fn check_inputs<B: Backend>(
    logits: &Tensor<B, 2>,
    targets: &Tensor<B, 2>,
) -> Result<(), LossError> {
    let (xs, ys) = (logits.dims(), targets.dims());
    if xs != ys {
        return Err(LossError::ShapeMismatch {
            logits: xs.to_vec(),
            targets: ys.to_vec(),
        });
    }
    let cols = xs[1].max(1);
    let position = |flat: usize| (flat / cols, flat % cols);

    // The reductions run on the device; the data only comes back when something is wrong.
    let bad_targets = targets
        .clone()
        .equal_elem(0.0)
        .bool_or(targets.clone().equal_elem(1.0))
        .bool_not();
    if bad_targets.clone().any().into_scalar().elem::<bool>() {
        let data = targets.to_data().convert::<f32>();
        let values = data.as_slice::<f32>().unwrap_or(&[]);
        let flat = values
            .iter()
            .position(|&v| v != 0.0 && v != 1.0)
            .unwrap_or(0);
        let (row, col) = position(flat);
        return Err(LossError::TargetNotBinary {
            row,
            col,
            value: values.get(flat).copied().unwrap_or(f32::NAN),
        });
    }
    if logits.clone().is_nan().any().into_scalar().elem::<bool>() {
        let data = logits.to_data().convert::<f32>();
        let values = data.as_slice::<f32>().unwrap_or(&[]);
        let flat = values.iter().position(|v| v.is_nan()).unwrap_or(0);
        let (row, col) = position(flat);
        return Err(LossError::NanLogit { row, col });
    }
    Ok(())
}
