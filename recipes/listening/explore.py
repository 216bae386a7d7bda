"""The explorer's engine: a loaded model, its test clips and uploads, every valid method, any q.

``Explorer(model, trained, cache_folder)`` answers ``result(clip, method, q)`` with the top
classes, the mask's share and four files (the original, the interpretation ``mask * log_spec``,
the removed part ``(1 - mask) * log_spec``, both resynthesised with the original phase, and the
3-panel picture, ``recipes.outputs.save_panels_png``) in ``cache_folder``. Three caches make
moving back and forth cheap: per clip the prepared windows
(``AudioInterpreter.prepare_waveform``: log-spectrogram, phase, scales), per (clip, method)
the method's map (one forward / backward of the classifier, whatever q), and per (clip, method,
q) the result and its files (a repeated request is a dictionary look-up). A changed q on a
cached (clip, method) costs a quantile threshold, two inverse STFTs and a PNG.

Methods offered: the registry's (``interpreters.methods.METHODS``), less those the run cannot
compute (``valid_methods``): a trained method without its run, ``by_design`` on a backbone
without a by-design map.
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
from collections import OrderedDict
from pathlib import Path

import soundfile as sf
import torch

from data_prep.audio import AudioReadError, read_audio
from interpreters.methods import METHODS, get_method, mask_of_map, method_maps
from recipes.inference import AudioInterpreter
from recipes.outputs import save_panels_png, save_wav, written_together
from recipes.runs import RunFolderError, run_split_dataset

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_UPLOAD_SECONDS = 30.0
FILE_KINDS = ("original", "interpretation", "removed", "png")


class UploadError(ValueError):
    """An uploaded file the explorer refuses; the message says why and what to do."""


def valid_methods(model, trained) -> list[str]:
    """The registry's methods this model can compute, in registry order.

    ``trained`` holds the loaded trained methods (``recipes.loading.resolve_methods``); a
    trained method (``needs == "run"``) needs its run there, a method that reads the by-design
    map needs a backbone that has one (``has_by_design_map``).
    """
    has_map = getattr(model.classifier.backbone, "has_by_design_map", False)
    names = []
    for method in METHODS.values():
        if method.needs == "run" and method.run_name not in trained:
            continue
        if "map" in method.outputs and not has_map:
            continue
        names.append(method.name)
    return names


def run_clips(folder, data_folder=None) -> dict[str, dict]:
    """The test-fold clips of a run: ``{clip id: {"path", "class_name"}}`` in manifest order
    (``recipes.runs.run_split_dataset``)."""
    dataset = run_split_dataset(folder, "test", data_folder)
    clips = {}
    with dataset.output_keys_as(["id", "class_name", "path"]):
        for item in dataset:
            clips[item["id"]] = {"path": item["path"], "class_name": item["class_name"]}
    return clips


def quantile_key(method: str, quantile: float) -> float | None:
    """The q that a request's cache key holds: rounded to 0.01 for a same-area method, None for
    a soft one (q does not change it).

    Example
    -------
    >>> quantile_key("energy", 0.9049), quantile_key("piq", 0.5)
    (0.9, None)
    """
    if get_method(method).mask == "soft":
        return None
    return round(float(quantile), 2)


class Explorer:
    """See the module docstring.

    Arguments
    ---------
    model : recipes.loading.LoadedModel
    trained : dict
        Trained methods' modules by name.
    cache_folder : path
        Where the result files go (created).
    clips : dict, optional
        ``{clip id: {"path", "class_name"}}``; default the run's test fold (``run_clips``).
    seed : int
        Seed of the random baseline.
    """

    def __init__(self, model, trained, cache_folder, clips=None, seed=0, max_clips=32):
        self.model = model
        self.trained = dict(trained)
        self.methods = valid_methods(model, self.trained)
        self.cache_folder = Path(cache_folder)
        self.cache_folder.mkdir(parents=True, exist_ok=True)
        self.clips = dict(run_clips(model.folder) if clips is None else clips)
        self.seed = seed
        self.max_clips = max_clips
        self._interpreter = AudioInterpreter(model, "random", self.trained)
        self._prepared: OrderedDict = OrderedDict()
        self._maps: OrderedDict = OrderedDict()
        self._results: dict = {}
        self._lock = threading.Lock()

    # --------------------------------------------------------------- clips ---
    def add_upload(self, filename: str, data: bytes) -> str:
        """Registers an uploaded file; returns its clip id. UploadError (size, duration,
        unreadable, silent) with a message for the user; nothing is kept of a refused file."""
        if len(data) == 0:
            raise UploadError(f"{filename}: the file is empty")
        if len(data) > MAX_UPLOAD_BYTES:
            raise UploadError(
                f"{filename}: {len(data) / 2**20:.1f} MiB is over the "
                f"{MAX_UPLOAD_BYTES // 2**20} MiB limit: upload a shorter excerpt"
            )
        digest = hashlib.sha256(data).hexdigest()[:16]
        clip_id = f"upload-{digest}"
        if clip_id in self.clips:
            return clip_id
        try:
            info = sf.info(io.BytesIO(data))
        except Exception:  # soundfile raises several types for undecodable bytes
            raise UploadError(
                f"{filename}: not a readable audio file: upload a wav, flac, ogg or mp3"
            ) from None
        if info.duration > MAX_UPLOAD_SECONDS:
            raise UploadError(
                f"{filename}: {info.duration:.1f} s is over the {MAX_UPLOAD_SECONDS:g} s limit: "
                "upload a shorter excerpt"
            )
        suffix = Path(filename).suffix.lower() or ".wav"
        path = self.cache_folder / "uploads" / f"{digest}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        try:
            signal, rate = read_audio(path)
            self._interpreter.prepare_waveform(signal, rate)
        except AudioReadError as error:
            path.unlink(missing_ok=True)
            raise UploadError(f"{filename}: {error}") from None
        self.clips[clip_id] = {"path": str(path), "class_name": None, "name": filename}
        return clip_id

    def _prepared_clip(self, clip_id: str) -> dict:
        if clip_id not in self.clips:
            raise KeyError(f"unknown clip {clip_id!r}")
        if clip_id in self._prepared:
            self._prepared.move_to_end(clip_id)
            return self._prepared[clip_id]
        signal, rate = read_audio(self.clips[clip_id]["path"])
        prepared = self._interpreter.prepare_waveform(signal, rate)
        self._prepared[clip_id] = prepared
        while len(self._prepared) > self.max_clips:
            old, _ = self._prepared.popitem(last=False)
            for key in [key for key in self._maps if key[0] == old]:
                del self._maps[key]
        return prepared

    def _method_map(self, clip_id: str, method: str, prepared: dict):
        key = (clip_id, method)
        if key not in self._maps:
            generator = torch.Generator().manual_seed(self.seed)
            scores, maps = method_maps(
                self.model.classifier,
                prepared["log_spec"],
                [method],
                self.trained,
                generator,
            )
            self._maps[key] = (scores, maps[method])
        return self._maps[key]

    # ------------------------------------------------------------- results ---
    def result(self, clip_id: str, method: str, quantile: float) -> dict:
        """The interpretation of ``clip_id`` by ``method`` at q (see the module docstring):
        ``top``, ``mask_share``, ``predicted``, ``files`` (kind -> file name under
        ``cache_folder``), ``cached`` (True when it was a look-up) and ``seconds``. KeyError for
        an unknown clip, ValueError for a method the run cannot compute or a q outside
        [0, 1)."""
        start = time.perf_counter()
        if method not in self.methods:
            raise ValueError(
                f"method {method!r} is not available for this run: choose among "
                f"{', '.join(self.methods)}"
            )
        if not 0.0 <= float(quantile) < 1.0:
            raise ValueError(f"q must lie in [0, 1), got {quantile}")
        q = quantile_key(method, quantile)
        key = (clip_id, method, q)
        with self._lock:
            if key in self._results:
                seconds = time.perf_counter() - start
                return {**self._results[key], "cached": True, "seconds": seconds}
            prepared = self._prepared_clip(clip_id)
            scores, values = self._method_map(clip_id, method, prepared)
            mask = mask_of_map(method, values, 0.0 if q is None else q, prepared["valid"])
            result = self._write(clip_id, method, q, prepared, scores, mask)
            self._results[key] = result
        return {**result, "cached": False, "seconds": time.perf_counter() - start}

    def _write(self, clip_id, method, q, prepared, scores, mask) -> dict:
        interpreter = self._interpreter
        finished = interpreter.finish_waveform(prepared, scores, mask)
        removed = interpreter.resynthesise(prepared, (1.0 - mask) * prepared["log_spec"])
        tag = hashlib.sha256(f"{clip_id}|{method}|{q}|{self.seed}".encode()).hexdigest()[:16]
        names = {
            "original": f"{clip_id}_original.wav",
            "interpretation": f"{tag}_interpretation.wav",
            "removed": f"{tag}_removed.wav",
            "png": f"{tag}.png",
        }
        rate = interpreter.sample_rate
        with written_together(self.cache_folder) as staging:
            if not (self.cache_folder / names["original"]).is_file():
                save_wav(prepared["wave"], staging / names["original"], rate)
            save_wav(finished["interpretation_wave"], staging / names["interpretation"], rate)
            save_wav(removed, staging / names["removed"], rate)
            save_panels_png(finished["log_spec"], finished["mask"], staging / names["png"])
        return {
            "clip": clip_id,
            "method": method,
            "label": METHODS[method].label,
            "quantile": q,
            "top": [{"class": name, "probability": p} for name, p in finished["top"]],
            "predicted": finished["top"][0][0],
            "mask_share": float(finished["mask"].mean()),
            "files": names,
            "duration_s": prepared["n_samples"] / rate,
            "max_khz": rate / 2000,
        }

    def describe(self) -> dict:
        """What the page lists: the methods (name, label, mask kind) and the clips."""
        return {
            "methods": [
                {"name": m, "label": METHODS[m].label, "mask": METHODS[m].mask}
                for m in self.methods
            ],
            "clips": [
                {"id": key, "class_name": value.get("class_name"), "name": value.get("name", key)}
                for key, value in self.clips.items()
            ],
            "quantile": float(self.model.quantile),
        }


def load_explorer(model_folder, runs=(), cache_folder=None, device="cpu") -> Explorer:
    """An ``Explorer`` of a run folder and trained runs on its classifier
    (``recipes.loading.resolve_methods``); RunFolderError for a bad folder."""
    from recipes.loading import resolve_methods

    model, trained, _ = resolve_methods(model_folder, None, runs, device)
    cache = Path(cache_folder) if cache_folder else Path(model.folder) / "listen_cache"
    try:
        return Explorer(model, trained, cache)
    except KeyError as error:
        raise RunFolderError(f"{model_folder}: its test manifest lacks {error}") from None


__all__ = ["Explorer", "UploadError", "load_explorer", "run_clips", "valid_methods"]
