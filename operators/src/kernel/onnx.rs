//! ONNX model nodes: an `.onnx` file run by [`weir_onnx`] (candle for the tensor
//! operators, ONNX-ML operators included) on each batch.
//!
//! The node's inputs and outputs are the ONNX graph's declared ones, by name. Each
//! must have a dynamic first dimension (the batch) and fixed others; a row's field is
//! what remains:
//! - `float`/`double` inputs take any `f32` field of as many numbers (the kernel
//!   reshapes it, and casts to double); `float`/`double` outputs of shape `[N]` are `f32`
//!   fields, of `[N, d1, ...]` `f32[d1, ...]` fields;
//! - `int64`/`int32`, `bool` and `string` values of shape `[N]` or `[N, 1]` are `i64`,
//!   `bool` and `str` fields (weir has no vectors of them: a wider one is an error when
//!   the graph is planned).

use std::path::Path;
use std::sync::Arc;

use weir_onnx::{Dim, ElemType, HostTensor, OnnxError, OnnxModel, Session, TensorSpec};

use super::device::{DeviceSpec, OncePerDevice, PlacementError, Precision};
use super::signature::{Accepts, LoadedKernel, Signature};
use super::{BatchKernel, KernelError, KernelFactory};
use crate::column::Column;
use crate::value::{DType, FieldType};

/// Why an ONNX model cannot serve a model node.
#[derive(Debug, thiserror::Error)]
pub enum OnnxNodeError {
    /// The file does not load (unreadable, malformed, an operator not run...).
    #[error(transparent)]
    Model(#[from] OnnxError),
    /// The node's device or dtype does not fit.
    #[error(transparent)]
    Placement(#[from] PlacementError),
    /// A declared input or output has no field type in weir.
    #[error("{file}: {kind} '{name}' ({shape}): {reason}")]
    Unservable {
        /// The model file.
        file: String,
        /// `input` or `output`.
        kind: &'static str,
        /// The ONNX value's name.
        name: String,
        /// Its declared type and shape.
        shape: String,
        /// Why it cannot be a field.
        reason: String,
    },
}

/// How one declared input or output maps to a field.
#[derive(Clone, Debug)]
struct Port {
    elem: ElemType,
    /// The dimensions after the batch one.
    dims: Vec<usize>,
}

impl Port {
    fn width(&self) -> usize {
        self.dims.iter().product()
    }
}

/// Whether an ONNX node can run on `device` in `dtype`: the device opens, and the dtype
/// is f32 (a model computes in the types its file declares).
pub fn check_placement(device: DeviceSpec, dtype: Precision) -> Result<(), PlacementError> {
    dtype.f32_only("an ONNX model", "it computes in the types its file declares (export it in float16 to run so)")?;
    device.candle().map(drop)
}

/// Loads an ONNX model for a node whose replicas run on `device`, in `dtype` (see
/// [`check_placement`]).
pub fn load(path: &Path, device: DeviceSpec, dtype: Precision) -> Result<LoadedKernel, OnnxNodeError> {
    check_placement(device, dtype)?;
    let model = OnnxModel::load(path)?;
    let file = path.display().to_string();
    let mut inputs = Vec::new();
    let mut in_ports = Vec::new();
    for spec in model.inputs() {
        let port = port(&file, "input", spec)?;
        let accepts = match port.elem {
            ElemType::F32 | ElemType::F64 => Accepts::Width(port.width()),
            elem => Accepts::Type(scalar_field(&file, "input", spec, elem, &port)?),
        };
        inputs.push((spec.name.clone(), accepts));
        in_ports.push(port);
    }
    let mut outputs = Vec::new();
    let mut out_ports = Vec::new();
    for spec in model.outputs() {
        let port = port(&file, "output", spec)?;
        let ty = match port.elem {
            ElemType::F32 | ElemType::F64 if port.dims.is_empty() => FieldType::scalar(DType::F32),
            ElemType::F32 | ElemType::F64 => FieldType { dtype: DType::F32, shape: port.dims.clone() },
            elem => scalar_field(&file, "output", spec, elem, &port)?,
        };
        outputs.push((spec.name.clone(), ty));
        out_ports.push(port);
    }
    // One session now, so that a model whose initializers do not fit the device fails
    // when the graph is planned; on a GPU it is the one its replicas share.
    let once = Arc::new(OncePerDevice::default());
    once.get(device, || -> Result<Session, OnnxNodeError> { Ok(model.session(&device.candle()?)?) })?;
    let description = format!("onnx {file} ({})", model.ops().join(", "));
    let model = Arc::new(model);
    let (in_ports, out_ports): (Arc<[Port]>, Arc<[Port]>) = (in_ports.into(), out_ports.into());
    let factory: KernelFactory = Arc::new(move || {
        let session = once.get(device, || -> Result<Session, KernelError> {
            model.session(&device.candle()?).map_err(|e| KernelError::Custom(format!("onnx session: {e}")))
        })?;
        Ok(Box::new(OnnxKernel { session, inputs: Arc::clone(&in_ports), outputs: Arc::clone(&out_ports) })
            as Box<dyn BatchKernel>)
    });
    Ok(LoadedKernel { description, factory, signature: Signature { inputs, outputs } })
}

/// A declared value's batch-less dimensions, or why it cannot be batched.
fn port(file: &str, kind: &'static str, spec: &TensorSpec) -> Result<Port, OnnxNodeError> {
    let unservable = |reason: String| OnnxNodeError::Unservable {
        file: file.to_string(),
        kind,
        name: spec.name.clone(),
        shape: describe(spec),
        reason,
    };
    let Some((first, rest)) = spec.shape.split_first() else {
        return Err(unservable("the model declares no shape for it; weir needs [batch, ...] with fixed sizes".into()));
    };
    if let Dim::Fixed(n) = first {
        return Err(unservable(format!(
            "its first dimension is fixed at {n}; weir batches rows along a dynamic first dimension (export with \
             dynamic_axes / a None batch size)"
        )));
    }
    let dims = rest
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => Ok(*n),
            Dim::Dynamic(_) => {
                Err(unservable("only its first dimension may be dynamic (weir fields have fixed shapes)".into()))
            }
        })
        .collect::<Result<Vec<usize>, _>>()?;
    Ok(Port { elem: spec.elem, dims })
}

