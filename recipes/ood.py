"""In and out of distribution: every method's metrics on clean and on overlapped clips.

After SpeechBrain's ESC-50 ``eval.py`` (L-MAC paper), with the level of the overlap given as a
signal-to-noise ratio: each clip ``s`` and an interferer ``n``, both scaled to unit energy, are
summed as ``s + 10^(-snr/20) * n`` and peak-normalised (as every clip here).

- ``noise:SNR``: white Gaussian noise (a seeded generator; SpeechBrain's ``white_noise`` is
  ``noise:6.02``, unit-energy noise at half the clip's amplitude);
- ``mix:SNR``: another clip (SpeechBrain's ``mixtures``, ``0.8 s + 0.2 n``, is ``mix:12.04``);
- ``clean``: the clips as they are.

Two protocols (``PROTOCOLS``) say which clips are overlapped with which interferers:

- ``next_other_class`` (the default, and what this project's tables used): the test fold's clips,
  each once, the mixture's interferer the next test clip (in manifest order, wrapping around) of
  another class, one noise draw per clip;
- ``authors`` (SpeechBrain's ``eval.py``, ``ESCContaminated``): the **validation** fold's clips,
  each overlapped twice (``AUTHORS_DRAWS``): with two distinct test-fold clips drawn at random
  (seeded), of any class, or with two noise draws; its default conditions are the authors'
  levels, ``AUTHORS_CONDITIONS``. The clean condition scores each validation clip once.

The label stays the original clip's. Every method is scored by ``interpreters.metrics`` on the
same log-spectrograms: every method of ``--methods`` (``interpreters.methods``), same-area masks
at quantile q, soft masks as they are; the suite at scale 1 and at the classifier's
``score_scale``.

Example
-------
>>> parse_condition("noise:6"), parse_condition("clean")
(('noise', 6.0), ('clean', None))
>>> wave = overlap(torch.ones(4), torch.tensor([1.0, -1.0, 1.0, -1.0]), snr_db=0.0)
>>> wave.tolist()
[1.0, 0.0, 1.0, 0.0]
"""

from __future__ import annotations

import random

import torch

from interpreters.methods import method_masks
from interpreters.metrics import METRIC_KEYS, MetricsAccumulator, interpretation_scores

DEFAULT_CONDITIONS = ("clean", "noise:12", "noise:6", "noise:0", "mix:12", "mix:6", "mix:0")
# SpeechBrain's eval.py levels: white_noise (s + 0.5 n) and mixtures (0.8 s + 0.2 n)
AUTHORS_CONDITIONS = ("clean", "noise:6.02", "mix:12.04")
KINDS = ("clean", "noise", "mix")
PROTOCOLS = ("next_other_class", "authors")
AUTHORS_DRAWS = 2  # eval.py's overlap_multiplier


def parse_condition(text: str) -> tuple[str, float | None]:
    """``"clean"``, ``"noise:SNR"`` or ``"mix:SNR"`` (dB) as ``(kind, snr_db)``; ValueError else."""
    kind, _, snr = str(text).partition(":")
    if kind == "clean" and not snr:
        return kind, None
    if kind in ("noise", "mix") and snr:
        try:
            return kind, float(snr)
        except ValueError:
            pass
    raise ValueError(f"condition {text!r}: use clean, noise:SNR or mix:SNR (SNR in dB, e.g. mix:6)")


def overlap(clean: torch.Tensor, other: torch.Tensor, snr_db: float) -> torch.Tensor:
    """``clean`` and ``other`` at unit energy, summed at ``snr_db``, peak-normalised."""
    signal = clean / clean.norm().clamp_min(1e-12)
    interferer = other / other.norm().clamp_min(1e-12)
    mixture = signal + 10.0 ** (-snr_db / 20.0) * interferer
    return mixture / mixture.abs().max().clamp_min(1e-12)


def interferers(labels: list[int]) -> list[int]:
    """For each clip, the index of the next clip (wrapping around) of another class.

    Example
    -------
    >>> interferers([0, 0, 1, 2])
    [2, 2, 3, 0]
    """
    n = len(labels)
    chosen = []
    for i, label in enumerate(labels):
        for step in range(1, n):
            j = (i + step) % n
            if labels[j] != label:
                chosen.append(j)
                break
        else:
            raise ValueError("mix conditions need test clips of at least two classes")
    return chosen


def condition_waves(waves, labels, condition: str, seed: int = 0) -> torch.Tensor:
    """The test clips [N, samples] under ``condition``, protocol ``next_other_class`` (see the
    module docstring)."""
    kind, snr_db = parse_condition(condition)
    if kind == "clean":
        return waves
    if kind == "noise":
        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn(waves.shape, generator=generator)
        return torch.stack([overlap(w, n, snr_db) for w, n in zip(waves, noise, strict=True)])
    others = interferers(labels)
    return torch.stack([overlap(waves[i], waves[j], snr_db) for i, j in enumerate(others)])


def authors_interferers(n_clips: int, n_pool: int, draws: int = AUTHORS_DRAWS, seed: int = 0):
    """For each of ``n_clips`` clips, ``draws`` distinct indices into an interferer pool of
    ``n_pool`` clips, drawn at random whatever their class (``eval.py``'s
    ``random.sample(pool, overlap_multiplier)`` per clip), from a generator seeded by ``seed``.

    Example
    -------
    >>> pairs = authors_interferers(3, 5, seed=1)
    >>> len(pairs), [len(set(p)) for p in pairs], pairs == authors_interferers(3, 5, seed=1)
    (3, [2, 2, 2], True)
    """
    if n_pool < draws:
        raise ValueError(
            f"the authors' protocol draws {draws} interferers a clip: the pool has {n_pool}"
        )
    generator = random.Random(seed)
    return [generator.sample(range(n_pool), draws) for _ in range(n_clips)]


