//! The graph intermediate representation (IR): what a YAML file and the Rust builder
//! both produce, and what [`crate::Plan::new`] validates and resolves.
//!
//! A graph has typed input fields, named nodes, and output fields. Every node produces
//! named fields, addressed as `node.field` (graph inputs as `input.field`). A row carries
//! every field computed on its path, so a node may read any field of its upstream nodes.
//! A node's upstream stream (`from`) is inferred from the fields it reads, or given
//! explicitly; nodes after a route name the branch they sit on (`from: route.branch`).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use weir_operators::kernel::aggregate::Aggregate;
use weir_operators::kernel::builtin::Builtin;
use weir_operators::kernel::condition::Condition;
use weir_operators::kernel::device::{DeviceSpec, Precision};
use weir_operators::kernel::learn::Optimizer;
use weir_operators::kernel::model::{Activation, Arch, DenseModel};
use weir_operators::kernel::{KernelFactory, MapFn};
use weir_operators::{FieldType, Value};

/// The reserved node name of the graph's input fields.
pub const INPUT: &str = "input";

/// A deployment graph before validation.
#[derive(Clone, Debug)]
pub struct GraphSpec {
    /// The graph's name (the HTTP route and the metric label).
    pub name: String,
    /// Where the graph came from, for errors: a file path, or `builder`.
    pub origin: String,
    /// Weights and parameter files are resolved relative to this directory.
    pub base_dir: PathBuf,
    /// Input fields, in order.
    pub inputs: Vec<(String, FieldType)>,
    /// Nodes, in declaration order (any order is valid; the plan sorts them).
    pub nodes: Vec<NodeSpec>,
    /// Output fields: a name and the field it takes its value from.
    pub outputs: Vec<(String, FieldRef)>,
    /// How the graph is served: admission and deadlines.
    pub serving: Serving,
    /// Where the graph reads and writes Kafka, if it does.
    pub kafka: Option<KafkaSpec>,
    /// Tables its `lookup` nodes join rows with.
    pub tables: Vec<TableSpec>,
}

impl GraphSpec {
    /// Every file the graph reads besides its own (resolved against `base_dir`): model
    /// weights and model files, sentence-model directories, `standardize` parameters,
    /// table snapshots. A learning node's checkpoint directory is not one: the node
    /// writes it. What a server's reload watches for changes.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for node in &self.nodes {
            match &node.kind {
                NodeKind::Model(m) => match &m.source {
                    ModelSource::File { path, .. } | ModelSource::Format { path: Some(path), .. } => {
                        files.push(self.base_dir.join(path));
                    }
                    ModelSource::Sentence { dir, .. } => files.push(self.base_dir.join(dir)),
                    _ => {}
                },
                NodeKind::Map(MapSpec { op: MapOp::StandardizeFile(path), .. }) => files.push(self.base_dir.join(path)),
                _ => {}
            }
        }
        files.extend(self.tables.iter().filter_map(|t| t.snapshot.clone()));
        files
    }
}

/// A table kept inside the graph's dataflow (the `tables:` section): each key's latest
/// row, changed by upserts; `lookup` nodes join rows with it by key.
#[derive(Clone, Debug, PartialEq)]
pub struct TableSpec {
    /// The table's name, unique in the graph.
    pub name: String,
    /// The key field's name (for snapshots and messages).
    pub key: String,
    /// The key's type: `i64` or `str`.
    pub key_type: FieldType,
    /// The value fields, in order, with their types.
    pub values: Vec<(String, FieldType)>,
    /// An Arrow or Parquet file (or a directory of them) the table starts from: a column
    /// named `key` and one per value field. Loaded by the command that starts the engine
    /// (`weir_connectors::snapshot`), before any row.
    pub snapshot: Option<PathBuf>,
    /// A Kafka topic of upserts the table follows, read from its beginning by every
    /// server (`weir_connectors::kafka::table`): the message key is the table key, the
    /// value a JSON object of the value fields, and a null value deletes the key. The
    /// brokers are the graph's `kafka.bootstrap_servers` or the command's
    /// `--kafka-bootstrap`.
    pub topic: Option<String>,
}

/// A graph's Kafka source and sink (the `kafka:` section of a graph file). The engine
/// only carries it; `weir-connectors` runs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaSpec {
    /// `host:port,...` of the brokers.
    pub bootstrap_servers: String,
    /// Topics whose messages are the graph's input rows.
    pub input_topics: Vec<String>,
    /// Where each input message's answer goes (same key).
    pub output_topic: String,
    /// The consumer group; partitions spread over the group's members.
    pub group_id: String,
    /// Where messages that cannot be decoded, or whose row fails, go.
    pub dead_letter_topic: String,
    /// Where labels for the graph's learning node come from, if from Kafka.
    pub feedback_topic: Option<String>,
    /// The payload format of input messages.
    pub format: PayloadFormat,
    /// librdkafka properties passed through as-is (SASL, TLS, tuning), for the consumer
    /// and the producer alike.
    pub properties: Vec<(String, String)>,
}

