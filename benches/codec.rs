//! Speed benches (`cargo bench --bench codec [-- SECTION...]`): entropy coding in symbols/s,
//! the network's forward pass at 768x512 in GFLOP/s next to an f32 matmul of the same FLOP
//! count measured in the same run (the `gemm` crate, the one candle uses, on all threads), and
//! the codec's encode and decode throughput in pixels/s (kodim01 from ../shared/data/kodak if
//! present, else a synthetic 768x512 image; default quality).
//!
//! Sections: `entropy`, `matmul`, `network`, `codec` (default: all). Each measurement repeats until it
//! has run for at least `DDPMC_BENCH_SECS` seconds (default 3) and reports the best run.
//! Set RAYON_NUM_THREADS to choose the thread count.

use std::time::Instant;

use ddpmc::codec::{decode, encode, EncodeOptions, Recon};
use ddpmc::entropy::{RangeReader, RangeWriter, SymbolSink, TableCache, LEVELS};
use ddpmc::model::{default_model, Denoiser};

const W: usize = 768;
const H: usize = 512;

/// Best wall-clock seconds of `f` over repeated runs (at least 2, at least `secs` in total).
fn best_of(secs: f64, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut best = f64::INFINITY;
    let mut runs = 0;
    while runs < 2 || start.elapsed().as_secs_f64() < secs {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
        runs += 1;
    }
    best
}

fn threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// GFLOP/s of an n x n x n f32 matmul (2 n^3 FLOPs) with gemm on `threads()` threads.
fn matmul_gflops(n: usize, secs: f64) -> f64 {
    let a: Vec<f32> = (0..n * n).map(|i| ((i % 17) as f32 - 8.0) * 0.01).collect();
    let b: Vec<f32> = (0..n * n).map(|i| ((i % 13) as f32 - 6.0) * 0.01).collect();
    let mut c = vec![0f32; n * n];
    let par = match threads() {
        1 => gemm::Parallelism::None,
        t => gemm::Parallelism::Rayon(t),
    };
    let s = best_of(secs, || unsafe {
        // Row-major n x n matrices: column stride 1, row stride n.
        gemm::gemm(
            n,
            n,
            n,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            n as isize,
            b.as_ptr(),
            1,
            n as isize,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            par,
        )
    });
    std::hint::black_box(&c);
    2.0 * (n as f64).powi(3) / s / 1e9
}

/// A smooth latent with some texture; values do not change the cost.
fn latent(w: usize, h: usize) -> Vec<f32> {
    (0..3 * h * w)
        .map(|i| (((i % w) as f32 * 0.05).sin() + ((i / w) as f32 * 0.03).cos()) * 0.5)
        .collect()
}

/// Encodes and decodes `n` symbols under the normative logistic tables (K = 8, scale
/// index 20, dither level cycling); returns (encode, decode) symbols/s.
fn entropy_rates(n: usize, secs: f64) -> ddpmc::Result<(f64, f64)> {
    let k = 8u32;
    let tables = TableCache::new(k);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let syms: Vec<(usize, usize)> = (0..n)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Mostly near the centre, as residuals are.
            let d = (state % 7) as i64 - 3;
            (i % LEVELS, (i64::from(k) + d / 2) as usize)
        })
        .collect();
    for j in 0..LEVELS {
        tables.get(20, j); // build the tables outside the timing
    }
    let mut words = Vec::new();
    let enc = best_of(secs, || {
        let mut w = RangeWriter::new();
        for &(j, s) in &syms {
            w.put(tables.get(20, j), s).expect("encode");
        }
        words = w.finish();
    });
    let dec = best_of(secs, || {
        let mut r = RangeReader::new(words.clone()).expect("decoder");
        for &(j, s) in &syms {
            assert_eq!(r.get(tables.get(20, j)).expect("decode"), s);
        }
    });
    Ok((n as f64 / enc, n as f64 / dec))
}

/// kodim01 if the dataset is there, else a synthetic 768x512 image.
fn bench_image() -> image::DynamicImage {
    image::open("../shared/data/kodak/kodim01.png").unwrap_or_else(|_| {
        image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(W as u32, H as u32, |x, y| {
            image::Rgb([(x % 251) as u8, (y % 241) as u8, ((x * y) % 239) as u8])
        }))
    })
}

fn main() -> ddpmc::Result<()> {
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let run = |s: &str| wanted.is_empty() || wanted.iter().any(|w| w == s);
    let secs: f64 = std::env::var("DDPMC_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3.0);
    let net = default_model()?;
    let flops = net.config().flops_per_pixel() * (W * H) as f64;
    println!("{W}x{H}, {} threads", threads());

    if run("entropy") {
        let n = 1 << 20;
        let (e, d) = entropy_rates(n, secs)?;
        println!(
            "entropy coding ({n} symbols, K = 8): encode {:.1} Msymbols/s, decode {:.1} Msymbols/s",
            e / 1e6,
            d / 1e6
        );
    }
    if run("matmul") || run("network") {
        // Square matmul with the FLOP count of one forward pass.
        let n = ((flops / 2.0).cbrt() / 16.0).round().max(1.0) as usize * 16;
        let g = matmul_gflops(n, secs);
        println!(
            "matmul f32 (gemm) {n}x{n}x{n} ({:.2} GFLOP): {g:.1} GFLOP/s",
            2.0 * (n as f64).powi(3) / 1e9
        );
    }
    if run("network") {
        let z = latent(W, H);
        net.predict_x0(&z, H, W, 0.5, 0.0)?; // warm-up
        let s = best_of(secs, || {
            std::hint::black_box(net.predict_x0(&z, H, W, 0.5, 0.0).expect("forward pass"));
        });
        println!(
            "network forward {W}x{H} ({:.2} GFLOP): {s:.3} s, {:.1} GFLOP/s, {:.2} Mpixel/s",
            flops / 1e9,
            flops / s / 1e9,
            (W * H) as f64 / s / 1e6
        );
    }
    if run("codec") {
        let img = bench_image();
        let px = f64::from(img.width()) * f64::from(img.height());
        let opts = EncodeOptions::default();
        let mut bytes = Vec::new();
        let e = best_of(0.0, || {
            bytes = encode(&img, &net, &opts).expect("encode");
        });
        let d = best_of(0.0, || {
            std::hint::black_box(decode(&bytes, &net, None, Recon::Denoise).expect("decode"));
        });
        println!(
            "codec {}x{} quality {} ({:.3} bpp): encode {e:.2} s ({:.3} Mpixel/s), decode {d:.2} s ({:.3} Mpixel/s)",
            img.width(),
            img.height(),
            opts.quality,
            bytes.len() as f64 * 8.0 / px,
            px / e / 1e6,
            px / d / 1e6
        );
    }
    Ok(())
}
