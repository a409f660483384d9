//! JSON ↔ row values, by the graph's schema. Shared by every JSON-speaking connector
//! (JSON lines now, HTTP and Kafka payloads later).
//!
//! Decoding: a row is a JSON object with one key per input field. `f32` takes any JSON
//! number, `i64` an integer, `bool` a boolean, `str` a string, `f32[n]` an array of `n`
//! numbers (`f32[a,b]` a flat array of `a*b` numbers or nested arrays of that shape).
//! Keys that are not input fields are ignored. A missing field or a value of the wrong
//! type or shape is an `invalid_input` error naming the field.
//!
//! Encoding: `f32` values print in their shortest exact form (`8.0`, `0.1`); NaN and
//! infinities print as `null`.

use std::fmt;

use serde_json::{Map, Number, Value as Json};
use weir_engine::spec::TableSpec;
use weir_engine::{Feedback, FeedbackKinds, GraphField};
use weir_operators::{DType, FieldType, RowError, Value};

/// Decodes one row from a JSON value.
pub fn decode_row(inputs: &[GraphField], json: &Json) -> Result<Vec<Value>, RowError> {
    let object = match json {
        Json::Object(map) => Some(inputs.iter().map(|f| map.get(&f.name))),
        _ => None,
    };
    decode_fields(inputs, object)
}

/// Decodes one row from the value of each input field in an object (`None`: the field is
/// missing), or from no object at all (`None`).
pub(crate) fn decode_fields<'j>(
    inputs: &[GraphField],
    object: Option<impl Iterator<Item = Option<&'j Json>>>,
) -> Result<Vec<Value>, RowError> {
    let Some(values) = object else {
        return Err(invalid(None, format!("expected a JSON object with fields {}", field_list(inputs))));
    };
    let mut row = Vec::with_capacity(inputs.len());
    for (GraphField { name, ty }, v) in inputs.iter().zip(values) {
        let v = v.ok_or_else(|| invalid(Some(name), format!("missing field '{name}' ({ty})")))?;
        row.push(decode_value(ty, v).map_err(|m| invalid(Some(name), m))?);
    }
    Ok(row)
}

/// Decodes one feedback row, `{"key": ..., "label": 1}` or `{"features": [...],
/// "label": 1}`, into `into`. The label is an integer class; the key has the type of the
/// graph's `learn.key`; features that of the learning node's input. Unknown keys are
/// errors (a misspelt `label` must not pass silently).
pub fn decode_feedback(kinds: &FeedbackKinds, json: &Json, into: &mut Feedback) -> Result<(), RowError> {
    let bad = |field: Option<&str>, message: String| {
        let e = RowError::invalid_input("feedback", message);
        match field {
            Some(f) => e.with_field(f),
            None => e,
        }
    };
    let Json::Object(map) = json else {
        return Err(bad(None, "expected a JSON object {\"key\": ..., \"label\": <class>}".into()));
    };
    if let Some(other) = map.keys().find(|k| !matches!(k.as_str(), "key" | "label" | "features")) {
        return Err(bad(Some(other), format!("unknown feedback field '{other}' (expected key, label, features)")));
    }
    let label = match map.get("label") {
        Some(Json::Number(n)) => {
            n.as_i64().ok_or_else(|| bad(Some("label"), format!("expected an integer class, got {n}")))?
        }
        Some(other) => return Err(bad(Some("label"), format!("expected an integer class, got {}", describe(other)))),
        None => return Err(bad(Some("label"), "missing field 'label' (the class, an integer)".into())),
    };
    let key = match (map.get("key"), &kinds.key) {
        (Some(v), Some(ty)) => Some(decode_value(ty, v).map_err(|m| bad(Some("key"), m))?),
        (Some(_), None) => {
            return Err(bad(Some("key"), "this graph's learning node has no 'learn.key': send 'features'".into()))
        }
        (None, _) => None,
    };
    let features = match map.get("features") {
        Some(v) => Some(decode_value(&kinds.features, v).map_err(|m| bad(Some("features"), m))?),
        None => None,
    };
    into.push(key.as_ref(), label, features.as_ref()).map_err(|m| bad(None, m))
}

/// Decodes one table change: `{"key": K, "values": {"field": v, ...}}` (every value
/// field of the table) upserts the key; `{"key": K, "values": null}` deletes it.
pub fn decode_upsert(table: &TableSpec, json: &Json) -> Result<(Value, Option<Vec<Value>>), RowError> {
    let bad = |field: &str, message: String| {
        RowError::invalid_input(format!("tables.{}", table.name), message).with_field(field)
    };
    let Json::Object(map) = json else {
        return Err(RowError::invalid_input(
            format!("tables.{}", table.name),
            "expected a JSON object {\"key\": ..., \"values\": {...} or null}",
        ));
    };
    if let Some(other) = map.keys().find(|k| !matches!(k.as_str(), "key" | "values")) {
        return Err(bad(other, format!("unknown field '{other}' (expected key, values)")));
    }
    let key = match map.get("key") {
        Some(v) => decode_value(&table.key_type, v).map_err(|m| bad("key", m))?,
        None => return Err(bad("key", format!("missing field 'key' ({})", table.key_type))),
    };
    let values = match map.get("values") {
        Some(Json::Null) => None,
        Some(Json::Object(fields)) => Some(decode_table_values(table, fields, "values.")?),
        Some(other) => {
            return Err(bad("values", format!("expected an object of value fields or null, got {}", describe(other))))
        }
        None => return Err(bad("values", "missing field 'values' (an object, or null to delete the key)".into())),
    };
    Ok((key, values))
}

