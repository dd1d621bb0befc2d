//! Codec tests: round trips, progressive quality, lossless, truncation and corruption,
//! invariant D, thread-count independence, chunked input, rate control.

mod common;

use common::{psnr, sample, Analytic, Perturbed};
use ddpmc::codec::{
    chunk_ends, decode, decode_all_steps, encode, encode_with_report, inspect, Decoder,
    EncodeOptions, Recon,
};
use ddpmc::Error;

fn opts(q: u8) -> EncodeOptions {
    EncodeOptions {
        quality: q,
        ..Default::default()
    }
}

#[test]
fn round_trips_all_samples() {
    let m = Analytic::default();
    for name in [
        "kodim23_crop.png",
        "kodim04_crop.png",
        "kodim08_gray.png",
        "kodim15_rgba.png",
        "kodim19_odd.png",
    ] {
        let img = sample(name);
        let (bytes, rep) = encode_with_report(&img, &m, &opts(3), &mut |_, _| {}).unwrap();
        let out = decode(&bytes, &m, None, Recon::Denoise).unwrap();
        assert_eq!(out.image.width(), img.width(), "{name}");
        assert_eq!(out.image.height(), img.height(), "{name}");
        assert_eq!(out.steps_decoded, 3);
        assert!(!out.truncated);
        let gray = name.contains("gray");
        assert_eq!(out.image.color().has_color(), !gray, "{name}");
        assert_eq!(
            rep.notices.len(),
            usize::from(name.contains("rgba")),
            "{name}"
        );
        let p = psnr(&img, &out.image);
        assert!(p > 15.0, "{name}: {p}");
        for r in [Recon::Flow, Recon::Sample] {
            let o = decode(&bytes, &m, None, r).unwrap();
            assert_eq!(o.image.width(), img.width());
        }
    }
}

#[test]
fn tiny_and_thin_images() {
    let m = Analytic::default();
    for (w, h) in [(1u32, 1u32), (1, 17), (23, 1), (17, 16)] {
        let img = image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 40) as u8, (y * 13) as u8, 200])
        }));
        let o = EncodeOptions {
            quality: 2,
            lossless: true,
            ..Default::default()
        };
        let bytes = encode(&img, &m, &o).unwrap();
        let out = decode(&bytes, &m, None, Recon::Flow).unwrap();
        assert!(out.lossless);
        assert_eq!(
            out.image.to_rgb8().as_raw(),
            img.to_rgb8().as_raw(),
            "{w}x{h}"
        );
    }
}

#[test]
fn sixteen_bit_input_is_reduced_with_a_notice() {
    let m = Analytic::default();
    let img = image::DynamicImage::ImageRgb16(image::ImageBuffer::from_fn(20, 12, |x, y| {
        image::Rgb([(x * 3000) as u16, (y * 5000) as u16, 40000])
    }));
    let o = EncodeOptions {
        quality: 1,
        lossless: true,
        ..Default::default()
    };
    let (bytes, rep) = encode_with_report(&img, &m, &o, &mut |_, _| {}).unwrap();
    assert!(
        rep.notices.iter().any(|n| n.contains("16-bit")),
        "{:?}",
        rep.notices
    );
    assert_eq!(inspect(&bytes).unwrap().header.source_depth, 16);
    let out = decode(&bytes, &m, None, Recon::Denoise).unwrap();
    assert_eq!(out.image.to_rgb8().as_raw(), img.to_rgb8().as_raw());
}

#[test]
fn psnr_rises_with_every_step() {
    let m = Analytic::default();
    let img = sample("kodim23_crop.png");
    let bytes = encode(&img, &m, &opts(5)).unwrap();
    let steps = decode_all_steps(&bytes, &m, Recon::Denoise).unwrap();
    assert_eq!(steps.len(), 5);
    let mut last = 0.0;
    let mut last_bytes = 0;
    for s in &steps {
        let p = psnr(&img, &s.image);
        assert!(p > last, "step {}: {p} dB after {last} dB", s.step);
        assert!(s.bytes > last_bytes);
        last = p;
        last_bytes = s.bytes;
    }
    // The truncated prefix decodes to the same image as the progressive decoder gave.
    let cut = decode(&bytes[..steps[1].bytes], &m, None, Recon::Denoise).unwrap();
    assert_eq!(cut.steps_decoded, 2);
    assert!(cut.truncated);
    assert_eq!(
        cut.image.to_rgb8().as_raw(),
        steps[1].image.to_rgb8().as_raw()
    );
    // --steps N gives the same image.
    let two = decode(&bytes, &m, Some(2), Recon::Denoise).unwrap();
    assert_eq!(
        two.image.to_rgb8().as_raw(),
        steps[1].image.to_rgb8().as_raw()
    );
}

