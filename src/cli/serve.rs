//! `weir serve`: every graph over HTTP, and over Kafka where configured; reloaded on
//! SIGHUP or `POST /admin/reload` (see [`super::reload`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use weir_connectors::http::{self, admin, AppState, ServerConfig};
use weir_connectors::kafka::feedback::FeedbackLoop;
use weir_connectors::kafka::stats::KafkaMetrics;
use weir_connectors::kafka::table::TableFeed;
use weir_connectors::kafka::KafkaLoop;
use weir_engine::spec::{KafkaSpec, PayloadFormat};
use weir_engine::{Engine, EngineConfig, Kernels};
use weir_operators::Shutdown;

use super::cluster::{lost_peer_exit, start_engine, ClusterArgs};
use super::fail;
use super::reload::{self, Reloader};
use super::signals::ServerSignals;
use super::tables::{follow_tables, load_tables};

/// `weir serve`'s flags.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Graph files; each is served under its `name`.
    #[arg(required = true)]
    pub graphs: Vec<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port; the chosen one is logged).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// A second port, for gRPC clients that expect one (Triton's is 8001). The Open
    /// Inference Protocol's gRPC service is always served on `--port` too (HTTP/2
    /// without TLS); this port serves everything `--port` does.
    #[arg(long)]
    pub grpc_port: Option<u16>,
    /// Port of the admin listener: the live page of the graphs (`GET /`), their stats
    /// (`GET /admin/stats`) and reloads (`POST /admin/reload`). Off unless given (0:
    /// any free port; the chosen one is logged). SIGHUP reloads either way.
    #[arg(long)]
    pub admin_port: Option<u16>,
    /// Address of the admin listener (keep it private: it reloads the server).
    #[arg(long, default_value = "127.0.0.1")]
    pub admin_host: String,
    /// Timely worker threads (per process, in a cluster).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Threads of the HTTP runtime (requests' JSON, the Kafka loops): by default the
    /// cores the timely workers leave, at least one, and one more for a server that
    /// consumes Kafka (see `weir_connectors::http::default_threads`).
    #[arg(long)]
    pub http_threads: Option<usize>,
    /// The cluster this process is one of, if any (see `weir_engine::cluster`).
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// How long a worker with no work polls for more before it parks, in µs (0: park
    /// at once). Polling holds a core but answers a client that sends its next request
    /// at once without waking a parked thread; an idle server parks and uses no CPU.
    #[arg(long, default_value_t = weir_engine::DEFAULT_IDLE_SPIN.as_micros() as u64)]
    pub idle_spin_us: u64,
    /// Rows in flight per graph at most (overrides the graphs' serving.max_in_flight).
    #[arg(long)]
    pub max_in_flight: Option<usize>,
    /// Deadline of requests that set no X-Request-Timeout-Ms, in milliseconds
    /// (overrides the graphs' serving.timeout_ms).
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 4 << 20)]
    pub body_limit: usize,
    /// After SIGINT/SIGTERM, how long requests in flight may take to finish, in ms.
    #[arg(long, default_value_t = 10_000)]
    pub grace_ms: u64,
    /// Kafka brokers (`host:port,...`) for every graph with a `kafka:` section or a
    /// table that follows a topic, overriding the files' `bootstrap_servers`.
    #[arg(long)]
    pub kafka_bootstrap: Option<String>,
    /// Consume these topics (comma-separated) into the graph (one graph only); with
    /// --kafka-output, this sets up Kafka for a graph file without a `kafka:` section.
    #[arg(long, value_delimiter = ',')]
    pub kafka_input: Vec<String>,
    /// Produce the graph's answers to this topic.
    #[arg(long)]
    pub kafka_output: Option<String>,
    /// Consumer group (default `weir-GRAPH`).
    #[arg(long)]
    pub kafka_group: Option<String>,
    /// Dead-letter topic (default `OUTPUT.dead-letter`).
    #[arg(long)]
    pub kafka_dead_letter: Option<String>,
    /// Payload format of input messages: `json` (an object per message) or `arrow`
    /// (an Arrow IPC stream per message).
    #[arg(long)]
    pub kafka_format: Option<String>,
    /// The topic of labels for the graph's learning node (overrides
    /// `kafka.feedback_topic`).
    #[arg(long)]
    pub kafka_feedback: Option<String>,
    /// A librdkafka property, `KEY=VALUE` (repeatable), added to the graph's.
    #[arg(long = "kafka-property")]
    pub kafka_properties: Vec<String>,
}

