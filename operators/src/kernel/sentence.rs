//! Sentence embeddings with a BERT-family model (all-MiniLM-L6-v2 and its kin): the
//! encoder of [`super::bert`] (candle-transformers' BERT, with a vectorised GELU and a
//! fused query-key-value projection) and the `tokenizers` crate.
//!
//! A model directory holds `config.json`, `tokenizer.json` and `model.safetensors`
//! (f32, unprefixed or `bert.`-prefixed BERT names). A batch of texts is tokenised
//! together and truncated to `max_length` tokens; the model's last hidden states are
//! averaged over the attention mask (mean pooling) and, when asked, scaled to unit L2
//! norm. The input is a `str` field, the output an `f32[hidden_size]` vector.
//!
//! Padding: a forward pass takes a rectangle of tokens, so texts are padded to the
//! longest of the pass, and padded tokens cost as much as real ones in every layer. On
//! the CPU, a batch is therefore split into length groups: its texts sorted by token
//! count and cut where a new pass costs less than the padding it saves (cost model:
//! [`PASS_COST_TOKENS`] per pass plus one per token of the rectangle; see
//! [`length_groups`]). Each group is one forward pass; the rows come back in the batch's
//! order. On a GPU, where padding is nearly free next to a launch, the batch stays one
//! pass. Either way a row's embedding does not depend on the rows beside it (the
//! attention mask hides padding) beyond float rounding.
//!
//! Precision: the weights are held and the encoder run in the node's [`Precision`]
//! (`dtype:`, f32 by default; bf16 and f16 are what GPUs run fastest); the last hidden
//! states are pooled and normalised in f32. On a GPU the weights are loaded once and
//! shared by the node's replicas there.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType as CDType, Device, Tensor};
use candle_nn::VarBuilder;
use tokenizers::{Tokenizer, TruncationParams};

use super::bert::{Bert, BertConfig};
use super::device::{DeviceSpec, OncePerDevice, Precision};
use super::{BatchKernel, KernelError, KernelFactory};
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
    config: BertConfig,
    tokenizer: Tokenizer,
    /// The token padding fills a forward pass's shorter rows with.
    pad_id: u32,
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
        let config: BertConfig = serde_json::from_str(&text).map_err(|e| invalid(&config_path, e.to_string()))?;
        config.check().map_err(|e| invalid(&config_path, e))?;
        let positions = config.max_position_embeddings;
        let mut tokenizer =
            Tokenizer::from_file(&tokenizer_path).map_err(|e| invalid(&tokenizer_path, e.to_string()))?;
        let max_length = max_length.clamp(2, positions);
        // Texts are padded here, per forward pass, not by the tokenizer.
        let pad_id = tokenizer.get_padding().map_or(0, |p| p.pad_id);
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams { max_length, ..TruncationParams::default() }))
            .map_err(|e| invalid(&tokenizer_path, e.to_string()))?;
        Ok(SentenceModel { dir: dir.to_path_buf(), config, tokenizer, pad_id, max_length, normalize })
    }

    /// The embedding width.
    pub fn width(&self) -> usize {
        self.config.hidden_size
    }

    /// The token ids of `text`, as the model sees it (special tokens included).
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>, KernelError> {
        let encoding = self.tokenizer.encode(text, true).map_err(|source| KernelError::Tokenizer { source })?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Builds an instance on `device` in f32: reads the weights.
    pub fn instantiate(&self, device: &Device) -> Result<SentenceEmbedder, KernelError> {
        self.instantiate_as(device, Precision::F32)
    }

    /// Builds an instance on `device` in `dtype`: reads the weights.
    pub fn instantiate_as(&self, device: &Device, dtype: Precision) -> Result<SentenceEmbedder, KernelError> {
        let path = self.dir.join("model.safetensors");
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(source) => return Err(KernelError::WeightsUnreadable { path, source }),
        };
        let model = VarBuilder::from_buffered_safetensors(bytes, dtype.candle(), device)
            .and_then(|vb| Bert::load(vb, &self.config))
            .map_err(|source| KernelError::WeightsInvalid { path, source })?;
        Ok(SentenceEmbedder {
            model,
            width: self.config.hidden_size,
            tokenizer: self.tokenizer.clone(),
            pad_id: self.pad_id,
            length_groups: device.is_cpu(),
            device: device.clone(),
            normalize: self.normalize,
        })
    }

    /// A factory building each replica's instance on `device` in `dtype`: its own on
    /// the CPU, one shared by the replicas of a GPU ([`OncePerDevice`]).
    pub fn factory(self: &Arc<Self>, device: DeviceSpec, dtype: Precision) -> KernelFactory {
        let model = Arc::clone(self);
        let once = Arc::new(OncePerDevice::default());
        Arc::new(move || {
            let embedder = once.get(device, || model.instantiate_as(&device.candle()?, dtype))?;
            Ok(Box::new(embedder) as Box<dyn BatchKernel>)
        })
    }
}

