"""Tabular model types behind one contract (scikit-learn style).

Parameters are stored in ``__init__``; ``fit`` learns the preprocessing (categorical levels, and the
robust scaling of numeric columns when ``scale="robust"``) and the estimator and returns ``self``.
Labels are integer codes ``0 … n_classes − 1``. ``predict_proba`` returns, for a binary model, the
positive class's probabilities (1-D) and, for a multiclass model, one column per class (2-D, rows
summing to 1).
A calibrator (:mod:`flywheel.training.calibration`), once set by training, maps every probability
the model gives — on frames and on the serving path alike.
``save`` writes a folder in safe formats only — ``spec.json`` plus the native model file (LightGBM
text, XGBoost JSON, CatBoost .cbm) or a skops file for scikit-learn pipelines, loaded with an
explicit list of trusted types — so no pickle is ever loaded. Class imbalance is handled with
balanced weights; the boosted models stop early on the validation split.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd

from flywheel.errors import ConfigError
from flywheel.training.calibration import Calibrator

MISSING = "__missing__"


class TabularModel(ABC):
    model_type: ClassVar[str]
    defaults: ClassVar[dict[str, Any]] = {}
    calibrator_: Calibrator | None = None  # set after fitting, on the validation split

    def __init__(
        self,
        features: list[str],
        categorical: list[str],
        params: dict[str, Any] | None = None,
        seed: int = 42,
        n_classes: int = 2,
        scale: Literal["none", "robust"] = "none",
    ):
        self.features = list(features)
        self.categorical = [c for c in categorical if c in features]
        self.params = {**self.defaults, **(params or {})}
        self.seed = seed
        self.n_classes = n_classes
        self.scale = scale

    @property
    def multiclass(self) -> bool:
        return self.n_classes > 2

    @property
    def numeric(self) -> list[str]:
        return [f for f in self.features if f not in self.categorical]

    # ---- preprocessing shared by every type --------------------------------------------------
    def _learn_levels(self, X: pd.DataFrame) -> None:
        self.levels_ = {c: sorted(X[c].dropna().astype(str).unique().tolist()) for c in self.categorical}
        self.scaling_ = {}
        if self.scale == "robust":  # seed 003: median and interquartile range of the training rows
            for column in self.numeric:
                values = pd.to_numeric(X[column], errors="coerce").astype("float64")
                low, median, high = (
                    np.nanquantile(values, [0.25, 0.5, 0.75]) if values.notna().any() else (0, 0, 1)
                )
                self.scaling_[column] = (float(median), float(high - low) or 1.0)

    def _frame(self, X: pd.DataFrame) -> pd.DataFrame:
        missing = [f for f in self.features if f not in X.columns]
        if missing:
            raise ValueError(f"input lacks feature column(s) {missing}")
        frame = X[self.features].copy()
        for column in self.numeric:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
            if column in self.scaling_:
                center, spread = self.scaling_[column]
                frame[column] = (frame[column] - center) / spread
        for column in self.categorical:
            frame[column] = pd.Categorical(
                frame[column].astype("object").where(frame[column].notna()), categories=self.levels_[column]
            )
        return frame

    def _weights(self, y: np.ndarray) -> np.ndarray:
        """Balanced class weights: every class weighs the same in total (a class absent from ``y``
        gets no rows, so no weight)."""
        counts = np.bincount(y, minlength=self.n_classes).astype(float)
        per_class = np.divide(len(y) / self.n_classes, counts, out=np.zeros_like(counts), where=counts > 0)
        return per_class[y]

    # ---- the contract ------------------------------------------------------------------------
    def fit(
        self, X: pd.DataFrame, y: Any, X_valid: pd.DataFrame | None = None, y_valid: Any = None
    ) -> TabularModel:
        y = self._codes_of(y, "y")
        self._learn_levels(X)
        valid = (self._frame(X_valid), self._codes_of(y_valid, "y_valid")) if X_valid is not None else None
        self._fit(self._frame(X), y, valid)
        return self

    def _codes_of(self, y: Any, name: str) -> np.ndarray:
        codes = np.asarray(y, dtype=int)
        if codes.size and (codes.min() < 0 or codes.max() >= self.n_classes):
            raise ValueError(
                f"{name} holds labels outside 0..{self.n_classes - 1}: {sorted(set(codes.tolist()))[:10]}"
            )
        return codes

    def predict_proba(self, X: pd.DataFrame, calibrated: bool = True) -> np.ndarray:
        """Probabilities of ``X``'s rows; ``calibrated=False`` gives the fitted model's own."""
        return self._probabilities(self._predict(self._frame(X)), calibrated)

    def _probabilities(self, raw: Any, calibrated: bool = True) -> np.ndarray:
        """Clipped to [0, 1]; a multiclass model's rows renormalized to sum to 1; then calibrated."""
        p = np.clip(np.asarray(raw, dtype=float), 0.0, 1.0)
        if self.multiclass:
            p = p.reshape(-1, self.n_classes)
            p = p / p.sum(axis=1, keepdims=True)
        if calibrated and self.calibrator_ is not None:
            p = self.calibrator_.apply(p)
        return p

    def predict_records(self, records: list[dict[str, Any]]) -> np.ndarray:
        """Probabilities for feature dicts (the serving path); equal to ``predict_proba`` on a frame."""
        return self.predict_proba(pd.DataFrame.from_records(records, columns=self.features))

    def _matrix(self, records: list[dict[str, Any]]) -> np.ndarray:
        """Feature dicts as a float matrix, categories as their level codes (NaN when unknown): what
        the boosters see of the pandas categoricals of ``_frame``, without building a frame."""
        if not hasattr(self, "_codes"):
            self._codes = {
                c: {level: float(i) for i, level in enumerate(self.levels_[c])} for c in self.categorical
            }
        matrix = np.empty((len(records), len(self.features)), dtype=np.float64)
        for i, record in enumerate(records):
            for j, name in enumerate(self.features):
                value = record.get(name)
                if name in self._codes:
                    matrix[i, j] = self._codes[name].get(value, np.nan) if value is not None else np.nan
                else:
                    matrix[i, j] = np.nan if value is None else value
        for j, name in enumerate(self.features):
            if name in self.scaling_:
                center, spread = self.scaling_[name]
                matrix[:, j] = (matrix[:, j] - center) / spread
        return matrix

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        spec = {
            "model_type": self.model_type,
            "features": self.features,
            "categorical": self.categorical,
            "levels": self.levels_,
            "params": self.params,
            "seed": self.seed,
            "n_classes": self.n_classes,
            "scale": self.scale,
            "scaling": self.scaling_,
            "calibration": self.calibrator_.to_dict() if self.calibrator_ else None,
        }
        (folder / "spec.json").write_text(json.dumps(spec, indent=2, default=str))
        self._save(folder)

    @staticmethod
    def load(folder: Path) -> TabularModel:
        spec = json.loads((folder / "spec.json").read_text())
        model = MODEL_TYPES[spec["model_type"]](
            spec["features"],
            spec["categorical"],
            spec["params"],
            spec["seed"],
            spec.get("n_classes", 2),  # models saved before multiclass were binary, unscaled
            spec.get("scale", "none"),
        )
        model.levels_ = spec["levels"]
        model.scaling_ = {name: tuple(pair) for name, pair in spec.get("scaling", {}).items()}
        if spec.get("calibration"):  # models saved before calibration have none
            model.calibrator_ = Calibrator.from_dict(spec["calibration"])
        model._load(folder)
        return model

    @abstractmethod
    def _fit(self, X: pd.DataFrame, y: np.ndarray, valid: tuple[pd.DataFrame, np.ndarray] | None) -> None: ...

    @abstractmethod
    def _predict(self, X: pd.DataFrame) -> np.ndarray: ...

    @abstractmethod
    def _save(self, folder: Path) -> None: ...

    @abstractmethod
    def _load(self, folder: Path) -> None: ...

    @abstractmethod
    def feature_importance(self) -> dict[str, float]: ...

    @staticmethod
    def search_space(trial: Any) -> dict[str, Any]:
        """Optuna parameters for this type."""
        return {}


