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
    use std::panic::{self, AssertUnwindSafe};
    use std::sync::{Arc, Mutex, PoisonError};

    // The panic hook is global: one probe at a time swaps it.
    static PROBE: Mutex<()> = Mutex::new(());
    let _one_at_a_time = PROBE.lock().unwrap_or_else(PoisonError::into_inner);
    let first_panic = Arc::new(Mutex::new(None::<String>));
    let seen = Arc::clone(&first_panic);
    let previous_hook = panic::take_hook();
    // Every thread that panics during the probe (the device's own worker included) is recorded
    // instead of printed; the first message says why.
    panic::set_hook(Box::new(move |info| {
        let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.get_or_insert_with(|| panic_message(info.payload()));
    }));
    let probe = panic::catch_unwind(AssertUnwindSafe(|| {
        burn::tensor::Tensor::<B, 1>::ones([1], device)
            .sum()
            .into_data()
    }));
    panic::set_hook(previous_hook);
    let detail = first_panic
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    match probe {
        Ok(_) => Ok(()),
        Err(payload) => Err(DeviceError {
            backend: BACKEND_NAME,
            detail: detail.unwrap_or_else(|| panic_message(payload.as_ref())),
            hint: device_hint(),
        }),
    }
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