/// The scalar field of a non-float value of shape `[N]` or `[N, 1]`.
fn scalar_field(
    file: &str,
    kind: &'static str,
    spec: &TensorSpec,
    elem: ElemType,
    port: &Port,
) -> Result<FieldType, OnnxNodeError> {
    if port.width() != 1 {
        return Err(OnnxNodeError::Unservable {
            file: file.to_string(),
            kind,
            name: spec.name.clone(),
            shape: describe(spec),
            reason: "weir's i64, bool and str fields are scalars: only [N] or [N, 1] fit".into(),
        });
    }
    Ok(FieldType::scalar(match elem {
        ElemType::F32 | ElemType::F64 => DType::F32,
        ElemType::I64 | ElemType::I32 => DType::I64,
        ElemType::Bool => DType::Bool,
        ElemType::Str => DType::Str,
    }))
}

/// `float[N, 64]`.
fn describe(spec: &TensorSpec) -> String {
    let dims: Vec<String> = spec
        .shape
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => n.to_string(),
            Dim::Dynamic(Some(name)) => name.clone(),
            Dim::Dynamic(None) => "?".into(),
        })
        .collect();
    format!("{:?}[{}]", spec.elem, dims.join(", "))
}

/// One replica's model: its own session (initializers on its device, scratch reused).
struct OnnxKernel {
    session: Session,
    inputs: Arc<[Port]>,
    outputs: Arc<[Port]>,
}

const OP: &str = "onnx model";

impl BatchKernel for OnnxKernel {
    fn forward(&mut self, inputs: Vec<Column>) -> Result<Vec<Column>, KernelError> {
        if inputs.len() != self.inputs.len() {
            return Err(KernelError::InputCount { op: OP, expected: self.inputs.len(), found: inputs.len() });
        }
        let rows = inputs.first().map_or(0, Column::len);
        let tensors =
            inputs.into_iter().zip(self.inputs.iter()).map(|(c, p)| to_tensor(c, p, rows)).collect::<Result<_, _>>()?;
        let outputs = self.session.run(tensors).map_err(|e| KernelError::Custom(e.to_string()))?;
        if outputs.len() != self.outputs.len() {
            return Err(KernelError::OutputColumns { expected: self.outputs.len(), found: outputs.len() });
        }
        outputs.into_iter().zip(self.outputs.iter()).map(|(t, p)| to_column(t, p, rows)).collect()
    }
}

/// A batch's input column as the tensor `[rows, dims...]` the model declares.
fn to_tensor(column: Column, port: &Port, rows: usize) -> Result<HostTensor, KernelError> {
    let shape: Vec<usize> = std::iter::once(rows).chain(port.dims.iter().copied()).collect();
    let wrong =
        |c: &Column| KernelError::InputType { op: OP, expected: "the model's input type", found: c.type_name() };
    Ok(match (port.elem, column) {
        (ElemType::F32, Column::F32(data) | Column::Tensor { data, .. }) if data.len() == rows * port.width() => {
            HostTensor::F32 { shape, data }
        }
        (ElemType::F64, Column::F32(data) | Column::Tensor { data, .. }) if data.len() == rows * port.width() => {
            HostTensor::F64 { shape, data: data.into_iter().map(f64::from).collect() }
        }
        (ElemType::I64, Column::I64(data)) => HostTensor::I64 { shape, data },
        (ElemType::I32, Column::I64(data)) => HostTensor::I32 {
            shape,
            data: data
                .into_iter()
                .map(|v| {
                    i32::try_from(v)
                        .map_err(|_| KernelError::Custom(format!("{v} does not fit the model's int32 input")))
                })
                .collect::<Result<_, _>>()?,
        },
        (ElemType::Bool, Column::Bool(data)) => HostTensor::Bool { shape, data },
        (ElemType::Str, Column::Str(data)) => {
            HostTensor::Str { shape, data: data.iter().map(|s| s.to_string()).collect() }
        }
        (_, column) => return Err(wrong(&column)),
    })
}

/// A model output as the node's output column, checked to have one row per input row.
fn to_column(tensor: HostTensor, port: &Port, rows: usize) -> Result<Column, KernelError> {
    let width = port.width();
    if tensor.len() != rows * width {
        return Err(KernelError::Custom(format!(
            "the model gave an output of shape {:?} for {rows} rows, expected [{rows}, {:?}]",
            tensor.shape(),
            port.dims
        )));
    }
    let float = |data: Vec<f32>| if port.dims.is_empty() { Column::F32(data) } else { Column::Tensor { width, data } };
    Ok(match tensor {
        HostTensor::F32 { data, .. } => float(data),
        HostTensor::F64 { data, .. } => float(data.into_iter().map(|v| v as f32).collect()),
        HostTensor::I64 { data, .. } => Column::I64(data),
        HostTensor::I32 { data, .. } => Column::I64(data.into_iter().map(i64::from).collect()),
        HostTensor::Bool { data, .. } => Column::Bool(data),
        HostTensor::Str { data, .. } => Column::Str(data.into_iter().map(Arc::from).collect()),
    })
}
