"""Train the ddpmc epsilon-model (v-prediction) on random crops of the training images.

    python train/train.py --run train/runs/main [--data ../shared/data/train] [--threads 2]

Resumes exactly from <run>/resume.pt when it exists. A new run can start from exported weights
(--init-weights models/default.safetensors: model and EMA, with a fresh optimiser; give it a
short --warmup). Writes <run>/loss.csv (every logged
step), <run>/eval.csv (x0 PSNR on fixed Kodak crops, the learning curve), <run>/ema.pt
(EMA weights for export) and the plots loss_curve.png / learning_curve.png.
Uses CUDA when PyTorch sees a GPU; the same script runs unchanged there.
"""

import argparse
import csv
import io
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import diffusion as D  # noqa: E402
from model import UNet  # noqa: E402
import evaluate  # noqa: E402


def load_images(root: str, cache: str):
    """All training images as uint8 HWC arrays, cached in one .npz for fast restarts."""
    if cache and os.path.exists(cache):
        z = np.load(cache)
        return [z[k] for k in sorted(z.files)]
    paths = []
    for dp, _, fs in os.walk(root):
        for f in sorted(fs):
            if f.lower().endswith((".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")):
                paths.append(os.path.join(dp, f))
    paths.sort()
    if not paths:
        raise SystemExit(f"no training images under {root}")
    imgs = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    if cache:
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        np.savez(cache, **{f"{i:05d}": a for i, a in enumerate(imgs)})
    return imgs


def lr_at(step, args):
    """Linear warm-up, then constant, then (optionally) a cosine decay to --lr-min.

    A function of the step alone, so a resumed run follows the same schedule."""
    lr = args.lr * min(1.0, (step + 1) / args.warmup)
    if args.decay_start is not None and step >= args.decay_start:
        end = args.decay_end if args.decay_end is not None else args.steps
        frac = min(1.0, (step - args.decay_start) / max(1, end - args.decay_start))
        lr = args.lr_min + 0.5 * (args.lr - args.lr_min) * (1 + math.cos(math.pi * frac))
    return lr


def sample_batch(imgs, n, size, gen):
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    idx = torch.randint(0, len(imgs), (n,), generator=gen).tolist()
    for j, i in enumerate(idx):
        a = imgs[i]
        h, w = a.shape[:2]
        y = int(torch.randint(0, h - size + 1, (1,), generator=gen))
        x = int(torch.randint(0, w - size + 1, (1,), generator=gen))
        c = a[y:y + size, x:x + size]
        flips = torch.randint(0, 2, (2,), generator=gen).tolist()
        if flips[0]:
            c = c[:, ::-1]
        if flips[1]:
            c = c.transpose(1, 0, 2)  # transpose = a random 90-degree family member
        out[j] = c
    x = torch.from_numpy(out).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return x


def join_parts(path):
    """Older commits hold run states split into files under 16 MB (resume.pt.part00, part01, ...);
    join them when resume.pt is absent. New run states are not committed (train/README.md)."""
    d, base = os.path.split(path)
    parts = sorted(f for f in os.listdir(d or ".") if f.startswith(base + ".part")) if os.path.isdir(d or ".") else []
    if os.path.exists(path) or not parts:
        return
    with open(path + ".tmp", "wb") as out:
        for f in parts:
            with open(os.path.join(d, f), "rb") as inp:
                out.write(inp.read())
    os.replace(path + ".tmp", path)
    print(f"joined {len(parts)} parts into {path}", flush=True)


def atomic_save(obj, path):
    tmp = path + ".tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def trim_log(path, step):
    """Drop log rows past `step`: after a resume from an older checkpoint, the logs match the
    state again instead of holding the lost steps twice."""
    if not os.path.exists(path):
        return
    lines = open(path).read().splitlines(keepends=True)
    keep = lines[:1] + [l for l in lines[1:] if int(l.split(",", 1)[0]) <= step]
    if len(keep) != len(lines):
        with open(path, "w") as f:
            f.writelines(keep)


def last_per_step(rows):
    """Rows of a log keyed by step, the last one winning (logs written before trim_log existed
    can repeat steps)."""
    by = {int(r["step"]): r for r in rows}
    return [by[k] for k in sorted(by)]


