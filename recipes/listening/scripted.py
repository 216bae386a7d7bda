"""Scripted participants: answers by a fixed rule, through a running server's API, for pilots
and tests whose analysis must give numbers known in advance. Never human results: their ids are
recorded in the database (``meta.scripted_participants``) and the analysis reports them as such.

    python -m recipes.listening.scripted --server=http://127.0.0.1:5000 \
        --db=listening/pilot/answers.sqlite \
        --rule by_design=80 lmac_hard=70 ... hidden_reference=100 [--offset 0 -10]

One participant per ``--offset``: rating = rule[condition] + offset (clipped to 0-100; the hidden
reference keeps its rule value); A/B pages: the condition with the higher rule value. The script
reads each page's conditions from the database (a person hears them; the script cannot).
"""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.request

from recipes.listening.db import HIDDEN_REFERENCE, ListeningDB


def _call(base, path, fields=None):
    data = None if fields is None else json.dumps(fields).encode()
    request = urllib.request.Request(
        base + path,
        data=data,
        method="GET" if fields is None else "POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise RuntimeError(f"{path}: {error.code} {json.loads(error.read())['error']}") from None


def rating_of(rule: dict, condition: str, offset: float) -> float:
    """``rule[condition] + offset`` in [0, 100]; the hidden reference keeps its rule value.

    Example
    -------
    >>> rating_of({"a": 95, "hidden_reference": 100}, "a", 10), rating_of(
    ...     {"hidden_reference": 100}, "hidden_reference", -10)
    (100.0, 100.0)
    """
    if condition == HIDDEN_REFERENCE:
        return float(rule[condition])
    return float(min(100.0, max(0.0, rule[condition] + offset)))


def take_test(base: str, db: ListeningDB, rule: dict, offset: float = 0.0) -> str:
    """One scripted participant through the whole test of the server at ``base``; returns
    their id (recorded as scripted in ``db``)."""
    missing = [
        name
        for name in {c for clip in db.test["clips"] for c in clip["conditions"]}
        if name not in rule
    ]
    if missing:
        raise ValueError(f"--rule gives no rating for {sorted(missing)}")
    participant = _call(base, "/api/participants", {})["participant"]
    db.mark_scripted(participant)
    while True:
        state = _call(base, f"/api/state/{participant}")
        current = state["current"]
        if current is None:
            return participant
        position = current["position"]
        conditions = json.loads(
            db.query(
                "SELECT conditions FROM trials WHERE participant = ? AND position = ?",
                (participant, position),
            )[0][0]
        )
        fields = {"participant": participant, "trial": position}
        if current["kind"] == "mushra":
            for slot, name in enumerate(conditions):
                rating = rating_of(rule, name, offset)
                _call(base, "/api/rate", {**fields, "slot": slot, "rating": rating})
        else:
            best = max(range(len(conditions)), key=lambda slot: rule[conditions[slot]])
            _call(base, "/api/choose", {**fields, "slot": best})
        _call(base, "/api/finish", fields)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", required=True, help="e.g. http://127.0.0.1:5000")
    parser.add_argument("--db", required=True, help="the server's --db file")
    parser.add_argument("--rule", nargs="+", required=True, metavar="CONDITION=RATING")
    parser.add_argument("--offset", nargs="+", type=float, default=[0.0])
    args = parser.parse_args(argv)
    try:
        rule = {key: float(value) for key, value in (item.split("=", 1) for item in args.rule)}
    except ValueError:
        parser.error(f"--rule takes CONDITION=RATING pairs, got {args.rule}")
    db = ListeningDB(args.db)
    for offset in args.offset:
        participant = take_test(args.server.rstrip("/"), db, rule, offset)
        print(f"scripted participant {participant} (offset {offset:+g}) done")


if __name__ == "__main__":
    main()
