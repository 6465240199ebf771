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

import gradlab as gl
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


# A sweep small enough that a bad number which slips past the parser fails fast.
_TINY = ["--steps", "1", "--lrs", "2", "--optimizers", "sgd", "--schedules", "constant",
         "--loop-sample", "0", "--no-plots", "--no-progress"]  # fmt: skip
_TINY_FIND = ["--steps", "2", "--optimizers", "sgd", "--no-plots"]


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
        # one bound alone is checked against the other's default (it ran "2 .. 1")
        (["--lr-min", "2"], "--lr-min must be below --lr-max (got 2 and 1;"),
        (["--quick", "--lr-max", "1e-4"], "--lr-min must be below --lr-max (got 0.001 and 0.0001;"),
        (["--steps", "50", "lr-find"], "options before 'lr-find' would be ignored (--steps 50)"),
        (["--quick", "lr-find"], "options before 'lr-find' would be ignored"),
        (["lr-find", "--steps", "1"], "--steps: must be >= 2, got 1"),
        (["lr-find", "--min-lr", "0"], "--min-lr: must be a finite number > 0"),
        # float32, where the training computes, holds neither (they were tracebacks
        # from inside gl.sweep / gl.lr_finder naming peak_value / max_lr)
        (["--lr-max", "1e300", *_TINY], "--lr-max: must fit in float32"),
        (["--lr-min", "1e-46", *_TINY], "--lr-min: must fit in float32"),  # 0 in float32
        (["lr-find", "--max-lr", "1e39", *_TINY_FIND], "--max-lr: must fit in float32"),
        (
            ["lr-find", "--min-lr", "1e-30", "--max-lr", "1e10", *_TINY_FIND],
            "--max-lr / --min-lr must fit in float32",
        ),
        (["lr-find", "--min-lr", "1e-40", *_TINY_FIND], "--min-lr: must fit in float32"),
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


@pytest.mark.parametrize("command", [[], ["lr-find"]])
def test_missing_matplotlib_is_reported_before_training(command, tmp_path, monkeypatch):
    """It was a ModuleNotFoundError traceback after the whole sweep had trained."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    monkeypatch.setattr(showcase, "load_digits", lambda seed=0: pytest.fail("it trained"))
    with pytest.raises(SystemExit) as info:
        showcase.main([*command, "--out", str(tmp_path / "plots")])
    message = str(info.value.code)
    assert "matplotlib" in message and "--no-plots" in message and "\n" not in message


def test_an_optimizer_that_diverged_at_every_rate_is_left_out_of_the_plots(
    tmp_path, capsys, monkeypatch
):
    """The tables said "diverged"; the plots asked it for its best rate, and the
    run ended in a ValueError traceback with no plots."""
    pytest.importorskip("matplotlib")
    # "boom" diverges at every learning rate (its updates are 1e30 times sgd's).
    boom = lambda lr: gl.chain(gl.sgd(lr), gl.scale(1e30))  # noqa: E731
    monkeypatch.setitem(showcase.OPTIMIZERS, "boom", boom)
    figures = {}

    def save(fig, path):
        figures[path.name] = fig
        return path

    monkeypatch.setattr(showcase, "_save", save)
    tiny = ["--steps", "5", "--hidden", "8", "--lrs", "1", "--lr-min", "1e-2", "--lr-max", "1e-1",
            "--schedules", "constant", "--loop-sample", "0", "--no-progress"]  # fmt: skip
    showcase.main([*tiny, "--optimizers", "adam,boom", "--out", str(tmp_path)])
    text = capsys.readouterr().out
    assert re.search(r"^\d+\s+boom\s+constant\s+-\s+diverged", text, re.M)
    names = {"loss_curves.png", "sweep_overview.png", "accuracy_vs_lr.png", "schedules.png"}
    assert set(figures) == names
    title = figures["loss_curves.png"]._suptitle.get_text()
    assert "left out, diverged at every learning rate: boom" in title
    legend = figures["accuracy_vs_lr.png"].axes[-1].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["adam", "boom (diverged)"]

    figures.clear()  # every optimizer diverged: no loss curves, the other plots
    showcase.main([*tiny, "--optimizers", "boom", "--out", str(tmp_path)])
    assert "no loss_curves.png: every optimizer diverged" in capsys.readouterr().out
    assert set(figures) == names - {"loss_curves.png"}


def test_warmup_cosine_is_not_cosine_on_short_runs(capsys):
    """10% of 5 steps or fewer rounded to no warm-up: 'warmup-cosine' was 'cosine'
    again, where() returned both, and the tables counted each configuration twice
    ("4 learning rates each" for --lrs 2)."""
    for steps in range(2, 12):
        warmup, _ = showcase.schedule_shape("warmup-cosine", steps)
        assert 1 <= warmup < steps, steps
    assert showcase.schedule_shape("warmup-cosine", 100) == (10, 0.0)
    showcase.main([
        "--steps", "4", "--hidden", "8", "--lrs", "2", "--optimizers", "sgd",
        "--schedules", "cosine,warmup-cosine", "--loop-sample", "0", "--no-plots", "--no-progress",
    ])  # fmt: skip
    text = capsys.readouterr().out
    board = text[text.index("Leaderboard") : text.index("Comparison")]
    assert sorted(re.findall(r"^\d+\s+sgd\s+(\S+)", board, re.M)) == ["cosine", "warmup-cosine"]
    assert "schedule 'cosine', 2 learning rates each" in text
    # One step leaves no room for a warm-up: the two are one schedule, trained once.
    args = showcase._parser().parse_args(["--steps", "1", "--schedules", "cosine,warmup-cosine"])
    assert showcase._options(args).schedules == ["cosine"]
    assert "'warmup-cosine' is the same schedule as 'cosine'" in capsys.readouterr().out
