"""Reliability, item 3: checkpoints and exact resume.

* ``gl.save_state`` / ``gl.load_state`` round-trip every public
  transformation's state bit for bit (bfloat16, PRNG keys, ints, bools), with
  its structure (NamedTuples stay NamedTuples);
* loading never unpickles: a pickle payload is refused without running, a
  truncated file (cut anywhere) or a corrupted one gives ``ValueError``;
* a writer killed mid-write (SIGKILL, at a random moment) leaves the previous
  checkpoint loadable and whole;
* orbax-checkpoint (what JAX users checkpoint with) round-trips a state too;
* exact resume: every public optimizer, L-BFGS with its line search and a
  composed optimizer (MultiSteps > apply_if_finite > chain(clip, partition(
  inject_hyperparams(adamw with a schedule), sgd), reduce_on_plateau), with two
  NaN steps) train 200 steps, are checkpointed at 100 and resumed in a fresh
  process: the final params are bit-identical to the uninterrupted run's.

(The bad checkpoints of ``tests/test_reliability_inputs.py`` check the error
messages: structure, shapes, dtypes, truncated, pickled, header-less files.)
"""

from __future__ import annotations

import pathlib
import random
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import resume_worker
from reliability_helpers import OPTIMIZERS, bits, resume_run, saved_leaves  # noqa: F401
from test_packing import PUBLIC_TRANSFORMS

import gradlab as gl

PARAMS = {
    "layers": [{"b": jnp.array([0.5, 1.0]), "w": jnp.array([[0.3, 1.2], [0.8, 0.1]])}],
    "scale": jnp.asarray(0.7, jnp.float32),
}


def _randomised(tree, seed=0):
    """``tree`` with every leaf replaced by random values of its dtype and shape."""
    rng = np.random.default_rng(seed)

    def leaf(x):
        x = jnp.asarray(x)
        if jnp.issubdtype(x.dtype, jnp.floating):
            return jnp.asarray(rng.normal(size=x.shape) * 1e3, np.float32).astype(x.dtype)
        if x.dtype == jnp.bool_:
            return jnp.asarray(rng.random(x.shape) < 0.5)
        info = np.iinfo(x.dtype)
        return jnp.asarray(rng.integers(info.min, info.max, x.shape, dtype=x.dtype))

    return jax.tree.map(leaf, tree)


def _assert_identical(loaded, original):
    assert jax.tree.structure(loaded) == jax.tree.structure(original)
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(original), strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert bits(a) == bits(b)


@pytest.mark.parametrize("name", sorted(PUBLIC_TRANSFORMS))
def test_every_public_transformations_state_round_trips_bit_for_bit(name, tmp_path):
    params = jax.tree.map(lambda p: p.astype(jnp.bfloat16), PARAMS) if "adam" in name else PARAMS
    state = _randomised(PUBLIC_TRANSFORMS[name]().init(params))
    gl.save_state(tmp_path / "state.npz", state)
    _assert_identical(gl.load_state(tmp_path / "state.npz", like=state), state)


def test_bfloat16_special_values_keys_ints_and_bools_round_trip(tmp_path):
    specials = jnp.asarray([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, 3.3e38, 1.0], jnp.bfloat16)
    state = {
        "bf16": specials,
        "f16": specials.astype(jnp.float16),
        "key": jax.random.key(42),
        "rbg_key": jax.random.key(3, impl="rbg"),  # its impl is saved (hunt52)
        "raw_key": jax.random.key_data(jax.random.key(7)),
        "count": jnp.asarray(2**31 - 1, jnp.int32),
        "flags": jnp.asarray([True, False]),
        "empty": jnp.zeros((0, 3)),
        "f64ish": jnp.asarray(np.pi, jnp.float32),
    }
    gl.save_state(tmp_path / "s.npz", state)
    loaded = gl.load_state(tmp_path / "s.npz", like=state)
    for k in ("key", "rbg_key"):
        assert jax.random.key_impl(loaded[k]) == jax.random.key_impl(state[k])
        np.testing.assert_array_equal(jax.random.key_data(loaded[k]), jax.random.key_data(state[k]))
    rest = lambda s: {k: v for k, v in s.items() if k not in ("key", "rbg_key")}  # noqa: E731
    _assert_identical(rest(loaded), rest(state))
    # an abstract template (no memory) gives the same
    abstract = jax.eval_shape(lambda: state)
    _assert_identical(rest(gl.load_state(tmp_path / "s.npz", like=abstract)), rest(state))