/// Runs `weir serve` until `stop` is requested (by a signal: see [`super::signals`]).
/// A stop during the start (loading graphs, starting the engine, loading tables)
/// ends it there, cleanly, with exit code 0.
pub fn serve(args: ServeArgs, kernels: &Kernels, signals: ServerSignals) -> ExitCode {
    let ServerSignals { stop, hangups } = signals;
    let ServeArgs {
        graphs,
        host,
        port,
        grpc_port,
        admin_port,
        admin_host,
        workers,
        http_threads,
        cluster,
        idle_spin_us,
        max_in_flight,
        timeout_ms,
        body_limit,
        grace_ms,
        kafka_bootstrap,
        kafka_input,
        kafka_output,
        kafka_group,
        kafka_dead_letter,
        kafka_feedback,
        kafka_properties,
        kafka_format,
    } = args;
    let format = match kafka_format.as_deref() {
        None => None,
        Some("json") => Some(PayloadFormat::Json),
        Some("arrow") => Some(PayloadFormat::Arrow),
        Some(other) => return fail(1, &format!("--kafka-format takes json or arrow, got '{other}'")),
    };
    let properties = match key_values(&kafka_properties) {
        Ok(properties) => properties,
        Err(e) => return fail(1, &e),
    };
    let kafka_flags = KafkaFlags {
        bootstrap: kafka_bootstrap,
        input: kafka_input,
        output: kafka_output,
        group: kafka_group,
        dead_letter: kafka_dead_letter,
        feedback: kafka_feedback,
        properties,
        format,
    };
    let cluster = match cluster.cluster(false) {
        Ok(cluster) => cluster,
        Err(e) => return fail(1, &e),
    };
    if kafka_flags.sets_topics() && graphs.len() != 1 {
        return fail(1, &"--kafka-input and --kafka-output apply to one graph; give one graph file");
    }
    let overrides = Overrides { max_in_flight, kafka: kafka_flags };
    let mut plans = Vec::new();
    let mut fingerprints = Vec::new();
    for path in &graphs {
        if stop.is_requested() {
            return stopped_starting("loading the graphs");
        }
        match reload::load(path, kernels, &overrides) {
            Ok(loaded) => {
                fingerprints.push(loaded.fingerprint);
                plans.push(loaded.plan);
            }
            Err(e) => return fail(1, &e),
        }
    }
    if stop.is_requested() {
        return stopped_starting("loading the graphs");
    }
    let consumes_kafka = plans.iter().any(|p| p.kafka.is_some());
    let engine_config = EngineConfig {
        workers,
        idle_spin: Duration::from_micros(idle_spin_us),
        cluster: cluster.clone(),
        ..EngineConfig::default()
    };
    let engine = match start_engine(plans, engine_config.clone(), &stop) {
        Some(Ok(engine)) => engine,
        Some(Err(e)) => return fail(1, &e),
        None => return stopped_starting("connecting to the cluster"),
    };
    let tables = match load_tables(&engine, overrides.bootstrap(), &stop) {
        Ok(feeds) => feeds,
        Err(code) => return code,
    };
    if stop.is_requested() {
        // Dropping the engine below stops it: nothing was admitted yet.
        return stopped_starting("starting the engine and loading its tables");
    }
    let config = ServerConfig { body_limit, default_timeout: timeout_ms.map(Duration::from_millis) };
    let threads = match http_threads {
        Some(0) => return fail(1, &"--http-threads must be at least 1"),
        Some(n) => n,
        None => weir_connectors::http::default_threads(workers, consumes_kafka),
    };
    let listen = Listen { host: &host, port, grpc_port, admin: admin_port.map(|p| (admin_host.as_str(), p)), threads };
    let reloads = Reloads {
        files: graphs.into_iter().zip(fingerprints).collect(),
        kernels: kernels.clone(),
        config: engine_config,
        overrides,
        hangups,
    };
    let grace = Duration::from_millis(grace_ms);
    let (served, kept) = if cluster.is_some() {
        (run(Owner::Cluster(&engine), tables, listen, config, reloads, grace, &stop), Some(engine))
    } else {
        // The engine stops once every graph was reloaded, or as the server stops (rows
        // still in it are then answered `unavailable`).
        (run(Owner::Revisions(engine), tables, listen, config, reloads, grace, &stop), None)
    };
    if let (Some(cluster), Some(engine)) = (cluster, kept) {
        // A process of a cluster cannot finish its dataflows alone (every process's sources
        // feed them): its threads end with the process, once HTTP and Kafka have stopped.
        let lost = engine.lost_peer();
        std::mem::forget(engine);
        if let Some(lost) = lost {
            return lost_peer_exit(&cluster, &lost);
        }
    }
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(2, &e),
    }
}

