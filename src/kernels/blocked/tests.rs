//! The blocked operations against direct summation in `f64` and against Burn's operations on
//! `[N, C, H, W]` tensors, on shapes with channels that are not multiples of 16 and odd sides.

use std::sync::Arc;

use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData};
use rand::{Rng, SeedableRng};

use super::conv::Algorithm;
use super::winograd::Winograd;
use super::*;
use crate::kernels::conv::direct::Isa;
use crate::kernels::conv::tests::{F4X4_TOLERANCE, TOLERANCE};
use crate::kernels::{avg_pool_2x2_composed, blur_pool2d_composed};

type Rng8 = rand_chacha::ChaCha8Rng;

fn values(rng: &mut impl Rng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
}

fn tensor(x: &[f32], dims: [usize; 4]) -> Tensor<Flex, 4> {
    Tensor::from_data(TensorData::new(x.to_vec(), dims), &Default::default())
}

fn assert_close(got: &[f32], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= tol * (1.0 + w.abs()),
            "{what}: value {i} is {g}, expected {w}"
        );
    }
}

/// The blocked storage holds every value where its index formula says, and zero past the last
/// channel; back to `[N, C, H, W]` it is the input.
#[test]
fn maps_convert_both_ways_with_zero_padding_lanes() {
    let dims = [2, 37, 3, 5];
    let x = values(&mut Rng8::seed_from_u64(1), dims.iter().product());
    let map = BlockedMap::from_nchw(&x, dims);
    assert_eq!(map.data.len(), 2 * 3 * 3 * 5 * 16);
    for ni in 0..2 {
        for ch in 0..48 {
            for p in 0..15 {
                let at = ((ni * 3 + ch / 16) * 15 + p) * 16 + ch % 16;
                let want = if ch < 37 {
                    x[(ni * 37 + ch) * 15 + p]
                } else {
                    0.0
                };
                assert_eq!(map.data[at], want, "image {ni}, channel {ch}, position {p}");
            }
        }
    }
    assert_eq!(map.to_nchw(), x);
    let padded = map.padded(1);
    assert_eq!(padded.len(), 2 * 3 * 5 * 7 * 16);
    // Image 1, block 0, position (2, 3) (padded (3, 4)), lane 4.
    let interior = (((3 * 5) + 3) * 7 + 4) * 16 + 4;
    assert_eq!(padded[interior], x[(37 + 4) * 15 + 2 * 5 + 3]);
    assert_eq!(
        padded[(5 * 7 + 6) * 16],
        0.0,
        "the last padded position of image 0"
    );
}

/// `act(conv(x) * scale + shift + residual)` by direct summation, `[N, O, H, W]`.
#[allow(clippy::too_many_arguments)]
fn naive_folded(
    x: &[f32],
    [n, c, h, w]: [usize; 4],
    weight: &[f32],
    (o, k): (usize, usize),
    scale: &[f32],
    shift: &[f32],
    residual: Option<&[f32]>,
    slope: Option<f32>,
) -> Vec<f64> {
    let p = (k / 2) as isize;
    let mut y = vec![0.0f64; n * o * h * w];
    for ni in 0..n {
        for oi in 0..o {
            for yy in 0..h {
                for xx in 0..w {
                    let mut sum = 0.0f64;
                    for ci in 0..c {
                        for ky in 0..k {
                            for kx in 0..k {
                                let iy = yy as isize + ky as isize - p;
                                let ix = xx as isize + kx as isize - p;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let xi = ((ni * c + ci) * h + iy as usize) * w + ix as usize;
                                let wi = ((oi * c + ci) * k + ky) * k + kx;
                                sum += x[xi] as f64 * weight[wi] as f64;
                            }
                        }
                    }
                    let at = ((ni * o + oi) * h + yy) * w + xx;
                    let mut v = sum * scale[oi] as f64 + shift[oi] as f64;
                    v += residual.map_or(0.0, |r| r[at] as f64);
                    if let Some(s) = slope {
                        if v < 0.0 {
                            v *= s as f64;
                        }
                    }
                    y[at] = v;
                }
            }
        }
    }
    y
}