class LightGBMModel(TabularModel):
    model_type = "lightgbm"
    defaults: ClassVar[dict[str, Any]] = {
        "learning_rate": 0.05,
        "num_leaves": 31,
        "min_child_samples": 50,
        "n_estimators": 600,
        "max_depth": -1,
        "feature_fraction": 0.9,
        "early_stopping_rounds": 50,
    }

    def _fit(self, X, y, valid):
        import lightgbm as lgb

        params = dict(self.params)
        rounds, patience = params.pop("n_estimators"), params.pop("early_stopping_rounds")
        params.update(
            {
                **(
                    {"objective": "multiclass", "num_class": self.n_classes}
                    if self.multiclass
                    else {"objective": "binary"}
                ),
                "seed": self.seed,
                "verbose": -1,
                "num_threads": 2,
                "deterministic": True,
                "force_row_wise": True,
            }
        )
        train = lgb.Dataset(
            X, y, weight=self._weights(y), categorical_feature=self.categorical or "auto", free_raw_data=False
        )
        sets, callbacks = [], []
        if valid is not None:
            sets = [lgb.Dataset(valid[0], valid[1], weight=self._weights(valid[1]), reference=train)]
            callbacks = [lgb.early_stopping(patience, verbose=False)]
        self.booster_ = lgb.train(params, train, num_boost_round=rounds, valid_sets=sets, callbacks=callbacks)

    def _predict(self, X):
        return self.booster_.predict(X, num_iteration=self.booster_.best_iteration or None)

    def predict_records(self, records: list[dict[str, Any]]) -> np.ndarray:
        """The fast path: the float matrix of codes straight into the booster."""
        matrix = self._matrix(records)
        return self._probabilities(
            # one thread: for a few rows OpenMP start-up and spinning cost more than the trees
            self.booster_.predict(matrix, num_iteration=self.booster_.best_iteration or None, num_threads=1)
        )

    def _save(self, folder):
        self.booster_.save_model(
            str(folder / "model.txt"), num_iteration=self.booster_.best_iteration or None
        )

    def _load(self, folder):
        import lightgbm as lgb

        self.booster_ = lgb.Booster(model_file=str(folder / "model.txt"))

    def feature_importance(self):
        gains = self.booster_.feature_importance(importance_type="gain")
        return dict(zip(self.booster_.feature_name(), map(float, gains), strict=True))

    @staticmethod
    def search_space(trial):
        return {
            "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.2, log=True),
            "num_leaves": trial.suggest_int("num_leaves", 8, 64, log=True),
            "min_child_samples": trial.suggest_int("min_child_samples", 10, 200, log=True),
            "feature_fraction": trial.suggest_float("feature_fraction", 0.6, 1.0),
        }


