"""``papscreen evaluate MODEL DATASET``: a saved model's metrics on a DB_3 (stage 1) or DB_4 (stage 2) split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from papscreen.cli.common import console, err_console, fail_cleanly, settings_from
from papscreen.cli.model_refs import MODEL_REF_HELP, resolve_model_ref
from papscreen.cli.train_cmd import evaluation_table
from papscreen.datasets.layout import read_dataset
from papscreen.models.card import read_card
from papscreen.models.checkpoints import resolve_card_path
from papscreen.models.device import resolve_device
from papscreen.models.evaluation import Evaluation, evaluate_stage1, evaluate_stage2, write_evaluation
from papscreen.models.stage1 import Stage1Detector
from papscreen.models.stage2 import Stage2Classifier

__all__ = ["app"]

app = typer.Typer()


@app.command("evaluate")
def evaluate(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help=MODEL_REF_HELP)],
    dataset: Annotated[Path, typer.Argument(help="A DB_3 (stage-1 model) or DB_4 (stage-2 model) folder.")],
    split: Annotated[str, typer.Option("--split", help="Which split to evaluate on.")] = "validation",
    out: Annotated[
        Path | None, typer.Option("--out", help="Write metrics.json and the plots (confusion, ROC, calibration) here.")
    ] = None,
    precision: Annotated[
        str, typer.Option("--precision", help="Stage 2 only: fp32, bf16 or int8 (CPU) inference.")
    ] = "fp32",
    device: Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda (default: the setting).")] = None,
) -> None:
    """Measure a saved model on a dataset split: per-class sensitivity, specificity, precision, F1, AUC, ECE."""
    settings = settings_from(ctx)
    with fail_cleanly():
        folder = resolve_model_ref(ctx, model)
        card = read_card(resolve_card_path(folder))
        index = read_dataset(dataset)
        torch_device = resolve_device(device or settings.device)
        err_console.print(f"evaluating {card.stage} model {card.name} on {dataset} ({split}) with {torch_device}")
        evaluation: Evaluation
        if card.stage == "stage1":
            evaluation = evaluate_stage1(Stage1Detector.from_checkpoint(folder, torch_device), index, split)
        else:
            classifier = Stage2Classifier.from_checkpoint(folder, torch_device, precision=precision)
            batch_size = settings.batch.stage2_for(torch_device.type)
            evaluation = evaluate_stage2(classifier, index, split, batch_size=batch_size)
        console.print(evaluation_table(evaluation, f"{card.stage} {card.name} on {dataset.name} ({split})"))
        if out is not None:
            written = write_evaluation(out, evaluation)
            console.print(f"wrote {', '.join(sorted(written))} to {out}")
