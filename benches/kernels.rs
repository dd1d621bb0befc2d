//! Kernel benchmark (no harness): GFLOP/s of the NHWC 3x3 convolution at the network's level
//! shapes for a 768x512 image, next to one plain multi-threaded `gemm` call of the same shape
//! (the machine's attainable matrix-multiply rate) measured in the same run.
//!
//! Then the default network's forward pass on a 3x512x768 latent: fast NHWC path and candle's
//! reference path, time and GFLOP/s (convolution FLOPs as `train/model.py` counts them), next
//! to one `gemm` call of the same FLOPs.
//!
//! Run: `cargo bench --bench kernels [-- conv|net|fast]` (threads: RAYON_NUM_THREADS; repetitions:
//! BENCH_REPS).

use ddpmc::model::kernels::{self, ConvWeights, Kernel};
use ddpmc::model::{default_model, Denoiser};
use std::time::Instant;

fn fill(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect()
}

/// Best wall time of `reps` runs, in seconds (after one warm-up run).
fn best(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn plain_gemm(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            1,
            n as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(0),
        )
    }
}

fn main() {
    let reps: usize = std::env::var("BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let want = |s: &str| which.is_empty() || which.iter().any(|a| a == s);
    if want("conv") {
        bench_conv(reps);
    }
    if want("net") {
        bench_net(reps);
    }
    if want("ops") {
        bench_ops(reps);
    }
    if which.iter().any(|a| a == "fast") {
        // The fast forward pass alone, for profiling (`perf record`).
        let (w, h) = (768usize, 512usize);
        let net = default_model().expect("default model");
        let z: Vec<f32> = fill(3 * h * w, 7);
        let t = best(reps, || {
            net.predict_x0(&z, h, w, 0.5, 0.0).unwrap();
        });
        println!("fast forward {w}x{h}: best {t:.3} s");
    }
}

/// CPU seconds (user + system, all threads) this process has used so far, from
/// /proc/self/stat (Linux; 10 ms resolution); `None` elsewhere.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses): utime is the 12th, stime the 13th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Best wall time and mean CPU time (all threads) of `reps` runs after one warm-up run.
fn timed(reps: usize, mut f: impl FnMut()) -> (f64, f64) {
    f();
    let c0 = cpu_seconds();
    let wall = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    let cpu = match (c0, cpu_seconds()) {
        (Some(a), Some(b)) => (b - a) / reps as f64,
        _ => f64::NAN,
    };
    (wall, cpu)
}

fn bench_net(reps: usize) {
    let (w, h) = (768usize, 512usize);
    let net = default_model().expect("default model");
    let flop = net.config().flops_per_pixel() * (w * h) as f64;
    let z: Vec<f32> = fill(3 * h * w, 7);
    let (abar, lam) = (0.5, 0.0);
    let fast = timed(reps, || {
        net.predict_x0(&z, h, w, abar, lam).unwrap();
    });
    // One gemm of the same FLOPs: m = pixels at level 0, n = 96, k to match.
    let (m, n) = (w * h / 4, 96usize);
    let k = (flop / (2.0 * (m * n) as f64)).round() as usize;
    let a = fill(m * k, 8);
    let b = fill(k * n, 9);
    let mut d = vec![0.0f32; m * n];
    let gemm = timed(reps, || plain_gemm(m, n, k, &a, &b, &mut d));
    let gemm_flop = 2.0 * (m * n * k) as f64;
    let reference = net.clone().reference_path();
    let candle = timed(reps.min(2), || {
        reference.predict_x0(&z, h, w, abar, lam).unwrap();
    });
    println!(
        "\nnetwork forward, {w}x{h} (3x{h}x{w} latent), {:.0} FLOPs/pixel = {:.2} GFLOP; {} threads",
        net.config().flops_per_pixel(),
        flop / 1e9,
        rayon::current_num_threads()
    );
    println!(
        "{:>22} {:>9} {:>9} {:>9} {:>11}",
        "", "wall s", "GFLOP/s", "CPU s", "GFLOP/CPU-s"
    );
    for (name, (wall, cpu), fl) in [
        ("fast (NHWC kernels)".to_string(), fast, flop),
        ("candle reference".to_string(), candle, flop),
        (format!("gemm {m}x{n}x{k}"), gemm, gemm_flop),
    ] {
        println!(
            "{name:>22} {wall:>9.3} {:>9.1} {cpu:>9.3} {:>11.1}",
            fl / wall / 1e9,
            fl / cpu / 1e9
        );
    }
}

/// The per-pixel kernels at the finest level's shape (384x256 pixels, 48 channels).
fn bench_ops(reps: usize) {
    let (h, w, c) = (256usize, 384usize, 48usize);
    let p = h * w;
    let x = fill(p * c, 11);
    let g = fill(c, 12);
    let b = fill(c, 13);
    let mut out = vec![0.0f32; p * c];
    let mut out2 = vec![0.0f32; 2 * p * c];
    println!("\nper-pixel kernels at {w}x{h}x{c}");
    let report = |name: &str, t: f64, elems: usize| {
        println!(
            "{name:>24} {:>8.2} ms {:>7.2} ns/value {:>6.1} GB/s",
            t * 1e3,
            t * 1e9 / elems as f64,
            (8 * elems) as f64 / t / 1e9
        )
    };
    let t = best(reps, || {
        kernels::chan_norm_silu(&x, c, &g, &b, true, &mut out)
    });
    report("chan_norm + silu", t, p * c);
    let t = best(reps, || {
        kernels::chan_norm_silu(&x, c, &g, &b, false, &mut out)
    });
    report("chan_norm", t, p * c);
    let t = best(reps, || kernels::concat_channels(&x, c, &x, c, &mut out2));
    report("concat", t, 2 * p * c);
    let t = best(reps, || {
        kernels::pixel_shuffle(&x, 1, h / 2, w / 2, c, &mut out)
    });
    report("pixel_shuffle", t, p * c);
    let t = best(reps, || {
        let v = vec![0.0f32; p * c];
        std::hint::black_box(&v);
    });
    report("alloc zeroed", t, p * c);
}

fn bench_conv(reps: usize) {
    let (iw, ih) = (768usize, 512usize);
    println!(
        "conv3x3 NHWC at the network's levels for a {iw}x{ih} image; tile {} pixels; {} threads; best of {reps}",
        kernels::TILE,
        rayon::current_num_threads()
    );
    println!(
        "{:>10} {:>9} {:>8} {:>9} {:>10} {:>10} {:>10}",
        "level", "pixels", "cin>cout", "GFLOP", "conv ms", "conv GF/s", "gemm GF/s"
    );
    let levels = [(2usize, 48usize), (4, 64), (8, 96), (16, 128)];
    let (mut tot_flop, mut tot_conv, mut tot_gemm) = (0.0, 0.0, 0.0);
    for &(f, c) in &levels {
        for cin in [c, 2 * c] {
            let (h, w) = (ih / f, iw / f);
            let p = h * w;
            let x = fill(p * cin, 1);
            let wt = ConvWeights::from_oihw(Kernel::K3, &fill(c * cin * 9, 2), c, cin).unwrap();
            let bias = fill(c, 3);
            let mut out = vec![0.0f32; p * c];
            let flop = (p * wt.flops_per_pixel()) as f64;
            let t_conv = best(reps, || {
                kernels::conv(&x, 1, h, w, &wt, &bias, None, None, &mut out)
            });
            let a = fill(p * 9 * cin, 4);
            let b = fill(9 * cin * c, 5);
            let mut d = vec![0.0f32; p * c];
            let t_gemm = best(reps, || plain_gemm(p, c, 9 * cin, &a, &b, &mut d));
            println!(
                "{:>10} {:>9} {:>8} {:>9.3} {:>10.2} {:>10.1} {:>10.1}",
                format!("{}x{}", w, h),
                p,
                format!("{cin}>{c}"),
                flop / 1e9,
                t_conv * 1e3,
                flop / t_conv / 1e9,
                flop / t_gemm / 1e9
            );
            tot_flop += flop;
            tot_conv += t_conv;
            tot_gemm += t_gemm;
        }
    }
    println!(
        "{:>10} {:>9} {:>8} {:>9.3} {:>10.2} {:>10.1} {:>10.1}",
        "all",
        "",
        "",
        tot_flop / 1e9,
        tot_conv * 1e3,
        tot_flop / tot_conv / 1e9,
        tot_flop / tot_gemm / 1e9
    );
}
