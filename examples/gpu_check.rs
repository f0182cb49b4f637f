//! Every check the crate needs on an NVIDIA GPU, in one binary that needs no Rust toolchain
//! where it runs:
//!
//! 1. the fused loss kernel on the raw (unfused) CUDA backend against the CPU kernel on Flex:
//!    every preset, loss value and both gradients under autodiff;
//! 2. TResNet on the feature-selected GPU backend against Flex, on the same weights: eval-mode
//!    logits, and train-mode logits and parameter gradients;
//! 3. the loss, fused against composed, forward and backward, timed on the GPU (on the raw
//!    backend, where the fused kernel runs, and on the fusion backend, where Burn fuses the
//!    composed loss);
//! 4. TResNet-M throughput, inference and training step (forward, backward, Adam).
//!
//! ```sh
//! scripts/gpu_check.sh build   # where Rust is: builds, strips and copies the binary to gpu/
//! scripts/gpu_check.sh run     # on the GPU machine: this binary, then PyTorch, side by side
//! cargo run --release --features cuda --example gpu_check -- --quick --json gpu/aia.json
//! ```
//!
//! Everything is printed even when a check fails; the exit status is then 1 (2 without a usable
//! CUDA device).

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use aia::backend::{check_device, DefaultBackend, TrainBackend, BACKEND_NAME};
use aia::loss::{AsymmetricLoss, AsymmetricLossConfig, LossPreset, Reduction};
use aia::model::{TResNet, TResNetConfig};
use burn::backend::cuda::CudaDevice;
use burn::backend::flex::FlexDevice;
use burn::backend::{Autodiff, Flex};
use burn::module::{Module, ModuleMapper, Param};
use burn::nn::loss::BinaryCrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Distribution, Int, Tensor};
use clap::{Parser, ValueEnum};
use serde::Serialize;

/// The CUDA backend without Burn's fusion: the fused loss kernel is written for it, so this is
/// where it is checked on its own.
type RawCuda = burn_cubecl::CubeBackend<cubecl::cuda::CudaRuntime, f32, i32, u8>;
/// What `--features cuda` trains on (Burn's fusion backend over CUDA).
type Gpu = DefaultBackend;
/// [`Gpu`] with autodiff.
type GpuTrain = TrainBackend;
/// The CPU reference.
type Cpu = Flex;
/// [`Cpu`] with autodiff.
type CpuTrain = Autodiff<Flex>;

/// Loss value and gradients, GPU against CPU: the two run the same formulas element by element
/// in f32, so anything beyond rounding (and a different summation order) is a bug.
const LOSS_TOLERANCE: f64 = 1e-4;
/// Model logits, GPU against CPU: dozens of layers of f32 convolutions summed in other orders
/// (and possibly on TF32 tensor cores) drift by far more than one kernel, but a real bug shows
/// as a difference of order one.
const LOGITS_TOLERANCE: f64 = 1e-2;
/// Parameter gradients, GPU against CPU: the backward pass goes through train-mode BatchNorm on
/// a batch of two, which amplifies rounding further.
const GRAD_TOLERANCE: f64 = 5e-2;

/// The loss shapes of the CPU benchmark: the paper's Corel-5k batch, ImageNet, Open Images.
const LOSS_SHAPES: [(usize, usize); 3] = [(32, 260), (256, 1000), (1024, 9605)];

/// One part of the check, for `--only`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Section {
    /// The fused loss kernel on raw CUDA against the CPU kernel.
    LossCheck,
    /// TResNet on the GPU backend against Flex.
    ModelCheck,
    /// Fused against composed loss, timed on the GPU.
    LossBench,
    /// TResNet-M images per second, inference and training step.
    Throughput,
}

/// Checks and times the crate on a CUDA GPU against Flex on the CPU.
#[derive(Parser, Debug)]
struct Args {
    /// Fewer iterations everywhere (a smoke run of about a minute).
    #[arg(long)]
    quick: bool,
    /// Also write every figure to this JSON file (rewritten after each figure, so that a run
    /// cut short still leaves what it measured).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Sections to run, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "loss-check,model-check,loss-bench,throughput"
    )]
    only: Vec<Section>,
    /// Batch size of the throughput runs.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Image sides of the throughput runs, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "224,448")]
    sizes: Vec<usize>,
    /// Timed iterations per throughput figure (default 10, 3 with `--quick`).
    #[arg(long)]
    iters: Option<usize>,
}

