//! Stage 2: the v-prediction U-Net (SPEC §4.1, §6.4), a candle mirror of `train/model.py`.
//!
//! Module and parameter names equal the safetensors keys written by `train/export.py`
//! (`down_blocks.0.0.conv1.weight`, ...). Layout, from fine to coarse and back:
//!
//! ```text
//! stem   pixel-unshuffle 2x2 (3 -> 12 channels at H/2), conv3x3 12 -> c0
//! down   per level i: `blocks` ResBlocks (ci -> ci), keep a skip, then Down (ci -> c(i+1))
//! mid    one ResBlock at the coarsest level
//! up     per level i (coarse to fine): ResBlock(concat(h, skip_i): 2ci -> ci), then Up
//! out    ChanNorm, SiLU, conv3x3 c0 -> 12, pixel-shuffle 2x2 -> 3 channels at H
//! ```
//!
//! The network outputs v = sqrt(abar) eps - sqrt(1 - abar) x0; [`Denoiser::predict_x0`]
//! returns x0 = sqrt(abar) z - sqrt(1 - abar) v, which stays well conditioned at t = T.
//! The norm is per pixel ([`ChanNorm`]), so the network is the same function on a whole image
//! and on a tile of it, up to the reach of the convolutions; large images run in overlapping
//! tiles ([`Tiling`]) to bound memory.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, Linear, VarBuilder};

use crate::model::weights;
use crate::model::Denoiser;
use crate::{Error, Result};

/// Architecture hyper-parameters, stored as JSON in the safetensors metadata key `"config"`,
/// e.g. `{"blocks":1,"channels":[48,64,96,128],"emb_dim":128,"emb_freqs":16}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UNetConfig {
    /// Channels per level, finest first; the network downsamples `channels.len() - 1` times
    /// after the 2x2 stem.
    pub channels: Vec<usize>,
    /// ResBlocks per level on the way down.
    pub blocks: usize,
    /// Number of sinusoid frequencies of the log-SNR embedding (sin and cos each).
    pub emb_freqs: usize,
    /// Width of the noise-level embedding MLP.
    pub emb_dim: usize,
}

impl Default for UNetConfig {
    /// b48's architecture, the default model before w64 (`DEFAULT_CONFIG` in
    /// `train/model.py`); w64's config is in its weights file.
    fn default() -> Self {
        UNetConfig {
            channels: vec![48, 64, 96, 128],
            blocks: 1,
            emb_freqs: 16,
            emb_dim: 128,
        }
    }
}

/// Largest accepted values, so that a malformed file cannot ask for absurd allocations.
const MAX_LEVELS: usize = 8;
const MAX_CHANNELS: usize = 4096;
const MAX_BLOCKS: usize = 16;
const MAX_EMB: usize = 4096;

