//! The graph input: a source operator fed by a bounded channel.
//!
//! Producers (the engine's submit path, on any thread) push rows into the channel and
//! wake the operator through its `SyncActivator`; the operator drains at most `chunk`
//! rows per activation at its current epoch, then advances the epoch, and asks to run
//! again while rows remain. When every sender is gone, or the engine sets `stop` and the
//! channel is empty, it drops its capability, which lets the dataflow complete. It never polls: an idle source costs nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

use crossbeam_channel::{Receiver, TryRecvError};
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::Scope;
use timely::scheduling::SyncActivator;

use super::{RowStream, Time};
use crate::row::Row;

/// Builds a source of the rows sent on `rows`. The operator's activator is sent on
/// `activator`, with the worker's index, while the dataflow is built, so producers can
/// wake it. Once `stop` is set and the channel is empty, the source closes.
pub fn row_source<'scope>(
    scope: Scope<'scope, Time>,
    name: &str,
    rows: Receiver<Row>,
    chunk: usize,
    activator: SyncSender<(usize, SyncActivator)>,
    stop: Arc<AtomicBool>,
) -> RowStream<'scope> {
    source(scope, name, move |cap, info| {
        let wake = scope.worker().sync_activator_for(info.address.to_vec());
        // The engine keeps the receiver until every worker has reported.
        let _ = activator.send((scope.index(), wake));
        let self_activator = scope.activator_for(info.address.clone());
        let mut cap = Some(cap);
        move |output| {
            let Some(held) = cap.as_mut() else { return };
            let mut sent = 0;
            let mut closed = false;
            {
                let mut session = output.session(&*held);
                while sent < chunk {
                    match rows.try_recv() {
                        Ok(row) => {
                            session.give(row);
                            sent += 1;
                        }
                        Err(TryRecvError::Empty) => {
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
            if sent > 0 {
                let next = held.time() + 1;
                held.downgrade(&next);
            }
            if sent == chunk {
                self_activator.activate();
            }
        }
    })
}
