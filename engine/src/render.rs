//! A plan as text (`weir check`), Graphviz dot or Mermaid (`weir graph`).

use std::fmt::Write;

use weir_operators::kernel::device::Precision;

use crate::plan::{Plan, StepOp, StreamId};
use crate::spec::INPUT;

fn stream_name(plan: &Plan, s: StreamId) -> (String, Option<String>) {
    match s {
        StreamId::Input => (INPUT.to_string(), None),
        StreamId::Node(i) => (plan.steps[i].name.clone(), None),
        StreamId::Branch(i, b) => {
            let branch = plan.steps[i].op.branches().and_then(|branches| branches.get(b).cloned());
            (plan.steps[i].name.clone(), branch)
        }
    }
}

fn label(plan: &Plan, i: usize) -> String {
    let step = &plan.steps[i];
    match &step.op {
        StepOp::Model { description, batching, .. } => format!(
            "{} ({description}, batch {}, {}, x{} {}{})",
            step.name,
            batching.max_batch_size,
            match batching.max_wait_ms {
                None => "adaptive".to_string(),
                Some(ms) => format!("wait {ms}ms"),
            },
            batching.replicas,
            batching.device,
            match batching.dtype {
                Precision::F32 => String::new(),
                half => format!(" {half}"),
            }
        ),
        StepOp::Learn { description, spec, .. } => {
            let key = spec.key.as_ref().map_or("feedback brings features".to_string(), |k| format!("feedback by {k}"));
            format!("{} ({description}, {:?}, step every {} rows, {key})", step.name, spec.optimizer, spec.update_every)
        }
        StepOp::Map { op, .. } => format!("{} (map {op})", step.name),
        StepOp::Route { .. } => format!("{} (route)", step.name),
        StepOp::Combine(c) => format!("{} (combine {:?})", step.name, c.aggregate),
        StepOp::Merge { .. } => format!("{} (merge)", step.name),
        StepOp::Lookup { table, missing, branches, .. } => {
            let missing = match missing {
                _ if !branches.is_empty() => "branch 'missing'",
                weir_operators::dataflow::lookup::Missing::Defaults(_) => "defaults",
                weir_operators::dataflow::lookup::Missing::Fail => "error",
            };
            format!("{} (lookup in table '{}', missing key: {missing})", step.name, plan.tables[*table].name)
        }
    }
}

/// The compiled plan, one line per step: what it reads, what it adds, how it runs.
pub fn describe(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "graph '{}' ({}): OK", plan.name, plan.origin);
    let inputs: Vec<String> = plan.inputs.iter().map(|(n, t)| format!("{n}: {t}")).collect();
    let _ = writeln!(out, "  inputs: {}", inputs.join(", "));
    for t in &plan.tables {
        let values: Vec<String> = t.values.iter().map(|(n, ty)| format!("{n}: {ty}")).collect();
        let mut sources = Vec::new();
        if let Some(path) = &t.snapshot {
            sources.push(format!("snapshot {}", path.display()));
        }
        if let Some(topic) = &t.topic {
            sources.push(format!("topic {topic}"));
        }
        let sources = if sources.is_empty() { String::new() } else { format!(" (from {})", sources.join(", then ")) };
        let _ = writeln!(out, "  table {}: {}: {} -> {}{sources}", t.name, t.key, t.key_type, values.join(", "));
    }
    for (i, step) in plan.steps.iter().enumerate() {
        let from: Vec<String> = step
            .from
            .iter()
            .map(|&s| match stream_name(plan, s) {
                (n, Some(b)) => format!("{n}.{b}"),
                (n, None) => n,
            })
            .collect();
        let _ = writeln!(out, "  {}. {}  <- {}", i + 1, label(plan, i), from.join(" + "));
        let added: Vec<String> =
            step.schema.fields.iter().filter(|(f, _)| f.node == step.name).map(|(f, t)| format!("{f}: {t}")).collect();
        match &step.op {
            StepOp::Route { branches, conditions, .. } => {
                for (b, name) in branches.iter().enumerate() {
                    let cond = conditions.get(b).map_or("otherwise".to_string(), |c| format!("when {c}"));
                    let _ = writeln!(out, "       branch {name}: {cond}");
                }
            }
            StepOp::Lookup { branches, .. } if !branches.is_empty() => {
                let found = added.last().cloned().unwrap_or_default();
                let _ = writeln!(out, "       branch {}: adds {}", branches[0], added.join(", "));
                let _ = writeln!(out, "       branch {}: adds {found}", branches[1]);
            }
            _ => {
                let _ = writeln!(out, "       adds {}", added.join(", "));
            }
        }
    }
    let (src, _) = stream_name(plan, plan.output.stream);
    let outputs: Vec<String> =
        plan.output.fields.iter().map(|(n, i, t)| format!("{n} = {}: {t}", output_source(plan, *i))).collect();
    let _ = writeln!(out, "  outputs (from {src}): {}", outputs.join(", "));
    out
}