/// In a cluster, stops the server once a peer is lost (every process is then not ready,
/// and the rows in flight are answered `unavailable` at once); returns when `stop` is
/// requested, at once without a cluster.
async fn watch_peers(engine: Option<&Engine>, stop: &Shutdown) {
    let Some(engine) = engine.filter(|e| e.graphs().first().is_some_and(|g| g.placement().processes > 1)) else {
        return;
    };
    while !stop.is_requested() {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Some(lost) = engine.lost_peer() {
            tracing::error!(peer = ?lost.process, cause = %lost.cause, "lost a process of the cluster: stopping");
            stop.request();
            engine.abandon();
        }
    }
}

/// A stop asked for before the server listened: nothing was served, and that is a
/// clean stop.
fn stopped_starting(stage: &str) -> ExitCode {
    eprintln!("weir: stopped while {stage}, before serving");
    eprintln!("weir: stopped");
    ExitCode::SUCCESS
}

/// Where the server listens, and on how many threads.
struct Listen<'a> {
    host: &'a str,
    port: u16,
    grpc_port: Option<u16>,
    /// The admin listener's host and port, if any.
    admin: Option<(&'a str, u16)>,
    /// The HTTP runtime's threads.
    threads: usize,
}

/// What reloads need: the graph files with the fingerprints they were loaded with, and
/// how they were loaded and started.
struct Reloads {
    files: Vec<(std::path::PathBuf, u64)>,
    kernels: Kernels,
    config: EngineConfig,
    overrides: Overrides,
    hangups: Arc<Notify>,
}

/// Reload requests from the admin listener wait here at most.
const RELOAD_QUEUE: usize = 16;

/// Who keeps the engine running while it serves.
enum Owner<'a> {
    /// One process: the graphs' first revisions own it (see `weir_connectors::live`),
    /// so that a reload that replaces them all stops it.
    Revisions(Engine),
    /// A process of a cluster (which does not reload): `serve` keeps it, and [`run`]
    /// watches its peers.
    Cluster(&'a Engine),
}

