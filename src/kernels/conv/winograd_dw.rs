//! The weight gradient of a 3x3 convolution padded by 1, by Winograd's F(2x2, 3x3) (Lavin and
//! Gray, CVPR 2016), on `[N, C, H, W]` slices.
//!
//! The forward computes each 2x2 tile of outputs as `Aᵀ (U ⊙ V) A`, with the input patch
//! transformed as `V = Bᵀ d B` and the kernel as `U = G g Gᵀ`. Backward, the tile's output
//! gradient transforms as `dM = A dY Aᵀ`, the transformed kernel's gradient is
//! `dU_ξ [O x C] = Σ_tiles dM_ξ Vᵀ_ξ`, one matrix product per element `ξ` of the 4x4
//! transforms, and the kernel's is `dW = Gᵀ dU G`. The products run over the tiles (a quarter
//! of the positions) 16 times: 4 multiplications per position, input and output channel,
//! against 9 for the weight gradient by GEMM per kernel tap.
//!
//! The tiles go in chunks of tile rows, whose transforms (both at most [`CHUNK_BYTES`]) are
//! multiplied while still in cache. Large batches split the tile rows over the threads, each
//! with its own `dU`; small ones run one chunk at a time with the products split over the
//! threads instead.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::kernels::buffer::{written_by, Scratch};

use super::gemm::{matmul, Operand};
use super::geometry::Grid;

/// Elements of a transformed tile: 4x4.
const XI: usize = 16;

/// The most bytes a chunk's transformed inputs and output gradients take, together. On
/// TResNet-M's 3x3 layers at batch 8, chunks of 4 MB took 0.96-1.14x the time, 1 MB 0.97-1.44x,
/// 256 KB 1.5-2.3x: the transforms are written out and read back, but smaller chunks sum `dU`
/// more often.
const CHUNK_BYTES: usize = 8 << 20;

/// Tiles per thread from which each thread takes its own share of the tile rows: with fewer,
/// its products' sums over the tiles are too short for the matrix kernel. On TResNet-M's layers
/// at batch 8 on 2 threads, shares of 196 tiles or more ran 1.1-1.8x faster than products split
/// over the threads, shares of 64 (7x7 maps) 1.2x slower.
const MIN_PART_TILES: usize = 128;

/// How the tile rows are split: `parts` shares (one per thread, each with its own `dU`, or one
/// for the products to split instead), taken `chunk_rows` tile rows at a time.
#[derive(Debug, Clone, Copy)]
pub(super) struct Plan {
    pub(super) parts: usize,
    pub(super) chunk_rows: usize,
}

impl Plan {
    /// The plan for `grid` on rayon's threads.
    fn for_grid(grid: &Grid) -> Self {
        let tiles = Tiles::of(grid);
        let threads = rayon::current_num_threads().max(1);
        let parts = if tiles.count() >= threads * MIN_PART_TILES {
            threads
        } else {
            1
        };
        let row_bytes = XI * (grid.c + grid.o) * tiles.w * size_of::<f32>();
        Plan {
            parts,
            chunk_rows: (CHUNK_BYTES / row_bytes).max(1),
        }
    }
}

/// The tiles of the output map: `h x w` per image, each 2x2.
#[derive(Debug, Clone, Copy)]
struct Tiles {
    h: usize,
    w: usize,
    /// Tile rows over the batch.
    rows: usize,
}

impl Tiles {
    fn of(grid: &Grid) -> Self {
        let h = grid.h.div_ceil(2);
        Tiles {
            h,
            w: grid.w.div_ceil(2),
            rows: grid.n * h,
        }
    }

    fn count(&self) -> usize {
        self.rows * self.w
    }
}

/// Whether [`weight_gradient`] computes this geometry: a 3x3 kernel padded by 1.
pub(super) fn applies(grid: &Grid) -> bool {
    grid.is_3x3_padded_by_1()
}

/// Whether training takes `grid`'s weight gradient from [`weight_gradient`]: where it
/// [`applies`], on at least [`MIN_TILES`] tiles over the batch.
pub(super) fn preferred(grid: &Grid) -> bool {
    applies(grid) && Tiles::of(grid).count() >= MIN_TILES
}

/// Tiles over the batch from which Winograd's weight gradient beats the GEMM per kernel tap.
/// On fewer, its 16 products' sums over the tiles are short for their `[O, C]` outputs: with
/// 512 channels on 2 threads, 49 to 128 tiles (7x7 maps at batch 4 and 8, 14x14 at batch 1 and
/// 2) took 1.08-1.27x the GEMMs' time; 256 to 392 tiles (of 256 and 512 channels) 0.70-0.84x.
const MIN_TILES: usize = 256;

/// dW (`[O, C, 3, 3]`) of `y = conv2d(x, w)` (3x3, stride 1, padding 1) from `x`
/// (`[N, C, H, W]`) and the output gradient `g` (`[N, O, H, W]`).
///
/// # Panics
///
/// If the geometry is not one that [`applies`], or a slice's length does not follow from it.
pub(super) fn weight_gradient(grid: Grid, x: &[f32], g: &[f32]) -> Vec<f32> {
    weight_gradient_with(grid, x, g, Plan::for_grid(&grid))
}

