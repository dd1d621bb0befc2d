//! The image crate's view of ddpmc: [`DdpmcDecoder`], an [`image::ImageDecoder`] for .ddpmc
//! data, and [`register_image_hooks`], which makes `image::open("x.ddpmc")` and content
//! detection (`ImageReader::with_guessed_format`) work.
//!
//! The decoder reads the whole file when it is made, checks its preamble and header (size and
//! colour type come from the header, no network pass), and runs the network in
//! [`image::ImageDecoder::read_image`]: every step in the file, then [`Recon::Denoise`]; the
//! exact image when the file ends with a LOSS chunk. A truncated file gives the image of its
//! last complete step, as [`crate::decode`] does.

use std::io::Read;
use std::sync::OnceLock;

use image::error::{
    DecodingError, ImageFormatHint, LimitError, LimitErrorKind, UnsupportedError,
    UnsupportedErrorKind,
};
use image::{ColorType, ImageDecoder, ImageError, ImageResult};

use crate::codec::{decode_with_limits, Limits, Recon};
use crate::format::{self, kind, Colour, Header};
use crate::model::{model_for_file, Denoiser};
use crate::{Error, Result};

/// The file extension registered with the image crate (without the dot).
pub const EXTENSION: &str = "ddpmc";

/// Largest .ddpmc file the decoder reads (as the command line: 4 GiB).
const MAX_FILE: u64 = 1 << 32;

/// Everything `r` holds, up to [`MAX_FILE`] bytes.
fn read_all(r: impl Read) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    r.take(MAX_FILE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(Error::Limits(format!(
            "ddpmc data larger than {MAX_FILE} bytes"
        )));
    }
    Ok(bytes)
}

/// An [`image::ImageDecoder`] for .ddpmc data.
///
/// ```
/// use image::ImageDecoder;
/// # let model = ddpmc::model::default_model()?;
/// # let img = image::DynamicImage::new_rgb8(32, 24);
/// # let opts = ddpmc::EncodeOptions { quality: 1, ..Default::default() };
/// let bytes = ddpmc::encode(&img, &model, &opts)?;
/// let dec = ddpmc::DdpmcDecoder::new(std::io::Cursor::new(&bytes))?;
/// assert_eq!(dec.dimensions(), (32, 24));
/// let back = image::DynamicImage::from_decoder(dec)?;
/// assert_eq!(back, ddpmc::decode(&bytes, &model, None, ddpmc::Recon::Denoise)?.image);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct DdpmcDecoder<'m> {
    bytes: Vec<u8>,
    header: Header,
    icc: Option<Vec<u8>>,
    model: &'m dyn Denoiser,
    limits: Limits,
    max_alloc: Option<u64>,
}

impl std::fmt::Debug for DdpmcDecoder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DdpmcDecoder")
            .field("bytes", &self.bytes.len())
            .field("header", &self.header)
            .field("icc_profile_bytes", &self.icc.as_ref().map(Vec::len))
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl DdpmcDecoder<'static> {
    /// Read a .ddpmc file from `r` for decoding with the built-in model it names
    /// ([`crate::model::model_for_file`]; each built-in model is loaded once per process).
    pub fn new(r: impl Read) -> Result<Self> {
        let bytes = read_all(r)?;
        let model = model_for_file(&bytes)?;
        Self::from_bytes(bytes, model)
    }
}

impl<'m> DdpmcDecoder<'m> {
    /// Read a .ddpmc file from `r` for decoding with `model`. Reads everything, then checks
    /// the preamble and the header (the CRCs of the chunks up to the first step).
    pub fn with_model(r: impl Read, model: &'m dyn Denoiser) -> Result<Self> {
        Self::from_bytes(read_all(r)?, model)
    }

    fn from_bytes(bytes: Vec<u8>, model: &'m dyn Denoiser) -> Result<Self> {
        let major = format::check_preamble(&bytes)?;
        let mut pos = format::PREAMBLE_LEN;
        let mut header = None;
        let mut icc = None;
        while let Some(c) = format::read_chunk(&bytes[pos..])? {
            pos += c.len;
            match c.kind {
                kind::HEAD if header.is_none() => {
                    let h = Header::parse(c.payload)?;
                    format::check_steps(major, &h)?;
                    header = Some(h);
                }
                kind::ICCP if header.is_some() && icc.is_none() => {
                    icc = Some(c.payload.to_vec());
                }
                k if format::is_critical(k) => break,
                _ => {}
            }
        }
        let header = header.ok_or_else(|| {
            Error::format("no header in the data (file empty, truncated, or HEAD not first)")
        })?;
        Ok(DdpmcDecoder {
            bytes,
            header,
            icc,
            model,
            limits: Limits::default(),
            max_alloc: None,
        })
    }

