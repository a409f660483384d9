//! The batching and placement keys of every node kind that batches (`model`, `embed`),
//! declared and resolved once: `max_batch_size`, `max_wait_ms`, `replicas`, `device` and
//! `dtype`, each optional.
//!
//! A kind's file struct takes them through [`node_file_with_batching!`], which writes
//! the five keys into the struct where it says `..batching`, as if they were declared
//! there. `#[serde(flatten)]` would be shorter but changes what users read: serde then
//! reports an unknown key without the list of the keys it expected, and only after any
//! missing key. Range checks are the plan's (`plan/resolve/model.rs`), since the
//! builder API sets batching too.

use crate::spec::Batching;

use super::{parse_enum, NodeResult};

/// A node's batching keys, as given in the file (`None`: absent).
pub(super) struct BatchingFile {
    /// `max_batch_size`.
    pub(super) max_batch_size: Option<usize>,
    /// `max_wait_ms`.
    pub(super) max_wait_ms: Option<u64>,
    /// `replicas`.
    pub(super) replicas: Option<usize>,
    /// `device`: `cpu` or `cuda:N`.
    pub(super) device: Option<String>,
    /// `dtype`: `f32`, `bf16` or `f16`.
    pub(super) dtype: Option<String>,
}

impl BatchingFile {
    /// Each key's name and whether it is given, in the order the keys are declared.
    pub(super) fn given(&self) -> [(&'static str, bool); 5] {
        [
            ("max_batch_size", self.max_batch_size.is_some()),
            ("max_wait_ms", self.max_wait_ms.is_some()),
            ("replicas", self.replicas.is_some()),
            ("device", self.device.is_some()),
            ("dtype", self.dtype.is_some()),
        ]
    }

    /// The plan's batching settings: each key as given, else as in `defaults`; an
    /// unknown device or dtype is an error at its key.
    pub(super) fn resolve(self, defaults: Batching) -> NodeResult<Batching> {
        Ok(Batching {
            max_batch_size: self.max_batch_size.unwrap_or(defaults.max_batch_size),
            max_wait_ms: self.max_wait_ms.or(defaults.max_wait_ms),
            replicas: self.replicas.unwrap_or(defaults.replicas),
            device: match self.device {
                Some(d) => parse_enum(&d, "device")?,
                None => defaults.device,
            },
            dtype: match self.dtype {
                Some(d) => parse_enum(&d, "dtype")?,
                None => defaults.dtype,
            },
        })
    }
}

/// Declares a node kind's file struct with the batching keys among its fields: they
/// take the place of `..batching` (so serde lists them there among the expected keys),
/// and `fn batching(&self) -> BatchingFile` returns them.
macro_rules! node_file_with_batching {
    (
        $(#[$attr:meta])*
        $vis:vis struct $name:ident {
            $($(#[$before_attr:meta])* $before:ident: $before_ty:ty,)*
            ..batching,
            $($(#[$after_attr:meta])* $after:ident: $after_ty:ty,)*
        }
    ) => {
        $(#[$attr])*
        $vis struct $name {
            $($(#[$before_attr])* $before: $before_ty,)*
            #[serde(default)]
            max_batch_size: Option<usize>,
            #[serde(default)]
            max_wait_ms: Option<u64>,
            #[serde(default)]
            replicas: Option<usize>,
            #[serde(default)]
            device: Option<String>,
            #[serde(default)]
            dtype: Option<String>,
            $($(#[$after_attr])* $after: $after_ty,)*
        }

        impl $name {
            /// The node's batching keys, as given.
            fn batching(&self) -> $crate::yaml::batching::BatchingFile {
                $crate::yaml::batching::BatchingFile {
                    max_batch_size: self.max_batch_size,
                    max_wait_ms: self.max_wait_ms,
                    replicas: self.replicas,
                    device: self.device.clone(),
                    dtype: self.dtype.clone(),
                }
            }
        }
    };
}
pub(super) use node_file_with_batching;

#[cfg(test)]
mod tests {
    use weir_operators::kernel::device::{DeviceSpec, Precision};

    use crate::spec::{Batching, GraphSpec, NodeKind};

    fn parse(node: &str) -> Result<GraphSpec, String> {
        let text = format!("name: t\ninputs:\n  a: f32\nnodes:\n  m:\n{node}outputs:\n  y: m.y\n");
        crate::yaml::parse(&text, "t.yaml", std::path::PathBuf::new()).map_err(|e| e.to_string())
    }

    fn batching(node: &str) -> Batching {
        match parse(node).map(|spec| spec.nodes[0].kind.clone()) {
            Ok(NodeKind::Model(m)) => m.batching,
            other => panic!("expected a model node, got {other:?}"),
        }
    }

    /// The batching keys stand where they always stood among the expected keys.
    #[test]
    fn an_unknown_key_lists_the_batching_keys_in_place() {
        let model =
            "    kind: model\n    arch: linear\n    weights: w.safetensors\n    input: input.a\n    max_batch: 4\n";
        assert_eq!(
            parse(model).err().as_deref(),
            Some(
                "t.yaml: node 'm': unknown field `max_batch`, expected one of `arch`, `format`, `path`, `params`, \
                 `weights`, `input`, `inputs`, `output`, `outputs`, `layers`, `activation`, `output_activation`, \
                 `max_batch_size`, `max_wait_ms`, `replicas`, `device`, `dtype`, `learn`"
            )
        );
        let embed = "    kind: embed\n    model: dir\n    input: input.a\n    foo: 1\n";
        assert_eq!(
            parse(embed).err().as_deref(),
            Some(
                "t.yaml: node 'm': unknown field `foo`, expected one of `model`, `input`, `output`, `max_length`, \
                 `normalize`, `max_batch_size`, `max_wait_ms`, `replicas`, `device`, `dtype`"
            )
        );
    }

    #[test]
    fn keys_given_override_the_kinds_defaults() {
        let model = "    kind: model\n    arch: linear\n    weights: w.safetensors\n    input: input.a\n";
        assert_eq!(batching(model), Batching::default());
        let embed = "    kind: embed\n    model: dir\n    input: input.a\n";
        assert_eq!(batching(embed), Batching::default());
        let given = "    max_batch_size: 7\n    max_wait_ms: 9\n    replicas: 3\n    device: cuda:1\n    dtype: bf16\n";
        let expected = Batching {
            max_batch_size: 7,
            max_wait_ms: Some(9),
            replicas: 3,
            device: DeviceSpec::Cuda(1),
            dtype: Precision::Bf16,
        };
        assert_eq!(batching(&format!("{model}{given}")), expected);
        assert_eq!(batching(&format!("{embed}{given}")), expected);
    }

    #[test]
    fn an_unknown_device_is_an_error_at_its_key() {
        let embed = "    kind: embed\n    model: dir\n    input: input.a\n    device: tpu\n";
        assert_eq!(
            parse(embed).err().as_deref(),
            Some("t.yaml: node 'm', field 'device': invalid option: unknown device 'tpu' (expected 'cpu' or 'cuda:N')")
        );
        let model =
            "    kind: model\n    arch: linear\n    weights: w.safetensors\n    input: input.a\n    dtype: f8\n";
        assert_eq!(
            parse(model).err().as_deref(),
            Some("t.yaml: node 'm', field 'dtype': invalid option: unknown dtype 'f8' (expected f32, bf16 or f16)")
        );
    }
}
