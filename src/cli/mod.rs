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
