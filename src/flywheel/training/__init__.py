"""Training: model types behind one estimator contract, tuning, evaluation, and MLflow tracking."""
