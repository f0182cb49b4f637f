use super::*;
use burn::backend::{Autodiff, Flex};
use burn::tensor::Distribution;

type A = Autodiff<Flex>;
type Pool<B> = fn(Tensor<B, 4>) -> Tensor<B, 4>;
/// A pool's name, kernel and tensor-operation version on `Autodiff<Flex>`, and kernel on `Flex`.
type Versions = (&'static str, Pool<A>, Pool<A>, Pool<Flex>);

fn close(got: Tensor<Flex, 4>, want: Tensor<Flex, 4>, what: &str) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let diff = (got - want).abs().max().into_scalar();
    assert!(diff <= 1e-6, "{what}: max diff {diff}");
}

/// The output of `pool` on `x`, and the gradient of `sum(output * r)` with respect to `x`, `r`
/// the output's weights.
fn output_and_gradient(
    pool: Pool<A>,
    x: &Tensor<Flex, 4>,
    r: &Tensor<Flex, 4>,
) -> (Tensor<Flex, 4>, Tensor<Flex, 4>) {
    let x = Tensor::<A, 4>::from_inner(x.clone()).require_grad();
    let y = pool(x.clone());
    let grads = (y.clone() * Tensor::from_inner(r.clone())).sum().backward();
    (y.inner(), x.grad(&grads).expect("x's gradient"))
}

/// Each pool's forward (on `Flex` and `Autodiff<Flex>`) and input gradient against the
/// tensor-operation version's through Burn's autodiff: even and odd sides, the smallest maps the
/// blur pool takes, non-square maps, and a transposed (non-contiguous) input.
#[test]
fn kernels_match_the_tensor_operation_versions() {
    let pools: [Versions; 2] = [
        ("blur", blur_pool2d, blur_pool2d_composed, blur_pool2d),
        ("average", avg_pool_2x2, avg_pool_2x2_composed, avg_pool_2x2),
    ];
    let device = Default::default();
    let normal = Distribution::Normal(0.0, 1.0);
    for [n, c, h, w] in [
        [2usize, 3, 6, 8],
        [1, 2, 7, 5],
        [3, 1, 2, 2],
        [2, 4, 9, 2],
        [1, 1, 2, 3],
    ] {
        for transposed in [false, true] {
            let x = match transposed {
                false => Tensor::<Flex, 4>::random([n, c, h, w], normal, &device),
                true => Tensor::<Flex, 4>::random([n, c, w, h], normal, &device).swap_dims(2, 3),
            };
            for (name, kernel, composed, on_flex) in pools {
                let what = format!("{name} {:?} transposed {transposed}", [n, c, h, w]);
                let r = Tensor::random([n, c, h.div_ceil(2), w.div_ceil(2)], normal, &device);
                let (y, dx) = output_and_gradient(kernel, &x, &r);
                let (want_y, want_dx) = output_and_gradient(composed, &x, &r);
                close(y, want_y.clone(), &format!("{what}: output"));
                close(dx, want_dx, &format!("{what}: gradient"));
                close(on_flex(x.clone()), want_y, &format!("{what}: on Flex"));
            }
        }
    }
}

/// A map too small for reflect padding takes the tensor-operation path and its outcome; the
/// average pool takes any side.
#[test]
fn blur_pool_leaves_maps_it_cannot_pad_to_burn() {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    let device = Default::default();
    let x = Tensor::<Flex, 4>::random([1, 2, 1, 4], Distribution::Default, &device);
    let run = |pool: Pool<Flex>| catch_unwind(AssertUnwindSafe(|| pool(x.clone())));
    match (run(blur_pool2d), run(blur_pool2d_composed)) {
        (Ok(got), Ok(want)) => close(got, want, "blur of one row"),
        (got, want) => assert_eq!(got.is_err(), want.is_err(), "blur of one row fails alike"),
    }
    close(
        avg_pool_2x2(x.clone()),
        avg_pool_2x2_composed(x),
        "average of one row",
    );
}
