//! The Prometheus text exposition format (version 0.0.4), written so that every scraper
//! parses it.
//!
//! [`MetricsText`] is the only writer of `/metrics`: a family's `# HELP` and `# TYPE`
//! lines, then its samples, each label value escaped by [`escape_label_value`] (`\` as
//! `\\`, `"` as `\"`, a newline as `\n`), whatever it holds. Graph, node and table
//! names are restricted to `[A-Za-z0-9_-]` when a graph is planned, so escaping changes
//! nothing for them today; it is what keeps the text parseable if a label ever carries
//! something else (a Kafka topic, an error message).
//!
//! Other parts of the server add their own families through [`MetricFamilies`] (see
//! [`super::AppState::add_metrics`]).
//!
//! ```
//! use weir_connectors::http::exposition::{MetricType, MetricsText};
//!
//! let mut text = MetricsText::new();
//! text.family("weir_example_total", MetricType::Counter, "Things that happened.");
//! text.sample("weir_example_total", &[("graph", "a\"b")], 3u64);
//! let expected = concat!(
//!     "# HELP weir_example_total Things that happened.\n",
//!     "# TYPE weir_example_total counter\n",
//!     "weir_example_total{graph=\"a\\\"b\"} 3\n",
//! );
//! assert_eq!(text.into_string(), expected);
//! ```

use std::borrow::Cow;
use std::fmt::Write;

/// Families of metrics rendered by another part of the server (the Kafka source and sink,
/// say), appended to `/metrics` after weir's own on every scrape.
///
/// An implementation writes whole families (`family`, then its `sample`s) with names of
/// its own (`weir_kafka_...`): a name that is already in the text would be a duplicate
/// family, which scrapers refuse. It is called on the HTTP server's async threads, so it
/// reads counters and must not block.
pub trait MetricFamilies: Send + Sync {
    /// Appends this source's families to `text`.
    fn render(&self, text: &mut MetricsText);
}

impl<F: Fn(&mut MetricsText) + Send + Sync> MetricFamilies for F {
    fn render(&self, text: &mut MetricsText) {
        self(text)
    }
}

/// The type of a metric family, as its `# TYPE` line names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricType {
    /// Only goes up (name ends in `_total`).
    Counter,
    /// Goes up and down.
    Gauge,
    /// `_bucket`, `_sum` and `_count` samples (see [`MetricsText::histogram`]).
    Histogram,
}

impl MetricType {
    fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        }
    }
}

/// A sample's value, written as Prometheus reads it (`+Inf`, `-Inf`, `NaN` for the
/// non-finite floats).
pub trait SampleValue {
    /// Appends the value to `out`.
    fn write_to(&self, out: &mut String);
}

macro_rules! integer_sample {
    ($($t:ty),*) => {$(
        impl SampleValue for $t {
            fn write_to(&self, out: &mut String) {
                let _ = write!(out, "{self}");
            }
        }
    )*};
}
integer_sample!(u64, i64, usize, u32, i32);

impl SampleValue for f64 {
    fn write_to(&self, out: &mut String) {
        if self.is_nan() {
            out.push_str("NaN");
        } else if self.is_infinite() {
            out.push_str(if *self > 0.0 { "+Inf" } else { "-Inf" });
        } else {
            let _ = write!(out, "{self}");
        }
    }
}