def test_load_state_places_leaves_with_the_templates_sharding(tmp_path):
    state = gl.adam(0.1).init(PARAMS)
    gl.save_state(tmp_path / "s.npz", state)
    like = gl.state_shardings(gl.adam(0.1), PARAMS)
    target = jax.tree.map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), state, like
    )
    loaded = gl.load_state(tmp_path / "s.npz", like=target)
    for x, sh in zip(jax.tree.leaves(loaded), jax.tree.leaves(like), strict=True):
        assert x.sharding == sh


def test_a_state_restored_into_a_live_state_does_not_make_the_step_compile_again(tmp_path):
    # like=tx.init(params) (the README's first form): the restored leaves were
    # committed to the device where init's are not, and JAX keys its compile
    # cache on that -- two more compiles of the step (then its own outputs).
    tx = gl.adam(0.1)
    params = PARAMS
    state = tx.init(params)

    @jax.jit
    def step(p, s):
        u, s = tx.update(jax.tree.map(jnp.ones_like, p), s, p)
        return gl.apply_updates(p, u), s

    params, state = step(params, state)
    gl.save_state(tmp_path / "s.npz", state)
    restored = gl.load_state(tmp_path / "s.npz", like=tx.init(PARAMS))
    assert not any(x.committed for x in jax.tree.leaves(restored))
    for _ in range(3):
        params, restored = step(params, restored)
    assert step._cache_size() == 1


def test_a_pickle_payload_is_refused_without_running(tmp_path):
    import pickle

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (pathlib.Path.touch, (marker,))

    path = tmp_path / "evil.npz"
    path.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(ValueError, match="not a readable gradlab checkpoint"):
        gl.load_state(path, like=gl.adam(0.1).init(PARAMS))
    assert not marker.exists()


def test_a_checkpoint_cut_anywhere_or_with_a_flipped_byte_gives_a_clear_error(tmp_path):
    state = gl.adam(0.1).init(PARAMS)
    gl.save_state(tmp_path / "good.npz", state)
    data = (tmp_path / "good.npz").read_bytes()
    rng = np.random.default_rng(0)
    for cut in [0, 1, 4, 30, *rng.integers(31, len(data) - 1, 20)]:
        (tmp_path / "cut.npz").write_bytes(data[:cut])
        with pytest.raises(ValueError, match="not a readable gradlab checkpoint"):
            gl.load_state(tmp_path / "cut.npz", like=state)
    for pos in rng.integers(0, len(data), 20):
        flipped = bytearray(data)
        flipped[pos] ^= 0xFF
        (tmp_path / "flip.npz").write_bytes(bytes(flipped))
        try:  # a flipped byte in a value is undetectable (no checksum of values): it loads
            gl.load_state(tmp_path / "flip.npz", like=state)
        except ValueError as e:  # anywhere else: a ValueError saying what, never another error
            assert "load_state" in str(e)


def test_save_state_leaves_no_temporary_file_and_overwrites(tmp_path):
    state = gl.adam(0.1).init(PARAMS)
    gl.save_state(tmp_path / "s.npz", state)
    gl.save_state(tmp_path / "s.npz", _randomised(state))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.npz"]
    _assert_identical(gl.load_state(tmp_path / "s.npz", like=state), _randomised(state))


WRITER = """
import sys, numpy as np
import gradlab as gl
path, ready = sys.argv[1], sys.argv[2]
for version in range(10**6):
    # ~16 MB: each save takes long enough for a kill to land inside it
    state = {"version": np.int32(version), "moments": [np.full(2_000_000, version, np.float32)] * 2}
    gl.save_state(path, state)
    if version == 0:
        open(ready, "w").close()
"""


def test_a_writer_killed_mid_write_leaves_the_previous_checkpoint_loadable(tmp_path):
    path, ready = tmp_path / "state.npz", tmp_path / "ready"
    like = {"version": jnp.int32(0), "moments": [jnp.zeros(2_000_000)] * 2}
    interrupted = False
    for attempt in range(4):  # until a kill lands inside a write (a temp file left)
        ready.unlink(missing_ok=True)
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(ready)])
        try:
            deadline = time.monotonic() + 120
            while not ready.exists():
                assert writer.poll() is None and time.monotonic() < deadline, "writer failed"
                time.sleep(0.01)
            time.sleep(random.Random(attempt).uniform(0.05, 0.6))
        finally:
            writer.send_signal(signal.SIGKILL)
            writer.wait()
        loaded = gl.load_state(path, like=like)
        version = int(loaded["version"])
        for m in loaded["moments"]:  # one whole version, not a torn mix
            assert np.all(np.asarray(m) == version)
        leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        for p in leftovers:
            p.unlink()
        if leftovers:
            interrupted = True
            break
    assert interrupted, "no kill landed inside a write in 4 attempts"


