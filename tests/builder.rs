//! The Rust builder and the YAML file are two routes to one IR: the same graph built
//! both ways gives the same plan shape and the same answers.
#![allow(clippy::unwrap_used)] // a test or benchmark fails loudly on the first surprise

mod common;

use weir_engine::builder::{combine, GraphBuilder, Model};
use weir_engine::spec::ModelSource;
use weir_operators::kernel::aggregate::Aggregate;
use weir_operators::kernel::model::{Activation, Arch};
use weir_operators::{DType, FieldType, Value};

#[test]
fn builder_diamond_equals_yaml_diamond() -> Result<(), Box<dyn std::error::Error>> {
    // The README's snippet, verbatim.
    let linear = |path: &str| {
        Model::file(ModelSource::File {
            path: path.into(),
            arch: Arch::Linear,
            sizes: None,
            hidden_activation: Activation::None,
            output_activation: Activation::None,
        })
    };
    let f32 = FieldType::scalar(DType::F32);
    let mut g = GraphBuilder::new("diamond").base_dir(weir::datasets::graphs_dir());
    let (a, b, c) = (g.input("a", f32.clone()), g.input("b", f32.clone()), g.input("c", f32));
    let m1 = g.node("m1", linear("diamond/m1.safetensors").bind(a));
    let m2 = g.node("m2", linear("diamond/m2.safetensors").bind(b));
    let sum = g.node("sum", combine(Aggregate::Sum).bind([m1.field("y"), m2.field("y"), c]));
    g.output("y", sum.field("y"));
    let built = g.plan()?;

    let from_yaml = common::plan("diamond.yaml");
    let shape = |p: &weir_engine::Plan| -> Vec<(String, &'static str, Vec<weir_engine::plan::StreamId>)> {
        p.steps.iter().map(|s| (s.name.clone(), s.kind, s.from.clone())).collect()
    };
    assert_eq!(shape(&built), shape(&from_yaml));
    assert_eq!(built.inputs, from_yaml.inputs);

    let rows: Vec<Vec<Value>> =
        (0..300).map(|i| vec![Value::F32(i as f32), Value::F32(1.5 * i as f32), Value::F32(-2.0)]).collect();
    let (_e1, g1) = common::start(built, 1);
    let (_e2, g2) = common::start(from_yaml, 1);
    assert_eq!(g1.call_many(rows.clone(), 64), g2.call_many(rows, 64));
    Ok(())
}

#[test]
fn builder_onnx_model_equals_yaml() -> Result<(), Box<dyn std::error::Error>> {
    // graphs/digits-onnx.yaml, built in Rust: the model's own outputs, one renamed.
    let mut g = GraphBuilder::new("digits-onnx").base_dir(weir::datasets::graphs_dir());
    let pixels = g.input("pixels", FieldType::vector(64));
    let mlp = g.node(
        "mlp",
        Model::format("onnx", "zoo/digits_mlp.onnx")
            .outputs([("label", "label"), ("probabilities", "probs")])
            .bind(pixels),
    );
    g.output("label", mlp.field("label"));
    g.output("probabilities", mlp.field("probs"));
    let built = g.plan()?;
    let from_yaml = common::plan("digits-onnx.yaml");
    assert_eq!(built.output.fields.iter().map(|o| o.0.as_str()).collect::<Vec<_>>(), ["label", "probabilities"]);

    let digits = weir::datasets::digits(weir::datasets::Split::Test)?;
    let rows: Vec<Vec<Value>> = digits.iter().map(|d| vec![Value::Tensor(d.pixels.clone().into())]).collect();
    let (_e1, g1) = common::start(built, 1);
    let (_e2, g2) = common::start(from_yaml, 1);
    let (a, b) = (g1.call_many(rows.clone(), 64), g2.call_many(rows, 64));
    assert_eq!(a.len(), digits.len());
    assert_eq!(a, b);

    // A model input name the ONNX graph does not have: the builder's error names it.
    let mut g = GraphBuilder::new("miswired").base_dir(weir::datasets::graphs_dir());
    let x = g.input("x", FieldType::vector(64));
    let mlp = g.node("mlp", Model::format("onnx", "zoo/digits_mlp.onnx").bind_named([("pixelz", x)]));
    g.output("label", mlp.field("label"));
    let err = g.plan().unwrap_err().to_string();
    assert!(err.contains("pixelz"), "{err}");
    Ok(())
}
