//! Rate-distortion of coding ladders: encodes every PNG of a folder along each ladder given,
//! decodes every step, and prints bpp and PSNR per step (means over the images) and the
//! BD-rate of each ladder against the first.
//!
//!     cargo run --release --example ladder_sweep -- DIR "1000,400,150,50,15,5,2" "1000,300,..." [--coders 1,2]
//!
//! Tune on training images or a held-out set of your own, never on Kodak alone.

use ddpmc::bench::metrics::psnr;
use ddpmc::bench::rd::bd_rate;
use ddpmc::codec::{decode_all_steps, encode_with_schedule, Recon};
use ddpmc::diffusion::SchedulePoint;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = &args[0];
    let mut coders: Vec<u8> = Vec::new();
    let mut ladders: Vec<Vec<u32>> = Vec::new();
    let mut i = 1;
    while i < args.len() {
        if args[i] == "--coders" {
            coders = args[i + 1].split(',').map(|v| v.parse().unwrap()).collect();
            i += 2;
            continue;
        }
        ladders.push(args[i].split(',').map(|v| v.parse().unwrap()).collect());
        i += 1;
    }
    let model = ddpmc::model::default_model().unwrap();
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    names.sort();
    let imgs: Vec<image::DynamicImage> = names.iter().map(|p| image::open(p).unwrap()).collect();
    let mut curves = Vec::new();
    for lad in &ladders {
        let sched: Vec<SchedulePoint> = lad.iter().map(|&t| SchedulePoint::at(t)).collect();
        let n = lad.len() - 1;
        let (mut bpp, mut db) = (vec![0.0; n], vec![0.0; n]);
        let mut kinds = vec![String::new(); n];
        for img in &imgs {
            let px = f64::from(img.width() * img.height());
            let (bytes, rep) = encode_with_schedule(img, &model, &sched, &coders).unwrap();
            let steps = decode_all_steps(&bytes, &model, Recon::Denoise).unwrap();
            let want = img.to_rgb8();
            for (s, st) in steps.iter().enumerate() {
                bpp[s] += st.bytes as f64 * 8.0 / px / imgs.len() as f64;
                db[s] += psnr(&want, &st.image.to_rgb8()).unwrap() / imgs.len() as f64;
                kinds[s].push_str(&format!("{}", rep[s].coder));
            }
        }
        println!("ladder {lad:?}");
        for s in 0..n {
            println!(
                "  step {} t {} -> {}: {:.4} bpp {:.3} dB  coders {}",
                s + 1,
                lad[s],
                lad[s + 1],
                bpp[s],
                db[s],
                kinds[s]
            );
        }
        curves.push((bpp, db));
    }
    let pairs: Vec<Vec<(f64, f64)>> = curves
        .iter()
        .map(|(b, d)| b.iter().copied().zip(d.iter().copied()).collect())
        .collect();
    let targets = [24.0, 27.0, 30.0, 33.0, 36.0, 39.0, 42.0];
    println!("bpp at PSNR (log-bpp interpolation): {targets:?}");
    for (i, c) in pairs.iter().enumerate() {
        let v: Vec<String> = targets
            .iter()
            .map(|&t| {
                c.windows(2)
                    .find(|w| w[0].1 <= t && t <= w[1].1)
                    .map_or("-".to_string(), |w| {
                        let f = (t - w[0].1) / (w[1].1 - w[0].1);
                        format!(
                            "{:.4}",
                            (w[0].0.ln() + f * (w[1].0.ln() - w[0].0.ln())).exp()
                        )
                    })
            })
            .collect();
        let bd = if i == 0 {
            String::new()
        } else {
            format!("  BD-rate vs ladder 1: {:?}", bd_rate(&pairs[0], c))
        };
        println!("  ladder {}: {}{bd}", i + 1, v.join(" "));
    }
}
