"""Quantile sweep, Table 1 report, mixture demo, interpret.py and released checkpoints."""

import csv
import json
import re

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from recipe_runs import TINY_BACKBONE_CONFIG, run_script
from speechbrain.dataio.dataloader import make_dataloader
from speechbrain.dataio.encoder import CategoricalEncoder

from data_prep.audio import load_clip
from data_prep.esc50 import first_appearance_classes
from data_prep.mixing import mix_sources
from recipes.crossval import METRICS
from recipes.inference import AudioInterpreter
from recipes.outputs import write_file_interpretation
from recipes.runs import RunFolderError, run_split_dataset
from recipes.sweep import SWEEP_COLUMNS, sweep_quantiles

# ------------------------------------------------------------------ sweep ---


def test_sweep_matches_the_recipe_and_writes_csv_and_figure(classifier_runs, piq_run, tmp_path):
    figures = tmp_path / "figures"
    args = [
        "--model_folders",
        str(classifier_runs["focalnet"]),
        str(classifier_runs["vit"]),
        "--runs",
        str(piq_run),
        "--quantiles",
        "0.5",
        "0.9",
        "0.2",
        "--output_folder",
        str(figures),
    ]
    result = run_script("sweep_quantile.py", args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (figures / "quantile_sweep.png").stat().st_size > 10_000
    with open(figures / "quantile_sweep.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["method"], row["q"] and float(row["q"])) for row in rows] == [
        ("FocalNet", 0.2),
        ("FocalNet", 0.5),
        ("FocalNet", 0.9),
        ("FocalNet-PIQ", ""),  # a soft mask: no q
        ("ViT", 0.2),
        ("ViT", 0.5),
        ("ViT", 0.9),
    ]
    # Known answer: at q = 0.9 the sweep reproduces the recipe's own test metrics (q = 0.9).
    for backbone in ("focalnet", "vit"):
        recipe = json.loads((classifier_runs[backbone] / "test_metrics.json").read_text())
        with open(classifier_runs[backbone] / "quantile_sweep.csv") as handle:
            rows_09 = [row for row in csv.DictReader(handle) if row["q"] and float(row["q"]) == 0.9]
        at_09 = [row for row in rows_09 if row["method"] == "by_design"][0]
        for key in ("fid_i", "fa", "fa_mask_in", "acc"):
            assert float(at_09[key]) == pytest.approx(recipe[key], abs=1e-5), (backbone, key)
    # The PIQ row reproduces the PIQ run's own test metrics (same clips, same soft masks).
    piq = json.loads((piq_run / "test_metrics.json").read_text())
    piq_row = next(row for row in rows if row["method"] == "FocalNet-PIQ")
    for key in ("fid_i", "fa", "fa_mask_in", "acc"):
        assert float(piq_row[key]) == pytest.approx(piq[key], abs=1e-5), key


def test_sweep_columns_hold_every_cross_validation_metric_and_the_edge_shares():
    """cross_validate.py reads METRICS from sweep rows: a column dropped there breaks it."""
    assert set(METRICS) <= set(SWEEP_COLUMNS)
    edge_and_counts = {"acc", "n_clips", "mask_first", "mask_last", "edge_area", "score_scale"}
    assert edge_and_counts <= set(SWEEP_COLUMNS)
    assert len(set(SWEEP_COLUMNS)) == len(SWEEP_COLUMNS)


def test_sweep_runs_the_unmasked_forward_once_per_batch(classifier_runs):
    model = AudioInterpreter.from_run(classifier_runs["focalnet"]).model
    calls = []
    backbone = model.classifier.embedding_model
    backbone.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    dataset = run_split_dataset(classifier_runs["focalnet"], "test")
    quantiles = [0.1, 0.5, 0.9, 0.95]
    sweep_quantiles(model, make_dataloader(dataset, batch_size=6), quantiles)
    # One forward of the 6 clips, then per q one batched forward of x_int and x_out (12).
    assert calls == [6] + [12] * len(quantiles)


def test_sweep_rejects_bad_quantiles(classifier_runs):
    result = run_script(
        "sweep_quantile.py",
        ["--model_folders", str(classifier_runs["focalnet"]), "--quantiles", "0.5", "1.5"],
    )
    assert result.returncode != 0 and "[1.5]" in result.stderr and "Traceback" not in result.stderr


# ----------------------------------------------------------------- table ---


def test_table_report_in_the_papers_format(classifier_runs, piq_run, tmp_path):
    runs = [classifier_runs["focalnet"], classifier_runs["vit"], piq_run]
    output = tmp_path / "table1"
    result = run_script("report_table.py", [*map(str, runs), "--output", str(output)])
    assert result.returncode == 0, result.stderr[-3000:]
    lines = (tmp_path / "table1.md").read_text().splitlines()
    assert lines[0] == (
        "| Method | ACC | FID-I | FA | FA_mask_in | AI | AD | AG | FF | FF_mask_in | AI_unscaled "
        "| AD_unscaled | AG_unscaled | SPS | COMP | Scale | #Params |"
    )
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| FocalNet", "| ViT", "| FocalNet-PIQ"]
    with open(tmp_path / "table1.csv") as handle:
        rows = list(csv.DictReader(handle))
    piq = json.loads((piq_run / "test_metrics.json").read_text())
    total = (piq["n_params"] + piq["classifier_n_params"]) / 1e6
    assert rows[2]["#Params"] == f"{total:.1f}M"
    assert rows[2]["FID-I"] == f"{piq['fid_i']:.3f}"
    assert rows[2]["AI"] == f"{piq['ai']:.1f}" and rows[2]["COMP"] == f"{piq['comp']:.2f}"
    missing = run_script("report_table.py", [str(tmp_path / "nowhere")])
    assert missing.returncode != 0 and "test_metrics.json" in missing.stderr


# ---------------------------------------------------------------- mixture ---


def test_spectral_mixture_gives_each_source_its_half_of_the_spectrum():
    generator = torch.Generator().manual_seed(0)
    noise_1, noise_2 = torch.randn(2, 16000, generator=generator)
    mixture, (part_1, part_2) = mix_sources(noise_1, noise_2, 16000, "spectral")
    assert torch.allclose(mixture, part_1 + part_2, atol=1e-6)
    assert mixture.abs().max().item() == pytest.approx(1.0)
    freqs = torch.fft.rfftfreq(16000, 1 / 16000)

    def band_energy(signal, low):
        power = torch.fft.rfft(signal).abs() ** 2
        return power[freqs < 4000].sum() if low else power[freqs >= 4000].sum()

    # 20 dB down in the other half: a power ratio of 100 (white noise has equal halves).
    for part, own_low in ((part_1, True), (part_2, False)):
        ratio = band_energy(part, own_low) / band_energy(part, not own_low)
        assert 80 < ratio < 125, ratio


def test_concat_mixture_puts_the_sources_one_after_the_other():
    mixture, (part_1, part_2) = mix_sources(torch.ones(10), -torch.ones(10), mode="concat")
    assert mixture.tolist() == [1.0] * 5 + [-1.0] * 5
    with pytest.raises(ValueError, match="mode"):
        mix_sources(torch.ones(10), torch.ones(10), mode="overlay")


@pytest.mark.parametrize("mode", ["spectral", "concat"])
def test_mixture_demo_writes_four_panels_and_four_wavs(mode, classifier_runs, tmp_path):
    out = tmp_path / "mixtures"
    args = ["--model_folder", str(classifier_runs["focalnet"]), "--mode", mode]
    result = run_script("mixture_demo.py", [*args, "--output_folder", str(out)])
    assert result.returncode == 0, result.stderr[-3000:]
    # No church_bells / water_drops in the synthetic set: its first two classes are used.
    stem = f"mixture_class_00+class_01_{mode}_by_design"
    summary = json.loads((out / f"{stem}.json").read_text())
    assert summary["sources"] == ["class_00", "class_01"] and len(summary["top"]) == 3
    for key in ("source1", "source2", "mixture", "interpretation"):
        info = sf.info(str(out / f"{stem}_{key}.wav"))
        assert info.samplerate == 16000 and info.frames == 80000, key
    assert (out / f"{stem}.png").stat().st_size > 10_000
    bad = run_script("mixture_demo.py", [*args, "--classes", "class_00", "dog"])
    assert bad.returncode != 0 and "dog" in bad.stderr and "Traceback" not in bad.stderr


def test_mixture_demo_of_a_piq_run_uses_its_classifiers_test_fold(piq_run, tmp_path):
    out = tmp_path / "mixtures"
    args = ["--model_folder", str(piq_run), "--methods", "piq", "--classes", "class_02", "class_00"]
    result = run_script("mixture_demo.py", [*args, "--output_folder", str(out)])
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "mixture_class_02+class_00_spectral_piq.json").read_text())
    assert summary["method"] == "piq" and summary["sources"] == ["class_02", "class_00"]


