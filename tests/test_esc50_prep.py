"""ESC-50 preparation: manifests, fold checks, data errors, and the (offline) download path."""

import io
import json
import logging
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio.dataset import DynamicItemDataset

from data_prep import esc50
from data_prep.esc50 import (
    ARCHIVE_NAME,
    CSV_COLUMNS,
    STAGING_PREFIX,
    ESC50Error,
    check_folds,
    download_esc50,
    download_file,
    extract_archive,
    has_esc50,
    prepare_esc50,
    read_metadata,
    verify_audio_files,
)
from data_prep.synthetic import generate_synthetic_esc50

LOGGER = "data_prep.esc50"
N_CLASSES = 3  # one clip per class and fold: 3 clips per fold, 15 in all


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A small synthetic ESC-50 (3 classes x 1 clip x 5 folds, 1 s clips); read-only."""
    folder = tmp_path_factory.mktemp("esc50_synthetic")
    rows = generate_synthetic_esc50(
        folder, n_classes=N_CLASSES, clips_per_class_per_fold=1, duration=1.0
    )
    return folder, rows


@pytest.fixture
def data_copy(synthetic, tmp_path):
    """A writable copy of the synthetic set."""
    folder = tmp_path / "ESC-50"
    shutil.copytree(synthetic[0], folder)
    return folder


@pytest.fixture(scope="module")
def archive(synthetic, tmp_path_factory):
    """The synthetic set zipped as GitHub archives ESC-50: under one top folder."""
    path = tmp_path_factory.mktemp("esc50_archive") / "ESC-50-testcommit.zip"
    _zip_folder(synthetic[0], path)
    return path


def _zip_folder(folder: Path, path: Path, extra: dict | None = None) -> None:
    top = "ESC-50-testcommit/"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(top, "")
        zf.writestr(top + "README.md", "ESC-50 (synthetic)\n")
        for file in sorted(Path(folder).rglob("*")):
            if file.is_file():
                zf.write(file, top + file.relative_to(folder).as_posix())
        for name, data in (extra or {}).items():
            zf.writestr(name, data)


def _rewrite_csv(folder: Path, edit) -> None:
    """Applies ``edit`` to the lines of the copy's meta/esc50.csv."""
    path = folder / "meta" / "esc50.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(edit(lines)) + "\n")


def _leftovers(folder: Path) -> list[Path]:
    return list(folder.glob(f"{STAGING_PREFIX}*")) if folder.exists() else []


def _load(manifest: Path, data_folder: Path) -> DynamicItemDataset:
    dataset = DynamicItemDataset.from_json(
        str(manifest), replacements={"data_root": str(data_folder)}
    )
    dataset.set_output_keys(["id", "path", "class_name", "target", "fold", "duration"])
    return dataset


def _check_manifests(manifests, data_folder, rows, folds) -> None:
    by_id = {Path(row["filename"]).stem: row for row in rows}
    assert set(manifests) == {"train", "valid", "test"}
    for split, split_folds in folds.items():
        raw = json.loads(manifests[split].read_text())
        expected = {key for key, row in by_id.items() if row["fold"] in split_folds}
        assert set(raw) == expected
        assert len(raw) == N_CLASSES * len(split_folds)
        for entry in raw.values():
            assert entry["path"].startswith("{data_root}/audio/")
        items = list(_load(manifests[split], data_folder))
        assert len(items) == len(expected)
        for item in items:
            row = by_id[item["id"]]
            assert item["path"] == f"{data_folder}/audio/{row['filename']}"
            assert Path(item["path"]).is_file()
            assert item["target"] == row["target"]
            assert item["class_name"] == row["category"]
            assert item["fold"] == row["fold"]
            assert item["duration"] == pytest.approx(1.0)


# Manifests ---------------------------------------------------------------------------------------


def test_manifests_default_folds(synthetic, tmp_path):
    folder, rows = synthetic
    manifests = prepare_esc50(folder, tmp_path / "save", download=False)
    assert manifests == {split: tmp_path / "save" / f"{split}.json" for split in manifests}
    _check_manifests(manifests, folder, rows, {"train": (1, 2, 3), "valid": (4,), "test": (5,)})
    options = json.loads((tmp_path / "save" / "prepare_options.json").read_text())
    assert options["data_folder"] == str(folder.resolve())
    assert (options["train_folds"], options["valid_folds"], options["test_folds"]) == (
        [1, 2, 3],
        [4],
        [5],
    )