class XGBoostModel(TabularModel):
    model_type = "xgboost"
    defaults: ClassVar[dict[str, Any]] = {
        "learning_rate": 0.05,
        "max_depth": 6,
        "n_estimators": 600,
        "min_child_weight": 5,
        "subsample": 0.9,
        "early_stopping_rounds": 50,
    }

    def _estimator(self):
        import xgboost as xgb

        objective = {"objective": "multi:softprob", "num_class": self.n_classes} if self.multiclass else {}
        return xgb.XGBClassifier(
            **self.params,
            **objective,
            tree_method="hist",
            enable_categorical=True,
            random_state=self.seed,
            n_jobs=2,
            eval_metric="mlogloss" if self.multiclass else "logloss",
        )

    def _fit(self, X, y, valid):
        params = dict(self.params)
        if valid is None:
            self.params = {k: v for k, v in params.items() if k != "early_stopping_rounds"}
        self.estimator_ = self._estimator()
        self.params = params
        eval_set = [valid] if valid is not None else None
        # early stopping must watch the loss the trees minimize: weighted like the training rows
        eval_weights = [self._weights(valid[1])] if valid is not None else None
        self.estimator_.fit(
            X,
            y,
            sample_weight=self._weights(y),
            eval_set=eval_set,
            sample_weight_eval_set=eval_weights,
            verbose=False,
        )

    def _predict(self, X):
        p = self.estimator_.predict_proba(X)
        return p if self.multiclass else p[:, 1]

    def predict_records(self, records: list[dict[str, Any]]) -> np.ndarray:
        """The fast path: the float matrix of codes as a one-thread DMatrix typed like the training
        frame (categorical or numeric), scored by the booster up to its best iteration."""
        import xgboost as xgb

        if not hasattr(self, "_types"):
            self._types = ["c" if name in self.categorical else "q" for name in self.features]
            best = getattr(self.estimator_, "best_iteration", None)
            self._range = (0, best + 1) if best is not None else (0, 0)
        matrix = xgb.DMatrix(
            self._matrix(records),
            feature_names=self.features,
            feature_types=self._types,
            enable_categorical=True,
            nthread=1,
        )
        return self._probabilities(self.estimator_.get_booster().predict(matrix, iteration_range=self._range))

    def _save(self, folder):
        self.estimator_.save_model(str(folder / "model.json"))

    def _load(self, folder):
        self.estimator_ = self._estimator()
        self.estimator_.load_model(str(folder / "model.json"))

    def feature_importance(self):
        return {
            k: float(v) for k, v in self.estimator_.get_booster().get_score(importance_type="gain").items()
        }

    @staticmethod
    def search_space(trial):
        return {
            "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.2, log=True),
            "max_depth": trial.suggest_int("max_depth", 3, 8),
            "min_child_weight": trial.suggest_float("min_child_weight", 1, 20, log=True),
        }


