#!/usr/bin/env bash
# Builds the held-out evaluation set: 12 natural colour photographs that are
# neither Kodak (the reported evaluation set) nor training data (BSDS500,
# Urban100), for rate-distortion measurements on images nothing was tuned on.
#
# Usage: scripts/heldout-set.sh OUT_DIR
#
# Everything comes from pinned package versions on the package registries:
#   PyPI:   scikit-image 0.25.2, matplotlib 3.11.2, scipy 1.9.3 (wheels, not installed)
#   Debian: lomiri-wallpapers-16.04 20.04.0-2, mate-backgrounds 1.26.0-1 (Debian 12;
#           fetched with `apt-get download`, unpacked with dpkg-deb, not installed)
# Each source file is checked against its SHA-256 before use. The conversion
# (8-bit RGB, Lanczos downscale to at most 1024 px per side, centred crop to
# multiples of 16, PNG) runs with the repository's .venv python (numpy, Pillow);
# set PYTHON to use another one. The decoded pixels of every output are checked
# against the SHA-256 values below; the script exits non-zero on any mismatch.
# OUT_DIR receives the PNGs, SOURCES.md (origin, licence, operations) and
# SHA256SUMS (of the PNG files).
#
# Needs: network access to PyPI and the Debian archive (apt lists current:
# `apt-get update`), apt-get, dpkg-deb, sha256sum, and about 150 MB in $TMPDIR.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 OUT_DIR" >&2
    exit 2
fi
out=$1
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py=${PYTHON:-$repo/.venv/bin/python}
if [ ! -x "$py" ]; then
    echo "error: $py not found; set PYTHON to a python with numpy and Pillow" >&2
    exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/heldout.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/pip" "$work/deb" "$work/src"

echo "== downloading wheels (PyPI)"
"$py" -m pip download --quiet --no-deps --only-binary=:all: \
    --platform manylinux2014_x86_64 --python-version 3.11 --implementation cp \
    -d "$work/pip" \
    scikit-image==0.25.2 matplotlib==3.11.2 scipy==1.9.3

echo "== downloading Debian packages"
# apt-get download writes into the current directory.
(cd "$work/deb" && apt-get download -q \
    lomiri-wallpapers-16.04=20.04.0-2 mate-backgrounds=1.26.0-1)
for pkg in lomiri-wallpapers-16.04 mate-backgrounds; do
    deb=$(ls "$work"/deb/"${pkg}"_*.deb)
    dpkg-deb -x "$deb" "$work/deb/x"
done

echo "== extracting source files"
"$py" - "$work/pip" "$work/src" <<'EOF'
import glob, os, sys, zipfile
pip_dir, src = sys.argv[1:]
members = {
    "scikit_image-0.25.2-": ["skimage/data/astronaut.png", "skimage/data/coffee.png",
                             "skimage/data/chelsea.png", "skimage/data/rocket.jpg"],
    "matplotlib-3.11.2-": ["matplotlib/mpl-data/sample_data/grace_hopper.jpg"],
    "scipy-1.9.3-": ["scipy/misc/face.dat"],
}
for prefix, names in members.items():
    (whl,) = glob.glob(os.path.join(pip_dir, prefix + "*.whl"))
    with zipfile.ZipFile(whl) as z:
        for n in names:
            z.extract(n, src)
EOF
bg=usr/share/backgrounds
for f in life_by_Aitzol_Berasategi.jpg picosdeeuropa_by_Aitzol_Berasategi.jpg \
         friends_by_Aitzol_Berasategi.jpg Dragonfly_by_Bolly.jpg \
         Picture_1A_by_freespace.jpg; do
    mkdir -p "$work/src/$bg"
    cp "$work/deb/x/$bg/$f" "$work/src/$bg/$f"
done
mkdir -p "$work/src/$bg/mate/nature"
cp "$work/deb/x/$bg/mate/nature/Dune.jpg" "$work/src/$bg/mate/nature/Dune.jpg"