/// One comparison against the CPU reference.
#[derive(Serialize, Debug)]
struct Check {
    name: String,
    max_rel_diff: f64,
    tolerance: f64,
    pass: bool,
}

/// Fused and composed loss (forward and backward, device synchronised), median milliseconds.
#[derive(Serialize, Debug)]
struct LossTiming {
    backend: String,
    rows: usize,
    cols: usize,
    fused_ms: f64,
    composed_ms: f64,
}

/// Images per second of TResNet-M in one mode.
#[derive(Serialize, Debug)]
struct Throughput {
    /// `inference` or `train`.
    mode: String,
    size: usize,
    batch: usize,
    iters: usize,
    ms_per_batch: f64,
    img_per_s: f64,
}

/// Everything measured, as written to `--json`.
#[derive(Serialize, Debug, Default)]
struct Report {
    tool: String,
    backend: String,
    quick: bool,
    checks: Vec<Check>,
    loss_bench: Vec<LossTiming>,
    throughput: Vec<Throughput>,
    /// Sections that stopped on a panic, with its message.
    errors: Vec<String>,
    /// Where [`save`](Self::save) writes.
    #[serde(skip)]
    json: Option<PathBuf>,
    /// When the run started.
    #[serde(skip)]
    started: Option<Instant>,
    /// Seconds since the start, when the report was last written.
    elapsed_s: f64,
}

/// Recording, printing and judging the comparisons.
impl Report {
    fn check(&mut self, name: String, max_rel_diff: f64, tolerance: f64) {
        // A NaN difference must fail, hence no `<=` on a possibly-NaN left side alone.
        let pass = max_rel_diff.is_finite() && max_rel_diff <= tolerance;
        println!(
            "  {name:<52} {max_rel_diff:>10.2e}  (tol {tolerance:.0e})  {}",
            if pass { "ok" } else { "FAIL" }
        );
        self.checks.push(Check {
            name,
            max_rel_diff,
            tolerance,
            pass,
        });
    }

    fn failed(&self) -> bool {
        !self.errors.is_empty() || self.checks.iter().any(|c| !c.pass)
    }
}

/// One section's body, writing into the report.
type SectionRun<'a> = &'a dyn Fn(&mut Report);

/// Checks the device, runs the sections asked for, and sums up.
fn main() -> ExitCode {
    let args = Args::parse();
    let started = Instant::now();
    let mut report = Report {
        tool: "aia".into(),
        backend: BACKEND_NAME.into(),
        quick: args.quick,
        json: args.json.clone(),
        started: Some(started),
        ..Default::default()
    };
    let device: CudaDevice = Default::default();

    if let Err(e) = check_device::<RawCuda>(&device) {
        eprintln!("gpu_check: {e}");
        eprintln!("gpu_check: nothing was checked; run this on a machine with an NVIDIA GPU");
        report.errors.push(e.to_string());
        report.save();
        return ExitCode::from(2);
    }
    println!(
        "aia gpu_check on {BACKEND_NAME} (model and benches), raw CubeBackend<CudaRuntime> (loss kernel){}",
        if args.quick { ", quick" } else { "" }
    );

    let sections: [(Section, &str, SectionRun); 4] = [
        (
            Section::LossCheck,
            "fused loss kernel: CUDA against the CPU kernel",
            &|r| loss_check(r, &device),
        ),
        (
            Section::ModelCheck,
            "TResNet: GPU backend against Flex, same weights",
            &|r| model_check(r, &device),
        ),
        (
            Section::LossBench,
            "loss forward+backward on the GPU, median ms",
            &|r| loss_bench(r, &device, args.quick),
        ),
        (Section::Throughput, "TResNet-M throughput", &|r| {
            throughput(r, &device, &args)
        }),
    ];
    for (section, title, run) in sections {
        if !args.only.contains(&section) {
            continue;
        }
        println!("\n== {title}");
        let t = Instant::now();
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| run(&mut report)));
        if let Err(payload) = outcome {
            let message = panic_message(payload.as_ref());
            println!("  stopped by a panic: {message}");
            report.errors.push(format!("{section:?}: {message}"));
        }
        println!("  ({:.1} s)", t.elapsed().as_secs_f64());
        report.save();
    }

    let failed: Vec<&Check> = report.checks.iter().filter(|c| !c.pass).collect();
    println!(
        "\n{} checks, {} failed, {} sections stopped by a panic; {:.0} s in all",
        report.checks.len(),
        failed.len(),
        report.errors.len(),
        started.elapsed().as_secs_f64()
    );
    for c in &failed {
        println!(
            "  FAILED {}: {:.2e} > {:.0e}",
            c.name, c.max_rel_diff, c.tolerance
        );
    }
    if report.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The text of a panic's payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".into()
    }
}

