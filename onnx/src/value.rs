//! [`Value`]: what flows between the steps of a plan, a candle tensor or a string tensor.
//!
//! Booleans are candle `u8` tensors (0 or 1); strings, which candle has no type for, are a
//! host-side vector with a shape. The element type is read from the candle dtype.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};

use crate::error::KernelError;
use crate::tensor::{ElemType, HostTensor};

/// A value in a plan's slot.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    /// A numeric or boolean tensor (booleans as `u8`).
    Tensor(Tensor),
    /// A string tensor, row-major, on the host.
    Str {
        /// The dimensions.
        shape: Vec<usize>,
        /// The elements.
        data: Arc<[String]>,
    },
}

impl Value {
    /// The value's dimensions.
    pub(crate) fn shape(&self) -> &[usize] {
        match self {
            Self::Tensor(t) => t.dims(),
            Self::Str { shape, .. } => shape,
        }
    }

    /// The candle tensor, or an error naming input `index` when the value holds strings.
    pub(crate) fn tensor(&self, index: usize) -> Result<&Tensor, KernelError> {
        match self {
            Self::Tensor(t) => Ok(t),
            Self::Str { .. } => Err(KernelError::input(index, "a string tensor where numbers are needed")),
        }
    }

    /// The value as a host tensor.
    pub(crate) fn to_host(&self) -> Result<HostTensor, KernelError> {
        let t = match self {
            Self::Str { shape, data } => return Ok(HostTensor::Str { shape: shape.clone(), data: data.to_vec() }),
            Self::Tensor(t) => t,
        };
        let shape = t.dims().to_vec();
        let flat = t.flatten_all()?;
        Ok(match t.dtype() {
            DType::F32 => HostTensor::F32 { shape, data: flat.to_vec1()? },
            DType::F64 => HostTensor::F64 { shape, data: flat.to_vec1()? },
            DType::I64 => HostTensor::I64 { shape, data: flat.to_vec1()? },
            DType::I32 => HostTensor::I32 { shape, data: flat.to_vec1()? },
            DType::U8 => HostTensor::Bool { shape, data: flat.to_vec1::<u8>()?.into_iter().map(|b| b != 0).collect() },
            other => {
                return Err(KernelError::input(
                    0,
                    format!("an output of dtype {other:?}, which weir-onnx does not return"),
                ))
            }
        })
    }

    /// A host tensor as a value on `device`; `Err` when its data does not fill its shape.
    pub(crate) fn from_host(host: HostTensor, device: &Device) -> Result<Self, candle_core::Error> {
        Ok(match host {
            HostTensor::F32 { shape, data } => Self::Tensor(Tensor::from_vec(data, shape, device)?),
            HostTensor::F64 { shape, data } => Self::Tensor(Tensor::from_vec(data, shape, device)?),
            HostTensor::I64 { shape, data } => Self::Tensor(Tensor::from_vec(data, shape, device)?),
            HostTensor::I32 { shape, data } => Self::Tensor(Tensor::from_vec(data, shape, device)?),
            HostTensor::Bool { shape, data } => {
                let bytes: Vec<u8> = data.into_iter().map(u8::from).collect();
                Self::Tensor(Tensor::from_vec(bytes, shape, device)?)
            }
            HostTensor::Str { shape, data } => Self::Str { shape, data: data.into() },
        })
    }

    /// The same value on `device` (strings stay on the host).
    pub(crate) fn to_device(&self, device: &Device) -> Result<Self, candle_core::Error> {
        Ok(match self {
            Self::Tensor(t) => Self::Tensor(t.to_device(device)?),
            Self::Str { .. } => self.clone(),
        })
    }
}

/// The candle dtype that holds an element type (`None` for strings).
pub(crate) fn dtype_of(elem: ElemType) -> Option<DType> {
    match elem {
        ElemType::F32 => Some(DType::F32),
        ElemType::F64 => Some(DType::F64),
        ElemType::I64 => Some(DType::I64),
        ElemType::I32 => Some(DType::I32),
        ElemType::Bool => Some(DType::U8),
        ElemType::Str => None,
    }
}
