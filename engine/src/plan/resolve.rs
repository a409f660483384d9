//! Resolution of one node at a time, in dependency order: the streams it reads, the
//! layout of the rows it emits, its operator with every field reference an index, and
//! every topology rule of the module docs of [`super`].

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use weir_operators::dataflow::lookup::Missing;
use weir_operators::dataflow::CombineSpec as CombineOp;
use weir_operators::kernel::builtin::Builtin;
use weir_operators::kernel::model::DenseModel;
use weir_operators::kernel::sentence::{SentenceModel, SentenceModelError};
use weir_operators::kernel::{KernelFactory, MapKernel};
use weir_operators::{Column, FieldType, Value};

use crate::error::Problem;
use crate::spec::*;

use super::order::reads;
use super::params::{check_activation, check_batching, load_vector};
use super::*;

/// The route branches a stream sits on: (route step, branch) pairs, outermost first.
pub(super) type Context = Vec<(usize, usize)>;

/// What the resolver knows of a stream.
pub(super) struct StreamInfo {
    /// The layout of its rows.
    pub(super) schema: Schema,
    /// The route branches it sits on.
    pub(super) context: Context,
    /// Nodes whose fields this stream's rows carry.
    pub(super) provenance: BTreeSet<String>,
}

/// The state of resolution: the steps so far and every stream they made.
pub(super) struct Resolver<'a> {
    pub(super) spec: &'a GraphSpec,
    pub(super) steps: Vec<Step>,
    pub(super) index: HashMap<String, usize>,
    pub(super) infos: HashMap<StreamId, StreamInfo>,
    /// Output field names of every resolved node.
    pub(super) fields: HashMap<String, Vec<String>>,
}

