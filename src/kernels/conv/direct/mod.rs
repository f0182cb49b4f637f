//! The convolution as a direct kernel on the blocked channel layout, with tiles for AVX-512 and
//! for AVX2: the forward, and the input gradient as the forward of the transposed convolution.
//!
//! Channels go in blocks of 16: the input to `[N][C/16][Hp][Wp][16]` on the zero-padded grid,
//! the weights to `[O/16][C/16][kh][kw][16 in][16 out]`, the output comes out of
//! `[N][O/16][Ho][Wo][16]`. On AVX-512 a block is one vector, and a register tile holds 14 output
//! positions of a row for two blocks of output channels (28 accumulators): for each input channel
//! it loads two weight vectors and broadcasts each position's input value into two FMAs
//! (`avx512`). On AVX2 a block is two vectors, and a tile 6 positions of one block (`avx2`).
//! Tasks go image by image, so that an image's input stays in L2 while its rows are computed;
//! a task takes a band of rows, and sweeps them once per chunk of input blocks, so that the
//! chunk's weights stay in L1 (on AVX2, 1.07x on TResNet-M's convolutions, most on the layers of
//! 1024 input channels and more). No unfolded copy of the input is made: on AVX-512 the
//! arithmetic runs at 220-320 GFLOP/s on 2 cores on TResNet-M's layers at batch 8, against 210-230
//! for the GEMM path on its 3x3 layers; on AVX2 at 145-200.
//!
//! [`run`] works on blocked buffers, with an [`Epilogue`] (bias, residual add, leaky ReLU): the
//! blocked inference of `kernels::blocked` calls it directly. [`forward`] converts
//! `[N, C, H, W]` slices around it, a pass over the input and the output each call; the input
//! gradient is the forward of the [`transposed`] convolution. Training uses [`forward`] where
//! [`applies`] says and Winograd's algorithms (in `kernels::blocked`, on these tiles) do not.

use rayon::prelude::*;

use crate::kernels::blocked::map::unblocked;
use crate::kernels::buffer::Scratch;
use crate::kernels::loss::CpuPath;

use super::geometry::Grid;

mod avx2;
mod avx512;

/// Channels per block: the `f32` lanes of a vector.
pub(crate) const LANES: usize = 16;
const L: usize = LANES;

/// The instruction sets the kernel has tiles for, fastest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isa {
    /// 32 vector registers of 16 lanes: one block per vector.
    Avx512,
    /// 16 vector registers of 8 lanes, and FMA: one block per two vectors.
    Avx2,
}

impl Isa {
    /// The tiles the kernel path runs ([`CpuPath::best`]), if any.
    pub(crate) fn best() -> Option<Self> {
        match CpuPath::best() {
            p if p >= CpuPath::Avx512 => Some(Self::Avx512),
            p if p >= CpuPath::Avx2 => Some(Self::Avx2),
            _ => None,
        }
    }

    /// Every instruction set this CPU runs tiles for, fastest first: the tests run each.
    #[cfg(test)]
    pub(crate) fn supported() -> Vec<Self> {
        [Self::Avx512, Self::Avx2]
            .into_iter()
            .filter(|isa| isa.runs())
            .collect()
    }

    /// Whether this CPU runs these tiles: the features of [`CpuPath::supported`]'s path of the
    /// same name, checked without building its list (the kernels check at every call).
    pub(crate) fn runs(self) -> bool {
        use std::arch::is_x86_feature_detected as has;
        match self {
            Self::Avx512 => has!("avx512f"),
            Self::Avx2 => has!("avx2") && has!("fma"),
        }
    }
}

/// Whether the direct kernel runs this convolution's forward in place of the GEMM path: on
/// the AVX-512 path (which [`CPU_PATH_ENV`](crate::kernels::CPU_PATH_ENV) can cap), for 3x3
/// kernels with at least 64 input channels on maps up to 56x56. With the layout conversions
/// included, TResNet-M's layers at batch 8 measured 1.0-1.13x faster there (forward, and forward
/// with both gradients). The AVX2 tiles were slower than the GEMM crate, which picks its own
/// instructions (AVX-512 on the machine that measured).
pub(super) fn applies(grid: &Grid) -> bool {
    (grid.kh, grid.kw) == (3, 3)
        && grid.c >= 64
        && grid.ho() * grid.wo() <= 56 * 56
        && CpuPath::best() >= CpuPath::Avx512
}

