//! Waking an operator from another thread, without a syscall per message.
//!
//! A `SyncActivator` wakes a timely operator from any thread, but each call allocates,
//! sends on a channel and unparks the worker thread. Producers that send many messages
//! (submitters feeding a source, replicas returning batches) ring a [`Doorbell`]
//! instead: it activates the operator only if the operator armed it.
//!
//! The protocol: before it stops looking at its channel, the operator [`arms`] the bell
//! and then checks the channel once more; if something arrived meanwhile it
//! [`disarms`] and keeps draining. A producer sends first, then [`rings`]. A message is
//! therefore either seen by the running operator or followed by a wake-up.
//!
//! A bell is made before the dataflow exists (so submitters can hold it from the
//! start) and bound to its operator when a worker builds the dataflow
//! ([`Doorbell::bind`]). A ring before that wakes nobody, and needs to: binding
//! activates the operator once, and its first activation drains its channel.
//!
//! [`arms`]: Doorbell::arm
//! [`disarms`]: Doorbell::disarm
//! [`rings`]: Doorbell::ring

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use timely::scheduling::SyncActivator;

/// Wakes one operator when, and only when, it waits for messages.
#[derive(Debug)]
pub struct Doorbell {
    armed: AtomicBool,
    activator: OnceLock<SyncActivator>,
}

impl Default for Doorbell {
    fn default() -> Self {
        Doorbell::new()
    }
}

impl Doorbell {
    /// A bell not yet bound to an operator, armed (the first message wakes it).
    pub fn new() -> Self {
        Doorbell { armed: AtomicBool::new(true), activator: OnceLock::new() }
    }

    /// A bell bound to the operator `activator` wakes (for an operator that makes its
    /// own bell while it is built), armed.
    pub fn bound(activator: SyncActivator) -> Self {
        Doorbell { armed: AtomicBool::new(true), activator: OnceLock::from(activator) }
    }

    /// Binds the bell to the operator `activator` wakes, and wakes it once, so that it
    /// sees what was sent before. A bell is bound once; later binds are ignored.
    pub fn bind(&self, activator: SyncActivator) {
        if self.activator.set(activator).is_ok() {
            self.wake();
        }
    }

    /// Called by the operator before its last look at its channel.
    pub fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Called by the operator when that last look found something.
    pub fn disarm(&self) {
        self.armed.store(false, Ordering::SeqCst);
    }

    /// Called by a producer after sending: wakes the operator if it was armed, and
    /// says whether it was.
    pub fn ring(&self) -> bool {
        let armed = self.armed.swap(false, Ordering::SeqCst);
        if armed {
            self.wake();
        }
        armed
    }

    /// Wakes the operator whether or not it is armed (to make it see a stop request).
    /// Before [`Doorbell::bind`] this does nothing: binding wakes it.
    pub fn wake(&self) {
        if let Some(activator) = self.activator.get() {
            // The worker is gone only at shutdown, when nobody waits for the wake-up.
            let _ = activator.activate();
        }
    }
}