/// Decodes a table row's values from an object with every value field of the table
/// (in any order; no other field). Errors name the field as `{prefix}{field}`.
pub fn decode_table_values(
    table: &TableSpec,
    fields: &Map<String, Json>,
    prefix: &str,
) -> Result<Vec<Value>, RowError> {
    let bad = |field: &str, message: String| {
        RowError::invalid_input(format!("tables.{}", table.name), message).with_field(format!("{prefix}{field}"))
    };
    if let Some(other) = fields.keys().find(|k| !table.values.iter().any(|(n, _)| n == *k)) {
        return Err(bad(other, format!("table '{}' has no value field '{other}'", table.name)));
    }
    let mut row = Vec::with_capacity(table.values.len());
    for (name, ty) in &table.values {
        let v = fields.get(name).ok_or_else(|| bad(name, format!("missing value field '{name}' ({ty})")))?;
        row.push(decode_value(ty, v).map_err(|m| bad(name, m))?);
    }
    Ok(row)
}

fn field_list(inputs: &[GraphField]) -> String {
    inputs.iter().map(|f| format!("{}: {}", f.name, f.ty)).collect::<Vec<_>>().join(", ")
}

fn invalid(field: Option<&str>, message: String) -> RowError {
    let e = RowError::invalid_input("input", message);
    match field {
        Some(f) => e.with_field(f),
        None => e,
    }
}

