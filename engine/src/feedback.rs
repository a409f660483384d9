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

    /// Adds a row per label in `labels`, the `i`th labelling the prediction whose key
    /// is row `from + i` of `keys`: as many [`Feedback::push`]es with a key, column by
    /// column. Fails, saying why, if the graph takes no key or `keys` does not fit it.
    pub fn extend_by_key(&mut self, keys: &Column, from: usize, labels: &[i64]) -> Result<(), String> {
        if !self.keyed {
            return Err("the graph's learning node has no 'learn.key', so feedback carries its features".into());
        }
        let n = self.check(keys, &self.key_type, "keys", from, labels.len())?;
        self.keys.extend_range(keys, from, n);
        self.features.push_fillers(n);
        self.has_features.resize(self.has_features.len() + n, false);
        self.labels.extend_from_slice(labels);
        Ok(())
    }

    /// Adds a row per label in `labels`, the `i`th with row `from + i` of `features` as
    /// its own features: as many [`Feedback::push`]es with features and no key.
    pub fn extend_with_features(&mut self, features: &Column, from: usize, labels: &[i64]) -> Result<(), String> {
        let n = self.check(features, &self.feature_type, "features", from, labels.len())?;
        self.keys.push_fillers(n);
        self.features.extend_range(features, from, n);
        self.has_features.resize(self.has_features.len() + n, true);
        self.labels.extend_from_slice(labels);
        Ok(())
    }

    /// `n` if `column` is of type `ty` and has rows `from..from + n`.
    fn check(&self, column: &Column, ty: &FieldType, what: &str, from: usize, n: usize) -> Result<usize, String> {
        if !column.fits(ty) {
            return Err(format!("the {what} are {}, expected {ty}", column.type_name()));
        }
        if from + n > column.len() {
            return Err(format!("the {what} have {} rows, not rows {from}..{}", column.len(), from + n));
        }
        Ok(n)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(keyed: bool) -> FeedbackKinds {
        FeedbackKinds {
            key: keyed.then(|| FieldType::scalar(DType::I64)),
            features: FieldType::scalar(DType::F32),
            classes: 2,
        }
    }

    #[test]
    fn rows_added_by_column_are_the_rows_pushed_one_by_one() {
        let keys = Column::I64(vec![10, 11, 12, 13]);
        let mut by_column = Feedback::new(&kinds(true));
        by_column.extend_by_key(&keys, 1, &[1, 0]).expect("keys fit");
        let mut by_row = Feedback::new(&kinds(true));
        by_row.push(Some(&Value::I64(11)), 1, None).expect("a key");
        by_row.push(Some(&Value::I64(12)), 0, None).expect("a key");
        assert_eq!(by_column.into_columns(), by_row.into_columns());

        let features = Column::F32(vec![0.5, 0.25]);
        let mut by_column = Feedback::new(&kinds(false));
        by_column.extend_with_features(&features, 0, &[0, 1]).expect("features fit");
        let mut by_row = Feedback::new(&kinds(false));
        by_row.push(None, 0, Some(&Value::F32(0.5))).expect("features");
        by_row.push(None, 1, Some(&Value::F32(0.25))).expect("features");
        assert_eq!(by_column.into_columns(), by_row.into_columns());
    }

    #[test]
    fn a_column_that_does_not_fit_is_refused_naming_it() {
        let mut f = Feedback::new(&kinds(true));
        let err = f.extend_by_key(&Column::F32(vec![1.0]), 0, &[1]).expect_err("f32 keys");
        assert!(err.contains("keys are f32, expected i64"), "{err}");
        let err = f.extend_by_key(&Column::I64(vec![1]), 0, &[1, 0]).expect_err("too few rows");
        assert!(err.contains("1 rows, not rows 0..2"), "{err}");
        let err = Feedback::new(&kinds(false)).extend_by_key(&Column::I64(vec![1]), 0, &[1]).expect_err("no key");
        assert!(err.contains("no 'learn.key'"), "{err}");
        assert!(f.is_empty(), "nothing added by a refused call");
    }
}
