//! SIGINT and SIGTERM, taken from the first step of `main`: a supervisor (systemd,
//! Kubernetes) signals whenever it likes, also while graphs load, tables catch up or a
//! consumer group is joined.
//!
//! [`take`] catches both signals before anything else runs; [`Taken::stop_server`] then
//! turns them into the server's [`Shutdown`], which every stage of `weir serve` looks at and
//! ends cleanly on (exit 0). The other commands ([`Taken::default_action`]) keep the
//! signals' default action: they end at once, by the signal.

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use weir_operators::Shutdown;

/// SIGINT and SIGTERM, caught and waiting to be handled (a signal that arrives before
/// then is kept).
pub struct Taken(Signals);

/// Catches SIGINT and SIGTERM. Call it first: until then, a signal ends the process.
pub fn take() -> std::io::Result<Taken> {
    Signals::new([SIGINT, SIGTERM]).map(Taken)
}

fn name(signal: i32) -> &'static str {
    if signal == SIGINT {
        "SIGINT"
    } else {
        "SIGTERM"
    }
}

impl Taken {
    /// A server's signals: the first requests the returned [`Shutdown`]; later ones are
    /// reported and change nothing (the stop under way is bounded by `--grace-ms`).
    /// A thread of its own (`weir-signals`) takes them.
    pub fn stop_server(self) -> std::io::Result<Shutdown> {
        let Taken(mut signals) = self;
        let stop = Shutdown::new();
        let asked = stop.clone();
        std::thread::Builder::new().name("weir-signals".into()).spawn(move || {
            for signal in signals.forever() {
                if asked.request() {
                    eprintln!("weir: {}: stopping", name(signal));
                } else {
                    eprintln!("weir: {}: already stopping", name(signal));
                }
            }
        })?;
        Ok(stop)
    }

    /// The signals' default action, as if they had never been caught: the process ends
    /// by the signal (exit status 128 + its number in a shell).
    pub fn default_action(self) -> std::io::Result<()> {
        let Taken(mut signals) = self;
        std::thread::Builder::new().name("weir-signals".into()).spawn(move || {
            if let Some(signal) = signals.forever().next() {
                // Restores the default disposition and raises the signal again.
                let _ = signal_hook::low_level::emulate_default_handler(signal);
            }
        })?;
        Ok(())
    }
}
