#!/usr/bin/env python3
"""Build the tuning set of results/ladder-sweep: 6 BSDS500 images and 2 centre crops
(768x512) of Urban100 from the training data, chosen with a fixed seed.

    python scripts/tune-set.py ../shared/data/train OUT_DIR
"""
import os
import random
import sys

from PIL import Image

train, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
random.seed(1)
root = os.path.join(train, "bsds500")
bsds = sorted(os.path.join(d, f) for d in os.listdir(root) for f in os.listdir(os.path.join(root, d)))
urban = sorted(os.listdir(os.path.join(train, "urban100")))
for f in random.sample(bsds, 6):
    im = Image.open(os.path.join(root, f)).convert("RGB")
    im.save(os.path.join(out, "b_" + os.path.splitext(os.path.basename(f))[0] + ".png"))
for f in random.sample(urban, 2):
    im = Image.open(os.path.join(train, "urban100", f)).convert("RGB")
    w, h = im.size
    cw, ch = min(w, 768), min(h, 512)
    x0, y0 = (w - cw) // 2, (h - ch) // 2
    im.crop((x0, y0, x0 + cw, y0 + ch)).save(os.path.join(out, "u_" + os.path.splitext(f)[0] + ".png"))