/// Serves until `stop`, then stops HTTP, every Kafka loop and every table feed.
fn run(
    owner: Owner<'_>,
    tables: Vec<TableFeed>,
    Listen { host, port, grpc_port, admin, threads }: Listen,
    config: ServerConfig,
    reloads: Reloads,
    grace: Duration,
    stop: &Shutdown,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .thread_name("weir-http")
        .build()
        .context("cannot start the HTTP runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind((host, port))
            .await
            .with_context(|| format!("cannot listen on {host}:{port}"))?;
        let addr = listener.local_addr()?;
        let grpc_listener = match grpc_port {
            Some(p) => Some(
                tokio::net::TcpListener::bind((host, p))
                    .await
                    .with_context(|| format!("cannot listen on {host}:{p}"))?,
            ),
            None => None,
        };
        let admin_listener = match admin {
            Some((h, p)) => {
                Some(tokio::net::TcpListener::bind((h, p)).await.with_context(|| format!("cannot listen on {h}:{p}"))?)
            }
            None => None,
        };
        let (graphs, peers, owned) = match owner {
            Owner::Cluster(engine) => (engine.graphs().to_vec(), Some(engine), None),
            Owner::Revisions(engine) => {
                let graphs = engine.graphs().to_vec();
                let owned: Arc<dyn std::any::Any + Send + Sync> = Arc::new(std::sync::Mutex::new(engine));
                (graphs, None, Some(owned))
            }
        };
        let state = AppState::owning(&graphs, owned, config, stop.clone());
        let live = state.live();
        let mut kafka = Vec::new();
        let mut feedback = Vec::new();
        for g in &live {
            let name = g.name();
            tracing::info!("serving graph '{name}' at http://{addr}/graphs/{name}");
            if let Some(spec) = g.current().handle().plan().kafka.clone() {
                feedback.extend(FeedbackLoop::connect(Arc::clone(g), &spec)?);
                kafka.push(KafkaLoop::connect(Arc::clone(g), spec)?);
            }
        }
        let Reloads { files, kernels, config, overrides, hangups } = reloads;
        let files = files.into_iter().zip(&live).map(|((path, fingerprint), g)| (path, fingerprint, Arc::clone(g)));
        let consumers = kafka.iter().map(KafkaLoop::stats).chain(feedback.iter().map(FeedbackLoop::stats));
        let feeds = tables.iter().map(TableFeed::stats).collect();
        // Written only for the clients there are; a reload replaces a graph's table feeds.
        let kafka_metrics = Arc::new(KafkaMetrics::new(consumers.collect(), feeds));
        state.add_metrics(Arc::clone(&kafka_metrics) as _);
        let reloader = Reloader::new(files.collect(), kernels, config, overrides, stop.clone(), kafka_metrics);
        let (reload_requests, reload_queue) = mpsc::channel(RELOAD_QUEUE);
        let reloading = tokio::spawn(reloader.run(hangups, reload_queue));
        // One request stops HTTP, every Kafka loop and every table feed.
        let loops: Vec<_> = kafka.into_iter().map(|k| tokio::spawn(k.run(stop.clone(), grace))).collect();
        let feedback: Vec<_> = feedback.into_iter().map(|f| tokio::spawn(f.run(stop.clone()))).collect();
        // Table feeds block on their consumer and the graph's channel: one thread each.
        let tables = follow_tables(tables, stop);
        eprintln!("weir: listening on http://{addr}");
        let admin = async {
            match admin_listener {
                Some(listener) => {
                    eprintln!("weir: admin page and reloads on http://{}", listener.local_addr()?);
                    admin::serve(listener, state.clone(), reload_requests).await
                }
                None => {
                    // SIGHUP still reloads; the channel stays open until the stop.
                    stop.requested().await;
                    drop(reload_requests);
                    Ok(())
                }
            }
        };
        let grpc = async {
            match grpc_listener {
                Some(listener) => {
                    eprintln!("weir: gRPC (Open Inference Protocol) also on {}", listener.local_addr()?);
                    http::serve(listener, state.clone(), grace).await
                }
                None => Ok(()),
            }
        };
        let (served, grpc_served, admin_served, ()) =
            tokio::join!(http::serve(listener, state.clone(), grace), grpc, admin, watch_peers(peers, stop));
        served?;
        grpc_served?;
        admin_served?;
        let _ = reloading.await;
        for l in loops {
            if let Ok(s) = l.await {
                eprintln!(
                    "weir: kafka: {} consumed, {} answered, {} dead-lettered",
                    s.consumed, s.answered, s.dead_lettered
                );
            }
        }
        for f in feedback {
            if let Ok(s) = f.await {
                eprintln!(
                    "weir: kafka feedback: {} consumed, {} rows to the learner, {} dead-lettered",
                    s.consumed, s.rows, s.dead_lettered
                );
            }
        }
        for ((table, topic), t) in tables {
            if let Ok(s) = t.join() {
                eprintln!(
                    "weir: table '{table}' from topic '{topic}': {} messages, {} changes, {} refused",
                    s.messages, s.changes, s.refused
                );
            }
        }
        eprintln!("weir: stopped");
        Ok(())
    })
}

