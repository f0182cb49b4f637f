//! 3x3 convolutions by Winograd's minimal filtering F(2x2, 3x3) and F(4x4, 3x3) (Lavin and
//! Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016), on blocked maps.
//!
//! Each `m x m` block of outputs (a tile: m = 2 or 4) comes from the `a x a` patch `d` of the
//! input around it (a = m + 2). With the patch transformed as `V = Bᵀ d B` and the kernel `g` as
//! `U = G g Gᵀ`, the tile is `Aᵀ (U ⊙ V) A`. Summed over input channels, the `a²` elementwise
//! products are `a²` matrix products, one per element `ξ` of the transforms: `M_ξ [tiles x O] =
//! V_ξ [tiles x C] · U_ξ [C x O]`: a 1x1 convolution on a row of tiles, which the direct
//! kernel's tiles compute ([`product`]). Per output, input and output channel, that is 4
//! multiplications for F(2x2, 3x3) and 2.25 for F(4x4, 3x3), against 9 for the direct 3x3
//! convolution, plus the transforms. The tiles go in bands, one task each, so that a band's
//! transformed inputs and products stay in L2 from one step to the next: at batch 8 on
//! TResNet-M's 3x3 layers, F(2x2, 3x3) ran 1.35-1.75x the direct kernel's speed on AVX-512,
//! 1.5-2.0x on AVX2.
//!
//! The transformed kernels hold `a²/9` as many values as the kernels: 16/9 and 4. F(4x4, 3x3)
//! multiplies less but reads 2.25 times as many transformed kernels, and its sums round more
//! (about 1e-5 of the largest output on 512 channels, against 1e-6): [`Winograd::for_map`]
//! takes it where its tiles are many enough.
//!
//! Training transforms the kernels at every call ([`forward_nchw`]). Where they are many for
//! the tiles (512 channels on 7x7 maps), the tasks go by groups of output channels instead of
//! bands of tiles, each transforming its group's kernels where it runs their products
//! ([`Schedule`]), so that the transformed kernels do not go through memory.

use rayon::prelude::*;

use super::conv::padded_to_blocks;
use super::map::BlockedMap;
use super::LANES as L;
use crate::kernels::buffer::Scratch;
use crate::kernels::conv::direct::{packed_weights_len, pointwise, product, Epilogue, Isa};
use crate::kernels::conv::geometry::Grid;

/// One of Winograd's algorithms, by the side of its output tiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Winograd {
    /// F(2x2, 3x3): 2x2 outputs from 4x4 patches.
    F2x2,
    /// F(4x4, 3x3): 4x4 outputs from 6x6 patches.
    F4x4,
}

/// Tiles of F(4x4, 3x3) over the batch from which it runs faster than F(2x2, 3x3) on packed
/// kernels (inference). Below, a few tiles share each read of its transformed kernels, 2.25
/// times as many as F(2x2, 3x3)'s: on AVX2 with 512 channels, 16 tiles (1 image of 14x14, 4 of
/// 7x7) ran 0.85-0.88x and 1.19-1.32x as fast, 8 tiles (2 images of 7x7) 0.61-0.70x, 32 tiles
/// (8 images of 7x7) 1.42-1.48x; 1.2-1.5x on 28x28 to 112x112 maps of 64 to 256 channels. On
/// AVX-512 (an AMD EPYC, Zen 4), best of 15: 0.78-0.81x on one 14x14 map, 1.21-1.27x on four 7x7
/// maps, 0.62-0.97x on two, 1.34x and more on eight.
const F4X4_TILES: usize = 32;

impl Winograd {
    /// The faster of the two on `n` maps of `h x w` with kernels packed once ([`pack`]):
    /// F(4x4, 3x3) from [`F4X4_TILES`] of its tiles over the batch, F(2x2, 3x3) below, where a
    /// few tiles share each of its larger kernels' reads.
    pub(crate) fn for_map(n: usize, h: usize, w: usize) -> Self {
        if Self::F4x4.tiles(n, h, w) >= F4X4_TILES {
            Self::F4x4
        } else {
            Self::F2x2
        }
    }

    /// Its tiles over `n` maps of `h x w`.
    fn tiles(self, n: usize, h: usize, w: usize) -> usize {
        let m = match self {
            Self::F2x2 => F2x2::M,
            Self::F4x4 => F4x4::M,
        };
        n * Tiles::of(h, w, m).per_image()
    }

    /// Elements of a transformed tile: `a²`.
    fn elements(self) -> usize {
        match self {
            Self::F2x2 => F2x2::XI,
            Self::F4x4 => F4x4::XI,
        }
    }
}

/// The geometry and the transforms of one of Winograd's algorithms, for the kernels compiled
/// for it. Patches, columns and rows are passed in arrays of the largest size (6), of which the
/// first [`A`](Self::A) are used, and the unused ones are zero.
trait Variant {
    /// Side of an output tile, `m`.
    const M: usize;
    /// Side of an input patch and of a transformed tile, `a = m + 2`.
    const A: usize = Self::M + 2;
    /// Elements of a transformed tile, `a²`.
    const XI: usize = Self::A * Self::A;

    /// `G v` for the 3 taps of a kernel's column (or row), lane by lane.
    fn kernel_column(a: &Lanes, b: &Lanes, d: &Lanes) -> [Lanes; 6];

    /// `Bᵀ v` for a patch's column (or row).
    fn input_column(v: [&Lanes; 6]) -> [Lanes; 6];

