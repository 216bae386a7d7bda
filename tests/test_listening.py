"""listen.py: building a test, the server's rules (Flask test client), a killed and restarted
server, the analysis against scripted participants with known numbers, the webMUSHRA export."""

import csv
import io
import json
import math
import sqlite3

import numpy as np
import pytest
import soundfile as sf
import yaml
from listening_helpers import Server, http, trial_conditions
from scipy import stats

from recipes.listening.analysis import analyse
from recipes.listening.app import create_app
from recipes.listening.db import HIDDEN_REFERENCE, ListeningDB
from recipes.listening.explore import Explorer, valid_methods
from recipes.listening.scripted import take_test
from recipes.listening.stimuli import export_webmushra, make_test
from recipes.loading import resolve_methods
from recipes.runs import RunFolderError

METHODS = ["by_design", "gradcam", "energy"]  # those of conftest.listening_test


def test_make_test_is_balanced_equal_area_and_refuses_rewrites(listening_test, classifier_runs):
    folder, test = listening_test
    assert sorted(clip["class_name"] for clip in test["clips"]) == [
        "class_00",
        "class_01",
        "class_02",
    ]
    for clip in test["clips"]:
        assert list(clip["conditions"]) == [*METHODS, "random", HIDDEN_REFERENCE]
        assert clip["conditions"][HIDDEN_REFERENCE] == clip["reference"]
        reference, rate = sf.read(folder / clip["reference"])
        assert rate == 16000 and len(reference) == 80000
        for name in [*METHODS, "random"]:
            wave, _ = sf.read(folder / clip["conditions"][name])
            assert wave.shape == reference.shape
            # equal area: every mask (the anchor too) keeps 20 % of the cells at q = 0.8
            assert clip["metrics"][name]["mask_share"] == pytest.approx(0.2, abs=1e-3)
            assert set(clip["metrics"][name]) >= {"fid_i", "fa", "ai", "ad", "ff", "sps"}
    assert json.loads((folder / "test.json").read_text()) == test
    with pytest.raises(RunFolderError, match="exists"):
        make_test(classifier_runs["focalnet"], METHODS, folder, n_clips=1)
    with pytest.raises(RunFolderError, match="lmac_hard"):
        make_test(classifier_runs["focalnet"], ["lmac"], folder.parent / "soft", n_clips=1)
    with pytest.raises(RunFolderError, match="fewer than --n_clips 99"):
        make_test(classifier_runs["focalnet"], METHODS, folder.parent / "many", n_clips=99)


def answer_all(client, participant, db, rule, until=None):
    """Answers a participant's trials through the API by ``rule(condition, clip)``; A/B:
    the condition with the higher rule value. Stops before trial ``until``."""
    for position, (kind, conditions) in trial_conditions(db, participant).items():
        if until is not None and position >= until:
            return
        if db.query(
            "SELECT finished IS NOT NULL FROM trials WHERE participant = ? AND position = ?",
            (participant, position),
        ) == [(1,)]:
            continue  # answered before (a resumed participant)
        clip = db.query(
            "SELECT clip FROM trials WHERE participant = ? AND position = ?",
            (participant, position),
        )[0][0]
        if kind == "mushra":
            for slot, name in enumerate(conditions):
                status, _ = client(
                    "POST", "/api/rate", participant, position, slot, rule(name, clip)
                )
                assert status == 200
        else:
            best = max(range(2), key=lambda slot: rule(conditions[slot], clip))
            assert client("POST", "/api/choose", participant, position, best)[0] == 200
        assert client("POST", "/api/finish", participant, position)[0] == 200


def flask_caller(app_client):
    def call(method, path, participant, trial, *rest):
        fields = {"participant": participant, "trial": trial}
        if rest:
            fields["slot"] = rest[0]
        if len(rest) > 1:
            fields["rating"] = rest[1]
        response = app_client.open(path, method=method, json=fields)
        return response.status_code, response.get_json()

    return call


def rule_ratings(name, clip):
    return {"by_design": 70, "gradcam": 50, "energy": 30, "random": 10}.get(name, 100)


