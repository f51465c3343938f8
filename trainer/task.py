"""Entry point: `python -m trainer.task --learning_rate=0.01 ...` trains one model.

Exit codes (DESIGN.md 3.2): 0 done; 2 bad usage or configuration, found before anything is
trained or written (output dirs another run is using included); 1 a failure during the run,
or SIGTERM (during start-up or training). The last line of stderr says why.
"""
import dataclasses
import json
import logging
import os
import signal
import socket
import sys
import time
import traceback

from absl import flags

from trainer import claim, storage
from trainer import config as config_lib
from trainer.errors import ConfigError, RunError, Stopped

FLAGS = flags.FLAGS
USAGE = """Train one model. Every hyperparameter is a flag (--name=value or --name value).

  python -m trainer.task                       # the built-in digits dataset, default model
  python -m trainer.task --model=cnn --learning_rate=0.01 --job_dir=gs://bucket/run1

Outputs go to $AIP_MODEL_DIR, $AIP_CHECKPOINT_DIR, $AIP_TENSORBOARD_LOG_DIR when Vertex AI sets
them, else to --job_dir. Rerunning a killed run with the same command resumes it.
"""


def _fail(code: int, message: str) -> int:
    sys.stderr.flush()
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code


class StoppedDuringStartup(BaseException):
    """SIGTERM before training began. A BaseException, so that no `except Exception` on the
    way (TensorFlow's import, dataset preparation) swallows it."""


def _stop_startup(signum, frame):
    raise StoppedDuringStartup


def _help(argv) -> str | None:
    if "--helpfull" in argv:
        return USAGE + "\n" + FLAGS.get_help()
    if any(a in ("--help", "-h", "--helpshort", "-?") for a in argv[1:]):
        return USAGE + "\n" + FLAGS.module_help(config_lib)
    return None


def parse(argv) -> config_lib.Config:
    """Flags and environment -> a validated Config, with nothing written; raises ConfigError."""
    try:
        rest = FLAGS(argv)
    except flags.Error as e:
        raise ConfigError(f"{e}; see --helpfull for every flag") from None
    if len(rest) > 1:
        raise ConfigError(f"unexpected argument {rest[1]!r}: flags are spelt --name=value")
    config = config_lib.from_flags(FLAGS)
    for flag, path in (("model_dir", config.model_dir), ("checkpoint_dir", config.checkpoint_dir),
                       ("tensorboard_dir", config.tensorboard_dir)):
        try:
            storage.check_writable(path)
        except OSError as e:
            raise ConfigError(f"--{flag}: cannot write to {path} ({e.strerror or e}); "
                              "choose a writable directory") from None
    return _refuse_finished_run(config)


def _refuse_finished_run(config) -> config_lib.Config:
    """A finished run is kept unless --overwrite; then the new run's TensorBoard logs go to a folder
    of their own beside the old ones (TensorBoard shows each as a run), not on top of them."""
    finished = storage.read_text(storage.join(config.model_dir, config_lib.METRICS_FILE))
    if not finished:
        return config
    if not config.overwrite:
        if config.cluster.is_chief:
            raise ConfigError(
                f"{config.model_dir} already holds a finished run ({config_lib.METRICS_FILE}); pass another "
                "--job_dir, or --overwrite to train again into it")
        return config
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return dataclasses.replace(config, tensorboard_dir=storage.join(config.tensorboard_dir, f"overwrite-{stamp}"))


def _on_this_machine(cluster_spec: str) -> bool:
    """Whether every replica of a CLUSTER_SPEC is on this machine: `trainer.launch` (loopback by
    default) sets one as Vertex does, and its outputs are on a disk that stays."""
    try:
        pools = json.loads(cluster_spec).get("cluster", {})
        hosts = {address.rsplit(":", 1)[0].strip("[]") for addresses in pools.values()
                 for address in addresses}
    except (ValueError, AttributeError, TypeError):
        return False
    local = {"localhost", socket.gethostname()}
    return bool(hosts) and all(h in local or h.startswith("127.") or h == "::1" for h in hosts)


