//! Stage 2 (SPEC §4.1, §6.4): the fast forward pass of the v-prediction U-Net, NHWC throughout.
//!
//! The same network as [`super::unet::UNet::forward`] (same safetensors keys, same weights),
//! run on the NHWC kernels of [`super::kernels`] through the candle custom ops of
//! [`super::ops`]: convolutions are tiled `gemm` calls with a constant tile size, so outputs
//! are bit-identical whatever the thread count. Layout conversions happen only at the ends,
//! fused with the stem's pixel-unshuffle and the output's pixel-shuffle. Fusions: ChanNorm +
//! SiLU in one pass (reading the skip concatenation's two halves directly, as the skip
//! convolution does: the concatenation is never built), and in the output pass of a ResBlock's first convolution; each convolution adds its bias, the ResBlock's noise-level embedding
//! (folded into conv1's bias) and the residual (conv2) while it writes its output; Down's
//! pixel-unshuffle is part of its convolution's input gather.
//!
//! Results differ from the candle path only by float rounding (summation order); the tests
//! bound the difference.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Conv2d, Linear};

use super::kernels::Kernel;
use super::ops::{self, Conv};
use super::unet::{ChanNorm, NoiseEmbedding, ResBlock, UNet};

/// A convolution and its bias.
#[derive(Debug, Clone)]
struct FastConv {
    op: Conv,
    bias: Tensor,
}

impl FastConv {
    /// The reference network's convolution (weight `[cout, cin', k, k]`, bias `[cout]`) in the
    /// kernels' layout.
    fn from_conv(conv: &Conv2d, kernel: Kernel) -> candle_core::Result<Self> {
        let Some(bias) = conv.bias() else {
            candle_core::bail!("a convolution of the network has no bias");
        };
        Ok(FastConv {
            op: Conv::new(kernel, conv.weight())?,
            bias: bias.to_dtype(DType::F32)?,
        })
    }

    fn forward(&self, x: &Tensor, residual: Option<&Tensor>) -> candle_core::Result<Tensor> {
        self.op.forward(x, &self.bias, residual)
    }
}

/// ChanNorm parameters.
#[derive(Debug, Clone)]
struct FastNorm {
    weight: Tensor,
    bias: Tensor,
    /// `(2, c)`: weight and bias, for [`ops::chan_norm_concat`].
    weight_bias: Tensor,
}

impl FastNorm {
    fn from_norm(n: &ChanNorm) -> candle_core::Result<Self> {
        let weight = n.weight.flatten_all()?.to_dtype(DType::F32)?;
        let bias = n.bias.flatten_all()?.to_dtype(DType::F32)?;
        let weight_bias = Tensor::stack(&[&weight, &bias], 0)?;
        Ok(FastNorm {
            weight,
            bias,
            weight_bias,
        })
    }

    /// SiLU(ChanNorm(x)), NHWC.
    fn norm_silu(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        ops::chan_norm(x, &self.weight, &self.bias, true)
    }
}

/// Residual block (see `ResBlock` in `unet.rs`), NHWC.
#[derive(Debug, Clone)]
struct FastResBlock {
    norm1: FastNorm,
    /// conv1 with norm2 + SiLU fused into its output pass.
    conv1: FastConv,
    emb: Linear,
    conv2: FastConv,
    skip: Option<FastConv>,
}

impl FastResBlock {
    fn from_block(b: &ResBlock) -> candle_core::Result<Self> {
        let conv1 = FastConv::from_conv(&b.conv1, Kernel::K3)?;
        let norm2 = FastNorm::from_norm(&b.norm2)?;
        Ok(FastResBlock {
            norm1: FastNorm::from_norm(&b.norm1)?,
            conv1: FastConv {
                op: conv1.op.with_norm_silu(&norm2.weight, &norm2.bias)?,
                bias: conv1.bias,
            },
            emb: b.emb.clone(),
            conv2: FastConv::from_conv(&b.conv2, Kernel::K3)?,
            skip: b
                .skip
                .as_ref()
                .map(|s| FastConv::from_conv(s, Kernel::K1))
                .transpose()?,
        })
    }

