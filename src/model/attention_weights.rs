//! Loading the authors' checkpoints of the attention-pooling head (`.safetensors`, `.pth`).
//!
//! Their `Annotator.state_dict()` holds the head under `head.` next to the backbone under
//! `backbone.`. Two differences from our module tree need more than a key remapping, which is
//! why the tensors are read and placed one by one rather than through burn-store's applier:
//! PyTorch's `MultiheadAttention` packs the query, key and value projections into one
//! `in_proj_weight [3E, E]` / `in_proj_bias [3E]` (Burn keeps three `Linear`s), and every PyTorch
//! linear weight is `[out, in]` where Burn's is `[in, out]`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::nn::attention::MultiHeadAttention;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use burn_store::{ModuleStore, PytorchStore, SafetensorsStore, TensorSnapshot};

use super::attention_decoder::DecoderLayer;
use super::attention_head::AttentionHead;
use super::weights::CheckpointFormat;
use super::ModelError;

/// Prefix of the head in the authors' `Annotator` state dict.
const HEAD_PREFIX: &str = "head.";

impl<B: Backend> AttentionHead<B> {
    /// Every tensor of the head as the authors' `Head.state_dict()` names it (without the
    /// `head.` prefix), with its PyTorch shape.
    pub fn authors_tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let hidden = self.norm.gamma.dims()[0];
        let classes = self.num_classes();
        let mut shapes = vec![
            (
                "linear_projection.weight".to_string(),
                vec![hidden, self.in_channels(), 1, 1],
            ),
            ("linear_projection.bias".to_string(), vec![hidden]),
            ("query_emb.weight".to_string(), vec![classes, hidden]),
            ("w".to_string(), vec![1, classes, hidden]),
            ("b".to_string(), vec![1, classes]),
            ("transformer.decoder.norm.weight".to_string(), vec![hidden]),
            ("transformer.decoder.norm.bias".to_string(), vec![hidden]),
        ];
        let mha = |shapes: &mut Vec<(String, Vec<usize>)>, stem: &str| {
            shapes.push((format!("{stem}.in_proj_weight"), vec![3 * hidden, hidden]));
            shapes.push((format!("{stem}.in_proj_bias"), vec![3 * hidden]));
            shapes.push((format!("{stem}.out_proj.weight"), vec![hidden, hidden]));
            shapes.push((format!("{stem}.out_proj.bias"), vec![hidden]));
        };
        let norm = |shapes: &mut Vec<(String, Vec<usize>)>, stem: &str| {
            shapes.push((format!("{stem}.weight"), vec![hidden]));
            shapes.push((format!("{stem}.bias"), vec![hidden]));
        };
        for (i, layer) in self.layers.iter().enumerate() {
            let stem = format!("transformer.decoder.layers.{i}");
            if layer.self_attn.is_some() {
                mha(&mut shapes, &format!("{stem}.self_attn"));
                norm(&mut shapes, &format!("{stem}.norm1"));
            }
            mha(&mut shapes, &format!("{stem}.multihead_attn"));
            norm(&mut shapes, &format!("{stem}.norm2"));
            norm(&mut shapes, &format!("{stem}.norm3"));
            let feedforward = layer.linear1.weight.dims()[1];
            shapes.push((format!("{stem}.linear1.weight"), vec![feedforward, hidden]));
            shapes.push((format!("{stem}.linear1.bias"), vec![feedforward]));
            shapes.push((format!("{stem}.linear2.weight"), vec![hidden, feedforward]));
            shapes.push((format!("{stem}.linear2.bias"), vec![hidden]));
        }
        shapes
    }

    /// Loads the authors' checkpoint of the head (Salar & Ahmadi's `Annotator` state dict, or
    /// their `Head`'s alone), from `.safetensors` or a PyTorch `.pth` / `.pt` / `.bin` (possibly
    /// wrapped under `state_dict` or `model`).
    ///
    /// Keys under `head.` are read; the others (the backbone's `backbone.*`) are ignored. When no
    /// key starts with `head.`, the file is taken as a bare `Head` state dict. The packed
    /// `in_proj_*` tensors are split into query, key and value, and linear weights transposed.
    ///
    /// ```no_run
    /// use aia::model::attention_head::AttentionHeadConfig;
    /// type B = burn::backend::Flex;
    /// let head = AttentionHeadConfig::new(260)
    ///     .init::<B>(&Default::default())
    ///     .load_authors("Annotator_Corel-5k.pth")?;
    /// # Ok::<(), aia::model::ModelError>(())
    /// ```
    ///
    /// # Errors
    /// [`ModelError::UnsupportedFormat`], [`ModelError::Checkpoint`] (unreadable file),
    /// [`ModelError::MissingKey`], [`ModelError::ShapeMismatch`] and
    /// [`ModelError::UnexpectedKey`] (e.g. self-attention weights for a head configured without
    /// it), each naming the file and the key as it is in the file.
    pub fn load_authors(self, path: impl AsRef<Path>) -> Result<Self, ModelError> {
        let path = path.as_ref();
        let all = read_snapshots(path)?;
        let prefix = if all.keys().any(|k| k.starts_with(HEAD_PREFIX)) {
            HEAD_PREFIX
        } else {
            ""
        };
        let tensors = Tensors {
            path: path.to_path_buf(),
            prefix,
            device: self.b.lazy_device(),
            snapshots: all
                .into_iter()
                .filter_map(|(k, s)| k.strip_prefix(prefix).map(|k| (k.to_string(), s)))
                .collect(),
        };
        tensors.check(&self.authors_tensor_shapes())?;
        tensors.apply(self)
    }
}

