//! LOSS kind 2 (SPEC §10.2-§10.7): a reversible colour transform, then per channel a
//! self-correcting weighted mix of fixed predictors (plus the network's reconstruction when a
//! chain prefix exists), with the residual coded bit by bit under adaptive binary models whose
//! context is the local error energy. Everything that sets a probability is integer
//! arithmetic on decoded samples.

use crate::entropy::{AdaptiveBit, RangeReader, SymbolSink};
use crate::{Error, Result};

/// Number of colour transforms (SPEC §10.3).
pub(crate) const RCTS: u8 = 3;
/// Count limit of the binary models (SPEC §10.6).
const LIMIT: u32 = 250;
/// Fractional bits of the predictions.
const FRAC: u32 = 3;
/// Error-energy buckets (SPEC §10.5).
const BUCKETS: usize = 20;
/// Cross-channel classes (SPEC §10.5).
const CROSS: usize = 5;
/// Residual exponent positions: |e| <= 510 < 2^9.
const EXPS: usize = 9;
/// Largest number of sub-predictors.
const MAX_PRED: usize = 10;
/// Maximum weights of the sub-predictors (SPEC §10.4).
const MAXW: [u64; MAX_PRED] = [13, 12, 12, 12, 12, 12, 12, 12, 12, 12];

/// (1 << 24) / (i + 1) for i in 0..64.
fn div_table() -> [u64; 64] {
    let mut t = [0u64; 64];
    for (i, v) in t.iter_mut().enumerate() {
        *v = (1u64 << 24) / (i as u64 + 1);
    }
    t
}

fn floor_log2(v: u64) -> u32 {
    63 - v.leading_zeros()
}

/// Forward colour transform of one pixel (r, g, b) -> the three coded channels.
pub(crate) fn forward(rct: u8, r: i32, g: i32, b: i32) -> [i32; 3] {
    match rct {
        0 => [r, g, b],
        1 => [g, r - g, b - g],
        _ => {
            let co = r - b;
            let t = b + (co >> 1);
            let cg = g - t;
            [t + (cg >> 1), co, cg]
        }
    }
}

/// Inverse of [`forward`].
pub(crate) fn inverse(rct: u8, a: [i32; 3]) -> [i32; 3] {
    match rct {
        0 => a,
        1 => [a[1] + a[0], a[0], a[2] + a[0]],
        _ => {
            let [y, co, cg] = a;
            let t = y - (cg >> 1);
            let g = cg + t;
            let b = t - (co >> 1);
            [b + co, g, b]
        }
    }
}

/// The value range of coded channel `c` under transform `rct`.
fn range(rct: u8, c: usize) -> (i32, i32) {
    if rct == 0 || c == 0 {
        (0, 255)
    } else {
        (-255, 255)
    }
}

/// The adaptive binary models of one image.
struct Models {
    zero: Vec<AdaptiveBit>,
    sign: Vec<AdaptiveBit>,
    exp: Vec<AdaptiveBit>,
    mant: Vec<AdaptiveBit>,
}

impl Models {
    fn new() -> Self {
        let ctxs = 3 * CROSS * BUCKETS;
        Models {
            zero: vec![AdaptiveBit::new(); ctxs],
            sign: vec![AdaptiveBit::new(); ctxs * 3],
            exp: vec![AdaptiveBit::new(); ctxs * EXPS],
            mant: vec![AdaptiveBit::new(); ctxs * EXPS * EXPS],
        }
    }

    /// Code (encoder: `e` is the residual) or read (decoder: `e` is ignored) one residual
    /// (SPEC §10.6); returns it.
    fn residual<I: BitIo>(&mut self, io: &mut I, ctx: usize, sctx: usize, e: i32) -> Result<i32> {
        if !io.bit(&mut self.zero[ctx], e != 0)? {
            return Ok(0);
        }
        let neg = io.bit(&mut self.sign[ctx * 3 + sctx], e < 0)?;
        let a = e.unsigned_abs();
        let top = if a > 0 {
            floor_log2(u64::from(a)) as usize
        } else {
            0
        };
        let mut k = 0;
        while k < EXPS - 1 && io.bit(&mut self.exp[ctx * EXPS + k], k < top)? {
            k += 1;
        }
        let mut v: i32 = 1;
        for j in (0..k).rev() {
            let m = &mut self.mant[(ctx * EXPS + k) * EXPS + j];
            v = (v << 1) | i32::from(io.bit(m, (a >> j) & 1 == 1)?);
        }
        Ok(if neg { -v } else { v })
    }
}

