"""``listen.py``'s web app: the explorer, the listening test, its analysis and webMUSHRA export.

``explore`` (cached interpretations of a run's clips and uploads), ``stimuli`` (building a test,
the webMUSHRA export), ``db`` (the SQLite database), ``app`` (the Flask app), ``analysis``
(``listen.py --analyse``). See recipes/README.md, "Listening".
"""
