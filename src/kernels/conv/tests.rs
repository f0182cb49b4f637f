use rand::{Rng, SeedableRng};

use super::backward::gemm_backward;
use super::conv1x1;
#[cfg(target_arch = "x86_64")]
use super::direct::{forward_on, transposed, Isa};
#[cfg(target_arch = "x86_64")]
use super::flex::Blocked;
use super::gemm::gemm_forward;
use super::geometry::Grid;

/// Calls `f(yi, xi, wi)` for every product `x[xi] * w[wi]` that output `y[yi]` of
/// `conv2d(x, w)` sums (indices into `[N, O, Ho, Wo]`, `[N, C, H, W]` and `[O, C, kh, kw]`).
fn for_each_term(grid: Grid, mut f: impl FnMut(usize, usize, usize)) {
    let Grid {
        n,
        c,
        o,
        h,
        w: wd,
        kh,
        kw,
        ph,
        pw,
    } = grid;
    let (ho, wo) = (grid.ho(), grid.wo());
    for ni in 0..n {
        for oi in 0..o {
            for y in 0..ho {
                for xo in 0..wo {
                    let yi = ((ni * o + oi) * ho + y) * wo + xo;
                    for ci in 0..c {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let (iy, ix) = (y + ky, xo + kx);
                                if iy < ph || ix < pw || iy - ph >= h || ix - pw >= wd {
                                    continue;
                                }
                                let xi = ((ni * c + ci) * h + iy - ph) * wd + ix - pw;
                                let wi = ((oi * c + ci) * kh + ky) * kw + kx;
                                f(yi, xi, wi);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Both gradients of `sum(g * conv2d(x, w))` by direct summation in f64.
fn naive(grid: Grid, x: &[f32], w: &[f32], g: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let mut dx = vec![0.0f64; x.len()];
    let mut dw = vec![0.0f64; w.len()];
    for_each_term(grid, |yi, xi, wi| {
        dw[wi] += g[yi] as f64 * x[xi] as f64;
        dx[xi] += g[yi] as f64 * w[wi] as f64;
    });
    (dx, dw)
}

/// `conv2d(x, w) + bias` by direct summation in f64, `[N, O, Ho, Wo]`.
fn naive_forward(grid: Grid, x: &[f32], w: &[f32], bias: &[f32]) -> Vec<f64> {
    let plane = grid.ho() * grid.wo();
    let mut y: Vec<f64> = (0..grid.n * grid.o * plane)
        .map(|yi| bias[yi / plane % grid.o] as f64)
        .collect();
    for_each_term(grid, |yi, xi, wi| y[yi] += x[xi] as f64 * w[wi] as f64);
    y
}

/// A convolution's `(n, c, o, h, w, kh, kw, ph, pw)`.
type Geometry = (
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
);

/// The grid of a geometry.
fn grid_of((n, c, o, h, w, kh, kw, ph, pw): Geometry) -> Grid {
    Grid {
        n,
        c,
        o,
        h,
        w,
        kh,
        kw,
        ph,
        pw,
    }
}

/// The grid of a 3x3 convolution padded by 1 from `c` to `c` channels on `n` maps `side x side`.
fn same_3x3(c: usize, side: usize, n: usize) -> Grid {
    grid_of((n, c, c, side, side, 3, 3, 1, 1))
}

/// A grid from a geometry, and random inputs for it.
fn case(rng: &mut impl Rng, geometry: Geometry) -> (Grid, impl FnMut(usize) -> Vec<f32> + '_) {
    let grid = grid_of(geometry);
    let random = move |len: usize| (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    (grid, random)
}

/// Random inputs for a convolution's backward, and both gradients by direct summation in f64.
struct GradientCase {
    grid: Grid,
    x: Vec<f32>,
    w: Vec<f32>,
    /// The output gradient.
    g: Vec<f32>,
    want_dx: Vec<f64>,
    want_dw: Vec<f64>,
}

/// A [`GradientCase`] for `geometry`.
fn gradient_case(rng: &mut impl Rng, geometry: Geometry) -> GradientCase {
    let (grid, mut random) = case(rng, geometry);
    let x = random(grid.n * grid.c * grid.h * grid.w);
    let w = random(grid.o * grid.c * grid.kh * grid.kw);
    let g = random(grid.n * grid.o * grid.ho() * grid.wo());
    let (want_dx, want_dw) = naive(grid, &x, &w, &g);
    GradientCase {
        grid,
        x,
        w,
        g,
        want_dx,
        want_dw,
    }
}

/// The relative tolerance of the kernels' values against direct summation (absolute near 0).
pub(crate) const TOLERANCE: f64 = 1e-5;

/// The tolerance of Winograd's F(4x4, 3x3), whose transforms scale values by up to 8 and 1/24:
/// its sums round about ten times as much as the others'.
pub(crate) const F4X4_TOLERANCE: f64 = 1e-4;

/// `forward(grid, x, w, bias)` against direct summation in f64 on random inputs for `geometry`,
/// with the bias and without; returns the grid.
fn check_forward(
    rng: &mut impl Rng,
    geometry: Geometry,
    forward: impl Fn(Grid, &[f32], &[f32], Option<&[f32]>) -> Vec<f32>,
) -> Grid {
    check_forward_within(rng, geometry, TOLERANCE, forward)
}

/// [`check_forward`] within the relative tolerance `tol`.
fn check_forward_within(
    rng: &mut impl Rng,
    geometry: Geometry,
    tol: f64,
    forward: impl Fn(Grid, &[f32], &[f32], Option<&[f32]>) -> Vec<f32>,
) -> Grid {
    let (grid, mut random) = case(rng, geometry);
    let x = random(grid.n * grid.c * grid.h * grid.w);
    let w = random(grid.o * grid.c * grid.kh * grid.kw);
    let bias = random(grid.o);
    let want = naive_forward(grid, &x, &w, &bias);
    let plane = grid.ho() * grid.wo();
    for b in [Some(&bias[..]), None] {
        let got = forward(grid, &x, &w, b);
        assert_eq!(got.len(), want.len(), "length for {grid:?}");
        for (i, (a, want)) in got.iter().zip(&want).enumerate() {
            let unbiased = bias[i / plane % grid.o] as f64;
            let want = if b.is_some() { *want } else { want - unbiased };
            assert!(
                (*a as f64 - want).abs() <= tol * (1.0 + want.abs()),
                "y[{i}] = {a}, want {want}, for {grid:?}, bias {}",
                b.is_some()
            );
        }
    }
    grid
}

#[test]
fn gemm_forward_matches_direct_summation() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    // How many cases took each path: unfolded, on the grid.
    let mut paths = [0; 2];
    // Unfolded (small maps, padding a large share) and on the padded grid (larger maps).
    for geometry in [
        (2, 3, 4, 5, 6, 3, 3, 1, 1),
        (1, 4, 3, 6, 5, 3, 1, 1, 0),
        (2, 5, 2, 4, 4, 5, 5, 2, 2),
        (2, 3, 4, 30, 26, 3, 3, 1, 1),
        (1, 2, 3, 40, 40, 3, 3, 0, 0),
        (1, 3, 2, 36, 44, 5, 3, 2, 1),
    ] {
        let grid = check_forward(&mut rng, geometry, gemm_forward);
        paths[usize::from(grid.forward_on_grid())] += 1;
    }
    assert_eq!(paths, [3, 3], "cases per path (unfolded, grid)");
}

/// The direct kernel, with the tiles of every instruction set the CPU runs (none on CPUs without
/// AVX2), against direct summation in f64: channels
/// that are and are not multiples of 16, one, three and five blocks of output channels (the
/// last alone in its pair), rows shorter and longer than a tile, 3x3, 1x1 and non-square
/// kernels, with and without padding and bias, a single image.
#[cfg(target_arch = "x86_64")]
#[test]
fn direct_forward_matches_direct_summation() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let isas = Isa::supported();
    println!("tiles tested: {isas:?}");
    for geometry in [
        (2, 16, 16, 5, 6, 3, 3, 1, 1),
        (1, 37, 40, 9, 23, 3, 3, 1, 1),
        (2, 20, 33, 7, 15, 3, 3, 0, 0),
        (1, 3, 5, 30, 29, 1, 1, 0, 0),
        (2, 18, 17, 6, 8, 3, 1, 1, 0),
        (1, 130, 48, 4, 4, 3, 3, 1, 1),
        (2, 18, 70, 1, 12, 1, 1, 0, 0),
        (1, 16, 16, 2, 11, 3, 3, 1, 1),
    ] {
        for &isa in &isas {
            check_forward(&mut rng, geometry, |grid, x, w, b| {
                forward_on(isa, grid, x, w, b)
            });
        }
    }
}

/// Every value of a gradient within [`TOLERANCE`] of direct summation.
fn assert_gradient(name: &str, got: &[f32], want: &[f64], grid: Grid) {
    assert_gradient_within(name, got, want, grid, TOLERANCE);
}

/// Every value of a gradient within the relative tolerance `tol` (absolute near 0) of direct
/// summation.
fn assert_gradient_within(name: &str, got: &[f32], want: &[f64], grid: Grid, tol: f64) {
    assert_eq!(got.len(), want.len(), "{name} length for {grid:?}");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(
            (*a as f64 - b).abs() <= tol * (1.0 + b.abs()),
            "{name}[{i}] = {a}, want {b}, for {grid:?}"
        );
    }
}

/// The direct kernel's input gradient, with every instruction set's tiles the CPU runs, against
/// direct summation in f64: channels that are and are not multiples of 16, padding of 0, 1 and 2
/// (2, 1 and 0 for the turned kernel), a non-square kernel and map, a single image.
#[cfg(target_arch = "x86_64")]
#[test]
fn direct_backward_input_matches_direct_summation() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    for geometry in [
        (2, 16, 16, 5, 6, 3, 3, 1, 1),
        (1, 37, 40, 9, 23, 3, 3, 1, 1),
        (2, 20, 33, 7, 15, 3, 3, 0, 0),
        (2, 18, 17, 6, 8, 3, 1, 1, 0),
        (1, 130, 48, 4, 4, 3, 3, 2, 1),
    ] {
        for isa in Isa::supported() {
            check_input_gradient(&mut rng, geometry, (isa, TOLERANCE), |grid, g, w| {
                let (turned_grid, turned) = transposed(grid, w);
                forward_on(isa, turned_grid, g, &turned, None)
            });
        }
    }
}

/// The input gradient as `forward` (of the grid, output gradient and kernel) computes it,
/// against direct summation in f64 on random inputs for `geometry`, within the relative
/// tolerance `tol`.
#[cfg(target_arch = "x86_64")]
fn check_input_gradient(
    rng: &mut impl Rng,
    geometry: Geometry,
    (isa, tol): (Isa, f64),
    forward: impl Fn(Grid, &[f32], &[f32]) -> Vec<f32>,
) {
    let GradientCase {
        grid,
        w,
        g,
        want_dx,
        ..
    } = gradient_case(rng, geometry);
    let got = forward(grid, &g, &w);
    assert_gradient_within(&format!("dx on {isa:?}"), &got, &want_dx, grid, tol);
}

#[test]
fn gemm_backward_matches_direct_summation() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    // 1x1, 3x3 with and without padding, a non-square kernel and map, a single image; dW on
    // the padded grid (the larger maps) and on the unfolded input (the small ones).
    let mut dw_on_grid = Vec::new();
    for geometry in [
        (2, 3, 4, 5, 6, 1, 1, 0, 0),
        (2, 3, 4, 5, 6, 3, 3, 1, 1),
        (3, 2, 5, 7, 4, 3, 3, 0, 0),
        (1, 4, 3, 6, 5, 3, 1, 1, 0),
        (2, 5, 2, 4, 4, 5, 5, 2, 2),
        (2, 3, 4, 30, 26, 3, 3, 1, 1),
        (1, 2, 3, 30, 24, 3, 1, 1, 0),
    ] {
        let GradientCase {
            grid,
            x,
            w,
            g,
            want_dx,
            want_dw,
        } = gradient_case(&mut rng, geometry);
        let (dx, dw) = gemm_backward(grid, Some(&x), Some(&w), &g);
        for (name, got, want) in [("dx", dx.unwrap(), want_dx), ("dw", dw.unwrap(), want_dw)] {
            assert_gradient(name, &got, &want, grid);
        }
        // Each gradient alone is the same as when both are asked for.
        let (dx_only, none) = gemm_backward(grid, None, Some(&w), &g);
        assert!(none.is_none() && dx_only.is_some());
        let (none, dw_only) = gemm_backward(grid, Some(&x), None, &g);
        assert!(none.is_none() && dw_only.is_some());
        if grid.kh * grid.kw > 1 {
            dw_on_grid.push(grid.forward_on_grid());
        }
    }
    assert!(dw_on_grid.contains(&true) && dw_on_grid.contains(&false));
}

/// The 1x1 kernels, forward (with and without bias) and both gradients, against direct
/// summation in f64, on 1, 2 and 3 threads (so that the images are split over the threads and
/// not): batches of 1 to 5, maps of one position, below and above the size from which training
/// takes these gradients, non-square, channels not multiples of 16; small maps of fewer
/// positions than a GEMM panel, of whole panels, and of whole panels and a tail (the forward
/// computes the tail over the batch).
#[test]
fn conv1x1_matches_direct_summation() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(13);
    for threads in [1, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a thread pool");
        for geometry in [
            (1, 5, 7, 3, 4, 1, 1, 0, 0),
            (5, 9, 4, 1, 1, 1, 1, 0, 0),
            (2, 17, 9, 7, 7, 1, 1, 0, 0),
            (1, 6, 5, 7, 7, 1, 1, 0, 0),
            (3, 20, 18, 5, 7, 1, 1, 0, 0),
            (2, 6, 5, 4, 8, 1, 1, 0, 0),
            (3, 8, 20, 11, 13, 1, 1, 0, 0),
            (4, 33, 6, 12, 10, 1, 1, 0, 0),
        ] {
            pool.install(|| {
                let grid = check_forward(&mut rng, geometry, conv1x1::forward);
                assert_eq!(conv1x1::applies(&grid), grid.h * grid.w > 1);
                let GradientCase {
                    x,
                    w,
                    g,
                    want_dx,
                    want_dw,
                    ..
                } = gradient_case(&mut rng, geometry);
                let dx = conv1x1::input_gradient(grid, &w, &g);
                assert_gradient(&format!("dx, {threads} threads"), &dx, &want_dx, grid);
                let dw = conv1x1::weight_gradient(grid, &x, &g);
                assert_gradient(&format!("dw, {threads} threads"), &dw, &want_dw, grid);
            });
        }
    }
    let padded = case(&mut rng, (1, 2, 2, 3, 3, 1, 1, 1, 0)).0;
    assert!(!conv1x1::applies(&padded));
}

/// Winograd's F(2x2, 3x3) and F(4x4, 3x3) on `[N, C, H, W]` slices, as training runs the first,
/// with the tiles of every instruction set the CPU runs and the kernels transformed on either
/// schedule: the forward with and without bias, and the input gradient as the forward of the
/// transposed convolution, against direct summation in f64. Sides that the tiles divide and do
/// not (by 1 to 3), channels that are and are not multiples of 16 (an odd count of output
/// blocks, a single block), one image, a single row.
#[cfg(target_arch = "x86_64")]
#[test]
fn winograd_forward_and_input_gradient_match_direct_summation() {
    use crate::kernels::blocked::winograd::{forward_nchw, Kernels, Schedule, Winograd};
    use crate::kernels::conv::direct::transposed_grid;

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(13);
    for geometry in [
        (2, 16, 16, 5, 6, 3, 3, 1, 1),
        (1, 37, 40, 9, 23, 3, 3, 1, 1),
        (2, 70, 20, 7, 7, 3, 3, 1, 1),
        (1, 130, 48, 1, 9, 3, 3, 1, 1),
        (1, 20, 17, 8, 10, 3, 3, 1, 1),
    ] {
        let schedules = [Schedule::KernelsFirst, Schedule::ByOutputGroups];
        for (isa, schedule) in Isa::supported()
            .into_iter()
            .flat_map(|i| schedules.map(|s| (i, s)))
        {
            for (variant, tol) in [
                (Winograd::F2x2, TOLERANCE),
                (Winograd::F4x4, F4X4_TOLERANCE),
            ] {
                check_forward_within(&mut rng, geometry, tol, |grid, x, w, b| {
                    let w = Kernels::of(w, [grid.o, grid.c]);
                    forward_nchw(variant, schedule, isa, grid, x, w, b)
                });
                // The turned kernels read in place, as training reads them.
                check_input_gradient(&mut rng, geometry, (isa, tol), |grid, g, w| {
                    let turned = Kernels::transposed(w, [grid.o, grid.c]);
                    let grid = transposed_grid(&grid);
                    forward_nchw(variant, schedule, isa, grid, g, turned, None)
                });
            }
        }
    }
    // Training transforms each group's kernels in its task where the transformed kernels are
    // many for the tiles: TResNet-M's 512 channels on 7x7 maps at batch 8 and on 14x14 maps at
    // batch 1, not 256 channels on 14x14 maps at batch 1 or 512 on them at batch 8.
    let schedule = |c, side, n| Schedule::for_grid(Winograd::F2x2, &same_3x3(c, side, n));
    assert_eq!(schedule(512, 7, 8), Schedule::ByOutputGroups);
    assert_eq!(schedule(512, 14, 1), Schedule::ByOutputGroups);
    assert_eq!(schedule(256, 14, 1), Schedule::KernelsFirst);
    assert_eq!(schedule(512, 14, 8), Schedule::KernelsFirst);
}

/// Winograd's F(2x2, 3x3) weight gradient against direct summation in f64, with the tile rows
/// split as the threads would take them and as one share, in chunks of one, two and every tile
/// row: odd and even sides (tiles past the map's last row and column), channels that are and
/// are not multiples of 16, one image, a single pixel, more shares than tile rows.
#[test]
fn winograd_weight_gradient_matches_direct_summation() {
    use super::winograd_dw::{preferred, weight_gradient, weight_gradient_with, Plan};

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
    for geometry in [
        (2, 16, 16, 5, 6, 3, 3, 1, 1),
        (1, 37, 40, 9, 23, 3, 3, 1, 1),
        (3, 20, 33, 7, 4, 3, 3, 1, 1),
        (2, 70, 20, 8, 7, 3, 3, 1, 1),
        (1, 5, 3, 1, 1, 3, 3, 1, 1),
    ] {
        let (grid, mut random) = case(&mut rng, geometry);
        let x = random(grid.n * grid.c * grid.h * grid.w);
        let g = random(grid.n * grid.o * grid.h * grid.w);
        let w = vec![0.0; grid.o * grid.c * 9];
        let (_, want) = naive(grid, &x, &w, &g);
        assert_gradient("dw", &weight_gradient(grid, &x, &g), &want, grid);
        for parts in [1, 2, 3] {
            for chunk_rows in [1, 2, 100] {
                let got = weight_gradient_with(grid, &x, &g, Plan { parts, chunk_rows });
                assert_gradient(&format!("dw in {parts} x {chunk_rows}"), &got, &want, grid);
            }
        }
    }
    // Training takes it from 256 tiles over the batch: 7x7 maps (4x4 tiles) from batch 16.
    let mut grid_of = |n, side, pad| case(&mut rng, (n, 8, 8, side, side, 3, 3, pad, pad)).0;
    assert!(!preferred(&grid_of(8, 7, 1)) && !preferred(&grid_of(2, 14, 1)));
    assert!(preferred(&grid_of(16, 7, 1)) && preferred(&grid_of(8, 14, 1)));
    assert!(!preferred(&grid_of(8, 14, 0)));
}

/// The tiles' own feature checks agree with the list of kernel paths the CPU supports.
#[cfg(target_arch = "x86_64")]
#[test]
fn the_tiles_run_where_their_kernel_paths_do() {
    use crate::kernels::loss::CpuPath;

    let paths = CpuPath::supported();
    assert_eq!(Isa::Avx512.runs(), paths.contains(&CpuPath::Avx512));
    assert_eq!(Isa::Avx2.runs(), paths.contains(&CpuPath::Avx2));
}

/// Training's 3x3 convolutions padded by 1: on AVX-512, Winograd's kernel from 256 positions over
/// the batch or from 128 input channels, the direct kernel on smaller maps of fewer channels; on
/// AVX2, Winograd's on every map (its direct tiles lose to the GEMMs); none without tiles.
#[cfg(target_arch = "x86_64")]
#[test]
fn training_runs_winograd_on_small_maps_from_128_channels() {
    // Each (channels, side, batch) of `cases` takes a kernel that `want` accepts.
    let expect = |cases: &[(usize, usize, usize)], want: &dyn Fn(Option<Blocked>) -> bool| {
        for &(c, side, n) in cases {
            let chosen = Blocked::for_grid(&same_3x3(c, side, n));
            assert!(
                want(chosen),
                "{c} channels, {n} of {side}x{side}: {chosen:?}"
            );
        }
    };
    let small = [
        (128, 7, 1),
        (512, 14, 1),
        (512, 7, 4),
        (64, 7, 1),
        (96, 14, 1),
    ];
    match Isa::best() {
        Some(Isa::Avx512) => {
            expect(
                &[(128, 7, 1), (512, 14, 1), (512, 7, 4), (64, 16, 1)],
                &|k| matches!(k, Some(Blocked::Winograd(Isa::Avx512))),
            );
            expect(&[(64, 7, 1), (96, 14, 1), (64, 7, 5)], &|k| {
                matches!(k, Some(Blocked::Direct))
            });
        }
        Some(isa) => expect(
            &small,
            &|k| matches!(k, Some(Blocked::Winograd(i)) if i == isa),
        ),
        None => expect(&small, &|k| k.is_none()),
    }
}
