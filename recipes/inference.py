"""Load a trained model once, then classify and interpret tensors or audio files of any length.

``AudioInterpreter.from_run(RUN)`` rebuilds a model from a training run's folder (its
``model.json`` and best checkpoint): a ``train_classifier.py`` run gives the by-design
interpretation (``method="by_design"``, formerly ``"focal"``: FocalNet modulation map or ViT
attention, thresholded at quantile q); a ``train_piq.py`` / ``train_lmac.py`` run gives PIQ's /
L-MAC's soft mask (``method="piq"`` / ``"lmac"``) or, on request, its frozen classifier's
by-design one.
``AudioInterpreter.from_released(FOLDER)`` loads the checkpoints SpeechBrain published for the
paper (``embedding_model.ckpt``, ``classifier.ckpt``, ``label_encoder.txt``). Sample rate, clip
length, STFT and score scale come from the run's ``model.json`` (``card_settings``).

Files: any format soundfile reads, any sample rate, mono or stereo, any length. The signal is
downmixed and resampled to the model's rate (16 kHz), cut into 5 s windows (the last one
zero-padded), each window peak-normalised and interpreted, and the windows' masks stitched back:
the interpretation WAV has the input's duration.

Example
-------
>>> from recipes.models import TINY_FOCALNET, build_embedder, build_head
>>> embedder = build_embedder("focalnet", pretrained=False, config_overrides=TINY_FOCALNET)
>>> head = build_head(embedder.embedding_size, n_classes=2)
>>> model = AudioInterpreter(embedder, head, ["dog", "rain"], quantile=0.9)
>>> result = model.interpret_waveform(torch.randn(12000, 2), sample_rate=8000)  # 1.5 s stereo
>>> result["interpretation_wave"].shape, len(result["top"]), result["n_windows"]
(torch.Size([24000]), 2, 1)
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path

import torch

from data_prep.audio import AudioReadError, read_audio, to_mono_resampled
from data_prep.esc50 import first_appearance_classes
from data_prep.mixing import mix_sources
from interpreters.lmac import LMACDecoder
from interpreters.maps import MAP_FUNCTIONS, quantile_mask, upsample_map
from interpreters.outputs import (
    save_interpretation_png,
    save_mixture_png,
    save_wav,
    written_together,
)
from interpreters.piq import PIQInterpreter, representation_grid
from recipes.features import STFT_DEFAULTS, LogSpectrogram
from recipes.models import build_embedder, build_head, load_backbone_state
from recipes.runs import (
    RunFolderError,
    build_classifier,
    load_best_checkpoint,
    load_classifier_checkpoint,
    read_model_card,
)

logger = logging.getLogger(__name__)

# What a model saw, read from a run's model.json (``sample_rate``, ``clip_seconds``, ``stft``,
# ``score_scale``); these defaults are the paper's values, used for released models and for runs
# written before the card recorded them.
SAMPLE_RATE = 16000
CLIP_SECONDS = 5.0
SCORE_SCALE = 30.0  # the additive-margin softmax scale of training (hparams loss_fn.scale)
# How a 5 s window is scaled before its log-spectrogram: "peak" (divided by its absolute peak,
# this project's data pipeline) or "signed_max" (divided by its largest sample, ``sig / sig.max()``,
# the authors' pipeline and so SpeechBrain's released models).
INPUT_NORMALISATIONS = ("peak", "signed_max")
METHODS = ("by_design", "piq", "lmac")
# Earlier names of a method, still accepted (``focal`` also named ViT attention maps).
METHOD_ALIASES = {"focal": "by_design"}


def canonical_method(method: str | None) -> str | None:
    """The method's current name (``"focal"`` -> ``"by_design"``); ValueError for an unknown one.

    Example
    -------
    >>> canonical_method("focal"), canonical_method("piq"), canonical_method(None)
    ('by_design', 'piq', None)
    """
    method = METHOD_ALIASES.get(method, method)
    if method not in (None, *METHODS):
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return method


RELEASED_ID = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
RELEASED_FILES = ("embedding_model.ckpt", "classifier.ckpt", "label_encoder.txt")


def download_released(repo_id: str, cache_dir="pretrained_models") -> Path:
    """Downloads a released model's files from the HuggingFace hub; returns their folder.

    ``label_encoder.txt`` is fetched when the repository has it (see ``from_released``).
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    folder = None
    for name in RELEASED_FILES:
        try:
            folder = Path(hf_hub_download(repo_id, name, cache_dir=cache_dir)).parent
        except EntryNotFoundError:
            if name != "label_encoder.txt":
                raise RunFolderError(f"{repo_id} on the HuggingFace hub has no {name}") from None
    return folder


