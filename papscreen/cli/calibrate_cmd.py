"""``papscreen models calibrate-int8 MODEL DATASET``: make a saved stage-2 model usable at int8 precision.

int8 inference needs a calibration (activation ranges observed on training crops) saved beside the fp32 weights.
This command calibrates on a random sample of the dataset's training crops, checks the int8 network against fp32
on the whole validation split (agreement of the predicted class, macro-F1 change), and only when the check passes
attaches the calibration to the model's folder. The weights are never rewritten, so the model keeps its registry
entry (the registry knows a model by its weights' sha256).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.table import Table
from sklearn.metrics import f1_score

from papscreen.cli.common import console, err_console, fail_cleanly, progress_bar, settings_from
from papscreen.cli.model_refs import MODEL_REF_HELP, resolve_model_ref
from papscreen.datasets.layout import DatasetIndex, Sample, read_dataset
from papscreen.errors import CheckpointError, DatasetError
from papscreen.imaging.image_io import read_rgb
from papscreen.models.card import read_card
from papscreen.models.checkpoints import resolve_card_path
from papscreen.models.quantize import activation_bits, float_layers, int8_available, prediction_agreement
from papscreen.models.stage2 import Stage2Classifier

__all__ = ["CheckResult", "Observer", "calibrate_int8", "parse_keep_float"]


class Observer(StrEnum):
    """histogram: ranges that minimise rounding error (slower to calibrate); minmax: the observed extremes."""

    histogram = "histogram"
    minmax = "minmax"


@dataclass(frozen=True)
class CheckResult:
    """int8 against fp32 on the validation split, and whether that meets the bars."""

    crops: int
    agreement: float
    f1_fp32: float
    f1_int8: float
    min_agreement: float
    max_f1_loss: float

    @property
    def f1_change(self) -> float:
        """int8 macro-F1 minus fp32 macro-F1 (negative: int8 is worse)."""
        return self.f1_int8 - self.f1_fp32

    @property
    def failures(self) -> list[str]:
        """Why the check fails, one phrase per bar missed; empty when it passes."""
        reasons = []
        if not self.agreement >= self.min_agreement:
            reasons.append(f"agreement {self.agreement:.2%} is below {self.min_agreement:.2%}")
        if not math.isfinite(self.f1_change):
            reasons.append("macro-F1 is undefined on this validation split")
        elif -self.f1_change > self.max_f1_loss:
            reasons.append(f"macro-F1 fell by {-self.f1_change:.4f}, more than {self.max_f1_loss:.4f}")
        return reasons

    def card_entry(self) -> dict[str, float | int]:
        """What the model card records of the check (beside the calibration it checked)."""
        return {"agreement": self.agreement, "macro_f1_change": self.f1_change, "validation_crops": self.crops}


def parse_keep_float(text: str | None, classifier: Stage2Classifier) -> tuple[str, ...]:
    """Module names to keep in float: ``conv1,fc`` as given (empty: none), or the network's default two.

    The default is spelt out (not left ``None``) so the calibration file records exactly which layers it was
    made for.

    Raises:
        CheckpointError: a name the network lacks (the message lists what it has at the top level).

    Examples:
        >>> from papscreen.models.backbones import build_stage2_network
        >>> from papscreen.models.stage2 import stage2_card
        >>> classifier = Stage2Classifier(build_stage2_network("resnet18"), stage2_card("resnet18", input_size=32))
        >>> parse_keep_float(None, classifier), parse_keep_float(" conv1, layer4 ", classifier)
        (('conv1', 'fc'), ('conv1', 'layer4'))
    """
    if text is None:
        return float_layers(classifier.network)
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    modules = dict(classifier.network.named_modules())
    unknown = [name for name in names if name not in modules]
    if unknown:
        top = ", ".join(name for name, _ in classifier.network.named_children())
        raise CheckpointError(
            Path(classifier.card.name or "model"),
            f"--keep-float names modules this {classifier.architecture} lacks: {', '.join(unknown)} (it has {top})",
        )
    return names


def _sample_training_crops(index: DatasetIndex, count: int, seed: int) -> tuple[Sample, ...]:
    """``count`` training crops drawn uniformly at random without replacement (all of them when fewer)."""
    train = index.splits.get("train", ())
    if not train:
        raise DatasetError(index.root, "no training crops to calibrate on (int8 is calibrated on training crops)")
    if count >= len(train):
        return tuple(train)
    chosen = np.random.default_rng(seed).choice(len(train), size=count, replace=False)
    return tuple(train[i] for i in sorted(chosen))


def _read_crops(samples: Sequence[Sample], progress: Callable[[str, int, int], None]) -> list[np.ndarray]:
    crops = []
    for done, sample in enumerate(samples, 1):
        crops.append(read_rgb(sample.path))
        if done % 32 == 0 or done == len(samples):
            progress("reading training crops", done, len(samples))
    return crops


def _check(
    fp32: Stage2Classifier,
    int8: Stage2Classifier,
    index: DatasetIndex,
    *,
    batch_size: int,
    min_agreement: float,
    max_f1_loss: float,
    progress: Callable[[str, int, int], None],
) -> CheckResult:
    """Both precisions on the whole validation split, each crop decoded once (memory bounded by the batch)."""
    samples = index.splits.get("validation", ())
    if not samples:
        raise DatasetError(index.root, "no validation crops to check int8 on (use --no-check to skip the check)")
    classes = fp32.classes
    unknown = sorted({s.label for s in samples} - set(classes))
    if unknown:
        raise DatasetError(index.root, f"labels {unknown} are not classes of this model ({list(classes)})")
    y_true = np.array([classes.index(s.label) for s in samples], np.int64)
    probs_fp32, probs_int8 = [], []
    for start in range(0, len(samples), batch_size):
        crops = [read_rgb(s.path) for s in samples[start : start + batch_size]]
        probs_fp32.append(fp32.predict_proba(crops, batch_size))
        probs_int8.append(int8.predict_proba(crops, batch_size))
        progress("checking on validation", min(start + batch_size, len(samples)), len(samples))
    p_fp32, p_int8 = np.concatenate(probs_fp32), np.concatenate(probs_int8)
    labels = list(range(len(classes)))

    def macro_f1(probs: np.ndarray) -> float:
        # As papscreen.models.metrics: classes with an undefined F1 are left out of the mean.
        return float(f1_score(y_true, probs.argmax(axis=1), labels=labels, average="macro", zero_division=np.nan))

    return CheckResult(
        crops=len(samples),
        agreement=prediction_agreement(p_fp32, p_int8),
        f1_fp32=macro_f1(p_fp32),
        f1_int8=macro_f1(p_int8),
        min_agreement=min_agreement,
        max_f1_loss=max_f1_loss,
    )


def _check_table(result: CheckResult, title: str) -> Table:
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value", justify="right")
    verdict = "[bold green]passes[/]" if not result.failures else "[bold red]fails[/]"
    rows = (
        ("validation crops", str(result.crops)),
        ("agreement with fp32", f"{result.agreement:.2%} (min {result.min_agreement:.2%})"),
        ("macro-F1 fp32", f"{result.f1_fp32:.4f}"),
        ("macro-F1 int8", f"{result.f1_int8:.4f}"),
        ("macro-F1 change", f"{result.f1_change:+.4f} (max loss {result.max_f1_loss:.4f})"),
        ("activation bits", str(activation_bits())),
        ("verdict", verdict),
    )
    for row in rows:
        table.add_row(*row)
    return table


def calibrate_int8(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help=MODEL_REF_HELP)],
    dataset: Annotated[Path, typer.Argument(help="The model's DB_4 folder: train crops calibrate, validation checks.")],
    crops: Annotated[int, typer.Option("--crops", min=1, help="Training crops to calibrate on (random sample).")] = 512,
    seed: Annotated[int, typer.Option("--seed", help="Seeds the sample of training crops.")] = 0,
    keep_float: Annotated[
        str | None,
        typer.Option(
            "--keep-float", help="Comma-separated modules left in float (default: first conv and last linear)."
        ),
    ] = None,
    observer: Annotated[Observer, typer.Option("--observer", help="Activation range observer.")] = Observer.histogram,
    replace: Annotated[bool, typer.Option("--replace", help="Replace a calibration already attached.")] = False,
    check: Annotated[
        bool, typer.Option("--check/--no-check", help="Compare int8 with fp32 on validation before saving.")
    ] = True,
    min_agreement: Annotated[
        float, typer.Option("--min-agreement", help="Least share of validation crops whose class int8 keeps.")
    ] = 0.99,
    max_f1_loss: Annotated[
        float, typer.Option("--max-f1-loss", help="Largest macro-F1 drop from fp32 to int8 accepted.")
    ] = 0.005,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", min=1, help="Crops per forward pass (default: the CPU setting).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Save the calibration even when the check fails.")] = False,
) -> None:
    """Calibrate a saved stage-2 model for int8 (CPU) inference, check it against fp32, and save it beside the weights.

    Exit 0: saved; 1: the check failed and nothing was saved; 2: unusable model, dataset or options.
    """
    settings = settings_from(ctx)
    batch = batch_size or settings.batch.stage2_for("cpu")
    with fail_cleanly():
        folder = resolve_model_ref(ctx, model)
        card_path = resolve_card_path(folder)
        card = read_card(card_path)
        if card.stage != "stage2":
            raise CheckpointError(
                card_path, f"this is a {card.stage} model; int8 calibration is for stage-2 (Bethesda) classifiers"
            )
        if not int8_available():
            raise CheckpointError(card_path, "this torch build has no x86 quantized engine: int8 cannot run here")
        index = read_dataset(dataset)
        if index.kind != "DB_4":
            raise DatasetError(dataset, f"a stage-2 model is calibrated on a DB_4 dataset, not a {index.kind}")
        fp32 = Stage2Classifier.from_checkpoint(folder)
        existing = fp32.card.architecture_options.get("int8_calibration")
        if existing and not replace:
            raise CheckpointError(folder, "an int8 calibration is already attached; pass --replace to renew it")
        kept = parse_keep_float(keep_float, fp32)
        samples = _sample_training_crops(index, crops, seed)
        err_console.print(
            f"calibrating {card.name} on {len(samples)} of {len(index.splits['train'])} training crops "
            f"({observer.value} observers; float: {', '.join(kept) or 'none'})"
        )
        with progress_bar() as progress:
            images = _read_crops(samples, progress)
            int8 = fp32.calibrate_int8(images, batch_size=batch, observer=observer.value, keep_float=kept)
            del images
            result = None
            if check:
                result = _check(
                    fp32,
                    int8,
                    index,
                    batch_size=batch,
                    min_agreement=min_agreement,
                    max_f1_loss=max_f1_loss,
                    progress=progress,
                )
        if result is not None:
            console.print(_check_table(result, f"int8 against fp32: {card.name} on {dataset.name} (validation)"))
            if result.failures and not force:
                err_console.print(
                    f"[bold red]int8 check failed:[/] {'; '.join(result.failures)}. Nothing was saved: keep fp32 "
                    "or bf16, try other --keep-float layers or more --crops, or pass --force to save it anyway.",
                    soft_wrap=True,
                )
                raise typer.Exit(1)
            if result.failures:
                err_console.print(f"[yellow]saving despite a failed check (--force):[/] {'; '.join(result.failures)}")
        int8.attach_int8_calibration(folder, replace=replace, checked=None if result is None else result.card_entry())
    console.print(
        f"saved the int8 calibration to {card_path.parent}; the weights are unchanged. "
        f"Use it with --precision int8 (e.g. `papscreen evaluate {model} DATASET --precision int8`)."
    )
