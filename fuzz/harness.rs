//! The fuzz targets' bodies, one function per target, shared by `fuzz/fuzz_targets/*.rs` and by
//! `tests/fuzz_regressions.rs` (which feeds them the inputs kept under
//! `tests/fuzz-regressions/TARGET/`). Each must return for every input: an error is fine, a
//! panic, an endless loop or an unbounded allocation is a bug.
#![allow(dead_code)]

use std::io::Cursor;
use std::sync::OnceLock;

use ddpmc::codec::{decode, encode, Decoder, EncodeOptions, Recon};
use ddpmc::format::{self, kind};
use ddpmc::model::{Denoiser, UNet};

/// Raw bytes into every parser a file reaches before the network: the chunk table
/// (`inspect`), the header and the STEP / LOSS payload parsers.
pub fn parse(data: &[u8]) {
    let _ = ddpmc::codec::inspect(data);
    let _ = format::Header::parse(data);
    let _ = format::StepChunk::parse(data);
    for major in [2, 3] {
        let _ = format::LossChunk::parse(data, major);
    }
}

/// Raw bytes into `codec::inspect` (the chunk table of `ddpmc info`) and `codec::chunk_ends`
/// (the boundaries the progressive readers cut at): every end lies inside the data, in order.
pub fn inspect(data: &[u8]) {
    if let Ok(info) = ddpmc::codec::inspect(data) {
        let _ = format!("{info:?}");
        let _ = info.step_bytes();
    }
    let mut last = 0;
    for end in ddpmc::codec::chunk_ends(data) {
        assert!(
            end > last && end <= data.len(),
            "chunk end {end} after {last} of {}",
            data.len()
        );
        last = end;
    }
}

/// x0 = a fixed fraction of z: cheap, deterministic, never the real network.
pub struct Stand;

impl Denoiser for Stand {
    fn predict_x0(
        &self,
        z: &[f32],
        _h: usize,
        _w: usize,
        abar: f64,
        _l: f64,
    ) -> ddpmc::Result<Vec<f32>> {
        let s = abar.sqrt() as f32;
        Ok(z.iter().map(|v| v * s).collect())
    }
    fn multiple(&self) -> usize {
        1
    }
    fn id(&self) -> [u8; 32] {
        [7; 32]
    }
}

/// Structured files through the whole decoder: the input is cut into chunks (kind, length,
/// payload) that are written with valid CRCs, so that the fuzzer reaches the step coders and
/// the lossless coders instead of the CRC check. The header's image is kept small (at most
/// 128x128) and its model id set to the decoder's, and the network is a cheap stand-in.
pub fn decode_records(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let model = Stand;
    let mut file = Vec::new();
    format::write_preamble(&mut file, 1 + data[0] % 3, data[1] % 2);
    let mut rest = &data[2..];
    while rest.len() >= 3 {
        let k = match rest[0] % 6 {
            0 => kind::HEAD,
            1 | 5 => kind::STEP,
            2 => kind::LOSS,
            3 => kind::END,
            _ => kind::ICCP,
        };
        let n = (usize::from(rest[1]) | usize::from(rest[2]) << 8).min(rest.len() - 3);
        let mut payload = rest[3..3 + n].to_vec();
        rest = &rest[3 + n..];
        if k == kind::HEAD && payload.len() >= 44 {
            // Small images, and the decoder's model id.
            let small = |v: u32| {
                if (1..=128).contains(&v) {
                    v
                } else {
                    1 + v % 128
                }
            };
            let w = small(u32::from_le_bytes(payload[0..4].try_into().unwrap()));
            let h = small(u32::from_le_bytes(payload[4..8].try_into().unwrap()));
            payload[0..4].copy_from_slice(&w.to_le_bytes());
            payload[4..8].copy_from_slice(&h.to_le_bytes());
            payload[12..44].copy_from_slice(&model.id());
        }
        format::write_chunk(&mut file, k, &payload);
    }
    let mut d = Decoder::new(&model);
    let _ = d.push(&file);
    let _ = d.image(Recon::Denoise);
    let _ = d.finish(Recon::Sample);
}

/// Raw bytes as a model weights file (`UNet::from_safetensors_bytes`: the safetensors header,
/// the config in its metadata, every tensor's name, type and shape). A file that loads runs
/// one pass on a 16x16 latent when its network is small.
pub fn weights(data: &[u8]) {
    if let Ok(net) = UNet::from_safetensors_bytes(data) {
        let m = net.multiple();
        if (1..=16).contains(&m) && net.config().flops_per_pixel() < 1e6 {
            let n = 16usize.div_ceil(m) * m;
            let z = vec![0.1f32; 3 * n * n];
            let _ = net.predict_x0(&z, n, n, 0.5, 0.0);
        }
    }
}

/// The tiny model of the spec's vectors.
pub fn tiny() -> &'static UNet {
    static M: OnceLock<UNet> = OnceLock::new();
    M.get_or_init(|| {
        UNet::from_safetensors_bytes(include_bytes!("../format-spec/vectors/tiny.safetensors"))
            .expect("tiny model")
    })
}

/// An option byte, then raw bytes as an input image: the image crate decodes them (format
/// from the content) under limits in the manner of `ddpmc encode` but small (at most 48x48,
/// 4 MiB), the encoder codes the result with the tiny model, and the file must decode to an
/// image of the same size. The option byte picks quality 1 or 2, lossless or not, and the
/// coder kinds.
pub fn encode_image(data: &[u8]) {
    let Some((&opt, rest)) = data.split_first() else {
        return;
    };
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(48);
    limits.max_image_height = Some(48);
    limits.max_alloc = Some(4 << 20);
    let Ok(mut r) = image::ImageReader::new(Cursor::new(rest)).with_guessed_format() else {
        return;
    };
    r.limits(limits);
    let Ok(img) = r.decode() else {
        return;
    };
    let opts = EncodeOptions {
        quality: 1 + (opt & 1),
        lossless: opt & 2 != 0,
        coders: match (opt >> 2) % 3 {
            0 => vec![],
            1 => vec![1],
            _ => vec![2],
        },
        ..EncodeOptions::default()
    };
    let Ok(bytes) = encode(&img, tiny(), &opts) else {
        return;
    };
    let out = decode(&bytes, tiny(), None, Recon::Denoise).expect("an encoded file decodes");
    assert_eq!(
        (out.image.width(), out.image.height()),
        (img.width(), img.height())
    );
    if opts.lossless {
        let exact = |i: &image::DynamicImage| i.to_rgb8().into_raw();
        if matches!(img.color(), image::ColorType::L8 | image::ColorType::Rgb8) {
            assert_eq!(exact(&out.image), exact(&img), "lossless file not exact");
        }
    }
}