def test_api_commits_refuses_and_keeps_participants_apart(listening_test, tmp_path):
    folder, test = listening_test
    app = create_app(None, folder, tmp_path / "answers.sqlite", token="secret")
    client = app.test_client()
    db = app.config["DB"]
    first = client.post("/api/participants").get_json()["participant"]
    second = client.post("/api/participants").get_json()["participant"]
    assert first != second
    plan = trial_conditions(db, first)
    assert len(plan) == 6  # 3 MUSHRA + 3 A/B
    kind, conditions = plan[0]
    mushra = next(p for p, (k, _) in plan.items() if k == "mushra")

    def post(path, **fields):
        response = client.post(path, json=fields)
        return response.status_code, response.get_json().get("error", "")

    # refusals, each a 4xx with a message
    open_trial = 0
    slot_kind = "rate" if kind == "mushra" else "choose"
    assert post("/api/rate", participant="nobody", trial=0, slot=0, rating=5)[0] == 404
    assert post("/api/rate", participant=first, trial=99, slot=0, rating=5)[0] == 404
    assert post("/api/rate", participant=first, trial=1, slot=0, rating=5) == (
        409,
        "trial 2 is not open yet: finish trial 1 first",
    )
    assert post("/api/rate", participant=first, trial=0, slot=0)[0] == 400  # missing rating
    assert post("/api/finish", participant=first, trial=0)[0] == 400  # nothing given yet
    if slot_kind == "rate":
        for bad in (-1, 100.5, "abc", float("nan")):
            status, message = post("/api/rate", participant=first, trial=0, slot=0, rating=bad)
            assert status == 400 and "0 to 100" in message
        assert (
            post("/api/rate", participant=first, trial=0, slot=len(conditions), rating=5)[0] == 400
        )
    # the first participant's first trial, each answer committed at once
    for slot, name in enumerate(conditions):
        if kind == "mushra":
            assert (
                post(
                    "/api/rate",
                    participant=first,
                    trial=0,
                    slot=slot,
                    rating=rule_ratings(name, ""),
                )[0]
                == 200
            )
            with sqlite3.connect(tmp_path / "answers.sqlite") as raw:  # another connection sees it
                rows = raw.execute(
                    "SELECT rating FROM ratings WHERE participant = ? AND condition = ?",
                    (first, name),
                ).fetchall()
            assert rows == [(rule_ratings(name, ""),)]
    if kind == "ab":
        assert post("/api/choose", participant=first, trial=0, slot=1)[0] == 200
    assert post("/api/finish", participant=first, trial=open_trial)[0] == 200
    # a finished trial is not replayed: no new answer, no second finish, no stimulus
    assert post("/api/rate", participant=first, trial=0, slot=0, rating=1)[0] == 409
    assert post("/api/finish", participant=first, trial=0)[0] == 409
    assert client.get(f"/stimulus/{first}/0/0").status_code == 409
    # the second participant is untouched and has their own order
    state = client.get(f"/api/state/{second}").get_json()
    assert state["finished"] == 0 and state["current"]["position"] == 0
    assert all(value is None for value in state["current"]["ratings"])
    assert db.query("SELECT COUNT(*) FROM ratings WHERE participant = ?", (second,)) == [(0,)]
    assert trial_conditions(db, second) != plan  # seeded by the id: another order
    assert trial_conditions(db, first) == plan  # the same id keeps its plan
    # stimuli are served by slot, the reference too; an unknown slot is refused
    audio = client.get(f"/stimulus/{second}/0/reference")
    assert audio.status_code == 200 and sf.read(io.BytesIO(audio.data))[1] == 16000
    assert client.get(f"/stimulus/{second}/0/9").status_code == 400
    # the experimenter's pages need the token
    assert client.get("/results").status_code == 403
    assert client.get("/export.csv?token=wrong").status_code == 403
    assert client.get("/results?token=secret").status_code == 200
    rows = list(csv.DictReader(io.StringIO(client.get("/export.csv?token=secret").text)))
    assert {row["participant"] for row in rows} == {first}
    assert mushra is not None