def plot_curves(run):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    lp = os.path.join(run, "loss.csv")
    loss_rows = last_per_step(csv.DictReader(open(lp))) if os.path.exists(lp) else []
    if loss_rows:
        s = np.array([int(r["step"]) for r in loss_rows])
        l = np.array([float(r["loss"]) for r in loss_rows])
        k = max(1, len(l) // 50)
        sm = np.convolve(l, np.ones(k) / k, mode="valid")
        plt.figure(figsize=(6, 4))
        plt.semilogy(s, l, alpha=0.3, label="loss")
        plt.semilogy(s[k - 1:], sm, label=f"mean of {k}")
        plt.xlabel("step")
        plt.ylabel("v-MSE")
        plt.legend()
        plt.grid(alpha=0.3)
        plt.tight_layout()
        plt.savefig(os.path.join(run, "loss_curve.png"), dpi=100)
        plt.close()
    ep = os.path.join(run, "eval.csv")
    if os.path.exists(ep):
        rows = last_per_step(csv.DictReader(open(ep)))
        if rows:
            # Left: every evaluated t against steps. Right: t = 150 alone against log(steps),
            # where a still-improving run shows as a rising line, with the lr schedule.
            fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
            s = [int(r["step"]) for r in rows]
            for key in [k for k in rows[0] if k.startswith("psnr_t")]:
                a1.plot(s, [float(r[key]) for r in rows], marker=".", label=key[5:])
            a1.set_xlabel("step")
            a1.set_ylabel("x0 PSNR on Kodak crops (dB)")
            a1.legend()
            a1.grid(alpha=0.3)
            if "psnr_t150" in rows[0]:
                pos = [r for r in rows if int(r["step"]) > 0]  # a run from exported weights logs step 0
                a2.semilogx([int(r["step"]) for r in pos], [float(r["psnr_t150"]) for r in pos], marker=".",
                            color="C2", label="t150")
                a2.set_xlabel("step (log scale)")
                a2.set_ylabel("x0 PSNR at t = 150 (dB)")
                a2.grid(alpha=0.3, which="both")
                if loss_rows:
                    a3 = a2.twinx()
                    a3.semilogx([int(r["step"]) for r in loss_rows], [float(r["lr"]) for r in loss_rows],
                                color="gray", lw=1)
                    a3.set_ylabel("learning rate (gray)")
            fig.tight_layout()
            fig.savefig(os.path.join(run, "learning_curve.png"), dpi=100)
            plt.close(fig)

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="train/runs/main")
    ap.add_argument("--data", default="../shared/data/train")
    ap.add_argument("--kodak", default="../shared/data/kodak", help="evaluation only, never trained on")
    ap.add_argument("--cache", default="train/data_cache/train.npz")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--decay-start", type=int, default=None,
                    help="step where a cosine decay of the lr begins (default: no decay)")
    ap.add_argument("--decay-end", type=int, default=None, help="step where the decay reaches --lr-min")
    ap.add_argument("--lr-min", type=float, default=1e-5)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--chain-frac", type=float, default=0.5, help="share of each batch on the coding chain's marginals")
    ap.add_argument("--ladder-frac", type=float, default=0.0,
                    help="share of each batch at the default ladder's network points, weighted by their steps' bits")
    ap.add_argument("--steps", type=int, default=10**9, help="stop after this many steps")
    ap.add_argument("--minutes", type=float, default=1e9, help="stop after this many minutes")
    ap.add_argument("--ckpt-minutes", type=float, default=5.0)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--config", default="", help="JSON dict overriding the model config")
    ap.add_argument("--crop-high", type=int, default=0, metavar="SIZE",
                    help="also train on crops of SIZE (e.g. 128) at the high noise levels t >= --high-t, "
                         "where the receptive field matters: --high-share of each batch's pixels move from "
                         "--crop crops to these (0: off)")
    ap.add_argument("--high-t", type=int, default=300)
    ap.add_argument("--high-share", type=float, default=0.25)
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile the training forward pass (1.2x the steps/s on this CPU for w64, "
                         "after about 100 s of compiling; train/speed_probe.py)")
    ap.add_argument("--bf16", action="store_true",
                    help="on a CUDA device: forward and loss under bf16 autocast (weights, optimiser and EMA "
                         "stay float32); ignored on the CPU")
    ap.add_argument("--auto-decay", type=float, default=None, metavar="FRAC",
                    help="with --minutes: after the warm-up, measure the speed and set --decay-start / "
                         "--decay-end so that the cosine decay covers the last FRAC of the run's projected "
                         "steps and ends with it (for a run of fixed time, e.g. train/gpu.sh)")
    ap.add_argument("--init-weights", default=None,
                    help="exported safetensors (e.g. models/default.safetensors) to start a new run from: "
                         "loaded into the model and the EMA, with a fresh optimiser; the step count starts "
                         "at 0 (so --warmup and --decay-* count from here). Ignored when resume.pt exists")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    os.makedirs(args.run, exist_ok=True)
    resume_path = os.path.join(args.run, "resume.pt")
    join_parts(resume_path)

    import json
    config = json.loads(args.config) if args.config else None
    init_sd, init_step, init_from = None, 0, None
    if args.init_weights:
        from safetensors import safe_open
        from safetensors.torch import load_file
        with safe_open(args.init_weights, "pt") as f:
            meta = f.metadata() or {}
        file_config = json.loads(meta["config"])
        if config is not None and UNet(config).config != UNet(file_config).config:
            raise SystemExit(f"--config {config} != the config of {args.init_weights}: {file_config}")
        config = file_config
        if not os.path.exists(resume_path):
            init_sd = load_file(args.init_weights)
            init_step = int(meta.get("step", 0))
            init_from = args.init_weights
    model = UNet(config).to(dev)
    if init_sd is not None:
        model.load_state_dict(init_sd)  # exported names are the state-dict keys (export.py)
        print(f"initialised model and EMA from {args.init_weights} (trained {init_step} steps)", flush=True)
    ema = UNet(model.config).to(dev)
    ema.load_state_dict(model.state_dict())
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.99))
    gen = torch.Generator().manual_seed(args.seed)
    step = 0
    elapsed = 0.0
    if os.path.exists(resume_path):
        st = torch.load(resume_path, map_location=dev, weights_only=False)
        model.load_state_dict(st["model"])
        ema.load_state_dict(st["ema"])
        opt.load_state_dict(st["opt"])
        gen.set_state(st["gen"])
        step = st["step"]
        elapsed = st.get("elapsed", 0.0)
        init_step = st.get("init_step", 0)
        init_from = st.get("init_from")
        if st["config"] != model.config:
            raise SystemExit(f"resume config {st['config']} != {model.config}")
        print(f"resumed at step {step}", flush=True)
        for log in ("loss.csv", "eval.csv"):
            trim_log(os.path.join(args.run, log), step)

    imgs = load_images(args.data, args.cache)
    print(f"{len(imgs)} training images; model {sum(p.numel() for p in model.parameters())} parameters; device {dev}", flush=True)
    eval_set = evaluate.kodak_crops(args.kodak) if os.path.isdir(args.kodak) else None

    def save():
        atomic_save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                     "gen": gen.get_state(), "step": step, "elapsed": elapsed, "config": model.config,
                     "init_step": init_step, "init_from": init_from}, resume_path)
        atomic_save({"ema": ema.state_dict(), "config": model.config, "step": step, "init_step": init_step},
                    os.path.join(args.run, "ema.pt"))

    loss_f = open(os.path.join(args.run, "loss.csv"), "a")
    if loss_f.tell() == 0:
        loss_f.write("step,loss,loss_gauss,loss_chain,lr,elapsed_s\n")
    t0 = time.time()
    last_ckpt = time.time()
    start_elapsed = elapsed
    start_step = step
    acc = []

    def evaluate_ema():
        row = evaluate.psnr_row(ema, eval_set, dev, ts=(10, 50, 150, 600))
        ep = os.path.join(args.run, "eval.csv")
        new = not os.path.exists(ep)
        with open(ep, "a") as f:
            if new:
                f.write("step,elapsed_s," + ",".join(row.keys()) + "\n")
            f.write(f"{step},{elapsed:.1f}," + ",".join(f"{v:.4f}" for v in row.values()) + "\n")
        print("eval", step, row, flush=True)
        plot_curves(args.run)

    if eval_set is not None and init_sd is not None and step == 0:
        evaluate_ema()  # the starting point of a run from exported weights
    # The compiled module shares the model's parameters; state dicts are saved from `model`.
    fwd = torch.compile(model) if args.compile else model
    use_bf16 = args.bf16 and dev.type == "cuda"
    if args.bf16 and not use_bf16:
        print("--bf16 ignored: no CUDA device", flush=True)
    if use_bf16:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    auto_at = start_step + max(args.warmup, 50) if args.auto_decay else None
    while step < args.steps and (elapsed - start_elapsed) < args.minutes * 60:
        if auto_at is not None and step == auto_at:
            rate = (step - start_step) / max(1e-9, elapsed - start_elapsed)
            total = step + int(rate * (args.minutes * 60 - (elapsed - start_elapsed)) * 0.97)
            args.decay_end = min(total, args.steps)
            args.decay_start = int(args.decay_end - args.auto_decay * (args.decay_end - start_step))
            print(f"auto decay: {rate:.2f} steps/s, cosine from step {args.decay_start} to {args.decay_end}",
                  flush=True)
            auto_at = None
        lr = lr_at(step, args)
        for g in opt.param_groups:
            g["lr"] = lr
        nb = args.batch
        if args.crop_high:
            moved = int(round(args.batch * args.high_share))
            nb = args.batch - moved
            nh = max(1, int(round(moved * (args.crop / args.crop_high) ** 2)))
            xh = sample_batch(imgs, nh, args.crop_high, gen)
            lo, hi = D.LOGSNR_T, float(D.logsnr_of_abar(D.ABAR[args.high_t]))
            lam_h = lo + (hi - lo) * torch.rand(nh, generator=gen, dtype=torch.float64)
            zh = D.gaussian_marginal(xh, lam_h, gen)
            vh = D.v_target(xh, zh, lam_h).to(dev)
            zh, lam_hd = zh.to(dev), lam_h.float().to(dev)
        x = sample_batch(imgs, nb, args.crop, gen)
        lam = D.sample_logsnr(nb, gen, args.ladder_frac)
        nc = int(round(nb * args.chain_frac))
        zg = D.gaussian_marginal(x[nc:], lam[nc:], gen)
        zc = D.chain_marginal(x[:nc], lam[:nc], gen) if nc > 0 else zg[:0]
        z = torch.cat([zc, zg], 0)
        v = D.v_target(x, z, lam)
        z, v, lam_d = z.to(dev), v.to(dev), lam.float().to(dev)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
            pred = fwd(z, lam_d)
        per = ((pred.float() - v) ** 2).mean(dim=(1, 2, 3))
        loss = per.mean()
        if args.crop_high:
            # Every pixel weighs the same, whatever the size of its crop.
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
                pred_h = fwd(zh, lam_hd)
            per_h = ((pred_h.float() - vh) ** 2).mean(dim=(1, 2, 3))
            a_s, a_h = args.crop ** 2, args.crop_high ** 2
            loss = (per.sum() * a_s + per_h.sum() * a_h) / (nb * a_s + nh * a_h)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        # The EMA warms up from a random start; started from trained weights it is warm already.
        d = args.ema if init_from else min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.mul_(d).add_(pm.detach(), alpha=1 - d)
        now = time.time()
        elapsed += now - t0
        t0 = now
        acc.append((loss.item(), per[:nc].mean().item() if nc else float("nan"),
                    per[nc:].mean().item() if nc < nb else float("nan")))
        if step % args.log_every == 0:
            a = np.array(acc)
            loss_f.write(f"{step},{a[:,0].mean():.6f},{np.nanmean(a[:,2]):.6f},{np.nanmean(a[:,1]):.6f},{lr:.3g},{elapsed:.1f}\n")
            loss_f.flush()
            rate = (step - start_step) / max(1e-9, elapsed - start_elapsed)
            print(f"step {step} loss {a[:,0].mean():.5f} ({elapsed/60:.1f} min, {rate:.2f} steps/s)", flush=True)
            acc = []
        if eval_set is not None and step % args.eval_every == 0:
            evaluate_ema()
        if time.time() - last_ckpt > args.ckpt_minutes * 60:
            save()
            last_ckpt = time.time()
    save()
    plot_curves(args.run)


if __name__ == "__main__":
    main()
