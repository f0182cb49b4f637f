//! Loading timm's TResNet checkpoints (`.safetensors`, `.pth`/`.pt`/`.bin`) and saving ours in
//! the same layout, through burn-store with key remapping.
//!
//! Our module tree mirrors timm's names except for three details, which the remapping handles:
//! timm nests the backbone under `body.`, stores the shortcut's projection as `downsample.1.*`
//! (index 0 is the parameter-free average pool) where we name it `downsample.conv.*`, and calls
//! BatchNorm's scale and shift `weight` / `bias` (burn-store's PyTorch adapter renames those and
//! transposes the linear weight).

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::backend::Backend;
use burn_store::{
    ApplyError, ApplyResult, BurnToPyTorchAdapter, ModuleSnapshot, ModuleStore,
    PyTorchToBurnAdapter, PytorchStore, SafetensorsStore,
};

use super::tresnet::TResNet;
use super::ModelError;

/// Checkpoint key regexes (timm name -> our module path), applied when loading into `model`: the
/// head's tensors go to the model's kind of head (timm's files hold the linear one; a file saved
/// by [`TResNet::save_safetensors`] holds the model's own).
fn timm_to_burn<B: Backend>(model: &TResNet<B>) -> [(&'static str, &'static str); 3] {
    let head = if model.head.attention().is_some() {
        "head.Attention."
    } else {
        "head.Linear."
    };
    [
        (r"^body\.", ""),
        (r"\.downsample\.1\.", ".downsample.conv."),
        (r"^head\.", head),
    ]
}

/// Module path regexes (ours -> timm), applied when saving.
const BURN_TO_TIMM: [(&str, &str); 3] = [
    (r"^(conv1|layer[1-4])\.", "body.$1."),
    (r"\.downsample\.conv\.", ".downsample.1."),
    (r"^head\.(Linear|Attention)\.", "head."),
];

/// timm's counter of BatchNorm updates: in every checkpoint, meaningless for inference.
const IGNORED_SUFFIX: &str = "num_batches_tracked";

/// A checkpoint's on-disk format, told by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointFormat {
    /// Hugging Face safetensors (`.safetensors`), as timm publishes on the Hub.
    Safetensors,
    /// PyTorch pickle (`.pth`, `.pt`, `.bin`), a `state_dict` as `torch.save` writes it.
    Pytorch,
}

impl CheckpointFormat {
    /// Guesses the format from the file extension.
    pub fn from_path(path: &Path) -> Result<Self, ModelError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("safetensors") => Ok(Self::Safetensors),
            Some("pth" | "pt" | "bin") => Ok(Self::Pytorch),
            _ => Err(ModelError::UnsupportedFormat {
                path: path.to_path_buf(),
            }),
        }
    }
}

/// Our module path of a tensor -> the timm state-dict key it corresponds to.
///
/// ```
/// use aia::model::timm_key;
/// assert_eq!(timm_key("layer2.0.downsample.conv.bn.gamma"), "body.layer2.0.downsample.1.bn.weight");
/// assert_eq!(timm_key("head.Linear.fc.weight"), "head.fc.weight");
/// ```
pub fn timm_key(path: &str) -> String {
    let mut key = if let Some(head) = path.strip_prefix("head.") {
        let head = head
            .strip_prefix("Linear.")
            .or_else(|| head.strip_prefix("Attention."))
            .unwrap_or(head);
        format!("head.{head}")
    } else {
        format!("body.{path}")
    };
    key = key.replace(".downsample.conv.", ".downsample.1.");
    if let Some(stem) = key.strip_suffix(".bn.gamma") {
        key = format!("{stem}.bn.weight");
    } else if let Some(stem) = key.strip_suffix(".bn.beta") {
        key = format!("{stem}.bn.bias");
    }
    key
}

/// A module path's shape as PyTorch stores it (the classifier's weight is transposed in Burn).
fn torch_shape(path: &str, burn_shape: &[usize]) -> Vec<usize> {
    if timm_key(path) == "head.fc.weight" && burn_shape.len() == 2 {
        vec![burn_shape[1], burn_shape[0]]
    } else {
        burn_shape.to_vec()
    }
}

