"""`python -m tuner run|validate|convert|results|dashboard`: a Vertex AI tuning job, run here.

Exit codes: 0 done (some trials may have failed within the failure budget); 1 the study
failed (failure budget used up; fix the trainer, then `run --retry-failed` continues it), or
stopped on a full disk (the same command resumes it once
there is space); 2 bad usage or config, reported before anything is written or run; 128+N
interrupted by signal N (running trials are run again by the same command).
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import shlex
import shutil
import signal
import stat
import sys
import tempfile

import yaml

from tuner import spec as S

ALGORITHMS = {"algorithm-unspecified": S.BAYESIAN, "grid-search": S.GRID,
              "random-search": S.RANDOM}
ALGORITHM_WORDS = {S.BAYESIAN: "Bayesian optimisation with a Gaussian process",
                   S.GRID: "grid search", S.RANDOM: "random search"}


class UsageError(Exception):
    """Bad input found after parsing the flags: one line, exit 2."""


def _whole_number(text: str, least: int, words: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be {words}, got {value}")
    return value


def _positive(text: str) -> int:
    return _whole_number(text, 1, "at least 1")


def _count(text: str) -> int:
    return _whole_number(text, 0, "0 or more")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tuner",
        description="Run a Vertex AI hyperparameter tuning job's study on this machine.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run", help="run the study (resumes it if --output-dir already holds it)",
        description="Validate CONFIG, then run its trials as local processes. A trial command "
                    "after -- replaces the config's own (argv as given, no shell); it gets "
                    "one --<parameterId>=<value> per active parameter.",
        usage="python -m tuner run CONFIG [options] [-- TRIAL COMMAND ...]")
    run.add_argument("config", metavar="CONFIG", help="Vertex or legacy tuning YAML")
    run.add_argument("--max-trial-count", type=_positive, help="overrides maxTrialCount")
    run.add_argument("--parallel-trial-count", type=_positive,
                     help="overrides parallelTrialCount")
    run.add_argument("--algorithm", choices=list(ALGORITHMS), help="overrides studySpec.algorithm")
    run.add_argument("--output-dir", help="the study's folder (default: runs/<config name>); "
                                          "rerun with the same one to resume")
    run.add_argument("--storage", help="shared study storage: a journal file path (e.g. on "
                                       "NFS) or a database URL; default <output-dir>/"
                                       "study.journal")
    run.add_argument("--gpus", default="auto",
                     help="auto (every visible GPU, else CPU), none, all, or ids like 0,1")
    run.add_argument("--trials-per-gpu", type=_positive, default=1,
                     help="trials sharing one GPU (sets TF_FORCE_GPU_ALLOW_GROWTH)")
    run.add_argument("--seed", type=int, help="seed of the search, for repeatable suggestions")
    run.add_argument("--heartbeat-timeout", type=float, metavar="SECONDS",
                     help="shared storage: a tuner on another machine silent this long is gone "
                          "and its running trials run again here (default 60; at least 15: "
                          "tuners beat every 5 s)")
    run.add_argument("--retry-failed", action="store_true",
                     help="run a resumed study's FAILED and INFEASIBLE trials again (same "
                          "parameters, new trial ids; the failures are kept): after fixing a "
                          "trainer whose failures ended the study")
    run.add_argument("--dry-run", action="store_true",
                     help="validate, print each trial's command and environment, run nothing")
    run.add_argument("--backend", choices=("local", "vertex"), default="local",
                     help="where trials run: local processes (default), or each trial as a "
                          "Vertex AI custom job")
    run.add_argument("--region", help="--backend=vertex: the jobs' region (default: $REGION)")
    run.add_argument("--project", help="--backend=vertex: the project (default: $PROJECT_ID)")
    run.add_argument("--bucket", help="--backend=vertex: gs://BUCKET[/PREFIX]; trial N writes "
                                      "under BUCKET/<study>/N/ (default: $BUCKET)")
    run.add_argument("--preemption-retries", type=_count, default=3,
                     help="--backend=vertex: how often a trial whose Spot VM is preempted is "
                          "run again (default 3)")
    run.set_defaults(func=cmd_run)

    validate = commands.add_parser("validate", help="check a config as strictly as gcloud")
    validate.add_argument("config", metavar="CONFIG")
    validate.set_defaults(func=cmd_validate)

    convert = commands.add_parser("convert", help="legacy trainingInput YAML -> Vertex YAML")
    convert.add_argument("config", metavar="LEGACY_CONFIG")
    convert.add_argument("-o", "--output", help="write here instead of standard output")
    convert.set_defaults(func=cmd_convert)

    results = commands.add_parser("results", help="show a study again: a local output dir, or "
                                                  "a cloud job's gs://bucket/base")
    results.add_argument("source", metavar="DIR|gs://BUCKET/BASE")
    results.add_argument("--config", help="for gs://: the job's config (metric goal, "
                                          "measurement selection, parameter columns)")
    results.add_argument("--output-dir", help="write trials.csv, best_trial.json and plots "
                                              "here (default: the study's own folder; for "
                                              "gs://: none)")
    results.set_defaults(func=cmd_results)

    dashboard = commands.add_parser(
        "dashboard", help="a study in the browser: optuna-dashboard, and TensorBoard over the "
                          "trials' logs",
        description="Serve optuna-dashboard over a study's storage (read-only unless "
                    "--allow-writes) and, if installed, TensorBoard over its trials' logs, "
                    "until Ctrl-C. Works while the study runs.")
    where = dashboard.add_mutually_exclusive_group(required=True)
    where.add_argument("source", metavar="DIR", nargs="?", help="a study's --output-dir")
    where.add_argument("--storage", help="a study storage (journal file or database URL) "
                                         "instead: every study in it, no TensorBoard")
    dashboard.add_argument("--host", default="127.0.0.1",
                           help="address to listen on (default: loopback only)")
    dashboard.add_argument("--port", type=int, default=8080, help="0 picks a free one")
    dashboard.add_argument("--allow-writes", action="store_true",
                           help="let the browser change the study (notes, tell, delete)")
    dashboard.add_argument("--no-tensorboard", dest="tensorboard", action="store_false",
                           help="do not start TensorBoard (it loads TensorFlow if installed: "
                                "seconds of CPU and about 700 MB of memory)")
    dashboard.set_defaults(func=cmd_dashboard)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    trial_command = None
    if "--" in argv:
        cut = argv.index("--")
        argv, trial_command = argv[:cut], argv[cut + 1:]
    parser = build_parser()
    args = parser.parse_args(argv)
    if trial_command is not None and args.command != "run":
        parser.error("a trial command after -- is only for `run`")
    if trial_command == []:
        parser.error("nothing after --: give the trial command, e.g. -- python train.py")
    try:
        return args.func(args, trial_command)
    except S.SpecError as exc:
        print(f"error: {getattr(args, 'config', None) or args.source}: {exc}", file=sys.stderr)
        return 2
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _load(args, overrides=None) -> S.TuningJob:
    _require_regular_file(args.config)
    job = S.load(args.config, overrides)
    for note in job.notes:
        print(f"note: {note}", file=sys.stderr)
    return job


def _require_regular_file(path: str) -> None:
    """Reading a FIFO would wait forever and a device may never end: only files are configs."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # reading it says what is wrong
    if not stat.S_ISREG(mode):
        kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a file")
        raise S.SpecError("", f"is {kind}, not a regular file: give the path of a YAML config")


