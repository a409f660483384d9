//! [`Session`]: one replica's instance of a model, running the plan batch after batch.

use std::sync::Arc;

use candle_core::Device;

use crate::error::OnnxError;
use crate::model::Plan;
use crate::tensor::{Dim, HostTensor, TensorSpec};
use crate::value::Value;

/// One replica's instance of an [`crate::OnnxModel`]: the constants on its device and the value
/// slots, reused from one run to the next. Not shared: one per thread. A clone shares the
/// constants (candle tensors are reference-counted) and has slots of its own, so the
/// replicas of one device can hold the constants once.
#[derive(Debug, Clone)]
pub struct Session {
    plan: Arc<Plan>,
    device: Device,
    /// One slot per value; constants stay, the rest is cleared after each run.
    slots: Vec<Option<Value>>,
    /// The slots that hold constants.
    constant: Vec<bool>,
}

impl Session {
    /// A session of `plan` on `device`.
    pub(crate) fn new(plan: Arc<Plan>, device: &Device) -> Result<Self, OnnxError> {
        let mut slots = vec![None; plan.slots];
        let mut constant = vec![false; plan.slots];
        for (slot, v) in &plan.constants {
            slots[*slot] = Some(v.to_device(device).map_err(|e| OnnxError::Device { source: Box::new(e) })?);
            constant[*slot] = true;
        }
        Ok(Self { plan, device: device.clone(), slots, constant })
    }

    /// Runs the plan on one batch: one tensor per declared input (in
    /// [`crate::OnnxModel::inputs`] order, the first dimension the batch), returning one per
    /// declared output (in [`crate::OnnxModel::outputs`] order).
    ///
    /// A batch that does not match the declared inputs (count, element type, rank, fixed
    /// dimensions, data length) is [`OnnxError::Input`]; an operator failing on it is
    /// [`OnnxError::Run`], naming the node. Either way the session stays usable.
    pub fn run(&mut self, inputs: Vec<HostTensor>) -> Result<Vec<HostTensor>, OnnxError> {
        let result = self.run_plan(inputs);
        for (slot, keep) in self.slots.iter_mut().zip(&self.constant) {
            if !keep {
                *slot = None;
            }
        }
        result
    }

    fn run_plan(&mut self, inputs: Vec<HostTensor>) -> Result<Vec<HostTensor>, OnnxError> {
        let plan = Arc::clone(&self.plan);
        if inputs.len() != plan.inputs.len() {
            return Err(OnnxError::Input {
                input: format!("#{}", inputs.len()),
                what: format!("{} inputs given; the model declares {}", inputs.len(), plan.inputs.len()),
            });
        }
        for ((spec, slot), host) in plan.inputs.iter().zip(inputs) {
            check(spec, &host)?;
            let v = Value::from_host(host, &self.device)
                .map_err(|e| OnnxError::Input { input: spec.name.clone(), what: e.to_string() })?;
            self.slots[*slot] = Some(v);
        }
        for step in &plan.steps {
            let values = {
                let refs: Vec<Option<&Value>> =
                    step.inputs.iter().map(|s| s.and_then(|s| self.slots[s].as_ref())).collect();
                step.kernel.run(&refs)
            }
            .map_err(|source| OnnxError::Run { node: step.node.clone(), op: step.op.clone(), source })?;
            for (slot, v) in step.outputs.iter().zip(values) {
                if let Some(slot) = slot {
                    self.slots[*slot] = Some(v);
                }
            }
        }
        plan.outputs
            .iter()
            .map(|(spec, slot)| {
                let v = self.slots[*slot].as_ref().ok_or_else(|| OnnxError::Input {
                    input: spec.name.clone(),
                    what: "the output was not computed".into(),
                })?;
                v.to_host().map_err(|source| OnnxError::Run {
                    node: format!("graph output {:?}", spec.name),
                    op: "output".into(),
                    source,
                })
            })
            .collect()
    }
}

/// Checks a batch's tensor against its declared input.
fn check(spec: &TensorSpec, host: &HostTensor) -> Result<(), OnnxError> {
    let bad = |what: String| OnnxError::Input { input: spec.name.clone(), what };
    if host.elem() != spec.elem {
        return Err(bad(format!("element type {:?}; the model declares {:?}", host.elem(), spec.elem)));
    }
    let shape = host.shape();
    if !spec.shape.is_empty() {
        if shape.len() != spec.shape.len() {
            return Err(bad(format!("shape {shape:?}; the model declares rank {}", spec.shape.len())));
        }
        for (i, (d, s)) in shape.iter().zip(&spec.shape).enumerate() {
            if let Dim::Fixed(f) = s {
                if d != f {
                    return Err(bad(format!("dimension {i} is {d}; the model declares {f}")));
                }
            }
        }
    }
    let count: usize = shape.iter().product();
    if count != host.len() {
        return Err(bad(format!("shape {shape:?} needs {count} elements; {} given", host.len())));
    }
    Ok(())
}
