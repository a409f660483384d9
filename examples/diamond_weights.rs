//! Writes the weights of `graphs/diamond.yaml`: m1 computes 1·a, m2 computes 2·b.
//!
//! Run: `cargo run --example diamond_weights`
#![allow(clippy::unwrap_used)] // a test or benchmark fails loudly on the first surprise

use std::collections::HashMap;

use candle_core::{Device, Tensor};

fn main() -> anyhow::Result<()> {
    let dir = weir::datasets::graphs_dir().join("diamond");
    std::fs::create_dir_all(&dir)?;
    for (name, w) in [("m1", 1.0f32), ("m2", 2.0f32)] {
        let tensors = HashMap::from([
            ("layers.0.weight".to_string(), Tensor::new(&[[w]], &Device::Cpu)?),
            ("layers.0.bias".to_string(), Tensor::new(&[0.0f32], &Device::Cpu)?),
        ]);
        let path = dir.join(format!("{name}.safetensors"));
        candle_core::safetensors::save(&tensors, &path)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
