//! Feedback: the labels a graph's learning node learns from.
//!
//! A feedback row names the prediction it labels by the node's key field
//! (`learn.key`), whose features the learner kept, or carries its own features; and
//! gives the class. [`Feedback`] holds rows by column, checked against the graph's
//! [`FeedbackKinds`]; [`crate::GraphHandle::submit_feedback`] sends them into the
//! graph's feedback stream. What the learner could not use (an unknown or expired key, a
//! label that is not a class) is counted in the node's `LearnStats`, not refused here:
//! whether a key is known is only decided inside the dataflow.

use weir_operators::{Column, DType, FieldType, Value};

use crate::plan::{Step, StepOp};

/// What feedback for a graph looks like: its learning node's key type, input width and
/// classes.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedbackKinds {
    /// The key field's type (`i64` or `str`), if feedback names predictions by key.
    pub key: Option<FieldType>,
    /// The type of the features (the node's input).
    pub features: FieldType,
    /// The node's classes: labels are `0..classes`.
    pub classes: usize,
}

impl FeedbackKinds {
    /// The kinds of the learning step `step` of `plan`.
    pub(crate) fn of(step: &Step) -> Option<FeedbackKinds> {
        let StepOp::Learn { input, key, spec, .. } = &step.op else { return None };
        let schema = |i: usize| -> Option<FieldType> {
            // A learning step reads one stream; its schema extends it, so an input index
            // is also an index into the step's own schema.
            step.schema.fields.get(i).map(|(_, t)| t.clone())
        };
        Some(FeedbackKinds { key: key.and_then(schema), features: schema(*input)?, classes: spec.classes })
    }

    /// The input width.
    pub fn width(&self) -> usize {
        self.features.width().unwrap_or(1)
    }
}

/// Feedback rows, by column: `[key, label, features, has_features]`, as the graph's
/// feedback stream carries them.
#[derive(Clone, Debug)]
pub struct Feedback {
    keys: Column,
    labels: Vec<i64>,
    features: Column,
    has_features: Vec<bool>,
    key_type: FieldType,
    feature_type: FieldType,
    keyed: bool,
}

impl Feedback {
    /// No rows yet, for a graph whose feedback looks like `kinds`.
    pub fn new(kinds: &FeedbackKinds) -> Feedback {
        let key_type = kinds.key.clone().unwrap_or(FieldType::scalar(DType::I64));
        Feedback {
            keys: Column::with_capacity(&key_type, 0),
            labels: Vec::new(),
            features: Column::with_capacity(&kinds.features, 0),
            has_features: Vec::new(),
            key_type,
            feature_type: kinds.features.clone(),
            keyed: kinds.key.is_some(),
        }
    }

    /// Adds a row: the key of the prediction it labels and/or its own features, and
    /// its label. Fails, saying why, if the key or features do not fit the graph, or
    /// the row has neither.
    pub fn push(&mut self, key: Option<&Value>, label: i64, features: Option<&Value>) -> Result<(), String> {
        match key {
            Some(k) if !self.keyed => {
                return Err(format!(
                    "the graph's learning node has no 'learn.key', so feedback carries its features; got key {}",
                    k.type_name()
                ))
            }
            Some(k) if !k.conforms_to(&self.key_type) => {
                return Err(format!("the key is {}, expected {}", k.type_name(), self.key_type))
            }
            None if features.is_none() => {
                return Err(if self.keyed {
                    "feedback needs 'key' (the prediction it labels) or 'features'".into()
                } else {
                    "feedback needs 'features' (the graph's learning node has no key)".into()
                })
            }
            _ => {}
        }
        if let Some(f) = features {
            if !f.conforms_to(&self.feature_type) {
                return Err(format!("the features are {}, expected {}", f.type_name(), self.feature_type));
            }
        }
        match key {
            Some(k) => {
                self.keys.push(k);
            }
            None => self.keys.push_fillers(1),
        }
        match features {
            Some(f) => {
                self.features.push(f);
            }
            None => self.features.push_fillers(1),
        }
        self.has_features.push(features.is_some());
        self.labels.push(label);
        Ok(())
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The columns of the feedback stream.
    pub(crate) fn into_columns(self) -> Vec<Column> {
        vec![self.keys, Column::I64(self.labels), self.features, Column::Bool(self.has_features)]
    }
}
