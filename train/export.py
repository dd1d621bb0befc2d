"""Export ddpmc epsilon-models to safetensors for the Rust side (src/model/unet.rs).

    python train/export.py --ckpt train/runs/main/ema.pt --out models/default.safetensors
    python train/export.py --tiny format-spec/vectors/tiny.safetensors

--out writes the EMA weights of a training checkpoint, and with them the parity vector
(models/parity.safetensors next to --out unless --parity names another path or --no-parity):
a few inputs z, their log-SNR values and the PyTorch v outputs computed in float64, which
tests/model.rs checks candle against.
--tiny writes a tiny randomly initialised model (fixed seed) for the codec's test vectors.
--tiling-check IMAGE prints how far tiled evaluation (src/model/unet.rs, Tiling) is from
whole-image evaluation for --weights (or --ckpt), by halo and noise level:

    python train/export.py --weights models/default.safetensors --tiling-check ../shared/data/kodak/kodim23.png

The bytes are deterministic: tensors in sorted key order, all float32 (parity outputs float64),
a JSON header with sorted keys and no spaces, padded with spaces to a multiple of 8 bytes.
Metadata: "config" (JSON of the model config) and "step" (training steps, "0" for --tiny).
The model id is the SHA-256 of the file's bytes; this script prints it with the parameter count
and the FLOPs per pixel.
"""

import argparse
import hashlib
import json
import math
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import diffusion as D  # noqa: E402
import model as M  # noqa: E402

TINY_CONFIG = {"channels": [8, 8, 8, 8], "blocks": 1, "emb_freqs": 4, "emb_dim": 16}
TINY_SEED = 20261201
PARITY_SEED = 7
# (height, width, t): two images of 32x48 and one of 16x16, at t = 20, 150, 600.
PARITY_CASES = [(32, 48, 20), (32, 48, 150), (16, 16, 600)]

_DTYPES = {np.dtype("<f4"): "F32", np.dtype("<f8"): "F64", np.dtype("<i8"): "I64"}


