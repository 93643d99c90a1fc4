"""papscreen's one settings object.

Settings come, highest priority first, from keyword arguments, ``PAPSCREEN_*`` environment variables
(nested groups with ``__``, e.g. ``PAPSCREEN_SCHEDULES__RETRAIN_CRON``), an optional TOML file
(``--config FILE`` or ``PAPSCREEN_CONFIG``), then the defaults below. They are built once in an entry point
(command line, flow, dashboard) with :func:`load_settings` and passed down; nothing reads them at import time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from papscreen.bethesda import BETHESDA_CLASSES, DEFAULT_EXTRA_LABEL_MAP
from papscreen.errors import ConfigError

__all__ = [
    "AnalysisSettings",
    "BatchSettings",
    "DashboardSettings",
    "GradingSettings",
    "IntakeSettings",
    "LabelSettings",
    "LimitSettings",
    "OrchestrationSettings",
    "RetrainSettings",
    "ScheduleSettings",
    "Settings",
    "ValidationSettings",
    "load_settings",
    "masked_url",
]

CONFIG_FILE_ENV = "PAPSCREEN_CONFIG"
DEFAULT_HOME = Path("~/.papscreen")
SCAN_PATTERNS = ("*.jpg", "*.jpeg", "*.png", "*.tif", "*.tiff", "*.bmp", "*.svs", "*.ndpi", "*.mrxs")


class BatchSettings(BaseModel):
    """Batch sizes; the defaults suit a 2-core CPU, raise them on a GPU."""

    stage1_tiles: int = Field(4, ge=1, description="Tiles per stage-1 forward pass.")
    stage2_inference: int = Field(32, ge=1, description="Cell crops per stage-2 forward pass on a CPU.")
    stage2_inference_gpu: int = Field(
        256, ge=1, description="Cell crops per stage-2 forward pass on a GPU (256 kept an H200 busy with ResNet50)."
    )
    stage2_training: int = Field(16, ge=1, description="Cell crops per stage-2 training step.")

    def stage2_for(self, device_type: str) -> int:
        """Stage-2 inference batch for a device type (``cuda`` or ``cpu``).

        Examples:
            >>> BatchSettings().stage2_for("cuda"), BatchSettings().stage2_for("cpu")
            (256, 32)
        """
        return self.stage2_inference_gpu if device_type == "cuda" else self.stage2_inference


class LabelSettings(BaseModel):
    """How Bethesda labels outside the 4-class scheme are counted."""

    extra_label_map: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_EXTRA_LABEL_MAP),
        description="Extra Bethesda label -> one of NILM, LSIL, HSIL, SCC. Labels not listed are skipped.",
    )

    @field_validator("extra_label_map")
    @classmethod
    def _targets_are_classes(cls, value: dict[str, str]) -> dict[str, str]:
        bad = {k: v for k, v in value.items() if v.upper() not in BETHESDA_CLASSES}
        if bad:
            raise ValueError(f"targets must be one of {', '.join(BETHESDA_CLASSES)}; got {bad}")
        return {k: v.upper() for k, v in value.items()}


class ScheduleSettings(BaseModel):
    """When the service's flows run."""

    intake_interval_seconds: int = Field(
        10, ge=1, description="How often the intake watcher looks for work (a flow run starts only when there is some)."
    )
    intake_sweep_seconds: int = Field(
        300, ge=10, description="How often work a pass could not clear (slides waiting for a champion) is tried again."
    )
    retrain_cron: str = Field("0 2 * * *", description="Nightly retraining (cron, in `timezone`).")
    validate_cron: str = Field("0 5 * * *", description="Validation of the champions, after retraining.")
    timezone: str = Field("UTC", description="Time zone of the cron schedules.")


class IntakeSettings(BaseModel):
    """How the watched folder is read."""

    patterns: list[str] = Field(default_factory=lambda: list(SCAN_PATTERNS), description="Glob patterns of scans.")
    recursive: bool = Field(True, description="Look into sub-folders of the intake folder.")
    settle_seconds: float = Field(
        5.0,
        ge=0,
        description="A file has arrived when neither its content nor its metadata changed this long (mtime and "
        "ctime), or at once when a NAME.done marker is beside it.",
    )
    retry_seconds: float = Field(
        30.0,
        gt=0,
        description="After a failure that may pass (a full disk), wait this long before trying the file again; "
        "the wait doubles with each failure in a row.",
    )
    retry_max_seconds: float = Field(3600.0, gt=0, description="The longest wait between two tries of one file.")


