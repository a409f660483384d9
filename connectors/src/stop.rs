//! [`Stop`]: the one request to stop a server, shared by every part of it.
//!
//! `weir serve` makes one at its very start and hands it to everything that runs for a
//! while: table loading and catch-up, the HTTP server, every Kafka loop, every table
//! feed. Whoever asks first (a signal handler, a test) sets it; it never unsets.
//! Blocking loops look at it between steps ([`Stop::is_requested`], at least every
//! 100 ms where they wait); async tasks await it ([`Stop::requested`]).

use std::sync::Arc;

use tokio::sync::watch;

/// A stop request: cheap to clone, every clone sees the same request.
#[derive(Clone, Debug)]
pub struct Stop {
    requested: Arc<watch::Sender<bool>>,
}

impl Default for Stop {
    fn default() -> Self {
        Stop { requested: Arc::new(watch::Sender::new(false)) }
    }
}

impl Stop {
    /// A request not yet made.
    pub fn new() -> Self {
        Stop::default()
    }

    /// Asks everything holding a clone to stop; returns whether this was the first ask.
    /// Needs no runtime: a signal-handling thread may call it.
    pub fn request(&self) -> bool {
        !self.requested.send_replace(true)
    }

    /// Whether a stop was asked for.
    pub fn is_requested(&self) -> bool {
        *self.requested.borrow()
    }

    /// Completes once a stop is asked for (at once if it already was).
    pub async fn requested(&self) {
        let mut rx = self.requested.subscribe();
        // The sender lives as long as `self`, so waiting cannot fail.
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_clone_sees_the_first_request() {
        let stop = Stop::new();
        let other = stop.clone();
        assert!(!other.is_requested());
        let waiting = tokio::spawn(async move { other.requested().await });
        assert!(stop.request(), "the first request");
        assert!(!stop.request(), "a second request changes nothing");
        waiting.await.unwrap();
        assert!(stop.is_requested());
        stop.requested().await; // already asked: completes at once
    }
}
