use super::*;
use burn::backend::{Autodiff, Flex};
use burn::tensor::Distribution;

type A = Autodiff<Flex>;

fn close<const D: usize>(a: Tensor<Flex, D>, b: Tensor<Flex, D>, what: &str) {
    let scale = b.clone().abs().max().into_scalar().max(1.0);
    let diff = (a - b).abs().max().into_scalar();
    assert!(
        diff <= 2e-5 * scale,
        "{what}: max diff {diff} (scale {scale})"
    );
}

#[test]
fn fused_matches_the_tensor_operation_version() {
    let device = Default::default();
    for (shape, slope) in [
        ([4, 3, 5, 6], Some(0.01)),
        ([2, 5, 3, 3], None),
        ([3, 2, 1, 1], Some(0.3)),
    ] {
        let x0 = Tensor::<Flex, 4>::random(shape, Distribution::Normal(0.5, 2.0), &device);
        let g0 = Tensor::<Flex, 1>::random([shape[1]], Distribution::Normal(1.0, 0.5), &device);
        let b0 = Tensor::<Flex, 1>::random([shape[1]], Distribution::Normal(0.0, 0.5), &device);
        let r = Tensor::<Flex, 4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let run = |fused: bool| {
            let x = Tensor::<A, 4>::from_inner(x0.clone()).require_grad();
            let g = Tensor::<A, 1>::from_inner(g0.clone()).require_grad();
            let b = Tensor::<A, 1>::from_inner(b0.clone()).require_grad();
            let f = if fused {
                batch_norm_act
            } else {
                batch_norm_act_composed
            };
            let out = f(x.clone(), g.clone(), b.clone(), 1e-5, slope);
            let grads = (out.output.clone() * Tensor::from_inner(r.clone()))
                .sum()
                .backward();
            (
                out.output.inner(),
                out.mean.inner(),
                out.var.inner(),
                x.grad(&grads).unwrap(),
                g.grad(&grads).unwrap(),
                b.grad(&grads).unwrap(),
            )
        };
        let (y0, m0, v0, dx0, dg0, db0) = run(false);
        let (y1, m1, v1, dx1, dg1, db1) = run(true);
        let what = format!("{shape:?} {slope:?}");
        close(y1, y0, &format!("{what} output"));
        close(m1, m0, &format!("{what} mean"));
        close(v1, v0, &format!("{what} var"));
        close(dx1, dx0, &format!("{what} dx"));
        close(dg1, dg0, &format!("{what} dgamma"));
        close(db1, db0, &format!("{what} dbeta"));
    }
}
