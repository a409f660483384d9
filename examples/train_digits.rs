//! Trains the models of `graphs/digits.yaml` and `graphs/digits-early-exit.yaml` on the
//! train split of scikit-learn's digits, with candle, deterministically (fixed
//! initialisation, full-batch Adam), and writes:
//! - `graphs/digits/standardize.safetensors`: `mean`, `std` of the train pixels;
//! - `graphs/digits/softmax.safetensors`: softmax regression 64 -> 10;
//! - `graphs/digits/mlp.safetensors`: MLP 64 -> 32 -> 10, ReLU.
//!
//! Run: `cargo run --release --example train_digits`
#![allow(clippy::unwrap_used)] // a test or benchmark fails loudly on the first surprise

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use weir::datasets::{digits, Split};

/// A deterministic uniform initialiser (SplitMix64), so reruns give the same weights.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self, bound: f32) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let unit = (z >> 40) as f32 / (1u64 << 24) as f32;
        (2.0 * unit - 1.0) * bound
    }
}

fn dense(rng: &mut Rng, inputs: usize, outputs: usize, dev: &Device) -> anyhow::Result<(Var, Var)> {
    let bound = (1.0 / inputs as f32).sqrt();
    let w: Vec<f32> = (0..inputs * outputs).map(|_| rng.uniform(bound)).collect();
    Ok((Var::from_tensor(&Tensor::from_vec(w, (outputs, inputs), dev)?)?, Var::zeros(outputs, DType::F32, dev)?))
}

fn forward(layers: &[(Var, Var)], x: &Tensor) -> candle_core::Result<Tensor> {
    let mut x = x.clone();
    for (i, (w, b)) in layers.iter().enumerate() {
        x = x.matmul(&w.as_tensor().t()?)?.broadcast_add(b.as_tensor())?;
        if i + 1 < layers.len() {
            x = x.relu()?;
        }
    }
    Ok(x)
}

fn accuracy(layers: &[(Var, Var)], x: &Tensor, y: &Tensor) -> anyhow::Result<f32> {
    let pred = forward(layers, x)?.argmax(1)?;
    let hits = pred.eq(y)?.to_dtype(DType::F32)?.mean_all()?.to_scalar::<f32>()?;
    Ok(hits)
}

fn train(name: &str, layers: &[(Var, Var)], x: &Tensor, y: &Tensor, steps: usize) -> anyhow::Result<()> {
    let vars: Vec<Var> = layers.iter().flat_map(|(w, b)| [w.clone(), b.clone()]).collect();
    let params = ParamsAdamW { lr: 0.01, weight_decay: 1e-4, ..Default::default() };
    let mut opt = AdamW::new(vars, params)?;
    for step in 0..steps {
        let loss = candle_nn::loss::cross_entropy(&forward(layers, x)?, y)?;
        opt.backward_step(&loss)?;
        if step % 100 == 0 || step + 1 == steps {
            println!("{name}: step {step:4} loss {:.4}", loss.to_scalar::<f32>()?);
        }
    }
    Ok(())
}

fn save(layers: &[(Var, Var)], path: &std::path::Path) -> anyhow::Result<()> {
    let mut tensors = HashMap::new();
    for (i, (w, b)) in layers.iter().enumerate() {
        tensors.insert(format!("layers.{i}.weight"), w.as_tensor().clone());
        tensors.insert(format!("layers.{i}.bias"), b.as_tensor().clone());
    }
    candle_core::safetensors::save(&tensors, path)?;
    println!("wrote {}", path.display());
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let dev = Device::Cpu;
    let (train_set, test_set) = (digits(Split::Train)?, digits(Split::Test)?);
    let to_tensors = |set: &[weir::datasets::Digit]| -> anyhow::Result<(Tensor, Tensor)> {
        let x: Vec<f32> = set.iter().flat_map(|d| d.pixels.iter().copied()).collect();
        let y: Vec<u32> = set.iter().map(|d| u32::from(d.label)).collect();
        Ok((Tensor::from_vec(x, (set.len(), 64), &dev)?, Tensor::from_vec(y, set.len(), &dev)?))
    };
    let (x_train, y_train) = to_tensors(&train_set)?;
    let (x_test, y_test) = to_tensors(&test_set)?;

    // Standardisation from the train split; constant pixels keep std 1.
    let mean = x_train.mean_keepdim(0)?;
    let var = x_train.broadcast_sub(&mean)?.sqr()?.mean_keepdim(0)?;
    let std_values: Vec<f32> =
        var.sqrt()?.flatten_all()?.to_vec1::<f32>()?.into_iter().map(|s| if s < 1e-6 { 1.0 } else { s }).collect();
    let std = Tensor::from_vec(std_values, (1, 64), &dev)?;
    let scale = |x: &Tensor| x.broadcast_sub(&mean)?.broadcast_div(&std);
    let (xs_train, xs_test) = (scale(&x_train)?, scale(&x_test)?);

    let dir = weir::datasets::graphs_dir().join("digits");
    std::fs::create_dir_all(&dir)?;
    let params = HashMap::from([("mean".to_string(), mean.flatten_all()?), ("std".to_string(), std.flatten_all()?)]);
    candle_core::safetensors::save(&params, dir.join("standardize.safetensors"))?;

    let mut rng = Rng(42);
    let softmax = vec![dense(&mut rng, 64, 10, &dev)?];
    train("softmax", &softmax, &xs_train, &y_train, 300)?;
    println!("softmax: test accuracy {:.4}", accuracy(&softmax, &xs_test, &y_test)?);
    save(&softmax, &dir.join("softmax.safetensors"))?;

    let mlp = vec![dense(&mut rng, 64, 32, &dev)?, dense(&mut rng, 32, 10, &dev)?];
    train("mlp", &mlp, &xs_train, &y_train, 400)?;
    println!("mlp: test accuracy {:.4}", accuracy(&mlp, &xs_test, &y_test)?);
    save(&mlp, &dir.join("mlp.safetensors"))?;
    Ok(())
}
