//! A BERT encoder on candle: the architecture of all-MiniLM-L6-v2 and other
//! BERT-family sentence encoders, written for serving.
//!
//! It computes what candle-transformers' `BertModel` computes (the embedding sum and
//! its layer norm, then per layer: self-attention with an additive padding mask, a
//! dense output with residual and layer norm, a feed-forward block with residual and
//! layer norm), from the same weight files, and a test holds the two together. It
//! differs where profiling the serving path showed time going (see BENCHMARKS.md):
//!
//! - **GELU**: the exact (erf) GELU ran candle's scalar `libm::erff` per element, a
//!   large part of a forward pass on the CPU (BENCHMARKS.md, "Sentence embeddings",
//!   the profile). Here it is a branch-free rational erf (the one
//!   Eigen and XLA use for f32) the compiler vectorises; it is within 5e-7 of `erff`
//!   everywhere (eight f32 steps below 1; tested). Other devices keep candle's
//!   `gelu_erf`.
//! - **One projection for query, key and value**: the three `hidden × hidden` weights
//!   are stacked into one `3·hidden × hidden` matrix at load, so a layer runs one
//!   matrix product instead of three, and the query rows are pre-scaled by
//!   `1/√head_size` so the attention scores need no separate scaling pass.
//! - **Softmax** over the last dimension in candle-nn's fused kernel (one pass per
//!   row) instead of the composed max / subtract / exp / sum / divide.
//!
//! Token types are all zero (single-sentence inputs), as for sentence embeddings.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Module, Shape, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};

/// The fields of a BERT `config.json` this encoder reads (others are ignored).
#[derive(Clone, Debug, serde::Deserialize)]
pub struct BertConfig {
    /// Rows of the word embedding table.
    pub vocab_size: usize,
    /// Width of every token's hidden state.
    pub hidden_size: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer (`hidden_size` must be a multiple).
    pub num_attention_heads: usize,
    /// Width of the feed-forward block.
    pub intermediate_size: usize,
    /// The feed-forward activation: `gelu` (exact), `gelu_new` / `gelu_pytorch_tanh`
    /// (tanh approximation) or `relu`.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Positions the model has embeddings for: the longest input.
    pub max_position_embeddings: usize,
    /// Rows of the token type table.
    pub type_vocab_size: usize,
    /// Layer norm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
}

fn default_act() -> String {
    "gelu".into()
}

fn default_eps() -> f64 {
    1e-12
}

impl BertConfig {
    /// What is wrong with this configuration for this encoder, if anything.
    pub fn check(&self) -> Result<(), String> {
        if self.num_attention_heads == 0 || !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        Activation::from_name(&self.hidden_act).map(|_| ())
    }
}

/// The feed-forward activation.
#[derive(Clone, Copy, Debug)]
enum Activation {
    GeluErf,
    GeluTanh,
    Relu,
}

impl Activation {
    fn from_name(name: &str) -> Result<Activation, String> {
        match name {
            "gelu" => Ok(Activation::GeluErf),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Activation::GeluTanh),
            "relu" => Ok(Activation::Relu),
            other => Err(format!("hidden_act '{other}' is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu)")),
        }
    }

    fn apply(self, xs: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Activation::GeluErf if xs.device().is_cpu() && xs.dtype() == DType::F32 => {
                xs.contiguous()?.apply_op1_no_bwd(&FastGeluErf)
            }
            Activation::GeluErf => xs.gelu_erf(),
            Activation::GeluTanh => xs.gelu(),
            Activation::Relu => xs.relu(),
        }
    }
}

/// A BERT encoder: token ids and attention mask in, last hidden states out (in the
/// dtype its weights were loaded in). A clone shares the weights.
#[derive(Clone)]
pub struct Bert {
    words: Embedding,
    positions: Tensor,
    token_type: Tensor,
    norm: LayerNorm,
    layers: Vec<EncoderLayer>,
}

#[derive(Clone)]
struct EncoderLayer {
    /// Query, key and value stacked (query rows pre-scaled by `1/√head_size`).
    qkv: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    up: Linear,
    down: Linear,
    output_norm: LayerNorm,
    heads: usize,
    activation: Activation,
}