/// One replica's sentence-embedding model (a clone shares the weights).
#[derive(Clone)]
pub struct SentenceEmbedder {
    model: Bert,
    width: usize,
    tokenizer: Tokenizer,
    pad_id: u32,
    /// Split batches into length groups (see the module docs); on by default on the CPU.
    length_groups: bool,
    device: Device,
    normalize: bool,
}

/// What one forward pass costs beyond its tokens, in tokens: the fixed cost of a pass
/// (every weight is read from memory once per pass, and each of the pass's tensor
/// operations has its own overhead) over the cost of one more token of the rectangle,
/// both from `cargo bench --bench embed -- passes` (BENCHMARKS.md, "Sentence
/// embeddings", the pass cost table). The cut is not sensitive to the exact figure.
pub const PASS_COST_TOKENS: usize = 24;

/// Cuts texts of token counts `lengths` into forward passes: returns the passes as
/// index lists (each sorted by length, longest last), minimising the total of
/// [`PASS_COST_TOKENS`] per pass plus rows × longest row per pass over every cut of the
/// texts sorted by length (a dynamic programme over the sorted order; `O(n²)`).
pub fn length_groups(lengths: &[usize]) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| lengths[i]);
    let n = order.len();
    // best[i]: the cheapest cut of the first i sorted texts; from[i]: where its last pass starts.
    let mut best = vec![0usize; n + 1];
    let mut from = vec![0usize; n + 1];
    for i in 1..=n {
        let longest = lengths[order[i - 1]];
        (best[i], from[i]) =
            (0..i).map(|j| (best[j] + PASS_COST_TOKENS + (i - j) * longest, j)).min().unwrap_or((0, 0));
    }
    let mut passes = Vec::new();
    let mut end = n;
    while end > 0 {
        passes.push(order[from[end]..end].to_vec());
        end = from[end];
    }
    passes.reverse();
    passes
}

impl SentenceEmbedder {
    /// Whether batches are split into length groups (for measuring what that gains).
    pub fn set_length_groups(&mut self, on: bool) {
        self.length_groups = on;
    }

    /// The embeddings of `texts`, flat (`texts.len() × width`), in their order.
    pub fn embed(&self, texts: Vec<String>) -> Result<Vec<f32>, KernelError> {
        let rows = texts.len();
        let encodings = self.tokenizer.encode_batch(texts, true).map_err(|source| KernelError::Tokenizer { source })?;
        let ids: Vec<&[u32]> = encodings.iter().map(|e| e.get_ids()).collect();
        let passes = if self.length_groups {
            length_groups(&ids.iter().map(|t| t.len()).collect::<Vec<_>>())
        } else {
            vec![(0..rows).collect()]
        };
        let mut out = vec![0f32; rows * self.width];
        for pass in passes {
            let pooled = self.forward_pass(&pass.iter().map(|&i| ids[i]).collect::<Vec<_>>())?;
            for (k, &i) in pass.iter().enumerate() {
                out[i * self.width..(i + 1) * self.width]
                    .copy_from_slice(&pooled[k * self.width..(k + 1) * self.width]);
            }
        }
        Ok(out)
    }