impl UNetConfig {
    /// Parse the JSON config of the safetensors metadata. All four keys are required (a model
    /// file names its whole architecture, whatever the defaults of this version); unknown keys
    /// are refused. The optional key `"arch"` must be [`super::ARCH_UNET_V1`] (absent means it).
    pub fn from_json(text: &str) -> Result<Self> {
        let bad = |m: String| Error::Model(format!("invalid model config {text:?}: {m}"));
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        let obj = v
            .as_object()
            .ok_or_else(|| bad("expected a JSON object".into()))?;
        for key in ["channels", "blocks", "emb_freqs", "emb_dim"] {
            if !obj.contains_key(key) {
                return Err(bad(format!("missing key {key:?}")));
            }
        }
        let mut cfg = UNetConfig::default();
        for (key, val) in obj {
            let uint = |v: &serde_json::Value| {
                v.as_u64()
                    .and_then(|u| usize::try_from(u).ok())
                    .ok_or_else(|| bad(format!("{key}: expected an unsigned integer, got {v}")))
            };
            match key.as_str() {
                "channels" => {
                    let arr = val
                        .as_array()
                        .ok_or_else(|| bad("channels: expected an array".into()))?;
                    cfg.channels = arr.iter().map(uint).collect::<Result<_>>()?;
                }
                "blocks" => cfg.blocks = uint(val)?,
                "emb_freqs" => cfg.emb_freqs = uint(val)?,
                "emb_dim" => cfg.emb_dim = uint(val)?,
                "arch" if val.as_str() == Some(super::ARCH_UNET_V1) => {}
                "arch" => return Err(bad(format!("arch {val} is not this network's"))),
                _ => return Err(bad(format!("unknown key {key:?}"))),
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Check every value against the supported range.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Model(format!("invalid model config: {m}")));
        if self.channels.is_empty() || self.channels.len() > MAX_LEVELS {
            return bad(format!(
                "{} levels (expected 1..={MAX_LEVELS})",
                self.channels.len()
            ));
        }
        if let Some(c) = self.channels.iter().find(|&&c| c == 0 || c > MAX_CHANNELS) {
            return bad(format!("{c} channels (expected 1..={MAX_CHANNELS})"));
        }
        if self.blocks > MAX_BLOCKS {
            return bad(format!(
                "{} blocks (expected 0..={MAX_BLOCKS})",
                self.blocks
            ));
        }
        if !(2..=MAX_EMB).contains(&self.emb_freqs) {
            return bad(format!(
                "emb_freqs {} (expected 2..={MAX_EMB})",
                self.emb_freqs
            ));
        }
        if !(1..=MAX_EMB).contains(&self.emb_dim) {
            return bad(format!("emb_dim {} (expected 1..={MAX_EMB})", self.emb_dim));
        }
        Ok(())
    }

    /// Convolution FLOPs (2 x multiply-adds) per input pixel, as `flops_per_pixel` in
    /// `train/model.py` counts them (norms, activations and the embedding MLP excluded).
    pub fn flops_per_pixel(&self) -> f64 {
        let ch = &self.channels;
        let n = ch.len();
        // Pixels of level i per input pixel: level 0 is at half resolution.
        let density = |i: usize| 0.25f64.powi(i as i32 + 1);
        let conv = |k: usize, cin: usize, cout: usize| 2.0 * (k * k * cin * cout) as f64;
        let mut f = conv(3, 12, ch[0]) * density(0) + conv(3, ch[0], 12) * density(0);
        for (i, &c) in ch.iter().enumerate() {
            f += self.blocks as f64 * 2.0 * conv(3, c, c) * density(i);
            if i + 1 < n {
                f += conv(1, 4 * c, ch[i + 1]) * density(i + 1);
            }
            f += (conv(3, 2 * c, c) + conv(3, c, c) + conv(1, 2 * c, c)) * density(i);
            if i > 0 {
                f += conv(1, c, 4 * ch[i - 1]) * density(i);
            }
        }
        f + 2.0 * conv(3, ch[n - 1], ch[n - 1]) * density(n - 1)
    }

    /// Input height and width must be multiples of this: 2^(levels).
    pub fn multiple(&self) -> usize {
        1 << self.channels.len()
    }
}

/// LayerNorm over the channels at each pixel (eps 1e-5, learned affine): statistics do not
/// depend on the image size.
#[derive(Debug, Clone)]
pub struct ChanNorm {
    pub(super) weight: Tensor,
    pub(super) bias: Tensor,
}

impl ChanNorm {
    const EPS: f64 = 1e-5;

    /// Load `weight` and `bias` (`c` values each).
    pub fn new(vb: VarBuilder, c: usize) -> candle_core::Result<Self> {
        let weight = vb.get(c, "weight")?.reshape((1, c, 1, 1))?;
        let bias = vb.get(c, "bias")?.reshape((1, c, 1, 1))?;
        Ok(ChanNorm { weight, bias })
    }
}

impl Module for ChanNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mu = x.mean_keepdim(1)?;
        let xc = x.broadcast_sub(&mu)?;
        let var = xc.sqr()?.mean_keepdim(1)?;
        let y = xc.broadcast_div(&(var + Self::EPS)?.sqrt()?)?;
        y.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)
    }
}

