//! Driving a graph in-process as fast as it answers, shared by the engine and tables
//! benches.

use weir_engine::{GraphHandle, Submission};
use weir_operators::{Column, FieldType, Value};

/// Pushes pre-built submissions (one column per input field) through `g`, at most
/// `in_flight` rows outstanding, like a server that answers and forgets: answers are
/// checked and dropped on the worker thread. Returns once every row is answered.
pub fn drive(g: &GraphHandle, submissions: Vec<Vec<Column>>, in_flight: usize) {
    let chunk = submissions.first().and_then(|c| c.first()).map_or(1, Column::len);
    let max_batches = (in_flight / chunk).max(1);
    let (tx, rx) = crossbeam_channel::bounded::<bool>(max_batches);
    let mut outstanding = 0;
    for columns in submissions {
        if outstanding == max_batches {
            assert!(rx.recv().expect("answers"), "every row succeeds");
            outstanding -= 1;
        }
        let tx = tx.clone();
        let reply = Box::new(move |answers: weir_operators::Chunk| {
            let _ = tx.send(!answers.has_errors());
        });
        g.submit(Submission::columns(columns, reply)).expect("submit");
        outstanding += 1;
    }
    for _ in 0..outstanding {
        assert!(rx.recv().expect("answers"), "every row succeeds");
    }
}

/// `rows` cut into submissions of `chunk` rows, by column (made before the clock
/// starts: the direct baselines read prepared inputs too).
pub fn submissions(rows: &[Vec<Value>], types: &[FieldType], chunk: usize) -> Vec<Vec<Column>> {
    rows.chunks(chunk)
        .map(|part| {
            types.iter().enumerate().map(|(f, ty)| Column::from_values(ty, part.iter().map(|r| &r[f]))).collect()
        })
        .collect()
}