/// [`weight_gradient`] split by `plan`.
pub(super) fn weight_gradient_with(grid: Grid, x: &[f32], g: &[f32], plan: Plan) -> Vec<f32> {
    assert!(applies(&grid), "a 3x3 kernel padded by 1");
    let Grid { n, c, o, h, w, .. } = grid;
    assert_eq!(x.len(), n * c * h * w, "input length");
    assert_eq!(g.len(), n * o * h * w, "output gradient length");
    let tiles = Tiles::of(&grid);
    let per_part = tiles.rows.div_ceil(plan.parts.max(1));
    let part = |p: usize| {
        let rows = p * per_part..tiles.rows.min((p + 1) * per_part);
        transformed_gradient(grid, tiles, x, g, rows, plan)
    };
    let parts = (0..plan.parts.max(1))
        .into_par_iter()
        .map(part)
        .collect::<Vec<_>>();
    kernel_gradient(&parts, o, c)
}

/// `dU` (`[ξ][O][C]`) summed over the tile rows `rows`, a chunk at a time.
fn transformed_gradient(
    grid: Grid,
    tiles: Tiles,
    x: &[f32],
    g: &[f32],
    rows: std::ops::Range<usize>,
    plan: Plan,
) -> Scratch {
    let (c, o) = (grid.c, grid.o);
    // The first chunk's products write `du`, the others add to it.
    let mut du = Scratch::uninit(XI * o * c);
    if rows.is_empty() {
        du.fill(0.0);
    }
    let step = plan.chunk_rows.max(1);
    for first in rows.clone().step_by(step) {
        let chunk = first..rows.end.min(first + step);
        let tc = chunk.len() * tiles.w;
        // V as [C][ξ][tiles], dM as [O][ξ][tiles]: a channel's transforms are one block.
        let mut v = Scratch::uninit(c * XI * tc);
        v.par_chunks_mut(XI * tc)
            .enumerate()
            .for_each(|(ci, out)| input_transform(grid, tiles, x, ci, chunk.clone(), out));
        let mut dm = Scratch::uninit(o * XI * tc);
        dm.par_chunks_mut(XI * tc)
            .enumerate()
            .for_each(|(oi, out)| gradient_transform(grid, tiles, g, oi, chunk.clone(), out));
        for xi in 0..XI {
            // SAFETY: dst is dU_ξ, [O, C] row-major inside `du`; lhs is [O, tc] at stride
            // (XI*tc, 1) from xi*tc, its last element (o-1)*XI*tc + xi*tc + tc - 1 inside `dm`;
            // rhs is [tc, C] at stride (1, XI*tc) from xi*tc, likewise inside `v`.
            unsafe {
                matmul(
                    [o, c, tc],
                    Operand::new(du.as_mut_ptr().add(xi * o * c), c, 1),
                    first > rows.start,
                    Operand::new(dm.as_ptr().add(xi * tc), XI * tc, 1),
                    Operand::new(v.as_ptr().add(xi * tc), 1, XI * tc),
                    plan.parts == 1,
                );
            }
        }
    }
    du
}

/// `V = Bᵀ d B` of channel `ci` for the tiles of tile rows `rows`, into `out` as
/// `[ξ][tile]`, with `Bᵀ = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]` and `d` the 4x4 patch of
/// the input (zero-padded by 1) around the tile.
fn input_transform(
    grid: Grid,
    tiles: Tiles,
    x: &[f32],
    ci: usize,
    rows: std::ops::Range<usize>,
    out: &mut [f32],
) {
    let (h, w, tw) = (grid.h, grid.w, tiles.w);
    let tc = rows.len() * tw;
    // A patch row, padded: `prow[k]` is input column `k - 1`, zero outside the map.
    let mut prow = vec![0.0f32; 2 * tw + 2];
    // `d B` for each of the patch's 4 rows, `[row][j][tile column]`.
    let mut db = vec![0.0f32; 4 * 4 * tw];
    for (r, row) in rows.enumerate() {
        let (ni, ty) = (row / tiles.h, row % tiles.h);
        let plane = &x[(ni * grid.c + ci) * h * w..][..h * w];
        for i in 0..4 {
            // Input row 2ty - 1 + i.
            let y = (2 * ty + i).checked_sub(1).filter(|&y| y < h);
            prow.fill(0.0);
            if let Some(y) = y {
                prow[1..=w].copy_from_slice(&plane[y * w..][..w]);
            }
            let [d0, d1, d2, d3] = four_mut(&mut db[i * 4 * tw..][..4 * tw], tw);
            for t in 0..tw {
                let p = &prow[2 * t..2 * t + 4];
                d0[t] = p[0] - p[2];
                d1[t] = p[1] + p[2];
                d2[t] = p[2] - p[1];
                d3[t] = p[1] - p[3];
            }
        }
        // Bᵀ (d B) down each column: row i of the patch is `db[i * 4 * tw..]`.
        let at = r * tw;
        for j in 0..4 {
            let col = |i: usize| &db[(i * 4 + j) * tw..][..tw];
            let (r0, r1, r2, r3) = (col(0), col(1), col(2), col(3));
            for t in 0..tw {
                out[j * tc + at + t] = r0[t] - r2[t];
                out[(4 + j) * tc + at + t] = r1[t] + r2[t];
                out[(8 + j) * tc + at + t] = r2[t] - r1[t];
                out[(12 + j) * tc + at + t] = r1[t] - r3[t];
            }
        }
    }
}

