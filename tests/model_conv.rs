//! `aia::kernels::conv2d` against Burn's own `conv2d` on the same backend: same output, and
//! on `Autodiff<Flex>` (where its backward is the crate's GEMM one) the same gradients.

use aia::kernels::conv2d;
use burn::backend::{Autodiff, Flex};
use burn::tensor::module;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type B = Flex;
type A = Autodiff<Flex>;

/// Uniform values in [-1, 1) from a seeded generator of the test's own: Burn's backend RNG is
/// shared by the tests running in parallel, so seeding it would not make a tensor reproducible.
fn random<const D: usize>(shape: [usize; D], seed: u64) -> Tensor<B, D> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let len = shape.iter().product();
    let values: Vec<f32> = (0..len).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_data(TensorData::new(values, shape), &Default::default())
}

fn assert_close<const D: usize>(got: Tensor<B, D>, want: Tensor<B, D>, what: &str) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let scale = want.clone().abs().max().into_scalar();
    let diff = (got - want).abs().max().into_scalar();
    assert!(
        diff <= 1e-5 * scale.max(1.0),
        "{what}: max diff {diff} (max |want| {scale})"
    );
}

/// Output and gradients of `sum(r * conv(x, w, b))` through `ours` or Burn's `conv2d`.
#[allow(clippy::type_complexity)]
fn run(
    ours: bool,
    x: &Tensor<B, 4>,
    w: &Tensor<B, 4>,
    bias: Option<&Tensor<B, 1>>,
    track: (bool, bool),
    options: &ConvOptions<2>,
) -> (
    Tensor<B, 4>,
    Option<Tensor<B, 4>>,
    Option<Tensor<B, 4>>,
    Option<Tensor<B, 1>>,
) {
    let mut xa = Tensor::<A, 4>::from_inner(x.clone());
    let mut wa = Tensor::<A, 4>::from_inner(w.clone());
    if track.0 {
        xa = xa.require_grad();
    }
    if track.1 {
        wa = wa.require_grad();
    }
    let ba = bias.map(|b| Tensor::<A, 1>::from_inner(b.clone()).require_grad());
    let y = if ours {
        conv2d(xa.clone(), wa.clone(), ba.clone(), options.clone())
    } else {
        module::conv2d(xa.clone(), wa.clone(), ba.clone(), options.clone())
    };
    let r = Tensor::<A, 4>::from_inner(random(y.dims(), 99));
    let grads = (y.clone() * r).sum().backward();
    (
        y.inner(),
        xa.grad(&grads),
        wa.grad(&grads),
        ba.and_then(|b| b.grad(&grads)),
    )
}

type Case = (usize, usize, usize, usize, usize, usize, usize, usize);

/// (N, C, O, H, W, k, pad, stride): 1x1, 3x3 same-padded and unpadded on small maps (the
/// forward unfolds the input) and on larger ones (the forward runs on the padded grid: at most
/// 6 grid positions per 5 outputs), a non-square map and kernel, and a strided one (which takes
/// Burn's own path).
const CASES: [Case; 12] = [
    (2, 8, 16, 9, 7, 1, 0, 1),
    // At least 128 channels on a small map (54 positions) with a 3x3 kernel padded by 1: the
    // direct kernel's forward on CPUs with AVX-512, Winograd's F(2x2, 3x3) on AVX2 (130
    // channels: not a multiple of their blocks of 16).
    (1, 130, 20, 6, 9, 3, 1, 1),
    (2, 128, 33, 5, 5, 3, 0, 1),
    // 64 channels on 4608 positions over the batch (2 maps of 48x48), a 3x3 kernel padded by 1:
    // Winograd's F(2x2, 3x3) for the forward and the input gradient on CPUs with AVX2 or
    // AVX-512 (every 3x3 kernel padded by 1 takes Winograd's weight gradient, on any CPU).
    (2, 64, 20, 48, 48, 3, 1, 1),
    // 20 channels in and 17 out on 391 positions, odd sides: Winograd's forward and input
    // gradient again, each on channels that are not a multiple of 16.
    (1, 20, 17, 17, 23, 3, 1, 1),
    (2, 6, 5, 8, 8, 3, 1, 1),
    (1, 3, 4, 7, 9, 3, 0, 1),
    (3, 4, 6, 5, 11, 5, 2, 1),
    (2, 4, 5, 30, 24, 3, 1, 1),
    (1, 3, 4, 40, 40, 3, 0, 1),
    (2, 5, 3, 50, 40, 5, 2, 1),
    (2, 4, 3, 8, 8, 3, 1, 2),
];

/// Random input, weight and bias for a case, from seeds `seed..seed + 3`, and its options.
fn inputs(
    &(n, c, o, h, w, k, pad, stride): &Case,
    seed: u64,
) -> (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 1>, ConvOptions<2>) {
    (
        random([n, c, h, w], seed),
        random([o, c, k, k], seed + 1),
        random([o], seed + 2),
        ConvOptions::new([stride, stride], [pad, pad], [1, 1], 1),
    )
}

#[test]
fn gradients_match_burns_convolution() {
    for (i, case) in CASES.iter().enumerate() {
        let (x, w, b, options) = inputs(case, 3 * i as u64);
        for track in [(true, true), (true, false), (false, true)] {
            let bias = (i % 2 == 0).then_some(&b);
            let what = format!("case {i} {track:?}");
            let (y0, dx0, dw0, db0) = run(false, &x, &w, bias, track, &options);
            let (y1, dx1, dw1, db1) = run(true, &x, &w, bias, track, &options);
            assert_close(y1, y0, &format!("{what}: output"));
            assert_eq!(dx1.is_some(), track.0, "{what}: dx presence");
            assert_eq!(dw1.is_some(), track.1, "{what}: dw presence");
            if let (Some(a), Some(b)) = (dx1, dx0) {
                assert_close(a, b, &format!("{what}: dx"));
            }
            if let (Some(a), Some(b)) = (dw1, dw0) {
                assert_close(a, b, &format!("{what}: dw"));
            }
            if let (Some(a), Some(b)) = (db1, db0) {
                assert_close(a, b, &format!("{what}: db"));
            }
        }
    }
}

#[test]
fn without_autodiff_it_matches_burns_convolution() {
    for (i, case) in CASES.iter().enumerate() {
        let (x, w, b, options) = inputs(case, 5 * i as u64);
        for bias in [None, Some(b)] {
            let what = format!("case {i}, bias {}", bias.is_some());
            let want = module::conv2d(x.clone(), w.clone(), bias.clone(), options.clone());
            let got = conv2d(x.clone(), w.clone(), bias, options.clone());
            assert_close(got, want, &what);
        }
    }
}

#[test]
fn strided_views_are_read_as_their_values() {
    // A transposed (non-contiguous) input and weight give the same result as contiguous copies.
    let x = random([2, 3, 12, 10], 11).swap_dims(2, 3);
    let w = random([4, 3, 3, 3], 12).swap_dims(2, 3);
    let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
    let want = module::conv2d(x.clone(), w.clone(), None, options.clone());
    assert_close(conv2d(x, w, None, options), want, "transposed views");
}
