//! Stage 2 (SPEC §7): time one forward pass of the default model on a 768x512 image and
//! report pixels/s and GFLOP/s (convolution FLOPs as counted by `train/model.py`).
//!
//!     cargo run --release --example forward_timing [-- WIDTH HEIGHT RUNS]
//!
//! Set RAYON_NUM_THREADS to choose the thread count.

use std::time::Instant;

use ddpmc::model::{default_model, id_hex, Denoiser};

fn main() -> ddpmc::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numeric arguments: WIDTH HEIGHT RUNS"))
        .collect();
    let (w, h, runs) = (
        *args.first().unwrap_or(&768),
        *args.get(1).unwrap_or(&512),
        *args.get(2).unwrap_or(&3),
    );
    let net = default_model()?;
    let flops = net.config().flops_per_pixel();
    println!(
        "model {} ({} FLOPs/pixel), {w}x{h}, {} threads",
        &id_hex(&net.id())[..16],
        flops,
        candle_core::utils::get_num_threads()
    );
    // A smooth latent with some texture; the values do not change the cost.
    let z: Vec<f32> = (0..3 * h * w)
        .map(|i| (((i % w) as f32 * 0.05).sin() + ((i / w) as f32 * 0.03).cos()) * 0.5)
        .collect();
    let abar = 0.5;
    let t0 = Instant::now();
    net.predict_x0(&z, h, w, abar, 0.0)?;
    println!("warm-up: {:.3} s", t0.elapsed().as_secs_f64());
    let mut best = f64::INFINITY;
    for r in 0..runs {
        let t0 = Instant::now();
        net.predict_x0(&z, h, w, abar, 0.0)?;
        let s = t0.elapsed().as_secs_f64();
        best = best.min(s);
        println!("run {r}: {s:.3} s");
    }
    let px = (w * h) as f64;
    println!(
        "best {best:.3} s: {:.2} Mpixel/s, {:.1} GFLOP/s",
        px / best / 1e6,
        flops * px / best / 1e9
    );
    Ok(())
}
