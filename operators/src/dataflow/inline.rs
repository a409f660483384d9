//! Forward passes on the timely worker, for a model node cheaper to compute than to hand
//! over to a replica thread.
//!
//! A batch sent to a replica costs two thread hops: the replica is woken (a futex, a
//! context switch), and when it is done it wakes the worker back. On a 2-core machine
//! that round trip costs tens of microseconds, while the forward pass of a small model
//! (`diamond.yaml`'s 1x1 linear models, a tiny MLP at batch 1) takes a few. So a CPU
//! model node's batching operator measures its forward passes (each batch's compute
//! time, as the replicas report it, in an exponentially weighted mean) and, once it has
//! seen [`SAMPLES`] batches averaging under [`ON_BELOW`], computes its batches itself,
//! on the worker, with a kernel of its own built by the node's factory (once, on first
//! use). It keeps measuring, and hands the batches back to the replicas once the mean
//! passes [`OFF_ABOVE`] (larger batches under load, a slower machine). A worker is
//! therefore never held by a forward pass longer than about what a hop would have cost.
//! It computes a batch itself only while nothing else waits (no batch of the node at the
//! replicas, no rows queued behind this one): under load, as in a replay, the worker
//! would otherwise compute every batch alone while the replicas' cores stay idle.
//!
//! Only nodes on the CPU compute inline (a GPU node's streams and weights belong to its
//! replicas); the engine gives the factory only to those. The guarantees are the
//! replicas': a panic or an error fails the batch's rows, a batch whose rows are all past
//! their deadline is not computed, and the node's counters see every pass
//! ([`crate::replica::compute`], the function both run). A factory that fails on the
//! worker turns inline computing off for the operator, with a warning; the replicas
//! go on.

use std::fmt;
use std::time::Duration;

use crate::kernel::{BatchKernel, KernelFactory};

/// Inline computing starts once the mean forward pass is under this...
pub const ON_BELOW: Duration = Duration::from_micros(20);

/// ...and stops once it is over this.
pub const OFF_ABOVE: Duration = Duration::from_micros(40);

/// Batches measured before inline computing may start.
pub const SAMPLES: usize = 8;

/// The weight of the latest batch in the mean.
const WEIGHT: f64 = 0.125;

/// A pass counts in the mean as at most this long. A pass is timed by the wall clock,
/// so one during which the thread lost its core (a replay's reading thread, another
/// process) measures milliseconds that are not the model's: counted whole, a single
/// one would lift the mean past [`OFF_ABOVE`] and send the node's next dozens of
/// batches to the replicas (a hop each, and two more threads on the cores). Capped, it
/// takes several slow passes in a row (five from a mean of 5 µs) to stop inline
/// computing, as a model that is really slow gives.
const COUNTED_AT_MOST: Duration = Duration::from_micros(2 * OFF_ABOVE.as_micros() as u64);

/// The factory of the kernel a worker builds for itself (a CPU node's).
#[derive(Clone)]
pub struct InlineFactory(pub KernelFactory);

impl fmt::Debug for InlineFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<inline kernel>")
    }
}

/// One batching operator's inline state.
pub(crate) struct Inline {
    /// `None`: never inline (not a CPU node, or its factory failed here).
    factory: Option<InlineFactory>,
    kernel: Option<Box<dyn BatchKernel>>,
    /// The weighted mean forward pass, in seconds, and how many were measured.
    mean: f64,
    samples: usize,
    on: bool,
}

impl Inline {
    pub(crate) fn new(factory: Option<InlineFactory>) -> Inline {
        Inline { factory, kernel: None, mean: 0.0, samples: 0, on: false }
    }

    /// A forward pass of this node (on a replica or here) took `took`.
    pub(crate) fn measured(&mut self, took: Duration) {
        let t = took.min(COUNTED_AT_MOST).as_secs_f64();
        self.mean = if self.samples == 0 { t } else { self.mean + WEIGHT * (t - self.mean) };
        self.samples += 1;
        if self.on && self.mean > OFF_ABOVE.as_secs_f64() {
            self.on = false;
        } else if !self.on && self.samples >= SAMPLES && self.mean < ON_BELOW.as_secs_f64() {
            self.on = self.factory.is_some();
        }
    }

    /// The kernel to compute the next batch with here, if the node is cheap enough (built
    /// now if this is the first); `None`: send it to a replica.
    pub(crate) fn kernel(&mut self, node: &str) -> Option<&mut (dyn BatchKernel + 'static)> {
        if !self.on {
            return None;
        }
        if self.kernel.is_none() {
            let factory = self.factory.as_ref()?;
            crate::replica::rayon_in_place();
            match (factory.0)() {
                Ok(kernel) => self.kernel = Some(kernel),
                Err(error) => {
                    tracing::warn!(node, %error, "cannot build the node's kernel on the worker; its replicas compute");
                    self.factory = None;
                    self.on = false;
                    return None;
                }
            }
        }
        self.kernel.as_deref_mut()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::column::Column;
    use crate::kernel::KernelError;

    struct Nop;
    impl BatchKernel for Nop {
        fn forward(&mut self, inputs: Vec<Column>) -> Result<Vec<Column>, KernelError> {
            Ok(inputs)
        }
    }

    fn factory() -> Option<InlineFactory> {
        Some(InlineFactory(Arc::new(|| Ok(Box::new(Nop) as Box<dyn BatchKernel>))))
    }

    #[test]
    fn cheap_passes_go_inline_after_enough_samples_and_leave_when_they_grow() {
        let mut inline = Inline::new(factory());
        for _ in 0..SAMPLES - 1 {
            inline.measured(Duration::from_micros(5));
        }
        assert!(inline.kernel("m").is_none(), "too few samples");
        inline.measured(Duration::from_micros(5));
        assert!(inline.kernel("m").is_some());
        // Between the two bounds it stays.
        (0..40).for_each(|_| inline.measured(Duration::from_micros(30)));
        assert!(inline.kernel("m").is_some());
        (0..40).for_each(|_| inline.measured(Duration::from_micros(200)));
        assert!(inline.kernel("m").is_none());
    }

    #[test]
    fn a_pass_that_lost_its_core_does_not_stop_inline_computing_slow_passes_do() {
        let mut inline = Inline::new(factory());
        (0..SAMPLES).for_each(|_| inline.measured(Duration::from_micros(5)));
        assert!(inline.kernel("m").is_some());
        // A pass descheduled for a time slice, now and then.
        for _ in 0..3 {
            inline.measured(Duration::from_millis(4));
            (0..10).for_each(|_| inline.measured(Duration::from_micros(5)));
            assert!(inline.kernel("m").is_some());
        }
        // Passes that are slow, one after the other.
        let slow = (1..).find(|_: &usize| {
            inline.measured(Duration::from_millis(4));
            inline.kernel("m").is_none()
        });
        assert_eq!(slow, Some(5), "five slow passes in a row stop it");
    }

    #[test]
    fn without_a_factory_or_with_a_failing_one_the_replicas_compute() {
        let mut none = Inline::new(None);
        (0..SAMPLES).for_each(|_| none.measured(Duration::from_micros(1)));
        assert!(none.kernel("m").is_none());
        let failing = InlineFactory(Arc::new(|| Err(KernelError::Expired)));
        let mut inline = Inline::new(Some(failing));
        (0..SAMPLES).for_each(|_| inline.measured(Duration::from_micros(1)));
        assert!(inline.kernel("m").is_none());
        (0..SAMPLES).for_each(|_| inline.measured(Duration::from_micros(1)));
        assert!(inline.kernel("m").is_none(), "a failed factory is not retried");
    }
}
