"""Performance estimation before labels: Flywheel's CBPE estimator against NannyML 0.13's CBPE.

One synthetic binary problem with a known ``P(y | x)`` (four numeric features, one categorical, a
nonlinear logit). A LightGBM model is fitted through Flywheel's wrapper (balanced weights) on a train
split, calibrated on the validation split (isotonic, Flywheel's default) with the max-F1 threshold
chosen there; the reference is a labelled test split it scores. The monitored log (default 1M
predictions) falls in equal periods (one day each) under a growing covariate shift (feature means move
up to one standard deviation, category shares turn over); in the last two periods the concept moves
too (``P(y | x)`` changes), which no confidence-based estimate can see, so there the realized value
should fall outside Flywheel's band. Labels are drawn for every period: the realized figures are the
referee (scikit-learn's metrics).

Both estimators get the same Parquet files: the calibrated probability ``y_pred_proba``, the decision
``y_pred = y_pred_proba >= threshold``, ``y_true`` on the reference, a timestamp (NannyML chunks by day,
``chunk_period="D"``, so its chunks are the periods; the reference spans ten days, 2,000 rows each by default, as
Flywheel's reference chunks are). Each side runs in a fresh process (NannyML in its own virtualenv,
:mod:`nannyml_env`) over every seed's world, timing fit + estimate only (the fastest of ``--runs``)
and reporting the RSS that fit + estimate added at its peak ("working", the kernel's high-water mark
reset before each run) and the process's own peak RSS (imports and Parquet reading included).
The error goal is judged on the mean over ``--repeats`` worlds (seeds): one world's reference and
validation samples move either estimator's error by as much as the two differ.

NannyML's default calibration is kept: at fit it checks (isotonic in ten 90/10 splits of the
reference) whether recalibrating lowers the calibration error, and if so recalibrates every
probability with an isotonic map fitted on the whole reference. The output says which it did.

Goal: estimation error no worse than NannyML's, and ≥ 10× faster on 1M logged predictions.

Usage: python benchmarks/bench_estimation.py [--rows 1000000] [--periods 10] [--seed 0] [--repeats 3]
       [--runs 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

NUMERIC = ["x1", "x2", "x3", "x4"]
CATEGORICAL = ["segment"]
LEVELS = ["a", "b", "c", "d"]
SHARES = np.array([0.4, 0.3, 0.2, 0.1])
METRICS = ("roc_auc", "f1", "accuracy", "pr_auc")
NANNYML_NAMES = {"roc_auc": "roc_auc", "f1": "f1", "accuracy": "accuracy", "pr_auc": "average_precision"}
SIGMAS = 3.0
START = pd.Timestamp("2026-01-01")

# One process per estimator goes through every world (seed) in turn: per world it reads the two
# Parquet files, times fit + estimate ``runs`` times and keeps the fastest (the machine is shared), and
# reports its peak RSS so far (the worlds are alike in size, so it is the peak of the largest one).
CHILD_FLYWHEEL = r"""
import json, re, resource, sys, time
started = time.perf_counter()
import numpy as np, pandas as pd
from flywheel.monitoring.estimation import Reference, expected_metrics
imported = time.perf_counter() - started
worlds, sigmas, runs = json.loads(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
def gb(key):  # a figure of /proc/self/status (kB) in GB
    return int(re.search(key + r":\s+(\d+)", open("/proc/self/status").read()).group(1)) / 1024**2
def once(reference, analysis, threshold):
    open("/proc/self/clear_refs", "w").write("5")  # the peak RSS starts again from here
    before, started = gb("VmRSS"), time.perf_counter()
    fitted = Reference.fit(reference["y_true"].to_numpy(), reference["y_pred_proba"].to_numpy(), threshold)
    fit_seconds = time.perf_counter() - started
    p, day = analysis["y_pred_proba"].to_numpy(), analysis["timestamp"].to_numpy().astype("datetime64[D]")
    starts = np.flatnonzero(np.concatenate([[True], day[1:] != day[:-1]]))
    periods = []
    for rows in np.split(p, starts[1:]):
        estimate = expected_metrics(rows, threshold)
        periods.append({m: {"estimate": v, "band": fitted.band(m, v, len(rows), sigmas)} for m, v in estimate.items()})
    return time.perf_counter() - started, fit_seconds, periods, fitted.to_dict(), gb("VmHWM") - before
out = []
for folder, threshold in worlds:
    reference = pd.read_parquet(f"{folder}/reference.parquet")
    analysis = pd.read_parquet(f"{folder}/analysis.parquet")
    timings = [once(reference, analysis, threshold) for _ in range(runs)]
    seconds, fit_seconds, periods, fitted, _ = min(timings, key=lambda t: t[0])
    out.append({"seconds": seconds, "fit_seconds": fit_seconds, "all_seconds": [t[0] for t in timings],
                "import_seconds": imported, "working_gb": max(t[-1] for t in timings),
                "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
                "periods": periods, "reference": fitted})
    del reference, analysis
print(json.dumps(out))
"""

CHILD_NANNYML = r"""
import json, re, resource, sys, time, warnings
warnings.filterwarnings("ignore")
started = time.perf_counter()
import pandas as pd
import nannyml as nml
imported = time.perf_counter() - started
folders, names, runs = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
def gb(key):  # a figure of /proc/self/status (kB) in GB
    return int(re.search(key + r":\s+(\d+)", open("/proc/self/status").read()).group(1)) / 1024**2
def once(reference, analysis):
    open("/proc/self/clear_refs", "w").write("5")  # the peak RSS starts again from here
    before, started = gb("VmRSS"), time.perf_counter()
    estimator = nml.CBPE(problem_type="classification_binary", y_pred_proba="y_pred_proba", y_pred="y_pred",
                         y_true="y_true", timestamp_column_name="timestamp", chunk_period="D",
                         metrics=list(names.values()))
    estimator.fit(reference)
    fit_seconds = time.perf_counter() - started
    result = estimator.estimate(analysis)
    return (time.perf_counter() - started, fit_seconds, result, estimator.needs_calibration,
            gb("VmHWM") - before)
out = []
for folder in folders:
    reference = pd.read_parquet(f"{folder}/reference.parquet")
    analysis = pd.read_parquet(f"{folder}/analysis.parquet")
    timings = [once(reference, analysis) for _ in range(runs)]
    seconds, fit_seconds, result, recalibrated, _ = min(timings, key=lambda t: t[0])
    frame = result.filter(period="analysis").to_df()
    periods = []
    for i in range(len(frame)):
        row = frame.iloc[i]
        periods.append({ours: {"estimate": float(row[(theirs, "value")]),
                               "sampling_error": float(row[(theirs, "sampling_error")]),
                               "band": [float(row[(theirs, "lower_confidence_boundary")]),
                                        float(row[(theirs, "upper_confidence_boundary")])]}
                        for ours, theirs in names.items()})
    out.append({"seconds": seconds, "fit_seconds": fit_seconds, "all_seconds": [t[0] for t in timings],
                "import_seconds": imported, "working_gb": max(t[-1] for t in timings),
                "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
                "periods": periods, "recalibrated": bool(recalibrated), "version": nml.__version__})
    del reference, analysis, timings, result, frame
print(json.dumps(out))
"""


# ---- the world --------------------------------------------------------------------------------
def true_logit(frame: pd.DataFrame, concept: int = 0) -> np.ndarray:
    """The log-odds of ``P(y | x)``; ``concept`` 1 and 2 are the two changed relations of the late
    periods (the base rate up; the strongest feature weakened and the segments' effects reversed)."""
    x1, x2, x3, x4 = (frame[c].to_numpy() for c in NUMERIC)
    segment = frame["segment"].map(dict(zip(LEVELS, (0.0, 0.5, -0.5, 1.0), strict=True))).to_numpy()
    slope = 0.4 if concept == 2 else 1.2
    if concept == 2:
        segment = -segment
    base = -0.9 + (0.8 if concept == 1 else 0.0)
    return base + slope * x1 - 0.7 * x2**2 + 0.9 * np.sin(2 * x3) + 0.5 * x1 * x4 + segment


def features(rows: int, shift: float, rng: np.random.Generator) -> pd.DataFrame:
    """Rows with every numeric mean moved by ``shift`` standard deviations (x2 the other way) and the
    segment shares turned over in proportion."""
    direction = {"x1": 1.0, "x2": -0.6, "x3": 0.5, "x4": 0.8}
    frame = pd.DataFrame({c: rng.normal(shift * direction[c], 1.0, rows) for c in NUMERIC})
    shares = (1 - shift) * SHARES + shift * SHARES[::-1]
    frame["segment"] = rng.choice(LEVELS, rows, p=shares)
    return frame


def labels(frame: pd.DataFrame, rng: np.random.Generator, concept: int = 0) -> np.ndarray:
    return (rng.random(len(frame)) < 1 / (1 + np.exp(-true_logit(frame, concept)))).astype(int)


def schedule(periods: int) -> list[tuple[float, int]]:
    """Each period's covariate shift (0 → 1 standard deviation) and concept (0: unchanged)."""
    late = 2 if periods >= 4 else 1
    out = []
    for k in range(periods):
        concept = 0 if k < periods - late else 1 + (k - (periods - late)) % 2
        out.append((k / max(periods - 1, 1), concept))
    return out


def train(seed: int, train_rows: int = 50_000, valid_rows: int = 20_000):
    """Flywheel's way: LightGBM with balanced weights, early stopping and isotonic calibration on the
    validation split, the max-F1 threshold chosen there. Returns ``(model, threshold)``."""
    from flywheel.training import calibration, evaluation
    from flywheel.training.models import make_model

    rng = np.random.default_rng(seed)
    X, Xv = features(train_rows, 0.0, rng), features(valid_rows, 0.0, rng)
    y, yv = labels(X, rng), labels(Xv, rng)
    model = make_model("lightgbm", NUMERIC + CATEGORICAL, CATEGORICAL, {}, seed).fit(X, y, Xv, yv)
    model.calibrator_ = calibration.fit("isotonic", yv, model.predict_proba(Xv))
    return model, evaluation.choose_threshold(yv, model.predict_proba(Xv), "max_f1")


def build(rows: int, periods: int, reference_rows: int, seed: int, folder: Path) -> dict:
    """Train, score the reference and the monitored log, write both Parquet files; returns the labels
    of every period and what the world looked like."""
    model, threshold = train(seed)
    rng = np.random.default_rng(seed + 1)
    X_ref = features(reference_rows, 0.0, rng)
    y_ref = labels(X_ref, rng)
    p_ref = model.predict_proba(X_ref)
    ref_days = 10
    reference = pd.DataFrame(
        {
            "y_pred_proba": p_ref,
            "y_pred": (p_ref >= threshold).astype(int),
            "y_true": y_ref,
            "timestamp": START
            - pd.Timedelta(days=ref_days)
            + pd.to_timedelta(np.sort(rng.random(reference_rows)) * ref_days, unit="D"),
        }
    )
    per_period = rows // periods
    frames, truth = [], []
    for k, (shift, concept) in enumerate(schedule(periods)):
        X = features(per_period, shift, rng)
        p = model.predict_proba(X)
        truth.append({"shift": shift, "concept": concept, "y": labels(X, rng, concept), "p": p})
        offsets = np.sort(rng.random(per_period)) * 0.999
        frames.append(
            pd.DataFrame(
                {
                    "y_pred_proba": p,
                    "y_pred": (p >= threshold).astype(int),
                    "timestamp": START + pd.to_timedelta(k + offsets, unit="D"),
                }
            )
        )
    reference.to_parquet(folder / "reference.parquet")
    pd.concat(frames, ignore_index=True).to_parquet(folder / "analysis.parquet")
    return {"seed": seed, "threshold": threshold, "truth": truth}


def realized(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """The referee: scikit-learn's metrics at the same decision."""
    from sklearn import metrics as skm

    decided = (p >= threshold).astype(int)
    return {
        "roc_auc": float(skm.roc_auc_score(y, p)),
        "f1": float(skm.f1_score(y, decided)),
        "accuracy": float(skm.accuracy_score(y, decided)),
        "pr_auc": float(skm.average_precision_score(y, p)),
    }


# ---- the two sides ---------------------------------------------------------------------------
def run_flywheel(worlds: list[tuple[Path, float]], runs: int) -> list[dict]:
    """Flywheel's side over every ``(folder, threshold)``, in a fresh process of the project's venv."""
    listed = json.dumps([[str(folder), threshold] for folder, threshold in worlds])
    return _child([sys.executable, "-c", CHILD_FLYWHEEL, listed, str(SIGMAS), str(runs)], None)


def run_nannyml(folders: list[Path], runs: int) -> list[dict]:
    """NannyML's side over every folder, in a fresh process of its own venv (installed on first use)."""
    sys.path.insert(0, str(Path(__file__).parent))
    import nannyml_env

    python = nannyml_env.install()
    listed = json.dumps([str(folder) for folder in folders])
    return _child(
        [str(python), "-c", CHILD_NANNYML, listed, json.dumps(NANNYML_NAMES), str(runs)],
        nannyml_env.clean_env(),
    )


def _child(command: list[str], env: dict[str, str] | None) -> list[dict]:
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(f"{command[0]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---- the comparison --------------------------------------------------------------------------
def compare(world: dict, ours: dict, theirs: dict) -> dict:
    """Per period and metric: both estimates, the realized value, Flywheel's band and NannyML's
    (± 3 sampling errors), whether realized left each; then the mean absolute errors over the
    covariate-shift periods and, apart, over the concept-shift ones."""
    if len(ours["periods"]) != len(world["truth"]) or len(theirs["periods"]) != len(world["truth"]):
        raise RuntimeError(
            f"periods: {len(world['truth'])} written, Flywheel saw {len(ours['periods'])}, "
            f"NannyML {len(theirs['periods'])}"
        )
    rows = []
    for k, truth in enumerate(world["truth"]):
        actual = realized(truth["y"], truth["p"], world["threshold"])
        for metric in METRICS:
            fw, nml = ours["periods"][k][metric], theirs["periods"][k][metric]
            rows.append(
                {
                    "period": k,
                    "shift": truth["shift"],
                    "concept": truth["concept"],
                    "metric": metric,
                    "rows": len(truth["y"]),
                    "flywheel": fw["estimate"],
                    "nannyml": nml["estimate"],
                    "realized": actual[metric],
                    "flywheel_band": fw["band"],
                    "flywheel_flags": not fw["band"][0] <= actual[metric] <= fw["band"][1],
                    "nannyml_band": nml["band"],
                    "nannyml_flags": not nml["band"][0] <= actual[metric] <= nml["band"][1],
                }
            )
    mae = {}
    for scope in ("covariate", "concept"):
        for metric in METRICS:
            chosen = [r for r in rows if r["metric"] == metric and (r["concept"] > 0) == (scope == "concept")]
            if chosen:
                mae[f"{scope}:{metric}"] = {
                    side: float(np.mean([abs(r[side] - r["realized"]) for r in chosen]))
                    for side in ("flywheel", "nannyml")
                }
    return {
        "seed": world["seed"],
        "threshold": world["threshold"],
        "recalibrated": theirs["recalibrated"],
        "rows": rows,
        "mae": mae,
        "flywheel": {k: v for k, v in ours.items() if k != "periods"},
        "nannyml": {k: v for k, v in theirs.items() if k != "periods"},
        "ratio": theirs["seconds"] / ours["seconds"],
    }


def summary(repeats: list[dict]) -> dict:
    """The mean MAE per metric and scope over the repeats, the median time ratio, and the verdicts
    (error judged on the covariate-shift periods, where an estimate can be right)."""
    mae = {
        key: {
            side: float(np.mean([r["mae"][key][side] for r in repeats])) for side in ("flywheel", "nannyml")
        }
        for key in repeats[0]["mae"]
    }
    ratio = float(np.median([r["ratio"] for r in repeats]))
    covariate = [v for k, v in mae.items() if k.startswith("covariate")]
    return {
        "mae": mae,
        "ratio": ratio,
        "error_goal": all(v["flywheel"] <= v["nannyml"] for v in covariate),
        "speed_goal": ratio >= 10,
    }


# ---- the report ------------------------------------------------------------------------------
def render_periods(first: dict) -> list[str]:
    lines = [
        f"seed {first['seed']}: threshold {first['threshold']:.4f} (max F1 on validation); NannyML "
        f"recalibrated on the reference: {'yes (isotonic)' if first['recalibrated'] else 'no'}",
        "bands: Flywheel ±3 σ of its error on reference chunks, scaled by √(chunk/rows + chunk/reference rows); "
        "NannyML ±3 sampling errors (its confidence band); out = realized outside",
    ]
    for metric in METRICS:
        lines += [
            "",
            f"{metric:<9} {'shift':>5} {'concept':>7} {'flywheel':>9} {'nannyml':>9} {'realized':>9}"
            f" {'fw err':>8} {'nml err':>8}   {'flywheel band':<15} out   {'nannyml band':<15} out",
        ]
        for r in (r for r in first["rows"] if r["metric"] == metric):
            lines.append(
                f"period {r['period']:<2} {r['shift']:>5.2f} {r['concept'] or '-':>7} {r['flywheel']:>9.4f}"
                f" {r['nannyml']:>9.4f} {r['realized']:>9.4f} {r['flywheel'] - r['realized']:>+8.4f}"
                f" {r['nannyml'] - r['realized']:>+8.4f}   "
                f"{r['flywheel_band'][0]:.4f}–{r['flywheel_band'][1]:.4f}   {'X' if r['flywheel_flags'] else '-'}"
                f"     {r['nannyml_band'][0]:.4f}–{r['nannyml_band'][1]:.4f}   {'X' if r['nannyml_flags'] else '-'}"
            )
    return lines


def render_summary(repeats: list[dict], total: dict) -> list[str]:
    seeds = ", ".join(str(r["seed"]) for r in repeats)
    lines = ["", f"mean absolute error vs realized (fw / nml), per seed ({seeds}) and the mean"]
    for key, value in total["mae"].items():
        scope, metric = key.split(":")
        label = f"{metric}, {'covariate shift' if scope == 'covariate' else 'concept shift'}"
        per_seed = "  ".join(
            f"{r['mae'][key]['flywheel']:.4f}/{r['mae'][key]['nannyml']:.4f}" for r in repeats
        )
        better = "flywheel" if value["flywheel"] <= value["nannyml"] else "nannyml"
        lines.append(
            f"  {label:<26} {per_seed}   mean {value['flywheel']:.4f}/{value['nannyml']:.4f} ({better} lower)"
        )
    lines += [
        "",
        f"{'seed':<6}{'estimator':<10}{'fit+estimate s':>15}{'(fit s)':>9}{'all runs s':>24}"
        f"{'import s':>10}{'working GB':>12}{'peak RSS GB':>13}{'ratio':>8}",
    ]
    for r in repeats:
        for name in ("flywheel", "nannyml"):
            t = r[name]
            runs = " ".join(f"{s:.3f}" for s in t["all_seconds"])
            lines.append(
                f"{r['seed']:<6}{name:<10}{t['seconds']:>15.3f}{t['fit_seconds']:>9.3f}{runs:>24}"
                f"{t['import_seconds']:>10.2f}{t['working_gb']:>12.3f}{t['peak_gb']:>13.2f}"
                + (f"{r['ratio']:>7.1f}×" if name == "nannyml" else "")
            )
    lines += [
        f"Flywheel faster by {total['ratio']:.1f}× (median over seeds of NannyML's fastest fit+estimate / "
        f"Flywheel's); goal ≥ 10×: {'met' if total['speed_goal'] else 'NOT met'}",
        "estimation error under covariate shift (mean MAE over seeds) no worse than NannyML's on every "
        f"metric: {'met' if total['error_goal'] else 'NOT met'}",
    ]
    return lines


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="logged predictions in all periods")
    parser.add_argument("--periods", type=int, default=10)
    parser.add_argument("--reference", type=int, default=20_000, help="labelled reference rows")
    parser.add_argument("--seed", type=int, default=0, help="the first seed")
    parser.add_argument(
        "--repeats", type=int, default=3, help="worlds (seeds seed, seed+1, …) to average over"
    )
    parser.add_argument("--runs", type=int, default=3, help="timed runs per estimator (the fastest counts)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    started = time.monotonic()
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}  nproc {os.cpu_count()}  load {load} (a shared machine: "
        f"times are noisy)\n{args.rows:,} logged predictions in {args.periods} periods, reference "
        f"{args.reference:,} labelled rows, {args.repeats} seed(s) from {args.seed}",
        flush=True,
    )
    seeds = range(args.seed, args.seed + args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        folders = [Path(tmp) / f"seed-{seed}" for seed in seeds]
        worlds = []
        for seed, folder in zip(seeds, folders, strict=True):
            folder.mkdir()
            worlds.append(build(args.rows, args.periods, args.reference, seed, folder))
        theirs = run_nannyml(folders, args.runs)
        ours = run_flywheel([(f, w["threshold"]) for f, w in zip(folders, worlds, strict=True)], args.runs)
    repeats = [compare(*sides) for sides in zip(worlds, ours, theirs, strict=True)]
    total = summary(repeats)
    print("\n".join(render_periods(repeats[0]) + render_summary(repeats, total)))
    print(f"(whole run {time.monotonic() - started:.0f} s)")
    out = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "repeats": repeats,
        **total,
    }
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
