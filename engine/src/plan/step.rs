//! What a plan is made of: steps (resolved nodes) with their operators, the streams they
//! read, the layout of the rows they emit, and the graph's output.
//!
//! A leaf of [`super`]: resolution builds these, the compiler and the renderer read them.

use weir_operators::dataflow::lookup::Missing;
use weir_operators::dataflow::CombineSpec as CombineOp;
use weir_operators::kernel::condition::Condition;
use weir_operators::kernel::learner::Learner;
use weir_operators::kernel::{KernelFactory, MapKernel};
use weir_operators::FieldType;

use crate::spec::{Batching, FieldRef, LearnSpec};

/// Which stream a step reads: the graph input, a node's output, or one branch of a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamId {
    /// The graph's input rows.
    Input,
    /// The output of step `n`.
    Node(usize),
    /// Branch `b` of step `n` (a route, or a lookup with `missing: route`).
    Branch(usize, usize),
}

/// The layout of the rows on a stream: qualified field names and types, by index.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Schema {
    /// Fields in order.
    pub fields: Vec<(FieldRef, FieldType)>,
}

impl Schema {
    /// The index of `r`, if the stream carries it.
    pub fn index_of(&self, r: &FieldRef) -> Option<usize> {
        self.fields.iter().position(|(f, _)| f == r)
    }
}

/// The resolved operator of a step.
#[derive(Clone, Debug)]
pub enum StepOp {
    /// A batched model.
    Model {
        /// Indices of the input fields, in the model's input order.
        inputs: Vec<usize>,
        /// The types of the fields the model adds, in its output order (last in the
        /// step's schema).
        outputs: Vec<FieldType>,
        /// What the model is, for plans (`mlp [64, 32, 10]`).
        description: String,
        /// Builds each replica's kernel (weights loaded and checked).
        factory: KernelFactoryDebug,
        /// Batching and placement.
        batching: Batching,
    },
    /// A linear model that learns from the graph's feedback while it serves.
    Learn {
        /// Index of the input field (the features).
        input: usize,
        /// Index of the key field feedback is joined on, if feedback names keys.
        key: Option<usize>,
        /// The learner at its starting point (zeros, a weights file or a checkpoint).
        learner: Box<Learner>,
        /// The node's `learn:` settings.
        spec: Box<LearnSpec>,
        /// What the model is, for plans.
        description: String,
        /// Where checkpoints go (resolved against the graph's directory).
        checkpoint: Option<std::path::PathBuf>,
    },
    /// A row function.
    Map {
        /// The function's name.
        op: &'static str,
        /// Indices of its inputs.
        inputs: Vec<usize>,
        /// Types of its outputs.
        outputs: Vec<FieldType>,
        /// The function.
        f: MapKernel,
    },
    /// Dispatch: the first matching condition's branch, else the last (default) branch.
    Route {
        /// Index of the tested field.
        by: usize,
        /// Branch names; the last is the default.
        branches: Vec<String>,
        /// One condition per non-default branch.
        conditions: Vec<Condition>,
    },
    /// Join per row and aggregate.
    Combine(CombineOp),
    /// A join with a table by key: appends the table's value fields and `found`.
    Lookup {
        /// Index of the table in [`Plan::tables`](crate::plan::Plan::tables).
        table: usize,
        /// Index of the key field.
        key: usize,
        /// The value fields' types.
        values: Vec<FieldType>,
        /// What a missing key gets (with branches: the type's zero values, dropped on
        /// the `missing` branch).
        missing: Missing,
        /// Empty, or [`LOOKUP_BRANCHES`] for `missing: route`: found rows on the first
        /// branch, with the value fields; missing rows on the second, without them.
        branches: Vec<String>,
    },
    /// Union of a route's branches, rebuilt into one layout.
    Merge {
        /// Per `from` stream, the indices of the merged record's fields.
        layouts: Vec<Vec<usize>>,
    },
}

/// The branches of a lookup with `missing: route`.
pub const LOOKUP_BRANCHES: [&str; 2] = ["found", "missing"];

impl StepOp {
    /// The branches of a step that splits its rows (a route, a lookup with `missing:
    /// route`); `None` for a step with one output stream.
    pub fn branches(&self) -> Option<&[String]> {
        match self {
            StepOp::Route { branches, .. } => Some(branches),
            StepOp::Lookup { branches, .. } if !branches.is_empty() => Some(branches),
            _ => None,
        }
    }
}

/// A [`KernelFactory`] that prints as `<kernel>`.
#[derive(Clone)]
pub struct KernelFactoryDebug(pub KernelFactory);

impl std::fmt::Debug for KernelFactoryDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<kernel>")
    }
}

/// One node, resolved.
#[derive(Clone, Debug)]
pub struct Step {
    /// The node's name.
    pub name: String,
    /// The node's kind name.
    pub kind: &'static str,
    /// The streams it reads (several only for `combine` and `merge`).
    pub from: Vec<StreamId>,
    /// The layout of the rows it emits (for routes: of every branch).
    pub schema: Schema,
    /// The operator.
    pub op: StepOp,
}

/// The graph's output: the stream it reads and the fields it answers with.
#[derive(Clone, Debug)]
pub struct OutputPlan {
    /// The stream.
    pub stream: StreamId,
    /// Output name, index in the stream's rows, type.
    pub fields: Vec<(String, usize, FieldType)>,
}