/// How a Kafka message's payload holds rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadFormat {
    /// One JSON object per message: one row.
    Json,
    /// An Arrow IPC stream per message: many rows, for producers that batch.
    Arrow,
}

/// How a graph admits rows and how long they may take. Servers (HTTP, Kafka) may
/// override both from their command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Serving {
    /// Rows of this graph admitted and not yet answered, at most. Beyond it a server
    /// refuses at once (HTTP 503) or waits (`weir run`, Kafka), so memory stays bounded.
    pub max_in_flight: usize,
    /// A row's deadline when its request names none, in milliseconds; `None`: no
    /// deadline.
    pub timeout_ms: Option<u64>,
}

impl Default for Serving {
    fn default() -> Self {
        Serving { max_in_flight: 8192, timeout_ms: Some(30_000) }
    }
}

/// A reference to a field: `node.field`, or `input.field`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldRef {
    /// The node (or `input`).
    pub node: String,
    /// The field.
    pub field: String,
}

impl FieldRef {
    /// `node.field`.
    pub fn new(node: impl Into<String>, field: impl Into<String>) -> Self {
        FieldRef { node: node.into(), field: field.into() }
    }
}

impl fmt::Display for FieldRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.node, self.field)
    }
}

impl FromStr for FieldRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().split_once('.') {
            Some((node, field)) if !node.is_empty() && !field.is_empty() && !field.contains('.') => {
                Ok(FieldRef::new(node, field))
            }
            _ => Err(format!("'{s}' is not a field reference (expected 'node.field' or 'input.field')")),
        }
    }
}

/// A reference to a stream: a node's output, or one branch of a route (`route.branch`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StreamRef {
    /// The node.
    pub node: String,
    /// The branch, for routes.
    pub branch: Option<String>,
}

impl fmt::Display for StreamRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.branch {
            Some(b) => write!(f, "{}.{b}", self.node),
            None => f.write_str(&self.node),
        }
    }
}

impl FromStr for StreamRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty stream reference".into());
        }
        Ok(match s.split_once('.') {
            Some((node, branch)) => StreamRef { node: node.into(), branch: Some(branch.into()) },
            None => StreamRef { node: s.into(), branch: None },
        })
    }
}

/// One node of the graph.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// Unique within the graph; not `input`; no dots.
    pub name: String,
    /// Explicit upstream streams; empty to infer them from the fields the node reads.
    pub from: Vec<StreamRef>,
    /// What the node does.
    pub kind: NodeKind,
}

/// The node kinds.
#[derive(Clone, Debug)]
pub enum NodeKind {
    /// A candle model, batched, on replica threads.
    Model(ModelSpec),
    /// Business logic, inline.
    Map(MapSpec),
    /// Dynamic dispatch to one branch per row.
    Route(RouteSpec),
    /// An ensemble: join branches per row, aggregate.
    Combine(CombineSpec),
    /// The union of a route's branches.
    Merge(MergeSpec),
    /// A join with a table by key.
    Lookup(LookupSpec),
}

/// A `lookup` node: adds a table's value fields (and `found`) to each row, from the
/// row the table had for the row's key when the row entered.
#[derive(Clone, Debug)]
pub struct LookupSpec {
    /// The table's name.
    pub table: String,
    /// The row's field holding the key.
    pub key: FieldRef,
    /// What a row whose key is not in the table gets.
    pub missing: MissingSpec,
}

/// What a `lookup` gives a row whose key is not in its table.
#[derive(Clone, Debug, PartialEq)]
pub enum MissingSpec {
    /// These values for the value fields (by name; every value field), `found` false.
    Defaults(Vec<(String, Value)>),
    /// The row fails with an `invalid_input` error naming the table and the key.
    Error,
    /// Rows take one of two branches: `found` (with the value fields) or `missing`
    /// (without them); nodes after the lookup read `from: lookup.found` or
    /// `from: lookup.missing`, and a `merge` joins them, as after a `route`.
    Route,
}

impl NodeKind {
    /// The kind's name in graph files.
    pub fn name(&self) -> &'static str {
        match self {
            NodeKind::Model(_) => "model",
            NodeKind::Map(_) => "map",
            NodeKind::Route(_) => "route",
            NodeKind::Combine(_) => "combine",
            NodeKind::Merge(_) => "merge",
            NodeKind::Lookup(_) => "lookup",
        }
    }
}

