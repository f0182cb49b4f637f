use super::*;
use burn::backend::{Autodiff, Flex};
use burn::tensor::Distribution;

type A = Autodiff<Flex>;
type Op<B, const D: usize> = fn(Tensor<B, 4>, Tensor<B, D>) -> Tensor<B, 4>;

/// Equal up to rounding: the gate's gradient sums a plane in another order.
fn close<const D: usize>(got: Tensor<Flex, D>, want: Tensor<Flex, D>, what: &str) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let scale = want.clone().abs().max().into_scalar().max(1.0);
    let diff = (got - want).abs().max().into_scalar();
    assert!(
        diff <= 1e-6 * scale,
        "{what}: max diff {diff} (scale {scale})"
    );
}

/// A random `[N, C, H, W]` tensor, transposed in its last two axes (not contiguous) if asked.
fn map(dims: [usize; 4], transposed: bool) -> Tensor<Flex, 4> {
    let [n, c, h, w] = dims;
    let normal = Distribution::Normal(0.0, 1.0);
    match transposed {
        false => Tensor::random(dims, normal, &Default::default()),
        true => Tensor::random([n, c, w, h], normal, &Default::default()).swap_dims(2, 3),
    }
}

/// The output of `op(a, b)` and the gradients of `sum(output * r)` with respect to `a` and `b`,
/// on `Autodiff<Flex>`.
fn run<const D: usize>(
    op: Op<A, D>,
    a: &Tensor<Flex, 4>,
    b: &Tensor<Flex, D>,
    r: &Tensor<Flex, 4>,
) -> (Tensor<Flex, 4>, Tensor<Flex, 4>, Tensor<Flex, D>) {
    let a = Tensor::<A, 4>::from_inner(a.clone()).require_grad();
    let b = Tensor::<A, D>::from_inner(b.clone()).require_grad();
    let y = op(a.clone(), b.clone());
    let grads = (y.clone() * Tensor::from_inner(r.clone())).sum().backward();
    let da = a.grad(&grads).expect("a's gradient");
    (y.inner(), da, b.grad(&grads).expect("b's gradient"))
}

/// `op` on `Flex` and on `Autodiff<Flex>`, with both gradients, against `composed` through
/// Burn's autodiff.
fn check<const D: usize>(
    (op, composed, on_flex): (Op<A, D>, Op<A, D>, Op<Flex, D>),
    a: &Tensor<Flex, 4>,
    b: &Tensor<Flex, D>,
    what: &str,
) {
    let r = Tensor::random(
        a.dims(),
        Distribution::Normal(0.0, 1.0),
        &Default::default(),
    );
    let (y, da, db) = run(op, a, b, &r);
    let (want_y, want_da, want_db) = run(composed, a, b, &r);
    close(y, want_y.clone(), &format!("{what}: output"));
    close(da, want_da, &format!("{what}: first input's gradient"));
    close(db, want_db, &format!("{what}: second input's gradient"));
    close(
        on_flex(a.clone(), b.clone()),
        want_y,
        &format!("{what}: on Flex"),
    );
}

/// The residual add and the channel gate against their tensor-operation versions: odd shapes,
/// one image, 1x1 maps, transposed (non-contiguous) inputs. The residual add's values include
/// exact zeros and negatives, where the ReLU's mask flips.
#[test]
fn kernels_match_the_tensor_operation_versions() {
    let add: (Op<A, 4>, Op<A, 4>, Op<Flex, 4>) = (add_relu, add_relu_composed, add_relu);
    let gate: (Op<A, 2>, Op<A, 2>, Op<Flex, 2>) =
        (scale_channels, scale_channels_composed, scale_channels);
    for dims in [[2, 3, 5, 7], [1, 4, 1, 1], [3, 2, 6, 4]] {
        for transposed in [false, true] {
            let what = format!("{dims:?} transposed {transposed}");
            let x = map(dims, transposed);
            check(
                add,
                &x,
                &map(dims, !transposed),
                &format!("add_relu {what}"),
            );
            // x + (-x) is zero: the mask there is the composed version's.
            check(add, &x, &(-x.clone()), &format!("add_relu of zeros {what}"));
            let [n, c, ..] = dims;
            let g = Tensor::random([n, c], Distribution::Default, &Default::default());
            check(gate, &x, &g, &format!("scale_channels {what}"));
        }
    }
}