    /// `x`: NHWC; `e`: the embedding after the MLP, (1, emb_dim), shared by the batch.
    fn forward(&self, x: &Tensor, e: &Tensor) -> candle_core::Result<Tensor> {
        let s = match &self.skip {
            Some(s) => s.forward(x, None)?,
            None => x.clone(),
        };
        self.finish(&self.norm1.norm_silu(x)?, &s, e)
    }

    /// [`FastResBlock::forward`] of the channel concatenation `[a, b]`, never built: the norm
    /// and the skip convolution read both halves.
    fn forward_concat(&self, a: &Tensor, b: &Tensor, e: &Tensor) -> candle_core::Result<Tensor> {
        let Some(skip) = &self.skip else {
            candle_core::bail!("a ResBlock on concatenated inputs needs a skip convolution");
        };
        let s = skip.op.forward_concat(a, b, &skip.bias)?;
        let xn = ops::chan_norm_concat(a, b, &self.norm1.weight_bias, true)?;
        self.finish(&xn, &s, e)
    }

    /// The block from `xn` = SiLU(norm1(x)) and the skip path `s`.
    fn finish(&self, xn: &Tensor, s: &Tensor, e: &Tensor) -> candle_core::Result<Tensor> {
        // conv1's bias plus this block's embedding term: one per-channel vector.
        let bias1 = (&self.conv1.bias + self.emb.forward(e)?.flatten_all()?)?;
        // SiLU(norm2(conv1(xn) + bias1)), the norm fused into the convolution.
        let h = self.conv1.op.forward(xn, &bias1, None)?;
        self.conv2.forward(&h, Some(s))
    }
}

/// The v-prediction U-Net on the NHWC kernels, converted from the layers of [`super::UNet`].
#[derive(Debug, Clone)]
pub struct FastUNet {
    emb: NoiseEmbedding,
    stem: FastConv,
    down_blocks: Vec<Vec<FastResBlock>>,
    downs: Vec<FastConv>,
    mid: FastResBlock,
    up_blocks: Vec<FastResBlock>,
    ups: Vec<FastConv>,
    out_norm: FastNorm,
    out_conv: FastConv,
}

impl FastUNet {
    /// The reference network's layers, converted once to the kernels' layout: the structure
    /// (layers, names, channels) is [`UNet::new`]'s alone.
    pub fn from_reference(net: &UNet) -> candle_core::Result<Self> {
        Ok(FastUNet {
            emb: net.emb.clone(),
            stem: FastConv::from_conv(&net.stem, Kernel::K3)?,
            down_blocks: net
                .down_blocks
                .iter()
                .map(|level| level.iter().map(FastResBlock::from_block).collect())
                .collect::<candle_core::Result<_>>()?,
            downs: net
                .downs
                .iter()
                .map(|d| FastConv::from_conv(&d.conv, Kernel::Down2))
                .collect::<candle_core::Result<_>>()?,
            mid: FastResBlock::from_block(&net.mid)?,
            up_blocks: net
                .up_blocks
                .iter()
                .map(FastResBlock::from_block)
                .collect::<candle_core::Result<_>>()?,
            ups: net
                .ups
                .iter()
                .map(|u| FastConv::from_conv(&u.conv, Kernel::K1))
                .collect::<candle_core::Result<_>>()?,
            out_norm: FastNorm::from_norm(&net.out_norm)?,
            out_conv: FastConv::from_conv(&net.out_conv, Kernel::K3)?,
        })
    }

    /// The network: v for planar latents `z` (B, 3, H, W) at conditioning `logsnr`; H and W
    /// multiples of [`UNetConfig::multiple`]. Returns planar (B, 3, H, W).
    pub fn forward(&self, z: &Tensor, logsnr: f32) -> candle_core::Result<Tensor> {
        let e = self.emb.forward(logsnr, &Device::Cpu)?;
        let z = z.to_dtype(DType::F32)?.contiguous()?;
        let mut h = self.stem.forward(&ops::nchw_unshuffle_to_nhwc(&z)?, None)?;
        let n = self.down_blocks.len();
        let mut skips = Vec::with_capacity(n);
        for i in 0..n {
            for blk in &self.down_blocks[i] {
                h = blk.forward(&h, &e)?;
            }
            skips.push(h.clone());
            if i + 1 < n {
                h = self.downs[i].forward(&h, None)?;
            }
        }
        h = self.mid.forward(&h, &e)?;
        for i in (0..n).rev() {
            h = self.up_blocks[i].forward_concat(&h, &skips[i], &e)?;
            if i > 0 {
                h = ops::pixel_shuffle(&self.ups[i - 1].forward(&h, None)?)?;
            }
        }
        let h = self.out_conv.forward(&self.out_norm.norm_silu(&h)?, None)?;
        ops::nhwc_shuffle_to_nchw(&h)
    }