# -------------------------------------------------------------- interpret ---


def _write(path, signal, sample_rate):
    sf.write(str(path), signal, sample_rate)
    return path


def test_interpret_any_file_keeps_its_duration(classifier_runs, tiny_data, tmp_path):
    clip, sample_rate = sf.read(str(next((tiny_data / "audio").glob("5-*.wav"))))
    long_stereo = np.stack([np.concatenate([clip, clip[: len(clip) // 2]])] * 2, axis=1)
    files = [
        _write(tmp_path / "long_stereo.flac", long_stereo, sample_rate),  # 7.5 s, 44.1 kHz
        _write(tmp_path / "short.ogg", clip[: sample_rate * 2], sample_rate),  # 2 s, ogg
        _write(tmp_path / "wide.wav", clip[::2], sample_rate // 2),  # 22.05 kHz
    ]
    out = tmp_path / "interpretations"
    args = ["--model_folder", str(classifier_runs["focalnet"]), "--quantile", "0.8"]
    result = run_script(
        "interpret.py", [*args, "--audio", *map(str, files), "--output_folder", str(out)]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for path in files:
        summary = json.loads((out / f"{path.stem}_by_design.json").read_text())
        assert summary["quantile"] == 0.8 and len(summary["top"]) == 3
        probabilities = [row["probability"] for row in summary["top"]]
        assert probabilities == sorted(probabilities, reverse=True)
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-4)  # 3 classes: all of them
        info = sf.info(str(out / f"{path.stem}_by_design.wav"))
        assert info.samplerate == 16000
        assert abs(info.duration - sf.info(str(path)).duration) <= 1 / 16000 + 1e-9
        assert (out / f"{path.stem}_by_design.png").is_file()
        assert summary["top"][0]["class"] in result.stdout
    long_summary = json.loads((out / "long_stereo_by_design.json").read_text())
    assert long_summary["windows"][1]["end_s"] == 7.5


def test_interpret_bad_input_is_a_clear_error_with_nothing_written(classifier_runs, tmp_path):
    silent = _write(tmp_path / "silent.wav", np.zeros(16000), 16000)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF not really a wave file")
    empty = _write(tmp_path / "empty.wav", np.zeros(0), 16000)
    out = tmp_path / "out"
    for path, message in ((silent, "silent"), (garbage, "Cannot decode"), (empty, "no samples")):
        result = run_script(
            "interpret.py",
            [
                "--model_folder",
                str(classifier_runs["focalnet"]),
                "--audio",
                str(path),
                "--output_folder",
                str(out),
            ],
        )
        assert result.returncode != 0, path
        assert message in result.stderr and str(path) in result.stderr
        assert "Traceback" not in result.stderr
    assert not out.exists() or not any(out.iterdir())


def test_interpret_with_piq_and_the_python_api(piq_run, tiny_data, tmp_path):
    path = next((tiny_data / "audio").glob("5-*.wav"))
    model = AudioInterpreter.from_run(piq_run)
    assert model.method == "piq"
    summary = write_file_interpretation(model, path, tmp_path)
    assert summary["method"] == "piq" and summary["quantile"] is None
    assert 0 < summary["mask_share"] < 1  # a soft mask
    # The same tensor through the API: the same top classes.
    signal = torch.from_numpy(sf.read(str(path), dtype="float32")[0])
    result = model.interpret_waveform(signal, sf.info(str(path)).samplerate)
    assert [name for name, _ in result["top"]] == [row["class"] for row in summary["top"]]
    focal = AudioInterpreter.from_run(piq_run, method="by_design")
    assert focal.method == "by_design" and focal.quantile == 0.9


def test_interpret_stitches_windows_in_time_order(classifier_runs):
    model = AudioInterpreter.from_run(classifier_runs["focalnet"])
    t = torch.arange(80000) / 16000
    low, high = torch.sin(2 * torch.pi * 300 * t), torch.sin(2 * torch.pi * 5000 * t)
    both = model.interpret_waveform(torch.cat([low, high]), 16000)
    first = model.interpret_waveform(low, 16000)
    second = model.interpret_waveform(high, 16000)
    assert both["n_windows"] == 2 and both["log_spec"].shape == (862, 513)
    assert torch.equal(both["mask"][:431], first["mask"])
    assert torch.equal(both["mask"][431:], second["mask"])


def test_interpret_long_file_padding_does_not_count_in_the_quantile(classifier_runs):
    """A 6 s file: the second window holds 1 s of signal and 4 s of zero padding. Its mask keeps
    a 1 - q share of the signal's cells only (87 frames: centres within the first second)."""
    model = AudioInterpreter.from_run(classifier_runs["focalnet"], quantile=0.9)
    signal = torch.randn(96000, generator=torch.Generator().manual_seed(0))
    result = model.interpret_waveform(signal, 16000)
    assert result["n_windows"] == 2 and result["mask"].shape == (431 + 87, 513)
    assert result["mask"][:431].sum() == int(0.1 * 431 * 513 + 0.5)
    assert result["mask"][431:].sum() == int(0.1 * 87 * 513 + 0.5)


# -------------------------------------------------------------- released ---


# transformers 4.x names of ViTModel's weights (SpeechBrain's released vit-base-esc50), from the
# 5.x names: the inverse of transformers' own conversion mapping for ViTModel.
LEGACY_VIT_NAMES = [
    (r"^layers\.(\d+)\.", r"encoder.layer.\1."),
    (r"attention\.q_proj", "attention.attention.query"),
    (r"attention\.k_proj", "attention.attention.key"),
    (r"attention\.v_proj", "attention.attention.value"),
    (r"attention\.o_proj", "attention.output.dense"),
    (r"mlp\.fc1", "intermediate.dense"),
    (r"mlp\.fc2", "output.dense"),
]


def _legacy_vit_state(state):
    renamed = {}
    for key, value in state.items():
        for pattern, replacement in LEGACY_VIT_NAMES:
            key = re.sub(pattern, replacement, key)
        renamed[key] = value
    return renamed


def _released_folder(classifier_run, folder, label_order, legacy_keys=False):
    """Checkpoints of a run written in the format SpeechBrain released for the paper."""
    model = AudioInterpreter.from_run(classifier_run)
    folder.mkdir()
    state = model.model.classifier.embedding_model.backbone.state_dict()
    torch.save(_legacy_vit_state(state) if legacy_keys else state, folder / "embedding_model.ckpt")
    rows = [model.class_names.index(name) for name in label_order]
    head_state = model.model.classifier.classifier.state_dict()
    head = {key: value.clone() for key, value in head_state.items()}
    head["weight"] = head["weight"][rows]  # the released head's outputs follow label_order
    torch.save(head, folder / "classifier.ckpt")
    encoder = CategoricalEncoder()
    encoder.update_from_iterable(label_order)
    encoder.save(str(folder / "label_encoder.txt"))
    return model


@pytest.mark.parametrize("backbone", ["focalnet", "vit"])
def test_released_checkpoints_load_with_their_label_order(
    classifier_runs, tiny_data, tmp_path, backbone
):
    label_order = ["class_02", "class_00", "class_01"]  # not ESC-50 target order
    released_folder = tmp_path / "released"
    # ViT as released: transformers 4.x key names (the FocalNet's did not change in 5.x)
    run_model = _released_folder(
        classifier_runs[backbone], released_folder, label_order, legacy_keys=backbone == "vit"
    )
    keys = set(torch.load(released_folder / "embedding_model.ckpt"))
    if backbone == "vit":
        assert "encoder.layer.0.attention.attention.query.weight" in keys
        assert not any(key.startswith("layers.") for key in keys)
    config = yaml.safe_load(TINY_BACKBONE_CONFIG[backbone])
    released = AudioInterpreter.from_folder(released_folder, backbone_config=config)
    assert released.class_names == label_order and released.backbone == backbone
    # Released models divide each window by its maximum (the authors' sig / sig.max()), runs by
    # their absolute peak: the same when the loudest sample is positive.
    assert released.model.input_normalisation == "signed_max"
    assert run_model.model.input_normalisation == "peak"
    for path in sorted((tiny_data / "audio").glob("5-*.wav"))[:3]:
        wave = load_clip(path)
        wave = wave * torch.sign(wave[wave.abs().argmax()])
        ours = run_model.interpret_waveform(wave, 16000)
        theirs = released.interpret_waveform(wave, 16000)
        assert [n for n, _ in ours["top"]] == [n for n, _ in theirs["top"]]
        assert torch.allclose(
            torch.tensor([p for _, p in ours["top"]]), torch.tensor([p for _, p in theirs["top"]])
        )
        assert torch.equal(ours["mask"], theirs["mask"])

    # A window whose loudest sample is negative: the released model sees wave / max(wave).
    spiky = wave.clone()
    spiky[100] = -2.0
    expected, _ = released.features((spiky / spiky.max()).unsqueeze(0))
    assert torch.allclose(released.interpret_waveform(spiky, 16000)["log_spec"], expected[0])
    assert not torch.allclose(run_model.interpret_waveform(spiky, 16000)["log_spec"], expected[0])

    result = run_script(
        "interpret.py",
        [
            "--model_folder",
            str(released_folder),
            "--backbone_config",
            TINY_BACKBONE_CONFIG[backbone],
            "--audio",
            str(path),
            "--output_folder",
            str(tmp_path / "out"),
        ],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "out" / f"{path.stem}_by_design.json").is_file()

    # The anti-aliased image view (torchvision >= 0.17's resize default) on request.
    assert released.model.classifier.backbone.image_antialias is False
    antialiased = AudioInterpreter.from_folder(
        released_folder, backbone_config=config, image_antialias=True
    )
    assert antialiased.model.classifier.backbone.image_antialias is True
    log_spec = ours["log_spec"][:431].unsqueeze(0)
    assert not torch.allclose(
        antialiased.model.classifier.backbone.image(log_spec),
        released.model.classifier.backbone.image(log_spec),
    )

    (released_folder / "label_encoder.txt").unlink()
    with pytest.raises(RunFolderError, match="label_encoder.txt"):
        AudioInterpreter.from_folder(released_folder)
    result = run_script(
        "interpret.py",
        [
            "--model_folder",
            str(released_folder),
            "--backbone_config",
            TINY_BACKBONE_CONFIG[backbone],
            "--data_folder",
            str(tiny_data),
            "--audio",
            str(path),
            "--output_folder",
            str(tmp_path / "out2"),
        ],
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_released_weights_that_do_not_fit_are_named():
    from recipes.backbones import build

    config = yaml.safe_load(TINY_BACKBONE_CONFIG["vit"])
    model = build("vit", pretrained=False, config_overrides=config)
    state = _legacy_vit_state(model.backbone.state_dict())
    del state["encoder.layer.0.attention.attention.query.weight"]
    with pytest.raises(ValueError, match="1 missing keys"):
        model.load_state(state)


def test_first_appearance_order_follows_the_csv_not_the_target(tmp_path):
    (tmp_path / "meta").mkdir()
    rows = [
        ("1-1-A-7.wav", 1, 7, "dog"),
        ("1-2-A-3.wav", 1, 3, "rain"),
        ("1-3-A-7.wav", 1, 7, "dog"),
        ("4-4-A-0.wav", 4, 0, "wind"),  # fold 4: not a training fold
        ("2-5-A-0.wav", 2, 0, "wind"),
    ]
    lines = ["filename,fold,target,category,esc10,src_file,take"]
    lines += [
        f"{name},{fold},{target},{category},False,1,A" for name, fold, target, category in rows
    ]
    (tmp_path / "meta" / "esc50.csv").write_text("\n".join(lines) + "\n")
    assert first_appearance_classes(tmp_path) == ["dog", "rain", "wind"]
