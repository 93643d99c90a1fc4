"""One-off (issue 15): can morphometry tell SCC from HSIL (with ASC-H) nuclei in field-grouped folds?

Run after morphometry_cv.py (it reads features.npz):

    python docs/experiments/2026-12-07-morph/hsil_vs_scc.py
"""

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import QuantileTransformer

from papscreen.datasets.real import read_real_cells
from papscreen.models.real_cv import field_folds

d = np.load(__file__.rsplit("/", 1)[0] + "/features.npz")
X, y, g = d["features"], d["truth"], d["groups"]
cells = read_real_cells("../shared/data")
folds = field_folds(cells, 5, 0)
groups = np.array(sorted({c.group for c in cells.cells}))
m = y >= 2
Xs, ys, gs = X[m], (y[m] == 3).astype(int), g[m]
print("SCC fields", len(set(gs[ys == 1])), "HSIL fields", len(set(gs[ys == 0])))
P = np.zeros(len(ys))
for f in folds:
    held = set(groups[f.validation])
    t = np.array([x in held for x in gs])
    mdl = make_pipeline(
        QuantileTransformer(n_quantiles=100, output_distribution="normal"),
        LogisticRegression(C=0.1, class_weight="balanced", max_iter=3000),
    ).fit(Xs[~t], ys[~t])
    P[t] = mdl.predict_proba(Xs[t])[:, 1]
print("HSIL vs SCC grouped AUC", roc_auc_score(ys, P))
# single-feature AUCs
names = (
    ["area", "perim", "circ", "solid", "elong", "hmean", "hstd", "h90", "gmean", "gstd", "ringcontrast", "hcontrast", "cellarea", "nc", "celledge", "cR", "cG", "cB", "chue", "nblobs", "cut"]
    + [f"w{h}_{k}" for h in (8, 16, 32) for k in ["mR", "mG", "mB", "sR", "sG", "sB", "h"]]
)
for i, n in enumerate(names):
    a = roc_auc_score(ys, Xs[:, i])
    if abs(a - 0.5) > 0.15:
        print(n, round(a, 3))
