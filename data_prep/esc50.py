"""Downloads ESC-50 and writes the SpeechBrain manifests of its train, valid and test splits.

ESC-50 (K. J. Piczak, https://github.com/karolpiczak/ESC-50) is laid out as ``<root>/audio/*.wav``
(2000 clips of 5 s, 44.1 kHz, mono) and ``<root>/meta/esc50.csv`` (columns ``CSV_COLUMNS``;
5 folds, 50 classes). ``prepare_esc50`` downloads the archive of a pinned commit when the data are
not there yet (resumable, integrity-checked, extracted safely), checks that every selected clip is
present and decodable, and writes one JSON manifest per split::

    {"1-100032-A-0": {"path": "{data_root}/audio/1-100032-A-0.wav", "class_name": "dog",
                      "label": 0, "target": 0, "fold": 1, "duration": 5.0}, ...}

``subset`` selects the clips: ``esc50`` (every row of the CSV) or ``esc10`` (the rows whose
``esc10`` column is True). The selected rows' ``target`` ids, whatever they are (ESC-10's are 0, 1,
10, 11, 12, 20, 21, 38, 40, 41), are mapped to contiguous labels ``0..K-1`` in increasing order of
``target`` (``label_map``); the map is written to ``labels.json`` beside the manifests. The same
holds for any folder in ESC-50's layout (a user's own sounds: any category names, any target ids).

``{data_root}`` is filled in by ``DynamicItemDataset.from_json(..., replacements={"data_root":
data_folder})``, so the manifests do not depend on where the data live. Every problem with the
data raises ``ESC50Error``, whose message names the file and says what to do.

Example
-------
>>> check_folds(DEFAULT_FOLDS["train"], DEFAULT_FOLDS["valid"], DEFAULT_FOLDS["test"])
>>> has_esc50("/nonexistent/ESC-50")
False
"""

from __future__ import annotations

import csv
import http.client
import json
import logging
import numbers
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from pathlib import Path

import soundfile as sf
from tqdm import tqdm

from data_prep.atomic import write_json

logger = logging.getLogger(__name__)

ESC50_COMMIT = "5983fb0c35e751b452e7c562d9207f27b76ddf0d"  # pinned commit of karolpiczak/ESC-50
ESC50_URL = f"https://github.com/karolpiczak/ESC-50/archive/{ESC50_COMMIT}.zip"
CSV_COLUMNS = ("filename", "fold", "target", "category", "esc10", "src_file", "take")
DEFAULT_FOLDS = {"train": (1, 2, 3), "valid": (4,), "test": (5,)}
SUBSETS = ("esc50", "esc10")  # every row of the CSV, or the rows whose esc10 column is True
LABELS_FILE = "labels.json"  # the label map, beside the manifests
N_FOLDS = 5
ARCHIVE_NAME = "ESC-50.zip"
SPLITS = ("train", "valid", "test")
OPTIONS_FILE = "prepare_options.json"
STAGING_PREFIX = ".esc50-extract-"  # temporary extraction folders inside data_folder
MANIFEST_FORMAT = 2  # bump when the manifest entries change, so that old manifests are rebuilt
_LIST_LIMIT = 5  # how many offending files an error message names


class ESC50Error(RuntimeError):
    """A problem with the ESC-50 data; the message names the file or key and says what to do."""


def _csv_path(data_folder) -> Path:
    return Path(data_folder) / "meta" / "esc50.csv"


def _first(names: list[str]) -> str:
    """The first ``_LIST_LIMIT`` names, joined, with a count of the others."""
    shown = ", ".join(names[:_LIST_LIMIT])
    if len(names) > _LIST_LIMIT:
        shown += f" (and {len(names) - _LIST_LIMIT} more)"
    return shown


def has_esc50(data_folder) -> bool:
    """True when ``data_folder`` holds ``meta/esc50.csv`` and an ``audio/`` folder.

    Example
    -------
    >>> has_esc50("/nonexistent")
    False
    """
    return _csv_path(data_folder).is_file() and (Path(data_folder) / "audio").is_dir()


