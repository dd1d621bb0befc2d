//! Stage 2 (SPEC §4.1, §6.4): the NHWC kernels of `super::kernels` as candle custom ops.
//!
//! Tensors here are NHWC `(n, h, w, c)` f32 on the CPU, contiguous. Each op checks its
//! inputs' shapes and returns a candle error (never panics) when they do not fit.

use super::kernels::{self, ConvWeights, Kernel};
use candle_core::{
    bail, CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor,
};
use std::sync::Arc;

/// The f32 data of a contiguous CPU tensor.
fn data<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    let v = match s {
        CpuStorage::F32(v) => v.as_slice(),
        _ => bail!("{op}: expected f32 data"),
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => bail!("{op}: input must be contiguous"),
    }
}

/// The `(n, h, w, c)` dimensions of an NHWC tensor.
fn nhwc(l: &Layout, op: &str) -> Result<(usize, usize, usize, usize)> {
    match *l.dims() {
        [n, h, w, c] => Ok((n, h, w, c)),
        ref d => bail!("{op}: expected an NHWC tensor (rank 4), got shape {d:?}"),
    }
}

/// The values of a tensor of any shape, as f32.
fn f32_values(t: &Tensor) -> Result<Vec<f32>> {
    t.to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()
}

/// The `(n, h, w, ca, cb)` of two NHWC tensors with the same `n`, `h` and `w` and a nonzero
/// number of channels each, for ops on their channel concatenation.
fn nhwc_pair(l1: &Layout, l2: &Layout, op: &str) -> Result<(usize, usize, usize, usize, usize)> {
    let (n, h, w, ca) = nhwc(l1, op)?;
    let (n2, h2, w2, cb) = nhwc(l2, op)?;
    if (n, h, w) != (n2, h2, w2) || ca == 0 || cb == 0 {
        bail!(
            "{op}: shapes {:?} and {:?} do not fit",
            l1.dims(),
            l2.dims()
        );
    }
    Ok((n, h, w, ca, cb))
}

/// Checks that a convolution's bias has `cout` elements.
fn check_bias(lb: &Layout, cout: usize) -> Result<()> {
    if lb.shape().elem_count() != cout {
        bail!(
            "conv: bias has {} elements, expected {cout}",
            lb.shape().elem_count()
        );
    }
    Ok(())
}

/// A convolution with its weights converted once to the kernel's layout. Apply it with
/// [`Conv::forward`]; the bias is a tensor so that callers can fold per-call terms into it
/// (the ResBlock's noise-level embedding).
#[derive(Clone, Debug)]
pub struct Conv {
    w: Arc<ConvWeights>,
    /// Fused SiLU(ChanNorm) on the output: (gamma, beta).
    post: Option<Arc<(Vec<f32>, Vec<f32>)>>,
}

impl Conv {
    /// Builds the op from candle / PyTorch weights `[cout, cin', kh, kw]` (see
    /// [`ConvWeights::from_oihw`] for what `cin'`, `kh` and `kw` are per kernel).
    pub fn new(kernel: Kernel, weight: &Tensor) -> Result<Self> {
        let dims = weight.dims().to_vec();
        let (cout, cin_w, kh, kw) = match *dims.as_slice() {
            [a, b, c, d] => (a, b, c, d),
            _ => bail!("conv weight: expected rank 4, got shape {dims:?}"),
        };
        let (cin, want_k) = match kernel {
            Kernel::K1 => (cin_w, 1),
            Kernel::K3 => (cin_w, 3),
            Kernel::Down2 => (cin_w / 4, 1),
        };
        if kh != want_k || kw != want_k || (kernel == Kernel::Down2 && cin_w % 4 != 0) {
            bail!("conv weight: shape {dims:?} does not fit kernel {kernel:?}");
        }
        let v = f32_values(weight)?;
        match ConvWeights::from_oihw(kernel, &v, cout, cin) {
            Some(w) => Ok(Conv {
                w: Arc::new(w),
                post: None,
            }),
            None => bail!("conv weight: shape {dims:?} does not fit kernel {kernel:?}"),
        }
    }

