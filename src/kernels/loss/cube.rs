//! The loss kernel on the CubeCL backends (CUDA, wgpu): one element-wise CubeCL kernel writes
//! the per-element losses (and gradients), then Burn's reduction sums them.

use burn::tensor::ops::{FloatTensor, FloatTensorOps};
use burn::tensor::{Shape, TensorData};
use burn_cubecl::element::BoolElement;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{CubeBackend, CubeRuntime, FloatElement, IntElement};
use cubecl::prelude::*;
use cubecl::{calculate_cube_count_elemwise, CubeDim};

use super::LossKernel;
use crate::loss::{LossParams, Reduction};

/// `base^gamma` and `gamma * base^(gamma - 1)` for `base` in `[0, 1]`, `gamma >= 0`.
///
/// `pow(0, 0)` is NaN on some targets, and the derivative is unbounded at 0 for `gamma < 1`;
/// wherever `base == 0` the caller multiplies the derivative by 0, so 0 is returned there.
#[cube]
fn pow_deriv<F: Float>(base: F, gamma: F) -> (F, F) {
    let zero = F::new(0.0);
    let one = F::new(1.0);
    let positive = base > zero;
    let safe = select(positive, base, one);
    let value = select(gamma == zero, one, F::powf(safe, gamma));
    let value = select(positive || gamma == zero, value, zero);
    let deriv = select(positive, gamma * value / safe, zero);
    (value, deriv)
}

/// One thread per element: `losses[i] = -cw (y' pw log p + (1 - y') log(1 - q)) B^g` (see
/// [`AsymmetricLossConfig`](crate::loss::AsymmetricLossConfig)) and, when `with_grad`,
/// `grad[i] = scale * d losses[i] / d x`. The same formulas as the CPU kernel's general path.
///
/// With `weighted`, `class_weight` and `pos_weight` hold one value per class (the element's
/// class is its index modulo their length); otherwise they are not read.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn asymmetric_loss_kernel<F: Float>(
    logits: &Tensor<F>,
    targets: &Tensor<F>,
    losses: &mut Tensor<F>,
    grad: &mut Tensor<F>,
    class_weight: &Tensor<F>,
    pos_weight: &Tensor<F>,
    gamma_neg: f32,
    gamma_pos: f32,
    pos_margin: f32,
    neg_margin: f32,
    eps: f32,
    switch_logit: f32,
    scale: f32,
    smoothing: f32,
    focal_grad: f32,
    #[comptime] with_grad: bool,
    #[comptime] margin: bool,
    #[comptime] weighted: bool,
    #[define(F)] _dtype: StorageType,
) {
    let i = ABSOLUTE_POS;
    if i >= logits.len() {
        terminate!();
    }
    let zero = F::new(0.0);
    let one = F::new(1.0);
    let x = logits[i];
    let smoothing = F::cast_from(smoothing);
    // Label smoothing towards 0.5; exactly y when off.
    let y = targets[i] * (one - smoothing) + F::new(0.5) * smoothing;
    let mut cw = one;
    let mut pw = one;
    if weighted {
        let c = i % class_weight.len();
        cw = class_weight[c];
        pw = pos_weight[c];
    }
    let gamma_neg = F::cast_from(gamma_neg);
    let gamma_pos = F::cast_from(gamma_pos);
    let neg_margin = F::cast_from(neg_margin);
    let eps = F::cast_from(eps);

    // sigmoid(x) and sigmoid(-x), each without cancellation.
    let e = F::exp(-F::abs(x));
    let big = one / (one + e);
    let small = e * big;
    let nonneg = x >= zero;
    let s = select(nonneg, big, small);
    let s_comp = select(nonneg, small, big);

    // Negative term.
    let active = s > neg_margin;
    let q = select(active, s - neg_margin, zero);
    let one_minus_q = select(active, s_comp + neg_margin, one);
    let log_neg = F::ln(F::max(one_minus_q, eps));

    // Positive term.
    let mut p = s;
    let mut p_comp = s_comp;
    let mut confident = false;
    if margin {
        let z = x - F::cast_from(pos_margin);
        let e2 = F::exp(-F::abs(z));
        let big2 = one / (one + e2);
        let small2 = e2 * big2;
        let nonneg2 = z >= zero;
        p = select(nonneg2, big2, small2);
        p_comp = select(nonneg2, small2, big2);
        confident = x >= F::cast_from(switch_logit);
    }
    let log_pos = F::ln(F::max(p, eps));

    // One focusing weight B^g for the mixed cross-entropy: B = y (1 - p) + (1 - y) q and
    // g = y gamma_pos + (1 - y) gamma_neg, gamma_pos 0 past the threshold switch. Each product is
    // taken on its own so that a hard target gets its term's base exactly.
    let y_neg = one - y;
    let gamma_pos = select(confident, zero, gamma_pos);
    let base = y * p_comp + y_neg * q;
    let gamma = y * gamma_pos + y_neg * gamma_neg;
    let (w, dw) = pow_deriv::<F>(base, gamma);
    let ce = y * pw * log_pos + y_neg * log_neg;

    losses[i] = -(cw * ce * w);

    if with_grad {
        // d log(1 - q)/dx = -[unclamped] dq/dx / (1 - q), d log p/dx = [unclamped] (1 - p),
        // dB/dx = -y p (1 - p) + (1 - y) dq/dx, with dq/dx = [active] s (1 - s).
        let dq = select(active, s * s_comp, zero);
        let d_log_neg = select(one_minus_q >= eps, -dq / one_minus_q, zero);
        let d_log_pos = select(p >= eps, p_comp, zero);
        let d_ce = y * pw * d_log_pos + y_neg * d_log_neg;
        let d_base = y_neg * dq - y * p * p_comp;
        // focal_grad is 0 when the focusing weights are constants of the backward pass.
        let d_w = F::cast_from(focal_grad) * dw * d_base;
        grad[i] = -(cw * (d_ce * w + ce * d_w)) * F::cast_from(scale);
    }
}

