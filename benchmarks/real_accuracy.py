"""Real-data accuracy of the whole method: grouped, stratified k-fold cross-validation on CRIC fields.

    python benchmarks/real_accuracy.py ../shared/data --folds 5 --out results/real-cv
    python benchmarks/real_accuracy.py ../shared/data --folds 5 --only-folds 1     # a quick look at one fold

Folds hold out whole fields (stratified by each field's worst label). In every fold, on the training fields only,
stage 1 and stage 2 are trained (an inner split by field stops them early and calibrates stage 2) and the field
verdict's threshold is chosen for ``--field-sensitivity`` on the inner validation fields; then the held-out fields
are measured: stage-1 recall within ``--radius`` px by label and detections per field, stage 2 on the annotated
nuclei (accuracy, macro-F1, per-class sensitivity and specificity, LSIL+ AUC, ECE, and where ASC-US and ASC-H
cells go), end to end (stage 2 on what stage 1 found), and the field verdict's sensitivity and specificity.

Every figure is the mean over folds with its 95% interval (Student t). Writes ``results.json``, ``report.md`` and
the figures into ``--out``. Loose crops (``cric-crops``) are not used: most are not centred on their cell (see
docs/experiments.md), so their labels cannot be trusted.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from papscreen.datasets.build import plan_build
from papscreen.datasets.real import read_real_cells, write_cell_crops
from papscreen.models.device import describe_machine, resolve_device
from papscreen.models.real_cv import (
    FieldRecipe,
    Stage1Recipe,
    Stage2Recipe,
    default_build_options,
    prepare,
    run_fold,
    summarise,
)
from papscreen.models.real_cv_report import markdown_table, write_report


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path, help="folder holding cric-dev/ (and optionally cric-crops/)")
    parser.add_argument("--out", type=Path, default=Path("real-cv"), help="report folder")
    parser.add_argument("--work", type=Path, default=Path("/tmp/papscreen-real-cv"), help="scratch folder")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--only-folds", type=int, default=None, help="run only the first N folds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--radius", type=float, default=15.0, help="stage-1 match distance, field px")
    s1 = parser.add_argument_group("stage 1")
    s1.add_argument("--stage1-arch", default=Stage1Recipe.architecture)
    s1.add_argument("--stage1-scale", type=float, default=Stage1Recipe.working_scale)
    s1.add_argument("--stage1-epochs", type=int, default=Stage1Recipe.epochs)
    s1.add_argument("--abnormal-repeat", type=int, default=Stage1Recipe.abnormal_repeat)
    s1.add_argument("--hard-background", type=float, default=Stage1Recipe.hard_background)
    s1.add_argument("--stage1-threshold", type=float, default=Stage1Recipe.threshold)
    s1.add_argument("--min-distance", type=float, default=Stage1Recipe.min_distance_px)
    s1.add_argument("--proposals", action="store_true", help="add colour proposals")
    s1.add_argument("--proposals-first", action="store_true", help="colour proposals win over network peaks")
    s1.add_argument("--snap", type=float, default=Stage1Recipe.snap_radius_px, help="snap radius to the nucleus, px")
    s1.add_argument("--snap-sigma", type=float, default=Stage1Recipe.snap_sigma_px, help="darkness blur, px")
    s1.add_argument("--proposal-min-score", type=float, default=Stage1Recipe.proposal_min_score)
    s1.add_argument("--proposal-min-diameter", type=float, default=Stage1Recipe.proposal_min_diameter_px)
    s2 = parser.add_argument_group("stage 2")
    s2.add_argument("--arch", default=Stage2Recipe.architecture)
    s2.add_argument("--input", type=int, default=Stage2Recipe.input_size)
    s2.add_argument("--crop", type=int, default=Stage2Recipe.crop_size)
    s2.add_argument("--epochs", type=int, default=Stage2Recipe.epochs)
    s2.add_argument("--patience", type=int, default=Stage2Recipe.patience)
    s2.add_argument("--lr", type=float, default=None)
    s2.add_argument("--batch", type=int, default=Stage2Recipe.batch_size)
    s2.add_argument("--balance", default=Stage2Recipe.balance, choices=("loss", "sampler", "none"))
    s2.add_argument("--augment", default=Stage2Recipe.augment, choices=("full", "robust", "dihedral", "none"))
    s2.add_argument("--bf16", action="store_true", help="train stage 2 under bf16 autocast")
    s2.add_argument("--hard-negatives", type=int, default=0, help="stage-1 detections per field taught as NILM")
    s2.add_argument(
        "--hard-negatives-from", default="all", choices=("all", "normal"), help="all fields, or only all-NILM ones"
    )
    fv = parser.add_argument_group("field verdict")
    fv.add_argument("--top-k", type=int, default=FieldRecipe.top_k)
    fv.add_argument("--field-sensitivity", type=float, default=FieldRecipe.min_sensitivity)
    return parser.parse_args()


def recipes(args: argparse.Namespace) -> tuple[Stage1Recipe, Stage2Recipe, FieldRecipe]:
    stage1 = Stage1Recipe(
        architecture=args.stage1_arch,
        working_scale=args.stage1_scale,
        epochs=args.stage1_epochs,
        abnormal_repeat=args.abnormal_repeat,
        hard_background=args.hard_background,
        threshold=args.stage1_threshold,
        min_distance_px=args.min_distance,
        use_proposals=args.proposals or args.proposals_first,
        proposals_first=args.proposals_first,
        snap_radius_px=args.snap,
        snap_sigma_px=args.snap_sigma,
        proposal_min_score=args.proposal_min_score,
        proposal_min_diameter_px=args.proposal_min_diameter,
    )
    stage2 = Stage2Recipe(
        architecture=args.arch,
        input_size=args.input,
        crop_size=args.crop,
        epochs=args.epochs,
        patience=args.patience,
        lr=args.lr,
        batch_size=args.batch,
        balance=args.balance,
        augment=args.augment,
        bf16=args.bf16,
        hard_negatives_per_field=args.hard_negatives,
        hard_negative_source=args.hard_negatives_from,
    )
    return stage1, stage2, FieldRecipe(top_k=args.top_k, min_sensitivity=args.field_sensitivity)


def main() -> int:
    args = parse_args()
    device = resolve_device("auto")
    machine = describe_machine(device)
    print(f"machine: {machine}", flush=True)
    started = time.perf_counter()
    stage1, stage2, verdict = recipes(args)
    cells = read_real_cells(args.data_dir)
    crops = write_cell_crops(cells, args.work / f"cells{stage2.crop_size}", stage2.crop_size)
    plan = plan_build(args.data_dir / "cric-dev", default_build_options(args.seed))
    data = prepare(cells, plan, crops, args.folds, args.seed)
    print(f"{len(cells.cells)} cells ({cells.counts()}), {len(cells.fields)} fields, {args.folds} folds", flush=True)
    results = []
    for fold in data.folds[: args.only_folds or len(data.folds)]:
        result = run_fold(data, fold, stage1, stage2, verdict, args.work, device, radius=args.radius)
        results.append(result)
        shown = ("stage1_recall_all", "stage1_detections_per_field", "stage2_macro_f1", "stage2_lsil_plus_auc",
                 "e2e_macro_f1", "field_sensitivity", "field_specificity")  # fmt: skip
        print(f"fold {fold.number}: " + ", ".join(f"{k} {result.figures[k]:.3f}" for k in shown
                                                   if result.figures[k] is not None), flush=True)  # fmt: skip
    summary = summarise(results)
    seconds = time.perf_counter() - started
    recipe_record = {"stage1": stage1, "stage2": stage2, "field": verdict, "folds": args.folds, "seed": args.seed}
    written = write_report(args.out, results, summary, recipe_record, machine, seconds)
    print("\n" + markdown_table(summary))
    print(f"\n{len(results)} folds in {seconds / 60:.1f} min; wrote {', '.join(str(p) for p in written.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
