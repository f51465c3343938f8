#!/usr/bin/env bash
# Submits one training run to Vertex AI (gcloud ai custom-jobs create). Run
# scripts/submit_training.sh --help for the flags.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<EOF
Usage: scripts/submit_training.sh [options] [-- TRAINER_ARGS...]

Submits 'gcloud ai custom-jobs create' for the trainer image (or, with --python-package, for a
source distribution of this package on a prebuilt Vertex AI image):
  one replica on CPU                  (default)
  one replica with N GPUs             --accelerator-type NVIDIA_TESLA_T4 --accelerator-count N
                                      (MirroredStrategy over the N GPUs)
  several machines                    --workers N: pool 0 is the chief (1 replica), pool 1 has
                                      N workers of the same machine type and accelerators
                                      (MultiWorkerMirroredStrategy from TF_CONFIG)
  on Spot VMs                         --spot: scheduling.strategy SPOT, and the whole job
                                      restarts when a VM is preempted (the trainer resumes
                                      from its last checkpoint)
The job's baseOutputDirectory is BUCKET/DISPLAY_NAME/, so Vertex AI sets AIP_MODEL_DIR,
AIP_CHECKPOINT_DIR and AIP_TENSORBOARD_LOG_DIR under it. TRAINER_ARGS (hyperparameters such as
--learning_rate=0.01 --batch_size=128) reach 'python -m trainer.task' unchanged.

Options (flag, else environment variable, else default):
  --project ID            PROJECT_ID; else gcloud's configured project
  --region REGION         REGION, e.g. us-central1 (required)
  --bucket gs://B[/P]     BUCKET, where the job writes (required)
  --display-name NAME     DISPLAY_NAME (default: vertex-tf-trainer-<UTC time>)
  --image-uri URI         IMAGE_URI; default, as scripts/build.sh tags it:
                          REGION-docker.pkg.dev/PROJECT/REPO/IMAGE_NAME-VARIANT:VERSION,
                          VARIANT gpu with an accelerator, else cpu
  --repo NAME             REPO (default: $DEFAULT_REPO)
  --image-name NAME       IMAGE_NAME (default: $DEFAULT_IMAGE_NAME)
  --machine-type TYPE     MACHINE_TYPE (default: $DEFAULT_MACHINE_TYPE; $DEFAULT_GPU_MACHINE_TYPE with GPUs)
  --accelerator-type T    ACCELERATOR_TYPE, e.g. NVIDIA_TESLA_T4 (on n1 machines), or NVIDIA_L4
                          with --machine-type g2-standard-8 (default: none)
  --accelerator-count N   ACCELERATOR_COUNT, GPUs per machine (default: 1 with a type)
  --workers N             WORKER_COUNT, replicas in pool 1 besides the chief (default: none)
  --spot                  SPOT=1
  --python-package        PYTHON_PACKAGE=1: build an sdist, copy it to BUCKET/DISPLAY_NAME/package/,
                          run it on --executor-image-uri instead of the trainer image
  --executor-image-uri U  EXECUTOR_IMAGE_URI, a prebuilt Vertex AI training image (required
                          with --python-package) whose name gives a Python that this package's
                          pins install on (python_requires in setup.py). No listed prebuilt
                          image has one: they run Python 3.10 (e.g. tf-cpu.2-17.py310), so
                          this route is refused until one does; use the trainer image
  --out-dir DIR           where the rendered files go (default: build/vertex/DISPLAY_NAME)
  --dry-run               write the files (YAML; the sdist with --python-package), print
                          the gcloud commands, run none
  -h, --help              this text

Environment only:
  PYTHON                  the Python that renders and builds (default: .venv/bin/python, else python3)

Values may hold only letters, digits and _ . , : / = + @ % * ~ -; anything else is refused.
Exit status: 0 submitted; 1 a step failed; 2 bad input (nothing was run).
EOF
}

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
workers=${WORKER_COUNT:-}
spot=$(env_bool SPOT)
python_package=$(env_bool PYTHON_PACKAGE)
executor_image_uri=${EXECUTOR_IMAGE_URI:-}
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
        --python-package) python_package=1; shift ;;
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
        --workers) need_value "$@"; workers=$2; shift 2 ;;
        --executor-image-uri) need_value "$@"; executor_image_uri=$2; shift 2 ;;
        --out-dir) need_value "$@"; out_dir=$2; shift 2 ;;
        --) shift; trainer_args=("$@"); break ;;
        *) usage_error "unknown argument $(display_value "$1") (see --help; trainer flags go after --)" ;;
    esac
done

# Every check comes before anything runs.
check_required "region" "$region" "pass --region or set REGION (e.g. us-central1)"
check_region "--region/REGION" "$region"
check_required "bucket" "$bucket" "pass --bucket or set BUCKET (gs://my-bucket)"
check_bucket "--bucket/BUCKET" "$bucket"
bucket=${bucket%/}
[[ -n $display_name ]] || display_name="vertex-tf-trainer-$(date -u +%Y%m%d-%H%M%S)"
check_display_name "--display-name/DISPLAY_NAME" "$display_name"
check_accelerator "--accelerator-type/ACCELERATOR_TYPE" "$accelerator_type" "--accelerator-count/ACCELERATOR_COUNT" "$accelerator_count"
[[ -z $accelerator_type || -n $accelerator_count ]] || accelerator_count=1
[[ -z $workers ]] || check_count "--workers/WORKER_COUNT" "$workers" 1
if [[ -z $machine_type ]]; then
    machine_type=$DEFAULT_MACHINE_TYPE
    [[ -z $accelerator_type ]] || machine_type=$DEFAULT_GPU_MACHINE_TYPE
