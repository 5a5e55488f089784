"""How many labels a minute the annotator lets a person give by keyboard: the time the widget itself takes per key
(save labels.csv whole, read and show the next image), on generator-sized PNGs, beside the seconds a person needs to
judge an image (which bound the rate in practice).

    python benchmarks/annotation.py [--images 120] [--size 1024]
"""

import argparse, tempfile, time
from pathlib import Path

import numpy as np
from PIL import Image

from mtc_nb.annotate import Annotator


def seconds_per_label(images: int, size: int) -> float:
    "Mean seconds from a key typed into the key box to the next image shown, over a folder of `images` PNGs."
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d) / 'gen'
        folder.mkdir()
        for i in range(images):
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f'{i:04d}.png')
        annotator = Annotator(folder, seed=0)
        start = time.perf_counter()
        for i in range(images):
            annotator.keys.value = 'pi'[i % 2]  # the keyboard path: one key per label
        return (time.perf_counter() - start) / images


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--images', type=int, default=120)
    ap.add_argument('--size', type=int, default=1024, help='image side in pixels (noise PNGs: the slowest to read)')
    a = ap.parse_args()
    s = seconds_per_label(a.images, a.size)
    print(
        f"{a.images} images of {a.size}x{a.size} px: {s * 1000:.0f} ms of the widget's own per label, "
        f"at most {60 / s:,.0f} labels a minute"
    )
    for judge in (1.0, 2.0, 4.0):
        print(f"  with a person's {judge:.0f} s to judge each image: {60 / (judge + s):.1f} labels a minute")


if __name__ == '__main__':
    main()
