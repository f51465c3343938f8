# shellcheck shell=bash disable=SC2034  # the DEFAULT_* settings are used by the scripts sourcing it
# Shared by scripts/*.sh (sourced, never run): option parsing helpers, the settings every
# script takes, their validation, and how commands are printed and run.
#
# Rules kept here so that each script states them once:
# - every setting comes from a flag, else an environment variable, else a default;
# - every value is checked against a strict pattern before anything runs (exit 2, one line);
# - commands are argv arrays, never strings: no value ever passes through a shell;
# - --dry-run prints each command, quoted so that it can be pasted into a shell, and runs none.
# Written for bash 3.2 and later (macOS ships 3.2): no ${x,,}, ${x@Q}, mapfile or associative
# arrays, and empty arrays are expanded as ${a[@]+"${a[@]}"} because of `set -u`.

SCRIPTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPTS_DIR/.." && pwd)
PROG=${PROG:-$(basename "$0")}
DRY_RUN=0

# Defaults shared by the scripts (each is documented in the scripts' --help).
DEFAULT_REPO=vertex-tf-trainer
DEFAULT_IMAGE_NAME=trainer
DEFAULT_MACHINE_TYPE=n1-standard-4
DEFAULT_GPU_MACHINE_TYPE=n1-standard-8

# ---------------------------------------------------------------------------------------------
# Messages and exits
# ---------------------------------------------------------------------------------------------

# Bad input: one line, exit 2, before anything has run.
usage_error() {
    printf '%s: %s\n' "$PROG" "$*" >&2
    exit 2
}

# A step failed or something the step needs is missing: one line, exit 1.
fail() {
    printf '%s: %s\n' "$PROG" "$*" >&2
    exit 1
}

note() {
    printf '%s: %s\n' "$PROG" "$*" >&2
}

# ---------------------------------------------------------------------------------------------
# Option parsing
# ---------------------------------------------------------------------------------------------

# need_value OPTION "$@": the option takes a value; refuses a missing one.
need_value() {
    if (($# < 2)); then
        usage_error "$1 needs a value (see --help)"
    fi
}

# is_true VALUE: the spellings of "yes" accepted for boolean environment variables.
is_true() {
    case $(printf '%s' "$1" | tr '[:upper:]' '[:lower:]') in
        1 | true | yes | on) return 0 ;;
        '' | 0 | false | no | off) return 1 ;;
        *) return 2 ;;
    esac
}

# env_bool NAME: 1 or 0 from an environment variable; refuses other spellings.
env_bool() {
    local name=$1 value=${!1:-} rc=0
    is_true "$value" || rc=$?
    case $rc in
        0) printf 1 ;;
        1) printf 0 ;;
        *) usage_error "$name=$value: expected 1/0, true/false, yes/no" ;;
    esac
}

# ---------------------------------------------------------------------------------------------
# Validation: each checker takes the setting's name (as the user knows it) and its value.
# ---------------------------------------------------------------------------------------------

# Characters that a trainer argument may hold. Everything a shell, gcloud's list syntax or
# Vertex's $(VAR) substitution could act on is outside it: $ ` ; & | < > ( ) \ ' " ^ ! # and
# whitespace.
ARG_CHARS='A-Za-z0-9_.,:/=+@%*~-'

check_required() {
    local name=$1 value=$2 hint=$3
    [[ -n $value ]] || usage_error "$name is missing: $hint"
}

# display_value VALUE: the value as a message shows it, on one line.
display_value() {
    if [[ $1 =~ [[:cntrl:]] ]]; then
        printf %q "$1"
    else
        shell_quote "$1"
    fi
}

# No value may smuggle in characters a shell or gcloud could interpret, whatever its pattern.
# check_no_metachar NAME VALUE [SEPARATOR]: the message shows NAME, SEPARATOR (default =), VALUE.
check_no_metachar() {
    local name=$1 value=$2 separator=${3:-=} bad what
    if [[ $value =~ [^$ARG_CHARS] ]]; then
        bad=${BASH_REMATCH[0]}
        case $bad in
            ' ') what="a space" ;;
            $'\t') what="a tab" ;;
            $'\n') what="a newline" ;;
            [[:cntrl:]]) what="the control character $(printf %q "$bad")" ;;
            *) what="'$bad'" ;;
        esac
        usage_error "$name$separator$(display_value "$value"): $what is not allowed (allowed: letters, digits and _ . , : / = + @ % * ~ -)"
    fi
}

check_pattern() {
    local name=$1 value=$2 pattern=$3 expected=$4
    check_no_metachar "$name" "$value"
    [[ $value =~ $pattern ]] || usage_error "$name=$(display_value "$value"): expected $expected"
}

check_project() {
    check_pattern "$1" "$2" '^([a-z][a-z0-9.-]*[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$' \
        "a Google Cloud project ID such as my-project-123"
}

check_region() {
    check_pattern "$1" "$2" '^[a-z]+(-[a-z]+)+[0-9]+$' "a Vertex AI region such as us-central1"
}