type Cube<R, F, I, BT> = CubeBackend<R, F, I, BT>;

fn run<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    logits: CubeTensor<R>,
    targets: CubeTensor<R>,
    params: &LossParams,
    with_grad: bool,
) -> (CubeTensor<R>, Option<CubeTensor<R>>) {
    let dtype = logits.dtype;
    let targets = if targets.dtype == dtype {
        targets
    } else {
        Cube::<R, F, I, BT>::float_cast(targets, dtype.into())
    };
    let logits = into_contiguous(logits);
    let targets = into_contiguous(targets);
    let shape: Shape = logits.meta.shape().clone();
    let n = shape.num_elements();
    let [_, classes] = shape.dims::<2>();
    let client = logits.client.clone();
    let device = logits.device.clone();
    let scale = params.scale(n, classes);

    // The per-class vectors, expanded to one value per class; a placeholder when unweighted.
    let weighted = params.weighted();
    let per_class = |values: Option<&[f32]>| -> CubeTensor<R> {
        let len = if weighted { classes.max(1) } else { 1 };
        let data: Vec<f32> = match values {
            Some(&[v]) => vec![v; len],
            Some(v) if weighted => v.to_vec(),
            _ => vec![1.0; len],
        };
        let t = Cube::<R, F, I, BT>::float_from_data(TensorData::new(data, [len]), &device);
        if t.dtype == dtype {
            t
        } else {
            Cube::<R, F, I, BT>::float_cast(t, dtype.into())
        }
    };
    let class_weight = per_class(params.weight.as_deref());
    let pos_weight = per_class(params.pos_weight.as_deref());

    let losses = empty_device_dtype(client.clone(), device.clone(), shape.clone(), dtype);
    // Without a gradient the kernel still takes a tensor there, which it never writes.
    let grad_shape = if with_grad { shape } else { Shape::new([1]) };
    let grad = empty_device_dtype(client.clone(), device, grad_shape, dtype);

    let cube_dim = CubeDim::new(&client, n);
    let cube_count = calculate_cube_count_elemwise(&client, n, cube_dim);
    asymmetric_loss_kernel::launch::<R>(
        &client,
        cube_count,
        cube_dim,
        logits.into_tensor_arg(),
        targets.into_tensor_arg(),
        losses.clone().into_tensor_arg(),
        grad.clone().into_tensor_arg(),
        class_weight.into_tensor_arg(),
        pos_weight.into_tensor_arg(),
        params.gamma_neg,
        params.gamma_pos,
        params.pos_margin,
        params.neg_margin,
        params.eps,
        params.switch_logit,
        scale,
        params.smoothing,
        if params.detach_focusing { 0.0 } else { 1.0 },
        with_grad,
        params.pos_margin > 0.0,
        weighted,
        dtype.into(),
    );

    if params.reduction == Reduction::None {
        let losses = Cube::<R, F, I, BT>::float_reshape(losses, Shape::new([n]));
        return (losses, with_grad.then_some(grad));
    }
    let total = Cube::<R, F, I, BT>::float_sum(losses);
    let total = Cube::<R, F, I, BT>::float_mul_scalar(total, scale.into());
    (total, with_grad.then_some(grad))
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> LossKernel
    for CubeBackend<R, F, I, BT>
{
    fn asymmetric_loss(
        logits: FloatTensor<Self>,
        targets: FloatTensor<Self>,
        params: &LossParams,
    ) -> FloatTensor<Self> {
        run::<R, F, I, BT>(logits, targets, params, false).0
    }

    fn asymmetric_loss_with_grad(
        logits: FloatTensor<Self>,
        targets: FloatTensor<Self>,
        params: &LossParams,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (loss, grad) = run::<R, F, I, BT>(logits, targets, params, true);
        (loss, grad.expect("requested"))
    }
}

/// Burn's CUDA backend without fusion, the one the kernel runs on.
#[cfg(feature = "cuda")]
pub(super) type CudaKernel = CubeBackend<cubecl::cuda::CudaRuntime, f32, i32, u8>;

/// Burn's wgpu backend without fusion, the one the kernel runs on.
#[cfg(feature = "wgpu")]
pub(super) type WgpuKernel = CubeBackend<cubecl::wgpu::WgpuRuntime, f32, i32, u32>;
