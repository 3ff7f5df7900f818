"""Tidy results: `<out>/<suite>/trials.csv`, one row per trial and horizon, appended atomically."""
from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
from pathlib import Path

import pandas as pd
from filelock import FileLock

from bench.protocol.errors import BenchError
from bench.execution.spec import TrialSpec

ROW_FIELDS = ["suite", "dataset", "model", "teacher", "ratio", "seed", "horizon", "bucket", "mae", "rmse", "mape",
              "mae_unmasked", "rmse_unmasked",
              "epochs", "train_s", "infer_s", "params", "peak_mem_mb", "status", "error", "trial_id", "config",
              "work_id", "device", "steps", "best_epoch", "converged", "teacher_desc", "teacher_data",
              "teacher_mae", "gate_open", "train_mae", "teacher_train_mae", "mse", "ssim", "err_low", "err_high", "node",
              "rel_l2", "frmse_low", "frmse_mid", "frmse_high", "val_mae"]
# the row fields of a distilled student (empty for other rows): what the teacher was (e.g. the LM,
# blocks kept, LoRA rank) and what it was fitted on, the teacher's own test MAE, the
# share of unmasked elements where eq. 2's gate was open over training, and the last epoch's
# training MAE of the student and of the teacher on the same batches.
# mse, ssim, err_low, err_high: image metrics of a dataset with a grid, overall row only
# (`bench.protocol.metrics.grid_metrics`: unmasked MSE, SSIM, the MSE's low- and high-frequency shares;
# rel_l2: FNO's relative L2 error; frmse_low/mid/high: PDEBench's error per frequency band)
# val_mae: the best validation masked MAE (early stopping's metric, of the weights kept)
# node: where the trial ran (`node_name`: host, and the Ray node id on a cluster)
DISTILL_FIELDS = ("teacher_desc", "teacher_data", "teacher_mae", "gate_open", "train_mae", "teacher_train_mae")

NUMERIC_FIELDS = ["ratio", "seed", "mae", "rmse", "mape", "mae_unmasked", "rmse_unmasked", "epochs", "train_s", "infer_s", "params", "peak_mem_mb", "steps",
                  "best_epoch", "teacher_mae", "gate_open", "train_mae", "teacher_train_mae", "val_mae"]


class ResultsError(BenchError, ValueError):
    """A results file that cannot be read (garbled, truncated, not a trials table); names the file."""


def node_name() -> str:
    """Where this process runs: the host name, and on a Ray node the first 8 hex digits of its
    node id (two nodes of one host differ, e.g. a head and a worker on loopback)."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        return f"{socket.gethostname()}/{ray.get_runtime_context().get_node_id()[:8]}"
    return socket.gethostname()


def trials_path(out: str | os.PathLike, suite: str) -> Path:
    return Path(out) / suite / "trials.csv"


def _read_table(path: Path) -> pd.DataFrame:
    """trials.csv as text columns.

    Raises:
        ResultsError: the file is garbled, truncated or not a trials table (names it and the fix).
    """
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path} is not a readable trials table ({type(exc).__name__}: {str(exc)[:200]}); "
                           f"restore it from a copy, or move it away to start that suite's results afresh") from exc
    if "trial_id" not in df.columns:
        raise ResultsError(f"{path} has no trial_id column, so it is not a FlowBench trials table; move it away")
    return df


def read_trials(path: Path) -> pd.DataFrame:
    """The rows written so far (empty frame with the row columns when there are none)."""
    if not path.exists():
        return pd.DataFrame(columns=ROW_FIELDS)
    df = _read_table(path)
    for col in ROW_FIELDS:
        if col not in df.columns:                       # a table written before the column existed
            df[col] = ""
    for col in NUMERIC_FIELDS:
        df[col] = pd.to_numeric(df[col], errors="coerce")      # "" (a failed trial's metric) -> NaN
    return df


def finished_ids(path: Path) -> set[str]:
    """trial_ids with status ok (or pruned by a search scheduler): a rerun skips these."""
    df = read_trials(path)
    return set(df.loc[df["status"].isin(["ok", "pruned"]), "trial_id"].astype(str))


def shared_rows(out: str | os.PathLike, exclude_suite: str) -> dict[str, pd.DataFrame]:
    """Finished rows of the other suites under `out`, by work_id (a trial's identity without its
    suite): the runner copies them instead of training the same model twice."""
    found: dict[str, pd.DataFrame] = {}
    for path in sorted(Path(out).glob("*/trials.csv")):
        if path.parent.name == exclude_suite:
            continue
        df = read_trials(path)
        df = df[(df["status"] == "ok") & (df["work_id"] != "")]
        for work_id, rows in df.groupby("work_id"):
            found.setdefault(str(work_id), rows)
    return found


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path) on a temporary file beside `path`, then rename it onto `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path: Path, obj) -> None:
    """Write `obj` as JSON atomically (per-trial history files)."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=1, default=str)))