/// A result whose error names the YAML key at fault, if any, and the problem.
pub(super) type NodeResult<T> = Result<T, (Option<String>, Problem)>;

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
            StreamId::Branch(i, b) => match self.steps[i].op.branches() {
                Some(branches) => format!("{}.{}", self.steps[i].name, branches[b]),
                None => self.steps[i].name.clone(),
            },
        }
    }

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
        let own = |field: &str| FieldRef::new(&node.name, field);
        let (op, out_fields, out_context): (StepOp, Vec<(String, FieldType)>, Context) = match &node.kind {
            NodeKind::Model(ModelSpec { learn: Some(learn), .. }) => {
                let NodeKind::Model(m) = &node.kind else { unreachable!("matched above") };
                if let Some(other) = self.steps.iter().find(|s| matches!(s.op, StepOp::Learn { .. })) {
                    return Err((
                        Some("learn".into()),
                        Problem::Option(format!(
                            "a graph has one learning node (its feedback has one destination); '{}' already learns",
                            other.name
                        )),
                    ));
                }
                let input = self.field_index(&schema, "input", &m.input, &path)?;
                let key = match &learn.key {
                    Some(k) => Some(self.field_index(&schema, "learn.key", k, &path)?),
                    None => None,
                };
                let step = super::learn::resolve(m, learn, input, key, &self.spec.base_dir)?;
                (step.op, step.outputs, context)
            }
            NodeKind::Model(m) => {
                let (input, ty) = self.field_index(&schema, "input", &m.input, &path)?;
                check_batching(&m.batching)?;
                check_activation(&m.source)?;
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
                let (name, f, out_types): (&'static str, MapKernel, Vec<FieldType>) = match &m.op {
                    MapOp::Builtin(b) => {
                        let out = at("inputs", b.output_types(&types).map_err(Problem::Type))?;
                        (b.name(), MapKernel::Builtin(b.clone()), out)
                    }
                    MapOp::StandardizeFile(p) => {
                        let path = self.spec.base_dir.join(p);
                        let mean = at("params", load_vector(&path, "mean"))?;
                        let std = at("params", load_vector(&path, "std"))?;
                        let b = Builtin::Standardize { mean, std };
                        let out = at("inputs", b.output_types(&types).map_err(Problem::Type))?;
                        (b.name(), MapKernel::Builtin(b), out)
                    }
                    MapOp::Custom(f, out) => ("custom", MapKernel::Rows(Arc::clone(f)), out.clone()),
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
                (StepOp::Map { op: name, inputs, outputs: out_types, f }, out, context)
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
            NodeKind::Lookup(l) => {
                let Some(table) = self.spec.tables.iter().position(|t| t.name == l.table) else {
                    let known: Vec<&str> = self.spec.tables.iter().map(|t| t.name.as_str()).collect();
                    return Err((
                        Some("table".into()),
                        Problem::Option(format!("no table '{}' (tables: {})", l.table, known.join(", "))),
                    ));
                };
                let t = &self.spec.tables[table];
                let (key, ty) = self.field_index(&schema, "key", &l.key, &path)?;
                if ty != t.key_type {
                    return Err((
                        Some("key".into()),
                        Problem::Type(format!("table '{}' has {} keys, but '{}' is {ty}", t.name, t.key_type, l.key)),
                    ));
                }
                let missing = lookup_missing(t, &l.missing)?;
                let mut out: Vec<(String, FieldType)> = t.values.clone();
                out.push(("found".into(), FieldType::scalar(weir_operators::value::DType::Bool)));
                let values = t.values.iter().map(|(_, ty)| ty.clone()).collect();
                let branches = match l.missing {
                    MissingSpec::Route => LOOKUP_BRANCHES.iter().map(|b| b.to_string()).collect(),
                    _ => Vec::new(),
                };
                (StepOp::Lookup { table, key, values, missing, branches }, out, context)
            }
            NodeKind::Merge(m) => return self.merge(node, m, from),
        };
        schema.fields.extend(out_fields.iter().map(|(n, t)| (own(n), t.clone())));
        provenance.insert(node.name.clone());
        let idx = self.steps.len();
        self.fields.insert(node.name.clone(), out_fields.iter().map(|(n, _)| n.clone()).collect());
        if let Some(branches) = op.branches() {
            for b in 0..branches.len() {
                let mut ctx = out_context.clone();
                ctx.push((idx, b));
                let mut schema = schema.clone();
                if matches!(op, StepOp::Lookup { .. }) && b == 1 {
                    // Missing rows carry `found` but no value fields.
                    let values = out_fields.len() - 1;
                    let found = schema.fields.len() - 1;
                    schema.fields.drain(found - values..found);
                }
                self.infos.insert(
                    StreamId::Branch(idx, b),
                    StreamInfo { schema, context: ctx, provenance: provenance.clone() },
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
        let Some(branches) = self.steps[route].op.branches() else {
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
            ModelSource::Sentence { dir, max_length, normalize } => {
                let full = self.spec.base_dir.join(dir);
                let model = SentenceModel::load(&full, *max_length, *normalize).map_err(|e| {
                    let fetch = match e {
                        SentenceModelError::Missing { .. } => "; install all-MiniLM-L6-v2 with: scripts/fetch-minilm",
                        SentenceModelError::Invalid { .. } => "",
                    };
                    (Some("model".into()), Problem::Option(format!("{e}{fetch}")))
                })?;
                let description = format!(
                    "sentence embeddings {} [{}], up to {} tokens{}",
                    dir.display(),
                    model.width(),
                    model.max_length,
                    if model.normalize { ", normalized" } else { "" }
                );
                let output = FieldType::vector(model.width());
                let model = Arc::new(model);
                Ok((
                    description,
                    model.factory(m.batching.device),
                    Accepts::Type(FieldType::scalar(weir_operators::DType::Str)),
                    output,
                ))
            }
            ModelSource::Untrained => Err((
                Some("weights".into()),
                Problem::Option("an untrained model needs 'learn:' to learn its weights".into()),
            )),
        }
    }

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
        let mut fields = Vec::new();
        for (key, r) in &refs {
            let (i, ty) = self.field_index(&info.schema, key, r, &path)?;
            fields.push((key.clone(), i, ty));
        }
        Ok(OutputPlan { stream: from[0], fields })
    }

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

/// A lookup's missing-key policy against its table: defaults name every value field
/// once, each of the field's type (an integer is taken for an `f32` field). A routed
/// lookup fills missing rows with zero values, which its `missing` branch drops.
fn lookup_missing(t: &TableSpec, m: &MissingSpec) -> Result<Missing, (Option<String>, Problem)> {
    let given = match m {
        MissingSpec::Defaults(given) => given,
        MissingSpec::Error => return Ok(Missing::Fail),
        MissingSpec::Route => {
            return Ok(Missing::Defaults(t.values.iter().map(|(_, ty)| Column::filler(ty, 1).value(0)).collect()))
        }
    };
    let mut values = Vec::with_capacity(t.values.len());
    for (name, ty) in &t.values {
        let Some((_, v)) = given.iter().find(|(n, _)| n == name) else {
            return Err((
                Some(format!("defaults.{name}")),
                Problem::Option(format!(
                    "missing: default needs a default for every value field of table '{}'; '{name}' has none",
                    t.name
                )),
            ));
        };
        let v = match (v, ty.dtype) {
            (Value::I64(i), weir_operators::value::DType::F32) => Value::F32(*i as f32),
            _ => v.clone(),
        };
        if !v.conforms_to(ty) {
            return Err((
                Some(format!("defaults.{name}")),
                Problem::Type(format!("'{name}' is {ty}, the default is {v:?}")),
            ));
        }
        values.push(v);
    }
    if let Some((n, _)) = given.iter().find(|(n, _)| !t.values.iter().any(|(v, _)| v == n)) {
        return Err((
            Some(format!("defaults.{n}")),
            Problem::Option(format!("table '{}' has no value field '{n}'", t.name)),
        ));
    }
    Ok(Missing::Defaults(values))
}