/// The qualified name of field `index` of the stream the outputs read.
fn output_source(plan: &Plan, index: usize) -> String {
    let schema = match plan.output.stream {
        StreamId::Input => None,
        StreamId::Node(i) | StreamId::Branch(i, _) => Some(&plan.steps[i].schema),
    };
    let name = match schema {
        Some(s) => s.fields.get(index).map(|(f, _)| f.to_string()),
        None => plan.inputs.get(index).map(|(n, _)| format!("{INPUT}.{n}")),
    };
    name.unwrap_or_default()
}

/// A node of a graph's drawing ([`topology`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopologyNode {
    /// The node's name (`input` and `output` for the graph's ends).
    pub name: String,
    /// Its kind: `input`, `output`, or the step's (`model`, `learn`, `map`, `route`,
    /// `combine`, `merge`, `lookup`).
    pub kind: &'static str,
    /// What `weir graph` labels it with.
    pub label: String,
}

/// An edge of a graph's drawing: from a node (or one branch of a route or lookup) to
/// the node that reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopologyEdge {
    /// The node read.
    pub from: String,
    /// The node reading it.
    pub to: String,
    /// The branch read, where `from` has branches.
    pub branch: Option<String>,
}

/// A graph's nodes (in the plan's order, between `input` and `output`) and edges: what
/// [`dot`] and [`mermaid`] draw, and the admin page draws from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// Every node.
    pub nodes: Vec<TopologyNode>,
    /// Every edge.
    pub edges: Vec<TopologyEdge>,
}

/// The topology of `plan`.
pub fn topology(plan: &Plan) -> Topology {
    let inputs: Vec<String> = plan.inputs.iter().map(|(n, t)| format!("{n}: {t}")).collect();
    let mut nodes =
        vec![TopologyNode { name: INPUT.to_string(), kind: "input", label: format!("input ({})", inputs.join(", ")) }];
    let mut edges = Vec::new();
    for (i, step) in plan.steps.iter().enumerate() {
        let kind = match step.op {
            StepOp::Model { .. } => "model",
            StepOp::Learn { .. } => "learn",
            StepOp::Map { .. } => "map",
            StepOp::Route { .. } => "route",
            StepOp::Combine(_) => "combine",
            StepOp::Merge { .. } => "merge",
            StepOp::Lookup { .. } => "lookup",
        };
        nodes.push(TopologyNode { name: step.name.clone(), kind, label: label(plan, i) });
        for &s in &step.from {
            let (from, branch) = stream_name(plan, s);
            edges.push(TopologyEdge { from, to: step.name.clone(), branch });
        }
    }
    let outputs: Vec<&str> = plan.output.fields.iter().map(|(n, _, _)| n.as_str()).collect();
    nodes.push(TopologyNode {
        name: "output".into(),
        kind: "output",
        label: format!("outputs: {}", outputs.join(", ")),
    });
    let (from, branch) = stream_name(plan, plan.output.stream);
    edges.push(TopologyEdge { from, to: "output".into(), branch });
    Topology { nodes, edges }
}

/// Graphviz dot.
pub fn dot(plan: &Plan) -> String {
    let topology = topology(plan);
    let mut out = format!("digraph \"{}\" {{\n  rankdir=LR;\n", plan.name);
    for node in &topology.nodes {
        let shape = match node.kind {
            "input" | "output" => {
                let _ = writeln!(out, "  {} [shape=box];", node.name);
                continue;
            }
            "model" | "learn" => "box3d",
            "route" => "diamond",
            "combine" | "merge" => "invtrapezium",
            "lookup" => "cylinder",
            _ => "ellipse",
        };
        let _ = writeln!(out, "  \"{}\" [label=\"{}\", shape={shape}];", node.name, node.label.replace('"', "'"));
    }
    for e in &topology.edges {
        let to = if e.to == "output" { e.to.clone() } else { format!("\"{}\"", e.to) };
        let label = e.branch.as_ref().map(|b| format!(" [label=\"{b}\"]")).unwrap_or_default();
        let _ = writeln!(out, "  \"{}\" -> {to}{label};", e.from);
    }
    out.push_str("}\n");
    out
}

/// Mermaid flowchart.
pub fn mermaid(plan: &Plan) -> String {
    let topology = topology(plan);
    let mut out = String::from("flowchart LR\n");
    for node in &topology.nodes {
        let text = node.label.replace('"', "'");
        let drawn = match node.kind {
            "input" | "output" => format!("{}[/{}/]", node.name, node.name),
            "route" => format!("{}{{\"{text}\"}}", node.name),
            "model" | "learn" => format!("{}[[\"{text}\"]]", node.name),
            _ => format!("{}[\"{text}\"]", node.name),
        };
        let _ = writeln!(out, "  {drawn}");
    }
    for e in &topology.edges {
        let label = e.branch.as_ref().map(|b| format!("|{b}|")).unwrap_or_default();
        let _ = writeln!(out, "  {} -->{label} {}", e.from, e.to);
    }
    out
}