def _require_writable(flag: str, folder: str, *, why: str = "") -> None:
    """Files can be written into `folder` (created if missing): checked before anything is."""
    probe = os.path.abspath(folder)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        problem = f"{probe} is a file, not a folder"
    elif not os.access(probe, os.W_OK | os.X_OK):
        problem = f"{probe} is read-only"
    else:
        return
    raise UsageError(f"{folder}: {problem}{why}; give {flag} a folder that can be written")


def _command_problem(command: list[str]) -> str | None:
    """Why the OS would not run `command`, if it would not: found before any trial starts."""
    program = command[0]
    if os.sep not in program:
        return None if shutil.which(program) else f"{program!r} is not found on PATH"
    if not os.path.isfile(program):
        return f"{program} {'is a folder' if os.path.isdir(program) else 'does not exist'}"
    if not os.access(program, os.X_OK):
        return f"{program} is not executable (chmod +x it, or put its interpreter first)"
    with open(program, "rb") as f:
        first = f.readline(256)
    interpreter = first[2:].split()[0].decode(errors="replace") if first.startswith(b"#!") \
        and first[2:].split() else None
    if interpreter and not (os.path.isfile(interpreter) and os.access(interpreter, os.X_OK)):
        return f"{program} starts with #!{interpreter}, which does not exist or is not executable"
    return None


