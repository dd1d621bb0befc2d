//! LOSS kind 1 (SPEC §10.1), decoded only: the 8-bit residual p - round(xhat) with a
//! context model over decoded residual classes (format versions 1 and 2).

use crate::entropy::{AdaptiveModel, Model, RangeReader};
use crate::{Error, Result};

const CLASSES: usize = 10;
const CTX_A: usize = 12;

/// 8-bit prediction from a clipped x0 estimate: round((xhat + 1) * 127.5), in 0..=255.
pub(crate) fn predict(xhat: f32) -> u8 {
    ((xhat + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8
}

struct Ctx {
    models: Vec<AdaptiveModel>,
    uniform: Vec<Model>,
    classes: Vec<u8>,
}

impl Ctx {
    fn new(n: usize) -> Self {
        Ctx {
            models: vec![AdaptiveModel::new(CLASSES); 5 * CTX_A],
            uniform: (0..9).map(|b| Model::uniform(1 << b)).collect(),
            classes: vec![0; n],
        }
    }
    fn ctx(&self, c: usize, y: usize, x: usize, h: usize, w: usize) -> usize {
        let i = (c * h + y) * w + x;
        let l = if x > 0 { self.classes[i - 1] } else { 0 };
        let t = if y > 0 { self.classes[i - w] } else { 0 };
        let a = usize::from(l + t).min(CTX_A - 1);
        let cc = if c == 0 {
            0
        } else {
            1 + usize::from(self.classes[i - h * w]).min(3)
        };
        cc * CTX_A + a
    }
}

/// Decode the residual; returns the pixels.
pub(crate) fn decode(r: &mut RangeReader, pred: &[u8], h: usize, w: usize) -> Result<Vec<u8>> {
    let mut cx = Ctx::new(pred.len());
    let mut pix = vec![0u8; pred.len()];
    for c in 0..3 {
        for y in 0..h {
            for x in 0..w {
                let i = (c * h + y) * w + x;
                let ctx = cx.ctx(c, y, x, h, w);
                let b = r.get_adaptive(&mut cx.models[ctx])?;
                let v: u32 = match b {
                    0 => 0,
                    1 => 1,
                    _ => (1u32 << (b - 1)) + r.get(&cx.uniform[b - 1])? as u32,
                };
                let e = if v.is_multiple_of(2) {
                    (v / 2) as i32
                } else {
                    -(v.div_ceil(2) as i32)
                };
                let p = i32::from(pred[i]) + e;
                if !(0..=255).contains(&p) {
                    return Err(Error::format(format!(
                        "lossless residual gives sample {p} (allowed 0..=255)"
                    )));
                }
                pix[i] = p as u8;
                cx.classes[i] = b as u8;
            }
        }
    }
    Ok(pix)
}