def write_tensorboard(folder: Path, history: list[dict]) -> None:
    """A trial's per-epoch logs (`fit`'s history: loss terms, validation MAE, gate share) as
    TensorBoard scalars in `folder` (tensorboardX), so `tensorboard --logdir OUT` shows every
    trial's curves; the x axis is the epoch (or round). Nothing for a trial without epochs."""
    numeric = [{k: float(v) for k, v in h.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
               for h in history]
    if not any(numeric):
        return
    from tensorboardX import SummaryWriter
    with SummaryWriter(str(folder)) as writer:
        for i, logs in enumerate(numeric):
            epoch = int(logs.pop("epoch", i + 1))
            for key, value in logs.items():
                writer.add_scalar(("val/" if key.startswith("val") else "train/") + key, value, epoch)


def append_rows(path: Path, rows: list[dict], fields: list[str] = ROW_FIELDS) -> None:
    """Append rows (columns `fields`), replacing earlier rows of the same trial_id (a retried
    failure; an error row never replaces a finished trial's rows), atomically: the new table goes to a temporary file in the same folder, then
    os.replace. Earlier rows are copied as written (a column they lack is left empty). A file
    lock (`<path>.lock`, filelock) spans the read and the rename, so two runs writing one results
    folder at once lose no row."""
    new = pd.DataFrame([{k: r.get(k, "") for k in fields} for r in rows], columns=fields)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{path}.lock"):
        old = (_read_table(path).reindex(columns=fields, fill_value="")
               if path.exists() else pd.DataFrame(columns=fields))
        finished = set(old.loc[old["status"].isin(["ok", "pruned"]), "trial_id"].astype(str))
        late = new["status"].astype(str).eq("error") & new["trial_id"].astype(str).isin(finished)
        new = new[~late]               # an error row never replaces a finished trial's rows (two runs at once)
        old = old[~old["trial_id"].astype(str).isin(set(new["trial_id"].astype(str)))]
        table = pd.concat([old, new], ignore_index=True) if len(old) else new
        atomic_write(path, lambda tmp: table.to_csv(tmp, index=False))


def error_rows(spec: TrialSpec, error: str, teacher: str = "") -> list[dict]:
    """The single row that records a failed trial (NaN metrics, status "error")."""
    return [{"suite": spec.suite, "dataset": spec.dataset, "model": spec.model, "teacher": teacher,
             "ratio": spec.ratio, "seed": spec.seed, "trial_id": spec.trial_id, "horizon": "all", "bucket": "all",
             "mae": float("nan"), "rmse": float("nan"), "mape": float("nan"), "epochs": 0, "train_s": 0.0,
             "infer_s": 0.0, "params": 0, "peak_mem_mb": 0.0, "status": "error", "error": error[:500],
             "config": spec.config_label(), "work_id": spec.work_id}]
