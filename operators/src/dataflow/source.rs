//! The graph input: a source operator fed by a bounded channel.
//!
//! Producers (the engine's submit path, on any thread) push chunks of rows into the
//! channel and ring the source's [`Doorbell`]; the operator drains about `rows` rows per
//! activation, and asks to run again while rows remain. Live (without a clock), every
//! chunk is emitted at time 0: the progress tracker then has no frontier to move per
//! request, so a chunk that goes from source to sink within one worker step costs no
//! progress traffic at all. When every sender is gone, or the engine's [`Shutdown`] is requested
//! and the channel is empty, it drops its capability, which lets the dataflow complete. It never polls: an
//! idle source costs nothing.
//!
//! In a deterministic engine (with an [`EventClock`]) each chunk carries the time its
//! submitter took from the clock: the source emits it at that time and moves its
//! capability up to the clock's watermark (see `clock.rs`). A source of a wall clock (a
//! cluster's graph with tables) also runs every `WALL_TICK` while idle, to move up with
//! the wall clock.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, TryRecvError};
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::Scope;

use super::clock::{EventClock, WALL_TICK};
use super::doorbell::Doorbell;
use super::vec_builder::VecBuilder;
use super::{RowStream, Time};
use crate::chunk::Chunk;
use crate::shutdown::Shutdown;

/// What one worker's source reads: its channel, the bell producers ring after sending,
/// the engine's shutdown, and, in a deterministic engine, the graph's clock.
pub struct SourceFeed {
    /// This worker's end of the source's channel.
    pub chunks: Receiver<Chunk>,
    /// A channel every worker's source reads, after its own: chunks that any worker may
    /// take (a live graph's rows on several workers, see `weir_engine`'s ingress). The
    /// worker that is free first takes the next chunk, so one that lost its core for a
    /// while does not hold rows the others could compute.
    pub shared: Option<Receiver<Chunk>>,
    /// Made with the channel, before the dataflow; the source binds it when built.
    pub doorbell: Arc<Doorbell>,
    /// Once requested and the channel is drained, the source closes.
    pub shutdown: Shutdown,
    /// Chunks are emitted at their own times (see the module docs).
    pub clock: Option<Arc<EventClock>>,
    /// About how many rows one activation emits before it yields.
    pub rows_per_activation: usize,
    /// If given, set to the number of chunks each activation that found any drained:
    /// one at a time means they come one by one (see `EngineConfig::idle_spin`).
    pub drained: Option<Arc<AtomicUsize>>,
}

/// Builds a graph input in a scope.
pub trait RowSource<'scope> {
    /// A source named `name` of the chunks `feed` receives. It binds the feed's
    /// doorbell to itself while the dataflow is built.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use timely::dataflow::operators::Inspect;
    /// use weir_operators::dataflow::doorbell::Doorbell;
    /// use weir_operators::dataflow::source::{RowSource, SourceFeed};
    /// use weir_operators::{Chunk, Column, Shutdown};
    ///
    /// let (tx, chunks) = crossbeam_channel::bounded(4);
    /// tx.send(Chunk::new(0, vec![0, 1], vec![Column::I64(vec![7, 8])])).unwrap();
    /// drop(tx); // every sender gone: the source closes once drained
    /// let feed = SourceFeed {
    ///     chunks,
    ///     shared: None,
    ///     doorbell: Arc::new(Doorbell::new()),
    ///     shutdown: Shutdown::new(),
    ///     clock: None,
    ///     rows_per_activation: 1024,
    ///     drained: None,
    /// };
    /// timely::example(move |scope| {
    ///     scope.row_source("Input", feed).inspect(|chunk| assert_eq!(chunk.len(), 2));
    /// });
    /// ```
    fn row_source(&self, name: &str, feed: SourceFeed) -> RowStream<'scope>;
}

impl<'scope> RowSource<'scope> for Scope<'scope, Time> {
    fn row_source(&self, name: &str, feed: SourceFeed) -> RowStream<'scope> {
        row_source(*self, name, feed)
    }
}

/// A source's channels: its worker's own, and the one every worker's source reads.
struct Inbox {
    own: Receiver<Chunk>,
    shared: Option<Receiver<Chunk>>,
}

impl Inbox {
    /// The next chunk: this worker's own first, then one any worker may take. Closed
    /// (`Disconnected`) once its own channel is closed and the shared one holds nothing
    /// (both close together, when the engine drops its sources).
    fn next(&self) -> Result<Chunk, TryRecvError> {
        match self.own.try_recv() {
            Err(TryRecvError::Empty) => {
                self.shared.as_ref().map_or(Err(TryRecvError::Empty), |s| s.try_recv().map_err(|_| TryRecvError::Empty))
            }
            Err(TryRecvError::Disconnected) => match self.shared.as_ref().map(Receiver::try_recv) {
                Some(Ok(chunk)) => Ok(chunk),
                _ => Err(TryRecvError::Disconnected),
            },
            own => own,
        }
    }

