//! A model for tests that need rows held in a forward pass until they say so: each
//! batch reports that it started (with its size), then waits for the gate to open, and
//! doubles its input. Tests then assert what happened while the rows were held (which
//! batches left, how many passes ran at once) instead of timing it.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender};
use weir_engine::builder::{GraphBuilder, Model};
use weir_engine::spec::{Batching, ModelSource, Serving};
use weir_engine::Plan;
use weir_operators::kernel::BatchKernel;
use weir_operators::{Column, DType, FieldType};

/// Closed until [`Gate::open`]; forward passes wait behind it.
pub struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
    started_tx: Sender<usize>,
    started_rx: Receiver<usize>,
}

impl Gate {
    /// A closed gate.
    pub fn new() -> Arc<Gate> {
        let (started_tx, started_rx) = bounded(1024);
        Arc::new(Gate { open: Mutex::new(false), opened: Condvar::new(), started_tx, started_rx })
    }

    /// Lets every waiting and later forward pass through.
    pub fn open(&self) {
        *self.open.lock().expect("gate lock") = true;
        self.opened.notify_all();
    }

    /// Whether the gate has been opened.
    pub fn is_open(&self) -> bool {
        *self.open.lock().expect("gate lock")
    }

    /// The size of the next batch to start a forward pass, or `None` if none starts
    /// within `timeout`.
    pub fn next_started(&self, timeout: Duration) -> Option<usize> {
        self.started_rx.recv_timeout(timeout).ok()
    }

    /// Opens the gate after `after` on a thread of its own, whatever happens: a test
    /// whose engine wrongly waits for the gate fails instead of hanging.
    pub fn open_after(self: &Arc<Self>, after: Duration) {
        let gate = Arc::clone(self);
        std::thread::Builder::new()
            .name("gate-watchdog".into())
            .spawn(move || {
                let open = gate.open.lock().expect("gate lock");
                let (mut open, _) = gate.opened.wait_timeout_while(open, after, |open| !*open).expect("gate lock");
                *open = true;
                gate.opened.notify_all();
            })
            .expect("watchdog thread");
    }
}

struct Gated {
    gate: Arc<Gate>,
}

impl BatchKernel for Gated {
    fn forward(&mut self, inputs: Column) -> Result<Column, String> {
        let _ = self.gate.started_tx.try_send(inputs.len());
        let open = self.gate.open.lock().map_err(|e| e.to_string())?;
        drop(self.gate.opened.wait_while(open, |open| !*open).map_err(|e| e.to_string())?);
        let (xs, _) = inputs.f32s().ok_or("expected f32 inputs")?;
        Ok(Column::F32(xs.iter().map(|x| 2.0 * x).collect()))
    }
}

/// Graph `gated`: input `x: f32` → model node `double`, whose forward passes wait for
/// `gate` → output `y`.
pub fn gated_plan(gate: &Arc<Gate>, batching: Batching, serving: Serving) -> Plan {
    let scalar = FieldType::scalar(DType::F32);
    let mut g = GraphBuilder::new("gated");
    g.serving(serving);
    let x = g.input("x", scalar.clone());
    let gate = Arc::clone(gate);
    let source = ModelSource::Custom {
        description: "gated doubler".into(),
        factory: Arc::new(move || Ok(Box::new(Gated { gate: Arc::clone(&gate) }) as Box<dyn BatchKernel>)),
        input: scalar.clone(),
        output: scalar,
    };
    let m = g.node("double", Model::file(source).batching(batching).bind(x));
    g.output("y", m.field("y"));
    g.plan().expect("the gated graph is valid")
}
