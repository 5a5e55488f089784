"""The benchmark's validation on the simulated panel over seeds: for each seed of a reproduced profile, the
canonical Matryoshka transcoder of that seed calibrates the failure features, the panel is rendered anew with
that seed, and the same measurement as the benchmark stage runs; each validation figure is printed per seed,
with its mean and spread, beside the goal.

    .venv/bin/python benchmarks/benchmark_seeds.py [--profile default] [--calibration-styles N] [--record]
                                                   [-p NAME VALUE ...]

`--calibration-styles 0` measures the benchmark calibrated on the labelled images as they are (no nuisance styles),
beside the profile's setting. `--record` writes the table into the profile's results.json, under
`benchmark_seeds` → `calibration_styles_<N>` (mean, std and the seeds' values of each figure), where the README reads
it.
"""

import argparse, tempfile
from pathlib import Path

import numpy as np

from mtc_nb.core import _parse, load_profile, update_results
from mtc_nb.stages.benchmark import canonical_checkpoint, run_benchmark

GOALS = {
    'spearman_rate': '≥ 0.9',
    'rate_mae': '≤ 0.03',
    'rate_max_error': '≤ 0.03 (every style)',
    'rate_ci_coverage': '≥ 0.90 (rates inside their interval)',
    'prevalence_mae': '≤ 0.03',
    'prevalence_mae_raw': '(beside it)',
    'ci_coverage': '≥ 0.90',
    'control_ok': 'True',
    'seen_style_mae': '(about the unseen)',
    'unseen_style_mae': '≤ 0.03',
    'unseen_over_seen_mae': '≤ 1.5',
    'seen_style_ci_coverage': '≥ 0.90',
    'unseen_style_ci_coverage': '≥ 0.90',
    'seen_style_ci_width': '(median; beside coverage)',
    'unseen_style_ci_width': '(median; beside coverage)',
    'estimates_inside_own_ci': '1.0',
    'n_recovered': '(8 planted)',
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--profile', default='default')
    ap.add_argument('--calibration-styles', type=int, default=None, help='benchmark_calibration_styles for this run')
    ap.add_argument('--labelled-sample', type=int, default=None, help='benchmark_labelled_sample for this run')
    ap.add_argument('--record', action='store_true', help="write the table into the profile's results.json")
    ap.add_argument('-p', '--param', nargs=2, action='append', default=[], metavar=('NAME', 'VALUE'), help='a setting')
    a = ap.parse_args()
    cfg = load_profile(a.profile, **{k: _parse(v) for k, v in a.param})
    if a.calibration_styles is not None:
        cfg = cfg.replace(benchmark_calibration_styles=a.calibration_styles)
    if a.labelled_sample is not None:
        cfg = cfg.replace(benchmark_labelled_sample=a.labelled_sample)
    n_styles, n_labelled = cfg.benchmark_calibration_styles, cfg.benchmark_labelled_sample
    print(f"profile {cfg.name}, calibration styles {n_styles}, labelled sample {n_labelled}", flush=True)
    rows = {}
    for seed in cfg.seeds:
        with tempfile.TemporaryDirectory() as d:
            s = run_benchmark(cfg, canonical_checkpoint(cfg, seed), Path(d), seed, progress=False)['summary']
        ratio = s['unseen_style_mae'] / s['seen_style_mae'] if s.get('seen_style_mae') else float('nan')
        rows[seed] = {
            **{k: s[k] for k in GOALS if k in s},
            'n_recovered': len(s['recovered_modes']),
            'unseen_over_seen_mae': ratio,
        }
        styles = ', '.join(
            f"{g} {'seen' if v['seen_style'] else 'UNSEEN'} {v['mae']:.3f}/{v['ci_coverage']:.2f}/{v['rate_error']:.3f}"
            for g, v in s['per_generator'].items()
        )
        print(f"seed {seed} done: recovered modes {s['recovered_modes']}")
        print(f"  per generator, mode MAE / interval coverage / rate error: {styles}", flush=True)
    print(f"\n{'figure':<22}" + ''.join(f"{'seed ' + str(s):>10}" for s in rows) + f"{'mean':>10}{'std':>9}   goal")
    table = {}
    for k, goal in GOALS.items():
        vals = np.array([np.nan if r.get(k) is None else float(r[k]) for r in rows.values()])
        print(f"{k:<22}" + ''.join(f"{v:>10.3f}" for v in vals) + f"{vals.mean():>10.3f}{vals.std():>9.3f}   {goal}")
        table[k] = {'mean': float(vals.mean()), 'std': float(vals.std()), 'seeds': vals.tolist(), 'goal': goal}
    if a.record:
        import json

        path = cfg.fig_dir / 'results.json'
        recorded = json.loads(path.read_text()).get('benchmark_seeds', {}) if path.exists() else {}
        variant = f"calibration_styles_{n_styles}" + (f"_labelled_{n_labelled}" if n_labelled else '')
        update_results(cfg, benchmark_seeds={**recorded, variant: table})
        print(f"recorded in {path} under benchmark_seeds → {variant}")


if __name__ == '__main__':
    main()