def test_a_killed_server_loses_nothing_and_the_participant_resumes(listening_test, tmp_path):
    folder, _ = listening_test
    database = tmp_path / "answers.sqlite"
    args = [f"--test={folder}", f"--db={database}"]
    server = Server(*args)
    try:
        status, body = http("POST", f"{server.base}/api/participants", {})
        assert status == 201
        participant = body["participant"]
        db = ListeningDB(database)

        def call(method, path, participant, trial, *rest):
            fields = {"participant": participant, "trial": trial}
            if rest:
                fields["slot"] = rest[0]
            if len(rest) > 1:
                fields["rating"] = rest[1]
            return http(method, server.base + path, fields)

        answer_all(call, participant, db, rule_ratings, until=2)
        kind, conditions = trial_conditions(db, participant)[2]
        if kind == "mushra":
            assert call("POST", "/api/rate", participant, 2, 0, 42)[0] == 200
        else:
            assert call("POST", "/api/choose", participant, 2, 1)[0] == 200
    finally:
        server.kill()  # SIGKILL mid-trial
    server = Server(*args)
    try:
        status, state = http("GET", f"{server.base}/api/state/{participant}")
        assert status == 200 and state["finished"] == 2
        assert state["current"]["position"] == 2  # resumes in the open trial ...
        if kind == "mushra":  # ... with the answer given before the kill
            assert state["current"]["ratings"][0] == 42
        else:
            assert state["current"]["choice"] == 1
        answer_all(call, participant, db, rule_ratings)
        status, state = http("GET", f"{server.base}/api/state/{participant}")
        assert state["current"] is None and state["finished"] == 6
        # a scripted participant (recipes.listening.scripted) against the same server
        rule = {"by_design": 70, "gradcam": 50, "energy": 30, "random": 10, HIDDEN_REFERENCE: 100}
        with pytest.raises(ValueError, match="no rating for"):
            take_test(server.base, db, {"by_design": 1})
        scripted = take_test(server.base, db, rule, offset=-5)
        assert db.scripted() == [scripted]
    finally:
        server.kill()
    assert db.query("SELECT COUNT(*) FROM trials WHERE finished IS NULL") == [(0,)]
    assert db.query("SELECT finished IS NOT NULL FROM participants") == [(1,), (1,)]
    ratings = dict(
        db.query(
            "SELECT condition, AVG(rating) FROM ratings WHERE participant = ? GROUP BY 1",
            (scripted,),
        )
    )
    assert ratings == {
        "by_design": 65,
        "gradcam": 45,
        "energy": 25,
        "random": 5,
        HIDDEN_REFERENCE: 100,
    }
    summary = analyse(database, tmp_path / "analysis")
    assert summary["scripted_participants"] == [scripted]


# ------------------------------------------------------------------ analysis ---
BASE = {"by_design": 80.0, "gradcam": 60.0, "energy": 40.0, "random": 10.0}
SLOPE = {"by_design": 1.0, "gradcam": 0.5, "energy": 0.25, "random": 0.0}


def scripted_test(n_clips=6):
    """A test definition without sounds (the analysis reads none): methods, the anchor, the
    hidden reference, per-clip metrics known in advance."""
    clips = []
    for index in range(n_clips):
        conditions = {name: f"{name}.wav" for name in [*BASE, HIDDEN_REFERENCE]}
        mean = {name: BASE[name] + SLOPE[name] * (index + 4) for name in BASE}
        clips.append(
            {
                "id": f"clip{index}",
                "class_name": f"class_{index % 3}",
                "reference": "reference.wav",
                "conditions": conditions,
                # rises with the mean rating / falls with it / constant (like SPS at equal area)
                "metrics": {
                    name: {"up": 2 * mean[name], "down": -mean[name], "flat": 0.9} for name in BASE
                },
            }
        )
    return {
        "name": "scripted",
        "seed": 0,
        "question": "Q {class}?",
        "ab_question": "AB {class}?",
        "quantile": 0.9,
        "methods": ["by_design", "gradcam", "energy"],
        "anchor": "random",
        "ab": ["by_design", "energy"],
        "clips": clips,
    }


