"""The one metrics module: accuracy, fidelity-to-input (FID-I), faithfulness (FA) and the suite.

Used alike by the classifier recipes (by-design interpretations) and by PIQ / L-MAC (post-hoc
masks). For a clip ``x`` (a log-spectrogram), a mask in [0, 1] and the classifier ``f`` (cosine
scores ``s(x)`` in [-1, 1]):

- ``x_int = mask * x`` (the interpretation), ``x_out = (1 - mask) * x`` (what it leaves out);
- ``c`` the class predicted on ``x`` (``argmax s(x)``, the same at every scale);
- probabilities at a scale ``k``: ``p^k(.) = softmax(k * s(.))``. Two scales are reported:
  ``k = 1``, the FocalNet paper's convention (the authors' code takes the softmax of the
  unscaled cosine scores), and ``k = score_scale``, the scale the classifier was trained with
  (30 here; the run's ``model.json``): the model's real probabilities, the L-MAC paper's
  convention (CNN14's linear logits).

At scale 1 (the FocalNet paper's names kept, then the suite with an ``_unscaled`` suffix):

- ``fid_i`` (paper, eq. 6; the L-MAC paper's Fid-In): ``[argmax f(x_int) == argmax f(x)]``,
  averaged over clips; it does not depend on the scale;
- ``fa`` (paper, eq. 7, mask-out; the L-MAC paper's FF at scale 1): ``p_c(x) - p_c(x_out)``;
- ``fa_mask_in``: ``p_c(x) - p_c(x_int)``, what the authors' code computed and what the paper's
  Table 1 reports. Both are kept;
- ``ai_unscaled``, ``ad_unscaled``, ``ag_unscaled``: AI, AD, AG below with ``p = p^1``.

At the run's ``score_scale`` (the L-MAC paper's names, no suffix), with ``p = p^k(x)``,
``o = p^k(x_int)``, ``r = p^k(x_out)`` (no forward beyond the two above):

- ``ai`` (average increase, %): ``100 * [p_c < o_c]``;
- ``ad`` (average drop, %): ``100 * relu(p_c - o_c) / p_c`` (softmax applied once: SpeechBrain's
  code applied it a second time, to probabilities);
- ``ag`` (average gain, %): ``100 * relu(o_c - p_c) / (1 - p_c)`` (0 when ``p_c`` is 1);
- ``ff`` (the L-MAC paper's FF, mask-out): ``p_c - r_c``;
- ``ff_mask_in``: ``p_c - o_c``;
- ``sps`` (Quantus ``Sparseness``): the Gini index of ``|mask| + 1e-7`` (higher: sparser);
- ``comp`` (Quantus ``Complexity``): the entropy (nats) of ``|mask| / sum |mask|`` (lower:
  simpler). SPS and COMP read the mask only: they have no scale.

Differences of probabilities are computed in float64 as differences of ``1 - p_c`` (the sum of
the other classes' probabilities), so that at scale 30, where ``p_c`` is often within 1e-7 of 1,
AG and FF keep their digits. SPS and COMP are undefined for a mask that keeps nothing; such
clips are left out of both (as SpeechBrain does) and counted in ``n_empty_masks``.

Example
-------
>>> import torch
>>> accumulator = MetricsAccumulator(n_classes=2, class_names=["dog", "rain"])
>>> accumulator.update(
...     targets=torch.tensor([0, 1, 1]),
...     pred=torch.tensor([0, 1, 0]),
...     fid_i=torch.tensor([1.0, 0.0, 1.0]),
...     fa=torch.tensor([0.1, 0.2, 0.3]),
...     fa_mask_in=torch.tensor([0.0, 0.0, 0.3]),
... )
>>> summary = accumulator.summary(quantile=0.9)
>>> round(summary["acc"], 4), round(summary["fid_i"], 4), round(summary["fa"], 4)
(0.6667, 0.6667, 0.2)
>>> summary["per_class_acc"]
{'dog': 1.0, 'rain': 0.5}
>>> summary["confusion_matrix"]
[[1, 0], [1, 1]]
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from data_prep.atomic import write_json

# Per-clip metrics averaged by ``MetricsAccumulator``: the paper's (scale 1), then the suite at
# the run's ``score_scale`` (the L-MAC paper's), the suite at scale 1, and the mask's own.
PAPER_KEYS = ("fid_i", "fa", "fa_mask_in")
SCALED_KEYS = ("ai", "ad", "ag", "ff", "ff_mask_in")
UNSCALED_KEYS = ("ai_unscaled", "ad_unscaled", "ag_unscaled")
MASK_KEYS = ("sps", "comp")
SUITE_KEYS = SCALED_KEYS + UNSCALED_KEYS + MASK_KEYS
METRIC_KEYS = PAPER_KEYS + SUITE_KEYS


def probabilities(cosine_scores: torch.Tensor, score_scale: float = 1.0) -> torch.Tensor:
    """Class probabilities from the classifier's cosine scores: ``softmax(score_scale * s)``.

    At ``score_scale = 1`` (the default) the softmax is taken over the raw cosine similarities
    in [-1, 1], the FocalNet authors' convention for FA: probabilities close to uniform (hence
    the paper's small FA values, ~0.01). At the classifier's training scale (a run's
    ``model.json`` ``score_scale``) they are the model's real probabilities.

    Arguments
    ---------
    cosine_scores : torch.Tensor
        [batch, n_classes] cosine scores (a SpeechBrain ``[batch, 1, n_classes]`` output is
        accepted too).
    score_scale : float
        The scale ``k`` of ``softmax(k * s)``; positive.

    Returns
    -------
    torch.Tensor
        [batch, n_classes], float32, each row sums to 1.

    Example
    -------
    >>> probabilities(torch.tensor([[0.0, 0.0], [1.0, -1.0]]))
    tensor([[0.5000, 0.5000],
            [0.8808, 0.1192]])
    >>> probabilities(torch.tensor([[0.1, -0.1]]), score_scale=10.0)
    tensor([[0.8808, 0.1192]])
    """
    scale = _checked_scale(score_scale)
    return torch.softmax(scale * _as_2d(cosine_scores).float(), dim=-1)


def _checked_scale(score_scale) -> float:
    """``score_scale`` as a positive finite float; ValueError naming it otherwise."""
    try:
        scale = float(score_scale)
    except (TypeError, ValueError):
        scale = float("nan")
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(
            f"score_scale must be a positive number (the classifier's training scale, a run's "
            f"model.json score_scale; 1 for the unscaled cosines), got {score_scale!r}"
        )
    return scale


def suite_at_scale(
    scores: torch.Tensor,
    int_scores: torch.Tensor,
    out_scores: torch.Tensor,
    score_scale: float,
) -> dict[str, torch.Tensor]:
    """Per-clip AI, AD, AG, FF and FF mask-in with the probabilities ``softmax(k * s)``.

    ``c`` is the class predicted on ``x`` (``argmax scores``). Every difference of probabilities
    is taken as a difference of ``1 - p_c`` (the sum of the other classes' probabilities, in
    float64), which keeps its digits when ``p_c`` is within float32's resolution of 1.

    Arguments
    ---------
    scores, int_scores, out_scores : torch.Tensor
        Cosine scores [B, n_classes] of ``x``, ``x_int`` and ``x_out``.
    score_scale : float
        The scale ``k``.

    Returns
    -------
    dict of torch.Tensor
        float32 [B] each: ``ai``, ``ad``, ``ag`` (in %), ``ff`` (``p_c(x) - p_c(x_out)``),
        ``ff_mask_in`` (``p_c(x) - p_c(x_int)``), ``p_x``, ``p_int`` (``p_c(x)``,
        ``p_c(x_int)``).

    Example
    -------
    >>> s, s_int = torch.tensor([[0.2, 0.0]]), torch.tensor([[0.3, 0.0]])
    >>> at_1 = suite_at_scale(s, s_int, -s, score_scale=1.0)
    >>> at_30 = suite_at_scale(s, s_int, -s, score_scale=30.0)
    >>> round(float(at_1["ag"]), 2), round(float(at_30["ag"]), 2)  # a gain of 0.1 in cosine
    (5.47, 95.01)
    """
    scale = _checked_scale(score_scale)
    scores, int_scores, out_scores = (_as_2d(t).double() for t in (scores, int_scores, out_scores))
    index = scores.argmax(dim=-1, keepdim=True)
    others = torch.ones_like(scores).scatter_(-1, index, 0.0)

    def rest_and_p(values):  # 1 - p_c and p_c
        p = torch.softmax(scale * values, dim=-1)
        return (p * others).sum(dim=-1), p.gather(-1, index).squeeze(-1)

    rest_x, p_x = rest_and_p(scores)
    rest_int, p_int = rest_and_p(int_scores)
    rest_out, _ = rest_and_p(out_scores)
    gain = torch.relu(rest_x - rest_int)  # relu(o_c - p_c)
    zero = torch.zeros_like(gain)
    values = {
        "ai": 100.0 * (rest_int < rest_x).double(),
        "ad": 100.0 * torch.relu(rest_int - rest_x) / p_x,
        "ag": torch.where(rest_x > 0, 100.0 * gain / torch.where(rest_x > 0, rest_x, 1.0), zero),
        "ff": rest_out - rest_x,
        "ff_mask_in": rest_int - rest_x,
        "p_x": p_x,
        "p_int": p_int,
    }
    return {key: value.float() for key, value in values.items()}


def _as_2d(scores: torch.Tensor) -> torch.Tensor:
    """[B, n] scores from [B, n] or SpeechBrain's [B, 1, n]."""
    if scores.dim() == 3 and scores.shape[1] == 1:
        scores = scores.squeeze(1)
    if scores.dim() != 2:
        raise ValueError(f"scores must be [batch, n_classes], got shape {tuple(scores.shape)}")
    return scores


