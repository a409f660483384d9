//! `GET /openapi.json`: an OpenAPI 3.0 document generated from the graphs' schemas.
//!
//! Every graph gets `POST /graphs/{name}` whose body is one input object or an array
//! of them, and whose answer is one output object or an array (an element of which may
//! be an error object). Field types map to JSON Schema: `f32` number, `i64` integer,
//! `bool` boolean, `str` string, `f32[n]` an array of exactly `n` numbers (`f32[a,b]`:
//! `a*b` numbers, flat). A graph with tables also gets `POST
//! /graphs/{name}/tables/{table}`, whose body is one change (`{"key", "values"}`, values
//! null to delete) or an array of them; a graph with a learning node gets `POST
//! /graphs/{name}/feedback`, whose body is one label (`{"key" or "features", "label"}`)
//! or an array of them. Then the routes every server has: `GET /graphs`,
//! `/openapi.json`, `/healthz`, `/readyz`, `/metrics`. Every route of
//! [`super::routes`] is here, for each graph it applies to (a test checks it).

use serde_json::{json, Map, Value as Json};
use weir_engine::spec::TableSpec;
use weir_engine::FeedbackKinds;
use weir_operators::{DType, FieldType};

/// The JSON Schema of one field type.
pub fn field_schema(ty: &FieldType) -> Json {
    match (ty.dtype, ty.shape.as_slice()) {
        (DType::F32, []) => json!({"type": "number", "format": "float"}),
        (DType::F32, shape) => {
            let n: usize = shape.iter().product();
            json!({"type": "array", "items": {"type": "number", "format": "float"}, "minItems": n, "maxItems": n,
                   "description": format!("{ty}, row-major")})
        }
        (DType::I64, _) => json!({"type": "integer", "format": "int64"}),
        (DType::Bool, _) => json!({"type": "boolean"}),
        (DType::Str, _) => json!({"type": "string"}),
    }
}

/// An object schema with every field required.
pub fn object_schema<'a>(fields: impl Iterator<Item = (&'a str, &'a FieldType)>) -> Json {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for (name, ty) in fields {
        properties.insert(name.to_string(), field_schema(ty));
        required.push(json!(name));
    }
    json!({"type": "object", "properties": properties, "required": required})
}

/// One graph's name, input fields and output fields.
pub struct GraphSchema<'a> {
    /// The graph's name.
    pub name: &'a str,
    /// Input fields.
    pub inputs: Vec<(&'a str, &'a FieldType)>,
    /// Output fields.
    pub outputs: Vec<(&'a str, &'a FieldType)>,
    /// Tables, changed by `POST /graphs/{name}/tables/{table}`.
    pub tables: &'a [TableSpec],
    /// What feedback its learning node takes at `POST /graphs/{name}/feedback`, if it has
    /// one.
    pub feedback: Option<&'a FeedbackKinds>,
}

/// The answer of a route that takes changes or labels: 202 `{"accepted": n}`.
fn accepted_response(description: &str) -> Json {
    json!({"description": description,
           "headers": {"weir-revision": {
               "description": "The graph's revision that took them (1, then one more per reload that changed the graph)",
               "schema": {"type": "integer", "minimum": 1}
           }},
           "content": {"application/json": {"schema": {"type": "object", "required": ["accepted"],
               "properties": {"accepted": {"type": "integer"}}}}}})
}

/// The schema of one feedback row of a graph whose learning node takes `kinds`.
fn feedback_schema(kinds: &FeedbackKinds) -> Json {
    let mut properties = Map::new();
    properties.insert(
        "label".into(),
        json!({"type": "integer", "format": "int64",
               "description": format!("The class, 0 to {}; another number is counted in /metrics (weir_feedback_total{{outcome=\"invalid\"}}), not refused",
                                      kinds.classes.saturating_sub(1))}),
    );
    let mut features = field_schema(&kinds.features);
    features["description"] = json!(format!("The row's own features ({})", kinds.features));
    properties.insert("features".into(), features);
    let mut schema = json!({"type": "object", "additionalProperties": false});
    if let Some(key) = &kinds.key {
        let mut key = field_schema(key);
        key["description"] = json!("The key of the prediction this labels");
        properties.insert("key".into(), key);
        schema["required"] = json!(["label"]);
        schema["anyOf"] = json!([{"required": ["key"]}, {"required": ["features"]}]);
    } else {
        schema["required"] = json!(["label", "features"]);
    }
    schema["properties"] = Json::Object(properties);
    schema
}

