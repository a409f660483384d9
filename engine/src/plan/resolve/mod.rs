//! Resolution of one node at a time, in dependency order: the streams it reads, the
//! layout of the rows it emits, its operator with every field reference an index, and
//! every topology rule of the module docs of [`super`].
//!
//! This module is the shared walk: which streams a node reads (given in `from`, or
//! inferred from the fields it reads), the record it sees (the first stream's fields,
//! then what only the others carry), the dispatch on the node's kind, and the streams
//! the step makes (one per branch for a step that splits its rows). What each kind
//! checks and builds is in its own file, a function of what it reads:
//! [`model`] (and [`learn`] for a model with `learn:`), [`map`], [`route`],
//! [`combine`], [`merge`], [`lookup`]. [`scope`] holds what they share: the fields a
//! node can read and the error type. No kind's file imports this one.
//!
//! # Adding a node kind
//!
//! 1. Spec: a variant of `NodeKind` and its `…Spec` struct, and its name in
//!    `NodeKind::name` (`engine/src/spec.rs`); a builder for it if the builder API
//!    offers it (`engine/src/builder.rs`).
//! 2. YAML: its `…File` struct and the function making its spec
//!    (`engine/src/yaml/nodes.rs`, or `engine/src/yaml/models.rs` for a model), its
//!    `kind:` name in `parse_node` (`engine/src/yaml/mod.rs`), its keys in
//!    `graphs/README.md`. A kind that batches takes the batching keys through
//!    `node_file_with_batching!` (`engine/src/yaml/batching.rs`).
//! 3. Plan: a `StepOp` variant (`engine/src/plan/step.rs`); the fields it reads, each
//!    with its YAML key, in `reads` (`engine/src/plan/order.rs`); its resolution in
//!    `engine/src/plan/resolve/<kind>.rs`, called from [`Resolver::node`] here.
//! 4. Compile: the timely operator for the `StepOp` (`engine/src/compile.rs`).
//! 5. Render: its label and shape in plans and drawings (`engine/src/render.rs`).
//!
//! Then a test per way the node can be wrong (`tests/broken_graphs.rs`).

mod combine;
mod learn;
mod lookup;
mod map;
mod merge;
mod model;
mod route;
mod scope;

pub(crate) use learn::unused_by_learning;
pub use learn::MODEL_VERSION;

use std::collections::{BTreeSet, HashMap};

use super::order::reads;
use super::step::{OutputPlan, Schema, Step, StepOp, StreamId};
use crate::error::Problem;
use crate::kernels::Kernels;
use crate::spec::{FieldRef, GraphSpec, MergeSpec, NodeKind, NodeSpec, INPUT};
use merge::MergedStream;
use scope::{Context, NodeResult, Resolved, Scope};

/// What the resolver knows of a stream.
struct StreamInfo {
    /// The layout of its rows.
    schema: Schema,
    /// The route branches it sits on.
    context: Context,
    /// Nodes whose fields this stream's rows carry.
    provenance: BTreeSet<String>,
}

/// The state of resolution: the steps so far and every stream they made.
pub(super) struct Resolver<'a> {
    spec: &'a GraphSpec,
    /// The model formats and kernels `format:` can name.
    kernels: &'a Kernels,
    steps: Vec<Step>,
    index: HashMap<String, usize>,
    infos: HashMap<StreamId, StreamInfo>,
    /// Output field names of `input` and of every resolved node.
    fields: HashMap<String, Vec<String>>,
}

impl<'a> Resolver<'a> {
    /// A resolver of `spec`, its model formats found in `kernels`, that knows the
    /// graph's input stream and no step yet.
    pub(super) fn new(spec: &'a GraphSpec, kernels: &'a Kernels) -> Self {
        let mut r = Resolver {
            spec,
            kernels,
            steps: Vec::new(),
            index: HashMap::new(),
            infos: HashMap::new(),
            fields: HashMap::new(),
        };
        let input_schema =
            Schema { fields: spec.inputs.iter().map(|(n, t)| (FieldRef::new(INPUT, n), t.clone())).collect() };
        r.fields.insert(INPUT.into(), spec.inputs.iter().map(|(n, _)| n.clone()).collect());
        r.infos.insert(
            StreamId::Input,
            StreamInfo { schema: input_schema, context: Vec::new(), provenance: BTreeSet::new() },
        );
        r
    }

    /// The steps resolved so far, in the order they were resolved.
    pub(super) fn into_steps(self) -> Vec<Step> {
        self.steps
    }

    fn info(&self, id: StreamId) -> &StreamInfo {
        // Streams are registered before any later step can name them.
        &self.infos[&id]
    }

