"""Seeds for the `decode` fuzz target: each .ddpmc file given, rewritten as the target's
records (major, minor, then per chunk: kind code, u16 LE length, payload).

    python3 fuzz/seeds.py format-spec/vectors/*.ddpmc  # writes fuzz/corpus/decode/seed_*
"""
import os
import struct
import sys

CODES = {b"HEAD": 0, b"STEP": 1, b"LOSS": 2, b"END ": 3, b"iccp": 4}
out = os.path.join(os.path.dirname(__file__), "corpus", "decode")
os.makedirs(out, exist_ok=True)
for path in sys.argv[1:]:
    data = open(path, "rb").read()
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
    name = os.path.join(out, "seed_" + os.path.basename(path))
    open(name, "wb").write(rec)
    print(name, len(rec))