(cd "$work/src" && sha256sum --quiet -c - <<'EOF'
88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5  skimage/data/astronaut.png
cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7  skimage/data/coffee.png
596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb  skimage/data/chelsea.png
c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c  skimage/data/rocket.jpg
a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130  matplotlib/mpl-data/sample_data/grace_hopper.jpg
9d8b0b4d081313e2b485748c770472e5a95ed1738146883d84c7030493e82886  scipy/misc/face.dat
4c119350ead80201fe256850c3d316309ddfb4bdf10b235ce982dcde0c667c05  usr/share/backgrounds/life_by_Aitzol_Berasategi.jpg
414d0072b2f6f2c555deafeaef6e45c4fed6fa9ad26eba6560ca8803959cf97a  usr/share/backgrounds/picosdeeuropa_by_Aitzol_Berasategi.jpg
cc40e313c74e421edffe3403def413c16878ce14661cce7ec5915baeab35538d  usr/share/backgrounds/friends_by_Aitzol_Berasategi.jpg
af5af17841009732def24b09bb1e669a1b09d2b4bdeee7812c371101c30d2bb3  usr/share/backgrounds/Dragonfly_by_Bolly.jpg
89e86af38d04daaef975665dc2127e9fa76f0fd68f4eea105a2d0ae3390b010b  usr/share/backgrounds/Picture_1A_by_freespace.jpg
8a67c2cb0be8c46b70c237311a4fa4d2b4ac7d39568135384787801fa5cc9a91  usr/share/backgrounds/mate/nature/Dune.jpg
EOF
) || { echo "error: a source file differs from the pinned one" >&2; exit 1; }

echo "== converting"
mkdir -p "$out"
"$py" - "$work/src" "$out" <<'EOF'
import bz2, hashlib, io, os, sys
import numpy as np
import PIL
from PIL import Image, ImageCms

src, out = sys.argv[1:]
MAX_SIDE = 1024

SK = ("scikit-image 0.25.2 (PyPI wheel scikit_image-0.25.2-cp311-cp311-"
      "manylinux_2_17_x86_64.manylinux2014_x86_64.whl)")
MPL = ("matplotlib 3.11.2 (PyPI wheel matplotlib-3.11.2-cp311-cp311-"
       "manylinux2014_x86_64.manylinux_2_17_x86_64.whl)")
SCIPY = ("scipy 1.9.3 (PyPI wheel scipy-1.9.3-cp311-cp311-"
         "manylinux_2_17_x86_64.manylinux2014_x86_64.whl)")
LOM = "lomiri-wallpapers-16.04 20.04.0-2 (Debian 12 package, all)"
MATE = "mate-backgrounds 1.26.0-1 (Debian 12 package, all)"