/// Where a model's parameters come from.
#[derive(Clone)]
pub enum ModelSource {
    /// A safetensors file (relative to the graph's directory).
    File {
        /// The file.
        path: PathBuf,
        /// The architecture.
        arch: Arch,
        /// Declared layer sizes `[in, ..., out]`, checked against the file.
        sizes: Option<Vec<usize>>,
        /// Between layers (`Activation::None` for a linear model: it has one layer).
        hidden_activation: Activation,
        /// After the last layer.
        output_activation: Activation,
    },
    /// Parameters already in memory (builder API).
    Loaded(Arc<DenseModel>),
    /// No file: every weight starts at zero, to be learned from feedback (only with
    /// `learn:`).
    Untrained,
    /// A BERT-family sentence-embedding model directory (`kind: embed`): `str` in,
    /// `f32[hidden]` out.
    Sentence {
        /// The directory (relative to the graph's directory) with `config.json`,
        /// `tokenizer.json` and `model.safetensors`.
        dir: PathBuf,
        /// Tokens per text at most (longer texts are truncated).
        max_length: usize,
        /// Scale embeddings to unit L2 norm.
        normalize: bool,
    },
    /// A model file of a format, or a kernel, that the graph's kernel registry knows by
    /// name (`format: onnx`, `format: xgboost`, a registered custom kernel).
    Format {
        /// The format's (or kernel's) name.
        format: String,
        /// The model file (relative to the graph's directory), if the format reads one.
        path: Option<PathBuf>,
        /// The node's `params:`, for the format to read (null when absent).
        params: serde_yaml::Value,
    },
    /// Any batch kernel (builder API): bring your own candle model. The factory is
    /// called once per replica thread.
    Custom {
        /// Shown in plans, e.g. `bert-base`.
        description: String,
        /// Builds one kernel instance per replica.
        factory: KernelFactory,
        /// The type of the input field it accepts.
        input: FieldType,
        /// The type of the output field it produces.
        output: FieldType,
    },
}

impl fmt::Debug for ModelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelSource::File { path, arch, .. } => write!(f, "{arch} from {}", path.display()),
            ModelSource::Loaded(m) => write!(f, "{} {:?} in memory", m.arch, m.sizes()),
            ModelSource::Untrained => f.write_str("untrained"),
            ModelSource::Sentence { dir, .. } => write!(f, "sentence embeddings from {}", dir.display()),
            ModelSource::Custom { description, input, output, .. } => write!(f, "{description} ({input} -> {output})"),
            ModelSource::Format { format, path: Some(path), .. } => write!(f, "{format} from {}", path.display()),
            ModelSource::Format { format, path: None, .. } => write!(f, "{format}"),
        }
    }
}

/// Which fields feed a model's inputs.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelInputs {
    /// The model's only input (`input:`).
    One(FieldRef),
    /// By the model's input names (`inputs: {name: field}`); every input named once.
    Named(Vec<(String, FieldRef)>),
}

impl ModelInputs {
    /// The fields read, each with the YAML key it appears under.
    pub fn fields(&self) -> Vec<(String, &FieldRef)> {
        match self {
            ModelInputs::One(f) => vec![("input".into(), f)],
            ModelInputs::Named(named) => named.iter().map(|(n, f)| (format!("inputs.{n}"), f)).collect(),
        }
    }
}

/// What a model's outputs are called as fields.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelOutputs {
    /// The model's only output, named so (`output:`).
    One(String),
    /// Some of the model's outputs, by its names, each renamed (`outputs: {name: field}`),
    /// in this order; the others are not kept.
    Named(Vec<(String, String)>),
    /// Every output of the model, under its own name.
    Own,
}

/// A `model` node.
#[derive(Clone, Debug)]
pub struct ModelSpec {
    /// The parameters.
    pub source: ModelSource,
    /// The fields fed to the model's inputs.
    pub inputs: ModelInputs,
    /// The names of the fields its outputs become.
    pub outputs: ModelOutputs,
    /// Batching and placement (the defaults for a learning node, which computes inline).
    pub batching: Batching,
    /// Learning from feedback while serving, if the node learns.
    pub learn: Option<Box<LearnSpec>>,
}

