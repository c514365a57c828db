"""`tfcnn doctor`: the environment report, as text and as JSON."""

import json

from support import run_tfcnn
from tfcnn.data.registry import dataset_names
from tfcnn.doctor import format_report


def test_doctor_json_reports_tensorflow_devices_and_data(shared_datasets_dir):
    done = run_tfcnn("doctor", "--json", "--data-dir", str(shared_datasets_dir))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    tf = report["tensorflow"]
    assert tf["ok"] is True and tf["version"].startswith("2.")
    assert tf["keras_version"].startswith("3.")
    assert isinstance(tf["built_with_cuda"], bool) and isinstance(tf["gpus"], list)
    assert tf["cpus"] and report["cpu"]["cores"] >= 1
    assert set(report["cpu"]["bfloat16"]) <= {"avx512_bf16", "amx_bf16"}
    assert str(shared_datasets_dir / "mnist") in report["datasets"]["mnist"]
    assert set(report["datasets"]) == set(dataset_names()) >= {"mnist", "fashion_mnist"}


def test_doctor_text_has_one_line_per_finding(shared_datasets_dir):
    done = run_tfcnn("doctor", "--data-dir", str(shared_datasets_dir))
    assert done.returncode == 0, done.stderr
    for label in ("TensorFlow", "Keras", "GPUs", "CPU", "bfloat16", "Threads", "mnist",
                  "fashion_mnist"):
        assert any(line.startswith(label) for line in done.stdout.splitlines()), label
    assert done.stdout.strip().endswith("OK: TensorFlow works")


def test_report_without_tensorflow_says_so():
    report = {"tfcnn": "0", "python": "3", "platform": "x", "cpu": {},
              "tensorflow": {"ok": False, "error": "ImportError: no module"},
              "datasets": {"mnist": "not found"}}
    text = format_report(report)
    assert "NOT WORKING: ImportError: no module" in text and text.endswith("FAILED")


def test_bfloat16_support_is_read_from_the_cpu_flags(tmp_path):
    from tfcnn.core.presets import cpu_bfloat16_flags
    from tfcnn.doctor import bfloat16_line

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f amx_bf16 avx512_bf16 amx_tile\n")
    assert cpu_bfloat16_flags(info) == ["avx512_bf16", "amx_bf16"]
    assert "native (avx512_bf16, amx_bf16)" in bfloat16_line(cpu_bfloat16_flags(info))
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n")
    assert cpu_bfloat16_flags(info) == []
    assert "float32" in bfloat16_line([])
    assert cpu_bfloat16_flags(tmp_path / "missing") == []
