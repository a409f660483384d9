//! The softmax of rows of `f32` on the host, bit for bit what candle's CPU kernel
//! (`candle_nn::ops::softmax_last_dim`) computes.
//!
//! candle runs a softmax over a tensor as a parallel loop over its rows, each on a fresh
//! output buffer inside a tensor: for a model's last layer of ten classes that cost
//! about 700 instructions a row, more than the layer's matrix product (`digits.yaml`'s
//! models: 27% of a replay's instructions, `valgrind --tool=callgrind`). A dense model's
//! output on the CPU in f32 is copied out of its tensor anyway; [`softmax_rows`] then
//! computes the softmax in place (`model.rs`, and the tiny models' plain loops in
//! `dense_host.rs`), eight narrow rows side by side, so that their running maxima and
//! sums overlap (a replay of `digits.yaml` 10% faster, BENCHMARKS.md, "Replay",
//! thirteenth session).
//!
//! The arithmetic is candle's, in candle's order, so serving and replay answers stay
//! what they were: per row, the largest value (`f32::max` from the first, which skips
//! NaNs), each value's `exp` of its difference to it, their sum, then each divided by
//! the sum. Only the sum's order is particular: where the CPU has AVX2 (as candle finds
//! at run time), candle adds a row of 32 numbers or more in 32 running sums, reduces them
//! as its vector instructions do, then adds the rest one by one; [`row_sum`] does the same
//! additions in the same order. Elsewhere candle adds from left to right, and so does
//! this. On other architectures (whose vector sums candle lays out differently),
//! [`exact`] is false and the caller keeps candle's kernel.

/// Numbers in one step of candle's AVX2 sum (4 registers of 8).
const STEP: usize = 32;
/// Lanes of one register.
const LANES: usize = 8;

/// Whether [`softmax_rows`] is bit-identical to candle's softmax on this machine.
pub fn exact() -> bool {
    cfg!(any(target_arch = "x86", target_arch = "x86_64"))
}

/// Whether candle's sums on this machine take the AVX2 path.
fn avx2() -> bool {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        std::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
    {
        false
    }
}

/// Rows computed side by side where each row's sum is a plain left-to-right sum (rows
/// narrower than a step of candle's blocked sum, or no AVX2): a row's running maximum
/// and running sum are chains of dependent instructions, which alone kept the core
/// waiting for most of a ten-class row; eight rows' chains run in one loop and overlap.
const SIDE_BY_SIDE: usize = 8;

/// Replaces each row of `width` numbers of `values` by its softmax. A last partial row
/// (there is none when `values` holds whole rows) is left as it is.
pub fn softmax_rows(values: &mut [f32], width: usize) {
    if width == 0 {
        return;
    }
    let blocked = avx2();
    let whole_rows = values.len() / width * width;
    let rows = &mut values[..whole_rows];
    if blocked && width >= STEP {
        rows.chunks_exact_mut(width).for_each(|row| one_row(row, blocked));
        return;
    }
    let mut groups = rows.chunks_exact_mut(SIDE_BY_SIDE * width);
    for group in &mut groups {
        side_by_side(group, width);
    }
    groups.into_remainder().chunks_exact_mut(width).for_each(|row| one_row(row, blocked));
}

/// The softmax of one row.
fn one_row(row: &mut [f32], blocked: bool) {
    let max = row[1..].iter().fold(row[0], |m, &v| m.max(v));
    row.iter_mut().for_each(|v| *v = (*v - max).exp());
    let sum = row_sum(row, blocked);
    row.iter_mut().for_each(|v| *v /= sum);
}

/// The softmax of [`SIDE_BY_SIDE`] rows of `width` (`group`), each computed as
/// [`one_row`] computes it, in the same order: the maximum from the first number, the
/// sum from zero, left to right (the sum [`row_sum`] takes for a row of fewer than
/// [`STEP`] numbers, or without AVX2).
fn side_by_side(group: &mut [f32], width: usize) {
    let mut max = [0.0f32; SIDE_BY_SIDE];
    for (r, m) in max.iter_mut().enumerate() {
        *m = group[r * width];
    }
    for j in 1..width {
        for (r, m) in max.iter_mut().enumerate() {
            *m = m.max(group[r * width + j]);
        }
    }
    let mut sum = [0.0f32; SIDE_BY_SIDE];
    for j in 0..width {
        for (r, (s, m)) in sum.iter_mut().zip(&max).enumerate() {
            let e = (group[r * width + j] - m).exp();
            group[r * width + j] = e;
            *s += e;
        }
    }
    for (row, s) in group.chunks_exact_mut(width).zip(&sum) {
        row.iter_mut().for_each(|v| *v /= s);
    }
}

