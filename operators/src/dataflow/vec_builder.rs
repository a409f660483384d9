//! The container builder of weir's operators' outputs: a `Vec` that grows with what is
//! given to it.
//!
//! timely's `CapacityContainerBuilder` reserves a whole buffer (8 KiB of elements) for
//! each new container before its first element. weir's operators mostly give one chunk,
//! one set of labels or one weight vector per time, and the container they give is
//! moved down the dataflow, so nothing comes back to reuse: every output session of every
//! operator allocated (and the next operator freed) 8 KiB to carry one element.
//! [`VecBuilder`] starts each container empty and lets `Vec` grow it, ships it once it
//! holds as many elements as timely's builder would have (8 KiB of them,
//! [`VecBuilder::SHIP_AT`]), so messages are as large as before, and reuses a container
//! handed back empty.

use std::collections::VecDeque;

use timely::container::{ContainerBuilder, LengthPreservingContainerBuilder, PushInto};

/// Builds `Vec<T>` containers without reserving room up front (see the module docs).
/// Elements leave in the order given.
#[derive(Debug)]
pub struct VecBuilder<T> {
    /// The container being filled.
    current: Vec<T>,
    /// The container last handed out (timely takes its contents; what it leaves, an
    /// empty vector with its allocation or none, is reused for the next one).
    shipped: Option<Vec<T>>,
    /// Full containers waiting to be handed out.
    full: VecDeque<Vec<T>>,
}

impl<T> VecBuilder<T> {
    /// Elements in a container before it leaves on its own (the rest leave when the
    /// operator's session ends): timely's default buffer of 8 KiB, in elements.
    pub const SHIP_AT: usize = timely::container::buffer::default_capacity::<T>();
}

impl<T> Default for VecBuilder<T> {
    fn default() -> Self {
        VecBuilder { current: Vec::new(), shipped: None, full: VecDeque::new() }
    }
}

impl<T> PushInto<T> for VecBuilder<T> {
    #[inline]
    fn push_into(&mut self, item: T) {
        if self.current.capacity() == 0 {
            if let Some(mut reused) = self.shipped.take() {
                reused.clear();
                self.current = reused;
            }
        }
        self.current.push(item);
        if self.current.len() >= Self::SHIP_AT {
            self.full.push_back(std::mem::take(&mut self.current));
        }
    }
}

impl<T: Clone + 'static> ContainerBuilder for VecBuilder<T> {
    type Container = Vec<T>;

    #[inline]
    fn extract(&mut self) -> Option<&mut Vec<T>> {
        let next = self.full.pop_front()?;
        Some(self.shipped.insert(next))
    }

    #[inline]
    fn finish(&mut self) -> Option<&mut Vec<T>> {
        if !self.current.is_empty() {
            self.full.push_back(std::mem::take(&mut self.current));
        }
        self.extract()
    }
}

impl<T: Clone + 'static> LengthPreservingContainerBuilder for VecBuilder<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything `builder` hands out from now on, by `finish`.
    fn finished(builder: &mut VecBuilder<u32>) -> Vec<Vec<u32>> {
        std::iter::from_fn(|| builder.finish().map(std::mem::take)).collect()
    }

    #[test]
    fn elements_leave_in_order_in_containers_of_at_most_ship_at() {
        let mut b = VecBuilder::<u32>::default();
        let n = VecBuilder::<u32>::SHIP_AT as u32 * 2 + 3;
        let mut extracted = Vec::new();
        for i in 0..n {
            b.push_into(i);
            while let Some(c) = b.extract() {
                extracted.push(std::mem::take(c));
            }
        }
        assert_eq!(extracted.len(), 2, "two full containers left on their own");
        extracted.extend(finished(&mut b));
        assert!(extracted.iter().all(|c| c.len() <= VecBuilder::<u32>::SHIP_AT));
        assert_eq!(extracted.concat(), (0..n).collect::<Vec<_>>());
        assert!(finished(&mut b).is_empty(), "nothing is left once finished");
    }

    #[test]
    fn a_container_starts_small_and_one_handed_back_is_reused() {
        let mut b = VecBuilder::<u32>::default();
        b.push_into(7);
        assert!(b.current.capacity() < 64, "no buffer reserved up front: {}", b.current.capacity());
        let shipped = b.finish().expect("one container");
        assert_eq!(*shipped, vec![7]);
        // timely took the elements and left the allocation behind.
        shipped.clear();
        let allocation = shipped.as_ptr();
        b.push_into(8);
        assert_eq!(b.current.as_ptr(), allocation);
        assert_eq!(finished(&mut b), vec![vec![8]]);
    }
}
