"""`tfcnn audit`: label issues, duplicates and leaks, odd images, the time budget, fixes.

The parts without a model run on synthetic arrays and folders (no TensorFlow); one small
end-to-end audit (3 classes of band images, 3 folds of a tiny network) is shared by the
slow tests, run through the CLI as a user would.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tfcnn.audit.budget import FoldTiming, Planner, Watch, parse_duration
from tfcnn.audit.data import AuditData, load_audit_data
from tfcnn.audit.fixes import apply_fixes, undo_fixes, write_fixes
from tfcnn.audit.folds import assign_folds
from tfcnn.audit.labels import label_issues
from tfcnn.audit.oddities import balance, class_counts, odd_images
from tfcnn.audit.similar import find_duplicates, pixels_apart
from tfcnn.cli import main
from tfcnn.core.errors import ConfigError, DatasetError

CLASSES = ("high", "low", "mid")  # sorted, as the folder loader orders them
BAND_ROW = {"high": 3, "mid": 12, "low": 21}


def band_image(name: str, rng: np.random.Generator, size: int = 28) -> np.ndarray:
    """A 28x28 grey image of class `name`: a bright band at its row, on noise."""
    pixels = rng.integers(0, 70, (size, size)).astype(np.uint8)
    row = BAND_ROW[name] * size // 28
    pixels[row:row + max(1, 4 * size // 28), 3 * size // 28:25 * size // 28] = 255
    return pixels


def listing(root: Path) -> dict[str, bytes]:
    """Every file under `root` (hidden ones too), relative path -> contents."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


# --- durations and the time budget (no training) ------------------------------------------

@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("5m", 300), ("1h", 3600),
                                               ("1m30s", 90), ("120", 120), ("2.5m", 150),
                                               (45, 45), ("none", None), ("0", None)])
