"""Run trials: teachers first, then models; each finished trial's rows are appended at once.

Executors:
- "ray" (default): every trial is a Ray Tune trial (1 CPU, or 1 GPU when present), on a local
  Ray instance or on the cluster given by `address`; rows are written by a Tune callback in
  the driver as each trial reports, so an interrupted suite keeps every finished trial.
- "inline": the same trials one after another in this process (debugging, tests).

A rerun skips trials whose trial_id already has status "ok" in trials.csv, and trials that another
run into the same folder is running now (each run claims its trials first: `claim`); a trial that
another suite under the same results folder already ran (same work_id: model, data, ratio, seed,
config and caps) is copied from there rather than trained again.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import sys
from pathlib import Path

from tqdm.auto import tqdm

from bench.protocol.errors import BenchError
from bench.protocol import registry
from bench.execution import teacher as teacher_mod
from bench.execution.results import (append_rows, error_rows, finished_ids, node_name, shared_rows, trials_path,
                                    write_json, write_tensorboard)
from bench.execution.spec import TrialSpec
from bench.execution.trial import run_trial

EXECUTORS = ("ray", "inline")


class ClusterError(BenchError, RuntimeError):
    """A Ray cluster address that cannot be reached; the message names it."""


def check_address(address: str | None, timeout_s: float = 5.0) -> None:
    """Fail within `timeout_s` seconds when the Ray cluster at `address` ("HOST:PORT" of its GCS,
    as `ray start --head` prints, or "ray://HOST:PORT" of a Ray client server) accepts no TCP
    connection; "auto" and None (a local Ray) are not checked.

    Raises:
        ClusterError: malformed address, unknown host or nothing listening there.
    """
    if not address or address == "auto":
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"--address {address!r} is not HOST:PORT (e.g. 10.0.0.1:6379, the address "
                           f"`ray start --head` prints)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ClusterError(f"cannot reach the Ray cluster at {address} ({exc}); start its head there with "
                           f"`ray start --head --port {port}`, or drop --address to run on a local Ray") from exc


def _limit_threads() -> None:
    """One torch thread per Ray trial (trials run side by side, one per core); BENCH_THREADS overrides."""
    import torch
    torch.set_num_threads(max(1, int(os.environ.get("BENCH_THREADS", "1"))))


def _teacher_job(spec_dict: dict, progress=None) -> list[dict]:
    """Fit and cache one teacher; returns no rows (its own row comes from a model trial)."""
    spec = TrialSpec(**spec_dict)
    try:
        teacher_mod.fit_teacher(spec, progress)
        return []
    except Exception as exc:
        return [{"_teacher_error": f"{type(exc).__name__} on node {node_name()}: {exc}"}]


def _model_job(spec_dict: dict, progress=None) -> list[dict]:
    """One model trial's rows, each with the node it ran on."""
    rows = run_trial(TrialSpec(**spec_dict), progress)
    node = node_name()
    for row in rows:
        row["node"] = node
    return rows


def teacher_specs(specs: list[TrialSpec]) -> list[TrialSpec]:
    """Distinct teachers the model trials need (one per dataset, ratio, teacher, caps)."""
    out = {}
    for spec in specs:
        cfg = spec.model_config()
        if cfg.teacher:
            t = teacher_mod.teacher_spec(spec, cfg.teacher)
            out[t.trial_id] = t
    return list(out.values())


def run(specs: list[TrialSpec], out: str, executor: str = "ray", address: str | None = None,
        log=print, scheduler: str | None = None, gpus_per_trial: float | None = None) -> Path:
    """Run every spec not yet finished; returns the trials.csv path of the (single) suite.

    scheduler "asha" (Ray executor only): trials report their validation MAE every epoch and Ray
    Tune's ASHA scheduler stops the poor ones early; a stopped trial gets one row with status
    "pruned" and its last validation MAE in the mae column (a rerun does not run it again).
    gpus_per_trial: the GPU share each Ray trial requests (None: `default_gpus`)."""
    if scheduler not in (None, "asha"):
        raise ValueError(f"unknown scheduler {scheduler!r}; use asha")
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; use one of {', '.join(EXECUTORS)}")
    if not specs:
        raise ValueError("no trials to run")
    suite = specs[0].suite
    path = trials_path(out, suite)
    done = finished_ids(path)
    todo = [s for s in specs if s.trial_id not in done]
    if len(todo) < len(specs):
        log(f"resuming: {len(specs) - len(todo)} of {len(specs)} trials already finished in {path}")
    todo = _copy_shared(todo, out, suite, path, log)
    if not todo:
        return path
    claimed = claim(todo, path.parent / "claims")
    if len(claimed) < len(todo):
        log(f"skipping {len(todo) - len(claimed)} trial(s) that another run into {path.parent} is running now")
    if not claimed:
        return path
    try:
        _run_claimed(claimed, out, executor, address, log, scheduler, gpus_per_trial, suite, path)
    finally:
        release(claimed, path.parent / "claims")
    return path