/// The head's tensors of one file, keyed without the prefix.
struct Tensors<B: Backend> {
    path: PathBuf,
    prefix: &'static str,
    device: B::Device,
    snapshots: BTreeMap<String, TensorSnapshot>,
}

impl<B: Backend> Tensors<B> {
    /// Every expected tensor present with its shape, and nothing else under the prefix.
    fn check(&self, expected: &[(String, Vec<usize>)]) -> Result<(), ModelError> {
        let missing: Vec<&String> = expected
            .iter()
            .map(|(k, _)| k)
            .filter(|k| !self.snapshots.contains_key(*k))
            .collect();
        if let Some(first) = missing.first() {
            return Err(ModelError::MissingKey {
                path: self.path.clone(),
                key: self.full_key(first),
                others: missing.len() - 1,
            });
        }
        for (key, shape) in expected {
            let found = self.snapshots[key].shape.to_vec();
            if &found != shape {
                return Err(ModelError::ShapeMismatch {
                    path: self.path.clone(),
                    key: self.full_key(key),
                    expected: shape.clone(),
                    found,
                });
            }
        }
        let known: BTreeSet<&String> = expected.iter().map(|(k, _)| k).collect();
        let unexpected: Vec<&String> = self
            .snapshots
            .keys()
            .filter(|k| !known.contains(k))
            .collect();
        if let Some(first) = unexpected.first() {
            return Err(ModelError::UnexpectedKey {
                path: self.path.clone(),
                key: self.full_key(first),
                others: unexpected.len() - 1,
            });
        }
        Ok(())
    }

    fn apply(&self, mut head: AttentionHead<B>) -> Result<AttentionHead<B>, ModelError> {
        let conv = &mut head.linear_projection;
        conv.weight = set(conv.weight.clone(), self.get("linear_projection.weight")?);
        conv.bias = Some(set_opt(
            conv.bias.take(),
            self.get("linear_projection.bias")?,
        ));
        head.query_emb.weight = set(head.query_emb.weight, self.get("query_emb.weight")?);
        head.w = set(head.w, self.get("w")?);
        head.b = set(head.b, self.get("b")?);
        head.norm = self.norm(head.norm, "transformer.decoder.norm")?;
        head.layers = head
            .layers
            .into_iter()
            .enumerate()
            .map(|(i, layer)| self.layer(layer, &format!("transformer.decoder.layers.{i}")))
            .collect::<Result<_, _>>()?;
        Ok(head)
    }

    fn layer(&self, mut layer: DecoderLayer<B>, stem: &str) -> Result<DecoderLayer<B>, ModelError> {
        if let Some(attn) = layer.self_attn.take() {
            layer.self_attn = Some(self.attention(attn, &format!("{stem}.self_attn"))?);
        }
        if let Some(norm) = layer.norm1.take() {
            layer.norm1 = Some(self.norm(norm, &format!("{stem}.norm1"))?);
        }
        layer.cross_attn = self.attention(layer.cross_attn, &format!("{stem}.multihead_attn"))?;
        layer.norm2 = self.norm(layer.norm2, &format!("{stem}.norm2"))?;
        layer.norm3 = self.norm(layer.norm3, &format!("{stem}.norm3"))?;
        layer.linear1 = self.linear(layer.linear1, &format!("{stem}.linear1"))?;
        layer.linear2 = self.linear(layer.linear2, &format!("{stem}.linear2"))?;
        Ok(layer)
    }