    /// Whether neither channel holds a chunk.
    fn is_empty(&self) -> bool {
        self.own.is_empty() && self.shared.as_ref().is_none_or(Receiver::is_empty)
    }
}

fn row_source<'scope>(scope: Scope<'scope, Time>, name: &str, feed: SourceFeed) -> RowStream<'scope> {
    let SourceFeed { chunks, shared, doorbell: bell, shutdown, clock, rows_per_activation: rows, drained } = feed;
    let inbox = Inbox { own: chunks, shared };
    source::<_, VecBuilder<Chunk>, _, _>(scope, name, move |cap, info| {
        bell.bind(scope.worker().sync_activator_for(info.address.to_vec()));
        let self_activator = scope.activator_for(info.address.clone());
        let mut cap = Some(cap);
        move |output| {
            let Some(held) = cap.as_mut() else { return };
            let mut sent = 0;
            let mut taken = 0;
            let mut closed = false;
            // Read before draining: every chunk stamped below it is in the channel now.
            let watermark = clock.as_ref().map(|c| c.advance());
            let mut last_time = None;
            {
                while sent < rows {
                    match inbox.next() {
                        Ok(chunk) => {
                            sent += chunk.len();
                            taken += 1;
                            match chunk.time.filter(|_| watermark.is_some()) {
                                Some(t) => {
                                    let t = t.max(*held.time());
                                    last_time = Some(t);
                                    output.session_with_builder(&held.delayed(&t)).give(chunk);
                                }
                                None => output.session_with_builder(&*held).give(chunk),
                            }
                        }
                        Err(TryRecvError::Empty) => {
                            // Arm, then look once more: a row sent before arming is
                            // seen here, one sent after rings the bell.
                            bell.arm();
                            if !inbox.is_empty() {
                                bell.disarm();
                                continue;
                            }
                            // A watermark that moved since it was read may have rung the
                            // bell before it was armed: run again to move up to it.
                            if clock.as_ref().zip(watermark).is_some_and(|(c, w)| c.watermark() != w) {
                                bell.disarm();
                                self_activator.activate();
                            }
                            closed = shutdown.is_requested();
                            break;
                        }
                        Err(TryRecvError::Disconnected) => {
                            closed = true;
                            break;
                        }
                    }
                }
            }
            if let Some(drained) = drained.as_ref().filter(|_| taken > 0) {
                drained.store(taken, Ordering::Relaxed);
            }
            if closed {
                cap = None;
                return;
            }
            // Drained: nothing below the watermark is left. Cut short: chunks come in
            // time order, so nothing below the last one sent is left. Live (no
            // watermark): every chunk stays at the first time. Nothing downstream of a
            // live source waits for a frontier (only a clocked graph's operators do),
            // and a time that moved per activation made every operator of the graph see
            // its frontier change, once per request at low load.
            if let Some(w) = watermark {
                let next = if sent < rows { w } else { last_time.unwrap_or(w).min(w) };
                if next > *held.time() {
                    held.downgrade(&next);
                }
            }
            if sent >= rows {
                self_activator.activate();
            } else if clock.as_ref().is_some_and(|c| c.is_wall()) {
                // A wall clock moves on its own: follow it (see `clock.rs`). A tick that
                // found nothing lets the worker park at once rather than poll.
                self_activator.activate_after(WALL_TICK);
                if let Some(drained) = drained.as_ref().filter(|_| taken == 0) {
                    drained.store(usize::MAX, Ordering::Relaxed);
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use timely::dataflow::operators::capture::{Capture, Event};

    use super::*;
    use crate::column::Column;

    #[test]
    fn a_source_emits_its_own_chunks_then_the_shared_ones_and_closes_with_its_own_channel() {
        let chunk = |slot: u64| Chunk::new(slot, vec![slot], vec![Column::I64(vec![slot as i64])]);
        let (own, chunks) = crossbeam_channel::bounded(4);
        let (shared, shared_chunks) = crossbeam_channel::bounded(4);
        shared.send(chunk(2)).unwrap();
        own.send(chunk(1)).unwrap();
        shared.send(chunk(3)).unwrap();
        drop(own); // its own channel closed: the source closes once both are drained
        let feed = SourceFeed {
            chunks,
            shared: Some(shared_chunks),
            doorbell: Arc::new(Doorbell::new()),
            shutdown: Shutdown::new(),
            clock: None,
            rows_per_activation: 1024,
            drained: None,
        };
        let captured = timely::example(move |scope| scope.row_source("Input", feed).capture());
        let slots: Vec<u64> = captured
            .iter()
            .flat_map(|event| match event {
                Event::Messages(_, chunks) => chunks.into_iter().map(|c| c.slot).collect(),
                Event::Progress(_) => Vec::new(),
            })
            .collect();
        assert_eq!(slots, vec![1, 2, 3]);
        drop(shared);
    }
}
