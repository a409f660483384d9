//! [`OnnxModel`]: an ONNX file read, checked and compiled into a plan once, at load.
//!
//! The plan is a list of steps in graph order, each a compiled [`Kernel`] reading and writing
//! numbered value slots: no name is looked up after load. Every node's operator is compiled
//! (and so checked) at load, so a model weir-onnx cannot run fails here, naming the file, the
//! node and the operator. Values that depend only on initializers and `Constant` nodes are
//! computed at load (constant folding); a session starts with them in their slots.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use prost::Message;

use crate::error::OnnxError;
use crate::initializer;
use crate::node::NodeCtx;
use crate::ops::{self, Kernel};
use crate::proto::{tensor_shape_proto::dimension, type_proto, ModelProto, ValueInfoProto};
use crate::session::Session;
use crate::tensor::{Dim, ElemType, TensorSpec};
use crate::value::Value;

/// One step of the plan: a node's kernel and the slots it reads and writes.
#[derive(Debug)]
pub(crate) struct Step {
    /// The node's name, for errors.
    pub(crate) node: String,
    /// `domain:type`, for errors.
    pub(crate) op: String,
    /// The compiled operator.
    pub(crate) kernel: Box<dyn Kernel>,
    /// The slot of each input (`None` for an omitted optional input).
    pub(crate) inputs: Vec<Option<usize>>,
    /// The slot of each output (`None` for an unused optional output).
    pub(crate) outputs: Vec<Option<usize>>,
}

/// The compiled graph, shared by the model and its sessions.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The number of value slots.
    pub(crate) slots: usize,
    /// Folded constants (on the CPU) and their slots.
    pub(crate) constants: Vec<(usize, Value)>,
    /// The steps left after folding, in order.
    pub(crate) steps: Vec<Step>,
    /// The declared inputs (initializers excluded) and their slots.
    pub(crate) inputs: Vec<(TensorSpec, usize)>,
    /// The declared outputs and their slots.
    pub(crate) outputs: Vec<(TensorSpec, usize)>,
}

/// A loaded ONNX model: parsed, validated and compiled. `Send + Sync`; each replica makes its
/// own [`Session`] from it.
#[derive(Debug, Clone)]
pub struct OnnxModel {
    file: PathBuf,
    plan: Arc<Plan>,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    ops: Vec<String>,
}

impl OnnxModel {
    /// Reads, parses and checks `path`: every node's operator (domain, opset) is one this
    /// crate runs, its attributes are valid, and the graph is wired (every value produced
    /// before use, once); then compiles the graph into a plan with constants folded.
    ///
    /// Errors name the file, and the node and operator when one is at fault: a truncated or
    /// non-ONNX file is [`OnnxError::Decode`], an operator it cannot run
    /// [`OnnxError::UnsupportedOp`], a `ZipMap` [`OnnxError::ZipMap`].
    pub fn load(path: &Path) -> Result<OnnxModel, OnnxError> {
        let bytes = std::fs::read(path).map_err(|source| OnnxError::Read { file: path.to_path_buf(), source })?;
        let model = ModelProto::decode(bytes.as_slice())
            .map_err(|source| OnnxError::Decode { file: path.to_path_buf(), source })?;
        Self::from_proto(&model, path)
    }

