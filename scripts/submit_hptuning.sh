#!/usr/bin/env bash
# Submits hptuning_config.yaml to Vertex AI hyperparameter tuning (gcloud ai hp-tuning-jobs
# create) after `python -m tuner validate` has accepted the rendered file. Run
# scripts/submit_hptuning.sh --help for the flags.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<EOF
Usage: scripts/submit_hptuning.sh [options] [-- TRAINER_ARGS...]

Renders the tuning config (default: hptuning_config.yaml, the file 'python -m tuner run'
uses locally) with the image URI, display name, trial counts, machine, output directory and
scheduling filled in, checks it with 'python -m tuner validate', then submits it with
'gcloud ai hp-tuning-jobs create'. Each trial runs the trainer image with the study's
parameters as flags; TRAINER_ARGS (fixed flags such as --epochs=20) are added to every
trial's args. The study's parameters themselves cannot be given there.

Options (flag, else environment variable, else default):
  --config FILE             HPTUNING_CONFIG (default: hptuning_config.yaml)
  --project ID              PROJECT_ID; else gcloud's configured project
  --region REGION           REGION, e.g. us-central1 (required)
  --bucket gs://B[/P]       BUCKET; trials write under BUCKET/DISPLAY_NAME/<trial id>/ (required)
  --display-name NAME       DISPLAY_NAME (default: vertex-tf-trainer-hpt-<UTC time>)
  --image-uri URI           IMAGE_URI; default, as scripts/build.sh tags it:
                            REGION-docker.pkg.dev/PROJECT/REPO/IMAGE_NAME-VARIANT:VERSION,
                            VARIANT gpu when the trials have an accelerator, else cpu
  --repo NAME               REPO (default: $DEFAULT_REPO)
  --image-name NAME         IMAGE_NAME (default: $DEFAULT_IMAGE_NAME)
  --max-trial-count N       MAX_TRIAL_COUNT (default: the file's maxTrialCount)
  --parallel-trial-count N  PARALLEL_TRIAL_COUNT (default: the file's parallelTrialCount)
  --max-failed-trial-count N
                            MAX_FAILED_TRIAL_COUNT (default: the file's maxFailedTrialCount)
  --algorithm A             ALGORITHM: algorithm-unspecified (Bayesian), grid-search or
                            random-search (default: the file's studySpec.algorithm)
  --machine-type TYPE       MACHINE_TYPE (default: the file's, else $DEFAULT_MACHINE_TYPE;
                            $DEFAULT_GPU_MACHINE_TYPE when --accelerator-type is given)
  --accelerator-type T      ACCELERATOR_TYPE, e.g. NVIDIA_TESLA_T4 (default: the file's)
  --accelerator-count N     ACCELERATOR_COUNT, GPUs per machine (default: 1 with a type)
  --workers N               WORKER_COUNT: each trial runs on a chief plus N workers
  --spot                    SPOT=1: trials on Spot VMs, restarted when preempted
  --out-dir DIR             where the rendered file goes (default: build/vertex/DISPLAY_NAME)
  --dry-run                 render and validate the file, print the command, run it not
  -h, --help                this text

Environment only:
  PYTHON                    the Python that renders and validates (default: .venv/bin/python,
                            else python3)

The counts and --algorithm are spelt as gcloud and 'python -m tuner run' spell them; the
older --max-trials, --parallel-trials and --max-failed-trials still work.

Values may hold only letters, digits and _ . , : / = + @ % * ~ -; anything else is refused.
Exit status: 0 submitted; 1 a step failed; 2 bad input, or a rendered file that
'python -m tuner validate' refuses (nothing was submitted).
EOF
}

config=${HPTUNING_CONFIG:-}
project_flag=""
region=${REGION:-}
bucket=${BUCKET:-}
display_name=${DISPLAY_NAME:-}
image_uri=${IMAGE_URI:-}
repo=${REPO:-$DEFAULT_REPO}
image_name=${IMAGE_NAME:-$DEFAULT_IMAGE_NAME}
max_trials=${MAX_TRIAL_COUNT:-}
parallel_trials=${PARALLEL_TRIAL_COUNT:-}
max_failed_trials=${MAX_FAILED_TRIAL_COUNT:-}
algorithm=${ALGORITHM:-}
machine_type=${MACHINE_TYPE:-}
accelerator_type=${ACCELERATOR_TYPE:-}
accelerator_count=${ACCELERATOR_COUNT:-}
workers=${WORKER_COUNT:-}
spot=$(env_bool SPOT)
out_dir=""
trainer_args=()

while (($#)); do
    case $1 in
        --*=*) set -- "${1%%=*}" "${1#*=}" "${@:2}" ;;
    esac
    case $1 in
        -h | --help) usage; exit 0 ;;
        --dry-run) DRY_RUN=1; shift ;;
        --spot) spot=1; shift ;;
        --config) need_value "$@"; config=$2; shift 2 ;;
        --project) need_value "$@"; project_flag=$2; shift 2 ;;
        --region) need_value "$@"; region=$2; shift 2 ;;
        --bucket) need_value "$@"; bucket=$2; shift 2 ;;
        --display-name) need_value "$@"; display_name=$2; shift 2 ;;
        --image-uri) need_value "$@"; image_uri=$2; shift 2 ;;
        --repo) need_value "$@"; repo=$2; shift 2 ;;
        --image-name) need_value "$@"; image_name=$2; shift 2 ;;
        --max-trial-count | --max-trials) need_value "$@"; max_trials=$2; shift 2 ;;
        --parallel-trial-count | --parallel-trials) need_value "$@"; parallel_trials=$2; shift 2 ;;
        --max-failed-trial-count | --max-failed-trials) need_value "$@"; max_failed_trials=$2; shift 2 ;;
        --algorithm) need_value "$@"; algorithm=$2; shift 2 ;;
        --machine-type) need_value "$@"; machine_type=$2; shift 2 ;;
        --accelerator-type) need_value "$@"; accelerator_type=$2; shift 2 ;;
        --accelerator-count) need_value "$@"; accelerator_count=$2; shift 2 ;;
        --workers) need_value "$@"; workers=$2; shift 2 ;;
        --out-dir) need_value "$@"; out_dir=$2; shift 2 ;;
        --) shift; trainer_args=("$@"); break ;;
        *) usage_error "unknown argument $(display_value "$1") (see --help; trainer flags go after --)" ;;
    esac
