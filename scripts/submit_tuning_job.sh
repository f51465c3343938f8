#!/usr/bin/env bash
# Submits a whole study as ONE Vertex AI custom job: the tuner runs inside it, its trials are
# processes on that machine's GPUs. Run scripts/submit_tuning_job.sh --help for the flags.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<EOF
Usage: scripts/submit_tuning_job.sh [options]

Checks the tuning config (default: hptuning_config.yaml) with 'python -m tuner validate',
copies it to BUCKET/DISPLAY_NAME/hptuning_config.yaml, then submits one
'gcloud ai custom-jobs create' on one machine whose container runs
  python -m tuner run /gcs/BUCKET/DISPLAY_NAME/hptuning_config.yaml
      --output-dir=/gcs/BUCKET/DISPLAY_NAME --gpus=...
through the job's Cloud Storage FUSE mount (/gcs/BUCKET is gs://BUCKET). The study's journal,
each trial's folder (model, checkpoints, logs, metrics) and the tables stay in
BUCKET/DISPLAY_NAME/, so a restarted job (a preempted Spot VM, an internal retry) runs the same
command and the study goes on where it stopped. Read it with
  python -m tuner results BUCKET/DISPLAY_NAME --config CONFIG
Unlike scripts/submit_hptuning.sh, the trials share the machine (one per GPU slot): no job
start-up per trial, no trial-count ceiling, your own stopping rules.

Options (flag, else environment variable, else default):
  --config FILE             HPTUNING_CONFIG (default: hptuning_config.yaml); fixed trainer flags
                            go in its containerSpec.args
  --project ID              PROJECT_ID; else gcloud's configured project
  --region REGION           REGION, e.g. us-central1 (required)
  --bucket gs://B[/P]       BUCKET, where the study lives (required)
  --display-name NAME       DISPLAY_NAME (default: vertex-tf-trainer-tuner-<UTC time>); the
                            study's folder: submit again with the same name to resume a study
  --image-uri URI           IMAGE_URI, an image with the trainer AND the tuner; default:
                            REGION-docker.pkg.dev/PROJECT/REPO/IMAGE_NAME-tuner-VARIANT:VERSION,
                            VARIANT gpu with an accelerator, else cpu
  --repo NAME               REPO (default: $DEFAULT_REPO)
  --image-name NAME         IMAGE_NAME (default: $DEFAULT_IMAGE_NAME)
  --machine-type TYPE       MACHINE_TYPE (default: $DEFAULT_MACHINE_TYPE; $DEFAULT_GPU_MACHINE_TYPE with GPUs)
  --accelerator-type T      ACCELERATOR_TYPE, e.g. NVIDIA_TESLA_T4 (default: none)
  --accelerator-count N     ACCELERATOR_COUNT, GPUs of the machine (default: 1 with a type)
  --gpus all|none|IDS       TUNER_GPUS, the tuner's --gpus: the GPUs trials run on, e.g. 0,1
                            (default: all with an accelerator, else none)
  --trials-per-gpu N        TRIALS_PER_GPU, trials sharing one GPU (default: 1)
  --max-trial-count N       MAX_TRIAL_COUNT (default: the file's maxTrialCount)
  --parallel-trial-count N  PARALLEL_TRIAL_COUNT (default: the file's parallelTrialCount; at
                            most GPUs x trials-per-gpu run at once)
  --spot                    SPOT=1: a Spot VM; the job restarts when it is preempted
  --out-dir DIR             where the rendered file goes (default: build/vertex/DISPLAY_NAME)
  --dry-run                 check the config, render the file, print the commands, run none
  -h, --help                this text

Environment only:
  PYTHON                    the Python that renders and validates (default: .venv/bin/python,
                            else python3)

Values may hold only letters, digits and _ . , : / = + @ % * ~ -; anything else is refused.
Exit status: 0 submitted; 1 a step failed; 2 bad input, or a config that
'python -m tuner validate' refuses (nothing was uploaded or submitted).
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
machine_type=${MACHINE_TYPE:-}
accelerator_type=${ACCELERATOR_TYPE:-}
accelerator_count=${ACCELERATOR_COUNT:-}
gpus=${TUNER_GPUS:-}
trials_per_gpu=${TRIALS_PER_GPU:-}
max_trials=${MAX_TRIAL_COUNT:-}
parallel_trials=${PARALLEL_TRIAL_COUNT:-}
spot=$(env_bool SPOT)
out_dir=""

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
        --machine-type) need_value "$@"; machine_type=$2; shift 2 ;;
        --accelerator-type) need_value "$@"; accelerator_type=$2; shift 2 ;;
        --accelerator-count) need_value "$@"; accelerator_count=$2; shift 2 ;;
        --gpus) need_value "$@"; gpus=$2; shift 2 ;;
        --trials-per-gpu) need_value "$@"; trials_per_gpu=$2; shift 2 ;;
        --max-trial-count) need_value "$@"; max_trials=$2; shift 2 ;;
        --parallel-trial-count) need_value "$@"; parallel_trials=$2; shift 2 ;;
        --out-dir) need_value "$@"; out_dir=$2; shift 2 ;;
        *) usage_error "unknown argument $(display_value "$1") (see --help)" ;;
    esac
