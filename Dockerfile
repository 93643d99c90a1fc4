# papscreen: one image for every role (all-in-one `papscreen up`, workers, dashboard, migrations, deploys).
#   docker build -t papscreen .
#   docker run -p 8501:8501 -p 4200:4200 -v papscreen-data:/data papscreen      # everything on one host (SQLite)
# For PostgreSQL, a Prefect server and GPU workers use docker-compose.yml (docs/deployment.md).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# No system packages needed: the wheels carry their own libraries (checked with ldd). opencv-python-headless
# needs only zlib and libstdc++ (both in the base image; no libGL or glib, unlike opencv-python);
# openslide-bin's libopenslide.so.1 needs only libc, libm and libgcc_s; torch bundles libgomp, and torch==2.14.1
# from PyPI on Linux x86_64 pulls the CUDA runtime as pip packages (the host needs the NVIDIA driver and the
# NVIDIA Container Toolkit, nothing else).
RUN useradd --create-home --uid 1000 --shell /usr/sbin/nologin papscreen

WORKDIR /app

# Dependencies first, in a layer that stays cached until pyproject.toml changes: an empty package stands in
# for the code while pip resolves and installs them.
COPY pyproject.toml README.md ./
RUN mkdir papscreen \
    && touch papscreen/__init__.py \
    && pip install . \
    && pip uninstall -y papscreen \
    && rm -rf papscreen build ./*.egg-info

# The code. It stays in /app as well: prefect.yaml's pull step runs flows from /app (entrypoints are paths).
COPY papscreen ./papscreen
COPY prefect.yaml ./
RUN pip install --no-deps . && rm -rf build ./*.egg-info

# Everything papscreen and Prefect write lives under /data (settings derive intake, store, quarantine, models,
# results and data from PAPSCREEN_HOME). The folders are created here, owned by the service user, so that
# fresh named volumes mounted on them start with the right owner.
ENV PAPSCREEN_HOME=/data \
    PREFECT_HOME=/data/prefect \
    TORCH_HOME=/data/torch
RUN mkdir -p /data/intake /data/store /data/quarantine /data/models /data/results /data/data /data/prefect /data/torch \
    && chown -R papscreen:papscreen /data
USER papscreen
VOLUME /data

# 8501: dashboard; 4200: the Prefect server `papscreen up` starts.
EXPOSE 8501 4200

# Healthy when the dashboard answers (it starts last in `papscreen up`). Compose overrides this for workers.
HEALTHCHECK --interval=30s --timeout=10s --start-period=120s --retries=3 \
    CMD python -c "import os, urllib.request; port = os.environ.get('PAPSCREEN_ORCHESTRATION__DASHBOARD_PORT', '8501'); urllib.request.urlopen(f'http://127.0.0.1:{port}/_stcore/health', timeout=5)"

CMD ["papscreen", "up"]
