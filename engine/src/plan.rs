//! Validation and resolution: a [`GraphSpec`] becomes a [`Plan`], or a [`GraphError`]
//! that says exactly what is wrong.
//!
//! The plan is what the compiler turns into timely operators: nodes in topological order,
//! each with the streams it reads (`from`), the layout of the rows it emits (a
//! [`Schema`]), and its operator with every field resolved to an index. Weights files are
//! read and checked here, so a graph that passes `weir check` loads.
//!
//! Rules enforced (each violation is an error naming the node and field):
//! - names: node names are unique, not `input`, without dots; inputs and outputs unique;
//! - references: every `node.field` exists and is on the reading node's path;
//! - no cycles;
//! - types and shapes agree across every edge (model widths, builtin inputs, aggregates);
//! - weights files exist and have the tensor names and shapes the node needs;
//! - batching options are in range;
//! - topology: a node reads from one path (parallel paths join only in `combine`),
//!   inputs of a `combine` share their route branch, a `merge` takes exactly one stream
//!   per branch of one route, the outputs sit outside every route, and every node leads
//!   to the outputs (nothing computed is silently dropped).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use weir_operators::dataflow::CombineSpec as CombineOp;
use weir_operators::kernel::builtin::Builtin;
use weir_operators::kernel::condition::Condition;
use weir_operators::kernel::device::DeviceSpec;
use weir_operators::kernel::model::{DenseModel, WeightsError};
use weir_operators::kernel::{KernelFactory, MapFn};
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
    /// Branch `b` of route step `n`.
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
    /// A row function.
    Map {
        /// The function's name.
        op: &'static str,
        /// Indices of its inputs.
        inputs: Vec<usize>,
        /// Types of its outputs.
        outputs: Vec<FieldType>,
        /// The function.
        f: MapFnDebug,
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
    /// Union of a route's branches, rebuilt into one layout.
    Merge {
        /// Per `from` stream, the indices of the merged record's fields.
        layouts: Vec<Vec<usize>>,
    },
}

/// A [`KernelFactory`] that prints as `<kernel>`.
#[derive(Clone)]
pub struct KernelFactoryDebug(pub KernelFactory);

impl std::fmt::Debug for KernelFactoryDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<kernel>")
    }
}

/// A [`MapFn`] that prints as `<fn>`.
#[derive(Clone)]
pub struct MapFnDebug(pub MapFn);

impl std::fmt::Debug for MapFnDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<fn>")
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
}

/// The route branches a stream sits on: (route step, branch) pairs, outermost first.
type Context = Vec<(usize, usize)>;

struct StreamInfo {
    schema: Schema,
    /// The route branches it sits on.
    context: Context,
    /// Nodes whose fields this stream's rows carry.
    provenance: BTreeSet<String>,
}

struct Resolver<'a> {
    spec: &'a GraphSpec,
    steps: Vec<Step>,
    index: HashMap<String, usize>,
    infos: HashMap<StreamId, StreamInfo>,
    /// Output field names of every resolved node.
    fields: HashMap<String, Vec<String>>,
}

impl Plan {
    /// Validates `spec` and resolves it into a plan.
    pub fn new(spec: &GraphSpec) -> Result<Plan, GraphError> {
        let origin = spec.origin.as_str();
        let err = |p: Problem| GraphError::new(origin, p);
        if spec.name.is_empty() || spec.name.contains(['/', ' ', '.']) {
            return Err(err(Problem::Option(format!(
                "graph name '{}' must be non-empty without '/', '.' or spaces",
                spec.name
            )))
            .at_field("name"));
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
            if node.name == INPUT || node.name == "outputs" || node.name.is_empty() || node.name.contains('.') {
                return Err(err(Problem::Option(format!(
                    "'{}' cannot name a node (reserved, empty, or contains '.')",
                    node.name
                )))
                .at_node(&node.name));
            }
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
        })
    }

    /// The step named `name`.
    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.name == name)
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

