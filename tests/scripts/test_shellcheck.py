"""The scripts pass shellcheck (Debian's `shellcheck` package), following `source` into lib.sh, and run
as typed (executable)."""
import shutil
import subprocess

import pytest

from tests.scripts.support import SCRIPTS


@pytest.mark.skipif(shutil.which("shellcheck") is None,
                    reason="shellcheck is not installed (apt-get install -y shellcheck)")
def test_scripts_pass_shellcheck():
    scripts = sorted(str(p) for p in SCRIPTS.glob("*.sh"))
    result = subprocess.run(["shellcheck", "--external-sources", *scripts], capture_output=True, text=True,
                            cwd=SCRIPTS.parent, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_script_runs_as_the_readme_types_it():
    """`scripts/NAME.sh ...` as the README types it needs the executable bit, in git (a clone
    gets the mode git keeps, not the author's), not only on this checkout."""
    listed = subprocess.run(["git", "ls-files", "-s", "--", "*.sh"], cwd=SCRIPTS, capture_output=True,
                            text=True, check=True).stdout.splitlines()
    modes = {line.split()[3]: line.split()[0] for line in listed}
    assert modes and all(mode == "100755" for mode in modes.values()), modes
