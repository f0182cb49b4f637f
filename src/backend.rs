//! The backend chosen by the crate's features.
//!
//! `cuda` wins over `ndarray`, which wins over the default `flex`: asking for a feature on top of
//! the default means you want that one.

/// The plain (inference) backend picked by the enabled features.
#[cfg(feature = "cuda")]
pub type DefaultBackend = burn::backend::Cuda;

/// The plain (inference) backend picked by the enabled features.
#[cfg(all(not(feature = "cuda"), feature = "wgpu"))]
pub type DefaultBackend = burn::backend::Wgpu;

/// The plain (inference) backend picked by the enabled features.
#[cfg(all(not(feature = "cuda"), not(feature = "wgpu"), feature = "ndarray"))]
pub type DefaultBackend = burn::backend::NdArray;

/// The plain (inference) backend picked by the enabled features.
#[cfg(all(
    not(feature = "cuda"),
    not(feature = "wgpu"),
    not(feature = "ndarray"),
    feature = "flex"
))]
pub type DefaultBackend = burn::backend::Flex;

/// The training backend: [`DefaultBackend`] with automatic differentiation.
#[cfg(any(
    feature = "cuda",
    feature = "wgpu",
    feature = "ndarray",
    feature = "flex"
))]
pub type TrainBackend = burn::backend::Autodiff<DefaultBackend>;

/// A short human-readable name of [`DefaultBackend`], for logs and reports.
pub const BACKEND_NAME: &str = if cfg!(feature = "cuda") {
    "cuda"
} else if cfg!(feature = "wgpu") {
    "wgpu"
} else if cfg!(feature = "ndarray") {
    "ndarray"
} else {
    "flex"
};

/// A backend whose device cannot run: no GPU, no driver, or a driver that failed to start.
#[derive(Debug, thiserror::Error)]
#[error("no usable {backend} device was found ({detail}); {hint}")]
pub struct DeviceError {
    /// The backend's short name, as [`BACKEND_NAME`] gives it.
    pub backend: &'static str,
    /// What the backend said when it failed.
    pub detail: String,
    /// What to do about it.
    pub hint: &'static str,
}

/// Checks that `device` runs tensor operations, by running a tiny one on it.
///
/// Burn's GPU backends start their device on first use, and without a GPU or driver they panic
/// there (on CUDA, with a `RecvError` from the thread that failed to start it). The crate's entry
/// points that take a device call this first, so that a program on a machine without one ends
/// with this error rather than a panic.
pub fn check_device<B: burn::tensor::backend::Backend>(
    device: &B::Device,
) -> Result<(), DeviceError> {
    probe(|| {
        burn::tensor::Tensor::<B, 1>::ones([1], device)
            .sum()
            .into_data();
    })
    .map_err(|detail| DeviceError {
        backend: BACKEND_NAME,
        detail,
        hint: device_hint(),
    })
}

/// Runs `f`, turning a panic in it, or in a thread that panics meanwhile, into the first panic's
/// message; nothing is printed.
fn probe(f: impl FnOnce()) -> Result<(), String> {
    use std::panic::{self, AssertUnwindSafe};
    use std::sync::{Arc, Mutex, PoisonError};

    // The panic hook is global: one probe at a time swaps it.
    static PROBE: Mutex<()> = Mutex::new(());
    let _one_at_a_time = PROBE.lock().unwrap_or_else(PoisonError::into_inner);
    let first_panic = Arc::new(Mutex::new(None::<String>));
    let seen = Arc::clone(&first_panic);
    let previous_hook = panic::take_hook();
    // A GPU backend starts its device on a thread of its own: when that thread panics, the
    // caller's panic is only a `RecvError`, and the first message is the one that says why.
    panic::set_hook(Box::new(move |info| {
        let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.get_or_insert_with(|| panic_message(info.payload()));
    }));
    let outcome = panic::catch_unwind(AssertUnwindSafe(f));
    panic::set_hook(previous_hook);
    let first = first_panic
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    outcome.map_err(|payload| first.unwrap_or_else(|| panic_message(payload.as_ref())))
}

/// The text of a panic's payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "the backend panicked".to_string())
}

/// What a user without the enabled backend's device can do.
fn device_hint() -> &'static str {
    if cfg!(feature = "cuda") {
        "this build uses NVIDIA's CUDA (`--features cuda`): it needs an NVIDIA GPU and its driver \
         (libcuda); build without `--features cuda` to run on the CPU"
    } else if cfg!(feature = "wgpu") {
        "this build uses wgpu (`--features wgpu`): it needs a GPU with a Vulkan, Metal or DirectX \
         12 driver (on Linux without a GPU, Mesa's lavapipe); build without `--features wgpu` to \
         run on the CPU"
    } else {
        "the CPU backend failed to start"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "flex")]
    #[test]
    fn the_cpu_device_passes_the_check() {
        check_device::<burn::backend::Flex>(&Default::default()).unwrap();
    }

    /// As a GPU backend fails without a device: its worker thread panics with the reason, and
    /// the caller panics on the closed channel.
    #[test]
    fn a_device_that_fails_on_its_own_thread_gives_the_worker_reason() {
        let got = probe(|| {
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            let worker = std::thread::spawn(move || {
                let _tx = tx;
                panic!("Unable to dynamically load the \"cuda\" shared library");
            });
            let _ = worker.join();
            rx.recv().unwrap();
        });
        assert_eq!(
            got.unwrap_err(),
            "Unable to dynamically load the \"cuda\" shared library"
        );
        // The hook is back: a probe that does not panic is fine, and one that does reports.
        assert_eq!(probe(|| ()), Ok(()));
        assert_eq!(probe(|| panic!("{}", 7)).unwrap_err(), "7");
    }
}