def download_file(url: str, dest, chunk_size: int = 1 << 20) -> Path:
    """Downloads ``url`` to ``dest``, resuming an interrupted download.

    Bytes are streamed into ``dest + ".part"``; when that file already holds N bytes, the download
    continues from byte N (an HTTP ``Range`` request, honoured only when the server answers 206;
    a ``file://`` source is read from offset N). Only a complete download is renamed to ``dest``.

    Arguments
    ---------
    url : str
        An ``http(s)://`` or ``file://`` URL.
    dest : str or Path
        Where the complete file goes.
    chunk_size : int
        Bytes read at a time.

    Returns
    -------
    Path
        ``dest``.

    Raises
    ------
    ESC50Error
        When the source cannot be reached or the transfer ends early; the ``.part`` file is kept
        so that the next call resumes.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    scheme = urllib.parse.urlparse(url).scheme.lower()
    if scheme == "file":
        source, total, offset = _open_local(url, offset)
    elif scheme in ("http", "https"):
        source, total, offset = _open_http(url, offset, part)
    else:
        raise ESC50Error(f"cannot download {url}: only http(s):// and file:// URLs are supported")

    if offset:
        logger.info("Resuming download of %s from byte %d (%s)", url, offset, part)
    else:
        logger.info("Downloading %s to %s", url, dest)
    received = offset
    try:
        with (
            source,
            open(part, "ab" if offset else "wb") as handle,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=dest.name,
                disable=None,  # no progress bar when stderr is not a terminal
            ) as progress,
        ):
            while True:
                chunk = source.read(chunk_size)
                if not chunk:
                    break
                handle.write(chunk)
                received += len(chunk)
                progress.update(len(chunk))
    except (OSError, http.client.HTTPException) as error:  # reset, timeout, disk full...
        raise ESC50Error(
            f"download of {url} interrupted after {received} of {total or 'unknown'} bytes "
            f"({error}); run again to resume from {part}"
        ) from error
    if total is not None and received < total:
        raise ESC50Error(
            f"download of {url} interrupted after {received} of {total} bytes; "
            f"run again to resume from {part}"
        )
    os.replace(part, dest)
    logger.info("Downloaded %s (%d bytes)", dest, received)
    return dest


def _open_local(url: str, offset: int):
    """Opens a ``file://`` URL at ``offset``; returns (stream, total size, offset)."""
    path = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
    if not path.is_file():
        raise ESC50Error(f"cannot download {url}: {path} does not exist; check the url")
    total = path.stat().st_size
    if offset > total:
        logger.info("%s is larger than %s: restarting the download from byte 0", url, path)
        offset = 0
    stream = open(path, "rb")
    stream.seek(offset)
    return stream, total, offset


