"""Our dictionaries beside the peer libraries' (SAELens, dictionary_learning, sparsify), trained on the same
activations with the same budget, interleaved in one run, and measured by one shared formula.

Needs the profile's cached activations (`mtc reproduce --stages 01_scenes 02_encoders 03_classifier`) and the
peers, an optional extra that keeps torch at its pin (`pip install -e .[peers]`; dictionary_learning pulls
torchvision through nnsight, so install it alone: `pip install --no-deps dictionary-learning==0.1.0`).

Every model sees the same batches in the same order (one permutation per epoch and seed), one after the other, on
one thread. Printed per model: held-out FVU at every Matryoshka level (the test split; the shared `fvu`), L0 and dead
latents in inference mode on the held-out split, and training samples/s (time inside the model's own steps).

    python benchmarks/peers.py [--profile default] [--k 100 32] [--seeds 0 1 2] [--epochs 20] [--models ...]
    python benchmarks/peers.py --models ours:matryoshka_transcoder --ours-variant lr=5.7e-4 --ours-variant aux_coef=8

Each library runs with its own defaults where the setting is the library's choice (learning rate, optimiser,
AuxK, schedule); the data, latent width, levels, k, batch and sample budget are the run's. A library's schedule given
in steps or tokens (a dead window, a warm-up) is scaled to this run's length by the run its own documentation trains
(`REFERENCE_STEPS`), so AuxK and warm-ups act on the same share of training as there. The peers are SAEs; they are
used as transcoders (h2 -> h1) by changing only the decoder's output width and the target; SAELens's transcoders
encode their input as it comes (no centring; `saelens:matryoshka_transcoder@centred` centres it at the training
mean, as this project's dictionaries do).

L0 is matched by construction: after training, each model's inference threshold on its own selection score is set
so that its L0 on the validation split is k (sparsify's TopK keeps k per sample already); the held-out (test) L0 it
gives is printed beside each row. The models' own inference (a learnt threshold) is printed too, as `native`.
`--record` writes the tables into the profile's results.json under `peers` (docs/peers.md is built from it) and draws
figures/peers_levels.png.
"""

from __future__ import annotations
import argparse, json, math, sys, time, types

import numpy as np
import torch
from tqdm import tqdm

from mtc_nb.core import load_profile, update_results
from mtc_nb.classifier import load_activations
from mtc_nb.dictionaries import DictConfig, dictionary_model
from mtc_nb.training import make_optimizer, train_step, training_loss
from mtc_nb.metrics import fvu, l0, dead_fraction