    /// `Aᵀ m` for a transformed tile's column (or row): the first `m` values.
    fn output_column(m: [&Lanes; 6]) -> [Lanes; 4];
}

/// F(2x2, 3x3): `G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]`,
/// `Bᵀ = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]`, `Aᵀ = [1 1 1 0; 0 1 -1 -1]`.
struct F2x2;

impl Variant for F2x2 {
    const M: usize = 2;

    #[inline(always)]
    fn kernel_column(a: &Lanes, b: &Lanes, d: &Lanes) -> [Lanes; 6] {
        let mut out = [*a, [0.0; L], [0.0; L], *d, [0.0; L], [0.0; L]];
        for l in 0..L {
            out[1][l] = (a[l] + b[l] + d[l]) * 0.5;
            out[2][l] = (a[l] - b[l] + d[l]) * 0.5;
        }
        out
    }

    #[inline(always)]
    fn input_column([v0, v1, v2, v3, ..]: [&Lanes; 6]) -> [Lanes; 6] {
        let mut t = [[0.0f32; L]; 6];
        for l in 0..L {
            t[0][l] = v0[l] - v2[l];
            t[1][l] = v1[l] + v2[l];
            t[2][l] = v2[l] - v1[l];
            t[3][l] = v1[l] - v3[l];
        }
        t
    }

    #[inline(always)]
    fn output_column([m0, m1, m2, m3, ..]: [&Lanes; 6]) -> [Lanes; 4] {
        let mut t = [[0.0f32; L]; 4];
        for l in 0..L {
            t[0][l] = m0[l] + m1[l] + m2[l];
            t[1][l] = m1[l] - m2[l] - m3[l];
        }
        t
    }
}

/// F(4x4, 3x3), on the points 0, ±1, ±2 and ∞: `G = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6;
/// 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]`, `Bᵀ = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0;
/// 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]`, `Aᵀ = [1 1 1 1 1 0; 0 1 -1 2 -2 0;
/// 0 1 1 4 4 0; 0 1 -1 8 -8 1]`.
struct F4x4;

impl Variant for F4x4 {
    const M: usize = 4;

    #[inline(always)]
    fn kernel_column(a: &Lanes, b: &Lanes, d: &Lanes) -> [Lanes; 6] {
        let mut out = [[0.0; L]; 6];
        for l in 0..L {
            let (outer, inner) = (a[l] + d[l], b[l]);
            out[0][l] = a[l] * 0.25;
            out[1][l] = -(outer + inner) / 6.0;
            out[2][l] = (inner - outer) / 6.0;
            out[3][l] = a[l] / 24.0 + b[l] / 12.0 + d[l] / 6.0;
            out[4][l] = a[l] / 24.0 - b[l] / 12.0 + d[l] / 6.0;
            out[5][l] = d[l];
        }
        out
    }

    #[inline(always)]
    fn input_column([v0, v1, v2, v3, v4, v5]: [&Lanes; 6]) -> [Lanes; 6] {
        let mut t = [[0.0f32; L]; 6];
        for l in 0..L {
            t[0][l] = 4.0 * v0[l] - 5.0 * v2[l] + v4[l];
            t[1][l] = v3[l] + v4[l] - 4.0 * (v1[l] + v2[l]);
            t[2][l] = 4.0 * (v1[l] - v2[l]) - v3[l] + v4[l];
            t[3][l] = 2.0 * (v3[l] - v1[l]) - v2[l] + v4[l];
            t[4][l] = 2.0 * (v1[l] - v3[l]) - v2[l] + v4[l];
            t[5][l] = 4.0 * v1[l] - 5.0 * v3[l] + v5[l];
        }
        t
    }

    #[inline(always)]
    fn output_column([m0, m1, m2, m3, m4, m5]: [&Lanes; 6]) -> [Lanes; 4] {
        let mut t = [[0.0f32; L]; 4];
        for l in 0..L {
            let (s12, d12) = (m1[l] + m2[l], m1[l] - m2[l]);
            let (s34, d34) = (m3[l] + m4[l], m3[l] - m4[l]);
            t[0][l] = m0[l] + s12 + s34;
            t[1][l] = d12 + 2.0 * d34;
            t[2][l] = s12 + 4.0 * s34;
            t[3][l] = d12 + 8.0 * d34 + m5[l];
        }
        t
    }
}

/// The length of [`pack`]'s transformed kernels for `o` output and `c` input channels.
pub(super) fn packed_len(winograd: Winograd, [o, c]: [usize; 2]) -> usize {
    winograd.elements() * packed_weights_len(&pointwise(c, o, 1))
}

/// 3x3 kernels read where they lie: output channel `oi`'s kernel over input channel `ci` at
/// `data[oi * out_stride + ci * in_stride..][..9]`, its taps in row-major order, or in reverse
/// order (the kernel turned half a turn) when `turned`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Kernels<'a> {
    data: &'a [f32],
    /// Output and input channels.
    o: usize,
    c: usize,
    out_stride: usize,
    in_stride: usize,
    turned: bool,
}

impl<'a> Kernels<'a> {
    /// The kernels of `weight`, `[O, C, 3, 3]` row-major.
    ///
    /// # Panics
    ///
    /// If `weight` does not hold `o * c` kernels.
    pub(crate) fn of(weight: &'a [f32], [o, c]: [usize; 2]) -> Self {
        assert_eq!(weight.len(), o * c * 9, "weight length");
        Kernels {
            data: weight,
            o,
            c,
            out_stride: c * 9,
            in_stride: 9,
            turned: false,
        }
    }