    /// v for one planar image (3 x h x w); the caller checks the sizes.
    pub fn predict_v(&self, z: &[f32], h: usize, w: usize, logsnr: f32) -> crate::Result<Vec<f32>> {
        let zt = Tensor::from_slice(z, (1, 3, h, w), &Device::Cpu)?;
        let v = self.forward(&zt, logsnr)?;
        Ok(v.flatten_all()?.to_vec1::<f32>()?)
    }
}

/// Tune glibc's allocator for the fast path's large activation buffers (tens of MB each): serve
/// them from the heap rather than fresh `mmap`s, and keep freed memory instead of returning it
/// to the system after every layer. This saves the page faults and zeroing of a new mapping per
/// buffer (about 10% of a decode's CPU time at 768x512, doc/SPEED.md). Equivalent to
/// `GLIBC_TUNABLES=glibc.malloc.mmap_threshold=...:glibc.malloc.trim_threshold=...`, within
/// the limits `mallopt` accepts. Call it once at program start.
/// Returns true when both settings were taken; a no-op returning false off glibc.
pub fn tune_allocator() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes allocator parameters; it is safe to call at any time.
        unsafe {
            // Some glibc versions refuse an mmap threshold above half their maximum heap size
            // (32 MiB on 64-bit): try 256 MiB first (taken by glibc 2.36), then 32 MiB.
            let mmap = libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20) == 1
                || libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20) == 1;
            let trim = libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1;
            mmap && trim
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{default_model, Denoiser};

    fn latent(h: usize, w: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..3 * h * w)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let noise = (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
                ((i % w) as f32 * 0.11).sin() * 0.6 + noise * 0.5
            })
            .collect()
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn fast_path_matches_candle_path_on_the_default_model() {
        let fast = default_model().unwrap();
        let reference = fast.clone().reference_path();
        let (h, w) = (48, 80);
        for (i, logsnr) in [-6.0f32, 0.0, 5.0].into_iter().enumerate() {
            let z = latent(h, w, i as u64);
            let a = fast.predict_v(&z, h, w, logsnr).unwrap();
            let b = reference.predict_v(&z, h, w, logsnr).unwrap();
            let d = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f32::max);
            println!("log-SNR {logsnr}: max |v_fast - v_candle| = {d:.3e}");
            assert!(d < 1e-4, "log-SNR {logsnr}: max |v_fast - v_candle| = {d}");
            assert_ne!(bits(&a), bits(&b), "the fast path did not run");
        }
    }

    #[test]
    fn fast_path_is_bit_identical_across_thread_counts() {
        let net = default_model().unwrap();
        let (h, w) = (64, 48);
        let z = latent(h, w, 7);
        let run = |n: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap()
                .install(|| net.predict_x0(&z, h, w, 0.4, -0.4).unwrap())
        };
        let one = bits(&run(1));
        assert_eq!(one, bits(&run(2)));
        assert_eq!(one, bits(&run(3)));
    }

    #[test]
    fn allocator_tuning_is_taken_and_changes_no_output() {
        let net = default_model().unwrap();
        let (h, w) = (32, 48);
        let z = latent(h, w, 3);
        let before = bits(&net.predict_x0(&z, h, w, 0.6, 0.4).unwrap());
        let taken = super::tune_allocator();
        assert_eq!(taken, cfg!(all(target_os = "linux", target_env = "gnu")));
        assert_eq!(before, bits(&net.predict_x0(&z, h, w, 0.6, 0.4).unwrap()));
    }
}
