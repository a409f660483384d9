//! A custom kernel: weir's whole command line, plus a model written in Rust with candle
//! and used from YAML by name, without forking weir.
//!
//! The kernel `digits_net` is scikit-learn's digits classifier defined in code: it
//! standardises the 64 pixels, runs a two-layer network (relu, then softmax), and gives
//! two outputs, the label (`i64`) and the class probabilities (`f32[10]`). Its weights
//! come from safetensors files named in the node's `params:` (here the weights of
//! `graphs/digits.yaml`, written by `cargo run --release --example train_digits`).
//!
//! Run it as you run `weir`:
//!
//! ```text
//! cargo run --release --example custom_kernel -- check examples/custom_kernel/digits.yaml
//! cargo run --release --example custom_kernel -- serve examples/custom_kernel/digits.yaml --port 8080
//! curl -s localhost:8080/graphs/digits-custom -d @graphs/digits/request.json
//! ```
#![allow(clippy::unwrap_used)] // an example fails loudly on the first surprise

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use candle_core::{DType, Tensor};
use serde::Deserialize;
use weir_engine::{FormatArgs, FormatError, Kernels};
use weir_operators::kernel::device::DeviceSpec;
use weir_operators::kernel::signature::{Accepts, LoadedKernel, Signature};
use weir_operators::kernel::{single_input, BatchKernel, KernelError, KernelFactory};
use weir_operators::{Column, FieldType};

/// The kernel's `params:`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// Safetensors with `layers.0.weight` `[hidden, 64]`, `layers.0.bias`,
    /// `layers.1.weight` `[10, hidden]`, `layers.1.bias`.
    weights: PathBuf,
    /// Safetensors with `mean` and `std`, `[64]` each.
    scaler: PathBuf,
}

/// One replica's model: every tensor on its device.
struct DigitsNet {
    mean: Tensor,
    std: Tensor,
    /// `[64, hidden]`, `[hidden]`, `[hidden, 10]`, `[10]`.
    layers: [(Tensor, Tensor); 2],
}

const OP: &str = "digits_net";
const PIXELS: usize = 64;
const CLASSES: usize = 10;

impl DigitsNet {
    /// Loads the weights, `params`' files relative to `dir`, onto `device`.
    fn load(params: &Params, dir: &Path, device: DeviceSpec) -> Result<DigitsNet, FormatError> {
        let device = device.candle()?;
        let read = |path: &PathBuf| {
            let path = dir.join(path);
            candle_core::safetensors::load(&path, &device).map_err(|e| format!("{}: {e}", path.display()))
        };
        let (weights, scaler) = (read(&params.weights)?, read(&params.scaler)?);
        let get = |tensors: &std::collections::HashMap<String, Tensor>, name: &str, dims: &[usize]| {
            let t = tensors.get(name).ok_or_else(|| format!("no tensor '{name}'"))?;
            if t.dims() != dims || t.dtype() != DType::F32 {
                return Err(format!("tensor '{name}' is {:?} {:?}, expected F32 {dims:?}", t.dtype(), t.dims()));
            }
            Ok(t.clone())
        };
        let hidden = weights.get("layers.0.bias").map(|b| b.dims1()).transpose()?.unwrap_or(0);
        let layer = |i: usize, (out, inp): (usize, usize)| -> Result<(Tensor, Tensor), FormatError> {
            let w = get(&weights, &format!("layers.{i}.weight"), &[out, inp])?.t()?.contiguous()?;
            Ok((w, get(&weights, &format!("layers.{i}.bias"), &[out])?))
        };
        Ok(DigitsNet {
            mean: get(&scaler, "mean", &[PIXELS])?,
            std: get(&scaler, "std", &[PIXELS])?,
            layers: [layer(0, (hidden, PIXELS))?, layer(1, (CLASSES, hidden))?],
        })
    }

    fn probabilities(&self, pixels: Vec<f32>, rows: usize) -> candle_core::Result<Tensor> {
        let x = Tensor::from_vec(pixels, (rows, PIXELS), self.mean.device())?;
        let x = x.broadcast_sub(&self.mean)?.broadcast_div(&self.std)?;
        let [(w0, b0), (w1, b1)] = &self.layers;
        let h = x.matmul(w0)?.broadcast_add(b0)?.relu()?;
        candle_nn::ops::softmax_last_dim(&h.matmul(w1)?.broadcast_add(b1)?)
    }
}

impl BatchKernel for DigitsNet {
    fn forward(&mut self, inputs: Vec<Column>) -> Result<Vec<Column>, KernelError> {
        let rows = inputs.first().map_or(0, Column::len);
        let Column::Tensor { width: PIXELS, data } = single_input(OP, inputs)? else {
            return Err(KernelError::InputType { op: OP, expected: "f32[64]", found: "another type".into() });
        };
        let probs = self.probabilities(data, rows).map_err(KernelError::candle("digits_net: forward"))?;
        let labels =
            probs.argmax(1).and_then(|l| l.to_vec1::<u32>()).map_err(KernelError::candle("digits_net: argmax"))?;
        let probs = probs.flatten_all().and_then(|p| p.to_vec1::<f32>()).map_err(KernelError::candle("digits_net"))?;
        Ok(vec![
            Column::I64(labels.into_iter().map(i64::from).collect()),
            Column::Tensor { width: CLASSES, data: probs },
        ])
    }
}

/// The format `digits_net`: reads the node's params, checks the weights once (so a bad
/// file fails `check`), and gives each replica its own instance, on the node's device
/// (a GPU with weir built with `--features cuda`). It computes in f32 and says so when a
/// graph asks for another `dtype`.
fn digits_net(args: &FormatArgs<'_>) -> Result<LoadedKernel, FormatError> {
    args.dtype.f32_only("digits_net", "it computes in f32")?;
    let params: Params = args.params()?;
    DigitsNet::load(&params, args.base_dir, args.device)?;
    let description = format!("digits_net {} (standardize, relu layer, softmax)", params.weights.display());
    let (params, dir, device) = (Arc::new(params), args.base_dir.to_path_buf(), args.device);
    let factory: KernelFactory = Arc::new(move || {
        let net = DigitsNet::load(&params, &dir, device).map_err(|e| KernelError::Custom(e.to_string()))?;
        Ok(Box::new(net) as Box<dyn BatchKernel>)
    });
    Ok(LoadedKernel {
        description,
        factory,
        signature: Signature {
            inputs: vec![("pixels".into(), Accepts::Width(PIXELS))],
            outputs: vec![
                ("label".into(), FieldType::scalar(weir_operators::DType::I64)),
                ("probs".into(), FieldType::vector(CLASSES)),
            ],
        },
    })
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    weir::cli::main_with(Kernels::builtin().with("digits_net", digits_net))
}