/// The fields a node reads, each with the YAML key it appears under.
fn reads(node: &NodeSpec) -> Vec<(String, &FieldRef)> {
    let many = |key: &str, refs: &'_ [FieldRef]| -> Vec<(String, usize)> {
        (0..refs.len()).map(|i| (format!("{key}[{i}]"), i)).collect()
    };
    match &node.kind {
        NodeKind::Model(m) => vec![("input".into(), &m.input)],
        NodeKind::Map(m) => many("inputs", &m.inputs).into_iter().map(|(k, i)| (k, &m.inputs[i])).collect(),
        NodeKind::Route(r) => vec![("by".into(), &r.by)],
        NodeKind::Combine(c) => many("inputs", &c.inputs).into_iter().map(|(k, i)| (k, &c.inputs[i])).collect(),
        NodeKind::Merge(m) => m
            .fields
            .iter()
            .flat_map(|(name, refs)| refs.iter().enumerate().map(move |(i, r)| (format!("fields.{name}[{i}]"), r)))
            .collect(),
    }
}

/// Orders nodes so that every node comes after the nodes it reads; reports unknown
/// nodes and cycles.
fn topological_order(spec: &GraphSpec) -> Result<Vec<usize>, GraphError> {
    let index: HashMap<&str, usize> = spec.nodes.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect();
    let known = || {
        let mut names: Vec<&str> = std::iter::once(INPUT).chain(spec.nodes.iter().map(|n| n.name.as_str())).collect();
        names.sort();
        names.join(", ")
    };
    let mut deps: Vec<Vec<usize>> = Vec::with_capacity(spec.nodes.len());
    for node in &spec.nodes {
        let mut d = Vec::new();
        let refs = reads(node).into_iter().map(|(k, r)| (k, r.node.clone()));
        let froms = node.from.iter().map(|s| ("from".to_string(), s.node.clone()));
        for (key, name) in refs.chain(froms) {
            if name == INPUT {
                continue;
            }
            match index.get(name.as_str()) {
                Some(&i) => d.push(i),
                None => {
                    return Err(GraphError::new(&spec.origin, Problem::UnknownNode { name, known: known() })
                        .at_node(&node.name)
                        .at_field(key))
                }
            }
        }
        deps.push(d);
    }
    // Depth-first, in declaration order: 0 = new, 1 = on the stack, 2 = done.
    let mut state = vec![0u8; spec.nodes.len()];
    let mut order = Vec::with_capacity(spec.nodes.len());
    fn visit(
        i: usize,
        deps: &[Vec<usize>],
        state: &mut [u8],
        stack: &mut Vec<usize>,
        order: &mut Vec<usize>,
    ) -> Result<(), Vec<usize>> {
        match state[i] {
            2 => return Ok(()),
            1 => {
                let start = stack.iter().position(|&s| s == i).unwrap_or(0);
                let mut cycle = stack[start..].to_vec();
                cycle.push(i);
                return Err(cycle);
            }
            _ => {}
        }
        state[i] = 1;
        stack.push(i);
        for &d in &deps[i] {
            visit(d, deps, state, stack, order)?;
        }
        stack.pop();
        state[i] = 2;
        order.push(i);
        Ok(())
    }
    for i in 0..spec.nodes.len() {
        let mut stack = Vec::new();
        if let Err(cycle) = visit(i, &deps, &mut state, &mut stack, &mut order) {
            // The stack runs from readers to what they read; show it in data-flow order.
            let path: Vec<&str> = cycle.iter().rev().map(|&c| spec.nodes[c].name.as_str()).collect();
            return Err(GraphError::new(&spec.origin, Problem::Cycle(path.join(" -> "))).at_node(path[0]));
        }
    }
    Ok(order)
}

type NodeResult<T> = Result<T, (Option<String>, Problem)>;

/// What input a model accepts: any f32 field of a width (dense models), or one type.
enum Accepts {
    Width(usize),
    Type(FieldType),
}

fn at<T>(field: &str, r: Result<T, Problem>) -> NodeResult<T> {
    r.map_err(|p| (Some(field.to_string()), p))
}

