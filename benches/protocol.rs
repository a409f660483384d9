//! The Open Inference Protocol against weir's own JSON route: what each way of sending
//! the same rows costs, on real sockets.
//!
//! Run: `cargo bench --bench protocol` (add `-- --quick` for a short run, or `-- grpc`,
//! `own`, `json` or `binary` for that way alone). Prints a markdown table; ratios are of
//! rows/s to own JSON's.
//!
//! One weir server (`graphs/digits.yaml` as bundled, one timely worker, in this process
//! on its own runtime, as `benches/http.rs` has it) is called four ways with
//! the same held-out digits:
//!
//! - **own JSON**: `POST /graphs/digits`, an object (1 row) or an array of objects (64);
//! - **v2 JSON**: `POST /v2/models/digits/infer`, one `FP32` tensor `[n, 64]` in JSON,
//!   outputs in JSON;
//! - **v2 binary**: the same with the binary tensor data extension: the pixels raw after
//!   the JSON header, both outputs asked for raw (what `tritonclient` sends by default);
//! - **gRPC**: `ModelInfer` with `raw_input_contents` over HTTP/2 (tonic's client, one
//!   channel, i.e. one connection, per client).
//!
//! at 1 and 16 concurrent clients and 1 and 64 rows per request. Each client sends its
//! next request as soon as it has the whole answer (the client reads the answer's bytes
//! and, for gRPC, decodes the message; it does not parse JSON). The four ways alternate
//! in rounds, each round starting with the next way; a ratio is the median of the
//! per-round ratios to own JSON, since the machine's speed drifts. Floor (issue 24):
//! v2 binary and gRPC at 64 rows per request ≥ 1.5x own JSON's rows/s.
#![allow(clippy::unwrap_used)] // a benchmark fails loudly on the first surprise

#[path = "support/load.rs"]
mod load;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use load::Server;
use serde_json::json;
use weir::bench::{median, percentile, range};
use weir::datasets::{digits, Split};
use weir_connectors::http::v2::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use weir_connectors::http::v2::proto::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use weir_connectors::http::v2::proto::ModelInferRequest;
use weir_engine::load_plan;

#[derive(Clone, Copy, PartialEq)]
enum Way {
    Own,
    V2Json,
    V2Binary,
    Grpc,
}

const WAYS: [Way; 4] = [Way::Own, Way::V2Json, Way::V2Binary, Way::Grpc];

impl Way {
    fn key(self) -> &'static str {
        match self {
            Way::Own => "own",
            Way::V2Json => "json",
            Way::V2Binary => "binary",
            Way::Grpc => "grpc",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Way::Own => "own JSON (POST /graphs/digits)",
            Way::V2Json => "v2 JSON",
            Way::V2Binary => "v2 binary tensor data",
            Way::Grpc => "gRPC ModelInfer (raw contents)",
        }
    }
}

/// One request's payload, built before the clock starts.
#[derive(Clone)]
enum Payload {
    Http { path: &'static str, body: Bytes, header_length: Option<usize> },
    Grpc(ModelInferRequest),
}

fn payloads(way: Way, images: &[Vec<f32>], rows: usize) -> Vec<Payload> {
    let batches: Vec<&[Vec<f32>]> = images.chunks_exact(rows).collect();
    batches
        .iter()
        .map(|batch| {
            let flat: Vec<f32> = batch.iter().flatten().copied().collect();
            let raw: Vec<u8> = flat.iter().flat_map(|x| x.to_le_bytes()).collect();
            match way {
                Way::Own => {
                    let body = if rows == 1 {
                        serde_json::to_vec(&json!({ "pixels": batch[0] })).unwrap()
                    } else {
                        let objects: Vec<_> = batch.iter().map(|p| json!({ "pixels": p })).collect();
                        serde_json::to_vec(&objects).unwrap()
                    };
                    Payload::Http { path: "/graphs/digits", body: body.into(), header_length: None }
                }
                Way::V2Json => {
                    let body = json!({"inputs": [
                        {"name": "pixels", "shape": [rows, 64], "datatype": "FP32", "data": flat}]});
                    let body = serde_json::to_vec(&body).unwrap();
                    Payload::Http { path: "/v2/models/digits/infer", body: body.into(), header_length: None }
                }
                Way::V2Binary => {
                    let header = json!({
                        "inputs": [{"name": "pixels", "shape": [rows, 64], "datatype": "FP32",
                                    "parameters": {"binary_data_size": raw.len()}}],
                        "outputs": [{"name": "label", "parameters": {"binary_data": true}},
                                    {"name": "probs", "parameters": {"binary_data": true}}]});
                    let mut body = serde_json::to_vec(&header).unwrap();
                    let header_length = Some(body.len());
                    body.extend_from_slice(&raw);
                    Payload::Http { path: "/v2/models/digits/infer", body: body.into(), header_length }
                }
                Way::Grpc => Payload::Grpc(ModelInferRequest {
                    model_name: "digits".into(),
                    inputs: vec![InferInputTensor {
                        name: "pixels".into(),
                        datatype: "FP32".into(),
                        shape: vec![rows as i64, 64],
                        ..Default::default()
                    }],
                    outputs: ["label", "probs"]
                        .iter()
                        .map(|o| InferRequestedOutputTensor { name: o.to_string(), ..Default::default() })
                        .collect(),
                    raw_input_contents: vec![raw.into()],
                    ..Default::default()
                }),
            }
        })
        .collect()
}

/// What one way measured in one run.
#[derive(Default)]
struct Run {
    requests: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

/// `clients` clients sending `payloads` (round robin, each from its own offset) back to
/// back for `duration`; every answer must succeed.
async fn run(addr: std::net::SocketAddr, payloads: &Arc<Vec<Payload>>, clients: usize, duration: Duration) -> Run {
    let grpc = matches!(payloads[0], Payload::Grpc(_));
    let mut tasks = Vec::with_capacity(clients);
    let start = Instant::now();
    let end = start + duration;
    for k in 0..clients {
        let payloads = Arc::clone(payloads);
        if grpc {
            let channel =
                tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
            let mut client = GrpcInferenceServiceClient::new(channel);
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut i = k * 7;
                while Instant::now() < end {
                    let Payload::Grpc(request) = &payloads[i % payloads.len()] else { unreachable!() };
                    i += 1;
                    let t = Instant::now();
                    let answer = client.model_infer(request.clone()).await.expect("gRPC answer").into_inner();
                    assert_eq!(answer.raw_output_contents.len(), 2);
                    latencies.push(t.elapsed());
                }
                latencies
            }));
        } else {
            let mut sender = load::connect(addr).await;
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut i = k * 7;
                while Instant::now() < end {
                    let Payload::Http { path, body, header_length } = &payloads[i % payloads.len()] else {
                        unreachable!()
                    };
                    i += 1;
                    let mut request = hyper::Request::post(*path)
                        .header(hyper::header::HOST, "127.0.0.1")
                        .header(hyper::header::CONTENT_TYPE, "application/json");
                    if let Some(n) = header_length {
                        request = request.header("inference-header-content-length", *n);
                    }
                    let request = request.body(Full::new(body.clone())).unwrap();
                    let t = Instant::now();
                    sender.ready().await.unwrap();
                    let response = sender.send_request(request).await.unwrap();
                    let status = response.status();
                    let bytes = response.into_body().collect().await.unwrap().to_bytes();
                    assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&bytes));
                    latencies.push(t.elapsed());
                }
                latencies
            }));
        }
    }
    let mut out = Run::default();
    for t in tasks {
        out.latencies.extend(t.await.unwrap());
    }
    out.requests = out.latencies.len();
    out.elapsed = start.elapsed();
    out
}

