"""One self-contained HTML page per output folder, to look at and listen to interpretations.

``write_report_page(folder)`` writes ``folder/report.html`` from whatever the folder holds:

- ``test_metrics.json`` (a classifier, PIQ or L-MAC run): the metrics table (the paper's and
  the faithfulness suite's) and ``confusion_matrix.png``;
- ``quantile_sweep.csv`` (``sweep_quantile.py``) and ``ood/ood.csv`` (``ood_eval.py``, with
  ``ood.png``): their tables;
- ``interpretations/<id>.png`` with ``<id>_original.wav``, ``<id>_interpretation.wav``,
  ``<id>_removed.wav`` and ``<id>.json`` (true class, prediction, top-5): one row per clip;
- ``<name>.json`` files of ``interpret.py`` (in the folder itself or in ``interpret/``) and of
  ``mixture_demo.py`` (in ``mixtures/``): one row per file or mixture, with the picture and
  audio players for the sources, the mixture and the interpretation.

Images and sounds are linked by relative paths (the page opens from the file system, offline,
in any browser; no script, no framework); metric values carry ``data-key`` / ``data-value``
attributes with the numbers as written in the JSON. The page is written atomically.

Example
-------
>>> import json, tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "test_metrics.json").write_text(json.dumps(
...     {"backbone": "focalnet", "method": "by_design", "acc": 0.9, "fid_i": 0.35, "n_clips": 80}))
>>> page = write_report_page(folder)
>>> 'data-key="fid_i" data-value="0.35"' in page.read_text()
True
"""

from __future__ import annotations

import csv
import html
import json
import os
from pathlib import Path

from data_prep.atomic import atomic_path
from recipes.report import method_label