def test_durations_parse(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5x", "m", "1m30", "-5s", "", "1.2.3s"])
def test_bad_durations_are_one_line_errors(text):
    with pytest.raises(ConfigError, match="--time-budget") as err:
        parse_duration(text)
    assert "\n" not in str(err.value)


def test_the_watch_separates_tracing_from_steady_steps():
    # Epoch 1 begins at 10.0; calls of 10 steps end at 13.0 (tracing), 14.0, 15.0, 16.0;
    # its record comes at 16.5: 0.1 s a step, 2 s of tracing, 0.5 s of saving.
    watch = Watch(started=9.0, first_epoch_at=10.0, train_started=10.0,
                  calls=[(13.0, 10), (14.0, 10), (15.0, 10), (16.0, 10)], epoch_ended=16.5)
    timing = watch.timing()
    assert timing.setup_s == pytest.approx(1.0)
    assert timing.trace_s == pytest.approx(2.0)
    assert timing.epoch_s == pytest.approx(40 * 0.1 + 0.5)


def test_the_plan_keeps_all_epochs_when_they_fit():
    planner = Planner(100.0, folds=5, max_epochs=10, started=0.0)
    # Per fold: 1 s set-up + 1 s tracing + finish (1 + 1 s guessed) + 10 epochs of 1 s.
    assert planner.plan_after_first_epoch(FoldTiming(1.0, 1.0, 1.0), now=3.0)
    assert planner.epochs == 10


def test_the_plan_restarts_with_the_epochs_that_fit():
    planner = Planner(60.0, folds=5, max_epochs=10, started=0.0)
    assert not planner.plan_after_first_epoch(FoldTiming(1.0, 1.0, 1.0), now=3.0)
    # 57 s left for 5 whole folds of 4 s fixed cost (1 + 1 + 2) + E s: E = floor(11.4 - 4).
    assert planner.epochs == 7
    assert 5 * (4 + planner.epochs * 1.0) <= 57


def test_a_budget_too_short_for_one_epoch_a_fold_says_so():
    planner = Planner(10.0, folds=5, max_epochs=10, started=0.0)
    with pytest.raises(ConfigError, match="too short for 5 folds") as err:
        planner.plan_after_first_epoch(FoldTiming(1.0, 1.0, 1.0), now=3.0)
    assert "fewer --folds" in str(err.value)


def test_a_fold_stops_when_the_next_epoch_would_overrun():
    planner = Planner(60.0, folds=3, max_epochs=10, started=0.0)
    planner.plan_after_first_epoch(FoldTiming(1.0, 1.0, 1.0), now=3.0)
    planner.fold_done(FoldTiming(1.0, 1.0, 1.0), finish_s=1.0)
    # Next epoch 1 s + finish 1 s + 2 later folds x (3 s fixed + 1 epoch) = 10 s.
    assert not planner.stop_after(epoch=3, planned=10, folds_after=2, now=50.0)
    assert planner.stop_after(epoch=3, planned=10, folds_after=2, now=50.5)
    assert not planner.stop_after(epoch=10, planned=10, folds_after=2, now=59.0)


def test_no_budget_plans_nothing():
    planner = Planner(None, folds=5, max_epochs=12, started=0.0)
    assert planner.plan_after_first_epoch(FoldTiming(5.0, 5.0, 50.0), now=1e6)
    assert planner.epochs_that_fit(4, now=1e9) == 12
    assert not planner.stop_after(1, 12, 4, now=1e9)


# --- folds and label issues (no training) -------------------------------------------------

def test_folds_are_stratified_and_balanced():
    labels = np.repeat([0, 1, 2], [50, 31, 7])
    folds = assign_folds(labels, 5, seed=3)
    sizes = np.bincount(folds, minlength=5)
    assert sizes.max() - sizes.min() <= 1
    for label in range(3):
        per_fold = np.bincount(folds[labels == label], minlength=5)
        assert per_fold.max() - per_fold.min() <= 1
    assert np.array_equal(folds, assign_folds(labels, 5, seed=3))


def test_planted_wrong_labels_rank_first():
    rng = np.random.default_rng(0)
    true = np.repeat(np.arange(3), 60)
    probs = np.full((len(true), 3), 0.02)
    probs[np.arange(len(true)), true] = rng.uniform(0.8, 0.96, len(true))
    probs /= probs.sum(1, keepdims=True)
    given = true.copy()
    planted = [5, 70, 150]
    given[planted] = (true[planted] + 1) % 3
    files = [f"f{i}" for i in range(len(true))]
    issues = label_issues(given, probs, files, ("a", "b", "c"))
    assert {i.file for i in issues[:3]} == {f"f{i}" for i in planted}
    for issue in issues[:3]:
        k = int(issue.file[1:])
        assert issue.given == "abc"[given[k]] and issue.suggested == "abc"[true[k]]
        assert issue.score == pytest.approx(probs[k, given[k]])
    assert set(issues[0].to_json()) >= {"file", "given", "suggested", "score"}


def test_the_fold_network_fits_the_classes_and_colour():
    from tfcnn.audit.folds import Recipe

    grey, colour = Recipe().for_data(3, colour=False), Recipe().for_data(7, colour=True)
    assert grey.model.endswith("-D3") and "BN" not in grey.model and grey.lr == 0.01
    assert colour.model.endswith("-GAP-D7") and colour.lr == 0.003
    mine = Recipe(model="8C3-P2-D3", lr=0.02).for_data(3, colour=True)
    assert (mine.model, mine.lr) == ("8C3-P2-D3", 0.02)


def test_weak_fold_models_are_said_to_be_weak(tmp_path):
    from tfcnn.audit.folds import CrossResult, FoldResult
    from tfcnn.audit.run import _report
    from tfcnn.audit.similar import Duplicates

    data = _arrays(np.zeros((4, 28, 28), np.uint8), [0, 1, 2, 0], ["train"] * 4)

    def notes(agreement):
        folds = [FoldResult(1, tmp_path, 3, 3, 2, 2, 1.0, agreement)] * 2
        cross = CrossResult(np.full((4, 3), 1 / 3), folds, 2.0, None, [])
        return _report(data, cross, [], Duplicates([], []), [], tmp_path, {}, {}).notes

    assert any("only 50% of the held-out" in n for n in notes(0.5))
    assert not any("held-out" in n for n in notes(0.9))


# --- duplicates, leaks, odd images, balance (no training) ---------------------------------

def _arrays(images: np.ndarray, labels: list[int], splits: list[str]) -> AuditData:
    files = [f"img{i}" for i in range(len(labels))]
    return AuditData("test", images, np.asarray(labels), files, splits, CLASSES, [],
                     [""] * len(labels))


def test_copies_are_found_and_distinct_images_are_not():
    rng = np.random.default_rng(1)
    images = np.stack([band_image(CLASSES[i % 3], rng) for i in range(30)])
    base = images[4].copy()
    brighter = np.clip(base.astype(int) * 9 // 10 + 20, 0, 255).astype(np.uint8)
    jpeg = io.BytesIO()
    Image.fromarray(images[7]).save(jpeg, "JPEG", quality=75)
    images = np.concatenate([images, [base, brighter, np.asarray(Image.open(jpeg))]])
    labels = [i % 3 for i in range(30)] + [4 % 3, 4 % 3, 7 % 3]
    splits = ["train"] * 31 + ["test", "test"]
    found = find_duplicates(_arrays(images, labels, splits))
    exact = {(p.a, p.b) for p in found.duplicates if p.exact}
    near_leaks = {(p.a, p.b) for p in found.leaks if not p.exact}
    assert exact == {(4, 30)}
    assert near_leaks == {(4, 31), (7, 32)}
    assert all(0 < p.distance <= 0.03 for p in found.leaks)
    # Noise-only backgrounds with the same band are not near-duplicates of each other.
    assert len(found.duplicates) == 1 and len(found.leaks) == 2


def test_pixels_apart_counts_what_brightness_does_not_explain():
    rng = np.random.default_rng(6)
    a = rng.uniform(0, 1, (1, 784)).astype(np.float32)
    b = a * 0.5 + 0.2                      # the same picture, darker and flatter
    c = a.copy()
    c[0, :6] = np.where(a[0, :6] > 0.5, 0.0, 1.0)  # six pixels flipped
    assert pixels_apart(a, b)[0] == 0
    assert pixels_apart(a, c)[0] == pytest.approx(6 / 784)


def test_odd_images_and_balance(tmp_path):
    rng = np.random.default_rng(2)
    for name, count in (("high", 12), ("low", 6), ("mid", 12)):
        (tmp_path / name).mkdir()
        for i in range(count):
            Image.fromarray(band_image(name, rng)).save(tmp_path / name / f"{i}.png")
    Image.new("L", (28, 28), 128).save(tmp_path / "high" / "flat.png")
    Image.fromarray(band_image("mid", rng, size=112)).save(tmp_path / "mid" / "big.png")
    Image.fromarray(band_image("low", rng)).convert("RGB").save(tmp_path / "low" / "rgb.png")
    (tmp_path / "low" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    data = load_audit_data(f"folder:{tmp_path}")
    found = {(Path(o.file).name, o.kind) for o in odd_images(data)}
    assert found == {("flat.png", "near-constant"), ("big.png", "size"), ("rgb.png", "mode")}
    assert [Path(f).name for f, _ in data.skipped] == ["broken.png"]
    classes = class_counts(data)
    assert [(c["name"], c["count"]) for c in classes] == [("high", 13), ("low", 7), ("mid", 13)]
    assert balance(classes) == {"largest": "high", "smallest": "low",
                                "imbalance_ratio": round(13 / 7, 4)}


def test_registered_datasets_need_no_folder_flags():
    with pytest.raises(DatasetError, match="--data-dir: only for registered"):
        load_audit_data("folder:/nonexistent", "/tmp")


# --- fixes: write, apply, undo (no training) ----------------------------------------------

def _fix_folder(root: Path) -> list[dict[str, str]]:
    rng = np.random.default_rng(3)
    rows = []
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(band_image(name, rng)).save(root / name / f"{name}{i}.png")
    (root / "high" / "sub").mkdir()
    Image.fromarray(band_image("low", rng)).save(root / "high" / "sub" / "n.png")
    for file, given, suggested in ((root / "high" / "high0.png", "high", "mid"),
                                   (root / "high" / "sub" / "n.png", "high", "low"),
                                   (root / "mid" / "mid1.png", "mid", "low"),
                                   (root / "low" / "low2.png", "low", "high")):
        rows.append({"file": str(file), "given": given, "suggested": suggested,
                     "score": "0.01", "issue": "label", "root": str(root)})
    return rows


def _set_actions(csv_path: Path, actions: list[str]) -> None:
    lines = csv_path.read_text().splitlines()
    edited = [lines[0]] + [line.replace(",keep,", f",{action},", 1)
                           for line, action in zip(lines[1:], actions, strict=True)]
    csv_path.write_text("\n".join(edited) + "\n")


def test_write_apply_undo_leaves_the_folder_as_it_was(tmp_path):
    root = tmp_path / "data"
    rows = _fix_folder(root)
    before = listing(root)
    csv_path = write_fixes(rows, tmp_path / "fixes.csv")
    assert "keep" in csv_path.read_text()
    assert apply_fixes(csv_path).moved == 0  # unedited: every row keeps
    _set_actions(csv_path, ["move", "move", "set-aside", "keep"])
    done = apply_fixes(csv_path)
    assert (done.moved, done.kept) == (3, 1)
    assert (root / "mid" / "high0.png").read_bytes() == before["high/high0.png"]
    assert (root / "low" / "sub" / "n.png").read_bytes() == before["high/sub/n.png"]
    assert (root / ".set-aside" / "mid" / "mid1.png").read_bytes() == before["mid/mid1.png"]
    assert not (root / "high" / "high0.png").exists()
    # A loaded folder no longer sees the set-aside file, and sees the moved ones moved.
    data = load_audit_data(f"folder:{root}")
    assert str(root / "mid" / "high0.png") in data.files
    assert not any(".set-aside" in f for f in data.files)
    assert undo_fixes(done.log) == 3
    assert listing(root) == before
    # The folders the moves made (.set-aside/mid, low/sub) are gone again.
    assert not (root / ".set-aside").exists() and not (root / "low" / "sub").exists()


def test_applying_twice_is_refused_and_undo_twice_does_nothing(tmp_path):
    root = tmp_path / "data"
    csv_path = write_fixes(_fix_folder(root), tmp_path / "fixes.csv")
    _set_actions(csv_path, ["move", "keep", "keep", "keep"])
    done = apply_fixes(csv_path)
    with pytest.raises(ConfigError, match=r"fixes\.csv:2: .*no such file"):
        apply_fixes(csv_path)
    assert undo_fixes(done.log) == 1
    assert undo_fixes(done.log) == 0


@pytest.mark.parametrize(("edit", "message"), [
    (("keep", "mvoe"), r"fixes\.csv:3: action 'mvoe': expected one of keep, move"),
    ((",low,keep", ",nope,move"), r"fixes\.csv:3: class 'nope' has no folder"),
    ((",low,keep", ",../x,move"), r"fixes\.csv:3: suggested '../x': expected a class"),
    ((",low,keep", ",high,move"), r"fixes\.csv:3: action move, but suggested is the given"),
])
def test_bad_rows_are_one_line_errors_and_nothing_moves(tmp_path, edit, message):
    root = tmp_path / "data"
    csv_path = write_fixes(_fix_folder(root), tmp_path / "fixes.csv")
    _set_actions(csv_path, ["move", "keep", "keep", "keep"])
    lines = csv_path.read_text().splitlines()
    lines[2] = lines[2].replace(*edit)
    csv_path.write_text("\n".join(lines) + "\n")
    before = listing(root)
    with pytest.raises(ConfigError, match=message) as err:
        apply_fixes(csv_path)
    assert "\n" not in str(err.value)
    assert listing(root) == before


def test_cli_bad_csv_exits_2_with_one_line(tmp_path, capsys):
    csv_path = tmp_path / "fixes.csv"
    csv_path.write_text("file,given\nx.png,cat\n")
    assert main(["audit", "--apply", str(csv_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "fixes.csv:1: header lacks column(s) suggested" in err
    assert main(["audit", "--apply", str(csv_path), "--folds", "3"]) == 2
    assert "--folds: only with --dataset" in capsys.readouterr().err


def test_registered_dataset_rows_cannot_be_moved(tmp_path):
    csv_path = write_fixes([{"file": "mnist/train/3", "given": "5", "suggested": "3",
                             "root": ""}], tmp_path / "fixes.csv")
    _set_actions(csv_path, ["move"])
    with pytest.raises(ConfigError, match="not a file of a folder: dataset"):
        apply_fixes(csv_path)


def test_import_tfcnn_audit_loads_no_tensorflow():
    code = ("import sys, tfcnn, tfcnn.audit.fixes; tfcnn.AuditReport; "
            "assert callable(tfcnn.audit) and callable(tfcnn.audit.audit); "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# --- one small audit, end to end (trains 3 tiny folds) ------------------------------------

PLANTED = {"high": "low", "mid": "high", "low": "mid"}  # true class -> the folder it is put in


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    """A train/test folder with planted wrong labels, a copy, a leak and a blank, audited
    by `tfcnn audit --json --write-fixes` in-process."""
    base = tmp_path_factory.mktemp("audit")
    root = base / "bands"
    rng = np.random.default_rng(4)
    planted = []
    for split, count in (("train", 40), ("test", 10)):
        for name in CLASSES:
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                Image.fromarray(band_image(name, rng)).save(root / split / name / f"{i}.png")
    for true, wrong in PLANTED.items():
        path = root / "train" / wrong / f"planted-{true}.png"
        Image.fromarray(band_image(true, rng)).save(path)
        planted.append(str(path))
    shutil.copy(root / "train" / "mid" / "3.png", root / "train" / "mid" / "copy.png")
    Image.open(root / "train" / "low" / "5.png").save(root / "test" / "low" / "leak.jpg",
                                                        quality=90)
    Image.new("L", (28, 28), 0).save(root / "train" / "high" / "blank.png")
    out, stdout = base / "report", io.StringIO()
    argv = ["audit", "--dataset", f"folder:{root}", "--folds", "3", "--epochs", "6",
            "--model", "8C3-P2-D3", "--time-budget", "none", "--out", str(out), "--json",
            "--write-fixes", str(base / "fixes.csv"), "--seed", "1", "--batch-size", "16"]
    with contextlib.redirect_stdout(stdout):
        code = main(argv)
    assert code == 0
    return {"root": root, "out": out, "report": json.loads(stdout.getvalue()),
            "planted": planted, "fixes": base / "fixes.csv"}


@pytest.mark.slow
def test_json_has_the_documented_keys(audited):
    report = audited["report"]
    assert {"label_issues", "duplicates", "leaks", "classes", "balance", "odd_images",
            "unreadable", "folds", "counts", "settings", "seconds"} <= set(report)
    assert all(set(i) >= {"file", "given", "suggested", "score"}
               for i in report["label_issues"])
    assert [c["name"] for c in report["classes"]] == list(CLASSES)
    assert len(report["folds"]) == 3 and all(f["epochs"] == 6 for f in report["folds"])
    for name in ("audit.json", "summary.txt", "label_issues.png", "duplicates.png",
                 "leaks.png"):
        assert (audited["out"] / name).is_file(), name
    assert json.loads((audited["out"] / "audit.json").read_text())["label_issues"] == \
        report["label_issues"]
    assert (audited["out"] / "folds" / "fold-1" / "model.keras").is_file()


@pytest.mark.slow
def test_planted_labels_rank_high(audited):
    issues = audited["report"]["label_issues"]
    top = [i["file"] for i in issues[:len(audited["planted"]) + 2]]
    assert set(audited["planted"]) <= set(top), issues[:6]
    for issue in issues:
        if issue["file"] in audited["planted"]:
            assert issue["suggested"] == Path(issue["file"]).stem.split("-")[1]


@pytest.mark.slow
def test_planted_copies_leaks_and_blank_are_found(audited):
    report, root = audited["report"], audited["root"]
    pairs = {(Path(d["a"]).name, Path(d["b"]).name, d["exact"]) for d in report["duplicates"]}
    assert ("3.png", "copy.png", True) in pairs
    leaks = {(d["a"], d["b"]) for d in report["leaks"]}
    assert (str(root / "train" / "low" / "5.png"), str(root / "test" / "low" / "leak.jpg")) \
        in leaks
    assert [(Path(o["file"]).name, o["kind"]) for o in report["odd_images"]] == \
        [("blank.png", "near-constant")]


@pytest.mark.slow
def test_fixes_from_the_audit_round_trip(audited):
    root, csv_path = audited["root"], audited["fixes"]
    before = listing(root)
    lines = csv_path.read_text().splitlines()
    header = lines[0].split(",")
    assert header[:4] == ["file", "given", "suggested", "action"]
    planted_lines = [n for n, line in enumerate(lines) if "planted-" in line]
    assert len(planted_lines) == 3
    for n in planted_lines:
        lines[n] = lines[n].replace(",keep,", ",move,")
    csv_path.write_text("\n".join(lines) + "\n")
    done = apply_fixes(csv_path)
    assert done.moved == 3
    for true in PLANTED:
        assert (root / "train" / true / f"planted-{true}.png").is_file()
    assert undo_fixes(done.log) == 3
    assert listing(root) == before


@pytest.mark.slow
def test_a_budget_too_short_is_refused_after_one_epoch(tmp_path):
    import tfcnn

    rng = np.random.default_rng(5)
    for name in CLASSES:
        (tmp_path / "d" / name).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(band_image(name, rng)).save(tmp_path / "d" / name / f"{i}.png")
    with pytest.raises(ConfigError, match="too short for 3 folds"):
        tfcnn.audit(f"folder:{tmp_path / 'd'}", folds=3, epochs=4, model="8C3-P2-D3",
                    time_budget=0.2, out=tmp_path / "out", batch_size=8)
