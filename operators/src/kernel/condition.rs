//! Branch conditions of `route` nodes.

use std::fmt;

use crate::value::{DType, FieldType, Value};

/// A constant in a condition.
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    /// A number (compared with `f32` and `i64` fields).
    Number(f64),
    /// A string.
    Str(String),
    /// A boolean.
    Bool(bool),
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Number(x) => write!(f, "{x}"),
            Literal::Str(s) => write!(f, "{s:?}"),
            Literal::Bool(b) => write!(f, "{b}"),
        }
    }
}

impl Literal {
    fn matches(&self, v: &Value) -> bool {
        match (self, v) {
            (Literal::Str(s), Value::Str(x)) => s.as_str() == &**x,
            (Literal::Bool(b), Value::Bool(x)) => b == x,
            (Literal::Number(n), v) => v.as_f64() == Some(*n),
            _ => false,
        }
    }

    fn fits(&self, ty: &FieldType) -> bool {
        matches!(
            (self, ty.dtype),
            (Literal::Number(_), DType::F32 | DType::I64)
                | (Literal::Str(_), DType::Str)
                | (Literal::Bool(_), DType::Bool)
        )
    }
}

/// When a row takes a branch, tested against the route's `by` field.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    /// Equal to the literal.
    Eq(Literal),
    /// Not equal to the literal.
    Ne(Literal),
    /// Less than.
    Lt(f64),
    /// Less than or equal.
    Le(f64),
    /// Greater than.
    Gt(f64),
    /// Greater than or equal.
    Ge(f64),
    /// Equal to one of the literals.
    In(Vec<Literal>),
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Condition::Eq(l) => write!(f, "== {l}"),
            Condition::Ne(l) => write!(f, "!= {l}"),
            Condition::Lt(x) => write!(f, "< {x}"),
            Condition::Le(x) => write!(f, "<= {x}"),
            Condition::Gt(x) => write!(f, "> {x}"),
            Condition::Ge(x) => write!(f, ">= {x}"),
            Condition::In(ls) => {
                let items: Vec<String> = ls.iter().map(|l| l.to_string()).collect();
                write!(f, "in [{}]", items.join(", "))
            }
        }
    }
}

impl Condition {
    /// Checks that the condition can be tested on a field of type `ty`.
    pub fn check(&self, ty: &FieldType) -> Result<(), String> {
        if !ty.is_scalar() {
            return Err(format!("routes test scalar fields, got {ty}"));
        }
        let ok = match self {
            Condition::Eq(l) | Condition::Ne(l) => l.fits(ty),
            Condition::In(ls) => ls.iter().all(|l| l.fits(ty)),
            _ => matches!(ty.dtype, DType::F32 | DType::I64),
        };
        if ok {
            Ok(())
        } else {
            Err(format!("condition '{self}' cannot be tested on a {ty} field"))
        }
    }

    /// Whether `v` satisfies the condition. NaN satisfies no comparison.
    pub fn matches(&self, v: &Value) -> bool {
        let num = || v.as_f64().filter(|x| !x.is_nan());
        match self {
            Condition::Eq(l) => l.matches(v),
            Condition::Ne(l) => !l.matches(v),
            Condition::Lt(x) => num().is_some_and(|v| v < *x),
            Condition::Le(x) => num().is_some_and(|v| v <= *x),
            Condition::Gt(x) => num().is_some_and(|v| v > *x),
            Condition::Ge(x) => num().is_some_and(|v| v >= *x),
            Condition::In(ls) => ls.iter().any(|l| l.matches(v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions() {
        assert!(Condition::Ge(0.9).matches(&Value::F32(0.95)));
        assert!(!Condition::Ge(0.9).matches(&Value::F32(f32::NAN)));
        assert!(Condition::In(vec![Literal::Str("cat".into())]).matches(&Value::Str("cat".into())));
        assert!(Condition::Eq(Literal::Number(3.0)).matches(&Value::I64(3)));
        assert!(Condition::Gt(1.0).check(&FieldType::scalar(DType::Str)).is_err());
        assert!(Condition::Eq(Literal::Str("x".into())).check(&FieldType::scalar(DType::Str)).is_ok());
    }
}