def sparseness(mask: torch.Tensor) -> torch.Tensor:
    """Quantus ``Sparseness`` of each mask: the Gini index of ``|mask| + 1e-7``, in [0, 1).

    NaN for a mask that is zero everywhere (left out by ``MetricsAccumulator``).

    Example
    -------
    >>> one_cell = torch.zeros(1, 2, 2)
    >>> one_cell[0, 0, 0] = 1.0
    >>> round(float(sparseness(one_cell)[0]), 4), float(sparseness(torch.ones(1, 2, 2))[0])
    (0.75, 0.0)
    """
    values = mask.detach().abs().flatten(1).double()
    empty = values.sum(dim=1) == 0
    values = torch.sort(values + 1e-7, dim=1).values
    n = values.shape[1]
    weights = 2 * torch.arange(1, n + 1, device=values.device, dtype=values.dtype) - n - 1
    gini = (values * weights).sum(dim=1) / (n * values.sum(dim=1))
    return torch.where(empty, torch.full_like(gini, float("nan")), gini).float()


def complexity(mask: torch.Tensor) -> torch.Tensor:
    """Quantus ``Complexity`` of each mask: the entropy (nats) of ``|mask| / sum |mask|``.

    ``log(cells)`` for a uniform mask, 0 for a single cell; NaN for a mask that is zero
    everywhere (left out by ``MetricsAccumulator``).

    Example
    -------
    >>> one_cell = torch.zeros(1, 2, 2)
    >>> one_cell[0, 0, 0] = 1.0
    >>> float(complexity(one_cell)[0]), round(float(complexity(torch.ones(1, 2, 2))[0]), 4)
    (0.0, 1.3863)
    """
    values = mask.detach().abs().flatten(1).double()
    total = values.sum(dim=1, keepdim=True)
    share = values / total
    entropy = 0.0 - torch.special.xlogy(share, share).sum(dim=1)  # 0.0, not -0.0
    return torch.where(total.squeeze(1) == 0, float("nan"), entropy).float()