def _open_http(url: str, offset: int, part: Path):
    """Opens an http(s) URL, asking for bytes from ``offset`` on; returns (response, total, offset).

    ``total`` is the size of the whole file when the server declared a length, else None.
    """
    headers = {"User-Agent": "focalnet-esc50 data preparation"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # the range lies beyond the file: start over
            logger.info(
                "Server refused to resume %s from byte %d (HTTP 416): restarting from byte 0",
                url,
                offset,
            )
            part.unlink()
            return _open_http(url, 0, part)
        raise ESC50Error(
            f"cannot download {url}: HTTP {error.code} {error.reason}; check the url or download "
            "ESC-50 by hand and point data_folder at it"
        ) from error
    except (OSError, urllib.error.URLError) as error:
        raise ESC50Error(
            f"cannot download {url}: {error}; where there is no network, run `python fetch.py "
            f"HPARAMS.yaml --data_folder={part.parent}` on a machine with internet first, or "
            f"point --data_folder at a copy of ESC-50 (a partial download is kept in {part})"
        ) from error
    status = getattr(response, "status", None) or response.getcode()
    if offset and status != 206:
        logger.info(
            "Server ignored the request to resume %s from byte %d (HTTP %s): "
            "restarting the download from byte 0",
            url,
            offset,
            status,
        )
        offset = 0
    length = response.headers.get("Content-Length")
    total = offset + int(length) if length is not None and length.isdigit() else None
    return response, total, offset


def _unsafe_member(name: str, root: Path) -> bool:
    """True when extracting ``name`` under ``root`` would write outside ``root``."""
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return True
    if ".." in re.split(r"[\\/]", name):
        return True
    target = (root / name).resolve()
    return target != root and root not in target.parents


def _move_into(source: Path, target: Path, last: str | None = None) -> None:
    """Moves the folder ``source`` to ``target``, merging into it when it already exists.

    ``last`` names a file moved after all the others (the file whose presence marks completion).
    """
    if not target.exists():
        os.replace(source, target)
        return
    children = sorted(source.iterdir(), key=lambda child: child.name == last)
    for child in children:
        if child.is_dir():
            _move_into(child, target / child.name)
        else:
            os.replace(child, target / child.name)


def extract_archive(archive, data_folder) -> None:
    """Extracts an ESC-50 zip archive so that ``data_folder`` holds ``meta/`` and ``audio/``.

    The archive is tested first (a truncated or corrupt one is deleted, so that the next run
    downloads it again); members that would land outside the extraction folder (absolute paths,
    ``..``) are refused before anything is written. The folder of the archive that holds
    ``meta/esc50.csv`` (``ESC-50-<commit>/`` in GitHub's archives) is extracted into a temporary
    folder inside ``data_folder``, and its ``audio`` and ``meta`` are moved into place only once
    the whole extraction has succeeded (``meta/esc50.csv`` last).

    Arguments
    ---------
    archive : str or Path
        The zip file.
    data_folder : str or Path
        Where ``audio/`` and ``meta/`` go.
    """
    archive, data_folder = Path(archive), Path(data_folder)
    if not archive.is_file():
        raise ESC50Error(f"archive {archive} not found; run again to download it")
    corrupt = None
    if not zipfile.is_zipfile(archive):
        corrupt = "it is not a readable zip file"
    else:
        try:
            with zipfile.ZipFile(archive) as zf:
                bad_member = zf.testzip()
            if bad_member is not None:
                corrupt = f"member {bad_member} fails its CRC check"
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as error:
            corrupt = str(error)
    if corrupt is not None:
        archive.unlink(missing_ok=True)
        raise ESC50Error(
            f"archive {archive} is truncated or corrupt ({corrupt}); the file was deleted, so the "
            "next run downloads it again"
        )

    data_folder.mkdir(parents=True, exist_ok=True)
    for leftover in data_folder.glob(f"{STAGING_PREFIX}*"):  # from an interrupted extraction
        shutil.rmtree(leftover, ignore_errors=True)
    root = data_folder.resolve() / STAGING_PREFIX  # where members would go (not created yet)
    with zipfile.ZipFile(archive) as zf:
        members = zf.infolist()
        for member in members:
            if _unsafe_member(member.filename, root):
                raise ESC50Error(
                    f"archive {archive} holds member {member.filename!r}, which would be written "
                    f"outside {data_folder}; refusing to extract it. Delete the archive and "
                    "download ESC-50 from its official source"
                )
        prefixes = [
            m.filename[: -len("meta/esc50.csv")]
            for m in members
            if m.filename == "meta/esc50.csv" or m.filename.endswith("/meta/esc50.csv")
        ]
        if not prefixes:
            archive.unlink()
            raise ESC50Error(
                f"archive {archive} holds no meta/esc50.csv, so it is not an ESC-50 archive; the "
                "file was deleted: check the url or download ESC-50 by hand"
            )
        prefix = min(prefixes, key=len)
        wanted = [
            m
            for m in members
            if m.filename.startswith((prefix + "audio/", prefix + "meta/")) and not m.is_dir()
        ]
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=data_folder))
        try:
            logger.info("Extracting %d files of %s into %s", len(wanted), archive, data_folder)
            for member in wanted:
                zf.extract(member, staging)
            extracted = staging / prefix
            (extracted / "audio").mkdir(exist_ok=True)
            _move_into(extracted / "audio", data_folder / "audio")
            _move_into(extracted / "meta", data_folder / "meta", last="esc50.csv")
        except (OSError, zipfile.BadZipFile, zlib.error, EOFError) as error:
            raise ESC50Error(
                f"extraction of {archive} into {data_folder} failed ({error}); check the free "
                "disk space and run again"
            ) from error
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _missing_files(data_folder, rows: list[dict]) -> list[str]:
    audio = Path(data_folder) / "audio"
    return [row["filename"] for row in rows if not (audio / row["filename"]).is_file()]


