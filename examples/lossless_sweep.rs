//! Lossless kind 2 on a folder of images: bits per pixel per colour transform, the best, and
//! encode / decode time; every image is decoded back and compared.
//!
//! cargo run --release --example lossless_sweep -- DIR [MAX_IMAGES]

use std::time::Instant;

use ddpmc::codec::lossless::{kind2_decode, kind2_words};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = args
        .get(1)
        .ok_or("usage: lossless_sweep DIR [MAX_IMAGES]")?;
    let max: usize = args.get(2).map_or(Ok(usize::MAX), |s| s.parse())?;
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                ["png", "jpg", "jpeg", "ppm"].contains(&e.to_ascii_lowercase().as_str())
            })
        })
        .collect();
    files.sort();
    files.truncate(max);
    let (mut sum_best, mut sum_rct, mut count) = (0.0, [0.0f64; 3], 0usize);
    for f in &files {
        let img = image::open(f)?.to_rgb8();
        let (w, h) = (img.width() as usize, img.height() as usize);
        let n = w * h;
        let mut pix = vec![0u8; 3 * n];
        for (i, p) in img.pixels().enumerate() {
            for c in 0..3 {
                pix[c * n + i] = p.0[c];
            }
        }
        let mut best = (f64::MAX, 0u8);
        let mut line = String::new();
        let rcts: Vec<u8> = std::env::var("RCTS").map_or(vec![0, 1, 2], |v| {
            v.split(',').map(|x| x.parse().unwrap()).collect()
        });
        let dec = std::env::var("NODEC").is_err();
        for &rct in &rcts {
            let t = Instant::now();
            let words = kind2_words(&pix, None, rct, h, w)?;
            let te = t.elapsed().as_secs_f64();
            let bpp = words.len() as f64 * 32.0 / n as f64;
            sum_rct[rct as usize] += bpp;
            let t = Instant::now();
            if dec {
                let back = kind2_decode(words, None, rct, h, w)?;
                assert!(back == pix, "round trip failed on {}", f.display());
            }
            let td = t.elapsed().as_secs_f64();
            line += &format!(" rct{rct} {bpp:.3} ({te:.2}s/{td:.2}s)");
            if bpp < best.0 {
                best = (bpp, rct);
            }
        }
        println!(
            "{} {w}x{h}:{line} best {:.3}",
            f.file_name().unwrap().to_string_lossy(),
            best.0
        );
        sum_best += best.0;
        count += 1;
    }
    let c = count as f64;
    println!(
        "mean over {count}: best {:.3} bpp; rct0 {:.3} rct1 {:.3} rct2 {:.3}",
        sum_best / c,
        sum_rct[0] / c,
        sum_rct[1] / c,
        sum_rct[2] / c
    );
    Ok(())
}
