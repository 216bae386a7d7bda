#!/usr/bin/env python3
"""The explorer's latency (``listen.py``): one change of q, of method, of clip, and a repeat.

    python benchmarks/listen_latency.py [--methods by_design gradcam energy] [--json FILE]

The ESC-10 recipe's FocalNet (``hparams/esc10_focalnet.yaml``'s architecture, random weights:
the cost does not depend on the weights; ``benchmarks/method_costs.py``) behind the real
``Explorer`` and Flask app (``recipes/listening``), on real ESC-10 clips of ../shared/data (or
``--esc10``). Per method, timed through the app's test client (request + JSON + the PNG
fetched): the first request of a clip (prepare the windows, the method's map, the files), a
change of q on that clip (the map cached: threshold, two inverse STFTs, the picture; the median
of 4 values of q), a change of method on a cached clip, and a repeated (clip, method, q) (the
cache). Prints a table naming the CPU; ``--json`` writes it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from method_costs import build_classifier, cpu_description  # noqa: E402

from recipes.listening.app import create_app  # noqa: E402
from recipes.listening.explore import Explorer  # noqa: E402
from recipes.loading import LoadedModel  # noqa: E402

ESC10 = Path(__file__).resolve().parents[2] / "shared" / "data" / "ESC-10"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=["by_design", "gradcam", "energy"])
    parser.add_argument("--esc10", default=str(ESC10), help="an ESC-10 folder (audio/*.ogg)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    files = sorted(Path(args.esc10, "audio").glob("*.ogg"))[: 1 + len(args.methods)]
    if not files:
        sys.exit(f"listen_latency.py: no ESC-10 clips under {args.esc10}/audio: give --esc10")
    model = LoadedModel(build_classifier(), [f"class_{i}" for i in range(10)], Path("."))
    clips = {path.stem: {"path": str(path), "class_name": None} for path in files}
    with tempfile.TemporaryDirectory() as cache:
        explorer = Explorer(model, {}, cache, clips=clips)
        client = create_app(explorer).test_client()

        def request(clip, method, q):
            start = time.perf_counter()
            body = client.get(f"/api/explore?clip={clip}&method={method}&q={q}").get_json()
            assert "error" not in body, body
            client.get(body["urls"]["png"]).close()
            return time.perf_counter() - start, body["cached"]

        rows = []
        keys = list(clips)
        request(keys[-1], args.methods[0], 0.9)  # warm-up: first forward, allocations
        for clip, method in zip(keys, args.methods, strict=False):
            first, _ = request(clip, method, 0.9)
            changes = [request(clip, method, q)[0] for q in (0.8, 0.7, 0.5, 0.95)]
            repeat, cached = request(clip, method, 0.8)
            assert cached
            other = next(m for m in args.methods if m != method)
            switch, _ = request(clip, other, 0.9)
            rows.append(
                {
                    "method": method,
                    "first_request_s": first,
                    "q_change_s": statistics.median(changes),
                    "method_change_s": switch,
                    "repeat_s": repeat,
                }
            )
    cpu = cpu_description()
    print(f"explorer latency, ESC-10 FocalNet architecture (random weights), {cpu}")
    print(f"{'method':<14}{'1st request':>12}{'q change':>10}{'method chg':>12}{'repeat':>10}")
    for row in rows:
        print(
            f"{row['method']:<14}{row['first_request_s']:>11.3f}s{row['q_change_s']:>9.3f}s"
            f"{row['method_change_s']:>11.3f}s{row['repeat_s']:>9.4f}s"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": cpu, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
