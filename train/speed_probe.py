"""Training speed of one architecture on this machine under variants of the PyTorch setup,
measured in one run (the machine is noisy: compare the ratios), and the loss each gives on one
fixed batch against float32 (is it as accurate?).

    python train/speed_probe.py [--threads 2] [--steps 12] [--config JSON] [--compile]

Variants: float32 NCHW (the baseline), channels_last, bf16 autocast on the CPU, both, and with
--compile torch.compile of the baseline (its compile time reported apart). Each variant runs
3 warm-up steps, then --steps timed steps of batch 16 of 64x64 crops (random data of training
shape: the speed does not depend on the pixels), rounds interleaved.
"""
import argparse
import copy
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
import diffusion as D  # noqa: E402
from model import UNet  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--config", default='{"channels":[64,96,128,160],"blocks":1}')
    ap.add_argument("--compile", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    base = UNet(json.loads(args.config))
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(args.batch, 3, args.crop, args.crop, generator=gen) * 2 - 1
    lam = D.sample_logsnr(args.batch, gen, 0.5)
    z = D.gaussian_marginal(x, lam, gen)
    v = D.v_target(x, z, lam).float()
    z, lamf = z.float(), lam.float()

    def variant(cl, bf16, comp):
        m = copy.deepcopy(base)
        zz = z
        if cl:
            m = m.to(memory_format=torch.channels_last)
            zz = z.contiguous(memory_format=torch.channels_last)
        fwd = torch.compile(m) if comp else m
        opt = torch.optim.AdamW(m.parameters(), lr=1e-4)

        def step():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                pred = fwd(zz, lamf)
            loss = ((pred.float() - v) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss.item()

        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            l0 = ((fwd(zz, lamf).float() - v) ** 2).mean().item()
        return step, l0

    names = [("float32", False, False, False), ("channels_last", True, False, False),
             ("bf16 autocast", False, True, False), ("channels_last + bf16", True, True, False)]
    if args.compile:
        names.append(("torch.compile", False, False, True))
    runs = {}
    for name, cl, bf16, comp in names:
        t = time.time()
        step, l0 = variant(cl, bf16, comp)
        for _ in range(3):
            step()
        runs[name] = {"step": step, "loss0": l0, "setup_s": time.time() - t, "times": []}
        print(f"{name}: ready ({runs[name]['setup_s']:.1f} s with warm-up)", flush=True)
    for _ in range(args.rounds):
        for name in runs:
            t = time.time()
            for _ in range(args.steps):
                runs[name]["step"]()
            runs[name]["times"].append((time.time() - t) / args.steps)
    b = min(runs["float32"]["times"])
    l = runs["float32"]["loss0"]
    print(f"\n{args.threads} threads, batch {args.batch} of {args.crop}x{args.crop}, config {args.config}, "
          f"best of {args.rounds} rounds of {args.steps} steps")
    print("| variant | s/step | steps/s | speed vs float32 | loss on a fixed batch | vs float32 | setup + 3 warm-up steps |")
    print("|---|---|---|---|---|---|---|")
    for name, r in runs.items():
        s = min(r["times"])
        print(f"| {name} | {s:.3f} | {1 / s:.2f} | {b / s:.2f}x | {r['loss0']:.6f} | {(r['loss0'] - l) / l * 100:+.3f} % "
              f"| {r['setup_s']:.1f} s |")


if __name__ == "__main__":
    main()