# name, source package, path inside it, licence and credit as the package
# states them, SHA-256 of the output's RGB pixel bytes (row-major, 8 bits).
IMAGES = [
    ("astronaut", SK, "skimage/data/astronaut.png",
     "public domain: \"No known copyright restrictions, released into the public "
     "domain\" (NASA photograph of Eileen Collins; skimage.data.astronaut docstring)",
     "a8c429c18afa7b0fd5673e598d73a21225d94c864a71bbb3885126fdecb41071"),
    ("coffee", SK, "skimage/data/coffee.png",
     "CC0: \"No copyright restrictions. CC0 by the photographer (Rachel Michetti)\" "
     "(skimage.data.coffee docstring)",
     "5280ccbd50622084d8920a82779225b8ce6c061df5b20b41a555627f1bb6be88"),
    ("chelsea", SK, "skimage/data/chelsea.png",
     "CC0: \"No copyright restrictions. CC0 by the photographer (Stefan van der "
     "Walt)\" (skimage.data.chelsea docstring)",
     "e00edcd5186074cf544acfc1944493862cf9bafce3464a135944c8c79d7b1088"),
    ("rocket", SK, "skimage/data/rocket.jpg",
     "public domain: launch photo of DSCOVR on Falcon 9 by SpaceX, \"released in "
     "the public domain\" (skimage.data.rocket docstring)",
     "75081972a2018e04c09d0d1f731805d032312edad33f9d49142eb291b0917d90"),
    ("grace_hopper", MPL, "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
     "not stated for the file (the package's own licence is the matplotlib "
     "licence); the photograph is the official U.S. Navy portrait of Grace "
     "Hopper, a U.S. government work",
     "8ebf213ab18b6e41f978199a4561e90f9bafe67ffd78441e14d05732eec2deae"),
    ("raccoon", SCIPY, "scipy/misc/face.dat",
     "public domain: scipy.misc.face docstring gives the source as "
     "\"raccoon-procyon-lotor.jpg at http://www.public-domain-image.com\"",
     "9f16f4e284d28f4b8e0356171bc6543d2a0d24a0bd55dabebbd30e102aa8946c"),
    ("stream", LOM, "usr/share/backgrounds/life_by_Aitzol_Berasategi.jpg",
     "CC-BY-4.0, Copyright Aitzol Berasategi, 2018 (debian/copyright)",
     "bb02b50718e1a606a83e0eac1cfac10f1a5c12e6fb071c7ff25acc8acac57735"),
    ("picos", LOM, "usr/share/backgrounds/picosdeeuropa_by_Aitzol_Berasategi.jpg",
     "CC-BY-4.0, Copyright Aitzol Berasategi, 2018 (debian/copyright)",
     "7b48ffdc42211ae0b50167c1749ca3a8e2751aad00bb53a99c37e1fc237b1e61"),
    ("dogs", LOM, "usr/share/backgrounds/friends_by_Aitzol_Berasategi.jpg",
     "CC-BY-4.0, Copyright Aitzol Berasategi, 2018 (debian/copyright)",
     "a4553c43749deee100d4735d074747e013d65092185ff15ed4e39ad6aac06460"),
    ("dragonfly", LOM, "usr/share/backgrounds/Dragonfly_by_Bolly.jpg",
     "CC-BY-SA-4.0, Copyright \"Bolly\", 2018 (debian/copyright)",
     "e8579a8c92338e8a4dfb213f1ae5c45c147aacbc4cd9e0b34d27c8ef61ec6d77"),
    ("brushes", LOM, "usr/share/backgrounds/Picture_1A_by_freespace.jpg",
     "CC-BY-4.0, Copyright Trevor \"Freespace\", 2018 (debian/copyright)",
     "30fac56b3e2cf58b1694f7929970e0636d946260a7df7ec2f1605455fd248e91"),
    ("dune", MATE, "usr/share/backgrounds/mate/nature/Dune.jpg",
     "GPL-2+, Copyright 2007 Marco Cogoni, 2008 Hylke Bons (debian/copyright)",
     "c6d2ec7f01e537511cbae395fa189c41d67a8d8f31aab5a393409e391e9e0076"),
]


def load(path):
    if path.endswith("face.dat"):
        # As scipy.misc.face() reads it: bz2-compressed raw 768x1024x3 uint8.
        with open(path, "rb") as f:
            a = np.frombuffer(bz2.decompress(f.read()), dtype=np.uint8)
        return Image.fromarray(a.reshape(768, 1024, 3), "RGB"), "raw RGB (bz2)"
    im = Image.open(path)
    fmt = im.format
    im.load()
    return im, fmt