def protocol_waves(
    waves: torch.Tensor,
    labels: list[int],
    condition: str,
    protocol: str = "next_other_class",
    pool: torch.Tensor | None = None,
    seed: int = 0,
) -> tuple[torch.Tensor, list[int]]:
    """The clips under ``condition`` and ``protocol`` (see the module docstring).

    Arguments
    ---------
    waves : torch.Tensor
        [N, samples]: the clips scored (the test fold; the validation fold for ``authors``).
    labels : list of int
        Their labels.
    condition : str
        ``clean``, ``noise:SNR`` or ``mix:SNR``.
    protocol : str
        One of ``PROTOCOLS``.
    pool : torch.Tensor, optional
        [M, samples]: the interferers of ``authors``' mixtures (the test fold).
    seed : int
        Seeds the noise and the authors' draws.

    Returns
    -------
    tuple
        The overlapped clips [N', samples] and, for each, the index of its clip in ``waves``
        (so its label): ``N' = N`` except for the authors' overlapped conditions,
        ``AUTHORS_DRAWS * N`` (each clip's draws one after the other).

    Example
    -------
    >>> waves, pool = torch.randn(3, 50), torch.randn(4, 50)
    >>> mixed, clip = protocol_waves(waves, [0, 1, 1], "mix:12", "authors", pool)
    >>> tuple(mixed.shape), clip
    ((6, 50), [0, 0, 1, 1, 2, 2])
    >>> protocol_waves(waves, [0, 1, 1], "clean", "authors", pool)[1]
    [0, 1, 2]
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")
    kind, snr_db = parse_condition(condition)
    if protocol == "next_other_class" or kind == "clean":
        return condition_waves(waves, labels, condition, seed), list(range(len(waves)))
    clip = [i for i in range(len(waves)) for _ in range(AUTHORS_DRAWS)]
    if kind == "noise":
        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn((len(clip), waves.shape[1]), generator=generator)
        others = list(noise)
    else:
        if pool is None or len(pool) == 0:
            raise ValueError("the authors' mixtures need a pool of interferers (the test fold)")
        pairs = authors_interferers(len(waves), len(pool), seed=seed)
        others = [pool[j] for pair in pairs for j in pair]
    mixed = [overlap(waves[i], other, snr_db) for i, other in zip(clip, others, strict=True)]
    return torch.stack(mixed), clip


@torch.no_grad()
def ood_rows(
    model,
    waves: torch.Tensor,
    labels: list[int],
    conditions=DEFAULT_CONDITIONS,
    quantile: float | None = None,
    methods=("by_design",),
    trained: dict | None = None,
    batch_size: int = 8,
    seed: int = 0,
    progress=None,
    protocol: str = "next_other_class",
    pool: torch.Tensor | None = None,
) -> list[dict]:
    """One row per condition and method: ``condition``, ``kind``, ``snr_db``, ``protocol``,
    ``method``, ``acc``, the metrics of ``interpreters.metrics.METRIC_KEYS``, ``score_scale``
    (the scale of ``ai``, ``ad``, ``ag``, ``ff``, ``ff_mask_in``) and ``n_clips`` (the clips
    scored: ``AUTHORS_DRAWS`` per clip in the authors' overlapped conditions).

    ``model`` is a ``recipes.loading.LoadedModel``; ``waves`` [N, samples] and ``labels`` the
    clips to overlap (the test fold; the validation fold for the ``authors`` protocol, whose
    mixtures draw from ``pool``, the test fold); ``methods`` are registry names (same-area
    masks at ``quantile``, default the run's q), ``trained`` the trained methods' modules.
    ``progress`` wraps the batch iterator (e.g. tqdm).
    """
    q = model.quantile if quantile is None else float(quantile)
    n_classes = len(model.class_names)
    rows = []
    for condition in conditions:
        kind, snr_db = parse_condition(condition)
        condition_wave, clip = protocol_waves(waves, labels, condition, protocol, pool, seed)
        targets = torch.as_tensor([labels[i] for i in clip])
        accumulators = {method: MetricsAccumulator(n_classes) for method in methods}
        generator = torch.Generator().manual_seed(seed)
        starts = range(0, len(condition_wave), batch_size)
        for start in progress(starts, desc=condition) if progress else starts:
            batch = condition_wave[start : start + batch_size].to(model.device)
            batch_targets = targets[start : start + batch_size]
            log_spec, _ = model.features(batch, with_phase=False)
            scores, masks = method_masks(model.classifier, log_spec, methods, q, trained, generator)
            for method in methods:
                result = interpretation_scores(
                    model.classify, log_spec, masks[method], scores, score_scale=model.score_scale
                )
                accumulators[method].add_scores(batch_targets, result)
        for method in methods:
            summary = accumulators[method].summary(quantile=q)
            rows.append(
                {
                    "condition": condition,
                    "kind": kind,
                    "snr_db": snr_db,
                    "protocol": protocol,
                    "method": method,
                    "acc": summary["acc"],
                    **{key: summary[key] for key in METRIC_KEYS},
                    "score_scale": model.score_scale,
                    "n_clips": summary["n_clips"],
                }
            )
    return rows
