//! Stage 2 (SPEC §4.1, §6.4): NHWC compute kernels for the fast path of the epsilon-model.
//!
//! Activations are NHWC (`[n, h, w, c]`, a pixel's channels contiguous) so that every layer
//! reads and writes the same layout and nothing converts between layers.
//!
//! A convolution hands each tile of [`TILE`] consecutive output pixels to one single-threaded
//! call of the `gemm` crate; rayon runs the tiles in parallel. The tile size is a constant,
//! never derived from the thread count, so every output value is computed by the same sequence
//! of floating-point operations whatever the number of threads: outputs are bit-identical with
//! 1, 2 or more threads. The per-pixel kernels (ChanNorm + SiLU, shuffles, concatenation) have
//! no cross-pixel arithmetic at all.
//!
//! The functions here work on slices; `super::ops` wraps them as candle custom ops.

use gemm::Parallelism;
use rayon::prelude::*;
use std::cell::RefCell;

/// Output pixels per `gemm` call. A constant: changing it changes the last bits of the outputs.
pub const TILE: usize = 192;

/// Pixels per rayon task in the per-pixel kernels (does not affect results).
const PIXEL_CHUNK: usize = 256;

/// The ChanNorm epsilon (train/model.py).
pub const NORM_EPS: f32 = 1e-5;

/// The spatial pattern of a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// 1x1 convolution.
    K1,
    /// 3x3 convolution with zero padding 1.
    K3,
    /// Pixel-unshuffle 2x2 followed by a 1x1 convolution (a 2x2 convolution with stride 2);
    /// the input channel `c * 4 + dy * 2 + dx` of the 1x1 convolution is pixel `(dy, dx)` of
    /// channel `c`, as in PyTorch's `pixel_unshuffle`.
    Down2,
}

impl Kernel {
    /// Number of input pixels that feed one output pixel.
    pub fn taps(self) -> usize {
        match self {
            Kernel::K1 => 1,
            Kernel::K3 => 9,
            Kernel::Down2 => 4,
        }
    }

    /// Output height and width for an input of `h x w`.
    pub fn out_dims(self, h: usize, w: usize) -> (usize, usize) {
        match self {
            Kernel::K1 | Kernel::K3 => (h, w),
            Kernel::Down2 => (h / 2, w / 2),
        }
    }
}

/// Convolution weights in the layout the kernel wants: a `[taps * cin, cout]` row-major
/// matrix whose row `tap * cin + ci` holds the weights of input channel `ci` at `tap`
/// (`ky * 3 + kx` for 3x3, `dy * 2 + dx` for [`Kernel::Down2`]).
#[derive(Clone, Debug)]
pub struct ConvWeights {
    kernel: Kernel,
    cin: usize,
    cout: usize,
    w: Vec<f32>,
}

impl ConvWeights {
    /// Converts PyTorch / candle weights `[cout, cin', kh, kw]` (row-major) once.
    ///
    /// For [`Kernel::K3`] `cin' = cin`, `kh = kw = 3`; for [`Kernel::K1`] `cin' = cin`,
    /// `kh = kw = 1`; for [`Kernel::Down2`] the weights are those of the 1x1 convolution that
    /// follows the pixel-unshuffle: `cin' = 4 * cin`, `kh = kw = 1`.
    /// Returns `None` when `w.len()` does not match.
    pub fn from_oihw(kernel: Kernel, w: &[f32], cout: usize, cin: usize) -> Option<Self> {
        let taps = kernel.taps();
        if w.len() != cout * cin * taps {
            return None;
        }
        let mut out = vec![0.0f32; taps * cin * cout];
        for co in 0..cout {
            for ci in 0..cin {
                for t in 0..taps {
                    // K3: source index (co, ci, ky, kx); Down2: (co, ci * 4 + t).
                    out[(t * cin + ci) * cout + co] = w[(co * cin + ci) * taps + t];
                }
            }
        }
        Some(ConvWeights {
            kernel,
            cin,
            cout,
            w: out,
        })
    }

