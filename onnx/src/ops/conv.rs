//! 2-D convolution and pooling over `[N, C, H, W]` tensors: `Conv`, `MaxPool`, `AveragePool`,
//! `GlobalAveragePool`, on candle's `max_pool2d` and `avg_pool2d`; `Conv` as one matrix
//! product over the batch on the CPU (f32, one group), candle's `conv2d` otherwise.
//!
//! Limits, checked at load: 2-D only; `auto_pad` `NOTSET` or `VALID`; for `Conv`, equal
//! strides and dilations on both axes; for pools, no dilation, no `ceil_mode`, no `Indices`
//! output, and `AveragePool` padding only with `count_include_pad=1`. Asymmetric padding is
//! done by padding the input (zeros for `Conv` and `AveragePool`, `-inf` for `MaxPool`).

use candle_core::{DType, Layout, Storage, Tensor};

use super::{input, Kernel};
use crate::error::{KernelError, OnnxError};
use crate::node::NodeCtx;
use crate::value::Value;

/// Padding as `[top, left, bottom, right]`.
type Pads = [usize; 4];

/// The `pads` of a 2-D node (zeros when absent or `auto_pad` is `VALID`).
fn pads(ctx: &NodeCtx) -> Result<Pads, OnnxError> {
    match ctx.string("auto_pad")?.as_deref() {
        None | Some("NOTSET") => {}
        Some("VALID") => return Ok([0; 4]),
        Some(other) => return Err(ctx.err("attribute auto_pad", format!("{other} is not supported (NOTSET or VALID)"))),
    }
    match ctx.ints("pads") {
        None => Ok([0; 4]),
        Some(p) if p.len() == 4 && p.iter().all(|&x| x >= 0) => {
            Ok([p[0] as usize, p[1] as usize, p[2] as usize, p[3] as usize])
        }
        Some(p) => Err(ctx.err("attribute pads", format!("{p:?}: weir-onnx runs 2-D nodes with 4 non-negative pads"))),
    }
}

/// A 2-D attribute (`kernel_shape`, `strides`, `dilations`) as `(h, w)`, or `default`.
fn pair(ctx: &NodeCtx, name: &str, default: Option<(usize, usize)>) -> Result<(usize, usize), OnnxError> {
    match (ctx.ints(name), default) {
        (Some(v), _) if v.len() == 2 && v.iter().all(|&x| x > 0) => Ok((v[0] as usize, v[1] as usize)),
        (Some(v), _) => {
            Err(ctx.err(format!("attribute {name}"), format!("{v:?}: weir-onnx runs 2-D nodes (two positive values)")))
        }
        (None, Some(d)) => Ok(d),
        (None, None) => Err(ctx.err(format!("attribute {name}"), "missing")),
    }
}

/// `x` padded on H and W by `pads` with `value`.
fn pad(x: &Tensor, pads: Pads, value: f64) -> Result<Tensor, KernelError> {
    if pads == [0; 4] {
        return Ok(x.clone());
    }
    if value == 0.0 {
        return Ok(x.pad_with_zeros(2, pads[0], pads[2])?.pad_with_zeros(3, pads[1], pads[3])?);
    }
    let mut t = x.clone();
    for (dim, before, after) in [(2, pads[0], pads[2]), (3, pads[1], pads[3])] {
        let mut shape = t.dims().to_vec();
        let mut parts = Vec::with_capacity(3);
        if before > 0 {
            shape[dim] = before;
            parts.push(Tensor::full(value, shape.clone(), t.device())?.to_dtype(t.dtype())?);
        }
        parts.push(t.clone());
        if after > 0 {
            shape[dim] = after;
            parts.push(Tensor::full(value, shape.clone(), t.device())?.to_dtype(t.dtype())?);
        }
        t = Tensor::cat(&parts, dim)?;
    }
    Ok(t)
}

/// `Conv` (2-D) with its attributes.
#[derive(Debug)]
struct Conv {
    pads: Pads,
    stride: usize,
    dilation: usize,
    groups: usize,
}

/// Compiles `Conv`.
pub(crate) fn conv(ctx: &NodeCtx) -> Result<Box<dyn Kernel>, OnnxError> {
    ctx.inputs_between(2, 3)?;
    ctx.outputs_at_most(1)?;
    let (sh, sw) = pair(ctx, "strides", Some((1, 1)))?;
    let (dh, dw) = pair(ctx, "dilations", Some((1, 1)))?;
    if sh != sw || dh != dw {
        return Err(ctx.err("attribute strides", "different strides or dilations on H and W are not supported"));
    }
    if let Some(k) = ctx.ints("kernel_shape") {
        if k.len() != 2 {
            return Err(ctx.err("attribute kernel_shape", format!("{k:?}: weir-onnx runs 2-D convolutions")));
        }
    }
    let groups = ctx.int("group", 1);
    if groups < 1 {
        return Err(ctx.err("attribute group", format!("{groups}")));
    }
    Ok(Box::new(Conv { pads: pads(ctx)?, stride: sh, dilation: dh, groups: groups as usize }))
}

