//! Forward passes of tiny dense models in plain loops, without candle.
//!
//! A candle forward pass of a dense layer costs a fixed few microseconds whatever its
//! size: a tensor built around the input, a matmul and a broadcast add that each
//! allocate their result and their layouts, and a copy out (about 7,000 instructions and
//! 17 allocations per layer). For a model the size of `diamond.yaml`'s `1 × 1` linear
//! models that is hundreds of times the arithmetic, and it is paid once per batch, on
//! the worker when the node computes inline ([`crate::dataflow`]'s `inline`). So a
//! model on the CPU in f32 whose weights number at most [`HOST_MAX_WEIGHTS`] computes
//! here instead, with one allocation (the output) per layer.
//!
//! The choice depends on the model only, never on the batch: a row's answer is the same
//! in a batch of 1 as of 1,000, so serving and replay agree. The arithmetic follows
//! candle's: per output, the products summed in input order from zero, then the bias
//! added; the activations as candle's CPU kernels compute them.

use super::model::{Activation, DenseLayer};

/// A model computes on the host when all its layers together have at most this many
/// weights (`inputs × outputs`, summed).
pub const HOST_MAX_WEIGHTS: usize = 256;

/// A dense model's layers, host-side, for [`HostDense::forward`].
#[derive(Clone, Debug)]
pub struct HostDense {
    layers: Vec<DenseLayer>,
    hidden: Activation,
    output: Activation,
}

impl HostDense {
    /// The host kernel of `layers`, if they are small enough to gain from one.
    pub fn for_layers(layers: &[DenseLayer], hidden: Activation, output: Activation) -> Option<HostDense> {
        let weights: usize = layers.iter().map(|l| l.inputs * l.outputs).sum();
        (weights <= HOST_MAX_WEIGHTS && !layers.is_empty()).then(|| HostDense {
            layers: layers.to_vec(),
            hidden,
            output,
        })
    }

    /// Runs the layers over `rows` rows laid out flat (`rows × inputs` numbers; the
    /// caller checks the width). Returns `rows × outputs` numbers.
    pub fn forward(&self, input: &[f32], rows: usize) -> Vec<f32> {
        let last = self.layers.len() - 1;
        let mut x: Vec<f32> = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let from: &[f32] = if i == 0 { input } else { &x };
            let mut y = Vec::with_capacity(rows * layer.outputs);
            for row in from.chunks_exact(layer.inputs).take(rows) {
                for (weights, bias) in layer.weight.chunks_exact(layer.inputs).zip(&layer.bias) {
                    let dot = row.iter().zip(weights).fold(0.0f32, |acc, (a, w)| acc + a * w);
                    y.push(dot + bias);
                }
            }
            activate(if i == last { self.output } else { self.hidden }, &mut y, layer.outputs);
            x = y;
        }
        x
    }
}

/// Applies `activation` in place to rows of `width` numbers; relu and softmax bit for bit
/// as candle does (the softmax is [`super::softmax`]'s).
pub(super) fn activate(activation: Activation, y: &mut [f32], width: usize) {
    match activation {
        Activation::None => {}
        Activation::Relu => y.iter_mut().for_each(|v| *v = v.max(0.0)),
        Activation::Tanh => y.iter_mut().for_each(|v| *v = v.tanh()),
        Activation::Sigmoid => y.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp())),
        Activation::Softmax => super::softmax::softmax_rows(y, width),
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::kernel::model::{Arch, DenseModel};

    /// A model through candle and through the host kernel: the same numbers, to the bit
    /// where the sums have one term, and within an ulp or two otherwise.
    fn same_as_candle(layers: Vec<DenseLayer>, hidden: Activation, output: Activation, rows: usize) {
        let arch = if layers.len() == 1 { Arch::Linear } else { Arch::Mlp };
        let model = DenseModel::from_layers(arch, layers.clone(), hidden, output);
        let width = model.input_width();
        let input: Vec<f32> = (0..rows * width).map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0).collect();
        let candle = model.instantiate(&Device::Cpu).unwrap();
        let x = candle_core::Tensor::from_vec(input.clone(), (rows, width), &Device::Cpu).unwrap();
        let expected: Vec<f32> = candle.forward_tensor(&x).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let host = HostDense::for_layers(&layers, hidden, output).expect("small enough");
        let got = host.forward(&input, rows);
        assert_eq!(got.len(), expected.len());
        for (g, e) in got.iter().zip(&expected) {
            assert!((g - e).abs() <= 2.0 * f32::EPSILON * e.abs().max(1.0), "host {g} vs candle {e}");
        }
    }

    fn layer(inputs: usize, outputs: usize, seed: usize) -> DenseLayer {
        let value = |i: usize| (((i + seed) * 29 % 17) as f32 - 8.0) / 5.0;
        DenseLayer {
            weight: (0..inputs * outputs).map(value).collect(),
            bias: (0..outputs).map(|i| value(i + 100)).collect(),
            inputs,
            outputs,
        }
    }

    #[test]
    fn one_by_one_is_bit_identical_to_candle() {
        let l = layer(1, 1, 3);
        let model = DenseModel::from_layers(Arch::Linear, vec![l.clone()], Activation::None, Activation::None);
        let input: Vec<f32> = (0..50).map(|i| i as f32 * 0.37 - 9.0).collect();
        let candle = model.instantiate(&Device::Cpu).unwrap();
        let x = candle_core::Tensor::from_vec(input.clone(), (50, 1), &Device::Cpu).unwrap();
        let expected: Vec<f32> = candle.forward_tensor(&x).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let host = HostDense::for_layers(&[l], Activation::None, Activation::None).unwrap();
        assert_eq!(host.forward(&input, 50), expected);
    }

    #[test]
    fn every_activation_agrees_with_candle() {
        for act in [Activation::None, Activation::Relu, Activation::Tanh, Activation::Sigmoid, Activation::Softmax] {
            same_as_candle(vec![layer(4, 3, 1)], Activation::None, act, 9);
            same_as_candle(vec![layer(5, 8, 2), layer(8, 3, 5)], act, Activation::Softmax, 7);
        }
    }

    #[test]
    fn a_row_is_the_same_alone_as_in_a_batch() {
        let host =
            HostDense::for_layers(&[layer(6, 8, 4), layer(8, 2, 9)], Activation::Tanh, Activation::Sigmoid).unwrap();
        let input: Vec<f32> = (0..6 * 40).map(|i| (i as f32).sin()).collect();
        let batch = host.forward(&input, 40);
        for row in 0..40 {
            assert_eq!(host.forward(&input[row * 6..row * 6 + 6], 1), batch[row * 2..row * 2 + 2]);
        }
    }

    #[test]
    fn large_models_stay_on_candle() {
        assert!(HostDense::for_layers(&[layer(64, 10, 0)], Activation::None, Activation::Softmax).is_none());
        assert!(HostDense::for_layers(&[layer(16, 16, 0)], Activation::None, Activation::None).is_some());
    }
}
