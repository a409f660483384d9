//! The Rust front end: build a [`GraphSpec`] in code, binding nodes to their upstream
//! fields in the spirit of Ray Serve's `bind`.
//!
//! ```
//! use weir_engine::builder::{GraphBuilder, combine, map};
//! use weir_operators::kernel::aggregate::Aggregate;
//! use weir_operators::{DType, FieldType, Value};
//!
//! let mut g = GraphBuilder::new("double_sum");
//! let a = g.input("a", FieldType::scalar(DType::F32));
//! let b = g.input("b", FieldType::scalar(DType::F32));
//! let twice = g.node("twice", map::function(
//!     [("y", FieldType::scalar(DType::F32))],
//!     |v| Ok(vec![Value::F32(2.0 * v[0].as_f64().unwrap_or(0.0) as f32)]),
//! ).bind([a.clone()]));
//! let sum = g.node("sum", combine(Aggregate::Sum).bind([twice.field("y"), b]));
//! g.output("y", sum.field("y"));
//! let plan = g.plan().expect("a valid graph");
//! assert_eq!(plan.steps.len(), 2);
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use weir_operators::kernel::aggregate::Aggregate;
use weir_operators::kernel::condition::Condition;
use weir_operators::kernel::model::DenseModel;
use weir_operators::FieldType;

use crate::error::GraphError;
use crate::plan::Plan;
use crate::spec::*;

/// Builds a graph in code.
#[derive(Debug)]
pub struct GraphBuilder {
    spec: GraphSpec,
}

/// A node added to a builder: name its fields and branches from it.
#[derive(Clone, Debug)]
pub struct NodeRef {
    name: String,
}

impl NodeRef {
    /// The node's field `field`.
    pub fn field(&self, field: &str) -> FieldRef {
        FieldRef::new(&self.name, field)
    }

    /// The node's output stream.
    pub fn stream(&self) -> StreamRef {
        StreamRef { node: self.name.clone(), branch: None }
    }

    /// Branch `branch` of a route node.
    pub fn branch(&self, branch: &str) -> StreamRef {
        StreamRef { node: self.name.clone(), branch: Some(branch.to_string()) }
    }
}

/// A node kind bound to its inputs, ready to add (optionally with explicit streams).
#[derive(Clone, Debug)]
pub struct Bound {
    kind: NodeKind,
    from: Vec<StreamRef>,
}

impl Bound {
    /// Reads from these streams explicitly (route branches, merges).
    pub fn from(mut self, streams: impl IntoIterator<Item = StreamRef>) -> Self {
        self.from = streams.into_iter().collect();
        self
    }
}

impl GraphBuilder {
    /// A new graph; weights paths resolve against the current directory until
    /// [`GraphBuilder::base_dir`] says otherwise.
    pub fn new(name: &str) -> Self {
        GraphBuilder {
            spec: GraphSpec {
                name: name.to_string(),
                origin: "builder".into(),
                base_dir: PathBuf::new(),
                inputs: Vec::new(),
                nodes: Vec::new(),
                outputs: Vec::new(),
                serving: Serving::default(),
                kafka: None,
                tables: Vec::new(),
            },
        }
    }

    /// Resolves relative weights paths against `dir`.
    pub fn base_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.spec.base_dir = dir.into();
        self
    }

    /// Declares an input field.
    pub fn input(&mut self, name: &str, ty: FieldType) -> FieldRef {
        self.spec.inputs.push((name.to_string(), ty));
        FieldRef::new(INPUT, name)
    }

    /// Adds a node.
    pub fn node(&mut self, name: &str, bound: Bound) -> NodeRef {
        self.spec.nodes.push(NodeSpec { name: name.to_string(), from: bound.from, kind: bound.kind });
        NodeRef { name: name.to_string() }
    }

    /// Sets how the graph is served (admission bound, default deadline).
    pub fn serving(&mut self, serving: Serving) {
        self.spec.serving = serving;
    }

    /// Declares an output field.
    pub fn output(&mut self, name: &str, field: FieldRef) {
        self.spec.outputs.push((name.to_string(), field));
    }

    /// The graph IR.
    pub fn build(self) -> GraphSpec {
        self.spec
    }

    /// Validates and plans the graph.
    pub fn plan(self) -> Result<Plan, GraphError> {
        Plan::new(&self.spec)
    }
}

