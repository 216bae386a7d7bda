"""The Flask app of ``listen.py``: the explorer, the listening test and the experimenter's pages.

``create_app(explorer=None, test_folder=None, db_path=None, token=None)`` builds it; either part
may be absent. Routes (HTML pages, then the JSON API the pages' plain JavaScript calls):

- ``/``: links to the parts; ``/explore``: the explorer (``recipes.listening.explore``);
  ``/test``: the start page (new anonymous id, or resume the one this browser holds);
  ``/test/<participant>``: the participant's open trial (MUSHRA sliders or A/B);
  ``/results?token=T``: progress and per-condition means; ``/export.csv?token=T``: every answer.
- ``GET /api/explore?clip=&method=&q=``, ``POST /api/upload`` (multipart ``file``),
  ``GET /cache/<file>``;
- ``POST /api/participants``, ``GET /api/state/<participant>``,
  ``GET /stimulus/<participant>/<trial>/<slot|reference>``, ``POST /api/rate``
  (``participant``, ``trial``, ``slot``, ``rating``), ``POST /api/choose``
  (``participant``, ``trial``, ``slot``), ``POST /api/finish`` (``participant``, ``trial``).

Refusals are JSON ``{"error": message}`` with a 4xx status (``recipes.listening.db``); an
uploaded file the explorer cannot read is a 400 with its reason and the server goes on. The
stimulus URLs name slots, not conditions: a participant cannot tell which method a slot plays.
"""

from __future__ import annotations

import csv
import hmac
import io
import secrets
from pathlib import Path

from flask import Flask, Response, abort, jsonify, redirect, render_template, request, send_file
from werkzeug.exceptions import HTTPException

from recipes.listening.db import AnswerError, ListeningDB, spoken
from recipes.listening.explore import MAX_UPLOAD_BYTES, UploadError