/// `y = conv2d(x, w) + bias` (stride 1) on host slices, `y` as `[N, O, Ho, Wo]`, for any
/// geometry (channels that are not multiples of 16 are padded with zeros).
///
/// # Panics
///
/// If the kernel path has no tiles ([`Isa::best`]), or the slices do not hold the grid's shapes.
pub(crate) fn forward(grid: Grid, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let isa = Isa::best().expect("the direct convolution needs AVX2 and FMA");
    forward_on(isa, grid, x, w, bias)
}

/// [`forward`] with the tiles of `isa`, which the CPU must run.
pub(crate) fn forward_on(
    isa: Isa,
    grid: Grid,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
) -> Vec<f32> {
    assert_eq!(x.len(), grid.n * grid.c * grid.h * grid.w, "input length");
    assert_eq!(
        w.len(),
        grid.o * grid.c * grid.kh * grid.kw,
        "weight length"
    );
    let xb = blocked_input(grid, x);
    let mut wb = Scratch::zeroed(packed_weights_len(&grid));
    pack_weights(grid, w, None, &mut wb);
    let yb = run(isa, grid, &xb, &wb, Epilogue::default());
    unblocked_output(grid, &yb, bias)
}

/// The transposed convolution of `w` (`[O, C, kh, kw]`) on `grid`, whose forward from the
/// output gradient `g` (`[N, O, Ho, Wo]`) is the input gradient `dx` (`[N, C, H, W]`) of
/// `y = conv2d(x, w)` (stride 1): its grid (channels swapped, padding `k - 1 - p`), and
/// the kernel turned half a turn with its channels swapped (`[C, O, kh, kw]`).
///
/// # Panics
///
/// If a padding is not below its kernel size.
pub(crate) fn transposed(grid: Grid, w: &[f32]) -> (Grid, Scratch) {
    assert!(
        grid.ph < grid.kh && grid.pw < grid.kw,
        "padding below the kernel"
    );
    let taps = grid.kh * grid.kw;
    // Every value is written below: input channel ci's kernels fill its chunk.
    let mut turned = Scratch::uninit(w.len());
    turned
        .par_chunks_mut(grid.o * taps)
        .enumerate()
        .for_each(|(ci, dst)| {
            for oi in 0..grid.o {
                let src = &w[(oi * grid.c + ci) * taps..][..taps];
                for (t, &v) in src.iter().rev().enumerate() {
                    dst[oi * taps + t] = v;
                }
            }
        });
    (transposed_grid(&grid), turned)
}

/// The grid of the [`transposed`] convolution (padding `k - 1 - p`, which must not underflow).
pub(crate) fn transposed_grid(grid: &Grid) -> Grid {
    Grid {
        n: grid.n,
        c: grid.o,
        o: grid.c,
        h: grid.ho(),
        w: grid.wo(),
        kh: grid.kh,
        kw: grid.kw,
        ph: grid.kh - 1 - grid.ph,
        pw: grid.kw - 1 - grid.pw,
    }
}

/// The length of a convolution's packed weights.
pub(crate) fn packed_weights_len(grid: &Grid) -> usize {
    let (cb, ob) = blocks(grid);
    ob * cb * grid.kh * grid.kw * L * L
}

/// Blocks of input and output channels.
pub(crate) fn blocks(grid: &Grid) -> (usize, usize) {
    (grid.c.div_ceil(L), grid.o.div_ceil(L))
}

/// `x` as `[N][C/16][Hp][Wp][16]`, zero on the padding and past the last channel.
fn blocked_input(grid: Grid, x: &[f32]) -> Scratch {
    let (cb, _) = blocks(&grid);
    let (hp, wp) = (grid.hp(), grid.wp());
    let mut xb = Scratch::zeroed(grid.n * cb * hp * wp * L);
    xb.par_chunks_mut(hp * wp * L)
        .enumerate()
        .for_each(|(i, dst)| {
            let (ni, b) = (i / cb, i % cb);
            for lane in 0..L.min(grid.c - b * L) {
                let plane = &x[(ni * grid.c + b * L + lane) * grid.h * grid.w..];
                for (y, row) in plane.chunks(grid.w).take(grid.h).enumerate() {
                    let at = ((y + grid.ph) * wp + grid.pw) * L + lane;
                    for (xi, &v) in row.iter().enumerate() {
                        dst[at + xi * L] = v;
                    }
                }
            }
        });
    xb
}

