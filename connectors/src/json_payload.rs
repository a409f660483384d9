//! A JSON payload straight to a row, and a row straight to JSON bytes: what
//! [`crate::json::decode_row`] and [`crate::json::encode_row`] give through a
//! `serde_json::Value`, without building the object's map on the way (a `String` per key
//! and a B-tree per message, 8% of `weir serve`'s CPU on a Kafka backlog of `diamond.yaml`
//! messages).
//!
//! Decoding keeps the value of each input field as a `serde_json::Value` (a number does
//! not allocate) and skips every other field; once the whole payload has parsed, the
//! fields are decoded in the graph's order by [`crate::json::decode_value`]. The answers
//! and the errors are therefore those of parsing the payload to a `Value` and calling
//! `decode_row`, with one difference: a field the graph does not read is checked for
//! JSON syntax only, so a number out of `f64`'s range there is no longer an error.
//!
//! Encoding writes the fields in the order a `serde_json::Map` keeps them (sorted by name,
//! the last of two equal names winning), each value as [`crate::json::encode_value`]
//! gives it, so the bytes are those of `serde_json::to_vec(&encode_row(..))`.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value as Json;
use weir_engine::GraphField;
use weir_operators::{RowError, Value};

use crate::json::{decode_fields, encode_value};

/// Decodes one row from a JSON payload (an object with a key per input field). A payload
/// that is not JSON is an `invalid_input` error quoting the parser; the rest as
/// [`crate::json::decode_row`].
pub fn decode_row_payload(inputs: &[GraphField], payload: &[u8]) -> Result<Vec<Value>, RowError> {
    let mut found = vec![None; inputs.len()];
    let mut de = serde_json::Deserializer::from_slice(payload);
    let object = Fields { inputs, found: &mut found }
        .deserialize(&mut de)
        .and_then(|object| de.end().map(|()| object))
        .map_err(|e| RowError::invalid_input("input", format!("the payload is not JSON: {e}")))?;
    decode_fields(inputs, object.then(|| found.iter().map(Option::as_ref)))
}

