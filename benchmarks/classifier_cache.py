"""Classifier training: re-encoding every image in every epoch (the paper code's loop) vs training from the
embedding cache. Same encoder, same images, same head recipe (20 epochs, batch 16, AdamW 1e-4); both timed
in this one run. Prints the two times side by side and their ratio.

    .venv/bin/python benchmarks/classifier_cache.py [--profile default] [--n 300]
"""

import argparse, tempfile, time
from pathlib import Path
import torch, torch.nn.functional as F
from mtc_nb.core import load_profile, seed_everything
from mtc_nb.stages.scenes import scenes_stage
from mtc_nb.encoders import LiteEncoder, load_encoder, load_images, EmbeddingCache
from mtc_nb.classifier import PlausibilityHead


def paper_loop(enc, paths, y, epochs, batch):
    "The paper code's way: every epoch, load, preprocess and encode each batch, then step the head."
    seed_everything(0)
    head = PlausibilityHead(enc.d)
    opt = torch.optim.AdamW(head.parameters(), lr=1e-4)
    for _ in range(epochs):
        for idx in torch.randperm(len(paths)).split(batch):
            with torch.no_grad():
                h2 = enc(enc.preprocess(load_images([paths[i] for i in idx])))
            loss = F.binary_cross_entropy_with_logits(head(h2), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()


def cached_loop(enc, paths, y, epochs, batch, cache_dir):
    "Ours: encode each image once into the cache, then train on cached h2."
    cache = EmbeddingCache(cache_dir, enc.fingerprint())
    h2 = cache.embed(paths, lambda b: enc(enc.preprocess(load_images(b))), 100)
    seed_everything(0)
    head = PlausibilityHead(enc.d)
    opt = torch.optim.AdamW(head.parameters(), lr=1e-4)
    t0 = time.perf_counter()
    for _ in range(epochs):
        for idx in torch.randperm(len(paths)).split(batch):
            loss = F.binary_cross_entropy_with_logits(head(h2[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return time.perf_counter() - t0


if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--profile', default='default')
    ap.add_argument('--n', type=int, default=300)
    ap.add_argument('--epochs', type=int, default=20)
    a = ap.parse_args()
    torch.set_num_threads(2)
    cfg = load_profile(a.profile)
    man, image_dir = scenes_stage(cfg)
    man = man[man.split == 'train'].iloc[: a.n]
    paths = [Path(image_dir) / f for f in man.file]
    y = torch.tensor(man.label.values, dtype=torch.float32)
    enc_dir = cfg.run_dir / 'encoder'
    enc = load_encoder(enc_dir) if (enc_dir / 'config.json').exists() else LiteEncoder(cfg.image_size, cfg.trunk_blocks)
    t0 = time.perf_counter()
    paper_loop(enc, paths, y, a.epochs, 16)
    t_paper = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        t_train = cached_loop(enc, paths, y, a.epochs, 16, d)
        t_cold = time.perf_counter() - t0
    print(
        f"{len(paths)} images at {cfg.image_size}px, encoder {enc.name}, {a.epochs} epochs, batch 16, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"{'method':<48}{'seconds':>10}{'speed-up':>10}")
    print(f"{'paper code: re-encode every image every epoch':<48}{t_paper:>10.2f}{1.0:>10.1f}x")
    print(f"{'ours: encode once into the cache, then train':<48}{t_cold:>10.2f}{t_paper / t_cold:>10.1f}x")
    print(f"{'ours: training alone from a warm cache':<48}{t_train:>10.2f}{t_paper / t_train:>10.1f}x")