    /// The same convolution followed by SiLU(ChanNorm(.)) with affine parameters `gamma` and
    /// `beta` (`cout` values each), fused into the convolution's output pass.
    pub fn with_norm_silu(&self, gamma: &Tensor, beta: &Tensor) -> Result<Self> {
        let (g, b) = (f32_values(gamma)?, f32_values(beta)?);
        if g.len() != self.w.cout() || b.len() != self.w.cout() {
            bail!(
                "conv: norm parameters have {} and {} values, expected {}",
                g.len(),
                b.len(),
                self.w.cout()
            );
        }
        Ok(Conv {
            w: self.w.clone(),
            post: Some(Arc::new((g, b))),
        })
    }

    fn post(&self) -> Option<(&[f32], &[f32])> {
        self.post.as_ref().map(|p| (&p.0[..], &p.1[..]))
    }

    /// The converted weights.
    pub fn weights(&self) -> &ConvWeights {
        &self.w
    }

    /// `conv(x) + bias (+ residual)`; `x` is NHWC, `bias` has `cout` elements, `residual` has
    /// the output's shape.
    pub fn forward(&self, x: &Tensor, bias: &Tensor, residual: Option<&Tensor>) -> Result<Tensor> {
        match residual {
            None => x.apply_op2_no_bwd(bias, self),
            Some(r) => x.apply_op3_no_bwd(bias, r, self),
        }
    }

    /// `conv1x1([a, b]) + bias` for the channel concatenation of NHWC tensors `a` and `b`,
    /// without building it (a plain [`Kernel::K1`] convolution only).
    pub fn forward_concat(&self, a: &Tensor, b: &Tensor, bias: &Tensor) -> Result<Tensor> {
        a.apply_op3_no_bwd(b, bias, &ConcatConv(self))
    }

    fn check(&self, l: &Layout, lb: &Layout) -> Result<(usize, usize, usize, Shape)> {
        let (n, h, w, c) = nhwc(l, "conv")?;
        let wt = &self.w;
        if c != wt.cin() {
            bail!(
                "conv: input has {c} channels, the weights expect {}",
                wt.cin()
            );
        }
        if wt.kernel() == Kernel::Down2 && (h % 2 != 0 || w % 2 != 0) {
            bail!("conv: downsampling needs an even height and width, got {h}x{w}");
        }
        check_bias(lb, wt.cout())?;
        let (ho, wo) = wt.kernel().out_dims(h, w);
        Ok((n, h, w, Shape::from((n, ho, wo, wt.cout()))))
    }
}

impl CustomOp2 for Conv {
    fn name(&self) -> &'static str {
        "conv-nhwc"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, h, w, shape) = self.check(l1, l2)?;
        let x = data(s1, l1, "conv")?;
        let b = data(s2, l2, "conv")?;
        let mut out = vec![0.0f32; shape.elem_count()];
        kernels::conv(x, n, h, w, &self.w, b, None, self.post(), &mut out);
        Ok((CpuStorage::F32(out), shape))
    }
}

impl CustomOp3 for Conv {
    fn name(&self) -> &'static str {
        "conv-nhwc-residual"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, h, w, shape) = self.check(l1, l2)?;
        if l3.shape() != &shape {
            bail!(
                "conv: residual has shape {:?}, expected {:?}",
                l3.dims(),
                shape.dims()
            );
        }
        let x = data(s1, l1, "conv")?;
        let b = data(s2, l2, "conv")?;
        let r = data(s3, l3, "conv")?;
        let mut out = vec![0.0f32; shape.elem_count()];
        kernels::conv(x, n, h, w, &self.w, b, Some(r), self.post(), &mut out);
        Ok((CpuStorage::F32(out), shape))
    }
}

