"""Pictures and sounds of interpretations: confusion matrix, spectrogram panels, WAV files.

Figures are drawn with matplotlib's object-oriented API on the Agg canvas (no pyplot, no global
backend change, no display needed). Sounds are written with soundfile as 16-bit PCM.

Example
-------
>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> save_wav(torch.zeros(1600), folder / "silence.wav")
>>> sf.info(str(folder / "silence.wav")).duration
0.1
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import soundfile as sf
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from data_prep.atomic import atomic_path
from recipes.features import HOP_LENGTH, SAMPLE_RATE


def _to_numpy(value: torch.Tensor | np.ndarray | Sequence) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().float().cpu().numpy()
    return np.asarray(value)


def _new_figure(figsize: tuple[float, float]) -> Figure:
    figure = Figure(figsize=figsize)
    FigureCanvasAgg(figure)
    return figure


def _save_figure(figure: Figure, path: str | os.PathLike, dpi: int) -> None:
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png")


def save_confusion_matrix_png(
    confusion: torch.Tensor | np.ndarray | Sequence[Sequence[int]],
    class_names: Sequence[str],
    path: str | os.PathLike,
) -> None:
    """Draws a confusion matrix (rows: true class, columns: predicted class) to a PNG file.

    Sized for 50 classes: small tick labels, counts written in non-empty cells, a colour bar and
    the accuracy in the title.

    Arguments
    ---------
    confusion : tensor, array or list of lists
        [n_classes, n_classes] counts, e.g. ``MetricsAccumulator.summary()["confusion_matrix"]``.
    class_names : sequence of str
        Names by class index.
    path : str or path-like
        Output PNG file; its folder is created if needed.

    Example
    -------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "confusion.png"
    >>> save_confusion_matrix_png([[2, 0], [1, 1]], ["dog", "rain"], path)
    >>> path.is_file()
    True
    """
    matrix = _to_numpy(confusion).astype(np.int64)
    n_classes = matrix.shape[0]
    if matrix.shape != (n_classes, n_classes) or len(class_names) != n_classes:
        raise ValueError(
            f"confusion {matrix.shape} must be square with one name a class "
            f"({len(class_names)} names)"
        )
    total = int(matrix.sum())
    accuracy = np.trace(matrix) / total if total else float("nan")
    side = max(4.0, 0.24 * n_classes + 3.0)
    font = 5 if n_classes > 20 else 8
    figure = _new_figure((side + 1.5, side))
    axes = figure.add_subplot(1, 1, 1)
    image = axes.imshow(matrix, cmap="Blues", interpolation="nearest", aspect="equal")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    ticks = np.arange(n_classes)
    axes.set_xticks(ticks)
    axes.set_yticks(ticks)
    axes.set_xticklabels(class_names, rotation=90, fontsize=font)
    axes.set_yticklabels(class_names, fontsize=font)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(f"Confusion matrix ({total} clips, accuracy {accuracy:.3f})")
    threshold = matrix.max() / 2 if matrix.size else 0
    for row, column in zip(*np.nonzero(matrix), strict=True):
        axes.text(
            column,
            row,
            str(matrix[row, column]),
            ha="center",
            va="center",
            fontsize=font - 1,
            color="white" if matrix[row, column] > threshold else "black",
        )
    figure.tight_layout()
    _save_figure(figure, path, dpi=150)


def save_interpretation_png(
    log_spec: torch.Tensor | np.ndarray,
    mask: torch.Tensor | np.ndarray,
    x_int: torch.Tensor | np.ndarray,
    path: str | os.PathLike,
    true_name: str | None,
    pred_name: str,
    sample_rate: int = SAMPLE_RATE,
    hop_length: int = HOP_LENGTH,
) -> None:
    """Three panels side by side: log-spectrogram | mask | interpretation.

    Time (s) on the x axis, frequency (kHz) on the y axis (low frequencies at the bottom).

    Arguments
    ---------
    log_spec : tensor or array
        [time, freq] log-spectrogram of one clip.
    mask : tensor or array
        [time, freq] interpretation mask in [0, 1].
    x_int : tensor or array
        [time, freq] interpretation ``mask * log_spec``.
    path : str or path-like
        Output PNG file; its folder is created if needed.
    true_name : str or None
        Name of the true class (None when unknown, e.g. for any audio file).
    pred_name : str
        Name of the predicted class.
    sample_rate : int
        Sample rate (for the axes).
    hop_length : int
        STFT hop in samples (for the time axis).

    Example
    -------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "clip.png"
    >>> x = torch.rand(431, 513)
    >>> save_interpretation_png(x, x > 0.5, x * (x > 0.5), path, "dog", "rain")
    >>> path.is_file()
    True
    """
    panels = [_to_numpy(p).astype(np.float32) for p in (log_spec, mask, x_int)]
    if any(p.ndim != 2 or p.shape != panels[0].shape for p in panels):
        raise ValueError("log_spec, mask and x_int must all be [time, freq] of one shape")
    n_frames = panels[0].shape[0]
    extent = (0.0, n_frames * hop_length / sample_rate, 0.0, sample_rate / 2 / 1000)
    vmax = float(max(panels[0].max(), panels[2].max(), 1e-8))
    titles = [
        "log-spectrogram" if true_name is None else f"log-spectrogram (true: {true_name})",
        "mask",
        f"interpretation (predicted: {pred_name})",
    ]
    limits = [(0.0, vmax), (0.0, 1.0), (0.0, vmax)]
    figure = _new_figure((15, 4))
    for index, (panel, title, (vmin, top)) in enumerate(zip(panels, titles, limits, strict=True)):
        axes = figure.add_subplot(1, 3, index + 1)
        image = axes.imshow(
            panel.T,
            origin="lower",
            aspect="auto",
            extent=extent,
            vmin=vmin,
            vmax=top,
            cmap="gray" if index == 1 else "magma",
            interpolation="nearest",
        )
        figure.colorbar(image, ax=axes)
        axes.set_title(title, fontsize=10)
        axes.set_xlabel("time (s)")
        axes.set_ylabel("frequency (kHz)")
    prefix = "" if true_name is None else f"true: {true_name} / "
    figure.suptitle(f"{prefix}predicted: {pred_name}")
    figure.tight_layout()
    _save_figure(figure, path, dpi=100)


def save_wav(
    wav: torch.Tensor | np.ndarray, path: str | os.PathLike, sample_rate: int = SAMPLE_RATE
) -> None:
    """Writes a mono waveform as 16-bit PCM, scaling it down only if it would clip.

    A waveform whose peak exceeds 1 is divided by its peak; a quieter one is written as is
    (never scaled up).

    Arguments
    ---------
    wav : tensor or array
        [samples], float.
    path : str or path-like
        Output WAV file; its folder is created if needed.
    sample_rate : int
        Sample rate of the waveform.

    Raises
    ------
    ValueError
        If the waveform is not 1-D or not finite.
    """
    signal = _to_numpy(wav).astype(np.float32)
    if signal.ndim != 1:
        raise ValueError(f"wav must be [samples], got shape {signal.shape}")
    if not np.isfinite(signal).all():
        raise ValueError(f"wav for {path} has non-finite samples")
    peak = float(np.abs(signal).max()) if signal.size else 0.0
    if peak > 1.0:
        signal = signal / peak
    with atomic_path(path) as tmp:
        sf.write(str(tmp), signal, sample_rate, subtype="PCM_16", format="WAV")


def save_interpretations(
    folder: str | os.PathLike,
    ids: Sequence[str],
    log_spec: torch.Tensor,
    phase: torch.Tensor,
    mask: torch.Tensor,
    x_int: torch.Tensor,
    targets: torch.Tensor | Sequence[int],
    preds: torch.Tensor | Sequence[int],
    class_names: Sequence[str],
    features: torch.nn.Module,
    length: int | None = None,
    probabilities: torch.Tensor | None = None,
) -> list[Path]:
    """Writes, for each clip, a 3-panel PNG, the original, interpretation and removed-part WAV
    files, and a JSON of its classes.

    Files: ``<folder>/<id>.png``, ``<id>_original.wav`` (``features.inverse(log_spec, phase)``),
    ``<id>_interpretation.wav`` (``features.inverse(x_int, phase)``: the interpretation is
    listened to with the original phase, as in the paper), ``<id>_removed.wav`` (what the mask
    leaves out, ``log_spec - x_int``) and ``<id>.json`` (``true_class``, ``predicted_class`` and,
    given ``probabilities``, the ``top`` 5 classes with their probabilities).

    Arguments
    ---------
    folder : str or path-like
        Output folder (created).
    ids : sequence of str
        Clip ids, one a clip (used as file names).
    log_spec : torch.Tensor
        [batch, time, freq].
    phase : torch.Tensor
        [batch, time, freq], the original phase.
    mask : torch.Tensor
        [batch, time, freq].
    x_int : torch.Tensor
        [batch, time, freq], ``mask * log_spec``.
    targets : tensor or sequence of int
        True class indices [batch] (``[batch, 1]`` is flattened).
    preds : tensor or sequence of int
        Predicted class indices [batch].
    class_names : sequence of str
        Names by class index.
    features : recipes.features.LogSpectrogram
        Gives the inverse transform (and the sample rate and hop for the axes).
    length : int, optional
        Number of samples of the waveforms (e.g. 80000 for 5 s at 16 kHz); ISTFT's own
        length when None.
    probabilities : torch.Tensor, optional
        [batch, n_classes] class probabilities to display (top 5 in the JSON).

    Returns
    -------
    list of Path
        The files written.

    Example
    -------
    >>> import tempfile, pathlib
    >>> from recipes.features import LogSpectrogram
    >>> features = LogSpectrogram()
    >>> log_spec, phase = features(torch.randn(1, 16000))
    >>> mask = torch.ones_like(log_spec)
    >>> folder = pathlib.Path(tempfile.mkdtemp()) / "interpretations"
    >>> files = save_interpretations(
    ...     folder, ["clip"], log_spec, phase, mask, mask * log_spec, [0], [1], ["dog", "rain"],
    ...     features, length=16000,
    ... )
    >>> sorted(f.name for f in files)
    ['clip.json', 'clip.png', 'clip_interpretation.wav', 'clip_original.wav', 'clip_removed.wav']
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    targets = _to_numpy(targets).reshape(-1).astype(np.int64)
    preds = _to_numpy(preds).reshape(-1).astype(np.int64)
    n_clips = log_spec.shape[0]
    if not (len(ids) == len(targets) == len(preds) == n_clips):
        raise ValueError(
            f"{len(ids)} ids, {len(targets)} targets and {len(preds)} predictions for "
            f"{n_clips} clips"
        )
    stft = getattr(features, "stft", None)
    sample_rate = int(getattr(stft, "sample_rate", SAMPLE_RATE))
    hop_length = int(getattr(stft, "hop_length", HOP_LENGTH))
    with torch.no_grad():
        # One inverse for originals, interpretations and removed parts, on the inputs' device.
        log_spec_d, x_int_d, phase_d = log_spec.detach(), x_int.detach(), phase.detach()
        wavs = features.inverse(
            torch.cat([log_spec_d, x_int_d, log_spec_d - x_int_d]),
            torch.cat([phase_d, phase_d, phase_d]),
            length=length,
        ).cpu()
    originals, interpretations, removed = wavs.chunk(3)
    log_spec, mask, x_int = (t.detach().float().cpu() for t in (log_spec, mask, x_int))
    if probabilities is not None:
        probabilities = probabilities.detach().float().cpu()
    written = []
    for index, clip_id in enumerate(ids):
        png = folder / f"{clip_id}.png"
        save_interpretation_png(
            log_spec[index],
            mask[index],
            x_int[index],
            png,
            true_name=class_names[targets[index]],
            pred_name=class_names[preds[index]],
            sample_rate=sample_rate,
            hop_length=hop_length,
        )
        original = folder / f"{clip_id}_original.wav"
        interpretation = folder / f"{clip_id}_interpretation.wav"
        removed_part = folder / f"{clip_id}_removed.wav"
        save_wav(originals[index], original, sample_rate)
        save_wav(interpretations[index], interpretation, sample_rate)
        save_wav(removed[index], removed_part, sample_rate)
        info = {
            "id": str(clip_id),
            "true_class": class_names[targets[index]],
            "predicted_class": class_names[preds[index]],
        }
        if probabilities is not None:
            top = torch.topk(probabilities[index], k=min(5, len(class_names)))
            info["top"] = [
                {"class": class_names[int(i)], "probability": float(v)}
                for v, i in zip(top.values, top.indices, strict=True)
            ]
        info_path = folder / f"{clip_id}.json"
        with atomic_path(info_path) as tmp:
            tmp.write_text(json.dumps(info, indent=2) + "\n")
        written += [png, original, interpretation, removed_part, info_path]
    return written


