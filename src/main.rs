//! `weir`: serve graphs of ML models as a continuous timely dataflow. The commands are
//! in [`weir::cli`]; this binary is that command line with weir's own model formats.

use std::process::ExitCode;

/// mimalloc frees memory allocated on another thread cheaply, and rows are allocated on
/// one thread (submitter, replica) and freed on another (worker); see BENCHMARKS.md,
/// "What was changed for speed", change 4.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    weir::cli::main_with(weir_engine::Kernels::builtin())
}
