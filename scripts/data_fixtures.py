"""Reference fixtures for the data module's tests (tests/data_images.rs, tests/data_batcher.rs).

Run from the repository root:  /work/venv/bin/python scripts/data_fixtures.py

- resize_src.png + resize_ref.json: a small RGB image and Pillow's bilinear (antialiased)
  resizes of it, which is what torchvision's Resize((S, S)) computes on a PIL image; plus the
  normalised CHW tensor of torchvision's ToTensor + Normalize on the downscaled one.
- cmyk.jpg + cmyk_ref.json: a CMYK JPEG (the `image` crate cannot write one) and the RGB
  values Pillow decodes at the centre of each of its colour blocks.
"""
import json
import os

import numpy as np
from PIL import Image

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "data")
os.makedirs(OUT, exist_ok=True)

rng = np.random.default_rng(7)
h, w = 23, 37
yy, xx = np.mgrid[0:h, 0:w]
src = np.stack(
    [
        128 + 100 * np.sin(xx / 4.0),
        128 + 100 * np.cos(yy / 3.0),
        (xx * 7 + yy * 5) % 256,
    ],
    axis=-1,
)
src = np.clip(src + rng.integers(-30, 31, size=src.shape), 0, 255).astype(np.uint8)
img = Image.fromarray(src, "RGB")
img.save(os.path.join(OUT, "resize_src.png"))

mean = [0.3928, 0.4079, 0.3531]
std = [0.2559, 0.2436, 0.2544]
ref = {"mean": mean, "std": std, "resizes": []}
for size in (16, 48):
    out = np.asarray(img.resize((size, size), Image.BILINEAR))
    entry = {"size": size, "rgb": out.reshape(-1).tolist()}
    chw = out.astype(np.float32).transpose(2, 0, 1) / 255.0
    chw = (chw - np.array(mean, np.float32)[:, None, None]) / np.array(std, np.float32)[:, None, None]
    entry["normalized_chw"] = [round(float(v), 6) for v in chw.reshape(-1)]
    ref["resizes"].append(entry)
with open(os.path.join(OUT, "resize_ref.json"), "w") as f:
    json.dump(ref, f)

# Four 16x16 blocks, each inking one CMYK channel (the conversions libraries use agree there).
blocks = [(200, 0, 0, 0), (0, 180, 0, 0), (0, 0, 220, 0), (0, 0, 0, 120)]
cmyk = np.zeros((16, 64, 4), np.uint8)
for i, b in enumerate(blocks):
    cmyk[:, i * 16 : (i + 1) * 16] = b
cimg = Image.fromarray(cmyk, "CMYK")
path = os.path.join(OUT, "cmyk.jpg")
cimg.save(path, quality=95)
back = Image.open(path)
assert back.mode == "CMYK", back.mode
rgb = np.asarray(back.convert("RGB"))
centres = [{"x": i * 16 + 8, "y": 8, "rgb": rgb[8, i * 16 + 8].tolist()} for i in range(4)]
with open(os.path.join(OUT, "cmyk_ref.json"), "w") as f:
    json.dump({"width": 64, "height": 16, "centres": centres}, f)
print("written to", os.path.abspath(OUT))