def test_analysis_of_scripted_participants_gives_the_known_numbers(tmp_path):
    """Two participants follow rating = BASE + SLOPE * b (b = 1..12 over their 12 blocks, no two
    differences tied), the hidden reference at 100; a third rates the hidden reference 50 in 2
    of 6 trials (33 % > 15 %) and everything else in reverse: screening must drop them."""
    db = ListeningDB(tmp_path / "answers.sqlite", scripted_test())
    app = create_app(None, None, None)
    assert app.config["DB"] is None
    participants = [db.new_participant() for _ in range(3)]
    for number, participant in enumerate(participants):
        ab_count = 0
        for position, (kind, conditions) in trial_conditions(db, participant).items():
            clip = db.query(
                "SELECT clip FROM trials WHERE participant = ? AND position = ?",
                (participant, position),
            )[0][0]
            index = int(clip[4:])
            block = 6 * number + index + 1
            if kind == "ab":  # first: by_design always; second: by_design in clips 0-2
                preferred = "by_design" if number == 0 or index < 3 else "energy"
                db.choose(participant, position, conditions.index(preferred))
                ab_count += 1
            for slot, name in enumerate(conditions if kind == "mushra" else []):
                if name == HIDDEN_REFERENCE:
                    rating = 50.0 if number == 2 and index < 2 else 100.0
                elif number == 2:
                    rating = 100.0 - BASE[name]
                else:
                    rating = BASE[name] + SLOPE[name] * block
                db.rate(participant, position, slot, rating)
            db.finish(participant, position)
        assert ab_count == 6
    # an unfinished fourth participant does not count
    late = db.new_participant()
    kind, conditions = trial_conditions(db, late)[0]
    if kind == "mushra":
        db.rate(late, 0, 0, 0.0)
    summary = analyse(tmp_path / "answers.sqlite", tmp_path / "analysis")

    assert summary["kept"] == sorted(participants[:2])
    assert [row["participant"] for row in summary["excluded"]] == [participants[2]]
    assert summary["excluded"][0]["trials_below"] == 2
    assert summary["excluded"][0]["share_below"] == pytest.approx(2 / 6)
    blocks = np.arange(1, 13)
    t = stats.t.ppf(0.975, 11)
    for row in summary["conditions"]:
        name = row["condition"]
        values = BASE.get(name, 100.0) + SLOPE.get(name, 0.0) * blocks
        assert row["n"] == 12
        assert row["mean"] == pytest.approx(BASE.get(name, 100.0) + 6.5 * SLOPE.get(name, 0.0))
        half = t * values.std(ddof=1) / math.sqrt(12)
        if SLOPE.get(name, 0.0):
            assert row["ci_high"] - row["mean"] == pytest.approx(half)
    # every block ranks by_design > gradcam > energy > random: Friedman's chi2 = n (k - 1)
    assert summary["friedman"]["n_blocks"] == 12
    assert summary["friedman"]["statistic"] == pytest.approx(12 * 3)
    assert summary["friedman"]["p_value"] == pytest.approx(stats.chi2.sf(36, 3))
    # every pair: 12 differences of one sign, none tied: exact two-sided p = 2 / 2^12;
    # Holm over 6 equal p-values multiplies each by 6
    assert len(summary["pairwise_wilcoxon_holm"]) == 6
    for row in summary["pairwise_wilcoxon_holm"]:
        assert row["p_value"] == pytest.approx(2 / 4096)
        assert row["p_holm"] == pytest.approx(6 * 2 / 4096)
    correlations = {row["metric"]: row for row in summary["metric_correlations"]}
    assert correlations["up"]["spearman_rho"] == pytest.approx(1.0)
    assert correlations["down"]["spearman_rho"] == pytest.approx(-1.0)
    assert correlations["flat"]["spearman_rho"] is None
    assert correlations["up"]["n_points"] == 6 * 4
    (preference,) = summary["ab_preferences"]
    assert (preference["n"], preference["a_preferred"]) == (12, 9)
    assert preference["p_value"] == pytest.approx(2 * (220 + 66 + 12 + 1) / 4096)
    written = json.loads((tmp_path / "analysis" / "analysis.json").read_text())
    assert written["friedman"] == summary["friedman"]
    rows = list(csv.DictReader(open(tmp_path / "analysis" / "conditions.csv")))
    assert [row["condition"] for row in rows] == [*BASE, HIDDEN_REFERENCE]
    from PIL import Image

    with Image.open(tmp_path / "analysis" / "ratings_boxplot.png") as image:
        assert image.size[0] > 400


def test_listen_py_analyse_and_errors(tmp_path, capsys):
    import listen

    db = ListeningDB(tmp_path / "answers.sqlite", scripted_test(2))
    participant = db.new_participant()
    for position, (kind, conditions) in trial_conditions(db, participant).items():
        if kind == "ab":
            db.choose(participant, position, 0)
        for slot, name in enumerate(conditions if kind == "mushra" else []):
            db.rate(participant, position, slot, BASE.get(name, 100.0))
        db.finish(participant, position)
    listen.main(["--analyse", str(tmp_path / "answers.sqlite")])
    out = capsys.readouterr().out
    assert "kept 1 participant(s), excluded 0" in out
    assert (tmp_path / "analysis" / "ratings_boxplot.png").is_file()
    with pytest.raises(RunFolderError, match="does not exist"):
        listen.main(["--analyse", str(tmp_path / "missing.sqlite")])
    with pytest.raises(ValueError, match="holds another test"):
        ListeningDB(tmp_path / "answers.sqlite", scripted_test(3))


