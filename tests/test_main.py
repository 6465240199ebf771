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
