//! The fused loss under autodiff: the forward kernel computes the gradient too, and the backward
//! step only scales it.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::ops::FloatTensor;

use super::{float, LossKernel};
use crate::loss::{composed, LossParams, Reduction};

/// What the backward step needs: the gradient already computed by the forward kernel, and the
/// logits and targets when the targets want a gradient too.
#[derive(Debug, Clone)]
struct LossState<B: Backend> {
    grad_logits: Option<FloatTensor<B>>,
    inputs: Option<(FloatTensor<B>, FloatTensor<B>)>,
    params: LossParams,
}

#[derive(Debug)]
struct AsymmetricLossBackward;

impl<B: LossKernel> Backward<B, 2> for AsymmetricLossBackward {
    type State = LossState<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_logits, node_targets] = ops.parents;
        let grad_out = grads.consume::<B>(&ops.node);
        let state = ops.state;
        // Without a reduction each element has its own incoming gradient (the loss is `[n]`).
        let elementwise = state.params.reduction == Reduction::None;
        let apply = |grad: FloatTensor<B>, grad_out: FloatTensor<B>| {
            if elementwise {
                let grad = float::<B, 2>(grad);
                let dims = grad.dims();
                (grad * float::<B, 1>(grad_out).reshape(dims))
                    .into_primitive()
                    .tensor()
            } else {
                B::asymmetric_loss_scale_grad(grad, grad_out)
            }
        };

        if let (Some(node), Some((logits, targets))) = (node_targets, state.inputs) {
            let grad = composed::targets_grad(
                &state.params,
                float::<B, 2>(logits),
                float::<B, 2>(targets),
            );
            let grad = apply(grad.into_primitive().tensor(), grad_out.clone());
            grads.register::<B>(node.id, grad);
        }
        if let (Some(node), Some(grad)) = (node_logits, state.grad_logits) {
            grads.register::<B>(node.id, apply(grad, grad_out));
        }
    }
}

impl<B: LossKernel, C: CheckpointStrategy> LossKernel for Autodiff<B, C> {
    fn asymmetric_loss(
        logits: FloatTensor<Self>,
        targets: FloatTensor<Self>,
        params: &LossParams,
    ) -> FloatTensor<Self> {
        let logits_tracked = !logits.node.requirement.is_none();
        let targets_tracked = !targets.node.requirement.is_none();
        match AsymmetricLossBackward
            .prepare::<C>([logits.node.clone(), targets.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                // The logits are only lent to the kernel when the backward step needs them: a
                // backend may then write the gradient over them.
                let kept =
                    targets_tracked.then(|| (logits.primitive.clone(), targets.primitive.clone()));
                let (loss, grad_logits) = if logits_tracked {
                    let (loss, grad) = B::asymmetric_loss_with_grad(
                        logits.primitive,
                        targets.primitive.clone(),
                        params,
                    );
                    (loss, Some(grad))
                } else {
                    let loss = B::asymmetric_loss(
                        logits.primitive.clone(),
                        targets.primitive.clone(),
                        params,
                    );
                    (loss, None)
                };
                let state = LossState {
                    grad_logits,
                    inputs: kept,
                    params: params.clone(),
                };
                prep.finish(state, loss)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::asymmetric_loss(
                logits.primitive,
                targets.primitive,
                params,
            )),
        }
    }

    fn asymmetric_loss_with_grad(
        logits: FloatTensor<Self>,
        targets: FloatTensor<Self>,
        params: &LossParams,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        // A gradient of a gradient is not supported: the fused gradient comes back as a constant.
        let (loss, grad) =
            B::asymmetric_loss_with_grad(Self::inner(logits), Self::inner(targets), params);
        (Self::from_inner(loss), Self::from_inner(grad))
    }

    fn asymmetric_loss_scale_grad(
        grad: FloatTensor<Self>,
        grad_out: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        Self::from_inner(B::asymmetric_loss_scale_grad(
            Self::inner(grad),
            Self::inner(grad_out),
        ))
    }
}
