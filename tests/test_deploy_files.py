"""The deployment files declare what the service needs: compose services, Prefect deployments, the image.

Docker is not needed: the files are parsed, not run. prefect.yaml is checked against the declared contract
only (entrypoint paths, names, schedules), never by importing the flow modules, which may not exist yet.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.cli.deploy._models import PrefectYamlModel  # the model `prefect deploy` validates prefect.yaml with

ROOT = Path(__file__).resolve().parents[1]
PAPSCREEN_SERVICES = ("migrate", "deploy", "worker-gpu", "watcher", "dashboard")
SERVING = ("postgres", "prefect-server", "worker-gpu", "dashboard")
ENTRYPOINTS = {
    "intake": "papscreen/flows/intake.py:intake_flow",
    "analyze-slide": "papscreen/flows/analyze.py:analyze_slide_flow",
    "retrain": "papscreen/flows/retrain.py:retrain_flow",
    "validate": "papscreen/flows/validate.py:validate_flow",
    "rescore": "papscreen/flows/rescore.py:rescore_flow",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def prefect_yaml() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "prefect.yaml").read_text())


@pytest.fixture(scope="module")
def deployments(prefect_yaml: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in prefect_yaml["deployments"]}


def _command(service: dict[str, Any]) -> str:
    command = service.get("command", "")
    return command if isinstance(command, str) else " ".join(command)


# docker-compose.yml


def test_every_service_is_declared(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {
        "postgres", "prefect-server", "migrate", "deploy", "worker-gpu", "watcher", "dashboard"
    }  # fmt: skip


@pytest.mark.parametrize("name", SERVING)
def test_serving_services_have_a_healthcheck(compose: dict[str, Any], name: str) -> None:
    healthcheck = compose["services"][name]["healthcheck"]
    assert not healthcheck.get("disable", False)
    assert healthcheck["test"][0] == "CMD"


@pytest.mark.parametrize(
    ("name", "probe"),
    [
        ("postgres", "pg_isready"),
        ("prefect-server", "/api/health"),
        ("dashboard", "/_stcore/health"),
        ("worker-gpu", ":8080/health"),
    ],
)
def test_healthchecks_probe_the_right_thing(compose: dict[str, Any], name: str, probe: str) -> None:
    assert probe in " ".join(compose["services"][name]["healthcheck"]["test"])


def test_postgres_creates_both_databases(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]
    assert postgres["image"] == "postgres:16"
    mounts = [v.split(":") for v in postgres["volumes"]]
    init = [m for m in mounts if m[1].startswith("/docker-entrypoint-initdb.d/")]
    assert len(init) == 1
    sql = (ROOT / init[0][0]).read_text()
    assert re.findall(r"CREATE DATABASE (\w+);", sql) == ["papscreen", "prefect"]
    assert postgres["environment"]["POSTGRES_DB"] not in {"papscreen", "prefect"}  # else the script fails


def test_prefect_server(compose: dict[str, Any]) -> None:
    server = compose["services"]["prefect-server"]
    assert server["image"] == "prefecthq/prefect:3.9-python3.11"
    assert _command(server) == "prefect server start --host 0.0.0.0"
    assert server["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    assert server["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"].endswith("@postgres:5432/prefect")
    assert server["environment"]["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert server["ports"] == ["127.0.0.1:4200:4200"]  # published on this machine only


@pytest.mark.parametrize("name", PAPSCREEN_SERVICES)
def test_papscreen_services_share_settings_and_data(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    assert "build" in service
    env = service["environment"]
    assert env["PAPSCREEN_DATABASE_URL"].startswith("postgresql+psycopg2://")
    assert env["PAPSCREEN_DATABASE_URL"].endswith("@postgres:5432/papscreen")
    assert env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert env["PAPSCREEN_ORCHESTRATION__DISPATCH"] == "deployment"
    targets = {v.split(":")[1] for v in service["volumes"]}
    assert {"/data", "/data/intake", "/data/store", "/data/quarantine", "/data/models", "/data/results"} <= targets


def test_start_order(compose: dict[str, Any]) -> None:
    services = compose["services"]

    def needs(name: str) -> dict[str, str]:
        return {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}

    assert needs("prefect-server") == {"postgres": "service_healthy"}
    assert needs("migrate") == {"postgres": "service_healthy"}
    assert needs("deploy") == {"prefect-server": "service_healthy", "migrate": "service_completed_successfully"}
    assert needs("worker-gpu") == {"deploy": "service_completed_successfully"}
    assert needs("watcher") == {"deploy": "service_completed_successfully"}  # the intake deployment exists
    assert needs("dashboard") == {"migrate": "service_completed_successfully"}


def test_one_shots(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert _command(services["migrate"]) == "sh -c papscreen db upgrade && papscreen models install-shipped"
    deploy = _command(services["deploy"])
    assert "prefect work-pool create papscreen --type process" in deploy
    assert "prefect gcl create gpu --limit 1" in deploy
    assert "deploy --all" in deploy
    assert all(services[name]["restart"] == "no" for name in ("migrate", "deploy"))


def test_the_watcher_starts_intake_runs_only_on_need(compose: dict[str, Any]) -> None:
    watcher = compose["services"]["watcher"]
    assert _command(watcher) == "papscreen intake --watch"
    assert watcher["restart"] == "unless-stopped"  # a watcher that dies is started again


def test_worker_reserves_an_nvidia_gpu(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker-gpu"]
    assert shlex.split(_command(worker))[:6] == ["prefect", "worker", "start", "--pool", "papscreen", "--limit"]
    assert "--limit 1" in _command(worker)
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]


def test_dashboard(compose: dict[str, Any]) -> None:
    dashboard = compose["services"]["dashboard"]
    assert _command(dashboard) == "papscreen dashboard --port 8501"
    assert dashboard["ports"] == ["127.0.0.1:8501:8501"]  # published on this machine only
    assert dashboard["environment"]["PAPSCREEN_DATABASE_URL"].endswith("@postgres:5432/papscreen")
    assert dashboard["environment"]["PAPSCREEN_DASHBOARD__ADDRESS"] == "0.0.0.0"


# prefect.yaml


def test_prefect_yaml_is_what_prefect_deploy_reads(prefect_yaml: dict[str, Any]) -> None:
    model = PrefectYamlModel.model_validate(prefect_yaml)

    assert model.name == "papscreen"
    assert model.prefect_version == "3.9.1"
    assert model.pull == [{"prefect.deployments.steps.set_working_directory": {"directory": "/app"}}]
    assert [d.name for d in model.deployments] == list(ENTRYPOINTS)
    assert all(d.work_pool is not None and d.work_pool.name == "papscreen" for d in model.deployments)


def test_entrypoints_are_the_five_flows(deployments: dict[str, dict[str, Any]]) -> None:
    assert {name: d["entrypoint"] for name, d in deployments.items()} == ENTRYPOINTS


@pytest.mark.parametrize("name", list(ENTRYPOINTS))
def test_entrypoint_names_a_flow_function(name: str, deployments: dict[str, dict[str, Any]]) -> None:
    """The declared contract always; the function itself once its module is written (never imported)."""
    path, function = deployments[name]["entrypoint"].split(":")
    assert path.startswith("papscreen/flows/")
    assert path.endswith(".py")
    assert function.endswith("_flow")
    source = ROOT / path
    if source.exists():
        assert re.search(rf"^def {function}\(", source.read_text(), re.MULTILINE), f"{path} has no {function}"


@pytest.mark.parametrize(
    ("name", "schedule"),
    [
        ("intake", None),  # started by the watcher service on need
        ("retrain", {"cron": "0 2 * * *", "timezone": "UTC"}),
        ("validate", {"cron": "0 5 * * *", "timezone": "UTC"}),
        ("analyze-slide", None),
        ("rescore", None),
    ],
)
def test_schedules(deployments: dict[str, dict[str, Any]], name: str, schedule: dict[str, Any] | None) -> None:
    declared = deployments[name].get("schedules")
    assert declared == ([schedule] if schedule else None)


@pytest.mark.parametrize("name", ["intake", "retrain"])
def test_one_run_at_a_time(deployments: dict[str, dict[str, Any]], name: str) -> None:
    assert deployments[name]["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}


def test_analyze_slide_refuses_runs_without_their_parameters(deployments: dict[str, dict[str, Any]]) -> None:
    assert deployments["analyze-slide"]["enforce_parameter_schema"] is True
    assert "slide_id" not in deployments["analyze-slide"].get("parameters", {})  # required: no default here


# Dockerfile


def _instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in (raw.strip() for raw in joined.splitlines())
        if line and not line.startswith("#")
    ]


def test_dockerfile() -> None:
    instructions = _instructions((ROOT / "Dockerfile").read_text())
    values: dict[str, list[str]] = {}
    for keyword, value in instructions:
        values.setdefault(keyword, []).append(value)

    assert values["FROM"] == ["python:3.11-slim"]
    assert values["CMD"] == ['["papscreen", "up"]']
    assert values["USER"] == ["papscreen"]
    assert values["VOLUME"] == ["/data"]
    assert values["WORKDIR"] == ["/app"]
    assert any("PAPSCREEN_HOME=/data" in env for env in values["ENV"])
    assert "/_stcore/health" in values["HEALTHCHECK"][0]
    assert any(value.startswith("prefect.yaml") for value in values["COPY"])  # pull step runs flows from /app


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", ".git", "**/__pycache__", "*.db", "tests"} <= ignored
