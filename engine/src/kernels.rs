//! The kernel registry: the model formats and custom kernels a graph's `model` nodes
//! can name with `format:`.
//!
//! [`Kernels::builtin`] knows weir's own formats: `onnx` (an ONNX graph, ONNX-ML
//! operators included), `xgboost` (a JSON model from `save_model("m.json")`) and
//! `lightgbm` (a text model from `save_model("m.txt")`). A program that embeds weir adds
//! its own kernels by name ([`Kernels::with`]) and hands the registry to
//! [`Plan::with_kernels`](crate::Plan::with_kernels), or to `weir::cli::main_with` to
//! get the whole `weir` command line with them.
//!
//! A format loads one node's model when the graph is planned (so `weir check` loads
//! it): it reads the node's file and `params:`, checks that it can run on the node's
//! `device` in its `dtype` (a [`PlacementError`](weir_operators::kernel::device::PlacementError)
//! if not, reported at that key), and returns a
//! [`LoadedKernel`]: a description, a factory that builds each replica's kernel, and the
//! model's [`Signature`](weir_operators::kernel::signature::Signature) (its named inputs and
//! outputs with their types), against which the plan checks the node's wiring.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use weir_operators::kernel::device::{DeviceSpec, Precision};
use weir_operators::kernel::signature::LoadedKernel;
use weir_operators::kernel::trees::TreeFormat;

/// Why a format could not load a node's model: its own error, shown with the node and
/// the `format` field of the graph file.
pub type FormatError = Box<dyn std::error::Error + Send + Sync>;

/// What a format is given to load one node's model.
#[derive(Debug)]
pub struct FormatArgs<'a> {
    /// The node's name.
    pub node: &'a str,
    /// The node's `path:`, joined to the graph file's directory, if it has one.
    pub path: Option<PathBuf>,
    /// The graph file's directory: files named in `params:` are relative to it
    /// ([`FormatArgs::file_in_graph_dir`]).
    pub base_dir: &'a Path,
    /// The node's `params:` (`Null` when absent); a kernel deserializes its own
    /// parameters from it (`serde_yaml::from_value`).
    pub params: &'a serde_yaml::Value,
    /// Where the node's forward passes run: a format that computes on the CPU only
    /// refuses a GPU ([`DeviceSpec::cpu_only`]), one that runs there opens it with
    /// [`DeviceSpec::candle`] when it loads (so `weir check` fails on a missing GPU).
    pub device: DeviceSpec,
    /// The precision the node asks for (`dtype:`): a format that computes in fixed
    /// types refuses anything but f32 ([`Precision::f32_only`]).
    pub dtype: Precision,
}

impl FormatArgs<'_> {
    /// The node's model file, or an error saying that `format` needs `path:`.
    pub fn file(&self, format: &str) -> Result<&Path, FormatError> {
        self.path.as_deref().ok_or_else(|| format!("format '{format}' reads a model file: give it with 'path:'").into())
    }

    /// The node's `params:` as a `T` (a `serde` type of the kernel's), or the
    /// deserializer's error (an unknown or missing key, a wrong type).
    pub fn params<T: serde::de::DeserializeOwned>(&self) -> Result<T, FormatError> {
        serde_yaml::from_value(self.params.clone()).map_err(|e| format!("params: {e}").into())
    }

    /// `path` (from `params:`) relative to the graph file's directory.
    pub fn file_in_graph_dir(&self, path: &Path) -> PathBuf {
        self.base_dir.join(path)
    }

    /// An error if the node has `params:` (for formats that take none).
    pub fn no_params(&self, format: &str) -> Result<(), FormatError> {
        match self.params {
            serde_yaml::Value::Null => Ok(()),
            _ => Err(format!("format '{format}' takes no 'params:'").into()),
        }
    }
}

/// A model format or custom kernel, known to graphs by name.
pub trait ModelFormat: Send + Sync {
    /// Loads the model of one node, or says why it cannot.
    fn load(&self, args: &FormatArgs<'_>) -> Result<LoadedKernel, FormatError>;
}

impl<F> ModelFormat for F
where
    F: Fn(&FormatArgs<'_>) -> Result<LoadedKernel, FormatError> + Send + Sync,
{
    fn load(&self, args: &FormatArgs<'_>) -> Result<LoadedKernel, FormatError> {
        self(args)
    }
}

/// The format of ONNX files ([`weir_operators::kernel::onnx`]): `path:` is the model
/// file; no `params:`.
fn onnx(args: &FormatArgs<'_>) -> Result<LoadedKernel, FormatError> {
    args.no_params("onnx")?;
    // Placement first, as its own error, so that it is reported at its key.
    weir_operators::kernel::onnx::check_placement(args.device, args.dtype)?;
    Ok(weir_operators::kernel::onnx::load(args.file("onnx")?, args.device, args.dtype)?)
}

/// The format of tree-ensemble files of `format` ([`weir_operators::kernel::trees`]):
/// `path:` is the model file; no `params:`.
fn trees(format: TreeFormat) -> impl ModelFormat {
    move |args: &FormatArgs<'_>| -> Result<LoadedKernel, FormatError> {
        args.no_params(format.name())?;
        args.device.cpu_only("tree ensembles")?;
        args.dtype.f32_only("a tree ensemble", "its thresholds and leaf values are f32")?;
        Ok(weir_operators::kernel::trees::load(format, args.file(format.name())?)?)
    }
}

/// Model formats and custom kernels by name.
#[derive(Clone, Default)]
pub struct Kernels {
    formats: BTreeMap<String, Arc<dyn ModelFormat>>,
}

impl fmt::Debug for Kernels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.formats.keys()).finish()
    }
}

impl Kernels {
    /// No format at all.
    pub fn empty() -> Kernels {
        Kernels::default()
    }

    /// weir's own formats: `onnx`, `xgboost`, `lightgbm`.
    pub fn builtin() -> Kernels {
        Kernels::empty()
            .with("onnx", onnx)
            .with("xgboost", trees(TreeFormat::XGBoost))
            .with("lightgbm", trees(TreeFormat::LightGBM))
    }

    /// The registry with `format` known as `name` (replacing a format of that name).
    pub fn with(mut self, name: &str, format: impl ModelFormat + 'static) -> Kernels {
        self.formats.insert(name.to_string(), Arc::new(format));
        self
    }

    /// The format called `name`.
    pub fn get(&self, name: &str) -> Option<&dyn ModelFormat> {
        self.formats.get(name).map(|f| &**f)
    }

    /// Every name known, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.formats.keys().map(String::as_str).collect()
    }
}
