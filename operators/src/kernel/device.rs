//! Where a node's forward passes run, in which precision, and how replicas on one GPU
//! share it.
//!
//! A graph names a device per model or embed node (`device: cpu` or `cuda:N`) and a
//! precision (`dtype: f32`, `bf16` or `f16`). CUDA devices need weir built with the
//! `cuda` feature (`scripts/build-cuda`); without it, a graph that names one fails
//! `weir check` at the node's `device` key.
//!
//! Each CUDA device is opened once per process ([`DeviceSpec::candle`]): every replica
//! of every node on `cuda:N` gets the same candle device (one context, one cuBLAS
//! handle), and each replica thread launches its work on its own per-thread stream,
//! so replicas overlap on the GPU without a lock around forward passes. A model's
//! weights are loaded onto a GPU once and shared by the replicas there
//! ([`OncePerDevice`]); on the CPU each replica owns its copy, as before.

use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};

use candle_core::Device;

/// A compute device named in a graph: `cpu`, or `cuda:N` (which needs weir built with the
/// `cuda` feature).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DeviceSpec {
    /// CPU threads (the default).
    #[default]
    Cpu,
    /// The CUDA device with this ordinal.
    Cuda(usize),
}

/// Why a node cannot run where, or in the precision, its graph says. The graph author's
/// fault (or the machine's, for a GPU that is absent): reported at the node's `device` or
/// `dtype` key ([`PlacementError::key`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// A CUDA device in a build without the `cuda` feature.
    #[error("device {device} needs weir built with the 'cuda' feature (scripts/build-cuda); this build has CPU only")]
    NotBuilt {
        /// The device.
        device: DeviceSpec,
    },
    /// The device could not be opened: no GPU, no driver, an ordinal beyond the GPUs
    /// present.
    #[error("device {device} cannot be opened: {reason}")]
    Unavailable {
        /// The device.
        device: DeviceSpec,
        /// What CUDA said.
        reason: String,
    },
    /// A model kind that computes on the CPU only was given a GPU.
    #[error("{what} run on the CPU only: remove 'device: {device}'")]
    CpuOnly {
        /// The kind (e.g. `tree ensembles`).
        what: &'static str,
        /// The device it was given.
        device: DeviceSpec,
    },
    /// A model kind that computes in its own types was given a `dtype`.
    #[error("'dtype: {dtype}' does not apply to {what}: {why}")]
    FixedPrecision {
        /// The kind.
        what: &'static str,
        /// The precision it was given.
        dtype: Precision,
        /// What it computes in instead.
        why: &'static str,
    },
}

impl PlacementError {
    /// The node key at fault: `device` or `dtype`.
    pub fn key(&self) -> &'static str {
        match self {
            PlacementError::FixedPrecision { .. } => "dtype",
            _ => "device",
        }
    }
}

/// The CUDA devices this process has opened, by ordinal.
static OPENED: Mutex<Vec<(usize, Device)>> = Mutex::new(Vec::new());

impl DeviceSpec {
    /// The candle device, opened on first use: every call for `cuda:N` returns the same
    /// device (see the module docs).
    pub fn candle(self) -> Result<Device, PlacementError> {
        let DeviceSpec::Cuda(n) = self else { return Ok(Device::Cpu) };
        if !candle_core::utils::cuda_is_available() {
            return Err(PlacementError::NotBuilt { device: self });
        }
        let mut opened = OPENED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, device)) = opened.iter().find(|(ordinal, _)| *ordinal == n) {
            return Ok(device.clone());
        }
        let device =
            Device::new_cuda(n).map_err(|e| PlacementError::Unavailable { device: self, reason: e.to_string() })?;
        opened.push((n, device.clone()));
        Ok(device)
    }

    /// Refuses a GPU for a model kind that computes on the CPU only (`what`).
    pub fn cpu_only(self, what: &'static str) -> Result<(), PlacementError> {
        match self {
            DeviceSpec::Cpu => Ok(()),
            DeviceSpec::Cuda(_) => Err(PlacementError::CpuOnly { what, device: self }),
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "cpu" {
            return Ok(DeviceSpec::Cpu);
        }
        if let Some(n) = s.strip_prefix("cuda:") {
            return n
                .parse()
                .map(DeviceSpec::Cuda)
                .map_err(|_| format!("device '{s}': 'cuda:' must be followed by a device number"));
        }
        Err(format!("unknown device '{s}' (expected 'cpu' or 'cuda:N')"))
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// The precision a model's weights are held and its forward passes computed in (a
/// node's `dtype:`). Inputs arrive as f32 and are cast on the device; outputs are cast
/// back to f32, and sums that need the range (an embedding's pooling and norm) are
/// taken in f32.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    /// 32-bit floats (the default).
    #[default]
    F32,
    /// bfloat16: f32's range, 8 bits of mantissa; what GPUs' tensor cores run fastest.
    Bf16,
    /// IEEE half precision: 11 bits of mantissa, values up to 65504.
    F16,
}

impl Precision {
    /// The candle dtype.
    pub fn candle(self) -> candle_core::DType {
        match self {
            Precision::F32 => candle_core::DType::F32,
            Precision::Bf16 => candle_core::DType::BF16,
            Precision::F16 => candle_core::DType::F16,
        }
    }

    /// Refuses anything but f32 for a model kind that computes in its own types (`what`,
    /// and `why`: what it computes in instead).
    pub fn f32_only(self, what: &'static str, why: &'static str) -> Result<(), PlacementError> {
        match self {
            Precision::F32 => Ok(()),
            dtype => Err(PlacementError::FixedPrecision { what, dtype, why }),
        }
    }
}

impl FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "f32" | "float32" => Ok(Precision::F32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            "f16" | "float16" => Ok(Precision::F16),
            other => Err(format!("unknown dtype '{other}' (expected f32, bf16 or f16)")),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        })
    }
}

