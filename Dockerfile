# deltakeeper: the service, configured by DK_ environment variables.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DK_DATA_DIR=/data

RUN groupadd --system --gid 10001 deltakeeper \
    && useradd --system --uid 10001 --gid deltakeeper --home-dir /app deltakeeper

WORKDIR /app
# constraints.txt pins every runtime dependency (regenerate it as its header says).
COPY pyproject.toml README.md constraints.txt ./
COPY src ./src
RUN pip install -c constraints.txt .

RUN mkdir -p /data && chown 10001:10001 /data
VOLUME ["/data"]
USER 10001:10001

EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["deltakeeper", "healthcheck"]

ENTRYPOINT ["deltakeeper"]
CMD ["run"]