/// The sum of `row` in candle's order: with `blocked` (AVX2), 32 running sums over the
/// whole steps of 32, reduced pairwise as `vec_reduce` does (registers 0+1 and 2+3, then
/// those two; then the upper half of the 8 lanes onto the lower, then two horizontal
/// adds), then the rest from left to right; without, from left to right from zero.
fn row_sum(row: &[f32], blocked: bool) -> f32 {
    let whole = if blocked { row.len() / STEP * STEP } else { 0 };
    let mut sum = if whole == 0 {
        // candle's reduction of all-zero registers is +0.0, as the scalar sum's start.
        0.0f32
    } else {
        let mut acc = [[0.0f32; LANES]; STEP / LANES];
        for step in row[..whole].chunks_exact(STEP) {
            for (register, numbers) in acc.iter_mut().zip(step.chunks_exact(LANES)) {
                for (lane, v) in register.iter_mut().zip(numbers) {
                    *lane += v;
                }
            }
        }
        let [mut r0, r1, mut r2, r3] = acc;
        add_lanes(&mut r0, &r1);
        add_lanes(&mut r2, &r3);
        add_lanes(&mut r0, &r2);
        // The 256-bit register's upper 128 bits added onto its lower.
        let t0 = [r0[0] + r0[4], r0[1] + r0[5], r0[2] + r0[6], r0[3] + r0[7]];
        // `_mm_hadd_ps(t0, t0)` then `_mm_hadd_ps(t1, t1)`, lane 0.
        (t0[0] + t0[1]) + (t0[2] + t0[3])
    };
    for v in &row[whole..] {
        sum += v;
    }
    sum
}

/// `a[l] += b[l]` for every lane, as one vector addition does.
fn add_lanes(a: &mut [f32; LANES], b: &[f32; LANES]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    /// Logits of every sign and size, a few repeated (ties for the max), by a fixed rule.
    fn logits(rows: usize, width: usize, seed: u64) -> Vec<f32> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..rows * width)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let unit = (state >> 40) as f32 / (1u64 << 24) as f32;
                match state % 7 {
                    0 => 0.0,
                    1 => 3.0,
                    _ => (unit - 0.5) * 40.0,
                }
            })
            .collect()
    }

    fn candle_softmax(values: &[f32], rows: usize, width: usize) -> Vec<f32> {
        let t = Tensor::from_vec(values.to_vec(), (rows, width), &Device::Cpu).unwrap();
        candle_nn::ops::softmax_last_dim(&t).unwrap().flatten_all().unwrap().to_vec1().unwrap()
    }

    fn same_bits(ours: &[f32], theirs: &[f32]) -> bool {
        ours.len() == theirs.len()
            && ours.iter().zip(theirs).all(|(a, b)| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()))
    }

    #[test]
    fn every_width_gives_candles_bits() {
        assert!(exact(), "these tests run on x86-64");
        for width in 1..=130 {
            for rows in [1, 3, 11, 32] {
                let input = logits(rows, width, (width * 1000 + rows) as u64);
                let mut ours = input.clone();
                softmax_rows(&mut ours, width);
                assert!(same_bits(&ours, &candle_softmax(&input, rows, width)), "width {width}, {rows} rows");
            }
        }
    }

    #[test]
    fn infinities_and_nans_give_candles_bits() {
        let width = 40;
        let mut input = logits(4, width, 7);
        input[3] = f32::INFINITY;
        input[width + 5] = f32::NEG_INFINITY;
        input[2 * width + 1] = f32::NAN;
        input[3 * width..].iter_mut().for_each(|v| *v = f32::NEG_INFINITY);
        let mut ours = input.clone();
        softmax_rows(&mut ours, width);
        assert!(same_bits(&ours, &candle_softmax(&input, 4, width)));
    }

    #[test]
    fn the_order_of_the_sum_is_candles_not_left_to_right() {
        // Numbers whose left-to-right sum differs from the blocked one: the test above
        // would pass with either order only if no row told them apart.
        let row: Vec<f32> = (0..64).map(|i| if i % 9 == 0 { 1.0e8 } else { 1.0 + i as f32 * 1.0e-3 }).collect();
        let left_to_right = row.iter().fold(0.0f32, |s, v| s + v);
        if avx2() {
            assert_ne!(row_sum(&row, true).to_bits(), left_to_right.to_bits());
        }
        assert_eq!(row_sum(&row, false).to_bits(), left_to_right.to_bits());
    }
}