/// A 1x1 [`Conv`] applied to the channel concatenation of two tensors (see
/// [`Conv::forward_concat`]).
struct ConcatConv<'a>(&'a Conv);

impl CustomOp3 for ConcatConv<'_> {
    fn name(&self) -> &'static str {
        "conv1x1-concat-nhwc"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let wt = self.0.weights();
        let (n, h, w, ca) = nhwc(l1, "conv")?;
        let (n2, h2, w2, cb) = nhwc(l2, "conv")?;
        if (n, h, w) != (n2, h2, w2) || ca == 0 || cb == 0 || ca + cb != wt.cin() {
            bail!(
                "conv: inputs {:?} and {:?} do not fit a 1x1 convolution of {} channels",
                l1.dims(),
                l2.dims(),
                wt.cin()
            );
        }
        if wt.kernel() != Kernel::K1 || self.0.post.is_some() {
            bail!("conv: concatenated inputs need a plain 1x1 convolution");
        }
        check_bias(l3, wt.cout())?;
        let a = data(s1, l1, "conv")?;
        let b = data(s2, l2, "conv")?;
        let bias = data(s3, l3, "conv")?;
        let mut out = vec![0.0f32; n * h * w * wt.cout()];
        kernels::conv1x1_concat(a, ca, b, cb, wt, bias, &mut out);
        Ok((CpuStorage::F32(out), Shape::from((n, h, w, wt.cout()))))
    }
}

/// ChanNorm (per-pixel LayerNorm over channels, eps 1e-5, affine), optionally fused with SiLU.
#[derive(Clone, Copy, Debug)]
struct ChanNormOp {
    silu: bool,
}

impl CustomOp3 for ChanNormOp {
    fn name(&self) -> &'static str {
        "chan-norm-silu-nhwc"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let c = match l1.dims().last() {
            Some(&c) if c > 0 => c,
            _ => bail!("chan_norm: bad input shape {:?}", l1.dims()),
        };
        if l2.shape().elem_count() != c || l3.shape().elem_count() != c {
            bail!("chan_norm: weight and bias need {c} elements");
        }
        let x = data(s1, l1, "chan_norm")?;
        let g = data(s2, l2, "chan_norm")?;
        let b = data(s3, l3, "chan_norm")?;
        let mut out = vec![0.0f32; x.len()];
        kernels::chan_norm_silu(x, c, g, b, self.silu, &mut out);
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// ChanNorm over the last (channel) axis of `x`, then SiLU when `silu` is set.
pub fn chan_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, silu: bool) -> Result<Tensor> {
    x.apply_op3_no_bwd(weight, bias, &ChanNormOp { silu })
}

/// [`chan_norm`] of the channel concatenation of two NHWC tensors, without building it.
#[derive(Clone, Copy, Debug)]
struct ChanNormConcatOp {
    silu: bool,
}

impl CustomOp3 for ChanNormConcatOp {
    fn name(&self) -> &'static str {
        "chan-norm-silu-concat-nhwc"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, h, w, ca, cb) = nhwc_pair(l1, l2, "chan_norm")?;
        let c = ca + cb;
        if l3.dims() != [2, c] {
            bail!(
                "chan_norm: parameters have shape {:?}, expected [2, {c}]",
                l3.dims()
            );
        }
        let a = data(s1, l1, "chan_norm")?;
        let b = data(s2, l2, "chan_norm")?;
        let gb = data(s3, l3, "chan_norm")?;
        let mut out = vec![0.0f32; a.len() + b.len()];
        kernels::chan_norm_silu_concat(a, ca, b, cb, &gb[..c], &gb[c..], self.silu, &mut out);
        Ok((CpuStorage::F32(out), Shape::from((n, h, w, c))))
    }
}