/// Where a residual's bits go: the encoder codes the bit it is given, the decoder reads one.
trait BitIo {
    fn bit(&mut self, m: &mut AdaptiveBit, bit: bool) -> Result<bool>;
}

struct Enc<'a, S: SymbolSink>(&'a mut S);

impl<S: SymbolSink> BitIo for Enc<'_, S> {
    #[inline]
    fn bit(&mut self, m: &mut AdaptiveBit, bit: bool) -> Result<bool> {
        self.0.put_bit(m, bit, LIMIT)?;
        Ok(bit)
    }
}

struct Dec<'a>(&'a mut RangeReader);

impl BitIo for Dec<'_> {
    #[inline]
    fn bit(&mut self, m: &mut AdaptiveBit, _bit: bool) -> Result<bool> {
        self.0.get_bit(m, LIMIT)
    }
}

/// Semi-logarithmic bucket of an error energy (SPEC §10.5).
fn bucket(e: u32) -> usize {
    let q = e >> 2;
    if q == 0 {
        return 0;
    }
    let l = floor_log2(u64::from(q));
    let half = if l > 0 { (q >> (l - 1)) & 1 } else { 0 };
    ((1 + 2 * l + half) as usize).min(BUCKETS - 1)
}

fn cross_class(e: i32) -> usize {
    match e.unsigned_abs() {
        0 => 0,
        1 => 1,
        2..=3 => 2,
        4..=7 => 3,
        _ => 4,
    }
}

/// What a channel's prediction reads besides its own decoded values: the previous channel's
/// values and residuals (channels 1 and 2), and the reconstruction (with a chain prefix).
#[derive(Clone, Copy)]
struct Inputs<'a> {
    prev: Option<(&'a [i32], &'a [i32])>,
    recon: Option<&'a [i32]>,
}

/// The predictor state of one channel: two rows of errors of the mix and of each
/// sub-predictor.
struct Channel {
    w: usize,
    c: usize,
    lo: i32,
    hi: i32,
    np: usize,
    te: [Vec<i32>; 2],
    pe: [Vec<u32>; 2],
    div: [u64; 64],
}

/// One pixel's prediction.
struct Pred {
    p: i32,
    pred8: i32,
    preds: [i32; MAX_PRED],
    ctx: usize,
    sctx: usize,
}

impl Channel {
    fn new(w: usize, c: usize, range: (i32, i32), inp: &Inputs) -> Self {
        let np =
            6 + if inp.recon.is_some() { 2 } else { 0 } + if inp.prev.is_some() { 2 } else { 0 };
        Channel {
            w,
            c,
            lo: range.0,
            hi: range.1,
            np,
            te: [vec![0; w], vec![0; w]],
            pe: [vec![0; w * np], vec![0; w * np]],
            div: div_table(),
        }
    }