done

# Every check comes before anything runs.
if [[ -z $config ]]; then
    config="$ROOT/hptuning_config.yaml"
else
    check_pattern "--config/HPTUNING_CONFIG" "$config" '^[A-Za-z0-9_./=+@%~-]+$' "a file path"
fi
[[ -f $config ]] || usage_error "--config=$config: no such file"
check_required "region" "$region" "pass --region or set REGION (e.g. us-central1)"
check_region "--region/REGION" "$region"
check_required "bucket" "$bucket" "pass --bucket or set BUCKET (gs://my-bucket)"
check_bucket "--bucket/BUCKET" "$bucket"
bucket=${bucket%/}
[[ -n $display_name ]] || display_name="vertex-tf-trainer-hpt-$(date -u +%Y%m%d-%H%M%S)"
check_display_name "--display-name/DISPLAY_NAME" "$display_name"
[[ -z $max_trials ]] || check_count "--max-trial-count/MAX_TRIAL_COUNT" "$max_trials" 1
[[ -z $parallel_trials ]] || check_count "--parallel-trial-count/PARALLEL_TRIAL_COUNT" "$parallel_trials" 1
[[ -z $max_failed_trials ]] || check_count "--max-failed-trial-count/MAX_FAILED_TRIAL_COUNT" "$max_failed_trials" 0
[[ -z $algorithm ]] || check_pattern "--algorithm/ALGORITHM" "$algorithm" \
    '^(algorithm-unspecified|grid-search|random-search)$' "algorithm-unspecified, grid-search or random-search"
