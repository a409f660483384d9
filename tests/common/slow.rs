//! A model for engine and server tests: doubles its input after a fixed time per batch
//! (like a real forward pass, so rows pile up while it runs), fails the batch on a
//! negative input, panics on 666, and counts the rows it computed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use weir_engine::builder::{GraphBuilder, Model};
use weir_engine::spec::{Batching, ModelSource, Serving};
use weir_engine::Plan;
use weir_operators::kernel::BatchKernel;
use weir_operators::{Column, DType, FieldType};

/// The input that makes the model panic.
pub const PANIC_INPUT: f64 = 666.0;

struct Slow {
    per_batch: Duration,
    computed: Arc<AtomicUsize>,
}

impl BatchKernel for Slow {
    fn forward(&mut self, inputs: Column) -> Result<Column, String> {
        let xs: Vec<f64> = inputs.values().iter().map(|v| v.as_f64().unwrap_or(f64::NAN)).collect();
        assert!(!xs.contains(&PANIC_INPUT), "unlucky input");
        if xs.iter().any(|&x| x < 0.0) {
            return Err("negative input".into());
        }
        std::thread::sleep(self.per_batch);
        self.computed.fetch_add(inputs.len(), Ordering::SeqCst);
        Ok(Column::F32(xs.iter().map(|&x| 2.0 * x as f32).collect()))
    }
}

/// Graph `slow`: input `x: f32` → model node `double` → output `y`; and the count of
/// rows the model computed.
pub fn slow_plan(per_batch: Duration, batching: Batching, serving: Serving) -> (Plan, Arc<AtomicUsize>) {
    let computed = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&computed);
    let scalar = FieldType::scalar(DType::F32);
    let mut g = GraphBuilder::new("slow");
    g.serving(serving);
    let x = g.input("x", scalar.clone());
    let source = ModelSource::Custom {
        description: "slow doubler".into(),
        factory: Arc::new(
            move || Ok(Box::new(Slow { per_batch, computed: Arc::clone(&seen) }) as Box<dyn BatchKernel>),
        ),
        input: scalar.clone(),
        output: scalar,
    };
    let m = g.node("double", Model::file(source).batching(batching).bind(x));
    g.output("y", m.field("y"));
    (g.plan().expect("the slow graph is valid"), computed)
}