def interpretation_scores(
    classify: Callable[[torch.Tensor], torch.Tensor],
    log_spec: torch.Tensor,
    mask: torch.Tensor,
    scores: torch.Tensor | None = None,
    *,
    score_scale: float,
) -> dict[str, torch.Tensor]:
    """Per-clip FID-I, FA and the suite of a batch of masks, at scale 1 and at ``score_scale``.

    ``classify`` is called once on ``x = log_spec`` if ``scores`` is None, then once on the
    batch ``cat([x_int, x_out])``; both scales come from the same forwards. Runs under
    ``torch.no_grad()``.

    Arguments
    ---------
    classify : callable
        Maps a log-spectrogram batch [B, T, F] to cosine scores [B, n_classes] (or
        [B, 1, n_classes]); the classifier in eval mode.
    log_spec : torch.Tensor
        [batch, time, freq], the unmasked input ``x``.
    mask : torch.Tensor
        [batch, time, freq], values in [0, 1] (binary for by-design maps, sigmoid for PIQ).
    scores : torch.Tensor, optional
        Cosine scores of ``x`` already computed by the caller's forward; saves one forward.
    score_scale : float
        The classifier's training scale (``score_scale`` of the run's ``model.json``, of the
        hparams or of the loss): the scale of ``ai``, ``ad``, ``ag``, ``ff``, ``ff_mask_in``.
        Required, so that no caller gets the unscaled suite under the scaled names by default.

    Returns
    -------
    dict of torch.Tensor
        ``pred`` (argmax on ``x``, long [B]), ``pred_int`` (argmax on ``x_int``, long [B]),
        ``fid_i`` (1.0 / 0.0 [B]), ``fa`` (mask-out, eq. 7 [B]) and ``fa_mask_in`` ([B]) at
        scale 1, ``ai``, ``ad``, ``ag``, ``ff``, ``ff_mask_in`` at ``score_scale``,
        ``ai_unscaled``, ``ad_unscaled``, ``ag_unscaled`` at scale 1, ``sps``, ``comp`` ([B]
        each; see the module docstring), ``p_x`` and ``p_int`` (``p_c(x)``, ``p_c(x_int)`` at
        scale 1 [B]), ``p_x_scaled`` and ``p_int_scaled`` (the same at ``score_scale``),
        ``x_int`` ([B, T, F]) and ``masked_scores`` (the classifier's scores of
        ``cat([x_int, x_out])`` [2B, ...]).

    Example
    -------
    >>> torch.manual_seed(0) and None
    >>> weight = torch.randn(3, 4)
    >>> def classify(x):
    ...     return torch.nn.functional.normalize(x.mean(dim=1) @ weight.T, dim=-1)
    >>> x = torch.rand(2, 5, 4)
    >>> out = interpretation_scores(classify, x, torch.ones_like(x), score_scale=30.0)
    >>> out["fid_i"], out["fa_mask_in"], out["ff_mask_in"]
    (tensor([1., 1.]), tensor([0., 0.]), tensor([0., 0.]))
    """
    _checked_scale(score_scale)
    with torch.no_grad():
        if mask.shape != log_spec.shape:
            raise ValueError(
                f"mask {tuple(mask.shape)} and log_spec {tuple(log_spec.shape)} shapes differ"
            )
        mask = mask.to(device=log_spec.device, dtype=log_spec.dtype)
        x_int = mask * log_spec
        x_out = (1.0 - mask) * log_spec
        if scores is None:
            scores = classify(log_spec)
        masked_scores = classify(torch.cat([x_int, x_out], dim=0))
        int_scores, out_scores = _as_2d(masked_scores).chunk(2, dim=0)
        unscaled = suite_at_scale(scores, int_scores, out_scores, 1.0)
        scaled = suite_at_scale(scores, int_scores, out_scores, score_scale)
        pred = _as_2d(scores).float().argmax(dim=-1)
        pred_int = int_scores.float().argmax(dim=-1)
        return {
            "pred": pred,
            "pred_int": pred_int,
            "fid_i": (pred_int == pred).float(),
            "fa": unscaled["ff"],
            "fa_mask_in": unscaled["ff_mask_in"],
            **{key: scaled[key] for key in SCALED_KEYS},
            **{f"{key}_unscaled": unscaled[key] for key in ("ai", "ad", "ag")},
            "sps": sparseness(mask),
            "comp": complexity(mask),
            "p_x": unscaled["p_x"],
            "p_int": unscaled["p_int"],
            "p_x_scaled": scaled["p_x"],
            "p_int_scaled": scaled["p_int"],
            "x_int": x_int,
            "masked_scores": masked_scores,
        }


