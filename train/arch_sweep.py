"""Summarise the width/depth sweep of train/arch_sweep.sh into results/arch-sweep/README.md.

For each candidate: parameters, FLOPs per pixel, held-out x0 PSNR at t = 150 (Kodak crops,
train/evaluate.py), the mean bpp and PSNR of the first 8 Kodak images after each step of a
--quality 5 file, and the BD-rate against the baseline (negative = fewer bits for the same
PSNR), computed over the steps' common PSNR range with a cubic fit of log-rate against PSNR.

    python train/arch_sweep.py [--baseline b48]
"""
import argparse
import csv
import json
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from model import UNet, flops_per_pixel  # noqa: E402

CONFIGS = {
    "s32": {"channels": [32, 48, 64, 96], "blocks": 1},
    "b48": {"channels": [48, 64, 96, 128], "blocks": 1},
    "w64": {"channels": [64, 96, 128, 160], "blocks": 1},
    "d2": {"channels": [48, 64, 96, 128], "blocks": 2},
    "l5": {"channels": [48, 64, 96, 128, 160], "blocks": 1},
}


def curve(path):
    """Mean (bpp, PSNR) per decoded step over the images of a bench results.csv."""
    acc = {}
    with open(path) as f:
        for r in csv.DictReader(f):
            if r["codec"] != "ddpmc":
                continue
            step = int(r["setting"].split("/")[1])
            acc.setdefault(step, []).append((float(r["bpp"]), float(r["psnr"])))
    return [tuple(np.mean(acc[s], axis=0)) for s in sorted(acc)]


def bd_rate(ref, test):
    """Average bitrate difference (%) of test against ref at equal PSNR (Bjontegaard)."""
    r1, p1 = np.log([c[0] for c in ref]), np.array([c[1] for c in ref])
    r2, p2 = np.log([c[0] for c in test]), np.array([c[1] for c in test])
    lo, hi = max(p1.min(), p2.min()), min(p1.max(), p2.max())
    f1, f2 = np.polyfit(p1, r1, 3), np.polyfit(p2, r2, 3)
    i1 = np.polyval(np.polyint(f1), hi) - np.polyval(np.polyint(f1), lo)
    i2 = np.polyval(np.polyint(f2), hi) - np.polyval(np.polyint(f2), lo)
    return (np.exp((i2 - i1) / (hi - lo)) - 1) * 100


def x0_psnr_150(path):
    with open(path) as f:
        for line in f:
            m = re.match(r"\| 150 \| [\d.]+ \| ([\d.]+) dB", line)
            if m:
                return float(m.group(1))
    return float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", default="b48")
    ap.add_argument("--out", default="results/arch-sweep/README.md")
    ap.add_argument("--names", action="store_true", help="print the candidates' names (for arch_sweep.sh)")
    ap.add_argument("--config", metavar="NAME", help="print NAME's config as JSON (for arch_sweep.sh)")
    args = ap.parse_args()
    if args.names:
        print(" ".join(CONFIGS))
        return
    if args.config:
        print(json.dumps(CONFIGS[args.config]))
        return
    rows = {}
    for name, cfg in CONFIGS.items():
        res = f"results/arch-sweep/{name}/results.csv"
        ev = f"train/runs/arch-{name}/evaluate.txt"
        if not (os.path.exists(res) and os.path.exists(ev)):
            continue
        m = UNet(cfg)
        loss = list(csv.DictReader(open(f"train/runs/arch-{name}/loss.csv")))
        rows[name] = dict(cfg=cfg, params=sum(p.numel() for p in m.parameters()), flops=flops_per_pixel(m),
                          psnr150=x0_psnr_150(ev), curve=curve(res),
                          train_s=float(loss[-1]["elapsed_s"]), steps=int(loss[-1]["step"]))
    base = rows[args.baseline]
    out = ["# Width and depth sweep", "",
           "Each candidate trained from scratch for the same budget (batch 16, lr 5e-4, seed 2, half",
           "chain marginals), then coded the first 8 Kodak images as `--quality 5` files with the real",
           "codec (`train/arch_sweep.sh`, then `python train/arch_sweep.py`). BD-rate is against",
           f"`{args.baseline}` over the five steps (negative: fewer bits at the same PSNR); the first step",
           "codes a thumbnail without the network, so its bits are the same for all and only its",
           "reconstruction differs. Training s/step",
           "is one CPU thread on a shared machine, so only a rough guide.", "",
           "| model | channels | blocks | parameters | FLOPs/px | train s/step | x0 PSNR t=150 | bpp after steps 1-5 | PSNR after step 5 | bpp after step 5 vs base | BD-rate |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        bd = 0.0 if name == args.baseline else bd_rate(base["curve"], r["curve"])
        bpps = " / ".join(f"{c[0]:.3f}" for c in r["curve"])
        out.append(f"| {name} | {r['cfg']['channels']} | {r['cfg']['blocks']} | {r['params']:,} | {r['flops']:,} | "
                   f"{r['train_s'] / r['steps']:.2f} | {r['psnr150']:.2f} dB | {bpps} | {r['curve'][-1][1]:.2f} dB | "
                   f"{(r['curve'][-1][0] / base['curve'][-1][0] - 1) * 100:+.2f} % | {bd:+.2f} % |")
    out += ["", "PSNR after each step (dB):", "", "| model | " + " | ".join(f"step {i + 1}" for i in range(len(base["curve"]))) + " |",
            "|---|" + "---|" * len(base["curve"])]
    for name, r in rows.items():
        out.append(f"| {name} | " + " | ".join(f"{c[1]:.2f}" for c in r["curve"]) + " |")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    open(args.out, "w").write("\n".join(out) + "\n")
    print("\n".join(out))
    json.dump(rows, open(os.path.join(os.path.dirname(args.out), "sweep.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