#[test]
fn lossless_is_bit_exact() {
    let m = Analytic::default();
    for name in ["kodim04_crop.png", "kodim08_gray.png", "kodim19_odd.png"] {
        let img = sample(name);
        let o = EncodeOptions {
            quality: 2,
            lossless: true,
            ..Default::default()
        };
        let bytes = encode(&img, &m, &o).unwrap();
        let out = decode(&bytes, &m, None, Recon::Denoise).unwrap();
        assert!(out.lossless);
        if name.contains("gray") {
            assert_eq!(out.image.to_luma8().as_raw(), img.to_luma8().as_raw());
        } else {
            assert_eq!(out.image.to_rgb8().as_raw(), img.to_rgb8().as_raw());
        }
    }
}

/// LOSS kind 2 (SPEC §10): exact on every sample, on gray, RGBA, odd and tiny sizes and
/// 16-bit input, with no prefix, a fixed prefix and the prefix search.
#[test]
fn lossless_kind2_every_prefix() {
    let m = Analytic::default();
    let mut imgs: Vec<(String, image::DynamicImage)> = [
        "kodim23_crop.png",
        "kodim04_crop.png",
        "kodim08_gray.png",
        "kodim15_rgba.png",
        "kodim19_odd.png",
    ]
    .iter()
    .map(|n| (n.to_string(), sample(n)))
    .collect();
    imgs.push((
        "16-bit".into(),
        image::DynamicImage::ImageRgb16(image::ImageBuffer::from_fn(33, 7, |x, y| {
            image::Rgb([
                (x * 1900) as u16,
                (y * 9000) as u16,
                65535 - (x * y * 97) as u16,
            ])
        })),
    ));
    imgs.push((
        "1x1".into(),
        image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(1, 1, image::Rgb([255, 0, 7]))),
    ));
    for (name, img) in &imgs {
        // What the codec codes: 8-bit RGB (alpha dropped, 16 bits reduced, with notices).
        let want = if img.color().has_color() {
            img.to_rgb8().into_raw()
        } else {
            image::DynamicImage::ImageLuma8(img.to_luma8())
                .to_rgb8()
                .into_raw()
        };
        for (quality, search) in [(0u8, false), (1, false), (3, true)] {
            let o = EncodeOptions {
                quality,
                lossless: true,
                prefix_search: search,
                ..Default::default()
            };
            let (bytes, rep) = encode_with_report(img, &m, &o, &mut |_, _| {}).unwrap();
            assert_eq!(bytes[8], 3, "{name}: a kind-2 LOSS chunk is version 3");
            if !search {
                assert_eq!(rep.steps.len(), usize::from(quality), "{name}");
            }
            let out = decode(&bytes, &m, None, Recon::Denoise).unwrap();
            assert!(out.lossless && !out.truncated, "{name}");
            assert_eq!(out.steps_decoded, rep.steps.len());
            assert_eq!(out.image.to_rgb8().into_raw(), want, "{name} q{quality}");
            assert_eq!(out.image.color().has_color(), img.color().has_color());
            let info = inspect(&bytes).unwrap();
            assert_eq!(info.header.steps(), rep.steps.len());
            assert!(info.complete && info.loss.is_some_and(|l| l.0 == 2));
        }
    }
}

/// A file with no steps needs no network (its model id is zero and never compared); it is
/// version 3 only, must hold its LOSS chunk, and a corrupt residual is an error, never a
/// wrong image reported as lossless.
#[test]
fn lossless_without_steps_needs_no_network() {
    let m = Analytic::default();
    let img = sample("kodim19_odd.png");
    let o = EncodeOptions {
        quality: 0,
        lossless: true,
        ..Default::default()
    };
    let bytes = encode(&img, &m, &o).unwrap();
    let info = inspect(&bytes).unwrap();
    assert_eq!(info.header.steps(), 0);
    assert_eq!(info.header.model_id, [0u8; 32]);
    let tiny = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("format-spec/vectors/tiny.safetensors");
    let other = ddpmc::model::UNet::from_file(tiny).unwrap();
    assert_ne!(
        ddpmc::model::Denoiser::id(&other),
        ddpmc::model::Denoiser::id(&m)
    );
    let out = decode(&bytes, &other, None, Recon::Denoise).unwrap();
    assert!(out.lossless);
    assert_eq!(out.image.to_rgb8().as_raw(), img.to_rgb8().as_raw());
    // Version 2 does not allow S = 0.
    let mut b = bytes.clone();
    b[8] = 2;
    let e = decode(&b, &m, None, Recon::Denoise).err().unwrap();
    assert!(e.to_string().contains("step count 0"), "{e}");
    // Truncated before or inside the LOSS chunk: no image, a clear error.
    let ends = chunk_ends(&bytes);
    for cut in [ends[1], ends[2] - 1] {
        let e = decode(&bytes[..cut], &m, None, Recon::Denoise)
            .err()
            .unwrap();
        assert!(e.to_string().contains("no LOSS chunk"), "{e}");
    }
    // END right after HEAD: refused.
    let mut b = bytes[..ends[1]].to_vec();
    ddpmc::format::write_chunk(&mut b, *b"END ", &[]);
    assert!(decode(&b, &m, None, Recon::Denoise).is_err());
    // Flipped residual words (valid CRC): an error, whatever the decoder reads.
    for at in [45usize, 200, 600] {
        let bad = with_payload(&bytes, 1, |p| {
            let i = at.min(p.len() - 1);
            p[i] ^= 0x10;
        });
        assert!(
            decode(&bad, &m, None, Recon::Denoise).is_err(),
            "flip at {at}"
        );
    }
}

