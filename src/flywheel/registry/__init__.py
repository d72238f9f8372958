"""Model registry on MLflow: versions of ``churn-model``, quality gates, aliases, promotion, rollback."""