class CatBoostModel(TabularModel):
    model_type = "catboost"
    defaults: ClassVar[dict[str, Any]] = {
        "learning_rate": 0.08,
        "depth": 6,
        "iterations": 500,
        "early_stopping_rounds": 50,
        # categories with few levels one-hot, not target statistics: on the credit records (four
        # categorical columns of 3–16 levels) 5.7× faster at the same accuracy and log loss
        "one_hot_max_size": 16,
    }

    def _strings(self, X):
        X = X.copy()
        for column in self.categorical:
            X[column] = X[column].astype("object").where(X[column].notna(), MISSING).astype(str)
        return X

    def _fit(self, X, y, valid):
        from catboost import CatBoostClassifier

        self.estimator_ = CatBoostClassifier(
            **self.params,
            random_seed=self.seed,
            thread_count=2,
            verbose=False,
            auto_class_weights="Balanced",
            loss_function="MultiClass" if self.multiclass else "Logloss",
            cat_features=self.categorical,
            allow_writing_files=False,
        )
        eval_set = (self._strings(valid[0]), valid[1]) if valid is not None else None
        self.estimator_.fit(self._strings(X), y, eval_set=eval_set, use_best_model=valid is not None)

    def _predict(self, X):
        p = self.estimator_.predict_proba(self._strings(X))
        return p if self.multiclass else p[:, 1]

    def predict_records(self, records: list[dict[str, Any]]) -> np.ndarray:
        """The fast path: rows as lists (numbers scaled as ``_frame`` does, categories as the strings
        ``_strings`` gives, an unknown one as missing) straight into CatBoost on one thread — the
        pandas frame cost ~10 ms a request."""
        if not hasattr(self, "_layout"):  # per feature: its known levels (a category) or its scaling
            self._layout = [
                (
                    name,
                    set(self.levels_[name]) if name in self.categorical else None,
                    *self.scaling_.get(name, (0.0, 1.0)),
                )
                for name in self.features
            ]
        rows = []
        for record in records:
            row: list[Any] = []
            for name, known, center, spread in self._layout:
                value = record.get(name)
                if known is not None:  # as _frame: only a known level is a category, else missing
                    row.append(value if isinstance(value, str) and value in known else MISSING)
                else:
                    row.append((_float(value) - center) / spread)
            rows.append(row)
        p = self.estimator_.predict_proba(rows, thread_count=1)
        return self._probabilities(p if self.multiclass else p[:, 1])

    def _save(self, folder):
        self.estimator_.save_model(str(folder / "model.cbm"))

    def _load(self, folder):
        from catboost import CatBoostClassifier

        self.estimator_ = CatBoostClassifier()
        self.estimator_.load_model(str(folder / "model.cbm"))

    def feature_importance(self):
        return dict(zip(self.features, map(float, self.estimator_.get_feature_importance()), strict=True))

    @staticmethod
    def search_space(trial):
        return {
            "learning_rate": trial.suggest_float("learning_rate", 0.03, 0.2, log=True),
            "depth": trial.suggest_int("depth", 4, 8),
        }


def _float(value: Any) -> float:
    """A record's numeric value as ``pd.to_numeric(errors="coerce")`` reads it: NaN when missing or not
    a number."""
    try:
        return np.nan if value is None else float(value)
    except (TypeError, ValueError):
        return np.nan


class _SklearnModel(TabularModel):
    """A scikit-learn pipeline saved with skops; only the listed types are trusted at load."""

    trusted: ClassVar[list[str]] = []

    @abstractmethod
    def _pipeline(self) -> Any: ...

    def _frame(self, X):
        frame = super()._frame(X)
        for column in self.categorical:  # scikit-learn encoders want plain objects, not pandas categories
            frame[column] = frame[column].astype("object").where(frame[column].notna(), MISSING)
        return frame

    def _fit(self, X, y, valid):
        self.pipeline_ = self._pipeline()
        last = self.pipeline_.steps[-1][0]
        self.pipeline_.fit(X, y, **{f"{last}__sample_weight": self._weights(y)})

    def _predict(self, X):
        p = self._all_classes(self.pipeline_.predict_proba(X))
        return p if self.multiclass else p[:, 1]

    def _all_classes(self, p: np.ndarray) -> np.ndarray:
        """A column per class, zeros for a class the training rows lacked (scikit-learn drops it)."""
        seen = self.pipeline_[-1].classes_
        if len(seen) == self.n_classes:
            return p
        full = np.zeros((len(p), self.n_classes))
        full[:, seen] = p
        return full

    def _save(self, folder):
        import skops.io as sio

        sio.dump(self.pipeline_, folder / "model.skops")

    def _load(self, folder):
        import skops.io as sio

        path = folder / "model.skops"
        unknown = [t for t in sio.get_untrusted_types(file=path) if t not in self.trusted]
        if unknown:
            raise ValueError(f"{path} holds types outside the trusted list: {unknown}")
        self.pipeline_ = sio.load(path, trusted=self.trusted)

    def _columns(self, numeric_steps: list, categorical_encoder: Any) -> Any:
        from sklearn.compose import ColumnTransformer
        from sklearn.pipeline import Pipeline

        return ColumnTransformer(
            [
                ("numeric", Pipeline(numeric_steps), self.numeric),
                ("categorical", categorical_encoder, self.categorical),
            ]
        )


