"""The listening test's database: one SQLite file, every answer committed when it is given.

Schema (``SCHEMA``):

- ``meta(key, value)``: ``test`` (the test definition, JSON, as ``make_test`` wrote it),
  ``test_sha256`` (its digest: a database serves one test; another test is refused) and
  ``scripted_participants`` (ids answered by ``recipes.listening.scripted``, not people);
- ``participants(id, created, finished)``: anonymous ids (random hex), timestamps (Unix s);
- ``trials(participant, position, kind, clip, conditions, finished)``: each participant's own
  trial order and, per trial, the conditions in the order shown (a JSON list), both drawn when
  the participant is created, seeded by the test's seed and the participant's id;
- ``ratings(participant, position, condition, rating, answered)``: one MUSHRA rating in
  [0, 100] per shown condition (``CHECK``), replaced while the trial is open;
- ``preferences(participant, position, choice, answered)``: the A/B trials' choice.

Every change is one transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``) on its own connection, in
WAL mode: an answer is on disk when the request returns, a killed server loses nothing, and
concurrent participants (threads of the server) serialise on the write lock. Every query names
its participant: one participant never reads nor writes another's rows. Refusals are
``AnswerError`` with an HTTP status: 400 (a rating outside 0-100, an unknown slot, a trial not
complete), 404 (unknown participant or trial), 409 (a finished trial, or one not yet reached).

Example
-------
>>> import tempfile, os
>>> conditions = {"a": "a.wav", "hidden_reference": "r.wav"}
>>> test = {"seed": 0, "question": "Q {class}?", "ab": None, "clips": [
...     {"id": "c1", "class_name": "dog", "conditions": conditions}]}
>>> db = ListeningDB(os.path.join(tempfile.mkdtemp(), "t.sqlite"), test)
>>> pid = db.new_participant()
>>> db.rate(pid, 0, 0, 80)["rated"], db.state(pid)["finished"]
(1, 0)
>>> db.rate(pid, 0, 1, 101)
Traceback (most recent call last):
...
recipes.listening.db.AnswerError: a rating must be a number from 0 to 100, got 101
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import random
import secrets
import sqlite3
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS participants (
    id TEXT PRIMARY KEY, created REAL NOT NULL, finished REAL);
CREATE TABLE IF NOT EXISTS trials (
    participant TEXT NOT NULL REFERENCES participants(id),
    position INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('mushra', 'ab')),
    clip TEXT NOT NULL,
    conditions TEXT NOT NULL,
    finished REAL,
    PRIMARY KEY (participant, position));
CREATE TABLE IF NOT EXISTS ratings (
    participant TEXT NOT NULL,
    position INTEGER NOT NULL,
    condition TEXT NOT NULL,
    rating REAL NOT NULL CHECK (rating >= 0 AND rating <= 100),
    answered REAL NOT NULL,
    PRIMARY KEY (participant, position, condition),
    FOREIGN KEY (participant, position) REFERENCES trials(participant, position));
CREATE TABLE IF NOT EXISTS preferences (
    participant TEXT NOT NULL,
    position INTEGER NOT NULL,
    choice TEXT NOT NULL,
    answered REAL NOT NULL,
    PRIMARY KEY (participant, position),
    FOREIGN KEY (participant, position) REFERENCES trials(participant, position));
"""
HIDDEN_REFERENCE = "hidden_reference"


def spoken(class_name: str | None) -> str:
    """A class name as a person reads it.

    Example
    -------
    >>> spoken("crying_baby")
    'crying baby'
    """
    return (class_name or "sound").replace("_", " ")


class AnswerError(ValueError):
    """A request the test refuses; ``status`` is its HTTP status code."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def definition_digest(test: dict) -> str:
    """The SHA-256 of a test definition's canonical JSON."""
    return hashlib.sha256(json.dumps(test, sort_keys=True).encode()).hexdigest()


