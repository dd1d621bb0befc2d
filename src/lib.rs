//! # ddpmc — progressive lossy-to-lossless image coding with a diffusion model
//!
//! A ddpmc file is a sequence of rate-distortion ordered chunks. The first bytes give a coarse
//! picture, each further chunk sharpens it, and an optional last chunk makes it exact.
//!
//! Pipeline (format-spec/SPEC.md has the normative details):
//!
//! 1. [`diffusion`]: the paper's linear noise schedule (f64), the coding step t -> s
//!    (posterior mean, model mean, quantizer width) and the normative dither PRNG.
//! 2. [`model`]: the epsilon-model (a v-prediction U-Net written with candle); it only moves
//!    the model mean, never a probability (invariant D).
//! 3. [`entropy`]: the only module that touches constriction: integer probability tables
//!    indexed by (scale index, dither level, K), side-information models, bit counting.
//! 4. [`format`]: the container: signature, version, chunks with length and CRC-32, header.
//!    The step-coder layer (crate-private `step`) codes one diffusion step: kind 1, UQ in the
//!    pixel domain; kind 2, UQ in a colour + DCT transform domain; kind 3, the Gaussian step
//!    by reverse-channel coding.
//! 5. [`codec`]: the encoder's chain, the progressive decoder, and the lossless end (a
//!    network-free predictive coder, with the chain's reconstruction as an extra input).
//! 6. `bench` (cargo feature `bench`, on by default): rate-distortion and lossless measurement
//!    against classic codecs.
//!
//! Cargo features: `cli` (default; the `ddpmc` command, implies `bench`) and `bench`. A
//! library user who only codes images sets `default-features = false` and compiles neither
//! clap, indicatif, plotters nor the plots' font.

#[cfg(feature = "bench")]
pub mod bench;
pub mod codec;
pub mod diffusion;
pub mod entropy;
pub mod error;
pub mod format;
pub mod model;
pub(crate) mod step;

pub use error::{Error, Result};
