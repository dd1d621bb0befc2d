//! Kernel benchmark (no harness): GFLOP/s of the NHWC 3x3 convolution at the network's level
//! shapes for a 768x512 image, next to one plain multi-threaded `gemm` call of the same shape
//! (the machine's attainable matrix-multiply rate) measured in the same run.
//!
//! Run: `cargo bench --bench kernels` (threads: RAYON_NUM_THREADS; repetitions: BENCH_REPS).

use ddpmc::model::kernels::{self, ConvWeights, Kernel};
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
            let t_conv = best(reps, || kernels::conv(&x, 1, h, w, &wt, &bias, None, &mut out));
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
