"""The showcase (`python -m gradlab`) runs a small sweep end to end and writes its plots.

The quick mode is cut down further here (two optimizers, one schedule, two
learning rates, 30 steps) so the suite stays fast; the full ``--quick`` run is
what README's first command does.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import jax
import pytest

import gradlab.__main__ as showcase

pytest.importorskip("sklearn")


def test_showcase_sweeps_prints_its_tables_and_writes_plots(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "plots"
    # One optimizer, two schedules (numbers: one compiled program), two rates.
    showcase.main([
        "--quick", "--steps", "30", "--optimizers", "adam", "--schedules", "constant,cosine",
        "--lrs", "2", "--loop-sample", "1", "--out", str(out), "--no-progress",
    ])  # fmt: skip
    text = capsys.readouterr().out
    assert "= 4 configurations, 1 compiled groups" in text  # 1 optimizer x 2 schedules x 2 lrs
    assert re.search(r"sweep: 4 configurations x 30 steps in [0-9.]+ s wall", text)
    assert "ESTIMATE: 1 runs measured" in text  # the loop time is labelled as extrapolated
    board = text[text.index("Leaderboard") : text.index("Comparison")]
    rows = re.findall(r"^\d+\s+adam\s+(constant|cosine)\s+([0-9.e-]+)\s+([0-9.]+)", board, re.M)
    assert sorted(r[0] for r in rows) == ["constant", "cosine"]
    assert all(float(r[1]) in (1e-3, 1.0) for r in rows)
    table = text[text.index("Comparison") :]
    for metric in ("training speed", "generalization", "memory", "lr sensitivity"):
        assert metric in table
    # State bytes per parameter: Adam keeps two float32 moments per parameter.
    memory = re.search(r"memory: optimizer state, bytes per parameter\s+(\d+)", table)
    assert memory.group(1) == "8"
    assert "lecture says" in table and "Fastest" in table
    names = {"loss_curves.png", "sweep_overview.png", "accuracy_vs_lr.png", "schedules.png"}
    assert {p.name for p in out.iterdir()} == names
    for p in out.iterdir():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000


def test_state_memory_per_parameter_of_each_optimizer():
    params = showcase.init_mlp(jax.random.key(0), (64, 8, 10))
    floats = {"sgd": 0, "momentum": 1, "nesterov": 1, "adagrad": 1, "rmsprop": 1, "adam": 2,
              "adamw": 2}  # fmt: skip
    for name, n in floats.items():
        assert showcase.state_bytes_per_param(name, params) == 4 * n, name


def test_lr_find_subcommand_prints_every_rule_and_plots(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    showcase.main([
        "lr-find", "--optimizers", "adam", "--steps", "40", "--hidden", "16",
        "--out", str(tmp_path),
    ])  # fmt: skip
    text = capsys.readouterr().out
    for name in ("optimizer='adam'", "valley", "steepest", "minimum"):
        assert name in text
    assert text.count("(chosen)") == 1
    png = tmp_path / "lr_finder.png"
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 5000


def _actions(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _actions(sub)
        else:
            yield action


def test_help_documents_every_option():
    parser = showcase._parser()
    for action in _actions(parser):
        assert action.help and len(action.help) > 10, action.option_strings
    text = subprocess.run([sys.executable, "-m", "gradlab", "--help"], capture_output=True,
                          text=True, check=True).stdout  # fmt: skip
    for action in parser._actions:
        for option in action.option_strings:
            assert option in text
    assert "lr-find" in text and "--quick" in text


def test_unknown_optimizer_is_refused_with_the_choices(capsys):
    with pytest.raises(SystemExit, match=r"unknown.*choose from sgd"):
        showcase.main(["--optimizers", "sgd,lionn", "--no-plots"])


def test_importing_gradlab_imports_no_plotting_or_peer_library():
    code = (
        "import sys, gradlab; "
        "bad = [m for m in ('matplotlib', 'optax', 'torch', 'scipy', 'sklearn', 'tqdm', "
        "'pandas') if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--batch-size", "0"], "--batch-size: must be >= 1, got 0"),
        (["--hidden", "-2"], "--hidden: must be >= 1, got -2"),
        (["--lrs", "0"], "--lrs: must be >= 1"),
        (["--lr-min", "0"], "--lr-min: must be a finite number > 0"),
        (["--lr-max", "inf"], "--lr-max: must be a finite number > 0"),
        (["--seed", "-1"], "--seed: must be >= 0"),
        (["--loop-sample", "-2"], "--loop-sample: must be >= 0"),
        (["--target-loss", "-1"], "--target-loss: must be a finite number > 0"),
        (["--lr-min", "1", "--lr-max", "0.1"], "--lr-min must be below --lr-max"),
        (["--steps", "50", "lr-find"], "options before 'lr-find' would be ignored (--steps 50)"),
        (["--quick", "lr-find"], "options before 'lr-find' would be ignored"),
        (["lr-find", "--steps", "1"], "--steps: must be >= 2, got 1"),
        (["lr-find", "--min-lr", "0"], "--min-lr: must be a finite number > 0"),
    ],
)
def test_bad_numbers_and_misplaced_options_are_usage_errors(argv, words, capsys):
    """Before any training: a one-line usage error and exit status 2 (they were
    tracebacks after the data loaded, or silently ignored before lr-find)."""
    with pytest.raises(SystemExit) as info:
        showcase.main(argv)
    assert info.value.code == 2
    assert words in capsys.readouterr().err


def test_an_unusable_out_folder_is_refused_before_training(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as info:
        showcase.main(["--quick", "--out", str(blocker / "plots")])
    assert info.value.code == 2 and "cannot create the folder" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="sgd given twice"):
        showcase.main(["--quick", "--no-plots", "--optimizers", "sgd,sgd"])
