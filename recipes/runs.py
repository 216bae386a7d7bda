"""Classifier run folders: the model card a run writes, and loading its best checkpoint.

A ``train_classifier.py`` run writes ``model.json`` into its output folder before training: what
is needed to rebuild the classifier's architecture without its YAML (backbone, config overrides,
number of classes, head width, class names in label order) and the label map of its data
(``labels``: label, the data set's target id and class name of each output; ``subset``).
``train_piq.py`` (and later tools) check a run folder against their own settings with
``check_model_card`` and load the checkpoint with the lowest validation error (of a run without
validation: its last epoch's) with ``load_classifier_checkpoint``.
"""

from __future__ import annotations

import json
from pathlib import Path

from data_prep.atomic import write_json
from data_prep.audio import make_datasets
from recipes.labels import default_labels
from recipes.models import build_embedder, build_head
from recipes.training import AtomicCheckpointer

MODEL_CARD = "model.json"

# The keys that fix the classifier's architecture, input view and label set.
ARCHITECTURE_KEYS = (
    "backbone",
    "backbone_config",
    "n_classes",
    "head_neurons",
    "head",
    "image_antialias",
    "image_normalisation",
)


class RunFolderError(RuntimeError):
    """A classifier run folder is missing, incomplete or does not match the recipe's settings."""


