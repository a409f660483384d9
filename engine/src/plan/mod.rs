//! Validation and resolution: a [`GraphSpec`] becomes a [`Plan`], or a [`GraphError`]
//! that says exactly what is wrong.
//!
//! The plan is what the compiler turns into timely operators: nodes in topological order,
//! each with the streams it reads (`from`), the layout of the rows it emits (a
//! [`Schema`]), and its operator with every field resolved to an index. Weights files are
//! read and checked here, so a graph that passes `weir check` loads.
//!
//! Rules enforced (each violation is an error naming the node and field):
//! - names: graph, node and table names are non-empty and use only ASCII letters,
//!   digits, `_` and `-` (they appear in URLs and metric labels as they are); node names
//!   are unique and not `input` or `outputs`; inputs, outputs and tables are unique.
//!   Field names are not restricted: they appear only as JSON keys and in error
//!   messages, never in a URL or a label;
//! - references: every `node.field` exists and is on the reading node's path;
//! - no cycles;
//! - types and shapes agree across every edge (model widths, builtin inputs, aggregates);
//! - weights files exist and have the tensor names and shapes the node needs;
//! - batching options are in range;
//! - topology: a node reads from one path (parallel paths join only in `combine`),
//!   inputs of a `combine` share their route branch, a `merge` takes exactly one stream
//!   per branch of one route, the outputs sit outside every route, and every node leads
//!   to the outputs (nothing computed is silently dropped).

mod learn;
mod order;
mod params;
mod resolve;

pub(crate) use learn::unused_by_learning;
pub use learn::MODEL_VERSION;
use order::topological_order;
use resolve::{Resolver, StreamInfo};

use std::collections::{BTreeSet, HashMap};

use weir_operators::dataflow::lookup::Missing;
use weir_operators::dataflow::CombineSpec as CombineOp;
use weir_operators::kernel::condition::Condition;
use weir_operators::kernel::learner::Learner;
use weir_operators::kernel::{KernelFactory, MapKernel};
use weir_operators::FieldType;

use crate::error::{GraphError, Problem};
use crate::spec::*;

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
        /// Index of the input field.
        input: usize,
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
        /// Index of the table in [`Plan::tables`].
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

/// A validated graph, ready to compile.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The graph's name.
    pub name: String,
    /// Its file, or `builder`.
    pub origin: String,
    /// Input fields and types.
    pub inputs: Vec<(String, FieldType)>,
    /// Steps in topological order.
    pub steps: Vec<Step>,
    /// The outputs.
    pub output: OutputPlan,
    /// Admission bound and default deadline.
    pub serving: Serving,
    /// Kafka source and sink, if the graph has them.
    pub kafka: Option<KafkaSpec>,
    /// The graph's tables.
    pub tables: Vec<TableSpec>,
}

