"""Label maps: which class name and data-set target id each output of a classifier stands for.

A label map is a list ``[{"label": 0, "target": t0, "class_name": name0}, ...]`` in label order
(``data_prep.esc50.label_map`` makes it from the data; runs record it in ``model.json`` and
``test_metrics.json``).
"""

from __future__ import annotations


def default_labels(class_names: list[str]) -> list[dict]:
    """The label map of a model without one on record: label i is target i.

    Example
    -------
    >>> default_labels(["dog"])
    [{'label': 0, 'target': 0, 'class_name': 'dog'}]
    """
    return [
        {"label": label, "target": label, "class_name": name}
        for label, name in enumerate(class_names)
    ]