    /// The spatial pattern.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// Input channels (before the pixel-unshuffle for [`Kernel::Down2`]).
    pub fn cin(&self) -> usize {
        self.cin
    }

    /// Output channels.
    pub fn cout(&self) -> usize {
        self.cout
    }

    /// Multiply-adds x 2 per output pixel.
    pub fn flops_per_pixel(&self) -> usize {
        2 * self.kernel.taps() * self.cin * self.cout
    }
}

thread_local! {
    static PATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static TILE_COPY: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `out = conv(x) + bias (+ residual)` for `n` NHWC images of `h x w x cin`, followed by
/// SiLU(ChanNorm) with the affine parameters `post = (gamma, beta)` when given (fused: each
/// tile is normalised while it is in cache; the result is bit-identical to [`chan_norm_silu`]
/// applied afterwards).
///
/// `out` (and `residual`) are `n x ho x wo x cout` with `(ho, wo) = kernel.out_dims(h, w)`.
/// For [`Kernel::Down2`], `h` and `w` must be even.
///
/// # Panics
/// If a slice length does not match the dimensions (callers check; see `super::ops`).
#[allow(clippy::too_many_arguments)]
pub fn conv(
    x: &[f32],
    n: usize,
    h: usize,
    w: usize,
    wt: &ConvWeights,
    bias: &[f32],
    residual: Option<&[f32]>,
    post: Option<(&[f32], &[f32])>,
    out: &mut [f32],
) {
    let (cin, cout) = (wt.cin, wt.cout);
    let (ho, wo) = wt.kernel.out_dims(h, w);
    assert_eq!(x.len(), n * h * w * cin);
    assert_eq!(out.len(), n * ho * wo * cout);
    assert_eq!(bias.len(), cout);
    if let Some(r) = residual {
        assert_eq!(r.len(), out.len());
    }
    if let Some((g, b)) = post {
        assert!(g.len() == cout && b.len() == cout);
    }
    if wt.kernel == Kernel::Down2 {
        assert!(h.is_multiple_of(2) && w.is_multiple_of(2));
    }
    let img_in = h * w * cin;
    let img_out = ho * wo * cout;
    if img_out == 0 {
        return;
    }
    for (b, ob) in out.chunks_mut(img_out).enumerate() {
        let xb = &x[b * img_in..(b + 1) * img_in];
        let rb = residual.map(|r| &r[b * img_out..(b + 1) * img_out]);
        // One task per tile; tile boundaries never depend on the thread count.
        ob.par_chunks_mut(TILE * cout)
            .enumerate()
            .for_each(|(t, dst)| conv_tile(xb, h, w, wt, bias, rb, post, t * TILE, dst));
    }
}

/// One tile of [`conv`]: output pixels `p0..p0 + dst.len() / cout` of one image.
#[allow(clippy::too_many_arguments)]
fn conv_tile(
    xb: &[f32],
    h: usize,
    w: usize,
    wt: &ConvWeights,
    bias: &[f32],
    residual: Option<&[f32]>,
    post: Option<(&[f32], &[f32])>,
    p0: usize,
    dst: &mut [f32],
) {
    let (cin, cout) = (wt.cin, wt.cout);
    let wo = wt.kernel.out_dims(h, w).1;
    let m = dst.len() / cout;
    match residual {
        Some(r) => {
            let rb = &r[p0 * cout..(p0 + m) * cout];
            for (d, rr) in dst.chunks_exact_mut(cout).zip(rb.chunks_exact(cout)) {
                for ((d, &rv), &bv) in d.iter_mut().zip(rr).zip(bias) {
                    *d = rv + bv;
                }
            }
        }
        None => {
            for d in dst.chunks_exact_mut(cout) {
                d.copy_from_slice(bias);
            }
        }
    }
    match wt.kernel {
        Kernel::K1 => gemm_acc(dst, m, cout, cin, &xb[p0 * cin..], cin, &wt.w),
        Kernel::K3 | Kernel::Down2 => PATCH.with(|cell| {
            let mut patch = cell.borrow_mut();
            let k = wt.kernel.taps() * cin;
            patch.resize(TILE * k, 0.0);
            let patch = &mut patch[..m * k];
            if wt.kernel == Kernel::K3 {
                im2col_3x3(xb, h, w, cin, p0, patch);
            } else {
                im2col_down2(xb, w, wo, cin, p0, patch);
            }
            gemm_acc(dst, m, cout, k, patch, k, &wt.w);
        }),
    }
    if let Some((g, b)) = post {
        TILE_COPY.with(|cell| {
            let mut copy = cell.borrow_mut();
            copy.clear();
            copy.extend_from_slice(dst);
            norm_pixels(&copy, cout, &[], 0, g, b, true, dst);
        });
    }
}

/// `out = conv1x1([a, b]) + bias`: a [`Kernel::K1`] convolution of the channel
/// concatenation of `a` (`[p, ca]`) and `b` (`[p, cb]`) without building it (two `gemm`
/// calls per tile). `wt.cin()` must be `ca + cb`; `out` is `[p, cout]`.
pub fn conv1x1_concat(
    a: &[f32],
    ca: usize,
    b: &[f32],
    cb: usize,
    wt: &ConvWeights,
    bias: &[f32],
    out: &mut [f32],
) {
    let cout = wt.cout;
    assert!(wt.kernel == Kernel::K1 && wt.cin == ca + cb && ca > 0 && cb > 0);
    let p = a.len() / ca;
    assert!(a.len() == p * ca && b.len() == p * cb && out.len() == p * cout);
    assert_eq!(bias.len(), cout);
    let (wa, wb) = wt.w.split_at(ca * cout);
    out.par_chunks_mut(TILE * cout)
        .enumerate()
        .for_each(|(t, dst)| {
            let (p0, m) = (t * TILE, dst.len() / cout);
            for d in dst.chunks_exact_mut(cout) {
                d.copy_from_slice(bias);
            }
            gemm_acc(dst, m, cout, ca, &a[p0 * ca..], ca, wa);
            gemm_acc(dst, m, cout, cb, &b[p0 * cb..], cb, wb);
        });
}

/// `dst[m x n] += lhs[m x k] * rhs[k x n]`; `dst` and `rhs` row-major and contiguous, `lhs`
/// row-major with row stride `lhs_rs`. Single-threaded. The shapes are checked (in release
/// too: one comparison per tile call), so a wrong length panics instead of reading out of
/// bounds.
fn gemm_acc(
    dst: &mut [f32],
    m: usize,
    n: usize,
    k: usize,
    lhs: &[f32],
    lhs_rs: usize,
    rhs: &[f32],
) {
    assert_eq!(dst.len(), m * n, "gemm_acc: dst length");
    assert_eq!(rhs.len(), k * n, "gemm_acc: rhs length");
    assert!(
        m == 0 || (lhs_rs >= k && lhs.len() >= (m - 1) * lhs_rs + k),
        "gemm_acc: lhs too short"
    );
    // SAFETY: dst holds m x n floats with row stride n, rhs k x n with row stride n, and lhs
    // (m - 1) * lhs_rs + k floats with row stride lhs_rs >= k: the asserts above; every
    // pointer comes from a live slice that gemm only reads (lhs, rhs) or writes (dst, which no
    // other reference aliases: it is borrowed mutably here).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            true,
            lhs.as_ptr(),
            1,
            lhs_rs as isize,
            rhs.as_ptr(),
            1,
            n as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

/// Rows `p0..p0 + m` (output pixels, `m = patch.len() / (9 * c)`) of the im2col matrix of a
/// 3x3 convolution with zero padding 1: row = `[tap (ky, kx)][c]`.
fn im2col_3x3(x: &[f32], h: usize, w: usize, c: usize, p0: usize, patch: &mut [f32]) {
    let k = 9 * c;
    for (i, row) in patch.chunks_exact_mut(k).enumerate() {
        let p = p0 + i;
        let (y, xx) = (p / w, p % w);
        for ky in 0..3 {
            let dst = &mut row[ky * 3 * c..(ky + 1) * 3 * c];
            let sy = y + ky;
            if sy == 0 || sy > h {
                dst.fill(0.0);
                continue;
            }
            let src_row = &x[(sy - 1) * w * c..sy * w * c];
            if xx >= 1 && xx + 1 < w {
                dst.copy_from_slice(&src_row[(xx - 1) * c..(xx + 2) * c]);
            } else {
                for kx in 0..3 {
                    let sx = xx + kx;
                    let d = &mut dst[kx * c..(kx + 1) * c];
                    if sx == 0 || sx > w {
                        d.fill(0.0);
                    } else {
                        d.copy_from_slice(&src_row[(sx - 1) * c..sx * c]);
                    }
                }
            }
        }
    }
}

/// Rows `p0..` of the im2col matrix of [`Kernel::Down2`]: row = `[dy][dx][c]`.
fn im2col_down2(x: &[f32], w: usize, wo: usize, c: usize, p0: usize, patch: &mut [f32]) {
    let k = 4 * c;
    for (i, row) in patch.chunks_exact_mut(k).enumerate() {
        let p = p0 + i;
        let (y, xx) = (p / wo, p % wo);
        for dy in 0..2 {
            let s = ((2 * y + dy) * w + 2 * xx) * c;
            row[dy * 2 * c..(dy + 1) * 2 * c].copy_from_slice(&x[s..s + 2 * c]);
        }
    }
}

/// Per-pixel LayerNorm over the channels (ChanNorm, eps [`NORM_EPS`], affine), optionally
/// followed by SiLU: `x` and `out` are `[pixels, c]`.
pub fn chan_norm_silu(
    x: &[f32],
    c: usize,
    gamma: &[f32],
    beta: &[f32],
    silu: bool,
    out: &mut [f32],
) {
    assert_eq!(x.len(), out.len());
    assert!(c > 0 && x.len().is_multiple_of(c));
    assert!(gamma.len() == c && beta.len() == c);
    out.par_chunks_mut(PIXEL_CHUNK * c)
        .zip(x.par_chunks(PIXEL_CHUNK * c))
        .for_each(|(o, xi)| norm_pixels(xi, c, &[], 0, gamma, beta, silu, o));
}

/// [`chan_norm_silu`] of the channel concatenation `[a, b]` (`[p, ca]` and `[p, cb]`)
/// without building it; `out` is `[p, ca + cb]`. Bit-identical to normalising the
/// concatenation when `ca` is a multiple of 8.
#[allow(clippy::too_many_arguments)]
pub fn chan_norm_silu_concat(
    a: &[f32],
    ca: usize,
    b: &[f32],
    cb: usize,
    gamma: &[f32],
    beta: &[f32],
    silu: bool,
    out: &mut [f32],
) {
    let c = ca + cb;
    assert!(ca > 0 && cb > 0 && a.len().is_multiple_of(ca));
    assert_eq!(a.len() / ca * cb, b.len());
    assert_eq!(out.len(), a.len() + b.len());
    assert!(gamma.len() == c && beta.len() == c);
    out.par_chunks_mut(PIXEL_CHUNK * c)
        .enumerate()
        .for_each(|(i, o)| {
            let (p0, np) = (i * PIXEL_CHUNK, o.len() / c);
            let xa = &a[p0 * ca..(p0 + np) * ca];
            let xb = &b[p0 * cb..(p0 + np) * cb];
            norm_pixels(xa, ca, xb, cb, gamma, beta, silu, o)
        });
}

/// [`norm_pixel`] over consecutive pixels whose channels are `[a[i], b[i]]` (`cb` may be 0);
/// compiled three times on x86-64, for the baseline, AVX2 and AVX-512 (wider vectors, the
/// same IEEE operations per value: the results are identical).
#[allow(clippy::too_many_arguments)]
fn norm_pixels(
    a: &[f32],
    ca: usize,
    b: &[f32],
    cb: usize,
    gamma: &[f32],
    beta: &[f32],
    silu: bool,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F.
            unsafe { norm_pixels_avx512(a, ca, b, cb, gamma, beta, silu, out) };
            return;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2.
            unsafe { norm_pixels_avx2(a, ca, b, cb, gamma, beta, silu, out) };
            return;
        }
    }
    norm_pixels_generic(a, ca, b, cb, gamma, beta, silu, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn norm_pixels_avx2(
    a: &[f32],
    ca: usize,
    b: &[f32],
    cb: usize,
    gamma: &[f32],
    beta: &[f32],
    silu: bool,
    out: &mut [f32],
) {
    norm_pixels_generic(a, ca, b, cb, gamma, beta, silu, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn norm_pixels_avx512(
    a: &[f32],
    ca: usize,
    b: &[f32],
    cb: usize,
    gamma: &[f32],
    beta: &[f32],
    silu: bool,
    out: &mut [f32],
) {
    norm_pixels_generic(a, ca, b, cb, gamma, beta, silu, out)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn norm_pixels_generic(
    a: &[f32],
    ca: usize,
    b: &[f32],
    cb: usize,
    gamma: &[f32],
    beta: &[f32],
    silu: bool,
    out: &mut [f32],
) {
    for (i, op) in out.chunks_exact_mut(ca + cb).enumerate() {
        let xa = &a[i * ca..(i + 1) * ca];
        let xb = &b[i * cb..(i + 1) * cb];
        norm_pixel(xa, xb, gamma, beta, silu, op);
    }
}

const LANES: usize = 8;

/// Adds `f(v)` into the lanes with a fixed lane structure (vectorisable, and the same on
/// every machine).
#[inline(always)]
fn add_lanes(acc: &mut [f32; LANES], v: &[f32], f: &impl Fn(f32) -> f32) {
    let mut it = v.chunks_exact(LANES);
    for ch in &mut it {
        for l in 0..LANES {
            acc[l] += f(ch[l]);
        }
    }
    for (l, &r) in it.remainder().iter().enumerate() {
        acc[l] += f(r);
    }
}

/// Sum of `f` over `a` then `b`, in lanes.
#[inline(always)]
fn lane_sum(a: &[f32], b: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    add_lanes(&mut acc, a, &f);
    add_lanes(&mut acc, b, &f);
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

/// One pixel whose channels are `[a, b]`.
#[inline(always)]
fn norm_pixel(a: &[f32], b: &[f32], gamma: &[f32], beta: &[f32], silu: bool, out: &mut [f32]) {
    let c = (a.len() + b.len()) as f32;
    let mu = lane_sum(a, b, |v| v) / c;
    let var = lane_sum(a, b, |v| (v - mu) * (v - mu)) / c;
    let inv = 1.0 / (var + NORM_EPS).sqrt();
    let (oa, ob) = out.split_at_mut(a.len());
    let (ga, gb) = gamma.split_at(a.len());
    let (ba, bb) = beta.split_at(a.len());
    for (((o, &v), &g), &be) in oa.iter_mut().zip(a).zip(ga).zip(ba) {
        *o = (v - mu) * inv * g + be;
    }
    for (((o, &v), &g), &be) in ob.iter_mut().zip(b).zip(gb).zip(bb) {
        *o = (v - mu) * inv * g + be;
    }
    if silu {
        for o in out.iter_mut() {
            *o = silu_f32(*o);
        }
    }
}

/// `y * sigmoid(y)` with [`exp`].
#[inline(always)]
fn silu_f32(y: f32) -> f32 {
    y / (1.0 + exp(-y))
}

/// `exp(x)` in plain IEEE arithmetic (vectorisable; relative error about 2e-7); saturates
/// to 0 below -87.3 and to about 1.7e38 above 88.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    let x = x.clamp(-87.3, 88.0);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    // The integer n sits in the low mantissa bits of t: 2^n by integer arithmetic only.
    let ni = t.to_bits().wrapping_sub(ROUND.to_bits());
    let scale = f32::from_bits(ni.wrapping_add(127) << 23);
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // exp(r) on |r| <= ln2 / 2 (Cephes expf coefficients).
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let er = (p * r) * r + r + 1.0;
    er * scale
}

/// NHWC pixel-shuffle 2x2: `[n, h, w, 4c] -> [n, 2h, 2w, c]`, input channel
/// `c * 4 + dy * 2 + dx` going to pixel `(2y + dy, 2x + dx)` (PyTorch's `pixel_shuffle`).
pub fn pixel_shuffle(x: &[f32], n: usize, h: usize, w: usize, c: usize, out: &mut [f32]) {
    assert_eq!(x.len(), n * h * w * 4 * c);
    assert_eq!(out.len(), x.len());
    if out.is_empty() {
        return;
    }
    // One task per output row.
    out.par_chunks_mut(2 * w * c)
        .enumerate()
        .for_each(|(r, orow)| {
            let (b, oy) = (r / (2 * h), r % (2 * h));
            let (y, dy) = (oy / 2, oy % 2);
            let irow = &x[(b * h + y) * w * 4 * c..(b * h + y + 1) * w * 4 * c];
            for xx in 0..w {
                let ip = &irow[xx * 4 * c..(xx + 1) * 4 * c];
                for dx in 0..2 {
                    let op = &mut orow[(2 * xx + dx) * c..(2 * xx + dx + 1) * c];
                    for (ci, o) in op.iter_mut().enumerate() {
                        *o = ip[ci * 4 + dy * 2 + dx];
                    }
                }
            }
        });
}

/// NHWC pixel-unshuffle 2x2: `[n, h, w, c] -> [n, h/2, w/2, 4c]`, the inverse of
/// [`pixel_shuffle`]. `h` and `w` must be even.
pub fn pixel_unshuffle(x: &[f32], n: usize, h: usize, w: usize, c: usize, out: &mut [f32]) {
    assert!(h.is_multiple_of(2) && w.is_multiple_of(2));
    assert_eq!(x.len(), n * h * w * c);
    assert_eq!(out.len(), x.len());
    if out.is_empty() {
        return;
    }
    let (ho, wo) = (h / 2, w / 2);
    out.par_chunks_mut(wo * 4 * c)
        .enumerate()
        .for_each(|(r, orow)| {
            let (b, y) = (r / ho, r % ho);
            for dy in 0..2 {
                let irow = &x[(b * h + 2 * y + dy) * w * c..(b * h + 2 * y + dy + 1) * w * c];
                for xx in 0..wo {
                    let op = &mut orow[xx * 4 * c..(xx + 1) * 4 * c];
                    for dx in 0..2 {
                        let ip = &irow[(2 * xx + dx) * c..(2 * xx + dx + 1) * c];
                        for (ci, &v) in ip.iter().enumerate() {
                            op[ci * 4 + dy * 2 + dx] = v;
                        }
                    }
                }
            }
        });
}

/// Planar `[n, c, h, w]` -> NHWC pixel-unshuffled `[n, h/2, w/2, 4c]` (channel
/// `c * 4 + dy * 2 + dx`): the network's input stage in one pass.
pub fn nchw_unshuffle_to_nhwc(x: &[f32], n: usize, c: usize, h: usize, w: usize, out: &mut [f32]) {
    assert!(h.is_multiple_of(2) && w.is_multiple_of(2));
    assert_eq!(x.len(), n * c * h * w);
    assert_eq!(out.len(), x.len());
    if out.is_empty() {
        return;
    }
    let (ho, wo) = (h / 2, w / 2);
    out.par_chunks_mut(wo * 4 * c)
        .enumerate()
        .for_each(|(r, orow)| {
            let (b, y) = (r / ho, r % ho);
            for ci in 0..c {
                for dy in 0..2 {
                    let plane = &x[((b * c + ci) * h + 2 * y + dy) * w..][..w];
                    for xx in 0..wo {
                        for dx in 0..2 {
                            orow[xx * 4 * c + ci * 4 + dy * 2 + dx] = plane[2 * xx + dx];
                        }
                    }
                }
            }
        });
}

/// NHWC `[n, h, w, 4c]` -> planar pixel-shuffled `[n, c, 2h, 2w]`: the inverse of
/// [`nchw_unshuffle_to_nhwc`], the network's output stage in one pass.
pub fn nhwc_shuffle_to_nchw(x: &[f32], n: usize, h: usize, w: usize, c: usize, out: &mut [f32]) {
    assert_eq!(x.len(), n * h * w * 4 * c);
    assert_eq!(out.len(), x.len());
    if out.is_empty() {
        return;
    }
    // One task per output row of one channel plane.
    out.par_chunks_mut(2 * w).enumerate().for_each(|(r, orow)| {
        let (plane, oy) = (r / (2 * h), r % (2 * h));
        let (b, ci) = (plane / c, plane % c);
        let (y, dy) = (oy / 2, oy % 2);
        let irow = &x[(b * h + y) * w * 4 * c..(b * h + y + 1) * w * 4 * c];
        for xx in 0..w {
            for dx in 0..2 {
                orow[2 * xx + dx] = irow[xx * 4 * c + ci * 4 + dy * 2 + dx];
            }
        }
    });
}

/// NHWC channel concatenation: `[p, ca]` and `[p, cb]` -> `[p, ca + cb]`.
pub fn concat_channels(a: &[f32], ca: usize, b: &[f32], cb: usize, out: &mut [f32]) {
    let c = ca + cb;
    assert!(ca > 0 && cb > 0);
    assert_eq!(a.len() / ca, b.len() / cb);
    assert_eq!(out.len(), a.len() + b.len());
    out.par_chunks_mut(PIXEL_CHUNK * c)
        .enumerate()
        .for_each(|(i, o)| {
            let p0 = i * PIXEL_CHUNK;
            for (j, op) in o.chunks_exact_mut(c).enumerate() {
                let p = p0 + j;
                op[..ca].copy_from_slice(&a[p * ca..(p + 1) * ca]);
                op[ca..].copy_from_slice(&b[p * cb..(p + 1) * cb]);
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn norm_is_identical_on_every_instruction_set() {
        // The dispatched (AVX2 / AVX-512) path must give the baseline's bits.
        let x: Vec<f32> = (0..7 * 96)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.07)
            .collect();
        let g: Vec<f32> = (0..96).map(|i| 0.5 + i as f32 * 0.01).collect();
        let b: Vec<f32> = (0..96).map(|i| i as f32 * -0.003).collect();
        for (ca, cb) in [(96, 0), (48, 48), (13, 83), (5, 0)] {
            let c = ca + cb;
            let p = x.len() / 96;
            let (xa, xb) = (&x[..p * ca], &x[p * ca..p * c]);
            let (mut o1, mut o2) = (vec![0.0; p * c], vec![0.0; p * c]);
            norm_pixels(xa, ca, xb, cb, &g[..c], &b[..c], true, &mut o1);
            norm_pixels_generic(xa, ca, xb, cb, &g[..c], &b[..c], true, &mut o2);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&o1), bits(&o2), "channels {ca} + {cb}");
        }
    }
}