#[test]
fn truncation_at_every_boundary_and_random_offsets() {
    let m = Analytic::default();
    let img = sample("kodim19_odd.png");
    let bytes = encode(&img, &m, &opts(4)).unwrap();
    let ends = chunk_ends(&bytes);
    let mut cuts: Vec<usize> = ends.clone();
    let mut s = 12345u64;
    for _ in 0..40 {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        cuts.push((s >> 33) as usize % bytes.len());
    }
    for cut in cuts {
        let r = decode(&bytes[..cut], &m, None, Recon::Denoise);
        // Steps that fit whole: STEP chunks end at ends[2..].
        let whole = ends.iter().skip(2).filter(|&&e| e <= cut).count().min(4);
        match r {
            Ok(d) => {
                assert_eq!(d.steps_decoded, whole, "cut {cut}");
                assert_eq!(d.truncated, cut < bytes.len(), "cut {cut}");
            }
            Err(e) => assert_eq!(whole, 0, "cut {cut}: {e}"),
        }
    }
}

#[test]
fn flipped_bytes_are_detected() {
    let m = Analytic::default();
    let img = sample("kodim19_odd.png");
    let bytes = encode(&img, &m, &opts(2)).unwrap();
    for pos in (0..bytes.len()).step_by(7) {
        for bit in [0u8, 5] {
            let mut b = bytes.clone();
            b[pos] ^= 1 << bit;
            match decode(&b, &m, None, Recon::Denoise) {
                Err(_) => {}
                // A flipped length field can only make the file look truncated.
                Ok(d) => assert!(d.truncated, "flip at {pos} went unnoticed"),
            }
        }
    }
}

/// Rewrite chunk `idx`'s payload with `f` and fix its CRC.
fn with_payload(bytes: &[u8], idx: usize, mut f: impl FnMut(&mut Vec<u8>)) -> Vec<u8> {
    let ends = chunk_ends(bytes);
    let (start, end) = (ends[idx], ends[idx + 1]);
    let kind: [u8; 4] = bytes[start..start + 4].try_into().unwrap();
    let mut payload = bytes[start + 8..end - 4].to_vec();
    f(&mut payload);
    let mut out = bytes[..start].to_vec();
    ddpmc::format::write_chunk(&mut out, kind, &payload);
    out.extend_from_slice(&bytes[end..]);
    out
}

#[test]
fn garbage_with_valid_crc_never_panics() {
    let m = Analytic::default();
    let img = sample("kodim19_odd.png");
    let bytes = encode(&img, &m, &opts(3)).unwrap();
    let nchunks = chunk_ends(&bytes).len() - 1;
    let mut s = 99u64;
    for idx in 0..nchunks {
        for _ in 0..25 {
            let garbled = with_payload(&bytes, idx, |p| {
                for _ in 0..3 {
                    if p.is_empty() {
                        break;
                    }
                    s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
                    let i = (s >> 33) as usize % p.len();
                    p[i] = (s >> 20) as u8;
                }
            });
            let _ = decode(&garbled, &m, None, Recon::Denoise);
        }
        // Whole payload replaced by random words of the same length.
        let garbled = with_payload(&bytes, idx, |p| {
            for (i, b) in p.iter_mut().enumerate().skip(10) {
                *b = (i as u8).wrapping_mul(37) ^ 0x5A;
            }
        });
        let _ = decode(&garbled, &m, None, Recon::Denoise);
        // Truncated payload, valid CRC.
        let garbled = with_payload(&bytes, idx, |p| p.truncate(p.len() / 2));
        let _ = decode(&garbled, &m, None, Recon::Sample);
    }
    // Huge sizes in the header are refused by limits, not by allocation.
    let huge = with_payload(&bytes, 0, |p| {
        p[0..4].copy_from_slice(&16000u32.to_le_bytes());
        p[4..8].copy_from_slice(&16000u32.to_le_bytes());
    });
    assert!(matches!(
        decode(&huge, &m, None, Recon::Denoise),
        Err(Error::Limits(_))
    ));
}