/// A model node.
#[derive(Clone, Debug)]
pub struct Model {
    source: ModelSource,
    outputs: ModelOutputs,
    batching: Batching,
    learn: Option<Box<LearnSpec>>,
}

impl Model {
    fn of(source: ModelSource) -> Self {
        Model { source, outputs: ModelOutputs::One("y".into()), batching: Batching::default(), learn: None }
    }

    /// A model whose parameters are already in memory.
    pub fn loaded(model: Arc<DenseModel>) -> Self {
        Model::of(ModelSource::Loaded(model))
    }

    /// A model read from a safetensors file (see `ModelSource::File`).
    pub fn file(source: ModelSource) -> Self {
        Model::of(source)
    }

    /// A model file of a format, or a registered kernel (`format: onnx` in YAML): `format`
    /// names the plan's loader (see [`crate::Kernels`]), `path` the file (relative to the
    /// builder's base directory). As in YAML, every output of the model is kept under its
    /// own name (pick or rename with [`Model::outputs`]).
    ///
    /// ```no_run
    /// use weir_engine::builder::{GraphBuilder, Model};
    /// use weir_operators::FieldType;
    ///
    /// let mut g = GraphBuilder::new("digits-onnx").base_dir("graphs");
    /// let pixels = g.input("pixels", FieldType::vector(64));
    /// let mlp = g.node("mlp", Model::format("onnx", "zoo/digits_mlp.onnx").bind(pixels));
    /// g.output("label", mlp.field("label"));
    /// let plan = g.plan().expect("a valid graph");
    /// ```
    pub fn format(format: &str, path: impl Into<PathBuf>) -> Self {
        Model {
            outputs: ModelOutputs::Own,
            ..Model::of(ModelSource::Format {
                format: format.to_string(),
                path: Some(path.into()),
                params: serde_yaml::Value::Null,
            })
        }
    }

    /// Sets a format model's `params:` (what a registered kernel reads; see
    /// [`crate::kernels::FormatArgs::params`]). No effect on other models' sources.
    pub fn params(mut self, value: serde_yaml::Value) -> Self {
        if let ModelSource::Format { params, .. } = &mut self.source {
            *params = value;
        }
        self
    }

    /// A linear model learned from feedback while it serves, from all-zero weights
    /// (see [`LearnSpec`]).
    pub fn learning(learn: LearnSpec) -> Self {
        Model { learn: Some(Box::new(learn)), ..Model::of(ModelSource::Untrained) }
    }

    /// Names the output field of a model with one output (default `y`).
    pub fn output(mut self, name: &str) -> Self {
        self.outputs = ModelOutputs::One(name.to_string());
        self
    }

    /// Keeps these of the model's outputs, by the model's names, each as the field named
    /// beside it (`outputs: {model_name: field}` in YAML).
    pub fn outputs<'a>(mut self, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        self.outputs = ModelOutputs::Named(pairs.into_iter().map(|(m, f)| (m.to_string(), f.to_string())).collect());
        self
    }

    /// Sets batching and placement.
    pub fn batching(mut self, batching: Batching) -> Self {
        self.batching = batching;
        self
    }

    /// Feeds `input` to the model (a model with one input).
    pub fn bind(self, input: FieldRef) -> Bound {
        self.bind_inputs(ModelInputs::One(input))
    }

    /// Feeds a model with several inputs, by the model's input names (`inputs:` in YAML).
    pub fn bind_named<'a>(self, inputs: impl IntoIterator<Item = (&'a str, FieldRef)>) -> Bound {
        self.bind_inputs(ModelInputs::Named(inputs.into_iter().map(|(n, f)| (n.to_string(), f)).collect()))
    }

    fn bind_inputs(self, inputs: ModelInputs) -> Bound {
        Bound {
            kind: NodeKind::Model(ModelSpec {
                source: self.source,
                inputs,
                outputs: self.outputs,
                batching: self.batching,
                learn: self.learn,
            }),
            from: Vec::new(),
        }
    }
}

/// Map nodes.
pub mod map {
    use std::sync::Arc;

