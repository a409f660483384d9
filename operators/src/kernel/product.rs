//! One dense layer's matrix product on the host, as candle's CPU backend computes it.
//!
//! candle's `Tensor::matmul` on the CPU ends in one call to the `gemm` crate. Around it,
//! a forward pass of a small model pays more than the product of a small batch costs: a
//! tensor and its layout built around the input, the shapes and strides checked, the
//! `RAYON_NUM_THREADS` environment variable read (a lock and a scan of the environment,
//! on every product), the result's storage wrapped in a tensor, then copied out of it
//! with `to_vec1` (BENCHMARKS.md, "Replay", 2026-12-07, tenth session). [`product`] makes
//! the same call to `gemm` on the caller's slices, with the strides candle passes for a
//! contiguous `[rows, in]` input and a contiguous `[in, out]` weight, and returns the
//! result as it comes.
//!
//! The same bits as candle: each output is the dot product of a row and a column summed
//! by the same microkernel in the same order. The call is candle's, parallelism
//! included where `RAYON_NUM_THREADS` is 1, as the `weir` binary and the benches set it
//! unless the user did (`weir::one_thread_per_forward_pass`); with more threads candle
//! would ask `gemm` for them, and `gemm` splits a product across threads by blocks of
//! rows and columns only, never along the sums, so no output would change either. The
//! tests compare with candle bit for bit.

use gemm::Parallelism;

/// `x · w`: `x` holds `rows` rows of `inputs` numbers, `w` is `[inputs, outputs]`
/// row-major; returns `rows` rows of `outputs` numbers.
///
/// # Panics
///
/// If `x` or `w` holds fewer numbers than those shapes say (a caller's bug: the node
/// checks a batch's width before its forward pass).
pub fn product(x: &[f32], rows: usize, inputs: usize, w: &[f32], outputs: usize) -> Vec<f32> {
    // Checked products: a wrapped one could pass the test and let `gemm` read past the end.
    let fits = |a: usize, b: usize, len: usize| a.checked_mul(b).is_some_and(|n| n <= len);
    assert!(
        fits(rows, inputs, x.len()) && fits(inputs, outputs, w.len()) && rows.checked_mul(outputs).is_some(),
        "a product of [{rows}, {inputs}] by [{inputs}, {outputs}] given {} and {} numbers",
        x.len(),
        w.len()
    );
    let mut out = vec![0.0f32; rows * outputs];
    if out.is_empty() {
        return out;
    }
    // SAFETY: `gemm` reads `x[i * inputs + j]` for i < rows, j < inputs (row stride
    // `inputs`, column stride 1), `w[j * outputs + c]` for j < inputs, c < outputs, and
    // writes `out[i * outputs + c]`: every index is within the lengths asserted above.
    // `read_dst` is false and alpha 0, so `out`'s zeros are overwritten, never read; the
    // three buffers are distinct allocations (two shared borrows and one owned), and
    // `Parallelism::None` runs the whole product on this thread before the call returns.
    #[allow(unsafe_code)]
    unsafe {
        gemm::gemm(
            rows,
            outputs,
            inputs,
            out.as_mut_ptr(),
            1,
            outputs as isize,
            false,
            x.as_ptr(),
            1,
            inputs as isize,
            w.as_ptr(),
            1,
            outputs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    fn numbers(n: usize, seed: u32) -> Vec<f32> {
        // Uneven magnitudes and signs, so a different order of the sums would show.
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                ((s % 20_001) as f32 - 10_000.0) / 997.0 * if s.is_multiple_of(7) { 1e3 } else { 1.0 }
            })
            .collect()
    }

    /// candle's product of the same numbers, the weight made `[in, out]` contiguous as
    /// `DenseModel::instantiate` makes it.
    fn candle(x: &[f32], rows: usize, inputs: usize, w_out_in: &[f32], outputs: usize) -> Vec<f32> {
        let cpu = Device::Cpu;
        let w = Tensor::from_slice(w_out_in, (outputs, inputs), &cpu).unwrap().t().unwrap().contiguous().unwrap();
        let x = Tensor::from_slice(x, (rows, inputs), &cpu).unwrap();
        x.matmul(&w).unwrap().flatten_all().unwrap().to_vec1().unwrap()
    }

    fn transposed(w_out_in: &[f32], inputs: usize, outputs: usize) -> Vec<f32> {
        (0..inputs).flat_map(|j| (0..outputs).map(move |c| w_out_in[c * inputs + j])).collect()
    }

    #[test]
    fn every_shape_and_batch_gives_candles_bits() {
        let shapes = [(1, 1), (3, 2), (9, 1), (64, 10), (64, 32), (32, 10), (100, 7), (300, 300), (17, 129)];
        for (s, (inputs, outputs)) in shapes.into_iter().enumerate() {
            let w = numbers(inputs * outputs, s as u32);
            let w_in_out = transposed(&w, inputs, outputs);
            for rows in (1..=70).chain([127, 128, 129, 513]) {
                let x = numbers(rows * inputs, 1000 + rows as u32);
                let got = product(&x, rows, inputs, &w_in_out, outputs);
                let expected = candle(&x, rows, inputs, &w, outputs);
                let same = got.iter().zip(&expected).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same && got.len() == expected.len(), "[{rows}, {inputs}] x [{inputs}, {outputs}]");
            }
        }
    }

    #[test]
    fn no_rows_is_no_numbers() {
        assert!(product(&[], 0, 4, &[1.0; 8], 2).is_empty());
    }

    #[test]
    #[should_panic(expected = "a product of [2, 4] by [4, 2] given 7 and 8 numbers")]
    fn too_few_numbers_is_refused_before_any_read() {
        product(&[0.0; 7], 2, 4, &[1.0; 8], 2);
    }

    #[test]
    #[should_panic(expected = "a product of")]
    fn shapes_whose_size_wraps_around_are_refused() {
        // rows * inputs wraps to 0 in usize: it must not pass for an empty input.
        product(&[], usize::MAX / 2 + 1, 2, &[1.0; 2], 1);
    }
}