def claim(specs: list[TrialSpec], folder: Path) -> list[TrialSpec]:
    """The specs this process may run: each claimed by creating `folder/<trial_id>.claim` (O_EXCL,
    atomic on a local or shared filesystem) holding host and pid. A claim whose process is gone
    (same host, pid not alive) is stale and taken over; a live one makes this run skip the trial."""
    folder.mkdir(parents=True, exist_ok=True)
    mine = []
    for spec in specs:
        path = folder / f"{spec.trial_id}.claim"
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                if _stale(path):
                    path.unlink(missing_ok=True)
                    continue
                break
            with os.fdopen(fd, "w") as f:
                f.write(f"{socket.gethostname()} {os.getpid()}\n")
            mine.append(spec)
            break
    return mine


def _stale(path: Path) -> bool:
    """A claim written by a process of this host that no longer runs (or an unreadable claim)."""
    try:
        host, pid = path.read_text().split()
        if host != socket.gethostname():
            return False
        os.kill(int(pid), 0)
        return False
    except ProcessLookupError:
        return True
    except (OSError, ValueError):
        return not path.exists() or path.stat().st_size == 0


def release(specs: list[TrialSpec], folder: Path) -> None:
    """Remove this process's claims of `specs`."""
    for spec in specs:
        (folder / f"{spec.trial_id}.claim").unlink(missing_ok=True)


def _run_claimed(todo, out, executor, address, log, scheduler, gpus_per_trial, suite, path) -> None:
    """Fit the teachers `todo` needs, then run `todo` (see `run`)."""
    teachers = uncached(teacher_specs(todo))
    if teachers:
        log(f"fitting {len(teachers)} teacher(s): " + ", ".join(f"{t.model}@{t.ratio:g}" for t in teachers))

    def on_done(spec: TrialSpec, rows: list[dict]) -> None:
        first = rows[0]
        detail = {k: first.pop(k) for k in ("history", "traceback", "window_mae", "window_mse", "window_rel_l2",
                                            "window_every", "window_block", "teacher_window_mae") if k in first}
        write_json(path.parent / "history" / f"{spec.trial_id}.json", {"spec": spec.to_dict(), **detail})
        write_tensorboard(path.parent / "tensorboard" / f"{spec.model}-r{spec.ratio:g}-s{spec.seed}-{spec.trial_id[:8]}",
                          detail.get("history") or [])
        append_rows(path, rows)
        if first["status"] != "ok":
            verb = "pruned" if first["status"] == "pruned" else "failed"
            log(f"trial {spec.model} ratio={spec.ratio:g} seed={spec.seed} {verb}: {first['error']}")

    # teachers that need no training (reference forecasters) first, alone: they take seconds; then
    # the other teachers and, beside them, every trial that needs none of those; then the students
    # (and the trials of a teacher model, which read its cache instead of training again). Within
    # a stage, trials start in the order given (`build_specs`: the suite's models, most expensive
    # first, each at its largest ratio first): the longest start first and the last cores idle least
    handlers = {"teacher": lambda spec, rows: _teacher_done(spec, rows, log), "model": on_done}
    untrained = [t for t in teachers if not registry.trains(t.model)]
    if untrained:
        _execute([("teacher", t) for t in untrained], executor, address, out, suite, handlers, scheduler,
                 gpus_per_trial)
    teachers = [t for t in teachers if t not in untrained]
    fitting = {t.model for t in teachers}
    later = [s for s in todo if s.model_config().teacher in fitting or s.model in fitting]
    now = [s for s in todo if s not in later]
    _execute([("teacher", t) for t in teachers] + [("model", s) for s in now], executor, address, out, suite,
             handlers, scheduler, gpus_per_trial)
    if later:
        _execute([("model", s) for s in later], executor, address, out, suite, handlers, scheduler, gpus_per_trial)


def uncached(teachers: list[TrialSpec]) -> list[TrialSpec]:
    """The teacher specs whose predictions are not cached yet."""
    return [t for t in teachers if not teacher_mod.locate(t)[1].exists()]