/// Writing the report out.
impl Report {
    /// Writes the report to `--json`, if given; called after every figure, so that a run stopped
    /// by a timeout still leaves everything it measured.
    fn save(&mut self) {
        let Some(path) = self.json.clone() else {
            return;
        };
        self.elapsed_s = self.started.map_or(0.0, |t| t.elapsed().as_secs_f64());
        let written = serde_json::to_string_pretty(self)
            .map_err(|e| e.to_string())
            .and_then(|text| {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
                }
                std::fs::write(&path, text).map_err(|e| e.to_string())
            });
        if let Err(e) = written {
            eprintln!("gpu_check: cannot write {}: {e}", path.display());
        }
    }
}

/// The tensor's values as f32, read back to the host.
fn to_vec<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("f32 data")
}

/// `max |got - want| / max |want|`: the difference on the scale of the whole tensor, so that
/// elements near zero, where any two summation orders disagree relatively, do not dominate.
/// Infinite when the lengths differ (a missing gradient is empty) or anything is NaN.
fn rel_diff(got: &[f32], want: &[f32]) -> f64 {
    if got.len() != want.len() || want.is_empty() {
        return f64::INFINITY;
    }
    let scale = want.iter().fold(0.0f64, |m, &w| m.max((w as f64).abs()));
    let diff = got.iter().zip(want).fold(0.0f64, |m, (&g, &w)| {
        let d = (g as f64 - w as f64).abs();
        if d.is_nan() {
            f64::INFINITY
        } else {
            m.max(d)
        }
    });
    if diff == 0.0 {
        0.0
    } else {
        diff / scale.max(f64::MIN_POSITIVE)
    }
}

/// Waits for everything queued on the device, so that a clock stopped after it is honest.
fn sync<B: Backend>(device: &B::Device) {
    B::sync(device).expect("device synchronisation");
}

// ---------------------------------------------------------------------------------------------
// 1. The fused loss kernel.

/// Loss value and gradients with respect to logits and targets, under autodiff.
fn loss_and_grads<B: AutodiffBackend>(
    loss: &AsymmetricLoss,
    x: Tensor<B::InnerBackend, 2>,
    y: Tensor<B::InnerBackend, 2>,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let x = Tensor::<B, 2>::from_inner(x).require_grad();
    let y = Tensor::<B, 2>::from_inner(y).require_grad();
    let l = loss.forward(x.clone(), y.clone());
    let grads = l.backward();
    let gx = x.grad(&grads).map(to_vec).unwrap_or_default();
    let gy = y.grad(&grads).map(to_vec).unwrap_or_default();
    (to_vec(l), gx, gy)
}