    /// The kernels of the convolution that computes the input gradient of `weight`'s
    /// (`[O, C, 3, 3]`, padding 1): `C` output and `O` input channels, each kernel turned half a
    /// turn, read in place instead of copied (the transposed convolution).
    ///
    /// # Panics
    ///
    /// If `weight` does not hold `o * c` kernels.
    pub(crate) fn transposed(weight: &'a [f32], [o, c]: [usize; 2]) -> Self {
        assert_eq!(weight.len(), o * c * 9, "weight length");
        Kernels {
            data: weight,
            o: c,
            c: o,
            out_stride: 9,
            in_stride: c * 9,
            turned: true,
        }
    }

    /// Where tap `t` of the kernel (`oi`, `ci`) lies in `data`.
    fn at(&self, oi: usize, ci: usize, t: usize) -> usize {
        let tap = if self.turned { 8 - t } else { t };
        oi * self.out_stride + ci * self.in_stride + tap
    }
}

/// The transformed kernels `U_ξ` of `kernels` for `winograd`, output channel `o` scaled by
/// `scale[o]` when given, into `packed` ([`packed_len`] long, every value written): `a²` sets
/// of packed 1x1 weights for [`product`], one after the other. With an instruction set, the
/// kernels of a block of output channels are gathered 16 at a time and transformed in its
/// vectors (training transforms its kernels at every call); without, lane by lane.
pub(super) fn pack(
    winograd: Winograd,
    isa: Option<Isa>,
    kernels: Kernels,
    scale: Option<&[f32]>,
    packed: &mut [f32],
) {
    assert_eq!(
        packed.len(),
        packed_len(winograd, [kernels.o, kernels.c]),
        "transformed kernels' length"
    );
    match winograd {
        Winograd::F2x2 => pack_for::<F2x2>(isa, kernels, scale, packed),
        Winograd::F4x4 => pack_for::<F4x4>(isa, kernels, scale, packed),
    }
}

/// [`pack`] for the variant `V`, into `packed` of [`packed_len`] values.
fn pack_for<V: Variant>(
    isa: Option<Isa>,
    kernels: Kernels,
    scale: Option<&[f32]>,
    packed: &mut [f32],
) {
    let o = kernels.o;
    assert!(
        scale.is_none_or(|s| s.len() == o),
        "one scale per output channel"
    );
    // A product's weights are those of a 1x1 kernel, whatever the row it runs on: per `ξ`,
    // `[O/16][C/16][16 in][16 out]`, zero past the last channels. Each block of output
    // channels is transformed straight into its place in all `a²` sets, an input channel (16
    // kernels, a line of each set) at a time.
    block_lines(packed, V::XI, o.div_ceil(L))
        .into_par_iter()
        .enumerate()
        .for_each(|(b, mut sets)| pack_block::<V>(isa, kernels, scale, b, &mut sets));
}

/// Each of `blocks` output blocks' line of each of the `sets` sets that `packed` holds one after
/// the other, each set the blocks' lines one after the other: what [`pack_block`] fills.
fn block_lines(packed: &mut [f32], sets: usize, blocks: usize) -> Vec<Vec<&mut [f32]>> {
    let len = packed.len() / sets;
    let mut lines: Vec<Vec<&mut [f32]>> = (0..blocks).map(|_| Vec::new()).collect();
    for set in packed.chunks_mut(len) {
        for (line, block) in set.chunks_mut(set.len() / blocks).zip(&mut lines) {
            block.push(line);
        }
    }
    lines
}

/// Output block `b`'s transformed kernels for `V` into its line of each of the `a²` `sets`
/// (`[C/16][16 in][16 out]` each, every value written), with the tiles of `isa`, or lane by lane
/// without.
///
/// # Panics
///
/// If `isa` is one the CPU does not run.
fn pack_block<V: Variant>(
    isa: Option<Isa>,
    kernels: Kernels,
    scale: Option<&[f32]>,
    b: usize,
    sets: &mut [&mut [f32]],
) {
    assert!(isa.is_none_or(Isa::runs), "the CPU runs {isa:?}");
    let lanes = L.min(kernels.o - b * L);
    let mut scales = [1.0f32; L];
    if let Some(s) = scale {
        scales[..lanes].copy_from_slice(&s[b * L..][..lanes]);
    }
    let block = Block {
        kernels,
        first: b * L,
        lanes,
        scales,
    };
    // SAFETY: the CPU runs `isa`, asserted above.
    unsafe {
        match isa {
            Some(Isa::Avx512) => block_avx512::<V>(block, sets),
            Some(Isa::Avx2) => block_avx2::<V>(block, sets),
            None => block.transform::<V>(sets, |ci, t| block.gather(ci, t)),
        }
    }
    // And the rows past the last input channel.
    for set in sets.iter_mut() {
        set[kernels.c * L..].fill(0.0);
    }
}

/// [`pack`]'s kernels of one block of output channels.
#[derive(Clone, Copy)]
struct Block<'a> {
    kernels: Kernels<'a>,
    /// The block's first output channel, its channels (16 but in the last block) and their
    /// scales (1 past the last).
    first: usize,
    lanes: usize,
    scales: Lanes,
}

