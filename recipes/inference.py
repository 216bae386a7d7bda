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

from data_prep.audio import AudioReadError, resample_blocks, to_mono_resampled
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
    def mask(
        self, log_spec: torch.Tensor, quantile: float | None = None, valid=None, generator=None
    ):
        """``(scores, mask)`` for log-spectrograms [B, T, F] (``interpreters.methods``).

        ``valid`` (boolean [B, T, F], optional): the cells a same-area mask's quantile counts
        (see ``interpreters.maps.quantile_mask``); soft masks ignore it. ``generator``: the
        random baseline's (default: a new one seeded with ``seed``).
        """
        if generator is None:
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
        """Interprets a signal of any length ([samples] or [samples, channels]) in one batch.

        Returns a dict: ``log_spec``, ``mask`` (stitched, [frames, 513]), ``interpretation_wave``
        (at the model's rate, the input's duration), ``top`` (up to 5 (class, probability) pairs,
        the probabilities averaged over the non-silent windows), ``windows`` (per 5 s window:
        start, end, predicted class, probability) and ``n_windows``. A long signal is better
        given to ``interpret_blocks`` (bounded memory).
        """
        prepared = self.prepare_waveform(signal, sample_rate)
        generator = torch.Generator().manual_seed(self.seed)
        scores, mask = self.mask(prepared["log_spec"], quantile, prepared["valid"], generator)
        return self.finish_waveform(prepared, scores, mask)

    @torch.no_grad()
    def prepare_waveform(self, signal: torch.Tensor, sample_rate: int) -> dict:
        """The first half of ``interpret_waveform``: the signal downmixed, resampled, cut into
        windows, each scaled; returns ``wave`` (mono, the model's rate), ``log_spec`` and
        ``phase`` [n_windows, T, F], ``valid`` (the cells a same-area quantile counts, or None),
        ``scales``, ``peaks``, ``n_samples``, ``n_windows``, ``last_frames``, ``first_window``.
        A mask of ``log_spec`` (any method, any q) then goes to ``finish_waveform``: the
        explorer (``recipes/listening``) keeps this between changes of method and q."""
        if signal.dim() == 1:
            signal = signal.unsqueeze(1)
        wave = to_mono_resampled(signal.float(), sample_rate, self.model.sample_rate)
        if wave.shape[0] == 0:
            raise AudioReadError("the audio is empty (0 samples)")
        if wave.abs().max() == 0:
            raise AudioReadError("the audio is silent (all samples are zero)")
        return self._prepare_windows(wave, 0)

    @torch.no_grad()
    def finish_waveform(self, prepared: dict, scores: torch.Tensor, mask: torch.Tensor) -> dict:
        """The second half of ``interpret_waveform``: its result dict from ``prepared``
        (``prepare_waveform``), the windows' scores and their mask [n_windows, T, F]."""
        part = self._finish_windows(prepared, scores, mask)
        mean_probs = part["probabilities"][part["audible"]].mean(dim=0)
        return {
            "log_spec": part["log_spec"],
            "mask": part["mask"],
            "interpretation_wave": part["interpretation_wave"],
            "top": self.top_classes(mean_probs),
            "windows": part["windows"],
            "n_windows": len(part["windows"]),
        }

    @torch.no_grad()
    def resynthesise(self, prepared: dict, log_spec: torch.Tensor) -> torch.Tensor:
        """The signal [samples] of (masked) log-spectrogram windows of ``prepared``: each
        window's inverse STFT with the original phase, scaled back, cut to the input's length."""
        clip = self.model.clip_samples
        waves = self.model.features.inverse(log_spec, prepared["phase"], length=clip)
        return (waves * prepared["scales"]).reshape(-1)[: prepared["n_samples"]].cpu()

    @torch.no_grad()
    def interpret_blocks(self, blocks, sample_rate: int, quantile=None, batch_windows: int = 8):
        """Interprets a signal given in consecutive blocks, in bounded memory.

        ``blocks``: an iterable of [samples, channels] tensors (e.g.
        ``data_prep.audio.read_audio_blocks``), at ``sample_rate``. They are downmixed and
        resampled block by block (``data_prep.audio.resample_blocks``) and cut into the
        model's 5 s windows, interpreted ``batch_windows`` at a time. Yields one dict a batch
        with the keys of ``interpret_waveform``'s result for those windows (``log_spec``,
        ``mask``, ``interpretation_wave``, ``windows``) and ``probabilities`` [n, classes],
        ``audible`` [n] (the windows with sound): concatenated, they equal
        ``interpret_waveform`` of the whole signal within float rounding (methods drawing random
        numbers draw them in another order). A signal without sound raises AudioReadError after
        the last block.

        Example
        -------
        >>> from recipes.loading import LoadedModel
        >>> from recipes.models import TINY_FOCALNET, AudioClassifier, build_embedder, build_head
        >>> embedder = build_embedder("focalnet", pretrained=False, config_overrides=TINY_FOCALNET)
        >>> classifier = AudioClassifier(embedder, build_head(embedder.embedding_size, 2))
        >>> model = AudioInterpreter(LoadedModel(classifier, ["dog", "rain"], "."), "gradcam")
        >>> signal = torch.randn(16000 * 11, 1)  # 11 s
        >>> parts = list(model.interpret_blocks(signal.split(16000), 16000, batch_windows=2))
        >>> [len(p["windows"]) for p in parts], sum(len(p["interpretation_wave"]) for p in parts)
        ([2, 1], 176000)
        """
        clip = self.model.clip_samples
        step = clip * max(int(batch_windows), 1)
        generator = torch.Generator().manual_seed(self.seed)
        pending, first_window, audible = [], 0, False
        n_pending = 0
        for mono in resample_blocks(blocks, sample_rate, self.model.sample_rate):
            if not audible and mono.numel():
                audible = bool(mono.abs().max() > 0)
            pending.append(mono)
            n_pending += mono.shape[0]
            while n_pending >= step:
                wave = torch.cat(pending)
                pending, n_pending = [wave[step:]], wave.shape[0] - step
                yield self._interpret_windows(wave[:step], first_window, quantile, generator)
                first_window += step // clip
        wave = torch.cat(pending) if pending else torch.zeros(0)
        if first_window == 0 and wave.shape[0] == 0:
            raise AudioReadError("the audio is empty (0 samples)")
        if not audible:
            raise AudioReadError("the audio is silent (all samples are zero)")
        if wave.shape[0]:
            yield self._interpret_windows(wave, first_window, quantile, generator)

    def _interpret_windows(self, wave, first_window, quantile, generator) -> dict:
        """One batch of windows of ``wave`` (mono, the model's rate): prepared, masked, finished."""
        prepared = self._prepare_windows(wave, first_window)
        scores, mask = self.mask(prepared["log_spec"], quantile, prepared["valid"], generator)
        return self._finish_windows(prepared, scores, mask)

    def _prepare_windows(self, wave, first_window: int) -> dict:
        """``wave`` cut into 5 s windows, the last one padded, each scaled, and their
        log-spectrograms; ``first_window`` numbers them in the file."""
        model = self.model
        n_samples = wave.shape[0]
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
            "first_window": first_window,
        }

    def _finish_windows(self, prepared: dict, scores: torch.Tensor, mask: torch.Tensor) -> dict:
        """The windows' stitched log-spectrogram and mask, the interpretation's signal, the
        probabilities, which windows have sound, and one row per window."""
        model = self.model
        log_spec, n_windows = prepared["log_spec"], prepared["n_windows"]
        first_window, clip = prepared["first_window"], model.clip_samples
        probs = model.probabilities(scores)
        audible = prepared["peaks"].squeeze(1) > 0
        n_frames = (n_windows - 1) * log_spec.shape[1] + prepared["last_frames"]
        seconds = model.clip_seconds
        end_s = (first_window * clip + prepared["n_samples"]) / model.sample_rate
        window_rows = []
        for index in range(n_windows):
            best = int(probs[index].argmax())
            window_rows.append(
                {
                    "start_s": (first_window + index) * seconds,
                    "end_s": min((first_window + index + 1) * seconds, end_s),
                    "class": model.class_names[best],
                    "probability": float(probs[index, best]),
                    "silent": not bool(audible[index]),
                }
            )
        return {
            "log_spec": log_spec.reshape(-1, log_spec.shape[2])[:n_frames].cpu(),
            "mask": mask.reshape(-1, mask.shape[2])[:n_frames].float().cpu(),
            "interpretation_wave": self.resynthesise(prepared, mask * log_spec),
            "probabilities": probs.float().cpu(),
            "audible": audible.cpu(),
            "windows": window_rows,
        }

    def top_classes(self, mean_probs: torch.Tensor, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` most probable (class, probability) pairs of a probability vector."""
        top = torch.topk(mean_probs, k=min(k, len(self.model.class_names)))
        return [
            (self.model.class_names[int(i)], float(p))
            for p, i in zip(top.values, top.indices, strict=True)
        ]

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
