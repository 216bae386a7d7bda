"""Loading what the studies and inference run on: a classifier, and the trained methods on it.

``load_model(FOLDER)`` reads a ``train_classifier.py`` run (its ``model.json`` and best
checkpoint), a ``train_piq.py`` / ``train_lmac.py`` run (its classifier and its trained
interpreter) or the checkpoints SpeechBrain released for the paper, and returns a ``LoadedModel``:
the ``recipes.models.AudioClassifier`` in eval mode with its features and settings (sample rate,
clip length, STFT, score scale and input level, from the run's ``model.json``: ``card_settings``).
``load_trained_run(RUN, classifier_folder)`` loads a trained method's module, the method named by
the run's own ``model.json`` and described by its ``interpreters.methods.TrainedRun``.
``resolve_methods`` is what every study calls: ``--model_folder``, ``--methods`` and ``--runs`` ->
the model, the trained modules by method name, and the list of methods.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from data_prep.audio import DURATION
from data_prep.esc50 import first_appearance_classes
from interpreters.methods import METHODS, get_method
from recipes.augment import SCORE_SCALE
from recipes.backbones import build, released_backbone
from recipes.features import SAMPLE_RATE, STFT_DEFAULTS, LogSpectrogram
from recipes.models import AudioClassifier, build_head
from recipes.runs import (
    RunFolderError,
    build_classifier,
    load_best_checkpoint,
    load_classifier_checkpoint,
    read_model_card,
)

# What a model saw, read from a run's model.json (``sample_rate``, ``clip_seconds``, ``stft``,
# ``score_scale``); these defaults are the paper's values, used for released models.
CLIP_SECONDS = DURATION  # the clip (window) length, data_prep.audio
# How a 5 s window is scaled before its log-spectrogram: "peak" (divided by its absolute peak,
# this project's data pipeline) or "signed_max" (divided by its largest sample, ``sig / sig.max()``,
# the authors' pipeline and so SpeechBrain's released models).
INPUT_NORMALISATIONS = ("peak", "signed_max")
RELEASED_ID = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
RELEASED_FILES = ("embedding_model.ckpt", "classifier.ckpt", "label_encoder.txt")


def card_settings(card: dict) -> dict:
    """What a run's model card says its classifier saw: sample rate, clip length, STFT settings
    and score scale (the paper's values where the card is silent: released models).

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


@dataclass
class LoadedModel:
    """A trained classifier ready for tensors: the ``AudioClassifier`` and what it saw.

    Attributes
    ----------
    classifier : recipes.models.AudioClassifier
        In eval mode on ``device``.
    class_names : list of str
        In label order.
    folder : pathlib.Path
        The classifier run (or released model) folder.
    quantile : float
        The run's quantile order q (same-area masks).
    input_normalisation : str
        How each 5 s window is scaled (``INPUT_NORMALISATIONS``).
    sample_rate, clip_seconds, stft, score_scale
        See ``card_settings``.
    device : str
        Where it runs.
    """

    classifier: AudioClassifier
    class_names: list
    folder: Path
    quantile: float = 0.9
    input_normalisation: str = "peak"
    sample_rate: int = SAMPLE_RATE
    clip_seconds: float = CLIP_SECONDS
    stft: dict = field(default_factory=lambda: dict(STFT_DEFAULTS))
    score_scale: float = SCORE_SCALE
    device: str = "cpu"

    def __post_init__(self):
        if self.input_normalisation not in INPUT_NORMALISATIONS:
            raise ValueError(
                f"input_normalisation must be one of {INPUT_NORMALISATIONS}, got "
                f"{self.input_normalisation!r}"
            )
        self.device = torch.device(self.device)
        self.stft = {**STFT_DEFAULTS, **(self.stft or {})}
        self.features = LogSpectrogram(sample_rate=self.sample_rate, **self.stft).to(self.device)
        self.classifier = self.classifier.to(self.device).eval()

    @property
    def backbone(self) -> str:
        """The registered name of the classifier's backbone."""
        return self.classifier.backbone.name

    @property
    def clip_samples(self) -> int:
        return round(self.sample_rate * self.clip_seconds)

    def hop_samples(self) -> int:
        """The STFT hop in samples."""
        return int(self.features.stft.hop_length)  # SpeechBrain's STFT keeps it in samples

    @torch.no_grad()
    def classify(self, log_spec: torch.Tensor) -> torch.Tensor:
        """Cosine scores [B, n_classes] of log-spectrograms [B, T, F] (no gradients)."""
        return self.classifier.scores(log_spec)

    def probabilities(self, scores: torch.Tensor) -> torch.Tensor:
        """Class probabilities for display: softmax of the cosine scores at the training scale."""
        return torch.softmax(self.score_scale * scores, dim=-1)


def load_classifier_run(folder, device="cpu") -> LoadedModel:
    """The classifier of a ``train_classifier.py`` run folder (its best checkpoint)."""
    card = read_model_card(folder)
    embedding_model, head = build_classifier(card)
    load_classifier_checkpoint(folder, {"embedding_model": embedding_model, "classifier": head})
    return LoadedModel(
        AudioClassifier(embedding_model, head),
        card["class_names"],
        Path(folder),
        quantile=card.get("quantile", 0.9),
        input_normalisation=card.get("input_normalisation", "peak"),
        device=device,
        **card_settings(card),
    )


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


def download_released(repo_id: str, cache_dir="pretrained_models") -> Path:
    """Downloads a released model's files from the HuggingFace hub (cached copies first);
    returns their folder. ``label_encoder.txt`` is fetched when the repository has it (see
    ``load_released``); a file neither cached nor downloadable is a one-line
    ``recipes.offline.DownloadError`` that names ``fetch.py``."""
    from recipes.offline import download_hub_files

    return download_hub_files(repo_id, RELEASED_FILES, cache_dir, optional=("label_encoder.txt",))


def load_released(
    folder,
    backbone=None,
    backbone_config=None,
    quantile=0.9,
    device="cpu",
    data_folder=None,
    image_antialias=False,
) -> LoadedModel:
    """SpeechBrain's published checkpoints for the paper, from a local folder.

    The folder holds ``embedding_model.ckpt`` (the state dict of the backbone: a HuggingFace
    model, with transformers 4.x or 5.x key names, ``recipes.backbones.Backbone.load_state``, or
    SpeechBrain's ``Cnn14``), ``classifier.ckpt`` (the cosine head; CNN14's: a
    ``torch.nn.Linear``, whose scores are logits) and ``label_encoder.txt`` (SpeechBrain
    ``CategoricalEncoder``; its order is the first appearance of each class in the training
    manifest, not ESC-50's ``target``). Without ``label_encoder.txt``, ``data_folder`` (an
    ESC-50 copy) gives that order. ``backbone`` is read from the state dict's keys when not given
    (``released_backbone``); ``backbone_config`` overrides the shipped (base) config, for smaller
    models. ``image_antialias`` sets the resize of the image view: False (default) is
    torchvision < 0.17's tensor ``resize``, True torchvision >= 0.17's.
    """
    folder = Path(folder)
    missing = [
        name
        for name in ("embedding_model.ckpt", "classifier.ckpt")
        if not (folder / name).is_file()
    ]
    if missing:
        raise RunFolderError(
            f"{folder} is neither a run folder (no model.json) nor a released model folder: "
            f"{missing} missing."
        )
    class_names = _released_class_names(folder, data_folder)
    backbone_state = torch.load(folder / "embedding_model.ckpt", map_location="cpu")
    head_state = torch.load(folder / "classifier.ckpt", map_location="cpu")
    try:
        backbone = backbone or released_backbone(backbone_state)
    except ValueError as error:
        raise RunFolderError(f"{folder}/embedding_model.ckpt: {error}") from error
    embedding_model = build(
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
    # SpeechBrain's CNN14 release has a torch.nn.Linear head (weight and bias: logits, score
    # scale 1); the FocalNet / ViT releases the cosine head (score scale 30).
    kind = "linear" if set(head_state) == {"weight", "bias"} else "cosine"
    head = build_head(embedding_model.embedding_size, n_classes, head_neurons, kind=kind)
    try:
        embedding_model.load_state(backbone_state)
        head.load_state_dict(head_state)
    except (RuntimeError, ValueError) as error:
        raise RunFolderError(
            f"{folder}: the checkpoints do not fit a {backbone} model with "
            f"backbone_config={backbone_config or {}}: {error}"
        ) from error
    return LoadedModel(
        AudioClassifier(embedding_model, head),
        class_names,
        folder,
        quantile=quantile,
        device=device,
        input_normalisation="signed_max",  # the authors' sig / sig.max()
        score_scale=1.0 if kind == "linear" else SCORE_SCALE,
    )


def trained_method_of(card: dict) -> str | None:
    """The trained method a run's model card describes (None for a classifier run)."""
    name = card.get("method")
    if name is None or "classifier_folder" not in card:
        return None
    method = METHODS.get(name)
    if method is None or method.run is None:
        raise RunFolderError(
            f"model.json names the method {name!r}, which no registry entry trains"
        )
    return name


def load_trained_run(folder, classifier_folder=None, device="cpu") -> tuple[str, torch.nn.Module]:
    """``(method name, module)`` of a trained method's run folder, checked to be trained on the
    classifier run ``classifier_folder`` when given (RunFolderError otherwise)."""
    card = read_model_card(folder)
    name = trained_method_of(card)
    if name is None:
        raise RunFolderError(
            f"{folder} is a classifier run, not the run of a trained method "
            f"({', '.join(m.run.script for m in METHODS.values() if m.run)})"
        )
    if classifier_folder is not None:
        trained_on = Path(card["classifier_folder"]).resolve()
        if trained_on != Path(classifier_folder).resolve():
            raise RunFolderError(
                f"{folder} is a {METHODS[name].run.script} run on {card['classifier_folder']}, "
                f"not on {classifier_folder}"
            )
    run = METHODS[name].run
    module = run.build(card[run.card_key])
    select = {"max_key" if run.select_max else "min_key": run.select_key}
    load_best_checkpoint(folder, {run.module_key: module}, **select)
    return name, module.to(device).eval()


def load_model(folder, device="cpu", quantile=None, **released):
    """``(model, trained)``: the ``LoadedModel`` of a run folder or released model, and the
    trained modules by method name (the run's own for a trained method's run; else empty).

    A HuggingFace id of a released model (``speechbrain/focalnet-base-esc50``) that is not a
    local folder is downloaded first, into ``pretrained_models/`` (needs the network).
    ``released`` goes to ``load_released``.
    """
    path = Path(folder)
    if not path.exists() and RELEASED_ID.fullmatch(str(folder)):
        path = download_released(str(folder))
    if (path / "model.json").is_file() or not path.is_dir():
        card = read_model_card(path)
        trained = {}
        classifier_folder = path
        if trained_method_of(card):
            classifier_folder = card["classifier_folder"]
            name, module = load_trained_run(path, device=device)
            trained[name] = module
        model = load_classifier_run(classifier_folder, device)
    else:
        model = load_released(path, device=device, **released)
        trained = {}
    if quantile is not None:
        model.quantile = float(quantile)
    return model, trained


def resolve_methods(model_folder, methods=None, runs=(), device="cpu", quantile=None, **released):
    """What a study runs: ``(model, trained, methods)``.

    ``model_folder`` is a classifier run, a trained method's run (its classifier is loaded and
    its method comes with it) or a released model; each folder of ``runs`` is a trained method's
    run on that classifier. ``methods`` default: the model folder's own method (for a
    classifier its backbone's ``test_method``: ``by_design``, CNN14's ``gradcam``) and the
    method of each run; ``by_design`` on a backbone without a map is a one-line
    RunFolderError. A named method that needs a run nobody gave, or an
    unknown name, is a RunFolderError naming it.
    """
    model, trained = load_model(model_folder, device, quantile, **released)
    backbone = model.classifier.backbone
    default = list(trained) or [backbone.test_method]
    for folder in runs:
        name, module = load_trained_run(folder, model.folder, device)
        if name in trained:
            raise RunFolderError(f"two runs of {name} given ({folder}): give one per method")
        trained[name] = module
        default.append(name)
    methods = methods or default
    methods = list(dict.fromkeys(methods))
    for name in methods:
        try:
            method = get_method(name)
        except ValueError as error:
            raise RunFolderError(str(error)) from None
        if "map" in method.outputs and not backbone.has_by_design_map:
            raise RunFolderError(
                f"--methods {name}: {backbone.label} has no by-design map; choose another method "
                f"(e.g. {backbone.test_method})"
            )
        if method.needs == "run" and method.run_name not in trained:
            raise RunFolderError(
                f"--methods {name} needs a {method.run.script} run on {model.folder}: give it "
                "with --runs"
            )
    return model, trained, methods
