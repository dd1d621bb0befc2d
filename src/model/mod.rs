//! Stage 2: the epsilon-model (SPEC §4.1, §6.4). The network only moves the model mean of a coding
//! step; no probability depends on it (invariant D).

use crate::Result;

/// A network that estimates the clean image x0 from a noisy latent.
///
/// Latents and outputs are planar f32, channel-major: `3 * h * w` values, channel 0 first,
/// rows top to bottom. `h` and `w` are multiples of [`Denoiser::multiple`].
pub trait Denoiser: Send + Sync {
    /// Estimate x0 (not clipped) from latent `z` at the noise level with cumulative signal
    /// fraction `abar` and conditioning input `logsnr` = ln(abar / (1 - abar)), both read from
    /// the file's header.
    fn predict_x0(&self, z: &[f32], h: usize, w: usize, abar: f64, logsnr: f64)
        -> Result<Vec<f32>>;
    /// Height and width must be multiples of this.
    fn multiple(&self) -> usize;
    /// The model id: SHA-256 of the weights file's bytes.
    fn id(&self) -> [u8; 32];
}

pub(crate) mod fast;
// The network's NHWC kernels: public only for `benches/kernels.rs`, not part of the API.
#[doc(hidden)]
pub mod kernels;
pub(crate) mod ops;
pub(crate) mod unet;
pub(crate) mod weights;

pub use fast::tune_allocator;
#[doc(hidden)]
pub use unet::{pixel_shuffle2, pixel_unshuffle2};
pub use unet::{Tiling, UNet, UNetConfig};
pub use weights::{default_model, id_hex, model_id, DEFAULT_WEIGHTS};
