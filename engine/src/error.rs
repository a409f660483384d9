//! Errors in deployment graphs: what is wrong, and exactly where.
//!
//! Every [`GraphError`] names the graph file (or `builder`), the node and the field at
//! fault where there is one, and says what was expected. They are the graph author's
//! fault; nothing is retried.

use std::fmt;

use weir_operators::kernel::model::WeightsError;

/// A graph that cannot be loaded or validated. (Why an engine did not start is a
/// [`crate::StartError`].)
#[derive(Debug)]
pub struct GraphError {
    /// The file, or `builder`.
    pub origin: String,
    /// The node at fault.
    pub node: Option<String>,
    /// The field (YAML key or field reference) at fault.
    pub field: Option<String>,
    /// What is wrong (boxed: errors are rare, results are everywhere).
    pub problem: Box<Problem>,
}

/// What is wrong with a graph.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    /// The file cannot be read.
    #[error("cannot read the graph file: {0}")]
    Io(String),
    /// The YAML is malformed or has an unknown or missing key.
    #[error("{0}")]
    Syntax(String),
    /// A node kind weir does not know.
    #[error("unknown node kind '{0}' (expected one of: model, embed, map, route, combine, merge, lookup)")]
    UnknownKind(String),
    /// A reference to a node that does not exist.
    #[error("unknown node '{name}' (nodes are: {known})")]
    UnknownNode {
        /// The name used.
        name: String,
        /// The names that exist.
        known: String,
    },
    /// A reference to a field a node does not produce, or that is not on the path.
    #[error("{0}")]
    UnknownField(String),
    /// A name or input used twice.
    #[error("{0}")]
    Duplicate(String),
    /// The graph has a cycle.
    #[error("the graph has a cycle: {0}")]
    Cycle(String),
    /// Connected fields have incompatible types or shapes.
    #[error("type mismatch: {0}")]
    Type(String),
    /// A weights or parameter file is missing or does not fit.
    #[error(transparent)]
    Weights(#[from] WeightsError),
    /// A graph, node or table name that is empty or has a character other than an ASCII
    /// letter, a digit, `_` or `-` (names appear in URLs and in metric labels).
    #[error("{what} name {name:?} must be non-empty and use only ASCII letters, digits, '_' and '-' (names appear in URLs and metric labels)")]
    Name {
        /// What it names: `graph`, `node` or `table`.
        what: &'static str,
        /// The name as written.
        name: String,
    },
    /// A model file of a registered format (or a custom kernel) could not be loaded:
    /// the format's own reason.
    #[error("{format} model: {reason}")]
    Model {
        /// The format (or kernel) named by the node.
        format: String,
        /// Why it could not load.
        reason: String,
    },
    /// A node option is out of range or malformed.
    #[error("invalid option: {0}")]
    Option(String),
    /// The graph's shape is wrong: unmerged routes, parallel reads, unused nodes.
    #[error("{0}")]
    Topology(String),
}

impl GraphError {
    /// An error in `origin`, not tied to a node.
    pub fn new(origin: &str, problem: Problem) -> Self {
        GraphError { origin: origin.to_string(), node: None, field: None, problem: Box::new(problem) }
    }

    /// The same error, at `node`.
    pub fn at_node(mut self, node: &str) -> Self {
        self.node = Some(node.to_string());
        self
    }

    /// The same error, at `field`.
    pub fn at_field(mut self, field: impl fmt::Display) -> Self {
        self.field = Some(field.to_string());
        self
    }
}

impl fmt::Display for GraphError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some(node) = &self.node {
            write!(f, ": node '{node}'")?;
        }
        if let Some(field) = &self.field {
            write!(f, ", field '{field}'")?;
        }
        write!(f, ": {}", self.problem)
    }
}

impl std::error::Error for GraphError {}
