"""``papscreen train real DATA_DIR``: the real-data recipe, both stages and the field verdict, in one seeded command.

It trains what ``benchmarks/real_accuracy.py`` cross-validates, on all the annotated fields, saves both models
(stage 2 carrying its field scorer) into the models folder and registers them as candidates.
"""

from __future__ import annotations

import dataclasses
import json
from contextlib import ExitStack
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from papscreen.cli.common import console, err_console, fail_cleanly, optional_database, settings_from
from papscreen.cli.models_cmd import announce_saved_model
from papscreen.cli.train_cmd import Stage2Augment
from papscreen.errors import PapscreenError
from papscreen.models.checkpoints import model_folder_name
from papscreen.models.device import bf16_supported, describe_machine, resolve_device
from papscreen.models.real_cv import FieldRecipe, Stage1Recipe, Stage2Recipe
from papscreen.models.real_recipe import train_real_models
from papscreen.models.shipped import next_shipped_version, write_shipped_models

__all__ = ["NegativeSource", "train_real"]


class NegativeSource(StrEnum):
    """Where ``--hard-negatives`` are taken from (docs/experiments.md, runs 3 and 6)."""

    all = "all"
    normal = "normal"


def _cross_validation(path: Path | None) -> dict[str, Any] | None:
    """The summary and recipe of a cross-validation run (``results.json`` of benchmarks/real_accuracy.py)."""
    if path is None:
        return None
    try:
        results = json.loads(path.read_text())
        summary = results["summary"]
        return {
            "summary": summary,
            "recipe": results.get("recipes"),
            "machine": results.get("machine"),
            "source": path.name,
        }
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise PapscreenError(f"{path}: not a results.json of benchmarks/real_accuracy.py ({e})") from e


RECIPE_STAGE1 = Stage1Recipe(
    snap_radius_px=15.0,
    snap_sigma_px=6.0,
    min_distance_px=10.0,
    use_proposals=True,
    proposal_min_score=0.99,
    proposal_min_diameter_px=12.0,
)
"""Stage 1 of the recipe: cnn20plus at 1/3 scale, snapped to the nucleus, colour proposals of 12 px and more."""

RECIPE_STAGE2 = Stage2Recipe(
    architecture="resnet18_half",
    input_size=96,
    crop_size=144,
    epochs=25,
    augment="robust",
    balance="sampler",
    bf16=True,
)
"""Stage 2 of the recipe: half-width ResNet18 from scratch, 144 px crops (the whole of most cells) at 96 px
(docs/experiments.md, run 5), robust augmentation (stain, grayscale, scale, defocus, JPEG: docs/experiments.md,
"Robustness to another lab's look"), every class drawn equally often (docs/experiments.md, run 4); bf16 autocast
where the hardware runs it natively (a GPU, a CPU with AVX-512 BF16 or AMX), fp32 elsewhere."""


def train_real(
    ctx: typer.Context,
    data_dir: Annotated[Path, typer.Argument(help="Folder holding cric-dev/ (images/ and labels.csv).")],
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Stage-2 epochs at most.")] = RECIPE_STAGE2.epochs,
    augment: Annotated[
        Stage2Augment, typer.Option("--augment", help="Stage-2 augmentation; robust: wider, with JPEG and grayscale.")
    ] = Stage2Augment.robust,
    hard_negatives: Annotated[
        int,
        typer.Option(
            "--hard-negatives", min=0, help="Stage-1 detections per field far from every annotated nucleus, as NILM."
        ),
    ] = RECIPE_STAGE2.hard_negatives_per_field,
    hard_negatives_from: Annotated[
        NegativeSource,
        typer.Option(
            "--hard-negatives-from", help="all: every field; normal: only fields whose annotated nuclei are all NILM."
        ),
    ] = NegativeSource.all,
    field_sensitivity: Annotated[
        float,
        typer.Option("--field-sensitivity", min=0.5, max=1.0, help="Share of abnormal validation fields flagged."),
    ] = FieldRecipe.min_sensitivity,
    work: Annotated[
        Path | None, typer.Option("--work", help="Scratch folder for crops and DB_3 (default: under HOME).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seeds the split, initialisation and augmentation.")] = 0,
    device: Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = None,
    register: Annotated[bool, typer.Option("--register/--no-register", help="Register both as candidates.")] = True,
    ship: Annotated[
        Path | None,
        typer.Option("--ship", help="Also pack both as papscreen's shipped models into this folder (maintainers)."),
    ] = None,
    cv_results: Annotated[
        Path | None,
        typer.Option("--cv-results", help="results.json of the recipe's cross-validation, put on shipped cards."),
    ] = None,
) -> None:
    """Train both stages on real annotated fields with the documented recipe, and set the field verdict.

    The recipe and what it measures in cross-validation are in docs/experiments.md.
    """
    settings = settings_from(ctx)
    with fail_cleanly(), ExitStack() as stack:
        database = stack.enter_context(optional_database(ctx, register))
        torch_device = resolve_device(device or settings.device)
        err_console.print(f"training the real-data recipe on {data_dir} ({describe_machine(torch_device)})")
        bf16 = RECIPE_STAGE2.bf16 and bf16_supported(torch_device)  # emulated bf16 is slower than fp32
        stage2 = dataclasses.replace(
            RECIPE_STAGE2,
            epochs=epochs,
            augment=augment.value,
            bf16=bf16,
            hard_negatives_per_field=hard_negatives,
            hard_negative_source=hard_negatives_from.value,
        )
        models = train_real_models(
            data_dir,
            work or settings.home / "work" / "train-real",
            RECIPE_STAGE1,
            stage2,
            FieldRecipe(min_sensitivity=field_sensitivity),
            seed=seed,
            device=torch_device,
            log=err_console.print,
        )
        s1 = models.stage1
        folder1 = settings.models_dir / model_folder_name("stage1", s1.detector.architecture)
        card1 = s1.detector.to_checkpoint(folder1, s1.metrics, s1.dataset_fingerprint, s1.training)
        announce_saved_model(database, folder1, card1, actor="papscreen train real")
        folder2 = settings.models_dir / model_folder_name("stage2", stage2.architecture)
        card2 = models.stage2.save(folder2)
        announce_saved_model(database, folder2, card2, actor="papscreen train real")
        if ship is not None:
            shipped = write_shipped_models(
                {"stage1": folder1, "stage2": folder2},
                ship,
                version=next_shipped_version(ship, datetime.now(UTC).strftime("%Y.%m.%d")),
                cross_validation=_cross_validation(cv_results),
            )
            console.print(f"shipped models written to {ship}: {', '.join(c.name for c in shipped.values())}")
        point = models.operating_point
        console.print(
            f"field verdict: top {models.scorer.top_k} cells, threshold {point.threshold:.3f}: sensitivity "
            f"{point.sensitivity:.2f}, specificity {point.specificity:.2f} on {point.fields} validation fields; "
            f"{models.seconds / 60:.1f} min"
        )