def download_esc50(data_folder, url: str = ESC50_URL) -> None:
    """Downloads and extracts ESC-50 into ``data_folder`` unless it is already there.

    A copy already in place (``has_esc50``) is used as is. Otherwise the archive is downloaded to
    ``<data_folder>/ESC-50.zip`` (resumable; an archive already there is reused), extracted, the
    file list is checked against ``meta/esc50.csv`` and the archive is removed.

    Arguments
    ---------
    data_folder : str or Path
        Where ESC-50 is (or goes).
    url : str
        The archive to download (default: the pinned commit of the official repository).
    """
    data_folder = Path(data_folder)
    if has_esc50(data_folder):
        logger.info("ESC-50 found in %s: no download", data_folder)
        return
    data_folder.mkdir(parents=True, exist_ok=True)
    archive = data_folder / ARCHIVE_NAME
    if archive.is_file():
        logger.info("Using the archive already downloaded at %s", archive)
    else:
        download_file(url, archive)
    extract_archive(archive, data_folder)
    rows = read_metadata(data_folder)
    missing = _missing_files(data_folder, rows)
    if missing:
        raise ESC50Error(
            f"the archive {archive} lacks {len(missing)} of the {len(rows)} audio files listed in "
            f"{_csv_path(data_folder)}: {_first(missing)}; check the url (it must be an ESC-50 "
            "archive) or download ESC-50 by hand"
        )
    logger.info("ESC-50 extracted to %s: %d clips, all present", data_folder, len(rows))
    archive.unlink()


def read_metadata(data_folder) -> list[dict]:
    """Reads ``meta/esc50.csv``.

    Arguments
    ---------
    data_folder : str or Path
        The ESC-50 root.

    Returns
    -------
    list of dict
        One dict per clip, keyed by the CSV columns; ``fold`` and ``target`` are ints.
    """
    path = _csv_path(data_folder)
    if not path.is_file():
        raise ESC50Error(
            f"{path} not found: download ESC-50 (prepare_esc50 with download=True) or point "
            "data_folder at a copy of it (the folder holding audio/ and meta/)"
        )
    rows = []
    seen = {}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        found = [name.strip() for name in (reader.fieldnames or [])]
        if not set(CSV_COLUMNS) <= set(found):
            raise ESC50Error(
                f"unknown CSV layout in {path}: expected columns {', '.join(CSV_COLUMNS)}, "
                f"found {', '.join(found) or 'none'}"
            )
        reader.fieldnames = found
        for row in reader:
            line = reader.line_num
            row = dict(row)
            for key in ("fold", "target"):
                try:
                    row[key] = int(row[key])
                except (TypeError, ValueError):
                    raise ESC50Error(
                        f"{path}, line {line}: {key} {row[key]!r} is not an integer; fix or "
                        "replace the file (re-download ESC-50)"
                    ) from None
            filename = (row["filename"] or "").strip()
            if not filename:
                raise ESC50Error(f"{path}, line {line}: empty filename; fix or replace the file")
            if filename in seen:
                raise ESC50Error(
                    f"{path}, line {line}: {filename} is already listed on line "
                    f"{seen[filename]}; fix or replace the file"
                )
            seen[filename] = line
            row["filename"] = filename
            rows.append(row)
    return rows


def verify_audio_files(data_folder, rows) -> dict[str, float]:
    """Checks that the audio file of every row exists and can be decoded.

    Arguments
    ---------
    data_folder : str or Path
        The ESC-50 root.
    rows : list of dict
        Rows of ``read_metadata`` (at least ``filename``).

    Returns
    -------
    dict
        filename -> duration in seconds.
    """
    audio = Path(data_folder) / "audio"
    missing = _missing_files(data_folder, rows)
    if missing:
        raise ESC50Error(
            f"{len(missing)} audio file(s) listed in {_csv_path(data_folder)} are missing from "
            f"{audio}: {_first(missing)}. Restore them (re-download ESC-50: delete {audio} and "
            f"{_csv_path(data_folder)} and run again) or fix data_folder"
        )
    durations, undecodable = {}, []
    for row in rows:
        path = audio / row["filename"]
        try:
            info = sf.info(str(path))
            if info.frames <= 0 or info.samplerate <= 0:
                raise ValueError("no samples")
        except Exception as error:  # soundfile raises LibsndfileError, RuntimeError, TypeError...
            undecodable.append(f"{row['filename']} ({str(error).strip() or type(error).__name__})")
            continue
        durations[row["filename"]] = info.frames / info.samplerate
    if undecodable:
        raise ESC50Error(
            f"{len(undecodable)} audio file(s) in {audio} cannot be decoded: "
            f"{_first(undecodable)}. Replace them with intact copies (re-download ESC-50)"
        )
    return durations


