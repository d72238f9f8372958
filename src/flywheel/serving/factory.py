"""Builds the app from the environment, for uvicorn workers (``flywheel.serving.factory:app``)."""

from __future__ import annotations

import os

import yaml
from fastapi import FastAPI

from flywheel.config import load_config
from flywheel.serving.app import create_app
from flywheel.workdir import Workdir


def app() -> FastAPI:
    overrides = {
        k.removeprefix("FLYWHEEL_SET__"): yaml.safe_load(v)
        for k, v in os.environ.items()
        if k.startswith("FLYWHEEL_SET__")
    }
    config = load_config(os.environ.get("FLYWHEEL_CONFIG"), overrides)
    return create_app(config, Workdir.at(os.environ.get("FLYWHEEL_WORKDIR") or config.workdir))