class OrchestrationSettings(BaseModel):
    """How the Prefect flows run: where analyses go, how transient failures are retried, leases, ports."""

    dispatch: Literal["inline", "deployment"] = Field(
        "inline",
        description="inline: the intake analyses what it ingested in its own process (one host); deployment: it "
        "starts the analyze-slide deployment with run_deployment, so every worker of the work pool shares the load.",
    )
    analyze_deployment: str = Field(
        "analyze-slide/analyze-slide", description="FLOW/DEPLOYMENT that run_deployment starts in deployment mode."
    )
    compute_limit: str = Field(
        "gpu", description="Global concurrency limit every analysis holds a slot of (one GPU is never shared)."
    )
    compute_slots: int = Field(1, ge=1, description="Slots of the compute limit (analyses at once, per GPU).")
    task_retries: int = Field(4, ge=0, le=20, description="Retries of a task after a transient failure.")
    retry_delays_seconds: list[float] = Field(
        default_factory=lambda: [5.0, 15.0, 45.0, 120.0],
        description="Back-off between retries (the last repeats); transient: database unreachable, CUDA memory.",
    )
    lease_seconds: float = Field(
        600.0, ge=5, description="An analysis renews its slide's lease; a slide whose lease ran out is queued again."
    )
    intake_batch: int = Field(100, ge=1, description="Most files one intake pass ingests (the rest wait a pass).")
    max_attempts: int = Field(
        3,
        ge=1,
        le=20,
        description="Analyses of one slide that may be interrupted (worker killed, lease run out) before the slide is "
        "quarantined with its last error instead of being queued again.",
    )
    intake_lock_seconds: float = Field(
        900.0,
        ge=5,
        description="One intake pass ingests at a time (the service's, `intake --once`, other hosts'): it holds a "
        "lock in the database for this long, renewed at every file. A lock whose holder died is taken over when it "
        "runs out, at once when the holder was a process of this host.",
    )
    prefect_port: int = Field(4200, ge=1, le=65535, description="Port of the local Prefect server `up` starts.")
    dashboard_port: int = Field(8501, ge=1, le=65535, description="Port of the dashboard `up` starts.")

    def retry_delays(self) -> list[float]:
        """One delay per retry (the last configured delay repeats).

        Examples:
            >>> OrchestrationSettings(task_retries=3, retry_delays_seconds=[1, 2]).retry_delays()
            [1.0, 2.0, 2.0]
        """
        delays = [float(d) for d in self.retry_delays_seconds] or [0.0]
        return [delays[min(i, len(delays) - 1)] for i in range(self.task_retries)]


class RetrainSettings(BaseModel):
    """What the nightly retraining trains, and the gate a challenger must pass to become champion."""

    stage1_architecture: str = Field("cnn20plus", description="Stage-1 network (cnn20plus or cnn20).")
    stage1_epochs: int = Field(30, ge=1, description="Most stage-1 epochs (early stopping may end sooner).")
    stage2_architecture: str = Field("resnet50", description="Stage-2 backbone (resnet50, resnet18, mobilenet...).")
    stage2_mode: Literal["frozen", "finetune"] = Field("frozen", description="Head on cached features, or all.")
    stage2_epochs: int = Field(100, ge=1, description="Most stage-2 epochs (early stopping may end sooner).")
    stage2_input_size: int = Field(160, ge=32, le=512, description="Side the stage-2 crops are resized to.")
    stage2_crop_size: int | None = Field(None, ge=16, description="Crop window, px (None: the dataset's).")
    stage2_pretrained: str | None = Field(
        None, description="ImageNet weights: a file, 'auto' (torch hub cache, never a download) or None (random)."
    )
    seed: int = Field(0, description="Seeds initialisation, sampling and augmentation.")
    include_reviewed_cells: bool = Field(True, description="Add reviewer-corrected cells to stage 2's training set.")
    reviewed_cells_need_signout: bool = Field(
        True, description="Only corrections on signed-out slides reach training (not quick exploratory ones)."
    )
    max_sensitivity_drop: float = Field(
        0.02, ge=0, le=1, description="Most HSIL and SCC sensitivity a challenger may lose against the champion."
    )
    stale_run_hours: float = Field(
        12.0, gt=0, description="A run still 'running' after this long is taken as crashed (it no longer blocks)."
    )
    promotion_policy: Literal["approve", "auto"] = Field(
        "approve",
        description="approve: a challenger that passes the gate waits on the Models page for an admin's approval; "
        "auto: it replaces the champion at once. The first model of a stage with no champion is promoted either way.",
    )
    min_validation_samples: int = Field(
        200, ge=1, description="The gate decides nothing on fewer validation patches or crops: no promotion."
    )