impl Resolver<'_> {
    fn info(&self, id: StreamId) -> &StreamInfo {
        // Streams are registered before any later step can name them.
        &self.infos[&id]
    }

    fn stream_of_node(&self, name: &str, key: &str) -> NodeResult<StreamId> {
        if name == INPUT {
            return Ok(StreamId::Input);
        }
        let i = self.index[name];
        if let StepOp::Route { branches, .. } = &self.steps[i].op {
            return Err((
                Some(key.into()),
                Problem::Topology(format!(
                    "'{name}' is a route and has no fields of its own; read from one of its branches with 'from: {name}.<branch>' (branches: {})",
                    branches.join(", ")
                )),
            ));
        }
        Ok(StreamId::Node(i))
    }

    fn resolve_from(&self, node: &NodeSpec) -> NodeResult<Vec<StreamId>> {
        let mut out = Vec::new();
        for s in &node.from {
            let id = match (&s.branch, s.node.as_str()) {
                (None, _) => self.stream_of_node(&s.node, "from")?,
                (Some(b), name) if name != INPUT => {
                    let i = self.index[name];
                    match &self.steps[i].op {
                        StepOp::Route { branches, .. } => match branches.iter().position(|x| x == b) {
                            Some(bi) => StreamId::Branch(i, bi),
                            None => {
                                return Err((
                                    Some("from".into()),
                                    Problem::UnknownField(format!(
                                        "route '{name}' has no branch '{b}' (branches: {})",
                                        branches.join(", ")
                                    )),
                                ))
                            }
                        },
                        _ => {
                            return Err((
                                Some("from".into()),
                                Problem::Topology(format!(
                                    "'{s}': only routes have branches; '{name}' is a {}",
                                    self.steps[i].kind
                                )),
                            ))
                        }
                    }
                }
                (Some(_), _) => {
                    return Err((Some("from".into()), Problem::Topology(format!("'{s}': the input has no branches"))))
                }
            };
            if out.contains(&id) {
                return Err((Some("from".into()), Problem::Duplicate(format!("stream '{s}' is listed twice"))));
            }
            out.push(id);
        }
        Ok(out)
    }

    /// The streams a reader of `refs` should read: the deepest nodes among them.
    fn infer_from(&self, refs: &[(String, &FieldRef)]) -> NodeResult<Vec<StreamId>> {
        let mut nodes: Vec<(&str, &str)> = Vec::new();
        for (key, r) in refs {
            if r.node != INPUT && !nodes.iter().any(|(n, _)| *n == r.node) {
                nodes.push((r.node.as_str(), key.as_str()));
            }
        }
        if nodes.is_empty() {
            return Ok(vec![StreamId::Input]);
        }
        let mut streams = Vec::new();
        for &(n, key) in &nodes {
            let dominated = nodes.iter().any(|&(m, _)| {
                m != n && self.stream_of_node(m, key).is_ok_and(|s| self.info(s).provenance.contains(n))
            });
            if !dominated {
                streams.push(self.stream_of_node(n, key)?);
            }
        }
        Ok(streams)
    }

    fn field_index(&self, schema: &Schema, key: &str, r: &FieldRef, path: &str) -> NodeResult<(usize, FieldType)> {
        if let Some(i) = schema.index_of(r) {
            return Ok((i, schema.fields[i].1.clone()));
        }
        let problem = match self.fields.get(&r.node) {
            Some(names) if !names.contains(&r.field) => Problem::UnknownField(format!(
                "{} '{}' has no field '{}' (its fields: {})",
                if r.node == INPUT { "the graph" } else { "node" },
                r.node,
                r.field,
                if names.is_empty() { "none".into() } else { names.join(", ") }
            )),
            _ => Problem::Topology(format!("field '{r}' is not on this node's path (it reads {path})")),
        };
        Err((Some(key.to_string()), problem))
    }

    fn describe(&self, id: StreamId) -> String {
        match id {
            StreamId::Input => INPUT.to_string(),
            StreamId::Node(i) => self.steps[i].name.clone(),
            StreamId::Branch(i, b) => match &self.steps[i].op {
                StepOp::Route { branches, .. } => format!("{}.{}", self.steps[i].name, branches[b]),
                _ => self.steps[i].name.clone(),
            },
        }
    }

    fn node(&mut self, node: &NodeSpec) -> NodeResult<()> {
        let refs = reads(node);
        let from = if node.from.is_empty() {
            if matches!(node.kind, NodeKind::Merge(_)) {
                return Err((
                    Some("from".into()),
                    Problem::Topology("a merge names the branches it merges: 'from: [route.a, route.b, ...]'".into()),
                ));
            }
            self.infer_from(&refs)?
        } else {
            self.resolve_from(node)?
        };
        let path = from.iter().map(|&s| format!("'{}'", self.describe(s))).collect::<Vec<_>>().join(" and ");
        let is_join = matches!(node.kind, NodeKind::Combine(_) | NodeKind::Merge(_));
        if from.len() > 1 && !is_join {
            return Err((
                None,
                Problem::Topology(format!(
                    "reads fields from parallel paths {path}; join them with a combine node first"
                )),
            ));
        }
        let context = self.info(from[0]).context.clone();
        if !matches!(node.kind, NodeKind::Merge(_)) {
            if let Some(&other) = from.iter().find(|&&s| self.info(s).context != context) {
                return Err((
                    None,
                    Problem::Topology(format!(
                        "joins '{}' and '{}', which sit on different route branches; merge the route first",
                        self.describe(from[0]),
                        self.describe(other)
                    )),
                ));
            }
        }
        // The joined record: the first stream's fields, then what only the others carry.
        let mut schema = self.info(from[0]).schema.clone();
        let mut extra_fields = Vec::new();
        let mut provenance = self.info(from[0]).provenance.clone();
        for &s in &from[1..] {
            let info = self.info(s);
            let mut extra = Vec::new();
            for (i, f) in info.schema.fields.iter().enumerate() {
                if schema.index_of(&f.0).is_none() {
                    extra.push(i);
                }
            }
            schema.fields.extend(extra.iter().map(|&i| info.schema.fields[i].clone()));
            extra_fields.push(extra);
            provenance.extend(info.provenance.iter().cloned());
        }
        let own = |field: &str| FieldRef::new(&node.name, field);
        let (op, out_fields, out_context): (StepOp, Vec<(String, FieldType)>, Context) = match &node.kind {
            NodeKind::Model(m) => {
                let (input, ty) = self.field_index(&schema, "input", &m.input, &path)?;
                check_batching(&m.batching)?;
                let (description, factory, accepts, out_ty) = self.load_model(m)?;
                let fits = match &accepts {
                    Accepts::Width(w) => ty.width() == Some(*w),
                    Accepts::Type(t) => &ty == t,
                };
                if !fits {
                    let wanted = match &accepts {
                        Accepts::Width(w) => format!("{w} numbers per row (f32[{w}])"),
                        Accepts::Type(t) => t.to_string(),
                    };
                    return Err((
                        Some("input".into()),
                        Problem::Type(format!("the model takes {wanted}, but '{}' is {ty}", m.input)),
                    ));
                }
                let out = (m.output.clone(), out_ty);
                let op = StepOp::Model {
                    input,
                    description,
                    factory: KernelFactoryDebug(factory),
                    batching: m.batching.clone(),
                };
                (op, vec![out], context)
            }
            NodeKind::Map(m) => {
                let mut inputs = Vec::new();
                let mut types = Vec::new();
                for (key, r) in &refs {
                    let (i, ty) = self.field_index(&schema, key, r, &path)?;
                    inputs.push(i);
                    types.push(ty);
                }
                let (name, f, out_types): (&'static str, MapFn, Vec<FieldType>) = match &m.op {
                    MapOp::Builtin(b) => {
                        let out = at("inputs", b.output_types(&types).map_err(Problem::Type))?;
                        (b.name(), b.clone().into_fn(), out)
                    }
                    MapOp::StandardizeFile(p) => {
                        let path = self.spec.base_dir.join(p);
                        let mean = at("params", load_vector(&path, "mean"))?;
                        let std = at("params", load_vector(&path, "std"))?;
                        let b = Builtin::Standardize { mean, std };
                        let out = at("inputs", b.output_types(&types).map_err(Problem::Type))?;
                        (b.name(), b.into_fn(), out)
                    }
                    MapOp::Custom(f, out) => ("custom", Arc::clone(f), out.clone()),
                };
                let names: Vec<String> = if m.outputs.is_empty() {
                    match &m.op {
                        MapOp::Builtin(b) => b.default_outputs().iter().map(|s| s.to_string()).collect(),
                        MapOp::StandardizeFile(_) => vec!["y".into()],
                        MapOp::Custom(..) => Vec::new(),
                    }
                } else {
                    m.outputs.clone()
                };
                if names.len() != out_types.len() {
                    return Err((
                        Some("outputs".into()),
                        Problem::Option(format!(
                            "{name} produces {} fields, {} names given",
                            out_types.len(),
                            names.len()
                        )),
                    ));
                }
                let out = names.into_iter().zip(out_types.iter().cloned()).collect();
                (StepOp::Map { op: name, inputs, outputs: out_types, f: MapFnDebug(f) }, out, context)
            }
            NodeKind::Route(rt) => {
                let (by, ty) = self.field_index(&schema, "by", &rt.by, &path)?;
                let mut branches: Vec<String> = rt.branches.iter().map(|(n, _)| n.clone()).collect();
                branches.push(rt.default.clone());
                at("branches", unique(branches.iter().map(String::as_str), "branch"))?;
                if rt.branches.is_empty() {
                    return Err((
                        Some("branches".into()),
                        Problem::Option("a route needs at least one conditional branch".into()),
                    ));
                }
                for (name, c) in &rt.branches {
                    c.check(&ty).map_err(|m| (Some(format!("branches.{name}.when")), Problem::Type(m)))?;
                }
                let conditions = rt.branches.iter().map(|(_, c)| c.clone()).collect();
                (StepOp::Route { by, branches, conditions }, Vec::new(), context)
            }
            NodeKind::Combine(c) => {
                if c.inputs.is_empty() {
                    return Err((Some("inputs".into()), Problem::Option("combine needs at least one input".into())));
                }
                let mut parts = Vec::new();
                let mut types = Vec::new();
                for (key, r) in &refs {
                    if c.inputs.iter().filter(|x| x == r).count() > 1 {
                        return Err((Some(key.clone()), Problem::Duplicate(format!("input '{r}' is listed twice"))));
                    }
                    let (i, ty) = self.field_index(&schema, key, r, &path)?;
                    parts.push(i);
                    types.push(ty);
                }
                let ty = at("inputs", c.aggregate.output_type(&types).map_err(Problem::Type))?;
                let op = CombineOp {
                    node: node.name.as_str().into(),
                    extra_fields,
                    parts,
                    aggregate: c.aggregate.clone(),
                    output: ty.clone(),
                };
                (StepOp::Combine(op), vec![(c.output.clone(), ty)], context)
            }
            NodeKind::Merge(m) => return self.merge(node, m, from),
        };
        schema.fields.extend(out_fields.iter().map(|(n, t)| (own(n), t.clone())));
        provenance.insert(node.name.clone());
        let idx = self.steps.len();
        self.fields.insert(node.name.clone(), out_fields.iter().map(|(n, _)| n.clone()).collect());
        if let StepOp::Route { branches, .. } = &op {
            for b in 0..branches.len() {
                let mut ctx = out_context.clone();
                ctx.push((idx, b));
                self.infos.insert(
                    StreamId::Branch(idx, b),
                    StreamInfo { schema: schema.clone(), context: ctx, provenance: provenance.clone() },
                );
            }
        } else {
            self.infos
                .insert(StreamId::Node(idx), StreamInfo { schema: schema.clone(), context: out_context, provenance });
        }
        self.index.insert(node.name.clone(), idx);
        self.steps.push(Step { name: node.name.clone(), kind: node.kind.name(), from, schema, op });
        Ok(())
    }

    fn merge(&mut self, node: &NodeSpec, m: &MergeSpec, from: Vec<StreamId>) -> NodeResult<()> {
        // Every input must be a stream inside one branch of the same route, one per branch.
        let contexts: Vec<Context> = from.iter().map(|&s| self.info(s).context.clone()).collect();
        let Some(&(route, _)) = contexts[0].last() else {
            return Err((
                Some("from".into()),
                Problem::Topology(format!("'{}' is not inside a route branch", self.describe(from[0]))),
            ));
        };
        let outer = contexts[0][..contexts[0].len() - 1].to_vec();
        let mut covered = Vec::new();
        for (k, ctx) in contexts.iter().enumerate() {
            match ctx.split_last() {
                Some((&(r, b), rest)) if r == route && rest == outer.as_slice() => covered.push(b),
                _ => {
                    return Err((
                        Some("from".into()),
                        Problem::Topology(format!(
                            "'{}' is not on a branch of route '{}' (a merge takes one stream per branch of one route; merge inner routes first)",
                            self.describe(from[k]),
                            self.steps[route].name
                        )),
                    ))
                }
            }
        }
        let StepOp::Route { branches, .. } = &self.steps[route].op else {
            return Err((None, Problem::Topology("internal: merge context is not a route".into())));
        };
        for (b, name) in branches.iter().enumerate() {
            match covered.iter().filter(|&&c| c == b).count() {
                1 => {}
                0 => {
                    return Err((
                        Some("from".into()),
                        Problem::Topology(format!(
                            "misses branch '{}.{name}': rows on it would never reach the output",
                            self.steps[route].name
                        )),
                    ))
                }
                _ => {
                    return Err((
                        Some("from".into()),
                        Problem::Duplicate(format!(
                            "takes two streams from branch '{}.{name}'",
                            self.steps[route].name
                        )),
                    ))
                }
            }
        }
        let schemas: Vec<Schema> = from.iter().map(|&s| self.info(s).schema.clone()).collect();
        let common: Vec<(FieldRef, FieldType)> = schemas[0]
            .fields
            .iter()
            .filter(|(f, t)| schemas.iter().all(|s| s.index_of(f).is_some_and(|i| &s.fields[i].1 == t)))
            .cloned()
            .collect();
        let mut layouts: Vec<Vec<usize>> =
            schemas.iter().map(|s| common.iter().filter_map(|(f, _)| s.index_of(f)).collect()).collect();
        let mut out_fields = Vec::new();
        for (name, refs) in &m.fields {
            let key = format!("fields.{name}");
            if refs.len() != from.len() {
                return Err((
                    Some(key),
                    Problem::Option(format!(
                        "names {} fields for {} merged streams (one per 'from' stream, in order)",
                        refs.len(),
                        from.len()
                    )),
                ));
            }
            let mut ty: Option<FieldType> = None;
            for (k, r) in refs.iter().enumerate() {
                let (i, t) =
                    self.field_index(&schemas[k], &format!("{key}[{k}]"), r, &format!("'{}'", self.describe(from[k])))?;
                if let Some(prev) = &ty {
                    if prev != &t {
                        return Err((
                            Some(format!("{key}[{k}]")),
                            Problem::Type(format!("'{r}' is {t}, but '{}' is {prev}", refs[0])),
                        ));
                    }
                }
                ty = Some(t);
                layouts[k].push(i);
            }
            if let Some(t) = ty {
                out_fields.push((name.clone(), t));
            }
        }
        let mut schema = Schema { fields: common };
        schema.fields.extend(out_fields.iter().map(|(n, t)| (FieldRef::new(&node.name, n), t.clone())));
        let mut provenance: BTreeSet<String> = self.info(from[0]).provenance.clone();
        for &s in &from[1..] {
            let other = &self.info(s).provenance;
            provenance.retain(|p| other.contains(p));
        }
        provenance.insert(node.name.clone());
        let idx = self.steps.len();
        self.fields.insert(node.name.clone(), out_fields.iter().map(|(n, _)| n.clone()).collect());
        self.infos.insert(StreamId::Node(idx), StreamInfo { schema: schema.clone(), context: outer, provenance });
        self.index.insert(node.name.clone(), idx);
        self.steps.push(Step { name: node.name.clone(), kind: "merge", from, schema, op: StepOp::Merge { layouts } });
        Ok(())
    }

    fn load_model(&self, m: &ModelSpec) -> NodeResult<(String, KernelFactory, Accepts, FieldType)> {
        let dense = |model: Arc<DenseModel>| {
            let description = format!("{} {:?}", model.arch, model.sizes());
            let accepts = Accepts::Width(model.input_width());
            let out = model.output_type();
            (description, model.factory(m.batching.device), accepts, out)
        };
        match &m.source {
            ModelSource::Loaded(model) => Ok(dense(Arc::clone(model))),
            ModelSource::File { path, arch, sizes, hidden_activation, output_activation } => {
                let full = self.spec.base_dir.join(path);
                DenseModel::load(&full, *arch, sizes.as_deref(), *hidden_activation, *output_activation)
                    .map(|model| dense(Arc::new(model)))
                    .map_err(|e| (Some("weights".into()), Problem::Weights(e)))
            }
            ModelSource::Custom { description, factory, input, output } => {
                Ok((description.clone(), Arc::clone(factory), Accepts::Type(input.clone()), output.clone()))
            }
        }
    }

    fn output(&self) -> NodeResult<OutputPlan> {
        let refs: Vec<(String, &FieldRef)> = self.spec.outputs.iter().map(|(n, r)| (n.clone(), r)).collect();
        for (key, r) in &refs {
            if r.node != INPUT && !self.index.contains_key(&r.node) {
                let mut known: Vec<&str> = self.index.keys().map(String::as_str).collect();
                known.sort();
                return Err((
                    Some(key.clone()),
                    Problem::UnknownNode { name: r.node.clone(), known: known.join(", ") },
                ));
            }
        }
        let from = self.infer_from(&refs)?;
        let path = from.iter().map(|&s| format!("'{}'", self.describe(s))).collect::<Vec<_>>().join(" and ");
        if from.len() > 1 {
            return Err((
                None,
                Problem::Topology(format!("the outputs read parallel paths {path}; join them with a combine node")),
            ));
        }
        let info = self.info(from[0]);
        if let Some(&(route, b)) = info.context.last() {
            let StepOp::Route { branches, .. } = &self.steps[route].op else {
                return Err((None, Problem::Topology("internal: context is not a route".into())));
            };
            return Err((
                None,
                Problem::Topology(format!(
                    "the outputs read {path}, inside branch '{}.{}'; merge the route's branches first, or rows on other branches are never answered",
                    self.steps[route].name, branches[b]
                )),
            ));
        }
        let mut fields = Vec::new();
        for (key, r) in &refs {
            let (i, ty) = self.field_index(&info.schema, key, r, &path)?;
            fields.push((key.clone(), i, ty));
        }
        Ok(OutputPlan { stream: from[0], fields })
    }

    fn check_all_used(&self, output: &OutputPlan) -> Result<(), (String, Problem)> {
        let mut used = vec![false; self.steps.len()];
        let mut todo = vec![output.stream];
        while let Some(s) = todo.pop() {
            let i = match s {
                StreamId::Input => continue,
                StreamId::Node(i) | StreamId::Branch(i, _) => i,
            };
            if !used[i] {
                used[i] = true;
                todo.extend(self.steps[i].from.iter().copied());
            }
        }
        match used.iter().position(|u| !u) {
            Some(i) => Err((
                self.steps[i].name.clone(),
                Problem::Topology("does not lead to the outputs: its results would be computed and dropped".into()),
            )),
            None => Ok(()),
        }
    }
}

