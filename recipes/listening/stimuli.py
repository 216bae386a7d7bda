"""Building a listening test from runs (``listen.py --make_test``) and exporting it to webMUSHRA.

``make_test`` picks ``n_clips`` test-fold clips balanced over classes (seeded: each class's clips
shuffled, then one clip per class in turn), cuts or pads each to the model's clip (5 s: one window,
as the run's test stage sees it), and for each clip writes into the test folder:
``reference.wav`` (the original, mono at the model's rate), one ``<method>.wav`` per method (the
interpretation ``mask * log_spec`` resynthesised with the original phase) and the low anchor (the
registry's ``random`` method: a random mask of the same area). Every method's mask is a same-area
mask at the same q (a soft method is refused, naming its same-area variant). The hidden reference
is ``reference.wav`` again, under the condition name ``hidden_reference``. Beside the sounds,
each (clip, method) gets its objective metrics (``interpreters.metrics.interpretation_scores``:
FID-I, FA, FA_mask_in, AI, AD, AG, FF, SPS, COMP for the same mask) in ``test.json``, which the
server and the analysis read.

``export_webmushra`` writes a folder to drop into a webMUSHRA installation: ``configs/<id>.yaml``
(a generic welcome page, one MUSHRA page per clip inside a ``random`` block, a finish page) and
the WAVs under ``configs/resources/audio/<id>/``, resampled to the rate the browser's audio
context runs at (webMUSHRA checks that every stimulus has it). webMUSHRA adds the hidden
reference itself (the page's ``reference`` becomes one more condition) and shuffles the
conditions (``randomize``, default true); its built-in low-pass anchors are switched off
(``createAnchor35/70: false``): the anchor is the random same-area mask, a stimulus.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path

import torch
import yaml

from data_prep.audio import read_audio, to_mono_resampled
from interpreters.methods import METHODS, get_method, mask_of_map, method_maps
from interpreters.metrics import interpretation_scores
from recipes.inference import AudioInterpreter
from recipes.listening.db import HIDDEN_REFERENCE, spoken
from recipes.listening.explore import run_clips, valid_methods
from recipes.loading import resolve_methods
from recipes.outputs import save_wav, written_together
from recipes.runs import RunFolderError

ANCHOR = "random"
DEFAULT_QUESTION = "How well does this interpretation let you hear the {class}?"
DEFAULT_AB_QUESTION = "Which interpretation lets you hear the {class} better?"
METRIC_KEYS = ("fid_i", "fa", "fa_mask_in", "ai", "ad", "ag", "ff", "ff_mask_in", "sps", "comp")
TEST_FILE = "test.json"


def balanced_clips(clips: dict[str, dict], n_clips: int, seed: int) -> list[str]:
    """``n_clips`` clip ids balanced over classes: each class's clips shuffled (seeded), then
    one per class in turn (classes sorted); ValueError when the fold has fewer clips.

    Example
    -------
    >>> clips = {f"{c}{i}": {"class_name": c} for c in "ab" for i in range(3)}
    >>> picked = balanced_clips(clips, 4, seed=0)
    >>> sorted(clips[key]["class_name"] for key in picked)
    ['a', 'a', 'b', 'b']
    >>> picked == balanced_clips(clips, 4, seed=0)
    True
    """
    if n_clips > len(clips):
        raise ValueError(f"the test fold has {len(clips)} clips, fewer than --n_clips {n_clips}")
    rng = random.Random(seed)
    by_class = defaultdict(list)
    for key, clip in clips.items():
        by_class[clip["class_name"]].append(key)
    queues = []
    for name in sorted(by_class):
        keys = sorted(by_class[name])
        rng.shuffle(keys)
        queues.append(keys)
    picked = []
    while len(picked) < n_clips:
        for queue in queues:
            if queue and len(picked) < n_clips:
                picked.append(queue.pop(0))
    return picked


def one_window(signal, rate: int, sample_rate: int, clip_samples: int) -> torch.Tensor:
    """A clip as the run's test stage sees it: mono, at ``sample_rate``, cut or zero-padded to
    ``clip_samples`` (ESC-10's files decode to 5.0-5.1 s, a few to 3.6 or 7.2 s: without this a
    second, almost empty window would join the masks and the metrics).

    Example
    -------
    >>> one_window(torch.ones(44100 * 5 + 2205, 1), 44100, 16000, 80000).shape  # 5.05 s
    torch.Size([80000])
    >>> float(one_window(torch.ones(8000, 2), 16000, 16000, 80000)[8000:].abs().sum())
    0.0
    """
    wave = to_mono_resampled(signal, rate, sample_rate)[:clip_samples]
    return torch.nn.functional.pad(wave, (0, clip_samples - len(wave)))


def same_area_name(name: str) -> str:
    """``name`` when it is a same-area (hard) method; RunFolderError naming its same-area
    variant for a soft one (a listening test compares equal areas)."""
    method = get_method(name)
    if method.mask == "hard":
        return name
    variants = [m.name for m in METHODS.values() if m.mask == "hard" and m.base == method.run_name]
    if method.base and METHODS[method.base].mask == "hard":
        variants.append(method.base)
    hint = f": use {' or '.join(variants)}" if variants else ""
    raise RunFolderError(
        f"--methods {name} is a soft mask, not a same-area mask at q{hint} (a listening test "
        "compares interpretations of equal area)"
    )


def make_test(
    model_folder,
    methods,
    output_folder,
    runs=(),
    n_clips=10,
    quantile=None,
    seed=0,
    question=DEFAULT_QUESTION,
    ab=None,
    ab_question=DEFAULT_AB_QUESTION,
    device="cpu",
    progress=print,
) -> dict:
    """Writes a listening test into ``output_folder`` (see the module docstring); returns the
    test definition (``test.json``). RunFolderError for a bad run, method or argument."""
    output_folder = Path(output_folder)
    if (output_folder / TEST_FILE).exists():
        raise RunFolderError(
            f"{output_folder / TEST_FILE} exists: give a new --make_test folder (a test that "
            "participants may have taken is not rewritten)"
        )
    methods = [same_area_name(name) for name in dict.fromkeys(methods) if name != ANCHOR]
    if not methods:
        raise RunFolderError("--methods: give at least one method besides the anchor")
    if ab and (len(ab) != 2 or any(name not in methods for name in ab)):
        raise RunFolderError(f"--ab needs two of the test's methods ({', '.join(methods)})")
    model, trained, _ = resolve_methods(model_folder, [*methods, ANCHOR], runs, device, quantile)
    offered = valid_methods(model, trained)
    missing = [name for name in methods if name not in offered]
    if missing:
        raise RunFolderError(f"{model.folder} cannot compute {missing}: choose among {offered}")
    for option, text in (("--question", question), ("--ab_question", ab_question)):
        try:
            text.format(**{"class": "x"})
        except (KeyError, IndexError, ValueError) as error:
            raise RunFolderError(
                f"{option} {text!r}: only {{class}} may appear in braces ({error})"
            ) from None
    q = float(model.quantile)
    clips = run_clips(model.folder)
    try:
        picked = balanced_clips(clips, n_clips, seed)
    except ValueError as error:
        raise RunFolderError(f"{model.folder}: {error}") from None
    interpreter = AudioInterpreter(model, ANCHOR, trained)
    entries = []
    with written_together(output_folder) as staging:
        for index, clip_id in enumerate(picked):
            clip = clips[clip_id]
            progress(f"[{index + 1}/{len(picked)}] {clip_id} ({clip['class_name']})")
            signal, rate = read_audio(clip["path"])
            wave = one_window(signal, rate, model.sample_rate, model.clip_samples)
            prepared = interpreter.prepare_waveform(wave.unsqueeze(1), model.sample_rate)
            generator = torch.Generator().manual_seed(seed)
            scores, maps = method_maps(
                model.classifier, prepared["log_spec"], [*methods, ANCHOR], trained, generator
            )
            folder = staging / "clips" / clip_id
            save_wav(prepared["wave"], folder / "reference.wav", model.sample_rate)
            conditions, metrics = {}, {}
            for name in [*methods, ANCHOR]:
                mask = mask_of_map(name, maps[name], q, prepared["valid"])
                wave = interpreter.resynthesise(prepared, mask * prepared["log_spec"])
                save_wav(wave, folder / f"{name}.wav", model.sample_rate)
                conditions[name] = f"clips/{clip_id}/{name}.wav"
                values = interpretation_scores(
                    model.classify,
                    prepared["log_spec"],
                    mask,
                    scores,
                    score_scale=model.score_scale,
                )
                metrics[name] = {key: float(values[key].float().mean()) for key in METRIC_KEYS}
                metrics[name]["mask_share"] = float(mask.float().mean())
            conditions[HIDDEN_REFERENCE] = f"clips/{clip_id}/reference.wav"
            predicted = model.class_names[int(model.probabilities(scores).mean(0).argmax())]
            entries.append(
                {
                    "id": clip_id,
                    "class_name": clip["class_name"],
                    "predicted": predicted,
                    "reference": f"clips/{clip_id}/reference.wav",
                    "conditions": conditions,
                    "metrics": metrics,
                }
            )
        test = {
            "name": output_folder.name,
            "seed": int(seed),
            "question": question,
            "ab_question": ab_question,
            "quantile": q,
            "methods": methods,
            "anchor": ANCHOR,
            "ab": list(ab) if ab else None,
            "sample_rate": model.sample_rate,
            "model_folder": str(model.folder),
            "runs": [str(run) for run in runs],
            "clips": entries,
        }
        (staging / TEST_FILE).write_text(json.dumps(test, indent=2) + "\n")
    return test


def read_test(folder) -> dict:
    """The definition ``test.json`` of a test folder; RunFolderError when absent."""
    path = Path(folder) / TEST_FILE
    if not path.is_file():
        raise RunFolderError(f"{path} does not exist: build the test with listen.py --make_test")
    return json.loads(path.read_text())


def webmushra_config(test: dict, audio_prefix: str, test_id: str) -> dict:
    """The webMUSHRA YAML (as a dict) of a test, its WAVs under ``audio_prefix``.

    Example
    -------
    >>> test = {"question": "Hear the {class}?", "clips": [{"id": "c", "class_name": "dog",
    ...     "conditions": {"gradcam": "", "random": "", "hidden_reference": ""}}]}
    >>> config = webmushra_config(test, "configs/resources/audio/t", "t")
    >>> page = config["pages"][1][1]
    >>> page["type"], page["reference"], sorted(page["stimuli"]), page["content"]
    ('mushra', 'configs/resources/audio/t/c/reference.wav', ['gradcam', 'random'], 'Hear the dog?')
    """
    pages = []
    for clip in test["clips"]:
        stimuli = {
            name: f"{audio_prefix}/{clip['id']}/{name}.wav"
            for name in clip["conditions"]
            if name != HIDDEN_REFERENCE
        }
        pages.append(
            {
                "type": "mushra",
                "id": f"clip_{clip['id']}",
                "name": f"Clip {clip['id']}",
                "content": test["question"].format(**{"class": spoken(clip["class_name"])}),
                "showWaveform": True,
                "enableLooping": True,
                "reference": f"{audio_prefix}/{clip['id']}/reference.wav",
                "createAnchor35": False,
                "createAnchor70": False,
                "randomize": True,
                "stimuli": stimuli,
            }
        )
    return {
        "testname": f"Listening test {test_id}",
        "testId": test_id,
        "bufferSize": 2048,
        "stopOnErrors": True,
        "showButtonPreviousPage": True,
        "remoteService": "service/write.php",
        "pages": [
            {
                "type": "generic",
                "id": "welcome",
                "name": "Welcome",
                "content": "Each page plays a reference (the original clip) and interpretations "
                "of it. Rate each against the question on the page, from 0 to 100.",
            },
            ["random", *pages],
            {
                "type": "finish",
                "name": "Thank you",
                "content": "Thank you for taking part.",
                "showResults": False,
                "writeResults": True,
            },
        ],
    }


def export_webmushra(test_folder, output_folder, sample_rate=48000) -> Path:
    """Writes ``configs/<id>.yaml`` and its WAVs (at ``sample_rate``) under ``output_folder``
    (see the module docstring); returns the YAML's path."""
    test_folder, output_folder = Path(test_folder), Path(output_folder)
    test = read_test(test_folder)
    test_id = "".join(c if c.isalnum() or c in "_-" else "_" for c in test["name"]) or "test"
    prefix = f"configs/resources/audio/{test_id}"
    config = webmushra_config(test, prefix, test_id)
    target = output_folder / "configs" / f"{test_id}.yaml"
    if (output_folder / "configs").exists():
        raise RunFolderError(f"{output_folder / 'configs'} exists: give another --output_folder")
    with written_together(output_folder) as staging:
        for clip in test["clips"]:
            names = {"reference": clip["reference"], **clip["conditions"]}
            for name, relative in names.items():
                if name == HIDDEN_REFERENCE:
                    continue
                signal, rate = read_audio(test_folder / relative)
                wave = to_mono_resampled(signal, rate, sample_rate)
                save_wav(wave, staging / prefix / clip["id"] / f"{name}.wav", sample_rate)
        (staging / "configs").mkdir(parents=True, exist_ok=True)
        (staging / "configs" / f"{test_id}.yaml").write_text(
            "# webMUSHRA config written by listen.py --webmushra (focalnet-esc50); copy configs/"
            " into webMUSHRA's folder and open index.html?config="
            + f"{test_id}.yaml\n"
            + yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
        )
    return target
