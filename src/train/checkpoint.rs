//! The files of a run: checkpoints, the best model, the results and the curves.
//!
//! ```text
//! OUT/
//!   checkpoints/epoch-0007/   the latest checkpoint, one folder renamed into place when complete
//!     model.mpk               the model (burn's named MessagePack, full precision)
//!     optimizer.mpk           Adam's moments
//!     state.json              epoch, schedule position, results so far
//!   best.mpk                  the model of the epoch with the best per-class F1
//!   results.json              configuration and per-epoch measurements
//!   curves.svg                training curves
//!   .lock                     the trainer's claim on the folder (see RunLock)
//! ```

use std::path::{Path, PathBuf};

use burn::module::{Module, Param, ParamId};
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Record, Recorder};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor};
use serde::{Deserialize, Serialize};

use super::{RunResults, TrainError};
use crate::fs::{read as read_file, write_atomic, write_json, FileError};

/// The model file in a checkpoint folder.
pub const MODEL_FILE: &str = "model.mpk";
/// The optimizer file in a checkpoint folder.
pub const OPTIMIZER_FILE: &str = "optimizer.mpk";
/// The moving average of the weights in a checkpoint folder, when the run keeps one.
pub const EMA_FILE: &str = "ema.mpk";
/// The state file in a checkpoint folder.
pub const STATE_FILE: &str = "state.json";

type FileRecorder = NamedMpkBytesRecorder<FullPrecisionSettings>;

/// Where the files of a run live under its output folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPaths {
    root: PathBuf,
}

impl RunPaths {
    /// The layout under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The output folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder holding the checkpoints.
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }

    /// The checkpoint folder written after `epoch` (1-based).
    pub fn checkpoint(&self, epoch: usize) -> PathBuf {
        self.checkpoints().join(format!("epoch-{epoch:04}"))
    }

    /// The best model (burn's named MessagePack record of the model).
    pub fn best_model(&self) -> PathBuf {
        self.root.join("best.mpk")
    }

    /// The results file.
    pub fn results(&self) -> PathBuf {
        self.root.join("results.json")
    }

    /// The training curves.
    pub fn curves(&self) -> PathBuf {
        self.root.join("curves.svg")
    }

    /// The completed checkpoints, `(epoch, folder)` in increasing epoch order (folders being
    /// written are hidden under a temporary name and not listed).
    pub fn list_checkpoints(&self) -> Result<Vec<(usize, PathBuf)>, TrainError> {
        let folder = self.checkpoints();
        let entries = match std::fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(FileError::read(&folder, source).into()),
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| FileError::read(&folder, source))?;
            let name = entry.file_name();
            let epoch = name
                .to_str()
                .and_then(|name| name.strip_prefix("epoch-"))
                .and_then(|digits| digits.parse::<usize>().ok());
            if let Some(epoch) = epoch {
                found.push((epoch, entry.path()));
            }
        }
        found.sort();
        Ok(found)
    }

    /// Removes the temporary files and folders an interrupted write left in the checkpoint folder.
    pub(crate) fn remove_stale_temporaries(&self) -> Result<(), TrainError> {
        let folder = self.checkpoints();
        let Ok(entries) = std::fs::read_dir(&folder) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let is_temporary = entry
                .file_name()
                .to_str()
                .is_some_and(|name| name.starts_with(".tmp-"));
            if is_temporary {
                let path = entry.path();
                let removed = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                removed.map_err(|source| FileError::write(&path, source))?;
            }
        }
        Ok(())
    }

    /// The latest completed checkpoint.
    pub fn latest_checkpoint(&self) -> Result<Option<(usize, PathBuf)>, TrainError> {
        Ok(self.list_checkpoints()?.pop())
    }
}

/// The progress part of a checkpoint (`state.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    /// The last completed epoch (1-based).
    pub epoch: usize,
    /// Optimizer steps taken: the one-cycle schedule's position.
    pub schedule_position: usize,
    /// The run's results up to `epoch`.
    pub results: RunResults,
}

impl CheckpointState {
    /// Reads the `state.json` of a checkpoint folder.
    pub fn load(folder: &Path) -> Result<Self, TrainError> {
        let path = folder.join(STATE_FILE);
        let bytes = read_file(&path)?;
        serde_json::from_slice(&bytes).map_err(|source| TrainError::Json { path, source })
    }
}

