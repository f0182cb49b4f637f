//! The fused Adam update on `Flex`.

use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData, TensorMetadata, TensorPrimitive};
use rayon::prelude::*;

use super::{AdamOutput, AdamUpdate};
use crate::kernels::buffer::zeroed_f32;
use crate::kernels::dispatch::on_backend;
use crate::kernels::host::{contiguous_f32, host_slice};

/// The inputs of an update on backend `B`.
type Inputs<B, const D: usize> = (
    Tensor<B, D>,
    Tensor<B, D>,
    Option<(Tensor<B, D>, Tensor<B, D>)>,
);

/// Elements per task: large enough that a task's start costs nothing beside its work.
const CHUNK: usize = 1 << 15;

/// The update by the fused kernel when `B` is `Flex` and every tensor is `f32` and of the
/// parameter's shape; otherwise the inputs back, untouched.
pub(super) fn try_adam_update<B: Backend, const D: usize>(
    param: Tensor<B, D>,
    grad: Tensor<B, D>,
    moments: Option<(Tensor<B, D>, Tensor<B, D>)>,
    update: AdamUpdate,
) -> Result<AdamOutput<B, D>, Inputs<B, D>> {
    let dims = param.dims();
    let fits = |t: &Tensor<B, D>| t.dtype() == DType::F32 && t.dims() == dims;
    if !fits(&param) || !fits(&grad) || moments.as_ref().is_some_and(|(a, b)| !fits(a) || !fits(b))
    {
        return Err((param, grad, moments));
    }
    on_backend((param, grad, moments), |(p, g, m): Inputs<Flex, D>| {
        fused(p, g, m, update)
    })
}

/// The update as one pass over the four tensors, in place on the parameter and the moments.
fn fused<const D: usize>(
    param: Tensor<Flex, D>,
    grad: Tensor<Flex, D>,
    moments: Option<(Tensor<Flex, D>, Tensor<Flex, D>)>,
    update: AdamUpdate,
) -> AdamOutput<Flex, D> {
    let primitive = |t: Tensor<Flex, D>| t.into_primitive().tensor();
    let mut p = owned(primitive(param));
    let g = contiguous_f32(primitive(grad));
    let (mut m1, mut m2) = match moments {
        Some((a, b)) => (owned(primitive(a)), owned(primitive(b))),
        None => {
            let n = p.shape().num_elements();
            let zeros = || FlexTensor::from_data(TensorData::new(zeroed_f32(n), p.shape()));
            (zeros(), zeros())
        }
    };
    let coefficients = Coefficients::of(&update);
    let g = host_slice(&g);
    p.storage_mut::<f32>()
        .par_chunks_mut(CHUNK)
        .zip(m1.storage_mut::<f32>().par_chunks_mut(CHUNK))
        .zip(m2.storage_mut::<f32>().par_chunks_mut(CHUNK))
        .zip(g.par_chunks(CHUNK))
        .for_each(|(((p, m1), m2), g)| coefficients.apply(p, g, m1, m2));
    let tensor = |t: FlexTensor| Tensor::from_primitive(TensorPrimitive::Float(t));
    AdamOutput {
        param: tensor(p),
        moment_1: tensor(m1),
        moment_2: tensor(m2),
    }
}

/// `t` as an `f32` tensor whose storage holds its values and nothing else, so that
/// `storage_mut` is its values (copied first if another tensor shares them).
fn owned(t: FlexTensor) -> FlexTensor {
    let t = contiguous_f32(t);
    let n = t.shape().num_elements();
    if t.layout().contiguous_offsets() == Some((0, n)) && t.storage::<f32>().len() == n {
        t
    } else {
        FlexTensor::from_data(TensorData::new(host_slice(&t).to_vec(), t.shape()))
    }
}

/// The update's scalars as the tensor operations see them: each rounded to `f32` once.
struct Coefficients {
    weight_decay: Option<f32>,
    take_1: f32,
    keep_2: f32,
    take_2: f32,
    bias_correction_2_sqrt: f32,
    epsilon: f32,
    step: f32,
}

impl Coefficients {
    fn of(u: &AdamUpdate) -> Self {
        Coefficients {
            weight_decay: (u.weight_decay != 0.0).then_some(u.weight_decay as f32),
            take_1: (1.0 - u.beta_1) as f32,
            keep_2: u.beta_2 as f32,
            take_2: (1.0 - u.beta_2) as f32,
            bias_correction_2_sqrt: u.bias_correction_2_sqrt() as f32,
            epsilon: u.epsilon as f32,
            step: (u.lr / u.bias_correction_1()) as f32,
        }
    }

    /// The update of one run of values, operation for operation as
    /// [`adam_update_composed`](super::adam_update_composed) computes it.
    fn apply(&self, p: &mut [f32], g: &[f32], m1: &mut [f32], m2: &mut [f32]) {
        for (((p, &g), m1), m2) in p.iter_mut().zip(g).zip(m1).zip(m2) {
            let g = match self.weight_decay {
                Some(wd) => g + *p * wd,
                None => g,
            };
            *m1 += (g - *m1) * self.take_1;
            *m2 = *m2 * self.keep_2 + g * g * self.take_2;
            let denominator = m2.sqrt() / self.bias_correction_2_sqrt + self.epsilon;
            *p -= *m1 / denominator * self.step;
        }
    }
}