/// Section 1: the fused loss under autodiff on raw CUDA against the same on Flex.
fn loss_check(report: &mut Report, device: &CudaDevice) {
    let mut configs: Vec<(&str, AsymmetricLossConfig)> = LossPreset::ALL
        .iter()
        .map(|p| (p.name(), p.config()))
        .collect();
    // Non-integer exponents take the kernel's general `powf` path.
    configs.push((
        "fractional",
        AsymmetricLossConfig::new()
            .with_gamma_neg(2.5)
            .with_gamma_pos(1.5)
            .with_reduction(Reduction::Sum),
    ));
    let cpu = Default::default();
    Cpu::seed(&cpu, 7);
    // Hard and soft targets; logits far into both tails (clamped logarithms, vanishing powers)
    // and the benchmark's spread, over a size that spans many thread blocks.
    let inputs = [
        (7, 33, Distribution::Uniform(-30.0, 30.0), false),
        (300, 130, Distribution::Uniform(-30.0, 30.0), true),
        (256, 1000, Distribution::Normal(0.0, 3.0), false),
    ];
    for (rows, cols, logits, soft) in inputs {
        let x = Tensor::<Cpu, 2>::random([rows, cols], logits, &cpu);
        let targets = if soft {
            Distribution::Uniform(0.0, 1.0)
        } else {
            Distribution::Bernoulli(0.3)
        };
        let y = Tensor::<Cpu, 2>::random([rows, cols], targets, &cpu);
        let xg = Tensor::<RawCuda, 2>::from_data(x.to_data(), device);
        let yg = Tensor::<RawCuda, 2>::from_data(y.to_data(), device);
        for (name, config) in &configs {
            let loss = config.init();
            let want = loss_and_grads::<Autodiff<Cpu>>(&loss, x.clone(), y.clone());
            let got = loss_and_grads::<Autodiff<RawCuda>>(&loss, xg.clone(), yg.clone());
            let what = format!(
                "loss {name} {rows}x{cols}{}",
                if soft { " soft" } else { "" }
            );
            report.check(
                format!("{what} value"),
                rel_diff(&got.0, &want.0),
                LOSS_TOLERANCE,
            );
            report.check(
                format!("{what} d/dlogits"),
                rel_diff(&got.1, &want.1),
                LOSS_TOLERANCE,
            );
            report.check(
                format!("{what} d/dtargets"),
                rel_diff(&got.2, &want.2),
                LOSS_TOLERANCE,
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. TResNet, GPU against CPU.

/// Gives every BatchNorm non-trivial parameters and statistics: timm's initialisation zeroes
/// each block's last BatchNorm scale, which would cut the residual branches out of the forward
/// pass and leave most convolutions without a gradient, checking nothing.
struct Perturb<'a> {
    device: &'a FlexDevice,
    path: Vec<String>,
}

/// Draws new scales, shifts and statistics by field name; leaves everything else.
impl ModuleMapper<Cpu> for Perturb<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<Cpu, D>>) -> Param<Tensor<Cpu, D>> {
        let (lo, hi) = match self.path.last().map(String::as_str) {
            Some("gamma") => (0.5, 1.0),
            Some("beta" | "running_mean") => (-0.1, 0.1),
            Some("running_var") => (0.5, 1.5),
            _ => return param,
        };
        let device = self.device;
        param.map(|t| Tensor::random(t.shape(), Distribution::Uniform(lo, hi), device))
    }
}

/// Section 2: TResNet, small and M, on the GPU backend against Flex from one weights file.
fn model_check(report: &mut Report, device: &CudaDevice) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let cases = [
        (
            "small [1,1,1,1] x0.5",
            TResNetConfig::new([1, 1, 1, 1])
                .with_width(0.5)
                .with_num_classes(260),
            4,
            64,
        ),
        ("TResNet-M", TResNetConfig::m(), 2, 224),
    ];
    for (name, config, batch, side) in cases {
        // Dropout stays at 0 (the default): it would draw different masks on the two sides.
        let weights = dir.path().join("weights.safetensors");
        let cpu = Default::default();
        Cpu::seed(&cpu, 11);
        let model = config.init::<Cpu>(&cpu).map(&mut Perturb {
            device: &cpu,
            path: Vec::new(),
        });
        model.save_safetensors(&weights).expect("weights saved");
        let images = Tensor::<Cpu, 4>::random([batch, 3, side, side], Distribution::Default, &cpu);
        let classes = config.num_classes;
        // A fixed random weighting of the logits as the loss: every logit gets a gradient.
        let weighting = Tensor::<Cpu, 2>::random([batch, classes], Distribution::Default, &cpu);
        let what = format!("{name} {side}px b{batch}");

        let want = model.forward(images.clone());
        let gpu_model = load::<Gpu>(&config, &weights, device);
        let got = gpu_model.forward(Tensor::from_data(images.to_data(), device));
        report.check(
            format!("{what} eval logits"),
            rel_diff(&to_vec(got), &to_vec(want)),
            LOGITS_TOLERANCE,
        );
        drop(gpu_model);

        let want = train_pass::<CpuTrain>(&config, &weights, &images, &weighting, &cpu);
        let got = train_pass::<GpuTrain>(&config, &weights, &images, &weighting, device);
        report.check(
            format!("{what} train logits"),
            rel_diff(&got.logits, &want.logits),
            LOGITS_TOLERANCE,
        );
        for ((param, g), (_, w)) in got.grads.iter().zip(&want.grads) {
            report.check(
                format!("{what} grad {param}"),
                rel_diff(g, w),
                GRAD_TOLERANCE,
            );
        }
    }
}