def save_quantile_sweep_png(
    curves: dict[str, Sequence[dict]],
    path: str | os.PathLike,
    references: dict[str, dict] | None = None,
) -> None:
    """The paper's Fig. 3: FID-I and FA against the quantile order q.

    Arguments
    ---------
    curves : dict
        Label (e.g. "FocalNet") -> sweep rows with ``q``, ``fid_i``, ``fa``, ``fa_mask_in``.
    path : str or path-like
        Output PNG file.
    references : dict, optional
        Label (e.g. "FocalNet-PIQ") -> metrics with ``fid_i``, ``fa``, ``fa_mask_in``, drawn as
        horizontal dashed lines (methods without a q).

    Example
    -------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "sweep.png"
    >>> rows = [{"q": q, "fid_i": 1 - q, "fa": q / 10, "fa_mask_in": q / 20} for q in (0.1, 0.9)]
    >>> save_quantile_sweep_png({"FocalNet": rows}, path, {"PIQ": rows[0]})
    >>> path.is_file()
    True
    """
    panels = [("fid_i", "FID-I"), ("fa", "FA (mask-out, eq. 7)"), ("fa_mask_in", "FA (mask-in)")]
    figure = _new_figure((15, 4))
    colours = [f"C{index}" for index in range(10)]
    for index, (key, title) in enumerate(panels):
        axes = figure.add_subplot(1, 3, index + 1)
        for colour, (label, rows) in zip(colours, curves.items(), strict=False):
            qs = [row["q"] for row in rows]
            axes.plot(qs, [row[key] for row in rows], marker="o", color=colour, label=label)
        for offset, (label, metrics) in enumerate((references or {}).items()):
            colour = colours[(len(curves) + offset) % len(colours)]
            axes.axhline(metrics[key], linestyle="--", color=colour, label=label)
        axes.set_xlabel("quantile order q")
        axes.set_title(title)
        axes.grid(alpha=0.3)
        if index == 0:
            axes.legend(fontsize=8)
    figure.suptitle("Effect of the quantile order q on interpretability")
    figure.tight_layout()
    _save_figure(figure, path, dpi=100)