fn conv(cin: usize, cout: usize, k: usize, vb: VarBuilder) -> candle_core::Result<Conv2d> {
    let cfg = Conv2dConfig {
        padding: k / 2,
        ..Default::default()
    };
    candle_nn::conv2d(cin, cout, k, cfg, vb)
}

/// Residual block: ChanNorm, SiLU, conv3x3, + embedding, ChanNorm, SiLU, conv3x3, + skip.
#[derive(Debug, Clone)]
pub struct ResBlock {
    pub(super) norm1: ChanNorm,
    pub(super) conv1: Conv2d,
    pub(super) emb: Linear,
    pub(super) norm2: ChanNorm,
    pub(super) conv2: Conv2d,
    pub(super) skip: Option<Conv2d>,
}

impl ResBlock {
    /// Load a block mapping `cin` to `cout` channels with an `emb_dim` embedding input.
    pub fn new(
        vb: VarBuilder,
        cin: usize,
        cout: usize,
        emb_dim: usize,
    ) -> candle_core::Result<Self> {
        Ok(ResBlock {
            norm1: ChanNorm::new(vb.pp("norm1"), cin)?,
            conv1: conv(cin, cout, 3, vb.pp("conv1"))?,
            emb: candle_nn::linear(emb_dim, cout, vb.pp("emb"))?,
            norm2: ChanNorm::new(vb.pp("norm2"), cout)?,
            conv2: conv(cout, cout, 3, vb.pp("conv2"))?,
            skip: if cin != cout {
                Some(conv(cin, cout, 1, vb.pp("skip"))?)
            } else {
                None
            },
        })
    }

    /// `x`: (B, cin, H, W); `e`: the embedding after the MLP, (B, emb_dim).
    pub fn forward(&self, x: &Tensor, e: &Tensor) -> candle_core::Result<Tensor> {
        let h = self
            .conv1
            .forward(&candle_nn::ops::silu(&self.norm1.forward(x)?)?)?;
        let (b, c) = (e.dim(0)?, h.dim(1)?);
        let h = h.broadcast_add(&self.emb.forward(e)?.reshape((b, c, 1, 1))?)?;
        let h = self
            .conv2
            .forward(&candle_nn::ops::silu(&self.norm2.forward(&h)?)?)?;
        match &self.skip {
            Some(s) => s.forward(x)? + h,
            None => x + h,
        }
    }
}

/// torch's `pixel_unshuffle(x, 2)`: (B, C, H, W) -> (B, 4C, H/2, W/2), output channel
/// `c*4 + dy*2 + dx` holds `x[c, 2i+dy, 2j+dx]`.
pub fn pixel_unshuffle2(x: &Tensor) -> candle_core::Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    x.reshape((b, c, h / 2, 2, w / 2, 2))?
        .permute((0, 1, 3, 5, 2, 4))?
        .contiguous()?
        .reshape((b, c * 4, h / 2, w / 2))
}

/// torch's `pixel_shuffle(x, 2)`: (B, 4C, H, W) -> (B, C, 2H, 2W), the inverse of
/// [`pixel_unshuffle2`].
pub fn pixel_shuffle2(x: &Tensor) -> candle_core::Result<Tensor> {
    let (b, c4, h, w) = x.dims4()?;
    let c = c4 / 4;
    x.reshape((b, c, 2, 2, h, w))?
        .permute((0, 1, 4, 2, 5, 3))?
        .contiguous()?
        .reshape((b, c, h * 2, w * 2))
}

/// Downsampling: pixel-unshuffle 2x2, then a 1x1 convolution 4cin -> cout.
#[derive(Debug, Clone)]
pub struct Down {
    pub(super) conv: Conv2d,
}