/// Escapes a label value for the text format: `\` becomes `\\`, `"` becomes `\"` and a
/// newline becomes `\n`; everything else (any UTF-8) stays as it is.
pub fn escape_label_value(value: &str) -> Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Escapes `# HELP` text: `\` becomes `\\` and a newline `\n`.
fn escape_help(text: &str) -> Cow<'_, str> {
    if !text.contains(['\\', '\n']) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.replace('\\', "\\\\").replace('\n', "\\n"))
}

/// Whether `name` is a valid metric or label name (`[a-zA-Z_:][a-zA-Z0-9_:]*`; label
/// names take no `:`). Names are written by weir's code, never by users: checked in
/// debug builds.
fn is_valid_metric_name(name: &str, colons: bool) -> bool {
    let ok = |c: char, first: bool| {
        c.is_ascii_alphabetic() || c == '_' || (colons && c == ':') || (!first && c.is_ascii_digit())
    };
    let mut chars = name.chars();
    chars.next().is_some_and(|c| ok(c, true)) && chars.all(|c| ok(c, false))
}

/// The text of `/metrics`, written a family at a time.
#[derive(Debug, Default)]
pub struct MetricsText {
    text: String,
    /// A label every sample carries first (a cluster process's `process`).
    constant: Option<(&'static str, String)>,
}

impl MetricsText {
    /// Empty text.
    pub fn new() -> Self {
        MetricsText::default()
    }

    /// Empty text whose every sample carries the label `name="value"` first.
    pub fn with_constant_label(name: &'static str, value: String) -> Self {
        MetricsText { text: String::new(), constant: Some((name, value)) }
    }

    /// Starts a family: its `# HELP` and `# TYPE` lines. Its samples follow, and no
    /// other family's may come before the next `family`.
    pub fn family(&mut self, name: &str, kind: MetricType, help: &str) {
        debug_assert!(is_valid_metric_name(name, true), "metric name {name:?}");
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {}", kind.as_str());
    }

    /// One sample: `name{label="value",...} value`, every label value escaped (no braces
    /// without labels).
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl SampleValue) {
        self.sample_with(name, labels, None, value);
    }

    /// A sample with one more label after `labels` (a histogram's `le`).
    fn sample_with(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        extra: Option<(&str, &str)>,
        value: impl SampleValue,
    ) {
        debug_assert!(is_valid_metric_name(name, true), "metric name {name:?}");
        self.text.push_str(name);
        let constant = self.constant.as_ref().map(|(n, v)| (*n, v.as_str()));
        let mut all = constant.into_iter().chain(labels.iter().copied()).chain(extra).peekable();
        if all.peek().is_some() {
            self.text.push('{');
            for (i, (label, v)) in all.enumerate() {
                debug_assert!(is_valid_metric_name(label, false) && !label.starts_with("__"), "label name {label:?}");
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"{}\"", escape_label_value(v));
            }
            self.text.push('}');
        }
        self.text.push(' ');
        value.write_to(&mut self.text);
        self.text.push('\n');
    }

    /// The samples of one histogram (its family started with [`MetricType::Histogram`]):
    /// a cumulative `name_bucket` per bound in `bounds` (increasing) and `+Inf`, then
    /// `name_sum` and `name_count`. `counts` are per bucket, not cumulative, with one more
    /// for the values above every bound (missing counts as 0).
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], bounds: &[f64], counts: &[u64], sum: f64) {
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0;
        for (bound, n) in bounds.iter().zip(counts) {
            cumulative += n;
            let mut le = String::new();
            bound.write_to(&mut le);
            self.sample_with(&bucket, labels, Some(("le", &le)), cumulative);
        }
        cumulative += counts.get(bounds.len()).copied().unwrap_or(0);
        self.sample_with(&bucket, labels, Some(("le", "+Inf")), cumulative);
        self.sample(&format!("{name}_sum"), labels, sum);
        self.sample(&format!("{name}_count"), labels, cumulative);
    }

    /// The text.
    pub fn into_string(self) -> String {
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_escape_backslash_quote_and_newline_only() {
        assert_eq!(escape_label_value("plain-name_1"), "plain-name_1");
        assert!(matches!(escape_label_value("plain"), Cow::Borrowed(_)));
        assert_eq!(escape_label_value(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label_value("line\nnext"), r"line\nnext");
        assert_eq!(escape_label_value("tab\t é {}=,"), "tab\t é {}=,");
    }

    #[test]
    fn samples_and_histograms() {
        let mut text = MetricsText::new();
        text.family("x", MetricType::Histogram, "Help with a \\ and a\nnewline.");
        text.histogram("x", &[("g", "a\"b")], &[1.0, 2.5], &[2, 1, 1], 6.0);
        text.family("up", MetricType::Gauge, "Up.");
        text.sample("up", &[], 1u64);
        text.sample("up", &[], f64::INFINITY);
        assert_eq!(
            text.into_string(),
            "# HELP x Help with a \\\\ and a\\nnewline.\n# TYPE x histogram\n\
             x_bucket{g=\"a\\\"b\",le=\"1\"} 2\n\
             x_bucket{g=\"a\\\"b\",le=\"2.5\"} 3\n\
             x_bucket{g=\"a\\\"b\",le=\"+Inf\"} 4\n\
             x_sum{g=\"a\\\"b\"} 6\n\
             x_count{g=\"a\\\"b\"} 4\n\
             # HELP up Up.\n# TYPE up gauge\nup 1\nup +Inf\n"
        );
    }

    #[test]
    fn metric_and_label_names() {
        assert!(is_valid_metric_name("weir_x:y_total", true));
        assert!(!is_valid_metric_name("weir_x:y", false));
        assert!(!is_valid_metric_name("1x", true));
        assert!(!is_valid_metric_name("", true));
        assert!(!is_valid_metric_name("a-b", true));
    }
}