impl<B: Backend> TResNet<B> {
    /// Loads a timm TResNet checkpoint (`.safetensors`, or a PyTorch `state_dict` in `.pth`,
    /// `.pt` or `.bin`, possibly wrapped under `state_dict` or `model`) as it is, without any
    /// conversion step.
    ///
    /// Every backbone tensor must be present with the shape of this configuration. A classifier
    /// with another number of classes (e.g. ImageNet's 1000 into a 260-label model) is left out,
    /// keeping this model's freshly initialised head; a classifier of the right shape is loaded.
    /// Under the attention head ([`HeadConfig::Attention`](super::HeadConfig::Attention)) the
    /// checkpoint's classifier is dropped and the head keeps its initialisation, as the authors
    /// start from timm's backbone.
    ///
    /// ```no_run
    /// use aia::model::TResNetConfig;
    /// type B = burn::backend::Flex;
    /// let model = TResNetConfig::m()
    ///     .with_num_classes(260)
    ///     .init::<B>(&Default::default())
    ///     .load_timm("tresnet_m.miil_in1k.safetensors")?;
    /// # Ok::<(), aia::model::ModelError>(())
    /// ```
    ///
    /// # Errors
    /// [`ModelError::UnsupportedFormat`], [`ModelError::Checkpoint`] (unreadable file),
    /// [`ModelError::MissingKey`], [`ModelError::ShapeMismatch`] and
    /// [`ModelError::UnexpectedKey`], each naming the file and the timm key.
    pub fn load_timm(self, path: impl AsRef<Path>) -> Result<Self, ModelError> {
        let path = path.as_ref();
        let mut model = self;
        let result = match CheckpointFormat::from_path(path)? {
            CheckpointFormat::Safetensors => {
                let mut store = SafetensorsStore::from_file(path)
                    .with_from_adapter(PyTorchToBurnAdapter)
                    .map_indices_contiguous(false)
                    .allow_partial(true)
                    .validate(false);
                for (from, to) in timm_to_burn(&model) {
                    store = store.with_key_remapping(from, to);
                }
                model
                    .load_from(&mut store)
                    .map_err(|e| checkpoint_error(path, e))?
            }
            CheckpointFormat::Pytorch => load_pytorch(&mut model, path)?,
        };
        check_result(&model, path, result)?;
        Ok(model)
    }

    /// Saves the weights (BatchNorm statistics included) as safetensors with timm's key names and
    /// layouts, so that timm's `TResNet` (and [`load_timm`](Self::load_timm)) can load them.
    /// The file is written under a temporary name and renamed into place.
    pub fn save_safetensors(&self, path: impl AsRef<Path>) -> Result<(), ModelError> {
        self.save_safetensors_with_metadata(path, &[])
    }

    /// [`save_safetensors`](Self::save_safetensors) with `metadata` (key, value) added to the
    /// file's header, where [`safetensors_metadata`] reads it back.
    pub fn save_safetensors_with_metadata(
        &self,
        path: impl AsRef<Path>,
        metadata: &[(&str, &str)],
    ) -> Result<(), ModelError> {
        Ok(crate::fs::write_atomic_with(path.as_ref(), |tmp| {
            let mut store = SafetensorsStore::from_file(tmp)
                .with_to_adapter(BurnToPyTorchAdapter)
                .overwrite(true);
            for (key, value) in metadata {
                store = store.metadata(*key, *value);
            }
            for (from, to) in BURN_TO_TIMM {
                store = store.with_key_remapping(from, to);
            }
            self.save_into(&mut store)
                .map_err(|e| std::io::Error::other(e.to_string()))
        })?)
    }

    /// Every tensor of the model as timm names it, with its PyTorch shape, in module order.
    /// BatchNorm running statistics are included; parameters are those whose key does not end
    /// in `running_mean` / `running_var`.
    pub fn timm_tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        self.collect(None, None, true)
            .into_iter()
            .map(|s| {
                let path = s.full_path();
                let shape = torch_shape(&path, &s.shape);
                (timm_key(&path), shape)
            })
            .collect()
    }

    /// Number of trainable parameters as PyTorch counts them (BatchNorm statistics excluded).
    pub fn num_params(&self) -> usize {
        self.timm_tensor_shapes()
            .iter()
            .filter(|(k, _)| !k.ends_with("running_mean") && !k.ends_with("running_var"))
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }
}

/// The metadata (string pairs) of a safetensors file's header, read without its tensors.
///
/// # Errors
/// [`ModelError::Checkpoint`] when the file cannot be read or its header is not safetensors'.
pub fn safetensors_metadata(path: &Path) -> Result<HashMap<String, String>, ModelError> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| checkpoint_error(path, e))?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .map_err(|e| checkpoint_error(path, format!("no safetensors header: {e}")))?;
    // safetensors' own bound on a header (100 MB), so a corrupt length cannot ask for gigabytes.
    const MAX_HEADER: u64 = 100_000_000;
    let header_len = u64::from_le_bytes(len);
    if header_len > MAX_HEADER {
        return Err(checkpoint_error(
            path,
            format!("a safetensors header of {header_len} bytes"),
        ));
    }
    let mut header = Vec::new();
    file.take(header_len)
        .read_to_end(&mut header)
        .map_err(|e| checkpoint_error(path, e))?;
    // The header is JSON: the tensors' entries and, under `__metadata__`, the string pairs.
    #[derive(serde::Deserialize)]
    struct Header {
        #[serde(rename = "__metadata__", default)]
        metadata: HashMap<String, String>,
    }
    let header: Header = serde_json::from_slice(&header)
        .map_err(|e| checkpoint_error(path, format!("not a safetensors header: {e}")))?;
    Ok(header.metadata)
}

