//! The longer `weir` commands, one per file: `replay`, `capture` and `serve`; each has
//! its flags (a clap `Args` struct) and its handler.

pub mod capture;
pub mod replay;
pub mod serve;

use std::process::ExitCode;

/// Prints `error: E` and returns exit code `code`.
pub fn fail(code: u8, e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(code)
}

/// Fills the tables of every graph of `engine` from their snapshots (before any row),
/// saying on stderr what was loaded; on an error, the exit code to stop with.
pub fn load_snapshots(engine: &weir_engine::Engine) -> Result<(), ExitCode> {
    for graph in engine.graphs() {
        match weir_connectors::snapshot::load_snapshots(graph) {
            Ok(loaded) => {
                for (table, rows) in loaded {
                    eprintln!("weir: graph '{}': table '{table}': {rows} rows from its snapshot", graph.name());
                }
            }
            Err(e) => return Err(fail(replay::replay_exit_code(&e), &e)),
        }
    }
    Ok(())
}
