//! Full encode and decode of one image at the default quality through the library API, with
//! the fast NHWC convolution path and with candle's reference path (`UNet::reference_path`).
//! Prints, per path and phase, wall time, process CPU time and the time spent inside network
//! calls (so the rest is entropy coding, tables and image handling), then compares the two
//! paths' files and decoded images.
//!
//!     cargo run --release --example conv_path_timing [-- IMAGE [fast|ref|both] [tune]]
//!
//! `tune` calls `ddpmc::model::tune_allocator()` first (glibc malloc thresholds).
//! Default image: ../shared/data/kodak/kodim01.png. Set RAYON_NUM_THREADS to choose the thread
//! count. CPU time is read from /proc/self/stat (Linux; 0 elsewhere).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use ddpmc::codec::{decode, encode, EncodeOptions, Recon};
use ddpmc::model::{default_model, Denoiser, UNet};

/// A denoiser that counts its calls and the wall time spent in them.
struct Timed {
    net: UNet,
    calls: AtomicUsize,
    nanos: AtomicU64,
}

impl Timed {
    fn new(net: UNet) -> Self {
        Timed {
            net,
            calls: AtomicUsize::new(0),
            nanos: AtomicU64::new(0),
        }
    }

    /// (calls, seconds) since the last call of `take`.
    fn take(&self) -> (usize, f64) {
        (
            self.calls.swap(0, Ordering::Relaxed),
            self.nanos.swap(0, Ordering::Relaxed) as f64 * 1e-9,
        )
    }
}

impl Denoiser for Timed {
    fn predict_x0(
        &self,
        z: &[f32],
        h: usize,
        w: usize,
        abar: f64,
        logsnr: f64,
    ) -> ddpmc::Result<Vec<f32>> {
        let t0 = Instant::now();
        let out = self.net.predict_x0(z, h, w, abar, logsnr);
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.nanos
            .fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
        out
    }

    fn multiple(&self) -> usize {
        self.net.multiple()
    }

    fn id(&self) -> [u8; 32] {
        self.net.id()
    }
}

/// User + system CPU seconds of this process (all threads).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0);
    ticks / 100.0 // USER_HZ is 100 on Linux
}

fn measure<T>(label: &str, net: &Timed, f: impl FnOnce() -> ddpmc::Result<T>) -> ddpmc::Result<T> {
    net.take();
    let (c0, t0) = (cpu_seconds(), Instant::now());
    let out = f()?;
    let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
    let (calls, in_net) = net.take();
    println!(
        "{label:<12} wall {wall:7.2} s  cpu {cpu:7.2} s  network {calls} calls {in_net:7.2} s wall  rest {:6.2} s wall",
        wall - in_net
    );
    Ok(out)
}

fn psnr(a: &image::RgbImage, b: &image::RgbImage) -> f64 {
    let n = a.as_raw().len() as f64;
    let se: f64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum();
    10.0 * (255.0f64 * 255.0 * n / se.max(1e-12)).log10()
}

fn main() -> ddpmc::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args
        .first()
        .map_or("../shared/data/kodak/kodim01.png", |s| s.as_str());
    let which = args.get(1).map_or("both", |s| s.as_str());
    if args.get(2).is_some_and(|a| a == "tune") {
        println!("tune_allocator: {}", ddpmc::model::tune_allocator());
    }
    let img = image::open(path)?;
    let src = img.to_rgb8();
    println!(
        "{path}: {}x{}, quality {}, {} threads",
        img.width(),
        img.height(),
        EncodeOptions::default().quality,
        candle_core::utils::get_num_threads()
    );
    let mut results = Vec::new();
    for (name, reference) in [("fast", false), ("reference", true)] {
        if (which == "fast" && reference) || (which == "ref" && !reference) {
            continue;
        }
        let net = default_model()?;
        let net = Timed::new(if reference { net.reference_path() } else { net });
        let bytes = measure(&format!("{name} encode"), &net, || {
            encode(&img, &net, &EncodeOptions::default())
        })?;
        let out = measure(&format!("{name} decode"), &net, || {
            decode(&bytes, &net, None, Recon::Denoise)
        })?;
        let dec = out.image.to_rgb8();
        println!(
            "{name:<12} {} bytes ({:.4} bpp), PSNR {:.3} dB",
            bytes.len(),
            bytes.len() as f64 * 8.0 / (img.width() * img.height()) as f64,
            psnr(&src, &dec)
        );
        results.push((bytes, dec));
    }
    if let [(fb, fd), (rb, rd)] = &results[..] {
        let differ = fd
            .as_raw()
            .iter()
            .zip(rd.as_raw())
            .filter(|(a, b)| a != b)
            .count();
        println!(
            "fast vs reference: files {}, decoded samples differing {differ} of {}",
            if fb == rb { "identical" } else { "differ" },
            fd.as_raw().len()
        );
    }
    Ok(())
}