    fn predict(&self, v: &[i32], inp: &Inputs, y: usize, x: usize) -> Pred {
        let w = self.w;
        let i = y * w + x;
        let (cur, up) = (y & 1, (y + 1) & 1);
        let has_w = x > 0;
        let has_n = y > 0;
        let has_ne = has_n && x + 1 < w;
        let vw = if has_w {
            v[i - 1]
        } else if has_n {
            v[i - w]
        } else {
            0
        };
        let vn = if has_n { v[i - w] } else { vw };
        let vnw = if has_w && has_n { v[i - w - 1] } else { vn };
        let vne = if has_ne { v[i - w + 1] } else { vn };
        let te_w = if has_w { self.te[cur][x - 1] } else { 0 };
        let te_n = if has_n { self.te[up][x] } else { 0 };
        let te_nw = if has_w && has_n {
            self.te[up][x - 1]
        } else {
            te_n
        };
        let te_ne = if has_ne { self.te[up][x + 1] } else { te_n };
        let (n8, w8) = (vn << FRAC, vw << FRAC);
        let mut preds = [0i32; MAX_PRED];
        preds[0] = (vw + vne - vn) << FRAC;
        preds[1] = n8 - (((te_w + te_n + te_ne) * 16) >> 5);
        preds[2] = w8 - (((te_w + te_n + te_nw) * 10) >> 5);
        preds[3] = n8 - (((te_nw + te_n + te_ne) * 7) >> 5);
        let grad = vw + vn - vnw;
        preds[4] = grad << FRAC;
        preds[5] = grad.clamp(vw.min(vn), vw.max(vn)) << FRAC;
        let mut k = 6;
        // W and N of another plane by the rules of W and N, with its own value for W at (0, 0).
        let west_north = |a: &[i32]| {
            let aw = if has_w {
                a[i - 1]
            } else if has_n {
                a[i - w]
            } else {
                a[i]
            };
            (aw, if has_n { a[i - w] } else { aw })
        };
        if let Some(r) = inp.recon {
            let (rw, rn) = west_north(r);
            preds[k] = r[i] << FRAC;
            preds[k + 1] = (r[i] << FRAC) + (((vw - rw) + (vn - rn)) << (FRAC - 1));
            k += 2;
        }
        if let Some((a, _)) = inp.prev {
            let (aw, an) = west_north(a);
            preds[k] = (vw + a[i] - aw) << FRAC;
            preds[k + 1] = (vn + a[i] - an) << FRAC;
        }
        // Weights from the sub-predictors' recent errors around the pixel.
        let np = self.np;
        let mut wts = [0u64; MAX_PRED];
        let mut wsum = 0u64;
        let mut smin = u64::MAX;
        for (j, wt) in wts.iter_mut().enumerate().take(np) {
            let pn = if has_n { self.pe[up][x * np + j] } else { 0 };
            let pne = if has_ne {
                self.pe[up][(x + 1) * np + j]
            } else {
                pn
            };
            let pnw = if has_n && has_w {
                self.pe[up][(x - 1) * np + j]
            } else {
                pn
            };
            let pw = if has_w {
                self.pe[cur][(x - 1) * np + j]
            } else {
                0
            };
            let pww = if x > 1 {
                self.pe[cur][(x - 2) * np + j]
            } else {
                0
            };
            let s = u64::from(pn + pne + pnw + pw + pww);
            smin = smin.min(s);
            let shift = floor_log2(s + 1).saturating_sub(5);
            *wt = 4 + ((MAXW[j] * self.div[(s >> shift) as usize]) >> shift);
            wsum += *wt;
        }
        let lw = floor_log2(wsum).saturating_sub(4);
        let mut ws = 0u64;
        for wt in wts.iter_mut().take(np) {
            *wt >>= lw;
            ws += *wt;
        }
        let mut sum: i64 = (ws >> 1) as i64 - 1;
        for j in 0..np {
            sum += i64::from(preds[j]) * wts[j] as i64;
        }
        let mix = (sum * self.div[(ws - 1) as usize] as i64) >> 24;
        let mut pred8 = mix.clamp(i64::from(self.lo << FRAC), i64::from(self.hi << FRAC)) as i32;
        if ((te_n ^ te_w) | (te_n ^ te_nw)) <= 0 {
            let mx = vw.max(vn).max(vne) << FRAC;
            let mn = vw.min(vn).min(vne) << FRAC;
            pred8 = pred8.clamp(mn, mx);
        }
        // Context: error energy, the previous channel's residual here, and the error sign.
        let energy = (smin.min(1 << 16) as u32) * 8
            + 2 * (te_w.unsigned_abs() + te_n.unsigned_abs())
            + te_nw.unsigned_abs()
            + te_ne.unsigned_abs()
            + 2 * ((vw - vnw).unsigned_abs()
                + (vn - vnw).unsigned_abs()
                + (vn - vne).unsigned_abs());
        let cross = inp.prev.map_or(0, |(_, e)| cross_class(e[i]));
        let ctx = (self.c * CROSS + cross) * BUCKETS + bucket(energy);
        let ts = te_w + te_n + te_nw + te_ne;
        let sctx = usize::from(ts > 0) + 2 * usize::from(ts < 0);
        let p = ((pred8 + (1 << (FRAC - 1)) - 1) >> FRAC).clamp(self.lo, self.hi);
        Pred {
            p,
            pred8,
            preds,
            ctx,
            sctx,
        }
    }

