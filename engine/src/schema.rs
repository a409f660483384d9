//! [`GraphSchema`]: what a graph takes and gives, as its clients see it.
//!
//! Connectors (HTTP, Kafka, replay) decode requests into a graph's input fields and
//! encode its output fields; this is all they need to know of the graph. The schema
//! also checks submitted rows and columns against the inputs, naming the field that
//! does not fit.

use weir_operators::{Column, FieldType, Value};

use crate::plan::Plan;
use crate::replies::MAX_BATCH_ROWS;
use crate::submit::SubmitError;

/// A named, typed field of a graph's inputs or outputs.
#[derive(Clone, Debug, PartialEq)]
pub struct GraphField {
    /// The field's name.
    pub name: String,
    /// Its type.
    pub ty: FieldType,
}

impl GraphField {
    /// The field `name` of type `ty`.
    pub fn new(name: &str, ty: &FieldType) -> GraphField {
        GraphField { name: name.to_string(), ty: ty.clone() }
    }
}

/// A graph's name, input fields and output fields, in their order.
#[derive(Clone, Debug, PartialEq)]
pub struct GraphSchema {
    /// The graph's name.
    pub name: String,
    /// The input fields, in the order a row's values come.
    pub inputs: Vec<GraphField>,
    /// The output fields, in the order an answer's values come.
    pub outputs: Vec<GraphField>,
}

impl GraphSchema {
    /// The schema of `plan`.
    pub fn of(plan: &Plan) -> GraphSchema {
        GraphSchema {
            name: plan.name.clone(),
            inputs: plan.inputs.iter().map(|(name, ty)| GraphField::new(name, ty)).collect(),
            outputs: plan.output.fields.iter().map(|(name, _, ty)| GraphField::new(name, ty)).collect(),
        }
    }

    /// The output fields' names, in order.
    pub fn output_names(&self) -> Vec<String> {
        self.outputs.iter().map(|f| f.name.clone()).collect()
    }

    /// The output fields' types, in order.
    pub fn output_types(&self) -> Vec<FieldType> {
        self.outputs.iter().map(|f| f.ty.clone()).collect()
    }

    /// Checks one row's values against the input fields.
    pub fn check_row(&self, values: &[Value]) -> Result<(), SubmitError> {
        if values.len() != self.inputs.len() {
            let message = format!("expected {} input fields, got {}", self.inputs.len(), values.len());
            return Err(SubmitError::invalid("input", None, message));
        }
        for (field, v) in self.inputs.iter().zip(values) {
            if !v.conforms_to(&field.ty) {
                let message = format!("expected {}, got {}", field.ty, v.type_name());
                return Err(SubmitError::invalid("input", Some(&field.name), message));
            }
        }
        Ok(())
    }

    /// Checks rows against the input fields and turns them into input columns.
    pub(crate) fn rows_to_columns(&self, rows: &[Vec<Value>]) -> Result<Vec<Column>, SubmitError> {
        check_size(rows.len())?;
        rows.iter().try_for_each(|values| self.check_row(values))?;
        Ok(self
            .inputs
            .iter()
            .enumerate()
            .map(|(f, field)| Column::from_values(&field.ty, rows.iter().map(|r| &r[f])))
            .collect())
    }

    /// Checks columns against the input fields; returns their common length.
    pub(crate) fn check_columns(&self, columns: &[Column]) -> Result<usize, SubmitError> {
        if columns.len() != self.inputs.len() {
            let message = format!("expected {} input columns, got {}", self.inputs.len(), columns.len());
            return Err(SubmitError::invalid("input", None, message));
        }
        let rows = columns.first().map_or(0, Column::len);
        for (field, c) in self.inputs.iter().zip(columns) {
            if !c.fits(&field.ty) {
                let message = format!("expected {}, got {}", field.ty, c.type_name());
                return Err(SubmitError::invalid("input", Some(&field.name), message));
            }
            if c.len() != rows {
                let message = format!("the column has {} rows, the first has {rows}", c.len());
                return Err(SubmitError::invalid("input", Some(&field.name), message));
            }
        }
        check_size(rows)?;
        Ok(rows)
    }
}

/// Checks that a submission holds 1 to [`MAX_BATCH_ROWS`] rows.
pub(crate) fn check_size(rows: usize) -> Result<(), SubmitError> {
    if rows == 0 || rows > MAX_BATCH_ROWS {
        let message = format!("a batch holds 1 to {MAX_BATCH_ROWS} rows, got {rows}");
        return Err(SubmitError::invalid("input", None, message));
    }
    Ok(())
}
