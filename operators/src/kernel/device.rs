//! Where a node's forward passes run.

use std::fmt;
use std::str::FromStr;

use super::KernelError;

/// A compute device named in a graph: `cpu`, or `cuda:N` (which needs weir built with the
/// `cuda` feature; without it, loading a model there fails with a clear error).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DeviceSpec {
    /// CPU threads (the default).
    #[default]
    Cpu,
    /// The CUDA device with this ordinal.
    Cuda(usize),
}

impl DeviceSpec {
    /// The candle device. Fails for CUDA when candle was built without CUDA support.
    pub fn candle(self) -> Result<candle_core::Device, KernelError> {
        match self {
            DeviceSpec::Cpu => Ok(candle_core::Device::Cpu),
            DeviceSpec::Cuda(n) => candle_core::Device::new_cuda(n)
                .map_err(|source| KernelError::DeviceUnavailable { device: self, source }),
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
}
