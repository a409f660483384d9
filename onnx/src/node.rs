//! [`NodeCtx`]: one ONNX node while it is compiled, with typed access to its attributes and
//! errors that name the file, the node and its operator.

use std::path::Path;

use crate::error::OnnxError;
use crate::initializer;
use crate::proto::{AttributeProto, NodeProto};
use crate::value::Value;

/// The ONNX-ML domain.
pub(crate) const ML: &str = "ai.onnx.ml";

/// A node being compiled: the node, its file, and the opset its domain is imported at.
pub(crate) struct NodeCtx<'a> {
    /// The model file, for errors.
    pub(crate) file: &'a Path,
    /// The node.
    pub(crate) node: &'a NodeProto,
    /// The opset version of the node's domain.
    pub(crate) opset: i64,
}

impl NodeCtx<'_> {
    /// The node's name, or `<op> -> <first output>` when it has none.
    pub(crate) fn name(&self) -> String {
        match self.node.name() {
            "" => format!("{} -> {}", self.node.op_type(), self.node.output.first().map(String::as_str).unwrap_or("")),
            n => n.to_string(),
        }
    }

    /// The node's domain, with the default domain spelled `ai.onnx`.
    pub(crate) fn domain(&self) -> &str {
        match self.node.domain() {
            "" => "ai.onnx",
            d => d,
        }
    }

    /// `domain:type`, for errors.
    pub(crate) fn op(&self) -> String {
        format!("{}:{}", self.domain(), self.node.op_type())
    }

    /// An error about `field` (an attribute, input or output) of this node.
    pub(crate) fn err(&self, field: impl Into<String>, what: impl Into<String>) -> OnnxError {
        OnnxError::Node {
            file: self.file.to_path_buf(),
            node: self.name(),
            op: self.op(),
            field: field.into(),
            what: what.into(),
        }
    }

    /// The attribute called `name`, if the node has it.
    pub(crate) fn attr(&self, name: &str) -> Option<&AttributeProto> {
        self.node.attribute.iter().find(|a| a.name() == name)
    }

    /// An integer attribute, or `default` when absent.
    pub(crate) fn int(&self, name: &str, default: i64) -> i64 {
        self.attr(name).and_then(|a| a.i).unwrap_or(default)
    }

    /// A float attribute, or `default` when absent.
    pub(crate) fn float(&self, name: &str, default: f32) -> f32 {
        self.attr(name).and_then(|a| a.f).unwrap_or(default)
    }

    /// An integer-list attribute, if present.
    pub(crate) fn ints(&self, name: &str) -> Option<Vec<i64>> {
        self.attr(name).map(|a| a.ints.clone())
    }

    /// A float-list attribute, if present.
    pub(crate) fn floats(&self, name: &str) -> Option<Vec<f32>> {
        self.attr(name).map(|a| a.floats.clone())
    }

    /// A string attribute (UTF-8), if present.
    pub(crate) fn string(&self, name: &str) -> Result<Option<String>, OnnxError> {
        self.attr(name)
            .and_then(|a| a.s.as_ref())
            .map(|s| String::from_utf8(s.clone()).map_err(|_| self.err(format!("attribute {name}"), "not UTF-8")))
            .transpose()
    }

    /// A string-list attribute, if present.
    pub(crate) fn strings(&self, name: &str) -> Result<Option<Vec<String>>, OnnxError> {
        self.attr(name)
            .map(|a| {
                a.strings
                    .iter()
                    .map(|s| {
                        String::from_utf8(s.clone()).map_err(|_| self.err(format!("attribute {name}"), "not UTF-8"))
                    })
                    .collect()
            })
            .transpose()
    }

    /// A tensor attribute decoded on the CPU, if present.
    pub(crate) fn tensor(&self, name: &str) -> Result<Option<Value>, OnnxError> {
        self.attr(name)
            .and_then(|a| a.t.as_ref())
            .map(|t| initializer::decode(t).map_err(|what| self.err(format!("attribute {name}"), what)))
            .transpose()
    }

    /// A list of reals given either as the float list `name` or (ONNX-ML opset 3) as the
    /// double tensor `name_as_tensor`; `None` when neither is present.
    pub(crate) fn reals(&self, name: &str) -> Result<Option<Vec<f64>>, OnnxError> {
        let as_tensor = format!("{name}_as_tensor");
        if let Some(v) = self.tensor(&as_tensor)? {
            let t = match v {
                Value::Tensor(t) => t,
                Value::Str { .. } => {
                    return Err(self.err(format!("attribute {as_tensor}"), "a string tensor, not reals"))
                }
            };
            let flat = t
                .flatten_all()
                .and_then(|t| t.to_dtype(candle_core::DType::F64))
                .and_then(|t| t.to_vec1::<f64>())
                .map_err(|e| self.err(format!("attribute {as_tensor}"), e.to_string()))?;
            return Ok(Some(flat));
        }
        Ok(self.floats(name).map(|f| f.into_iter().map(f64::from).collect()))
    }

    /// Whether the node's input `index` is given (present and not the empty name).
    pub(crate) fn has_input(&self, index: usize) -> bool {
        self.node.input.get(index).is_some_and(|n| !n.is_empty())
    }

    /// An error unless the node has between `min` and `max` inputs.
    pub(crate) fn inputs_between(&self, min: usize, max: usize) -> Result<(), OnnxError> {
        let n = self.node.input.len();
        if n < min || n > max {
            return Err(self.err("inputs", format!("{n} inputs; the operator takes {min} to {max}")));
        }
        Ok(())
    }

    /// An error if the node asks for more than `max` outputs.
    pub(crate) fn outputs_at_most(&self, max: usize) -> Result<(), OnnxError> {
        let used =
            self.node.output.iter().enumerate().filter(|(_, n)| !n.is_empty()).map(|(i, _)| i + 1).max().unwrap_or(0);
        if used > max {
            return Err(self.err(
                format!("output {}", used - 1),
                format!("the node uses {used} outputs; weir-onnx computes {max} for this operator"),
            ));
        }
        Ok(())
    }
}
