//! The fused CPU kernel: loss and gradient in one pass over host slices.
//!
//! The element-wise math is branch-free (selects, and `exp`/`ln` written as polynomials on the
//! float bits) so that LLVM vectorises it; chunks of the data run in parallel on rayon's pool.
//! On x86-64 the loop is also compiled for AVX2 and AVX-512 and picked at run time (capped by
//! [`CPU_PATH_ENV`]), and loops written with intrinsics take the common cases: on CPUs with
//! AVX-512 one for targets exactly 0 or 1 with integer exponents, which hands a block to one for
//! any targets where a target is soft ([`avx512`]); with label smoothing, where every target is
//! soft, the latter on AVX-512 and its AVX2 twin ([`avx2`]) on CPUs without AVX-512.
//!
//! The options that are off by default (per-class weights, smoothing, the per-element output of
//! the `none` reduction) cost nothing when off: the weights are a compile-time switch, and the
//! others are tests hoisted out of the element loops.

use rayon::prelude::*;

use crate::loss::{LossParams, Reduction};

/// `Default` as all zero bits, for structs of SIMD vectors (the intrinsics loops' buffers).
#[cfg(target_arch = "x86_64")]
macro_rules! zeroed_default {
    ($($t:ty),*) => {$(
        impl Default for $t {
            fn default() -> Self {
                // SAFETY: all zero bits are a valid value of every SIMD vector type, the only
                // fields of the types this is used for; no instruction is executed.
                unsafe { std::mem::zeroed() }
            }
        }
    )*};
}

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(all(test, target_arch = "x86_64"))]
mod soft_tests;

/// Elements per parallel task: big enough to amortise scheduling, small enough to stay in L2.
const CHUNK: usize = 16 * 1024;
/// Lanes of the manual accumulator, so the reduction vectorises without reassociation.
const LANES: usize = 16;
/// Elements per inner block (the per-element losses of one block stay on the stack).
const BLOCK: usize = 256;

/// The reduced loss of `logits` against `targets` (flat, same length, rows of `classes`), and
/// when `grad` is given, its gradient with respect to the logits written there (for an incoming
/// gradient of 1).
///
/// This is the kernel behind [`AsymmetricLoss::forward`](crate::loss::AsymmetricLoss::forward) on
/// the CPU backends, usable on plain slices. With [`Reduction::None`] it returns the sum of the
/// per-element losses and the gradient of each ([`asymmetric_loss_cpu_elementwise`] writes the
/// losses themselves).
///
/// # Panics
///
/// If the slices' lengths differ, or the per-class weights of `params` do not fit `classes`.
pub fn asymmetric_loss_cpu(
    logits: &[f32],
    targets: &[f32],
    classes: usize,
    params: &LossParams,
    grad: Option<&mut [f32]>,
) -> f64 {
    kernel(
        CpuPath::best(),
        logits,
        targets,
        classes,
        params,
        grad,
        None,
    )
}

/// The per-element losses of `logits` against `targets` (flat, same length, rows of `classes`)
/// written to `losses`, and when `grad` is given the gradient of each with respect to its logit;
/// the reduction of `params` is ignored. Returns the sum of the losses.
///
/// # Panics
///
/// As [`asymmetric_loss_cpu`], and if `losses` has another length.
pub fn asymmetric_loss_cpu_elementwise(
    logits: &[f32],
    targets: &[f32],
    classes: usize,
    params: &LossParams,
    losses: &mut [f32],
    grad: Option<&mut [f32]>,
) -> f64 {
    let params = LossParams {
        reduction: Reduction::None,
        ..params.clone()
    };
    kernel(
        CpuPath::best(),
        logits,
        targets,
        classes,
        &params,
        grad,
        Some(losses),
    )
}

/// A code path of the CPU kernels, by the instructions it uses (ordered slowest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum CpuPath {
    /// Plain Rust, no FMA.
    Portable,
    /// The general loop compiled for AVX2 and FMA, and the AVX2 intrinsics loop for smoothed
    /// targets; the direct convolution's AVX2 tiles in TResNet's inference.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// The general loop compiled for AVX-512, and the direct convolution's AVX-512 tiles.
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// The intrinsics loop for binary targets and integer exponents, the general AVX-512 loop
    /// elsewhere.
    #[cfg(target_arch = "x86_64")]
    Avx512Binary,
}

/// The environment variable that caps the CPU kernels' path: `portable`, `avx2`, `avx512` (the
/// loss's autovectorised loop compiled for AVX-512, and the direct AVX-512 convolution) or
/// `avx512-binary` (the loss's intrinsics loops too, the default where the CPU has it). At `avx2`
/// TResNet's inference runs the direct convolution's AVX2 tiles and training's convolutions run
/// as GEMMs only; at `portable` inference runs the modules' own operations on `[N, C, H, W]`
/// tensors. Read once, at the first call of
/// a kernel.
pub const CPU_PATH_ENV: &str = "AIA_CPU_PATH";

