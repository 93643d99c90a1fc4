"""``papscreen train stage1|stage2``: train a model, save it with its card and evidence, register it as a candidate.

The database is checked *before* training (a run of many minutes should not end in "run papscreen db upgrade"),
and the model is saved before it is registered, so a failed registration never loses a trained model: the
folder can be registered later with ``papscreen models register``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from papscreen.cli.common import console, err_console, fail_cleanly, optional_database, progress_bar, settings_from
from papscreen.cli.models_cmd import announce_saved_model
from papscreen.datasets.layout import DatasetIndex, read_dataset
from papscreen.db.database import Database
from papscreen.errors import DatasetError
from papscreen.imaging.image_io import image_size
from papscreen.models.backbones import ARCHITECTURES
from papscreen.models.card import ModelCard
from papscreen.models.checkpoints import model_folder_name
from papscreen.models.device import resolve_device
from papscreen.models.evaluation import Evaluation, evaluate_stage1, write_evaluation
from papscreen.models.proposals import ProposalConfig
from papscreen.models.stage1 import Stage1Config
from papscreen.models.stage2 import DEFAULT_INPUT_SIZE
from papscreen.models.train_stage1 import train_stage1
from papscreen.models.train_stage2 import train_stage2

__all__ = ["app", "evaluation_table", "history_table"]

app = typer.Typer(
    no_args_is_help=True,
    help="Train stage 1 (cells vs background, DB_3) or stage 2 (Bethesda class, DB_4). The model is saved into "
    "the models folder and registered as a candidate; the first model of a stage becomes its champion.",
)


class Stage1Architecture(StrEnum):
    """Stage-1 networks: the original's, and the stronger small variant."""

    cnn20 = "cnn20"
    cnn20plus = "cnn20plus"


Stage2Architecture = StrEnum("Stage2Architecture", {name: name for name in ARCHITECTURES})
"""Stage-2 backbones: resnet50 (the original's), resnet18, and mobile ones for labs without a GPU."""


class Stage2Mode(StrEnum):
    """frozen: train the head on features computed once (the original's choice); finetune: the whole network."""

    frozen = "frozen"
    finetune = "finetune"


class Stage2Augment(StrEnum):
    """How finetune mode varies the training crops."""

    full = "full"
    robust = "robust"
    dihedral = "dihedral"
    none = "none"


DeviceOption = Annotated[
    str | None, typer.Option("--device", help="auto, cpu, cuda or cuda:N (default: the `device` setting).")
]
RegisterOption = Annotated[
    bool, typer.Option("--register/--no-register", help="Register the saved model in the database as a candidate.")
]
SeedOption = Annotated[int, typer.Option("--seed", help="Seeds initialisation, shuffling and augmentation.")]


def _epoch_reporter(progress: Callable[[str, int, int], None], phase: str, epochs: int) -> Callable[[dict], None]:
    def report(row: dict[str, Any]) -> None:
        progress(phase, int(row["epoch"]), epochs)

    return report


def _dataset_crop_size(index: DatasetIndex) -> int:
    """DB_4 crops are square windows cut at full resolution: by default the whole crop is the window."""
    first = index.splits["train"][0].path if index.splits.get("train") else None
    if first is None:
        raise DatasetError(index.root, "the dataset has no training crops")
    width, height = image_size(first)
    return min(width, height)


def history_table(history: list[dict[str, float]], keys: tuple[str, ...]) -> Table:
    """One row per epoch with the chosen columns (those a row lacks are shown as '-')."""
    table = Table(title="training history")
    for key in ("epoch", *keys):
        table.add_column(key, justify="right")
    for row in history:
        cells = [f"{int(row['epoch'])}"]
        cells += [f"{row[k]:.4g}" if isinstance(row.get(k), int | float) else "-" for k in keys]
        table.add_row(*cells)
    return table


