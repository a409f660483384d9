//! A model for engine and server tests: doubles its input after a fixed time per batch
//! (like a real forward pass, so rows pile up while it runs), fails the batch on a
//! negative input, panics on 666, and counts the rows it computed. Its gated variant
//! holds every forward pass at a [`Gate`] until the test opens it, so a test can order
//! events ("answered while the model was busy") without timing them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use weir_engine::builder::{GraphBuilder, Model};
use weir_engine::spec::{Batching, ModelSource, Serving};
use weir_engine::Plan;
use weir_operators::kernel::{single_input, BatchKernel, KernelError};
use weir_operators::{Column, DType, FieldType};

use super::gate::Gate;

/// The input that makes the model panic.
pub const PANIC_INPUT: f64 = 666.0;

struct Slow {
    per_batch: Duration,
    computed: Arc<AtomicUsize>,
    gate: Option<Arc<Gate>>,
}

impl BatchKernel for Slow {
    fn forward(&mut self, inputs: Vec<Column>) -> Result<Vec<Column>, KernelError> {
        let inputs = single_input("test kernel", inputs)?;
        let xs: Vec<f64> = inputs.values().iter().map(|v| v.as_f64().unwrap_or(f64::NAN)).collect();
        assert!(!xs.contains(&PANIC_INPUT), "unlucky input");
        if xs.iter().any(|&x| x < 0.0) {
            return Err("negative input".into());
        }
        if let Some(gate) = &self.gate {
            gate.pass(xs.len());
        }
        std::thread::sleep(self.per_batch);
        self.computed.fetch_add(inputs.len(), Ordering::SeqCst);
        Ok(vec![Column::F32(xs.iter().map(|&x| 2.0 * x as f32).collect())])
    }
}

/// Graph `slow`: input `x: f32` → model node `double` → output `y`; and the count of
/// rows the model computed.
pub fn slow_plan(per_batch: Duration, batching: Batching, serving: Serving) -> (Plan, Arc<AtomicUsize>) {
    slow_graph(per_batch, None, batching, serving)
}

/// Graph `slow` whose model computes at once but holds every forward pass at `gate`
/// until it is opened; and the count of rows the model computed.
pub fn gated_plan(gate: &Arc<Gate>, batching: Batching, serving: Serving) -> (Plan, Arc<AtomicUsize>) {
    slow_graph(Duration::ZERO, Some(Arc::clone(gate)), batching, serving)
}

fn slow_graph(
    per_batch: Duration,
    gate: Option<Arc<Gate>>,
    batching: Batching,
    serving: Serving,
) -> (Plan, Arc<AtomicUsize>) {
    let computed = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&computed);
    let scalar = FieldType::scalar(DType::F32);
    let mut g = GraphBuilder::new("slow");
    g.serving(serving);
    let x = g.input("x", scalar.clone());
    let source = ModelSource::Custom {
        description: "slow doubler".into(),
        factory: Arc::new(move || {
            Ok(Box::new(Slow { per_batch, computed: Arc::clone(&seen), gate: gate.clone() }) as Box<dyn BatchKernel>)
        }),
        input: scalar.clone(),
        output: scalar,
    };
    let m = g.node("double", Model::file(source).batching(batching).bind(x));
    g.output("y", m.field("y"));
    (g.plan().expect("the slow graph is valid"), computed)
}
