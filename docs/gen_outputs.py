"""Regenerate the command outputs quoted in README.md and docs/*.md by running the commands.

Each quoted output sits between `<!-- output: NAME -->` and `<!-- /output -->` on its page;
`JOBS` says which commands fill it. The commands run in the repository root, as a reader
types them after the README's set-up (they write runs/, myphotos/, export/ and the like,
all in .gitignore), and each block records the date and the CPU it ran on, since timings
and some digits depend on it (docs/benchmarks.md).

    python docs/gen_outputs.py            # run every job, in order, and rewrite its block
    python docs/gen_outputs.py doctor     # only the named jobs (their run directories,
                                          # made by earlier jobs, must exist)
    python docs/gen_outputs.py --list     # the jobs, their pages and commands

Needs the datasets in ../shared/datasets (or $TFCNN_DATA_DIR pointing at the same files).
All jobs take about 5 minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OPEN = "<!-- output: {name} -->"
CLOSE = "<!-- /output -->"
PORT = 8123  # the serve job's port (8000 is often taken on a shared machine)


@dataclass(frozen=True)
class Step:
    """One command of a job: `sh` (shown with its output), `py` (a Python program shown as
    code, then what it printed), `bg` (a server started in the background: shown, its log
    appended at the end, stopped with Ctrl-C when the job ends) or `hidden` (run, not shown)."""

    text: str
    kind: str = "sh"  # or "py", "bg", "bg-quiet" (a server not shown), "hidden"
    fails: bool = False  # expected to exit non-zero (an error being shown)


@dataclass(frozen=True)
class Job:
    page: str
    name: str
    steps: tuple[Step, ...] = field(default_factory=tuple)


def sh(text: str, fails: bool = False) -> Step:
    return Step(text, "sh", fails)


DATA = "../shared/datasets"
SEVEN = ("python -c \"import tfcnn; from PIL import Image; "
         f"_, (x, y), names = tfcnn.datasets.load('mnist', '{DATA}'); "
         "Image.fromarray(x[0].squeeze()).save('seven.png'); print('label', names[y[0]])\"")
MY_PHOTOS = (f"mkdir -p myphotos && cp -r {DATA}/fashion_photos/train/bag "
             f"{DATA}/fashion_photos/train/sneaker {DATA}/fashion_photos/train/trouser myphotos/")
API_EXAMPLE = f"""\
import tfcnn

run = tfcnn.train(preset="fast", data_dir="{DATA}", seed=1, out="runs/fast", verbose=False)
print(run.metrics["test_accuracy"])
clf = run.load()                               # or tfcnn.load("runs/fast")
print(clf.evaluate())
(x_train, y_train), (x_test, y_test), names = tfcnn.datasets.load("mnist", "{DATA}")
for p in clf.predict(x_test[:3], top_k=2):     # files, folders, PIL images, numpy arrays
    print(p.source, p.label, p.top_k, p.unknown)
clf.export("digits.tflite", format="tflite", force=True)
"""

U = f"http://127.0.0.1:{PORT}"
SERVE = Step(f"tfcnn serve runs/mnist --port {PORT}", "bg-quiet")  # serve.md says so once
SEVEN_JSON = """python - <<'EOF' > seven.json
import json
import numpy as np
from PIL import Image, ImageDraw
im = Image.new("L", (28, 28), 0)
ImageDraw.Draw(im).line([(7, 6), (21, 6), (12, 23)], fill=255, width=3)
print(json.dumps({"instances": [(np.asarray(im) / 255).round(3).tolist()]}))
EOF"""
SEVEN_V2 = ("python -c 'import json; x = json.load(open(\"seven.json\"))[\"instances\"][0]; "
            "print(json.dumps({\"id\": \"seven-1\", \"inputs\": [{\"name\": \"images\", "
            "\"shape\": [1, 28, 28, 1], \"datatype\": \"FP32\", "
            "\"data\": [v for row in x for v in row]}]}))' > seven-v2.json")
TRITON_DEMO = f"""cat > triton_demo.py <<'EOF'
import numpy as np
import tritonclient.http as httpclient