def _goals(job: S.TuningJob) -> str:
    """Every metric with its goal, e.g. "accuracy MAXIMIZE, latency MINIMIZE"."""
    return ", ".join(f"{m.id} {m.goal}" for m in job.metrics)


def _search_words(job: S.TuningJob) -> str:
    if len(job.metrics) > 1 and job.algorithm == S.BAYESIAN:
        return "multi-objective TPE (Optuna's; the Gaussian process models one metric)"
    return ALGORITHM_WORDS[job.algorithm]


def _disk_full(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


# --------------------------------------------------------------------------------------------
# validate / convert
# --------------------------------------------------------------------------------------------

def cmd_validate(args, _command) -> int:
    job = _load(args)
    shape = (f"{job.max_trial_count} trials, {job.parallel_trial_count} in parallel, "
             f"{job.algorithm}, metric{'s' if len(job.metrics) > 1 else ''} {_goals(job)}, "
             f"{len(job.walk())} parameters")
    if job.dialect == "legacy":
        print(f"OK: {args.config} is a valid legacy AI Platform config ({shape}). "
              f"gcloud ai hp-tuning-jobs needs the Vertex form: "
              f"python -m tuner convert {shlex.quote(args.config)}")
    else:
        print(f"OK: {args.config} is a valid Vertex AI HyperparameterTuningJob config ({shape})")
    problem = S.local_problem(job)
    if problem:
        print(f"note: `python -m tuner run` will refuse it: {problem}", file=sys.stderr)
    return 0


def cmd_convert(args, _command) -> int:
    job = _load(args)
    if job.dialect != "legacy":
        raise UsageError(f"{args.config} is already a Vertex config (it has studySpec)")
    S.parse(job.document)  # what we write must pass our own validation
    text = (f"# Converted from {os.path.basename(args.config)} by `python -m tuner convert`.\n"
            "# Check trialJobSpec (image, machine type) before submitting.\n"
            + yaml.safe_dump(job.document, sort_keys=False, default_flow_style=False))
    if args.output:
        from tuner.results import write_atomic
        write_atomic(args.output, text.encode())
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


# --------------------------------------------------------------------------------------------
# run
# --------------------------------------------------------------------------------------------

def _overrides(args) -> dict:
    return {"maxTrialCount": args.max_trial_count,
            "parallelTrialCount": args.parallel_trial_count,
            "algorithm": ALGORITHMS.get(args.algorithm) if args.algorithm else None}


def _slots(args, job):
    from tuner.runner import SlotError, make_slots, visible_gpus

    try:
        return make_slots(job.parallel_trial_count, args.gpus, args.trials_per_gpu,
                          visible_gpus(), os.cpu_count() or 1)
    except SlotError as exc:
        raise UsageError(str(exc)) from None


def _describe_slots(slots) -> str:
    if slots[0].gpus:
        text = (f"{len(slots)} GPU slot(s) on GPU "
                f"{', '.join(sorted({g for s in slots for g in s.gpus}))}")
    else:
        text = f"{len(slots)} CPU slot(s)"
    if slots[0].threads:
        text += f", {slots[0].threads} thread(s) each"
    return text


def cmd_run(args, trial_command) -> int:
    overrides = _overrides(args)
    job = _load(args, overrides)
    problem = S.local_problem(job)
    if problem:
        raise S.SpecError(problem.path, problem.message)
    if args.backend == "vertex":
        return _run_vertex(args, job, trial_command, overrides)
    slots = _slots(args, job)
    command = trial_command or list(job.trial_job.argv)
    output_dir = args.output_dir or os.path.join(
        "runs", os.path.splitext(os.path.basename(args.config))[0])
    problem = _command_problem(command)
    if problem:
        raise UsageError(f"the trial command cannot run: {problem}")
    if args.dry_run:
        origin = "given after --" if trial_command else job.trial_job.origin
        return _dry_run(args, job, slots, command, origin, output_dir)
    return _run(args, job, slots, command, output_dir, overrides, trial_command is not None)


def _dry_run(args, job, slots, command, origin, output_dir, backend=None) -> int:
    """The same oracle as a run, on in-memory storage, with a backend that starts nothing."""
    import optuna

    from tuner.backends.local import DryRun
    from tuner.study import Study

    print(f"dry run of {args.config} ({job.dialect}): {_goals(job)}, "
          f"{_search_words(job)}, {job.max_trial_count} trials, "
          f"{job.parallel_trial_count} at a time on "
          f"{backend.description if backend else _describe_slots(slots)}")
    print(f"trial command ({origin}): {shlex.join(command)}")
    if backend is None:
        print("each trial inherits this environment minus TF_CONFIG, CLUSTER_SPEC, "
              "CUDA_VISIBLE_DEVICES and AIP_*/CLOUD_ML_* variables, plus:")
        backend = DryRun(slots, output_dir, command, job)
    oracle = Study(optuna.storages.InMemoryStorage(), "dry-run", job, seed=args.seed)
    # with the default search only the first parallelTrialCount trials are known in advance
    known = job.parallel_trial_count if oracle.learns_from_results else job.max_trial_count
    shown = 0
    while shown < known and (record := oracle.suggest()) is not None:
        backend.start(record)
        shown += 1
    if shown < job.max_trial_count:
        if job.algorithm == S.GRID:
            print(f"\nthe grid has {shown} points: the study ends after trial {shown}")
        else:
            print(f"\ntrials {shown + 1}-{job.max_trial_count} are suggested from the results "
                  f"of earlier ones")
    return 0


def _run_vertex(args, job, trial_command, overrides) -> int:
    """Each trial a Vertex AI custom job; the study's storage and results stay on this machine."""
    from tuner.backends import vertex

    if trial_command is not None:
        raise UsageError("--backend=vertex runs trialJobSpec's container: put the trial command "
                         "in its containerSpec command/args, not after --")
    output_dir = args.output_dir or os.path.join(
        "runs", os.path.splitext(os.path.basename(args.config))[0])
    try:
        target = vertex.Target.from_flags(args.project, args.region, args.bucket,
                                          job.display_name or "study")
        backend = (vertex.VertexDryRun if args.dry_run else vertex.VertexBackend)(
            job, target, preemption_retries=args.preemption_retries)
    except vertex.SettingError as exc:
        raise UsageError(str(exc)) from None
    if args.dry_run:
        return _dry_run(args, job, None, backend.command, "trialJobSpec pool 0", output_dir,
                        backend)
    return _run(args, job, None, backend.command, output_dir, overrides, False, backend)


def _run(args, job, slots, command, output_dir, overrides, custom, backend=None) -> int:
    from tuner import study as study_mod
    from tuner.journal import DamagedJournal

    least = 3 * study_mod.HEARTBEAT_S
    if args.heartbeat_timeout is not None and args.heartbeat_timeout < least:
        raise UsageError(f"--heartbeat-timeout must be at least {least:g} s (tuners beat every "
                         f"{study_mod.HEARTBEAT_S:g} s), got {args.heartbeat_timeout:g}")
    folders = [("--output-dir", output_dir)]
    if args.storage and "://" not in args.storage:
        folders.append(("--storage", os.path.dirname(os.path.abspath(args.storage))))
    for flag, folder in folders:
        _require_writable(flag, folder)
    storage_name = None
    try:
        storage, storage_name = study_mod.storage_for(output_dir, args.storage)
        return _run_study(args, job, slots, command, output_dir, overrides, custom, storage,
                          storage_name, backend)
    except (DamagedJournal, study_mod.StorageUnusable) as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        if not _disk_full(exc):
            raise
        print(f"error: no space left on the disk of {exc.filename or output_dir}: the study "
              "stopped; every finished trial is kept in "
              f"{study_mod.shown(storage_name or output_dir)}; free "
              "space there and run the same command again to resume", file=sys.stderr)
        return 1


def _note_another_command(output_dir: str, command: list[str]) -> None:
    """A study resumed with other trainer args mixes two experiments in one table: say so. Each
    trial keeps the command it ran (its `reproduce:` line). The interpreter may move (another
    venv path); its name may not."""
    try:
        with open(os.path.join(output_dir, "tuner.json")) as f:
            before = json.load(f).get("command")
    except (OSError, ValueError, AttributeError):
        return  # a new study (or no readable record of the old one's command)
    if not before or (os.path.basename(before[0]), before[1:]) == (os.path.basename(command[0]),
                                                                    command[1:]):
        return
    print(f"note: this study's trials ran `{shlex.join(before)}`; the trials run from now on run "
          f"`{shlex.join(command)}` (each trial keeps the command it ran; give another "
          "--output-dir to keep the two apart)", file=sys.stderr)


def _run_study(args, job, slots, command, output_dir, overrides, custom, storage,
               storage_name, backend=None) -> int:
    from tuner import results
    from tuner import study as study_mod
    from tuner.backends.local import LocalBackend
    from tuner.controller import Controller, Outcome
    from tuner.plot_worker import PlotWorker
    from tuner.trial import TrialState

    name = job.display_name or "study"
    _note_another_command(output_dir, command)
    try:
        study = study_mod.Study(storage, name, job, seed=args.seed,
                                stale_s=args.heartbeat_timeout or study_mod.STALE_S)
    except study_mod.StudyMismatch as exc:
        raise UsageError(f"{study_mod.shown(storage_name)} already holds study {name!r} with "
                         f"another search space ({exc}); use another --output-dir (or set "
                         "displayName for a new study in shared storage)") from None
    os.makedirs(output_dir, exist_ok=True)
    state = {"config": os.path.abspath(args.config), "storage": storage_name,
             "study_name": name, "document": job.document, "overrides": overrides,
             "command": command}
    results.write_atomic(os.path.join(output_dir, "tuner.json"),  # the storage's password too
                         (json.dumps(state, indent=2) + "\n").encode(),
                         private=study_mod.has_password(storage_name))
    view = results.LiveView(job)
    before = study.records()
    if backend is None:
        backend, on = LocalBackend(slots, output_dir, command, job), _describe_slots(slots)
    else:
        on = backend.description
    print(f"study {name!r}: {_goals(job)}, {_search_words(job)}, up to "
          f"{study.trial_limit} trials, {backend.capacity} at a time on {on}")
    print(f"output: {output_dir}  storage: {study_mod.shown(storage_name)}")
    if before:
        finished = sum(1 for r in before if r.state is not TrialState.ACTIVE)
        active = sum(1 for r in before if r.state is TrialState.ACTIVE and r.started)
        left = (f"; {active} trial(s) left {TrialState.ACTIVE} by a stopped tuner run again "
                "with the same id and parameters" if active else "")
        print(f"resuming: {finished} trial(s) finished{left}")
    if args.retry_failed:
        retried = study.retry_failed()
        print(f"retrying {len(retried)} failed trial(s) with the same parameters: "
              + (", ".join(f"trial {old} as trial {new}" for old, new in retried) or "none left")
              + (" (the failures stay in the study's storage)" if retried else ""))
    parameter_ids = job.parameter_ids()
    maximize = job.goal == S.MAXIMIZE

    objectives = results.objectives(job)

    def refresh():
        rows = results.rows_from_records(job, study.records())
        return rows, results.write_files(output_dir, rows, parameter_ids, maximize, job.metric,
                                         plots=False, objectives=objectives)

    plotter = PlotWorker()
    controller = Controller(study, backend, view, on_change=refresh, preload=(plotter.start,))
    asked = []

    def interrupt(signum, _frame):  # later signals are ignored while the trials are killed
        asked.append(signum)
        if len(asked) == 1:
            controller.interrupted = signum
            controller.wake()
        elif len(asked) == 2:
            raise KeyboardInterrupt  # asked twice: stop waiting, controller.run kills the trials

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            outcome = controller.run()
        except KeyboardInterrupt:  # raised by `interrupt` only: controller.run killed the trials
            outcome = Outcome("interrupted", f"{signal.Signals(asked[1]).name} twice: running "
                                             f"trials killed and left {TrialState.ACTIVE}; run "
                                             "the same command again to resume")
    except BaseException:
        plotter.close()
        raise
    finally:
        view.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
    rows, written = refresh()
    written += plotter.draw(output_dir, rows, parameter_ids, objectives or ((job.metric, maximize),))
    print()
    print(results.summary(job, rows, config_path=args.config, overrides=overrides,
                          custom_command=custom))
    _print_jobs(job, study.records())
    print(f"wrote {', '.join(os.path.join(output_dir, w) for w in written)}")
    if outcome.status == "failed":
        print(f"error: study failed: {outcome.message}; fix the trainer, then run the same "
              "command with --retry-failed to run the failed trials again", file=sys.stderr)
        return 1
    if outcome.status == "interrupted":
        print(f"interrupted ({outcome.message})", file=sys.stderr)
        return 128 + controller.interrupted
    return 0


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------

def cmd_results(args, _command) -> int:
    from tuner import results

    if args.source.startswith("gs://"):
        with tempfile.TemporaryDirectory() as into:
            try:
                state = results.tuner_study_from_gcs(args.source, into)
            except results.CloudStorageError as exc:
                raise UsageError(f"{args.source}: {exc}") from None
            if state is not None:  # the tuner ran inside a job: its own record of the study
                return _study_results(args, state, args.output_dir)
        job = _load(args) if args.config else None
        try:
            rows, parameter_ids, metric = results.rows_from_gcs(args.source, job)
        except results.CloudStorageError as exc:
            raise UsageError(f"{args.source}: {exc}") from None
        if not rows:
            raise UsageError(f"{args.source}: no trial folders (<base>/<trial id>/) found")
        maximize = job is None or job.goal == S.MAXIMIZE
        if job is None:
            print(f"(no --config: {metric} taken as MAXIMIZE with the last measurement, "
                  "Vertex's defaults)")
        print(results.table(results.sort_rows(rows, maximize), metric, parameter_ids))
        best = results.best_row(rows, maximize)
        if best:
            print(f"best trial {best.trial_id}: {metric}={best.value:.6g}\n"
                  f"  reproduce: {shlex.join(best.command)}")
        if args.output_dir:
            _require_writable("--output-dir", args.output_dir)
            os.makedirs(args.output_dir, exist_ok=True)
            written = results.write_files(args.output_dir, rows, parameter_ids, maximize,
                                          metric, plots=True)
            print(f"wrote {', '.join(os.path.join(args.output_dir, w) for w in written)}")
        return 0
    return _local_results(args)


def _local_results(args) -> int:
    path = os.path.join(args.source, "tuner.json")
    try:
        with open(path) as f:
            state = json.load(f)
    except OSError:
        raise UsageError(f"{args.source}: no tuner.json; is this a study's --output-dir?"
                         ) from None
    return _study_results(args, state, args.output_dir or args.source)


def _study_results(args, state: dict, target: str | None) -> int:
    """The table and summary of the study `state` (a tuner.json) names, and its files written
    into `target` (none if None)."""
    from tuner import results
    from tuner import study as study_mod
    from tuner.journal import DamagedJournal

    if target is not None:
        _require_writable("--output-dir", target,
                          why=" (`results` writes trials.csv and the plots there)")
    job = S.parse(state["document"], state["overrides"])
    try:
        storage = study_mod.existing_storage(state["storage"])
        study = study_mod.Study(storage, state["study_name"], job, create=False)
    except (FileNotFoundError, KeyError):
        raise UsageError(f"{args.source}: the study's storage "
                         f"{study_mod.shown(state['storage'])} is gone") from None
    except (DamagedJournal, study_mod.StorageUnusable) as exc:
        raise UsageError(str(exc)) from None
    rows = results.rows_from_records(job, study.records())
    written = []
    if target is not None:
        os.makedirs(target, exist_ok=True)
        written = results.write_files(target, rows, job.parameter_ids(),
                                      job.goal == S.MAXIMIZE, job.metric, plots=True,
                                      objectives=results.objectives(job))
    config = os.path.relpath(state["config"])
    print(results.summary(job, rows, config_path=state["config"] if config.startswith("..")
                          else config,
                          overrides=state["overrides"],
                          custom_command=state["command"] != list(job.trial_job.argv)))
    _print_jobs(job, study.records())
    if written:
        print(f"wrote {', '.join(os.path.join(target, w) for w in written)}")
    return 0


def _print_jobs(job, records) -> None:
    """Trials run as Vertex AI jobs: each one's job, machine, wall time and console page."""
    from tuner.backends.vertex import job_lines

    for line in job_lines(job, records):
        print(line)


# --------------------------------------------------------------------------------------------
# dashboard
# --------------------------------------------------------------------------------------------

def cmd_dashboard(args, _command) -> int:
    from tuner import dashboard

    try:
        return dashboard.serve(args.source, args.storage, args.host, args.port,
                               allow_writes=args.allow_writes, tensorboard=args.tensorboard)
    except dashboard.DashboardError as exc:
        raise UsageError(str(exc)) from None