/// What `weir serve`'s flags change in every graph it loads (at start and on reload).
#[derive(Clone)]
pub struct Overrides {
    max_in_flight: Option<usize>,
    kafka: KafkaFlags,
}

impl Overrides {
    /// Applies the flags to `plan`.
    pub fn apply(&self, plan: &mut weir_engine::Plan) -> Result<(), String> {
        if let Some(n) = self.max_in_flight {
            plan.serving.max_in_flight = n.max(1);
        }
        self.kafka.apply(plan)
    }

    /// The brokers `--kafka-bootstrap` names, if it does.
    pub fn bootstrap(&self) -> Option<&str> {
        self.kafka.bootstrap.as_deref()
    }
}

/// `weir serve`'s Kafka flags.
#[derive(Clone)]
struct KafkaFlags {
    bootstrap: Option<String>,
    input: Vec<String>,
    output: Option<String>,
    group: Option<String>,
    dead_letter: Option<String>,
    feedback: Option<String>,
    properties: Vec<(String, String)>,
    format: Option<PayloadFormat>,
}

impl KafkaFlags {
    fn sets_topics(&self) -> bool {
        !self.input.is_empty() || self.output.is_some()
    }

    /// Overrides (or creates) the plan's Kafka section from the flags.
    fn apply(&self, plan: &mut weir_engine::Plan) -> Result<(), String> {
        if self.sets_topics() && plan.kafka.is_none() {
            let (Some(output), false, Some(bootstrap)) = (&self.output, self.input.is_empty(), &self.bootstrap) else {
                return Err(format!(
                    "graph '{}' has no kafka: section; give --kafka-bootstrap, --kafka-input and --kafka-output",
                    plan.name
                ));
            };
            plan.kafka = Some(KafkaSpec {
                bootstrap_servers: bootstrap.clone(),
                input_topics: self.input.clone(),
                output_topic: output.clone(),
                group_id: format!("weir-{}", plan.name),
                dead_letter_topic: format!("{output}.dead-letter"),
                feedback_topic: None,
                format: PayloadFormat::Json,
                properties: Vec::new(),
            });
        }
        if let Some(k) = plan.kafka.as_mut() {
            if let Some(b) = &self.bootstrap {
                k.bootstrap_servers = b.clone();
            }
            if !self.input.is_empty() {
                k.input_topics = self.input.clone();
            }
            if let Some(o) = &self.output {
                k.output_topic = o.clone();
            }
            if let Some(g) = &self.group {
                k.group_id = g.clone();
            }
            if let Some(d) = &self.dead_letter {
                k.dead_letter_topic = d.clone();
            }
            if let Some(f) = &self.feedback {
                k.feedback_topic = Some(f.clone());
            }
            k.properties.extend(self.properties.iter().cloned());
            if let Some(f) = self.format {
                k.format = f;
            }
        }
        Ok(())
    }
}

/// `--kafka-property KEY=VALUE` flags.
pub fn key_values(flags: &[String]) -> Result<Vec<(String, String)>, String> {
    flags
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(format!("--kafka-property takes KEY=VALUE, got '{p}'")),
        })
        .collect()
}