impl Kernel for Conv {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, KernelError> {
        let x = input(inputs, 0)?.tensor(0)?;
        let w = input(inputs, 1)?.tensor(1)?;
        if x.rank() != 4 || w.rank() != 4 {
            return Err(KernelError::input(
                0,
                format!("Conv takes 4-D input and weights, got {:?} and {:?}", x.dims(), w.dims()),
            ));
        }
        let bias = match inputs.get(2).copied().flatten() {
            Some(b) => Some(b.tensor(2)?),
            None => None,
        };
        if self.groups == 1 && x.device().is_cpu() && x.dtype() == DType::F32 && w.dtype() == DType::F32 {
            return Ok(vec![Value::Tensor(self.im2col(
                &pad(x, self.pads, 0.0)?.contiguous()?,
                &w.contiguous()?,
                bias,
            )?)]);
        }
        let [t, l, b, r] = self.pads;
        let (x, p) = if t == b && l == r && t == l { (x.clone(), t) } else { (pad(x, self.pads, 0.0)?, 0) };
        let mut y = x.conv2d(w, p, self.stride, self.dilation, self.groups)?;
        if let Some(bias) = bias {
            y = y.broadcast_add(&bias.reshape((1, bias.elem_count(), 1, 1))?)?;
        }
        Ok(vec![Value::Tensor(y)])
    }
}