    /// One forward pass over `texts` (token ids) padded to the longest: their pooled
    /// embeddings, flat, in order.
    fn forward_pass(&self, texts: &[&[u32]]) -> Result<Vec<f32>, KernelError> {
        let rows = texts.len();
        let len = texts.iter().map(|t| t.len()).max().unwrap_or(0);
        // The token ids, then the mask, in one buffer: one copy to the device.
        let mut ids_and_mask = Vec::with_capacity(2 * rows * len);
        for t in texts {
            ids_and_mask.extend_from_slice(t);
            ids_and_mask.resize(ids_and_mask.len() + len - t.len(), self.pad_id);
        }
        for t in texts {
            ids_and_mask.resize(ids_and_mask.len() + t.len(), 1u32);
            ids_and_mask.resize(ids_and_mask.len() + len - t.len(), 0u32);
        }
        let err = KernelError::candle("sentence model: forward");
        let both = Tensor::from_vec(ids_and_mask, (2, rows, len), &self.device).map_err(&err)?;
        let (ids, mask) = (both.get(0).map_err(&err)?, both.get(1).map_err(&err)?);
        let hidden = self.model.forward(&ids, &mask).and_then(|h| h.to_dtype(CDType::F32)).map_err(&err)?;
        // Mean over the tokens the mask keeps.
        let mask = mask.to_dtype(CDType::F32).map_err(&err)?.unsqueeze(2).map_err(&err)?;
        let summed = hidden.broadcast_mul(&mask).and_then(|h| h.sum(1)).map_err(&err)?;
        let counts = mask.sum(1).and_then(|c| c.clamp(1e-9f32, f32::MAX)).map_err(&err)?;
        let mut pooled = summed.broadcast_div(&counts).map_err(&err)?;
        if self.normalize {
            let norm = pooled.sqr().and_then(|s| s.sum_keepdim(1)).and_then(|s| s.sqrt()).map_err(&err)?;
            let norm = norm.clamp(1e-12f32, f32::MAX).map_err(&err)?;
            pooled = pooled.broadcast_div(&norm).map_err(&err)?;
        }
        pooled.flatten_all().and_then(|p| p.to_vec1::<f32>()).map_err(&err)
    }
}

impl BatchKernel for SentenceEmbedder {
    fn forward(&mut self, inputs: Vec<Column>) -> Result<Vec<Column>, KernelError> {
        const OP: &str = "sentence model";
        let inputs = super::single_input(OP, inputs)?;
        let Column::Str(texts) = inputs else {
            return Err(KernelError::InputType { op: OP, expected: "str", found: inputs.type_name() });
        };
        let width = self.width;
        let texts: Vec<String> = texts.iter().map(|t| t.to_string()).collect();
        Ok(vec![Column::Tensor { width, data: self.embed(texts)? }])
    }
}

#[cfg(test)]
mod tests {
    use super::{length_groups, PASS_COST_TOKENS};

    /// Every text in exactly one pass.
    fn covers(passes: &[Vec<usize>], n: usize) {
        let mut all: Vec<usize> = passes.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..n).collect::<Vec<_>>(), "{passes:?}");
    }

    #[test]
    fn texts_of_one_length_are_one_pass() {
        let passes = length_groups(&[12; 32]);
        assert_eq!(passes.len(), 1);
        covers(&passes, 32);
    }

    #[test]
    fn short_and_long_texts_are_split_when_padding_costs_more_than_a_pass() {
        // Four 5-token and four 100-token texts, interleaved: one pass would pad the
        // short ones by 4 × 95 tokens, far more than a second pass costs.
        let lengths = [5, 100, 5, 100, 5, 100, 5, 100];
        let passes = length_groups(&lengths);
        assert_eq!(passes, vec![vec![0, 2, 4, 6], vec![1, 3, 5, 7]]);
    }

    #[test]
    fn small_differences_stay_in_one_pass() {
        // Padding 3 texts by 2 tokens (6) costs less than a pass.
        let passes = length_groups(&[10, 12, 10, 10]);
        const { assert!(6 < PASS_COST_TOKENS) };
        assert_eq!(passes.len(), 1);
        covers(&passes, 4);
    }

    #[test]
    fn the_cut_is_the_cheapest() {
        // Against every way to cut the sorted order (2^(n-1) of them) for a few batches.
        for lengths in [vec![3, 40, 7, 22, 9, 31, 5], vec![8, 8, 9, 30, 31, 60, 2, 2, 2]] {
            let cost = |passes: &[Vec<usize>]| -> usize {
                passes.iter().map(|p| PASS_COST_TOKENS + p.len() * p.iter().map(|&i| lengths[i]).max().unwrap()).sum()
            };
            let passes = length_groups(&lengths);
            covers(&passes, lengths.len());
            let mut sorted: Vec<usize> = (0..lengths.len()).collect();
            sorted.sort_by_key(|&i| lengths[i]);
            let n = lengths.len();
            let cheapest = (0..1u32 << (n - 1))
                .map(|cuts| {
                    let mut ps = vec![vec![sorted[0]]];
                    for (k, &text) in sorted.iter().enumerate().skip(1) {
                        if cuts >> (k - 1) & 1 == 1 {
                            ps.push(Vec::new());
                        }
                        ps.last_mut().unwrap().push(text);
                    }
                    cost(&ps)
                })
                .min()
                .unwrap();
            assert_eq!(cost(&passes), cheapest, "{lengths:?}: {passes:?}");
        }
    }

    #[test]
    fn no_texts_no_passes() {
        assert!(length_groups(&[]).is_empty());
    }
}