_SKLEARN_COMMON = [
    "sklearn.compose._column_transformer.ColumnTransformer",
    "sklearn.pipeline.Pipeline",
    "sklearn.impute._base.SimpleImputer",
    "sklearn.preprocessing._encoders.OneHotEncoder",
    "sklearn.preprocessing._encoders.OrdinalEncoder",
    "sklearn.preprocessing._data.RobustScaler",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._tree.Tree",
    "numpy.dtype",
    "builtins.slice",
    "sklearn.compose._column_transformer._RemainderColsList",
    "pandas.core.arrays.categorical.Categorical",
    "numpy.float64",
    "numpy.int64",
    "builtins.object",
]


class LogisticRegressionModel(_SklearnModel):
    model_type = "logistic_regression"
    # Newton steps converge in a few iterations whatever the features' scales (L-BFGS took 1,787
    # iterations and 20 s on the bank's heavy-tailed balances; the optimum is the same)
    defaults: ClassVar[dict[str, Any]] = {"C": 1.0, "max_iter": 2000, "solver": "newton-cholesky"}
    trusted = _SKLEARN_COMMON

    def _pipeline(self):
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import OneHotEncoder, RobustScaler

        columns = self._columns(
            [("impute", SimpleImputer(strategy="median", add_indicator=False)), ("scale", RobustScaler())],
            OneHotEncoder(handle_unknown="ignore"),
        )
        return Pipeline(
            [("columns", columns), ("model", LogisticRegression(**self.params, random_state=self.seed))]
        )

    def feature_importance(self):
        names = self.pipeline_[:-1].get_feature_names_out()
        # one coefficient row per class (one for binary): the largest magnitude over the classes
        return dict(zip(names, map(float, np.abs(self.pipeline_[-1].coef_).max(axis=0)), strict=True))

    @staticmethod
    def search_space(trial):
        return {"C": trial.suggest_float("C", 0.01, 10, log=True)}


class RandomForestModel(_SklearnModel):
    model_type = "random_forest"
    defaults: ClassVar[dict[str, Any]] = {"n_estimators": 200, "max_depth": 10, "min_samples_leaf": 20}
    trusted = _SKLEARN_COMMON

    def _pipeline(self):
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import OrdinalEncoder

        columns = self._columns(
            [("impute", SimpleImputer(strategy="median"))],
            OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
        )
        model = RandomForestClassifier(**self.params, random_state=self.seed, n_jobs=2)
        return Pipeline([("columns", columns), ("model", model)])

    def feature_importance(self):
        names = self.pipeline_[:-1].get_feature_names_out()
        return dict(zip(names, map(float, self.pipeline_[-1].feature_importances_), strict=True))

    @staticmethod
    def search_space(trial):
        return {
            "max_depth": trial.suggest_int("max_depth", 4, 16),
            "min_samples_leaf": trial.suggest_int("min_samples_leaf", 5, 100, log=True),
        }


MODEL_TYPES: dict[str, type[TabularModel]] = {
    cls.model_type: cls
    for cls in (LogisticRegressionModel, RandomForestModel, LightGBMModel, XGBoostModel, CatBoostModel)
}


def make_model(
    model_type: str,
    features: list[str],
    categorical: list[str],
    params: dict[str, Any] | None = None,
    seed: int = 42,
    n_classes: int = 2,
    scale: Literal["none", "robust"] = "none",
) -> TabularModel:
    if model_type not in MODEL_TYPES:
        raise ConfigError(
            f"training.model_type: unknown model type '{model_type}'; expected one of {list(MODEL_TYPES)}"
        )
    return MODEL_TYPES[model_type](features, categorical, params, seed, n_classes, scale)
