//! JSON lines through a graph: one output line per input line, in input order.
//!
//! Each line is decoded by the graph's input schema and submitted; answers come back in
//! any order and are written in input order through a reorder buffer. A line that does
//! not decode, or a row that fails, gives an `{"error": {...}}` line at its position.
//! At most `in_flight` lines are between reading and writing at any time, so memory is
//! bounded whatever the input size.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::sync::Arc;

use serde_json::Value as Json;
use weir_engine::{GraphHandle, RowResult, Submission};
use weir_operators::{RowError, Value};

use crate::json::{decode_row, encode_error, encode_row};

/// Counts of a finished run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Lines read (= lines written).
    pub rows: u64,
    /// Lines answered with an error.
    pub errors: u64,
}

/// Rows submitted together: up to this many consecutive good lines.
const BATCH: usize = 256;

/// Runs every line of `input` through `graph`, writing answers to `output`.
/// Fails only on an I/O error. Good lines are submitted in batches of up to 256; a
/// batch also leaves whenever reading on would block, so a slow producer on stdin gets
/// its answers as its lines arrive.
pub fn run_jsonl(
    graph: &GraphHandle,
    input: impl Read,
    mut output: impl Write,
    in_flight: usize,
) -> io::Result<RunSummary> {
    let in_flight = in_flight.max(1);
    let names = graph.schema().output_names();
    let inputs = graph.schema().inputs.clone();
    // Each outstanding batch holds at least one row, so this never blocks a worker.
    // std's channel: its `recv` sleeps at once rather than yield the core (see
    // `replay::replay_with_feedback`).
    let (tx, rx) = std::sync::mpsc::sync_channel::<(Vec<u64>, Vec<RowResult>)>(in_flight);
    let mut order = Reorder::default();
    let mut summary = RunSummary::default();
    let answer = |r: RowResult| r.map(|values| encode_row(names.iter().cloned(), &values));
    let receive = |order: &mut Reorder, output: &mut dyn Write, summary: &mut RunSummary| -> io::Result<bool> {
        let Ok((lines, results)) = rx.recv() else { return Ok(false) };
        for (line, r) in lines.into_iter().zip(results) {
            order.pending.insert(line, Some(answer(r)));
        }
        order.write_ready(output, summary)?;
        Ok(true)
    };
    let mut batch: (Vec<u64>, Vec<Vec<Value>>) = (Vec::new(), Vec::new());
    let submit = |batch: &mut (Vec<u64>, Vec<Vec<Value>>), order: &mut Reorder| {
        if batch.0.is_empty() {
            return;
        }
        let (lines, rows) = std::mem::take(batch);
        let tx = tx.clone();
        let reply_lines = lines.clone();
        match graph.submit(Submission::rows(rows, Box::new(move |r| drop(tx.send((reply_lines, r)))))) {
            Ok(_) => {}
            Err(e) => {
                let e = Arc::new(e.into_row_error());
                for line in lines {
                    order.pending.insert(line, Some(Err(Arc::clone(&e))));
                }
            }
        }
    };

    let mut reader = BufReader::new(input);
    let mut line = String::new();
    let mut i = 0u64;
    loop {
        if reader.buffer().is_empty() {
            // The next read may block: send what is ready first.
            submit(&mut batch, &mut order);
        }
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        summary.rows += 1;
        while order.pending.len() >= in_flight {
            submit(&mut batch, &mut order);
            if !receive(&mut order, &mut output, &mut summary)? {
                break;
            }
        }
        let text = line.strip_suffix('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).unwrap_or(&line);
        let decoded = serde_json::from_str::<Json>(text)
            .map_err(|e| RowError::invalid_input("input", format!("line {}: invalid JSON: {e}", i + 1)))
            .and_then(|json| decode_row(&inputs, &json));
        match decoded {
            Err(e) => {
                order.pending.insert(i, Some(Err(Arc::new(e))));
            }
            Ok(values) => {
                order.pending.insert(i, None);
                batch.0.push(i);
                batch.1.push(values);
                if batch.0.len() == BATCH {
                    submit(&mut batch, &mut order);
                }
            }
        }
        order.write_ready(&mut output, &mut summary)?;
        i += 1;
    }
    submit(&mut batch, &mut order);
    drop(tx);
    while order.pending.values().any(Option::is_none) {
        if !receive(&mut order, &mut output, &mut summary)? {
            break;
        }
    }
    order.write_ready(&mut output, &mut summary)?;
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
    fn write_ready(&mut self, output: &mut dyn Write, summary: &mut RunSummary) -> io::Result<()> {
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
