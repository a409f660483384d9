//! A served graph that a reload replaces while it serves (`weir serve`'s hot reload).
//!
//! Every connector that takes requests for a graph (HTTP, the Open Inference Protocol,
//! Kafka, Kafka feedback) holds the graph's [`LiveGraph`], not a handle: each request
//! (each Kafka submission) takes the [`Revision`] current when it starts and keeps it
//! until it is answered. A reload compiles the changed graph into a new engine and
//! [`LiveGraph::replace`]s the revision: requests that start after that go to the new
//! one, requests in flight finish on the old one, and the old one is dropped (its
//! engine stopped) once [`Revision::is_drained`] says nothing uses it any more.
//!
//! A revision's number starts at 1 and grows by one with every reload that changed the
//! graph; answers carry it (HTTP header [`REVISION_HEADER`], the Open Inference
//! Protocol's `model_version`, a Kafka header of the same name), so a client knows which
//! revision answered.

use std::any::Any;
use std::sync::{Arc, RwLock};

use weir_engine::GraphHandle;

/// The header (HTTP response, Kafka answer) that names the revision that answered.
pub const REVISION_HEADER: &str = "weir-revision";

/// One revision of a served graph: its handle in a running engine, and what keeps
/// that engine running.
pub struct Revision {
    handle: GraphHandle,
    number: u64,
    outputs: Arc<[String]>,
    /// The engine the handle runs in, shared by the revisions that run in it (it stops
    /// once the last is dropped); `None` where the caller keeps the engine running.
    engine: Option<Arc<dyn Any + Send + Sync>>,
}

impl Revision {
    fn of(handle: GraphHandle, number: u64, engine: Option<Arc<dyn Any + Send + Sync>>) -> Revision {
        let outputs = handle.schema().output_names().into();
        Revision { handle, number, outputs, engine }
    }

    /// The graph's handle.
    pub fn handle(&self) -> &GraphHandle {
        &self.handle
    }

    /// The revision's number (1, then one more per reload that changed the graph).
    pub fn number(&self) -> u64 {
        self.number
    }

    /// The names of the graph's output fields, in order.
    pub fn outputs(&self) -> &Arc<[String]> {
        &self.outputs
    }

    /// Whether nothing uses this revision any more: no request holds it (`self` is the
    /// only reference left) and no row it admitted is in flight.
    pub fn is_drained(self: &Arc<Self>) -> bool {
        Arc::strong_count(self) == 1 && self.handle.in_flight() == 0
    }

    /// The engine this revision owns, if any (see [`Revision`]); taking it out lets the
    /// caller drop it where blocking is allowed.
    pub fn into_engine(self: Arc<Self>) -> Option<Arc<dyn Any + Send + Sync>> {
        Arc::into_inner(self).and_then(|r| r.engine)
    }
}

/// A graph served under one name, one revision at a time.
pub struct LiveGraph {
    name: String,
    current: RwLock<Arc<Revision>>,
}

impl LiveGraph {
    /// Revision 1 of a graph, which keeps `engine` (the engine it runs in) alive as
    /// long as it is; `None`: the caller keeps the engine running.
    pub fn new(handle: GraphHandle, engine: Option<Arc<dyn Any + Send + Sync>>) -> Arc<LiveGraph> {
        let name = handle.name().to_string();
        let first = Revision::of(handle, 1, engine);
        Arc::new(LiveGraph { name, current: RwLock::new(Arc::new(first)) })
    }

    /// The graph's name (a reload never changes it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The revision serving now.
    pub fn current(&self) -> Arc<Revision> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Serves `handle` from now on, as the next revision, keeping `engine` (the engine
    /// it runs in) alive as long as the revision is; returns the revision it replaced.
    pub fn replace(&self, handle: GraphHandle, engine: Arc<dyn Any + Send + Sync>) -> Arc<Revision> {
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        let next = Revision::of(handle, current.number + 1, Some(engine));
        std::mem::replace(&mut *current, Arc::new(next))
    }
}