def safetensors_bytes(tensors: dict, metadata: dict) -> bytes:
    """Serialise {name: np.ndarray} with string metadata; byte-for-byte deterministic."""
    header = {"__metadata__": {k: str(v) for k, v in metadata.items()}}
    blobs = []
    off = 0
    for name in sorted(tensors):
        a = tensors[name]
        dt = a.dtype.newbyteorder("<")
        if dt not in _DTYPES:
            raise ValueError(f"{name}: unsupported dtype {a.dtype}")
        b = np.ascontiguousarray(a, dtype=dt).tobytes()
        header[name] = {"dtype": _DTYPES[dt], "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def write(path: str, data: bytes) -> str:
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return hashlib.sha256(data).hexdigest()


def model_bytes(model: M.UNet, step: int) -> bytes:
    sd = {k: v.detach().cpu().float().numpy() for k, v in model.state_dict().items()}
    meta = {"config": json.dumps(model.config, sort_keys=True, separators=(",", ":")), "step": int(step)}
    return safetensors_bytes(sd, meta)


def load_safetensors(path: str) -> M.UNet:
    from safetensors import safe_open
    from safetensors.torch import load_file
    with safe_open(path, "pt") as f:
        meta = f.metadata() or {}
    m = M.UNet(json.loads(meta["config"]))
    m.load_state_dict(load_file(path))
    return m.eval()


def describe(model: M.UNet, digest: str, path: str, nbytes: int):
    params = sum(p.numel() for p in model.parameters())
    print(f"wrote {path} ({nbytes} bytes)")
    print(f"  model id        {digest}")
    print(f"  config          {json.dumps(model.config, sort_keys=True)}")
    print(f"  parameters      {params}")
    print(f"  FLOPs per pixel {M.flops_per_pixel(model)}")


@torch.no_grad()
def forward_f64(model: M.UNet, z: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
    """v in float64: the log-SNR embedding exactly as trained (float32, as the Rust side
    computes it), everything after it in float64."""
    m64 = M.UNet(model.config)
    m64.load_state_dict(model.state_dict())
    m64 = m64.double().eval()
    orig = M.logsnr_embedding
    M.logsnr_embedding = lambda lam, n: orig(lam, n).double()
    try:
        return m64(z.double(), logsnr.float())
    finally:
        M.logsnr_embedding = orig


def parity_bytes(model: M.UNet, model_id: str) -> bytes:
    """Noise-like inputs (smoothed Gaussian noise plus a gradient, in the range of latents)."""
    g = torch.Generator().manual_seed(PARITY_SEED)
    tensors = {}
    ts, lams, abars = [], [], []
    for i, (h, w, t) in enumerate(PARITY_CASES):
        abar = float(D.ABAR[t])
        lam = float(D.logsnr_of_abar(D.ABAR[t]))
        img = torch.nn.functional.avg_pool2d(torch.randn(1, 3, h + 4, w + 4, generator=g), 5, 1) * 2.0
        yy = torch.linspace(-0.5, 0.5, h)[:, None]
        xx = torch.linspace(-0.5, 0.5, w)[None, :]
        x = (img + yy + xx).clamp(-1, 1)
        z = (math.sqrt(abar) * x + math.sqrt(1 - abar) * torch.randn(1, 3, h, w, generator=g)).float()
        v = forward_f64(model, z, torch.tensor([lam], dtype=torch.float64))
        tensors[f"z{i}"] = z[0].numpy().astype("<f4")
        tensors[f"v{i}"] = v[0].numpy().astype("<f8")
        ts.append(t)
        lams.append(lam)
        abars.append(abar)
    tensors["t"] = np.array(ts, dtype="<i8")
    tensors["logsnr"] = np.array(lams, dtype="<f8")
    tensors["abar"] = np.array(abars, dtype="<f8")
    return safetensors_bytes(tensors, {"model_id": model_id, "cases": len(PARITY_CASES)})


def cuts(n: int, core: int):
    """Core intervals covering 0..n, as Tiling in src/model/unet.rs cuts them."""
    return [(k * core, min(n, (k + 1) * core)) for k in range((n + core - 1) // core)]


@torch.no_grad()
def tiling_check(model: M.UNet, path: str, core: int = 256, halos=(32, 64, 96, 128, 160), ts=(150, 600, 900)):
    """Max and RMS |x0 tiled - x0 whole| on one image (cropped to multiples of 16)."""
    from PIL import Image
    a = np.array(Image.open(path).convert("RGB"))
    m = model.multiple
    a = a[: a.shape[0] // m * m, : a.shape[1] // m * m]
    x = torch.from_numpy(a).permute(2, 0, 1)[None].float() / 127.5 - 1
    H, W = x.shape[2], x.shape[3]
    g = torch.Generator().manual_seed(0)
    print(f"{path}: {W}x{H}, {core}-pixel cores; max |dx0| (8-bit levels), rms |dx0|")
    for t in ts:
        ab = float(D.ABAR[t])
        lam = torch.tensor([float(D.logsnr_of_abar(D.ABAR[t]))]).float()
        z = math.sqrt(ab) * x + math.sqrt(1 - ab) * torch.randn(x.shape, generator=g)
        vw = model(z, lam)
        for halo in halos:
            v = torch.zeros_like(vw)
            for y0, y1 in cuts(H, core):
                for x0, x1 in cuts(W, core):
                    ty0, ty1 = max(0, y0 - halo), min(H, y1 + halo)
                    tx0, tx1 = max(0, x0 - halo), min(W, x1 + halo)
                    tv = model(z[:, :, ty0:ty1, tx0:tx1], lam)
                    v[:, :, y0:y1, x0:x1] = tv[:, :, y0 - ty0:y1 - ty0, x0 - tx0:x1 - tx0]
            d = (v - vw).abs() * math.sqrt(1 - ab)
            print(f"  t={t} halo={halo}: max {float(d.max()):.2e} ({float(d.max()) * 127.5:.3f}), "
                  f"rms {float(d.pow(2).mean().sqrt()):.2e}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", help="training checkpoint (ema.pt: keys ema, config, step, optional init_step)")
    ap.add_argument("--out", help="safetensors path for the EMA weights of --ckpt")
    ap.add_argument("--parity", help="parity vector path (default: parity.safetensors next to --out)")
    ap.add_argument("--no-parity", action="store_true", help="do not write the parity vector")
    ap.add_argument("--weights", help="with --parity and no --ckpt: an exported model to compute it for")
    ap.add_argument("--tiny", help="write a tiny random model here")
    ap.add_argument("--tiling-check", metavar="IMAGE", help="compare tiled and whole evaluation on IMAGE")
    args = ap.parse_args()
    torch.set_num_threads(1)
    did = False

    if args.tiny:
        torch.manual_seed(TINY_SEED)
        tiny = M.UNet(TINY_CONFIG).eval()
        data = model_bytes(tiny, 0)
        describe(tiny, write(args.tiny, data), args.tiny, len(data))
        did = True

    model, model_id = None, None
    if args.ckpt:
        if not args.out:
            ap.error("--ckpt needs --out")
        st = torch.load(args.ckpt, map_location="cpu", weights_only=False)
        model = M.UNet(st["config"])
        model.load_state_dict(st["ema"])
        # A run started from exported weights (train.py --init-weights) counts its steps from 0;
        # the file's "step" is the total, its own steps plus those of the weights it started from.
        total = st.get("init_step", 0) + st.get("step", 0)
        data = model_bytes(model, total)
        model_id = write(args.out, data)
        model = load_safetensors(args.out)  # the parity vector is for exactly the shipped bytes
        describe(model, model_id, args.out, len(data))
        extra = f" ({st['init_step']} before this run)" if st.get("init_step") else ""
        print(f"  training steps  {total}{extra}")
        did = True
    elif args.weights:
        with open(args.weights, "rb") as f:
            model_id = hashlib.sha256(f.read()).hexdigest()
        model = load_safetensors(args.weights)

    parity = args.parity
    if parity is None and args.out and not args.no_parity:
        parity = os.path.join(os.path.dirname(args.out), "parity.safetensors")
    if parity and not args.no_parity:
        if model is None:
            ap.error("--parity needs --ckpt/--out or --weights")
        data = parity_bytes(model, model_id)
        print(f"wrote {parity} ({len(data)} bytes, sha256 {write(parity, data)}) for model {model_id}")
        did = True
    if args.tiling_check:
        if model is None:
            ap.error("--tiling-check needs --ckpt/--out or --weights")
        torch.set_num_threads(2)
        tiling_check(model, args.tiling_check)
        did = True
    if not did:
        ap.error("nothing to do: give --ckpt/--out, --tiny, --weights with --parity or --tiling-check")


if __name__ == "__main__":
    main()
