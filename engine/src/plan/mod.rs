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
//!
//! The parts, in the order [`Plan::new`] uses them: `names.rs` (which names are valid,
//! duplicates), `order.rs` (what each node reads, and the dependency order),
//! `resolve/` (one node at a time: the shared walk in `resolve/mod.rs`, whose docs list
//! what adding a node kind takes, and one file per kind), `step.rs` (what a plan is
//! made of: [`Step`], [`StepOp`], [`Schema`], [`StreamId`]).

mod names;
mod order;
mod resolve;
mod step;

pub use names::is_valid_name;
pub(crate) use resolve::unused_by_learning;
pub use resolve::MODEL_VERSION;
pub use step::{KernelFactoryDebug, OutputPlan, Schema, Step, StepOp, StreamId, LOOKUP_BRANCHES};

use names::{check_name, unique};
use order::topological_order;
use resolve::Resolver;

use weir_operators::FieldType;

use crate::error::{GraphError, Problem};
use crate::kernels::Kernels;
use crate::spec::*;

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
    /// Validates `spec` and resolves it into a plan, with weir's own model formats
    /// ([`Kernels::builtin`]).
    pub fn new(spec: &GraphSpec) -> Result<Plan, GraphError> {
        Plan::with_kernels(spec, &Kernels::builtin())
    }

    /// Validates `spec` and resolves it into a plan; its model nodes' `format:` names
    /// one of `kernels`.
    pub fn with_kernels(spec: &GraphSpec, kernels: &Kernels) -> Result<Plan, GraphError> {
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
        let mut r = Resolver::new(spec, kernels);
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
            steps: r.into_steps(),
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