/// `w` as `[O/16][C/16][kh][kw][16 in][16 out]` in `wb` (zeroed, [`packed_weights_len`]
/// long), zero past the last channels, each output channel's weights times `scale[o]` when
/// given (a BatchNorm folded in).
pub(crate) fn pack_weights(grid: Grid, w: &[f32], scale: Option<&[f32]>, wb: &mut [f32]) {
    assert_eq!(wb.len(), packed_weights_len(&grid), "packed weight length");
    let (cb, taps) = (blocks(&grid).0, grid.kh * grid.kw);
    // One task per pair of blocks (output, input): its `[kh][kw][16 in][16 out]` weights, which
    // it reads as runs of `kh * kw` taps.
    wb.par_chunks_mut(taps * L * L)
        .enumerate()
        .for_each(|(i, dst)| {
            let (ob, ib) = (i / cb, i % cb);
            for oi in ob * L..grid.o.min(ob * L + L) {
                let s = scale.map_or(1.0, |s| s[oi]);
                for ci in ib * L..grid.c.min(ib * L + L) {
                    let src = &w[(oi * grid.c + ci) * taps..][..taps];
                    for (t, &v) in src.iter().enumerate() {
                        dst[(t * L + ci % L) * L + oi % L] = v * s;
                    }
                }
            }
        });
}

/// The blocked output `[N][O/16][Ho][Wo][16]` as `[N, O, Ho, Wo]`, plus the bias.
fn unblocked_output(grid: Grid, yb: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    unblocked(yb, [grid.n, grid.o, grid.ho(), grid.wo()], bias)
}

/// A pointer that rayon's tasks may share: each writes its own rows.
#[derive(Clone, Copy)]
struct Rows(*mut f32);
// SAFETY: the tasks of `run` write disjoint rows of the one buffer this points into, which
// outlives them.
unsafe impl Send for Rows {}
unsafe impl Sync for Rows {}

impl Rows {
    /// The pointer `offset` elements on (a method, so that closures capture the whole `Rows`).
    ///
    /// # Safety
    ///
    /// As `pointer::add`.
    unsafe fn at(self, offset: usize) -> *mut f32 {
        // SAFETY: forwarded from the caller.
        unsafe { self.0.add(offset) }
    }
}

/// What the tiles do to their sums before they store them, in this order.
#[derive(Clone, Copy, Default)]
pub(crate) struct Epilogue<'a> {
    /// A bias per output channel, zero-padded to whole blocks.
    pub(crate) bias: Option<&'a [f32]>,
    /// A tensor in the output's blocked layout, added (a residual connection).
    pub(crate) residual: Option<&'a [f32]>,
    /// The slope of a leaky ReLU (0 for a ReLU); none for no activation.
    pub(crate) slope: Option<f32>,
}

/// The blocked output of the blocked input and weights, then the epilogue, with the tiles of
/// `isa`: one task per band of output rows ([`bands`]) and group of output-channel blocks,
/// image by image.
///
/// # Panics
///
/// If the CPU does not run `isa`, or a buffer is shorter than the grid needs.
pub(crate) fn run(isa: Isa, grid: Grid, xb: &[f32], wb: &[f32], epilogue: Epilogue) -> Scratch {
    let (_, obn) = blocks(&grid);
    // Every value is written by the tiles below.
    let mut yb = Scratch::uninit(grid.n * obn * grid.ho() * grid.wo() * L);
    let sweep = Sweep::new(isa, grid, xb, wb, &yb, epilogue);
    let out = Rows(yb.as_mut_ptr());
    let groups = obn.div_ceil(sweep.group);
    let (bands, band) = bands(grid.ho(), grid.wo());
    (0..grid.n * groups * bands)
        .into_par_iter()
        .for_each(|task| {
            let (ni, gi, bi) = (task / (groups * bands), task / bands % groups, task % bands);
            let rows = bi * band..grid.ho().min(bi * band + band);
            // SAFETY: `out` points into `yb`, which `sweep` was made for, and no other task
            // writes these rows of this group of this image.
            unsafe { sweep.rows(out, ni, gi * sweep.group, rows) };
        });
    yb
}