    /// Splits PyTorch's packed projection: rows `[0, E)` are the query's, then key, then value.
    fn attention(
        &self,
        mut attn: MultiHeadAttention<B>,
        stem: &str,
    ) -> Result<MultiHeadAttention<B>, ModelError> {
        let weight: Tensor<B, 2> = self.get(&format!("{stem}.in_proj_weight"))?;
        let bias: Tensor<B, 1> = self.get(&format!("{stem}.in_proj_bias"))?;
        let e = attn.d_model;
        let part = |linear: Linear<B>, i: usize| {
            place_linear(
                linear,
                weight.clone().narrow(0, i * e, e),
                bias.clone().narrow(0, i * e, e),
            )
        };
        attn.query = part(attn.query, 0);
        attn.key = part(attn.key, 1);
        attn.value = part(attn.value, 2);
        attn.output = self.linear(attn.output, &format!("{stem}.out_proj"))?;
        Ok(attn)
    }

    fn linear(&self, linear: Linear<B>, stem: &str) -> Result<Linear<B>, ModelError> {
        Ok(place_linear(
            linear,
            self.get(&format!("{stem}.weight"))?,
            self.get(&format!("{stem}.bias"))?,
        ))
    }

    fn norm(&self, mut norm: LayerNorm<B>, stem: &str) -> Result<LayerNorm<B>, ModelError> {
        norm.gamma = set(norm.gamma, self.get(&format!("{stem}.weight"))?);
        norm.beta = Some(set_opt(norm.beta, self.get(&format!("{stem}.bias"))?));
        Ok(norm)
    }

    /// One tensor, already checked present and of the right shape by [`check`](Self::check).
    fn get<const D: usize>(&self, key: &str) -> Result<Tensor<B, D>, ModelError> {
        let snapshot = self
            .snapshots
            .get(key)
            .ok_or_else(|| ModelError::MissingKey {
                path: self.path.clone(),
                key: self.full_key(key),
                others: 0,
            })?;
        let data = snapshot.to_data().map_err(|e| ModelError::Checkpoint {
            path: self.path.clone(),
            message: format!("tensor `{}`: {e:?}", self.full_key(key)),
        })?;
        if data.shape.len() != D {
            return Err(ModelError::ShapeMismatch {
                path: self.path.clone(),
                key: self.full_key(key),
                expected: vec![0; D],
                found: data.shape.to_vec(),
            });
        }
        Ok(Tensor::from_data(
            data.convert::<B::FloatElem>(),
            &self.device,
        ))
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

/// PyTorch's `[out, in]` weight into Burn's `[in, out]`.
fn place_linear<B: Backend>(
    mut linear: Linear<B>,
    weight: Tensor<B, 2>,
    bias: Tensor<B, 1>,
) -> Linear<B> {
    linear.weight = set(linear.weight, weight.transpose());
    linear.bias = Some(set_opt(linear.bias, bias));
    linear
}

/// Replaces a parameter's value, keeping its id and whether it is trained (the frozen label
/// embeddings stay frozen).
fn set<B: Backend, const D: usize>(
    param: Param<Tensor<B, D>>,
    value: Tensor<B, D>,
) -> Param<Tensor<B, D>> {
    param.map(|old| value.set_require_grad(old.is_require_grad()))
}

fn set_opt<B: Backend, const D: usize>(
    param: Option<Param<Tensor<B, D>>>,
    value: Tensor<B, D>,
) -> Param<Tensor<B, D>> {
    match param {
        Some(param) => set(param, value),
        None => Param::from_tensor(value),
    }
}

/// All tensors of the file; for PyTorch, unwrapped from `state_dict` / `model` when the top
/// level holds no head.
fn read_snapshots(path: &Path) -> Result<BTreeMap<String, TensorSnapshot>, ModelError> {
    let error = |e: String| ModelError::Checkpoint {
        path: path.to_path_buf(),
        message: e,
    };
    let has_head = |m: &BTreeMap<String, TensorSnapshot>| {
        m.keys()
            .any(|k| k.starts_with(HEAD_PREFIX) || k.starts_with("query_emb."))
    };
    match CheckpointFormat::from_path(path)? {
        CheckpointFormat::Safetensors => SafetensorsStore::from_file(path)
            .get_all_snapshots()
            .cloned()
            .map_err(|e| error(e.to_string())),
        CheckpointFormat::Pytorch => {
            let plain = PytorchStore::from_file(path)
                .get_all_snapshots()
                .cloned()
                .map_err(|e| error(e.to_string()))?;
            if !has_head(&plain) {
                for top in ["state_dict", "model"] {
                    let wrapped = PytorchStore::from_file(path)
                        .with_top_level_key(top)
                        .get_all_snapshots()
                        .cloned();
                    if let Ok(wrapped) = wrapped {
                        if has_head(&wrapped) {
                            return Ok(wrapped);
                        }
                    }
                }
            }
            Ok(plain)
        }
    }
}