impl CpuPath {
    /// Every path, slowest first, with the name [`CPU_PATH_ENV`] gives it.
    const ALL: &'static [(Self, &'static str)] = &[
        (Self::Portable, "portable"),
        #[cfg(target_arch = "x86_64")]
        (Self::Avx2, "avx2"),
        #[cfg(target_arch = "x86_64")]
        (Self::Avx512, "avx512"),
        #[cfg(target_arch = "x86_64")]
        (Self::Avx512Binary, "avx512-binary"),
    ];

    /// The path's name, as [`CPU_PATH_ENV`] takes it.
    pub(crate) fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(p, _)| *p == self)
            .map_or("portable", |(_, n)| n)
    }

    /// The path the kernels run: the fastest this CPU runs, capped by [`CPU_PATH_ENV`] when it is
    /// set (decided once; a value that is not a path name, or names a path this CPU cannot run,
    /// is reported by a warning of the `log` crate).
    pub(crate) fn best() -> Self {
        static CHOSEN: std::sync::OnceLock<CpuPath> = std::sync::OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let request = std::env::var(CPU_PATH_ENV).ok();
            let (path, warning) = Self::capped(request.as_deref(), &Self::supported());
            if let Some(warning) = warning {
                log::warn!("{warning}");
            }
            path
        })
    }

    /// The fastest of `supported` (slowest first, never empty) at or below the path named
    /// `request`, and a warning when the request cannot be followed as given: an unknown name
    /// (the fastest path then), or a path above what this CPU runs (the fastest below it).
    pub(crate) fn capped(request: Option<&str>, supported: &[Self]) -> (Self, Option<String>) {
        let fastest = *supported.last().unwrap_or(&Self::Portable);
        let Some(request) = request.map(str::trim).filter(|r| !r.is_empty()) else {
            return (fastest, None);
        };
        let rank = |path: Self| Self::ALL.iter().position(|(p, _)| *p == path);
        let Some(cap) = Self::ALL
            .iter()
            .position(|(_, name)| name.eq_ignore_ascii_case(request))
        else {
            let names: Vec<_> = Self::ALL.iter().map(|(_, n)| *n).collect();
            let warning = format!(
                "{CPU_PATH_ENV}={request:?} is not a CPU kernel path (expected one of {}); using {}",
                names.join(", "),
                fastest.name()
            );
            return (fastest, Some(warning));
        };
        let path = supported
            .iter()
            .rev()
            .copied()
            .find(|&p| rank(p).is_some_and(|r| r <= cap))
            .unwrap_or(Self::Portable);
        let warning = (rank(path) != Some(cap)).then(|| {
            format!(
                "{CPU_PATH_ENV}={request:?}: this CPU cannot run that path; using {}",
                path.name()
            )
        });
        (path, warning)
    }

    /// Every path this CPU runs, slowest first.
    pub(crate) fn supported() -> Vec<Self> {
        #[allow(unused_mut)]
        let mut paths = vec![Self::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") {
                paths.push(Self::Avx2);
            }
            if has!("avx512f") {
                paths.push(Self::Avx512);
                if has!("avx512dq") {
                    paths.push(Self::Avx512Binary);
                }
            }
        }
        paths
    }
}

/// The kernel on `path` (which the CPU must support): the sum of the losses scaled by the
/// reduction, the gradients in `grad`, the per-element losses in `losses`.
pub(crate) fn kernel(
    path: CpuPath,
    logits: &[f32],
    targets: &[f32],
    classes: usize,
    params: &LossParams,
    grad: Option<&mut [f32]>,
    losses: Option<&mut [f32]>,
) -> f64 {
    assert_eq!(logits.len(), targets.len(), "logits and targets lengths");
    if let Err(e) = params.check_classes(classes) {
        panic!("asymmetric loss: {e}");
    }
    let n = logits.len();
    let classes = classes.max(1);
    let scale = params.scale(n, classes);
    let ctx = Ctx {
        path,
        p: params,
        scale,
        classes,
    };
    if let Some(g) = &grad {
        assert_eq!(g.len(), n, "gradient length");
    }
    if let Some(l) = &losses {
        assert_eq!(l.len(), n, "losses length");
    }
    let sum = if n <= CHUNK {
        let g = grad.unwrap_or(&mut []);
        let l = losses.unwrap_or(&mut []);
        ctx.dispatch(0, logits, targets, g, l)
    } else {
        // Absent outputs are empty slices, one per chunk, so that every chunk zips with one.
        let chunks = n.div_ceil(CHUNK);
        let (gs, ls) = (split(grad, chunks), split(losses, chunks));
        logits
            .par_chunks(CHUNK)
            .zip(targets.par_chunks(CHUNK))
            .zip(gs.into_par_iter().zip(ls.into_par_iter()))
            .enumerate()
            .map(|(i, ((x, y), (g, l)))| ctx.dispatch(i * CHUNK, x, y, g, l))
            .sum()
    };
    reduce(params, sum, n, classes)
}

/// `out` in chunks of [`CHUNK`], or `chunks` empty slices when absent.
fn split(out: Option<&mut [f32]>, chunks: usize) -> Vec<&mut [f32]> {
    match out {
        Some(o) => o.chunks_mut(CHUNK).collect(),
        None => (0..chunks).map(|_| &mut [][..]).collect(),
    }
}

/// The sum of the per-element losses reduced as `params` says, in `f64`.
fn reduce(params: &LossParams, sum: f64, n: usize, classes: usize) -> f64 {
    match params.reduction {
        Reduction::Mean => sum / n.max(1) as f64,
        Reduction::BatchMean => sum / (n / classes.max(1)).max(1) as f64,
        Reduction::Sum | Reduction::None => sum,
    }
}