def save_mixture_png(
    spectrograms: Sequence[torch.Tensor | np.ndarray],
    titles: Sequence[str],
    path: str | os.PathLike,
    sample_rate: int = SAMPLE_RATE,
    hop_length: int = HOP_LENGTH,
) -> None:
    """The paper's Fig. 2: source 1, source 2, mixture, interpretation, side by side.

    Each spectrogram is [time, freq]; time on x, frequency on y, one shared colour scale.

    Example
    -------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "mixture.png"
    >>> panels = [torch.rand(431, 513) for _ in range(4)]
    >>> save_mixture_png(panels, ["a", "b", "a + b", "interpretation"], path)
    >>> path.is_file()
    True
    """
    arrays = [_to_numpy(spec).astype(np.float32) for spec in spectrograms]
    if len(arrays) != len(titles):
        raise ValueError("one title per spectrogram")
    vmax = float(max(max(array.max() for array in arrays), 1e-8))
    figure = _new_figure((4.5 * len(arrays), 4))
    for index, (array, title) in enumerate(zip(arrays, titles, strict=True)):
        axes = figure.add_subplot(1, len(arrays), index + 1)
        extent = (0.0, array.shape[0] * hop_length / sample_rate, 0.0, sample_rate / 2 / 1000)
        axes.imshow(
            array.T,
            origin="lower",
            aspect="auto",
            extent=extent,
            vmin=0.0,
            vmax=vmax,
            cmap="magma",
            interpolation="nearest",
        )
        axes.set_title(title, fontsize=10)
        axes.set_xlabel("time (s)")
        axes.set_ylabel("frequency (kHz)")
    figure.tight_layout()
    _save_figure(figure, path, dpi=100)