impl Block<'_> {
    /// Tap `t` of the block's kernels over input channel `ci`, scaled, lane by lane (zero past
    /// the last channel).
    #[inline(always)]
    fn gather(&self, ci: usize, t: usize) -> Lanes {
        let mut g = [0.0; L];
        for (l, g) in g.iter_mut().enumerate().take(self.lanes) {
            *g = self.kernels.data[self.kernels.at(self.first + l, ci, t)] * self.scales[l];
        }
        g
    }

    /// The block's transformed kernels for `V`, input channel by input channel, into the `a²`
    /// sets of [`pack`], from `tap(ci, t)`: [`gather`](Self::gather)'s values.
    #[inline(always)]
    fn transform<V: Variant>(&self, sets: &mut [&mut [f32]], tap: impl Fn(usize, usize) -> Lanes) {
        for ci in 0..self.kernels.c {
            let g: [Lanes; 9] = std::array::from_fn(|t| tap(ci, t));
            // `G g` down each column, then `(G g) Gᵀ` along each row, straight into the sets.
            // Plain loops: `array::from_fn` is not inlined, and its closures would run without
            // the target's instructions.
            let mut cols = [[[0.0f32; L]; 6]; 3];
            for (c, col) in cols.iter_mut().enumerate() {
                *col = V::kernel_column(&g[c], &g[3 + c], &g[6 + c]);
            }
            for r in 0..V::A {
                let row = V::kernel_column(&cols[0][r], &cols[1][r], &cols[2][r]);
                for (k, u) in row.iter().enumerate().take(V::A) {
                    sets[r * V::A + k][ci * L..][..L].copy_from_slice(u);
                }
            }
        }
    }
}

/// [`Block::transform`] compiled for AVX-512, each tap of 16 kernels one masked gather.
///
/// # Safety
///
/// The CPU has AVX-512F.
#[target_feature(enable = "avx512f")]
unsafe fn block_avx512<V: Variant>(block: Block, sets: &mut [&mut [f32]]) {
    use std::arch::x86_64::*;
    let k = block.kernels;
    let stride = i32::try_from(k.out_stride).expect("kernels within 2^31 values");
    let offsets = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(stride),
    );
    let mask = ((1u32 << block.lanes) - 1) as __mmask16;
    // SAFETY: the scales hold 16 values.
    let scales = unsafe { _mm512_loadu_ps(block.scales.as_ptr()) };
    block.transform::<V>(sets, |ci, t| {
        let first = k.at(block.first, ci, t);
        // SAFETY: lane `l < lanes` reads `first + l * out_stride`, tap `t` of the kernel
        // (`first + l`, `ci`): inside `data`. The others are masked off.
        let v = unsafe {
            _mm512_mask_i32gather_ps::<4>(
                _mm512_setzero_ps(),
                mask,
                offsets,
                k.data.as_ptr().add(first),
            )
        };
        let mut g = [0.0; L];
        // SAFETY: `g` holds 16 values.
        unsafe { _mm512_storeu_ps(g.as_mut_ptr(), _mm512_mul_ps(v, scales)) };
        g
    });
}

/// [`Block::transform`] compiled for AVX2, each tap of 16 kernels two masked gathers.
///
/// # Safety
///
/// The CPU has AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
unsafe fn block_avx2<V: Variant>(block: Block, sets: &mut [&mut [f32]]) {
    use std::arch::x86_64::*;
    let k = block.kernels;
    let stride = i32::try_from(k.out_stride).expect("kernels within 2^31 values");
    let offsets = _mm256_mullo_epi32(
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        _mm256_set1_epi32(stride),
    );
    // A lane is gathered where its mask's sign bit is set.
    let masks: [__m256; 2] = std::array::from_fn(|half| {
        let on: [i32; 8] = std::array::from_fn(|l| -i32::from(half * 8 + l < block.lanes));
        // SAFETY: `on` holds 8 values.
        _mm256_castsi256_ps(unsafe { _mm256_loadu_si256(on.as_ptr().cast()) })
    });
    block.transform::<V>(sets, |ci, t| {
        let mut g = [0.0; L];
        for (half, mask) in masks.iter().enumerate() {
            // A half without channels stays zero (its first kernel would lie past the others).
            if half * 8 >= block.lanes {
                break;
            }
            let lane = block.first + half * 8;
            // SAFETY: lane `l` under the mask reads tap `t` of the kernel (`lane + l`, `ci`):
            // inside `data`. The others are masked off.
            let v = unsafe {
                _mm256_mask_i32gather_ps::<4>(
                    _mm256_setzero_ps(),
                    k.data.as_ptr().add(k.at(lane, ci, t)),
                    offsets,
                    *mask,
                )
            };
            // SAFETY: `g` and the scales hold 16 values.
            unsafe {
                let v = _mm256_mul_ps(v, _mm256_loadu_ps(block.scales.as_ptr().add(half * 8)));
                _mm256_storeu_ps(g.as_mut_ptr().add(half * 8), v);
            }
        }
        g
    });
}

/// Whether [`forward_nchw`] computes a convolution of this geometry: a 3x3 kernel padded by 1.
pub(crate) fn applies(grid: &Grid) -> bool {
    grid.is_3x3_padded_by_1()
}

/// How [`forward_nchw`], given its kernels untransformed, transforms them; [`Schedule::for_grid`]
/// picks the faster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Schedule {
    /// All of them first ([`pack`]), then the bands of tiles ([`forward`]), each of which reads
    /// every transformed kernel.
    KernelsFirst,
    /// In tasks of [`GROUP_BLOCKS`] output blocks, each of which transforms its kernels and runs
    /// their products over every tile while they are in its cache ([`forward_by_groups`]).
    ByOutputGroups,
}

