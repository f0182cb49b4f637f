//! The quickstart's job end to end on a GPU backend as Burn's default features build it (fusion
//! and autotune on), checked step by step against the same run on Flex.
//!
//! ```sh
//! cargo run --release --features wgpu               # also on Mesa's software Vulkan driver (lavapipe)
//! cargo run --release --features cuda
//! cargo run --release --features cuda,wgpu -- cuda  # both built in: name the one to run
//! ```
//!
//! Exits 1 when the two runs disagree by more than floating-point reordering explains, or when
//! the GPU cannot run, with the reason on one line.

use std::process::ExitCode;

fn main() -> ExitCode {
    let backend = std::env::args().nth(1);
    aia::error::exit_status(check::run_named(backend.as_deref()))
}

mod check {
    use std::time::Instant;

    use aia_downstream::{compare, experiment, run as run_on, with_shared_weights, Error};
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::backend::Backend;

    /// The GPU backends this build holds, by the name that picks them.
    const BUILT: &[&str] = &[
        #[cfg(feature = "wgpu")]
        "wgpu",
        #[cfg(feature = "cuda")]
        "cuda",
    ];

    /// Runs the comparison on the backend called `name`; without one, on the only backend built.
    pub fn run_named(name: Option<&str>) -> Result<(), Error> {
        let name = match (name, BUILT) {
            (Some(name), _) => name,
            (None, [only]) => *only,
            (None, []) => {
                return Err(
                    "no GPU backend to compare Flex with: build with --features wgpu \
                            or --features cuda"
                        .into(),
                )
            }
            (None, _) => {
                return Err(format!(
                    "this build holds several GPU backends ({}): name the one to run",
                    BUILT.join(", ")
                )
                .into())
            }
        };
        match name {
            #[cfg(feature = "wgpu")]
            "wgpu" => run::<burn::backend::Wgpu>(),
            #[cfg(feature = "cuda")]
            "cuda" => run::<burn::backend::Cuda>(),
            other => Err(format!(
                "unknown GPU backend `{other}`: this build holds {}",
                if BUILT.is_empty() {
                    "none".to_string()
                } else {
                    BUILT.join(", ")
                }
            )
            .into()),
        }
    }

    // The two runs do the same arithmetic in float32 in different orders (GPU reductions and
    // convolutions against Flex's GEMM kernels), from the same weights on the same batches.
    // Measured on lavapipe, unfused and fused, over five sets of initial weights: step losses
    // within 2.4e-7 relative; logits (of magnitude up to about 1) within 3e-7 to 1.7e-5,
    // depending on the weights; scores within 4e-6; labels identical. The bounds leave more
    // than 50x of room for other drivers and GPUs, and still sit far below what a real fault
    // looks like: two batches' losses differ by a few percent (a different batch order), and
    // wrong or missing weights move the logits by their own magnitude.

    /// Per-step losses, relative. Each is a mean of 16 x 42 terms whose float32 sum the GPU
    /// reorders (a few 1e-7), and after the first step it also carries the weights' drift.
    const STEP_LOSS_RTOL: f64 = 1e-4;
    /// Final logits, absolute, for logits of order 1. Adam's first steps move a weight by about
    /// the learning rate whatever its gradient's size, so where a gradient is near zero its
    /// rounding picks the direction; that is the likely source of the 1e-5 seen above, since
    /// the first step's loss, a forward pass from identical weights, agrees to 2e-7.
    const LOGIT_ATOL: f64 = 1e-3;
    /// Sigmoid scores of the same model: the sigmoid's slope is at most 1/4.
    const SCORE_ATOL: f64 = LOGIT_ATOL / 4.0;

    /// `value <= bound`, false for NaN.
    fn within(value: f64, bound: f64) -> bool {
        value <= bound
    }

    // Unused only in a build without a GPU backend, which has nothing to run.
    #[cfg_attr(not(any(feature = "cuda", feature = "wgpu")), allow(dead_code))]
    fn run<Gpu: Backend>() -> Result<(), Error> {
        let started = Instant::now();
        let root = tempfile::tempdir()?;
        let config = experiment(&root.path().join("datasets"));
        let config = with_shared_weights(&config, &root.path().join("initial.safetensors"))?;
        let gpu_name = std::any::type_name::<Gpu>();
        println!(
            "backends: {gpu_name} against {}",
            std::any::type_name::<Flex>()
        );

        // The GPU first: without a usable device, the crate's entry point says so at once.
        let gpu = run_on::<Autodiff<Gpu>>(&config, &root.path().join("gpu"), &Default::default())?;
        let flex =
            run_on::<Autodiff<Flex>>(&config, &root.path().join("flex"), &Default::default())?;
        for (name, outcome) in [("flex", &flex), ("gpu", &gpu)] {
            println!(
                "{name:>4}: train {:.1} s, evaluate + annotate {:.1} s, step losses {:?}",
                outcome.train_seconds,
                outcome.evaluate_seconds,
                outcome
                    .step_losses
                    .iter()
                    .map(|l| format!("{l:.6}"))
                    .collect::<Vec<_>>()
            );
        }

        let d = compare(&gpu, &flex);
        println!(
            "max relative step-loss diff {:.2e} (tolerance {STEP_LOSS_RTOL:.0e}), \
             max abs logit diff {:.2e} on logits up to {:.2} (tolerance {LOGIT_ATOL:.0e}), \
             max abs score diff {:.2e} (tolerance {SCORE_ATOL:.1e}), \
             max abs exact-MCC threshold diff {:.2e}, \
             test images annotated differently {} of {} (largest margin of a flipped label {:.2e}), \
             |mAP diff| {:.2e}",
            d.step_loss_rel,
            d.logit_abs,
            d.logit_scale,
            d.score_abs,
            d.threshold_abs,
            d.annotations_differing,
            gpu.annotations.len(),
            d.flipped_label_margin,
            d.map_abs,
        );
        let mut failures = Vec::new();
        if !within(d.step_loss_rel, STEP_LOSS_RTOL) {
            failures.push("step losses");
        }
        if !within(d.logit_abs, LOGIT_ATOL) {
            failures.push("final logits");
        }
        if !within(d.score_abs, SCORE_ATOL) {
            failures.push("annotation scores");
        }
        if gpu.annotations.len() != flex.annotations.len() {
            failures.push("number of annotated images");
        }
        // A label may flip only where its score sits on its threshold within the differences.
        if !within(d.flipped_label_margin, SCORE_ATOL + d.threshold_abs) {
            failures.push("annotations");
        }
        println!("{:.0} s in all", started.elapsed().as_secs_f64());
        if failures.is_empty() {
            println!("{gpu_name} agrees with Flex");
            Ok(())
        } else {
            Err(format!("{gpu_name} disagrees with Flex on: {}", failures.join(", ")).into())
        }
    }
}
