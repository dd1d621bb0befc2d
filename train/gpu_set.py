"""A compact copy of the training set for a machine that gets the working tree only (a device
run carries at most 64 MiB, see train/README.md "On a GPU").

    python train/gpu_set.py ../shared/data/train train/gpu_data [--max-mb 32]

A file of at most --whole-kb is copied byte for byte (BSDS500's 481x321 JPEGs); a larger one
(Urban100's PNGs of about 1 MB) is replaced by its central crop of at most --crop pixels a
side as a PNG, which keeps its texture statistics. Files are taken from the subfolders in
turn until --max-mb. Writes SOURCES.txt,
what each file is. Kodak is never included.
"""
import argparse
import io
import os

from PIL import Image


def png_bytes(im):
    b = io.BytesIO()
    im.save(b, "PNG", optimize=True)
    return b.getvalue()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--max-mb", type=float, default=32.0)
    ap.add_argument("--crop", type=int, default=384)
    ap.add_argument("--whole-kb", type=int, default=200)
    args = ap.parse_args()
    budget = int(args.max_mb * 2**20)
    paths = []
    for dp, _, fs in os.walk(args.src):
        for f in sorted(fs):
            if f.lower().endswith((".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")):
                paths.append(os.path.join(dp, f))
    # Round-robin over the subfolders, so that a budget cut keeps some of each.
    paths.sort()
    seen, rank = {}, {}
    for p in paths:
        d = os.path.relpath(p, args.src).split(os.sep)[0]
        rank[p] = (seen.get(d, 0), d)
        seen[d] = seen.get(d, 0) + 1
    paths.sort(key=lambda p: rank[p])
    if any("kodak" in p.lower() for p in paths):
        raise SystemExit("refusing: a path names kodak (evaluation only)")
    os.makedirs(args.out, exist_ok=True)
    used, lines, whole, cropped = 0, [], 0, 0
    for i, p in enumerate(paths):
        ext = os.path.splitext(p)[1].lower()
        if os.path.getsize(p) <= args.whole_kb * 1024:
            with open(p, "rb") as f:
                data = f.read()
            what = "whole (original bytes)"
        else:
            im = Image.open(p).convert("RGB")
            w, h = im.size
            c = args.crop
            x0, y0 = max(0, (w - c) // 2), max(0, (h - c) // 2)
            im = im.crop((x0, y0, min(w, x0 + c), min(h, y0 + c)))
            data = png_bytes(im)
            ext = ".png"
            what = f"central crop {im.size[0]}x{im.size[1]}"
        if used + len(data) > budget:
            print(f"budget reached after {i} of {len(paths)} images")
            break
        name = f"{i:04d}{ext}"
        with open(os.path.join(args.out, name), "wb") as f:
            f.write(data)
        used += len(data)
        lines.append(f"{name} {os.path.relpath(p, args.src)} {what}")
        whole += what.startswith("whole")
        cropped += not what.startswith("whole")
    with open(os.path.join(args.out, "SOURCES.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"{len(lines)} images ({whole} whole, {cropped} central crops), {used / 2**20:.1f} MiB in {args.out}")


if __name__ == "__main__":
    main()