#[test]
fn container_rules() {
    let m = Analytic::default();
    let img = sample("kodim19_odd.png");
    let bytes = encode(&img, &m, &opts(2)).unwrap();
    let base = decode(&bytes, &m, None, Recon::Denoise).unwrap();
    let ends = chunk_ends(&bytes);
    // An unknown ancillary chunk after HEAD is skipped.
    let mut b = bytes[..ends[1]].to_vec();
    ddpmc::format::write_chunk(&mut b, *b"note", b"anything");
    b.extend_from_slice(&bytes[ends[1]..]);
    let d = decode(&b, &m, None, Recon::Denoise).unwrap();
    assert_eq!(d.image.to_rgb8().as_raw(), base.image.to_rgb8().as_raw());
    // An unknown critical chunk is refused.
    let mut b = bytes[..ends[1]].to_vec();
    ddpmc::format::write_chunk(&mut b, *b"NOTE", b"anything");
    b.extend_from_slice(&bytes[ends[1]..]);
    assert!(decode(&b, &m, None, Recon::Denoise).is_err());
    // Unknown major version refused; higher minor accepted.
    let mut b = bytes.clone();
    b[8] = 4;
    let e = decode(&b, &m, None, Recon::Denoise).err().unwrap();
    assert!(e.to_string().contains("major version 4"), "{e}");
    // A lossy file is written as version 2 (the lowest that holds it) and reads as 3 too.
    assert_eq!(bytes[8], 2);
    let mut b = bytes.clone();
    b[8] = 3;
    assert!(decode(&b, &m, None, Recon::Denoise).is_ok());
    // Version 1 holds coder kind 1 only: a kind-2 step in a version-1 file is refused, a
    // kind-1 file marked version 1 decodes.
    for (coders, ok) in [(vec![2u8], false), (vec![1u8], true)] {
        let o = EncodeOptions {
            quality: 2,
            coders,
            ..Default::default()
        };
        let mut b = encode(&img, &m, &o).unwrap();
        b[8] = 1;
        assert_eq!(decode(&b, &m, None, Recon::Denoise).is_ok(), ok);
        assert_eq!(inspect(&b).is_ok(), ok);
    }
    let mut b = bytes.clone();
    b[9] = 7;
    assert!(decode(&b, &m, None, Recon::Denoise).is_ok());
    // inspect agrees with the encoder.
    let info = inspect(&bytes).unwrap();
    assert_eq!(info.header.steps(), 2);
    assert_eq!(info.step_bytes().len(), 2);
    assert!(info.complete);
}

/// Header values outside SPEC §4.2's ranges are refused (an absurd but finite log-SNR too).
/// SPEC §3.3 chunk order, checked by `inspect` (what `ddpmc info` prints) as by the decoder:
/// each bad order is an error, never a panic or a normal-looking table.
#[test]
fn bad_chunk_orders_are_refused_by_inspect_and_the_decoder() {
    let m = Analytic::default();
    let img = sample("kodim19_odd.png");
    let f3 = encode(&img, &m, &opts(3)).unwrap();
    let f1 = encode(&img, &m, &opts(1)).unwrap();
    let (e3, e1) = (chunk_ends(&f3), chunk_ends(&f1));
    assert_eq!(e3.len(), 6, "preamble, HEAD, 3 STEPs, END");
    let chunk = |b: &[u8], e: &[usize], i: usize| b[e[i]..e[i + 1]].to_vec();
    let pre = f3[..e3[0]].to_vec();
    let (head3, head1) = (chunk(&f3, &e3, 0), chunk(&f1, &e1, 0));
    let s: Vec<Vec<u8>> = (1..=3).map(|i| chunk(&f3, &e3, i)).collect();
    let end = f3[e3[4]..].to_vec();
    let cat = |parts: &[&Vec<u8>]| {
        parts
            .iter()
            .flat_map(|p| p.iter().copied())
            .collect::<Vec<u8>>()
    };
    let cases = [
        (
            "STEP repeated",
            cat(&[&pre, &head3, &s[0], &s[0], &s[1], &s[2], &end]),
        ),
        (
            "STEP before HEAD",
            cat(&[&pre, &s[0], &head3, &s[1], &s[2], &end]),
        ),
        (
            "second HEAD with a smaller S",
            cat(&[&pre, &head3, &s[0], &head1, &s[1], &s[2], &end]),
        ),
        ("S + 1 STEPs", cat(&[&pre, &head1, &s[0], &s[1], &end])),
        ("STEP beyond S", with_payload(&f3, 3, |p| p[0] = 7)),
    ];
    assert!(inspect(&f3).is_ok());
    for (name, b) in &cases {
        assert!(inspect(b).is_err(), "inspect: {name}");
        assert!(
            decode(b, &m, None, Recon::Denoise).is_err(),
            "decode: {name}"
        );
    }
}

#[test]
fn absurd_schedule_values_are_refused() {
    let m = Analytic::default();
    let bytes = encode(&sample("kodim19_odd.png"), &m, &opts(1)).unwrap();
    // The HEAD payload ends with the last point's (t, abar, logsnr).
    for (back, value) in [(8usize, 1e300f64), (24, 5000.0), (8, -41.0)] {
        let bad = with_payload(&bytes, 0, |p| {
            let n = p.len();
            p[n - back..n - back + 8].copy_from_slice(&value.to_le_bytes());
        });
        let e = decode(&bad, &m, None, Recon::Denoise).expect_err("refused");
        assert!(e.to_string().contains("schedule point"), "{e}");
        assert!(inspect(&bad).is_err());
    }
}