fn describe(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// Decodes one value of type `ty`. In an `f32` tensor, an element `null` is NaN (a
/// missing value).
pub fn decode_value(ty: &FieldType, v: &Json) -> Result<Value, String> {
    let expected = || format!("expected {ty}, got {}", describe(v));
    if !ty.is_scalar() {
        let mut flat = Vec::with_capacity(ty.shape.iter().product());
        flatten(v, &ty.shape, &mut flat).map_err(|m| format!("expected {ty}: {m}"))?;
        return Ok(Value::Tensor(flat.into()));
    }
    match ty.dtype {
        DType::F32 => v.as_f64().map(|x| Value::F32(x as f32)).ok_or_else(expected),
        DType::I64 => v.as_i64().map(Value::I64).ok_or_else(expected),
        DType::Bool => v.as_bool().map(Value::Bool).ok_or_else(expected),
        DType::Str => v.as_str().map(|s| Value::Str(s.into())).ok_or_else(expected),
    }
}

fn flatten(v: &Json, shape: &[usize], out: &mut Vec<f32>) -> Result<(), String> {
    let total: usize = shape.iter().product();
    let Json::Array(items) = v else { return Err(format!("got {}", describe(v))) };
    // A flat array of all the numbers is accepted for any shape. An element `null` is a
    // missing value, NaN (what NaN encodes to): tree models send it their default way.
    let element = |x: &Json| x.is_number() || x.is_null();
    if items.len() == total && items.iter().all(element) {
        out.extend(items.iter().map(|x| x.as_f64().map_or(f32::NAN, |x| x as f32)));
        return Ok(());
    }
    match shape {
        [n, rest @ ..] if !rest.is_empty() && items.len() == *n => {
            items.iter().try_for_each(|item| flatten(item, rest, out))
        }
        _ => {
            if let Some(i) = items.iter().position(|x| !element(x)) {
                if items.len() == total {
                    return Err(format!("element {i} is {}", describe(&items[i])));
                }
            }
            Err(format!("got an array of {} elements, expected {total}", items.len()))
        }
    }
}

/// A JSON number for an `f32`, printed in its shortest exact form; `null` if not finite.
pub fn f32_json(x: f32) -> Json {
    // f32's Display is the shortest string that reads back as the same f32 (at most 48
    // characters: the smallest subnormal, negative), written on the stack.
    let mut text = Digits { bytes: [0; 64], len: 0 };
    let parsed = match fmt::write(&mut text, format_args!("{x}")) {
        Ok(()) => std::str::from_utf8(&text.bytes[..text.len]).ok().and_then(|t| t.parse::<f64>().ok()),
        Err(_) => x.to_string().parse::<f64>().ok(),
    };
    parsed.and_then(Number::from_f64).map_or(Json::Null, Json::Number)
}

/// A float's text, on the stack.
struct Digits {
    bytes: [u8; 64],
    len: usize,
}

impl fmt::Write for Digits {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Encodes one value.
pub fn encode_value(v: &Value) -> Json {
    match v {
        Value::F32(x) => f32_json(*x),
        Value::I64(x) => Json::from(*x),
        Value::Bool(b) => Json::Bool(*b),
        Value::Str(s) => Json::String(s.to_string()),
        Value::Tensor(t) => Json::Array(t.iter().map(|x| f32_json(*x)).collect()),
    }
}

/// Encodes an answer as an object of the output fields.
pub fn encode_row(names: impl IntoIterator<Item = impl Into<String>>, values: &[Value]) -> Json {
    let map: Map<String, Json> = names.into_iter().map(Into::into).zip(values.iter().map(encode_value)).collect();
    Json::Object(map)
}

/// Encodes a row error as `{"error": {"code", "node", "field"?, "message"}}`.
pub fn encode_error(e: &RowError) -> Json {
    let mut inner = Map::new();
    inner.insert("code".into(), Json::String(e.code.as_str().into()));
    inner.insert("node".into(), Json::String(e.node.clone()));
    if let Some(f) = &e.field {
        inner.insert("field".into(), Json::String(f.clone()));
    }
    inner.insert("message".into(), Json::String(e.message.clone()));
    let mut outer = Map::new();
    outer.insert("error".into(), Json::Object(inner));
    Json::Object(outer)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A scalar, a vector and a matrix input.
    pub(crate) fn inputs() -> Vec<GraphField> {
        vec![
            GraphField::new("a", &FieldType::scalar(DType::F32)),
            GraphField::new("v", &FieldType::vector(3)),
            GraphField::new("m", &FieldType::parse("f32[2,2]").unwrap()),
        ]
    }

    #[test]
    fn decodes_and_reports_fields() {
        let ok = decode_row(&inputs(), &json!({"a": 1, "v": [1, 2, 3], "m": [[1, 2], [3, 4]], "extra": true})).unwrap();
        assert_eq!(ok[0], Value::F32(1.0));
        assert_eq!(ok[2], Value::Tensor(vec![1.0, 2.0, 3.0, 4.0].into()));
        let missing = decode_row(&inputs(), &json!({"v": [1, 2, 3]})).unwrap_err();
        assert_eq!(missing.field.as_deref(), Some("a"));
        let short = decode_row(&inputs(), &json!({"a": 1, "v": [1, 2], "m": [1, 2, 3, 4]})).unwrap_err();
        assert_eq!(short.field.as_deref(), Some("v"));
        assert!(short.message.contains("2 elements, expected 3"), "{}", short.message);
        let wrong = decode_row(&inputs(), &json!({"a": "x", "v": [1, 2, 3], "m": [1, 2, 3, 4]})).unwrap_err();
        assert!(wrong.message.contains("expected f32, got a string"));
        assert!(decode_row(&inputs(), &json!([1, 2])).is_err());
    }

    #[test]
    fn a_null_tensor_element_is_a_missing_value() {
        let row = decode_row(&inputs(), &json!({"a": 1, "v": [1, null, 3], "m": [[1, null], [3, 4]]})).unwrap();
        let Value::Tensor(v) = &row[1] else { panic!("{row:?}") };
        assert!(v[0] == 1.0 && v[1].is_nan() && v[2] == 3.0, "{v:?}");
        let Value::Tensor(m) = &row[2] else { panic!("{row:?}") };
        assert!(m[1].is_nan() && m[3] == 4.0, "{m:?}");
        // A scalar field is still required.
        let null = decode_row(&inputs(), &json!({"a": null, "v": [1, 2, 3], "m": [1, 2, 3, 4]})).unwrap_err();
        assert_eq!(null.field.as_deref(), Some("a"));
        let text = decode_row(&inputs(), &json!({"a": 1, "v": [1, "x", 3], "m": [1, 2, 3, 4]})).unwrap_err();
        assert!(text.message.contains("element 1 is a string"), "{}", text.message);
    }

    #[test]
    fn encodes_shortest_floats() {
        assert_eq!(encode_row(["y"], &[Value::F32(8.0)]).to_string(), r#"{"y":8.0}"#);
        assert_eq!(f32_json(0.1).to_string(), "0.1");
        assert_eq!(f32_json(f32::NAN), Json::Null);
    }

    /// The text on the stack gives what `to_string` gives, for the longest texts an f32
    /// has and for bit patterns across the whole range.
    #[test]
    fn floats_read_from_the_stack_as_from_a_string() {
        let through_a_string =
            |x: f32| x.to_string().parse::<f64>().ok().and_then(Number::from_f64).map_or(Json::Null, Json::Number);
        let edges = [-f32::from_bits(1), f32::from_bits(1), f32::MAX, f32::MIN, f32::MIN_POSITIVE, -0.0, 0.0];
        let spread = (0..100_000u32).map(|i| f32::from_bits(i.wrapping_mul(2_654_435_761)));
        for x in edges.into_iter().chain(spread) {
            assert_eq!(f32_json(x), through_a_string(x), "{x:e}");
        }
    }
}