impl Conv {
    /// The convolution of a padded `[N, C, H, W]` f32 `x` on the CPU as one matrix product
    /// over the whole batch: the weights as `[OC, C * kh * kw]` times the patches of every
    /// output position of every image as the columns of one `[C * kh * kw, N * Ho * Wo]`
    /// matrix. candle's `conv2d` multiplies image by image (a batch of small
    /// products), which costs several times more on small images such as 8x8 digits.
    fn im2col(&self, x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<Tensor, KernelError> {
        let (n, c, h, wd) = x.dims4()?;
        let (oc, wc, kh, kw) = w.dims4()?;
        if wc != c {
            return Err(KernelError::input(1, format!("weights {:?} for an input of {c} channels", w.dims())));
        }
        let (s, d) = (self.stride, self.dilation);
        let (span_h, span_w) = (d * (kh - 1) + 1, d * (kw - 1) + 1);
        if h < span_h || wd < span_w {
            return Err(KernelError::input(
                0,
                format!("input {:?} is smaller than the kernel {:?}", x.dims(), w.dims()),
            ));
        }
        let (ho, wo) = ((h - span_h) / s + 1, (wd - span_w) / s + 1);
        let (ck, plane) = (c * kh * kw, ho * wo);
        let guard = x.storage_and_layout();
        let xs = cpu_f32(&guard.0, guard.1, x)?;
        // The patches as columns: row (ci, ky, kx) of `col` holds, for every image and
        // output position, the input value under that kernel tap; with stride 1 each output
        // row's values are one contiguous run of the input.
        let mut col = vec![0f32; ck * n * plane];
        for (tap, dst) in col.chunks_exact_mut(n * plane).enumerate() {
            let (ci, ky, kx) = (tap / (kh * kw), tap / kw % kh, tap % kw);
            for (img, dst) in dst.chunks_exact_mut(plane).enumerate() {
                let src = &xs[(img * c + ci) * h * wd..][..h * wd];
                for (oy, dst) in dst.chunks_exact_mut(wo).enumerate() {
                    let line = &src[(oy * s + ky * d) * wd + kx * d..];
                    if s == 1 {
                        dst.copy_from_slice(&line[..wo]);
                    } else {
                        for (ox, v) in dst.iter_mut().enumerate() {
                            *v = line[ox * s];
                        }
                    }
                }
            }
        }
        drop(guard);
        let col = Tensor::from_vec(col, (ck, n * plane), x.device())?;
        // [OC, N * Ho * Wo], then to [N, OC, Ho, Wo] with the bias added.
        let y = w.reshape((oc, ck))?.matmul(&col)?.flatten_all()?.to_vec1::<f32>()?;
        let bias = match bias {
            Some(b) => b.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?,
            None => vec![0.0; oc],
        };
        if bias.len() != oc {
            return Err(KernelError::input(2, format!("{} biases for {oc} output channels", bias.len())));
        }
        let mut out = vec![0f32; n * oc * plane];
        for (o, (y_o, b)) in y.chunks_exact(n * plane).zip(&bias).enumerate() {
            for (img, y_img) in y_o.chunks_exact(plane).enumerate() {
                for (d, v) in out[(img * oc + o) * plane..][..plane].iter_mut().zip(y_img) {
                    *d = v + b;
                }
            }
        }
        Ok(Tensor::from_vec(out, (n, oc, ho, wo), x.device())?)
    }
}

/// A pooling operator.
#[derive(Debug)]
enum Pool {
    Max { kernel: (usize, usize), stride: (usize, usize), pads: Pads },
    Average { kernel: (usize, usize), stride: (usize, usize), pads: Pads },
    GlobalAverage,
}

/// Compiles `MaxPool`, `AveragePool` or `GlobalAveragePool`.
pub(crate) fn pool(ctx: &NodeCtx) -> Result<Box<dyn Kernel>, OnnxError> {
    ctx.inputs_between(1, 1)?;
    ctx.outputs_at_most(1)?;
    let op = ctx.node.op_type();
    if op == "GlobalAveragePool" {
        return Ok(Box::new(Pool::GlobalAverage));
    }
    if ctx.int("ceil_mode", 0) != 0 {
        return Err(ctx.err("attribute ceil_mode", "ceil_mode=1 is not supported"));
    }
    if pair(ctx, "dilations", Some((1, 1)))? != (1, 1) {
        return Err(ctx.err("attribute dilations", "dilated pooling is not supported"));
    }
    let kernel = pair(ctx, "kernel_shape", None)?;
    let stride = pair(ctx, "strides", Some((1, 1)))?;
    let pads = pads(ctx)?;
    if op == "MaxPool" {
        return Ok(Box::new(Pool::Max { kernel, stride, pads }));
    }
    if pads != [0; 4] && ctx.int("count_include_pad", 0) == 0 {
        return Err(ctx.err("attribute count_include_pad", "padded AveragePool needs count_include_pad=1"));
    }
    Ok(Box::new(Pool::Average { kernel, stride, pads }))
}

impl Kernel for Pool {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, KernelError> {
        let x = input(inputs, 0)?.tensor(0)?;
        if x.rank() != 4 {
            return Err(KernelError::input(0, format!("pooling takes a 4-D input, got {:?}", x.dims())));
        }
        let y = match self {
            Self::Max { kernel, stride, pads } if x.device().is_cpu() && x.dtype() == DType::F32 => {
                max_pool_f32(&pad(x, *pads, f64::NEG_INFINITY)?.contiguous()?, *kernel, *stride)?
            }
            Self::Max { kernel, stride, pads } => {
                pad(x, *pads, f64::NEG_INFINITY)?.max_pool2d_with_stride(*kernel, *stride)?
            }
            Self::Average { kernel, stride, pads } => pad(x, *pads, 0.0)?.avg_pool2d_with_stride(*kernel, *stride)?,
            Self::GlobalAverage => x.mean_keepdim(3)?.mean_keepdim(2)?,
        };
        Ok(vec![Value::Tensor(y)])
    }
}

/// `MaxPool` of a padded `[N, C, H, W]` f32 tensor on the CPU, plane by plane over
/// contiguous rows (candle's `max_pool2d` indexes every element through its strides).
fn max_pool_f32(x: &Tensor, (kh, kw): (usize, usize), (sh, sw): (usize, usize)) -> Result<Tensor, KernelError> {
    let (n, c, h, w) = x.dims4()?;
    if h < kh || w < kw {
        return Err(KernelError::input(0, format!("input {:?} is smaller than the pool {kh}x{kw}", x.dims())));
    }
    let (ho, wo) = ((h - kh) / sh + 1, (w - kw) / sw + 1);
    let guard = x.storage_and_layout();
    let xs = cpu_f32(&guard.0, guard.1, x)?;
    let mut out = vec![f32::NEG_INFINITY; n * c * ho * wo];
    for (src, dst) in xs.chunks_exact(h * w).zip(out.chunks_exact_mut(ho * wo)) {
        for (oy, dst) in dst.chunks_exact_mut(wo).enumerate() {
            for ky in 0..kh {
                let line = &src[(oy * sh + ky) * w..][..w];
                for (ox, m) in dst.iter_mut().enumerate() {
                    for v in &line[ox * sw..ox * sw + kw] {
                        *m = m.max(*v);
                    }
                }
            }
        }
    }
    drop(guard);
    Ok(Tensor::from_vec(out, (n, c, ho, wo), x.device())?)
}

/// The elements of a contiguous f32 tensor on the CPU, read in place (no copy).
fn cpu_f32<'a>(storage: &'a Storage, layout: &Layout, x: &Tensor) -> Result<&'a [f32], KernelError> {
    match (storage, layout.contiguous_offsets()) {
        (Storage::Cpu(cpu), Some((start, end))) => Ok(&cpu.as_slice::<f32>()?[start..end]),
        _ => Err(KernelError::input(0, format!("expected a contiguous f32 tensor on the CPU, got {:?}", x.layout()))),
    }
}