def _released_class_names(folder: Path, data_folder=None) -> list[str]:
    """Class names in the released classifier's label order."""
    from speechbrain.dataio.encoder import CategoricalEncoder

    path = folder / "label_encoder.txt"
    if path.is_file():
        encoder = CategoricalEncoder()
        encoder.load(str(path))
        return [encoder.ind2lab[index] for index in range(len(encoder))]
    if data_folder is None:
        raise RunFolderError(
            f"{folder} has no label_encoder.txt: give --data_folder (an ESC-50 copy) to take the "
            "label order from its training folds, or add the label_encoder.txt of the release."
        )
    return first_appearance_classes(data_folder)


def card_settings(card: dict) -> dict:
    """What a run's model card says its classifier saw: sample rate, clip length, STFT settings
    and score scale, each defaulting to the paper's value for cards written before it existed.

    Example
    -------
    >>> card_settings({"sample_rate": 8000, "stft": {"n_fft": 512}})
    {'sample_rate': 8000, 'clip_seconds': 5.0, 'stft': {'n_fft': 512}, 'score_scale': 30.0}
    >>> card_settings({})["stft"]
    {'n_fft': 1024, 'win_length': 23.2199, 'hop_length': 11.6099}
    """
    return {
        "sample_rate": int(card.get("sample_rate", SAMPLE_RATE)),
        "clip_seconds": float(card.get("clip_seconds", CLIP_SECONDS)),
        "stft": dict(card.get("stft", STFT_DEFAULTS)),
        "score_scale": float(card.get("score_scale", SCORE_SCALE)),
    }


