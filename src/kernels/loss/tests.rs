//! The loss kernels' dispatch and their use of the tensors' storage.

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Distribution, Tensor, TensorData};

use super::*;
use crate::loss::LossPreset;

type F = Flex;

/// The dispatch reaches the CPU kernel on Flex and under autodiff: the loss and the gradient are
/// the kernel's own, bit for bit.
#[test]
fn flex_and_autodiff_flex_run_the_cpu_kernel() {
    let device = Default::default();
    let x = Tensor::<F, 2>::random([40, 70], Distribution::Uniform(-8.0, 8.0), &device);
    let y = Tensor::<F, 2>::random([40, 70], Distribution::Bernoulli(0.3), &device);
    let (xs, ys): (Vec<f32>, Vec<f32>) =
        (x.to_data().to_vec().unwrap(), y.to_data().to_vec().unwrap());
    for preset in LossPreset::ALL {
        let params = LossParams::from_config(&preset.config());
        let mut want_grad = vec![0.0; xs.len()];
        let want = asymmetric_loss_cpu(&xs, &ys, &params, Some(&mut want_grad)) as f32;
        let plain = asymmetric_loss(x.clone(), y.clone(), &params).into_scalar();
        assert_eq!(plain, want, "{preset} on Flex");
        let xa = Tensor::<Autodiff<F>, 2>::from_inner(x.clone()).require_grad();
        let ya = Tensor::<Autodiff<F>, 2>::from_inner(y.clone());
        let loss = asymmetric_loss(xa.clone(), ya, &params);
        let grad = xa.grad(&loss.backward()).unwrap();
        assert_eq!(loss.into_scalar(), want, "{preset} on Autodiff<Flex>");
        assert_eq!(
            grad.into_data().to_vec::<f32>().unwrap(),
            want_grad,
            "{preset} gradient"
        );
    }
}

#[test]
fn handed_over_logits_become_the_gradient() {
    let device = Default::default();
    let values = |t: burn::tensor::ops::FloatTensor<F>| {
        float::<F, 2>(t).into_data().to_vec::<f32>().unwrap()
    };
    // Large enough for the parallel path; soft targets take the kernel's general path.
    for soft in [false, true] {
        let x = Tensor::<F, 2>::random([300, 130], Distribution::Uniform(-30.0, 30.0), &device);
        let dist = if soft {
            Distribution::Uniform(0.0, 1.0)
        } else {
            Distribution::Bernoulli(0.3)
        };
        let y = Tensor::<F, 2>::random([300, 130], dist, &device);
        let logits: Vec<f32> = x.to_data().to_vec().unwrap();
        for preset in LossPreset::ALL {
            let params = LossParams::from_config(&preset.config());
            let targets = || y.clone().into_primitive().tensor();
            // Logits still held by `x`: the gradient goes to a new buffer.
            let shared = x.clone().into_primitive().tensor();
            let (loss_shared, grad_shared) =
                F::asymmetric_loss_with_grad(shared, targets(), &params);
            // Logits nobody else holds: their storage becomes the gradient.
            let owned =
                Tensor::<F, 2>::from_data(TensorData::new(logits.clone(), [300, 130]), &device)
                    .into_primitive()
                    .tensor();
            let at = owned.as_slice::<f32>().unwrap().as_ptr();
            let (loss_owned, grad_owned) = F::asymmetric_loss_with_grad(owned, targets(), &params);
            assert_eq!(
                grad_owned.as_slice::<f32>().unwrap().as_ptr(),
                at,
                "{preset}"
            );
            assert_eq!(
                values(grad_owned),
                values(grad_shared),
                "{preset} soft={soft}"
            );
            let (a, b) = (values(loss_owned)[0], values(loss_shared)[0]);
            assert!((a - b).abs() <= 1e-6 * b.abs(), "{preset}: {a} vs {b}");
        }
        // Shared logits are left as they were.
        assert_eq!(x.into_data().to_vec::<f32>().unwrap(), logits);
    }
}