#[test]
fn model_mismatch_is_refused() {
    let m = Analytic::default();
    let other = Analytic { id: [8; 32] };
    let bytes = encode(&sample("kodim19_odd.png"), &m, &opts(1)).unwrap();
    match decode(&bytes, &other, None, Recon::Denoise) {
        Err(Error::ModelMismatch { file, decoder }) => {
            assert_eq!(file, "07".repeat(32));
            assert_eq!(decoder, "08".repeat(32));
        }
        other => panic!("expected a model mismatch, got {:?}", other.err()),
    }
}

/// Invariant D (SPEC §6.6): a network that differs by 1e-3 (relative) moves every latent, but
/// the decoder reads exactly the same symbols (same digest) and the image stays within 0.1 dB.
/// A probability computed from a float that the network influences would change the symbols
/// and break this test.
#[test]
fn invariant_d_perturbed_network_still_decodes() {
    let m = Analytic::default();
    let img = sample("kodim23_crop.png");
    for coders in [vec![1u8], vec![2], vec![3]] {
        let o = EncodeOptions {
            quality: 4,
            coders: coders.clone(),
            ..Default::default()
        };
        let bytes = encode(&img, &m, &o).unwrap();
        let run = |net: &dyn ddpmc::model::Denoiser| {
            let mut d = Decoder::new(net);
            d.track_symbols();
            d.push(&bytes).unwrap();
            let digest = d.symbol_digest().unwrap();
            let out = d.finish(Recon::Denoise).unwrap();
            (digest, out)
        };
        let (da, a) = run(&m);
        let p = Perturbed {
            inner: &m,
            eps: 1e-3,
        };
        let (db, b) = run(&p);
        assert_eq!(b.steps_decoded, 4);
        assert_eq!(da, db, "kind {coders:?}: symbols changed with the network");
        let (pa, pb) = (psnr(&img, &a.image), psnr(&img, &b.image));
        assert!((pa - pb).abs() <= 0.1, "kind {coders:?}: {pa} vs {pb}");
        // The perturbation is large enough to matter: the images differ.
        assert_ne!(
            a.image.to_rgb8().into_raw(),
            b.image.to_rgb8().into_raw(),
            "kind {coders:?}: the perturbation did not move the decoded image"
        );
    }
}

/// The default coder set: kind 3 alone on the steps that start at t >= 70, kinds 2 and 3 below,
/// chosen on rate and distortion; `coders` forces its kinds at every step.
#[test]
fn coder_choice_per_step() {
    let m = Analytic::default();
    let img = sample("kodim04_crop.png");
    let (bytes, rep) = encode_with_report(&img, &m, &opts(5), &mut |_, _| {}).unwrap();
    let kinds: Vec<u8> = rep.steps.iter().map(|s| s.coder).collect();
    for s in &rep.steps {
        if s.t_start >= 70.0 {
            assert_eq!(s.coder, 3, "{kinds:?}");
        }
        assert!(s.coder == 2 || s.coder == 3, "{kinds:?}");
        // Kind 3 reports the KL of its targets, the others do not.
        assert_eq!(s.kl_bits.is_some(), s.coder == 3, "{kinds:?}");
    }
    assert!(
        kinds.contains(&3),
        "kind 3 never chosen at the low-SNR steps: {kinds:?}"
    );
    assert_eq!(
        decode(&bytes, &m, None, Recon::Denoise)
            .unwrap()
            .steps_decoded,
        5
    );
    let forced = EncodeOptions {
        quality: 5,
        coders: vec![3],
        ..Default::default()
    };
    let (bytes, rep) = encode_with_report(&img, &m, &forced, &mut |_, _| {}).unwrap();
    assert!(rep.steps.iter().all(|s| s.coder == 3));
    // Near the KL: the real bits of kind 3 stay within 1.5x the KL of its targets.
    for s in &rep.steps {
        let kl = s.kl_bits.unwrap();
        assert!(
            (s.chunk_bytes as f64 * 8.0) < 1.5 * kl + 4096.0,
            "{} bytes for {kl} bits of KL",
            s.chunk_bytes
        );
    }
    assert_eq!(
        decode(&bytes, &m, None, Recon::Denoise)
            .unwrap()
            .steps_decoded,
        5
    );
}

#[test]
fn thread_count_does_not_change_output() {
    let m = Analytic::default();
    let img = sample("kodim04_crop.png");
    let run = |n: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
            .install(|| {
                let o = EncodeOptions {
                    quality: 3,
                    lossless: true,
                    ..Default::default()
                };
                let bytes = encode(&img, &m, &o).unwrap();
                let d = decode(&bytes, &m, Some(2), Recon::Sample).unwrap();
                (bytes, d.image.to_rgb8().into_raw())
            })
    };
    assert_eq!(run(1), run(2));
}