class AudioInterpreter:
    """A trained classifier with its interpretation method, ready for tensors and files.

    Arguments
    ---------
    embedding_model : torch.nn.Module
        ``FocalNetEmbedder`` / ``ViTEmbedder`` with trained weights.
    classifier : torch.nn.Module
        The cosine head.
    class_names : list of str
        Names in label order.
    interpreter : PIQInterpreter or LMACDecoder, optional
        Given: masks are PIQ's / L-MAC's; None: the by-design map thresholded at ``quantile``.
    quantile : float
        Default quantile order q of the by-design mask.
    device : str
        Where to run.
    input_normalisation : str
        How each window is scaled before its log-spectrogram (``INPUT_NORMALISATIONS``).
    sample_rate, clip_seconds : int, float
        The classifier's sample rate and clip (window) length.
    stft : dict, optional
        ``n_fft``, ``win_length`` and ``hop_length`` (ms) of the log-spectrogram; missing keys
        take the paper's values (``recipes.features.STFT_DEFAULTS``).
    score_scale : float
        The scale of the cosine scores in the displayed probabilities (training's loss scale).
    """

    def __init__(
        self,
        embedding_model,
        classifier,
        class_names,
        interpreter: PIQInterpreter | LMACDecoder | None = None,
        quantile: float = 0.9,
        device: str = "cpu",
        input_normalisation: str = "peak",
        sample_rate: int = SAMPLE_RATE,
        clip_seconds: float = CLIP_SECONDS,
        stft: dict | None = None,
        score_scale: float = SCORE_SCALE,
    ):
        if input_normalisation not in INPUT_NORMALISATIONS:
            raise ValueError(
                f"input_normalisation must be one of {INPUT_NORMALISATIONS}, got "
                f"{input_normalisation!r}"
            )
        self.input_normalisation = input_normalisation
        self.device = torch.device(device)
        self.sample_rate = int(sample_rate)
        self.clip_seconds = float(clip_seconds)
        self.score_scale = float(score_scale)
        stft = {**STFT_DEFAULTS, **(stft or {})}
        self.features = LogSpectrogram(sample_rate=self.sample_rate, **stft).to(self.device)
        self.embedding_model = embedding_model.to(self.device).eval()
        self.classifier = classifier.to(self.device).eval()
        self.interpreter = None if interpreter is None else interpreter.to(self.device).eval()
        self.class_names = list(class_names)
        self.quantile = float(quantile)
        self.kind = embedding_model.kind
        self.clip_samples = round(self.sample_rate * self.clip_seconds)

    @property
    def method(self) -> str:
        if self.interpreter is None:
            return "by_design"
        return "lmac" if isinstance(self.interpreter, LMACDecoder) else "piq"

    # ------------------------------------------------------------- loading ---
    @classmethod
    def from_run(cls, folder, method: str | None = None, quantile=None, device="cpu"):
        """Loads a ``train_classifier.py``, ``train_piq.py`` or ``train_lmac.py`` run folder.

        ``method``: "by_design" (by-design, default for classifier runs), "piq" / "lmac" (default
        for PIQ / L-MAC runs). ``quantile`` defaults to the run's.
        """
        method = canonical_method(method)
        card = read_model_card(folder)
        interpreter = None
        if card.get("method") == "lmac":
            classifier_folder = card["classifier_folder"]
            classifier_card = read_model_card(classifier_folder)
            if method == "piq":
                raise RunFolderError(f"{folder} is an L-MAC run: --method=piq needs a PIQ run.")
            if method in (None, "lmac"):
                interpreter = LMACDecoder(**card["decoder"])
                load_best_checkpoint(folder, {"decoder": interpreter}, min_key="loss")
        elif card.get("method") == "piq":
            classifier_folder = card["classifier_folder"]
            classifier_card = read_model_card(classifier_folder)
            if method == "lmac":
                raise RunFolderError(f"{folder} is a PIQ run: --method=lmac needs an L-MAC run.")
            if method in (None, "piq"):
                settings = card["interpreter"]
                interpreter = PIQInterpreter(
                    settings["input_size"],
                    settings["n_classes"],
                    settings["codebook_size"],
                    settings["width"],
                )
                load_best_checkpoint(folder, {"interpreter": interpreter}, max_key="fid_i")
        else:
            if method in ("piq", "lmac"):
                raise RunFolderError(
                    f"{folder} is a classifier run: --method={method} needs the output folder "
                    f"of a train_{method}.py run (or use --method=by_design)."
                )
            classifier_folder, classifier_card = folder, card
        embedding_model, classifier = build_classifier(classifier_card)
        load_classifier_checkpoint(
            classifier_folder, {"embedding_model": embedding_model, "classifier": classifier}
        )
        return cls(
            embedding_model,
            classifier,
            classifier_card["class_names"],
            interpreter=interpreter,
            quantile=classifier_card.get("quantile", 0.9) if quantile is None else quantile,
            device=device,
            input_normalisation=classifier_card.get("input_normalisation", "peak"),
            **card_settings(classifier_card),
        )

    @classmethod
    def from_released(
        cls,
        folder,
        backbone=None,
        backbone_config=None,
        quantile=0.9,
        device="cpu",
        data_folder=None,
        image_antialias=False,
    ):
        """Loads SpeechBrain's published checkpoints for the paper from a local folder.

        The folder holds ``embedding_model.ckpt`` (the state dict of the HuggingFace
        ``FocalNetBackbone`` / ``ViTModel``, with transformers 4.x or 5.x key names: see
        ``recipes.models.load_backbone_state``), ``classifier.ckpt`` (the cosine head) and
        ``label_encoder.txt`` (SpeechBrain ``CategoricalEncoder``; its order is the first
        appearance of each class in the training manifest, not ESC-50's ``target``). Without
        ``label_encoder.txt``, ``data_folder`` (an ESC-50 copy) gives that order.
        ``backbone`` is read from the state dict's keys when not given; ``backbone_config``
        overrides the shipped (base) config, for smaller models. ``image_antialias`` sets the
        resize of the image view: False (default) is torchvision < 0.17's tensor ``resize``, True
        torchvision >= 0.17's (README, "Deviations and choices": which one the authors ran is
        not recorded).
        """
        folder = Path(folder)
        missing = [
            name
            for name in ("embedding_model.ckpt", "classifier.ckpt")
            if not (folder / name).is_file()
        ]
        if missing:
            raise RunFolderError(
                f"{folder} is neither a run folder (no model.json) nor a released model "
                f"folder: {missing} missing."
            )
        class_names = _released_class_names(folder, data_folder)
        backbone_state = torch.load(folder / "embedding_model.ckpt", map_location="cpu")
        head_state = torch.load(folder / "classifier.ckpt", map_location="cpu")
        if backbone is None:
            is_focalnet = any(key.startswith("focalnet.") for key in backbone_state)
            backbone = "focalnet" if is_focalnet else "vit"
        embedding_model = build_embedder(
            backbone,
            pretrained=False,
            config_overrides=backbone_config,
            image_antialias=image_antialias,
        )
        n_classes, head_neurons = head_state["weight"].shape
        if n_classes != len(class_names):
            raise RunFolderError(
                f"{folder}: classifier.ckpt has {n_classes} classes, the label order "
                f"{len(class_names)}."
            )
        classifier = build_head(embedding_model.embedding_size, n_classes, head_neurons)
        try:
            load_backbone_state(embedding_model.backbone, backbone_state)
            classifier.load_state_dict(head_state)
        except (RuntimeError, ValueError) as error:
            raise RunFolderError(
                f"{folder}: the checkpoints do not fit a {backbone} model with "
                f"backbone_config={backbone_config or {}}: {error}"
            ) from error
        return cls(
            embedding_model,
            classifier,
            class_names,
            quantile=quantile,
            device=device,
            input_normalisation="signed_max",  # the authors' sig / sig.max()
        )

    @classmethod
    def from_folder(cls, folder, method=None, quantile=None, device="cpu", **released):
        """``from_run`` for a run folder (with ``model.json``), else ``from_released``.

        A HuggingFace id of a released model (``speechbrain/focalnet-base-esc50``,
        ``speechbrain/vit-base-esc50``) that is not a local folder is downloaded first, into
        ``pretrained_models/`` (needs the network).
        """
        method = canonical_method(method)
        path = Path(folder)
        if not path.exists() and RELEASED_ID.fullmatch(str(folder)):
            path = download_released(str(folder))
        if (path / "model.json").is_file() or not path.is_dir():
            return cls.from_run(path, method=method, quantile=quantile, device=device)
        if method in ("piq", "lmac"):
            raise RunFolderError(f"{folder}: released classifiers have no {method} interpreter.")
        return cls.from_released(
            path, quantile=0.9 if quantile is None else quantile, device=device, **released
        )

    # ------------------------------------------------------------- tensors ---
    def cosine_scores(self, log_spec: torch.Tensor) -> torch.Tensor:
        """Cosine scores [B, n_classes] of log-spectrograms [B, T, F], differentiable."""
        embedding = self.embedding_model(self.embedding_model.image(log_spec))["embedding"]
        return self.classifier(embedding.unsqueeze(1)).squeeze(1)

    @torch.no_grad()
    def classify(self, log_spec: torch.Tensor) -> torch.Tensor:
        """Cosine scores [B, n_classes] of log-spectrograms [B, T, F] (no gradients)."""
        return self.cosine_scores(log_spec)

    @torch.no_grad()
    def scores_and_map(self, log_spec: torch.Tensor):
        """Cosine scores and the by-design map upsampled to the spectrogram, in one forward."""
        out = self.embedding_model(self.embedding_model.image(log_spec), with_map=True)
        scores = self.classifier(out["embedding"].unsqueeze(1)).squeeze(1)
        by_design = MAP_FUNCTIONS[self.kind](out["raw_map"])
        return scores, upsample_map(by_design, log_spec.shape[1:])

    def effective_quantile(self, quantile: float | None = None) -> float | None:
        """The q a by-design mask uses (``quantile``, else the default); None for PIQ / L-MAC."""
        if self.interpreter is not None:
            return None
        return self.quantile if quantile is None else float(quantile)

    @torch.no_grad()
    def mask(self, log_spec: torch.Tensor, quantile: float | None = None, valid=None):
        """``(scores, mask)`` for log-spectrograms [B, T, F]: PIQ's, L-MAC's or the by-design one.

        ``valid`` (boolean [B, T, F], optional): the cells a by-design mask's quantile counts
        (see ``interpreters.maps.quantile_mask``); PIQ's and L-MAC's soft masks ignore it.
        """
        if self.interpreter is None:
            scores, upsampled = self.scores_and_map(log_spec)
            return scores, quantile_mask(upsampled, self.effective_quantile(quantile), valid)
        lmac = isinstance(self.interpreter, LMACDecoder)
        out = self.embedding_model(self.embedding_model.image(log_spec), with_stages=lmac)
        scores = self.classifier(out["embedding"].unsqueeze(1)).squeeze(1)
        if lmac:
            return scores, torch.sigmoid(self.interpreter(out["stages"], log_spec.shape[1:]))
        grid = representation_grid(out["representation"], self.kind)
        return scores, self.interpreter(grid, scores.argmax(dim=1))["mask"]

    def probabilities(self, scores: torch.Tensor) -> torch.Tensor:
        """Class probabilities for display: softmax of the cosine scores at the training scale."""
        return torch.softmax(self.score_scale * scores, dim=-1)

    def window_scales(self, windows: torch.Tensor) -> torch.Tensor:
        """What each window [n, samples] is divided by: [n, 1] (``input_normalisation``).

        "signed_max" divides by the largest sample, as the authors did; a window with sound but
        no positive sample (the authors' code would flip or blow it up) is divided by its
        absolute peak instead, with a warning. Silent windows get 0 (they stay zero).

        Example
        -------
        >>> model = AudioInterpreter.__new__(AudioInterpreter)
        >>> windows = torch.tensor([[0.5, -1.0, 0.25], [0.0, 0.0, 0.0]])
        >>> model.input_normalisation = "peak"
        >>> model.window_scales(windows).flatten().tolist()
        [1.0, 0.0]
        >>> model.input_normalisation = "signed_max"
        >>> model.window_scales(windows).flatten().tolist()
        [0.5, 0.0]
        """
        peaks = windows.abs().amax(dim=1, keepdim=True)
        if self.input_normalisation == "peak":
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

    @torch.no_grad()
    def interpret_waveform(self, signal: torch.Tensor, sample_rate: int, quantile=None) -> dict:
        """Interprets a signal of any length ([samples] or [samples, channels]).

        Returns a dict: ``log_spec``, ``mask`` (stitched, [frames, 513]), ``interpretation_wave``
        (at ``sample_rate``, the input's duration), ``top`` (up to 5 (class, probability) pairs, the
        probabilities averaged over the non-silent windows), ``windows`` (per 5 s window: start,
        end, predicted class, probability) and ``n_windows``.
        """
        if signal.dim() == 1:
            signal = signal.unsqueeze(1)
        wave = to_mono_resampled(signal.float(), sample_rate, self.sample_rate)
        n_samples = wave.shape[0]
        if n_samples == 0:
            raise AudioReadError("the audio is empty (0 samples)")
        if wave.abs().max() == 0:
            raise AudioReadError("the audio is silent (all samples are zero)")
        n_windows = math.ceil(n_samples / self.clip_samples)
        padded = torch.nn.functional.pad(wave, (0, n_windows * self.clip_samples - n_samples))
        windows = padded.view(n_windows, self.clip_samples).to(self.device)
        peaks = windows.abs().amax(dim=1, keepdim=True)
        scales = self.window_scales(windows)
        normalised = windows / scales.clamp_min(torch.finfo(windows.dtype).tiny)
        log_spec, phase = self.features(normalised)
        last_frames = self.signal_frames(n_samples - (n_windows - 1) * self.clip_samples)
        valid = None
        if last_frames < log_spec.shape[1]:  # the zero padding does not count in the quantile
            valid = torch.ones(log_spec.shape, dtype=torch.bool, device=log_spec.device)
            valid[-1, last_frames:] = False
        scores, mask = self.mask(log_spec, quantile, valid)
        x_int = mask * log_spec
        waves = self.features.inverse(x_int, phase, length=self.clip_samples) * scales
        interpretation = waves.reshape(-1)[:n_samples].cpu()

        probs = self.probabilities(scores)
        audible = peaks.squeeze(1) > 0
        mean_probs = probs[audible].mean(dim=0)
        top = torch.topk(mean_probs, k=min(5, len(self.class_names)))
        n_frames = (n_windows - 1) * log_spec.shape[1] + last_frames
        window_rows = []
        for index in range(n_windows):
            best = int(probs[index].argmax())
            window_rows.append(
                {
                    "start_s": index * self.clip_seconds,
                    "end_s": min((index + 1) * self.clip_seconds, n_samples / self.sample_rate),
                    "class": self.class_names[best],
                    "probability": float(probs[index, best]),
                    "silent": not bool(audible[index]),
                }
            )
        return {
            "log_spec": log_spec.reshape(-1, log_spec.shape[2])[:n_frames].cpu(),
            "mask": mask.reshape(-1, mask.shape[2])[:n_frames].float().cpu(),
            "interpretation_wave": interpretation,
            "top": [
                (self.class_names[int(i)], float(p))
                for p, i in zip(top.values, top.indices, strict=True)
            ],
            "windows": window_rows,
            "n_windows": n_windows,
        }

    def signal_frames(self, n_samples: int) -> int:
        """How many STFT frames of a 5 s window hold signal when its first ``n_samples`` are
        signal and the rest zero padding (a frame counts while its centre lies in the signal)."""
        return min(
            n_samples // self.features_hop() + 1, self.clip_samples // self.features_hop() + 1
        )

    def features_hop(self) -> int:
        """The STFT hop in samples."""
        return int(self.features.stft.hop_length)  # SpeechBrain's STFT keeps it in samples

    def interpret_file(self, path, output_folder=None, quantile=None) -> dict:
        """Interprets an audio file; writes ``<name>.png``, ``<name>.wav``, ``<name>.json``.

        The three files appear together or not at all. Returns the JSON content (with the
        paths of the files under ``outputs``). Raises ``AudioReadError`` for an unreadable,
        empty or silent file.
        """
        path = Path(path)
        signal, sample_rate = read_audio(path)
        try:
            result = self.interpret_waveform(signal, sample_rate, quantile)
        except AudioReadError as error:
            raise AudioReadError(f"{path}: {error}") from error
        folder = Path(output_folder) if output_folder is not None else path.parent
        stem = f"{path.stem}_{self.method}"
        names = {kind: f"{stem}.{kind}" for kind in ("png", "wav", "json")}
        q = self.effective_quantile(quantile)
        summary = {
            "audio": str(path),
            "duration_s": len(result["interpretation_wave"]) / self.sample_rate,
            "input_sample_rate": sample_rate,
            "method": self.method,
            "backbone": self.kind,
            "quantile": q,
            "top": [{"class": name, "probability": p} for name, p in result["top"]],
            "windows": result["windows"],
            "mask_share": float(result["mask"].mean()),
            "outputs": {kind: str(folder / name) for kind, name in names.items()},
        }
        with written_together(folder) as staging:
            x_int = result["mask"] * result["log_spec"]
            save_interpretation_png(
                result["log_spec"],
                result["mask"],
                x_int,
                staging / names["png"],
                None,
                result["top"][0][0],
                sample_rate=self.sample_rate,
                hop_length=self.features_hop(),
            )
            save_wav(result["interpretation_wave"], staging / names["wav"], self.sample_rate)
            (staging / names["json"]).write_text(json.dumps(summary, indent=2) + "\n")
        return summary

    def interpret_mixture(
        self, source_1, source_2, names, output_folder, mode="spectral", quantile=None
    ) -> dict:
        """The paper's Fig. 2: mix two 16 kHz clips, predict and interpret the mixture.

        Writes ``mixture_<name1>+<name2>_<mode>_<method>`` ``.png`` (source 1, source 2,
        mixture, interpretation), ``_source1.wav``, ``_source2.wav``, ``_mixture.wav``,
        ``_interpretation.wav`` and ``.json``, all together. ``names`` label the sources
        (class names or file names). Returns the JSON content.
        """
        mixture, parts = mix_sources(source_1, source_2, self.sample_rate, mode)
        result = self.interpret_waveform(mixture, self.sample_rate, quantile)
        spectrograms = [
            self.features(part.unsqueeze(0).to(self.device), with_phase=False)[0][0]
            for part in parts
        ]
        x_int = result["mask"] * result["log_spec"]
        predicted = result["top"][0][0]
        stem = f"mixture_{names[0]}+{names[1]}_{mode}_{self.method}"
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
            "method": self.method,
            "quantile": self.effective_quantile(quantile),
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
                sample_rate=self.sample_rate,
                hop_length=self.features_hop(),
            )
            for key, wave in waves.items():
                save_wav(wave.cpu(), staging / f"{stem}_{key}.wav", self.sample_rate)
            (staging / f"{stem}.json").write_text(json.dumps(summary, indent=2) + "\n")
        return summary


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


def load_interpreter_of(classifier_folder, folder, method="piq", device="cpu"):
    """The ``method`` ("piq" or "lmac") run ``folder`` as an ``AudioInterpreter``, checked to
    be trained on the classifier run ``classifier_folder`` (RunFolderError otherwise)."""
    card = read_model_card(folder)
    classifier = Path(card.get("classifier_folder", "")).resolve()
    if card.get("method") != method or classifier != Path(classifier_folder).resolve():
        raise RunFolderError(f"{folder} is not a train_{method}.py run on {classifier_folder}")
    return AudioInterpreter.from_run(folder, device=device)


def load_piq_of(classifier_folder, piq_folder, device="cpu") -> AudioInterpreter:
    """``load_interpreter_of`` for a PIQ run."""
    return load_interpreter_of(classifier_folder, piq_folder, "piq", device)