class ValidationSettings(BaseModel):
    """The nightly re-evaluation of the champions and the drift check."""

    reference_dir: Path | None = Field(
        None, description="Fixed reference set (a DB_4 folder) scored every night (default: DATA_DIR/reference)."
    )
    drift_window_slides: int = Field(50, ge=1, description="Recent analysed slides compared with validation.")
    drift_threshold: float = Field(
        0.2, gt=0, description="Population stability index above which a distribution counts as drifted."
    )


class DashboardSettings(BaseModel):
    """The Streamlit dashboard: sign-in, how fresh its figures are, where Prefect's UI is."""

    users_file: Path | None = Field(
        None, description="Users and bcrypt password hashes (default: HOME/users.toml); absent: open access."
    )
    cache_ttl_seconds: float = Field(5.0, ge=0, description="How long a query's answer is reused.")
    refresh_seconds: float = Field(10.0, ge=1, description="How often live parts (worklist, intake) refresh.")
    prefect_ui_url: str | None = Field(
        None, description="Prefect UI for links to flow runs (default: from PREFECT_API_URL, else the local server)."
    )
    address: str = Field(
        "127.0.0.1",
        description="Interface the dashboard listens on; anything but loopback is refused while it has no users.",
    )
    open_access_on_network: bool = Field(
        False,
        description="Let a dashboard without users listen beyond loopback; only where the port is reachable from "
        "this machine alone (Compose sets it: the container's port is published on the host's 127.0.0.1).",
    )
    session_hours: float = Field(
        12.0, gt=0, le=24 * 30, description="How long a sign-in lasts across reloads and tabs (a signed cookie)."
    )
    signout_requires_gallery: bool = Field(
        True, description="Sign-out only after the dashboard has shown the signer the slide's whole gallery."
    )


class LimitSettings(BaseModel):
    """Limits that keep a bad or hostile file from exhausting the machine."""

    max_file_bytes: int = Field(20 * 1024**3, ge=1, description="Largest scan accepted, in bytes.")
    max_image_pixels: int = Field(
        250_000_000, ge=1, description="Largest plain (non-pyramidal) image decoded whole, in pixels."
    )