/// A model instance built once per GPU and shared by the replicas there: the first
/// replica on a CUDA device builds it (weights copied to the device once), the others
/// clone it (candle tensors are shared, not copied). On the CPU every replica builds
/// its own, so each replica thread owns its weights.
pub struct OncePerDevice<T> {
    kept: Mutex<Vec<(usize, T)>>,
}

impl<T> Default for OncePerDevice<T> {
    fn default() -> Self {
        OncePerDevice { kept: Mutex::new(Vec::new()) }
    }
}

impl<T: Clone> OncePerDevice<T> {
    /// The instance for `device`: built by `build` on the CPU or for a GPU's first
    /// replica, else the GPU's kept one. A failed build is not kept (the next replica
    /// tries again).
    pub fn get<E>(&self, device: DeviceSpec, build: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let DeviceSpec::Cuda(n) = device else { return build() };
        // Held while building: the replicas of one node wait for the first to copy the
        // weights instead of each copying its own.
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, instance)) = kept.iter().find(|(ordinal, _)| *ordinal == n) {
            return Ok(instance.clone());
        }
        let instance = build()?;
        kept.push((n, instance.clone()));
        Ok(instance)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices() {
        assert_eq!("cpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!("cuda:1".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(1));
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
        assert!("tpu".parse::<DeviceSpec>().unwrap_err().contains("unknown device"));
    }

    #[test]
    fn parses_precisions() {
        assert_eq!("bf16".parse::<Precision>().unwrap(), Precision::Bf16);
        assert_eq!("float16".parse::<Precision>().unwrap(), Precision::F16);
        assert_eq!(Precision::default().to_string(), "f32");
        assert!("f8".parse::<Precision>().unwrap_err().contains("expected f32, bf16 or f16"));
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn a_gpu_without_the_cuda_build_says_how_to_get_one() {
        let err = DeviceSpec::Cuda(0).candle().unwrap_err();
        assert_eq!(err, PlacementError::NotBuilt { device: DeviceSpec::Cuda(0) });
        assert!(err.to_string().contains("scripts/build-cuda"), "{err}");
    }

    #[test]
    fn the_cpu_builds_per_replica_a_gpu_once() {
        let once = OncePerDevice::default();
        let mut builds = 0;
        for _ in 0..3 {
            once.get(DeviceSpec::Cpu, || -> Result<u32, ()> {
                builds += 1;
                Ok(builds)
            })
            .unwrap();
        }
        assert_eq!(builds, 3);
        // A failed build is not kept.
        assert_eq!(once.get(DeviceSpec::Cuda(7), || Err::<u32, &str>("out of memory")), Err("out of memory"));
        let first = once.get(DeviceSpec::Cuda(7), || Ok::<u32, ()>(10)).unwrap();
        let second = once.get(DeviceSpec::Cuda(7), || Ok::<u32, ()>(20)).unwrap();
        assert_eq!((first, second), (10, 10));
        assert_eq!(once.get(DeviceSpec::Cuda(1), || Ok::<u32, ()>(30)).unwrap(), 30);
    }
}
