//! The two ways a JSON payload becomes a row and an answer becomes JSON, for instruction
//! counts: through a `serde_json::Value` (`json::decode_row`, `json::encode_row`; what the
//! HTTP connector does) and directly (`json_payload`; what the Kafka connector does).
//! 100,000 `diamond.yaml` messages (`{"a":i,"b":1,"c":0.5}`, answered `{"y":..}`).
//!
//! ```sh
//! cargo build --release -p weir-connectors --example json_paths
//! for way in setup value direct; do
//!   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$way target/release/examples/json_paths $way
//! done
//! ```
//!
//! Per message: (the way's total − `setup`'s) / 100,000.

use weir_connectors::json::{decode_row, encode_row};
use weir_connectors::json_payload::{decode_row_payload, write_row};
use weir_engine::GraphField;
use weir_operators::{DType, FieldType, Value};

fn main() {
    let way = std::env::args().nth(1).unwrap_or_default();
    let inputs: Vec<GraphField> =
        ["a", "b", "c"].iter().map(|n| GraphField::new(n, &FieldType::scalar(DType::F32))).collect();
    let payloads: Vec<Vec<u8>> =
        (0..100_000).map(|i| format!("{{\"a\":{i},\"b\":1,\"c\":0.5}}").into_bytes()).collect();
    let direct = match way.as_str() {
        "setup" => return println!("{} payloads", payloads.len()),
        "value" => false,
        "direct" => true,
        _ => return eprintln!("usage: json_paths setup|value|direct"),
    };
    let mut bytes = 0;
    for payload in &payloads {
        let row = if direct {
            decode_row_payload(&inputs, payload)
        } else {
            serde_json::from_slice(payload)
                .map_err(|e| e.to_string())
                .and_then(|json| decode_row(&inputs, &json).map_err(|e| e.to_string()))
                .map_err(|e| weir_operators::RowError::invalid_input("input", e))
        };
        let Ok([Value::F32(a), ..]) = row.as_deref() else { return eprintln!("not a diamond row: {row:?}") };
        let answer = [Value::F32(a + 2.5)];
        let out = if direct {
            // As the Kafka connector sizes it.
            let mut out = Vec::with_capacity(16 * answer.len() + 2);
            write_row(["y"], &answer, &mut out);
            out
        } else {
            serde_json::to_vec(&encode_row(["y"], &answer)).unwrap_or_default()
        };
        bytes += out.len();
    }
    println!("{bytes} bytes of answers");
}
