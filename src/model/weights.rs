//! Stage 2: weights files (SPEC §4.1, §6.4): safetensors header checks, strict loading, the model id
//! and the built-in models.
//!
//! A weights file is safetensors as written by `train/export.py`: float tensors named like the
//! modules of [`UNet`], metadata `"config"` (the architecture as JSON) and `"step"`. The model
//! id is the SHA-256 of the file's bytes. Every check returns an error, never panics.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;
use sha2::{Digest, Sha256};

use crate::model::UNet;
use crate::{Error, Result};

/// The default model's weights, embedded in the library (`models/default.safetensors`).
pub static DEFAULT_WEIGHTS: &[u8] = include_bytes!("../../models/default.safetensors");

/// A model built into the library.
#[derive(Debug, Clone, Copy)]
pub struct BuiltinModel {
    /// Its name (`ddpmc info` shows it).
    pub name: &'static str,
    /// Its model id, lower-case hex: the SHA-256 of `weights` (the tests check it), written
    /// out so that finding a file's model hashes nothing.
    pub id: &'static str,
    /// The safetensors file.
    pub weights: &'static [u8],
}

/// Every model built into the library: the default first, then the earlier defaults since b48,
/// kept so that files coded with them still decode with no model given (a file names its model
/// by id, SPEC §4.1). From b48 on, a default is never removed from this list; files of the
/// models before it decode with their weights given explicitly.
pub static BUILTIN_MODELS: &[BuiltinModel] = &[
    BuiltinModel {
        name: "w64n3",
        id: "49e7f6ea3fee42258fb98c9065ed9173bef06451ad61c6c5c11b4414696a7cb4",
        weights: DEFAULT_WEIGHTS,
    },
    BuiltinModel {
        name: "w64n2",
        id: "18b4a83294d52ec2dfcf573fb2e9560d80a2dbbba1538b5643bb1ab272872cd5",
        weights: include_bytes!("../../models/w64n2.safetensors"),
    },
    BuiltinModel {
        name: "w64n",
        id: "01209802968ea02466c95f6290c4bafa7ce44891fc40725720ec66f303659e54",
        weights: include_bytes!("../../models/w64n.safetensors"),
    },
    BuiltinModel {
        name: "w64",
        id: "f7eeeb742cef844c52a6d43844e900281afb4a17ad43bc1a1d9e37b25850cd1a",
        weights: include_bytes!("../../models/w64.safetensors"),
    },
    BuiltinModel {
        name: "b48",
        id: "e459ffb55d00b0dd51baa2d9c3e42c9f4c0ad29a7bb443ab199cdeb5677e636a",
        weights: include_bytes!("../../models/b48.safetensors"),
    },
];

/// The ids of [`BUILTIN_MODELS`] as bytes (a malformed hex id matches nothing).
fn builtin_ids() -> &'static [[u8; 32]] {
    static IDS: OnceLock<Vec<[u8; 32]>> = OnceLock::new();
    IDS.get_or_init(|| {
        BUILTIN_MODELS
            .iter()
            .map(|m| {
                let mut id = [0u8; 32];
                for (i, b) in id.iter_mut().enumerate() {
                    *b =
                        m.id.get(2 * i..2 * i + 2)
                            .and_then(|h| u8::from_str_radix(h, 16).ok())
                            .unwrap_or(0);
                }
                id
            })
            .collect()
    })
}

/// The name of the built-in model with this id (a file header's model id), if there is one.
pub fn builtin_name(id: &[u8; 32]) -> Option<&'static str> {
    let i = builtin_ids().iter().position(|b| b == id)?;
    Some(BUILTIN_MODELS[i].name)
}

/// The built-in model with this id (a file header's model id), loaded once per process and
/// shared; `None` if no built-in model has it.
pub fn builtin_model(id: &[u8; 32]) -> Result<Option<&'static UNet>> {
    match builtin_ids().iter().position(|b| b == id) {
        Some(i) => load_builtin(i).map(Some),
        None => Ok(None),
    }
}

/// The built-in model that decodes a .ddpmc file: the one its header names, or the default
/// model when the header names none of them (or cannot be read: the decoder then says why).
/// Loaded once per process, like [`builtin_model`].
pub fn model_for_file(bytes: &[u8]) -> Result<&'static UNet> {
    let named = crate::codec::header_model_id(bytes)
        .and_then(|id| builtin_ids().iter().position(|b| *b == id));
    load_builtin(named.unwrap_or(0))
}

/// Built-in model `i`, loaded on first use.
fn load_builtin(i: usize) -> Result<&'static UNet> {
    type Slot = OnceLock<std::result::Result<UNet, String>>;
    static LOADED: OnceLock<Vec<Slot>> = OnceLock::new();
    let slots = LOADED.get_or_init(|| BUILTIN_MODELS.iter().map(|_| Slot::new()).collect());
    slots[i]
        .get_or_init(|| {
            UNet::from_safetensors_bytes(BUILTIN_MODELS[i].weights).map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| Error::Model(e.clone()))
}

