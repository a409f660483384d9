//! Sentence embeddings with a BERT-family model (all-MiniLM-L6-v2 and its kin):
//! candle-transformers' `BertModel` and the `tokenizers` crate.
//!
//! A model directory holds `config.json`, `tokenizer.json` and `model.safetensors`
//! (f32, unprefixed or `bert.`-prefixed BERT names). A batch of texts is tokenised
//! together, padded to its longest row and truncated to `max_length` tokens; the
//! model's last hidden states are averaged over the attention mask (mean pooling) and,
//! when asked, scaled to unit L2 norm. The input is a `str` field, the output an
//! `f32[hidden_size]` vector.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType as CDType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use super::device::DeviceSpec;
use super::{BatchKernel, KernelFactory};
use crate::column::Column;

/// Why a model directory cannot serve. The graph author's fault (or a missing install).
#[derive(Debug, thiserror::Error)]
pub enum SentenceModelError {
    /// A file of the directory is missing.
    #[error("{path} is missing")]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// A file is there but cannot be used.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// A sentence-embedding model, loaded and checked: what every replica builds its own
/// instance from.
#[derive(Clone, Debug)]
pub struct SentenceModel {
    /// The model directory.
    pub dir: PathBuf,
    config: Config,
    hidden_size: usize,
    tokenizer: Tokenizer,
    /// Tokens per text at most (special tokens included).
    pub max_length: usize,
    /// Scale embeddings to unit L2 norm.
    pub normalize: bool,
}

impl SentenceModel {
    /// Reads and checks `dir`'s config and tokenizer (the weights are read by each
    /// replica). `max_length` is clamped to the model's position embeddings.
    pub fn load(dir: &Path, max_length: usize, normalize: bool) -> Result<SentenceModel, SentenceModelError> {
        let file = |name: &str| {
            let path = dir.join(name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(SentenceModelError::Missing { path })
            }
        };
        let (config_path, tokenizer_path) = (file("config.json")?, file("tokenizer.json")?);
        file("model.safetensors")?;
        let invalid = |path: &Path, reason: String| SentenceModelError::Invalid { path: path.to_path_buf(), reason };
        let text = std::fs::read_to_string(&config_path).map_err(|e| invalid(&config_path, e.to_string()))?;
        let config: Config = serde_json::from_str(&text).map_err(|e| invalid(&config_path, e.to_string()))?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| invalid(&config_path, e.to_string()))?;
        let number = |key: &str| json.get(key).and_then(serde_json::Value::as_u64).map(|n| n as usize);
        let hidden_size = number("hidden_size").ok_or_else(|| invalid(&config_path, "no hidden_size".into()))?;
        let positions = number("max_position_embeddings").unwrap_or(512);
        let mut tokenizer =
            Tokenizer::from_file(&tokenizer_path).map_err(|e| invalid(&tokenizer_path, e.to_string()))?;
        let max_length = max_length.clamp(2, positions);
        let pad_id = tokenizer.get_padding().map_or(0, |p| p.pad_id);
        let pad_token = tokenizer.get_padding().map_or_else(|| "[PAD]".to_string(), |p| p.pad_token.clone());
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            pad_id,
            pad_token,
            ..PaddingParams::default()
        }));
        tokenizer
            .with_truncation(Some(TruncationParams { max_length, ..TruncationParams::default() }))
            .map_err(|e| invalid(&tokenizer_path, e.to_string()))?;
        Ok(SentenceModel { dir: dir.to_path_buf(), config, hidden_size, tokenizer, max_length, normalize })
    }

    /// The embedding width.
    pub fn width(&self) -> usize {
        self.hidden_size
    }

    /// The token ids of `text`, as the model sees it (special tokens included).
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>, String> {
        let encoding = self.tokenizer.encode(text, true).map_err(|e| e.to_string())?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Builds an instance on `device`: reads the weights.
    pub fn instantiate(&self, device: &Device) -> Result<SentenceEmbedder, String> {
        let path = self.dir.join("model.safetensors");
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let vb = VarBuilder::from_buffered_safetensors(bytes, CDType::F32, device)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let model = BertModel::load(vb, &self.config).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(SentenceEmbedder {
            model,
            width: self.hidden_size,
            tokenizer: self.tokenizer.clone(),
            device: device.clone(),
            normalize: self.normalize,
        })
    }

    /// A factory building one instance per replica on `device`.
    pub fn factory(self: &Arc<Self>, device: DeviceSpec) -> KernelFactory {
        let model = Arc::clone(self);
        Arc::new(move || {
            let device = device.candle()?;
            Ok(Box::new(model.instantiate(&device)?) as Box<dyn BatchKernel>)
        })
    }
}

/// One replica's sentence-embedding model.
pub struct SentenceEmbedder {
    model: BertModel,
    width: usize,
    tokenizer: Tokenizer,
    device: Device,
    normalize: bool,
}

impl SentenceEmbedder {
    /// The embeddings of `texts`, flat (`texts.len() × width`).
    pub fn embed(&self, texts: Vec<String>) -> Result<Vec<f32>, String> {
        let rows = texts.len();
        let encodings = self.tokenizer.encode_batch(texts, true).map_err(|e| e.to_string())?;
        let len = encodings.first().map_or(0, |e| e.get_ids().len());
        let mut ids = Vec::with_capacity(rows * len);
        let mut mask = Vec::with_capacity(rows * len);
        for e in &encodings {
            ids.extend_from_slice(e.get_ids());
            mask.extend_from_slice(e.get_attention_mask());
        }
        let err = |e: candle_core::Error| e.to_string();
        let ids = Tensor::from_vec(ids, (rows, len), &self.device).map_err(err)?;
        let mask = Tensor::from_vec(mask, (rows, len), &self.device).map_err(err)?;
        let types = ids.zeros_like().map_err(err)?;
        let hidden = self.model.forward(&ids, &types, Some(&mask)).map_err(err)?;
        // Mean over the tokens the mask keeps.
        let mask = mask.to_dtype(CDType::F32).map_err(err)?.unsqueeze(2).map_err(err)?;
        let summed = hidden.broadcast_mul(&mask).and_then(|h| h.sum(1)).map_err(err)?;
        let counts = mask.sum(1).and_then(|c| c.clamp(1e-9f32, f32::MAX)).map_err(err)?;
        let mut pooled = summed.broadcast_div(&counts).map_err(err)?;
        if self.normalize {
            let norm = pooled.sqr().and_then(|s| s.sum_keepdim(1)).and_then(|s| s.sqrt()).map_err(err)?;
            let norm = norm.clamp(1e-12f32, f32::MAX).map_err(err)?;
            pooled = pooled.broadcast_div(&norm).map_err(err)?;
        }
        pooled.flatten_all().and_then(|p| p.to_vec1::<f32>()).map_err(err)
    }
}

impl BatchKernel for SentenceEmbedder {
    fn forward(&mut self, inputs: Column) -> Result<Column, String> {
        let Column::Str(texts) = inputs else {
            return Err(format!("a sentence model takes str, got {}", inputs.type_name()));
        };
        let width = self.width;
        let texts: Vec<String> = texts.iter().map(|t| t.to_string()).collect();
        Ok(Column::Tensor { width, data: self.embed(texts)? })
    }
}