    /// Checks and compiles an already decoded model; `path` is only used in errors.
    pub fn from_proto(model: &ModelProto, path: &Path) -> Result<OnnxModel, OnnxError> {
        let file = path.to_path_buf();
        let model_err = |what: String| OnnxError::Model { file: file.clone(), what };
        let graph =
            model.graph.as_ref().ok_or_else(|| model_err("the model has no graph (not an ONNX model?)".into()))?;
        let opsets: HashMap<&str, i64> = model
            .opset_import
            .iter()
            .map(|o| (if o.domain() == "ai.onnx" { "" } else { o.domain() }, o.version()))
            .collect();

        let mut slot_of: HashMap<String, usize> = HashMap::new();
        let mut constants: Vec<(usize, Value)> = Vec::new();
        for t in &graph.initializer {
            let v = initializer::decode(t).map_err(&model_err)?;
            let slot = slot_of.len();
            if slot_of.insert(t.name().to_string(), slot).is_some() {
                return Err(model_err(format!("initializer {:?} is defined twice", t.name())));
            }
            constants.push((slot, v));
        }
        let mut inputs = Vec::new();
        for vi in &graph.input {
            if slot_of.contains_key(vi.name()) {
                continue;
            }
            let spec = spec(vi).map_err(|what| model_err(format!("graph input {:?}: {what}", vi.name())))?;
            let slot = slot_of.len();
            slot_of.insert(vi.name().to_string(), slot);
            inputs.push((spec, slot));
        }

        // Compile every node first, so an unsupported operator is reported wherever it is.
        let mut kernels = Vec::with_capacity(graph.node.len());
        for node in &graph.node {
            let domain = node.domain();
            let key = if domain == "ai.onnx" { "" } else { domain };
            let ctx = NodeCtx { file: path, node, opset: opsets.get(key).copied().unwrap_or(0) };
            kernels.push((ctx.name(), ctx.op(), ops::compile(&ctx)?));
        }

        let mut steps = Vec::with_capacity(kernels.len());
        let mut constant_slots: Vec<Option<Value>> = Vec::new();
        let fold = |slot: usize, v: Value, table: &mut Vec<Option<Value>>| {
            if table.len() <= slot {
                table.resize(slot + 1, None);
            }
            table[slot] = Some(v);
        };
        for (slot, v) in constants.drain(..) {
            fold(slot, v, &mut constant_slots);
        }
        for (node, (name, op, kernel)) in graph.node.iter().zip(kernels) {
            let wiring = |what: String| OnnxError::Wiring { file: file.clone(), node: name.clone(), what };
            let ins = node
                .input
                .iter()
                .map(|n| match n.as_str() {
                    "" => Ok(None),
                    n => slot_of.get(n).copied().map(Some).ok_or_else(|| {
                        wiring(format!("reads {n:?}, which no graph input, initializer or earlier node produces"))
                    }),
                })
                .collect::<Result<Vec<Option<usize>>, OnnxError>>()?;
            let mut outs = Vec::with_capacity(node.output.len());
            for n in &node.output {
                if n.is_empty() {
                    outs.push(None);
                    continue;
                }
                if slot_of.contains_key(n) {
                    return Err(wiring(format!("writes {n:?}, which is already defined")));
                }
                let slot = slot_of.len();
                slot_of.insert(n.clone(), slot);
                outs.push(Some(slot));
            }
            let step = Step { node: name, op, kernel, inputs: ins, outputs: outs };
            let all_constant =
                step.inputs.iter().flatten().all(|&s| constant_slots.get(s).is_some_and(Option::is_some));
            if all_constant {
                let refs: Vec<Option<&Value>> = step
                    .inputs
                    .iter()
                    .map(|s| s.and_then(|s| constant_slots.get(s).and_then(Option::as_ref)))
                    .collect();
                let values = step.kernel.run(&refs).map_err(|source| OnnxError::Run {
                    node: step.node.clone(),
                    op: step.op.clone(),
                    source,
                })?;
                for (slot, v) in step.outputs.iter().zip(values) {
                    if let Some(slot) = slot {
                        fold(*slot, v, &mut constant_slots);
                    }
                }
            } else {
                steps.push(step);
            }
        }
        let constants: Vec<(usize, Value)> =
            constant_slots.into_iter().enumerate().filter_map(|(s, v)| v.map(|v| (s, v))).collect();

        let mut outputs = Vec::new();
        for vi in &graph.output {
            let spec = spec(vi).map_err(|what| model_err(format!("graph output {:?}: {what}", vi.name())))?;
            let slot = slot_of.get(vi.name()).copied().ok_or_else(|| OnnxError::Wiring {
                file: file.clone(),
                node: "graph output".into(),
                what: format!("{:?} is declared but no node produces it", vi.name()),
            })?;
            outputs.push((spec, slot));
        }
        let mut ops: Vec<String> = Vec::new();
        for node in &graph.node {
            let op = node.op_type().to_string();
            if !ops.contains(&op) {
                ops.push(op);
            }
        }
        Ok(OnnxModel {
            file,
            inputs: inputs.iter().map(|(s, _)| s.clone()).collect(),
            outputs: outputs.iter().map(|(s, _)| s.clone()).collect(),
            ops,
            plan: Arc::new(Plan { slots: slot_of.len(), constants, steps, inputs, outputs }),
        })
    }

    /// The file the model was loaded from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The declared graph inputs a batch must supply, in order (initializers excluded).
    pub fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    /// The declared graph outputs a run returns, in order.
    pub fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    /// The operator types of the graph's nodes, each once, in order of first use.
    pub fn ops(&self) -> Vec<String> {
        self.ops.clone()
    }

    /// The number of steps run per batch (nodes left after constant folding).
    pub fn steps(&self) -> usize {
        self.plan.steps.len()
    }

    /// One replica's instance: constants copied to `device`, value slots reused across runs.
    pub fn session(&self, device: &candle_core::Device) -> Result<Session, OnnxError> {
        Session::new(Arc::clone(&self.plan), device)
    }
}

/// The [`TensorSpec`] of a declared graph input or output.
fn spec(vi: &ValueInfoProto) -> Result<TensorSpec, String> {
    let tensor = match vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => t,
        Some(_) => return Err("not a tensor (a sequence or map: a ZipMap output?)".into()),
        None => return Err("no type".into()),
    };
    let code = tensor.elem_type();
    let elem = ElemType::from_onnx(code)
        .ok_or_else(|| format!("element type {}, which weir-onnx does not run", ElemType::onnx_name(code)))?;
    let shape = tensor
        .shape
        .as_ref()
        .map(|s| {
            s.dim
                .iter()
                .map(|d| match &d.value {
                    Some(dimension::Value::DimValue(v)) if *v >= 0 => Dim::Fixed(*v as usize),
                    Some(dimension::Value::DimParam(p)) if !p.is_empty() => Dim::Dynamic(Some(p.clone())),
                    _ => Dim::Dynamic(None),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(TensorSpec { name: vi.name().to_string(), elem, shape })
}