/// Largest accepted safetensors header (the default model's is about 20 kB).
const MAX_HEADER: u64 = 16 << 20;

/// Load the default model (the weights embedded in the library).
pub fn default_model() -> Result<UNet> {
    UNet::from_safetensors_bytes(DEFAULT_WEIGHTS)
}

/// The model id of a weights file: SHA-256 of its bytes.
pub fn model_id(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Lower-case hex of a model id (64 characters).
pub fn id_hex(id: &[u8; 32]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

fn bad(msg: impl std::fmt::Display) -> Error {
    Error::Model(format!("invalid weights file: {msg}"))
}

/// Parse the safetensors JSON header, checking its length and that every tensor is a float
/// type; returns the header object.
fn header(bytes: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>> {
    let len = bytes
        .get(..8)
        .ok_or_else(|| bad(format!("{} bytes (expected at least 8)", bytes.len())))?;
    let mut n8 = [0u8; 8];
    n8.copy_from_slice(len);
    let n = u64::from_le_bytes(n8);
    if n > MAX_HEADER || n > (bytes.len() - 8) as u64 {
        return Err(bad(format!(
            "header length {n} (file has {} bytes, limit {MAX_HEADER})",
            bytes.len()
        )));
    }
    let text = std::str::from_utf8(&bytes[8..8 + n as usize])
        .map_err(|e| bad(format!("header is not UTF-8: {e}")))?;
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| bad(format!("header is not JSON: {e}")))?;
    let serde_json::Value::Object(obj) = v else {
        return Err(bad("header is not a JSON object"));
    };
    for (name, t) in &obj {
        if name == "__metadata__" {
            continue;
        }
        match t.get("dtype").and_then(|d| d.as_str()) {
            Some("F16" | "BF16" | "F32" | "F64") => {}
            d => {
                return Err(bad(format!(
                    "tensor {name:?} has dtype {d:?} (expected F16, BF16, F32 or F64)"
                )))
            }
        }
    }
    Ok(obj)
}

/// The JSON model config stored in the metadata key `"config"`.
pub fn metadata_config(bytes: &[u8]) -> Result<String> {
    let h = header(bytes)?;
    h.get("__metadata__")
        .and_then(|m| m.get("config"))
        .and_then(|c| c.as_str())
        .map(str::to_owned)
        .ok_or_else(|| bad("no \"config\" in the metadata (export with train/export.py)"))
}

/// Tensors of a weights file, handed out by name with shape checks; records which names the
/// network asked for.
struct Recording {
    tensors: HashMap<String, Tensor>,
    used: Arc<Mutex<BTreeSet<String>>>,
}

impl SimpleBackend for Recording {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = self.get_unchecked(name, dtype, dev)?;
        if t.shape() != &s {
            return Err(candle_core::Error::Msg(format!(
                "tensor {name:?} has shape {:?} (expected {:?})",
                t.shape().dims(),
                s.dims()
            )));
        }
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| candle_core::Error::Msg(format!("missing tensor {name:?}")))?;
        if let Ok(mut u) = self.used.lock() {
            u.insert(name.to_owned());
        }
        t.to_device(dev)?.to_dtype(dtype)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}

/// After building a network from [`var_builder`]: checks that it used every tensor.
/// Read the model file at `path` and build a network from its bytes with `build`. A file that
/// cannot be read is an [`crate::Error::File`] naming `path`; a malformed one an
/// [`crate::Error::Model`] whose message starts with `path`.
pub(crate) fn from_file<T>(
    path: &std::path::Path,
    build: impl FnOnce(&[u8]) -> Result<T>,
) -> Result<T> {
    let bytes =
        std::fs::read(path).map_err(|e| crate::Error::file(crate::FileOp::Read, path, e))?;
    build(&bytes).map_err(|e| match e {
        crate::Error::Model(m) => crate::Error::Model(format!("{}: {m}", path.display())),
        e => e,
    })
}

pub(crate) struct UsageCheck {
    names: BTreeSet<String>,
    used: Arc<Mutex<BTreeSet<String>>>,
}

impl UsageCheck {
    pub(crate) fn all_used(&self) -> Result<()> {
        let used = self
            .used
            .lock()
            .map_err(|_| Error::Model("weights loader poisoned".into()))?;
        match self.names.difference(&used).next() {
            Some(extra) => Err(bad(format!(
                "unexpected tensor {extra:?} (the model config does not use it)"
            ))),
            None => Ok(()),
        }
    }
}

/// A CPU, f32 var builder over all tensors of a weights file.
pub(crate) fn var_builder(bytes: &[u8]) -> Result<(VarBuilder<'static>, UsageCheck)> {
    header(bytes)?;
    let tensors = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)
        .map_err(|e| bad(e.to_string()))?;
    let names = tensors.keys().cloned().collect();
    let used = Arc::new(Mutex::new(BTreeSet::new()));
    let backend = Recording {
        tensors,
        used: used.clone(),
    };
    let vb = VarBuilder::from_backend(Box::new(backend), DType::F32, Device::Cpu);
    Ok((vb, UsageCheck { names, used }))
}
