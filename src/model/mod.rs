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

/// The architecture of every model so far: the U-Net of `unet.rs` (and `train/model.py`). A
/// model config without an `"arch"` key is this one.
pub const ARCH_UNET_V1: &str = "unet-v1";

/// The architectures this build can run, in the order they were added.
pub const ARCHITECTURES: &[&str] = &[ARCH_UNET_V1];

/// The architecture named by a model file's config (metadata key `"config"`, JSON): its
/// `"arch"` key, or [`ARCH_UNET_V1`] without one.
pub fn architecture(safetensors: &[u8]) -> Result<String> {
    let text = weights::metadata_config(safetensors)?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| crate::Error::Model(format!("invalid model config {text:?}: {e}")))?;
    Ok(match v.get("arch") {
        None => ARCH_UNET_V1.to_owned(),
        Some(a) => a
            .as_str()
            .ok_or_else(|| crate::Error::Model(format!("invalid model config {text:?}: arch {a}")))?
            .to_owned(),
    })
}

/// Load any model this build knows from a safetensors file held in memory: the config's
/// architecture picks the network (an unknown one is an error that names it).
///
/// ```
/// let bytes = ddpmc::model::DEFAULT_WEIGHTS;
/// let net = ddpmc::model::load(bytes).unwrap();
/// assert_eq!(net.id(), ddpmc::model::model_id(bytes));
/// ```
pub fn load(safetensors: &[u8]) -> Result<Box<dyn Denoiser>> {
    match architecture(safetensors)?.as_str() {
        ARCH_UNET_V1 => Ok(Box::new(UNet::from_safetensors_bytes(safetensors)?)),
        other => Err(crate::Error::Model(format!(
            "architecture {other:?} is not known to this build (it knows {ARCHITECTURES:?})"
        ))),
    }
}

/// [`load`] from a file. A file that cannot be read is an [`crate::Error::File`] naming
/// `path`; a malformed or unknown model an [`crate::Error::Model`] whose message starts with
/// `path`.
pub fn load_file(path: impl AsRef<std::path::Path>) -> Result<Box<dyn Denoiser>> {
    weights::from_file(path.as_ref(), load)
}
#[doc(hidden)]
pub use unet::{pixel_shuffle2, pixel_unshuffle2};
pub use unet::{Tiling, UNet, UNetConfig};
pub use weights::{
    builtin_model, builtin_name, default_model, id_hex, model_for_file, model_id, BuiltinModel,
    BUILTIN_MODELS, DEFAULT_WEIGHTS,
};