done

# check_gpus VALUE COUNT: the tuner's --gpus against the GPUs the machine will have.
check_gpus() {
    local value=$1 count=$2 id seen=","
    check_pattern "--gpus/TUNER_GPUS" "$value" '^(all|none|[0-9]+(,[0-9]+)*)$' "all, none, or GPU ids such as 0,1"
    [[ $value == none || -n $count ]] ||
        usage_error "--gpus=$value: the machine has no GPU; pass --accelerator-type (and --accelerator-count), or --gpus=none"
    [[ $value != all && $value != none ]] || return 0
    for id in ${value//,/ }; do
        ((10#$id < count)) || usage_error "--gpus=$value: GPU $id does not exist on a machine with --accelerator-count=$count (ids 0 to $((count - 1)))"
        [[ $seen != *",$((10#$id)),"* ]] || usage_error "--gpus=$value: GPU $id is listed twice; use --trials-per-gpu to run several trials on one GPU"
        seen+="$((10#$id)),"
    done
}

# gcloud_list WORD...: gcloud's list syntax; with ^;^ when a word holds a comma (';' never can).
gcloud_list() {
    local joined
    if [[ $* == *,* ]]; then
        joined=$(printf '%s;' "$@")
        printf '^;^%s' "${joined%;}"
    else
        joined=$(printf '%s,' "$@")
        printf '%s' "${joined%,}"
    fi
}

# Every check comes before anything is uploaded or submitted.
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
[[ -n $display_name ]] || display_name="vertex-tf-trainer-tuner-$(date -u +%Y%m%d-%H%M%S)"
check_display_name "--display-name/DISPLAY_NAME" "$display_name"
check_accelerator "--accelerator-type/ACCELERATOR_TYPE" "$accelerator_type" "--accelerator-count/ACCELERATOR_COUNT" "$accelerator_count"
[[ -z $accelerator_type || -n $accelerator_count ]] || accelerator_count=1
if [[ -z $gpus ]]; then
    gpus=none
    [[ -z $accelerator_count ]] || gpus=all
fi
check_gpus "$gpus" "$accelerator_count"
[[ -z $trials_per_gpu ]] || check_count "--trials-per-gpu/TRIALS_PER_GPU" "$trials_per_gpu" 1
[[ -z $trials_per_gpu || $gpus != none ]] || usage_error "--trials-per-gpu=$trials_per_gpu with --gpus=none: trials run on the CPU; drop it or give the machine GPUs"
[[ -z $max_trials ]] || check_count "--max-trial-count/MAX_TRIAL_COUNT" "$max_trials" 1
[[ -z $parallel_trials ]] || check_count "--parallel-trial-count/PARALLEL_TRIAL_COUNT" "$parallel_trials" 1
if [[ -z $machine_type ]]; then
    machine_type=$DEFAULT_MACHINE_TYPE
    [[ -z $accelerator_type ]] || machine_type=$DEFAULT_GPU_MACHINE_TYPE
fi
check_machine_type "--machine-type/MACHINE_TYPE" "$machine_type"
variant=tuner-cpu
[[ -z $accelerator_type ]] || variant=tuner-gpu
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
[[ -n $image_uri ]] || image_uri=$(default_image_uri "$project" "$region" "$repo" "$image_name" "$variant" "$version")
python=$(resolve_python)
if ! ((DRY_RUN)); then
    command -v gcloud >/dev/null 2>&1 || fail "gcloud not found on PATH: install the Google Cloud CLI"
fi

# The tuner checks the file as strictly as gcloud does; what `run` alone refuses is refused too,
# since the job would only find out after its machine has started.
rc=0
message=$(cd "$ROOT" && PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$python" -m tuner validate "$config" 2>&1) || rc=$?
if ((rc == 2)); then
    usage_error "$config: refused by python -m tuner validate: ${message##*$'\n'}"
elif ((rc != 0)); then
    fail "python -m tuner validate $config failed (exit $rc): ${message##*$'\n'}"
fi
refusal="note: \`python -m tuner run\` will refuse it: "
if [[ $message == *"$refusal"* ]]; then
    refused=${message#*"$refusal"}
    usage_error "$config: python -m tuner run refuses it: ${refused%%$'\n'*}"
fi

# It checks the machine and accelerator against each other, with the tuner's table of them.
spec_file="$out_dir/custom_job_spec.yaml"
spot_flag=()
((spot)) && spot_flag=(--spot)
rc=0
message=$(PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$python" "$SCRIPTS_DIR/render_vertex.py" \
    custom-job-spec "$spec_file" "--base-output-dir=$bucket/$display_name" ${spot_flag[@]+"${spot_flag[@]}"} \
    "--machine-type=$machine_type" ${accelerator_type:+"--accelerator-type=$accelerator_type"} \
    ${accelerator_count:+"--accelerator-count=$accelerator_count"} 2>&1) || rc=$?
((rc == 0)) || { printf '%s: %s\n' "$PROG" "${message##*$'\n'}" >&2; exit "$(( rc == 2 ? 2 : 1 ))"; }

# The job sees gs://BUCKET/PATH as /gcs/BUCKET/PATH (Cloud Storage FUSE).
study_uri="$bucket/$display_name"
study_dir="/gcs/${study_uri#gs://}"
# The job's only other tuner is the one a restart killed: its trials run again once it has been
# silent for the shortest heartbeat timeout the tuner takes, not the default minute.
tuner_args=(run "$study_dir/hptuning_config.yaml" "--output-dir=$study_dir" "--gpus=$gpus" --heartbeat-timeout=15)
[[ -z $trials_per_gpu ]] || tuner_args+=("--trials-per-gpu=$trials_per_gpu")
[[ -z $max_trials ]] || tuner_args+=("--max-trial-count=$max_trials")
[[ -z $parallel_trials ]] || tuner_args+=("--parallel-trial-count=$parallel_trials")
machine="machine-type=$machine_type"
[[ -z $accelerator_type ]] || machine+=",accelerator-type=$accelerator_type,accelerator-count=$accelerator_count"

((DRY_RUN)) && comment "scripts/submit_tuning_job.sh --dry-run: the commands below were not run"
comment "$config: accepted by python -m tuner validate"
comment "rendered $spec_file (CustomJobSpec: what gcloud has no flags for):"
show_file "$spec_file"
run gcloud storage cp "$config" "$study_uri/hptuning_config.yaml"
run gcloud ai custom-jobs create "--project=$project" "--region=$region" \
    "--display-name=$display_name" "--config=$spec_file" \
    "--worker-pool-spec=$machine,replica-count=1,container-image-uri=$image_uri" \
    "--command=python,-m,tuner" "--args=$(gcloud_list "${tuner_args[@]}")"
comment "the study's outcome, while it runs and after: python -m tuner results $study_uri --config $config"
