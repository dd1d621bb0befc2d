#!/usr/bin/env python3
"""BD-rate (PSNR) of one ddpmc result set against another: the rows of codec "ddpmc" in two
`results.csv` files written by `ddpmc bench` (for instance the same images coded with two
models). Each setting's bpp and PSNR are averaged over the images both files hold, log(bpp) is
fitted as a cubic in PSNR, and the fits are compared over the PSNR range both cover.

    python3 scripts/bd-rate.py BASE.csv NEW.csv

Negative: NEW needs fewer bits for the same PSNR.
"""
import csv
import sys

import numpy as np


def rows(path):
    out = {}
    for r in csv.DictReader(open(path)):
        if r["codec"] == "ddpmc":
            out[(r["image"], r["setting"])] = (float(r["bpp"]), float(r["psnr"]))
    return out


def curve(rows, images):
    by = {}
    for (img, setting), v in rows.items():
        if img in images:
            by.setdefault(setting, []).append(v)
    pts = sorted((np.mean([b for b, _ in v]), np.mean([p for _, p in v]))
                 for v in by.values() if len(v) == len(images))
    return np.array([b for b, _ in pts]), np.array([p for _, p in pts])


def main():
    base, new = rows(sys.argv[1]), rows(sys.argv[2])
    images = {i for i, _ in base} & {i for i, _ in new}
    (r1, d1), (r2, d2) = curve(base, images), curve(new, images)
    p1, p2 = np.polyint(np.polyfit(d1, np.log(r1), 3)), np.polyint(np.polyfit(d2, np.log(r2), 3))
    lo, hi = max(d1.min(), d2.min()), min(d1.max(), d2.max())
    diff = (np.polyval(p2, hi) - np.polyval(p2, lo) - np.polyval(p1, hi) + np.polyval(p1, lo)) / (hi - lo)
    print(f"{len(images)} images; BD-rate of {sys.argv[2]} against {sys.argv[1]}: "
          f"{(np.exp(diff) - 1) * 100:+.1f} % over {lo:.2f}-{hi:.2f} dB")
    for name, (r, d) in ((sys.argv[1], (r1, d1)), (sys.argv[2], (r2, d2))):
        print(f"  {name}: " + ", ".join(f"{b:.3f}/{p:.2f}" for b, p in zip(r, d)))


if __name__ == "__main__":
    main()