def _copy_shared(todo: list[TrialSpec], out: str, suite: str, path: Path, log) -> list[TrialSpec]:
    """Append the rows of trials another suite already ran (same work_id) under this suite's
    name and trial_id; returns the specs still to run."""
    shared = shared_rows(out, suite)
    rest, copied = [], []
    for spec in todo:
        rows = shared.get(spec.work_id)
        if rows is None:
            rest.append(spec)
            continue
        copied.extend(rows.assign(suite=suite, trial_id=spec.trial_id).to_dict("records"))
        source = Path(out) / str(rows["suite"].iloc[0]) / "history" / f"{rows['trial_id'].iloc[0]}.json"
        if source.exists():                 # per-epoch logs and per-window errors (paired tests) go along
            write_json(path.parent / "history" / f"{spec.trial_id}.json", json.loads(source.read_text()))
    if copied:
        append_rows(path, copied)
        log(f"reused {len(todo) - len(rest)} trial(s) that other suites in {out} already ran")
    return rest


def fit_teachers(teachers: list[TrialSpec], out: str, executor: str = "ray", address: str | None = None,
                 log=print, gpus_per_trial: float | None = None) -> None:
    """Fit and cache the given teacher specs that are not cached yet (one trial each)."""
    teachers = uncached(teachers)
    if teachers:
        log(f"fitting {len(teachers)} teacher(s): " + ", ".join(f"{t.model}@{t.ratio:g}" for t in teachers))
        _execute([("teacher", t) for t in teachers], executor, address, out, "teachers",
                 {"teacher": lambda spec, rows: _teacher_done(spec, rows, log)}, gpus=gpus_per_trial)


def _teacher_done(spec, rows, log) -> None:
    if rows:
        log(f"teacher {spec.model} ratio={spec.ratio:g} failed: {rows[0]['_teacher_error']}; "
            f"its students will be recorded as errors")


JOBS = {"teacher": _teacher_job, "model": _model_job}


LOG = logging.getLogger("bench")


def epoch_logger(spec: TrialSpec, role: str = "model"):
    """A `fit` progress callback that logs one INFO line per epoch (`bench run --log-level info`:
    inline runs print it; a Ray trial's epochs go to TensorBoard instead)."""
    def log_epoch(epoch: int, logs: dict) -> None:
        if LOG.isEnabledFor(logging.INFO):
            extra = "".join(f" {k} {v:.4g}" for k, v in logs.items()
                            if k not in ("epoch", "val_mae") and isinstance(v, (int, float)))
            LOG.info(f"{role} {spec.model} ratio={spec.ratio:g} seed={spec.seed} epoch {epoch}: "
                     f"val MAE {logs.get('val_mae', float('nan')):.4f}{extra}")
    return log_epoch


def _execute(items, executor, address, out, name, handlers, scheduler=None, gpus=None) -> None:
    """Run (role, spec) items, role "teacher" or "model" (JOBS); handlers[role](spec, rows) gets
    each item's rows as it ends."""
    if not items:
        return
    bar = tqdm(total=len(items), desc=name, unit="trial", file=sys.stderr)
    if executor == "inline":
        for role, spec in items:
            bar.set_postfix_str(f"running: {spec.model} r={spec.ratio:g} s={spec.seed}")
            handlers[role](spec, JOBS[role](spec.to_dict(), epoch_logger(spec, role)))
            bar.update()
    else:
        _execute_ray(items, address, out, name, handlers, bar, scheduler, gpus)
    bar.close()


def pruned_rows(spec: TrialSpec, epochs: int, val_mae: float) -> list[dict]:
    """The row of a trial the scheduler stopped: its last validation MAE in the mae column."""
    rows = error_rows(spec, f"stopped by ASHA after {epochs} epoch(s); mae holds the last validation MAE")
    rows[0].update(status="pruned", mae=val_mae, epochs=epochs)
    return rows


def default_gpus(specs, cluster_gpus: float | None = None) -> float:
    """The GPU share a Ray trial requests by default: 1 where there are GPUs (`cluster_gpus`: the
    GPUs of the Ray cluster, so that a driver without a GPU still places trials on GPU workers;
    None: this machine's CUDA) unless every spec asks for the CPU, else 0."""
    has_gpu = cluster_gpus >= 1 if cluster_gpus is not None else _cuda()
    return 1.0 if has_gpu and any(s.device != "cpu" for s in specs) else 0.0