check_bucket() {
    check_pattern "$1" "$2" '^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/[A-Za-z0-9._=+@%~-]+)*/?$' \
        "a Cloud Storage URI such as gs://my-bucket or gs://my-bucket/some/prefix"
}

# A Vertex AI training job can only pull from Artifact Registry or Container Registry.
IMAGE_URI_PATTERN='^([a-z0-9-]+-docker\.pkg\.dev/[a-z0-9.:-]+/[a-z0-9._-]+|([a-z]+\.)?gcr\.io/[a-z0-9.:-]+)/[a-z0-9._-]+(/[a-z0-9._-]+)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[a-f0-9]{64})?$'

check_image_uri() {
    check_pattern "$1" "$2" "$IMAGE_URI_PATTERN" \
        "a registry path REGION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE[:TAG] (or gcr.io/PROJECT/IMAGE[:TAG])"
}

check_name() {
    check_pattern "$1" "$2" '^[a-z0-9]([a-z0-9_.-]{0,62}[a-z0-9])?$' "lower-case letters, digits, - _ . (at most 64)"
}

check_machine_type() {
    check_pattern "$1" "$2" '^[a-z][a-z0-9]*(-[a-z0-9]+)+$' "a Compute Engine machine type such as n1-standard-4"
}

check_accelerator_type() {
    check_pattern "$1" "$2" '^NVIDIA_[A-Z0-9_]+$' \
        "an NVIDIA accelerator such as NVIDIA_TESLA_T4 or NVIDIA_L4 (the trainer has no TPU strategy)"
}

