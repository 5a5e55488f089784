"""Peak memory of one dictionaries-stage worker, beside its comparison: the worker as the stage starts it (the test
split's labels handed to it) against one that reads the labels from the scenes' manifest itself (what every worker
did before). Each variant runs in a fresh process that does what a worker does with the stage's largest group (the
canonical L0 sweep of the first seed, stacked): read the stage's data, train the group, evaluate each model. Peak
RSS is the process's own (`ru_maxrss`), so the shared library pages are counted in full, as `ps` counts them.

Needs the profile's activations (`mtc reproduce --stages 01_scenes 02_encoders 03_classifier`).

    .venv/bin/python benchmarks/worker_memory.py [--profile default] [--epochs 1]
"""

import argparse, json, resource, subprocess, sys


def one_worker(profile: str, epochs: int, hand_labels: bool) -> dict:
    "In this process: a worker's work on the largest group; returns its peak RSS (MB) after each phase."
    import numpy as np
    import torch
    from mtc_nb.stages import dictionaries as stages
    from mtc_nb.core import load_profile
    from mtc_nb.training import train_dictionaries, _group
    from mtc_nb.evaluation import evaluate_dictionary

    peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    torch.set_num_threads(1)
    out = {'imports': peak()}
    cfg = load_profile(profile, dict_epochs=epochs)
    if hand_labels:  # the stage's parent reads them; here a subprocess stands in for it, so this process never does
        labels = json.loads(
            subprocess.run(
                [sys.executable, __file__, '--labels-of', profile], check=True, capture_output=True, text=True
            ).stdout
        )
        data = stages._stage_data(cfg, np.array(labels))
    else:
        data = stages._stage_data(cfg)
    out['data'] = peak()
    train, val = data['train'], data['val']
    cfgs = stages.stage_configs(cfg, train['h2'].shape[1], train['h1'].shape[1])
    canonical = next(idx for idx in _group(cfgs) if cfgs[idx[0]].kind == 'matryoshka_transcoder')  # first seed's
    group = [cfgs[i] for i in canonical]
    trained = train_dictionaries(group, train['h2'], train['h1'], val['h2'], val['h1'], progress=False)
    out['trained'] = peak()
    for res in trained:
        evaluate_dictionary(res, data['test'], data['head'], data['labels'])
    out['evaluated'] = peak()
    out['group'] = f"{group[0].kind} x {len(group)}"
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--profile', default='default')
    ap.add_argument('--epochs', type=int, default=1)
    ap.add_argument('--worker', choices=('handed', 'reads'))
    ap.add_argument('--labels-of')
    args = ap.parse_args()
    if args.labels_of:
        from mtc_nb.stages import dictionaries as stages
        from mtc_nb.core import load_profile

        print(json.dumps(stages._test_labels(load_profile(args.labels_of)).tolist()))
        return
    if args.worker:
        print(json.dumps(one_worker(args.profile, args.epochs, args.worker == 'handed')))
        return
    rows = {}
    for variant in ('handed', 'reads'):
        cmd = [sys.executable, __file__, '--profile', args.profile, '--epochs', str(args.epochs), '--worker', variant]
        rows[variant] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    print(
        f"one worker of the dictionaries stage ({args.profile}, group {rows['handed']['group']}, "
        f"{args.epochs} epoch(s), 1 thread): peak RSS in MB after each phase"
    )
    print(f"{'labels':<34}{'imports':>9}{'data':>7}{'trained':>9}{'evaluated':>11}")
    names = {'handed': 'handed by the stage (as it runs)', 'reads': 'read from the manifest by the worker'}
    for variant, r in rows.items():
        print(f"{names[variant]:<34}{r['imports']:>9}{r['data']:>7}{r['trained']:>9}{r['evaluated']:>11}")


if __name__ == '__main__':
    main()
