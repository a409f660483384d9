//! JSON lines through a graph: one output line per input line, in input order.
//!
//! Each line is decoded by the graph's input schema and submitted; answers come back in
//! any order and are written in input order through a reorder buffer. A line that does
//! not decode, or a row that fails, gives an `{"error": {...}}` line at its position.
//! At most `in_flight` lines are between reading and writing at any time, so memory is
//! bounded whatever the input size.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};
use std::sync::Arc;

use crossbeam_channel::bounded;
use serde_json::Value as Json;
use weir_engine::runtime::refusal;
use weir_engine::{GraphHandle, RowResult};
use weir_operators::{ErrorCode, RowError};

use crate::json::{decode_row, encode_error, encode_row};

/// Counts of a finished run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Lines read (= lines written).
    pub rows: u64,
    /// Lines answered with an error.
    pub errors: u64,
}

/// Runs every line of `input` through `graph`, writing answers to `output`.
/// Fails only on an I/O error.
pub fn run_jsonl(graph: &GraphHandle, input: impl BufRead, mut output: impl Write, in_flight: usize) -> io::Result<RunSummary> {
    let in_flight = in_flight.max(1);
    let names: Vec<String> = graph.plan().output.fields.iter().map(|(n, _, _)| n.clone()).collect();
    let inputs = graph.plan().inputs.clone();
    let (tx, rx) = bounded::<(u64, RowResult)>(in_flight);
    let mut order = Reorder::default();
    let mut summary = RunSummary::default();
    let answer = |r: RowResult| r.map(|values| encode_row(names.iter().cloned(), &values));

    for (i, line) in input.lines().enumerate() {
        let line = line?;
        let i = i as u64;
        summary.rows += 1;
        while order.pending.len() >= in_flight {
            let Ok((j, r)) = rx.recv() else { break };
            order.pending.insert(j, Some(answer(r)));
            order.write_ready(&mut output, &mut summary)?;
        }
        let decoded = serde_json::from_str::<Json>(&line)
            .map_err(|e| RowError::new(ErrorCode::InvalidInput, "input", format!("line {}: invalid JSON: {e}", i + 1)))
            .and_then(|json| decode_row(&inputs, &json));
        let slot = match decoded {
            Err(e) => Some(Err(Arc::new(e))),
            Ok(values) => {
                let tx = tx.clone();
                match graph.submit(values, Box::new(move |r| drop(tx.send((i, r))))) {
                    Ok(_) => None,
                    Err(e) => Some(Err(Arc::new(refusal(e)))),
                }
            }
        };
        order.pending.insert(i, slot);
        order.write_ready(&mut output, &mut summary)?;
    }
    drop(tx);
    while order.pending.values().any(Option::is_none) {
        let Ok((j, r)) = rx.recv() else { break };
        order.pending.insert(j, Some(answer(r)));
        order.write_ready(&mut output, &mut summary)?;
    }
    output.flush()?;
    Ok(summary)
}

/// Lines read but not yet written, by line number: answered (`Some`) or computing.
#[derive(Default)]
struct Reorder {
    pending: BTreeMap<u64, Option<Result<Json, Arc<RowError>>>>,
    next: u64,
}

impl Reorder {
    /// Writes every answered line that is next in input order.
    fn write_ready(&mut self, output: &mut impl Write, summary: &mut RunSummary) -> io::Result<()> {
        while let Some(Some(_)) = self.pending.get(&self.next) {
            let Some(Some(answer)) = self.pending.remove(&self.next) else { break };
            let line = answer.unwrap_or_else(|e| {
                summary.errors += 1;
                encode_error(&e)
            });
            serde_json::to_writer(&mut *output, &line)?;
            output.write_all(b"\n")?;
            self.next += 1;
        }
        Ok(())
    }
}
