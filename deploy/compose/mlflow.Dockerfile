# The MLflow tracking server of deploy/compose.yaml: the official image (the version Flywheel's
# client is pinned to in deploy/constraints.txt) plus the PostgreSQL driver it lacks, so the backend
# store can be the `postgres` service. Built by `docker compose -f deploy/compose.yaml build`.
FROM ghcr.io/mlflow/mlflow:v3.17.2
RUN pip install --no-cache-dir psycopg2-binary==2.9.10