def _warn_if_outputs_are_lost(config) -> None:
    """On Vertex AI without baseOutputDirectory, a container's local disk disappears with the job.

    A local tuning study also sets CLUSTER_SPEC, but always with AIP_MODEL_DIR; `trainer.launch`
    sets it with this machine's addresses: no warning there.
    """
    spec = os.environ.get("CLUSTER_SPEC")
    on_vertex = "CLOUD_ML_JOB_ID" in os.environ or (spec is not None and not _on_this_machine(spec))
    local = [d for d in (config.model_dir, config.checkpoint_dir) if not d.startswith(("gs://", "/gcs/"))]
    if on_vertex and "AIP_MODEL_DIR" not in os.environ and local:
        logging.getLogger("trainer").warning(
            "running on Vertex AI with outputs on the container's local disk (%s): they are lost when the job "
            "ends; set baseOutputDirectory on the job or pass --job_dir=gs://...", ", ".join(local))


def _print_summary(config, outcome) -> None:
    m = outcome.metrics
    resumed = f" (resumed after epoch {outcome.resumed_at_epoch})" if outcome.resumed_at_epoch else ""
    print(f"\nTraining done: {m['epochs_run']} epochs{resumed} in {m['wall_time_s']:.1f} s "
          f"on {m['strategy']} with {m['num_replicas']} replica(s)")
    print(f"  {m['metric']}: final {m['final']:.4f}, best {m['best']:.4f} (epoch {m['best_epoch']})")
    print(f"  ended:              {m['ended']}")
    print(f"  model (SavedModel): {config.model_dir}    ({m['exported']} weights: epoch {m['exported_epoch']}"
          f"{'; --export=last for the last' if m['exported'] == 'best' else ''})")
    print(f"  metrics:            {outcome.metrics_path}")
    print(f"  checkpoints:        {config.checkpoint_dir}")
    print(f"  TensorBoard logs:   {config.tensorboard_dir}    (tensorboard --logdir {config.tensorboard_dir})")


def _rerun(config) -> str:
    return config.rerun if config else "rerun the same command"


def main(argv=None) -> int:
    return _main(list(sys.argv if argv is None else argv))[0]


def _main(argv) -> tuple[int, config_lib.Config | None]:
    """The exit status, and the config where the flags were valid."""
    text = _help(argv)
    if text:
        print(text)
        return 0, None
    signal.signal(signal.SIGTERM, _stop_startup)  # until training installs its own handler
    config = None
    try:
        config = parse(argv)
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("trainer").setLevel(logging.INFO)
        _warn_if_outputs_are_lost(config)
        with claim.claimed(config):
            _refuse_finished_run(config)  # again, under the claim: another run may have finished meanwhile
            from trainer import training  # noqa: PLC0415  TensorFlow loads only for a valid config

            outcome = training.run(config)
    except ConfigError as e:
        return _fail(2, str(e)), config
    except StoppedDuringStartup:
        return _fail(1, "stopped by SIGTERM during start-up, before training began: nothing was trained; "
                        f"{_rerun(config)} to start again"), config
    except KeyboardInterrupt:
        return _fail(130, f"interrupted; {_rerun(config)} to resume from the last completed epoch"), config
    except Stopped as e:
        return _fail(1, str(e)), config
    except (RunError, OSError) as e:
        traceback.print_exc()
        return _fail(1, str(e)), config
    except Exception as e:  # the one-line reason must still be the last line
        traceback.print_exc()
        return _fail(1, f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"), config
    if config.cluster.is_chief:
        _print_summary(config, outcome)
    return 0, config


def _exit(code: int, config: config_lib.Config | None) -> None:
    """A failed multi-worker run ends without the interpreter's teardown: there TensorFlow's
    tf.data iterators wait on a cluster that is gone (2 s after a lost peer, over 10 s under load:
    measured), and a job whose replica lingers is a job still paid for. Nothing is lost by it:
    the epochs' files are closed as each is saved, TensorBoard's events are written as they come
    (tests/trainer/test_launch.py reads them), and the output is flushed here."""
    if code and config is not None and config.cluster.is_multi_worker and "tensorflow" in sys.modules:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    _exit(*_main(sys.argv))