client = httpclient.InferenceServerClient("127.0.0.1:{PORT}")
print(client.is_server_ready(), client.is_model_ready("mnist"))
images = np.zeros((2, 28, 28, 1), np.float32)
images[0, 6:9, 7:22] = 1  # the bar of a "7"
for row in range(6, 24):  # and its stem
    col = 21 - (row - 6) // 2
    images[0, row, col - 1:col + 2] = 1
images[1, 4:24, 13:16] = 1  # a "1"
inputs = [httpclient.InferInput("images", list(images.shape), "FP32")]
inputs[0].set_data_from_numpy(images)  # binary tensor data, the client's default
outputs = [httpclient.InferRequestedOutput("probabilities")]
result = client.infer("mnist", inputs, outputs=outputs)
probabilities = result.as_numpy("probabilities")
print(probabilities.shape, probabilities.argmax(axis=1), probabilities.max(axis=1).round(4))
EOF"""
SERVE_JOBS: tuple[Job, ...] = (
    Job("docs/serve.md", "serve-v1-status", (
        SERVE, sh(f"curl -s {U}/v1/models/mnist"), sh(f"curl -s {U}/v1/models/mnist/metadata"))),
    Job("docs/serve.md", "serve-v1-predict", (
        SERVE, sh(SEVEN_JSON), sh(f"curl -s -d @seven.json {U}/v1/models/mnist:predict"))),
    Job("docs/serve.md", "serve-v1-errors", (
        SERVE,
        sh(f"curl -s -d '{{\"instances\": [[[0.5, NaN]]]}}' {U}/v1/models/mnist:predict"),
        sh(f"curl -s -d '{{\"instances\": [[[0.5, 0.5]]]}}' {U}/v1/models/mnist:predict"),
        sh(f"curl -s -d '{{\"instances\": [' -w ' %{{http_code}}' {U}/v1/models/mnist:predict"),
        sh(f"curl -s -w ' %{{http_code}}' {U}/v1/models/fashion"),
        sh("head -c 11000000 /dev/zero | curl -s --data-binary @- -w ' %{http_code}' "
           f"{U}/v1/models/mnist:predict"),
        sh("python -c 'import json; print(json.dumps({\"instances\": [[[255] * 28] * 28]}))' "
           f"| curl -s -d @- {U}/v1/models/mnist:predict"))),
    Job("docs/serve.md", "serve-v2-status", (
        SERVE, sh(f"curl -s -w ' %{{http_code}}' {U}/v2/health/live"),
        sh(f"curl -s {U}/v2/health/ready"), sh(f"curl -s {U}/v2"),
        sh(f"curl -s {U}/v2/models/mnist"), sh(f"curl -s {U}/v2/models/mnist/ready"))),
    Job("docs/serve.md", "serve-v2-infer", (
        SERVE, sh(SEVEN_V2),
        sh(f"curl -s -H 'Content-Type: application/json' -d @seven-v2.json "
           f"{U}/v2/models/mnist/infer"),
        sh("curl -s -d '{\"inputs\": [{\"name\": \"images\", \"shape\": [1, 28, 28, 1], "
           "\"datatype\": \"FP64\", \"data\": [0]}]}' -w ' %{http_code}' "
           f"{U}/v2/models/mnist/infer"))),
    Job("docs/serve.md", "serve-triton", (
        SERVE, Step(TRITON_DEMO, "hidden"), sh("cat triton_demo.py"),
        sh("python triton_demo.py"))),
    Job("docs/serve.md", "serve-upload", (
        SERVE, sh(f"curl -s -F file=@seven.png {U}/predict"),
        sh(f"curl -s -F file=@seven.png '{U}/predict?top_k=1&include_image=true' | cut -c1-160"),
        sh(f"curl -s -F file=@seven.json -w ' %{{http_code}}' {U}/predict"))),
    Job("docs/serve.md", "serve-explain", (
        SERVE,
        sh(f"curl -s -F file=@seven.png '{U}/explain' | python -c 'import json,sys; "
           "a=json.load(sys.stdin); print(a[\"prediction\"][\"label\"], a[\"target\"], "
           "len(a[\"heatmap\"]), [(m[\"layer\"], m[\"shape\"]) for m in a[\"feature_maps\"]])'"),
        sh(f"curl -s -X POST '{U}/explain?target=cat' -H 'Content-Type: application/json' "
           "-d '{\"image\": [[0.5]]}' -w ' %{http_code}\\n'"))),
)

JOBS: tuple[Job, ...] = (
    Job("README.md", "doctor", (sh(f"tfcnn doctor --data-dir {DATA}"),)),
    Job("README.md", "train-mnist", (
        Step("rm -rf runs/mnist", "hidden"),
        sh(f"tfcnn train --data-dir {DATA} --seed 1 --out runs/mnist"),)),
    Job("README.md", "train-folder", (
        Step("rm -rf myphotos runs/photos", "hidden"),
        sh(MY_PHOTOS),
        sh("tfcnn train --dataset folder:myphotos --rgb --image-size 32 --epochs 10 --seed 0 "
           "--out runs/photos"),)),
    Job("README.md", "predict", (
        sh(SEVEN),
        sh("tfcnn predict runs/mnist seven.png"),
        sh(f"tfcnn predict runs/photos {DATA}/fashion_photos/test/bag/bag-0000.jpg "
           f"{DATA}/fashion_photos/test/trouser/trouser-0001.jpg "
           f"{DATA}/fashion_photos/test/coat/coat-0000.jpg"),)),
    Job("README.md", "serve", (
        Step(f"tfcnn serve runs/mnist --port {PORT}", "bg"),
        sh(f"curl -s -F file=@seven.png http://127.0.0.1:{PORT}/predict"),
        sh(f"curl -s http://127.0.0.1:{PORT}/info"),)),
    Job("README.md", "python", (
        Step("rm -rf runs/fast", "hidden"),
        Step(API_EXAMPLE, "py"),)),
    Job("docs/training.md", "errors", (
        sh("tfcnn train --epochs 0", fails=True),
        sh("tfcnn train --model 32C3-P2-X9-D10", fails=True),
        sh("tfcnn train --model fast", fails=True),
        sh("tfcnn train --dataset folder:myphotos --model 16C3-P2-D10", fails=True),
        sh("tfcnn train --epoch 2", fails=True),)),
    Job("docs/training.md", "preset-fast", (
        Step("rm -rf runs/fast1", "hidden"),
        sh(f"tfcnn train --preset fast --seed 1 --data-dir {DATA} --out runs/fast1"),)),
    Job("docs/training.md", "early-stop", (
        Step("rm -rf runs/early", "hidden"),
        sh(f"tfcnn train --data-dir {DATA} --limit-train 6000 --val-split 0.2 --epochs 30 "
           "--early-stop 2 --lr 0.003 --seed 1 --out runs/early"),)),
    Job("docs/evaluate.md", "evaluate", (sh("tfcnn evaluate runs/mnist"),)),
    Job("docs/export.md", "export", (
        Step("rm -rf export", "hidden"),
        sh("tfcnn export runs/mnist --format keras --out export/model.keras"),
        sh("tfcnn export runs/mnist --format saved_model --out export/saved_model"),
        sh("tfcnn export runs/mnist --format tflite --out export/model.tflite"),
        sh("tfcnn export runs/mnist --format onnx --out export/model.onnx"),)),
    Job("docs/explain.md", "explain", (
        sh("tfcnn explain runs/mnist seven.png --method all --out runs/explained"),
        sh("tfcnn explain runs/mnist --worst 3 --out runs/explained"),)),
    Job("docs/trust.md", "unknown", (
        sh(f"tfcnn predict runs/mnist seven.png {DATA}/fashion_photos/test/bag/bag-0000.jpg"),
        sh("tfcnn calibrate runs/early"),)),
    *SERVE_JOBS,
)


def cpu_description() -> str:
    """The CPU model (lscpu's "Model name"), its cores and its native bfloat16 flags."""
    model = platform.processor() or "unknown CPU"
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = re.search(r"^Model name:\s*(.+)$", lscpu, re.M).group(1).strip()
    except (OSError, subprocess.CalledProcessError, AttributeError):
        pass
    flags = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        line = next((x for x in cpuinfo.read_text().splitlines() if x.startswith("flags")), "")
        native = [f for f in ("avx512_bf16", "amx_bf16") if f in line.split()]
        flags = ", ".join(native) if native else "no native bfloat16"
    return f"{model}, {os.cpu_count()} cores, {flags}"


def environment() -> dict[str, str]:
    """The commands' environment: this Python's `tfcnn` first on PATH, a fixed width."""
    env = dict(os.environ, COLUMNS="100", PYTHONUNBUFFERED="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("TF_CONFIG", None)
    return env


def run_shell(step: Step, env: dict[str, str]) -> str:
    done = subprocess.run(step.text, shell=True, cwd=ROOT, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if (done.returncode != 0) != step.fails:
        raise SystemExit(f"{step.text!r} exited with {done.returncode}:\n{done.stdout}")
    return done.stdout.rstrip("\n")


def run_python(step: Step, env: dict[str, str]) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as script:
        script.write(step.text)
    try:
        return run_shell(Step(f"{sys.executable} {script.name}"), env)
    finally:
        os.unlink(script.name)


def start_server(step: Step, env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        server = subprocess.Popen(step.text, shell=True, cwd=ROOT, env=env, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{PORT}/v2/health/ready", timeout=2)
            return server
        except OSError:
            if server.poll() is not None:
                raise SystemExit(f"{step.text!r} stopped:\n{log.read_text()}") from None
            time.sleep(0.5)
    raise SystemExit(f"{step.text!r}: not ready after 120 s")


def stop_server(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGINT)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)


def run_job(job: Job) -> str:
    """The block's Markdown: the recording line, then the commands and their outputs."""
    env, shell, python, log, server, bg = environment(), [], [], None, None, None
    try:
        for step in job.steps:
            if step.kind == "hidden":
                run_shell(step, env)
            elif step.kind in ("bg", "bg-quiet"):
                log = Path(tempfile.mkstemp(suffix=".log")[1])
                server = start_server(step, env, log)
                bg = step.text if step.kind == "bg" else None
            elif step.kind == "py":
                python += ["```python", step.text.rstrip("\n"), "```", "", "prints:", "",
                           "```text", run_python(step, env), "```"]
            else:
                output = run_shell(step, env)
                shell += [f"$ {step.text}"] + ([output] if output else [])
    finally:
        if server is not None:
            stop_server(server)
    if bg is not None:
        # The server's first log lines (started, address) go under its command.
        started = [line for line in log.read_text().splitlines() if " serving " in line
                   or " page " in line]
        shell = [f"$ {bg} &", *started, *shell]
    if log is not None:
        log.unlink()
    when = datetime.date.today().isoformat()
    lines = [f"*Recorded by `docs/gen_outputs.py` on {when}, {cpu_description()}; "
             "timings depend on the CPU.*", ""]
    if shell:
        lines += ["```console", *shell, "```"]
    if python:
        lines += (["", *python] if shell else python)
    return "\n".join(lines)


def write_block(page: Path, name: str, body: str) -> None:
    """Replace the content of `page`'s block `name` with `body` (nothing else changes)."""
    text = page.read_text(encoding="utf-8")
    start, end = OPEN.format(name=name), CLOSE
    head, found, rest = text.partition(start + "\n")
    if not found:
        raise SystemExit(f"{page}: no block {name!r} (expected a line {start})")
    _, closed, tail = rest.partition(end)
    if not closed:
        raise SystemExit(f"{page}: block {name!r} is not closed by {end}")
    new = f"{head}{start}\n{body.rstrip(chr(10))}\n{end}{tail}"
    tmp = page.with_name(f".{page.name}.tmp")
    tmp.write_text(new, encoding="utf-8")
    os.replace(tmp, page)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="jobs to run (default: all, in order)")
    parser.add_argument("--list", action="store_true", help="list the jobs and stop")
    options = parser.parse_args(argv)
    known = {job.name for job in JOBS}
    unknown = [name for name in options.names if name not in known]
    if unknown:
        parser.error(f"unknown job(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    if options.list:
        for job in JOBS:
            print(f"{job.name:14} {job.page}")
            for step in job.steps:
                print(f"    [{step.kind}] {step.text.splitlines()[0]}")
        return 0
    for job in JOBS:
        if options.names and job.name not in options.names:
            continue
        started = time.monotonic()
        print(f"{job.name}: running ...", flush=True)
        write_block(ROOT / job.page, job.name, run_job(job))
        print(f"{job.name}: {job.page} updated ({time.monotonic() - started:.0f} s)",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