def test_manifests_custom_split_leaves_unused_fold_out(synthetic, tmp_path):
    folder, rows = synthetic
    folds = {"train": (2, 4), "valid": (1,), "test": (3,)}
    manifests = prepare_esc50(
        folder, tmp_path / "save", folds["train"], folds["valid"], folds["test"], download=False
    )
    _check_manifests(manifests, folder, rows, folds)
    listed = set()
    for path in manifests.values():
        listed |= {entry["fold"] for entry in json.loads(path.read_text()).values()}
    assert listed == {1, 2, 3, 4}


def test_targets_follow_the_csv_not_the_class_order(data_copy, tmp_path):
    # Targets come from the CSV column, whatever the category names or their order.
    _rewrite_csv(
        data_copy, lambda lines: [lines[0]] + [ln.replace("class_0", "k") for ln in lines[1:]]
    )
    rows = read_metadata(data_copy)
    manifests = prepare_esc50(data_copy, tmp_path / "save", download=False)
    entries = {}
    for path in manifests.values():
        entries.update(json.loads(path.read_text()))
    for row in rows:
        entry = entries[Path(row["filename"]).stem]
        assert entry["target"] == row["target"] == int(row["filename"][-5])
        assert entry["class_name"] == row["category"] == f"k{row['target']}"


def test_manifests_not_rebuilt_for_same_options(synthetic, tmp_path, caplog):
    folder, _ = synthetic
    save = tmp_path / "save"
    manifests = prepare_esc50(folder, save, download=False)
    train = json.loads(manifests["train"].read_text())
    train["sentinel"] = {"path": "{data_root}/audio/none.wav"}
    manifests["train"].write_text(json.dumps(train))
    mtimes = {split: path.stat().st_mtime_ns for split, path in manifests.items()}

    caplog.set_level(logging.INFO, logger=LOGGER)
    again = prepare_esc50(folder, save, [3, 1, 2], [4], [5], download=False)  # same folds
    assert again == manifests
    assert "sentinel" in json.loads(manifests["train"].read_text())
    assert {split: path.stat().st_mtime_ns for split, path in manifests.items()} == mtimes
    assert "up to date" in caplog.text


def test_manifests_rebuilt_when_folds_change_or_a_manifest_is_missing(synthetic, tmp_path):
    folder, _ = synthetic
    save = tmp_path / "save"
    manifests = prepare_esc50(folder, save, download=False)
    manifests["train"].write_text(json.dumps({"sentinel": {}}))

    manifests = prepare_esc50(folder, save, (1, 2), (3,), (4, 5), download=False)
    counts = {split: len(json.loads(path.read_text())) for split, path in manifests.items()}
    assert counts == {"train": 6, "valid": 3, "test": 6}
    options = json.loads((save / "prepare_options.json").read_text())
    assert options["test_folds"] == [4, 5]

    manifests["valid"].unlink()
    manifests = prepare_esc50(folder, save, (1, 2), (3,), (4, 5), download=False)
    assert len(json.loads(manifests["valid"].read_text())) == 3


def test_real_subset(real_subset, tmp_path):
    """On real ESC-50 clips (the 414-clip subset: folds 2, 3, 5 partial, fold 4 complete)."""
    manifests = prepare_esc50(real_subset, tmp_path / "save", download=False)
    rows = {Path(row["filename"]).stem: row for row in read_metadata(real_subset)}
    counts = {}
    for split, path in manifests.items():
        items = list(_load(path, real_subset))
        counts[split] = len(items)
        for item in items:
            row = rows[item["id"]]
            assert (item["target"], item["class_name"]) == (row["target"], row["category"])
            assert item["duration"] == pytest.approx(5.0)
            assert Path(item["path"]).is_file()
    assert counts["valid"] == 400  # fold 4: 50 classes x 8 clips
    assert sum(counts.values()) == len(rows) - sum(row["fold"] == 1 for row in rows.values())


# Fold configurations -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "train, valid, test, message",
    [
        ((0, 1, 2), (4,), (5,), "train_folds holds fold 0"),
        ((1, 2, 3), (6,), (5,), "valid_folds holds fold 6"),
        ((1, 2, 3), (4,), (3, 5), "fold 3 is in both train_folds and test_folds"),
        ((1, 2), (2, 4), (5,), "fold 2 is in both train_folds and valid_folds"),
        ((), (4,), (5,), "train_folds is empty"),
        ((1, 2, 3), (4,), [], "test_folds is empty"),
        ((1, 2, "3"), (4,), (5,), "train_folds holds '3', which is not a fold number"),
        ((1, 2, 3), (4,), "5", "test_folds must be a list"),
    ],
)
def test_bad_fold_configs(tmp_path, train, valid, test, message):
    with pytest.raises(ESC50Error, match=re.escape(message)):
        check_folds(train, valid, test)
    # prepare_esc50 checks the folds before it looks for (or downloads) any data
    with pytest.raises(ESC50Error, match=re.escape(message)):
        prepare_esc50(tmp_path / "nothing", tmp_path / "save", train, valid, test, download=False)
    assert not (tmp_path / "save").exists()