/// Transformed kernel values per tile over the batch from which [`Schedule::ByOutputGroups`]
/// runs faster: with many kernels and few tiles, writing the transformed kernels to memory and
/// reading them back in every band is most of the work (16.8 MB of them for 512 channels), and
/// a task's transformed kernels read from its cache save that; with fewer, the transforms of
/// every tile's inputs and outputs, which that schedule leaves to one thread, cost more. On AVX2
/// the forward of F(2x2, 3x3) on `[N, C, H, W]` slices, conversions included, took this many
/// times the time of [`Schedule::KernelsFirst`] (best of 9, three rounds): with 512 channels,
/// 0.73-0.98x on 16 tiles (7x7 maps, one image), 0.74-0.77x on 64, 0.75-0.88x on 49 (14x14,
/// one image), 0.78-0.96x on 98, 0.81-1.12x on 128 (7x7, batch 8; 0.94-1.01x in the `conv`
/// bench), 0.90-1.03x on 256; with 256 channels 0.83-0.89x on 16 tiles, 0.83-0.98x on 49 (but
/// 1.07-1.08x in the `conv` bench), 1.00-1.08x on 98; with 128, 0.90-1.00x on 16 and
/// 1.05-1.15x on 32; with 64, 1.05-1.13x on 49.
const GROUPED_VALUES_PER_TILE: usize = 32 * 1024;

/// Output blocks per task of [`Schedule::ByOutputGroups`]: the 32 channels of an AVX-512 tile.
const GROUP_BLOCKS: usize = 2;

impl Schedule {
    /// The faster for `winograd`'s convolution on `grid`: [`ByOutputGroups`](Self::ByOutputGroups)
    /// from [`GROUPED_VALUES_PER_TILE`] transformed kernel values per tile over the batch.
    pub(crate) fn for_grid(winograd: Winograd, grid: &Grid) -> Self {
        let tiles = winograd.tiles(grid.n, grid.h, grid.w);
        if winograd.elements() * grid.o * grid.c >= GROUPED_VALUES_PER_TILE * tiles {
            Self::ByOutputGroups
        } else {
            Self::KernelsFirst
        }
    }
}

/// `conv2d(x, w) + bias` (stride 1) for an `[N, C, H, W]` slice and the kernels `w`, `[N, O, H,
/// W]` out, by `winograd` with the products on the tiles of `isa`: the training's forward and
/// input gradient (with [`Kernels::transposed`]), which transform the kernels as `schedule` says
/// and convert the maps around it at each call.
///
/// # Panics
///
/// If the geometry is not one that [`applies`], the CPU does not run `isa`, the kernels' channels
/// or a slice's length do not follow from the grid.
pub(crate) fn forward_nchw(
    winograd: Winograd,
    schedule: Schedule,
    isa: Isa,
    grid: Grid,
    x: &[f32],
    w: Kernels,
    bias: Option<&[f32]>,
) -> Vec<f32> {
    assert!(applies(&grid), "a 3x3 kernel padded by 1");
    assert_eq!([w.o, w.c], [grid.o, grid.c], "the kernels' channels");
    let bias = bias.map(padded_to_blocks);
    let epilogue = Epilogue {
        bias: bias.as_deref(),
        ..Epilogue::default()
    };
    let x = BlockedMap::from_nchw(x, [grid.n, grid.c, grid.h, grid.w]);
    let y = match (schedule, winograd) {
        (Schedule::KernelsFirst, _) => {
            let mut packed = Scratch::uninit(packed_len(winograd, [grid.o, grid.c]));
            pack(winograd, Some(isa), w, None, &mut packed);
            forward(winograd, isa, &packed, grid.o, &x, epilogue)
        }
        (Schedule::ByOutputGroups, Winograd::F2x2) => {
            forward_by_groups::<F2x2>(isa, w, &x, epilogue)
        }
        (Schedule::ByOutputGroups, Winograd::F4x4) => {
            forward_by_groups::<F4x4>(isa, w, &x, epilogue)
        }
    };
    y.to_nchw()
}

/// `conv3x3(x) + bias` by the variant `V` on kernels not yet transformed, scheduled
/// [`ByOutputGroups`](Schedule::ByOutputGroups): every tile in one band, whose transformed
/// inputs the tasks share and whose products each task writes for its own output blocks.
fn forward_by_groups<V: Variant>(
    isa: Isa,
    kernels: Kernels,
    x: &BlockedMap,
    epilogue: Epilogue,
) -> BlockedMap {
    let (o, obn) = (kernels.o, y_blocks(kernels.o));
    let tiles = Tiles::of(x.h, x.w, V::M);
    let band = Band {
        tiles,
        first: 0,
        len: x.n * tiles.per_image(),
    };
    let v = input_transform::<V>(isa, x, band);
    let (v_plane, m_plane) = (x.blocks() * band.len * L, obn * band.len * L);
    // One output block's transformed kernels for one `ξ`.
    let set = packed_weights_len(&pointwise(x.c, L, 1));
    let mut m = Scratch::uninit(V::XI * m_plane);
    let products = Out(m.as_mut_ptr());
    (0..obn.div_ceil(GROUP_BLOCKS))
        .into_par_iter()
        .for_each(|group| {
            let first = group * GROUP_BLOCKS;
            let blocks = GROUP_BLOCKS.min(obn - first);
            // `[ξ][block][C/16][16 in][16 out]`: each `ξ`'s blocks are one packed 1x1 kernel.
            let mut u = Scratch::uninit(V::XI * blocks * set);
            let lines = block_lines(&mut u, V::XI, blocks);
            for (k, mut sets) in lines.into_iter().enumerate() {
                pack_block::<V>(Some(isa), kernels, None, first + k, &mut sets);
            }
            let len = blocks * band.len * L;
            for xi in 0..V::XI {
                // SAFETY: this task alone writes the products of its output blocks, `len`
                // values from block `first` of `ξ`'s `[O/16][tile][16]`, inside `m`.
                let m_xi = unsafe {
                    std::slice::from_raw_parts_mut(
                        products.at(xi * m_plane + first * band.len * L),
                        len,
                    )
                };
                let u_xi = &u[xi * blocks * set..][..blocks * set];
                product(
                    isa,
                    [x.c, blocks * L, band.len],
                    &v[xi * v_plane..][..v_plane],
                    u_xi,
                    m_xi,
                );
            }
        });
    let mut y = BlockedMap::uninit(x.n, o, x.h, x.w);
    // SAFETY: `y` holds `o` channels on `x`'s maps, and this thread alone writes it.
    unsafe { output_transform::<V>(isa, &m, o, x, band, Out(y.data.as_mut_ptr()), &epilogue) };
    y
}