/// `dM = A dY Aᵀ` of output channel `oi` for the tiles of tile rows `rows`, into `out` as
/// `[ξ][tile]`, with `Aᵀ = [1 1 1 0; 0 1 -1 -1]` and `dY` the tile's 2x2 output gradient (zero
/// past the map's last row or column).
fn gradient_transform(
    grid: Grid,
    tiles: Tiles,
    g: &[f32],
    oi: usize,
    rows: std::ops::Range<usize>,
    out: &mut [f32],
) {
    let (h, w, tw) = (grid.h, grid.w, tiles.w);
    let tc = rows.len() * tw;
    let mut prow = vec![0.0f32; 2 * tw];
    // `dY Aᵀ` for each of the tile's 2 rows, `[row][j][tile column]`.
    let mut da = vec![0.0f32; 2 * 4 * tw];
    for (r, row) in rows.enumerate() {
        let (ni, ty) = (row / tiles.h, row % tiles.h);
        let plane = &g[(ni * grid.o + oi) * h * w..][..h * w];
        for i in 0..2 {
            let y = 2 * ty + i;
            prow.fill(0.0);
            if y < h {
                prow[..w].copy_from_slice(&plane[y * w..][..w]);
            }
            let [a0, a1, a2, a3] = four_mut(&mut da[i * 4 * tw..][..4 * tw], tw);
            for t in 0..tw {
                let (p, q) = (prow[2 * t], prow[2 * t + 1]);
                a0[t] = p;
                a1[t] = p + q;
                a2[t] = p - q;
                a3[t] = -q;
            }
        }
        // A (dY Aᵀ) down each column.
        let at = r * tw;
        for j in 0..4 {
            let (p, q) = (&da[j * tw..][..tw], &da[(4 + j) * tw..][..tw]);
            for t in 0..tw {
                out[j * tc + at + t] = p[t];
                out[(4 + j) * tc + at + t] = p[t] + q[t];
                out[(8 + j) * tc + at + t] = p[t] - q[t];
                out[(12 + j) * tc + at + t] = -q[t];
            }
        }
    }
}

/// `buf` (`4 * len` long) as its four runs of `len`.
fn four_mut(buf: &mut [f32], len: usize) -> [&mut [f32]; 4] {
    let (a, rest) = buf.split_at_mut(len);
    let (b, rest) = rest.split_at_mut(len);
    let (c, d) = rest.split_at_mut(len);
    [a, b, c, d]
}

/// `dW = Gᵀ dU G` per pair of channels, `[O, C, 3, 3]`, with `dU` (`[ξ][O][C]`) the sum of
/// `parts`, added in a fixed order (so that a run is reproducible bit for bit on a machine), and
/// `G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]`. A task per output channel, which first sums
/// its 16 rows of `dU` (one per `ξ`, each contiguous over the input channels).
fn kernel_gradient(parts: &[Scratch], o: usize, c: usize) -> Vec<f32> {
    // `Gᵀ v` for a column (or, transposed, a row) of 4.
    let apply = |v: [f32; 4]| {
        [
            v[0] + (v[1] + v[2]) * 0.5,
            (v[1] - v[2]) * 0.5,
            (v[1] + v[2]) * 0.5 + v[3],
        ]
    };
    let kernels = |(oi, out): (usize, &mut [MaybeUninit<f32>])| {
        // dU's rows for output channel `oi`, `[ξ][C]`.
        let mut u = vec![0.0f32; XI * c];
        for (xi, row) in u.chunks_exact_mut(c).enumerate() {
            for du in parts {
                for (sum, v) in row.iter_mut().zip(&du[(xi * o + oi) * c..][..c]) {
                    *sum += v;
                }
            }
        }
        for (ci, out) in out.chunks_exact_mut(9).enumerate() {
            let u = |xi: usize| u[xi * c + ci];
            // Gᵀ dU: 3 rows of 4, then (Gᵀ dU) G along each row.
            let mut rows = [[0.0f32; 4]; 3];
            for j in 0..4 {
                let col = apply([u(j), u(4 + j), u(8 + j), u(12 + j)]);
                for (row, v) in rows.iter_mut().zip(col) {
                    row[j] = v;
                }
            }
            for (d, v) in out.iter_mut().zip(rows.map(apply).as_flattened()) {
                d.write(*v);
            }
        }
    };
    // SAFETY: each output channel's task writes its `c * 9` values (none without channels).
    unsafe {
        written_by(o * c * 9, |out| {
            out.par_chunks_mut((c * 9).max(1))
                .enumerate()
                .for_each(kernels)
        })
    }
}
