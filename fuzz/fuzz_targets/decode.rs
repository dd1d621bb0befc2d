//! Structured files through the whole decoder: the input is cut into chunks (kind, length,
//! payload) that are written with valid CRCs, so that the fuzzer reaches the step coders and the
//! lossless coders instead of the CRC check. The header's image is kept small (at most 128x128)
//! and its model id set to the decoder's, and the network is a cheap stand-in: what is tested is
//! that no input makes the decoder panic, loop or allocate without bound. Seeds: the spec's
//! vectors in this record form (`fuzz/seeds.py`).
#![no_main]

use ddpmc::codec::{Decoder, Recon};
use ddpmc::format::{self, kind};
use ddpmc::model::Denoiser;
use libfuzzer_sys::fuzz_target;

/// x0 = a fixed fraction of z: cheap, deterministic, never the real network.
struct Stand;

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

fuzz_target!(|data: &[u8]| {
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
});