def test_fold_lists_from_yaml_numpy_or_scalars_are_accepted():
    hparams = load_hyperpyyaml(
        "last: 5\ntrain_folds: [1, 2, 3]\nvalid_folds: [4]\ntest_folds: [!ref <last>]\n"
    )
    check_folds(hparams["train_folds"], hparams["valid_folds"], hparams["test_folds"])
    check_folds(range(1, 4), np.array([4]), 5)


def test_empty_split_raises(data_copy, tmp_path):
    _rewrite_csv(data_copy, lambda lines: [ln for ln in lines if not ln.startswith("5-")])
    with pytest.raises(ESC50Error, match=r"test split is empty.*subset esc50 in folds \[5\]"):
        prepare_esc50(data_copy, tmp_path / "save", download=False)


# Data errors -------------------------------------------------------------------------------------


def test_missing_audio_file_is_named(data_copy, synthetic, tmp_path):
    name = next(row["filename"] for row in synthetic[1] if row["fold"] == 2)
    (data_copy / "audio" / name).unlink()
    with pytest.raises(ESC50Error, match=rf"1 audio file\(s\).* missing.*{re.escape(name)}"):
        prepare_esc50(data_copy, tmp_path / "save", download=False)
    assert not (tmp_path / "save" / "prepare_options.json").exists()
    # only the clips of the selected folds are checked
    manifests = prepare_esc50(data_copy, tmp_path / "save", (1,), (3,), (4,), download=False)
    assert all(path.is_file() for path in manifests.values())


def test_corrupt_audio_file_is_named(data_copy, synthetic, tmp_path):
    name = next(row["filename"] for row in synthetic[1] if row["fold"] == 4)
    (data_copy / "audio" / name).write_bytes(b"this is not audio\n" * 64)
    with pytest.raises(ESC50Error, match=rf"cannot be decoded: {re.escape(name)}"):
        prepare_esc50(data_copy, tmp_path / "save", download=False)


def test_unknown_csv_layout_names_the_columns(data_copy, tmp_path):
    _rewrite_csv(data_copy, lambda lines: [lines[0].replace("category", "label")] + lines[1:])
    with pytest.raises(ESC50Error, match="unknown CSV layout") as error:
        prepare_esc50(data_copy, tmp_path / "save", download=False)
    message = str(error.value)
    assert "esc50.csv" in message
    assert ", ".join(CSV_COLUMNS) in message
    assert "found filename, fold, target, label" in message


def test_non_integer_fold_names_the_line(data_copy):
    _rewrite_csv(
        data_copy, lambda lines: lines[:2] + [re.sub(r",\d,", ",x,", lines[2], count=1)] + lines[3:]
    )
    with pytest.raises(ESC50Error, match=r"line 3: fold 'x' is not an integer"):
        read_metadata(data_copy)


def test_missing_data_without_download(tmp_path):
    with pytest.raises(ESC50Error, match=re.escape(str(tmp_path / "empty"))):
        prepare_esc50(tmp_path / "empty", tmp_path / "save", download=False)
    with pytest.raises(ESC50Error, match=r"esc50\.csv not found: download ESC-50"):
        read_metadata(tmp_path / "empty")


# Download and extraction (file:// URLs and a fake HTTP server; no network) ----------------------


def test_download_end_to_end(archive, synthetic, tmp_path):
    data = tmp_path / "data"
    manifests = prepare_esc50(data, tmp_path / "save", url=archive.as_uri())
    assert has_esc50(data)
    _check_manifests(manifests, data.resolve(), synthetic[1], esc50.DEFAULT_FOLDS)
    assert not (data / ARCHIVE_NAME).exists()
    assert not (data / (ARCHIVE_NAME + ".part")).exists()
    assert not _leftovers(data)
    assert sorted(p.name for p in data.iterdir()) == ["audio", "meta"]
    csv_bytes = (synthetic[0] / "meta" / "esc50.csv").read_bytes()
    assert (data / "meta" / "esc50.csv").read_bytes() == csv_bytes


