"""The scripts pass shellcheck (Debian's `shellcheck` package), following `source` into lib.sh."""
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
