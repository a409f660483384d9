//! Dense models on candle: softmax/logistic regression and multi-layer perceptrons.
//!
//! Both read the same safetensors layout: for layer `i` (from 0), a tensor
//! `layers.i.weight` of shape `[out, in]` and `layers.i.bias` of shape `[out]`, all `f32`.
//! A `linear` model has exactly one layer; an `mlp` has one or more, with the hidden
//! activation between layers and the output activation after the last.
//!
//! The input field feeds `in` numbers per row (an `f32` scalar is one number); the output
//! is an `f32[out]` vector, or an `f32` scalar when `out` is 1. The weights are held and
//! the layers computed in the node's [`Precision`] (f32 unless `dtype:` says otherwise):
//! inputs are cast to it on the device, outputs back to f32.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use candle_core::{DType as CDType, Device, Tensor};

use super::dense_host::{self, HostDense};
use super::device::{DeviceSpec, OncePerDevice, Precision};
use super::product::product;
use super::softmax;
use super::{BatchKernel, KernelError, KernelFactory};
use crate::column::Column;
use crate::value::FieldType;

/// The architecture of a model node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// One dense layer (softmax regression with `softmax`, logistic with `sigmoid`).
    Linear,
    /// Dense layers with a hidden activation between them.
    Mlp,
}

impl FromStr for Arch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "linear" => Ok(Arch::Linear),
            "mlp" => Ok(Arch::Mlp),
            other => Err(format!("unknown model architecture '{other}' (expected 'linear' or 'mlp')")),
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Arch::Linear => "linear",
            Arch::Mlp => "mlp",
        })
    }
}

/// An element-wise (or, for softmax, row-wise) activation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Activation {
    /// The identity.
    #[default]
    None,
    /// max(0, x).
    Relu,
    /// tanh(x).
    Tanh,
    /// 1 / (1 + e^-x).
    Sigmoid,
    /// Softmax over the row.
    Softmax,
}

impl FromStr for Activation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" | "identity" => Ok(Activation::None),
            "relu" => Ok(Activation::Relu),
            "tanh" => Ok(Activation::Tanh),
            "sigmoid" => Ok(Activation::Sigmoid),
            "softmax" => Ok(Activation::Softmax),
            other => Err(format!("unknown activation '{other}' (expected none, relu, tanh, sigmoid or softmax)")),
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Activation::None => "none",
            Activation::Relu => "relu",
            Activation::Tanh => "tanh",
            Activation::Sigmoid => "sigmoid",
            Activation::Softmax => "softmax",
        })
    }
}

impl Activation {
    /// Whether [`DenseForward`]'s host loops compute this activation bit for bit as
    /// candle does: none, relu (`max(0)`), and softmax where [`softmax::exact`].
    fn on_host_exactly(self) -> bool {
        match self {
            Activation::None | Activation::Relu => true,
            Activation::Softmax => softmax::exact(),
            Activation::Tanh | Activation::Sigmoid => false,
        }
    }

    fn apply(self, x: Tensor) -> candle_core::Result<Tensor> {
        match self {
            Activation::None => Ok(x),
            Activation::Relu => x.relu(),
            Activation::Tanh => x.tanh(),
            Activation::Sigmoid => candle_nn::ops::sigmoid(&x),
            Activation::Softmax => candle_nn::ops::softmax_last_dim(&x),
        }
    }
}

