"""Model registry on MLflow: versions of the use case's registered model, quality gates, aliases,
promotion, rollback."""
