//! [`Shutdown`]: one request to stop, shared by everything that must stop on it.
//!
//! There is one kind of stop in weir, whoever listens: a source operator closes once
//! its channel is drained, an admission wait gives up, a Kafka loop finishes what is in
//! flight, a table feed stops following, the HTTP server stops accepting and reports
//! not ready. Each of them holds a clone of a [`Shutdown`]. Two are made in a process:
//! the engine's (`Engine::shutdown` in weir-engine requests it once the servers have
//! stopped) and the server's (`weir serve` makes it on its first line and hands it to
//! its signal handler). Whoever asks first sets it; it never unsets.
//!
//! Blocking loops look at it between steps ([`Shutdown::is_requested`], at least every
//! 100 ms where they wait); async tasks await it ([`Shutdown::requested`]). Asking needs
//! no runtime, so a signal-handling thread may do it.

use std::sync::Arc;

use tokio::sync::watch;

/// A stop request: cheap to clone, every clone sees the same request.
#[derive(Clone, Debug)]
pub struct Shutdown {
    requested: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown { requested: Arc::new(watch::Sender::new(false)) }
    }
}

impl Shutdown {
    /// A request not yet made.
    pub fn new() -> Self {
        Shutdown::default()
    }

    /// Asks everything holding a clone to stop; returns whether this was the first ask.
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

    #[test]
    fn every_clone_sees_the_first_request() {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            let stop = Shutdown::new();
            let other = stop.clone();
            assert!(!other.is_requested());
            let waiting = tokio::spawn(async move { other.requested().await });
            assert!(stop.request(), "the first request");
            assert!(!stop.request(), "a second request changes nothing");
            waiting.await.unwrap();
            assert!(stop.is_requested());
            stop.requested().await; // already asked: completes at once
        });
    }
}