def _plain(value):
    """YAML containers (ruamel) as plain JSON values."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def model_card(
    hparams: dict, class_names: list[str], embedding_size: int, labels: list[dict] | None = None
) -> dict:
    """The model card of a classifier run, from its hyperparameters.

    ``labels`` is the data's label map (``data_prep.esc50.label_map``); without it each label is
    its own target.

    Example
    -------
    >>> hparams = {"backbone": "vit", "backbone_config": {"hidden_size": 32}, "n_classes": 2,
    ...            "head_neurons": 192, "source": "google/vit-base-patch16-224",
    ...            "pretrained": False, "sample_rate": 16000, "clip_seconds": 5.0,
    ...            "data_folder": "data", "manifest_folder": "m", "quantile": 0.9,
    ...            "subset": "esc10", "image_antialias": False, "image_normalisation": None,
    ...            "head": "cosine"}
    >>> labels = [{"label": 0, "target": 0, "class_name": "dog"},
    ...           {"label": 1, "target": 10, "class_name": "rain"}]
    >>> card = model_card(hparams, ["dog", "rain"], embedding_size=32, labels=labels)
    >>> card["backbone"], card["class_names"], card["embedding_size"], card["subset"]
    ('vit', ['dog', 'rain'], 32, 'esc10')
    >>> card["labels"][1]
    {'label': 1, 'target': 10, 'class_name': 'rain'}
    """
    card = {key: _plain(hparams[key]) for key in ARCHITECTURE_KEYS}
    card.update(
        method="by_design",
        source=hparams["source"],
        pretrained=bool(hparams["pretrained"]),
        sample_rate=hparams["sample_rate"],
        clip_seconds=hparams["clip_seconds"],
        class_names=list(class_names),
        subset=hparams.get("subset", "esc50"),
        labels=_plain(labels) if labels is not None else default_labels(class_names),
        embedding_size=int(embedding_size),
        data_folder=str(Path(hparams["data_folder"]).resolve()),
        manifest_folder=str(Path(hparams["manifest_folder"]).resolve()),
        quantile=float(hparams["quantile"]),
        # data_prep.audio divides every clip by its absolute peak (recipes.inference reads it)
        input_normalisation="peak",
    )
    if hasattr(hparams.get("features"), "settings"):  # the STFT the run computed
        card["stft"] = dict(hparams["features"].settings)
    for loss in ("loss_fn", "compute_cost"):  # the scores' scale in training (1: logits)
        if hasattr(hparams.get(loss), "scale"):
            card["score_scale"] = float(hparams[loss].scale)
            break
    return card


def method_run_card(method: str, hparams: dict, module) -> dict:
    """The model card of a trained method's run: the method, its classifier run, the trained
    module's description (its registry entry's ``TrainedRun.describe``) and the data folder.

    Example
    -------
    >>> from interpreters.lmac import LMACDecoder
    >>> hparams = {"classifier_folder": "results/clf", "data_folder": "data"}
    >>> card = method_run_card("lmac", hparams, LMACDecoder([32, 16], width=8))
    >>> card["method"], card["decoder"]
    ('lmac', {'in_channels': [32, 16], 'width': 8})
    """
    from interpreters.methods import get_method

    run = get_method(method).run
    return {
        "method": method,
        "classifier_folder": str(Path(hparams["classifier_folder"]).resolve()),
        run.card_key: run.describe(module),
        **{key: hparams[key] for key in run.card_extras},
        "data_folder": str(Path(hparams["data_folder"]).resolve()),
    }


def write_model_card(folder, card: dict) -> Path:
    """Writes ``card`` as ``folder/model.json`` (atomically: a complete file or none)."""
    return write_json(Path(folder) / MODEL_CARD, card)


def read_model_card(folder) -> dict:
    """The model card of the classifier run in ``folder``; RunFolderError when there is none."""
    folder = Path(folder)
    path = folder / MODEL_CARD
    if not path.is_file():
        hint = (
            "it is not a folder"
            if not folder.is_dir()
            else f"it holds no {MODEL_CARD}, so it is not the output folder of a "
            "train_classifier.py, train_piq.py, train_lmac.py or train_l2i.py run"
        )
        raise RunFolderError(f"{folder}: {hint}.")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise RunFolderError(f"{path} is not valid JSON ({error}); rerun the classifier") from error


def check_model_card(card: dict, expected: dict, folder) -> None:
    """Raises RunFolderError naming every architecture key where ``card`` and ``expected`` differ.

    Example
    -------
    >>> card = {"backbone": "focalnet", "backbone_config": {}, "n_classes": 50, "head_neurons": 192}
    >>> try:
    ...     check_model_card(card, dict(card, backbone="vit"), "results/run")
    ... except RunFolderError as error:
    ...     print(str(error)[58:111])
    backbone: the run has 'focalnet', the YAML says 'vit'
    """
    differences = [
        f"{key}: the run has {card.get(key)!r}, the YAML says {_plain(expected[key])!r}"
        for key in ARCHITECTURE_KEYS
        if key in expected and _plain(expected[key]) != card.get(key)
    ]
    if differences:
        raise RunFolderError(
            f"The classifier in {folder} does not match this recipe: "
            + "; ".join(differences)
            + ". Use the hparams file of the run's backbone, or override these keys to the "
            "run's values."
        )


def _as_override(value) -> str:
    """``value`` as the command line writes it (``--key=VALUE``), YAML flow style."""
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=1 << 16)
    return text.strip().removesuffix("...").strip()


def rerun_mismatch(folder, settings: dict) -> str | None:
    """Why a command with ``settings`` cannot continue the run in ``folder``, in one line.

    ``folder`` is the command's ``output_folder``; when it holds a ``model.json`` that describes
    another model than ``settings`` (the command's resolved YAML keys) — another architecture
    (``ARCHITECTURE_KEYS``) of a classifier run, another ``classifier_folder`` of a PIQ / L-MAC
    run — its checkpoints would not fit: the line names each differing key and the two ways on.
    None when the folder holds no (readable) model card or the card matches.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> card = {"method": "by_design", "backbone": "focalnet", "backbone_config": {"embed_dim": 8},
    ...         "n_classes": 3, "head_neurons": 192}
    >>> _ = write_model_card(folder, card)
    >>> rerun_mismatch(folder, dict(card, seed=1)) is None
    True
    >>> message = rerun_mismatch(folder, dict(card, backbone_config={"embed_dim": 16}))
    >>> print(message.replace(folder, "RUN"))
    RUN holds a run of another model (model.json differs in backbone_config.embed_dim: the run has 8, this command 16): give another --output_folder for this model, or the run's settings to continue it (--backbone_config={embed_dim: 8}); nothing was written
    """  # noqa: E501
    path = Path(folder) / MODEL_CARD
    if not path.is_file():
        return None
    try:
        card = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None  # an unreadable card is rewritten by the run
    if card.get("method", "by_design") == "by_design":
        keys = [key for key in ARCHITECTURE_KEYS if key in settings]
        ran = {key: card.get(key) for key in keys}
        asked = {key: json.loads(json.dumps(_plain(settings[key]))) for key in keys}  # plain
    elif "classifier_folder" in settings and "classifier_folder" in card:
        ran = {"classifier_folder": card["classifier_folder"]}
        asked = {"classifier_folder": str(Path(str(settings["classifier_folder"])).resolve())}
    else:
        return None
    listed, same = [], []
    for key in (key for key in ran if ran[key] != asked[key]):
        was, now = ran[key], asked[key]
        if isinstance(was, dict) and isinstance(now, dict):  # e.g. backbone_config: its keys
            inner = [name for name in {**was, **now} if was.get(name) != now.get(name)]
            listed += [
                f"{key}.{name}: the run has {_as_override(was.get(name))}, this command "
                f"{_as_override(now.get(name))}"
                for name in inner
            ]
            # overrides of a mapping are merged into the YAML's: the differing keys suffice
            kept = {name: was[name] for name in inner} if set(inner) <= set(was) else was
            same.append(f"--{key}={_as_override(kept)}")
        else:
            listed.append(
                f"{key}: the run has {_as_override(was)}, this command {_as_override(now)}"
            )
            same.append(f"--{key}={_as_override(was)}")
    if not listed:
        return None
    listed, same = "; ".join(listed), " ".join(same)
    return (
        f"{folder} holds a run of another model ({path.name} differs in {listed}): give another "
        f"--output_folder for this model, or the run's settings to continue it ({same}); "
        "nothing was written"
    )


def load_best_checkpoint(
    folder,
    modules: dict,
    min_key: str | None = None,
    max_key: str | None = None,
    latest_no_validation: bool = False,
) -> dict:
    """Loads into ``modules`` the best checkpoint of the run in ``folder`` and freezes them.

    Arguments
    ---------
    folder : path
        A run's output folder (holding ``save/``).
    modules : dict
        Name -> module as registered in the run's checkpointer; their architecture must match.
    min_key, max_key : str
        The meta key to minimise (classifier runs: ``error``) or maximise (PIQ runs: ``fid_i``).
    latest_no_validation : bool
        Instead of a key: the latest checkpoint marked ``no_validation`` (a run without
        validation folds).

    Returns
    -------
    dict
        The checkpoint's meta data and its ``path``.
    """
    save_folder = Path(folder) / "save"
    no_checkpoint = not save_folder.is_dir()  # checked first: a Checkpointer creates its folder
    if not no_checkpoint:
        checkpointer = AtomicCheckpointer(save_folder, recoverables=modules)
        no_checkpoint = not checkpointer.list_checkpoints()
    if no_checkpoint:
        raise RunFolderError(
            f"No checkpoint in {save_folder}: give the output folder of a finished "
            "train_classifier.py, train_piq.py, train_lmac.py or train_l2i.py run."
        )
    if latest_no_validation:
        key = "no_validation"
        checkpoint = checkpointer.find_checkpoint(
            ckpt_predicate=lambda ckpt: bool(ckpt.meta.get("no_validation"))
        )
    else:
        key = min_key or max_key
        checkpoint = checkpointer.find_checkpoint(min_key=min_key, max_key=max_key)
    if checkpoint is None:
        raise RunFolderError(f"No checkpoint in {save_folder} records {key!r}.")
    missing = sorted(set(modules) - set(checkpoint.paramfiles))
    if missing:
        raise RunFolderError(f"Checkpoint {checkpoint.path} has no {missing}.")
    try:
        checkpointer.load_checkpoint(checkpoint)
    except RuntimeError as error:  # size mismatches from load_state_dict
        raise RunFolderError(
            f"Checkpoint {checkpoint.path} does not fit the model built from the settings "
            f"(check backbone, backbone_config, n_classes, head_neurons): {error}"
        ) from error
    for module in modules.values():
        module.eval()
        module.requires_grad_(False)
    return {**checkpoint.meta, "path": str(checkpoint.path)}


def load_classifier_checkpoint(folder, modules: dict) -> dict:
    """Loads the classifier run's model: the checkpoint with the lowest validation error.

    A run trained without validation folds (``valid_folds: []``; its checkpoints record
    ``no_validation``) was tested with its last epoch's checkpoint, which is loaded instead.
    """
    save_folder = Path(folder) / "save"
    if save_folder.is_dir():
        checkpoints = AtomicCheckpointer(save_folder).list_checkpoints()
        if checkpoints and not any("error" in c.meta for c in checkpoints):
            if any(c.meta.get("no_validation") for c in checkpoints):
                return load_best_checkpoint(folder, modules, latest_no_validation=True)
    return load_best_checkpoint(folder, modules, min_key="error")


def build_classifier(card: dict, device="cpu"):
    """The classifier (embedding model, head) a model card describes, random weights."""
    embedding_model = build_embedder(
        card["backbone"],
        pretrained=False,
        config_overrides=card["backbone_config"],
        image_antialias=card["image_antialias"],
        image_normalisation=card["image_normalisation"],
    )
    classifier = build_head(
        embedding_model.embedding_size,
        card["n_classes"],
        card["head_neurons"],
        kind=card["head"],
    )
    return embedding_model.to(device), classifier.to(device)


def check_classifier_folder(hparams: dict) -> dict:
    """The model card of ``hparams["classifier_folder"]``, checked against the recipe's keys."""
    folder = hparams["classifier_folder"]
    card = read_model_card(folder)
    check_model_card(card, hparams, folder)
    # L-MAC's loss reads the scores at the YAML's score_scale: it must be the classifier's
    # (30 for the cosine heads, 1 for CNN14's linear head).
    scale = hparams.get("score_scale")
    if scale is not None and "score_scale" in card and float(scale) != card["score_scale"]:
        raise RunFolderError(
            f"score_scale: the classifier in {folder} was trained at {card['score_scale']}, the "
            f"YAML says {float(scale)}: use the hparams file of the run's backbone or "
            f"--score_scale={card['score_scale']}"
        )
    return card


def load_frozen_classifier(hparams: dict, card: dict, class_names: list[str]) -> dict:
    """Loads the classifier run's best checkpoint into ``hparams``' embedding model and head.

    ``class_names`` (those of the recipe's data folder, in label order) must be the run's.
    Returns the checkpoint's meta data (see ``load_classifier_checkpoint``).
    """
    folder = hparams["classifier_folder"]
    if list(class_names) != card["class_names"]:
        raise RunFolderError(
            f"The classifier in {folder} was trained on the classes {card['class_names'][:4]}..., "
            f"the data folder {hparams['data_folder']} has {list(class_names)[:4]}...: give "
            "the data_folder the classifier was trained on."
        )
    modules = {"embedding_model": hparams["embedding_model"], "classifier": hparams["classifier"]}
    return load_classifier_checkpoint(folder, modules)


def run_split_dataset(folder, split: str = "test", data_folder=None):
    """The ``split`` data set of a classifier run, from the manifests the run wrote.

    ``data_folder`` overrides the one recorded in ``model.json`` (a moved data set). A PIQ run
    (its model card names a ``classifier_folder``) uses its classifier's test fold.
    """
    card = read_model_card(folder)
    if "manifest_folder" not in card and card.get("classifier_folder"):
        return run_split_dataset(card["classifier_folder"], split, data_folder)
    manifest = Path(card["manifest_folder"]) / f"{split}.json"
    if not manifest.is_file():
        raise RunFolderError(
            f"{manifest} does not exist: the run's manifests were moved or deleted; rerun "
            "train_classifier.py with the run's settings into the same --output_folder."
        )
    data_folder = Path(data_folder or card["data_folder"])
    if not data_folder.is_dir():
        raise RunFolderError(
            f"The data folder {data_folder} recorded in {folder}/model.json does not exist: "
            "give --data_folder."
        )
    datasets = make_datasets(
        {split: manifest}, data_folder, card["sample_rate"], card["clip_seconds"]
    )
    return datasets[split]


def first_test_clips(folder, classes=None, default=(), data_folder=None):
    """Paths of the first test-fold clip of each of two classes of a run: ``(paths, classes)``.

    ``classes`` None: ``default`` when the test fold has both, else its first two classes.
    """
    dataset = run_split_dataset(folder, "test", data_folder)
    first = {}
    with dataset.output_keys_as(["class_name", "path"]):
        for item in dataset:
            first.setdefault(item["class_name"], item["path"])
    if classes is None:
        classes = list(default) if all(name in first for name in default) else list(first)[:2]
    missing = [name for name in classes if name not in first]
    if missing or len(classes) != 2 or classes[0] == classes[1]:
        raise RunFolderError(
            f"the test fold of {folder} has no clip of {missing or classes}: choose two "
            f"different classes among {sorted(first)}"
        )
    return [first[name] for name in classes], list(classes)
