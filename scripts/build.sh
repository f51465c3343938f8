#!/usr/bin/env bash
# Builds the trainer image (Dockerfile.cpu or Dockerfile.gpu), or the tuner's image on top of it
# (Dockerfile.tuner), and, with --push, pushes it to Artifact Registry. Run scripts/build.sh --help
# for the flags.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<EOF
Usage: scripts/build.sh cpu|gpu|tuner-cpu|tuner-gpu [--push] [options]

Builds Dockerfile.cpu or Dockerfile.gpu with the pinned dependencies of requirements.txt and
tags the image twice: IMAGE_URI, and the same repository with VERSION-gREVISION (the package
version and the git commit, plus -dirty when files that go into the image differ from it).
tuner-cpu and tuner-gpu build that trainer image (tagged locally only), then Dockerfile.tuner on
top of it: the image of scripts/submit_tuning_job.sh, a whole study inside one job.

Options (flag, else environment variable, else default):
  --project ID        PROJECT_ID; else gcloud's configured project
  --region REGION     REGION, the Artifact Registry location, e.g. us-central1 (required)
  --repo NAME         REPO, the Artifact Registry repository (default: $DEFAULT_REPO)
  --image-name NAME   IMAGE_NAME; the image is NAME-VARIANT, e.g. NAME-cpu (default: $DEFAULT_IMAGE_NAME)
  --image-uri URI     IMAGE_URI; default:
                      REGION-docker.pkg.dev/PROJECT/REPO/IMAGE_NAME-VARIANT:VERSION
                      (VERSION is __version__ in trainer/__init__.py). With IMAGE_URI set,
                      project and region are not needed.
  --base-image REF    BASE_IMAGE build argument (default: the Dockerfile's own)
  --platform P        PLATFORM (default: linux/amd64, what Vertex AI runs)
  --push              also push both tags (run 'gcloud auth configure-docker
                      REGION-docker.pkg.dev' once before)
  --dry-run           print the commands, run none
  -h, --help          this text

Environment only:
  DOCKER              the container CLI (default: docker; podman works too)

Values may hold only letters, digits and _ . , : / = + @ % * ~ -; anything else is refused.
Exit status: 0 built; 1 a step failed; 2 bad input (nothing was run).
EOF
}

variant=""
push=0
project_flag=""
region=${REGION:-}
repo=${REPO:-$DEFAULT_REPO}
image_name=${IMAGE_NAME:-$DEFAULT_IMAGE_NAME}
image_uri=${IMAGE_URI:-}
base_image=${BASE_IMAGE:-}
platform=${PLATFORM:-linux/amd64}
docker=${DOCKER:-docker}

while (($#)); do
    case $1 in
        --*=*) set -- "${1%%=*}" "${1#*=}" "${@:2}" ;;
    esac
    case $1 in
        -h | --help) usage; exit 0 ;;
        --dry-run) DRY_RUN=1; shift ;;
        --push) push=1; shift ;;
        --project) need_value "$@"; project_flag=$2; shift 2 ;;
        --region) need_value "$@"; region=$2; shift 2 ;;
        --repo) need_value "$@"; repo=$2; shift 2 ;;
        --image-name) need_value "$@"; image_name=$2; shift 2 ;;
        --image-uri) need_value "$@"; image_uri=$2; shift 2 ;;
        --base-image) need_value "$@"; base_image=$2; shift 2 ;;
        --platform) need_value "$@"; platform=$2; shift 2 ;;
        cpu | gpu | tuner-cpu | tuner-gpu)
            [[ -z $variant ]] || usage_error "give one variant, cpu, gpu, tuner-cpu or tuner-gpu"
            variant=$1
            shift
            ;;
        *) usage_error "unknown argument $(display_value "$1") (see --help)" ;;
    esac
done

[[ -n $variant ]] || usage_error "which image? give cpu, gpu, tuner-cpu or tuner-gpu (see --help)"
trainer_variant=${variant#tuner-}
dockerfiles=("Dockerfile.$trainer_variant")
[[ $variant == "$trainer_variant" ]] || dockerfiles+=(Dockerfile.tuner)
check_program "DOCKER" "$docker"
check_platform "--platform/PLATFORM" "$platform"
[[ -z $base_image ]] || check_pattern "--base-image/BASE_IMAGE" "$base_image" '^[A-Za-z0-9][A-Za-z0-9._/:@-]*$' "an image reference"
version=$(package_version)
image_uri=$(image_to_use "$image_uri" "$project_flag" "$region" "$repo" "$image_name" "$variant" "$version")

# The git revision, for the second tag and the OCI revision label.
revision=""
if git -C "$ROOT" rev-parse --verify --quiet HEAD >/dev/null 2>&1; then
    revision=$(git -C "$ROOT" rev-parse --short=12 HEAD)
    # -dirty: what goes into the image differs from the commit (edited or untracked files).
    if [[ -n $(cd "$ROOT" && git status --porcelain -- "${dockerfiles[@]}" .dockerignore setup.py pyproject.toml \
        "requirements*.txt" trainer tuner 2>/dev/null) ]]; then
        revision+="-dirty"
    fi
fi
tags=("$image_uri")
if [[ -n $revision ]]; then
    tags+=("$(image_repository "$image_uri"):$version-g$revision")
else
    note "no git revision here (not a git checkout, or no commit yet): tagging with $image_uri only"
fi

command -v "$docker" >/dev/null 2>&1 || ((DRY_RUN)) || fail "$docker not found on PATH: install Docker (or set DOCKER=podman)"

build=("$docker" build "--file=$ROOT/Dockerfile.$trainer_variant" "--platform=$platform")
[[ -z $base_image ]] || build+=("--build-arg=BASE_IMAGE=$base_image")
if [[ $variant != "$trainer_variant" ]]; then
    # the trainer image the tuner's is built on, under a local name only (never pushed)
    trainer_image="localhost/$image_name-$trainer_variant:$version-tuner-base"
    trainer_build=("${build[@]}" "--tag=$trainer_image" "$ROOT")
    build=("$docker" build "--file=$ROOT/Dockerfile.tuner" "--platform=$platform"
        "--build-arg=TRAINER_IMAGE=$trainer_image")
fi
build+=("--label=org.opencontainers.image.version=$version")
[[ -z $revision ]] || build+=("--label=org.opencontainers.image.revision=$revision")
for tag in "${tags[@]}"; do
    build+=("--tag=$tag")
done
build+=("$ROOT")

((DRY_RUN)) && comment "scripts/build.sh --dry-run: the commands below were not run"
# BuildKit: the default builder of current Docker; older ones need it asked for.
export DOCKER_BUILDKIT=1
[[ -z ${trainer_build+x} ]] || run "${trainer_build[@]}"
run "${build[@]}"
if ((push)); then
    registry=${image_uri%%/*}
    STEP_HINT="is $docker logged in? run 'gcloud auth configure-docker $registry' once"
    for tag in "${tags[@]}"; do
        run "$docker" push "$tag"
    done
    STEP_HINT=
fi
((DRY_RUN)) || note "built ${tags[*]}"