    use weir_operators::kernel::builtin::Builtin;
    use weir_operators::{FieldType, Value};

    use super::Bound;
    use crate::spec::{FieldRef, MapOp, MapSpec, NodeKind};

    /// A map node under construction.
    #[derive(Clone, Debug)]
    pub struct Map {
        op: MapOp,
        outputs: Vec<String>,
    }

    /// A built-in function, with its default output names.
    pub fn builtin(b: Builtin) -> Map {
        Map { op: MapOp::Builtin(b), outputs: Vec::new() }
    }

    /// A Rust closure with named, typed outputs. Errors and panics become error rows.
    pub fn function<const N: usize>(
        outputs: [(&str, FieldType); N],
        f: impl Fn(&[&Value]) -> Result<Vec<Value>, String> + Send + Sync + 'static,
    ) -> Map {
        let (names, types): (Vec<String>, Vec<FieldType>) =
            outputs.into_iter().map(|(n, t)| (n.to_string(), t)).unzip();
        Map { op: MapOp::Custom(Arc::new(f), types), outputs: names }
    }

    impl Map {
        /// Names the outputs.
        pub fn outputs<const N: usize>(mut self, names: [&str; N]) -> Self {
            self.outputs = names.iter().map(|s| s.to_string()).collect();
            self
        }

        /// Applies the function to these fields.
        pub fn bind(self, inputs: impl IntoIterator<Item = FieldRef>) -> Bound {
            Bound {
                kind: NodeKind::Map(MapSpec {
                    op: self.op,
                    inputs: inputs.into_iter().collect(),
                    outputs: self.outputs,
                }),
                from: Vec::new(),
            }
        }
    }
}

/// A combine node aggregating with `aggregate`.
pub fn combine(aggregate: Aggregate) -> Combine {
    Combine { aggregate, output: "y".into() }
}

/// A combine node under construction.
#[derive(Clone, Debug)]
pub struct Combine {
    aggregate: Aggregate,
    output: String,
}

impl Combine {
    /// Names the output field (default `y`).
    pub fn output(mut self, name: &str) -> Self {
        self.output = name.to_string();
        self
    }

    /// Aggregates these fields (from parallel branches, or one path).
    pub fn bind(self, inputs: impl IntoIterator<Item = FieldRef>) -> Bound {
        Bound {
            kind: NodeKind::Combine(CombineSpec {
                inputs: inputs.into_iter().collect(),
                aggregate: self.aggregate,
                output: self.output,
            }),
            from: Vec::new(),
        }
    }
}

/// A route node testing `by`.
pub fn route(by: FieldRef) -> Route {
    Route { by, branches: Vec::new() }
}

/// A route node under construction.
#[derive(Clone, Debug)]
pub struct Route {
    by: FieldRef,
    branches: Vec<(String, Condition)>,
}

impl Route {
    /// Adds a branch taken when `condition` holds (first match wins).
    pub fn when(mut self, branch: &str, condition: Condition) -> Self {
        self.branches.push((branch.to_string(), condition));
        self
    }

    /// Names the default branch and finishes the node.
    pub fn otherwise(self, default: &str) -> Bound {
        Bound {
            kind: NodeKind::Route(RouteSpec { by: self.by, branches: self.branches, default: default.to_string() }),
            from: Vec::new(),
        }
    }
}

/// A merge node: one field at a time, then the branch streams.
pub fn merge() -> Merge {
    Merge { fields: Vec::new() }
}

/// A merge node under construction.
#[derive(Clone, Debug)]
pub struct Merge {
    fields: Vec<(String, Vec<FieldRef>)>,
}

impl Merge {
    /// A merged field taking, from each branch stream in order, the given field.
    pub fn field(mut self, name: &str, per_branch: impl IntoIterator<Item = FieldRef>) -> Self {
        self.fields.push((name.to_string(), per_branch.into_iter().collect()));
        self
    }

    /// Merges these branch streams (one per branch of one route).
    pub fn bind(self, branches: impl IntoIterator<Item = StreamRef>) -> Bound {
        Bound { kind: NodeKind::Merge(MergeSpec { fields: self.fields }), from: branches.into_iter().collect() }
    }
}
