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

import pytest

import gradlab.__main__ as showcase

pytest.importorskip("sklearn")


def test_showcase_sweeps_prints_its_tables_and_writes_plots(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "plots"
    showcase.main([
        "--quick", "--steps", "30", "--optimizers", "sgd,adam", "--schedules", "constant",
        "--lrs", "2", "--loop-sample", "1", "--out", str(out), "--no-progress",
    ])  # fmt: skip
    text = capsys.readouterr().out
    assert "= 4 configurations, 2 compiled groups" in text  # 2 optimizers x 1 schedule x 2 lrs
    assert re.search(r"sweep: 4 configurations x 30 steps in [0-9.]+ s wall", text)
    assert "ESTIMATE: 1 runs measured" in text  # the loop time is labelled as extrapolated
    board = text[text.index("Leaderboard") : text.index("Comparison")]
    rows = re.findall(r"^\d+\s+(sgd|adam)\s+constant\s+([0-9.e-]+)\s+([0-9.]+)", board, re.M)
    assert sorted(r[0] for r in rows) == ["adam", "sgd"]
    assert all(float(r[1]) in (1e-3, 1.0) for r in rows)
    table = text[text.index("Comparison") :]
    for metric in ("training speed", "generalization", "memory", "lr sensitivity"):
        assert metric in table
    # State bytes per parameter: plain SGD keeps nothing, Adam two float32 moments.
    memory = re.search(r"memory: optimizer state, bytes per parameter\s+(\d+)\s+(\d+)", table)
    assert memory.groups() == ("0", "8")
    assert "lecture says" in table and "Fastest" in table
    names = {"loss_curves.png", "sweep_overview.png", "accuracy_vs_lr.png", "schedules.png"}
    assert {p.name for p in out.iterdir()} == names
    for p in out.iterdir():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000


def test_lr_find_subcommand_prints_every_rule_and_plots(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    showcase.main([
        "lr-find", "--optimizers", "momentum,adam", "--steps", "40", "--hidden", "16",
        "--out", str(tmp_path),
    ])  # fmt: skip
    text = capsys.readouterr().out
    for name in ("optimizer='momentum'", "optimizer='adam'", "valley", "steepest", "minimum"):
        assert name in text
    assert text.count("(chosen)") == 2
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
        showcase.main(["--optimizers", "sgd,lion", "--no-plots"])


def test_importing_gradlab_imports_no_plotting_or_peer_library():
    code = (
        "import sys, gradlab; "
        "bad = [m for m in ('matplotlib', 'optax', 'torch', 'scipy', 'sklearn', 'tqdm', "
        "'pandas') if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