/// How a model node learns from feedback (the `learn:` section): a linear model
/// (logistic regression for 2 classes, softmax regression for more) whose weights the
/// graph's learner updates from labelled feedback while the node serves.
#[derive(Clone, Debug, PartialEq)]
pub struct LearnSpec {
    /// Classes: 2 for logistic regression (the output is the probability of class 1),
    /// more for softmax regression (the output is every class's probability).
    pub classes: usize,
    /// The optimizer and its learning rate.
    pub optimizer: Optimizer,
    /// L2 penalty on the weights.
    pub l2: f32,
    /// Standardize inputs with running statistics learned from the feedback.
    pub standardize: bool,
    /// Feedback rows per optimizer step (1..=65536).
    pub update_every: usize,
    /// Also step on fewer rows once the first waited this many ms (live serving only;
    /// with `update_every` above 1).
    pub update_every_ms: Option<u64>,
    /// The field feedback names its prediction by; `None`: feedback carries its own
    /// features.
    pub key: Option<FieldRef>,
    /// Predictions kept for their feedback, at most (with a `key`: without one, none is
    /// kept).
    pub keep_rows: usize,
    /// How long a prediction is kept for its feedback (live serving only; with a `key`).
    pub keep_ms: Option<u64>,
    /// Where and how often the learner saves its state.
    pub checkpoint: Option<CheckpointSpec>,
}

impl LearnSpec {
    /// Logistic or softmax regression over `classes` classes by `optimizer`, one step
    /// per feedback row, inputs standardized, no key, 100000 predictions kept for 10
    /// minutes, no checkpoints.
    pub fn new(classes: usize, optimizer: Optimizer) -> LearnSpec {
        LearnSpec {
            classes,
            optimizer,
            l2: 0.0,
            standardize: true,
            update_every: 1,
            update_every_ms: None,
            key: None,
            keep_rows: 100_000,
            keep_ms: Some(600_000),
            checkpoint: None,
        }
    }
}

/// Where a learner saves its state: `dir/latest.safetensors`, replaced every `every`
/// versions and at shutdown; a node with a checkpoint there resumes from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointSpec {
    /// The directory (relative to the graph's directory).
    pub dir: PathBuf,
    /// Versions between checkpoints (at least 1).
    pub every: u64,
}

/// Per-node batching and placement.
#[derive(Clone, Debug, PartialEq)]
pub struct Batching {
    /// A batch never holds more rows (1..=65536).
    pub max_batch_size: usize,
    /// A partial batch leaves once its oldest row has waited this many ms (0..=60000;
    /// 0: as soon as a replica is free). `None` (the default): the adaptive policy
    /// decides ([`weir_operators::dataflow::policy`]).
    pub max_wait_ms: Option<u64>,
    /// Replica threads, each with its own model instance (1..=256).
    pub replicas: usize,
    /// Where forward passes run.
    pub device: DeviceSpec,
    /// The precision of the weights and the forward passes.
    pub dtype: Precision,
}

impl Default for Batching {
    fn default() -> Self {
        Batching { max_batch_size: 32, max_wait_ms: None, replicas: 1, device: DeviceSpec::Cpu, dtype: Precision::F32 }
    }
}

/// The function of a `map` node.
#[derive(Clone)]
pub enum MapOp {
    /// A built-in with its parameters.
    Builtin(Builtin),
    /// `standardize` with `mean` and `std` read from a safetensors file.
    StandardizeFile(PathBuf),
    /// A Rust closure (builder API) with its output types.
    Custom(MapFn, Vec<FieldType>),
}

impl fmt::Debug for MapOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapOp::Builtin(b) => write!(f, "{}", b.name()),
            MapOp::StandardizeFile(p) => write!(f, "standardize({})", p.display()),
            MapOp::Custom(_, types) => write!(f, "custom -> {types:?}"),
        }
    }
}

impl MapOp {
    /// The name shown in plans and drawings.
    pub fn name(&self) -> &'static str {
        match self {
            MapOp::Builtin(b) => b.name(),
            MapOp::StandardizeFile(_) => "standardize",
            MapOp::Custom(..) => "custom",
        }
    }
}

/// A `map` node.
#[derive(Clone, Debug)]
pub struct MapSpec {
    /// The function.
    pub op: MapOp,
    /// The fields it reads, in order.
    pub inputs: Vec<FieldRef>,
    /// Output field names; empty for the builtin's defaults.
    pub outputs: Vec<String>,
}

/// A `route` node.
#[derive(Clone, Debug)]
pub struct RouteSpec {
    /// The field the conditions test.
    pub by: FieldRef,
    /// Branches in order: the first whose condition holds takes the row.
    pub branches: Vec<(String, Condition)>,
    /// The branch for rows no condition matches (and for error rows).
    pub default: String,
}

/// A `combine` node.
#[derive(Clone, Debug)]
pub struct CombineSpec {
    /// The values to aggregate, one per branch, in order.
    pub inputs: Vec<FieldRef>,
    /// How.
    pub aggregate: Aggregate,
    /// The output field name (default `y`).
    pub output: String,
}

/// A `merge` node: its `from` lists one stream per branch of one route.
#[derive(Clone, Debug)]
pub struct MergeSpec {
    /// Each merged field: its name, and for each `from` stream (in order) the field it
    /// takes the value from.
    pub fields: Vec<(String, Vec<FieldRef>)>,
}
