"""Fold 0 of runs 5 and 6 (144 px crops; run 6 adds 100 hard negatives a normal field): detection calls, field AUC by top-k."""
import sys
from pathlib import Path
import numpy as np
from sklearn.metrics import roc_auc_score
from papscreen.datasets.real import read_real_cells
from papscreen.datasets.build import plan_build
from papscreen.imaging.image_io import read_rgb
from papscreen.models.real_cv import prepare, default_build_options, fold_fields, analyse_field, detection_call_figures, _points
from papscreen.models.field_score import field_scores
from papscreen.models.stage1 import Stage1Detector
from papscreen.models.stage2 import Stage2Classifier
data_dir = Path("../shared/data")
cells = read_real_cells(data_dir)
data = prepare(cells, plan_build(data_dir / "cric-dev", default_build_options(0)), [], 5, 0)
by_field = cells.points_by_field()
fold = data.folds[0]
_, _, test_fields = fold_fields(data, fold)
for name, work in (("run 5", "/tmp/run5/work"), ("run 6 (normal-field negatives)", "/tmp/run6/work")):
    models = Path(work) / "fold0" / "models"
    det = Stage1Detector.from_checkpoint(models / "stage1"); cls = Stage2Classifier.from_checkpoint(models / "stage2")
    test = {g: analyse_field(det, cls, read_rgb(cells.fields[g])) for g in test_fields}
    truth = np.array([any(c.label != "NILM" for c in by_field[g]) for g in test])
    figs = detection_call_figures(test, {g: _points(cells, g) for g in test}, truth, 15)
    susp = [1.0 - a.probs[:, 0] for a in test.values()]
    aucs = {k: round(float(roc_auc_score(truth, field_scores(susp, k))), 3) for k in (1, 3, 5, 10, 20)}
    print(name, {k: round(v, 3) for k, v in figs.items()}, "field AUC by top-k", aucs, f"{truth.sum()} abnormal / {(~truth).sum()} normal", flush=True)
