"""Interpret tensors or audio signals of any length with a loaded classifier and one method.

``AudioInterpreter(model, method, trained)`` pairs a ``recipes.loading.LoadedModel`` with a
method of the registry (``interpreters.methods``; ``trained`` holds the modules of trained
methods) and keeps what only inference needs: long signals cut into the model's windows.
``AudioInterpreter.from_folder(FOLDER)`` loads a run folder (a classifier's: its by-design
interpretation by default; a PIQ / L-MAC run's: its method by default) or a released model.
Writing the PNG / WAV / JSON of a file is ``recipes.outputs.write_file_interpretation``.

Signals: any sample rate, mono or stereo, any length. The signal is downmixed and resampled to
the model's rate (16 kHz), cut into 5 s windows (the last one zero-padded), each window scaled
(``input_normalisation``) and interpreted, and the windows' masks stitched back: the
interpretation has the input's duration.

Example
-------
>>> from recipes.loading import LoadedModel
>>> from recipes.models import TINY_FOCALNET, AudioClassifier, build_embedder, build_head
>>> embedder = build_embedder("focalnet", pretrained=False, config_overrides=TINY_FOCALNET)
>>> classifier = AudioClassifier(embedder, build_head(embedder.embedding_size, n_classes=2))
>>> model = AudioInterpreter(LoadedModel(classifier, ["dog", "rain"], "."), "gradcam")
>>> result = model.interpret_waveform(torch.randn(12000, 2), sample_rate=8000)  # 1.5 s stereo
>>> result["interpretation_wave"].shape, len(result["top"]), result["n_windows"]
(torch.Size([24000]), 2, 1)
"""

from __future__ import annotations

import logging
import math

import torch

from data_prep.audio import AudioReadError, to_mono_resampled
from interpreters.methods import get_method, method_masks
from recipes.loading import LoadedModel, card_settings, load_model, resolve_methods
from recipes.runs import RunFolderError

logger = logging.getLogger(__name__)