    fn stream_of_node(&self, name: &str, key: &str) -> NodeResult<StreamId> {
        if name == INPUT {
            return Ok(StreamId::Input);
        }
        let i = self.index[name];
        if let Some(branches) = self.steps[i].op.branches() {
            return Err((
                Some(key.into()),
                Problem::Topology(format!(
                    "'{name}' splits its rows into branches; read from one of them with 'from: {name}.<branch>' (branches: {})",
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
                    match self.steps[i].op.branches() {
                        Some(branches) => match branches.iter().position(|x| x == b) {
                            Some(bi) => StreamId::Branch(i, bi),
                            None => {
                                return Err((
                                    Some("from".into()),
                                    Problem::UnknownField(format!(
                                        "{} '{name}' has no branch '{b}' (branches: {})",
                                        self.steps[i].kind,
                                        branches.join(", ")
                                    )),
                                ))
                            }
                        },
                        None => {
                            return Err((
                                Some("from".into()),
                                Problem::Topology(format!(
                                "'{s}': only routes and lookups with missing: route have branches; '{name}' is a {}",
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

    fn describe(&self, id: StreamId) -> String {
        match id {
            StreamId::Input => INPUT.to_string(),
            StreamId::Node(i) => self.steps[i].name.clone(),
            StreamId::Branch(i, b) => match self.steps[i].op.branches() {
                Some(branches) => format!("{}.{}", self.steps[i].name, branches[b]),
                None => self.steps[i].name.clone(),
            },
        }
    }

    /// Resolves `node` and registers its step and the streams it makes.
    pub(super) fn node(&mut self, node: &NodeSpec) -> NodeResult<()> {
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
        let scope = Scope { schema: &schema, path: &path, declared: &self.fields };
        let base_dir = self.spec.base_dir.as_path();
        let resolved = match &node.kind {
            NodeKind::Model(m) => {
                let learning = self.steps.iter().find(|s| matches!(s.op, StepOp::Learn { .. }));
                model::resolve(&node.name, m, &scope, learning.map(|s| s.name.as_str()), base_dir, self.kernels)?
            }
            NodeKind::Map(m) => map::resolve(m, &refs, &scope, base_dir)?,
            NodeKind::Route(rt) => route::resolve(rt, &scope)?,
            NodeKind::Combine(c) => combine::resolve(&node.name, c, &refs, &scope, extra_fields)?,
            NodeKind::Lookup(l) => lookup::resolve(l, &self.spec.tables, &scope)?,
            NodeKind::Merge(m) => return self.merge(node, m, from),
        };
        self.add_step(node, from, schema, resolved, context, provenance);
        Ok(())
    }

    /// Resolves merge node `node` (`m`) reading `from`, and registers its step.
    fn merge(&mut self, node: &NodeSpec, m: &MergeSpec, from: Vec<StreamId>) -> NodeResult<()> {
        let streams: Vec<MergedStream> = from
            .iter()
            .map(|&s| {
                let info = self.info(s);
                MergedStream { name: self.describe(s), schema: &info.schema, context: &info.context }
            })
            .collect();
        let merged = merge::resolve(m, &streams, &self.steps, &self.fields)?;
        // The merged rows carry what every branch's rows carry.
        let mut provenance: BTreeSet<String> = self.info(from[0]).provenance.clone();
        for &s in &from[1..] {
            let other = &self.info(s).provenance;
            provenance.retain(|p| other.contains(p));
        }
        self.add_step(node, from, merged.common, merged.resolved, merged.context, provenance);
        Ok(())
    }

    /// Registers the step of `node`, reading `from`: its rows are `schema` then the
    /// fields it adds, on the route branches `context`, carrying the fields of the
    /// nodes in `provenance` and its own. A step that splits its rows makes one stream
    /// per branch, each inside that branch; another makes one stream.
    fn add_step(
        &mut self,
        node: &NodeSpec,
        from: Vec<StreamId>,
        mut schema: Schema,
        resolved: Resolved,
        context: Context,
        mut provenance: BTreeSet<String>,
    ) {
        let Resolved { op, outputs } = resolved;
        schema.fields.extend(outputs.iter().map(|(n, t)| (FieldRef::new(&node.name, n), t.clone())));
        provenance.insert(node.name.clone());
        let idx = self.steps.len();
        self.fields.insert(node.name.clone(), outputs.iter().map(|(n, _)| n.clone()).collect());
        if let Some(branches) = op.branches() {
            for b in 0..branches.len() {
                let mut ctx = context.clone();
                ctx.push((idx, b));
                let mut schema = schema.clone();
                if matches!(op, StepOp::Lookup { .. }) && b == 1 {
                    // Missing rows carry `found` but no value fields.
                    schema = lookup::missing_branch_schema(schema, outputs.len() - 1);
                }
                self.infos.insert(
                    StreamId::Branch(idx, b),
                    StreamInfo { schema, context: ctx, provenance: provenance.clone() },
                );
            }
        } else {
            self.infos.insert(StreamId::Node(idx), StreamInfo { schema: schema.clone(), context, provenance });
        }
        self.index.insert(node.name.clone(), idx);
        self.steps.push(Step { name: node.name.clone(), kind: node.kind.name(), from, schema, op });
    }
    /// The graph's output: the one stream its fields are on, outside every route.
    pub(super) fn output(&self) -> NodeResult<OutputPlan> {
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
            let Some(branches) = self.steps[route].op.branches() else {
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
        let scope = Scope { schema: &info.schema, path: &path, declared: &self.fields };
        let mut fields = Vec::new();
        for (key, r) in &refs {
            let (i, ty) = scope.index(key, r)?;
            fields.push((key.clone(), i, ty));
        }
        Ok(OutputPlan { stream: from[0], fields })
    }

    /// Every step leads to the outputs: the first that does not is an error naming it.
    pub(super) fn check_all_used(&self, output: &OutputPlan) -> Result<(), (String, Problem)> {
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
