"""`soundlm doctor`: is a training run healthy? Reference curves, failure checks, a report and a plot.

`metrics.py` reads a run, `reference.py` the shipped reference curves (`build.py` makes them),
`checks.py` holds the known failure modes, `diagnose.py` composes the report, `plot.py` draws it.
"""

from soundlm.doctor.diagnose import Diagnosis, diagnose

__all__ = ["Diagnosis", "diagnose"]