def test_orbax_checkpoint_round_trips_a_state(tmp_path):
    ocp = pytest.importorskip("orbax.checkpoint")
    tx = gl.chain(gl.clip_by_global_norm(1.0), gl.adamw(0.1, mu_dtype=jnp.bfloat16))
    state = _randomised(tx.init(PARAMS))
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "orbax", state)
    checkpointer.wait_until_finished()
    abstract = jax.eval_shape(tx.init, PARAMS)
    restored = checkpointer.restore(tmp_path / "orbax", abstract)
    _assert_identical(restored, state)


# ---------------------------------------------------------------- exact resume

RESUME_ROWS = [*OPTIMIZERS, "lbfgs_zoom", "composed"]


@pytest.mark.parametrize("row", RESUME_ROWS)
def test_exact_resume_in_a_fresh_process_is_bit_identical(row, resume_run):  # noqa: F811
    final = saved_leaves(resume_run, row, "final")
    resumed = saved_leaves(resume_run, row, "resumed")
    assert final is not None and resumed is not None
    assert all(np.all(np.isfinite(x)) for x in final)
    assert [bits(x) for x in resumed] == [bits(x) for x in final], row
    # the training moved: the 200 steps are not a no-op
    start = [np.asarray(x) for x in jax.tree.leaves(resume_worker.PARAMS)]
    assert any(not np.array_equal(a, b) for a, b in zip(final, start, strict=False))


def test_a_header_path_that_is_no_string_still_gives_the_structure_value_error(tmp_path):
    # the mismatch message names the leaves by the header's paths: an edited
    # header (a list for a path) raised TypeError from inside the message
    import io
    import json
    import zipfile

    gl.save_state(tmp_path / "s.npz", gl.adam(0.1).init({"w": jnp.ones(2)}))
    with (
        zipfile.ZipFile(tmp_path / "s.npz") as zin,
        zipfile.ZipFile(tmp_path / "e.npz", "w") as zout,
    ):
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename.startswith("__gradlab_header__"):
                header = json.loads(str(np.load(io.BytesIO(data))))
                header["leaves"][0]["path"] = ["count"]
                buf = io.BytesIO()
                np.save(buf, np.array(json.dumps(header)))
                data = buf.getvalue()
            zout.writestr(item, data)
    with pytest.raises(ValueError, match="does not match `like`"):
        gl.load_state(tmp_path / "e.npz", like=gl.sgd(0.1, momentum=0.9).init({"w": jnp.ones(2)}))


def test_a_checkpoint_gets_the_mode_a_plain_file_would_get(tmp_path):
    """tempfile.mkstemp made every checkpoint 0600, even over a 0644 one (hunt83):
    a group's evaluation job could not read it. Reference: the mode open() gives
    a new file under the same umask, and the replaced file's own mode."""
    state = gl.adam(0.1).init({"w": jnp.ones(2)})
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    path = tmp_path / "state.npz"
    gl.save_state(path, state)
    assert path.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777
    path.chmod(0o640)
    gl.save_state(path, state)
    assert path.stat().st_mode & 0o777 == 0o640
    path.chmod(0o4750)  # no setuid bit carried to a data file (review22)
    gl.save_state(path, state)
    assert path.stat().st_mode & 0o7777 == 0o750
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain", "state.npz"]


def test_save_and_load_errors_name_the_users_path_and_leaf(tmp_path):
    """A missing directory or a directory path named gradlab's hidden temporary
    file (hunt83); a `like` leaf that is no array gave an AttributeError."""
    state = gl.adam(0.1).init({"w": jnp.ones(2)})
    missing = tmp_path / "nodir" / "x.npz"
    with pytest.raises(FileNotFoundError, match=f"directory '{tmp_path / 'nodir'}' of"):
        gl.save_state(missing, state)
    with pytest.raises(IsADirectoryError, match="is a directory"):
        gl.save_state(f"{tmp_path}/", state)
    with pytest.raises(IsADirectoryError, match="is a directory"):
        gl.save_state(tmp_path, state)
    assert list(tmp_path.iterdir()) == [] and list(tmp_path.parent.glob(".*.tmp")) == []
    path = tmp_path / "s.npz"
    gl.save_state(path, state)
    like = (state[0]._replace(count="int32"), *state[1:])
    with pytest.raises(TypeError, match=r"`like` leaf \[0\]\.count is a str"):
        gl.load_state(path, like=like)