impl Bert {
    /// Reads the weights (names as Hugging Face's `BertModel` saves them, with or without
    /// a `bert.` prefix).
    pub fn load(vb: VarBuilder, config: &BertConfig) -> candle_core::Result<Bert> {
        config.check().map_err(candle_core::Error::msg)?;
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") { vb.pp("bert") } else { vb };
        let h = config.hidden_size;
        let eps = config.layer_norm_eps;
        let e = vb.pp("embeddings");
        let words = candle_nn::embedding(config.vocab_size, h, e.pp("word_embeddings"))?;
        let positions = e.pp("position_embeddings").get((config.max_position_embeddings, h), "weight")?;
        let token_type = e.pp("token_type_embeddings").get((config.type_vocab_size, h), "weight")?.narrow(0, 0, 1)?;
        let norm = candle_nn::layer_norm(h, eps, e.pp("LayerNorm"))?;
        let activation = Activation::from_name(&config.hidden_act).map_err(candle_core::Error::msg)?;
        let heads = config.num_attention_heads;
        let scale = 1.0 / ((h / heads) as f64).sqrt();
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let l = vb.pp(format!("encoder.layer.{i}"));
                let s = l.pp("attention.self");
                let part = |name: &str, scale: f64| -> candle_core::Result<(Tensor, Tensor)> {
                    let p = s.pp(name);
                    Ok(((p.get((h, h), "weight")? * scale)?, (p.get(h, "bias")? * scale)?))
                };
                let (q, k, v) = (part("query", scale)?, part("key", 1.0)?, part("value", 1.0)?);
                let qkv = Linear::new(Tensor::cat(&[&q.0, &k.0, &v.0], 0)?, Some(Tensor::cat(&[&q.1, &k.1, &v.1], 0)?));
                Ok(EncoderLayer {
                    qkv,
                    attention_out: candle_nn::linear(h, h, l.pp("attention.output.dense"))?,
                    attention_norm: candle_nn::layer_norm(h, eps, l.pp("attention.output.LayerNorm"))?,
                    up: candle_nn::linear(h, config.intermediate_size, l.pp("intermediate.dense"))?,
                    down: candle_nn::linear(config.intermediate_size, h, l.pp("output.dense"))?,
                    output_norm: candle_nn::layer_norm(h, eps, l.pp("output.LayerNorm"))?,
                    heads,
                    activation,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Bert { words, positions, token_type, norm, layers })
    }

    /// The last hidden states `(batch, tokens, hidden)` of `ids` `(batch, tokens)`, u32;
    /// `mask` (same shape, u32) is 1 for real tokens and 0 for padding.
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let (_, len) = ids.dims2()?;
        let position = self.positions.narrow(0, 0, len)?.broadcast_add(&self.token_type)?;
        let mut xs = self.norm.forward(&self.words.forward(ids)?.broadcast_add(&position)?)?;
        // Padding gets the lowest score, so softmax gives it no weight: (mask - 1) · MAX
        // in f32. In half precision, f32::MAX would round to infinity: -10^4 there, which
        // both halves hold and whose exp is 0.
        let low = if xs.dtype() == DType::F32 { f64::from(f32::MAX) } else { 1e4 };
        let bias = ((mask.to_dtype(DType::F32)? - 1.0)? * low)?.to_dtype(xs.dtype())?.unsqueeze(1)?.unsqueeze(1)?;
        for layer in &self.layers {
            xs = layer.forward(&xs, &bias)?;
        }
        Ok(xs)
    }
}

impl EncoderLayer {
    fn forward(&self, xs: &Tensor, bias: &Tensor) -> candle_core::Result<Tensor> {
        let (b, len, h) = xs.dims3()?;
        let head = h / self.heads;
        // (3, batch, heads, tokens, head) from (batch, tokens, 3·hidden).
        let qkv = self.qkv.forward(xs)?.reshape((b, len, 3, self.heads, head))?.permute((2, 0, 3, 1, 4))?;
        let q = qkv.get(0)?.contiguous()?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let scores = q.matmul(&k.t()?)?.broadcast_add(bias)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, len, h))?;
        let xs = self.attention_norm.forward(&(self.attention_out.forward(&context)? + xs)?)?;
        let up = self.activation.apply(&self.up.forward(&xs)?)?;
        self.output_norm.forward(&(self.down.forward(&up)? + xs)?)
    }
}

/// The exact GELU, `x · (1 + erf(x/√2)) / 2`, over contiguous f32 on the CPU.
struct FastGeluErf;

impl CustomOp1 for FastGeluErf {
    fn name(&self) -> &'static str {
        "fast-gelu-erf"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else { candle_core::bail!("fast-gelu-erf takes f32") };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("fast-gelu-erf takes a contiguous tensor")
        };
        let input = &data[start..end];
        let mut out = vec![0f32; input.len()];
        for (o, &x) in out.iter_mut().zip(input) {
            *o = 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
        }
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// `erf(x)` without branches (so loops over it vectorise): `x · P(x²) / Q(x²)` on `x`
/// clamped to ±3.8325 (beyond which `erf` is ±1 in f32), with the rational approximation
/// Eigen and XLA use for f32 (degree 13 over degree 8), within 5e-7 of `libm::erff`.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    const ALPHA: [f32; 7] = [
        -2.726_142_3e-10,
        2.770_681_4e-8,
        -2.101_024e-6,
        -5.692_506_4e-5,
        -7.349_906_3e-4,
        -2.954_600_1e-3,
        -1.609_603_3e-2,
    ];
    const BETA: [f32; 5] = [-1.456_607_2e-5, -2.133_740_6e-4, -1.682_827e-3, -7.373_329e-3, -1.426_474e-2];
    let x = x.clamp(-3.832_507, 3.832_507);
    let x2 = x * x;
    let p = ALPHA.iter().fold(0.0, |acc, &a| acc * x2 + a);
    let q = BETA.iter().fold(0.0, |acc, &b| acc * x2 + b);
    (x * p / q).clamp(-1.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::erf;

    #[test]
    fn erf_is_within_5e_7_of_libm_everywhere() {
        let mut worst = (0f32, 0f32);
        for i in -200_000..=200_000 {
            let x = i as f32 * 5e-5;
            let err = (erf(x) - libm_erf(x)).abs();
            if err > worst.1 {
                worst = (x, err);
            }
        }
        for x in [-30.0f32, -9.5, 9.5, 30.0, f32::MIN, f32::MAX, 0.0, -0.0] {
            assert!((erf(x) - libm_erf(x)).abs() < 5e-7, "erf({x}) = {}", erf(x));
        }
        assert!(worst.1 < 5e-7, "worst at x = {}: {}", worst.0, worst.1);
    }

    #[test]
    fn erf_is_odd_and_saturates() {
        assert_eq!(erf(0.0), 0.0);
        // One f32 step below 1 at most.
        assert!((erf(20.0) - 1.0).abs() <= 6e-8 && (erf(-20.0) + 1.0).abs() <= 6e-8);
        for x in [0.1f32, 0.7, 1.3, 2.9] {
            assert_eq!(erf(-x), -erf(x));
        }
    }

    /// candle's: `libm::erff`, what the exact GELU used before.
    fn libm_erf(x: f32) -> f32 {
        candle_core::cpu::erf::erf_f32(x)
    }
}