/// Why a weights file cannot serve a model node. The graph author's fault.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// The file does not exist or cannot be read.
    #[error("cannot read weights file {path}: {reason}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// The file is not a valid safetensors file.
    #[error("weights file {path} is not a valid safetensors file: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// A tensor the architecture needs is absent.
    #[error("weights file {path} has no tensor '{name}' (it has: {found})")]
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// The tensor expected.
        name: String,
        /// The tensors present.
        found: String,
    },
    /// A tensor has the wrong shape or type.
    #[error("weights file {path}: tensor '{name}' is {found}, expected {expected}")]
    BadTensor {
        /// The file.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// What it is.
        found: String,
        /// What it should be.
        expected: String,
    },
    /// The layers do not match the architecture or the declared sizes.
    #[error("weights file {path}: {reason}")]
    BadLayers {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// One dense layer's parameters, host-side.
#[derive(Clone, Debug)]
pub struct DenseLayer {
    /// Row-major `[out, in]`.
    pub weight: Vec<f32>,
    /// `[out]`.
    pub bias: Vec<f32>,
    /// Input width.
    pub inputs: usize,
    /// Output width.
    pub outputs: usize,
}

/// A validated, loaded dense model: what every replica builds its own instance from.
#[derive(Clone, Debug)]
pub struct DenseModel {
    /// The architecture.
    pub arch: Arch,
    /// Layers in order.
    pub layers: Vec<DenseLayer>,
    /// Between layers (MLP only).
    pub hidden_activation: Activation,
    /// After the last layer.
    pub output_activation: Activation,
    /// The file it came from.
    pub path: PathBuf,
}

impl DenseModel {
    /// Loads and validates `path` for `arch`. When `sizes` is given (`[in, h1, ..., out]`),
    /// the file must match it exactly.
    pub fn load(
        path: &Path,
        arch: Arch,
        sizes: Option<&[usize]>,
        hidden_activation: Activation,
        output_activation: Activation,
    ) -> Result<Self, WeightsError> {
        let bytes = std::fs::read(path)
            .map_err(|e| WeightsError::Unreadable { path: path.to_path_buf(), reason: e.to_string() })?;
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .map_err(|e| WeightsError::Malformed { path: path.to_path_buf(), reason: e.to_string() })?;
        let layers = read_layers(path, &tensors)?;
        if arch == Arch::Linear && layers.len() != 1 {
            return Err(WeightsError::BadLayers {
                path: path.to_path_buf(),
                reason: format!("a linear model has exactly one layer, the file has {}", layers.len()),
            });
        }
        let found: Vec<usize> = std::iter::once(layers[0].inputs).chain(layers.iter().map(|l| l.outputs)).collect();
        if let Some(sizes) = sizes {
            if sizes != found.as_slice() {
                return Err(WeightsError::BadLayers {
                    path: path.to_path_buf(),
                    reason: format!("the graph declares layer sizes {sizes:?}, the file has {found:?}"),
                });
            }
        }
        Ok(DenseModel { arch, layers, hidden_activation, output_activation, path: path.to_path_buf() })
    }

    /// Builds a model from parameters already in memory (the builder API, tests).
    pub fn from_layers(
        arch: Arch,
        layers: Vec<DenseLayer>,
        hidden_activation: Activation,
        output_activation: Activation,
    ) -> Self {
        DenseModel { arch, layers, hidden_activation, output_activation, path: PathBuf::from("<memory>") }
    }

    /// The number of inputs per row.
    pub fn input_width(&self) -> usize {
        self.layers.first().map_or(0, |l| l.inputs)
    }

    /// The number of outputs per row.
    pub fn output_width(&self) -> usize {
        self.layers.last().map_or(0, |l| l.outputs)
    }

    /// `[in, h1, ..., out]`.
    pub fn sizes(&self) -> Vec<usize> {
        std::iter::once(self.input_width()).chain(self.layers.iter().map(|l| l.outputs)).collect()
    }

    /// The type of the output field: `f32` when there is one output, else `f32[out]`.
    pub fn output_type(&self) -> FieldType {
        match self.output_width() {
            1 => FieldType::scalar(crate::value::DType::F32),
            n => FieldType::vector(n),
        }
    }

    /// Moves a copy of the parameters to `device`, ready for forward passes in f32.
    pub fn instantiate(&self, device: &Device) -> candle_core::Result<DenseForward> {
        self.instantiate_as(device, Precision::F32)
    }

    /// Moves a copy of the parameters to `device`, in `dtype`, ready for forward passes.
    pub fn instantiate_as(&self, device: &Device, dtype: Precision) -> candle_core::Result<DenseForward> {
        let mut layers = Vec::with_capacity(self.layers.len());
        let dtype = dtype.candle();
        for layer in &self.layers {
            // Stored as [out, in]; keep [in, out] contiguous so forward is one plain matmul.
            let w = Tensor::from_slice(&layer.weight, (layer.outputs, layer.inputs), device)?
                .t()?
                .to_dtype(dtype)?
                .contiguous()?;
            let b = Tensor::from_slice(&layer.bias, layer.outputs, device)?.to_dtype(dtype)?;
            layers.push((w, b));
        }
        // Tiny models in f32 on the CPU compute in plain loops (see `dense_host`).
        let host = match (device, dtype) {
            (Device::Cpu, CDType::F32) => {
                HostDense::for_layers(&self.layers, self.hidden_activation, self.output_activation).map(Arc::new)
            }
            _ => None,
        };
        Ok(DenseForward {
            layers,
            host,
            hidden: self.hidden_activation,
            output: self.output_activation,
            device: device.clone(),
            dtype,
            host_layers: (matches!((device, dtype), (Device::Cpu, CDType::F32))
                && [self.hidden_activation, self.output_activation].iter().all(|a| a.on_host_exactly()))
            .then(|| self.layers.iter().map(ProductLayer::of).collect()),
            input_width: self.input_width(),
            output_type: self.output_type(),
        })
    }

    /// A factory building each replica's instance on `device` in `dtype`: its own on
    /// the CPU, one shared by the replicas of a GPU ([`OncePerDevice`]).
    pub fn factory(self: &Arc<Self>, device: DeviceSpec, dtype: Precision) -> KernelFactory {
        let model = Arc::clone(self);
        let once = Arc::new(OncePerDevice::default());
        Arc::new(move || {
            let forward = once.get(device, || {
                let candle = device.candle()?;
                model.instantiate_as(&candle, dtype).map_err(KernelError::candle("dense model: instantiate"))
            })?;
            Ok(Box::new(forward) as Box<dyn BatchKernel>)
        })
    }
}

fn read_layers(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<Vec<DenseLayer>, WeightsError> {
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let found = names.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
    let mut layers = Vec::new();
    loop {
        let i = layers.len();
        let w_name = format!("layers.{i}.weight");
        let b_name = format!("layers.{i}.bias");
        let Some(w) = tensors.get(&w_name) else {
            if i == 0 {
                return Err(WeightsError::MissingTensor {
                    path: path.to_path_buf(),
                    name: w_name,
                    found: if found.is_empty() { "no tensors".into() } else { found },
                });
            }
            break;
        };
        let b = tensors.get(&b_name).ok_or_else(|| WeightsError::MissingTensor {
            path: path.to_path_buf(),
            name: b_name.clone(),
            found: found.clone(),
        })?;
        let bad = |name: &str, t: &Tensor, expected: String| WeightsError::BadTensor {
            path: path.to_path_buf(),
            name: name.to_string(),
            found: format!("{:?} {:?}", t.dtype(), t.dims()),
            expected,
        };
        if w.dtype() != CDType::F32 || w.rank() != 2 {
            return Err(bad(&w_name, w, "F32 with shape [out, in]".into()));
        }
        let (outputs, inputs) = (w.dims()[0], w.dims()[1]);
        if let Some(prev) = layers.last().map(|l: &DenseLayer| l.outputs) {
            if inputs != prev {
                return Err(bad(&w_name, w, format!("F32 [_, {prev}] (layer {} has {prev} outputs)", i - 1)));
            }
        }
        if b.dtype() != CDType::F32 || b.dims() != [outputs] {
            return Err(bad(&b_name, b, format!("F32 [{outputs}]")));
        }
        let weight = w.flatten_all().and_then(|t| t.to_vec1::<f32>());
        let bias = b.to_vec1::<f32>();
        let (weight, bias) = match (weight, bias) {
            (Ok(w), Ok(b)) => (w, b),
            (Err(e), _) | (_, Err(e)) => {
                return Err(WeightsError::Malformed { path: path.to_path_buf(), reason: e.to_string() })
            }
        };
        layers.push(DenseLayer { weight, bias, inputs, outputs });
    }
    Ok(layers)
}

/// One replica's instance of a dense model, on its device (a clone shares the weights).
#[derive(Clone)]
pub struct DenseForward {
    layers: Vec<(Tensor, Tensor)>,
    /// The same layers in plain loops, for a tiny model on the CPU in f32.
    host: Option<Arc<HostDense>>,
    hidden: Activation,
    output: Activation,
    device: Device,
    dtype: CDType,
    /// On the CPU in f32, with activations the host computes as candle does (none, relu,
    /// softmax where [`softmax::exact`]): the layers, for [`Self::around_matmuls`].
    host_layers: Option<Arc<[ProductLayer]>>,
    input_width: usize,
    output_type: FieldType,
}

impl DenseForward {
    /// Runs the layers over a `[rows, in]` tensor (in the instance's dtype; the result
    /// is in it too).
    pub fn forward_tensor(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut x = x.to_dtype(self.dtype)?;
        let last = self.layers.len() - 1;
        for (i, (w, b)) in self.layers.iter().enumerate() {
            x = x.matmul(w)?.broadcast_add(b)?;
            x = if i == last { self.output.apply(x)? } else { self.hidden.apply(x)? };
        }
        Ok(x)
    }

    /// Runs the layers over `rows` rows laid out flat (`rows * in` numbers): in plain
    /// loops for a tiny model on the CPU ([`HostDense`]), around `gemm` on the CPU in f32
    /// ([`Self::around_matmuls`]), else with candle. Any other number of numbers is an
    /// error.
    pub fn forward_flat(&self, input: Vec<f32>, rows: usize) -> candle_core::Result<Vec<f32>> {
        if input.len() != rows * self.input_width {
            return Err(candle_core::Error::Msg(format!(
                "{} numbers for {rows} rows of {} inputs",
                input.len(),
                self.input_width
            )));
        }
        if let Some(host) = &self.host {
            return Ok(host.forward(&input, rows));
        }
        if let Some(layers) = &self.host_layers {
            return Ok(self.around_matmuls(input, rows, layers));
        }
        let x = Tensor::from_vec(input, (rows, self.input_width), &self.device)?;
        self.forward_tensor(&x)?.flatten_all()?.to_dtype(CDType::F32)?.to_vec1::<f32>()
    }

    /// The layers on the host: each layer's matrix product as candle computes it
    /// ([`product`]), then its bias and its activation in place. The same additions,
    /// `max`es, `exp`s and divisions as candle's `broadcast_add`, `relu` and
    /// `softmax_last_dim`, in the same order ([`softmax`]), so the same bits; without
    /// candle's per-operation tensors, layouts and parallel loops, which cost a
    /// `digits.yaml` forward pass more than its products (BENCHMARKS.md, "Replay",
    /// 2026-12-06, fifth session, and 2026-12-07, tenth session).
    fn around_matmuls(&self, input: Vec<f32>, rows: usize, layers: &[ProductLayer]) -> Vec<f32> {
        let mut x = input;
        let last = layers.len() - 1;
        for (i, layer) in layers.iter().enumerate() {
            let mut y = product(&x, rows, layer.inputs, &layer.weight, layer.outputs);
            for row in y.chunks_exact_mut(layer.outputs.max(1)) {
                row.iter_mut().zip(&layer.bias).for_each(|(v, b)| *v += b);
            }
            dense_host::activate(if i == last { self.output } else { self.hidden }, &mut y, layer.outputs);
            x = y;
        }
        x
    }
}

/// A dense layer as [`DenseForward::around_matmuls`] reads it.
#[derive(Debug)]
struct ProductLayer {
    /// Row-major `[in, out]`, as the layer's tensor holds it (the transpose of
    /// [`DenseLayer::weight`]).
    weight: Vec<f32>,
    bias: Vec<f32>,
    inputs: usize,
    outputs: usize,
}

impl ProductLayer {
    fn of(layer: &DenseLayer) -> ProductLayer {
        let (inputs, outputs) = (layer.inputs, layer.outputs);
        let weight = (0..inputs).flat_map(|j| (0..outputs).map(move |c| layer.weight[c * inputs + j])).collect();
        ProductLayer { weight, bias: layer.bias.clone(), inputs, outputs }
    }
}

impl BatchKernel for DenseForward {
    fn forward(&mut self, inputs: Vec<Column>) -> Result<Vec<Column>, KernelError> {
        const OP: &str = "dense model";
        let inputs = super::single_input(OP, inputs)?;
        let rows = inputs.len();
        let (numbers, width) = match inputs {
            Column::F32(data) => (data, 1),
            Column::Tensor { width, data } => (data, width),
            other => return Err(KernelError::InputType { op: OP, expected: "f32", found: other.type_name() }),
        };
        if width != self.input_width {
            return Err(KernelError::ShapeMismatch { op: OP, expected: self.input_width, found: width });
        }
        let out = self.forward_flat(numbers, rows).map_err(KernelError::candle("dense model: forward"))?;
        Ok(vec![match self.output_type.width() {
            Some(width) if !self.output_type.is_scalar() => Column::Tensor { width, data: out },
            _ => Column::F32(out),
        }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_layer() -> DenseModel {
        DenseModel::from_layers(
            Arch::Mlp,
            vec![
                DenseLayer { weight: vec![1.0, -1.0, 2.0, 0.5], bias: vec![0.0, 1.0], inputs: 2, outputs: 2 },
                DenseLayer { weight: vec![1.0, 1.0], bias: vec![-1.0], inputs: 2, outputs: 1 },
            ],
            Activation::Relu,
            Activation::None,
        )
    }

    #[test]
    fn forward_matches_hand_computation() {
        let model = two_layer();
        let mut f = model.instantiate(&Device::Cpu).unwrap();
        // x = [1, 3]: h = relu([1-3, 2+1.5+1]) = [0, 4.5]; y = 4.5 - 1 = 3.5
        let out = f.forward(vec![Column::Tensor { width: 2, data: vec![1.0, 3.0] }]).unwrap();
        assert_eq!(out, vec![Column::F32(vec![3.5])]);
    }

    /// A model too big for [`HostDense`], with weights and inputs of every sign by a
    /// fixed rule.
    fn sized(dims: &[usize], hidden: Activation, output: Activation) -> DenseModel {
        let value = |i: usize, seed: usize| (((i * 7919 + seed * 104_729) % 2001) as f32 - 1000.0) / 700.0;
        let layers = dims
            .windows(2)
            .enumerate()
            .map(|(l, io)| DenseLayer {
                weight: (0..io[0] * io[1]).map(|i| value(i, l)).collect(),
                bias: (0..io[1]).map(|i| value(i, l + 50)).collect(),
                inputs: io[0],
                outputs: io[1],
            })
            .collect::<Vec<_>>();
        let arch = if layers.len() == 1 { Arch::Linear } else { Arch::Mlp };
        DenseModel::from_layers(arch, layers, hidden, output)
    }

    #[test]
    fn the_host_around_the_products_gives_candles_bits() {
        use Activation::*;
        let cases: [(&[usize], Activation, Activation); 7] = [
            (&[64, 10], None, Softmax),
            (&[64, 32, 10], Relu, Softmax),
            (&[30, 40], None, Softmax),
            (&[16, 70, 33], Relu, Softmax),
            (&[20, 20, 20], None, Relu),
            (&[64, 10], None, None),
            (&[64, 32, 10], Tanh, Sigmoid),
        ];
        for (dims, hidden, output) in cases {
            let model = sized(dims, hidden, output);
            let f = model.instantiate(&Device::Cpu).unwrap();
            assert!(f.host.is_none(), "{dims:?} is computed around candle's products, not by HostDense");
            let on_host = [hidden, output].iter().all(|a| a.on_host_exactly());
            assert_eq!(f.host_layers.is_some(), on_host, "{dims:?} {hidden} {output}");
            for rows in [1, 2, 5, 16, 31, 32, 33, 64, 100] {
                let input: Vec<f32> = (0..rows * dims[0]).map(|i| ((i * 37 % 23) as f32 - 11.0) / 3.0).collect();
                let x = Tensor::from_vec(input.clone(), (rows, dims[0]), &Device::Cpu).unwrap();
                let candle: Vec<f32> = f.forward_tensor(&x).unwrap().flatten_all().unwrap().to_vec1().unwrap();
                let ours = f.forward_flat(input, rows).unwrap();
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&ours), bits(&candle), "{dims:?} {hidden} {output}, {rows} rows");
            }
        }
    }

    #[test]
    fn too_few_or_too_many_numbers_are_an_error_on_every_path() {
        for dims in [&[2, 1][..], &[64, 10], &[64, 32, 10]] {
            for output in [Activation::Softmax, Activation::Sigmoid] {
                let f = sized(dims, Activation::Relu, output).instantiate(&Device::Cpu).unwrap();
                for n in [dims[0] * 3 - 1, dims[0] * 3 + 1] {
                    let err = f.forward_flat(vec![0.5; n], 3).unwrap_err();
                    assert!(err.to_string().contains(&format!("{n} numbers for 3 rows")), "{dims:?}: {err}");
                }
            }
        }
    }

    #[test]
    fn wrong_width_is_an_error_not_a_panic() {
        let mut f = two_layer().instantiate(&Device::Cpu).unwrap();
        let err = f.forward(vec![Column::Tensor { width: 1, data: vec![1.0] }]).unwrap_err();
        assert!(matches!(err, KernelError::ShapeMismatch { expected: 2, found: 1, .. }), "{err}");
        assert!(err.to_string().contains("expected 2 inputs"), "{err}");
    }
}