#[test]
fn pieces_decode_identically() {
    let m = Analytic::default();
    let img = sample("kodim19_odd.png");
    let bytes = encode(
        &img,
        &m,
        &EncodeOptions {
            quality: 3,
            lossless: true,
            ..Default::default()
        },
    )
    .unwrap();
    let whole = decode(&bytes, &m, None, Recon::Denoise).unwrap();
    for piece in [1usize, 7, 333] {
        let mut d = Decoder::new(&m);
        let mut seen = Vec::new();
        for c in bytes.chunks(piece) {
            seen.push(d.push(c).unwrap());
        }
        assert!(seen.windows(2).all(|w| w[0] <= w[1]));
        assert!(d.is_finished() && d.is_lossless());
        let img2 = d.image(Recon::Denoise).unwrap();
        assert_eq!(img2.to_rgb8().as_raw(), whole.image.to_rgb8().as_raw());
    }
}

#[test]
fn bpp_target_is_met() {
    let m = Analytic::default();
    let img = sample("kodim04_crop.png");
    let px = f64::from(img.width() * img.height());
    for target in [0.5, 2.0] {
        let o = EncodeOptions {
            bpp: Some(target),
            ..Default::default()
        };
        let bytes = encode(&img, &m, &o).unwrap();
        let bpp = bytes.len() as f64 * 8.0 / px;
        assert!(bpp <= target, "{bpp} > {target}");
        assert!(bpp > 0.8 * target, "{bpp} far under {target}");
        decode(&bytes, &m, None, Recon::Denoise).unwrap();
        // Rate control resumes trials from shared prefixes: the result must equal a fresh
        // encode of the schedule it chose.
        let sched = inspect(&bytes).unwrap().header.schedule;
        let (fresh, _) = ddpmc::codec::encode_with_schedule(&img, &m, &sched, &[]).unwrap();
        assert!(fresh == bytes);
    }
}

/// The spec's test vectors (SPEC §13): the files are unchanged, the encoder still writes them
/// byte for byte, and they decode to the recorded images (exactly, or within one level where
/// the network's arithmetic differs from the reference machine's). Set DDPMC_REGEN_VECTORS=1
/// to rewrite them after a deliberate format change.
#[test]
fn spec_vectors() {
    use sha2::{Digest, Sha256};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("format-spec/vectors");
    let model = ddpmc::model::UNet::from_file(dir.join("tiny.safetensors")).unwrap();
    let regen = std::env::var_os("DDPMC_REGEN_VECTORS").is_some();
    let list = std::fs::read_to_string(dir.join("vectors.txt")).unwrap();
    let mut out_list = String::new();
    let mut n = 0;
    for line in list.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            out_list.push_str(line);
            out_list.push('\n');
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let (name, file_hash, pix_hash, src) = (f[0], f[1], f[2], f[3]);
        let mut o = EncodeOptions::default();
        let mut decode_only = false;
        let mut i = 4;
        while i < f.len() {
            match f[i] {
                "-q" => {
                    o.quality = f[i + 1].parse().unwrap();
                    i += 1;
                }
                "--seed" => {
                    o.seed = f[i + 1].parse().unwrap();
                    i += 1;
                }
                "--lossless" => o.lossless = true,
                "--coders" => {
                    o.coders = f[i + 1].split(',').map(|k| k.parse().unwrap()).collect();
                    i += 1;
                }
                // A file of an older format version: it must still decode, but the encoder
                // no longer writes it.
                "--decode-only" => decode_only = true,
                other => panic!("unknown option {other} in vectors.txt"),
            }
            i += 1;
        }
        let img = image::open(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(src)).unwrap();
        let fresh = if decode_only {
            Vec::new()
        } else {
            encode(&img, &model, &o).unwrap()
        };
        let path = dir.join(name);
        if regen && !decode_only {
            std::fs::write(&path, &fresh).unwrap();
        }
        let bytes = std::fs::read(&path).unwrap();
        let dec = decode(&bytes, &model, None, Recon::Denoise).unwrap();
        let rgb = dec.image.to_rgb8();
        let png = path.with_extension("png");
        if regen && !decode_only {
            dec.image.save(&png).unwrap();
            out_list.push_str(&format!(
                "{name} {} {} {}\n",
                ddpmc::entropy::hex(&Sha256::digest(&bytes)),
                ddpmc::entropy::hex(&Sha256::digest(rgb.as_raw())),
                f[3..].join(" ")
            ));
            n += 1;
            continue;
        }
        if regen {
            out_list.push_str(line);
            out_list.push('\n');
        }
        assert_eq!(
            ddpmc::entropy::hex(&Sha256::digest(&bytes)),
            file_hash,
            "{name}"
        );
        assert!(
            decode_only || fresh == bytes,
            "{name}: the encoder no longer writes this vector"
        );
        if ddpmc::entropy::hex(&Sha256::digest(rgb.as_raw())) != pix_hash {
            let want = image::open(&png).unwrap().to_rgb8();
            let worst = rgb
                .as_raw()
                .iter()
                .zip(want.as_raw())
                .map(|(&a, &b)| a.abs_diff(b))
                .max()
                .unwrap();
            assert!(
                worst <= 1 && !dec.lossless,
                "{name}: decoded image differs by {worst}"
            );
        }
        n += 1;
    }
    if regen {
        std::fs::write(dir.join("vectors.txt"), out_list).unwrap();
    }
    assert!(n >= 3);
}

