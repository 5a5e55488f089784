"""Labelling throughput: images per second through `score_images` (decode the file, embed, the classifier head,
the dictionary, the calibrated failure features), the path `mtc label` and the benchmark stage take.

It reads a reproduced profile's artifacts (run `make reproduce`, or `mtc reproduce --profile smoke`, first), renders
`--n` fresh scenes in the panel's styles to a temporary folder, and times labelling them, with the embedding alone
beside it (where the time goes). CLIP on a GPU is measured when a GPU and CLIP weights (`--clip PATH`) are there.

    .venv/bin/python benchmarks/labelling.py [--profile default] [--n 300] [--batch 64] [--clip PATH]
"""

import argparse, tempfile, time
from pathlib import Path

import numpy as np
import torch

from mtc_nb.core import load_profile
from mtc_nb.scoring import score_images
from mtc_nb.panel import make_panel
from mtc_nb.stages.benchmark import profile_scorer


def images_per_second(fn, n: int) -> float:
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--profile', default='default')
    ap.add_argument('--n', type=int, default=300, help='images to label (rendered in the panel styles)')
    ap.add_argument('--batch', type=int, default=64)
    ap.add_argument('--clip', help='a folder of CLIP weights, for the GPU figure')
    a = ap.parse_args()
    cfg = load_profile(a.profile)
    scorer = profile_scorer(cfg)
    print(
        f"profile {a.profile}: encoder {scorer.encoder.name}, {len(scorer.features)} failure features, "
        f"torch threads {torch.get_num_threads()}"
    )
    with tempfile.TemporaryDirectory() as d:
        per_generator = max(1, a.n // 8)
        panel = make_panel(Path(d), per_generator, int(cfg.image_size), seed=123, progress=False)
        paths = [Path(d) / f for f in panel.file]
        score_images(scorer, paths[: a.batch], a.batch, progress=False)  # warm-up
        rate = images_per_second(lambda: score_images(scorer, paths, a.batch, progress=False), len(paths))
        pixels = np.stack([scorer._pixels(p) for p in paths])
        with torch.no_grad():
            embed = lambda: [
                scorer.encoder(scorer.encoder.preprocess(pixels[i : i + a.batch]))
                for i in range(0, len(pixels), a.batch)
            ]
            embed_rate = images_per_second(embed, len(paths))
    print(f"{'labelling, everything (images/s)':<44}{rate:>10.1f}")
    print(f"{'  of which the embedding alone (images/s)':<44}{embed_rate:>10.1f}")
    print(f"{'  per image (ms)':<44}{1000 / rate:>10.1f}")
    if torch.cuda.is_available() and a.clip:
        from mtc_nb.encoders import ClipEncoder

        enc = ClipEncoder(a.clip, device='cuda')
        x = torch.randint(0, 255, (a.batch, 224, 224, 3), dtype=torch.uint8).numpy()
        enc(enc.preprocess(list(x)))
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(5):
            enc(enc.preprocess(list(x)))
        torch.cuda.synchronize()
        print(f"{'CLIP embedding on the GPU (images/s)':<44}{5 * a.batch / (time.perf_counter() - t0):>10.1f}")
    else:
        print("CLIP on a GPU: not measured (no GPU here, or no --clip weights)")


if __name__ == '__main__':
    main()