PAGE = "report.html"
METRIC_ROWS = (
    ("acc", "ACC", "accuracy on the test fold"),
    ("fid_i", "FID-I (Fid-In)", "share of clips whose interpretation keeps the prediction"),
    ("fa", "FA (FF)", "p_c(x) - p_c((1 - mask) x), paper eq. 7"),
    ("fa_mask_in", "FA mask-in", "p_c(x) - p_c(mask x)"),
    ("ai", "AI (%)", "clips more confident on the interpretation (the model's probabilities)"),
    ("ad", "AD (%)", "average drop of p_c on the interpretation (the model's probabilities)"),
    ("ag", "AG (%)", "average gain of p_c on the interpretation (the model's probabilities)"),
    ("ff", "FF", "p_c(x) - p_c((1 - mask) x) with the model's probabilities"),
    ("ff_mask_in", "FF mask-in", "p_c(x) - p_c(mask x) with the model's probabilities"),
    ("ai_unscaled", "AI unscaled (%)", "AI with the softmax of the unscaled cosine scores"),
    ("ad_unscaled", "AD unscaled (%)", "AD with the softmax of the unscaled cosine scores"),
    ("ag_unscaled", "AG unscaled (%)", "AG with the softmax of the unscaled cosine scores"),
    ("score_scale", "score scale", "k of the model's probabilities softmax(k * cosine)"),
    ("sps", "SPS", "sparseness (Gini) of the mask, higher: sparser"),
    ("comp", "COMP", "complexity (entropy) of the mask, lower: simpler"),
    ("quantile", "quantile q", "threshold of the by-design mask (none: a soft mask)"),
    ("n_clips", "clips", "test clips scored"),
    ("n_params", "parameters", "trained parameters of this run"),
)
STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; max-width: 1400px; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.clip { border-top: 2px solid #ddd; padding: 0.8em 0; }
.clip img { max-width: 100%; height: auto; display: block; margin: 0.4em 0; }
.players { display: flex; flex-wrap: wrap; gap: 1.2em; }
.players figure { margin: 0; } .players figcaption { font-size: 0.85em; color: #555; }
.note { color: #555; font-size: 0.9em; }
"""


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _rel(path: Path, folder: Path) -> str:
    return Path(os.path.relpath(path, folder)).as_posix()


def _number(value) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _metrics_table(metrics: dict) -> str:
    rows = []
    for key, label, meaning in METRIC_ROWS:
        if key not in metrics:
            continue
        value = metrics[key]
        rows.append(
            f'<tr><th>{_esc(label)}</th><td class="num" data-key="{key}" '
            f'data-value="{_esc(json.dumps(value))}">{_esc(_number(value))}</td>'
            f"<td>{_esc(meaning)}</td></tr>"
        )
    return "<table>\n" + "\n".join(rows) + "\n</table>"


def _csv_table(path: Path, columns: list[str] | None = None) -> str:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return '<p class="note">(empty)</p>'
    columns = columns or list(rows[0])
    head = "".join(f"<th>{_esc(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column, "")
            try:
                shown = _number(float(value)) if value not in ("", None) else "-"
                cells.append(f'<td class="num">{_esc(shown)}</td>')
            except ValueError:
                cells.append(f"<td>{_esc(value)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table>\n<tr>{head}</tr>\n" + "\n".join(body) + "\n</table>"


def _player(path: Path, folder: Path, caption: str) -> str:
    if not path.is_file():
        return ""
    return (
        f"<figure><figcaption>{_esc(caption)}</figcaption>"
        f'<audio controls preload="metadata" src="{_esc(_rel(path, folder))}"></audio></figure>'
    )


def _top5(top) -> str:
    if not top:
        return ""
    items = ", ".join(f"{_esc(row['class'])} {float(row['probability']):.2f}" for row in top[:5])
    return f"<div>top 5: {items}</div>"


def _interpretation_rows(folder: Path, page_folder: Path) -> list[str]:
    rows = []
    for png in sorted(folder.glob("*.png")):
        clip = png.stem
        info_path = folder / f"{clip}.json"
        info = json.loads(info_path.read_text()) if info_path.is_file() else {}
        header = f"<b>{_esc(clip)}</b>"
        if info:
            header += (
                f" &mdash; true: <b>{_esc(info.get('true_class', '?'))}</b>, predicted: "
                f"<b>{_esc(info.get('predicted_class', '?'))}</b>"
            )
        players = "".join(
            _player(folder / f"{clip}_{kind}.wav", page_folder, caption)
            for kind, caption in (
                ("original", "original"),
                ("interpretation", "interpretation (mask x log-spectrogram)"),
                ("removed", "removed part ((1 - mask) x log-spectrogram)"),
            )
        )
        rows.append(
            f'<div class="clip">{header}{_top5(info.get("top"))}'
            f'<img src="{_esc(_rel(png, page_folder))}" alt="{_esc(clip)}: log-spectrogram, '
            f'mask, interpretation"><div class="players">{players}</div></div>'
        )
    return rows


def _summary_rows(folder: Path, page_folder: Path) -> tuple[list[str], bool]:
    """Rows of interpret.py / mixture_demo.py summaries (JSON files naming their outputs), and
    whether they are all mixtures."""
    rows, mixtures = [], 0
    for path in sorted(folder.glob("*.json")):
        try:
            summary = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
        outputs = summary.get("outputs") if isinstance(summary, dict) else None
        if not isinstance(outputs, dict) or "png" not in outputs:
            continue
        base = path.parent

        def local(name, base=base, outputs=outputs):
            return base / Path(outputs[name]).name

        if "sources" in summary:  # a mixture demo
            mixtures += 1
            sources = summary["sources"]
            title = (
                f"mixture {' + '.join(sources)} ({summary.get('mode', '')}, "
                f"{summary.get('method', '')})"
            )
            captions = {
                "source1": f"source 1 ({sources[0]})",
                "source2": f"source 2 ({sources[1]})",
                "mixture": "mixture",
                "interpretation": "interpretation",
            }
            kinds = [(key, caption) for key, caption in captions.items() if key in outputs]
        else:
            title = f"{Path(summary.get('audio', path.stem)).name} ({summary.get('method', '')})"
            kinds = [("wav", "interpretation")]
        players = ""
        audio = summary.get("audio")
        if audio and Path(audio).is_file():
            players += _player(Path(audio).resolve(), page_folder, "original file")
        players += "".join(_player(local(key), page_folder, caption) for key, caption in kinds)
        q = summary.get("quantile")
        rows.append(
            f'<div class="clip"><b>{_esc(title)}</b>'
            + (f" &mdash; q = {q}" if q is not None else "")
            + _top5(summary.get("top"))
            + f'<img src="{_esc(_rel(local("png"), page_folder))}" alt="{_esc(title)}">'
            + f'<div class="players">{players}</div></div>'
        )
    return rows, bool(rows) and mixtures == len(rows)


def _folded(name: str, table: str) -> str:
    return f"<details><summary>{_esc(name)} (click to open)</summary>{table}</details>"


def _method_label(metrics: dict) -> str:
    label = method_label({**metrics, "quantile": None})
    if metrics.get("method", "by_design") == "by_design":
        return f"{label} classifier (by-design interpretation)"
    return f"{label} interpreter"


def write_report_page(folder, title: str | None = None) -> Path:
    """Writes ``folder/report.html`` from what the folder holds (see the module docstring)."""
    folder = Path(folder).resolve()
    if not folder.is_dir():
        from recipes.runs import RunFolderError  # runs -> training -> this module

        raise RunFolderError(f"{folder} is not a folder: give a run or interpret.py output folder")
    sections = []  # (anchor, heading, body)
    metrics_path = folder / "test_metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else None
    if metrics is not None:
        sections.append(("metrics", "Test metrics", _metrics_table(metrics)))
        if (folder / "confusion_matrix.png").is_file():
            sections.append(
                (
                    "confusion",
                    "Confusion matrix",
                    '<img src="confusion_matrix.png" alt="confusion matrix: rows true class, '
                    'columns predicted" style="max-width: 640px; width: 100%">',
                )
            )
    clips = []
    if (folder / "interpretations").is_dir():
        clips = _interpretation_rows(folder / "interpretations", folder)
    if clips:
        heading = f"Interpreted test clips ({len(clips)})"
        sections.append(("clips", heading, "\n".join(clips)))
    for sub, anchor, heading in (
        ("", "files", "Interpreted files"),
        ("interpret", "interpret", "Interpreted files (interpret/)"),
        ("mixtures", "mixtures", "Mixtures (mixtures/)"),
    ):
        rows, all_mixtures = (
            _summary_rows(folder / sub, folder) if (folder / sub).is_dir() else ([], False)
        )
        if rows:
            if not sub and all_mixtures:
                anchor, heading = "mixtures", "Mixtures"
            sections.append((anchor, heading, "\n".join(rows)))
    # Long tables last, folded (a click opens them; no script).
    if (folder / "quantile_sweep.csv").is_file():
        table = _csv_table(folder / "quantile_sweep.csv")
        sections.append(
            ("sweep", "Quantile sweep and baselines", _folded("quantile_sweep.csv", table))
        )
    if (folder / "ood" / "ood.csv").is_file():
        picture = ""
        if (folder / "ood" / "ood.png").is_file():
            picture = '<img src="ood/ood.png" alt="metrics in and out of distribution">'
        table = _csv_table(folder / "ood" / "ood.csv")
        sections.append(
            ("ood", "In and out of distribution", picture + _folded("ood/ood.csv", table))
        )
    if not sections:
        raise FileNotFoundError(
            f"{folder} holds nothing to report: no test_metrics.json, interpretations/, "
            "mixtures/ or interpret.py outputs"
        )
    if title is None:
        title = f"{folder.parent.name}/{folder.name}"
        if metrics:
            title += f": {_method_label(metrics)}"
    contents = " &middot; ".join(f'<a href="#{a}">{_esc(h)}</a>' for a, h, _ in sections)
    body = "\n".join(f'<h2 id="{a}">{_esc(h)}</h2>\n{b}' for a, h, b in sections)
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_esc(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f'<h1>{_esc(title)}</h1>\n<p class="note">{_esc(str(folder))}</p>\n'
        f"<p>{contents}</p>\n{body}\n</body>\n</html>\n"
    )
    path = folder / PAGE
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


def refresh_run_page(output_folder) -> Path | None:
    """Rewrites the page of the run that holds ``output_folder`` (its parent has
    ``test_metrics.json``, e.g. ``<run>/mixtures``, ``<run>/interpret``, ``<run>/ood``); returns
    it, or None when ``output_folder`` is not inside a run folder."""
    parent = Path(output_folder).resolve().parent
    if (parent / "test_metrics.json").is_file():
        return write_report_page(parent)
    return None
