#!/usr/bin/env bash
# Runs the built trainer image on this machine for one short epoch, the way Vertex AI runs it,
# and checks what it leaves behind. Run scripts/smoke_test.sh --help for the flags.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<EOF
Usage: scripts/smoke_test.sh cpu|gpu [options] [-- TRAINER_ARGS...]

Runs the image that scripts/build.sh built, with no network, for one epoch on the built-in
dataset, with the variables Vertex AI sets (AIP_MODEL_DIR, AIP_CHECKPOINT_DIR,
AIP_TENSORBOARD_LOG_DIR, CLUSTER_SPEC, CLOUD_ML_TRIAL_ID, CLOUD_ML_HP_METRIC_FILE), then checks:
exit 0, a metrics.json in the model dir, a hypertune file with at least one report, and (gpu)
that TensorFlow in the image sees at least one GPU through 'docker run --gpus all'. The
container's outputs are copied to --out-dir.

Options (flag, else environment variable, else default):
  --project ID        PROJECT_ID; else gcloud's configured project
  --region REGION     REGION, e.g. us-central1
  --repo NAME         REPO (default: $DEFAULT_REPO)
  --image-name NAME   IMAGE_NAME (default: $DEFAULT_IMAGE_NAME)
  --image-uri URI     IMAGE_URI; default, as scripts/build.sh tags it:
                      REGION-docker.pkg.dev/PROJECT/REPO/IMAGE_NAME-VARIANT:VERSION
                      (with IMAGE_URI set, project and region are not needed)
  --out-dir DIR       where the outputs are copied; must be new or empty
                      (default: build/smoke/<container name>)
  --dry-run           print the commands, run none
  -h, --help          this text
  -- TRAINER_ARGS     passed to the trainer after the default --epochs=1

Environment only:
  DOCKER              the container CLI (default: docker; podman works too)
  PYTHON              the Python that reads the outputs (default: .venv/bin/python, else python3)

Values may hold only letters, digits and _ . , : / = + @ % * ~ -; anything else is refused.
Exit status: 0 passed; 1 a step or a check failed; 2 bad input (nothing was run).
EOF
}

variant=""
project_flag=""
region=${REGION:-}
repo=${REPO:-$DEFAULT_REPO}
image_name=${IMAGE_NAME:-$DEFAULT_IMAGE_NAME}
image_uri=${IMAGE_URI:-}
out_dir=""
docker=${DOCKER:-docker}
trainer_args=(--epochs=1)

while (($#)); do
    case $1 in
        --*=*) set -- "${1%%=*}" "${1#*=}" "${@:2}" ;;
    esac
    case $1 in
        -h | --help) usage; exit 0 ;;
        --dry-run) DRY_RUN=1; shift ;;
        --project) need_value "$@"; project_flag=$2; shift 2 ;;
        --region) need_value "$@"; region=$2; shift 2 ;;
        --repo) need_value "$@"; repo=$2; shift 2 ;;
        --image-name) need_value "$@"; image_name=$2; shift 2 ;;
        --image-uri) need_value "$@"; image_uri=$2; shift 2 ;;
        --out-dir) need_value "$@"; out_dir=$2; shift 2 ;;
        --) shift; trainer_args+=("$@"); break ;;
        cpu | gpu)
            [[ -z $variant ]] || usage_error "give one variant, cpu or gpu"
            variant=$1
            shift
            ;;
        *) usage_error "unknown argument $(display_value "$1") (see --help)" ;;
    esac
done

[[ -n $variant ]] || usage_error "which image? give cpu or gpu (see --help)"
check_program "DOCKER" "$docker"
check_trainer_args "${trainer_args[@]}"
version=$(package_version)
image_uri=$(image_to_use "$image_uri" "$project_flag" "$region" "$repo" "$image_name" "$variant" "$version")
name="vertex-tf-trainer-smoke-$variant-$(date -u +%Y%m%dt%H%M%S)-$$"
if [[ -z $out_dir ]]; then
    out_dir="$ROOT/build/smoke/$name"
else
    check_pattern "--out-dir" "$out_dir" '^[A-Za-z0-9_./=+@%~-]+$' "a directory path"
    if [[ -e $out_dir ]] && [[ -n $(ls -A "$out_dir" 2>/dev/null) || ! -d $out_dir ]]; then
        usage_error "--out-dir=$out_dir: exists and is not an empty directory (outputs of an earlier run would pass for this one's)"
    fi
fi
python=$(resolve_python)

if ! ((DRY_RUN)); then
    command -v "$docker" >/dev/null 2>&1 || fail "$docker not found on PATH: install Docker (or set DOCKER=podman)"
