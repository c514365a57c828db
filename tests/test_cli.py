"""The command line: start-up without TensorFlow, usage errors as one line, exit statuses."""

import subprocess
import sys

import pytest

from support import run_tfcnn
from tfcnn.cli import build_parser, main


def test_help_and_parsing_do_not_import_tensorflow():
    code = ("import sys\n"
            "from tfcnn.cli import build_parser\n"
            "build_parser().parse_args(['train', '--epochs', '2'])\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
            "print('light')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and "light" in done.stdout, done.stderr
    for args in (["--help"], ["train", "--help"], ["doctor", "--help"]):
        helped = run_tfcnn(*args)
        assert helped.returncode == 0 and "usage: tfcnn" in helped.stdout


def test_python_dash_m_and_version():
    done = run_tfcnn("--version")
    assert done.returncode == 0 and done.stdout.startswith("tfcnn ")


def test_train_defaults_are_the_tutorials():
    args = build_parser().parse_args(["train"])
    from tfcnn.cli import _config_from_args
    from tfcnn.core.config import TrainConfig

    assert _config_from_args(args) == TrainConfig()


@pytest.mark.parametrize(("argv", "expected"), [
    (["train", "--model", "32C3-X2-D10"], "token 2 'X2'"),
    (["train", "--model", "resnet"], "unknown network name"),
    (["train", "--epochs", "0"], "epochs: expected a positive integer"),
    (["train", "--lr", "-1"], "lr: expected a positive number"),
    (["train", "--data-dir", "/nonexistent/dir"], "--data-dir /nonexistent/dir: no such directory"),
    (["train", "--resume", "/nonexistent/run"], "/nonexistent/run/config.json: not found"),
])
def test_bad_input_is_one_line_and_exit_status_2(argv, expected, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tfcnn: error: ")
    assert expected in err


def test_a_preset_name_given_as_model_points_to_preset(capsys):
    assert main(["train", "--model", "fast"]) == 2
    assert "--model 'fast': not a network but a training preset; use --preset fast" in \
        capsys.readouterr().err


def test_an_unknown_flag_shows_its_commands_usage(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["predict", "run", "x.png", "--bogus"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: tfcnn predict") and "unrecognized arguments: --bogus" in err


def test_resume_refuses_settings_that_would_change_the_run(tmp_path, capsys):
    (tmp_path / "config.json").write_text('{"epochs": 1}')
    assert main(["train", "--resume", str(tmp_path), "--lr", "0.1"]) == 2
    assert "--lr: not allowed with --resume" in capsys.readouterr().err


def test_a_corrupt_dataset_file_is_reported_in_one_line_without_traceback(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (folder / name).write_bytes(b"not an idx file")
    done = run_tfcnn("train", "--data-dir", str(tmp_path), "--out", str(tmp_path / "run"))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("tfcnn: error: ") and str(folder) in last
    assert not (tmp_path / "run").exists()


def test_missing_argument_is_a_usage_error():
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2


@pytest.mark.slow
def test_progress_bar_shows_on_a_terminal_only(shared_datasets_dir, tmp_path):
    import fcntl
    import os
    import struct
    import termios

    args = [sys.executable, "-m", "tfcnn", "train", "--data-dir", str(shared_datasets_dir),
            "--model", "8C3-P2-D10", "--epochs", "1", "--limit-train", "3000",
            "--limit-test", "100", "--seed", "1"]
    master, slave = os.openpty()
    # A new pseudo-terminal is 0 columns wide, which leaves tqdm no room to draw.
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen([*args, "--out", str(tmp_path / "tty")], stdout=subprocess.PIPE,
                            stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    proc.communicate(timeout=120)
    assert proc.returncode == 0
    terminal = b"".join(chunks).decode(errors="replace")
    assert "Epoch 1/1" in terminal and "0/94" in terminal and "step/s" in terminal

    piped = subprocess.run([*args, "--out", str(tmp_path / "pipe")], capture_output=True,
                           text=True, timeout=120)
    assert piped.returncode == 0
    assert "step" not in piped.stderr


def test_ctrl_c_after_training_finished_still_exits_0(monkeypatch, capsys, tmp_path):
    # The run is complete once start_training returns: a Ctrl-C while the summary prints
    # must not turn a finished run into exit 130.
    import builtins
    from types import SimpleNamespace

    import tfcnn.api.training as api_training

    result = SimpleNamespace(run_dir=tmp_path, test_accuracy=0.99, train_seconds=1.0)
    monkeypatch.setattr(api_training, "start_training", lambda *a, **k: result)
    real_print = builtins.print

    def interrupted_print(*args, **kwargs):
        if args and str(args[0]).startswith("Done:"):
            raise KeyboardInterrupt
        real_print(*args, **kwargs)

    monkeypatch.setattr(builtins, "print", interrupted_print)
    assert main(["train", "--epochs", "1"]) == 0


def test_one_epoch_is_singular():
    from tfcnn.cli import _epochs

    assert (_epochs(1), _epochs(2)) == ("1 epoch", "2 epochs")


def test_epoch_lines_say_when_the_test_waits_for_the_last_epoch(capsys):
    from tfcnn.cli import _Printer

    printer = _Printer(epochs=2, quiet=False)
    printer.note("testing after the last epoch only")
    printer.epoch_end({"epoch": 1, "loss": 0.5, "accuracy": 0.9, "test_loss": None,
                       "test_accuracy": None, "seconds": 1.0, "images_per_second": 10.0,
                       "test_skipped": True})
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Note: testing after the last epoch only"
    assert "tested after the last epoch" in out[1] and "no test images" not in out[1]


def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path, monkeypatch, capsys):
    # `tfcnn runs --json | head -1`: no BrokenPipeError traceback, the shell's status for SIGPIPE.
    class GoneReader:
        def __init__(self, file):
            self.file = file

        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            pass

        def fileno(self):
            return self.file.fileno()

    with open(tmp_path / "stdout", "w") as file:
        monkeypatch.setattr(sys, "stdout", GoneReader(file))
        code = main(["runs", str(tmp_path), "--json"])
    assert code == 141
    assert "Traceback" not in capsys.readouterr().err