    /// Record the decoded value at (y, x).
    fn record(&mut self, y: usize, x: usize, val: i32, pr: &Pred) {
        let cur = y & 1;
        let v8 = val << FRAC;
        self.te[cur][x] = pr.pred8 - v8;
        let np = self.np;
        for j in 0..np {
            self.pe[cur][x * np + j] =
                ((pr.preds[j] - v8).unsigned_abs() + (1 << (FRAC - 1)) - 1) >> FRAC;
        }
    }
}

/// Planar 3 x h x w samples in the transform's channels (and the recon, if any).
fn transform(rct: u8, pix: &[u8], n: usize) -> [Vec<i32>; 3] {
    let mut out = [vec![0; n], vec![0; n], vec![0; n]];
    for i in 0..n {
        let a = forward(
            rct,
            i32::from(pix[i]),
            i32::from(pix[n + i]),
            i32::from(pix[2 * n + i]),
        );
        for c in 0..3 {
            out[c][i] = a[c];
        }
    }
    out
}

/// The channel loop of both sides (SPEC §10.4-§10.6): channel by channel, rows, columns,
/// predict, code or read the residual, record. The encoder passes the values in `v`; the
/// decoder passes zeros and gets the values back.
fn run<I: BitIo>(
    io: &mut I,
    v: &mut [Vec<i32>; 3],
    recon: Option<&[u8]>,
    rct: u8,
    h: usize,
    w: usize,
) -> Result<()> {
    let n = h * w;
    let r = recon.map(|r| transform(rct, r, n));
    let mut models = Models::new();
    let mut res: [Vec<i32>; 3] = [vec![0; n], vec![0; n], vec![0; n]];
    for c in 0..3 {
        let (v_done, v_rest) = v.split_at_mut(c);
        let (res_done, res_rest) = res.split_at_mut(c);
        let (vc, e_out) = (&mut v_rest[0], &mut res_rest[0]);
        let (lo, hi) = range(rct, c);
        let inp = Inputs {
            prev: (c > 0).then(|| (v_done[c - 1].as_slice(), res_done[c - 1].as_slice())),
            recon: r.as_ref().map(|r| r[c].as_slice()),
        };
        let mut ch = Channel::new(w, c, (lo, hi), &inp);
        for y in 0..h {
            for x in 0..w {
                let i = y * w + x;
                let pr = ch.predict(vc, &inp, y, x);
                let e = models.residual(io, pr.ctx, pr.sctx, vc[i] - pr.p)?;
                let val = pr.p + e;
                if !(lo..=hi).contains(&val) {
                    return Err(Error::format(format!(
                        "lossless residual gives channel {c} value {val} (allowed {lo}..={hi})"
                    )));
                }
                ch.record(y, x, val, &pr);
                vc[i] = val;
                e_out[i] = e;
            }
        }
    }
    Ok(())
}

/// Code planar 3 x h x w pixels with colour transform `rct`, using the 8-bit reconstruction
/// `recon` (same layout) as a predictor input where a chain prefix exists.
pub(crate) fn code<S: SymbolSink>(
    sink: &mut S,
    pix: &[u8],
    recon: Option<&[u8]>,
    rct: u8,
    h: usize,
    w: usize,
) -> Result<()> {
    let mut v = transform(rct, pix, h * w);
    run(&mut Enc(sink), &mut v, recon, rct, h, w)
}

/// Decode what [`code`] wrote; returns planar 8-bit pixels.
pub(crate) fn decode(
    rd: &mut RangeReader,
    recon: Option<&[u8]>,
    rct: u8,
    h: usize,
    w: usize,
) -> Result<Vec<u8>> {
    if rct >= RCTS {
        return Err(Error::format(format!(
            "LOSS colour transform {rct} (this decoder knows 0..{RCTS})"
        )));
    }
    let n = h * w;
    let mut v: [Vec<i32>; 3] = [vec![0; n], vec![0; n], vec![0; n]];
    run(&mut Dec(rd), &mut v, recon, rct, h, w)?;
    let mut out = vec![0u8; 3 * n];
    for i in 0..n {
        let rgb = inverse(rct, [v[0][i], v[1][i], v[2][i]]);
        for c in 0..3 {
            if !(0..=255).contains(&rgb[c]) {
                return Err(Error::format(format!(
                    "lossless colour transform gives sample {} (allowed 0..=255)",
                    rgb[c]
                )));
            }
            out[c * n + i] = rgb[c] as u8;
        }
    }
    Ok(out)
}