impl Plan {
    /// Validates `spec` and resolves it into a plan.
    pub fn new(spec: &GraphSpec) -> Result<Plan, GraphError> {
        let origin = spec.origin.as_str();
        let err = |p: Problem| GraphError::new(origin, p);
        check_name("graph", &spec.name).map_err(|p| err(p).at_field("name"))?;
        if spec.serving.max_in_flight == 0 {
            return Err(err(Problem::Option("max_in_flight must be at least 1".into()))
                .at_node("serving")
                .at_field("max_in_flight"));
        }
        if spec.serving.timeout_ms == Some(0) {
            return Err(err(Problem::Option("timeout_ms must be at least 1".into()))
                .at_node("serving")
                .at_field("timeout_ms"));
        }
        unique(spec.inputs.iter().map(|(n, _)| n.as_str()), "input field").map_err(|p| err(p).at_node(INPUT))?;
        unique(spec.outputs.iter().map(|(n, _)| n.as_str()), "output field").map_err(|p| err(p).at_node("outputs"))?;
        unique(spec.nodes.iter().map(|n| n.name.as_str()), "node").map_err(err)?;
        if spec.inputs.is_empty() {
            return Err(err(Problem::Topology("the graph declares no input fields".into())).at_field("inputs"));
        }
        if spec.outputs.is_empty() {
            return Err(err(Problem::Topology("the graph declares no outputs".into())).at_field("outputs"));
        }
        for node in &spec.nodes {
            check_name("node", &node.name).map_err(err)?;
            if node.name == INPUT || node.name == "outputs" {
                return Err(
                    err(Problem::Option(format!("'{}' cannot name a node (reserved)", node.name))).at_node(&node.name)
                );
            }
        }
        unique(spec.tables.iter().map(|t| t.name.as_str()), "table").map_err(|p| err(p).at_node("tables"))?;
        for t in &spec.tables {
            check_name("table", &t.name).map_err(|p| err(p).at_node("tables"))?;
            check_table(t).map_err(|(field, p)| err(p).at_node(&format!("tables.{}", t.name)).at_field(field))?;
        }
        let order = topological_order(spec)?;
        let mut r =
            Resolver { spec, steps: Vec::new(), index: HashMap::new(), infos: HashMap::new(), fields: HashMap::new() };
        let input_schema =
            Schema { fields: spec.inputs.iter().map(|(n, t)| (FieldRef::new(INPUT, n), t.clone())).collect() };
        r.fields.insert(INPUT.into(), spec.inputs.iter().map(|(n, _)| n.clone()).collect());
        r.infos.insert(
            StreamId::Input,
            StreamInfo { schema: input_schema, context: Vec::new(), provenance: BTreeSet::new() },
        );
        for i in order {
            let node = &spec.nodes[i];
            r.node(node).map_err(|(field, p)| {
                let e = err(p).at_node(&node.name);
                match field {
                    Some(f) => e.at_field(f),
                    None => e,
                }
            })?;
        }
        let output = r.output().map_err(|(field, p)| {
            let e = err(p).at_node("outputs");
            match field {
                Some(f) => e.at_field(f),
                None => e,
            }
        })?;
        r.check_all_used(&output).map_err(|(node, p)| err(p).at_node(&node))?;
        Ok(Plan {
            name: spec.name.clone(),
            origin: spec.origin.clone(),
            inputs: spec.inputs.clone(),
            steps: r.steps,
            output,
            serving: spec.serving.clone(),
            kafka: spec.kafka.clone(),
            tables: spec.tables.clone(),
        })
    }

    /// The qualified name of field `index` of the stream the outputs read.
    pub fn output_field(&self, index: usize) -> Option<FieldRef> {
        match self.output.stream {
            StreamId::Input => self.inputs.get(index).map(|(n, _)| FieldRef::new(INPUT, n)),
            StreamId::Node(i) | StreamId::Branch(i, _) => {
                self.steps[i].schema.fields.get(index).map(|(f, _)| f.clone())
            }
        }
    }

    /// The step named `name`.
    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.name == name)
    }
}

/// A table's key is an `i64` or a `str`; its value fields (any type, tensors too) are
/// at least one, named uniquely and not `found` or the key.
fn check_table(t: &TableSpec) -> Result<(), (&'static str, Problem)> {
    use weir_operators::value::DType;
    if !t.key_type.shape.is_empty() || !matches!(t.key_type.dtype, DType::I64 | DType::Str) {
        return Err(("key_type", Problem::Type(format!("a table key is i64 or str, not {}", t.key_type))));
    }
    if t.values.is_empty() {
        return Err(("values", Problem::Option("a table needs at least one value field".into())));
    }
    unique(t.values.iter().map(|(n, _)| n.as_str()), "value field").map_err(|p| ("values", p))?;
    if let Some((n, _)) = t.values.iter().find(|(n, _)| n == "found" || *n == t.key) {
        return Err((
            "values",
            Problem::Option(format!("'{n}' cannot name a value field (the key, or the lookup's 'found')")),
        ));
    }
    if let Some(path) = t.snapshot.as_ref().filter(|p| !p.exists()) {
        return Err(("snapshot", Problem::Option(format!("{} does not exist", path.display()))));
    }
    Ok(())
}

/// Whether `name` may name a graph, a node or a table: non-empty, only ASCII letters,
/// digits, `_` and `-`. Such names go into URLs (`/graphs/{name}/tables/{table}`) and
/// metric label values as they are.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// [`is_valid_name`], or the error naming `what` and the name.
fn check_name(what: &'static str, name: &str) -> Result<(), Problem> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(Problem::Name { what, name: name.to_string() })
    }
}

fn unique<'a>(names: impl Iterator<Item = &'a str>, what: &str) -> Result<(), Problem> {
    let mut seen = BTreeSet::new();
    for n in names {
        if !seen.insert(n) {
            return Err(Problem::Duplicate(format!("{what} '{n}' is declared twice")));
        }
    }
    Ok(())
}
