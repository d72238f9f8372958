"""The training pipeline: steps (one module each), their wiring, a local runner that records every
run in MLflow, a monitor, and compilers for Kubeflow/Vertex AI and Airflow."""