    /// Decode under `limits` (the default admits every file the format allows).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The file's header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Decode into an image (as [`crate::decode`] with [`Recon::Denoise`]).
    fn decode(&self) -> Result<image::DynamicImage> {
        let out = decode_with_limits(&self.bytes, self.model, None, Recon::Denoise, self.limits)?;
        Ok(out.image)
    }
}

/// A library error as the image crate's.
fn to_image_error(e: Error) -> ImageError {
    let hint = || ImageFormatHint::Name("ddpmc".into());
    match e {
        Error::Io(e) => ImageError::IoError(e),
        Error::Limits(_) => {
            ImageError::Limits(LimitError::from_kind(LimitErrorKind::DimensionError))
        }
        Error::ModelMismatch { .. } => {
            ImageError::Unsupported(UnsupportedError::from_format_and_kind(
                hint(),
                UnsupportedErrorKind::GenericFeature(e.to_string()),
            ))
        }
        e => ImageError::Decoding(DecodingError::new(hint(), e)),
    }
}

impl From<Error> for ImageError {
    fn from(e: Error) -> Self {
        to_image_error(e)
    }
}

impl ImageDecoder for DdpmcDecoder<'_> {
    fn dimensions(&self) -> (u32, u32) {
        (self.header.width, self.header.height)
    }

    fn color_type(&self) -> ColorType {
        match self.header.colour {
            Colour::Gray => ColorType::L8,
            Colour::Rgb => ColorType::Rgb8,
        }
    }

    fn icc_profile(&mut self) -> ImageResult<Option<Vec<u8>>> {
        Ok(self.icc.clone())
    }

    fn set_limits(&mut self, limits: image::Limits) -> ImageResult<()> {
        limits.check_dimensions(self.header.width, self.header.height)?;
        self.max_alloc = limits.max_alloc;
        Ok(())
    }

    fn read_image(self, buf: &mut [u8]) -> ImageResult<()> {
        // The decoder's latent and network activations dwarf the output: refuse at once a
        // caller's allocation limit below the padded latent (3 f32 per pixel).
        if let Some(max) = self.max_alloc {
            let (ph, pw) = self.header.padded();
            if (ph as u64) * (pw as u64) * 12 > max {
                return Err(ImageError::Limits(LimitError::from_kind(
                    LimitErrorKind::InsufficientMemory,
                )));
            }
        }
        if buf.len() as u64 != self.total_bytes() {
            return Err(ImageError::Parameter(
                image::error::ParameterError::from_kind(
                    image::error::ParameterErrorKind::DimensionMismatch,
                ),
            ));
        }
        let img = self.decode()?;
        let bytes = img.as_bytes();
        if bytes.len() != buf.len() {
            return Err(Error::format(format!(
                "decoded {} bytes for a {}-byte image",
                bytes.len(),
                buf.len()
            ))
            .into());
        }
        buf.copy_from_slice(bytes);
        Ok(())
    }

    fn read_image_boxed(self: Box<Self>, buf: &mut [u8]) -> ImageResult<()> {
        (*self).read_image(buf)
    }
}

/// Register ddpmc with the image crate (once per process; later calls do nothing): the
/// extension `.ddpmc` for [`image::open`] and [`image::ImageReader::open`], and the file
/// signature for [`image::ImageReader::with_guessed_format`]. Files are decoded with the
/// built-in model each names ([`DdpmcDecoder::new`]). Returns `false` when another decoder already
/// had the extension.
///
/// ```
/// # let model = ddpmc::model::default_model()?;
/// # let img = image::DynamicImage::new_rgb8(32, 24);
/// # let opts = ddpmc::EncodeOptions { quality: 1, ..Default::default() };
/// # let bytes = ddpmc::encode(&img, &model, &opts)?;
/// ddpmc::register_image_hooks();
/// let reader = image::ImageReader::new(std::io::Cursor::new(&bytes)).with_guessed_format()?;
/// assert_eq!(reader.decode()?.dimensions(), (32, 24));
/// # use image::GenericImageView;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn register_image_hooks() -> bool {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    *REGISTERED.get_or_init(|| {
        let ok = image::hooks::register_decoding_hook(
            EXTENSION.into(),
            Box::new(|r| Ok(Box::new(DdpmcDecoder::new(r)?))),
        );
        if ok {
            image::hooks::register_format_detection_hook(
                EXTENSION.into(),
                &format::SIGNATURE,
                None,
            );
        }
        ok
    })
}