def test_webmushra_export(listening_test, tmp_path):
    folder, test = listening_test
    config_path = export_webmushra(folder, tmp_path / "wm", sample_rate=48000)
    config = yaml.safe_load(config_path.read_text())
    assert config["testId"] == "test" and config["pages"][0]["type"] == "generic"
    random_block = config["pages"][1]
    assert random_block[0] == "random" and len(random_block) == 1 + len(test["clips"])
    for page, clip in zip(random_block[1:], test["clips"], strict=True):
        assert page["type"] == "mushra"
        assert page["createAnchor35"] is False and page["createAnchor70"] is False
        # webMUSHRA adds the hidden reference itself: it is not among the stimuli
        assert sorted(page["stimuli"]) == sorted([*METHODS, "random"])
        for path in [page["reference"], *page["stimuli"].values()]:
            wave, rate = sf.read(tmp_path / "wm" / path)
            assert rate == 48000 and len(wave) == 5 * 48000
        assert clip["class_name"].replace("_", " ") in page["content"]
    assert config["pages"][2]["type"] == "finish"
    with pytest.raises(RunFolderError, match="exists"):
        export_webmushra(folder, tmp_path / "wm")


# ------------------------------------------------------------------ explorer ---
def test_explorer_caches_and_refuses_bad_uploads(classifier_runs, tmp_path):
    model, trained, _ = resolve_methods(classifier_runs["focalnet"])
    methods = valid_methods(model, trained)
    assert "by_design" in methods and "gradcam" in methods
    assert not any(name.startswith(("piq", "lmac")) for name in methods)  # no run given
    explorer = Explorer(model, trained, tmp_path / "cache")
    client = create_app(explorer).test_client()
    clip = next(iter(explorer.clips))
    first = client.get(f"/api/explore?clip={clip}&method=energy&q=0.8").get_json()
    assert first["cached"] is False and first["mask_share"] == pytest.approx(0.2, abs=1e-3)
    other = client.get(f"/api/explore?clip={clip}&method=energy&q=0.5").get_json()
    assert other["mask_share"] == pytest.approx(0.5, abs=1e-3)
    again = client.get(f"/api/explore?clip={clip}&method=energy&q=0.8").get_json()
    assert again["cached"] is True and again["files"] == first["files"]
    for kind in ("original", "interpretation", "removed"):
        wave, rate = sf.read(io.BytesIO(client.get(first["urls"][kind]).data))
        assert rate == 16000 and len(wave) == 80000
    # the interpretation and the removed part add up to the original's spectrogram split
    interpretation = sf.read(io.BytesIO(client.get(first["urls"]["interpretation"]).data))[0]
    assert np.abs(interpretation).max() > 0
    assert client.get(f"/api/explore?clip={clip}&method=piq&q=0.8").status_code == 400
    assert client.get(f"/api/explore?clip={clip}&method=energy&q=1.5").status_code == 400
    assert client.get("/api/explore?clip=nope&method=energy&q=0.8").status_code == 404
    assert client.get("/cache/..%2Fsecret").status_code == 404

    def upload(data, name):
        response = client.post("/api/upload", data={"file": (io.BytesIO(data), name)})
        return response.status_code, response.get_json()

    assert upload(b"not audio at all", "a.wav") == (
        400,
        {"error": "a.wav: not a readable audio file: upload a wav, flac, ogg or mp3"},
    )
    silent = io.BytesIO()
    sf.write(silent, np.zeros(4000), 8000, format="WAV")
    status, body = upload(silent.getvalue(), "quiet.wav")
    assert status == 400 and "silent" in body["error"]
    long = io.BytesIO()
    sf.write(long, np.zeros(8000 * 31), 8000, format="WAV")
    status, body = upload(long.getvalue(), "long.wav")
    assert status == 400 and "30 s limit" in body["error"]
    assert upload(b"", "empty.wav")[0] == 400
    tone = io.BytesIO()
    sf.write(tone, 0.3 * np.sin(np.arange(24000) / 5.0), 8000, format="FLAC")  # 3 s, 8 kHz
    status, body = upload(tone.getvalue(), "tone.flac")
    assert status == 200
    result = client.get(f"/api/explore?clip={body['clip']}&method=by_design&q=0.9").get_json()
    wave, rate = sf.read(io.BytesIO(client.get(result["urls"]["interpretation"]).data))
    assert rate == 16000 and len(wave) == 48000  # the input's duration at the model's rate