fn main() {
    // `-- grpc` (or own, json, binary): that way alone, for profiling.
    let args = weir::bench::BenchArgs::start();
    let (quick, only) = (args.quick, args.only);
    let plan = load_plan(&weir::datasets::graphs_dir().join("digits.yaml")).expect("digits");
    let server = Server::weir(plan);
    let client = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let set = digits(Split::Test).expect("digits");
    let images: Vec<Vec<f32>> = set.iter().map(|d| d.pixels.clone()).collect();
    let rounds = if quick { 2 } else { 3 };
    let duration = Duration::from_millis(if quick { 500 } else { 2000 });
    for clients in [1, 16] {
        for rows in [1, 64] {
            let payloads: Vec<Arc<Vec<Payload>>> = WAYS.iter().map(|&w| Arc::new(payloads(w, &images, rows))).collect();
            for p in &payloads {
                client.block_on(run(server.addr, p, clients, Duration::from_millis(300)));
            }
            let mut runs: Vec<Run> = WAYS.iter().map(|_| Run::default()).collect();
            let mut per_round: Vec<Vec<f64>> = Vec::new();
            for round in 0..rounds {
                let mut rates = vec![0.0; WAYS.len()];
                for i in 0..WAYS.len() {
                    let k = (round + i) % WAYS.len();
                    if only.as_deref().is_some_and(|o| o != WAYS[k].key()) {
                        continue;
                    }
                    let r = client.block_on(run(server.addr, &payloads[k], clients, duration));
                    rates[k] = r.requests as f64 / r.elapsed.as_secs_f64();
                    runs[k].requests += r.requests;
                    runs[k].elapsed += r.elapsed;
                    runs[k].latencies.extend(r.latencies);
                }
                per_round.push(rates);
            }
            for (k, way) in WAYS.iter().enumerate() {
                let r = &mut runs[k];
                if r.requests == 0 {
                    continue;
                }
                r.latencies.sort_unstable();
                let req_s = r.requests as f64 / r.elapsed.as_secs_f64();
                let ms = |p: f64| percentile(&r.latencies, p).as_secs_f64() * 1e3;
                let ratio = if only.is_some() {
                    "-".to_string()
                } else if k == 0 {
                    "1.00 (baseline)".to_string()
                } else {
                    let ratios: Vec<f64> = per_round.iter().map(|rates| rates[k] / rates[0]).collect();
                    let (lo, hi) = range(&ratios);
                    format!("{:.2}x (median of {rounds} rounds; range {lo:.2} to {hi:.2})", median(ratios))
                };
                println!(
                    "| digits, {clients} clients, {rows} rows per request | {} | {:.0} rows/s ({req_s:.0} req/s); \
                     p50 {:.3} ms, p99 {:.3} ms | {ratio} |",
                    way.name(),
                    req_s * rows as f64,
                    ms(0.5),
                    ms(0.99),
                );
            }
        }
    }
}
