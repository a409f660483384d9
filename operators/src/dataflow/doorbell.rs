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
//! [`arms`]: Doorbell::arm
//! [`disarms`]: Doorbell::disarm
//! [`rings`]: Doorbell::ring

use std::sync::atomic::{AtomicBool, Ordering};

use timely::scheduling::SyncActivator;

/// Wakes one operator when, and only when, it waits for messages.
#[derive(Debug)]
pub struct Doorbell {
    armed: AtomicBool,
    activator: SyncActivator,
}

impl Doorbell {
    /// A bell for the operator `activator` wakes, armed (the first message wakes it).
    pub fn new(activator: SyncActivator) -> Self {
        Doorbell { armed: AtomicBool::new(true), activator }
    }

    /// Called by the operator before its last look at its channel.
    pub fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Called by the operator when that last look found something.
    pub fn disarm(&self) {
        self.armed.store(false, Ordering::SeqCst);
    }

    /// Called by a producer after sending: wakes the operator if it was armed.
    pub fn ring(&self) {
        if self.armed.swap(false, Ordering::SeqCst) {
            // The worker is gone only at shutdown, when nobody waits for the wake-up.
            let _ = self.activator.activate();
        }
    }

    /// Wakes the operator whether or not it is armed (to make it see a stop flag).
    pub fn wake(&self) {
        let _ = self.activator.activate();
    }
}