def trial_plan(test: dict, participant: str) -> list[dict]:
    """A participant's trials: one MUSHRA trial per clip (and one A/B trial per clip when the
    test has ``ab``, a pair of conditions), shuffled, each trial's conditions shuffled; seeded by
    the test's seed and the participant id, so the same id always gets the same plan.

    Example
    -------
    >>> test = {"seed": 1, "ab": ["a", "b"], "clips": [
    ...     {"id": c, "conditions": {"a": "", "b": "", "hidden_reference": ""}} for c in "xy"]}
    >>> [(t["kind"], t["clip"]) for t in trial_plan(test, "p1")] == [
    ...     (t["kind"], t["clip"]) for t in trial_plan(test, "p1")]
    True
    >>> sorted(t["kind"] for t in trial_plan(test, "p1"))
    ['ab', 'ab', 'mushra', 'mushra']
    """
    rng = random.Random(f"{test['seed']}|{participant}")
    trials = []
    for clip in test["clips"]:
        conditions = list(clip["conditions"])
        trials.append({"kind": "mushra", "clip": clip["id"], "conditions": conditions})
        if test.get("ab"):
            trials.append({"kind": "ab", "clip": clip["id"], "conditions": list(test["ab"])})
    rng.shuffle(trials)
    for trial in trials:
        rng.shuffle(trial["conditions"])
    return trials