/// `y = x · w` on this thread for a 1x1 kernel on one row of `positions` positions: `x` as
/// `[C/16][positions][16]`, `w` packed for `c` input and `o` output channels, `y` as
/// `[O/16][positions][16]`. The products of Winograd's convolution, each in a task of its own.
///
/// # Panics
///
/// If the CPU does not run `isa`, or a buffer is shorter than its layout.
pub(crate) fn product(
    isa: Isa,
    [c, o, positions]: [usize; 3],
    x: &[f32],
    w: &[f32],
    y: &mut [f32],
) {
    let sweep = Sweep::new(
        isa,
        pointwise(c, o, positions),
        x,
        w,
        y,
        Epilogue::default(),
    );
    let out = Rows(y.as_mut_ptr());
    for ob in (0..o.div_ceil(L)).step_by(sweep.group) {
        // SAFETY: `out` points into `y`, which `sweep` was made for, and this thread alone
        // writes it.
        unsafe { sweep.rows(out, 0, ob, 0..1) };
    }
}

/// The geometry of a 1x1 convolution of `c` channels in and `o` out on one row of `positions`
/// positions: what [`product`] computes, and its weights' packing.
pub(crate) fn pointwise(c: usize, o: usize, positions: usize) -> Grid {
    Grid {
        n: 1,
        c,
        o,
        h: 1,
        w: positions,
        kh: 1,
        kw: 1,
        ph: 0,
        pw: 0,
    }
}

/// One call's buffers and blocking, checked against its grid: what a task needs to compute
/// some rows of some output blocks.
struct Sweep<'a> {
    isa: Isa,
    grid: Grid,
    xb: &'a [f32],
    wb: &'a [f32],
    epilogue: Epilogue<'a>,
    /// Output blocks per task ([`avx512::GROUP`], [`avx2::GROUP`]), and input blocks per
    /// chunk ([`chunk_blocks`]).
    group: usize,
    chunk: usize,
}

impl<'a> Sweep<'a> {
    /// # Panics
    ///
    /// If the CPU does not run `isa`, or a buffer (`y` the output) is shorter than the grid
    /// needs.
    fn new(
        isa: Isa,
        grid: Grid,
        xb: &'a [f32],
        wb: &'a [f32],
        y: &[f32],
        epilogue: Epilogue<'a>,
    ) -> Self {
        assert!(isa.runs(), "the CPU runs {isa:?}");
        let (cbn, obn) = blocks(&grid);
        let out_len = grid.n * obn * grid.ho() * grid.wo() * L;
        assert!(
            xb.len() >= grid.n * cbn * grid.hp() * grid.wp() * L,
            "blocked input length"
        );
        assert!(
            wb.len() >= packed_weights_len(&grid),
            "blocked weight length"
        );
        assert!(y.len() >= out_len, "blocked output length");
        assert!(
            epilogue.bias.is_none_or(|b| b.len() >= obn * L),
            "bias length"
        );
        assert!(
            epilogue.residual.is_none_or(|r| r.len() >= out_len),
            "residual length"
        );
        let group = match isa {
            Isa::Avx512 => avx512::GROUP,
            Isa::Avx2 => avx2::GROUP,
        };
        let chunk = chunk_blocks(group, grid.kh * grid.kw, cbn);
        Sweep {
            isa,
            grid,
            xb,
            wb,
            epilogue,
            group,
            chunk,
        }
    }