fi

# Inside the container, as Vertex AI lays it out for a single-replica trial with
# baseOutputDirectory set (Vertex uses gs:// there; the trainer treats both alike).
inside=/tmp/smoke
env_args=(
    "--env=AIP_MODEL_DIR=$inside/model/"
    "--env=AIP_CHECKPOINT_DIR=$inside/checkpoints/"
    "--env=AIP_TENSORBOARD_LOG_DIR=$inside/logs/"
    "--env=CLOUD_ML_TRIAL_ID=1"
    "--env=CLOUD_ML_HP_METRIC_FILE=$inside/hypertune/output.metrics"
    '--env=CLUSTER_SPEC={"cluster":{"workerpool0":["localhost:2222"]},"environment":"cloud","task":{"type":"workerpool0","index":0,"trial":"1"}}'
)
gpu_args=()
[[ $variant == gpu ]] && gpu_args=(--gpus=all)

created=0
cleanup() {
    if ((created)); then
        "$docker" rm --force "$name" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

((DRY_RUN)) && comment "scripts/smoke_test.sh --dry-run: the commands below were not run"

STEP_HINT="is the $docker daemon running?"
run_quiet "$docker" info
STEP_HINT="no image $image_uri here: build it with scripts/build.sh $variant"
run_quiet "$docker" image inspect --format='{{.Id}}' "$image_uri"
STEP_HINT=""

if [[ $variant == gpu ]]; then
    probe=(--entrypoint=python "$image_uri" -c
        'import tensorflow as tf; print("gpus=%d" % len(tf.config.list_physical_devices("GPU")))')
    if ((DRY_RUN)); then
        run "$docker" run --rm --network=none --gpus=all "${probe[@]}"
    else
        printf '+ %s\n' "$(format_command "$docker" run --rm --network=none --gpus=all "${probe[@]}")" >&2
        rc=0
        seen=$("$docker" run --rm --network=none --gpus=all "${probe[@]}") || rc=$?
        ((rc == 0)) || fail "could not start a container with --gpus all (exit $rc): is the NVIDIA Container Toolkit installed, and a GPU driver loaded?"
        [[ $seen == *gpus=* && ${seen##*gpus=} =~ ^[1-9][0-9]*$ ]] ||
            fail "TensorFlow in $image_uri sees no GPU (it printed: ${seen##*$'\n'})"
        note "TensorFlow in the image sees ${seen##*gpus=} GPU(s)"
    fi
fi

run "$docker" create "--name=$name" --network=none ${gpu_args[@]+"${gpu_args[@]}"} "${env_args[@]}" \
    "$image_uri" "${trainer_args[@]}"
((DRY_RUN)) || created=1
STEP_HINT="the trainer failed in the image; its output is above"
run "$docker" start --attach "$name"
STEP_HINT=""
if ! ((DRY_RUN)); then
    mkdir -p "$out_dir"
fi
run "$docker" cp "$name:$inside/." "$out_dir"
run "$docker" rm "$name"
((DRY_RUN)) || created=0

if ((DRY_RUN)); then
    comment "then checks $out_dir/model/metrics.json and $out_dir/hypertune/output.metrics"
    exit 0
fi

"$python" - "$out_dir" <<'PY' || fail "the image ran but its outputs are not what Vertex AI needs (see above)"
import json
import pathlib
import sys

out = pathlib.Path(sys.argv[1])
metrics_file = out / "model" / "metrics.json"
hypertune_file = out / "hypertune" / "output.metrics"
problems = []
metrics = None
if not metrics_file.is_file():
    problems.append(f"no {metrics_file}")
else:
    try:
        metrics = json.loads(metrics_file.read_text())
    except ValueError as e:
        problems.append(f"{metrics_file} is not JSON: {e}")
reports = []
if not hypertune_file.is_file():
    problems.append(f"no hypertune file {hypertune_file}")
else:
    for number, line in enumerate(hypertune_file.read_text().splitlines(), 1):
        if line.strip():
            try:
                reports.append(json.loads(line))
            except ValueError:
                problems.append(f"{hypertune_file}:{number} is not a JSON line")
    if not reports:
        problems.append(f"{hypertune_file} holds no report")
for problem in problems:
    print(f"smoke_test.sh: {problem}", file=sys.stderr)
if problems:
    sys.exit(1)
summary = {k: metrics[k] for k in ("metric", "final", "epochs_run") if isinstance(metrics, dict) and k in metrics}
print(f"smoke_test.sh: passed: metrics.json {json.dumps(summary)}; {len(reports)} hypertune report(s); outputs in {out}",
      file=sys.stderr)
PY