class ListeningDB:
    """The database file ``path`` serving the test ``test`` (see the module docstring).

    ``test`` None opens a database that already holds a test (the analysis, the export);
    a test other than the one the file holds is a ValueError naming both digests.
    """

    def __init__(self, path, test: dict | None = None):
        self.path = Path(path)
        if test is None and not self.path.is_file():
            raise FileNotFoundError(f"{self.path} does not exist: give a listening-test database")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connection() as connection:
            connection.executescript(SCHEMA)
        with self._transaction() as connection:
            row = connection.execute("SELECT value FROM meta WHERE key = 'test'").fetchone()
            if row is None:
                if test is None:
                    raise ValueError(f"{self.path} holds no listening test")
                connection.execute(
                    "INSERT INTO meta VALUES ('test', ?), ('test_sha256', ?)",
                    (json.dumps(test, sort_keys=True), definition_digest(test)),
                )
                self.test = json.loads(json.dumps(test, sort_keys=True))
            else:
                held = json.loads(row[0])
                if test is not None and definition_digest(test) != definition_digest(held):
                    held_sha, new_sha = definition_digest(held)[:12], definition_digest(test)[:12]
                    raise ValueError(
                        f"{self.path} holds another test (sha256 {held_sha}, this one "
                        f"{new_sha}): give a new --db file for a new test"
                    )
                self.test = held
        self.clips = {clip["id"]: clip for clip in self.test["clips"]}

    # ------------------------------------------------------------ plumbing ---
    @contextlib.contextmanager
    def _connection(self):
        connection = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA foreign_keys=ON")
            yield connection
        finally:
            connection.close()

    @contextlib.contextmanager
    def _transaction(self):
        with self._connection() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    def query(self, sql: str, parameters=()) -> list[tuple]:
        """Rows of a read-only query (the analysis and the export)."""
        with self._connection() as connection:
            return connection.execute(sql, parameters).fetchall()

    # -------------------------------------------------------- participants ---
    def new_participant(self) -> str:
        """A new anonymous participant with their trial plan; returns their id."""
        participant = secrets.token_hex(8)
        with self._transaction() as connection:
            connection.execute(
                "INSERT INTO participants VALUES (?, ?, NULL)", (participant, time.time())
            )
            connection.executemany(
                "INSERT INTO trials VALUES (?, ?, ?, ?, ?, NULL)",
                [
                    (participant, position, t["kind"], t["clip"], json.dumps(t["conditions"]))
                    for position, t in enumerate(trial_plan(self.test, participant))
                ],
            )
        return participant

    def _trials(self, connection, participant: str) -> list[tuple]:
        rows = connection.execute(
            "SELECT position, kind, clip, conditions, finished FROM trials "
            "WHERE participant = ? ORDER BY position",
            (participant,),
        ).fetchall()
        if not rows:
            raise AnswerError(f"unknown participant {participant!r}: start the test again", 404)
        return rows

    def state(self, participant: str) -> dict:
        """Where a participant stands: ``n_trials``, ``finished`` (count), ``current`` (the
        first open trial: position, kind, clip, class name, number of slots, the ratings or
        choice given so far) or None when all are done."""
        with self._connection() as connection:
            rows = self._trials(connection, participant)
            open_rows = [row for row in rows if row[4] is None]
            current = None
            if open_rows:
                position, kind, clip, conditions, _ = open_rows[0]
                conditions = json.loads(conditions)
                given = dict(
                    connection.execute(
                        "SELECT condition, rating FROM ratings "
                        "WHERE participant = ? AND position = ?",
                        (participant, position),
                    ).fetchall()
                )
                choice = connection.execute(
                    "SELECT choice FROM preferences WHERE participant = ? AND position = ?",
                    (participant, position),
                ).fetchone()
                current = {
                    "position": position,
                    "kind": kind,
                    "clip": clip,
                    "class_name": self.clips[clip]["class_name"],
                    "n_slots": len(conditions),
                    "ratings": [given.get(name) for name in conditions],
                    "choice": None if choice is None else conditions.index(choice[0]),
                }
        return {
            "participant": participant,
            "n_trials": len(rows),
            "finished": len(rows) - len(open_rows),
            "current": current,
        }

    def _open_trial(self, connection, participant: str, position) -> tuple[str, list]:
        rows = self._trials(connection, participant)
        try:
            position = int(position)
        except (TypeError, ValueError):
            raise AnswerError(f"trial must be an integer, got {position!r}") from None
        if not 0 <= position < len(rows):
            raise AnswerError(f"unknown trial {position}: this test has {len(rows)} trials", 404)
        _, kind, _, conditions, finished = rows[position]
        if finished is not None:
            raise AnswerError(f"trial {position + 1} is finished: its answers cannot change", 409)
        first_open = next(row[0] for row in rows if row[4] is None)
        if position != first_open:
            raise AnswerError(
                f"trial {position + 1} is not open yet: finish trial {first_open + 1} first", 409
            )
        return kind, json.loads(conditions)

    @staticmethod
    def _slot(conditions: list, slot) -> str:
        try:
            slot = int(slot)
        except (TypeError, ValueError):
            raise AnswerError(f"slot must be an integer, got {slot!r}") from None
        if not 0 <= slot < len(conditions):
            raise AnswerError(f"unknown slot {slot}: this trial has {len(conditions)}", 400)
        return conditions[slot]

    def stimulus(self, participant: str, position, slot) -> str:
        """The file (relative to the test folder) of a slot of a participant's trial; slot
        ``"reference"`` is the clip's reference. Finished trials are not served again."""
        with self._connection() as connection:
            kind, conditions = self._open_trial(connection, participant, position)
            clip = connection.execute(
                "SELECT clip FROM trials WHERE participant = ? AND position = ?",
                (participant, int(position)),
            ).fetchone()[0]
        entry = self.clips[clip]
        if slot == "reference":
            return entry["reference"]
        return entry["conditions"][self._slot(conditions, slot)]

    # ------------------------------------------------------------- answers ---
    def rate(self, participant: str, position, slot, rating) -> dict:
        """Commits one MUSHRA rating (0-100) of a slot of the open trial; returns how many
        slots of the trial are rated."""
        try:
            value = float(rating)
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value) or not 0 <= value <= 100:
            raise AnswerError(f"a rating must be a number from 0 to 100, got {rating!r}")
        with self._transaction() as connection:
            kind, conditions = self._open_trial(connection, participant, position)
            if kind != "mushra":
                raise AnswerError(f"trial {int(position) + 1} is an A/B trial: choose, not rate")
            condition = self._slot(conditions, slot)
            connection.execute(
                "INSERT OR REPLACE INTO ratings VALUES (?, ?, ?, ?, ?)",
                (participant, int(position), condition, value, time.time()),
            )
            rated = connection.execute(
                "SELECT COUNT(*) FROM ratings WHERE participant = ? AND position = ?",
                (participant, int(position)),
            ).fetchone()[0]
        return {"rated": rated, "n_slots": len(conditions)}

    def choose(self, participant: str, position, slot) -> dict:
        """Commits the choice (slot 0 = A, 1 = B) of the open A/B trial."""
        with self._transaction() as connection:
            kind, conditions = self._open_trial(connection, participant, position)
            if kind != "ab":
                raise AnswerError(f"trial {int(position) + 1} is a MUSHRA trial: rate, not choose")
            condition = self._slot(conditions, slot)
            connection.execute(
                "INSERT OR REPLACE INTO preferences VALUES (?, ?, ?, ?)",
                (participant, int(position), condition, time.time()),
            )
        return {"chosen": int(slot)}

    def finish(self, participant: str, position) -> dict:
        """Closes the open trial once every slot is rated (MUSHRA) or a choice made (A/B);
        closes the participant with their last trial. Returns ``state``."""
        with self._transaction() as connection:
            kind, conditions = self._open_trial(connection, participant, position)
            table = "ratings" if kind == "mushra" else "preferences"
            given = connection.execute(
                f"SELECT COUNT(*) FROM {table} WHERE participant = ? AND position = ?",
                (participant, int(position)),
            ).fetchone()[0]
            needed = len(conditions) if kind == "mushra" else 1
            if given < needed:
                what = f"rate all {needed} sounds" if kind == "mushra" else "choose A or B"
                raise AnswerError(f"trial {int(position) + 1} is not complete: {what} first")
            now = time.time()
            connection.execute(
                "UPDATE trials SET finished = ? WHERE participant = ? AND position = ?",
                (now, participant, int(position)),
            )
            left = connection.execute(
                "SELECT COUNT(*) FROM trials WHERE participant = ? AND finished IS NULL",
                (participant,),
            ).fetchone()[0]
            if left == 0:
                connection.execute(
                    "UPDATE participants SET finished = ? WHERE id = ?", (now, participant)
                )
        return self.state(participant)

    def mark_scripted(self, participant: str) -> None:
        """Records ``participant`` as scripted (``meta.scripted_participants``): the analysis
        reports such answers as not human."""
        with self._transaction() as connection:
            row = connection.execute(
                "SELECT value FROM meta WHERE key = 'scripted_participants'"
            ).fetchone()
            ids = sorted({*json.loads(row[0] if row else "[]"), participant})
            connection.execute(
                "INSERT OR REPLACE INTO meta VALUES ('scripted_participants', ?)",
                (json.dumps(ids),),
            )

    def scripted(self) -> list[str]:
        """The participants recorded as scripted (``mark_scripted``)."""
        rows = self.query("SELECT value FROM meta WHERE key = 'scripted_participants'")
        return json.loads(rows[0][0]) if rows else []

    # -------------------------------------------------------------- export ---
    EXPORT_COLUMNS = (
        "participant",
        "position",
        "kind",
        "clip",
        "class_name",
        "condition",
        "rating",
        "chosen",
        "answered",
        "trial_finished",
    )

    def export_rows(self) -> list[dict]:
        """Every answer as a row (``EXPORT_COLUMNS``): MUSHRA ratings and A/B choices (the
        A/B rows have one row per condition of the pair, ``chosen`` 1 or 0)."""
        rows = []
        for participant, position, kind, clip, condition, rating, answered, finished in self.query(
            "SELECT r.participant, r.position, t.kind, t.clip, r.condition, r.rating, "
            "r.answered, t.finished FROM ratings r JOIN trials t USING (participant, position) "
            "ORDER BY r.participant, r.position, r.condition"
        ):
            rows.append(
                dict(
                    zip(
                        self.EXPORT_COLUMNS,
                        (
                            participant,
                            position,
                            kind,
                            clip,
                            self.clips[clip]["class_name"],
                            condition,
                            rating,
                            "",
                            answered,
                            finished,
                        ),
                        strict=True,
                    )
                )
            )
        for participant, position, clip, conditions, choice, answered, finished in self.query(
            "SELECT p.participant, p.position, t.clip, t.conditions, p.choice, p.answered, "
            "t.finished FROM preferences p JOIN trials t USING (participant, position) "
            "ORDER BY p.participant, p.position"
        ):
            for condition in json.loads(conditions):
                rows.append(
                    dict(
                        zip(
                            self.EXPORT_COLUMNS,
                            (
                                participant,
                                position,
                                "ab",
                                clip,
                                self.clips[clip]["class_name"],
                                condition,
                                "",
                                int(condition == choice),
                                answered,
                                finished,
                            ),
                            strict=True,
                        )
                    )
                )
        return rows

    def progress(self) -> list[dict]:
        """Per participant: trials finished of all, created, finished (the results page)."""
        return [
            {"participant": pid, "finished_trials": done, "n_trials": total, "done": bool(end)}
            for pid, done, total, end in self.query(
                "SELECT p.id, SUM(t.finished IS NOT NULL), COUNT(*), p.finished "
                "FROM participants p JOIN trials t ON t.participant = p.id "
                "GROUP BY p.id ORDER BY p.created"
            )
        ]