fn error_response(description: &str) -> Json {
    json!({"description": description,
           "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

/// The whole document.
pub fn document(graphs: &[GraphSchema<'_>]) -> Json {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    schemas.insert(
        "Error".into(),
        json!({
            "type": "object",
            "required": ["error"],
            "properties": {"error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "node": {"type": "string"},
                    "field": {"type": "string"}
                }
            }}
        }),
    );
    for g in graphs {
        let input = format!("{}_input", g.name);
        let output = format!("{}_output", g.name);
        schemas.insert(input.clone(), object_schema(g.inputs.iter().copied()));
        schemas.insert(output.clone(), object_schema(g.outputs.iter().copied()));
        let input_ref = json!({"$ref": format!("#/components/schemas/{input}")});
        let output_ref = json!({"$ref": format!("#/components/schemas/{output}")});
        paths.insert(
            format!("/graphs/{}", g.name),
            json!({"post": {
                "summary": format!("Run graph '{}' on one row or an array of rows", g.name),
                "operationId": format!("run_{}", g.name),
                "parameters": [{
                    "name": "X-Request-Timeout-Ms", "in": "header", "required": false,
                    "description": "Deadline in milliseconds; past it the answer is 504 and the row is not computed.",
                    "schema": {"type": "integer", "minimum": 1}
                }],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {
                    "oneOf": [input_ref.clone(), {"type": "array", "items": input_ref}]
                }}}},
                "responses": {
                    "200": {"description": "The answer: one object for one row, an array in input order for an array (a failed row's element is an error object)",
                            "headers": {"weir-revision": {
                                "description": "The graph's revision that computed the answer (1, then one more per reload that changed the graph)",
                                "schema": {"type": "integer", "minimum": 1}
                            }},
                            "content": {"application/json": {"schema": {
                                "oneOf": [output_ref.clone(), {"type": "array", "items": {"oneOf": [output_ref, {"$ref": "#/components/schemas/Error"}]}}]
                            }}}},
                    "400": error_response("Malformed JSON or header"),
                    "404": error_response("Unknown graph"),
                    "413": error_response("Body over the limit"),
                    "415": error_response("Content type is not application/json"),
                    "422": error_response("A field is missing or has the wrong type or shape"),
                    "500": error_response("A node failed for this row"),
                    "503": error_response("Too many rows in flight, or shutting down; retry after Retry-After seconds"),
                    "504": error_response("The deadline passed")
                }
            }}),
        );
    }
    for g in graphs {
        for t in g.tables {
            let change = format!("{}_{}_change", g.name, t.name);
            let values = object_schema(t.values.iter().map(|(n, ty)| (n.as_str(), ty)));
            let mut nullable = values.clone();
            nullable["nullable"] = json!(true);
            nullable["description"] = json!("The key's new values, or null to delete the key");
            schemas.insert(
                change.clone(),
                json!({"type": "object", "required": ["key", "values"], "additionalProperties": false,
                       "properties": {"key": field_schema(&t.key_type), "values": nullable}}),
            );
            let change_ref = json!({"$ref": format!("#/components/schemas/{change}")});
            paths.insert(
                format!("/graphs/{}/tables/{}", g.name, t.name),
                json!({"post": {
                    "summary": format!("Upsert or delete rows of table '{}' of graph '{}'", t.name, g.name),
                    "operationId": format!("upsert_{}_{}", g.name, t.name),
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {
                        "oneOf": [change_ref.clone(), {"type": "array", "items": change_ref}]
                    }}}},
                    "responses": {
                        "202": accepted_response("All changes are in the graph: requests sent after this answer see them"),
                        "400": error_response("Malformed JSON"),
                        "404": error_response("Unknown graph or table"),
                        "413": error_response("Body over the limit"),
                        "415": error_response("Content type is not application/json"),
                        "422": error_response("A change has a missing or wrongly typed field: no change is applied"),
                        "503": error_response("Shutting down")
                    }
                }}),
            );
        }
        if let Some(kinds) = g.feedback {
            let label = format!("{}_feedback", g.name);
            schemas.insert(label.clone(), feedback_schema(kinds));
            let label_ref = json!({"$ref": format!("#/components/schemas/{label}")});
            paths.insert(
                format!("/graphs/{}/feedback", g.name),
                json!({"post": {
                    "summary": format!("Labels for the learning node of graph '{}'", g.name),
                    "operationId": format!("feedback_{}", g.name),
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {
                        "oneOf": [label_ref.clone(), {"type": "array", "items": label_ref}]
                    }}}},
                    "responses": {
                        "202": accepted_response("All rows are in the graph's feedback stream (what the learner cannot use is counted in /metrics)"),
                        "400": error_response("Malformed JSON"),
                        "404": error_response("Unknown graph"),
                        "413": error_response("Body over the limit"),
                        "415": error_response("Content type is not application/json"),
                        "422": error_response("A row has a missing, unknown or wrongly typed field: no row is taken"),
                        "503": error_response("The feedback channel is full, or shutting down; retry after Retry-After seconds")
                    }
                }}),
            );
        }
    }
    let text = |d: &str| json!({"description": d, "content": {"text/plain": {"schema": {"type": "string"}}}});
    paths.insert(
        "/graphs".into(),
        json!({"get": {"summary": "The graphs served, with their input and output schemas", "operationId": "list_graphs",
                       "responses": {"200": {"description": "Graphs", "content": {"application/json": {"schema": {"type": "object"}}}}}}}),
    );
    paths.insert(
        "/openapi.json".into(),
        json!({"get": {"summary": "This document", "operationId": "openapi",
                       "responses": {"200": {"description": "OpenAPI 3.0", "content": {"application/json": {"schema": {"type": "object"}}}}}}}),
    );
    paths.insert(
        "/healthz".into(),
        json!({"get": {"operationId": "healthz", "responses": {"200": text("The process is up")}}}),
    );
    paths.insert(
        "/readyz".into(),
        json!({"get": {"operationId": "readyz", "responses": {"200": text("Graphs loaded, workers running"), "503": text("Not ready or shutting down")}}}),
    );
    paths.insert(
        "/metrics".into(),
        json!({"get": {"operationId": "metrics", "responses": {"200": text("Prometheus text format")}}}),
    );
    json!({
        "openapi": "3.0.3",
        "info": {"title": "weir", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Graphs of ML models served by weir"},
        "paths": paths,
        "components": {"schemas": schemas}
    })
}