/// [`asymmetric_loss_cpu`] with the gradient written over the logits: `values` holds the logits
/// on entry and their gradient on return, which saves allocating (and the kernel faulting in) a
/// buffer as large as the logits when the caller owns them.
///
/// # Panics
///
/// As [`asymmetric_loss_cpu`].
pub fn asymmetric_loss_cpu_in_place(
    values: &mut [f32],
    targets: &[f32],
    classes: usize,
    params: &LossParams,
) -> f64 {
    assert_eq!(values.len(), targets.len(), "logits and targets lengths");
    if let Err(e) = params.check_classes(classes) {
        panic!("asymmetric loss: {e}");
    }
    let n = values.len();
    let classes = classes.max(1);
    let ctx = Ctx {
        path: CpuPath::best(),
        p: params,
        scale: params.scale(n, classes),
        classes,
    };
    // The kernels read logits and write gradients through distinct slices: each run of the
    // logits is first copied to a buffer that stays in cache.
    let chunk = |offset: usize, g: &mut [f32], y: &[f32]| -> f64 {
        let mut buf = [0.0f32; IN_PLACE_RUN];
        let mut sum = 0.0;
        for (i, (g, y)) in g
            .chunks_mut(IN_PLACE_RUN)
            .zip(y.chunks(IN_PLACE_RUN))
            .enumerate()
        {
            let x = &mut buf[..g.len()];
            x.copy_from_slice(g);
            sum += ctx.dispatch(offset + i * IN_PLACE_RUN, x, y, g, &mut []);
        }
        sum
    };
    let sum: f64 = if n <= CHUNK {
        chunk(0, values, targets)
    } else {
        values
            .par_chunks_mut(CHUNK)
            .zip(targets.par_chunks(CHUNK))
            .enumerate()
            .map(|(i, (g, y))| chunk(i * CHUNK, g, y))
            .sum()
    };
    reduce(params, sum, n, classes)
}

/// Elements of the logits copied aside at a time by [`asymmetric_loss_cpu_in_place`] (16 KiB).
const IN_PLACE_RUN: usize = 4096;

#[cfg(any(feature = "flex", feature = "ndarray"))]
/// Multiply `grad` by `factor` in place, in parallel for large slices.
pub(crate) fn scale_in_place(grad: &mut [f32], factor: f32) {
    if grad.len() <= CHUNK {
        grad.iter_mut().for_each(|g| *g *= factor);
    } else {
        grad.par_chunks_mut(CHUNK)
            .for_each(|c| c.iter_mut().for_each(|g| *g *= factor));
    }
}

/// What every chunk of one call shares.
struct Ctx<'a> {
    path: CpuPath,
    p: &'a LossParams,
    scale: f32,
    classes: usize,
}

