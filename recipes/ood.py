"""In and out of distribution: every method's metrics on clean and on overlapped test clips.

The protocol of SpeechBrain's ESC-50 ``eval.py`` (L-MAC paper), with the level of the overlap
given as a signal-to-noise ratio: each test clip ``s`` and an interferer ``n``, both scaled to
unit energy, are summed as ``s + 10^(-snr/20) * n`` and peak-normalised (as every clip here).

- ``noise:SNR``: white Gaussian noise (a seeded generator; SpeechBrain's ``white_noise`` is
  ``noise:6.02``, unit-energy noise at half the clip's amplitude);
- ``mix:SNR``: the next test clip (in manifest order, wrapping around) of another class
  (SpeechBrain's ``mixtures`` draw any clip at ``0.8 s + 0.2 n``, i.e. ``mix:12.04``);
- ``clean``: the clips as they are.

The label stays the original clip's. Every method is scored by ``interpreters.metrics`` on the
same log-spectrograms: every method of ``--methods`` (``interpreters.methods``), same-area masks
at quantile q, soft masks as they are.

Example
-------
>>> parse_condition("noise:6"), parse_condition("clean")
(('noise', 6.0), ('clean', None))
>>> wave = overlap(torch.ones(4), torch.tensor([1.0, -1.0, 1.0, -1.0]), snr_db=0.0)
>>> wave.tolist()
[1.0, 0.0, 1.0, 0.0]
"""

from __future__ import annotations

import torch

from interpreters.methods import method_masks
from interpreters.metrics import METRIC_KEYS, MetricsAccumulator, interpretation_scores

DEFAULT_CONDITIONS = ("clean", "noise:12", "noise:6", "noise:0", "mix:12", "mix:6", "mix:0")
KINDS = ("clean", "noise", "mix")


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
    """The test clips [N, samples] under ``condition`` (see the module docstring)."""
    kind, snr_db = parse_condition(condition)
    if kind == "clean":
        return waves
    if kind == "noise":
        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn(waves.shape, generator=generator)
        return torch.stack([overlap(w, n, snr_db) for w, n in zip(waves, noise, strict=True)])
    others = interferers(labels)
    return torch.stack([overlap(waves[i], waves[j], snr_db) for i, j in enumerate(others)])


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
) -> list[dict]:
    """One row per condition and method: ``condition``, ``kind``, ``snr_db``, ``method``,
    ``acc``, the metrics of ``interpreters.metrics.METRIC_KEYS`` and ``n_clips``.

    ``model`` is a ``recipes.loading.LoadedModel``; ``methods`` are registry names (same-area
    masks at ``quantile``, default the run's q), ``trained`` the trained methods' modules.
    ``progress`` wraps the batch iterator (e.g. tqdm).
    """
    q = model.quantile if quantile is None else float(quantile)
    n_classes = len(model.class_names)
    targets = torch.as_tensor(labels)
    rows = []
    for condition in conditions:
        kind, snr_db = parse_condition(condition)
        condition_wave = condition_waves(waves, labels, condition, seed)
        accumulators = {method: MetricsAccumulator(n_classes) for method in methods}
        generator = torch.Generator().manual_seed(seed)
        starts = range(0, len(condition_wave), batch_size)
        for start in progress(starts, desc=condition) if progress else starts:
            batch = condition_wave[start : start + batch_size].to(model.device)
            batch_targets = targets[start : start + batch_size]
            log_spec, _ = model.features(batch, with_phase=False)
            scores, masks = method_masks(model.classifier, log_spec, methods, q, trained, generator)
            for method in methods:
                result = interpretation_scores(model.classify, log_spec, masks[method], scores)
                accumulators[method].add_scores(batch_targets, result)
        for method in methods:
            summary = accumulators[method].summary(quantile=q)
            rows.append(
                {
                    "condition": condition,
                    "kind": kind,
                    "snr_db": snr_db,
                    "method": method,
                    "acc": summary["acc"],
                    **{key: summary[key] for key in METRIC_KEYS},
                    "n_clips": summary["n_clips"],
                }
            )
    return rows
