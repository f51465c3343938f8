"""Each installable part, installed from the working tree as a user would: what it brings, what not.

The tuner goes into a fresh venv of its own (no other site-packages), so `import tensorflow`
fails there for real, and it runs a study of a plain-Python trial script. The trainer's install
is TensorFlow's 2.5 GB (minutes even from pip's cache): here the tree's metadata is checked, and
tests/scripts/test_image.py installs it for real (an image is that install) and trains in it.
"""
import ast
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

from tests.tuner.support import ROOT, config, read_csv, write_yaml

# Installing scipy, matplotlib and optuna takes a minute or two on a loaded machine.
INSTALL_TIMEOUT_S = 900
# What only the trainer needs: none of it may come with the tuner.
TENSORFLOW_STACK = ["tensorflow", "tf_keras", "keras", "tensorflow_datasets", "tensorboard", "hypertune"]
# What the tuner's optional extras bring (setup.py: `vertex`, `postgresql`): imported only where asked
# for, with a message naming the extra when it is missing.
EXTRAS_ONLY = ("google.cloud:aiplatform", "google.cloud.aiplatform", "psycopg")
# A user's own trainer: it reports as cloudml-hypertune does, without importing anything.
PLAIN_TRIAL = textwrap.dedent("""\
    import json, os, sys
    x = float(sys.argv[1].split("=", 1)[1])
    with open(os.environ["CLOUD_ML_HP_METRIC_FILE"], "a") as f:
        f.write(json.dumps({"score": str(1 - (x - 0.3) ** 2), "global_step": "1"}) + "\\n")
    """)


def source_tree(tmp_path):
    """A copy of what setup.py builds from: pip builds in the tree it is given (build/, egg-info),
    and the working tree is shared."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ["setup.py", "pyproject.toml", "MANIFEST.in", *(p.name for p in ROOT.glob("requirements*.txt"))]:
        shutil.copy(ROOT / name, src / name)
    for package in ["trainer", "tuner"]:
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return src


def user_env(venv):
    """A shell with only `venv` active: nothing of the repository or of the test's venv on the path."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith(("AIP_", "CLOUD_ML_"))}
    env["PATH"] = os.pathsep.join([str(venv / "bin"), env.get("PATH", "")])
    env["VIRTUAL_ENV"] = str(venv)
    return env


def pins(name):
    """The distribution names a requirements file pins itself (not those it includes)."""
    lines = (ROOT / name).read_text().splitlines()
    return {re.split(r"[=<>\[ ]", line)[0].lower().replace("_", "-")
            for line in lines if line.strip() and not line.startswith(("#", "-r"))}


@pytest.fixture(scope="module")
def tuner_venv(tmp_path_factory):
    """`pip install '<tree>[tuner]'` into a fresh venv: the tuner's pins and nothing else."""
    tmp = tmp_path_factory.mktemp("tuner-only")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    result = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--no-compile",
                             "--disable-pip-version-check", f"{source_tree(tmp)}[tuner]"],
                            cwd=tmp, env=user_env(venv), capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-3000:]
    return venv


def in_venv(venv, *args, cwd, timeout=120):
    return subprocess.run([str(venv / "bin" / "python"), *args], cwd=cwd, env=user_env(venv),
                          capture_output=True, text=True, timeout=timeout)


def test_the_tuner_installs_without_the_tensorflow_stack(tuner_venv, tmp_path):
    result = in_venv(tuner_venv, "-c", "import tensorflow", cwd=tmp_path)
    assert result.returncode == 1 and "No module named 'tensorflow'" in result.stderr, result.stderr
    probe = "import importlib.util, sys; print([m for m in sys.argv[1:] if importlib.util.find_spec(m)])"
    result = in_venv(tuner_venv, "-c", probe, *TENSORFLOW_STACK, cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr


def imported_names(package):
    """Every `module` and `module:name` a package's files import from elsewhere, including
    imports inside functions."""
    names = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names.update(f"{node.module}:{alias.name}" for alias in node.names)
    own = set(sys.stdlib_module_names) | {package, "__future__"}
    return {name for name in names if re.split(r"[.:]", name)[0] not in own}


# Imports each `module` or `module:name` as the import statement would; prints those that fail.
IMPORT_PROBE = textwrap.dedent("""\
    import importlib, sys
    failed = []
    for name in sys.argv[1:]:
        module, _, attribute = name.partition(":")
        try:
            if not hasattr(importlib.import_module(module), attribute or "__name__"):
                importlib.import_module(f"{module}.{attribute}")
        except ImportError as exc:
            failed.append(f"{name} ({exc})")
    print(failed)
    """)


def test_everything_the_tuner_imports_comes_with_its_install(tuner_venv, tmp_path):
    """Lazy imports too (google.cloud for `results gs://`): a missing pin is found here, not by a user."""
    names = sorted(name for name in imported_names("tuner") if not name.startswith(EXTRAS_ONLY))
    assert not {re.split(r"[.:]", name)[0] for name in names} & {"trainer", *TENSORFLOW_STACK}, names
    result = in_venv(tuner_venv, "-c", IMPORT_PROBE, *names, cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr
    result = in_venv(tuner_venv, "-c", "import tuner; print(tuner.__file__)", cwd=tmp_path)
    assert result.stdout.startswith(str(tuner_venv)), result.stdout + result.stderr  # the install, not the tree


def test_the_tuner_alone_runs_a_study_of_a_plain_python_script(tuner_venv, tmp_path):
    (tmp_path / "my_script.py").write_text(PLAIN_TRIAL)
    write_yaml(tmp_path / "hptuning_config.yaml", config(maxTrialCount=3, parallelTrialCount=1))
    result = in_venv(tuner_venv, "-m", "tuner", "run", "hptuning_config.yaml", "--output-dir=study",
                     "--", "python", "my_script.py", cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = read_csv(tmp_path / "study" / "trials.csv")
    assert [row["state"] for row in rows] == ["SUCCEEDED"] * 3, rows
    assert all(float(row["value"]) == 1 - (float(row["x"]) - 0.3) ** 2 for row in rows), rows


def declared(tmp_path):
    """{extra: names} as pip reads them from the tree's built metadata ('' for no extra)."""
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-deps",
                             "--quiet", "--disable-pip-version-check", "--no-build-isolation", "--report", "-",
                             str(source_tree(tmp_path))],
                            cwd=tmp_path, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-3000:]
    (package,) = json.loads(result.stdout)["install"]
    extras = {}
    for requirement in package["metadata"].get("requires_dist", []):
        pin, _, marker = requirement.partition(";")
        extra = re.search(r'extra == "([^"]+)"', marker)
        name = re.split(r"[=<>\[ ]", pin)[0].lower().replace("_", "-")
        extras.setdefault(extra.group(1) if extra else "", set()).add(name)
    return extras


def test_each_extra_declares_its_own_part_and_dev_declares_them_all(tmp_path):
    """The trainer's extra (what the images install) holds none of the tuner's pins, and the other
    way round; tests/scripts/test_image.py checks a real trainer install holds no tuner package."""
    extras = declared(tmp_path)
    assert "" not in extras, extras[""]  # `pip install .` alone installs neither stack
    common = pins("requirements-common.txt")
    assert extras["trainer"] == pins("requirements.txt") | common
    assert extras["tuner"] == pins("requirements-tuner.txt") | common
    assert "optuna" in extras["tuner"] and not extras["trainer"] & pins("requirements-tuner.txt")
    assert "tensorflow" in extras["trainer"] and not extras["tuner"] & pins("requirements.txt")
    assert set().union(*(names for extra, names in extras.items() if extra != "dev")) <= extras["dev"]
