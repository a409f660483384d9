//! Dependency order of a graph's nodes: what each node reads, and a topological order
//! that reports unknown nodes and cycles (with their path).

use std::collections::HashMap;

use crate::error::{GraphError, Problem};
use crate::spec::*;

/// The fields a node reads, each with the YAML key it appears under.
pub(super) fn reads(node: &NodeSpec) -> Vec<(String, &FieldRef)> {
    let many = |key: &str, refs: &'_ [FieldRef]| -> Vec<(String, usize)> {
        (0..refs.len()).map(|i| (format!("{key}[{i}]"), i)).collect()
    };
    match &node.kind {
        NodeKind::Model(m) => {
            let key = m.learn.as_ref().and_then(|l| l.key.as_ref()).map(|k| ("learn.key".to_string(), k));
            m.inputs.fields().into_iter().chain(key).collect()
        }
        NodeKind::Map(m) => many("inputs", &m.inputs).into_iter().map(|(k, i)| (k, &m.inputs[i])).collect(),
        NodeKind::Route(r) => vec![("by".into(), &r.by)],
        NodeKind::Lookup(l) => vec![("key".into(), &l.key)],
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
pub(super) fn topological_order(spec: &GraphSpec) -> Result<Vec<usize>, GraphError> {
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