class AnalysisSettings(BaseModel):
    """How a scan is read and run through the two stages (memory, overlap of reading and compute, outputs)."""

    tile_px: int = Field(
        2048, ge=256, le=8192, description="Side of a stage-1 tile at the pyramid level read, context included."
    )
    crop_block_px: int = Field(
        1024, ge=128, le=8192, description="Level-0 block read at once to cut the stage-2 crops of its cells."
    )
    reader_threads: int = Field(
        0, ge=0, le=32, description="Threads reading and cutting crops ahead of compute; 0: half the CPU cores, 2 to 4."
    )
    queue_depth: int = Field(4, ge=1, le=64, description="Tiles or crop batches read ahead at most (bounds memory).")
    precision: Literal["auto", "fp32", "bf16", "int8"] = Field(
        "auto", description="Stage-2 inference; auto: bf16 on a GPU or a CPU with native bf16, else fp32."
    )
    skip_blank_tiles: bool = Field(True, description="Skip tiles with no stained material (mostly empty glass).")
    overlay_max_side: int = Field(2048, ge=64, le=16384, description="Longer side of the overlay thumbnail, px.")
    gallery_size: int = Field(
        30, ge=0, le=500, description="Most suspicious cells in the gallery, across classes, each nucleus once."
    )
    time_limit_seconds: float = Field(
        3600.0,
        ge=1,
        description="Longest one analysis may run; a scan that takes longer is quarantined with the reason (a scan "
        "that cannot be analysed in time must not hold the compute slot).",
    )

    def reader_threads_here(self) -> int:
        """The reader threads to start on this machine (``reader_threads``, or half the cores, 2 to 4, for 0).

        More than 4 was measured to gain little on a 16-core GPU worker (4.2 s against 4.5 s for a slide) while
        each thread's allocations add to the process's peak memory.

        Examples:
            >>> AnalysisSettings(reader_threads=3).reader_threads_here()
            3
            >>> 2 <= AnalysisSettings().reader_threads_here() <= 4
            True
        """
        if self.reader_threads:
            return self.reader_threads
        return max(2, min(4, (os.cpu_count() or 2) // 2))


class GradingSettings(BaseModel):
    """How cell grades become a slide's category and adequacy (thresholds a lab tunes to its own validation)."""

    min_probability: float = Field(
        0.9, gt=0, lt=1, description="Probability of 'this grade or worse' a cell needs to support a grade."
    )
    min_cells: dict[str, int] = Field(
        default_factory=lambda: {"LSIL": 10, "HSIL": 10, "SCC": 8},
        description="Cells supporting a grade (or worse) needed for the slide to take that grade.",
    )
    abnormal_top_k: int = Field(10, ge=1, description="The abnormal score is the mean suspicion of this many cells.")
    min_cells_field: int = Field(
        10, ge=0, description="A single field with fewer squamous cells than this is unsatisfactory."
    )
    min_cells_slide: int = Field(
        5000, ge=0, description="A whole slide with fewer squamous cells than this is unsatisfactory (Bethesda 2014)."
    )

    @field_validator("min_cells")
    @classmethod
    def _grades_are_abnormal_classes(cls, value: dict[str, int]) -> dict[str, int]:
        upper = {k.upper(): int(v) for k, v in value.items()}
        bad = sorted(set(upper) - {"LSIL", "HSIL", "SCC"})
        if bad:
            raise ValueError(f"grades must be LSIL, HSIL or SCC; got {', '.join(bad)}")
        if any(v < 1 for v in upper.values()):
            raise ValueError("each grade needs at least 1 supporting cell")
        return upper


SECRET_QUERY_KEYS = ("password", "passwd", "pwd", "secret", "token", "sslpassword", "sslkey")
"""Query parameters of a database URL whose values are secrets (``?password=...`` is as valid as ``user:pw@``)."""


def masked_url(url: Any) -> str:
    """A database URL to show: the password and every secret query parameter replaced by ``***``.

    Examples:
        >>> masked_url("postgresql://lab:s3cret@db/papscreen?sslmode=require")
        'postgresql://lab:***@db/papscreen?sslmode=require'
        >>> masked_url("postgresql://lab@db/papscreen?password=s3cret")
        'postgresql://lab@db/papscreen?password=***'
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, TypeError, ValueError):
        return "(a database URL that cannot be parsed)"
    hidden = {k: "***" for k in parsed.query if any(word in k.lower() for word in SECRET_QUERY_KEYS)}
    return parsed.update_query_dict(hidden).render_as_string(hide_password=True).replace("%2A%2A%2A", "***")


class Settings(BaseSettings):
    """Everything an operator may configure. Build with :func:`load_settings`.

    Examples:
        >>> s = Settings(home="/tmp/lab")
        >>> str(s.intake_dir)
        '/tmp/lab/intake'
        >>> s.database_url
        'sqlite:////tmp/lab/papscreen.db'
    """

    model_config = SettingsConfigDict(
        env_prefix="PAPSCREEN_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    home: Path = Field(DEFAULT_HOME, description="Root folder for papscreen's files.")
    intake_dir: Path | None = Field(None, description="Watched folder for new scans (default: HOME/intake).")
    store_dir: Path | None = Field(None, description="Where ingested scans are kept (default: HOME/store).")
    quarantine_dir: Path | None = Field(None, description="Where bad files go (default: HOME/quarantine).")
    models_dir: Path | None = Field(None, description="Model weights and cards (default: HOME/models).")
    data_dir: Path | None = Field(None, description="Training data, DB_3 and DB_4 (default: HOME/data).")
    results_dir: Path | None = Field(
        None, description="Overlays, galleries and exports of each analysis (default: HOME/results)."
    )
    database_url: str | None = Field(
        None, description="SQLAlchemy URL (default: SQLite file HOME/papscreen.db); postgresql+psycopg2://..."
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where models run; auto picks CUDA if present.")
    batch: BatchSettings = Field(default_factory=BatchSettings)
    labels: LabelSettings = Field(default_factory=LabelSettings)
    schedules: ScheduleSettings = Field(default_factory=ScheduleSettings)
    intake: IntakeSettings = Field(default_factory=IntakeSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    analysis: AnalysisSettings = Field(default_factory=AnalysisSettings)
    grading: GradingSettings = Field(default_factory=GradingSettings)
    orchestration: OrchestrationSettings = Field(default_factory=OrchestrationSettings)
    retrain: RetrainSettings = Field(default_factory=RetrainSettings)
    validation: ValidationSettings = Field(default_factory=ValidationSettings)
    dashboard: DashboardSettings = Field(default_factory=DashboardSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments, then environment, then the TOML file (if one was given), then defaults."""
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls), file_secret_settings)

    @model_validator(mode="after")
    def _derive_paths(self) -> Settings:
        self.home = self.home.expanduser().resolve()
        for name, default in (
            ("intake_dir", "intake"),
            ("store_dir", "store"),
            ("quarantine_dir", "quarantine"),
            ("models_dir", "models"),
            ("data_dir", "data"),
            ("results_dir", "results"),
        ):
            value = getattr(self, name)
            setattr(self, name, (self.home / default) if value is None else value.expanduser().resolve())
        reference = self.validation.reference_dir
        self.validation.reference_dir = (
            self.data_dir / "reference" if reference is None else reference.expanduser().resolve()  # type: ignore[operator]
        )
        users = self.dashboard.users_file
        self.dashboard.users_file = self.home / "users.toml" if users is None else users.expanduser().resolve()
        if self.database_url is None:
            self.database_url = f"sqlite:///{self.home / 'papscreen.db'}"
        try:
            url = make_url(self.database_url)
        except ArgumentError as e:
            raise ValueError(f"database_url is not a valid SQLAlchemy URL: {e}") from e
        if url.drivername == "postgresql":  # SQLAlchemy's default driver is not installed; psycopg2 is
            self.database_url = url.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
        return self

    def folders(self) -> dict[str, Path]:
        """The folders papscreen writes to, by setting name."""
        return {
            "home": self.home,
            "intake_dir": self.intake_dir,
            "store_dir": self.store_dir,
            "quarantine_dir": self.quarantine_dir,
            "models_dir": self.models_dir,
            "data_dir": self.data_dir,
            "results_dir": self.results_dir,
        }  # type: ignore[return-value]

    def ensure_folders(self) -> None:
        """Create every folder papscreen writes to; harmless when they exist."""
        for path in self.folders().values():
            path.mkdir(parents=True, exist_ok=True)

    def masked(self) -> dict[str, Any]:
        """The effective settings as plain data, with the database password hidden."""
        data = self.model_dump(mode="json")
        data["database_url"] = masked_url(self.database_url)
        return data

    def __repr_args__(self) -> Any:
        """The repr (in logs, tracebacks, Prefect's task inputs) never shows the database password."""
        for name, value in super().__repr_args__():
            yield name, masked_url(value) if name == "database_url" and value else value


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build the settings once, for an entry point to pass down.

    Args:
        config_file: optional TOML file; when ``None``, ``PAPSCREEN_CONFIG`` may name one.
        **overrides: values that win over every other source (used by tests and the CLI).

    Raises:
        ConfigError: the file is missing or unreadable, or a value is invalid; the message says which.

    Examples:
        >>> load_settings(home="/tmp/lab", device="cpu").device
        'cpu'
    """
    path = config_file if config_file is not None else os.environ.get(CONFIG_FILE_ENV)
    settings_cls: type[Settings] = Settings
    if path:
        path = Path(path).expanduser()
        if not path.is_file():
            raise ConfigError(f"settings file {path} does not exist (given by --config or {CONFIG_FILE_ENV})")

        class FileSettings(Settings):
            model_config = SettingsConfigDict(**{**Settings.model_config, "toml_file": path})

        settings_cls = FileSettings
    try:
        return settings_cls(**overrides)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'settings'}: {err['msg']}" for err in e.errors())
        raise ConfigError(f"invalid settings: {problems}") from e
    except ValueError as e:  # a TOML syntax error surfaces as tomllib.TOMLDecodeError
        raise ConfigError(f"cannot read settings file {path}: {e}") from e
