//! The admin listener's live page in a real browser: headless Chromium (Debian's
//! `chromium` and `chromium-driver`, which scripts/test installs where absent), driven
//! over WebDriver by `tests/admin/browser.py`, loads the page of a running `weir serve`,
//! finds every node of the graph drawn, sees a model node's rows/s at 0, then rise from
//! 0 under a load, and takes a screenshot (kept as `target/test-artifacts/admin-page.png`).
//! Beside it, the JSON the page reads: `/admin/graphs` and `/admin/stats`.

#![allow(clippy::unwrap_used)] // a test fails loudly on the first surprise

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::process::{free_port, http_get, http_post, serve_http};
use serde_json::Value as Json;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

#[test]
fn the_page_draws_the_graph_and_its_figures_rise_under_load() {
    for tool in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: run scripts/test, which installs Debian's chromium and chromium-driver"
        );
    }
    let admin = free_port();
    let (child, addr) =
        serve_http(Path::new(env!("CARGO_BIN_EXE_weir")), &["graphs/digits.yaml", "--admin-port", &admin.to_string()]);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let screenshot = root.join("target/test-artifacts/admin-page.png");
    let _ = std::fs::remove_file(&screenshot);
    let out = std::process::Command::new("python3")
        .arg(root.join("tests/admin/browser.py"))
        .args(["--admin", &format!("http://127.0.0.1:{admin}"), "--public", &format!("http://{addr}")])
        .args(["--graph", "digits", "--node", "softmax", "--body-file", "graphs/digits/request.json"])
        .args(["--chromium", CHROMIUM, "--chromedriver", CHROMEDRIVER])
        .arg("--screenshot")
        .arg(&screenshot)
        .current_dir(root)
        .output()
        .expect("python3 runs");
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the browser check failed:\n{log}");
    let png = std::fs::read(&screenshot).expect("the screenshot is written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000, "a PNG of the page");
    eprintln!("{log}");
    common::kafka::stop(child);
}

#[test]
fn the_admin_json_names_every_node_and_counts_rows() {
    let admin = free_port();
    let (child, addr) =
        serve_http(Path::new(env!("CARGO_BIN_EXE_weir")), &["graphs/digits.yaml", "--admin-port", &admin.to_string()]);
    let admin = format!("127.0.0.1:{admin}");
    let (status, graphs) = http_get(&admin, "/admin/graphs");
    assert_eq!(status, 200, "{graphs}");
    let graphs: Json = serde_json::from_str(&graphs).unwrap();
    let digits = &graphs["graphs"][0];
    assert_eq!((digits["name"].as_str(), digits["revision"].as_u64()), (Some("digits"), Some(1)));
    let names: Vec<&str> = digits["nodes"].as_array().unwrap().iter().filter_map(|n| n["name"].as_str()).collect();
    assert_eq!(names, ["input", "scaled", "softmax", "mlp", "ensemble", "top", "output"]);
    let edges = digits["edges"].as_array().unwrap();
    assert!(edges.iter().any(|e| e["from"] == "scaled" && e["to"] == "mlp"), "{edges:?}");
    assert!(edges.iter().any(|e| e["from"] == "top" && e["to"] == "output"), "{edges:?}");
    // 200 requests, then the next second's figures count them.
    let body =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("graphs/digits/request.json")).unwrap();
    for _ in 0..200 {
        assert_eq!(http_post(&addr, "/graphs/digits", &body).0, 200);
    }
    let t = Instant::now();
    let stats = loop {
        let (_, stats) = http_get(&admin, "/admin/stats");
        let stats: Json = serde_json::from_str(&stats).unwrap();
        let softmax =
            stats["graphs"][0]["nodes"].as_array().and_then(|n| n.iter().find(|n| n["name"] == "softmax")).cloned();
        if softmax.is_some_and(|n| n["rows_in_per_s"].as_f64() > Some(0.0)) || t.elapsed() > Duration::from_secs(5) {
            break stats;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let g = &stats["graphs"][0];
    let node = |name: &str| g["nodes"].as_array().unwrap().iter().find(|n| n["name"] == name).cloned().unwrap();
    let softmax = node("softmax");
    assert!(softmax["rows_in_per_s"].as_f64().unwrap() > 0.0, "{stats}");
    assert!(softmax["batch_size"].as_f64().unwrap() >= 1.0, "{stats}");
    assert_eq!(softmax["replicas"], 1, "{stats}");
    assert!(node("input")["rows_in_per_s"].as_f64().unwrap() > 0.0, "{stats}");
    // Every other node kind counts its rows and its worker time too.
    for name in ["scaled", "ensemble", "top"] {
        let n = node(name);
        assert!(n["rows_in_per_s"].as_f64().unwrap() > 0.0 && n["busy"].as_f64().unwrap() > 0.0, "{name}: {stats}");
    }
    assert!(g["requests_per_s"]["200"].as_f64().unwrap() > 0.0, "{stats}");
    assert!(g["latency_ms"]["p50"].as_f64().unwrap() > 0.0, "{stats}");
    assert!(g["max_in_flight"].as_u64() > Some(0) && g["in_flight"].as_u64().is_some(), "{stats}");
    // The admin routes are only on the admin port, and inference only on the public one.
    assert_eq!(http_get(&addr, "/admin/stats").0, 404);
    assert_eq!(http_post(&admin, "/graphs/digits", &body).0, 404);
    common::kafka::stop(child);
}