@contextlib.contextmanager
def written_together(folder: str | os.PathLike):
    """Files written into the yielded staging folder appear in ``folder`` together, or not at all.

    Example
    -------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> with written_together(folder) as staging:
    ...     _ = (staging / "a.txt").write_text("a")
    >>> sorted(path.name for path in folder.iterdir())
    ['a.txt']
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder))
    try:
        yield staging
        for path in sorted(staging.iterdir()):
            os.replace(path, folder / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def save_localisation_png(summary: Sequence[dict], path: str | os.PathLike) -> None:
    """Bars of the mean share of the mask inside the named source's region, and of the IoU,
    per method; the dashed line is the chance share (the region's mean area).

    Example
    -------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "localisation.png"
    >>> rows = [{"method": "by_design", "share_in_region": 0.6, "iou": 0.3, "chance_share": 0.1}]
    >>> save_localisation_png(rows, path)
    >>> path.is_file()
    True
    """
    figure = _new_figure((max(4.0, 1.6 * len(summary) + 2), 4))
    axes = figure.add_subplot(1, 1, 1)
    positions = np.arange(len(summary))
    width = 0.38
    axes.bar(
        positions - width / 2,
        [r["share_in_region"] for r in summary],
        width,
        label="share of the mask in the region",
    )
    axes.bar(positions + width / 2, [r["iou"] for r in summary], width, label="IoU")
    chance = float(np.mean([r["chance_share"] for r in summary])) if summary else 0.0
    axes.axhline(chance, linestyle="--", color="gray", label="chance share (region area)")
    axes.set_xticks(positions, [r["method"] for r in summary])
    axes.set_ylim(0, 1)
    axes.set_title("Localisation on two-source mixtures")
    axes.legend(fontsize=8)
    figure.tight_layout()
    _save_figure(figure, path, dpi=100)


def write_csv_rows(rows: Sequence[dict], path: str | os.PathLike) -> None:
    """Writes dicts of one set of keys as a CSV file (columns in the first row's key order)."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def save_panels_png(
    log_spec: torch.Tensor | np.ndarray, mask: torch.Tensor | np.ndarray, path: str | os.PathLike
) -> None:
    """The explorer's fast picture: log-spectrogram | mask | interpretation side by side, one
    pixel per cell (time to the right, low frequencies at the bottom), no axes (the page
    labels them); magma for the spectrograms (one scale for both), gray for the mask. A
    fraction of ``save_interpretation_png``'s time: no figure is laid out.

    Example
    -------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "panels.png"
    >>> save_panels_png(torch.rand(431, 513), torch.ones(431, 513), path)
    >>> from PIL import Image
    >>> Image.open(path).size
    (1309, 513)
    """
    from matplotlib import colormaps
    from PIL import Image

    spec = _to_numpy(log_spec).astype(np.float32)
    keep = _to_numpy(mask).astype(np.float32)
    top = float(spec.max()) or 1.0
    panels = [
        colormaps["magma"](np.clip(spec / top, 0, 1)),
        colormaps["gray"](np.clip(keep, 0, 1)),
        colormaps["magma"](np.clip(spec * keep / top, 0, 1)),
    ]
    gap = np.ones((spec.shape[1], 8, 3), dtype=np.uint8) * 255
    columns = []
    for index, panel in enumerate(panels):
        if index:
            columns.append(gap)
        columns.append((panel[..., :3].transpose(1, 0, 2)[::-1] * 255).astype(np.uint8))
    with atomic_path(path) as tmp:
        Image.fromarray(np.concatenate(columns, axis=1)).save(tmp, format="PNG", compress_level=1)


def save_ratings_boxplot(
    data: Sequence[Sequence[float]], labels: Sequence[str], path: str | os.PathLike, title: str
) -> None:
    """Box plot (with means) of listening-test ratings (0-100), one box per condition."""
    figure = _new_figure((1.3 * len(labels) + 2, 4.2))
    axes = figure.add_subplot(1, 1, 1)
    axes.boxplot([list(values) or [float("nan")] for values in data], showmeans=True)
    axes.set_xticks(range(1, len(labels) + 1), labels, rotation=20)
    axes.set_ylim(-2, 102)
    axes.set_ylabel("rating (0-100)")
    axes.set_title(title, fontsize=10)
    figure.tight_layout()
    _save_figure(figure, path, dpi=100)


def save_sanity_png(rows: Sequence[dict], path: str | os.PathLike) -> None:
    """Bars of the mean Spearman correlation per method and randomisation level.

    Example
    -------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "sanity.png"
    >>> rows = [{"method": "by_design", "randomised": level, "spearman_mean": value,
    ...          "spearman_std": 0.0} for level, value in (("none", 1.0), ("head", 0.2))]
    >>> save_sanity_png(rows, path)
    >>> path.is_file()
    True
    """
    methods = list(dict.fromkeys(row["method"] for row in rows))
    levels = list(dict.fromkeys(row["randomised"] for row in rows))
    figure = _new_figure((max(4.0, 1.8 * len(methods) + 2), 4))
    axes = figure.add_subplot(1, 1, 1)
    width = 0.8 / max(len(levels), 1)
    for index, level in enumerate(levels):
        picked = {row["method"]: row for row in rows if row["randomised"] == level}
        positions = np.arange(len(methods)) + (index - (len(levels) - 1) / 2) * width
        axes.bar(
            positions,
            [picked[m]["spearman_mean"] for m in methods],
            width,
            yerr=[picked[m]["spearman_std"] for m in methods],
            label=f"randomised: {level}",
        )
    axes.axhline(0.9, linestyle="--", color="gray", label="flag above 0.9")
    axes.set_xticks(np.arange(len(methods)), methods)
    axes.set_ylim(-1, 1.05)
    axes.set_ylabel("Spearman correlation with the trained model's maps")
    axes.set_title("Model-randomisation sanity check")
    axes.legend(fontsize=8)
    figure.tight_layout()
    _save_figure(figure, path, dpi=100)


def save_deletion_png(curves: Sequence[dict], areas: Sequence[dict], path) -> None:
    """Mean deletion and insertion curves per method, areas in the legend.

    Example
    -------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "deletion.png"
    >>> curves = [{"method": "by_design", "curve": c, "fraction": f, "probability": 1 - f}
    ...           for c in ("deletion", "insertion") for f in (0.0, 1.0)]
    >>> save_deletion_png(curves, [{"method": "by_design", "deletion_auc": 0.5,
    ...                             "insertion_auc": 0.5}], path)
    >>> path.is_file()
    True
    """
    figure = _new_figure((11, 4))
    auc = {row["method"]: row for row in areas}
    for index, curve in enumerate(("deletion", "insertion")):
        axes = figure.add_subplot(1, 2, index + 1)
        for method in auc:
            picked = [r for r in curves if r["method"] == method and r["curve"] == curve]
            axes.plot(
                [r["fraction"] for r in picked],
                [r["probability"] for r in picked],
                marker="o",
                label=f"{method} (AUC {auc[method][curve + '_auc']:.4f})",
            )
        axes.set_xlabel("share of the top-ranked cells " + ("removed" if index == 0 else "kept"))
        axes.set_ylabel("probability of the predicted class")
        axes.set_title(curve + (" (lower is better)" if index == 0 else " (higher is better)"))
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    figure.tight_layout()
    _save_figure(figure, path, dpi=100)


def save_cv_png(summary: Sequence[dict], path) -> None:
    """Mean +- std of ACC, FID-I, FA and FA mask-in per method (cross-validation summary).

    Example
    -------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "cv.png"
    >>> row = {"method": "focalnet", **{f"{m}_{s}": 0.1 for m in ("acc", "fid_i", "fa",
    ...        "fa_mask_in") for s in ("mean", "std")}}
    >>> save_cv_png([row], path)
    >>> path.is_file()
    True
    """
    metrics = [
        ("acc", "ACC"),
        ("fid_i", "FID-I"),
        ("fa", "FA (eq. 7)"),
        ("fa_mask_in", "FA mask-in"),
    ]
    figure = _new_figure((14, 3.5))
    methods = [row["method"] for row in summary]
    for index, (key, title) in enumerate(metrics):
        axes = figure.add_subplot(1, len(metrics), index + 1)
        axes.bar(
            np.arange(len(methods)),
            [row[f"{key}_mean"] for row in summary],
            yerr=[row[f"{key}_std"] for row in summary],
            capsize=4,
        )
        axes.set_xticks(np.arange(len(methods)), methods)
        axes.set_title(title)
        axes.grid(alpha=0.3, axis="y")
    figure.suptitle("Cross-validation: mean +- std over folds and seeds")
    figure.tight_layout()
    _save_figure(figure, path, dpi=100)


# the suite at the classifier's score_scale (k) next to the same metric at scale 1
OOD_PANELS = (
    ("acc", "ACC"),
    ("fid_i", "FID-I (Fid-In)"),
    ("ff", "FF (scale k)"),
    ("fa", "FA = FF at scale 1"),
    ("ai", "AI (%, scale k)"),
    ("ai_unscaled", "AI (%, scale 1)"),
    ("ad", "AD (%, scale k)"),
    ("ad_unscaled", "AD (%, scale 1)"),
    ("ag", "AG (%, scale k)"),
    ("ag_unscaled", "AG (%, scale 1)"),
    ("sps", "SPS"),
    ("comp", "COMP (nats)"),
)


def save_ood_png(rows: Sequence[dict], path: str | os.PathLike) -> None:
    """One panel per metric: each method's value per condition (clean, then overlapped); the
    suite at the classifier's scale k and at scale 1 side by side (a missing metric: no line).

    Example
    -------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "ood.png"
    >>> rows = [{"condition": c, "method": m, "acc": 0.5, "fid_i": 0.4, "fa": 0.01, "ai": 10.0,
    ...          "ad": 5.0, "ag": 1.0, "sps": 0.6, "comp": 9.0, "protocol": "authors",
    ...          "score_scale": 30.0}
    ...         for c in ("clean", "noise:6") for m in ("by_design", "energy")]
    >>> save_ood_png(rows, path)
    >>> path.is_file()
    True
    """
    conditions = list(dict.fromkeys(row["condition"] for row in rows))
    methods = list(dict.fromkeys(row["method"] for row in rows))
    figure = _new_figure((14, 9.5))
    positions = np.arange(len(conditions))
    for index, (key, title) in enumerate(OOD_PANELS):
        axes = figure.add_subplot(3, 4, index + 1)
        for method in methods:
            by_condition = {r["condition"]: r.get(key) for r in rows if r["method"] == method}
            values = [by_condition.get(c) for c in conditions]
            values = [np.nan if v is None else float(v) for v in values]
            axes.plot(positions, values, marker="o", label=method)
            if key == "acc":
                break  # the classifier's accuracy does not depend on the method
        axes.set_xticks(positions, conditions, rotation=45, ha="right", fontsize=7)
        axes.set_title(title, fontsize=9)
        axes.tick_params(axis="y", labelsize=7)
    handles, labels = figure.axes[1].get_legend_handles_labels()
    figure.legend(handles, labels, loc="upper center", ncol=len(methods), fontsize=8)
    protocols = sorted({str(row["protocol"]) for row in rows if row.get("protocol")})
    scales = sorted({float(row["score_scale"]) for row in rows if row.get("score_scale")})
    details = [f"protocol {', '.join(protocols)}"] if protocols else []
    details += [f"k = {', '.join(f'{k:g}' for k in scales)}"] if scales else []
    suffix = f" ({'; '.join(details)})" if details else ""
    figure.suptitle(f"In and out of distribution: clean, white noise, mixtures{suffix}", y=0.95)
    figure.tight_layout(rect=(0, 0, 1, 0.92))
    _save_figure(figure, path, dpi=100)


# files longer than this get the picture of rows (``TimelinePicture``), not three panels
LONG_FILE_SECONDS = 60.0


class TimelinePicture:
    """The picture of a long file, gathered while its windows stream past.

    One row per minute (a file over ``max_rows`` minutes: several minutes a row, so that there
    are at most ``max_rows`` rows), each row the log-spectrogram (left) and the interpretation
    ``mask * log_spec`` (right) pooled to ``columns`` x ``bins`` cells, low frequencies at the
    bottom; a row's label gives its start and the class most windows of the row predict. The
    pooled cells are means of the frames they cover, so memory is fixed by the number of rows,
    not by the file's length.

    Example
    -------
    >>> import tempfile, pathlib
    >>> picture = TimelinePicture(150.0, columns=60, bins=8)  # 2.5 min: 3 rows
    >>> x = torch.rand(150 * 16000 // HOP_LENGTH, 513)
    >>> picture.add(x, x > 0.5, [{"start_s": 0.0, "class": "dog", "silent": False}])
    >>> picture.rows, picture.row_seconds
    (3, 60)
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "long.png"
    >>> picture.save(path, "a.wav")
    >>> path.is_file()
    True
    """

    def __init__(
        self,
        duration_s: float,
        sample_rate: int = SAMPLE_RATE,
        hop_length: int = HOP_LENGTH,
        columns: int = 900,
        bins: int = 64,
        max_rows: int = 60,
        clip_seconds: float = 5.0,
    ):
        minutes = max(1, int(np.ceil(duration_s / 60 / max_rows)))
        self.row_seconds = 60 * minutes
        self.rows = max(1, int(np.ceil(duration_s / self.row_seconds)))
        self.columns, self.bins = columns, bins
        self.frame_seconds = hop_length / sample_rate
        # frames come window by window: a window's frames start at its own start
        self.clip_seconds = clip_seconds
        self.window_frames = int(round(clip_seconds * sample_rate)) // hop_length + 1
        self.sums = torch.zeros(2, self.rows * columns, bins, dtype=torch.float64)
        self.counts = torch.zeros(self.rows * columns, dtype=torch.float64)
        self.frames = 0
        self.classes = [{} for _ in range(self.rows)]

    def add(self, log_spec: torch.Tensor, mask: torch.Tensor, windows: Sequence[dict]) -> None:
        """The next frames ([frames, freq] each) and the rows of their windows."""
        n_frames = log_spec.shape[0]
        index = self.frames + torch.arange(n_frames)
        times = (index // self.window_frames) * self.clip_seconds + (
            index % self.window_frames
        ) * self.frame_seconds
        cells = (times / self.row_seconds * self.columns).long()
        cells = cells.clamp(max=self.rows * self.columns - 1)
        log_spec = log_spec.detach().float().cpu()
        for index, panel in enumerate((log_spec, mask.detach().float().cpu() * log_spec)):
            pooled = torch.nn.functional.adaptive_avg_pool1d(panel.unsqueeze(1), self.bins)
            self.sums[index].index_add_(0, cells, pooled.squeeze(1).double())
        self.counts.index_add_(0, cells, torch.ones(n_frames, dtype=torch.float64))
        self.frames += n_frames
        for window in windows:
            if not window.get("silent"):
                row = min(int(window["start_s"] // self.row_seconds), self.rows - 1)
                self.classes[row][window["class"]] = self.classes[row].get(window["class"], 0) + 1

    def save(self, path, title: str) -> None:
        """Draws the rows to a PNG (about one screen pixel a cell)."""
        gap = 6
        height = self.rows * (self.bins + gap)
        means = (self.sums / self.counts.clamp_min(1)[None, :, None]).float()
        means[:, self.counts == 0] = float("nan")  # after the end of the file
        images = np.full((2, height, self.columns), np.nan, dtype=np.float32)
        for row in range(self.rows):
            cells = means[:, row * self.columns : (row + 1) * self.columns]  # [2, columns, bins]
            top = row * (self.bins + gap)
            images[:, top : top + self.bins] = cells.flip(2).transpose(1, 2).numpy()
        vmax = float(max(np.nanmax(images) if np.isfinite(images).any() else 0.0, 1e-8))
        # coloured here as 8-bit RGBA (matplotlib would keep float64 copies of a large image)
        colours = matplotlib.colormaps["magma"].with_extremes(bad=(1.0, 1.0, 1.0, 0.0))
        images = [
            colours(np.ma.masked_invalid(np.clip(image / vmax, 0.0, 1.0)), bytes=True)
            for image in images
        ]
        labels = []
        for row, counts in enumerate(self.classes):
            start = row * self.row_seconds
            label = f"{start // 3600:d}:{start // 60 % 60:02d}:00"
            if counts:
                best = max(counts, key=counts.get)
                label += f"  {best} ({counts[best]}/{sum(counts.values())})"
            labels.append(label)
        figure = _new_figure((2 * self.columns / 100 + 5.5, height / 100 + 1.4))
        for index, name in enumerate(("log-spectrogram", "interpretation")):
            axes = figure.add_axes(
                (0.14 + index * 0.43, 0.7 / (height / 100 + 1.4), 0.41, height / (height + 140))
            )
            axes.imshow(
                images[index],
                aspect="auto",
                extent=(0, self.row_seconds, height, 0),
                interpolation="nearest",
            )
            axes.set_yticks([row * (self.bins + gap) + self.bins / 2 for row in range(self.rows)])
            axes.set_yticklabels(labels if index == 0 else [], fontsize=8)
            axes.set_xlabel(f"time in the row (s); a row is {self.row_seconds // 60} min")
            axes.set_title(f"{name} (rows: 0-8 kHz, low at the bottom)", fontsize=10)
        figure.suptitle(title, y=1 - 0.25 / (height / 100 + 1.4))
        _save_figure(figure, path, dpi=100)


def write_file_interpretation(
    interpreter,
    path,
    output_folder=None,
    quantile=None,
    batch_windows=8,
    block_seconds=20.0,
    progress=None,
) -> dict:
    """Interprets an audio file; writes ``<name>_<method>.png``, ``.wav`` and ``.json``.

    ``interpreter`` is a ``recipes.inference.AudioInterpreter``. The file is read in blocks of
    ``block_seconds`` and interpreted ``batch_windows`` windows at a time
    (``AudioInterpreter.interpret_blocks``), so memory does not grow with its length: the
    interpretation is appended to the WAV as it comes
    (staged as float32, then written as 16-bit PCM, scaled down only if it would clip, as
    ``save_wav``), the PNG of a file up to ``LONG_FILE_SECONDS`` has the three full panels
    (``save_interpretation_png``) and that of a longer one a row per minute
    (``TimelinePicture``), and the JSON is written at the end. The three files appear together
    or not at all. ``progress(seconds_done, seconds_total)``, if given, is called after each
    batch. Returns the JSON content (with the paths of the files under ``outputs``). Raises
    ``data_prep.audio.AudioReadError`` for an unreadable, empty, non-finite or silent file.
    """
    from data_prep.audio import AudioReadError, audio_frames, read_audio_blocks

    path = Path(path)
    frames, sample_rate = audio_frames(path)
    rate = interpreter.sample_rate
    duration = frames / sample_rate
    long_file = duration > LONG_FILE_SECONDS
    folder = Path(output_folder) if output_folder is not None else path.parent
    stem = f"{path.stem}_{interpreter.method}"
    names = {kind: f"{stem}.{kind}" for kind in ("png", "wav", "json")}
    blocks = read_audio_blocks(path, block_frames=max(1, int(sample_rate * block_seconds)))
    picture = None
    if long_file:
        hop, seconds = interpreter.features_hop(), interpreter.clip_seconds
        picture = TimelinePicture(duration, rate, hop, clip_seconds=seconds)
    spectra, masks, windows = [], [], []
    prob_sum, n_audible, mask_sum, mask_cells, n_samples, peak = 0.0, 0, 0.0, 0, 0, 0.0
    with written_together(folder) as staging:
        staged = staging / f".{names['wav']}.float"
        with sf.SoundFile(
            str(staged), "w", samplerate=rate, channels=1, subtype="FLOAT", format="WAV"
        ) as sink:
            try:
                for part in interpreter.interpret_blocks(
                    blocks, sample_rate, quantile, batch_windows
                ):
                    wave = _to_numpy(part["interpretation_wave"]).astype(np.float32)
                    if not np.isfinite(wave).all():
                        raise ValueError(f"wav for {path} has non-finite samples")
                    sink.write(wave)
                    peak = max(peak, float(np.abs(wave).max()))
                    n_samples += wave.shape[0]
                    audible = part["audible"]
                    prob_sum = prob_sum + part["probabilities"][audible].double().sum(dim=0)
                    n_audible += int(audible.sum())
                    mask_sum += float(part["mask"].double().sum())
                    mask_cells += part["mask"].numel()
                    windows += part["windows"]
                    if picture is not None:
                        picture.add(part["log_spec"], part["mask"], part["windows"])
                    else:
                        spectra.append(part["log_spec"])
                        masks.append(part["mask"])
                    if progress is not None:
                        progress(n_samples / rate, duration)
            except AudioReadError as error:
                if str(path) in str(error):
                    raise
                raise AudioReadError(f"{path}: {error}") from error
        top = interpreter.top_classes((prob_sum / n_audible).float())
        summary = {
            "audio": str(path),
            "duration_s": n_samples / rate,
            "input_sample_rate": sample_rate,
            "method": interpreter.method,
            "backbone": interpreter.backbone,
            "quantile": interpreter.effective_quantile(quantile),
            "top": [{"class": name, "probability": p} for name, p in top],
            "windows": windows,
            "mask_share": mask_sum / mask_cells,
            "picture": (
                f"rows of {picture.row_seconds} s" if picture is not None else "three panels"
            ),
            "outputs": {kind: str(folder / name) for kind, name in names.items()},
        }
        if picture is not None:
            picture.save(staging / names["png"], f"{path.name}: {interpreter.method}")
        else:
            log_spec, mask = torch.cat(spectra), torch.cat(masks)
            save_interpretation_png(
                log_spec,
                mask,
                mask * log_spec,
                staging / names["png"],
                None,
                top[0][0],
                sample_rate=rate,
                hop_length=interpreter.features_hop(),
            )
        _float_wav_to_pcm16(staged, staging / names["wav"], peak)
        staged.unlink()
        (staging / names["json"]).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _float_wav_to_pcm16(source: Path, target: Path, peak: float, block: int = 1 << 20) -> None:
    """``save_wav`` of a float WAV on disk, block by block (divided by ``peak`` if above 1)."""
    with sf.SoundFile(str(source)) as reader, atomic_path(target) as tmp:
        with sf.SoundFile(
            str(tmp), "w", samplerate=reader.samplerate, channels=1, subtype="PCM_16", format="WAV"
        ) as writer:
            for data in reader.blocks(blocksize=block, dtype="float32"):
                writer.write(data / peak if peak > 1.0 else data)


def write_mixture_interpretation(
    interpreter, source_1, source_2, names, output_folder, mode="spectral", quantile=None
) -> dict:
    """The paper's Fig. 2: mix two clips at the model's rate, predict and interpret the mixture.

    Writes ``mixture_<name1>+<name2>_<mode>_<method>`` ``.png`` (source 1, source 2, mixture,
    interpretation), ``_source1.wav``, ``_source2.wav``, ``_mixture.wav``,
    ``_interpretation.wav`` and ``.json``, all together. ``names`` label the sources (class
    names or file names). Returns the JSON content.
    """
    from data_prep.mixing import mix_sources

    rate = interpreter.sample_rate
    mixture, parts = mix_sources(source_1, source_2, rate, mode)
    result = interpreter.interpret_waveform(mixture, rate, quantile)
    spectrograms = [
        interpreter.features(part.unsqueeze(0).to(interpreter.device), with_phase=False)[0][0]
        for part in parts
    ]
    x_int = result["mask"] * result["log_spec"]
    predicted = result["top"][0][0]
    stem = f"mixture_{names[0]}+{names[1]}_{mode}_{interpreter.method}"
    waves = {
        "source1": parts[0],
        "source2": parts[1],
        "mixture": mixture,
        "interpretation": result["interpretation_wave"],
    }
    folder = Path(output_folder)
    summary = {
        "sources": list(names),
        "mode": mode,
        "method": interpreter.method,
        "quantile": interpreter.effective_quantile(quantile),
        "top": [{"class": name, "probability": p} for name, p in result["top"]],
        "outputs": {
            "png": str(folder / f"{stem}.png"),
            **{key: str(folder / f"{stem}_{key}.wav") for key in waves},
            "json": str(folder / f"{stem}.json"),
        },
    }
    with written_together(folder) as staging:
        save_mixture_png(
            [*spectrograms, result["log_spec"], x_int],
            [
                f"source 1 ({names[0]})",
                f"source 2 ({names[1]})",
                f"mixture ({names[0]} + {names[1]})",
                f"interpretation (predicted: {predicted})",
            ],
            staging / f"{stem}.png",
            sample_rate=rate,
            hop_length=interpreter.features_hop(),
        )
        for key, wave in waves.items():
            save_wav(wave.cpu(), staging / f"{stem}_{key}.wav", rate)
        (staging / f"{stem}.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