/// [`chan_norm`] of the channel concatenation `[a, b]` of two NHWC tensors without building
/// it; `weight_bias` is `(2, ca + cb)`: the weight, then the bias.
pub fn chan_norm_concat(
    a: &Tensor,
    b: &Tensor,
    weight_bias: &Tensor,
    silu: bool,
) -> Result<Tensor> {
    a.apply_op3_no_bwd(b, weight_bias, &ChanNormConcatOp { silu })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reshuffle {
    Shuffle,
    Unshuffle,
    NchwUnshuffleToNhwc,
    NhwcShuffleToNchw,
}

impl CustomOp1 for Reshuffle {
    fn name(&self) -> &'static str {
        match self {
            Reshuffle::Shuffle => "pixel-shuffle-nhwc",
            Reshuffle::Unshuffle => "pixel-unshuffle-nhwc",
            Reshuffle::NchwUnshuffleToNhwc => "nchw-unshuffle-to-nhwc",
            Reshuffle::NhwcShuffleToNchw => "nhwc-shuffle-to-nchw",
        }
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let name = self.name();
        let (a, b, c, d) = nhwc(l, name)?;
        let x = data(s, l, name)?;
        let mut out = vec![0.0f32; x.len()];
        let shape = match self {
            Reshuffle::Shuffle | Reshuffle::NhwcShuffleToNchw => {
                let (n, h, w, c4) = (a, b, c, d);
                if c4 % 4 != 0 {
                    bail!("{name}: channels ({c4}) must be a multiple of 4");
                }
                if *self == Reshuffle::Shuffle {
                    kernels::pixel_shuffle(x, n, h, w, c4 / 4, &mut out);
                    Shape::from((n, 2 * h, 2 * w, c4 / 4))
                } else {
                    kernels::nhwc_shuffle_to_nchw(x, n, h, w, c4 / 4, &mut out);
                    Shape::from((n, c4 / 4, 2 * h, 2 * w))
                }
            }
            Reshuffle::Unshuffle | Reshuffle::NchwUnshuffleToNhwc => {
                let (n, h, w, ch) = if *self == Reshuffle::Unshuffle {
                    (a, b, c, d)
                } else {
                    (a, c, d, b)
                };
                if h % 2 != 0 || w % 2 != 0 {
                    bail!("{name}: height and width must be even, got {h}x{w}");
                }
                if *self == Reshuffle::Unshuffle {
                    kernels::pixel_unshuffle(x, n, h, w, ch, &mut out);
                } else {
                    kernels::nchw_unshuffle_to_nhwc(x, n, ch, h, w, &mut out);
                }
                Shape::from((n, h / 2, w / 2, 4 * ch))
            }
        };
        Ok((CpuStorage::F32(out), shape))
    }
}

/// NHWC pixel-shuffle 2x2: `(n, h, w, 4c) -> (n, 2h, 2w, c)` (PyTorch's channel order).
pub fn pixel_shuffle(x: &Tensor) -> Result<Tensor> {
    x.apply_op1_no_bwd(&Reshuffle::Shuffle)
}

/// NHWC pixel-unshuffle 2x2: `(n, h, w, c) -> (n, h/2, w/2, 4c)` (PyTorch's channel order).
/// The network uses the fused form ([`nchw_unshuffle_to_nhwc`]); this one is checked by the
/// tests below.
#[cfg_attr(not(test), allow(dead_code))]
pub fn pixel_unshuffle(x: &Tensor) -> Result<Tensor> {
    x.apply_op1_no_bwd(&Reshuffle::Unshuffle)
}

/// Planar `(n, c, h, w)` -> NHWC pixel-unshuffled `(n, h/2, w/2, 4c)` in one pass.
pub fn nchw_unshuffle_to_nhwc(x: &Tensor) -> Result<Tensor> {
    x.apply_op1_no_bwd(&Reshuffle::NchwUnshuffleToNhwc)
}

/// NHWC `(n, h, w, 4c)` -> planar pixel-shuffled `(n, c, 2h, 2w)` in one pass.
pub fn nhwc_shuffle_to_nchw(x: &Tensor) -> Result<Tensor> {
    x.apply_op1_no_bwd(&Reshuffle::NhwcShuffleToNchw)
}