/// The folded convolution with the tiles of every instruction set the CPU runs, 1x1 and 3x3, with
/// and without residual and activation, on channels that fill one, two or three blocks partly,
/// rows shorter and longer than a register tile.
#[test]
fn folded_convolution_matches_direct_summation() {
    let isas = Isa::supported();
    println!("tiles tested: {isas:?}");
    let mut rng = Rng8::seed_from_u64(3);
    let cases = [
        // (n, c, o, h, w, k, residual, slope)
        (2, 37, 20, 5, 9, 3, false, Some(0.01)),
        (1, 16, 48, 15, 4, 3, true, Some(0.0)),
        (2, 40, 33, 7, 3, 1, true, None),
        (3, 5, 17, 2, 17, 1, false, Some(0.5)),
        (1, 33, 16, 1, 1, 3, false, None),
        // 1x1 on fewer than 14 positions (tiles of 7 and 1), 5 and 3 output blocks.
        (2, 20, 80, 3, 3, 1, true, Some(0.01)),
        (1, 16, 48, 2, 5, 1, false, None),
        // Input channels in several chunks on every instruction set (two or three, the last
        // one shorter), so that chunks add to the sums before them and only the last finishes.
        (1, 600, 24, 4, 5, 1, true, Some(0.1)),
        (1, 90, 20, 3, 4, 3, true, Some(0.01)),
        // Two bands of rows, the second shorter, on 9-wide rows (tiles of 5 and 4 on AVX2).
        (1, 18, 20, 37, 9, 3, false, Some(0.01)),
    ];
    for (n, c, o, h, w, k, with_residual, slope) in cases {
        let what =
            format!("n {n}, c {c}, o {o}, {h}x{w}, k {k}, residual {with_residual}, {slope:?}");
        let x = values(&mut rng, n * c * h * w);
        let weight = values(&mut rng, o * c * k * k);
        let scale = values(&mut rng, o);
        let shift = values(&mut rng, o);
        let residual = with_residual.then(|| values(&mut rng, n * o * h * w));
        let want = naive_folded(
            &x,
            [n, c, h, w],
            &weight,
            (o, k),
            &scale,
            &shift,
            residual.as_deref(),
            slope,
        );
        let res = residual.map(|r| BlockedMap::from_nchw(&r, [n, o, h, w]));
        let x = BlockedMap::from_nchw(&x, [n, c, h, w]);
        let algorithms = match k {
            3 => &[
                Algorithm::Direct,
                Algorithm::Winograd(Some(Winograd::F2x2)),
                Algorithm::Winograd(Some(Winograd::F4x4)),
                Algorithm::Winograd(None),
            ][..],
            _ => &[Algorithm::Direct],
        };
        for &algorithm in algorithms {
            let kernels = Arc::new(weight.clone());
            let conv = FoldedConv::with_algorithm(kernels, [o, c, k, k], &scale, &shift, algorithm);
            for &isa in &isas {
                let what = format!("{what}, {algorithm:?}, {isa:?}");
                let y = conv.forward_on(isa, &x, res.as_ref(), slope);
                assert_eq!((y.n, y.c, y.h, y.w), (n, o, h, w), "{what}: shape");
                assert_close(&y.to_nchw(), &want, tolerance(algorithm), &what);
                assert_padding_is_zero(&y, &what);
            }
        }
    }
}

/// Inference takes F(4x4, 3x3) from 32 of its 4x4 tiles over the batch (hand-counted, the last
/// row and column of tiles reaching past the map).
#[test]
fn inference_takes_f4x4_from_32_tiles() {
    use Winograd::{F2x2, F4x4};
    // (maps, height, width): tiles, variant.
    for (n, h, w, want) in [
        (1, 7, 7, F2x2),   // 4
        (1, 14, 14, F2x2), // 16
        (1, 20, 24, F2x2), // 30
        (2, 14, 13, F4x4), // 32
        (8, 7, 7, F4x4),   // 32
        (1, 28, 28, F4x4), // 49
    ] {
        assert_eq!(Winograd::for_map(n, h, w), want, "{n} maps of {h}x{w}");
    }
}

/// The relative tolerance of an algorithm's outputs: the convolution tests' (F(4x4, 3x3)'s
/// where it may run).
fn tolerance(algorithm: Algorithm) -> f64 {
    match algorithm {
        Algorithm::Winograd(None | Some(Winograd::F4x4)) => F4X4_TOLERANCE,
        _ => TOLERANCE,
    }
}

/// Every lane past the last channel holds zero.
fn assert_padding_is_zero(map: &BlockedMap, what: &str) {
    let (blocks, positions) = (map.blocks(), map.h * map.w);
    for ni in 0..map.n {
        let last = &map.data[((ni * blocks + blocks - 1) * positions) * 16..][..positions * 16];
        for (i, &v) in last.iter().enumerate() {
            if (blocks - 1) * 16 + i % 16 >= map.c {
                assert_eq!(v, 0.0, "{what}: image {ni}, padding lane {}", i % 16);
            }
        }
    }
}

/// A blocked map of the same shape and values (within 1e-6) as a Burn tensor, padding lanes zero.
fn assert_matches(got: &BlockedMap, want: Tensor<Flex, 4>, what: &str) {
    assert_eq!([got.n, got.c, got.h, got.w], want.dims(), "{what}: shape");
    let want: Vec<f64> = want.into_data().iter::<f64>().collect();
    assert_close(&got.to_nchw(), &want, 1e-6, what);
    assert_padding_is_zero(got, what);
}