def evaluation_table(evaluation: Evaluation, title: str) -> Table:
    """Per-class sensitivity, specificity, precision, F1 and AUC; the overall figures in the caption."""
    metrics = evaluation.metrics

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    caption = (
        f"n={metrics.n_samples}  accuracy {fmt(metrics.accuracy)}  balanced accuracy {fmt(metrics.balanced_accuracy)}  "
        f"macro-F1 {fmt(metrics.macro_f1)}  macro AUC {fmt(metrics.macro_auc)}  ECE {fmt(metrics.ece)}"
    )
    table = Table(title=title, caption=caption)
    for column in ("class", "support", "sensitivity", "specificity", "precision", "F1", "AUC"):
        table.add_column(column, justify="right")
    for c in metrics.per_class:
        table.add_row(
            c.name, str(c.support), fmt(c.sensitivity), fmt(c.specificity), fmt(c.precision), fmt(c.f1), fmt(c.auc)
        )
    return table


def _report(database: Database | None, folder: Path, card: ModelCard, evaluation: Evaluation) -> None:
    """Show the validation figures, register the saved model, and say where everything is."""
    console.print(evaluation_table(evaluation, f"{card.stage} validation"))
    announce_saved_model(database, folder, card, actor="papscreen train")


@app.command("stage1")
def stage1(
    ctx: typer.Context,
    dataset: Annotated[
        Path, typer.Argument(help="DB_3 folder: train/ and validation/, each with cell/ and background/.")
    ],
    architecture: Annotated[
        Stage1Architecture,
        typer.Option("--arch", help="cnn20plus: deeper, more precise (default); cnn20: the original network."),
    ] = Stage1Architecture.cnn20plus,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Most epochs (early stopping may end sooner).")] = 30,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 64,
    lr: Annotated[float, typer.Option("--lr", min=0.0, help="Peak learning rate (AdamW, cosine decay).")] = 2e-3,
    patience: Annotated[int, typer.Option("--patience", min=1, help="Epochs without a better F1 before stopping.")] = 6,
    working_scale: Annotated[
        float | None, typer.Option("--working-scale", help="Scale DB_3 was cut at (default: from its manifest).")
    ] = None,
    min_distance: Annotated[
        float, typer.Option("--min-distance", min=0.0, help="Detections closer than this (field px) are one nucleus.")
    ] = Stage1Config.min_distance_px,
    snap_radius: Annotated[
        float,
        typer.Option(
            "--snap-radius",
            min=0.0,
            help="Move each detection to the darkest point within this many field px (the nucleus); 0: off.",
        ),
    ] = Stage1Config.snap_radius_px,
    snap_sigma: Annotated[
        float, typer.Option("--snap-sigma", min=0.1, help="Blur of the darkness before snapping, field px.")
    ] = Stage1Config.snap_sigma_px,
    proposals: Annotated[
        bool,
        typer.Option("--proposals/--no-proposals", help="Add haematoxylin blobs the network rates as cells."),
    ] = Stage1Config.use_proposals,
    proposal_min_score: Annotated[
        float, typer.Option("--proposal-min-score", min=0.0, max=0.999, help="Cell probability a blob needs.")
    ] = Stage1Config.proposal_min_score,
    proposal_min_diameter: Annotated[
        float, typer.Option("--proposal-min-diameter", min=1.0, help="Smaller blobs are not proposed (field px).")
    ] = ProposalConfig.min_diameter_px,
    seed: SeedOption = 0,
    device: DeviceOption = None,
    register: RegisterOption = True,
) -> None:
    """Train the stage-1 cell detector on a DB_3 dataset.

    The detector settings (--min-distance, --snap-radius, --proposals ...) are stored on the model card and used
    wherever the model detects; docs/experiments.md shows what each buys on real fields.
    """
    settings = settings_from(ctx)
    with fail_cleanly(), ExitStack() as stack:
        database = stack.enter_context(optional_database(ctx, register))
        index = read_dataset(dataset)
        torch_device = resolve_device(device or settings.device)
        err_console.print(f"training stage 1 ({architecture.value}) on {dataset} with {torch_device}")
        with progress_bar() as progress:
            result = train_stage1(
                index,
                architecture=architecture.value,
                epochs=epochs,
                batch_size=batch_size,
                lr=lr,
                patience=patience,
                seed=seed,
                device=torch_device,
                working_scale=working_scale,
                progress=_epoch_reporter(progress, "epochs", epochs),
                config=Stage1Config(
                    min_distance_px=min_distance,
                    snap_radius_px=snap_radius,
                    snap_sigma_px=snap_sigma,
                    use_proposals=proposals,
                    proposal_min_score=proposal_min_score,
                    proposals=ProposalConfig(min_diameter_px=proposal_min_diameter),
                ),
            )
        console.print(history_table(result.history, ("train_loss", "val_loss", "val_accuracy", "val_f1", "seconds")))
        evaluation = evaluate_stage1(result.detector, index)
        metrics = evaluation.metrics.to_dict() | {"f1": result.metrics["f1"]}
        folder = settings.models_dir / model_folder_name("stage1", architecture.value)
        card = result.detector.to_checkpoint(folder, metrics, result.dataset_fingerprint, result.training)
        write_evaluation(folder, evaluation, history=result.history)
        _report(database, folder, card, evaluation)