_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no", "")


def select_subset(rows: list[dict], subset: str, csv_path=None) -> list[dict]:
    """The rows of ``subset``: all of them (``esc50``) or those whose ``esc10`` column is True.

    Arguments
    ---------
    rows : list of dict
        Rows of ``read_metadata``.
    subset : str
        One of ``SUBSETS``.
    csv_path : str or Path, optional
        The CSV the rows come from (named in error messages).

    Example
    -------
    >>> rows = [{"filename": "a.wav", "esc10": "True"}, {"filename": "b.wav", "esc10": "False"}]
    >>> [row["filename"] for row in select_subset(rows, "esc10")]
    ['a.wav']
    >>> len(select_subset(rows, "esc50"))
    2
    """
    source = csv_path or "meta/esc50.csv"
    if subset not in SUBSETS:
        raise ESC50Error(f"subset must be one of {', '.join(SUBSETS)}, got {subset!r}")
    if subset == "esc50":
        return list(rows)
    selected = []
    for row in rows:
        value = str(row.get("esc10") or "").strip().lower()
        if value not in _TRUE + _FALSE:
            raise ESC50Error(
                f"{source}: the esc10 column of {row['filename']} is {row.get('esc10')!r}, not "
                "True or False; fix the CSV or use subset: esc50"
            )
        if value in _TRUE:
            selected.append(row)
    if not selected:
        raise ESC50Error(
            f"{source} has no row whose esc10 column is True, so subset esc10 is empty; use "
            "subset: esc50 or a data folder of ESC-50 / ESC-10"
        )
    return selected


def label_map(rows: list[dict], csv_path=None) -> list[dict]:
    """Contiguous labels for the targets of ``rows``, in increasing order of ``target``.

    Each target must have one class name, and each class name one target.

    Returns
    -------
    list of dict
        ``[{"label": 0, "target": t0, "class_name": name0}, ...]``, one entry per class.

    Example
    -------
    >>> rows = [{"filename": "a", "target": 41, "category": "chainsaw"},
    ...         {"filename": "b", "target": 0, "category": "dog"},
    ...         {"filename": "c", "target": 41, "category": "chainsaw"}]
    >>> label_map(rows)
    [{'label': 0, 'target': 0, 'class_name': 'dog'}, {'label': 1, 'target': 41, 'class_name': 'chainsaw'}]
    """  # noqa: E501
    source = csv_path or "meta/esc50.csv"
    names, first_file = {}, {}
    for row in rows:
        target, name = int(row["target"]), str(row["category"]).strip()
        if not name:
            raise ESC50Error(f"{source}: {row['filename']} has an empty category; fix the CSV")
        if names.setdefault(target, name) != name:
            raise ESC50Error(
                f"{source}: target {target} is named both {names[target]!r} "
                f"({first_file[target]}) and {name!r} ({row['filename']}); one target, one name"
            )
        first_file.setdefault(target, row["filename"])
    by_name = {}
    for target, name in names.items():
        if name in by_name:
            raise ESC50Error(
                f"{source}: class {name!r} has two targets, {by_name[name]} and {target}; give "
                "each class one target"
            )
        by_name[name] = target
    return [
        {"label": label, "target": target, "class_name": names[target]}
        for label, target in enumerate(sorted(names))
    ]