class AudioInterpreter:
    """A loaded classifier with one interpretation method, ready for tensors and signals.

    Arguments
    ---------
    model : recipes.loading.LoadedModel
        The classifier and its settings.
    method : str
        A registry name (``interpreters.methods.METHODS``).
    trained : dict, optional
        Trained methods' modules by name (needed for ``piq``, ``lmac``).
    quantile : float, optional
        q of same-area masks; default the run's.
    seed : int
        Seed of the random baseline.
    """

    def __init__(self, model: LoadedModel, method="by_design", trained=None, quantile=None, seed=0):
        self.model = model
        self.method = get_method(method).name
        self.trained = dict(trained or {})
        if get_method(method).needs == "run" and get_method(method).run_name not in self.trained:
            raise RunFolderError(f"method {method!r} needs its trained run")
        self.quantile = float(model.quantile if quantile is None else quantile)
        self.seed = seed

    # ------------------------------------------------------------- loading ---
    @classmethod
    def from_folder(cls, folder, method=None, quantile=None, device="cpu", runs=(), **released):
        """Loads a run folder or released model (``recipes.loading.resolve_methods``).

        ``method`` defaults to the folder's own (``by_design`` for a classifier, ``piq`` /
        ``lmac`` for their runs); ``runs`` adds trained methods' runs on the same classifier.
        """
        model, trained, methods = resolve_methods(
            folder, [method] if method else None, runs, device, quantile, **released
        )
        return cls(model, methods[0], trained)

    from_run = from_folder

    # --------------------------------------------------------- delegations ---
    def __getattr__(self, name):
        """Everything else the loaded model has (``score_scale``, ``probabilities``, ...)."""
        if name == "model":  # not set yet (copy, unpickling)
            raise AttributeError(name)
        return getattr(self.model, name)

    @property
    def class_names(self):
        return self.model.class_names

    @property
    def features(self):
        return self.model.features

    @property
    def device(self):
        return self.model.device

    @property
    def sample_rate(self) -> int:
        return self.model.sample_rate

    @property
    def clip_samples(self) -> int:
        return self.model.clip_samples

    @property
    def backbone(self) -> str:
        return self.model.backbone

    def features_hop(self) -> int:
        return self.model.hop_samples()

    def classify(self, log_spec):
        return self.model.classify(log_spec)

    def effective_quantile(self, quantile: float | None = None) -> float | None:
        """The q a same-area mask uses (``quantile``, else the default); None for soft masks."""
        if get_method(self.method).mask == "soft":
            return None
        return self.quantile if quantile is None else float(quantile)

    # ------------------------------------------------------------- tensors ---
    def mask(self, log_spec: torch.Tensor, quantile: float | None = None, valid=None):
        """``(scores, mask)`` for log-spectrograms [B, T, F] (``interpreters.methods``).

        ``valid`` (boolean [B, T, F], optional): the cells a same-area mask's quantile counts
        (see ``interpreters.maps.quantile_mask``); soft masks ignore it.
        """
        generator = torch.Generator().manual_seed(self.seed)
        q = self.quantile if quantile is None else float(quantile)
        scores, masks = method_masks(
            self.model.classifier, log_spec, [self.method], q, self.trained, generator, valid
        )
        return scores, masks[self.method]

    def window_scales(self, windows: torch.Tensor) -> torch.Tensor:
        """What each window [n, samples] is divided by: [n, 1] (``input_normalisation``).

        "signed_max" divides by the largest sample, as the authors did; a window with sound but
        no positive sample (the authors' code would flip or blow it up) is divided by its
        absolute peak instead, with a warning. Silent windows get 0 (they stay zero).

        Example
        -------
        >>> windows = torch.tensor([[0.5, -1.0, 0.25], [0.0, 0.0, 0.0]])
        >>> window_scales(windows, "peak").flatten().tolist()
        [1.0, 0.0]
        >>> window_scales(windows, "signed_max").flatten().tolist()
        [0.5, 0.0]
        """
        return window_scales(windows, self.model.input_normalisation)

    @torch.no_grad()
    def interpret_waveform(self, signal: torch.Tensor, sample_rate: int, quantile=None) -> dict:
        """Interprets a signal of any length ([samples] or [samples, channels]).

        Returns a dict: ``log_spec``, ``mask`` (stitched, [frames, 513]), ``interpretation_wave``
        (at the model's rate, the input's duration), ``top`` (up to 5 (class, probability) pairs,
        the probabilities averaged over the non-silent windows), ``windows`` (per 5 s window:
        start, end, predicted class, probability) and ``n_windows``.
        """
        prepared = self.prepare_waveform(signal, sample_rate)
        scores, mask = self.mask(prepared["log_spec"], quantile, prepared["valid"])
        return self.finish_waveform(prepared, scores, mask)

    @torch.no_grad()
    def prepare_waveform(self, signal: torch.Tensor, sample_rate: int) -> dict:
        """The first half of ``interpret_waveform``: the signal downmixed, resampled, cut into
        windows, each scaled; returns ``wave`` (mono, the model's rate), ``log_spec`` and
        ``phase`` [n_windows, T, F], ``valid`` (the cells a same-area quantile counts, or None),
        ``scales``, ``peaks``, ``n_samples``, ``n_windows``, ``last_frames``. A mask of
        ``log_spec`` (any method, any q) then goes to ``finish_waveform``: the explorer
        (``recipes/listening``) keeps this between changes of method and q."""
        model = self.model
        if signal.dim() == 1:
            signal = signal.unsqueeze(1)
        wave = to_mono_resampled(signal.float(), sample_rate, model.sample_rate)
        n_samples = wave.shape[0]
        if n_samples == 0:
            raise AudioReadError("the audio is empty (0 samples)")
        if wave.abs().max() == 0:
            raise AudioReadError("the audio is silent (all samples are zero)")
        clip = model.clip_samples
        n_windows = math.ceil(n_samples / clip)
        padded = torch.nn.functional.pad(wave, (0, n_windows * clip - n_samples))
        windows = padded.view(n_windows, clip).to(model.device)
        peaks = windows.abs().amax(dim=1, keepdim=True)
        scales = self.window_scales(windows)
        normalised = windows / scales.clamp_min(torch.finfo(windows.dtype).tiny)
        log_spec, phase = model.features(normalised)
        last_frames = self.signal_frames(n_samples - (n_windows - 1) * clip)
        valid = None
        if last_frames < log_spec.shape[1]:  # the zero padding does not count in the quantile
            valid = torch.ones(log_spec.shape, dtype=torch.bool, device=log_spec.device)
            valid[-1, last_frames:] = False
        return {
            "wave": wave,
            "log_spec": log_spec,
            "phase": phase,
            "valid": valid,
            "scales": scales,
            "peaks": peaks,
            "n_samples": n_samples,
            "n_windows": n_windows,
            "last_frames": last_frames,
        }

    @torch.no_grad()
    def resynthesise(self, prepared: dict, log_spec: torch.Tensor) -> torch.Tensor:
        """The signal [samples] of (masked) log-spectrogram windows of ``prepared``: each
        window's inverse STFT with the original phase, scaled back, cut to the input's length."""
        clip = self.model.clip_samples
        waves = self.model.features.inverse(log_spec, prepared["phase"], length=clip)
        return (waves * prepared["scales"]).reshape(-1)[: prepared["n_samples"]].cpu()

    @torch.no_grad()
    def finish_waveform(self, prepared: dict, scores: torch.Tensor, mask: torch.Tensor) -> dict:
        """The second half of ``interpret_waveform``: its result dict from ``prepared``
        (``prepare_waveform``), the windows' scores and their mask [n_windows, T, F]."""
        model = self.model
        log_spec, n_windows = prepared["log_spec"], prepared["n_windows"]
        n_samples = prepared["n_samples"]
        interpretation = self.resynthesise(prepared, mask * log_spec)
        probs = model.probabilities(scores)
        audible = prepared["peaks"].squeeze(1) > 0
        mean_probs = probs[audible].mean(dim=0)
        top = torch.topk(mean_probs, k=min(5, len(model.class_names)))
        n_frames = (n_windows - 1) * log_spec.shape[1] + prepared["last_frames"]
        window_rows = []
        for index in range(n_windows):
            best = int(probs[index].argmax())
            window_rows.append(
                {
                    "start_s": index * model.clip_seconds,
                    "end_s": min((index + 1) * model.clip_seconds, n_samples / model.sample_rate),
                    "class": model.class_names[best],
                    "probability": float(probs[index, best]),
                    "silent": not bool(audible[index]),
                }
            )
        return {
            "log_spec": log_spec.reshape(-1, log_spec.shape[2])[:n_frames].cpu(),
            "mask": mask.reshape(-1, mask.shape[2])[:n_frames].float().cpu(),
            "interpretation_wave": interpretation,
            "top": [
                (model.class_names[int(i)], float(p))
                for p, i in zip(top.values, top.indices, strict=True)
            ],
            "windows": window_rows,
            "n_windows": n_windows,
        }

    def signal_frames(self, n_samples: int) -> int:
        """How many STFT frames of a 5 s window hold signal when its first ``n_samples`` are
        signal and the rest zero padding (a frame counts while its centre lies in the signal)."""
        hop = self.features_hop()
        return min(n_samples // hop + 1, self.clip_samples // hop + 1)


def window_scales(windows: torch.Tensor, input_normalisation: str) -> torch.Tensor:
    """See ``AudioInterpreter.window_scales``."""
    peaks = windows.abs().amax(dim=1, keepdim=True)
    if input_normalisation == "peak":
        return peaks
    maxima = windows.amax(dim=1, keepdim=True)
    negative = (maxima <= 0) & (peaks > 0)
    if negative.any():
        logger.warning(
            "%d window(s) have sound but no positive sample: divided by their absolute "
            "peak, not by their maximum",
            int(negative.sum()),
        )
    return torch.where(negative, peaks, maxima.clamp_min(0))


def mixture_pairs(items: list[dict], n_pairs: int) -> list[tuple[dict, dict]]:
    """Up to ``n_pairs`` pairs of items of different classes, deterministic: item i with the
    next item (in order) of another class, each item used once.

    Example
    -------
    >>> items = [{"class_name": c} for c in "aabbc"]
    >>> [(x["class_name"], y["class_name"]) for x, y in mixture_pairs(items, 5)]
    [('a', 'b'), ('a', 'b')]
    """
    pairs, used = [], set()
    for i, first in enumerate(items):
        if i in used or len(pairs) == n_pairs:
            continue
        for j in range(i + 1, len(items)):
            if j not in used and items[j]["class_name"] != first["class_name"]:
                pairs.append((first, items[j]))
                used.update((i, j))
                break
    return pairs


__all__ = ["AudioInterpreter", "card_settings", "load_model", "mixture_pairs", "window_scales"]
