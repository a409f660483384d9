//! The Python tools the tests check weir's documents with, installed by scripts/test
//! under `.tools/python` (pinned): the Prometheus client library's parser for
//! `/metrics`, the OpenAPI validator for `/openapi.json`.

/// `python3` with the Python test tools scripts/test installs under `.tools/python`
/// (pinned versions), and only those: `-S` leaves the machine's own site-packages out.
pub fn python_tools() -> std::process::Command {
    let mut python = std::process::Command::new("python3");
    python.arg("-S").env("PYTHONPATH", std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/python"));
    python
}

/// Fails the test, saying how to install it, if `module` is not under `.tools/python`.
pub fn require_python_module(module: &str) {
    let out = python_tools().args(["-c", &format!("import {module}")]).output().expect("python3 runs");
    assert!(
        out.status.success(),
        "the Python module `{module}` is not installed under .tools/python: run scripts/test, which installs \
         the Python test tools there\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One sample of `/metrics` as the Prometheus client library's parser reads it.
#[derive(Debug)]
pub struct Sample {
    /// The family's name (a counter's without `_total`) and type.
    pub family: String,
    /// `counter`, `gauge`, `histogram`...
    pub kind: String,
    /// The sample's own name (with `_total`, `_bucket`...).
    pub name: String,
    /// Its labels.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// Parses `text` with `prometheus_client.parser.text_string_to_metric_families`
/// (pinned in scripts/test); panics if it does not parse or if any sample line was
/// not read as a sample.
pub fn parse_metrics(text: &str) -> Vec<Sample> {
    use std::io::Write;
    require_python_module("prometheus_client");
    const SCRIPT: &str = "import json, math, sys\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        out = []\n\
        for f in text_string_to_metric_families(sys.stdin.read()):\n\
        \x20   for s in f.samples:\n\
        \x20       v = s.value if math.isfinite(s.value) else None\n\
        \x20       out.append({'family': f.name, 'type': f.type, 'name': s.name, 'labels': s.labels, 'value': v})\n\
        print(json.dumps(out))\n";
    let mut child = python_tools()
        .args(["-c", SCRIPT])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client could not parse /metrics:\n{}\n--- the text:\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let samples: Vec<Sample> = parsed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| Sample {
            family: s["family"].as_str().unwrap().into(),
            kind: s["type"].as_str().unwrap().into(),
            name: s["name"].as_str().unwrap().into(),
            labels: serde_json::from_value(s["labels"].clone()).unwrap(),
            value: s["value"].as_f64().unwrap_or(f64::NAN),
        })
        .collect();
    let lines = text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).count();
    assert_eq!(samples.len(), lines, "every sample line was read as one sample:\n{text}");
    samples
}

/// The value of the sample `name` with exactly `labels`.
pub fn sample(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let labels: std::collections::BTreeMap<String, String> =
        labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    samples.iter().find(|s| s.name == name && s.labels == labels).map(|s| s.value)
}