/// Measurement, not a check: per image of $DDPMC_KODAK (default ../shared/data/kodak), encode
/// with quality $DDPMC_Q (default 4) and the default model, decode every step, and print
/// bpp / PSNR per step, ideal vs real size, and wall times. Run with
/// `cargo test --release --test codec measure_kodak -- --ignored --nocapture`.
#[test]
#[ignore]
fn measure_kodak() {
    use std::time::Instant;
    let dir = std::env::var("DDPMC_KODAK").unwrap_or_else(|_| "../shared/data/kodak".into());
    let q: u8 = std::env::var("DDPMC_Q").map_or(4, |v| v.parse().unwrap());
    let only = std::env::var("DDPMC_ONLY").ok();
    let model = ddpmc::model::default_model().unwrap();
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .filter(|p| {
            only.as_ref()
                .is_none_or(|o| p.to_string_lossy().contains(o.as_str()))
        })
        .collect();
    names.sort();
    println!("image step t_end bytes bpp psnr ideal_bytes side_bytes block k enc_s dec_s");
    for p in names {
        let img = image::open(&p).unwrap();
        let px = f64::from(img.width() * img.height());
        let t0 = Instant::now();
        let (bytes, rep) = encode_with_report(&img, &model, &opts(q), &mut |_, _| {}).unwrap();
        let enc_s = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let steps = decode_all_steps(&bytes, &model, Recon::Denoise).unwrap();
        let dec_s = t1.elapsed().as_secs_f64();
        let name = p.file_stem().unwrap().to_string_lossy().into_owned();
        let mut ideal = 0.0;
        for (s, r) in steps.iter().zip(&rep.steps) {
            ideal += r.ideal_bits / 8.0;
            println!(
                "{name} {} {:.1} {} {:.4} {:.3} {:.1} {:.1} {} {} {enc_s:.1} {dec_s:.1}",
                s.step,
                r.t_end,
                s.bytes,
                s.bytes as f64 * 8.0 / px,
                psnr(&img, &s.image),
                ideal,
                r.side_bits / 8.0,
                r.block,
                r.k_max
            );
        }
        println!(
            "{name} total real {} ideal {:.1} overhead {:.2}%",
            bytes.len(),
            ideal,
            (bytes.len() as f64 / ideal - 1.0) * 100.0
        );
    }
}

/// An ICC profile given to the encoder comes back from the decoder (SPEC §4.5); the file is
/// minor version 1 and decodes the same image as without it.
#[test]
fn icc_profile_is_carried() {
    let m = Analytic::default();
    let img = sample("kodim19_odd.png");
    let icc: Vec<u8> = (0..700u32).map(|i| (i * 7 % 251) as u8).collect();
    let o = EncodeOptions {
        quality: 2,
        icc_profile: Some(icc.clone()),
        ..Default::default()
    };
    let with = encode(&img, &m, &o).unwrap();
    let without = encode(&img, &m, &opts(2)).unwrap();
    assert_eq!((with[9], without[9]), (1, 0));
    assert_eq!(with.len(), without.len() + icc.len() + 12);
    assert_eq!(inspect(&with).unwrap().icc_bytes, Some(icc.len()));
    let a = decode(&with, &m, None, Recon::Denoise).unwrap();
    let b = decode(&without, &m, None, Recon::Denoise).unwrap();
    assert_eq!(a.icc_profile.as_deref(), Some(icc.as_slice()));
    assert!(b.icc_profile.is_none());
    // Debug output summarises (no pixel dump).
    let dbg = format!("{a:?}");
    assert!(
        dbg.contains("53x41") && dbg.contains("icc_profile_bytes: Some(700)"),
        "{dbg}"
    );
    assert!(dbg.len() < 300, "{dbg}");
    let mut d = Decoder::new(&m);
    d.push(&with).unwrap();
    assert!(format!("{d:?}").contains("steps_done: 2"));
    let steps = decode_all_steps(&with, &m, Recon::Denoise).unwrap();
    assert!(format!("{:?}", steps[0]).contains("step: 1"));
    assert_eq!(a.image.to_rgb8().as_raw(), b.image.to_rgb8().as_raw());
}