check_accelerator "--accelerator-type/ACCELERATOR_TYPE" "$accelerator_type" "--accelerator-count/ACCELERATOR_COUNT" "$accelerator_count"
[[ -z $workers ]] || check_count "--workers/WORKER_COUNT" "$workers" 1
[[ -z $machine_type ]] || check_machine_type "--machine-type/MACHINE_TYPE" "$machine_type"
check_trainer_args ${trainer_args[@]+"${trainer_args[@]}"}
version=$(package_version)
if [[ -n $image_uri ]]; then
    check_image_uri "--image-uri/IMAGE_URI" "$image_uri"
else
    check_name "--repo/REPO" "$repo"
    check_name "--image-name/IMAGE_NAME" "$image_name"
fi
if [[ -n $out_dir ]]; then
    check_pattern "--out-dir" "$out_dir" '^[A-Za-z0-9_./=+@%~-]+$' "a directory path"
else
    out_dir="$ROOT/build/vertex/$display_name"
fi
project=$(resolve_project "$project_flag")
if [[ -n $image_uri ]]; then
    cpu_image=$image_uri
    gpu_image=$image_uri
else
    cpu_image=$(default_image_uri "$project" "$region" "$repo" "$image_name" cpu "$version")
    gpu_image=$(default_image_uri "$project" "$region" "$repo" "$image_name" gpu "$version")
fi
python=$(resolve_python)
if ! ((DRY_RUN)); then
    command -v gcloud >/dev/null 2>&1 || fail "gcloud not found on PATH: install the Google Cloud CLI"
fi

render=("$SCRIPTS_DIR/render_vertex.py" hptuning "$config")
mkdir -p "$out_dir"
job_file="$out_dir/hptuning_job.yaml"
render+=("$job_file" "--display-name=$display_name" "--image-uri-cpu=$cpu_image" "--image-uri-gpu=$gpu_image"
    "--base-output-dir=$bucket/$display_name")
[[ -z $max_trials ]] || render+=("--max-trials=$max_trials")
[[ -z $parallel_trials ]] || render+=("--parallel-trials=$parallel_trials")
[[ -z $max_failed_trials ]] || render+=("--max-failed-trials=$max_failed_trials")
[[ -z $algorithm ]] || render+=("--algorithm=$algorithm")
[[ -z $machine_type ]] || render+=("--machine-type=$machine_type")
[[ -z $accelerator_type ]] || render+=("--accelerator-type=$accelerator_type" "--accelerator-count=${accelerator_count:-1}")
[[ -z $workers ]] || render+=("--workers=$workers")
((spot == 0)) || render+=(--spot)
for arg in ${trainer_args[@]+"${trainer_args[@]}"}; do
    render+=("--arg=$arg")
done
rc=0
message=$(PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$python" "${render[@]}" 2>&1) || rc=$?
((rc == 0)) || { printf '%s: %s\n' "$PROG" "${message##*$'\n'}" >&2; exit "$(( rc == 2 ? 2 : 1 ))"; }

# The tuner checks the file as strictly as gcloud does, then applies Vertex AI's own rules.
rc=0
message=$(cd "$ROOT" && PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$python" -m tuner validate "$job_file" 2>&1) || rc=$?
if ((rc == 2)); then
    usage_error "$job_file: refused by python -m tuner validate: ${message##*$'\n'}"
elif ((rc != 0)); then
    fail "python -m tuner validate $job_file failed (exit $rc): ${message##*$'\n'}"
fi

((DRY_RUN)) && comment "scripts/submit_hptuning.sh --dry-run: the command below was not run"
comment "rendered $job_file, accepted by python -m tuner validate:"
show_file "$job_file"
run gcloud ai hp-tuning-jobs create "--project=$project" "--region=$region" \
    "--display-name=$display_name" "--config=$job_file"
