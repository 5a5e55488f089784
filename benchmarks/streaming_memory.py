"""Peak memory and throughput of the stages that must not grow with the data: mining latents over 1,000,000 images,
and training a dictionary on 1,000,000 activations streamed from safetensors shards on disk.

    python benchmarks/streaming_memory.py mining   [--images 1000000] [--latents 2048] [--k 100]
    python benchmarks/streaming_memory.py training [--samples 1000000] [--d-in 768] [--d-out 256] [--folder DIR]

Each part runs in its own process so its peak RSS is its own (ru_maxrss, printed beside the 2 GB goal and beside
what holding the same data in memory would take). Mining: synthetic codes with k active latents per image
(exponential activations at random latents), generated chunk by chunk, read twice by `mine` as a real source of
chunks would be; nothing of size n × d_sae exists at any time. Training: synthetic (h2, h1) pairs (h1 = relu of a
fixed random projection of h2) written as shards once, then one epoch of a Matryoshka transcoder streamed from them.
"""

from __future__ import annotations
import argparse, math, resource, tempfile, time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from tqdm import tqdm


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports kB


def synthetic_codes(n: int, d: int, k: int, rows: int = 4096, seed: int = 0):
    "A source of row chunks for `mine`: chunk c is generated from seed (seed, c), the same on every pass."

    def chunks():
        for c, start in enumerate(range(0, n, rows)):
            g = torch.Generator().manual_seed(seed * 1_000_003 + c)
            m = min(rows, n - start)
            latents = torch.rand(m, d, generator=g).topk(k, dim=1).indices  # k distinct latents per image
            values = torch.empty(m, k).exponential_(generator=g)
            yield torch.zeros(m, d).scatter_(1, latents, values), start

    return chunks


def part_mining(args):
    from mtc_nb.features import mine

    n, d, k = args.images, args.latents, args.k
    labels = np.random.default_rng(0).integers(0, 2, n)
    ids = np.char.add('img', np.arange(n).astype(str))
    start = time.perf_counter()
    table = mine(synthetic_codes(n, d, k), labels, ids, top_n=20, progress=True)
    seconds = time.perf_counter() - start
    assert len(table) == d and int(table.n_active.sum()) == n * k
    print(
        f"mining {n:,} images x {d} latents (k = {k}): {n / seconds:,.0f} images/s ({seconds:.0f} s), "
        f"peak RSS {peak_rss_gb():.2f} GB (goal <= 2 GB; the dense code matrix alone: {n * d * 4 / 2**30:.1f} GB)"
    )


def write_shards(folder: Path, n: int, d_in: int, d_out: int, rows: int = 16384) -> list[Path]:
    "Synthetic activation shards (h2, h1), written once; reused when they are already there."
    folder.mkdir(parents=True, exist_ok=True)
    proj = torch.randn(d_in, d_out, generator=torch.Generator().manual_seed(1)) / math.sqrt(d_in)
    files = []
    for c, start in enumerate(tqdm(range(0, n, rows), desc='writing shards', unit='shard')):
        path = folder / f'shard_{c:05d}.safetensors'
        files.append(path)
        if path.exists():
            continue
        g = torch.Generator().manual_seed(c)
        h2 = torch.randn(min(rows, n - start), d_in, generator=g)
        save_file({'h2': h2, 'h1': torch.relu(h2 @ proj)}, path)
    return files


def part_training(args):
    from mtc_nb.dictionaries import DictConfig
    from mtc_nb.training import ShardedPairs, train_dictionaries

    with tempfile.TemporaryDirectory(dir=args.folder) as tmp:
        folder = Path(args.folder) / 'streaming_shards' if args.folder else Path(tmp)
        files = write_shards(folder, args.samples, args.d_in, args.d_out)
        pairs = ShardedPairs(files)
        val_x, val_y = ShardedPairs(files[:1]).sample(1024, torch.Generator().manual_seed(0))
        cfg = DictConfig(d_in=args.d_in, d_out=args.d_out, k=100, epochs=1, batch_size=args.batch)
        start = time.perf_counter()
        result = train_dictionaries([cfg], pairs, None, val_x, val_y)[0]
        seconds = time.perf_counter() - start
    fvu = result['history'][-1]['val_fvu'][0][-1]
    print(
        f"training 1 epoch on {args.samples:,} x {args.d_in} activations streamed from {len(files)} shards: "
        f"{args.samples / seconds:,.0f} samples/s ({seconds:.0f} s), val FVU {fvu:.3f}, peak RSS "
        f"{peak_rss_gb():.2f} GB (goal <= 2 GB; the activations in memory: "
        f"{args.samples * (args.d_in + args.d_out) * 4 / 2**30:.1f} GB)"
    )


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('part', choices=['mining', 'training'])
    ap.add_argument('--images', type=int, default=1_000_000)
    ap.add_argument('--latents', type=int, default=2048)
    ap.add_argument('--k', type=int, default=100)
    ap.add_argument('--samples', type=int, default=1_000_000)
    ap.add_argument('--d-in', type=int, default=768)
    ap.add_argument('--d-out', type=int, default=256)
    ap.add_argument('--batch', type=int, default=4096)
    ap.add_argument('--folder', default=None, help='where the training shards go (default: a temporary folder)')
    ap.add_argument('--threads', type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    (part_mining if args.part == 'mining' else part_training)(args)
