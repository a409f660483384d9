//! A gate that holds a test model's forward passes until the test opens it
//! ([`super::slow::gated_plan`]): each batch reports that it started (with its size),
//! then waits. Tests then assert what happened while the rows were held (which batches
//! left, how many passes ran at once, what was refused or answered meanwhile) instead
//! of timing it.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender};

/// How long a forward pass waits at a gate nobody opens (a test that failed before
/// opening it) before it goes through anyway, so the engine can still shut down.
const LIMIT: Duration = Duration::from_secs(120);

/// Closed until [`Gate::open`]; forward passes wait behind it.
pub struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
    started_tx: Sender<usize>,
    started_rx: Receiver<usize>,
    /// Rows that have reached the gate (waiting or gone through).
    arrived: tokio::sync::watch::Sender<usize>,
}

impl Gate {
    /// A closed gate.
    pub fn new() -> Arc<Gate> {
        let (started_tx, started_rx) = bounded(1024);
        Arc::new(Gate {
            open: Mutex::new(false),
            opened: Condvar::new(),
            started_tx,
            started_rx,
            arrived: tokio::sync::watch::Sender::new(0),
        })
    }

    /// Lets every waiting and later forward pass through.
    pub fn open(&self) {
        *self.open.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.opened.notify_all();
    }

    /// Whether the gate has been opened.
    pub fn is_open(&self) -> bool {
        *self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The size of the next batch to start a forward pass, or `None` if none starts
    /// within `timeout`.
    pub fn next_started(&self, timeout: Duration) -> Option<usize> {
        self.started_rx.recv_timeout(timeout).ok()
    }

    /// Waits until `rows` rows have reached the gate (at most a minute: then panics).
    pub async fn reached(&self, rows: usize) {
        let mut arrived = self.arrived.subscribe();
        tokio::time::timeout(Duration::from_secs(60), arrived.wait_for(|&n| n >= rows))
            .await
            .unwrap_or_else(|_| panic!("{rows} rows reach the model within a minute"))
            .expect("the gate lives");
    }

    /// Opens the gate after `after` on a thread of its own, whatever happens: a test
    /// whose engine wrongly waits for the gate fails instead of hanging.
    pub fn open_after(self: &Arc<Self>, after: Duration) {
        let gate = Arc::clone(self);
        std::thread::Builder::new()
            .name("gate-watchdog".into())
            .spawn(move || {
                let open = gate.open.lock().unwrap_or_else(|p| p.into_inner());
                let (mut open, _) =
                    gate.opened.wait_timeout_while(open, after, |open| !*open).unwrap_or_else(|p| p.into_inner());
                *open = true;
                gate.opened.notify_all();
            })
            .expect("watchdog thread");
    }

    /// A forward pass of `rows` rows: reports that it started, then waits for the gate
    /// (at most [`LIMIT`]).
    pub fn pass(&self, rows: usize) {
        let _ = self.started_tx.try_send(rows);
        self.arrived.send_modify(|n| *n += rows);
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let _ = self.opened.wait_timeout_while(open, LIMIT, |open| !*open);
    }
}
