//! SIGINT, SIGTERM and SIGHUP, taken from the first step of `main`: a supervisor
//! (systemd, Kubernetes) signals whenever it likes, also while graphs load, tables catch
//! up or a consumer group is joined.
//!
//! [`take`] catches the signals before anything else runs; [`Taken::stop_server`] then
//! turns SIGINT and SIGTERM into the server's [`Shutdown`], which every stage of `weir
//! serve` looks at and ends cleanly on (exit 0), and SIGHUP into a reload (one that
//! arrives while the server starts is kept, and reloads once it serves). The other
//! commands ([`Taken::default_action`]) keep the signals' default action: they end at
//! once, by the signal.

use std::sync::Arc;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tokio::sync::Notify;
use weir_operators::Shutdown;

/// SIGINT, SIGTERM and SIGHUP, caught and waiting to be handled (a signal that arrives
/// before then is kept).
pub struct Taken(Signals);

/// Catches SIGINT, SIGTERM and SIGHUP. Call it first: until then, a signal ends the
/// process.
pub fn take() -> std::io::Result<Taken> {
    Signals::new([SIGINT, SIGTERM, SIGHUP]).map(Taken)
}

fn name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGHUP => "SIGHUP",
        _ => "SIGTERM",
    }
}

/// What a server's signals ask of it.
#[derive(Clone, Default)]
pub struct ServerSignals {
    /// Requested by the first SIGINT or SIGTERM.
    pub stop: Shutdown,
    /// Notified by every SIGHUP (a reload; several before it runs are one).
    pub hangups: Arc<Notify>,
}

impl Taken {
    /// A server's signals: the first SIGINT or SIGTERM requests the returned
    /// [`Shutdown`]; later ones are reported and change nothing (the stop under way is
    /// bounded by `--grace-ms`). Each SIGHUP notifies `hangups`. A thread of its own
    /// (`weir-signals`) takes them.
    pub fn stop_server(self) -> std::io::Result<ServerSignals> {
        let Taken(mut signals) = self;
        let server = ServerSignals::default();
        let asked = server.stop.clone();
        let hangups = Arc::clone(&server.hangups);
        std::thread::Builder::new().name("weir-signals".into()).spawn(move || {
            for signal in signals.forever() {
                if signal == SIGHUP {
                    eprintln!("weir: SIGHUP: reloading the graph files");
                    hangups.notify_one();
                } else if asked.request() {
                    eprintln!("weir: {}: stopping", name(signal));
                } else {
                    eprintln!("weir: {}: already stopping", name(signal));
                }
            }
        })?;
        Ok(server)
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