/// The blur pool and the shortcut's average pool against Burn's operations on the same maps
/// (as the model runs them), and the channel means against a sum: even and odd sides, 1 to 3
/// blocks of channels.
#[test]
fn pools_match_burn() {
    let mut rng = Rng8::seed_from_u64(4);
    for dims in [[2, 37, 6, 8], [1, 16, 7, 5], [3, 3, 2, 3], [1, 40, 9, 9]] {
        let what = format!("{dims:?}");
        let x = values(&mut rng, dims.iter().product());
        let map = BlockedMap::from_nchw(&x, dims);

        let blurred = blur_pool(&map);
        assert_matches(
            &blurred,
            blur_pool2d_composed(tensor(&x, dims)),
            &format!("blur pool {what}"),
        );
        let pooled = avg_pool_2x2(&map);
        let want = avg_pool_2x2_composed(tensor(&x, dims));
        assert_matches(&pooled, want, &format!("average pool {what}"));

        let [n, c, h, w] = dims;
        let want: Vec<f64> = x
            .chunks(h * w)
            .map(|plane| plane.iter().map(|&v| v as f64).sum::<f64>() / (h * w) as f64)
            .collect();
        assert_eq!(want.len(), n * c);
        assert_close(&channel_means(&map), &want, 1e-6, &format!("means {what}"));
    }
}

/// The squeeze-and-excitation scaling and the residual add with ReLU, value by value.
#[test]
fn channel_scaling_and_residual_add() {
    let mut rng = Rng8::seed_from_u64(5);
    let dims @ [n, c, h, w] = [2, 21, 3, 2];
    let x = values(&mut rng, n * c * h * w);
    let s = values(&mut rng, n * c * h * w);
    let gate = values(&mut rng, n * c);
    let mut map = BlockedMap::from_nchw(&x, dims);
    scale_channels(&mut map, &gate);
    add_relu(&mut map, &BlockedMap::from_nchw(&s, dims));
    let want: Vec<f64> = (0..x.len())
        .map(|i| (x[i] as f64 * gate[i / (h * w)] as f64 + s[i] as f64).max(0.0))
        .collect();
    assert_close(&map.to_nchw(), &want, 1e-6, "scaled, added, rectified");
    assert_padding_is_zero(&map, "scaled, added, rectified");
}

/// Winograd's transformed kernels gathered by each instruction set's vectors equal, bit for bit,
/// those packed lane by lane, with and without scales, for the kernels and for the transposed
/// convolution's, on channels that fill their last block partly.
#[test]
fn transformed_kernels_are_the_same_on_every_path() {
    use super::winograd::{pack, packed_len, Kernels};

    let mut rng = Rng8::seed_from_u64(21);
    for ((o, c), winograd) in [(16, 16), (37, 20), (5, 33)]
        .into_iter()
        .flat_map(|shape| [(shape, Winograd::F2x2), (shape, Winograd::F4x4)])
    {
        let weight = values(&mut rng, o * c * 9);
        let scale = values(&mut rng, o.max(c));
        for (kernels, outputs, what) in [
            (Kernels::of(&weight, [o, c]), o, "kernels"),
            (Kernels::transposed(&weight, [o, c]), c, "transposed"),
        ] {
            for scale in [None, Some(&scale[..outputs])] {
                let packed = |isa| {
                    let mut p = vec![f32::NAN; packed_len(winograd, [outputs, o + c - outputs])];
                    pack(winograd, isa, kernels, scale, &mut p);
                    p
                };
                let want = packed(None);
                assert!(want.iter().all(|v| v.is_finite()), "every value written");
                for isa in Isa::supported() {
                    let got = packed(Some(isa));
                    let same = got
                        .iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    let scaled = scale.is_some();
                    assert!(
                        same,
                        "{what}, {o}x{c}, {winograd:?}, scaled {scaled}, {isa:?}"
                    );
                }
            }
        }
    }
}

/// Winograd's bands: whole AVX-512 tiles of 14 positions where the last band stays within half
/// a tile of the others, even shares otherwise (hand-computed: 512 channels on 7x7 maps at batch
/// 8, 128 tiles, take 64 and 64 rather than 70 and 58).
#[test]
fn winograd_bands_share_the_tiles_evenly() {
    use super::winograd::band_tiles;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("a pool of 2 threads");
    pool.install(|| {
        // 512 channels, 128 tiles: one band per thread, 70 would leave 58.
        assert_eq!(band_tiles(16, 32, 32, 128), 64);
        // 256 channels, 392 tiles: at least 168 per band, so 4 bands of 98 (7 whole tiles).
        assert_eq!(band_tiles(16, 16, 16, 392), 98);
        // 16 channels: one band per thread, 56 leaves 54 (within half a tile), 50 and 50 not.
        assert_eq!(band_tiles(16, 1, 1, 110), 56);
        assert_eq!(band_tiles(16, 1, 1, 100), 50);
        // No tiles: one band of one.
        assert_eq!(band_tiles(16, 1, 1, 0), 1);
    });
}