def read_labels(save_folder) -> list[dict]:
    """The label map ``prepare_esc50`` wrote beside the manifests (see ``label_map``)."""
    path = Path(save_folder) / LABELS_FILE
    if not path.is_file():
        raise ESC50Error(f"{path} not found: prepare the data first (prepare_esc50)")
    return json.loads(path.read_text(encoding="utf-8"))


def data_label_map(data_folder, subset: str = "esc50") -> list[dict]:
    """The label map of ``subset`` of the data set in ``data_folder`` (from its CSV alone)."""
    return label_map(select_subset(read_metadata(data_folder), subset, _csv_path(data_folder)))


def _as_folds(name: str, folds, allow_empty: bool = False) -> list[int]:
    """The folds of one split as a sorted list of distinct ints, or ESC50Error."""
    if isinstance(folds, numbers.Integral) and not isinstance(folds, bool):
        folds = [folds]
    if isinstance(folds, (str, bytes)):
        raise ESC50Error(f"{name} must be a list of fold numbers (1..{N_FOLDS}), got {folds!r}")
    try:
        folds = list(folds)
    except TypeError:
        raise ESC50Error(
            f"{name} must be a list of fold numbers (1..{N_FOLDS}), got {folds!r}"
        ) from None
    if not folds and not allow_empty:
        raise ESC50Error(f"{name} is empty: give at least one ESC-50 fold (1..{N_FOLDS})")
    result = []
    for fold in folds:
        if isinstance(fold, bool) or not isinstance(fold, numbers.Integral):
            raise ESC50Error(f"{name} holds {fold!r}, which is not a fold number (1..{N_FOLDS})")
        if not 1 <= int(fold) <= N_FOLDS:
            raise ESC50Error(f"{name} holds fold {fold}, but ESC-50's folds are 1..{N_FOLDS}")
        result.append(int(fold))
    return sorted(set(result))


def _normalise_folds(train_folds, valid_folds, test_folds) -> dict[str, list[int]]:
    splits = {
        "train": _as_folds("train_folds", train_folds),
        # No validation folds: train without model selection, keep the last epoch.
        "valid": _as_folds("valid_folds", valid_folds, allow_empty=True),
        "test": _as_folds("test_folds", test_folds),
    }
    for i, first in enumerate(SPLITS):
        for second in SPLITS[i + 1 :]:
            common = sorted(set(splits[first]) & set(splits[second]))
            if common:
                raise ESC50Error(
                    f"fold {common[0]} is in both {first}_folds and {second}_folds: "
                    "the splits must be disjoint"
                )
    return splits


def check_folds(train_folds, valid_folds, test_folds) -> None:
    """Checks a fold assignment: lists of folds in 1..5, pairwise disjoint.

    ``train_folds`` and ``test_folds`` must not be empty; an empty ``valid_folds`` means no
    validation (train_classifier.py then keeps the last epoch's model).

    Arguments
    ---------
    train_folds, valid_folds, test_folds : sequence of int
        The folds of each split (any sequence, e.g. a list from a YAML file).

    Example
    -------
    >>> check_folds([1, 2, 3], [4], [5])
    >>> check_folds([1, 2, 3, 4], [], [5])
    >>> check_folds([1, 2, 3], [4], [3])
    Traceback (most recent call last):
    ...
    data_prep.esc50.ESC50Error: fold 3 is in both train_folds and test_folds: the splits must be disjoint
    """  # noqa: E501
    _normalise_folds(train_folds, valid_folds, test_folds)


def _write_json_atomic(path: Path, data) -> None:
    write_json(path, data)


