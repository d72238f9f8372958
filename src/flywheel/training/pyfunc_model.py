"""MLflow pyfunc entry point of a Flywheel model, logged as code (models-from-code), so the
logged model holds no pickle: ``predict`` loads the saved model folder and returns probabilities."""

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel


class TabularPyfunc(PythonModel):
    def load_context(self, context):
        from flywheel.training.models import TabularModel

        self.model = TabularModel.load(Path(context.artifacts["model"]))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        return self.model.predict_proba(model_input)


mlflow.models.set_model(TabularPyfunc())