def test_download_resumes_a_partial_file(archive, tmp_path, caplog):
    payload = archive.read_bytes()
    data = tmp_path / "data"
    data.mkdir()
    (data / (ARCHIVE_NAME + ".part")).write_bytes(payload[: len(payload) // 2])
    caplog.set_level(logging.INFO, logger=LOGGER)
    dest = download_file(archive.as_uri(), data / ARCHIVE_NAME, chunk_size=4096)
    assert dest == data / ARCHIVE_NAME
    assert dest.read_bytes() == payload
    assert not (data / (ARCHIVE_NAME + ".part")).exists()
    assert f"from byte {len(payload) // 2}" in caplog.text
    extract_archive(dest, data)
    assert has_esc50(data)
    assert len(read_metadata(data)) == 5 * N_CLASSES


def test_truncated_download_is_rejected_and_deleted(archive, tmp_path):
    truncated = tmp_path / "truncated.zip"
    payload = archive.read_bytes()
    truncated.write_bytes(payload[: len(payload) // 2])
    data = tmp_path / "data"
    with pytest.raises(ESC50Error, match="truncated or corrupt") as error:
        prepare_esc50(data, tmp_path / "save", url=truncated.as_uri())
    assert str(data / ARCHIVE_NAME) in str(error.value)
    assert "deleted" in str(error.value)
    assert not has_esc50(data)
    assert not (data / "audio").exists() and not (data / "meta").exists()
    assert not (data / ARCHIVE_NAME).exists()
    assert not _leftovers(data)


def test_corrupt_member_is_rejected(archive, tmp_path):
    # Flip bytes inside the first audio member: the zip's directory is intact, a CRC is not.
    payload = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith(".wav"))
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 100
    payload[start : start + 16] = bytes(16)
    bad = tmp_path / "data" / ARCHIVE_NAME
    bad.parent.mkdir()
    bad.write_bytes(bytes(payload))
    with pytest.raises(ESC50Error, match="truncated or corrupt"):
        extract_archive(bad, tmp_path / "data")
    assert not bad.exists()
    assert not has_esc50(tmp_path / "data")


@pytest.mark.parametrize("member", ["../evil.txt", "ESC-50-testcommit/../../evil.txt", "ABS"])
def test_zip_slip_is_refused(synthetic, tmp_path, member):
    outside = tmp_path / "outside" / "evil.txt"
    if member == "ABS":
        member = str(outside)
    bad = tmp_path / "evil.zip"
    _zip_folder(synthetic[0], bad, extra={member: "pwned"})
    data = tmp_path / "work" / "data"
    with pytest.raises(ESC50Error, match=re.escape(repr(member))):
        prepare_esc50(data, tmp_path / "save", url=bad.as_uri())
    assert [p for p in tmp_path.rglob("evil.txt")] == []
    assert not outside.exists()
    assert not has_esc50(data)
    assert not (data / "audio").exists()
    assert not _leftovers(data)


def test_archive_without_esc50_csv_is_rejected(tmp_path):
    bad = tmp_path / "data" / ARCHIVE_NAME
    bad.parent.mkdir()
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("something/audio/1-1-A-0.wav", b"RIFF")
    with pytest.raises(ESC50Error, match="no meta/esc50.csv"):
        extract_archive(bad, tmp_path / "data")
    assert not has_esc50(tmp_path / "data")


def test_failed_extraction_leaves_nothing_half_written(archive, tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(archive, data / ARCHIVE_NAME)
    original, calls = zipfile.ZipFile.extract, []

    def failing_extract(self, member, path=None, pwd=None):
        calls.append(member)
        if len(calls) > 4:
            raise OSError(28, "No space left on device")
        return original(self, member, path, pwd)

    monkeypatch.setattr(zipfile.ZipFile, "extract", failing_extract)
    with pytest.raises(ESC50Error, match="No space left"):
        download_esc50(data, url="file:///nonexistent.zip")
    assert not has_esc50(data)
    assert sorted(p.name for p in data.iterdir()) == [ARCHIVE_NAME]  # kept for the next run

    monkeypatch.setattr(zipfile.ZipFile, "extract", original)
    download_esc50(data, url="file:///nonexistent.zip")  # reuses the archive, no download
    assert has_esc50(data)
    assert not (data / ARCHIVE_NAME).exists()


def test_manual_copy_needs_no_download(synthetic, tmp_path):
    folder, rows = synthetic
    before = sorted(p.name for p in folder.iterdir())
    download_esc50(folder, url="file:///nonexistent.zip")
    manifests = prepare_esc50(folder, tmp_path / "save", url="file:///nonexistent.zip")
    _check_manifests(manifests, folder, rows, esc50.DEFAULT_FOLDS)
    assert sorted(p.name for p in folder.iterdir()) == before


def test_download_errors_name_the_source(tmp_path):
    with pytest.raises(ESC50Error, match="nonexistent.zip does not exist"):
        download_file("file:///nonexistent.zip", tmp_path / "x.zip")
    with pytest.raises(ESC50Error, match="only http"):
        download_file("ftp://example.org/x.zip", tmp_path / "x.zip")


class _FakeResponse(io.BytesIO):
    """What urlopen returns: a stream with a status and a Content-Length header."""

    def __init__(self, body: bytes, status: int, length: int):
        super().__init__(body)
        self.status = status
        self.headers = {"Content-Length": str(length)}

    def getcode(self):
        return self.status


def _fake_server(payload: bytes, honour_range: bool = True, send: int | None = None):
    """An urlopen stand-in serving ``payload``; ``send`` caps the bytes of one response."""
    requests = []

    def urlopen(request, timeout=None):
        requests.append(request.get_header("Range"))
        asked = re.fullmatch(r"bytes=(\d+)-", request.get_header("Range") or "")
        start = int(asked.group(1)) if asked and honour_range else 0
        body = payload[start:]
        return _FakeResponse(body[:send], 206 if start else 200, len(body))

    return urlopen, requests


def test_http_resume_sends_range_and_appends_on_206(archive, tmp_path, monkeypatch, caplog):
    payload = archive.read_bytes()
    half = len(payload) // 2
    dest = tmp_path / ARCHIVE_NAME
    (tmp_path / (ARCHIVE_NAME + ".part")).write_bytes(payload[:half])
    urlopen, requests = _fake_server(payload)
    monkeypatch.setattr(esc50.urllib.request, "urlopen", urlopen)
    download_file("https://example.invalid/esc50.zip", dest)
    assert requests == [f"bytes={half}-"]
    assert dest.read_bytes() == payload


def test_http_restarts_when_server_ignores_range(archive, tmp_path, monkeypatch, caplog):
    payload = archive.read_bytes()
    dest = tmp_path / ARCHIVE_NAME
    (tmp_path / (ARCHIVE_NAME + ".part")).write_bytes(b"stale bytes" * 100)
    urlopen, requests = _fake_server(payload, honour_range=False)
    monkeypatch.setattr(esc50.urllib.request, "urlopen", urlopen)
    caplog.set_level(logging.INFO, logger=LOGGER)
    download_file("https://example.invalid/esc50.zip", dest)
    assert requests == ["bytes=1100-"]
    assert "restarting the download from byte 0" in caplog.text
    assert dest.read_bytes() == payload


def test_http_interrupted_download_keeps_part_and_resumes(archive, tmp_path, monkeypatch):
    payload = archive.read_bytes()
    dest = tmp_path / ARCHIVE_NAME
    part = tmp_path / (ARCHIVE_NAME + ".part")
    urlopen, requests = _fake_server(payload, send=1000)
    monkeypatch.setattr(esc50.urllib.request, "urlopen", urlopen)
    message = rf"interrupted after 1000 of {len(payload)} bytes; run again to resume from .*\.part"
    with pytest.raises(ESC50Error, match=message):
        download_file("https://example.invalid/esc50.zip", dest)
    assert not dest.exists()
    assert part.read_bytes() == payload[:1000]

    urlopen, requests = _fake_server(payload)
    monkeypatch.setattr(esc50.urllib.request, "urlopen", urlopen)
    download_file("https://example.invalid/esc50.zip", dest)
    assert requests == ["bytes=1000-"]
    assert dest.read_bytes() == payload
    assert not part.exists()


def test_many_missing_files_are_counted_and_the_first_five_named(data_copy, synthetic):
    names = sorted(row["filename"] for row in synthetic[1])
    for name in names[:7]:
        (data_copy / "audio" / name).unlink()
    with pytest.raises(ESC50Error, match=r"7 audio file\(s\)") as error:
        verify_audio_files(data_copy, read_metadata(data_copy))
    assert ", ".join(names[:5]) + " (and 2 more)" in str(error.value)
    durations = verify_audio_files(data_copy, [{"filename": name} for name in names[7:]])
    assert durations == {name: pytest.approx(1.0) for name in names[7:]}