fi
check_machine_type "--machine-type/MACHINE_TYPE" "$machine_type"
check_trainer_args ${trainer_args[@]+"${trainer_args[@]}"}
variant=cpu
[[ -z $accelerator_type ]] || variant=gpu
version=$(package_version)
if ((python_package)); then
    check_required "executor-image-uri" "$executor_image_uri" \
        "--python-package runs on a prebuilt image: pass --executor-image-uri or set EXECUTOR_IMAGE_URI"
    check_image_uri "--executor-image-uri/EXECUTOR_IMAGE_URI" "$executor_image_uri"
    check_executor_python "--executor-image-uri/EXECUTOR_IMAGE_URI" "$executor_image_uri"
    [[ -z $image_uri ]] || usage_error "--image-uri and --python-package exclude each other: the package runs on --executor-image-uri"
elif [[ -n $image_uri ]]; then
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
if ! ((python_package)) && [[ -z $image_uri ]]; then
    image_uri=$(default_image_uri "$project" "$region" "$repo" "$image_name" "$variant" "$version")
fi
python=$(resolve_python)
if ! ((DRY_RUN)); then
    command -v gcloud >/dev/null 2>&1 || fail "gcloud not found on PATH: install the Google Cloud CLI"
fi

# The pools: 0 is the chief (exactly one replica); 1 holds the other workers.
machine="machine-type=$machine_type"
[[ -z $accelerator_type ]] || machine+=",accelerator-type=$accelerator_type,accelerator-count=$accelerator_count"
if ((python_package)); then
    code="executor-image-uri=$executor_image_uri,python-module=trainer.task"
else
    code="container-image-uri=$image_uri"
fi
pools=("--worker-pool-spec=$machine,replica-count=1,$code")
[[ -z $workers ]] || pools+=("--worker-pool-spec=$machine,replica-count=$workers,$code")

# --args is a comma-separated list; an argument that holds a comma needs another delimiter,
# which gcloud takes from a ^DELIM^ prefix. ';' can never occur in an argument (see lib.sh).
args_flag=()
if ((${#trainer_args[@]})); then
    joined=$(printf '%s,' "${trainer_args[@]}")
    joined=${joined%,}
    if [[ ${trainer_args[*]} == *,* ]]; then
        joined=$(printf '%s;' "${trainer_args[@]}")
        joined="^;^${joined%;}"
    fi
    args_flag=("--args=$joined")
fi

spec_file="$out_dir/custom_job_spec.yaml"
spot_flag=()
((spot)) && spot_flag=(--spot)
# It checks the machine and accelerator against each other, with the tuner's table of them.
rc=0
message=$(PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$python" "$SCRIPTS_DIR/render_vertex.py" \
    custom-job-spec "$spec_file" "--base-output-dir=$bucket/$display_name" ${spot_flag[@]+"${spot_flag[@]}"} \
    "--machine-type=$machine_type" ${accelerator_type:+"--accelerator-type=$accelerator_type"} \
    ${accelerator_count:+"--accelerator-count=$accelerator_count"} 2>&1) || rc=$?
((rc == 0)) || { printf '%s: %s\n' "$PROG" "${message##*$'\n'}" >&2; exit "$(( rc == 2 ? 2 : 1 ))"; }

((DRY_RUN)) && comment "scripts/submit_training.sh --dry-run: the commands below were not run"
comment "rendered $spec_file (CustomJobSpec: what gcloud has no flags for):"
show_file "$spec_file"

submit=(gcloud ai custom-jobs create "--project=$project" "--region=$region"
    "--display-name=$display_name" "--config=$spec_file" "${pools[@]}")
if ((python_package)); then
    # Built in a dry run too: like the YAML, it is what would be submitted.
    # Its own egg-info folder: a stale one in the work tree would decide what goes in.
    sdist_dir="$out_dir/sdist"
    rm -rf "$sdist_dir"
    mkdir -p "$sdist_dir/egg-info"
    sdist=("$python" setup.py -q egg_info "--egg-base=$sdist_dir/egg-info" sdist "--dist-dir=$sdist_dir")
    printf '+ cd %s && %s\n' "$(shell_quote "$ROOT")" "$(format_command "${sdist[@]}")" >&2
    (cd "$ROOT" && "${sdist[@]}" >&2) || fail "python setup.py sdist failed"
    built=("$sdist_dir"/*.tar.gz)
    [[ ${#built[@]} == 1 && -f ${built[0]} ]] || fail "setup.py sdist did not leave exactly one .tar.gz in $sdist_dir"
    local_package=${built[0]}
    package_uri="$bucket/$display_name/package/${local_package##*/}"
    comment "built $local_package (python setup.py sdist)"
    run gcloud storage cp "$local_package" "$package_uri"
    submit+=("--python-package-uris=$package_uri")
fi
submit+=(${args_flag[@]+"${args_flag[@]}"})
run "${submit[@]}"