impl Down {
    /// Load the 1x1 convolution.
    pub fn new(vb: VarBuilder, cin: usize, cout: usize) -> candle_core::Result<Self> {
        Ok(Down {
            conv: conv(4 * cin, cout, 1, vb.pp("conv"))?,
        })
    }
}

impl Module for Down {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.conv.forward(&pixel_unshuffle2(x)?)
    }
}

/// Upsampling: a 1x1 convolution cin -> 4cout, then pixel-shuffle 2x2.
#[derive(Debug, Clone)]
pub struct Up {
    pub(super) conv: Conv2d,
}

impl Up {
    /// Load the 1x1 convolution.
    pub fn new(vb: VarBuilder, cin: usize, cout: usize) -> candle_core::Result<Self> {
        Ok(Up {
            conv: conv(cin, 4 * cout, 1, vb.pp("conv"))?,
        })
    }
}

impl Module for Up {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        pixel_shuffle2(&self.conv.forward(x)?)
    }
}

/// Frequencies of the log-SNR embedding, 0.1 * 1000^(k / (n - 1)) for k = 0..n, computed in
/// f64 and rounded to f32 (PyTorch computes them in f32 and may differ by a few ulp; the
/// effect on v is below 1e-6).
pub fn embedding_freqs(n: usize) -> Vec<f32> {
    (0..n)
        .map(|k| (0.1 * 1000f64.powf(k as f64 / (n - 1) as f64)) as f32)
        .collect()
}

/// Sinusoidal embedding of log-SNR: [sin(lam f_k)..., cos(lam f_k)...], in f32 like training.
pub fn logsnr_embedding(logsnr: f32, freqs: &[f32]) -> Vec<f32> {
    let args: Vec<f32> = freqs.iter().map(|&f| logsnr * f).collect();
    args.iter()
        .map(|a| a.sin())
        .chain(args.iter().map(|a| a.cos()))
        .collect()
}

/// The noise-level embedding: [`logsnr_embedding`] through the two-layer SiLU MLP `emb1`,
/// `emb2`; shared by [`UNet`] and the fast path (`super::fast`).
#[derive(Debug, Clone)]
pub(crate) struct NoiseEmbedding {
    freqs: Vec<f32>,
    emb1: Linear,
    emb2: Linear,
}

impl NoiseEmbedding {
    /// Loads `emb1` and `emb2` for `cfg`.
    pub(crate) fn new(vb: &VarBuilder, cfg: &UNetConfig) -> candle_core::Result<Self> {
        let ed = cfg.emb_dim;
        Ok(NoiseEmbedding {
            freqs: embedding_freqs(cfg.emb_freqs),
            emb1: candle_nn::linear(2 * cfg.emb_freqs, ed, vb.pp("emb1"))?,
            emb2: candle_nn::linear(ed, ed, vb.pp("emb2"))?,
        })
    }

    /// The embedding of `logsnr`, shape `(1, emb_dim)`, on `device`.
    pub(crate) fn forward(&self, logsnr: f32, device: &Device) -> candle_core::Result<Tensor> {
        let emb = logsnr_embedding(logsnr, &self.freqs);
        let e = Tensor::from_vec(emb, (1, 2 * self.freqs.len()), device)?;
        let e = candle_nn::ops::silu(&self.emb1.forward(&e)?)?;
        candle_nn::ops::silu(&self.emb2.forward(&e)?)
    }
}

/// How [`UNet::predict_x0_tiled`] cuts a large image: cores of at most `core` pixels per
/// side, each evaluated with `halo` pixels of context on every side (clipped at the image
/// border). Cut positions depend only on the image size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiling {
    /// Side of a tile's core (the part of the output it produces), a multiple of the model's
    /// multiple.
    pub core: usize,
    /// Context around a core, a multiple of the model's multiple.
    pub halo: usize,
}