/// The network of `inner`, counting its passes.
struct Counting<'a> {
    inner: &'a dyn ddpmc::model::Denoiser,
    calls: std::sync::atomic::AtomicUsize,
}

impl ddpmc::model::Denoiser for Counting<'_> {
    fn predict_x0(
        &self,
        z: &[f32],
        h: usize,
        w: usize,
        abar: f64,
        logsnr: f64,
    ) -> ddpmc::Result<Vec<f32>> {
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.predict_x0(z, h, w, abar, logsnr)
    }
    fn multiple(&self) -> usize {
        self.inner.multiple()
    }
    fn id(&self) -> [u8; 32] {
        self.inner.id()
    }
}

/// `codec::Limits` (SPEC §9.3): a file over a limit is refused when its header is read, before
/// any network pass; a file within them decodes as before; passes beyond the limit are refused.
#[test]
fn decoder_limits_are_checked_before_any_work() {
    use ddpmc::codec::{decode_all_steps_with_limits, decode_with_limits, Limits};
    let m = Analytic::default();
    let net = Counting {
        inner: &m,
        calls: Default::default(),
    };
    let calls = || net.calls.load(std::sync::atomic::Ordering::Relaxed);
    let bytes = encode(&sample("kodim19_odd.png"), &m, &opts(3)).unwrap();
    let h = inspect(&bytes).unwrap().header;
    let (ph, pw) = h.padded();
    let area = (ph * pw) as u64;
    let limits = |px: u64, steps: usize, passes: u64| {
        let mut l = Limits::default();
        l.max_pixels = px;
        l.max_steps = steps;
        l.max_passes = passes;
        l
    };
    // Defaults: the format's bounds.
    let d = Limits::default();
    assert_eq!(
        (d.max_pixels, d.max_steps, d.max_passes),
        (1 << 24, 32, 256)
    );
    let refused = |l: Limits, max_steps: Option<usize>| {
        let before = calls();
        let mut dec = Decoder::with_limits(&net, l);
        dec.set_max_steps(max_steps);
        let r = dec.push(&bytes);
        assert!(matches!(r, Err(Error::Limits(_))), "{:?}", r.err());
        assert_eq!(dec.steps_done(), 0);
        assert_eq!(dec.network_passes(), 0);
        assert_eq!(
            calls(),
            before,
            "a network pass ran before the limit was checked"
        );
        // Nothing after the preamble was taken in: the header itself was refused.
        assert_eq!(dec.bytes_consumed(), chunk_ends(&bytes)[0]);
    };
    refused(limits(area - 1, 32, 256), None);
    refused(limits(1 << 24, 2, 256), None);
    refused(limits(1 << 24, 32, 2), None);
    refused(limits(1 << 24, 2, 256), Some(3));
    // At the limits: decodes, and exactly as without them.
    let plain = decode(&bytes, &m, None, Recon::Denoise).unwrap();
    let at = decode_with_limits(&bytes, &net, None, Recon::Denoise, limits(area, 3, 3)).unwrap();
    assert_eq!(at.steps_decoded, 3);
    assert_eq!(
        at.image.to_rgb8().into_raw(),
        plain.image.to_rgb8().into_raw()
    );
    // Stopping early fits a lower step limit.
    let two = decode_with_limits(&bytes, &m, Some(2), Recon::Denoise, limits(area, 2, 2)).unwrap();
    assert_eq!(two.steps_decoded, 2);
    // Passes are counted over the decoder's life: three steps take three, a flow image more.
    let mut dec = Decoder::with_limits(&m, limits(area, 3, 3));
    dec.push(&bytes).unwrap();
    dec.image(Recon::Denoise).unwrap();
    assert_eq!(dec.network_passes(), 3);
    assert!(matches!(dec.image(Recon::Flow), Err(Error::Limits(_))));
    assert!(matches!(
        decode_all_steps_with_limits(&bytes, &m, Recon::Flow, limits(area, 3, 4)),
        Err(Error::Limits(_))
    ));
    assert_eq!(
        decode_all_steps_with_limits(&bytes, &m, Recon::Denoise, limits(area, 3, 3))
            .unwrap()
            .len(),
        3
    );
    // A header claiming 4096x4096 in a file of a few hundred bytes: refused by a caller's
    // pixel limit at once, with no pass run.
    let huge = with_payload(&bytes, 0, |p| {
        p[0..4].copy_from_slice(&4096u32.to_le_bytes());
        p[4..8].copy_from_slice(&4096u32.to_le_bytes());
    });
    let cut = &huge[..chunk_ends(&huge)[2]];
    let before = calls();
    let r = decode_with_limits(cut, &net, None, Recon::Denoise, limits(1 << 20, 32, 256));
    match r {
        Err(Error::Limits(msg)) => assert!(msg.contains("4096x4096"), "{msg}"),
        other => panic!("expected a limit error, got {:?}", other.err()),
    }
    assert_eq!(calls(), before);
}