rows, bad = [], []
for name, pkg, rel, licence, want in IMAGES:
    im, fmt = load(os.path.join(src, rel))
    w0, h0 = im.size
    ops = []
    if im.mode != "RGB":
        ops.append(f"{im.mode} to RGB")
        im = im.convert("RGB")
    icc = im.info.get("icc_profile")
    if icc:
        desc = ImageCms.getProfileDescription(
            ImageCms.ImageCmsProfile(io.BytesIO(icc))).strip()
        ops.append(f"embedded ICC profile ({desc}) dropped, pixel values kept "
                   "as stored (no colour conversion)")
    if max(w0, h0) > MAX_SIDE:
        s = MAX_SIDE / max(w0, h0)
        size = (round(w0 * s), round(h0 * s))
        im = im.resize(size, Image.Resampling.LANCZOS)
        ops.append(f"Lanczos downscale {w0}x{h0} to {size[0]}x{size[1]} "
                   f"(Pillow Image.resize, LANCZOS)")
    w, h = im.size
    cw, ch = w - w % 16, h - h % 16
    if (cw, ch) != (w, h):
        x0, y0 = (w - cw) // 2, (h - ch) // 2
        im = im.crop((x0, y0, x0 + cw, y0 + ch))
        ops.append(f"centred crop {w}x{h} to {cw}x{ch} (offset x={x0}, y={y0})")
    if not ops:
        ops.append("none (already RGB, sides multiples of 16)")
    ops.append("saved as 8-bit RGB PNG without metadata")
    # A fresh image carries no ICC profile, EXIF or text chunks into the PNG.
    im = Image.frombytes("RGB", im.size, im.tobytes())
    px = hashlib.sha256(im.tobytes()).hexdigest()
    if px != want:
        bad.append(f"{name}: pixels {px}, expected {want}")
    fn = f"{name}.png"
    im.save(os.path.join(out, fn), format="PNG", compress_level=9)
    rows.append((fn, im.size, pkg, rel, fmt, (w0, h0), licence, ops, px))
    print(f"{fn}: {im.size[0]}x{im.size[1]}")

with open(os.path.join(out, "SOURCES.md"), "w") as f:
    f.write("# Held-out evaluation set\n\n")
    f.write(f"{len(rows)} natural colour photographs, none of them Kodak, BSDS500 or "
            "Urban100. Written by scripts/heldout-set.sh from pinned package "
            "versions; Pillow {}, numpy {}.\n\n".format(PIL.__version__, np.__version__))
    f.write("All sources are 8-bit files decoded as stored (JPEG sources by Pillow's "
            "libjpeg-turbo); most were JPEG-compressed at some point, so some carry "
            "mild JPEG texture. Wallpaper sources are large camera JPEGs downscaled "
            "about 2-4x here, which removes most of that but makes them sharper per "
            "pixel than the originals. The CC-BY and CC-BY-SA images need credit "
            "(given below) when shown; CC-BY-SA and GPL-2+ derivatives (these PNGs "
            "included) carry the same licence. Keep the set outside the repository.\n\n")
    f.write("| file | size | source package | original path | licence as stated |\n")
    f.write("|---|---|---|---|---|\n")
    for fn, size, pkg, rel, fmt, s0, licence, ops, px in rows:
        f.write(f"| {fn} | {size[0]}x{size[1]} | {pkg} | {rel} | {licence} |\n")
    f.write("\n## Operations\n\n")
    for fn, size, pkg, rel, fmt, s0, licence, ops, px in rows:
        f.write(f"- {fn}: source {fmt} {s0[0]}x{s0[1]}; " + "; ".join(ops) + "\n")
    f.write("\n## SHA-256 of the decoded RGB pixels (row-major)\n\n")
    for fn, size, pkg, rel, fmt, s0, licence, ops, px in rows:
        f.write(f"    {px}  {fn}\n")
    f.write("\nSHA256SUMS beside this file lists the PNG files themselves (these also "
            "depend on the zlib and Pillow versions).\n")

if bad:
    print("error: output differs from the pinned set:", *bad, sep="\n  ", file=sys.stderr)
    sys.exit(1)
EOF

(cd "$out" && sha256sum ./*.png | sed 's# \./# #' > SHA256SUMS)
echo "== done: $out"