impl Tiling {
    /// The tiling used by [`Denoiser::predict_x0`] for images above [`Tiling::MAX_WHOLE`]
    /// pixels: 768-pixel cores with 128 pixels of context (8 pixels at the coarsest level),
    /// so a tile has at most 1024x1024 pixels. With the default model (w64n3) the tiled x0
    /// differs from the whole-image one by at most about 6e-3 (0.71 of an 8-bit level, at
    /// t = 900; about 1.2e-3 at t <= 600), measured with 256-pixel cores (models/README.md).
    pub const DEFAULT: Tiling = Tiling {
        core: 768,
        halo: 128,
    };
    /// Images with at most this many pixels run whole (and no tile is larger).
    pub const MAX_WHOLE: usize = 1 << 20;
}

/// The v-prediction U-Net.
#[derive(Debug, Clone)]
pub struct UNet {
    cfg: UNetConfig,
    pub(super) emb: NoiseEmbedding,
    pub(super) stem: Conv2d,
    pub(super) down_blocks: Vec<Vec<ResBlock>>,
    pub(super) downs: Vec<Down>,
    pub(super) mid: ResBlock,
    pub(super) up_blocks: Vec<ResBlock>,
    pub(super) ups: Vec<Up>,
    pub(super) out_norm: ChanNorm,
    pub(super) out_conv: Conv2d,
    id: [u8; 32],
    device: Device,
    fast: Option<std::sync::Arc<crate::model::fast::FastUNet>>,
}

impl UNet {
    /// Build the network from a var builder whose names are the safetensors keys. The model id
    /// is left zero; [`UNet::from_safetensors_bytes`] sets it.
    pub fn new(vb: VarBuilder, cfg: &UNetConfig) -> candle_core::Result<Self> {
        let ch = &cfg.channels;
        let ed = cfg.emb_dim;
        let n = ch.len();
        let mut down_blocks = Vec::with_capacity(n);
        let mut downs = Vec::with_capacity(n.saturating_sub(1));
        for (i, &c) in ch.iter().enumerate() {
            let vbi = vb.pp("down_blocks").pp(i);
            down_blocks.push(
                (0..cfg.blocks)
                    .map(|j| ResBlock::new(vbi.pp(j), c, c, ed))
                    .collect::<candle_core::Result<Vec<_>>>()?,
            );
            if i + 1 < n {
                downs.push(Down::new(vb.pp("downs").pp(i), c, ch[i + 1])?);
            }
        }
        let mut up_blocks = Vec::with_capacity(n);
        let mut ups = Vec::with_capacity(n.saturating_sub(1));
        for (i, &c) in ch.iter().enumerate() {
            up_blocks.push(ResBlock::new(vb.pp("up_blocks").pp(i), 2 * c, c, ed)?);
            if i > 0 {
                ups.push(Up::new(vb.pp("ups").pp(i - 1), c, ch[i - 1])?);
            }
        }
        // The structure (layers, weight names, channels) is defined here alone: the fast
        // network is converted from these layers, not loaded again.
        let mut net = UNet {
            cfg: cfg.clone(),
            emb: NoiseEmbedding::new(&vb, cfg)?,
            stem: conv(12, ch[0], 3, vb.pp("stem"))?,
            down_blocks,
            downs,
            mid: ResBlock::new(vb.pp("mid"), ch[n - 1], ch[n - 1], ed)?,
            up_blocks,
            ups,
            out_norm: ChanNorm::new(vb.pp("out_norm"), ch[0])?,
            out_conv: conv(ch[0], 12, 3, vb.pp("out_conv"))?,
            id: [0; 32],
            device: vb.device().clone(),
            fast: None,
        };
        net.fast = Some(std::sync::Arc::new(
            crate::model::fast::FastUNet::from_reference(&net)?,
        ));
        Ok(net)
    }

