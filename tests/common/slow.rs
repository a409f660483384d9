//! A model for engine and server tests: doubles its input after a fixed time per batch
//! (like a real forward pass, so rows pile up while it runs), fails the batch on a
//! negative input, panics on 666, and counts the rows it computed. Its gated variant
//! holds every forward pass at a [`Gate`] until the test opens it, so a test can order
//! events ("answered while the model was busy") without timing them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use weir_engine::builder::{GraphBuilder, Model};
use weir_engine::spec::{Batching, ModelSource, Serving};
use weir_engine::Plan;
use weir_operators::kernel::BatchKernel;
use weir_operators::{Column, DType, FieldType};

/// The input that makes the model panic.
pub const PANIC_INPUT: f64 = 666.0;

struct Slow {
    per_batch: Duration,
    computed: Arc<AtomicUsize>,
    gate: Option<Arc<GateState>>,
}

/// How long a forward pass waits at a gate nobody opens (a test that failed before
/// opening it) before it goes through anyway, so the engine can still shut down.
const GATE_LIMIT: Duration = Duration::from_secs(120);

struct GateState {
    open: Mutex<bool>,
    opened: Condvar,
    /// Rows that have reached the gate (waiting or gone through).
    arrived: tokio::sync::watch::Sender<usize>,
}

impl GateState {
    fn pass(&self, rows: usize) {
        self.arrived.send_modify(|n| *n += rows);
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let _ = self.opened.wait_timeout_while(open, GATE_LIMIT, |open| !*open);
    }
}

/// Holds the gated model's forward passes until [`Gate::open`] (or until it is dropped).
pub struct Gate(Arc<GateState>);

impl Gate {
    /// Lets every forward pass through, now and later.
    pub fn open(&self) {
        *self.0.open.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.0.opened.notify_all();
    }

    /// Waits until `rows` rows have reached the gate (at most a minute: then panics).
    pub async fn reached(&self, rows: usize) {
        let mut arrived = self.0.arrived.subscribe();
        tokio::time::timeout(Duration::from_secs(60), arrived.wait_for(|&n| n >= rows))
            .await
            .unwrap_or_else(|_| panic!("{rows} rows reach the model within a minute"))
            .expect("the gate lives");
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.open();
    }
}

impl BatchKernel for Slow {
    fn forward(&mut self, inputs: Column) -> Result<Column, String> {
        let xs: Vec<f64> = inputs.values().iter().map(|v| v.as_f64().unwrap_or(f64::NAN)).collect();
        assert!(!xs.contains(&PANIC_INPUT), "unlucky input");
        if xs.iter().any(|&x| x < 0.0) {
            return Err("negative input".into());
        }
        if let Some(gate) = &self.gate {
            gate.pass(xs.len());
        }
        std::thread::sleep(self.per_batch);
        self.computed.fetch_add(inputs.len(), Ordering::SeqCst);
        Ok(Column::F32(xs.iter().map(|&x| 2.0 * x as f32).collect()))
    }
}

/// Graph `slow`: input `x: f32` → model node `double` → output `y`; and the count of
/// rows the model computed.
pub fn slow_plan(per_batch: Duration, batching: Batching, serving: Serving) -> (Plan, Arc<AtomicUsize>) {
    slow_graph(per_batch, None, batching, serving)
}

/// Graph `slow` whose model computes at once but holds every forward pass at the
/// returned [`Gate`] until it is opened; and the count of rows the model computed.
pub fn gated_plan(batching: Batching, serving: Serving) -> (Plan, Gate, Arc<AtomicUsize>) {
    let state = Arc::new(GateState {
        open: Mutex::new(false),
        opened: Condvar::new(),
        arrived: tokio::sync::watch::Sender::new(0),
    });
    let (plan, computed) = slow_graph(Duration::ZERO, Some(Arc::clone(&state)), batching, serving);
    (plan, Gate(state), computed)
}

fn slow_graph(
    per_batch: Duration,
    gate: Option<Arc<GateState>>,
    batching: Batching,
    serving: Serving,
) -> (Plan, Arc<AtomicUsize>) {
    let computed = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&computed);
    let scalar = FieldType::scalar(DType::F32);
    let mut g = GraphBuilder::new("slow");
    g.serving(serving);
    let x = g.input("x", scalar.clone());
    let source = ModelSource::Custom {
        description: "slow doubler".into(),
        factory: Arc::new(move || {
            Ok(Box::new(Slow { per_batch, computed: Arc::clone(&seen), gate: gate.clone() }) as Box<dyn BatchKernel>)
        }),
        input: scalar.clone(),
        output: scalar,
    };
    let m = g.node("double", Model::file(source).batching(batching).bind(x));
    g.output("y", m.field("y"));
    (g.plan().expect("the slow graph is valid"), computed)
}