/// A model of `config` on `B` with the weights of `weights`.
fn load<B: Backend>(config: &TResNetConfig, weights: &Path, device: &B::Device) -> TResNet<B> {
    config
        .init::<B>(device)
        .load_timm(weights)
        .expect("the weights just saved load back")
}

/// Train-mode logits and a few parameter gradients, from the stem to the classifier.
struct TrainPass {
    logits: Vec<f32>,
    grads: Vec<(&'static str, Vec<f32>)>,
}

/// One train-mode forward and backward pass of the model in `weights` on `B`.
fn train_pass<B: AutodiffBackend>(
    config: &TResNetConfig,
    weights: &Path,
    images: &Tensor<Cpu, 4>,
    weighting: &Tensor<Cpu, 2>,
    device: &B::Device,
) -> TrainPass {
    let model = load::<B>(config, weights, device);
    let logits = model.forward(Tensor::from_data(images.to_data(), device));
    let loss = (logits.clone() * Tensor::from_data(weighting.to_data(), device)).sum();
    let grads = loss.backward();
    let grad = |p: &dyn Fn() -> Option<Vec<f32>>| p().unwrap_or_default();
    let last3 = model.layer3.last().expect("stage 3 has blocks");
    let last4 = model.layer4.last().expect("stage 4 has blocks");
    let grads = vec![
        (
            "conv1.conv.weight",
            grad(&|| model.conv1.conv.weight.val().grad(&grads).map(to_vec)),
        ),
        (
            "layer1.0.conv1.conv.weight",
            grad(&|| {
                model.layer1[0]
                    .conv1
                    .conv
                    .weight
                    .val()
                    .grad(&grads)
                    .map(to_vec)
            }),
        ),
        (
            "layer2.0.conv2.bn.gamma",
            grad(&|| {
                model.layer2[0]
                    .conv2
                    .bn
                    .gamma
                    .val()
                    .grad(&grads)
                    .map(to_vec)
            }),
        ),
        (
            "layer3.-1.conv2.conv.weight",
            grad(&|| last3.conv2.conv.weight.val().grad(&grads).map(to_vec)),
        ),
        (
            "layer4.-1.conv3.bn.gamma",
            grad(&|| last4.conv3.bn.gamma.val().grad(&grads).map(to_vec)),
        ),
        (
            "head.fc.weight",
            grad(&|| {
                model
                    .head
                    .linear()
                    .expect("linear head")
                    .fc
                    .weight
                    .val()
                    .grad(&grads)
                    .map(to_vec)
            }),
        ),
    ];
    TrainPass {
        logits: to_vec(logits),
        grads,
    }
}

// ---------------------------------------------------------------------------------------------
// 3. The loss, timed.

/// Median milliseconds of `f` over `iters` runs after `warmup` runs; `f` must synchronise.
fn median_ms(warmup: usize, iters: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        f();
    }
    let mut times: Vec<f64> = (0..iters)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Section 3: the loss timed on both CUDA backends.
fn loss_bench(report: &mut Report, device: &CudaDevice, quick: bool) {
    let (warmup, iters) = if quick { (3, 10) } else { (10, 50) };
    println!(
        "  {:<12} {:<10} {:>10} {:>10} {:>9}",
        "backend", "shape", "fused", "composed", "speed-up"
    );
    bench_loss_on::<Autodiff<RawCuda>>(report, "cuda raw", device, warmup, iters);
    // The crate's kernels are chosen by backend type and Burn's fusion backend has none, so
    // there `forward` is the composed loss, fused by Burn: what training with `--features cuda`
    // runs today.
    bench_loss_on::<GpuTrain>(report, "cuda fusion", device, warmup, iters);
}

/// Fused and composed loss, forward and backward, at each of [`LOSS_SHAPES`] on `B`.
fn bench_loss_on<B: AutodiffBackend>(
    report: &mut Report,
    name: &str,
    device: &B::Device,
    warmup: usize,
    iters: usize,
) {
    let loss = AsymmetricLossConfig::proposed().init();
    B::seed(device, 3);
    for (rows, cols) in LOSS_SHAPES {
        let x = Tensor::<B::InnerBackend, 2>::random(
            [rows, cols],
            Distribution::Normal(0.0, 3.0),
            device,
        );
        let y = Tensor::<B::InnerBackend, 2>::random(
            [rows, cols],
            Distribution::Bernoulli(0.05),
            device,
        );
        let time = |fused: bool| {
            median_ms(warmup, iters, || {
                let xa = Tensor::<B, 2>::from_inner(x.clone()).require_grad();
                let ya = Tensor::<B, 2>::from_inner(y.clone());
                let l = if fused {
                    loss.forward(xa.clone(), ya)
                } else {
                    loss.forward_composed(xa.clone(), ya)
                };
                // Held across the synchronisation so that a lazy backend cannot skip the work.
                let grad = xa.grad(&l.backward());
                sync::<B>(device);
                drop(grad);
            })
        };
        let fused_ms = time(true);
        let composed_ms = time(false);
        println!(
            "  {name:<12} {:<10} {fused_ms:>7.3} ms {composed_ms:>7.3} ms {:>8.1}x",
            format!("{rows}x{cols}"),
            composed_ms / fused_ms
        );
        report.loss_bench.push(LossTiming {
            backend: name.to_string(),
            rows,
            cols,
            fused_ms,
            composed_ms,
        });
        report.save();
    }
}

// ---------------------------------------------------------------------------------------------
// 4. TResNet-M throughput.

/// Images per second over `iters` back-to-back batches after `warmup` synchronised ones (which
/// also pay for kernel compilation and autotuning), the device synchronised before the clock
/// stops.
fn images_per_s(
    batch: usize,
    warmup: usize,
    iters: usize,
    mut step: impl FnMut(),
    sync: impl Fn(),
) -> (f64, f64) {
    for _ in 0..warmup {
        step();
        sync();
    }
    let t = Instant::now();
    for _ in 0..iters {
        step();
    }
    sync();
    let secs = t.elapsed().as_secs_f64();
    ((batch * iters) as f64 / secs, secs / iters as f64 * 1e3)
}

/// Section 4: TResNet-M inference and training throughput at each `--sizes`.
fn throughput(report: &mut Report, device: &CudaDevice, args: &Args) {
    let warmup = if args.quick { 2 } else { 3 };
    let iters = args.iters.unwrap_or(if args.quick { 3 } else { 10 });
    let batch = args.batch;
    for &size in &args.sizes {
        for mode in ["inference", "train"] {
            let (img_per_s, ms_per_batch) = if mode == "inference" {
                let model = TResNetConfig::m().init::<Gpu>(device);
                let x =
                    Tensor::<Gpu, 4>::random([batch, 3, size, size], Distribution::Default, device);
                let mut out = Vec::with_capacity(iters);
                images_per_s(
                    batch,
                    warmup,
                    iters,
                    // Kept until the clock stops so that no result is dropped before it exists.
                    || out.push(model.forward(x.clone())),
                    || sync::<Gpu>(device),
                )
            } else {
                train_throughput(device, batch, size, warmup, iters)
            };
            println!(
                "  {mode:<9} {size}x{size} batch {batch}: {img_per_s:>8.1} img/s ({ms_per_batch:.1} ms/batch)"
            );
            report.throughput.push(Throughput {
                mode: mode.into(),
                size,
                batch,
                iters,
                ms_per_batch,
                img_per_s,
            });
            report.save();
        }
    }
}

/// One training step as `benches/model.rs` times it on the CPU: forward, BCE with logits on
/// random multi-hot targets over 1000 labels, backward, Adam.
fn train_throughput(
    device: &CudaDevice,
    batch: usize,
    size: usize,
    warmup: usize,
    iters: usize,
) -> (f64, f64) {
    let mut model = Some(TResNetConfig::m().init::<GpuTrain>(device));
    let mut optim = AdamConfig::new().init();
    let loss_fn = BinaryCrossEntropyLossConfig::new()
        .with_logits(true)
        .init(device);
    let x = Tensor::<GpuTrain, 4>::random([batch, 3, size, size], Distribution::Default, device);
    let targets: Tensor<GpuTrain, 2, Int> =
        Tensor::<GpuTrain, 2>::random([batch, 1000], Distribution::Default, device)
            .lower_elem(0.01)
            .int();
    images_per_s(
        batch,
        warmup,
        iters,
        || {
            let m = model.take().expect("the model is put back after each step");
            let loss = loss_fn.forward(m.forward(x.clone()), targets.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &m);
            model = Some(optim.step(1e-4, m, grads));
        },
        || sync::<GpuTrain>(device),
    )
}