/// `act(conv3x3(x) + bias + residual)` by `winograd` with its transformed kernels `packed`
/// (from [`pack`], for `o` output channels), padding 1, with the products on the tiles of `isa`.
///
/// The tiles go in bands, one task each: a band's transformed inputs and products stay in L2
/// between the transforms and the products.
pub(super) fn forward(
    winograd: Winograd,
    isa: Isa,
    packed: &[f32],
    o: usize,
    x: &BlockedMap,
    epilogue: Epilogue,
) -> BlockedMap {
    match winograd {
        Winograd::F2x2 => forward_by::<F2x2>(isa, packed, o, x, epilogue),
        Winograd::F4x4 => forward_by::<F4x4>(isa, packed, o, x, epilogue),
    }
}

/// [`forward`] by the variant `V`.
fn forward_by<V: Variant>(
    isa: Isa,
    packed: &[f32],
    o: usize,
    x: &BlockedMap,
    epilogue: Epilogue,
) -> BlockedMap {
    let tiles = Tiles::of(x.h, x.w, V::M);
    let count = x.n * tiles.per_image();
    let mut y = BlockedMap::uninit(x.n, o, x.h, x.w);
    assert!(
        epilogue.residual.is_none_or(|r| r.len() >= y.data.len()),
        "residual length"
    );
    assert!(
        epilogue.bias.is_none_or(|b| b.len() >= y.blocks() * L),
        "bias length"
    );
    let band = band_tiles(V::XI, x.blocks(), y.blocks(), count);
    let out = Out(y.data.as_mut_ptr());
    (0..count.div_ceil(band)).into_par_iter().for_each(|b| {
        let first = b * band;
        let band = Band {
            tiles,
            first,
            len: band.min(count - first),
        };
        let v = input_transform::<V>(isa, x, band);
        let mut m = Scratch::uninit(V::XI * y_blocks(o) * band.len * L);
        let len = packed_weights_len(&pointwise(x.c, o, 1));
        let (v_plane, m_plane) = (x.blocks() * band.len * L, y_blocks(o) * band.len * L);
        for xi in 0..V::XI {
            product(
                isa,
                [x.c, o, band.len],
                &v[xi * v_plane..][..v_plane],
                &packed[xi * len..][..len],
                &mut m[xi * m_plane..][..m_plane],
            );
        }
        // SAFETY: `out` points into `y`, of `o` channels on `x`'s maps, and no other band writes
        // this band's tiles.
        unsafe { output_transform::<V>(isa, &m, o, x, band, out, &epilogue) };
    });
    y
}

/// Blocks of `o` channels.
fn y_blocks(o: usize) -> usize {
    o.div_ceil(L)
}

/// Bytes of transformed inputs and products of a band, which it keeps in L2 (2 MiB per core on
/// the machines measured).
const BAND_BYTES: usize = 1 << 20;

/// Tiles a band takes at least: each band reads every transformed weight once, and this many
/// tiles make that read small beside the products: few where the weights stay in L2 (up to
/// [`BAND_BYTES`]), more where they come from L3.
const MIN_BAND: [usize; 2] = [56, 168];

/// Tiles per band, of `count`, for `cbn` input and `obn` output blocks and `xi` elements per
/// transformed tile: as many as fit
/// [`BAND_BYTES`] but at least [`MIN_BAND`], then evened out so that every thread has as many
/// bands, in multiples of the AVX-512 tile's 14 positions unless that leaves the last band short
/// by more than half a tile: the threads wait for the longest band. With 512 channels on 7x7
/// maps at batch 8 (128 tiles, 2 threads), bands of 64 and 64 ran 1.03x faster than 70 and 58.
pub(super) fn band_tiles(xi: usize, cbn: usize, obn: usize, count: usize) -> usize {
    let per_tile = xi * (cbn + obn) * L * size_of::<f32>();
    let weights = xi * cbn * obn * L * L * size_of::<f32>();
    let least = MIN_BAND[usize::from(weights > BAND_BYTES)];
    let bands = count.div_ceil((BAND_BYTES / per_tile).max(least)).max(1);
    let threads = rayon::current_num_threads();
    let even = count.div_ceil(bands.div_ceil(threads) * threads).max(1);
    let whole = even.next_multiple_of(14);
    // The last band's tiles when the others take `whole` each.
    let last = count - count.saturating_sub(1) / whole * whole;
    if whole - last > 7 {
        even
    } else {
        whole
    }
}

