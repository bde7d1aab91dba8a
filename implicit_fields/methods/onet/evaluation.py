"""Mesh evaluation over a split, exactly as the original `eval_meshes.py` (`data.reconstruction`).

ONet's eval mode scores the meshes of the run's finished generation (the
record `trainer.load_generation` checks) and writes `metrics.json` and
`eval_meshes.csv`; the metrics themselves, and their conventions for values
the original leaves undefined, are `data.reconstruction.evaluate_meshes`'.
"""

from typing import Dict, List

from implicit_fields import trainer
from implicit_fields.data import reconstruction

REPORTED = reconstruction.REPORTED
load_mesh = reconstruction.load_mesh
iou_query_points = reconstruction.iou_query_points
evaluate_meshes = reconstruction.evaluate_meshes
summarize = reconstruction.summarize


def evaluate(config, workdir: str) -> Dict:
    """ONet's eval mode: the metrics of the meshes `generate` wrote (`metrics.json`, `eval_meshes.csv`)."""
    return reconstruction.evaluate_generation(config, workdir, load_generation(workdir))


load_generation = trainer.load_generation


def load_generation_records(workdir: str) -> List[Dict]:
    """The per-mesh records of the finished generation in `workdir/meshes` (`trainer.load_generation`)."""
    return load_generation(workdir)["objects"]
