"""Is a training run healthy? Reference curves of the recipe's stages and `soundlm doctor RUN`.

`runlog` reads a run folder, `reference` holds the shipped reference curves and their bands,
`checks` the known failure modes, `diagnose` puts them together, `build` makes the curves from
the recipe's own runs (`recipes/reference_curves.py build`).
"""

from soundlm.doctor.diagnose import Diagnosis, diagnose, plot_diagnosis
from soundlm.doctor.reference import ReferenceCurves, StageReference, load_reference

__all__ = ["Diagnosis", "ReferenceCurves", "StageReference", "diagnose", "load_reference", "plot_diagnosis"]
