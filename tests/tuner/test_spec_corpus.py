"""Real-shaped configs with the verdict gcloud and the Vertex API give, and inputs of every kind.

Each file in spec_corpus/ starts with comment lines that state its verdict:

    # expect: valid | invalid FIELD.PATH
    # run-refuses: FIELD.PATH     (valid for Vertex, but `run` cannot do it locally)
    # note: TEXT                  (a note line must contain TEXT)
    # message: TEXT               (the error must contain TEXT)
    # why: where the verdict comes from

`validate`, `convert` and `run --dry-run` run on each through `cli.main`, as the user calls
them; the unreadable inputs (binary, not UTF-8, empty, nested 10000 deep) run as real
`python -m tuner` processes, since what matters there is what the process prints.
"""
import re
from pathlib import Path

import pytest

from tests.tuner.support import last_line, run_tuner
from tuner import cli

CORPUS = Path(__file__).with_name("spec_corpus")
FILES = sorted(CORPUS.glob("*.yaml"))


def _verdict(path: Path) -> dict:
    header = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"# (expect|run-refuses|note|message): (.*)", line)
        if match:
            header[match.group(1)] = match.group(2).strip()
        elif not line.startswith("#"):
            break
    return header


def _main(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_corpus_has_both_dialects_and_verdicts():
    verdicts = {(p.name[0], _verdict(p)["expect"].split()[0]) for p in FILES}
    assert verdicts == {("v", "valid"), ("v", "invalid"), ("l", "valid"), ("l", "invalid")}


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_validate_gives_the_verdict(path, capsys):
    header = _verdict(path)
    code, out, err = _main(capsys, "validate", path)
    if header["expect"] == "valid":
        assert code == 0, err
        assert out.startswith(f"OK: {path}")
        notes = [line for line in err.splitlines() if line.startswith("note: ")]
        assert len(notes) == len(err.splitlines())  # nothing but notes on stderr
        assert header.get("note", "") in err
        assert sum("output-only" in note for note in notes) <= 1  # one line for them all
        refused = [n.split(": ")[2] for n in notes
                   if "`python -m tuner run` will refuse it" in n]
        assert refused == ([header["run-refuses"]] if "run-refuses" in header else [])
    else:
        field = header["expect"].split()[1]
        assert code == 2 and out == ""
        (line,) = [line for line in err.splitlines() if not line.startswith("note: ")]
        assert line.startswith(f"error: {path}: {field}: "), line
        assert header.get("message", "") in line


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_run_dry_run_and_convert_agree_with_validate(path, tmp_path, capsys):
    header = _verdict(path)
    valid = header["expect"] == "valid"
    out_dir = tmp_path / "study"
    code, out, err = _main(capsys, "run", path, "--dry-run", "--output-dir", out_dir)
    if valid and "run-refuses" not in header:
        assert code == 0, err
        assert "trial 1 (" in out
    else:
        assert code == 2
        reason = header.get("run-refuses") or header["expect"].split()[1]
        assert last_line(err).startswith(f"error: {path}: {reason}: ")
    assert not out_dir.exists()

    converted = tmp_path / "vertex.yaml"
    code, out, err = _main(capsys, "convert", path, "-o", converted)
    if valid and path.name.startswith("l_"):
        assert code == 0, err
        assert _main(capsys, "validate", converted)[0] == 0
    else:
        assert code == 2 and len(err.splitlines()) - err.count("note: ") == 1
        assert not converted.exists()


def _nested(depth: int) -> bytes:
    return ("a:\n" + "".join(" " * i + "b:\n" for i in range(1, depth)) + " " * depth
            + "1\n").encode()


CONFIG = (CORPUS / "v_valid_gcloud_help.yaml").read_text(encoding="utf-8")
UNREADABLE = {
    "binary": (bytes(range(256)) * 4, "binary file"),
    "gzip": (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + b"\xff" * 40, "binary file"),
    "latin-1": (("# \u00e9quipe: donn\u00e9es\n" + CONFIG).encode("latin-1"), "not UTF-8"),
    "utf-16 as PowerShell writes it": (CONFIG.encode("utf-16"), "UTF-16"),
    "empty": (b"", "empty"),
    "only comments": (b"# nothing here yet\n\n", "only comments"),
    "10000-deep list": (b"[" * 10000 + b"]" * 10000, "deeper than 100"),
    "10000-deep mapping": (_nested(10000), "deeper than 100"),
    "150-deep mapping": (_nested(150), "deeper than 100"),
    "unhashable key": (b"? [a, b]\n: 1\n", "not valid YAML"),
    "two documents": (CONFIG.encode() + b"---\n" + CONFIG.encode(), "not valid YAML"),
    "a list": (b"- studySpec: {}\n", "must be a YAML mapping"),
    "python tag": (b"studySpec: !!python/object:os.system {}\n", "not valid YAML"),
    "a bad timestamp": (b"displayName: !!timestamp 2026-13-45\n", "month must be in 1..12"),
    "a bad int tag": (b"maxTrialCount: !!int 12x\n", "cannot be read"),
    "a 5000-digit integer": (b"maxTrialCount: " + b"1" * 5000 + b"\n", "cannot be read"),
    "a self-referencing alias": (b"a: &a [*a]\n", "deeper than 100"),
    "a billion laughs": (b"a: &a [x, x, x, x, x, x, x, x, x, x]\n" + b"".join(
        b"%c: &%c [%s]\n" % (98 + i, 98 + i, b", ".join([b"*%c" % (97 + i)] * 10))
        for i in range(9)) + b"studySpec: *j\n", "over 1000000 values"),
}


@pytest.mark.parametrize("command", [["validate"], ["convert", "-o"],
                                     ["run", "--dry-run", "--output-dir"]],
                         ids=["validate", "convert", "run"])
@pytest.mark.parametrize("content,words", UNREADABLE.values(), ids=list(UNREADABLE))
def test_unreadable_input_is_one_line_and_exit_2(content, words, command, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_bytes(content)
    out = [tmp_path / "out"] if len(command) > 1 else []
    result = run_tuner(command[0], path, *command[1:], *out)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {path}: ") and words in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]