fn check_batching(b: &Batching) -> NodeResult<()> {
    if !(1..=65536).contains(&b.max_batch_size) {
        return Err((
            Some("max_batch_size".into()),
            Problem::Option(format!("{} is out of range (1 to 65536)", b.max_batch_size)),
        ));
    }
    if b.max_wait_ms > 60_000 {
        return Err((
            Some("max_wait_ms".into()),
            Problem::Option(format!("{} is out of range (0 to 60000)", b.max_wait_ms)),
        ));
    }
    if !(1..=256).contains(&b.replicas) {
        return Err((Some("replicas".into()), Problem::Option(format!("{} is out of range (1 to 256)", b.replicas))));
    }
    if let DeviceSpec::Cuda(n) = b.device {
        if !candle_core::utils::cuda_is_available() {
            return Err((
                Some("device".into()),
                Problem::Option(format!(
                    "device cuda:{n} needs weir built with the 'cuda' feature; this build has CPU only"
                )),
            ));
        }
    }
    Ok(())
}

/// Reads a 1-D f32 tensor `name` from a safetensors file.
fn load_vector(path: &Path, name: &str) -> Result<Vec<f32>, Problem> {
    let bytes = std::fs::read(path)
        .map_err(|e| WeightsError::Unreadable { path: path.to_path_buf(), reason: e.to_string() })?;
    let tensors = candle_core::safetensors::load_buffer(&bytes, &candle_core::Device::Cpu)
        .map_err(|e| WeightsError::Malformed { path: path.to_path_buf(), reason: e.to_string() })?;
    let t = tensors.get(name).ok_or_else(|| {
        let mut found: Vec<&str> = tensors.keys().map(String::as_str).collect();
        found.sort();
        WeightsError::MissingTensor { path: path.to_path_buf(), name: name.into(), found: found.join(", ") }
    })?;
    let bad = || WeightsError::BadTensor {
        path: path.to_path_buf(),
        name: name.into(),
        found: format!("{:?} {:?}", t.dtype(), t.dims()),
        expected: "F32 with one dimension".into(),
    };
    if t.dtype() != candle_core::DType::F32 || t.rank() != 1 {
        return Err(bad().into());
    }
    Ok(t.to_vec1::<f32>().map_err(|_| bad())?)
}