    /// Output rows `rows` of image `ni`, for the group of output blocks from `ob`, into `out`.
    ///
    /// # Safety
    ///
    /// `out` points to the output buffer `self` was made for, and no other thread writes these
    /// rows of these blocks of this image meanwhile.
    unsafe fn rows(&self, out: Rows, ni: usize, ob: usize, rows: std::ops::Range<usize>) {
        let (grid, epilogue) = (&self.grid, &self.epilogue);
        let (cbn, obn) = blocks(grid);
        let (ho, wo, taps) = (grid.ho(), grid.wo(), grid.kh * grid.kw);
        let plane = grid.hp() * grid.wp() * L;
        let nb = self.group.min(obn - ob);
        // Chunk by chunk of input blocks, the chunk's weights stay in L1 while the rows sweep
        // over them; each chunk adds to the sums the ones before it stored.
        for cb in (0..cbn).step_by(self.chunk) {
            let last = cb + self.chunk >= cbn;
            for oh in rows.clone() {
                let row = ((ni * obn + ob) * ho + oh) * wo * L;
                // SAFETY: the CPU runs `isa`, and the input image, the weight blocks and the
                // output rows are inside their buffers for this grid (checked by `new`); the
                // caller says no other thread writes these rows.
                unsafe {
                    let args = Args {
                        x: self.xb.as_ptr().add((ni * cbn + cb) * plane),
                        w: self.wb.as_ptr().add((ob * cbn + cb) * taps * L * L),
                        w_next: cbn * taps * L * L,
                        y: out.at(row),
                        y_next: ho * wo * L,
                        accumulate: cb > 0,
                        bias: epilogue
                            .bias
                            .filter(|_| last)
                            .map(|b| b.as_ptr().add(ob * L)),
                        residual: epilogue
                            .residual
                            .filter(|_| last)
                            .map(|r| r.as_ptr().add(row)),
                        slope: epilogue.slope.filter(|_| last),
                        cbn: self.chunk.min(cbn - cb),
                        hp: grid.hp(),
                        wp: grid.wp(),
                        kh: grid.kh,
                        kw: grid.kw,
                        oh,
                    };
                    match self.isa {
                        Isa::Avx512 => avx512::row(&args, wo, nb),
                        Isa::Avx2 => avx2::row(&args, wo, nb),
                    }
                }
            }
        }
    }
}

/// How far ahead of its weight loads a tile asks the cache for weights: two 16x16 blocks, the
/// weights of two taps (or input blocks) later. A task's first tile over a chunk reads its
/// weights from L3 when they are larger than L2 (Winograd's transformed kernels of 512 channels,
/// 16 MB): asked for early, TResNet-M's 3x3 layers of 256 and 512 channels ran 1.06-1.12x
/// faster (1.05-1.07x on AVX2), those of 48 and 64 channels the same.
pub(super) const PREFETCH: usize = 2 * L * L;

/// Bytes of weights a task keeps in L1 (48 KiB on the machines measured) while its rows sweep
/// over them.
const CHUNK_BYTES: usize = 32 * 1024;

/// Input blocks per chunk, of `cbn`: as few chunks as keep a group's weights of a chunk within
/// [`CHUNK_BYTES`], of equal size but the last.
fn chunk_blocks(group: usize, taps: usize, cbn: usize) -> usize {
    let most = (CHUNK_BYTES / (group * taps * L * L * size_of::<f32>())).max(1);
    cbn.div_ceil(cbn.div_ceil(most))
}

/// Output positions a task computes at least (where the map has them), so that each chunk of
/// weights serves several tiles.
const BAND_POSITIONS: usize = 128;

/// The number of row bands of an `ho x wo` output, and the rows of each but the last: bands of
/// about equal height, each at least [`BAND_POSITIONS`] positions.
fn bands(ho: usize, wo: usize) -> (usize, usize) {
    let band = ho.div_ceil((ho / BAND_POSITIONS.div_ceil(wo)).max(1));
    (ho.div_ceil(band), band)
}

/// Where a row task reads and writes.
pub(super) struct Args {
    /// The image's blocked input, and the first block's weights.
    pub(super) x: *const f32,
    pub(super) w: *const f32,
    /// Elements from one output-channel block's weights to the next.
    pub(super) w_next: usize,
    /// The first block's output row, and the elements to the next block's.
    pub(super) y: *mut f32,
    pub(super) y_next: usize,
    /// Whether the tiles add to the sums already in the output rows (a later chunk of input
    /// blocks) rather than start from zero.
    pub(super) accumulate: bool,
    /// The first block's bias, the first block's residual row (`y_next` on to the next's), and
    /// the activation's slope: as [`Epilogue`] says.
    pub(super) bias: Option<*const f32>,
    pub(super) residual: Option<*const f32>,
    pub(super) slope: Option<f32>,
    pub(super) cbn: usize,
    pub(super) hp: usize,
    pub(super) wp: usize,
    pub(super) kh: usize,
    pub(super) kw: usize,
    pub(super) oh: usize,
}