def prepare_esc50(
    data_folder,
    save_folder,
    train_folds=DEFAULT_FOLDS["train"],
    valid_folds=DEFAULT_FOLDS["valid"],
    test_folds=DEFAULT_FOLDS["test"],
    url: str = ESC50_URL,
    download: bool = True,
    subset: str = "esc50",
) -> dict[str, Path]:
    """Writes the train, valid and test manifests of ESC-50, downloading it when needed.

    Manifests are rebuilt only when the options (data folder, folds, subset) differ from those of
    the previous run recorded in ``<save_folder>/prepare_options.json``, or a file is missing.
    The label map of the subset (``label_map`` over all its rows, whatever the folds) goes to
    ``<save_folder>/labels.json``; each manifest entry holds its ``label`` and ``target``.

    Arguments
    ---------
    data_folder : str or Path
        The ESC-50 root (holding ``audio/`` and ``meta/``), or where to download it.
    save_folder : str or Path
        Where ``train.json``, ``valid.json``, ``test.json`` and ``prepare_options.json`` go.
    train_folds, valid_folds, test_folds : sequence of int
        The folds of each split (disjoint, within 1..5; default: the usual 1-3 / 4 / 5).
    url : str
        The archive downloaded when ``data_folder`` holds no ESC-50.
    download : bool
        Whether to download ESC-50 when it is missing (else ESC50Error).
    subset : str
        ``esc50`` (every clip) or ``esc10`` (the clips whose ``esc10`` column is True).

    Returns
    -------
    dict
        ``{"train": Path, "valid": Path, "test": Path}``: the manifests.
    """
    folds = _normalise_folds(train_folds, valid_folds, test_folds)
    if subset not in SUBSETS:
        raise ESC50Error(f"subset must be one of {', '.join(SUBSETS)}, got {subset!r}")
    data_folder = Path(data_folder).expanduser().resolve()
    save_folder = Path(save_folder).expanduser()
    manifests = {split: save_folder / f"{split}.json" for split in SPLITS}
    options_path = save_folder / OPTIONS_FILE
    options = {
        "format": MANIFEST_FORMAT,
        "data_folder": str(data_folder),
        "subset": subset,
        **{f"{split}_folds": folds[split] for split in SPLITS},
    }
    labels_path = save_folder / LABELS_FILE
    if options_path.is_file() and all(p.is_file() for p in [*manifests.values(), labels_path]):
        try:
            previous = json.loads(options_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            previous = None
        if previous == options:
            logger.info("ESC-50 manifests in %s are up to date: skipping preparation", save_folder)
            return manifests
        logger.info("Preparation options changed: rebuilding the manifests in %s", save_folder)

    if not has_esc50(data_folder):
        if not download:
            raise ESC50Error(
                f"ESC-50 not found in {data_folder} (expected meta/esc50.csv and audio/): point "
                "data_folder at a copy of ESC-50 or allow the download (download=True)"
            )
        download_esc50(data_folder, url)
    rows = select_subset(read_metadata(data_folder), subset, _csv_path(data_folder))
    labels = label_map(rows, _csv_path(data_folder))
    label_of = {entry["target"]: entry["label"] for entry in labels}
    selected = {split: [row for row in rows if row["fold"] in folds[split]] for split in SPLITS}
    for split in SPLITS:
        if not selected[split] and folds[split]:
            raise ESC50Error(
                f"the {split} split is empty: the CSV {_csv_path(data_folder)} has no clip of "
                f"subset {subset} in folds {folds[split]}; choose other {split}_folds"
            )
    durations = verify_audio_files(
        data_folder, [row for split in SPLITS for row in selected[split]]
    )

    save_folder.mkdir(parents=True, exist_ok=True)
    options_path.unlink(missing_ok=True)  # manifests and options must never disagree
    for split in SPLITS:
        entries = {}
        for row in selected[split]:
            entries[Path(row["filename"]).stem] = {
                "path": "{data_root}/audio/" + row["filename"],
                "class_name": row["category"].strip(),
                "label": label_of[row["target"]],
                "target": row["target"],
                "fold": row["fold"],
                "duration": durations[row["filename"]],
            }
        _write_json_atomic(manifests[split], entries)
        logger.info("Wrote %s: %d clips (folds %s)", manifests[split], len(entries), folds[split])
    _write_json_atomic(labels_path, labels)
    _write_json_atomic(options_path, options)
    return manifests


def first_appearance_classes(data_folder, train_folds=(1, 2, 3)) -> list[str]:
    """Class names in order of first appearance among the training folds' rows of the CSV.

    This is the label order of SpeechBrain's ESC-50 recipes (their ``CategoricalEncoder`` is
    filled from the training manifest, written in CSV order), hence of the checkpoints they
    released; ESC-50's ``target`` order differs.
    """
    names = []
    for row in read_metadata(data_folder):
        if row["fold"] in train_folds and row["category"] not in names:
            names.append(row["category"])
    return names
