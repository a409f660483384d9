//! What a model takes and gives: its named inputs, each with the fields it accepts, and
//! its named outputs, each with its field type. The engine wires a node's fields to a
//! model by these names and checks their types when a graph is built, so a miswired
//! graph fails `weir check`, never a batch.

use std::fmt;
use std::sync::Arc;

use super::{BatchKernel, KernelError, KernelFactory};
use crate::column::Column;
use crate::value::{DType, FieldType};

/// The fields one input of a model accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Accepts {
    /// Any `f32` field of this many numbers per row (an `f32` scalar is one): the model
    /// reads the row's numbers flat, whatever the field's shape.
    Width(usize),
    /// Fields of exactly this type.
    Type(FieldType),
}

impl Accepts {
    /// Whether a field of type `ty` can feed this input.
    pub fn fits(&self, ty: &FieldType) -> bool {
        match self {
            Accepts::Width(w) => ty.dtype == DType::F32 && ty.width() == Some(*w),
            Accepts::Type(t) => t == ty,
        }
    }
}

impl fmt::Display for Accepts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Accepts::Width(w) => write!(f, "{w} numbers per row (f32[{w}])"),
            Accepts::Type(t) => write!(f, "{t}"),
        }
    }
}

/// A model's inputs and outputs, in the order its kernel takes and returns them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    /// (name, what it accepts), in the kernel's input order.
    pub inputs: Vec<(String, Accepts)>,
    /// (name, type), in the kernel's output order.
    pub outputs: Vec<(String, FieldType)>,
}

impl Signature {
    /// One input and one output.
    pub fn single(input: (&str, Accepts), output: (&str, FieldType)) -> Signature {
        Signature { inputs: vec![(input.0.to_string(), input.1)], outputs: vec![(output.0.to_string(), output.1)] }
    }
}

/// A model ready to serve: what it is (for plans), how each replica builds its kernel,
/// and its signature.
#[derive(Clone)]
pub struct LoadedKernel {
    /// Shown in plans, e.g. `onnx digits_mlp.onnx (MatMul, Add, Relu, Softmax)`.
    pub description: String,
    /// Builds one kernel per replica thread.
    pub factory: KernelFactory,
    /// Its inputs and outputs.
    pub signature: Signature,
}

impl fmt::Debug for LoadedKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedKernel")
            .field("description", &self.description)
            .field("signature", &self.signature)
            .finish_non_exhaustive()
    }
}

impl LoadedKernel {
    /// The same model, returning only the outputs at `keep` (indices into the
    /// signature's outputs, in the order given): a node that names some of a model's
    /// outputs gets those columns only.
    pub fn select_outputs(self, keep: Vec<usize>) -> LoadedKernel {
        let all = self.signature.outputs.len();
        if keep.len() == all && keep.iter().enumerate().all(|(i, &k)| i == k) {
            return self;
        }
        let outputs = keep.iter().filter_map(|&k| self.signature.outputs.get(k).cloned()).collect();
        let inner = self.factory;
        let keep: Arc<[usize]> = keep.into();
        let factory: KernelFactory = Arc::new(move || {
            let kernel = inner()?;
            Ok(Box::new(Selected { kernel, keep: Arc::clone(&keep), all }) as Box<dyn BatchKernel>)
        });
        LoadedKernel { description: self.description, factory, signature: Signature { outputs, ..self.signature } }
    }
}

/// A kernel whose outputs are cut down to some of them.
struct Selected {
    kernel: Box<dyn BatchKernel>,
    keep: Arc<[usize]>,
    all: usize,
}

impl BatchKernel for Selected {
    fn forward(&mut self, inputs: Vec<Column>) -> Result<Vec<Column>, KernelError> {
        let outputs = self.kernel.forward(inputs)?;
        if outputs.len() != self.all {
            return Err(KernelError::OutputColumns { expected: self.all, found: outputs.len() });
        }
        let mut outputs: Vec<Option<Column>> = outputs.into_iter().map(Some).collect();
        // Each index is kept once (the engine checks), so every take finds its column.
        Ok(self.keep.iter().filter_map(|&k| outputs.get_mut(k).and_then(Option::take)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Three;

    impl BatchKernel for Three {
        fn forward(&mut self, inputs: Vec<Column>) -> Result<Vec<Column>, KernelError> {
            let n = inputs.first().map_or(0, Column::len);
            Ok(vec![Column::F32(vec![1.0; n]), Column::I64(vec![2; n]), Column::Bool(vec![true; n])])
        }
    }

    #[test]
    fn selected_outputs_come_in_the_order_asked() {
        let f32_ = FieldType::scalar(DType::F32);
        let loaded = LoadedKernel {
            description: "three".into(),
            factory: Arc::new(|| Ok(Box::new(Three) as Box<dyn BatchKernel>)),
            signature: Signature {
                inputs: vec![("x".into(), Accepts::Width(1))],
                outputs: vec![
                    ("a".into(), f32_.clone()),
                    ("b".into(), FieldType::scalar(DType::I64)),
                    ("c".into(), FieldType::scalar(DType::Bool)),
                ],
            },
        };
        let picked = loaded.select_outputs(vec![2, 0]);
        let names: Vec<&str> = picked.signature.outputs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["c", "a"]);
        let mut kernel = (picked.factory)().unwrap();
        let out = kernel.forward(vec![Column::F32(vec![0.0, 0.0])]).unwrap();
        assert_eq!(out, vec![Column::Bool(vec![true, true]), Column::F32(vec![1.0, 1.0])]);
    }

    #[test]
    fn width_accepts_any_f32_shape_of_that_many_numbers() {
        assert!(Accepts::Width(64).fits(&FieldType::vector(64)));
        assert!(!Accepts::Width(64).fits(&FieldType::vector(63)));
        assert!(Accepts::Width(1).fits(&FieldType::scalar(DType::F32)));
        assert!(!Accepts::Width(1).fits(&FieldType::scalar(DType::I64)));
    }
}