/// The tiles over a map: `rows x cols` tiles of `m x m` outputs per image, the last row and
/// column reaching past a side that `m` does not divide.
#[derive(Clone, Copy)]
struct Tiles {
    rows: usize,
    cols: usize,
}

impl Tiles {
    /// The tiles of `m x m` outputs that cover an `h x w` map.
    fn of(h: usize, w: usize, m: usize) -> Self {
        Tiles {
            rows: h.div_ceil(m),
            cols: w.div_ceil(m),
        }
    }

    fn per_image(self) -> usize {
        self.rows * self.cols
    }
}

/// `len` tiles from tile `first` of the batch, counted in image, row, column order.
#[derive(Clone, Copy)]
struct Band {
    tiles: Tiles,
    first: usize,
    len: usize,
}

impl Band {
    /// Image, tile row and tile column of the band's tile `i`.
    fn at(self, i: usize) -> (usize, usize, usize) {
        let t = self.first + i;
        let (ni, r) = (t / self.tiles.per_image(), t % self.tiles.per_image());
        (ni, r / self.tiles.cols, r % self.tiles.cols)
    }
}

/// A pointer to a buffer that tasks share, each writing values that no other task touches: the
/// output map of [`forward`]'s bands (each band's tiles), the products of
/// [`forward_by_groups`]'s tasks (each task's output blocks).
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: the tasks that share it write disjoint values of the one buffer it points into, which
// outlives them.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    /// The value `i` places past the start.
    ///
    /// # Safety
    ///
    /// The buffer holds at least `i` values.
    unsafe fn at(self, i: usize) -> *mut f32 {
        // SAFETY: as the caller guarantees.
        unsafe { self.0.add(i) }
    }
}

/// `V_ξ` of the band's tiles, as `[ξ][C/16][tile][16]`: the inputs of the products.
fn input_transform<V: Variant>(isa: Isa, x: &BlockedMap, band: Band) -> Scratch {
    // Every value is written below.
    let mut v = Scratch::uninit(V::XI * x.blocks() * band.len * L);
    // SAFETY: `isa` is one the CPU runs, as `product` checks after this.
    unsafe {
        match isa {
            Isa::Avx512 => input_avx512::<V>(x, band, &mut v),
            Isa::Avx2 => input_avx2::<V>(x, band, &mut v),
        }
    }
    v
}

/// [`input_band`] compiled for AVX-512.
///
/// # Safety
///
/// The CPU has AVX-512F.
#[target_feature(enable = "avx512f")]
unsafe fn input_avx512<V: Variant>(x: &BlockedMap, band: Band, v: &mut [f32]) {
    input_band::<V>(x, band, v);
}

/// [`input_band`] compiled for AVX2.
///
/// # Safety
///
/// The CPU has AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
unsafe fn input_avx2<V: Variant>(x: &BlockedMap, band: Band, v: &mut [f32]) {
    input_band::<V>(x, band, v);
}

/// One vector of 16 lanes.
type Lanes = [f32; L];

/// `V = Bᵀ d B` for every tile of the band and every input block, into `v` as
/// [`input_transform`] lays it out.
#[inline(always)]
fn input_band<V: Variant>(x: &BlockedMap, band: Band, v: &mut [f32]) {
    let (blocks, a) = (x.blocks(), V::A);
    let plane = blocks * band.len * L;
    for cb in 0..blocks {
        for i in 0..band.len {
            let (ni, ty, tx) = band.at(i);
            let src = &x.data[(ni * blocks + cb) * x.plane()..][..x.plane()];
            let d = patch(a, src, x.h, x.w, V::M * ty, V::M * tx);
            // Bᵀ d down each column, then (Bᵀ d) B along each row.
            let mut t = [[[0.0f32; L]; 6]; 6];
            for c in 0..a {
                let col =
                    V::input_column([&d[0][c], &d[1][c], &d[2][c], &d[3][c], &d[4][c], &d[5][c]]);
                for (r, lanes) in col.into_iter().enumerate().take(a) {
                    t[r][c] = lanes;
                }
            }
            for (r, [t0, t1, t2, t3, t4, t5]) in t.iter().enumerate().take(a) {
                let row = V::input_column([t0, t1, t2, t3, t4, t5]);
                for (c, lanes) in row.iter().enumerate().take(a) {
                    let at = (r * a + c) * plane + (cb * band.len + i) * L;
                    v[at..at + L].copy_from_slice(lanes);
                }
            }
        }
    }
}

/// The `a x a` patch of one block (`src`, `h x w` positions of 16 lanes) whose outputs start at
/// `(y, x)`: rows `y - 1 .. y - 1 + a`, columns `x - 1 .. x - 1 + a`, zero outside the map (the
/// padding of 1, and past a side that the tiles do not divide), and past `a`.
#[inline(always)]
fn patch(a: usize, src: &[f32], h: usize, w: usize, y: usize, x: usize) -> [[Lanes; 6]; 6] {
    let mut d = [[[0.0f32; L]; 6]; 6];
    for (r, row) in d.iter_mut().enumerate().take(a) {
        let Some(yy) = (y + r).checked_sub(1).filter(|&yy| yy < h) else {
            continue;
        };
        for (c, lanes) in row.iter_mut().enumerate().take(a) {
            if let Some(xx) = (x + c).checked_sub(1).filter(|&xx| xx < w) {
                let at = (yy * w + xx) * L;
                lanes.copy_from_slice(&src[at..at + L]);
            }
        }
    }
    d
}