fn checkpoint_error(path: &Path, e: impl std::fmt::Display) -> ModelError {
    ModelError::Checkpoint {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// PyTorch files are usually a bare state dict; training scripts often wrap it under
/// `state_dict` or `model`, so those are tried when the top level has no TResNet key.
fn load_pytorch<B: Backend>(
    model: &mut TResNet<B>,
    path: &Path,
) -> Result<ApplyResult, ModelError> {
    let store = |top: Option<&str>| {
        // Paths carry the head's variant (`head.Linear.`), as in the safetensors store.
        let mut store = PytorchStore::from_file(path)
            .skip_enum_variants(false)
            .map_indices_contiguous(false)
            .allow_partial(true)
            .validate(false);
        if let Some(top) = top {
            store = store.with_top_level_key(top);
        }
        for (from, to) in timm_to_burn(model) {
            store = store.with_key_remapping(from, to);
        }
        store
    };
    let mut plain = store(None);
    let keys = plain.keys().map_err(|e| checkpoint_error(path, e))?;
    if !keys.iter().any(|k| k.starts_with("conv1.")) {
        for top in ["state_dict", "model"] {
            let mut wrapped = store(Some(top));
            if wrapped
                .keys()
                .is_ok_and(|keys| keys.iter().any(|k| k.starts_with("conv1.")))
            {
                return model
                    .load_from(&mut wrapped)
                    .map_err(|e| checkpoint_error(path, e));
            }
        }
    }
    model
        .load_from(&mut plain)
        .map_err(|e| checkpoint_error(path, e))
}

/// Turns burn-store's report into our errors; tolerates only a classifier of another width, or
/// none under the attention head.
fn check_result<B: Backend>(
    model: &TResNet<B>,
    path: &Path,
    result: ApplyResult,
) -> Result<(), ModelError> {
    let num_features = model.num_features();
    for error in &result.errors {
        match error {
            ApplyError::ShapeMismatch {
                path: p,
                expected,
                found,
            } => {
                let expected = torch_shape(p, expected.as_slice());
                let found = torch_shape(p, found.as_slice());
                // A head for another label set: keep ours (burn-store left it untouched).
                let key = timm_key(p);
                let other_head =
                    (key == "head.fc.weight" && found.len() == 2 && found[1] == num_features)
                        || (key == "head.fc.bias" && found.len() == 1);
                if !other_head {
                    return Err(ModelError::ShapeMismatch {
                        path: path.to_path_buf(),
                        key: timm_key(p),
                        expected,
                        found,
                    });
                }
            }
            other => return Err(checkpoint_error(path, other)),
        }
    }
    // timm's checkpoints hold the linear head only: under the attention head, theirs is dropped
    // and ours keeps its initialisation, unless the file holds an attention head (one saved by
    // this crate), which must then be whole.
    let with_attention = model.head.attention().is_some();
    let head_in_file = result.applied.iter().any(|k| k.starts_with("head."));
    let other_kind_of_head =
        |k: &str| with_attention && !head_in_file && timm_key(k).starts_with("head.");
    let missing: Vec<&String> = result
        .missing
        .iter()
        .map(|(p, _)| p)
        .filter(|p| !other_kind_of_head(p))
        .collect();
    if let Some(p) = missing.first() {
        return Err(ModelError::MissingKey {
            path: path.to_path_buf(),
            key: timm_key(p),
            others: missing.len() - 1,
        });
    }
    // burn-store lists BatchNorm tensors under their PyTorch names as unused even after its
    // adapter applied them as gamma / beta: those are not unexpected.
    let applied_under_burn_name = |k: &str| {
        let renamed = if let Some(stem) = k.strip_suffix(".weight") {
            format!("{stem}.gamma")
        } else if let Some(stem) = k.strip_suffix(".bias") {
            format!("{stem}.beta")
        } else {
            return false;
        };
        result.applied.contains(&renamed)
    };
    let unexpected: Vec<&String> = result
        .unused
        .iter()
        .filter(|k| {
            !k.ends_with(IGNORED_SUFFIX) && !applied_under_burn_name(k) && !other_kind_of_head(k)
        })
        .collect();
    if let Some(first) = unexpected.first() {
        return Err(ModelError::UnexpectedKey {
            path: path.to_path_buf(),
            key: timm_key(first),
            others: unexpected.len() - 1,
        });
    }
    Ok(())
}