def create_app(explorer=None, test_folder=None, db_path=None, token=None) -> Flask:
    """See the module docstring. ``token`` (default: a new random one) guards the
    experimenter's pages; it is ``app.config["TOKEN"]``."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_UPLOAD_BYTES + 64 * 1024
    app.config["TOKEN"] = token or secrets.token_urlsafe(16)
    database = None
    if test_folder is not None:
        from recipes.listening.stimuli import read_test

        test_folder = Path(test_folder).resolve()
        database = ListeningDB(db_path or test_folder / "answers.sqlite", read_test(test_folder))
    app.config["DB"] = database

    def api_error(message: str, status: int):
        return jsonify({"error": message}), status

    @app.errorhandler(AnswerError)
    def _answer_error(error):
        return api_error(str(error), error.status)

    @app.errorhandler(HTTPException)
    def _http_error(error):
        if request.path.startswith(("/api/", "/stimulus/", "/cache/", "/export")):
            return api_error(error.description or error.name, error.code)
        return render_template("error.html", error=error), error.code

    @app.errorhandler(413)
    def _too_large(_error):
        return api_error(
            f"the upload is over the {MAX_UPLOAD_BYTES // 2**20} MiB limit: upload a shorter "
            "excerpt",
            413,
        )

    def need(part, what):
        if part is None:
            abort(404, description=f"this server runs no {what}: start listen.py with it")
        return part

    def form(*keys):
        data = request.get_json(silent=True) or request.form
        missing = [key for key in keys if data.get(key) is None]
        if missing:
            raise AnswerError(f"missing field(s): {', '.join(missing)}")
        return [data.get(key) for key in keys]

    def check_token():
        given = request.args.get("token", "")
        if not hmac.compare_digest(given, app.config["TOKEN"]):
            abort(403, description="this page needs the experimenter's token printed at start-up")

    # --------------------------------------------------------------- pages ---
    @app.get("/")
    def index():
        return render_template("index.html", explorer=explorer, test=database)

    @app.get("/explore")
    def explore_page():
        need(explorer, "explorer (give --model_folder)")
        return render_template("explore.html", info=explorer.describe(), spoken=spoken)

    @app.get("/test")
    def test_start():
        db = need(database, "listening test (give --test)")
        return render_template(
            "test_start.html",
            test=db.test,
            n_clips=len(db.test["clips"]),
            n_pages=len(db.test["clips"]) * (2 if db.test.get("ab") else 1),
            spoken=spoken,
        )

    @app.get("/test/<participant>")
    def test_page(participant):
        db = need(database, "listening test (give --test)")
        state = db.state(participant)
        return render_template(
            "trial.html", state=state, question=db.test["question"], spoken=spoken
        )

    @app.get("/results")
    def results_page():
        db = need(database, "listening test (give --test)")
        check_token()
        from recipes.listening.analysis import condition_means

        return render_template(
            "results.html",
            progress=db.progress(),
            means=condition_means(db),
            token=app.config["TOKEN"],
        )

    @app.get("/export.csv")
    def export_csv():
        db = need(database, "listening test (give --test)")
        check_token()
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=ListeningDB.EXPORT_COLUMNS)
        writer.writeheader()
        writer.writerows(db.export_rows())
        return Response(
            buffer.getvalue(),
            mimetype="text/csv",
            headers={"Content-Disposition": "attachment; filename=listening_answers.csv"},
        )

    # ------------------------------------------------------------ explorer ---
    @app.get("/api/explore")
    def api_explore():
        need(explorer, "explorer")
        clip, method = request.args.get("clip"), request.args.get("method")
        try:
            q = float(request.args.get("q", explorer.model.quantile))
            result = explorer.result(clip, method, q)
        except KeyError as error:
            return api_error(str(error.args[0]), 404)
        except ValueError as error:
            return api_error(str(error), 400)
        urls = {kind: f"/cache/{name}" for kind, name in result["files"].items()}
        return jsonify({**result, "urls": urls})

    @app.post("/api/upload")
    def api_upload():
        need(explorer, "explorer")
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            return api_error("choose an audio file to upload", 400)
        try:
            clip = explorer.add_upload(upload.filename, upload.read())
        except UploadError as error:
            return api_error(str(error), 400)
        return jsonify({"clip": clip, "name": upload.filename})

    @app.get("/cache/<name>")
    def cached_file(name):
        need(explorer, "explorer")
        path = (explorer.cache_folder / name).resolve()
        if path.parent != explorer.cache_folder.resolve() or not path.is_file():
            abort(404)
        return send_file(path, max_age=3600)

    # ------------------------------------------------------ listening test ---
    @app.post("/api/participants")
    def api_new_participant():
        db = need(database, "listening test")
        participant = db.new_participant()
        if request.form.get("html"):
            return redirect(f"/test/{participant}", code=303)
        return jsonify({"participant": participant}), 201

    @app.get("/api/state/<participant>")
    def api_state(participant):
        db = need(database, "listening test")
        state = db.state(participant)
        if state["current"]:
            key = "ab_question" if state["current"]["kind"] == "ab" else "question"
            state["current"]["question"] = db.test[key].format(
                **{"class": spoken(state["current"]["class_name"])}
            )
        return jsonify(state)

    @app.get("/stimulus/<participant>/<int:trial>/<slot>")
    def stimulus(participant, trial, slot):
        db = need(database, "listening test")
        relative = db.stimulus(participant, trial, slot)
        return send_file(test_folder / relative, mimetype="audio/wav", max_age=0)

    @app.post("/api/rate")
    def api_rate():
        db = need(database, "listening test")
        participant, trial, slot, rating = form("participant", "trial", "slot", "rating")
        return jsonify(db.rate(participant, trial, slot, rating))

    @app.post("/api/choose")
    def api_choose():
        db = need(database, "listening test")
        participant, trial, slot = form("participant", "trial", "slot")
        return jsonify(db.choose(participant, trial, slot))

    @app.post("/api/finish")
    def api_finish():
        db = need(database, "listening test")
        participant, trial = form("participant", "trial")
        return jsonify(db.finish(participant, trial))

    return app