# check_count NAME VALUE MIN
check_count() {
    local name=$1 value=$2 min=$3
    check_no_metachar "$name" "$value"
    [[ $value =~ ^[0-9]{1,6}$ ]] || usage_error "$name=$(display_value "$value"): expected a whole number >= $min"
    ((10#$value >= min)) || usage_error "$name=$value: must be at least $min"
}

check_display_name() {
    check_pattern "$1" "$2" '^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$' "letters, digits, - _ . (at most 128)"
}

check_platform() {
    check_pattern "$1" "$2" '^[a-z0-9]+/[a-z0-9]+(/[a-z0-9]+)?$' "an OCI platform such as linux/amd64"
}

check_program() {
    check_pattern "$1" "$2" '^[A-Za-z0-9_./-]+$' "a program name or path"
}

# check_accelerator TYPE_NAME TYPE COUNT_NAME COUNT
check_accelerator() {
    local type_name=$1 type=$2 count_name=$3 count=$4
    if [[ -n $count && -z $type ]]; then
        usage_error "$count_name=$(display_value "$count") without $type_name: say which accelerator (e.g. NVIDIA_TESLA_T4)"
    fi
    [[ -z $type ]] || check_accelerator_type "$type_name" "$type"
    [[ -z $count ]] || check_count "$count_name" "$count" 1
}

# Trainer arguments are passed through to `python -m trainer.task` untouched, as argv.
check_trainer_args() {
    local arg
    for arg in "$@"; do
        check_no_metachar "trainer argument" "$arg" " "
    done
}

# ---------------------------------------------------------------------------------------------
# Settings that need a lookup
# ---------------------------------------------------------------------------------------------

# The package version, read from trainer/__init__.py as text (scripts never import trainer).
package_version() {
    local version
    version=$(sed -n 's/^__version__ = "\([^"]*\)"$/\1/p' "$ROOT/trainer/__init__.py")
    [[ $version =~ ^[0-9A-Za-z.+-]+$ ]] || fail "cannot read __version__ from trainer/__init__.py"
    printf '%s' "$version"
}

# The Pythons this package installs on, as "LOW HIGH" (3.LOW up to, not including, 3.HIGH),
# read from setup.py's python_requires=">=3.LOW,<3.HIGH" as text.
python_range() {
    local range
    range=$(sed -n 's/^ *python_requires=">=3\.\([0-9]*\),<3\.\([0-9]*\)",$/\1 \2/p' "$ROOT/setup.py")
    [[ $range =~ ^[0-9]+\ [0-9]+$ ]] || fail "cannot read python_requires from setup.py"
    printf '%s' "$range"
}

# check_executor_python NAME URI: a prebuilt image names its Python (tf-cpu.2-17.py310); pip
# there must be able to install this package's pins, or the cloud job fails at install time.
check_executor_python() {
    local name=$1 uri=$2 range low high runs="does not name its Python (prebuilt images do: .py310)"
    range=$(python_range) || exit $?
    low=${range% *} high=${range#* }
    if [[ ${uri##*/} =~ \.(py|cp)3([0-9]+)(:|@|$) ]]; then
        runs="runs Python 3.$((10#${BASH_REMATCH[2]}))"
        ((10#${BASH_REMATCH[2]} < low || 10#${BASH_REMATCH[2]} >= high)) || return 0
    fi
    usage_error "$name=$uri $runs, and this package's pins install on Python 3.$low to 3.$((high - 1)) only; no prebuilt Vertex AI training image has such a Python yet, so drop --python-package and submit the trainer image (scripts/build.sh cpu|gpu --push)"
}

# resolve_project FLAG_VALUE: the flag, else $PROJECT_ID, else gcloud's configured project.
resolve_project() {
    local project=${1:-${PROJECT_ID:-}}
    if [[ -z $project ]] && command -v gcloud >/dev/null 2>&1; then
        project=$(gcloud config get-value project 2>/dev/null) || project=
    fi
    check_required "project" "$project" "pass --project or set PROJECT_ID (gcloud has no configured project)"
    check_project "--project/PROJECT_ID" "$project"
    printf '%s' "$project"
}

# The image a build or a smoke test works on: IMAGE_URI when given (checked), else the Artifact
# Registry path made from project, region, repository, name, variant and version.
image_to_use() {
    local image_uri=$1 project_flag=$2 region=$3 repo=$4 image_name=$5 variant=$6 version=$7 project
    if [[ -n $image_uri ]]; then
        check_image_uri "--image-uri/IMAGE_URI" "$image_uri"
        printf '%s' "$image_uri"
        return
    fi
    check_required "region" "$region" "pass --region or set REGION (e.g. us-central1)"
    check_region "--region/REGION" "$region"
    check_name "--repo/REPO" "$repo"
    check_name "--image-name/IMAGE_NAME" "$image_name"
    project=$(resolve_project "$project_flag") || exit $?  # errexit is off inside $(...)
    default_image_uri "$project" "$region" "$repo" "$image_name" "$variant" "$version"
}

# default_image_uri PROJECT REGION REPO NAME VARIANT VERSION
# A domain-scoped project (example.com:proj) is spelt example.com/proj in registry paths.
default_image_uri() {
    local project=$1 region=$2 repo=$3 name=$4 variant=$5 version=$6
    printf '%s-docker.pkg.dev/%s/%s/%s-%s:%s' "$region" "${project/://}" "$repo" "$name" "$variant" "$version"
}

# image_repository URI: the URI without its tag or digest.
image_repository() {
    local uri=${1%@*}
    if [[ ${uri##*/} == *:* ]]; then
        uri=${uri%:*}
    fi
    printf '%s' "$uri"
}

# The Python that renders and validates: $PYTHON, else the project's .venv, else python3.
resolve_python() {
    if [[ -n ${PYTHON:-} ]]; then
        check_program "PYTHON" "$PYTHON"
        printf '%s' "$PYTHON"
    elif [[ -x $ROOT/.venv/bin/python ]]; then
        printf '%s' "$ROOT/.venv/bin/python"
    else
        printf python3
    fi
}

# ---------------------------------------------------------------------------------------------
# Printing and running commands
# ---------------------------------------------------------------------------------------------

# shell_quote WORD: the word as a shell would need it typed.
shell_quote() {
    if [[ $1 =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
        printf '%s' "$1"
    else
        local q="'\\''"
        printf "'%s'" "${1//\'/$q}"
    fi
}

# format_command ARGV...: one line, or one option per line (with \ continuations) when long.
format_command() {
    # A word starts a new line when it is an option, or follows a word that needs no value
    # (an option with =, or a positional argument after the options began).
    local word quoted line="" multi="" options=0 joins=0
    for word in "$@"; do
        quoted=$(shell_quote "$word")
        line+="${line:+ }$quoted"
        if [[ $word == -* ]]; then
            options=1
        fi
        if ((options)) && { [[ $word == -* ]] || ((!joins)); }; then
            multi+=$' \\\n    '"$quoted"
        else
            multi+="${multi:+ }$quoted"
        fi
        joins=0
        [[ $word != -* || $word == *=* ]] || joins=1
    done
    if ((${#line} <= 100)); then
        printf '%s\n' "$line"
    else
        printf '%s\n' "$multi"
    fi
}

# run ARGV...: prints the command; runs it unless --dry-run. A failed step ends the script
# (exit 1) with one line, and STEP_HINT after it when set.
run() {
    if ((DRY_RUN)); then
        format_command "$@"
        return 0
    fi
    printf '+ %s' "$(format_command "$@")" >&2
    printf '\n' >&2
    local rc=0
    "$@" || rc=$?
    ((rc == 0)) || fail "step failed (exit $rc): $1 ${2:-}${3:+ $3}${STEP_HINT:+: $STEP_HINT}"
}

# run_quiet ARGV...: run, with the command's standard output discarded.
run_quiet() {
    if ((DRY_RUN)); then
        run "$@"
    else
        run "$@" >/dev/null
    fi
}

# comment TEXT...: a line of the dry-run transcript that a shell would ignore.
comment() {
    if ((DRY_RUN)); then
        printf '# %s\n' "$*"
    else
        note "$*"
    fi
}

# show_file PATH: the rendered file, as comment lines of the dry-run transcript.
show_file() {
    if ((DRY_RUN)); then
        sed 's/^/#   /' "$1"
    fi
}