impl Ctx<'_> {
    /// The unscaled sum of the losses of the chunk starting at element `offset` (the gradient
    /// scaled), on the monomorphised loop for these parameters and this path.
    fn dispatch(&self, offset: usize, x: &[f32], y: &[f32], g: &mut [f32], l: &mut [f32]) -> f64 {
        if g.is_empty() {
            self.with_grad::<false>(offset, x, y, &mut [], l)
        } else {
            self.with_grad::<true>(offset, x, y, g, l)
        }
    }

    fn with_grad<const GRAD: bool>(
        &self,
        offset: usize,
        x: &[f32],
        y: &[f32],
        g: &mut [f32],
        l: &mut [f32],
    ) -> f64 {
        let p = self.p;
        let int_pow = |v: f32| (0.0..=15.0).contains(&v) && v.fract() == 0.0;
        // The presets' exponents are compile-time constants: their powers are one or two products.
        macro_rules! go {
            ($n:expr, $q:expr) => {
                self.with_pows::<GRAD, _, _>(offset, $n, $q, x, y, g, l)
            };
        }
        match (p.gamma_neg, p.gamma_pos) {
            (0.0, 0.0) => go!(ConstPow::<0>, ConstPow::<0>),
            (3.0, 3.0) => go!(ConstPow::<3>, ConstPow::<3>),
            (4.0, 0.0) => go!(ConstPow::<4>, ConstPow::<0>),
            (4.0, 1.0) => go!(ConstPow::<4>, ConstPow::<1>),
            (4.0, 3.0) => go!(ConstPow::<4>, ConstPow::<3>),
            (n, q) if int_pow(n) && int_pow(q) => go!(IntPow(n as u32), IntPow(q as u32)),
            (n, q) => go!(FloatPow(n), FloatPow(q)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn with_pows<const GRAD: bool, N: Pow, Q: Pow>(
        &self,
        offset: usize,
        pow_neg: N,
        pow_pos: Q,
        x: &[f32],
        y: &[f32],
        g: &mut [f32],
        l: &mut [f32],
    ) -> f64 {
        let p = self.p;
        let k = Elem {
            p: p.clone(),
            scale: self.scale,
            pow_neg,
            pow_pos,
            classes: self.classes,
        };
        let col = offset % self.classes;
        match (p.pos_margin > 0.0, p.weighted()) {
            (true, true) => run::<N, Q, GRAD, true, true>(self.path, &k, col, x, y, g, l),
            (true, false) => run::<N, Q, GRAD, true, false>(self.path, &k, col, x, y, g, l),
            (false, true) => run::<N, Q, GRAD, false, true>(self.path, &k, col, x, y, g, l),
            (false, false) => run::<N, Q, GRAD, false, false>(self.path, &k, col, x, y, g, l),
        }
    }
}

/// The loop of `path` for `x` starting at class `col`.
fn run<N: Pow, Q: Pow, const GRAD: bool, const MARGIN: bool, const W: bool>(
    path: CpuPath,
    k: &Elem<N, Q>,
    col: usize,
    x: &[f32],
    y: &[f32],
    g: &mut [f32],
    l: &mut [f32],
) -> f64 {
    match path {
        #[cfg(target_arch = "x86_64")]
        CpuPath::Avx512Binary => {
            if k.pow_neg.int_exp().is_some() && k.pow_pos.int_exp().is_some() {
                // SAFETY: the path is only chosen on CPUs with AVX-512F and DQ (CpuPath), and
                // both exponents are integers.
                unsafe { run_avx512_binary::<N, Q, GRAD, MARGIN, W>(k, col, x, y, g, l) }
            } else {
                // SAFETY: as above; AVX-512F implies FMA.
                unsafe { run_avx512::<N, Q, GRAD, MARGIN, W>(k, col, x, y, g, l) }
            }
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the path is only chosen on CPUs with AVX-512F (CpuPath), which implies FMA.
        CpuPath::Avx512 => unsafe { run_avx512::<N, Q, GRAD, MARGIN, W>(k, col, x, y, g, l) },
        #[cfg(target_arch = "x86_64")]
        CpuPath::Avx2 => {
            // SAFETY (both): the path is only chosen on CPUs with AVX2 and FMA (CpuPath).
            if k.p.smoothing != 0.0 {
                // Smoothed targets are never 0 or 1.
                unsafe { avx2::run_soft::<N, Q, GRAD, MARGIN, W>(k, col, x, y, g, l) }
            } else {
                unsafe { run_avx2::<N, Q, GRAD, MARGIN, W>(k, col, x, y, g, l) }
            }
        }
        // Without a hardware FMA, `mul_add` would be a library call.
        CpuPath::Portable => run_loop::<N, Q, GRAD, MARGIN, W, false>(k, col, x, y, g, l),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn run_avx512<N: Pow, Q: Pow, const GRAD: bool, const MARGIN: bool, const W: bool>(
    k: &Elem<N, Q>,
    col: usize,
    x: &[f32],
    y: &[f32],
    g: &mut [f32],
    l: &mut [f32],
) -> f64 {
    run_loop::<N, Q, GRAD, MARGIN, W, true>(k, col, x, y, g, l)
}

/// The AVX-512 intrinsics loop while targets are 0 or 1; where a vector holds another target,
/// the intrinsics loop for any targets takes one block from there (and every element, with label
/// smoothing).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
unsafe fn run_avx512_binary<N: Pow, Q: Pow, const GRAD: bool, const MARGIN: bool, const W: bool>(
    k: &Elem<N, Q>,
    col: usize,
    x: &[f32],
    y: &[f32],
    g: &mut [f32],
    l: &mut [f32],
) -> f64 {
    // Smoothed targets are never 0 or 1.
    if k.p.smoothing != 0.0 {
        // SAFETY: forwarded from the caller.
        return unsafe { avx512::run_soft::<N, Q, GRAD, MARGIN, W>(k, col, x, y, g, l) };
    }
    let out = !l.is_empty();
    let mut sum = 0.0;
    let mut start = 0;
    while start < x.len() {
        let gs = if GRAD { &mut g[start..] } else { &mut [][..] };
        let ls = if out { &mut l[start..] } else { &mut [][..] };
        let c = (col + start) % k.classes;
        // SAFETY: forwarded from the caller; the slices have equal lengths.
        let (part, done) = unsafe {
            avx512::run_binary::<N, Q, GRAD, MARGIN, W>(k, c, &x[start..], &y[start..], gs, ls)
        };
        sum += part;
        start += done;
        if start < x.len() {
            let end = (start + BLOCK).min(x.len());
            let gs = if GRAD {
                &mut g[start..end]
            } else {
                &mut [][..]
            };
            let ls = if out { &mut l[start..end] } else { &mut [][..] };
            let c = (col + start) % k.classes;
            // SAFETY: as above.
            sum += unsafe {
                avx512::run_soft::<N, Q, GRAD, MARGIN, W>(
                    k,
                    c,
                    &x[start..end],
                    &y[start..end],
                    gs,
                    ls,
                )
            };
            start = end;
        }
    }
    sum
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2<N: Pow, Q: Pow, const GRAD: bool, const MARGIN: bool, const W: bool>(
    k: &Elem<N, Q>,
    col: usize,
    x: &[f32],
    y: &[f32],
    g: &mut [f32],
    l: &mut [f32],
) -> f64 {
    run_loop::<N, Q, GRAD, MARGIN, W, true>(k, col, x, y, g, l)
}

impl<N, Q> Elem<N, Q> {
    /// The per-element class weight and positive-term weight of the elements of `cw` and `pw`
    /// (equal lengths), the first of which is element `offset` of the rows (class
    /// `offset % classes`).
    ///
    /// Copies runs of the per-class vectors: a few `memcpy`s a block, against an `exp` and a `ln`
    /// an element.
    #[inline(always)]
    pub(super) fn fill_weights(&self, offset: usize, cw: &mut [f32], pw: &mut [f32]) {
        let p = &self.p;
        for (out, values) in [(cw, p.weight.as_deref()), (pw, p.pos_weight.as_deref())] {
            match values {
                None => out.fill(1.0),
                Some(&[v]) => out.fill(v),
                Some(values) => {
                    debug_assert_eq!(values.len(), self.classes);
                    let (mut c, mut i) = (offset % self.classes, 0);
                    while i < out.len() {
                        let take = (values.len() - c).min(out.len() - i);
                        out[i..i + take].copy_from_slice(&values[c..c + take]);
                        i += take;
                        c = 0;
                    }
                }
            }
        }
    }
}

#[inline(always)]
fn run_loop<
    N: Pow,
    Q: Pow,
    const GRAD: bool,
    const MARGIN: bool,
    const W: bool,
    const FMA: bool,
>(
    k: &Elem<N, Q>,
    col: usize,
    x: &[f32],
    y: &[f32],
    g: &mut [f32],
    l: &mut [f32],
) -> f64 {
    // Plain element loops (which LLVM's loop vectoriser handles) write the per-element losses to
    // a small buffer; a separate lane-wise sum reduces it without reassociating a float chain.
    let mut buf = [0.0f32; BLOCK];
    let mut cw_buf = [1.0f32; BLOCK];
    let mut pw_buf = [1.0f32; BLOCK];
    let mut y_buf = [0.0f32; BLOCK];
    let smoothing = k.p.smoothing;
    let out = !l.is_empty();
    let mut sum = 0.0f64;
    for start in (0..x.len()).step_by(BLOCK) {
        let end = (start + BLOCK).min(x.len());
        let len = end - start;
        let xs = &x[start..end];
        let ys = if smoothing != 0.0 {
            let ys = &mut y_buf[..len];
            for (s, &v) in ys.iter_mut().zip(&y[start..end]) {
                *s = v * (1.0 - smoothing) + 0.5 * smoothing;
            }
            &*ys
        } else {
            &y[start..end]
        };
        let (cws, pws) = (&mut cw_buf[..len], &mut pw_buf[..len]);
        if W {
            k.fill_weights(col + start, cws, pws);
        }
        let (cws, pws) = (&*cws, &*pws);
        let ls = &mut buf[..len];
        // Hard targets need only one of the two terms per element: half the transcendentals.
        let binary = ys
            .iter()
            .fold(true, |all, &v| all & ((v == 0.0) | (v == 1.0)));
        // Without weights the constant 1s fold away.
        let w = |i: usize| if W { (cws[i], pws[i]) } else { (1.0, 1.0) };
        match (GRAD, binary) {
            (true, true) => {
                let gs = &mut g[start..end];
                for (i, ((l, d), (&x, &y))) in ls
                    .iter_mut()
                    .zip(gs.iter_mut())
                    .zip(xs.iter().zip(ys))
                    .enumerate()
                {
                    let (cw, pw) = w(i);
                    (*l, *d) = k.elem_binary::<GRAD, MARGIN, FMA>(x, y, cw, pw);
                }
            }
            (true, false) => {
                let gs = &mut g[start..end];
                for (i, ((l, d), (&x, &y))) in ls
                    .iter_mut()
                    .zip(gs.iter_mut())
                    .zip(xs.iter().zip(ys))
                    .enumerate()
                {
                    let (cw, pw) = w(i);
                    (*l, *d) = k.elem::<GRAD, MARGIN, FMA>(x, y, cw, pw);
                }
            }
            (false, true) => {
                for (i, (l, (&x, &y))) in ls.iter_mut().zip(xs.iter().zip(ys)).enumerate() {
                    let (cw, pw) = w(i);
                    *l = k.elem_binary::<GRAD, MARGIN, FMA>(x, y, cw, pw).0;
                }
            }
            (false, false) => {
                for (i, (l, (&x, &y))) in ls.iter_mut().zip(xs.iter().zip(ys)).enumerate() {
                    let (cw, pw) = w(i);
                    *l = k.elem::<GRAD, MARGIN, FMA>(x, y, cw, pw).0;
                }
            }
        }
        if out {
            l[start..end].copy_from_slice(ls);
        }
        sum += lane_sum(ls);
    }
    sum
}

#[inline(always)]
fn lane_sum(values: &[f32]) -> f64 {
    let mut acc = [0.0f32; LANES];
    let mut blocks = values.chunks_exact(LANES);
    for block in &mut blocks {
        for (a, v) in acc.iter_mut().zip(block) {
            *a += v;
        }
    }
    let tail: f32 = blocks.remainder().iter().sum();
    acc.iter().map(|&a| a as f64).sum::<f64>() + tail as f64
}

/// A power `base^gamma` with `base` in `[0, 1]` and its derivative coefficient.
trait Pow: Copy + Send + Sync {
    /// `base^gamma`.
    fn pow(self, base: f32) -> f32;
    /// `(base^gamma, gamma * base^(gamma - 1))`, the latter `0` where `base == 0` and
    /// `gamma < 1` (where it is unbounded).
    fn pow_deriv(self, base: f32) -> (f32, f32);
    /// The exponent when it is an integer in `0..=15`, for the vector kernels.
    fn int_exp(self) -> Option<u32>;
}

/// An integer exponent in `0..=15`: four squarings, no transcendental.
#[derive(Clone, Copy)]
struct IntPow(u32);

impl Pow for IntPow {
    #[inline(always)]
    fn pow(self, base: f32) -> f32 {
        powi4(base, self.0)
    }

    #[inline(always)]
    fn pow_deriv(self, base: f32) -> (f32, f32) {
        // Branch-free, so that it stays vectorised when the exponent differs between lanes.
        let below = powi4(base, self.0.saturating_sub(1));
        let value = if self.0 == 0 { 1.0 } else { below * base };
        (value, self.0 as f32 * below)
    }

    #[inline(always)]
    fn int_exp(self) -> Option<u32> {
        (self.0 <= 15).then_some(self.0)
    }
}

#[inline(always)]
fn powi4(base: f32, n: u32) -> f32 {
    let mut r = 1.0f32;
    let mut b = base;
    for bit in 0..4 {
        if (n >> bit) & 1 == 1 {
            r *= b;
        }
        b *= b;
    }
    r
}

/// An exponent known at compile time: `K - 1` products.
#[derive(Clone, Copy)]
struct ConstPow<const K: u32>;

impl<const K: u32> Pow for ConstPow<K> {
    #[inline(always)]
    fn pow(self, base: f32) -> f32 {
        self.pow_deriv(base).0
    }

    #[inline(always)]
    fn pow_deriv(self, base: f32) -> (f32, f32) {
        if K == 0 {
            return (1.0, 0.0);
        }
        let mut below = 1.0f32;
        for _ in 1..K {
            below *= base;
        }
        (below * base, K as f32 * below)
    }

    #[inline(always)]
    fn int_exp(self) -> Option<u32> {
        (K <= 15).then_some(K)
    }
}

/// Any non-negative exponent, through `exp(gamma * ln(base))`.
#[derive(Clone, Copy)]
struct FloatPow(f32);

impl Pow for FloatPow {
    #[inline(always)]
    fn pow(self, base: f32) -> f32 {
        if self.0 == 0.0 {
            1.0
        } else {
            let v = exp::<false>(self.0 * ln::<false>(base.max(f32::MIN_POSITIVE)));
            if base > 0.0 {
                v
            } else {
                0.0
            }
        }
    }

    #[inline(always)]
    fn pow_deriv(self, base: f32) -> (f32, f32) {
        let v = self.pow(base);
        let d = if base > 0.0 { self.0 * v / base } else { 0.0 };
        (v, d)
    }

    #[inline(always)]
    fn int_exp(self) -> Option<u32> {
        None
    }
}

/// The element-wise loss and gradient, with everything uniform hoisted out.
struct Elem<N, Q> {
    p: LossParams,
    scale: f32,
    pow_neg: N,
    pow_pos: Q,
    /// Classes per row, to find each element's class.
    classes: usize,
}

impl<N: Pow, Q: Pow> Elem<N, Q> {
    /// `(l, dl/dx * scale)` for one element of any target `y` in `[0, 1]`: with `cw` the class
    /// weight and `pw` the positive term's weight,
    ///
    /// ```text
    /// l = -cw (y pw log p + (1 - y) log(1 - q)) B^g,  B = y (1 - p) + (1 - y) q,  g = y gp + (1 - y) gn
    /// ```
    ///
    /// (timm's one focusing weight of the mixed cross-entropy; `gp` is 0 past the threshold
    /// switch). For `y` of 0 or 1 the weight is the term's own power, as in
    /// [`elem_binary`](Self::elem_binary).
    #[inline(always)]
    fn elem<const GRAD: bool, const MARGIN: bool, const FMA: bool>(
        &self,
        x: f32,
        y: f32,
        cw: f32,
        pw: f32,
    ) -> (f32, f32) {
        let p = &self.p;
        // sigmoid(x) and sigmoid(-x) from one exp(-|x|), both to full relative precision.
        let (s, s_comp) = sigmoid_pair::<FMA>(x);

        // Negative term. neg_margin is 0 when off, which makes this q = s exactly.
        let active = s > p.neg_margin;
        let q = if active { s - p.neg_margin } else { 0.0 };
        let one_minus_q = if active { s_comp + p.neg_margin } else { 1.0 };
        let clamp_neg = one_minus_q >= p.eps;
        let log_neg = ln::<FMA>(one_minus_q.max(p.eps));

        // Positive term.
        let (pr, pr_comp) = if MARGIN {
            sigmoid_pair::<FMA>(x - p.pos_margin)
        } else {
            (s, s_comp)
        };
        let clamp_pos = pr >= p.eps;
        let log_pos = ln::<FMA>(pr.max(p.eps));
        let confident = MARGIN && x >= p.switch_logit;

        // The focusing weight w = B^g and dw/dB. Hard targets take their term's own power (a few
        // products for integer exponents), soft ones exp(g ln B).
        let y_neg = 1.0 - y;
        let gamma_pos = if confident { 0.0 } else { p.gamma_pos };
        let base = madd::<FMA>(y, pr_comp, y_neg * q);
        let gamma = madd::<FMA>(y, gamma_pos, y_neg * p.gamma_neg);
        let (w_soft, dw_soft) = powf_deriv::<FMA>(base, gamma);
        let (w_neg, dw_neg) = self.pow_neg.pow_deriv(q);
        let (w_pos, dw_pos) = if confident {
            (1.0, 0.0)
        } else {
            self.pow_pos.pow_deriv(pr_comp)
        };
        let (w, dw) = if y == 1.0 {
            (w_pos, dw_pos)
        } else if y == 0.0 {
            (w_neg, dw_neg)
        } else {
            (w_soft, dw_soft)
        };
        let ce = madd::<FMA>(y * pw, log_pos, y_neg * log_neg);
        let l = -(cw * ce * w);
        if !GRAD {
            return (l, 0.0);
        }

        // d log(1 - q)/dx = -[unclamped] dq/dx / (1 - q), d log p/dx = [unclamped] (1 - p),
        // dB/dx = -y p (1 - p) + (1 - y) dq/dx, with dq/dx = [active] s (1 - s).
        let dq = if active { s * s_comp } else { 0.0 };
        let d_log_neg = if clamp_neg { -dq / one_minus_q } else { 0.0 };
        let d_log_pos = if clamp_pos { pr_comp } else { 0.0 };
        let d_ce = madd::<FMA>(y * pw, d_log_pos, y_neg * d_log_neg);
        let d_base = madd::<FMA>(-y, pr * pr_comp, y_neg * dq);
        let d_w = if p.detach_focusing { 0.0 } else { dw * d_base };
        let d = -(cw * madd::<FMA>(d_ce, w, ce * d_w)) * self.scale;
        (l, d)
    }
}

/// `(base^gamma, gamma base^(gamma - 1))` for `base` in `[0, 1]` and any `gamma >= 0` varying by
/// element, through `exp(gamma ln base)`: `(1, 0)` when `gamma == 0`, `(0, 0)` where `base == 0`
/// (where the derivative is unbounded for `gamma < 1` and the callers multiply it by 0).
#[inline(always)]
fn powf_deriv<const FMA: bool>(base: f32, gamma: f32) -> (f32, f32) {
    let positive = base > 0.0;
    let safe = if positive { base } else { 1.0 };
    let v = exp::<FMA>(gamma * ln::<FMA>(safe));
    let v = if positive { v } else { 0.0 };
    let d = if positive { gamma * v / safe } else { 0.0 };
    if gamma == 0.0 {
        (1.0, 0.0)
    } else {
        (v, d)
    }
}

impl<N: Pow, Q: Pow> Elem<N, Q> {
    /// [`elem`](Self::elem) for a target of exactly 0 or 1: only that target's term is computed,
    /// with one `exp`, one `ln` and one power, the choices made by lane-wise selects.
    #[inline(always)]
    fn elem_binary<const GRAD: bool, const MARGIN: bool, const FMA: bool>(
        &self,
        x: f32,
        y: f32,
        cw: f32,
        pw: f32,
    ) -> (f32, f32) {
        let p = &self.p;
        let pos = y != 0.0;
        // The sigmoid of the positive term is taken at x - pos_margin, of the negative at x.
        let z = if MARGIN && pos { x - p.pos_margin } else { x };
        // s(|z|) = 1 / (1 + e) and, for the gradient, 1 / (s(-z) + m) = (1 + e) / num: both
        // from one division, the slowest instruction of the loop.
        let e = exp::<FMA>(-z.abs());
        let one_e = 1.0 + e;
        let num = madd::<FMA>(p.neg_margin, one_e, if z >= 0.0 { e } else { 1.0 });
        let r = 1.0 / (one_e * num);
        let big = r * num;
        let small = e * big;
        let (s, s_comp) = if z >= 0.0 { (big, small) } else { (small, big) };

        // Negative: q = max(s - m, 0), log argument 1 - q. Positive: log argument p = s.
        let active = s > p.neg_margin;
        let q = if active { s - p.neg_margin } else { 0.0 };
        let one_minus_q = if active { s_comp + p.neg_margin } else { 1.0 };
        let arg = if pos { s } else { one_minus_q };
        let unclamped = arg >= p.eps;
        let log = ln::<FMA>(arg.max(p.eps));
        let base = if pos { s_comp } else { q };
        // Both exponents are applied and one result picked: with constant exponents that is a
        // few products, cheaper than a power with an exponent varying by lane.
        let (wn, dwn) = self.pow_neg.pow_deriv(base);
        let (wp, dwp) = self.pow_pos.pow_deriv(base);
        let (w_focal, dw_focal) = if pos { (wp, dwp) } else { (wn, dwn) };
        let confident = MARGIN && pos && x >= p.switch_logit;

        // The weights of this element's one term.
        let f = cw * if pos { pw } else { 1.0 };
        if !GRAD {
            let w = if confident { 1.0 } else { w_focal };
            return (-(log * w) * f, 0.0);
        }
        let w = if confident { 1.0 } else { w_focal };
        let l = -(log * w) * f;

        // With t = ds/dz = s (1 - s):
        //   positive: d/dx = [unclamped] (1 - s) w - [focal] log * gamma (1-s)^(gamma-1) t
        //   negative: d/dx = [active] t (-[unclamped] w / (1 - q) + log * gamma q^(gamma-1))
        let t = s * s_comp;
        let d_log = if pos {
            s_comp
        } else {
            -t * (r * one_e * one_e)
        };
        let d_log = if unclamped && (pos || active) {
            d_log
        } else {
            0.0
        };
        let d_base = if pos {
            -t
        } else if active {
            t
        } else {
            0.0
        };
        let d_w = if confident || p.detach_focusing {
            0.0
        } else {
            d_base * dw_focal
        };
        let d = -(d_log * w + log * d_w) * (self.scale * f);
        (l, d)
    }
}

/// `(sigmoid(x), sigmoid(-x))`, each computed without cancellation.
#[inline(always)]
fn sigmoid_pair<const FMA: bool>(x: f32) -> (f32, f32) {
    let e = exp::<FMA>(-x.abs());
    let big = 1.0 / (1.0 + e);
    let small = e * big;
    if x >= 0.0 {
        (big, small)
    } else {
        (small, big)
    }
}

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// `2^125`: a bound of `exp(pos_margin - x)` that keeps `1 / (1 + f)` a normal float (in the
/// soft-target intrinsics loops, whose two sigmoids come from one exponential).
#[cfg(target_arch = "x86_64")]
const MAX_EXP: f32 = 4.253_529_6e37;
/// 1.5 * 2^23: adding it rounds to an integer held in the low mantissa bits.
const ROUND_MAGIC: f32 = 12_582_912.0;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Cephes `logf`'s polynomial in `f = m - 1`: its leading coefficient, then the rest by falling
/// degree (shared by the portable and the AVX2 loops).
const LN_POLY_HEAD: f32 = 7.037_683_6e-2;
const LN_POLY: [f32; 8] = [
    -1.151_461e-1,
    1.167_699_9e-1,
    -1.242_014_1e-1,
    1.424_932_3e-1,
    -1.666_805_8e-1,
    2.000_071_4e-1,
    -2.499_999_4e-1,
    3.333_333e-1,
];

/// `e^x` (Cephes `expf` polynomial, about 1 ulp), branch-free, for `x` clamped to `[-87, 88]`.
#[inline(always)]
fn exp<const FMA: bool>(x: f32) -> f32 {
    let f = madd::<FMA>;
    let x = x.clamp(-87.0, 88.0);
    let t = f(x, LOG2E, ROUND_MAGIC);
    let n = t - ROUND_MAGIC;
    let ni = (t.to_bits() as i32).wrapping_sub(ROUND_MAGIC.to_bits() as i32);
    let r = f(-n, LN2_LO, f(-n, LN2_HI, x));
    let z = r * r;
    let poly = f(1.987_569_1e-4, r, 1.398_199_9e-3);
    let poly = f(poly, r, 8.333_452e-3);
    let poly = f(poly, r, 4.166_579_6e-2);
    let poly = f(poly, r, 1.666_666_5e-1);
    let poly = f(poly, r, 0.5);
    let poly = f(poly, z, r) + 1.0;
    f32::from_bits((poly.to_bits() as i32).wrapping_add(ni << 23) as u32)
}

/// `ln(x)` (Cephes `logf` polynomial, about 1 ulp), branch-free, for normal positive `x`.
#[inline(always)]
fn ln<const FMA: bool>(x: f32) -> f32 {
    let m_ = madd::<FMA>;
    let bits = x.to_bits() as i32;
    let e = ((bits >> 23) & 0xff) - 126;
    let m = f32::from_bits(((bits & 0x007f_ffff) | 0x3f00_0000) as u32);
    let small = m < std::f32::consts::FRAC_1_SQRT_2;
    let e = if small { e - 1 } else { e } as f32;
    let f = if small { m + m - 1.0 } else { m - 1.0 };
    let z = f * f;
    let mut poly = LN_POLY_HEAD;
    for c in LN_POLY {
        poly = m_(poly, f, c);
    }
    let poly = poly * f * z;
    let y = m_(-0.5, z, m_(e, LN2_LO, poly));
    m_(e, LN2_HI, f + y)
}

/// `a * b + c`, fused (one rounding, one instruction) where the loop is compiled for a CPU with
/// FMA; elsewhere `mul_add` would be a slow library call.
#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(a: f32, b: f64) -> f64 {
        ((a as f64 - b) / b).abs()
    }

    #[test]
    fn exp_matches_std_to_a_few_ulp() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x <= 88.0 {
            let want = (x as f64).exp();
            worst = worst.max(rel(exp::<false>(x), want).max(rel(exp::<true>(x), want)));
            x += 0.0137;
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
    }

    #[test]
    fn ln_matches_std_to_a_few_ulp() {
        let mut worst = 0.0f64;
        let mut x = 1e-30f32;
        while x < 1e30 {
            let want = (x as f64).ln();
            // Relative error is meaningless where ln crosses 0; measure absolute error there.
            for got in [ln::<false>(x), ln::<true>(x)] {
                let err = if want.abs() < 1.0 {
                    (got as f64 - want).abs()
                } else {
                    rel(got, want)
                };
                worst = worst.max(err);
            }
            x *= 1.0173;
        }
        for x in [1.0f32, 0.5, 0.999_999, 1.000_001, 1e-8, f32::MIN_POSITIVE] {
            for got in [ln::<false>(x), ln::<true>(x)] {
                assert!(
                    (got as f64 - (x as f64).ln()).abs() < 1e-6 * (x as f64).ln().abs().max(1.0)
                );
            }
        }
        assert!(worst < 3e-7, "worst error {worst}");
    }

    #[test]
    fn the_environment_variable_caps_the_path() {
        let all: Vec<CpuPath> = CpuPath::ALL.iter().map(|(p, _)| *p).collect();
        // Unset or empty: the fastest, silently.
        assert_eq!(CpuPath::capped(None, &all), (*all.last().unwrap(), None));
        assert_eq!(CpuPath::capped(Some(" "), &all).1, None);
        // Each name, on a CPU that runs everything: that path, silently, in any case.
        for &(path, name) in CpuPath::ALL {
            assert_eq!(CpuPath::capped(Some(name), &all), (path, None));
            let upper = name.to_uppercase();
            assert_eq!(CpuPath::capped(Some(&upper), &all).0, path);
        }
        // An unknown name: the fastest, with a warning that names the choices.
        let (path, warning) = CpuPath::capped(Some("sse9"), &all);
        assert_eq!(path, *all.last().unwrap());
        let warning = warning.expect("a warning");
        assert!(
            warning.contains("sse9") && warning.contains("portable"),
            "{warning}"
        );
        // A path above what the CPU runs: the fastest below it, with a warning.
        let (path, warning) = CpuPath::capped(Some(all.last().unwrap().name()), &all[..1]);
        assert_eq!(path, CpuPath::Portable);
        assert_eq!(warning.is_some(), all.len() > 1);
    }

    /// `best` follows the variable: this test runs itself in a child process per path this CPU
    /// runs (and for an unknown value), the variable set, and the child checks the path it gets.
    #[test]
    fn best_follows_the_environment_variable() {
        const EXPECT: &str = "AIA_TEST_EXPECTED_CPU_PATH";
        if let Ok(want) = std::env::var(EXPECT) {
            assert_eq!(CpuPath::best().name(), want);
            // The kernel runs on it (the portable path on any CPU, the others where supported).
            let params = LossParams::from_config(&crate::loss::AsymmetricLossConfig::proposed());
            let v = asymmetric_loss_cpu(&[0.5, -2.0], &[1.0, 0.0], 2, &params, None);
            assert!(v.is_finite());
            println!("child checked {want}");
            return;
        }
        let supported = CpuPath::supported();
        let mut requests: Vec<(String, &str)> = supported
            .iter()
            .map(|p| (p.name().to_string(), p.name()))
            .collect();
        requests.push(("no-such-path".into(), supported.last().unwrap().name()));
        let exe = std::env::current_exe().unwrap();
        let name = "kernels::loss::cpu::tests::best_follows_the_environment_variable";
        for (request, want) in requests {
            let out = std::process::Command::new(&exe)
                .args([name, "--exact", "--nocapture", "--test-threads=1"])
                .env(CPU_PATH_ENV, &request)
                .env(EXPECT, want)
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains(&format!("child checked {want}")),
                "{CPU_PATH_ENV}={request}: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    #[test]
    fn integer_powers_are_exact_products() {
        for n in 0..=15u32 {
            for &b in &[0.0f32, 0.3, 0.999, 1.0] {
                let want = (b as f64).powi(n as i32);
                assert!(
                    (IntPow(n).pow(b) as f64 - want).abs() <= 1e-6 * want.max(1e-30),
                    "{b}^{n}"
                );
            }
        }
    }
}
