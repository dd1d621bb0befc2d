"""Held-out evaluation of an epsilon-model on fixed random 128x128 crops of the 24 Kodak images.

    python train/evaluate.py --weights models/default.safetensors [--kodak ../shared/data/kodak]

Prints, per t in 10, 50, 100, 150, 300, 600, 900: L_simple (the epsilon MSE) and the PSNR of
the predicted x0 (clipped to [-1, 1], over RGB in 8-bit units), for the paper's Gaussian
marginals and for the coding chain's own marginals. Kodak is evaluation only: never trained on.
"""

import argparse
import math
import os
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import diffusion as D  # noqa: E402

CROP = 128
SEED = 20261201


def kodak_crops(root: str) -> torch.Tensor:
    """24 crops, one per image, positions drawn from a fixed seed; in [-1, 1], NCHW."""
    g = torch.Generator().manual_seed(SEED)
    out = []
    names = sorted(f for f in os.listdir(root) if f.lower().endswith(".png"))
    for f in names:
        a = np.asarray(Image.open(os.path.join(root, f)).convert("RGB"))
        h, w = a.shape[:2]
        y = int(torch.randint(0, h - CROP + 1, (1,), generator=g))
        x = int(torch.randint(0, w - CROP + 1, (1,), generator=g))
        out.append(a[y:y + CROP, x:x + CROP])
    x = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return x


@torch.no_grad()
def measure(model, x, dev, t: int, chain: bool):
    g = torch.Generator().manual_seed(SEED + t + (7 if chain else 0))
    lam = torch.full((x.shape[0],), float(D.logsnr_of_abar(D.ABAR[t])), dtype=torch.float64)
    z = D.chain_marginal(x, lam, g) if chain else D.gaussian_marginal(x, lam, g)
    model.eval()
    v = model(z.to(dev), lam.float().to(dev)).cpu()
    abar = float(D.ABAR[t])
    eps_true = (z - math.sqrt(abar) * x) / math.sqrt(1 - abar)
    eps_pred = math.sqrt(1 - abar) * z + math.sqrt(abar) * v
    l_simple = float(((eps_pred - eps_true) ** 2).mean())
    x0 = D.x0_from_v(z, v, lam).clamp(-1, 1)
    mse = float((((x0 - x) * 127.5) ** 2).mean())
    return l_simple, 10 * math.log10(255 ** 2 / mse)


def psnr_row(model, x, dev, ts=(10, 50, 100, 150, 300, 600, 900)):
    return {f"psnr_t{t}": measure(model, x, dev, t, chain=False)[1] for t in ts}


def load_safetensors_model(path):
    from safetensors.torch import load_file
    from model import UNet
    import json
    from safetensors import safe_open
    with safe_open(path, "pt") as f:
        meta = f.metadata() or {}
    config = json.loads(meta["config"]) if "config" in meta else None
    m = UNet(config)
    m.load_state_dict(load_file(path))
    return m


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True, help="a .safetensors export or a training ema.pt")
    ap.add_argument("--kodak", default="../shared/data/kodak")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.weights.endswith(".pt"):
        from model import UNet
        st = torch.load(args.weights, map_location="cpu", weights_only=False)
        m = UNet(st["config"])
        m.load_state_dict(st["ema"])
    else:
        m = load_safetensors_model(args.weights)
    x = kodak_crops(args.kodak)
    print("| t | L_simple (Gaussian) | x0 PSNR (Gaussian) | L_simple (chain) | x0 PSNR (chain) |")
    print("|---|---|---|---|---|")
    for t in (10, 50, 100, 150, 300, 600, 900):
        lg, pg = measure(m, x, "cpu", t, chain=False)
        lc, pc = measure(m, x, "cpu", t, chain=True)
        print(f"| {t} | {lg:.4f} | {pg:.2f} dB | {lc:.4f} | {pc:.2f} dB |")


if __name__ == "__main__":
    main()
