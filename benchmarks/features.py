"""Feature mining speed: mtc_nb.features.mine vs the paper code's per-activation Python loop.

The reference is the paper code's loop: one Python step per firing activation, appending
(activation, image) to a per-latent list, then a sort per latent; the error ratio comes from the labels
of the kept images. Its cost grows with the number of firing activations: 496 per image for the paper
code's own model (top-k 16+32+64+128+256), 100 for the canonical model at the default k. Both produce the
top-N ids, frequency and error ratio of every latent; the script checks that they agree before printing the
times side by side.

    .venv/bin/python benchmarks/features.py [--n 20000] [--d 2048] [--k 496 100] [--top 20]
"""

import argparse, time
from collections import defaultdict

import numpy as np
import torch
from tqdm import tqdm

from mtc_nb.features import mine


def reference_mining(A: np.ndarray, labels, top_n: int = 20, batch: int = 64):
    """The paper code's mining loop, written out: codes arrive in batches; for each image, the indices of its
    firing latents, then one Python step per activation (`.item()` on the value and the index) appending
    (|activation|, image) to that latent's list; finally each list is sorted and cut to the top N."""
    codes = torch.as_tensor(A)
    n, d = codes.shape
    feature_activations = defaultdict(list)
    for start in tqdm(range(0, n, batch), desc='reference loop', unit='batch', leave=False):
        z = codes[start : start + batch]
        for r in range(z.shape[0]):
            acts = z[r]
            for j in (acts.abs() > 0).nonzero(as_tuple=True)[0]:
                feature_activations[j.item()].append((abs(acts[j].item()), start + r))
    top, top_vals, counts = [[] for _ in range(d)], [[] for _ in range(d)], np.zeros(d)
    for j, lst in feature_activations.items():
        lst.sort(key=lambda t: t[0], reverse=True)
        counts[j] = len(lst)
        top[j] = [i for a, i in lst[:top_n]]
        top_vals[j] = [a for a, i in lst[:top_n]]
    err = np.array([np.mean([labels[i] for i in t]) if t else np.nan for t in top])
    return top, top_vals, counts / n, err


def synthetic_codes(n, d, k, seed=0):
    """Sparse non-negative codes with k active latents per image and a skewed latent frequency (as trained dictionaries
    have)."""
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(d, generator=g) ** 3 + 1e-3
    idx = torch.multinomial(p.expand(n, d), k, replacement=False, generator=g)
    A = torch.zeros(n, d)
    A.scatter_(1, idx, torch.rand(n, k, generator=g) + 0.01)
    return A.numpy()


if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--n', type=int, default=20000)
    ap.add_argument('--d', type=int, default=2048)
    ap.add_argument(
        '--k',
        type=int,
        nargs='+',
        default=[496, 100],
        help='active latents per image (496: the paper code model; 100: canonical at the default k)',
    )
    ap.add_argument('--top', type=int, default=20)
    a = ap.parse_args()
    torch.set_num_threads(2)
    print(f"{a.n:,} images x {a.d} latents, top {a.top}, {torch.get_num_threads()} threads")
    print(f"{'active/image':<14}{'reference loop':>16}{'mine()':>10}{'speed-up':>10}   agreement")
    for k in a.k:
        A = synthetic_codes(a.n, a.d, k)
        labels = np.random.default_rng(0).integers(0, 2, a.n)
        ids = np.arange(a.n)
        t0 = time.perf_counter()
        top, top_vals, freq, err = reference_mining(A, labels, a.top)
        t_ref = time.perf_counter() - t0
        mine(A, labels, ids, top_n=a.top)  # warm-up (first touch of the large buffers)
        t0 = time.perf_counter()
        tab = mine(A, labels, ids, top_n=a.top)
        t_ours = time.perf_counter() - t0
        same = [
            list(t) == r for t, r in zip(tab.top_ids, top)
        ]  # ids may differ only where two images tie on an activation
        assert all(s or np.allclose(v, rv, atol=1e-5) for s, v, rv in zip(same, tab.top_activations, top_vals)), (
            'top images differ'
        )
        assert np.allclose(tab.frequency, freq), 'frequencies differ'
        assert np.allclose(np.array(tab.error_ratio)[same], err[same], equal_nan=True), 'error ratios differ'
        print(
            f"{k:<14}{t_ref:>14.2f} s{t_ours:>8.2f} s{t_ref / t_ours:>9.0f}x   {sum(same)}/{a.d} top lists "
            "identical, the rest differ only by ties"
        )
    print("mine() also returns the sample of weaker activations, which the reference does not compute.")