def _execute_ray(items, address, out, name, handlers, bar, scheduler=None, gpus=None) -> None:
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    check_address(address)
    if not address:
        # a new local cluster: Ray turns token authentication on by default and says so on every
        # run; asking for that same mode explicitly (before Ray reads its config) keeps it on and
        # the notice out of the output
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray
    from ray import tune

    if not ray.is_initialized():
        if address:
            ray.init(address=address, configure_logging=False, log_to_driver=False)
        else:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, configure_logging=False,
                     log_to_driver=False)
    by_id = {s.trial_id: (role, s) for role, s in items}

    def trainable(config):
        _limit_threads()
        config = config["item"]
        key = TrialSpec(**config["spec"]).trial_id
        best = {"val_mae": float("inf")}

        def per_epoch(epoch, logs):        # ASHA decides on these reports
            best["val_mae"] = min(best["val_mae"], logs["val_mae"])
            tune.report({"val_mae": logs["val_mae"], "epoch": epoch, "trial_key": key, "rows_json": ""})
        rows = JOBS[config["role"]](config["spec"], per_epoch if scheduler else None)
        final = {"rows_json": json.dumps(rows), "trial_key": key}
        if scheduler:                       # the scheduler needs its metric in every report
            final["val_mae"] = best["val_mae"]
        tune.report(final)

    written, last, running = set(), {}, {}

    def show_running() -> None:                         # the bar names the trials running now
        bar.set_postfix_str("running: " + ", ".join(running.values()) if running else "")

    def label(spec) -> str:
        return f"{spec.model} r={spec.ratio:g} s={spec.seed}"

    class WriteRows(tune.Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            spec = TrialSpec(**trial.config["item"]["spec"])
            running[spec.trial_id] = label(spec)
            show_running()

        def on_trial_result(self, iteration, trials, trial, result, **info):
            role, spec = by_id[result["trial_key"]]
            if not result["rows_json"]:                 # an epoch report
                last[spec.trial_id] = (result.get("epoch", 0), result["val_mae"])
                return
            written.add(spec.trial_id)
            handlers[role](spec, json.loads(result["rows_json"]))
            running.pop(spec.trial_id, None)
            show_running()
            bar.update()

        def on_trial_complete(self, iteration, trials, trial, **info):
            role, spec = by_id[TrialSpec(**trial.config["item"]["spec"]).trial_id]
            running.pop(spec.trial_id, None)
            if spec.trial_id not in written:            # stopped by the scheduler
                written.add(spec.trial_id)
                handlers[role](spec, pruned_rows(spec, *last.get(spec.trial_id, (0, float("nan")))))
                bar.update()

        def on_trial_error(self, iteration, trials, trial, **info):
            # the worker died before reporting (killed, out of memory, import error)
            role, spec = by_id[TrialSpec(**trial.config["item"]["spec"]).trial_id]
            written.add(spec.trial_id)
            running.pop(spec.trial_id, None)
            rows = error_rows(spec, _trial_error(trial.error_file))
            handlers[role](spec, rows if role == "model" else [{"_teacher_error": rows[0]["error"]}])
            bar.update()

    gpu = default_gpus([s for _, s in items], ray.cluster_resources().get("GPU", 0.0)) if gpus is None else gpus
    sched = None
    if scheduler == "asha":
        from ray.tune.schedulers import ASHAScheduler
        max_t = max(s.model_config().max_epochs for _, s in items) + 1
        sched = ASHAScheduler(metric="val_mae", mode="min", time_attr="training_iteration", max_t=max_t,
                              grace_period=min(2, max_t), reduction_factor=3)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1, "gpu": gpu}),
        param_space={"item": tune.grid_search([{"role": role, "spec": s.to_dict()} for role, s in items])},
        tune_config=tune.TuneConfig(trial_dirname_creator=lambda t: f"{t.config['item']['spec']['model']}-{t.trial_id}",
                                    scheduler=sched),
        run_config=tune.RunConfig(storage_path=str(Path(out).resolve() / "_ray"), name=name,
                                  callbacks=[WriteRows()], verbose=0),
    )
    tuner.fit()


def _trial_error(error_file: str | None) -> str:
    """A failed Ray trial's error: the exception Ray recorded (e.g. "ActorDiedError: ... its node
    has died"), without the traceback, and where the whole of it is."""
    text = Path(error_file).read_text(errors="replace") if error_file and Path(error_file).exists() else ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    frames = [i for i, line in enumerate(lines) if line.startswith("File ")]
    message = [line for line in lines[frames[-1] + 2 if frames else 0:]
               if not set(line) <= set("^~ ") and not line.startswith("Failure #")]
    return f"Ray trial failed: {' '.join(message)[:300] or 'worker died'} ({error_file or 'no error file'})"


def _cuda() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except Exception:
        return False