@app.command("stage2")
def stage2(
    ctx: typer.Context,
    dataset: Annotated[Path, typer.Argument(help="DB_4 folder: train/ and validation/, class folders 1..4 or named.")],
    architecture: Annotated[
        Stage2Architecture, typer.Option("--arch", help="Backbone; resnet18 or a mobile one for CPU-only labs.")
    ] = Stage2Architecture.resnet50,  # type: ignore[attr-defined]
    mode: Annotated[Stage2Mode, typer.Option("--mode", help="frozen: head on cached features; finetune: all.")] = (
        Stage2Mode.frozen
    ),
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Most epochs (early stopping may end sooner).")] = 100,
    batch_size: Annotated[int | None, typer.Option("--batch-size", min=1, help="Default: the setting.")] = None,
    lr: Annotated[float | None, typer.Option("--lr", min=0.0, help="Peak learning rate (default by mode).")] = None,
    input_size: Annotated[int, typer.Option("--input-size", min=32, help="Network input side, px.")] = (
        DEFAULT_INPUT_SIZE
    ),
    crop_size: Annotated[
        int | None,
        typer.Option("--crop-size", min=2, help="Full-resolution window around a nucleus (default: DB_4's)."),
    ] = None,
    pretrained: Annotated[
        str | None,
        typer.Option("--pretrained", help="ImageNet weights: a file, or 'auto' (torch hub's cache). Never downloads."),
    ] = None,
    patience: Annotated[int, typer.Option("--patience", min=1, help="Epochs without a better macro-F1.")] = 10,
    bf16: Annotated[
        bool, typer.Option("--bf16", help="bfloat16 autocast: faster on GPUs and CPUs with AMX; weights stay fp32.")
    ] = False,
    augment: Annotated[
        Stage2Augment,
        typer.Option(
            "--augment",
            help="finetune: full (flips, rotation, scale, blur, colour and stain); robust (wider, plus JPEG and "
            "grayscale: for scans from other labs); dihedral (flips and quarter turns); none.",
        ),
    ] = Stage2Augment.full,
    seed: SeedOption = 0,
    device: DeviceOption = None,
    register: RegisterOption = True,
) -> None:
    """Train the stage-2 Bethesda classifier on a DB_4 dataset."""
    settings = settings_from(ctx)
    with fail_cleanly(), ExitStack() as stack:
        database = stack.enter_context(optional_database(ctx, register))
        index = read_dataset(dataset)
        torch_device = resolve_device(device or settings.device)
        crop = crop_size or _dataset_crop_size(index)
        weights = None if pretrained is None else ("auto" if pretrained == "auto" else Path(pretrained))
        err_console.print(
            f"training stage 2 ({architecture.value}, {mode.value}, input {input_size} px, crop {crop} px) "
            f"on {dataset} with {torch_device}"
        )
        with progress_bar() as progress:
            result = train_stage2(
                index,
                architecture=architecture.value,
                mode=mode.value,
                epochs=epochs,
                batch_size=batch_size or settings.batch.stage2_training,
                lr=lr,
                seed=seed,
                device=torch_device,
                input_size=input_size,
                crop_size=crop,
                pretrained=weights,
                patience=patience,
                bf16=bf16,
                augment=augment.value,
                progress=_epoch_reporter(progress, "epochs", epochs),
            )
        columns = ("train_loss", "val_loss", "val_accuracy", "val_macro_f1", "seconds")
        console.print(history_table(result.history, columns))
        folder = settings.models_dir / model_folder_name("stage2", architecture.value)
        card = result.save(folder)
        evaluation = Evaluation(result.metrics, result.validation_labels, result.validation_probs)
        _report(database, folder, card, evaluation)