class MetricsAccumulator:
    """Running ACC, FID-I, FA, per-class accuracy and confusion matrix over batches.

    All state is kept in tensors (see :meth:`state_tensors`) so that, in distributed runs, each
    process can ``torch.distributed.all_reduce(t, op=SUM)`` every state tensor in place before
    calling :meth:`summary` (nothing here calls ``torch.distributed``).

    Arguments
    ---------
    n_classes : int
        Number of classes (50 for ESC-50).
    class_names : sequence of str, optional
        Names by class index; defaults to ``"0"``, ``"1"``, ...
    device : str or torch.device
        Where the state tensors live (a CUDA device for NCCL all-reduce).

    Example
    -------
    >>> accumulator = MetricsAccumulator(n_classes=3)
    >>> accumulator.summary()["acc"] is None
    True
    """

    def __init__(
        self,
        n_classes: int,
        class_names: Sequence[str] | None = None,
        device: str | torch.device = "cpu",
    ):
        if class_names is not None and len(class_names) != n_classes:
            raise ValueError(f"{len(class_names)} class names for {n_classes} classes")
        self.n_classes = int(n_classes)
        self.class_names = (
            [str(name) for name in class_names]
            if class_names is not None
            else [str(index) for index in range(self.n_classes)]
        )
        self.device = torch.device(device)
        self.confusion = torch.zeros(
            self.n_classes, self.n_classes, dtype=torch.long, device=self.device
        )
        # per metric of METRIC_KEYS: [sum, number of clips it was given for]; then n_clips
        self.sums = torch.zeros(2 * len(METRIC_KEYS) + 1, dtype=torch.float64, device=self.device)

    def update(
        self,
        targets: torch.Tensor,
        pred: torch.Tensor,
        fid_i: torch.Tensor,
        fa: torch.Tensor,
        fa_mask_in: torch.Tensor,
        **suite: torch.Tensor,
    ) -> None:
        """Adds a batch of per-clip results.

        Arguments
        ---------
        targets : torch.Tensor
            True class indices [B] (a [B, 1] SpeechBrain label tensor is flattened).
        pred : torch.Tensor
            Predicted class indices on the unmasked input [B].
        fid_i : torch.Tensor
            1.0 / 0.0 per clip [B].
        fa : torch.Tensor
            Mask-out faithfulness per clip [B].
        fa_mask_in : torch.Tensor
            Mask-in faithfulness per clip [B].
        **suite : torch.Tensor
            Any of ``SUITE_KEYS`` (``ai``, ``ad``, ``ag``, ``ff``, ``ff_mask_in`` at the run's
            scale, ``ai_unscaled``, ``ad_unscaled``, ``ag_unscaled``, ``sps``, ``comp``) per clip
            [B] (e.g. from ``interpretation_scores``); NaN values (SPS, COMP of an empty mask)
            are left out.
        """
        unknown = sorted(set(suite) - set(SUITE_KEYS))
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; known: {SUITE_KEYS}")
        targets = targets.reshape(-1).long().to(self.device)
        pred = pred.reshape(-1).long().to(self.device)
        per_clip = {"fid_i": fid_i, "fa": fa, "fa_mask_in": fa_mask_in, **suite}
        if any(t.numel() != targets.numel() for t in [pred, *per_clip.values()]):
            raise ValueError("targets, pred and every metric must have one value a clip")
        flat_index = targets * self.n_classes + pred
        self.confusion += torch.bincount(flat_index, minlength=self.n_classes**2).reshape(
            self.n_classes, self.n_classes
        )
        for key, values in per_clip.items():
            values = values.detach().reshape(-1).to(self.device, torch.float64)
            given = ~torch.isnan(values)
            index = 2 * METRIC_KEYS.index(key)
            self.sums[index] += values[given].sum()
            self.sums[index + 1] += given.sum()
        self.sums[-1] += targets.numel()

    def add_scores(self, targets: torch.Tensor, result: dict[str, torch.Tensor]) -> None:
        """``update`` with the output of ``interpretation_scores`` (every metric it gives)."""
        self.update(
            targets,
            result["pred"],
            **{key: result[key] for key in METRIC_KEYS if key in result},
        )

    def state_tensors(self) -> list[torch.Tensor]:
        """The state tensors (the objects themselves, not copies), to all-reduce with SUM.

        Returns
        -------
        list of torch.Tensor
            ``[confusion (long [n, n]), sums (float64: sum and count of each metric of
            METRIC_KEYS, then n_clips)]``.

        Example
        -------
        >>> [t.shape for t in MetricsAccumulator(2).state_tensors()]
        [torch.Size([2, 2]), torch.Size([27])]
        """
        return [self.confusion, self.sums]

    def summary(
        self,
        quantile: float | None = None,
        n_params: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The metrics so far, as JSON-ready Python values.

        Arguments
        ---------
        quantile : float, optional
            The quantile order used for the masks (recorded as is).
        n_params : int, optional
            Parameter count to record (classifier, or classifier + interpreter).
        extra : dict, optional
            Further entries merged into the summary (they override same-named keys).

        Returns
        -------
        dict
            ``acc`` and every key of ``METRIC_KEYS`` (None when no clip, or when the metric
            was never given), ``n_empty_masks`` (clips left out of SPS and COMP), ``n_clips``,
            ``quantile``, ``n_params``, ``per_class_acc`` (class name -> accuracy, None for a
            class with no clip) and ``confusion_matrix`` (rows: true class, columns: predicted).
        """
        confusion = self.confusion.cpu()
        sums = self.sums.cpu().tolist()
        n_clips = int(round(sums[-1]))
        metrics = {}
        for index, key in enumerate(METRIC_KEYS):
            total, count = sums[2 * index], sums[2 * index + 1]
            metrics[key] = total / count if count else None
        n_sps = int(round(sums[2 * METRIC_KEYS.index("sps") + 1]))

        per_class_total = confusion.sum(dim=1).tolist()
        per_class_correct = confusion.diagonal().tolist()
        summary: dict[str, Any] = {
            "acc": float(sum(per_class_correct)) / n_clips if n_clips else None,
            **metrics,
            "n_empty_masks": n_clips - n_sps if metrics["sps"] is not None else None,
            "n_clips": n_clips,
            "quantile": quantile,
            "n_params": n_params,
            "per_class_acc": {
                name: (correct / total if total else None)
                for name, correct, total in zip(
                    self.class_names, per_class_correct, per_class_total, strict=True
                )
            },
            "confusion_matrix": confusion.tolist(),
        }
        if extra:
            summary.update(extra)
        return summary


def _json_default(value: Any) -> Any:
    """Tensors and numpy values as plain Python for ``json.dump``."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def write_metrics_json(summary: dict[str, Any], path: str | os.PathLike) -> None:
    """Writes a metrics summary as JSON (indent 2), atomically (temporary file + rename).

    Arguments
    ---------
    summary : dict
        E.g. :meth:`MetricsAccumulator.summary`; tensors and numpy values are converted.
    path : str or path-like
        Output file; its folder is created if needed.

    Example
    -------
    >>> import tempfile, json, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "metrics.json"
    >>> write_metrics_json({"acc": 0.5, "n_clips": 2}, path)
    >>> json.loads(path.read_text())
    {'acc': 0.5, 'n_clips': 2}
    """
    write_json(path, summary, default=_json_default)
