//! The graph input: a source operator fed by a bounded channel.
//!
//! Producers (the engine's submit path, on any thread) push chunks of rows into the
//! channel and ring the source's [`Doorbell`]; the operator drains about `rows` rows per
//! activation at its current epoch, then advances the epoch, and asks to run again while
//! rows remain. When every sender is gone, or the engine sets `stop` and the channel is
//! empty, it drops its capability, which lets the dataflow complete. It never polls: an
//! idle source costs nothing.
//!
//! In a deterministic engine (with an [`EventClock`]) each chunk carries the time its
//! submitter took from the clock: the source emits it at that time and moves its
//! capability up to the clock's watermark (see `clock.rs`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

use crossbeam_channel::{Receiver, TryRecvError};
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::Scope;

use super::clock::EventClock;
use super::doorbell::Doorbell;
use super::{RowStream, Time};
use crate::chunk::Chunk;

/// Builds a source of the chunks sent on `chunks`. The operator's doorbell is sent on
/// `doorbell`, with the worker's index, while the dataflow is built, so producers can
/// wake it. Once `stop` is set and the channel is empty, the source closes. With a
/// `clock`, chunks are emitted at their own times (see the module docs).
pub fn row_source<'scope>(
    scope: Scope<'scope, Time>,
    name: &str,
    chunks: Receiver<Chunk>,
    rows: usize,
    doorbell: SyncSender<(usize, Arc<Doorbell>)>,
    stop: Arc<AtomicBool>,
    clock: Option<Arc<EventClock>>,
) -> RowStream<'scope> {
    source(scope, name, move |cap, info| {
        let bell = Arc::new(Doorbell::new(scope.worker().sync_activator_for(info.address.to_vec())));
        // The engine keeps the receiver until every worker has reported.
        let _ = doorbell.send((scope.index(), Arc::clone(&bell)));
        let self_activator = scope.activator_for(info.address.clone());
        let mut cap = Some(cap);
        move |output| {
            let Some(held) = cap.as_mut() else { return };
            let mut sent = 0;
            let mut closed = false;
            // Read before draining: every chunk stamped below it is in the channel now.
            let watermark = clock.as_ref().map(|c| c.watermark());
            let mut last_time = None;
            {
                while sent < rows {
                    match chunks.try_recv() {
                        Ok(chunk) => {
                            sent += chunk.len();
                            match chunk.time.filter(|_| watermark.is_some()) {
                                Some(t) => {
                                    let t = t.max(*held.time());
                                    last_time = Some(t);
                                    output.session(&held.delayed(&t)).give(chunk);
                                }
                                None => output.session(&*held).give(chunk),
                            }
                        }
                        Err(TryRecvError::Empty) => {
                            // Arm, then look once more: a row sent before arming is
                            // seen here, one sent after rings the bell.
                            bell.arm();
                            if !chunks.is_empty() {
                                bell.disarm();
                                continue;
                            }
                            // A watermark that moved since it was read may have rung the
                            // bell before it was armed: run again to move up to it.
                            if clock.as_ref().zip(watermark).is_some_and(|(c, w)| c.watermark() != w) {
                                bell.disarm();
                                self_activator.activate();
                            }
                            closed = stop.load(Ordering::Acquire);
                            break;
                        }
                        Err(TryRecvError::Disconnected) => {
                            closed = true;
                            break;
                        }
                    }
                }
            }
            if closed {
                cap = None;
                return;
            }
            match watermark {
                // Drained: nothing below the watermark is left. Cut short: chunks come
                // in time order, so nothing below the last one sent is left.
                Some(w) => {
                    let next = if sent < rows { w } else { last_time.unwrap_or(w).min(w) };
                    if next > *held.time() {
                        held.downgrade(&next);
                    }
                }
                None if sent > 0 => {
                    let next = held.time() + 1;
                    held.downgrade(&next);
                }
                None => {}
            }
            if sent >= rows {
                self_activator.activate();
            }
        }
    })
}
