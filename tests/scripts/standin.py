"""A stand-in for gcloud, gsutil and docker: records each call, answers like the real tool.

Installed by the `standins` fixture as PATH entries `gcloud`, `gsutil` and `docker` that run
`python standin.py TOOL ARGS...`. Each call appends one JSON line to $STANDIN_LOG:
{"tool", "argv", "env", "cwd", "files"}, where "files" holds the text of every file named by a
`--config=` argument at the time of the call. Knobs (environment variables):

  STANDIN_GCLOUD_PROJECT   what `gcloud config get-value project` prints (default: unset)
  STANDIN_FAIL             a tool name or "tool subcommand" that exits 1, e.g. "docker push"
  STANDIN_DOCKER_IMAGES    0: `docker image inspect` finds no image
  STANDIN_DOCKER_GPUS      the GPU count the in-image probe prints (default 1);
                           "none": `docker run --gpus` fails as without the NVIDIA toolkit
  STANDIN_DOCKER_TRAIN_EXIT  the exit status of `docker start --attach` (default 0)
  STANDIN_DOCKER_OUTPUTS   "none": `docker cp` copies no metrics.json nor hypertune file
"""
import json
import os
import pathlib
import sys


def record(tool, argv):
    files = {}
    for arg in argv:
        if arg.startswith("--config="):
            path = arg.split("=", 1)[1]
            try:
                files[path] = pathlib.Path(path).read_text()
            except OSError as e:
                files[path] = f"<unreadable: {e}>"
    entry = {"tool": tool, "argv": argv, "env": dict(os.environ), "cwd": os.getcwd(), "files": files}
    with open(os.environ["STANDIN_LOG"], "a") as f:
        f.write(json.dumps(entry) + "\n")


def failing(tool, argv):
    wanted = os.environ.get("STANDIN_FAIL", "")
    words = [a for a in argv if not a.startswith("-")]
    return wanted and (wanted == tool or wanted == " ".join([tool, *words[:len(wanted.split()) - 1]]))


def gcloud(argv):
    words = [a for a in argv if not a.startswith("-")]
    if words[:3] == ["config", "get-value", "project"]:
        project = os.environ.get("STANDIN_GCLOUD_PROJECT")
        if project:
            print(project)
        else:
            print("(unset)", file=sys.stderr)
        return 0
    if words[:3] == ["ai", "custom-jobs", "create"]:
        print("CustomJob [projects/123/locations/us-central1/customJobs/456] is submitted successfully.",
              file=sys.stderr)
        return 0
    if words[:3] == ["ai", "hp-tuning-jobs", "create"]:
        print("Hyperparameter tuning job [789] submitted successfully.", file=sys.stderr)
        return 0
    if words[:2] == ["storage", "cp"]:
        return 0
    print(f"standin gcloud: unexpected call {argv}", file=sys.stderr)
    return 3


def docker(argv):
    words = [a for a in argv if not a.startswith("-")]
    command = words[0] if words else ""
    if command == "info":
        print("28.2.2")
        return 0
    if words[:2] == ["image", "inspect"]:
        if os.environ.get("STANDIN_DOCKER_IMAGES") == "0":
            print(f"Error response from daemon: No such image: {words[2]}", file=sys.stderr)
            return 1
        print("sha256:" + "0" * 64)
        return 0
    if command == "run":
        gpus = os.environ.get("STANDIN_DOCKER_GPUS", "1")
        if "--gpus=all" in argv and gpus == "none":
            print('docker: Error response from daemon: could not select device driver "" with '
                  'capabilities: [[gpu]].', file=sys.stderr)
            return 125
        print("I tensorflow: some start-up chatter", file=sys.stderr)
        print(f"gpus={gpus}")
        return 0
    if command == "create":
        print("f" * 64)
        return 0
    if command == "start":
        print("Epoch 1/1 ... val_accuracy: 0.9")
        return int(os.environ.get("STANDIN_DOCKER_TRAIN_EXIT", "0"))
    if command == "cp":
        dest = pathlib.Path(words[2])
        if os.environ.get("STANDIN_DOCKER_OUTPUTS") != "none":
            (dest / "model").mkdir(parents=True, exist_ok=True)
            (dest / "model" / "metrics.json").write_text(
                json.dumps({"metric": "val_accuracy", "final": 0.9, "epochs_run": 1}))
            (dest / "hypertune").mkdir(parents=True, exist_ok=True)
            (dest / "hypertune" / "output.metrics").write_text(
                json.dumps({"val_accuracy": "0.9", "global_step": "1", "trial": "1"}) + "\n")
        return 0
    if command in ("build", "push", "rm"):
        return 0
    print(f"standin docker: unexpected call {argv}", file=sys.stderr)
    return 3


def main():
    tool, argv = sys.argv[1], sys.argv[2:]
    record(tool, argv)
    if failing(tool, argv):
        print(f"standin {tool}: failing as asked", file=sys.stderr)
        return 1
    if tool == "gcloud":
        return gcloud(argv)
    if tool == "docker":
        return docker(argv)
    return 0  # gsutil


if __name__ == "__main__":
    sys.exit(main())
