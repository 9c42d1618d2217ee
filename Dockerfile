# The metatrail service image: `metatrail consume`, `metatrail worker`, `metatrail serve`, `metatrail db upgrade`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /opt/metatrail
COPY pyproject.toml setup.py README.md ./
COPY schemas ./schemas
COPY producer ./producer
COPY consumer ./consumer
RUN pip install ".[service,server,postgres,mysql,demo]" \
    && useradd --system --create-home --home-dir /var/lib/metatrail metatrail \
    && mkdir -p /var/lib/metatrail/artifacts \
    && chown -R metatrail /var/lib/metatrail

USER metatrail
WORKDIR /var/lib/metatrail
CMD ["metatrail", "--help"]