    /// Load a safetensors file held in memory: config from the metadata key `"config"`, every
    /// tensor checked for name and shape (a missing or unexpected tensor is an error); the
    /// model id is the SHA-256 of `bytes`.
    pub fn from_safetensors_bytes(bytes: &[u8]) -> Result<Self> {
        let cfg = UNetConfig::from_json(&weights::metadata_config(bytes)?)?;
        let (vb, check) = weights::var_builder(bytes)?;
        let mut net = UNet::new(vb, &cfg)?;
        check.all_used()?;
        net.id = weights::model_id(bytes);
        Ok(net)
    }

    /// Load a safetensors file from disk (see [`UNet::from_safetensors_bytes`]). A file that
    /// cannot be read is an [`crate::Error::File`] naming `path`; a malformed one an
    /// [`crate::Error::Model`] whose message starts with `path`.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Self> {
        weights::from_file(path.as_ref(), Self::from_safetensors_bytes)
    }

    /// This network without the fast NHWC path (`super::fast`): `predict_*` run [`UNet::forward`].
    pub fn reference_path(mut self) -> Self {
        self.fast = None;
        self
    }

    /// The architecture.
    pub fn config(&self) -> &UNetConfig {
        &self.cfg
    }

    /// The network: v for latents `z` of shape (B, 3, H, W) at conditioning `logsnr`, with H
    /// and W multiples of [`UNetConfig::multiple`].
    pub fn forward(&self, z: &Tensor, logsnr: f32) -> candle_core::Result<Tensor> {
        let b = z.dim(0)?;
        let e = self.emb.forward(logsnr, &self.device)?;
        let e = e.broadcast_as((b, self.cfg.emb_dim))?.contiguous()?;
        let mut h = self.stem.forward(&pixel_unshuffle2(z)?)?;
        let n = self.down_blocks.len();
        let mut skips = Vec::with_capacity(n);
        for i in 0..n {
            for blk in &self.down_blocks[i] {
                h = blk.forward(&h, &e)?;
            }
            skips.push(h.clone());
            if i + 1 < n {
                h = self.downs[i].forward(&h)?;
            }
        }
        h = self.mid.forward(&h, &e)?;
        for i in (0..n).rev() {
            h = self.up_blocks[i].forward(&Tensor::cat(&[&h, &skips[i]], 1)?, &e)?;
            if i > 0 {
                h = self.ups[i - 1].forward(&h)?;
            }
        }
        let h = self
            .out_conv
            .forward(&candle_nn::ops::silu(&self.out_norm.forward(&h)?)?)?;
        pixel_shuffle2(&h)
    }

    /// v for one planar image (3 x h x w, f32), run whole.
    pub fn predict_v(&self, z: &[f32], h: usize, w: usize, logsnr: f32) -> Result<Vec<f32>> {
        check_input(z.len(), h, w, self.multiple())?;
        if let Some(fast) = self.fast.as_ref().filter(|_| self.device.is_cpu()) {
            return fast.predict_v(z, h, w, logsnr);
        }
        let zt = Tensor::from_slice(z, (1, 3, h, w), &self.device)?;
        let v = self.forward(&zt, logsnr)?;
        Ok(v.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?)
    }

    /// x0 for one planar image, evaluated in overlapping tiles (see [`Tiling`]); memory is
    /// bounded by the tile size, and the result is close to the whole-image one.
    pub fn predict_x0_tiled(
        &self,
        z: &[f32],
        h: usize,
        w: usize,
        abar: f64,
        logsnr: f64,
        tiling: Tiling,
    ) -> Result<Vec<f32>> {
        let m = self.multiple();
        check_input(z.len(), h, w, m)?;
        check_level(abar, logsnr)?;
        if tiling.core == 0 || !tiling.core.is_multiple_of(m) || !tiling.halo.is_multiple_of(m) {
            return Err(Error::param(format!(
                "tiling core {} / halo {} (expected positive multiples of {m})",
                tiling.core, tiling.halo
            )));
        }
        let mut v = vec![0f32; 3 * h * w];
        for (y0, y1) in cuts(h, tiling.core) {
            for (x0, x1) in cuts(w, tiling.core) {
                let (ty0, ty1) = (y0.saturating_sub(tiling.halo), (y1 + tiling.halo).min(h));
                let (tx0, tx1) = (x0.saturating_sub(tiling.halo), (x1 + tiling.halo).min(w));
                let (th, tw) = (ty1 - ty0, tx1 - tx0);
                let mut tile = Vec::with_capacity(3 * th * tw);
                for c in 0..3 {
                    for y in ty0..ty1 {
                        let row = (c * h + y) * w;
                        tile.extend_from_slice(&z[row + tx0..row + tx1]);
                    }
                }
                let tv = self.predict_v(&tile, th, tw, logsnr as f32)?;
                for c in 0..3 {
                    for y in y0..y1 {
                        let src = (c * th + y - ty0) * tw + (x0 - tx0);
                        let dst = (c * h + y) * w + x0;
                        v[dst..dst + (x1 - x0)].copy_from_slice(&tv[src..src + (x1 - x0)]);
                    }
                }
            }
        }
        x0_from_v(z, v, abar)
    }
}

