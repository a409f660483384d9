//! What crosses the crate's boundary: the declared inputs and outputs of a model
//! ([`TensorSpec`], [`ElemType`], [`Dim`]) and the host tensors a batch is made of
//! ([`HostTensor`]).

/// An element type weir-onnx runs. Other ONNX types (float16, uint8, ...) are an error at load
/// naming the type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElemType {
    /// 32-bit float (`tensor(float)`).
    F32,
    /// 64-bit float (`tensor(double)`).
    F64,
    /// 64-bit signed integer (`tensor(int64)`).
    I64,
    /// 32-bit signed integer (`tensor(int32)`).
    I32,
    /// Boolean (`tensor(bool)`).
    Bool,
    /// UTF-8 string (`tensor(string)`).
    Str,
}

impl ElemType {
    /// The element type of an ONNX `TensorProto.DataType` code, or `None` for the types this
    /// crate does not run.
    pub fn from_onnx(code: i32) -> Option<Self> {
        match code {
            1 => Some(Self::F32),
            11 => Some(Self::F64),
            7 => Some(Self::I64),
            6 => Some(Self::I32),
            9 => Some(Self::Bool),
            8 => Some(Self::Str),
            _ => None,
        }
    }

    /// The ONNX name of an ONNX `DataType` code (`float16`, `uint8`...), for error messages.
    pub fn onnx_name(code: i32) -> &'static str {
        match code {
            0 => "undefined",
            1 => "float",
            2 => "uint8",
            3 => "int8",
            4 => "uint16",
            5 => "int16",
            6 => "int32",
            7 => "int64",
            8 => "string",
            9 => "bool",
            10 => "float16",
            11 => "double",
            12 => "uint32",
            13 => "uint64",
            14 => "complex64",
            15 => "complex128",
            16 => "bfloat16",
            _ => "another type",
        }
    }
}

/// One dimension of a declared shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    /// A fixed size.
    Fixed(usize),
    /// A size known only per batch (the batch dimension), with its symbolic name if the model
    /// gives one (`N`, `batch_size`).
    Dynamic(Option<String>),
}

/// A declared graph input or output: name, element type and shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// The ONNX value's name.
    pub name: String,
    /// Its element type.
    pub elem: ElemType,
    /// Its shape; empty when the model declares none (then any rank is accepted).
    pub shape: Vec<Dim>,
}

/// A tensor on the host, row-major, as a batch's inputs and outputs.
#[derive(Debug, Clone, PartialEq)]
pub enum HostTensor {
    /// 32-bit floats.
    F32 {
        /// The dimensions.
        shape: Vec<usize>,
        /// The elements, row-major.
        data: Vec<f32>,
    },
    /// 64-bit floats.
    F64 {
        /// The dimensions.
        shape: Vec<usize>,
        /// The elements, row-major.
        data: Vec<f64>,
    },
    /// 64-bit integers.
    I64 {
        /// The dimensions.
        shape: Vec<usize>,
        /// The elements, row-major.
        data: Vec<i64>,
    },
    /// 32-bit integers.
    I32 {
        /// The dimensions.
        shape: Vec<usize>,
        /// The elements, row-major.
        data: Vec<i32>,
    },
    /// Booleans.
    Bool {
        /// The dimensions.
        shape: Vec<usize>,
        /// The elements, row-major.
        data: Vec<bool>,
    },
    /// Strings.
    Str {
        /// The dimensions.
        shape: Vec<usize>,
        /// The elements, row-major.
        data: Vec<String>,
    },
}

impl HostTensor {
    /// The tensor's dimensions.
    pub fn shape(&self) -> &[usize] {
        match self {
            Self::F32 { shape, .. }
            | Self::F64 { shape, .. }
            | Self::I64 { shape, .. }
            | Self::I32 { shape, .. }
            | Self::Bool { shape, .. }
            | Self::Str { shape, .. } => shape,
        }
    }

    /// The tensor's element type.
    pub fn elem(&self) -> ElemType {
        match self {
            Self::F32 { .. } => ElemType::F32,
            Self::F64 { .. } => ElemType::F64,
            Self::I64 { .. } => ElemType::I64,
            Self::I32 { .. } => ElemType::I32,
            Self::Bool { .. } => ElemType::Bool,
            Self::Str { .. } => ElemType::Str,
        }
    }

    /// The number of elements its data holds.
    pub fn len(&self) -> usize {
        match self {
            Self::F32 { data, .. } => data.len(),
            Self::F64 { data, .. } => data.len(),
            Self::I64 { data, .. } => data.len(),
            Self::I32 { data, .. } => data.len(),
            Self::Bool { data, .. } => data.len(),
            Self::Str { data, .. } => data.len(),
        }
    }

    /// Whether it holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
