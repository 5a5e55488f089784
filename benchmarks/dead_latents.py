"""Dead latents of the canonical Matryoshka transcoder: the training defaults, one change at a time.

Trains the canonical model (k from the profile, default 64) on the profile's cached activations
(run `mtc reproduce --stages 01_scenes 02_encoders 03_classifier` first) with:
  A. Gao et al.'s settings for billions of tokens: lr 2e-4/sqrt(d_sae/16384), AuxK weight 1/4 (already
     above their 1/32), 256 auxiliary latents, dead after 32 silent steps;
  B. A with lr 2e-4·sqrt(2048/d_sae) (2e-4 at 2048 latents);   C. B with AuxK weight 1 and 512 auxiliary latents;
  D. C with lr 3.5e-4·sqrt(2048/d_sae) and dead after 8 silent steps;
  E. the library's defaults: D with the rate floor (each latent selected on at least half the mean rate k/d_sae).
A to D run without the rate floor.
For each: held-out FVU (full level), L0, dead fraction on the held-out split and on the training split.
A latent alive on train but dead on held-out fires on a handful of training images only (a memoriser). Last
column: the median, over the latents dead on held-out images, of their largest held-out selection score (activation
plus the floor's bias) over the inference threshold θ (near 1: just under the batch-wide bar, not silent).

    .venv/bin/python benchmarks/dead_latents.py [--profile default] [--seeds 0 1 2] [--k 64]
"""

import argparse, math
import numpy as np
import torch

from mtc_nb.core import load_profile
from mtc_nb.classifier import load_activations
from mtc_nb.dictionaries import DictConfig
from mtc_nb.training import train_dictionaries
from mtc_nb.metrics import fvu, dead_fraction, l0
from peers import BUDGET_EPOCHS  # this folder's comparison budget


def near_threshold(score: torch.Tensor, f: torch.Tensor, theta: float) -> float:
    """Median over the latents that never fire in `f` (n, d_sae) of their largest selection `score` (n, d_sae) over
    the inference threshold `theta` (nan when none is dead)."""
    dead = (f > 0).sum(0) == 0
    if not bool(dead.any()):
        return float('nan')
    return float((score.max(0).values[dead] / theta).median())


if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--profile', default='default')
    ap.add_argument('--seeds', type=int, nargs='+', default=[0])
    ap.add_argument('--k', type=int, default=None)
    a = ap.parse_args()
    torch.set_num_threads(2)
    cfg = load_profile(a.profile)
    k = a.k or cfg.dict_k
    tr, va, te = (load_activations(cfg.run_dir / 'activations', s)[0] for s in ('train', 'val', 'test'))
    levels = tuple(cfg.dict_levels)
    d_sae = levels[-1]
    base = dict(
        kind='matryoshka_transcoder',
        d_in=tr['h2'].shape[1],
        d_out=tr['h1'].shape[1],
        d_sae=d_sae,
        levels=levels,
        k=k,
        epochs=BUDGET_EPOCHS,
        batch_size=cfg.dict_batch,
    )
    lr = 2e-4 * math.sqrt(2048 / d_sae)
    variants = {
        'A  lr 2e-4/sqrt(d_sae/16384), AuxK 1/4, 256, 32 steps': dict(
            lr=2e-4 / math.sqrt(d_sae / 16384), aux_coef=0.25, aux_k=256, dead_steps=32, rate_floor=0.0
        ),
        'B  A + lr 2e-4·sqrt(2048/d_sae)': dict(lr=lr, aux_coef=0.25, aux_k=256, dead_steps=32, rate_floor=0.0),
        'C  B + AuxK weight 1, 512 latents': dict(lr=lr, aux_coef=1.0, aux_k=512, dead_steps=32, rate_floor=0.0),
        'D  C + lr 3.5e-4, dead after 8 steps': dict(rate_floor=0.0),
        'E  defaults (D + the rate floor)': dict(),
    }
    cfgs = [DictConfig(seed=s, **base, **v) for v in variants.values() for s in a.seeds]
    res = train_dictionaries(cfgs, tr['h2'], tr['h1'], va['h2'], va['h1'])
    print(
        f"{cfg.name}: {len(tr['h2'])} train / {len(te['h2'])} held-out samples, d_sae={d_sae}, k={k}, "
        f"{BUDGET_EPOCHS} epochs, seeds {a.seeds}; mean ± std over seeds"
    )
    print(f"{'settings':<56}{'FVU (full)':>18}{'L0':>8}{'dead held-out':>18}{'dead train':>16}{'dead max/θ':>12}")
    for i, name in enumerate(variants):
        rows = []
        for r in res[i * len(a.seeds) : (i + 1) * len(a.seeds)]:
            with torch.no_grad():
                o, otr = r['model'](te['h2']), r['model'](tr['h2'])
            j = r['index']
            rows.append(
                (
                    float(fvu(te['h1'], o.recons[-1, j])),
                    float(l0(o.f[j])[0]),
                    dead_fraction(o.f[j]),
                    dead_fraction(otr.f[j]),
                    near_threshold(r['model'].selection_score(o.pre.relu())[j], o.f[j], float(r['model'].theta[j])),
                )
            )
        m, s = np.mean(rows, 0), np.std(rows, 0)
        print(
            f"{name:<56}{m[0]:>10.4f} ± {s[0]:.4f}{m[1]:>8.1f}{m[2]:>11.2%} ± {s[2]:.2%}{m[3]:>9.2%} ± {s[3]:.2%}"
            f"{m[4]:>12.2f}"
        )