/// Core intervals [a, b) covering 0..n in steps of `core`.
fn cuts(n: usize, core: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..n.div_ceil(core)).map(move |k| (k * core, ((k + 1) * core).min(n)))
}

fn check_input(len: usize, h: usize, w: usize, m: usize) -> Result<()> {
    if h == 0 || w == 0 || !h.is_multiple_of(m) || !w.is_multiple_of(m) {
        return Err(Error::param(format!(
            "network input {w}x{h} (expected positive multiples of {m})"
        )));
    }
    match h.checked_mul(w).and_then(|p| p.checked_mul(3)) {
        Some(n) if n == len => Ok(()),
        _ => Err(Error::param(format!(
            "latent of {len} values for a {w}x{h} image (expected 3 x {w} x {h})"
        ))),
    }
}

fn check_level(abar: f64, logsnr: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&abar) {
        return Err(Error::param(format!("abar {abar} (expected 0..=1)")));
    }
    if !logsnr.is_finite() || logsnr.abs() > 1e4 {
        return Err(Error::param(format!(
            "log-SNR {logsnr} (expected finite, |lam| <= 1e4)"
        )));
    }
    Ok(())
}

/// x0 = sqrt(abar) z - sqrt(1 - abar) v, per value in f64; a non-finite value is an error.
fn x0_from_v(z: &[f32], mut v: Vec<f32>, abar: f64) -> Result<Vec<f32>> {
    let (a, b) = (abar.sqrt(), (1.0 - abar).sqrt());
    for (vi, &zi) in v.iter_mut().zip(z) {
        let x = (a * zi as f64 - b * *vi as f64) as f32;
        if !x.is_finite() {
            return Err(Error::Model(format!(
                "non-finite network output (z = {zi}, v = {vi})"
            )));
        }
        *vi = x;
    }
    Ok(v)
}

impl Denoiser for UNet {
    fn predict_x0(
        &self,
        z: &[f32],
        h: usize,
        w: usize,
        abar: f64,
        logsnr: f64,
    ) -> Result<Vec<f32>> {
        check_input(z.len(), h, w, self.multiple())?;
        check_level(abar, logsnr)?;
        if h * w > Tiling::MAX_WHOLE {
            return self.predict_x0_tiled(z, h, w, abar, logsnr, Tiling::DEFAULT);
        }
        let v = self.predict_v(z, h, w, logsnr as f32)?;
        x0_from_v(z, v, abar)
    }

    fn multiple(&self) -> usize {
        self.cfg.multiple()
    }

    fn id(&self) -> [u8; 32] {
        self.id
    }
}