/// Serialises a record with the named MessagePack recorder.
fn record_bytes<B: Backend, R: Record<B>>(record: R, path: &Path) -> Result<Vec<u8>, TrainError> {
    Recorder::<B>::record(&FileRecorder::default(), record, ()).map_err(|e| TrainError::Record {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Reads a record written by [`record_bytes`].
fn read_record<B: Backend, R: Record<B>>(path: &Path, device: &B::Device) -> Result<R, TrainError> {
    let bytes = read_file(path)?;
    // burn panics instead of failing on some damaged records (a parameter id that is not
    // base32, or longer than 8 bytes): catch that too, as a damaged file.
    let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Recorder::<B>::load(&FileRecorder::default(), bytes, device)
    }))
    .map_err(|panic| TrainError::Record {
        path: path.to_path_buf(),
        message: panic_message(panic.as_ref()),
    })?;
    loaded.map_err(|e| TrainError::Record {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// The text of a caught panic.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "the record is damaged".into())
}

/// Writes a model's weights atomically (burn's named MessagePack, full precision; the same bytes
/// as `NamedMpkFileRecorder::<FullPrecisionSettings>`).
pub fn save_model<B: Backend, M: Module<B>>(model: &M, path: &Path) -> Result<(), TrainError> {
    // A clone of a lazily initialised parameter initialises on its own, with other random values
    // than the original would get: initialise the model's parameters first.
    model.visit(&mut Initializer);
    let bytes = record_bytes::<B, _>(model.clone().into_record(), path)?;
    Ok(write_atomic(path, &bytes)?)
}

/// Forces the initialisation of lazy parameters.
struct Initializer;

impl<B: Backend> burn::module::ModuleVisitor<B> for Initializer {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let _ = param.val();
    }
    fn visit_int<const D: usize>(&mut self, param: &Param<Tensor<B, D, Int>>) {
        let _ = param.val();
    }
    fn visit_bool<const D: usize>(&mut self, param: &Param<Tensor<B, D, Bool>>) {
        let _ = param.val();
    }
}

/// One parameter: where it is in the module, its id and shape.
#[derive(Debug, Clone, PartialEq)]
struct ParamShape {
    path: String,
    id: ParamId,
    shape: Vec<usize>,
}

/// Lists the parameters of a module in visiting order.
#[derive(Default)]
struct ShapeCollector {
    stack: Vec<String>,
    params: Vec<ParamShape>,
}

impl ShapeCollector {
    fn push(&mut self, id: ParamId, shape: Vec<usize>) {
        self.params.push(ParamShape {
            path: self.stack.join("."),
            id,
            shape,
        });
    }

    fn of<B: Backend, M: Module<B>>(module: &M) -> Vec<ParamShape> {
        let mut collector = Self::default();
        module.visit(&mut collector);
        collector.params
    }
}

impl<B: Backend> burn::module::ModuleVisitor<B> for ShapeCollector {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.push(param.id, param.lazy_shape().to_vec());
    }
    fn visit_int<const D: usize>(&mut self, param: &Param<Tensor<B, D, Int>>) {
        self.push(param.id, param.lazy_shape().to_vec());
    }
    fn visit_bool<const D: usize>(&mut self, param: &Param<Tensor<B, D, Bool>>) {
        self.push(param.id, param.lazy_shape().to_vec());
    }
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.stack.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.pop();
    }
}

/// Loads weights written by [`save_model`] into `model`, checking that the file describes the
/// same architecture: every parameter present, with the same shape.
///
/// Errors name the file and, for a mismatch, the parameter and both shapes.
pub fn load_model<B: Backend, M: Module<B>>(
    model: M,
    path: &Path,
    device: &B::Device,
) -> Result<M, TrainError> {
    let expected = ShapeCollector::of::<B, M>(&model);
    let record: M::Record = read_record::<B, _>(path, device)?;
    // burn asserts on some mismatches (a Vec of layers of another length) instead of failing.
    let loaded =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| model.load_record(record)))
            .map_err(|panic| TrainError::Mismatch {
                path: path.to_path_buf(),
                message: panic_message(panic.as_ref()),
            })?;
    let found = ShapeCollector::of::<B, M>(&loaded);
    let mismatch = |message: String| TrainError::Mismatch {
        path: path.to_path_buf(),
        message,
    };
    if found.len() != expected.len() {
        return Err(mismatch(format!(
            "the file has {} parameters, the model {}",
            found.len(),
            expected.len()
        )));
    }
    for (found, expected) in found.iter().zip(&expected) {
        if found.shape != expected.shape || found.path != expected.path {
            return Err(mismatch(format!(
                "parameter `{}` has shape {:?} in the file, the model expects `{}` of shape {:?}",
                found.path, found.shape, expected.path, expected.shape
            )));
        }
    }
    Ok(loaded)
}

/// The parameter ids of a module, to check an optimizer state belongs to it.
pub(crate) fn param_ids<B: Backend, M: Module<B>>(module: &M) -> Vec<ParamId> {
    ShapeCollector::of::<B, M>(module)
        .into_iter()
        .map(|param| param.id)
        .collect()
}

/// Writes a record (e.g. an optimizer state) atomically.
pub(crate) fn save_record<B: Backend, R: Record<B>>(
    record: R,
    path: &Path,
) -> Result<(), TrainError> {
    let bytes = record_bytes::<B, R>(record, path)?;
    Ok(write_atomic(path, &bytes)?)
}

/// Reads a record written by [`save_record`].
pub(crate) fn load_record<B: Backend, R: Record<B>>(
    path: &Path,
    device: &B::Device,
) -> Result<R, TrainError> {
    read_record::<B, R>(path, device)
}

/// Writes a checkpoint folder: the files go to a hidden temporary folder next to it, which is
/// renamed into place once complete; older checkpoints are then removed.
pub(crate) fn write_checkpoint(
    paths: &RunPaths,
    state: &CheckpointState,
    write_files: impl FnOnce(&Path) -> Result<(), TrainError>,
) -> Result<PathBuf, TrainError> {
    let folder = paths.checkpoints();
    let write_error = FileError::write;
    crate::fs::create_dir_all(&folder)?;
    let staging = tempfile::Builder::new()
        .prefix(".tmp-epoch-")
        .tempdir_in(&folder)
        .map_err(|e| write_error(&folder, e))?;
    write_files(staging.path())?;
    write_json(&staging.path().join(STATE_FILE), state)?;
    let target = paths.checkpoint(state.epoch);
    if target.exists() {
        std::fs::remove_dir_all(&target).map_err(|e| write_error(&target, e))?;
    }
    // Renamed while still owned by `staging`, so that a failed rename removes the partial folder.
    std::fs::rename(staging.path(), &target).map_err(|e| write_error(&target, e))?;
    let _ = staging.keep();
    for (epoch, older) in paths.list_checkpoints()? {
        if epoch < state.epoch {
            std::fs::remove_dir_all(&older).map_err(|e| write_error(&older, e))?;
        }
    }
    Ok(target)
}
