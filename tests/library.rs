//! The library's surface for applications: the image crate integration (with the built-in
//! model), the decoder's progress and cancel hook, and errors that name their path.

mod common;

use std::path::Path;

use common::Analytic;
use ddpmc::model::default_model;
use ddpmc::{decode, encode, DdpmcDecoder, Decoder, EncodeOptions, Error, Progress, Recon};
use image::{DynamicImage, ImageDecoder, RgbImage};

fn test_image(w: u32, h: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(7 * x + 3 * y) as u8, (11 * y) as u8, (200 - 5 * x) as u8])
    }))
}

fn opts(q: u8) -> EncodeOptions {
    EncodeOptions {
        quality: q,
        ..Default::default()
    }
}

/// A fresh folder under the system's temporary folder.
fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("ddpmc-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn image_crate_opens_ddpmc_files_after_registration() {
    let model = default_model().unwrap();
    let img = test_image(32, 24);
    let bytes = encode(&img, &model, &opts(1)).unwrap();
    let want = decode(&bytes, &model, None, Recon::Denoise).unwrap().image;
    let dir = temp_dir("image-hooks");
    let path = dir.join("x.ddpmc");
    std::fs::write(&path, &bytes).unwrap();
    // The same bytes under a name that says nothing: found by content alone.
    let anon = dir.join("x.bin");
    std::fs::write(&anon, &bytes).unwrap();

    // Before registration the image crate knows no .ddpmc (hooks are per process, so this
    // holds only if no other test in this binary registered first: they run in one test).
    assert!(image::open(&path).is_err());
    assert!(ddpmc::register_image_hooks());
    assert!(ddpmc::register_image_hooks(), "a second call is harmless");

    let opened = image::open(&path).unwrap();
    assert_eq!((opened.width(), opened.height()), (32, 24));
    assert_eq!(opened.color(), image::ColorType::Rgb8);
    assert_eq!(opened, want);

    let guessed = image::ImageReader::open(&anon)
        .unwrap()
        .with_guessed_format()
        .unwrap();
    let decoded = guessed.decode().unwrap();
    assert_eq!(decoded, want);

    // A file that is not ddpmc but named .ddpmc is an error, not a panic.
    let bad = dir.join("bad.ddpmc");
    std::fs::write(&bad, b"\x8bDDPMC\r\nnot really").unwrap();
    let e = image::open(&bad).unwrap_err();
    assert!(matches!(e, image::ImageError::Decoding(_)), "{e:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ddpmc_decoder_reports_header_facts_and_honours_limits() {
    let model = Analytic::default();
    let gray = DynamicImage::ImageLuma8(image::GrayImage::from_fn(20, 17, |x, y| {
        image::Luma([(9 * x + 4 * y) as u8])
    }));
    let bytes = encode(&gray, &model, &opts(2)).unwrap();
    let mut dec = DdpmcDecoder::with_model(std::io::Cursor::new(&bytes), &model).unwrap();
    assert_eq!(dec.dimensions(), (20, 17));
    assert_eq!(dec.color_type(), image::ColorType::L8);
    assert_eq!(dec.icc_profile().unwrap(), None);
    let mut tight = image::Limits::default();
    tight.max_image_width = Some(19);
    assert!(dec.set_limits(tight).is_err());
    let back = DynamicImage::from_decoder(dec).unwrap();
    assert_eq!(
        back,
        decode(&bytes, &model, None, Recon::Denoise).unwrap().image
    );

    // The ICC profile kept in the file is handed to the image crate.
    let icc = vec![1, 2, 3, 4, 5];
    let with_icc = EncodeOptions {
        icc_profile: Some(icc.clone()),
        ..opts(1)
    };
    let bytes = encode(&gray, &model, &with_icc).unwrap();
    let mut dec = DdpmcDecoder::with_model(&bytes[..], &model).unwrap();
    assert_eq!(dec.icc_profile().unwrap(), Some(icc));

    // Not a ddpmc file, or no header yet: errors.
    assert!(DdpmcDecoder::with_model(&b"GIF89a.........."[..], &model).is_err());
    assert!(DdpmcDecoder::with_model(&bytes[..12], &model).is_err());
}

#[test]
fn progress_is_reported_before_every_network_pass() {
    let model = Analytic::default();
    let bytes = encode(&test_image(32, 24), &model, &opts(3)).unwrap();
    let mut seen: Vec<Progress> = Vec::new();
    let img = {
        let mut dec = Decoder::new(&model).with_progress(|p| {
            seen.push(p);
            true
        });
        assert_eq!(dec.push(&bytes).unwrap(), 3);
        dec.image(Recon::Denoise).unwrap()
    };
    // Three steps: the first needs no pass, steps 2 and 3 one each, the image one.
    let passes: Vec<u64> = seen.iter().map(|p| p.pass).collect();
    assert_eq!(passes, [1, 2, 3]);
    let steps: Vec<usize> = seen.iter().map(|p| p.steps_done).collect();
    assert_eq!(steps, [1, 2, 3]);
    assert!(seen
        .iter()
        .all(|p| p.passes_expected == 3 && p.steps_total == 3));
    assert_eq!(
        img,
        decode(&bytes, &model, None, Recon::Denoise).unwrap().image
    );

    // Under set_max_steps the expectation follows the steps that will run.
    let mut seen = Vec::new();
    let mut dec = Decoder::new(&model).with_progress(|p| {
        seen.push(p);
        true
    });
    dec.set_max_steps(Some(2));
    dec.push(&bytes).unwrap();
    dec.finish(Recon::Denoise).unwrap();
    assert_eq!(seen.len(), 2);
    assert!(seen
        .iter()
        .all(|p| p.passes_expected == 2 && p.steps_total == 2));
}

#[test]
fn cancelling_stops_the_decode_and_the_decoder_resumes() {
    let model = Analytic::default();
    let bytes = encode(&test_image(32, 24), &model, &opts(4)).unwrap();
    let whole = decode(&bytes, &model, None, Recon::Denoise).unwrap();

    // Stop before the second pass: step 1 (no pass) and step 2 (pass 1) are done.
    let mut allow = 1u64;
    let mut dec = Decoder::new(&model).with_progress(move |p| {
        let go = p.pass <= allow;
        if !go {
            allow = u64::MAX; // the next try goes through
        }
        go
    });
    let e = dec.push(&bytes).unwrap_err();
    assert!(matches!(e, Error::Cancelled { passes: 1 }), "{e:?}");
    assert!(e.to_string().contains("cancelled"), "{e}");
    assert_eq!(dec.steps_done(), 2);
    assert_eq!(dec.network_passes(), 1);
    assert!(!dec.is_finished());
    // Not poisoned: pushing nothing runs the buffered steps, and the result is the same.
    assert_eq!(dec.push(&[]).unwrap(), 4);
    assert!(dec.is_finished());
    let out = dec.finish(Recon::Denoise).unwrap();
    assert_eq!(out.image, whole.image);

    // A cancel while making the image: `image` fails, and may be asked again.
    let mut calls = 0;
    let mut dec = Decoder::new(&model).with_progress(|p| {
        calls += 1;
        p.pass != 4 || calls > 4
    });
    dec.push(&bytes).unwrap();
    assert!(matches!(
        dec.image(Recon::Denoise),
        Err(Error::Cancelled { passes: 3 })
    ));
    assert_eq!(dec.image(Recon::Denoise).unwrap(), whole.image);
}

#[test]
fn file_errors_name_the_path_and_chain_the_cause() {
    let missing = Path::new("no-such-folder/model.safetensors");
    let e = ddpmc::model::UNet::from_file(missing).unwrap_err();
    assert!(matches!(e, Error::File { .. }), "{e:?}");
    assert_eq!(e.path(), Some(missing));
    assert!(
        e.to_string()
            .starts_with("cannot read no-such-folder/model.safetensors: "),
        "{e}"
    );
    let src = std::error::Error::source(&e).expect("a source");
    assert_eq!(
        src.downcast_ref::<std::io::Error>().map(|e| e.kind()),
        Some(std::io::ErrorKind::NotFound)
    );

    // A malformed weights file: the message starts with its path.
    let dir = temp_dir("bad-model");
    let bad = dir.join("bad.safetensors");
    std::fs::write(&bad, b"not safetensors").unwrap();
    let e = ddpmc::model::UNet::from_file(&bad).unwrap_err();
    assert!(e.to_string().contains(&bad.display().to_string()), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every built-in model loads and has its own id; a file names the one that decodes it, and
/// `DdpmcDecoder::new` picks it, for earlier defaults too.
#[test]
fn built_in_models_are_found_by_the_id_a_file_names() {
    use ddpmc::model::{builtin_model, builtin_name, model_for_file, model_id, BUILTIN_MODELS};
    let ids: Vec<_> = BUILTIN_MODELS.iter().map(|m| model_id(m.weights)).collect();
    assert_eq!(
        ids[0],
        model_id(ddpmc::model::DEFAULT_WEIGHTS),
        "the default comes first"
    );
    let img = test_image(32, 24);
    for (m, id) in BUILTIN_MODELS.iter().zip(&ids) {
        let name = m.name;
        assert_eq!(m.id, ddpmc::model::id_hex(id), "{name}: its id is its hash");
        assert_eq!(
            ids.iter().filter(|i| *i == id).count(),
            1,
            "{name}: ids are distinct"
        );
        assert_eq!(builtin_name(id), Some(m.name));
        let net = builtin_model(id).unwrap().expect("built in");
        assert_eq!(ddpmc::model::Denoiser::id(net), *id);
        let bytes = encode(&img, net, &opts(1)).unwrap();
        assert_eq!(
            ddpmc::model::Denoiser::id(model_for_file(&bytes).unwrap()),
            *id
        );
        let want = decode(&bytes, net, None, Recon::Denoise).unwrap().image;
        let dec = DdpmcDecoder::new(std::io::Cursor::new(&bytes)).unwrap();
        assert_eq!(DynamicImage::from_decoder(dec).unwrap(), want, "{name}");
    }
    assert!(builtin_model(&[7; 32]).unwrap().is_none());
    assert!(builtin_name(&[7; 32]).is_none());
    // Data that is no .ddpmc file gets the default model (the decoder then says what is wrong).
    assert_eq!(
        ddpmc::model::Denoiser::id(model_for_file(b"not a file").unwrap()),
        ids[0]
    );
}
