"""Seeds for the fuzz targets (written under fuzz/corpus/TARGET/seed_*).

    python3 fuzz/seeds.py format-spec/vectors/*.ddpmc   # decode (as records), parse, inspect
    python3 fuzz/seeds.py --weights format-spec/vectors/tiny.safetensors   # weights
    python3 fuzz/seeds.py --images                      # encode: tiny PNG, PPM, PGM, BMP, GIF

The `decode` target reads each .ddpmc file rewritten as its records (major, minor, then per
chunk: kind code, u16 LE length, payload); `parse` and `inspect` read the files as they are.
The `encode` target reads one option byte followed by an image file.
"""
import os
import struct
import sys
import zlib

CODES = {b"HEAD": 0, b"STEP": 1, b"LOSS": 2, b"END ": 3, b"iccp": 4}
base = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    d = os.path.join(base, target)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "seed_" + name)
    open(path, "wb").write(data)
    print(path, len(data))


def records(data):
    major, minor = data[8], data[9]
    rec = bytearray([(major - 1) % 3, minor % 2])
    pos = 10
    while pos + 12 <= len(data):
        kind = data[pos:pos + 4]
        (n,) = struct.unpack("<I", data[pos + 4:pos + 8])
        payload = data[pos + 8:pos + 8 + n]
        if kind in CODES and n < 65536:
            rec += bytes([CODES[kind]]) + struct.pack("<H", n) + payload
        pos += 12 + n
    return bytes(rec)


def png(w, h, colour, pixels):
    """colour 0 gray, 2 RGB, 6 RGBA; 8-bit; pixels: bytes row-major."""
    ch = {0: 1, 2: 3, 6: 4}[colour]
    raw = b"".join(b"\0" + pixels[y * w * ch:(y + 1) * w * ch] for y in range(h))

    def chunk(k, p):
        return struct.pack(">I", len(p)) + k + p + struct.pack(">I", zlib.crc32(k + p))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def bmp(w, h, pixels):
    row = (3 * w + 3) // 4 * 4
    body = b"".join(pixels[y * w * 3:(y + 1) * w * 3].ljust(row, b"\0") for y in reversed(range(h)))
    head = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, len(body), 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + len(body), 0, 0, 54) + head + body


def gif(w, h):
    # 2-colour image, LZW minimum code size 2, one data block: clear, index 0 per pixel, end.
    pal = b"\x00\x00\x00\xff\xff\xff" + b"\x00" * 6
    out = b"GIF89a" + struct.pack("<HHBBB", w, h, 0x81, 0, 0) + pal
    out += b"\x2c" + struct.pack("<HHHHB", 0, 0, w, h, 0)
    # Codes of 3 bits: clear (4), w*h zeros, end (5); packed LSB first.
    codes = [4] + [0] * min(w * h, 5) + [5]
    bits, n, data = 0, 0, bytearray()
    for c in codes:
        bits |= c << n
        n += 3
        while n >= 8:
            data.append(bits & 0xFF)
            bits >>= 8
            n -= 8
    if n:
        data.append(bits & 0xFF)
    return out + b"\x02" + bytes([len(data)]) + bytes(data) + b"\x00\x3b"


def images():
    def ramp(w, h, ch):
        return bytes((x * 37 + y * 11 + c * 70) % 256 for y in range(h) for x in range(w) for c in range(ch))

    put("encode", "rgb_16x16.png", b"\x00" + png(16, 16, 2, ramp(16, 16, 3)))
    put("encode", "gray_9x5.png", b"\x02" + png(9, 5, 0, ramp(9, 5, 1)))
    put("encode", "rgba_7x7.png", b"\x05" + png(7, 7, 6, ramp(7, 7, 4)))
    put("encode", "rgb_12x10.ppm", b"\x01" + b"P6\n12 10\n255\n" + ramp(12, 10, 3))
    put("encode", "gray_5x3.pgm", b"\x08" + b"P5 5 3 255\n" + ramp(5, 3, 1))
    put("encode", "rgb_6x4.bmp", b"\x04" + bmp(6, 4, ramp(6, 4, 3)))
    put("encode", "one_3x2.gif", b"\x03" + gif(3, 2))


args = sys.argv[1:]
if args and args[0] == "--images":
    images()
elif args and args[0] == "--weights":
    for path in args[1:]:
        put("weights", os.path.basename(path), open(path, "rb").read())
else:
    for path in args:
        data = open(path, "rb").read()
        name = os.path.basename(path)
        put("decode", name, records(data))
        put("parse", name, data)
        put("inspect", name, data)
