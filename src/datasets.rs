//! The bundled real data sets (`graphs/data/`), parsed: digits with their fixed split,
//! and River's phishing stream in stream order.

use std::io::Read;
use std::path::{Path, PathBuf};

/// One digits image: 64 pixel values (0 to 16) and its label.
#[derive(Clone, Debug, PartialEq)]
pub struct Digit {
    /// Row-major 8x8 pixels.
    pub pixels: Vec<f32>,
    /// 0 to 9.
    pub label: u8,
}

/// Which part of the fixed split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// Rows with `index % 5 != 0` (1437 rows).
    Train,
    /// Rows with `index % 5 == 0` (360 rows).
    Test,
}

/// The repository's `graphs/` directory (found from this crate's manifest).
pub fn graphs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("graphs")
}

/// Reads scikit-learn's digits from `graphs/data/digits.csv.gz`, one split of it.
pub fn digits(split: Split) -> std::io::Result<Vec<Digit>> {
    let rows = read_numbers(&data("digits.csv.gz"), 0, Some(65))?;
    Ok(rows
        .into_iter()
        .enumerate()
        .filter(|(i, _)| (i % 5 == 0) == (split == Split::Test))
        .map(|(_, values)| Digit { pixels: values[..64].to_vec(), label: values[64] as u8 })
        .collect())
}

/// One page of River's phishing stream: 9 features and whether it is phishing.
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    /// `empty_server_form_handler` ... `ip_in_url`, in the file's column order.
    pub features: Vec<f32>,
    /// `is_phishing`.
    pub phishing: bool,
}

/// Reads River's phishing stream from `graphs/data/phishing.csv.gz`, in stream order.
pub fn phishing() -> std::io::Result<Vec<Page>> {
    let rows = read_numbers(&data("phishing.csv.gz"), 1, Some(10))?;
    Ok(rows.into_iter().map(|values| Page { features: values[..9].to_vec(), phishing: values[9] == 1.0 }).collect())
}

/// `graphs/data/NAME`.
fn data(name: &str) -> PathBuf {
    graphs_dir().join("data").join(name)
}

/// The rows of the gzipped CSV at `path` after `header` lines, each `width` numbers
/// (`None`: as many as the first row has); an error names the file and line.
pub fn read_numbers(path: &Path, header: usize, width: Option<usize>) -> std::io::Result<Vec<Vec<f32>>> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path)?).read_to_string(&mut text)?;
    let bad = |line: usize, what: String| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: line {line}: {what}", path.display()))
    };
    let mut width = width;
    text.lines()
        .enumerate()
        .skip(header)
        .map(|(i, line)| {
            let values: Vec<f32> = line
                .split(',')
                .map(|v| v.trim().parse::<f32>())
                .collect::<Result<_, _>>()
                .map_err(|_| bad(i + 1, "not a number".into()))?;
            let width = *width.get_or_insert(values.len());
            if values.len() != width {
                return Err(bad(i + 1, format!("expected {width} values, got {}", values.len())));
            }
            Ok(values)
        })
        .collect()
}