# h2 -> h1 (ours:skip_transcoder has no peer)
TRANSCODER_KINDS = ('matryoshka_transcoder', 'transcoder', 'skip_transcoder')
# the comparison's budget, whatever the profile trains: 20 epochs of the default run's 4,200 training pairs
# (84,000 samples; the default profile's own dictionaries train 15 epochs to fit its 10 minutes)
BUDGET_EPOCHS = 20
PEER_MODELS = (
    'saelens:matryoshka_transcoder',
    'saelens:matryoshka_transcoder@centred',
    'saelens:transcoder',
    'saelens:matryoshka_sae',
    'saelens:sae',
    'dictlearn:matryoshka_sae',
    'sparsify:transcoder',
    'sparsify:sae',
)
OUR_MODELS = ('ours:matryoshka_transcoder', 'ours:transcoder', 'ours:matryoshka_sae', 'ours:sae')
CENTRED = '@centred'  # a SAELens transcoder whose input is centred at the training mean (a variant, not its default)
# the training runs the libraries' documentation gives, in steps, against which their step-denominated schedules are
# set: SAELens's training tutorial (30,000 steps of 4,096 tokens); dictionary_learning's demo (50 M tokens in batches
# of 2,048: 24,414 steps); sparsify documents no run length, so its 1,000 warm-up steps keep the twentieth of a run
# this harness always gave them
REFERENCE_STEPS = {'saelens': 30_000, 'dictlearn': 50_000_000 // 2_048, 'sparsify': 20_000}


def scaled(library_steps: float, library: str, steps: int) -> int:
    "A schedule of `library_steps` steps in the library's reference run, as steps of a run of `steps`."
    return max(1, round(library_steps * steps / REFERENCE_STEPS[library]))


class Ours:
    """A library dictionary trained exactly as `train_dictionaries` trains it (without the epoch selection). Five
    overrides are not DictConfig fields, for the ablation only: `beta2` (Adam's), `clip` (grad norm per model),
    `lr_floor` (where the cosine schedule ends, a fraction of the learning rate; the library's is 0.1), `enc_init`
    (a transcoder's initial encoder scale, the library's 0.1/sqrt(d_in) times this) and `centre` (0: the input
    centring b_pre starts at zero instead of the training mean)."""

    def __init__(self, kind, shape, k, seed, steps, train, overrides=None):
        d_in, d_out, d_sae, levels, epochs, batch = shape
        overrides = dict(overrides or {})
        self.clip = overrides.pop('clip', None)
        beta2 = overrides.pop('beta2', None)
        lr_floor = overrides.pop('lr_floor', None)
        enc_init = overrides.pop('enc_init', None)
        centre = overrides.pop('centre', 1.0)
        run = dict(kind=kind, d_in=d_in, d_out=d_out, d_sae=d_sae, levels=levels, k=k, seed=seed, epochs=epochs)
        self.cfg = DictConfig(**{**run, 'batch_size': batch, **overrides}).validate()  # an override may set k
        self.model = dictionary_model([self.cfg])
        if enc_init is not None and self.cfg.is_transcoder:
            with torch.no_grad():
                self.model.W_enc.mul_(enc_init)
        self.model.init_from_data(*train)
        if not centre:
            with torch.no_grad():
                self.model.b_pre.zero_()
        self.opt, self.sched, self.every = make_optimizer(self.model, self.cfg, steps)
        if beta2 is not None:
            for group in self.opt.param_groups:
                group['betas'] = (0.9, beta2)
        if lr_floor is not None:  # the library's warm-up and cosine, ending at lr_floor · lr instead of 0.1 · lr
            warm = max(1, steps // 20)
            cosine = lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
            shape_of = lambda s: min(1.0, (s + 1) / warm) * (cosine(s) * (1 - lr_floor) + lr_floor)
            self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, shape_of)

    def step(self, x, y):
        self.model.train()
        if self.clip is None:
            train_step(self.model, self.opt, x, y)
        else:
            self.opt.zero_grad(set_to_none=True)
            training_loss(self.model, x, y)[0].backward()
            grads = [p.grad for p in self.model.parameters()]
            norm = torch.sqrt(sum(g.flatten(1).square().sum(1) for g in grads))
            coef = (self.clip / (norm + 1e-6)).clamp(max=1.0)
            for g in grads:
                g.mul_(coef.view(-1, *([1] * (g.dim() - 1))))
            self.model.remove_parallel_grad()
            self.opt.step()
            self.model.constrain()
        if self.every == 'step':
            self.sched.step()

    def end_epoch(self):
        if self.every == 'epoch':
            self.sched.step()

    @torch.no_grad()
    def infer(self, x):
        "(codes (n, d_sae), reconstruction per level (G, n, d_out)) in inference mode."
        self.model.eval()
        out = self.model(x)
        return out.f[0], out.recons[:, 0]

    @torch.no_grad()
    def scored(self, x):
        "(selection score, activation), each (n, d_sae): what the threshold ranks and what a kept latent passes on."
        self.model.eval()
        acts = torch.relu(self.model.pre_acts(x))
        return self.model.selection_score(acts)[0], acts[0]

    @torch.no_grad()
    def decode(self, codes, x):
        return self.model.decode_levels(codes[None], x)[:, 0]


def _saelens_transcoder(sae_class):
    """A SAELens training SAE that encodes the stored input `x_in` less `x_mean` (zero: as it comes, SAELens's
    transcoders' own convention) and reconstructs the target it is given."""

    class TrainingTranscoder(sae_class):
        def process_sae_in(self, sae_in):
            return self.run_time_activation_norm_fn_in((self.x_in - self.x_mean).to(self.dtype))

    return TrainingTranscoder


class SaeLens:
    """SAELens' (Matryoshka) BatchTopK training SAE with its trainer's step: Adam, constant lr 3e-4, clip at 1, AuxK
    on latents silent for its dead window (1,000 steps of its tutorial's 30,000, scaled to this run)."""

    def __init__(self, matryoshka, transcoder, shape, k, seed, steps, train, centred=False):
        from sae_lens.saes.batchtopk_sae import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig
        from sae_lens.saes.matryoshka_batchtopk_sae import (
            MatryoshkaBatchTopKTrainingSAE,
            MatryoshkaBatchTopKTrainingSAEConfig,
        )

        d_in, d_out, d_sae, levels, _, _ = shape
        torch.manual_seed(seed)
        if matryoshka:
            cfg = MatryoshkaBatchTopKTrainingSAEConfig(
                d_in=d_in, d_sae=d_sae, k=k, matryoshka_widths=list(levels), apply_b_dec_to_input=not transcoder
            )
            sae_class = MatryoshkaBatchTopKTrainingSAE
        else:
            cfg = BatchTopKTrainingSAEConfig(d_in=d_in, d_sae=d_sae, k=k, apply_b_dec_to_input=not transcoder)
            sae_class = BatchTopKTrainingSAE
        self.transcoder, self.matryoshka, self.levels = transcoder, matryoshka, levels
        self.sae = (_saelens_transcoder(sae_class) if transcoder else sae_class)(cfg)
        if transcoder:  # the decoder at the target's width, initialised as SAELens initialises its own
            w = torch.randn(d_sae, d_out)
            w = w / w.norm(dim=1, keepdim=True) * cfg.decoder_init_norm
            self.sae.W_dec = torch.nn.Parameter(w)
            self.sae.b_dec = torch.nn.Parameter(torch.zeros(d_out))
            self.sae.x_mean = train[0].mean(0) if centred else torch.zeros(d_in)
        self.opt = torch.optim.Adam(self.sae.parameters(), lr=3e-4, betas=(0.9, 0.999))
        self.since_fired = torch.zeros(d_sae)
        self.dead_window = scaled(1000, 'saelens', steps)
        self.steps_done = 0

    def _coefficients(self):
        coefs = self.sae.get_coefficients()
        return {name: getattr(c, 'value', c) for name, c in coefs.items()}

    def step(self, x, y):
        from sae_lens.saes.sae import TrainStepInput

        self.sae.train()
        self.sae.x_in = x
        target = y if self.transcoder else x
        step_input = TrainStepInput(
            sae_in=target,
            coefficients=self._coefficients(),
            dead_neuron_mask=self.since_fired > self.dead_window,
            n_training_steps=self.steps_done,
            is_logging_step=False,
        )
        out = self.sae.training_forward_pass(step_input)
        with torch.no_grad():
            fired = (out.feature_acts > 0).any(0)
            self.since_fired += 1
            self.since_fired[fired] = 0
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(self.sae.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad()
        self.steps_done += 1

    def end_epoch(self):
        pass

    @torch.no_grad()
    def infer(self, x):
        "Inference as SAELens saves a BatchTopK SAE: a JumpReLU at the learnt global threshold."
        self.sae.eval()
        self.sae.x_in = x
        _, pre = self.sae.encode_with_hidden_pre(x)
        codes = pre.relu() * (pre > float(self.sae.topk_threshold))
        return codes, self.decode(codes, x)

    @torch.no_grad()
    def scored(self, x):
        self.sae.eval()
        self.sae.x_in = x
        acts = self.sae.encode_with_hidden_pre(x)[1].relu()
        return acts, acts

    @torch.no_grad()
    def decode(self, codes, x):
        if self.matryoshka:
            return torch.stack([r for _, r in self.sae._iterable_decode(codes, include_outer_loss=True)])
        return self.sae.decode(codes)[None]


def _import_dictionary_learning():
    "dictionary_learning's package imports nnsight (and torchvision) for its activation buffer, unused here."
    if 'nnsight' not in sys.modules:
        stub = types.ModuleType('nnsight')
        stub.LanguageModel = None
        sys.modules['nnsight'] = stub
    from dictionary_learning.trainers.matryoshka_batch_top_k import MatryoshkaBatchTopKTrainer

    return MatryoshkaBatchTopKTrainer


class DictLearn:
    """dictionary_learning's Matryoshka BatchTopK trainer (its defaults: lr 2e-4/sqrt(d_sae/2^14), AuxK 1/32,
    clip at 1), its 1,000 warm-up and threshold steps and 10 M-token dead threshold scaled to this run by its demo's
    50 M tokens."""

    def __init__(self, shape, k, seed, steps, train):
        d_in, _, d_sae, levels, _, _ = shape
        trainer_class = _import_dictionary_learning()
        fractions = [w / d_sae for w in np.diff([0, *levels])]
        self.trainer = trainer_class(
            steps=steps,
            activation_dim=d_in,
            dict_size=d_sae,
            k=k,
            layer=0,
            lm_name='none',
            group_fractions=fractions,
            warmup_steps=scaled(1000, 'dictlearn', steps),
            threshold_start_step=scaled(1000, 'dictlearn', steps),
            seed=seed,
            device='cpu',
        )
        batch = shape[5]
        self.trainer.dead_feature_threshold = scaled(10_000_000 / 2_048, 'dictlearn', steps) * batch
        self.levels = levels
        self.steps_done = 0

    def step(self, x, y):
        self.trainer.ae.train()
        self.trainer.update(self.steps_done, x)
        self.steps_done += 1

    def end_epoch(self):
        pass

    @torch.no_grad()
    def infer(self, x):
        ae = self.trainer.ae
        ae.eval()
        codes = ae.encode(x, use_threshold=True)
        return codes, self.decode(codes, x)

    @torch.no_grad()
    def scored(self, x):
        ae = self.trainer.ae
        ae.eval()
        acts = torch.relu((x - ae.b_dec) @ ae.W_enc + ae.b_enc)
        return acts, acts

    @torch.no_grad()
    def decode(self, codes, x):
        ae = self.trainer.ae
        return torch.stack([codes[:, :w] @ ae.W_dec[:w] + ae.b_dec for w in self.levels])


class Sparsify:
    """sparsify's TopK SparseCoder with its trainer's Adam step (lr 2e-4/sqrt(d_sae/2^14), linear warm-up and decay,
    loss = FVU, AuxK off by default); its transcoder starts from a zero decoder, as sparsify's does."""

    def __init__(self, transcoder, shape, k, seed, steps, train):
        from sparsify import SparseCoder, SparseCoderConfig

        d_in, d_out, d_sae, _, _, _ = shape
        torch.manual_seed(seed)
        self.transcoder = transcoder
        self.coder = SparseCoder(d_in, SparseCoderConfig(num_latents=d_sae, k=k, transcode=transcoder), device='cpu')
        if transcoder:
            self.coder.W_dec = torch.nn.Parameter(torch.zeros(d_sae, d_out))
            self.coder.b_dec = torch.nn.Parameter(torch.zeros(d_out))
        self.opt = torch.optim.Adam(self.coder.parameters(), lr=2e-4 / math.sqrt(d_sae / 2**14))
        warm = scaled(1000, 'sparsify', steps)
        schedule = lambda s: min(1.0, (s + 1) / warm) * max(0.0, (steps - s) / max(1, steps - warm))
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: min(1.0, schedule(s)))

    def step(self, x, y):
        self.coder.train()
        out = self.coder(x, y if self.transcoder else None)
        out.fvu.backward()
        if not self.transcoder:
            self.coder.remove_gradient_parallel_to_decoder_directions()
        self.opt.step()
        self.opt.zero_grad()
        self.sched.step()
        if not self.transcoder:
            self.coder.set_decoder_norm_to_unit_norm()

    def end_epoch(self):
        pass

    @torch.no_grad()
    def infer(self, x):
        self.coder.eval()
        top_acts, top_indices, _ = self.coder.encode(x)
        codes = torch.zeros(len(x), self.coder.num_latents).scatter_(1, top_indices, top_acts.float())
        return codes, self.coder.decode(top_acts, top_indices)[None]

    scored = None  # TopK keeps k per sample: its L0 is matched already


def is_transcoder(name: str) -> bool:
    return name.split(':')[1].removesuffix(CENTRED) in TRANSCODER_KINDS


def make_model(name, shape, k, seed, steps, train_x, train_y, overrides=None):
    "The contestant `library:kind` (SAELens's transcoders: `library:kind@centred` too) for `k` and `seed`."
    library, kind = name.split(':')
    centred = kind.endswith(CENTRED)
    kind = kind.removesuffix(CENTRED)
    transcoder = is_transcoder(name)
    train = (train_x, train_y if transcoder else train_x)
    if not transcoder:  # an SAE reconstructs its input
        shape = (shape[0], shape[0], *shape[2:])
    if centred and not (library == 'saelens' and transcoder):
        raise ValueError(f"{name!r}: only SAELens's transcoders have a centred variant")
    if library == 'ours':
        return Ours(kind, shape, k, seed, steps, train, overrides)
    if library == 'saelens':
        return SaeLens(kind.startswith('matryoshka'), transcoder, shape, k, seed, steps, train, centred)
    if library == 'dictlearn' and kind == 'matryoshka_sae':
        return DictLearn(shape, k, seed, steps, train)
    if library == 'sparsify' and kind in ('sae', 'transcoder'):
        return Sparsify(transcoder, shape, k, seed, steps, train)
    raise ValueError(f"unknown model {name!r}: one of {OUR_MODELS + PEER_MODELS}")


def parse_variant(text: str) -> dict:
    """'lr=5.7e-4,aux_coef=8' -> {'lr': 5.7e-4, 'aux_coef': 8.0} (DictConfig field names; a tuple's values separated by
    '/')."""
    out = {}
    for item in filter(None, text.split(',')):
        key, value = item.split('=')
        if key in ('clip', 'beta2', 'lr_floor', 'enc_init', 'centre'):
            out[key] = float(value)
            continue
        if key not in DictConfig.__dataclass_fields__:
            raise ValueError(f"--ours-variant: {key!r} is not a DictConfig field")
        default = getattr(DictConfig, key)
        if '/' in value:  # a tuple (level_weights, levels): 'level_weights=0.1/0.1/0.2/0.2/0.4'
            out[key] = tuple(float(x) if '.' in x else int(x) for x in value.split('/'))
            continue
        if default is None:  # a per-kind default (lr, aux_coef, dead_steps, ...): an int when it reads as one
            out[key] = int(value) if value.lstrip('-').isdigit() else float(value)
        else:
            out[key] = type(default)(value)
    return out


def matched_threshold(model, calibration_x, k) -> torch.Tensor | None:
    """The threshold on the model's own selection score at which its mean L0 on `calibration_x` is `k`: the (k·n)-th
    largest score there. None for a model without a score (TopK keeps k per sample already)."""
    if model.scored is None:
        return None
    score, value = model.scored(calibration_x)
    flat = torch.where(value > 0, score, torch.zeros_like(score)).flatten()
    n_keep = min(k * len(calibration_x), int((flat > 0).sum()))
    return flat.kthvalue(len(flat) - n_keep + 1).values


def matched_codes(model, x, threshold) -> torch.Tensor:
    "Codes of `x` at `threshold` (`matched_threshold`); the model's own codes when it has none."
    if threshold is None:
        return model.infer(x)[0]
    score, value = model.scored(x)
    return value * ((score >= threshold) & (value > 0))


def measure(model, x, y, train_x, calibration_x, k):
    """Held-out FVU per level, L0 and dead latents at L0 matched by construction (`matched_codes`), and L0 and FVU
    in the model's own inference mode (`native_*`); the dead fraction on the training inputs too, all of them and the
    first as many as the held-out split has: the two dead fractions on n samples tell rare latents from overfitted
    ones (a latent that fires on a few training samples in a thousand is silent on a held-out split by chance)."""
    native_codes, native_recons = model.infer(x)
    threshold = matched_threshold(model, calibration_x, k)
    codes = matched_codes(model, x, threshold)
    recons = native_recons if threshold is None else model.decode(codes, x)
    train_codes = matched_codes(model, train_x, threshold)
    fvus = [float(fvu(y, r)) for r in recons]
    return {
        'fvu': fvus,
        'fvu_first': fvus[0],
        'fvu_full': fvus[-1],
        'l0': float(l0(codes)[0]),
        'dead': dead_fraction(codes),
        'dead_train': dead_fraction(train_codes),
        'dead_train_n': dead_fraction(train_codes[: len(x)]),
        'native_l0': float(l0(native_codes)[0]),
        'native_fvu_full': float(fvu(y, native_recons[-1])),
        'native_dead': dead_fraction(native_codes),
    }


def run(contestants, data, shape, seeds, k, epochs, batch):
    "Train every contestant on the same batches, interleaved; returns {label: [per-seed measurements]}."
    (train_x, train_y), (test_x, test_y), calibration_x = data
    steps = epochs * math.ceil(len(train_x) / batch)
    results = {label: [] for label, _, _ in contestants}
    for seed in seeds:
        models = {
            label: make_model(name, shape, k, seed, steps, train_x, train_y, over) for label, name, over in contestants
        }
        seconds = {label: 0.0 for label in models}
        order = torch.Generator().manual_seed(seed)
        for _ in tqdm(range(epochs), desc=f'k={k} seed {seed}: {len(models)} models', unit='epoch'):
            for idx in torch.randperm(len(train_x), generator=order).split(batch):
                x, y = train_x[idx], train_y[idx]
                for label, name, _ in contestants:
                    model = models[label]
                    start = time.perf_counter()
                    model.step(x, y if is_transcoder(name) else x)
                    seconds[label] += time.perf_counter() - start
            for model in models.values():
                model.end_epoch()
        for label, name, _ in contestants:
            target = test_y if is_transcoder(name) else test_x
            row = measure(models[label], test_x, target, train_x, calibration_x, k)
            row['samples_per_s'] = steps * batch / seconds[label]
            results[label].append(row)
    return results


def summary_rows(results) -> list[dict]:
    "One row per model: mean and std over seeds of every measurement, FVU per level as lists."
    rows = []
    for label, per_seed in results.items():
        row = {'model': label, 'seeds': len(per_seed)}
        for key in per_seed[0]:
            values = np.array([r[key] for r in per_seed], dtype=float)
            row[key] = values.mean(0).tolist()
            row[f'{key}_std'] = values.std(0).tolist()
        rows.append(row)
    return rows


def print_table(rows, k, seeds, levels):
    print(f"\nk = {k}, seeds {seeds} (mean ± std over seeds); held-out FVU per level {list(levels)} at matched L0")
    print(
        f"{'model':<44}{'FVU full':>18}{'FVU first':>18}{'L0':>8}{'dead':>15}{'dead train':>12}{'same n':>8}"
        f"{'native L0':>10}{'native FVU':>11}{'samples/s':>11}  FVU per level"
    )
    for r in rows:
        first = f"{r['fvu_first']:.4f} ± {r['fvu_first_std']:.4f}" if len(r['fvu']) > 1 else '–'
        print(
            f"{r['model']:<44}{r['fvu_full']:>10.4f} ± {r['fvu_full_std']:.4f}{first:>18}{r['l0']:>8.1f}"
            f"{r['dead']:>8.1%} ± {r['dead_std']:.1%}{r['dead_train']:>12.1%}{r['dead_train_n']:>8.1%}"
            f"{r['native_l0']:>10.1f}{r['native_fvu_full']:>11.4f}{r['samples_per_s']:>11.0f}  "
            + ' '.join(f'{v:.5f}' for v in r['fvu'])
        )


def draw(record, path) -> None:
    "Held-out FVU against the level's width at matched L0: transcoders and SAEs apart, one panel per k (± std)."
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    tables = record['tables']
    fig, axes = plt.subplots(2, len(tables), figsize=(6 * len(tables), 8), squeeze=False)
    for col, table in enumerate(tables):
        for row, (family, what) in enumerate((('transcoder', 'h2 → h1'), ('sae', 'h2 → h2'))):
            ax = axes[row, col]
            for r in table['rows']:
                kind = r['model'].partition(':')[2]
                is_family = ('sae' in kind) == (family == 'sae')
                if len(r['fvu']) < 2 or not is_family:
                    continue
                style = '-' if r['model'].startswith('ours:') else '--'
                ax.errorbar(
                    record['levels'], r['fvu'], yerr=r['fvu_std'], ls=style, marker='o', capsize=2, label=r['model']
                )
            ax.set_xscale('log', base=2)
            ax.set_yscale('log')
            ax.set_xlabel('latents used (Matryoshka level)')
            ax.set_ylabel('held-out FVU')
            ax.set_title(f"Matryoshka {family}s ({what}), k = {table['k']}, L0 matched", fontsize=10)
            ax.legend(fontsize=7)
    fig.suptitle('Matryoshka dictionaries beside the peer libraries (mean ± std over seeds)', fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--profile', default='default')
    ap.add_argument('--k', type=int, nargs='+', default=[100])
    ap.add_argument('--seeds', type=int, nargs='+', default=[0])
    ap.add_argument('--epochs', type=int, default=BUDGET_EPOCHS, help="default: 20 (84,000 samples)")
    ap.add_argument('--models', nargs='+', default=list(OUR_MODELS + PEER_MODELS))
    ap.add_argument(
        '--ours-variant',
        action='append',
        default=[],
        help="extra 'ours' models with DictConfig overrides, e.g. 'lr=5.7e-4,aux_coef=8', or the "
        "ablation's beta2= and clip= (applied to every ours:* model given)",
    )
    ap.add_argument('--variants-only', action='store_true', help="train the ours:* models only with --ours-variant")
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--record', action='store_true', help="write the tables into the profile's results.json")
    ap.add_argument('--draw-only', action='store_true', help='draw the recorded tables again, training nothing')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_profile(args.profile)
    if args.draw_only:
        draw(json.loads((cfg.fig_dir / 'results.json').read_text())['peers'], cfg.fig_dir / 'peers_levels.png')
        raise SystemExit(0)
    train = load_activations(cfg.run_dir / 'activations', 'train')[0]
    test = load_activations(cfg.run_dir / 'activations', 'test')[0]
    val = load_activations(cfg.run_dir / 'activations', 'val')[0]
    levels = tuple(int(v) for v in cfg.dict_levels)
    epochs = args.epochs
    batch = int(cfg.dict_batch)
    shape = (train['h2'].shape[1], train['h1'].shape[1], levels[-1], levels, epochs, batch)
    steps = epochs * math.ceil(len(train['h2']) / batch)
    contestants = []
    for name in args.models:
        if not (args.variants_only and name.startswith('ours:')):
            contestants.append((name, name, None))
        if name.startswith('ours:'):
            contestants += [(f"{name} [{v}]", name, parse_variant(v)) for v in args.ours_variant]
    print(
        f"{cfg.name}: {len(train['h2'])} train / {len(test['h2'])} held-out samples, h2 {shape[0]}-d -> h1 "
        f"{shape[1]}-d, d_sae {levels[-1]}, batch {batch}, {epochs} epochs = {steps} steps, "
        f"{epochs * len(train['h2'])} samples, {args.threads} thread(s), torch {torch.__version__}"
    )
    print(
        f"schedules scaled to {steps} steps: SAELens dead window {scaled(1000, 'saelens', steps)} steps; "
        f"dictionary_learning warm-up and threshold start {scaled(1000, 'dictlearn', steps)} steps, dead after "
        f"{scaled(10_000_000 / 2_048, 'dictlearn', steps) * batch} samples; sparsify warm-up "
        f"{scaled(1000, 'sparsify', steps)} steps"
    )
    tables = []
    for k in args.k:
        data = ((train['h2'], train['h1']), (test['h2'], test['h1']), val['h2'])
        results = run(contestants, data, shape, args.seeds, k, epochs, batch)
        rows = summary_rows(results)
        print_table(rows, k, args.seeds, levels)
        tables.append({'k': k, 'rows': rows})
    if args.record:
        record = {
            'command': 'python benchmarks/peers.py ' + ' '.join(sys.argv[1:]),
            'date': time.strftime('%Y-%m-%d'),
            'seeds': args.seeds,
            'epochs': epochs,
            'steps': steps,
            'batch': batch,
            'levels': list(levels),
            'n_train': len(train['h2']),
            'n_test': len(test['h2']),
            'n_calibration': len(val['h2']),
            'tables': tables,
        }
        # a run of other k with the same seeds and budget keeps its tables (k = 32 and k = 100 run side by side)
        recorded = json.loads((cfg.fig_dir / 'results.json').read_text()).get('peers', {})
        if all(recorded.get(key) == record[key] for key in ('seeds', 'epochs', 'steps', 'levels')):
            kept = [t for t in recorded['tables'] if t['k'] not in args.k]
            record['tables'] = sorted(kept + tables, key=lambda t: t['k'])
            record['command'] = '; '.join(dict.fromkeys([recorded['command'], record['command']]))
        update_results(cfg, peers=record)
        draw(record, cfg.fig_dir / 'peers_levels.png')
        print(f"recorded in {cfg.fig_dir / 'results.json'} under peers; figure peers_levels.png")
