"""Ground-truth scores of every dictionary family across an L0 sweep, seeds side by side.

Trains each family of the profile (the paper's own variant aside: its per-level k is fixed) at each k of `--ks` for
each seed on the profile's cached activations (run `mtc reproduce` first), with the profile's epochs and batch, and
scores its held-out codes against the planted concepts (`mtc_nb.ground_truth`). Prints, per family and k, mean ± std
over seeds: held-out L0, best-latent F1 per concept level and over all concepts, matched MCC over all concepts,
absorption of the modes (their variants' latents firing where the mode's latent is silent), and the share of matched
parent–child pairs whose parent sits in an earlier level. The families are compared at the L0 they reach, printed
beside each score. `--record` writes the table into the profile's results.json under `ground_truth_sweep` and draws
`ground_truth_sweep.png` in its figures folder.

    .venv/bin/python benchmarks/ground_truth_sweep.py [--profile default] [--ks 16 48 200] [--seeds 0 1 2]
        [--record]
"""

import argparse, json

import numpy as np
import pandas as pd
import torch

from mtc_nb.core import load_profile, update_results
from mtc_nb.classifier import load_activations
from mtc_nb.dictionaries import DictConfig, levels_of
from mtc_nb.features import latent_codes
from mtc_nb.ground_truth import ground_truth_scores
from mtc_nb.stages.scenes import load_scenes
from mtc_nb.stages.dictionaries import stage_configs
from mtc_nb.training import train_dictionaries

SCORES = {  # column: (label, path into a ground_truth_scores result)
    'f1_category': ('F1 category', ('per_level', 'category', 'f1')),
    'f1_mode': ('F1 mode', ('per_level', 'mode', 'f1')),
    'f1_variant': ('F1 variant', ('per_level', 'variant', 'f1')),
    'f1_all': ('F1 all', ('per_level', 'all', 'f1')),
    'mcc_all': ('MCC all', ('per_level', 'all', 'mcc')),
    'absorption_mode': ('absorption (modes)', ('per_level', 'mode', 'absorption')),
    'parents_earlier': ('parents earlier', ('parent_order', 'earlier')),
}


def sweep_configs(cfg, d_in: int, d_out: int, ks, seeds) -> list[DictConfig]:
    "Every family of the profile but paper_repo, at each k and seed, configured as the dictionaries stage does it."
    families = [m for m in cfg.dict_models if m != 'paper_repo']
    at = lambda family, k: cfg.replace(dict_models=[family], dict_k=k, dict_k_sweep=[k], seeds=list(seeds))
    return [c for family in families for k in ks for c in stage_configs(at(family, k), d_in, d_out)]


def pick(scores: dict, path: tuple) -> float:
    "The number at `path` of a ground_truth_scores result (nan where absent)."
    node = scores
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return float(node) if isinstance(node, (int, float)) else float('nan')


def sweep_table(rows: list[dict]) -> pd.DataFrame:
    "Mean and std over seeds of L0 and every score, one row per family and k."
    d = pd.DataFrame(rows)
    spread = lambda x: x.std(ddof=0)  # as results.json keeps every seed spread
    stats = d.groupby(['family', 'k'], sort=False).agg(['mean', spread])
    stats.columns = [c if s == 'mean' else f'{c}_std' for c, s in stats.columns]
    return stats.reset_index()


def draw(table: pd.DataFrame, path) -> None:
    "F1 over all concepts, matched MCC and mode absorption against held-out L0, one line per family (± std)."
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from matplotlib.ticker import NullFormatter, ScalarFormatter

    panels = ('f1_all', 'f1_variant', 'mcc_all', 'absorption_mode')
    fig, axes = plt.subplots(2, 2, figsize=(9, 7))
    for ax, col in zip(axes.flat, panels):
        for family, d in table.groupby('family', sort=False):
            ax.errorbar(d.l0, d[col], yerr=d[f'{col}_std'], marker='o', capsize=3, label=family)
        ax.set_xscale('log')
        ax.set_xticks([16, 32, 64, 128, 256])
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel('held-out L0')
        ax.set_title(SCORES[col][0], fontsize=10)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle('Ground truth against L0: every family, mean ± std over seeds', fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--profile', default='default')
    ap.add_argument('--ks', type=int, nargs='+', default=[16, 48, 200])
    ap.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    ap.add_argument('--record', action='store_true', help="write the table into the profile's results.json")
    ap.add_argument('--draw-only', action='store_true', help='draw the recorded table again, training nothing')
    a = ap.parse_args()
    cfg = load_profile(a.profile)
    if a.draw_only:
        recorded = json.loads((cfg.fig_dir / 'results.json').read_text())['ground_truth_sweep']
        draw(pd.DataFrame(recorded['rows']), cfg.fig_dir / 'ground_truth_sweep.png')
        raise SystemExit(0)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    (tr, _), (va, _), (te, ids) = (load_activations(cfg.run_dir / 'activations', s) for s in ('train', 'val', 'test'))
    manifest = load_scenes(cfg)[0].set_index('id').loc[ids].reset_index()
    cfgs = sweep_configs(cfg, tr['h2'].shape[1], tr['h1'].shape[1], a.ks, a.seeds)
    print(f"{cfg.name}: training {len(cfgs)} dictionaries ({len(a.ks)} k × {len(a.seeds)} seeds a family)", flush=True)
    results = train_dictionaries(cfgs, tr['h2'], tr['h1'], va['h2'], va['h1'])
    rows = []
    for c, res in zip(cfgs, results):
        A = latent_codes(res['model'], te['h2'], index=res['index']).numpy()
        levels = levels_of({'kind': c.kind, 'levels': c.levels, 'd_sae': c.d_sae})
        scores = ground_truth_scores(A, manifest, list(levels))
        l0 = float((A > 0).sum(1).mean())
        rows.append({'family': c.kind, 'k': c.k, 'l0': l0, **{col: pick(scores, p) for col, (_, p) in SCORES.items()}})
    table = sweep_table(rows)
    pd.set_option('display.width', 200)
    shown = table[['family', 'k', 'l0']].copy()
    for col, (label, _) in SCORES.items():
        shown[label] = [f"{m:.3f} ± {s:.3f}" for m, s in zip(table[col], table[f'{col}_std'])]
    print(f"held-out split: {len(ids)} images; mean ± std over seeds {a.seeds}")
    print(shown.to_string(index=False))
    if a.record:
        update_results(
            cfg, ground_truth_sweep={'seeds': a.seeds, 'ks': a.ks, 'rows': json.loads(table.to_json(orient='records'))}
        )
        draw(table, cfg.fig_dir / 'ground_truth_sweep.png')
        print(f"recorded in {cfg.fig_dir / 'results.json'} under ground_truth_sweep; figure ground_truth_sweep.png")
