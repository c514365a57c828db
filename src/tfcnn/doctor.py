"""`tfcnn doctor`: the tutorial's install check grown into an environment report.

It reports what a user needs before training: TensorFlow and Keras versions, whether
TensorFlow was built with CUDA and which GPUs it sees, the CPU, its native bfloat16
support (which the fast preset uses) and its thread settings, and where each known dataset
would be loaded from (without downloading anything).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from tfcnn import __version__
from tfcnn.core.presets import cpu_bfloat16_flags
from tfcnn.data.locate import describe_source
from tfcnn.data.registry import dataset_names


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _tensorflow_report() -> dict[str, Any]:
    try:
        from tfcnn.core.tfenv import import_tensorflow

        tf = import_tensorflow()
        import keras

        return {
            "ok": True,
            "version": tf.__version__,
            "keras_version": keras.__version__,
            "built_with_cuda": tf.test.is_built_with_cuda(),
            "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
            "cpus": [d.name for d in tf.config.list_physical_devices("CPU")],
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        }
    except Exception as exc:  # any failure to load TF is the finding itself
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def collect_report(data_dir: str | None = None) -> dict[str, Any]:
    """Everything `tfcnn doctor` shows, as a JSON-ready dict."""
    return {
        "tfcnn": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": {"model": _cpu_model(), "cores": os.cpu_count(),
                "bfloat16": cpu_bfloat16_flags(),
                "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS")},
        "tensorflow": _tensorflow_report(),
        "datasets": {name: describe_source(name, data_dir) for name in dataset_names()},
    }


def bfloat16_line(flags: list[str]) -> str:
    """What the CPU's bfloat16 support means for training."""
    if not flags:
        return "no native support (AVX512-BF16 or AMX): --preset fast trains in float32"
    return (f"native ({', '.join(flags)}): --preset fast trains in mixed bfloat16 "
            "(--precision float32 to turn it off)")


def format_report(report: dict[str, Any]) -> str:
    """The report as aligned `label  value` lines."""
    tf = report["tensorflow"]
    cpu = report["cpu"]
    rows = [("tfcnn", f"{report['tfcnn']} (Python {report['python']}, {report['platform']})")]
    if tf["ok"]:
        threads = (f"intra-op {tf['intra_op_threads'] or 'auto'}, "
                   f"inter-op {tf['inter_op_threads'] or 'auto'}; "
                   f"TF_ENABLE_ONEDNN_OPTS={cpu['TF_ENABLE_ONEDNN_OPTS'] or 'unset'}")
        rows += [
            ("TensorFlow", f"{tf['version']} (built with CUDA: "
                           f"{'yes' if tf['built_with_cuda'] else 'no'})"),
            ("Keras", tf["keras_version"]),
            ("GPUs", ", ".join(tf["gpus"]) or "none"),
            ("CPU", f"{cpu['model']}, {cpu['cores']} cores; TF devices: {', '.join(tf['cpus'])}"),
            ("bfloat16", bfloat16_line(cpu.get("bfloat16", []))),
            ("Threads", threads),
        ]
    else:
        rows.append(("TensorFlow", f"NOT WORKING: {tf['error']}"))
    rows += list(report["datasets"].items())
    rows.append(("Status", "OK: TensorFlow works" if tf["ok"] else "FAILED"))
    return "\n".join(f"{label:<14}{value}" for label, value in rows)