/// Appends an answer's JSON object to `out`: `serde_json::to_vec(&encode_row(names,
/// values))`, byte for byte.
pub fn write_row<'n>(names: impl IntoIterator<Item = &'n str>, values: &[Value], out: &mut Vec<u8>) {
    let mut fields: Vec<(&str, &Value)> = names.into_iter().zip(values).collect();
    // A map keeps the last value of a name: a stable sort keeps equal names in order.
    fields.sort_by(|a, b| a.0.cmp(b.0));
    out.push(b'{');
    let mut first = true;
    for (i, (name, value)) in fields.iter().enumerate() {
        if fields.get(i + 1).is_some_and(|next| next.0 == *name) {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        // Writing into a Vec fails only if serializing fails, which a string and a Value
        // never do.
        let _ = serde_json::to_writer(&mut *out, name);
        out.push(b':');
        let _ = serde_json::to_writer(&mut *out, &encode_value(value));
    }
    out.push(b'}');
}

/// Visits the payload: for an object, keeps each input field's value in `found` and
/// answers `true`; any other JSON value is consumed and answers `false`.
struct Fields<'a, 'f> {
    inputs: &'a [GraphField],
    found: &'f mut [Option<Json>],
}

impl<'de> DeserializeSeed<'de> for Fields<'_, '_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Fields<'_, '_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while let Some(field) = map.next_key_seed(Key(self.inputs))? {
            match field {
                // A repeated key keeps its last value, as a map does.
                Some(i) => self.found[i] = Some(map.next_value()?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(true)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }

    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_str<E>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }
}

/// An object's key: the index of the input field it names, if any (no allocation).
struct Key<'a>(&'a [GraphField]);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<usize>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E>(self, key: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|f| f.name == key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::{decode_row, encode_row};
    use weir_operators::{DType, FieldType};

    /// `json.rs`'s test inputs (a, v, m), then a string and an integer.
    fn inputs() -> Vec<GraphField> {
        let mut inputs = crate::json::tests::inputs();
        inputs.push(GraphField::new("s", &FieldType::scalar(DType::Str)));
        inputs.push(GraphField::new("n", &FieldType::scalar(DType::I64)));
        inputs
    }

    /// What the payload gave before: parsed to a `Value`, then `decode_row`.
    fn through_a_value(inputs: &[GraphField], payload: &str) -> Result<Vec<Value>, RowError> {
        let json: Json = serde_json::from_slice(payload.as_bytes())
            .map_err(|e| RowError::invalid_input("input", format!("the payload is not JSON: {e}")))?;
        decode_row(inputs, &json)
    }

    #[test]
    fn every_payload_decodes_as_through_a_value() {
        let inputs = inputs();
        let good = r#"{"a":1.5,"v":[1,2,null],"m":[[1,2],[3,4]],"s":"x\"y\u00e9","n":-7}"#;
        let payloads = [
            good,
            // Other fields in any order, nested, skipped; a repeated key's last value.
            r#"{"z":{"deep":[1,{"q":[]}]},"n":1,"s":"","m":[1,2,3,4],"v":[0,0,0],"a":2,"a":3}"#,
            r#" {"a":1e3,"v":[1,2,3],"m":[1,2,3,4],"s":"t","n":9007199254740993} "#,
            // Wrong types and shapes, missing fields: the first in the graph's order wins.
            r#"{"a":"1","v":[1,2],"m":[1,2,3,4],"s":"t","n":1}"#,
            r#"{"v":[1,2],"m":[1,2,3,4],"s":1,"n":1.5}"#,
            r#"{"a":1,"v":[1,2,3],"m":[[1,2],[3]],"s":"t","n":1}"#,
            r#"{"a":1,"v":[1,"2",3],"m":[1,2,3,4],"s":"t","n":1}"#,
            r#"{"a":1,"v":[1,2,3],"m":[1,2,3,4],"s":"t","n":1.0}"#,
            r#"{"a":1,"v":[1,2,3],"m":[1,2,3,4],"s":"t"}"#,
            r#"{"\u0061":1,"v":[1,2,3],"m":[1,2,3,4],"s":"t","n":1}"#,
            "{}",
            // Not an object.
            "[1,2,3]",
            "[]",
            "1",
            "-1",
            "1.5",
            "\"a\"",
            "true",
            "null",
            // Not JSON.
            "",
            "{",
            r#"{"a":1,}"#,
            r#"{"a":1} x"#,
            r#"{"a":tru}"#,
            r#"{"a":1,"v":[1,2,3],"m":[1,2,3,4],"s":"t","n":1}{}"#,
            "[1,2",
            r#"{"a":1e999}"#,
            "\u{feff}{}",
        ];
        for payload in payloads {
            let want = through_a_value(&inputs, payload);
            let got = decode_row_payload(&inputs, payload.as_bytes());
            assert_eq!(format!("{got:?}"), format!("{want:?}"), "payload {payload}");
        }
        assert!(decode_row_payload(&inputs, good.as_bytes()).is_ok());
        // The one difference: a field the graph does not read is only checked for syntax.
        let unread = r#"{"a":1,"v":[1,2,3],"m":[1,2,3,4],"s":"t","n":1,"other":1e999}"#;
        assert!(through_a_value(&inputs, unread).is_err());
        assert!(decode_row_payload(&inputs, unread.as_bytes()).is_ok());
    }

    #[test]
    fn a_row_writes_the_bytes_of_its_value() {
        let rows: Vec<(Vec<&str>, Vec<Value>)> = vec![
            (vec!["y"], vec![Value::F32(2.5)]),
            (
                vec!["z", "a\"b", "m", "é"],
                vec![
                    Value::F32(f32::NAN),
                    Value::I64(-3),
                    Value::Tensor(vec![0.1, f32::INFINITY, 1e-7, 3e38].into()),
                    Value::Str("q\"\n".into()),
                ],
            ),
            (vec!["b", "a", "b"], vec![Value::Bool(true), Value::F32(1.0), Value::Bool(false)]),
            (vec![], vec![]),
        ];
        for (names, values) in rows {
            let want = serde_json::to_vec(&encode_row(names.iter().copied(), &values)).unwrap();
            let mut got = b"prefix".to_vec();
            write_row(names.iter().copied(), &values, &mut got);
            assert_eq!(String::from_utf8_lossy(&got[6..]), String::from_utf8_lossy(&want), "{names:?}");
        }
    }
}