/// The network uses the fused `chan_norm_concat`; this op is checked by the tests below.
#[cfg_attr(not(test), allow(dead_code))]
struct Concat;

impl CustomOp2 for Concat {
    fn name(&self) -> &'static str {
        "concat-channels-nhwc"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, h, w, ca, cb) = nhwc_pair(l1, l2, "concat")?;
        let a = data(s1, l1, "concat")?;
        let b = data(s2, l2, "concat")?;
        let mut out = vec![0.0f32; a.len() + b.len()];
        kernels::concat_channels(a, ca, b, cb, &mut out);
        Ok((CpuStorage::F32(out), Shape::from((n, h, w, ca + cb))))
    }
}

/// NHWC channel concatenation `[a, b]` (PyTorch's `torch.cat([a, b], dim=1)` in NCHW).
#[cfg_attr(not(test), allow(dead_code))]
pub fn concat_channels(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    a.apply_op2_no_bwd(b, &Concat)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, D};

    fn rand(shape: &[usize], seed: u64) -> Tensor {
        // A small deterministic generator: tests do not depend on candle's RNG.
        let n: usize = shape.iter().product();
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let v: Vec<f32> = (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn to_nhwc(x: &Tensor) -> Tensor {
        x.permute((0, 2, 3, 1)).unwrap().contiguous().unwrap()
    }

    fn to_nchw(x: &Tensor) -> Tensor {
        x.permute((0, 3, 1, 2)).unwrap().contiguous().unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        assert_eq!(a.dims(), b.dims());
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    fn bits(t: &Tensor) -> Vec<u32> {
        t.flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect()
    }

    fn with_threads<T: Send>(n: usize, f: impl FnOnce() -> T + Send) -> T {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
            .install(f)
    }

    /// Candle reference: NCHW conv2d + bias (+ residual), for an NHWC input.
    fn reference_conv(
        kernel: Kernel,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        r: Option<&Tensor>,
    ) -> Tensor {
        let xn = to_nchw(x);
        let (xn, pad) = match kernel {
            Kernel::K1 => (xn, 0),
            Kernel::K3 => (xn, 1),
            Kernel::Down2 => (to_nchw(&pixel_unshuffle_reference(x)), 0),
        };
        let y = xn.conv2d(w, pad, 1, 1, 1).unwrap();
        let y = y.broadcast_add(&b.reshape((1, (), 1, 1)).unwrap()).unwrap();
        let y = to_nhwc(&y);
        match r {
            Some(r) => (y + r).unwrap(),
            None => y,
        }
    }

    /// PyTorch's pixel_unshuffle, NHWC, written with reshapes and permutes.
    fn pixel_unshuffle_reference(x: &Tensor) -> Tensor {
        let (n, h, w, c) = x.dims4().unwrap();
        x.reshape((n, h / 2, 2, w / 2, 2, c))
            .unwrap()
            .permute((0, 1, 3, 5, 2, 4))
            .unwrap()
            .reshape((n, h / 2, w / 2, 4 * c))
            .unwrap()
    }

    #[test]
    fn conv_matches_candle_conv2d() {
        // Sizes cover partial last tiles, borders, 1-pixel-wide images and a batch of 2.
        let cases: &[(Kernel, usize, usize, usize, usize, usize, bool)] = &[
            (Kernel::K3, 1, 13, 17, 12, 48, false),
            (Kernel::K3, 2, 16, 24, 48, 48, true),
            (Kernel::K3, 1, 1, 5, 8, 4, true),
            (Kernel::K3, 1, 7, 1, 8, 4, false),
            (Kernel::K1, 1, 9, 31, 96, 48, true),
            (Kernel::K1, 2, 8, 8, 64, 256, false),
            (Kernel::Down2, 1, 10, 26, 48, 64, false),
            (Kernel::Down2, 2, 4, 2, 8, 16, true),
        ];
        for (i, &(kernel, n, h, w, cin, cout, res)) in cases.iter().enumerate() {
            let k = if kernel == Kernel::K3 { 3 } else { 1 };
            let cin_w = if kernel == Kernel::Down2 {
                4 * cin
            } else {
                cin
            };
            let x = rand(&[n, h, w, cin], 10 + i as u64);
            let wt = (rand(&[cout, cin_w, k, k], 20 + i as u64) * 0.2).unwrap();
            let b = rand(&[cout], 30 + i as u64);
            let (ho, wo) = kernel.out_dims(h, w);
            let r = res.then(|| rand(&[n, ho, wo, cout], 40 + i as u64));
            let conv = Conv::new(kernel, &wt).unwrap();
            let got = conv.forward(&x, &b, r.as_ref()).unwrap();
            let want = reference_conv(kernel, &x, &wt, &b, r.as_ref());
            let d = max_diff(&got, &want);
            assert!(d < 1e-5, "case {i} ({kernel:?}): max diff {d}");
        }
    }

    #[test]
    fn fused_norm_equals_separate_norm() {
        let x = rand(&[1, 20, 30, 24], 5);
        let wt = (rand(&[40, 24, 3, 3], 6) * 0.1).unwrap();
        let (b, g, be) = (rand(&[40], 7), rand(&[40], 8), rand(&[40], 9));
        let conv = Conv::new(Kernel::K3, &wt).unwrap();
        let fused = conv.with_norm_silu(&g, &be).unwrap();
        let separate = chan_norm(&conv.forward(&x, &b, None).unwrap(), &g, &be, true).unwrap();
        assert_eq!(bits(&fused.forward(&x, &b, None).unwrap()), bits(&separate));
    }

    #[test]
    fn concat_fusions_match_concat_then_op() {
        let a = rand(&[1, 9, 13, 16], 93);
        let b = rand(&[1, 9, 13, 24], 94);
        let cat = concat_channels(&a, &b).unwrap();
        let (g, be) = (rand(&[40], 95), rand(&[40], 96));
        let gb = Tensor::stack(&[&g, &be], 0).unwrap();
        let fused = chan_norm_concat(&a, &b, &gb, true).unwrap();
        assert_eq!(bits(&fused), bits(&chan_norm(&cat, &g, &be, true).unwrap()));
        let wt = (rand(&[20, 40, 1, 1], 97) * 0.3).unwrap();
        let bias = rand(&[20], 98);
        let conv = Conv::new(Kernel::K1, &wt).unwrap();
        let got = conv.forward_concat(&a, &b, &bias).unwrap();
        let want = reference_conv(Kernel::K1, &cat, &wt, &bias, None);
        let d = max_diff(&got, &want);
        assert!(d < 1e-5, "max diff {d}");
        assert!(conv.forward_concat(&a, &a, &bias).is_err());
    }

    #[test]
    fn conv_is_bit_identical_across_thread_counts() {
        let x = rand(&[1, 40, 36, 32], 1);
        let wt = (rand(&[48, 32, 3, 3], 2) * 0.1).unwrap();
        let b = rand(&[48], 3);
        let r = rand(&[1, 40, 36, 48], 4);
        let conv = Conv::new(Kernel::K3, &wt).unwrap();
        let run = || bits(&conv.forward(&x, &b, Some(&r)).unwrap());
        let one = with_threads(1, run);
        assert_eq!(one, with_threads(2, run));
        assert_eq!(one, with_threads(3, run));
    }

    #[test]
    fn chan_norm_matches_candle() {
        for (i, &c) in [48usize, 96, 12, 5].iter().enumerate() {
            let x = (rand(&[1, 9, 11, c], 50 + i as u64) * 3.0).unwrap();
            let g = rand(&[c], 60 + i as u64);
            let b = rand(&[c], 70 + i as u64);
            for silu in [false, true] {
                let got = chan_norm(&x, &g, &b, silu).unwrap();
                let mu = x.mean_keepdim(D::Minus1).unwrap();
                let xc = x.broadcast_sub(&mu).unwrap();
                let var = xc.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
                let y = xc
                    .broadcast_div(&(var + 1e-5).unwrap().sqrt().unwrap())
                    .unwrap()
                    .broadcast_mul(&g)
                    .unwrap()
                    .broadcast_add(&b)
                    .unwrap();
                let want = if silu {
                    candle_nn::ops::silu(&y).unwrap()
                } else {
                    y
                };
                let d = max_diff(&got, &want);
                assert!(d < 1e-5, "c = {c}, silu = {silu}: max diff {d}");
            }
        }
        let x = rand(&[1, 30, 30, 64], 80);
        let (g, b) = (rand(&[64], 81), rand(&[64], 82));
        let run = || bits(&chan_norm(&x, &g, &b, true).unwrap());
        let one = with_threads(1, run);
        assert_eq!(one, with_threads(2, run));
        assert_eq!(one, with_threads(3, run));
    }

    #[test]
    fn exp_is_accurate() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let (got, want) = (kernels::exp(x), (x as f64).exp());
            assert!(
                ((got as f64 - want) / want).abs() < 5e-7,
                "exp({x}) = {got}, want {want}"
            );
            x += 0.0137;
        }
        assert_eq!(kernels::exp(-1000.0), kernels::exp(-87.3));
        assert!(kernels::exp(1000.0).is_finite());
    }

    #[test]
    fn reshuffles_match_reference() {
        let x = rand(&[2, 6, 10, 12], 90);
        // NHWC shuffle vs the NCHW reference written with reshapes (PyTorch's definition).
        let (n, h, w, c4) = x.dims4().unwrap();
        let c = c4 / 4;
        let want = to_nchw(&x)
            .reshape((n, c, 2, 2, h, w))
            .unwrap()
            .permute((0, 1, 4, 2, 5, 3))
            .unwrap()
            .reshape((n, c, 2 * h, 2 * w))
            .unwrap();
        let got = pixel_shuffle(&x).unwrap();
        assert_eq!(bits(&to_nchw(&got)), bits(&want));
        assert_eq!(bits(&nhwc_shuffle_to_nchw(&x).unwrap()), bits(&want));
        // Unshuffle is its inverse, in both layouts.
        assert_eq!(bits(&pixel_unshuffle(&got).unwrap()), bits(&x));
        assert_eq!(bits(&nchw_unshuffle_to_nhwc(&want).unwrap()), bits(&x));
        assert_eq!(bits(&pixel_unshuffle_reference(&got)), bits(&x));
    }

    #[test]
    fn concat_matches_candle() {
        let a = rand(&[1, 5, 7, 16], 91);
        let b = rand(&[1, 5, 7, 8], 92);
        let got = concat_channels(&a, &b).unwrap();
        let want = Tensor::cat(&[&a, &b], 3).unwrap();
        assert_eq!(bits(&got), bits(&want));
    }

    #[test]
    fn bad_shapes_are_errors() {
        let wt = Tensor::zeros((8, 4, 3, 3), DType::F32, &Device::Cpu).unwrap();
        let conv = Conv::new(Kernel::K3, &wt).unwrap();
        let x = Tensor::zeros((1, 4, 4, 5), DType::F32, &Device::Cpu).unwrap();
        let b = Tensor::zeros(8, DType::F32, &Device::Cpu).unwrap();
        assert!(conv.forward(&x, &b, None).is_err());
        assert!(Conv::new(Kernel::K1, &wt).is_err());
        let odd = Tensor::zeros((1, 3, 4, 4), DType::F32, &Device::Cpu).unwrap();
        assert!(pixel_unshuffle(&odd).is_err());
    }
}