/// The 16 lanes of `v` from `at`.
#[inline(always)]
fn lanes(v: &[f32], at: usize) -> &Lanes {
    v[at..at + L].try_into().expect("16 lanes")
}

/// `Aᵀ m` for the column of `a` vectors of `m` from `at`, `step` apart (zero past `a`).
#[inline(always)]
fn column<V: Variant>(m: &[f32], at: usize, step: usize) -> [Lanes; 4] {
    const ZERO: Lanes = [0.0; L];
    let v = |k: usize| {
        if k < V::A {
            lanes(m, at + k * step)
        } else {
            &ZERO
        }
    };
    V::output_column([v(0), v(1), v(2), v(3), v(4), v(5)])
}

/// The band's outputs from its products `m` (`[ξ][O/16][tile][16]`): `Aᵀ M A` per tile, then
/// the epilogue, at the positions inside the map, written through `out`.
///
/// # Safety
///
/// The CPU runs `isa`; `out` points to a map of `o` channels on `x`'s batch and sides, whose
/// positions in this band's tiles no other thread touches meanwhile.
unsafe fn output_transform<V: Variant>(
    isa: Isa,
    m: &[f32],
    o: usize,
    x: &BlockedMap,
    band: Band,
    out: Out,
    epilogue: &Epilogue,
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match isa {
            Isa::Avx512 => output_avx512::<V>(m, o, x, band, out, epilogue),
            Isa::Avx2 => output_avx2::<V>(m, o, x, band, out, epilogue),
        }
    }
}

/// [`output_band`] compiled for AVX-512.
///
/// # Safety
///
/// The CPU has AVX-512F; as [`output_band`].
#[target_feature(enable = "avx512f")]
unsafe fn output_avx512<V: Variant>(
    m: &[f32],
    o: usize,
    x: &BlockedMap,
    band: Band,
    out: Out,
    e: &Epilogue,
) {
    // SAFETY: forwarded from the caller.
    unsafe { output_band::<V>(m, o, x, band, out, e) };
}

/// [`output_band`] compiled for AVX2.
///
/// # Safety
///
/// The CPU has AVX2 and FMA; as [`output_band`].
#[target_feature(enable = "avx2,fma")]
unsafe fn output_avx2<V: Variant>(
    m: &[f32],
    o: usize,
    x: &BlockedMap,
    band: Band,
    out: Out,
    e: &Epilogue,
) {
    // SAFETY: forwarded from the caller.
    unsafe { output_band::<V>(m, o, x, band, out, e) };
}

/// As [`output_transform`], on this thread's instructions.
///
/// # Safety
///
/// As [`output_transform`], but for `isa`.
#[inline(always)]
unsafe fn output_band<V: Variant>(
    m: &[f32],
    o: usize,
    x: &BlockedMap,
    band: Band,
    out: Out,
    epilogue: &Epilogue,
) {
    let blocks = y_blocks(o);
    let (plane, image) = (blocks * band.len * L, x.h * x.w * L);
    for ob in 0..blocks {
        let bias = epilogue.bias.map(|b| &b[ob * L..][..L]);
        for i in 0..band.len {
            let (ni, ty, tx) = band.at(i);
            let at = (ob * band.len + i) * L;
            // Aᵀ M down each column, then (Aᵀ M) A along each of its `m` rows. Plain loops:
            // `array::map` is not inlined, and its closures would run without the target's
            // instructions.
            let mut cols = [[[0.0f32; L]; 4]; 6];
            for (c, col) in cols.iter_mut().enumerate().take(V::A) {
                *col = column::<V>(m, at + c * plane, V::A * plane);
            }
            for r in 0..V::M {
                let [c0, c1, c2, c3, c4, c5] = &cols;
                let row = [&c0[r], &c1[r], &c2[r], &c3[r], &c4[r], &c5[r]];
                for (c, mut v) in V::output_column(row).into_iter().enumerate().take(V::M) {
                    let (yy, xx) = (V::M * ty + r, V::M * tx + c);
                    if yy >= x.h || xx >= x.w {
                        continue;
                    }
                    let at = (ni * blocks + ob) * image + (yy * x.w + xx) * L;
                    finish(
                        &mut v,
                        bias,
                        epilogue.residual.map(|r| &r[at..at + L]),
                        epilogue.slope,
                    );
                    // SAFETY: `at` is a position of this band's tile in the map `out` points
                    // to, as the caller says.
                    unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), out.at(at), L) };
                }
            }
        }
    }
}

/// `v = act(v + bias + residual)`, the leaky ReLU of `slope` where given.
#[inline(always)]
fn finish(v: &mut Lanes, bias: Option<&[f32]>, residual: Option<&[f32]>, slope: Option<f32>) {
    if let Some(bias) = bias {
        for (v, b) in v.iter_mut().zip(bias) {
            *v += b;
        }
    }
    if let Some(residual) = residual {
        for (v, r) in v.iter_mut().zip(residual) {
            *v += r;
        }
    }
    if let Some(slope) = slope {
        for v in v.iter_mut() {
            if *v < 0.0 {
                *v *= slope;
            }
        }
    }
}
