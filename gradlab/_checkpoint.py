"""Checkpoints of optimizer state: ``save_state`` / ``load_state``.

An optimizer state is a pytree of arrays, so a checkpoint is those arrays plus
a description of the tree. The format is a NumPy ``.npz`` archive (a zip of
``.npy`` arrays) with:

* ``leaf_00000``, ``leaf_00001``, ...: the leaves in ``jax.tree.leaves`` order,
  as plain NumPy arrays. Dtypes NumPy does not know (bfloat16, float8) are
  stored as their bits (unsigned integers of the same width) and PRNG keys as
  their key data, so every value round-trips bit for bit;
* ``__gradlab_header__``: a string array holding a small JSON header -- the
  format version, the tree structure as text, and per leaf its path, dtype and
  shape.

Loading never unpickles (``allow_pickle=False``: a checkpoint cannot run
code) and never builds a tree from the file: the tree comes from ``like``, a
state of the expected structure (``tx.init(params)``, or
``jax.eval_shape(tx.init, params)`` to allocate nothing). The file must match
it exactly -- structure (node types, NamedTuple vs tuple, dict keys), and each
leaf's shape and dtype -- or a ``ValueError`` shows both. Writing is atomic:
a temporary file in the same directory, flushed and ``fsync``-ed, then
``os.replace``-d over the target, so a process killed mid-write leaves the
previous checkpoint intact.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import stat
import zipfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradlab._checks import path_difference, short_structure

__all__ = ["load_state", "save_state"]

FORMAT = "gradlab-state"
VERSION = 1
HEADER_KEY = "__gradlab_header__"
MAX_HEADER_CHARS = 1 << 26  # a header is ~100 bytes per leaf: 64M chars is a malicious file


def _leaf_name(i: int) -> str:
    return f"leaf_{i:05d}"


def _path(path: Any) -> str:
    return jax.tree_util.keystr(path) or "(root)"


def _is_key(dtype: Any) -> bool:
    return jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _stored_dtype(dtype: np.dtype) -> np.dtype:
    """The NumPy dtype a leaf of ``dtype`` is written as: itself for NumPy's own
    dtypes, the unsigned integer of its width for ml_dtypes (bfloat16, float8)."""
    if dtype.kind == "V":
        return np.dtype(f"u{dtype.itemsize}")
    return dtype


def _to_numpy(path: Any, leaf: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """A leaf as the NumPy array to store and its header entry."""
    entry: dict[str, Any] = {"path": _path(path)}
    if isinstance(leaf, jax.Array) and _is_key(leaf.dtype):
        entry["key_impl"] = str(jax.random.key_impl(leaf))
        leaf = jax.random.key_data(leaf)
    elif isinstance(leaf, bool | int | float):
        leaf = jnp.asarray(leaf)  # a Python number: the dtype JAX would give it
    elif not isinstance(leaf, jax.Array | np.ndarray | np.generic):
        raise TypeError(
            f"save_state: state leaf {_path(path)} is a {type(leaf).__name__} ({leaf!r}); "
            "an optimizer state holds arrays only"
        )
    arr = np.asarray(jax.device_get(leaf))
    if arr.dtype.kind not in "biufV" or arr.dtype.hasobject:
        raise TypeError(
            f"save_state: state leaf {_path(path)} has dtype {arr.dtype}; only numeric "
            "arrays are stored (a checkpoint never holds Python objects)"
        )
    entry["dtype"] = str(np.dtype(arr.dtype).name)
    entry["shape"] = list(arr.shape)
    return arr.view(_stored_dtype(arr.dtype)), entry


def save_state(path: str | os.PathLike[str], state: Any) -> None:
    """Write ``state`` (a pytree of arrays) to ``path``, atomically.

    The file is a NumPy ``.npz`` archive (written to ``path`` exactly, whatever
    its suffix): one array per leaf plus a JSON header with the tree structure
    and every leaf's path, dtype and shape. bfloat16 (and other ml_dtypes)
    leaves are stored as their bits and PRNG keys as their key data, so
    :func:`load_state` gives back the same bits. It is written to a temporary
    file in the same directory, ``fsync``-ed, then renamed over ``path``
    (``os.replace``): a reader sees the old checkpoint or the new one, never a
    torn file, even if this process is killed mid-write. The file gets the
    mode a plain ``open(path, "wb")`` would give it (0666 less the umask), or
    keeps the mode of the checkpoint it replaces.

    Sharded leaves are gathered to the host (fine for optimizer states that fit
    in host memory; for multi-host states use orbax-checkpoint, see README).

    >>> import os, tempfile
    >>> tx, params = gl.adam(1e-3), {"w": jnp.ones(3)}
    >>> state = tx.init(params)
    >>> path = os.path.join(tempfile.mkdtemp(), "opt_state.npz")
    >>> gl.save_state(path, state)
    >>> restored = gl.load_state(path, like=tx.init(params))
    >>> jax.tree.all(jax.tree.map(jnp.array_equal, restored, state))
    True
    """
    path = os.fspath(path)
    flat, treedef = jax.tree_util.tree_flatten_with_path(state)
    arrays, entries = {}, []
    for i, (p, leaf) in enumerate(flat):
        arrays[_leaf_name(i)], entry = _to_numpy(p, leaf)
        entries.append(entry)
    header = {
        "format": FORMAT,
        "version": VERSION,
        "structure": str(treedef),
        "leaves": entries,
    }
    arrays[HEADER_KEY] = np.array(json.dumps(header))
    fd, tmp = _temporary_file(path)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.chmod(tmp, stat.S_IREAD | stat.S_IWRITE)  # (Windows deletes no read-only file)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    # The rename itself must reach the disk for the new checkpoint to survive a
    # power loss (POSIX; Windows cannot open a directory, and needs no such step).
    with contextlib.suppress(OSError):
        dir_fd = os.open(os.path.dirname(tmp), os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _corrupt(path: str, why: str) -> ValueError:
    return ValueError(
        f"load_state: {path!r} is not a readable gradlab checkpoint ({why}); it may be "
        "truncated, corrupted, or not written by gl.save_state"
    )


def _read_npy(zf: zipfile.ZipFile, name: str, path: str, max_bytes: int) -> np.ndarray:
    """The array stored as ``name`` + ".npy" in the archive, read without pickle.

    The ``.npy`` header is parsed with NumPy's own reader (bounded size); an
    object dtype is refused before any data is read, and so is an array larger
    than ``max_bytes`` or than the bytes the archive holds for it.
    """
    try:
        info = zf.getinfo(name + ".npy")
    except KeyError:
        raise _corrupt(path, f"no {name!r} entry") from None
    try:
        with zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy version {version}")
            if dtype.hasobject:
                raise ValueError(f"{name} holds Python objects (dtype {dtype}): refused")
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            if nbytes > max_bytes or nbytes > info.file_size:
                raise ValueError(f"{name} claims {nbytes} bytes (shape {shape}, dtype {dtype})")
            data = f.read(nbytes)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, RuntimeError) as e:
        raise _corrupt(path, f"{type(e).__name__}: {e}") from None
    if len(data) != nbytes:
        raise _corrupt(path, f"{name} is cut short ({len(data)} of {nbytes} bytes)")
    arr = np.frombuffer(data, dtype=dtype)
    return arr.reshape(shape[::-1]).T if fortran else arr.reshape(shape)


def _open(path: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise _corrupt(path, f"{type(e).__name__}: {e}") from None


def _header(zf: zipfile.ZipFile, path: str) -> dict[str, Any]:
    raw = _read_npy(zf, HEADER_KEY, path, max_bytes=4 * MAX_HEADER_CHARS)
    if raw.dtype.kind != "U" or raw.shape != ():
        raise _corrupt(path, f"the header is a {raw.dtype} array of shape {raw.shape}")
    try:
        header = json.loads(str(raw))
    except json.JSONDecodeError as e:
        raise _corrupt(path, f"the header is not JSON: {e}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise _corrupt(path, f"the header does not say format {FORMAT!r}")
    if header.get("version") != VERSION:
        raise ValueError(
            f"load_state: {path!r} has checkpoint format version {header.get('version')!r}; "
            f"this gradlab reads version {VERSION}"
        )
    entries = header.get("leaves")
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and isinstance(e.get("dtype"), str) and isinstance(e.get("shape"), list)
        for e in entries
    ):
        raise _corrupt(path, "the header's leaf list is malformed")
    return header


def _target_directory(path: str) -> str:
    """The existing directory ``path`` is written in; a missing directory or a
    ``path`` that is one is an error naming ``path`` (not the temporary file)."""
    if path.endswith(("/", os.sep)) or os.path.isdir(path):
        raise IsADirectoryError(f"save_state: {path!r} is a directory; give a file path")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        hint = " (a '~' is not expanded: use os.path.expanduser)" if "~" in path else ""
        raise FileNotFoundError(
            f"save_state: the directory {directory!r} of {path!r} does not exist{hint}"
        )
    return directory


def _temporary_file(path: str) -> tuple[int, str]:
    """A new file beside ``path``, opened for writing: created with mode 0666
    less the umask, as ``open(path, "wb")`` would be (``tempfile.mkstemp``
    makes it 0600: a checkpoint other users could not read), or with the mode
    of the file it will replace."""
    directory = _target_directory(path)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode) & 0o777  # (no setuid/setgid/sticky bits)
    except OSError:
        mode = None
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)
            break
        except FileExistsError:
            continue
    if mode is not None:
        with contextlib.suppress(OSError):  # (a file system without modes)
            os.chmod(tmp, mode)
    return fd, tmp


def _expected(leaf: Any, name: str) -> tuple[tuple[int, ...], np.dtype, bool]:
    """Shape and dtype a ``like`` leaf (an array, a ShapeDtypeStruct or a number)
    is stored with, and whether it is a PRNG key (stored as its key data)."""
    if isinstance(leaf, bool | int | float):
        leaf = jnp.asarray(leaf)
    dtype = getattr(leaf, "dtype", None)
    if not (isinstance(dtype, np.dtype) or (dtype is not None and _is_key(dtype))):
        raise TypeError(
            f"load_state: `like` leaf {name} is a {type(leaf).__name__} ({repr(leaf)[:80]}); "
            "pass a state of arrays or jax.ShapeDtypeStruct (tx.init(params), or "
            "jax.eval_shape(tx.init, params))"
        )
    if _is_key(leaf.dtype):
        data = jax.eval_shape(jax.random.key_data, leaf)
        return tuple(data.shape), np.dtype(data.dtype), True
    return tuple(np.shape(leaf)), np.dtype(leaf.dtype), False


def load_state(path: str | os.PathLike[str], *, like: Any) -> Any:
    """Read a state written by :func:`save_state`, checked against ``like``.

    ``like`` is a state of the expected structure: ``tx.init(params)``, or
    ``jax.eval_shape(tx.init, params)`` (no memory), or any tree of arrays /
    ``jax.ShapeDtypeStruct`` with the right structure, shapes and dtypes. The
    result has ``like``'s structure (its NamedTuples, dicts and tuples) and the
    file's values, as JAX arrays; a ``like`` leaf with a ``sharding`` gets the
    loaded value placed with that sharding (e.g. from ``gl.state_shardings``);
    a leaf on one device that JAX may still move (uncommitted, as ``tx.init``
    makes it) gets a value on that device, uncommitted too: a jitted step that
    ran on the old state runs on the restored one without compiling again.

    Raises ``ValueError`` when the file's tree structure differs from
    ``like``'s (both shown: a changed optimizer, a NamedTuple saved where a
    tuple is expected, other dict keys), when a leaf's shape or dtype differs
    (the leaf's path and both named), or when the file is truncated, corrupted
    or not a gradlab checkpoint. Nothing in the file is unpickled or imported,
    and no array larger than ``like``'s leaf is read.
    """
    path = os.fspath(path)
    flat, treedef = jax.tree_util.tree_flatten_with_path(like)
    with _open(path) as zf:
        header = _header(zf, path)
        entries = header["leaves"]
        if header.get("structure") != str(treedef) or len(entries) != len(flat):
            raise ValueError(
                "load_state: the checkpoint's state tree does not match `like` (saved from "
                "another optimizer or other params, or restored into another structure?)\n"
                f"  checkpoint: {_short_text(str(header.get('structure')))}\n"
                f"  like:       {short_structure(like)}\n"
                + path_difference(
                    [(str(e.get("path", "?")),) for e in entries],
                    [(_path(p),) for p, _ in flat],
                    "the checkpoint",
                    "`like`",
                )
            )
        leaves = []
        for i, ((p, leaf), entry) in enumerate(zip(flat, entries, strict=True)):
            name = _path(p)
            shape, dtype, is_key = _expected(leaf, name)
            saved = f"{entry['dtype']}{entry['shape']}"
            if tuple(entry["shape"]) != shape or entry["dtype"] != dtype.name:
                raise ValueError(
                    f"load_state: state leaf {name} is {saved} in the checkpoint but "
                    f"{dtype.name}{list(shape)} in `like`"
                )
            stored = _stored_dtype(dtype)
            raw = _read_npy(zf, _leaf_name(i), path, max_bytes=stored.itemsize * math.prod(shape))
            if raw.dtype != stored or raw.shape != shape:
                raise _corrupt(
                    path,
                    f"leaf {name} is stored as {raw.dtype}{list(raw.shape)}, the header "
                    f"says {saved}",
                )
            sharding = _concrete(getattr(leaf, "sharding", None), name)
            # Placed like the leaf. An array JAX may still move (uncommitted:
            # what init and a jitted step return on one device) comes back
            # uncommitted on its device: a committed restore would make the
            # next jitted step compile again, and its outputs the step after.
            # (Inside jax.set_mesh, jnp.asarray would place it on the whole mesh:
            # there it is committed to its device, as before.)
            movable = (
                sharding is not None
                and not getattr(leaf, "committed", True)
                and jax.sharding.get_mesh().empty
            )
            where = (
                jax.default_device(next(iter(sharding.device_set)))
                if movable
                else contextlib.nullcontext()
            )
            with where:
                value = jnp.asarray(raw.view(dtype))
                if is_key:
                    value = jax.random.wrap_key_data(value, impl=entry.get("key_impl"))
            if sharding is not None and not movable:
                value = jax.device_put(value, sharding)
            leaves.append(value)
    return treedef.unflatten(leaves)


def _concrete(sharding: Any, name: str) -> Any:
    """``sharding`` on devices: ``jax.eval_shape`` over explicit mesh axes gives
    shardings on an abstract mesh (no devices), which the mesh of
    ``jax.set_mesh`` makes concrete; without it they cannot place anything."""
    mesh = getattr(sharding, "mesh", None)
    if not isinstance(mesh, jax.sharding.AbstractMesh):
        return sharding
    current = jax.sharding.get_mesh()
    if not current.empty and current.abstract_mesh == mesh:
        return jax.sharding.NamedSharding(current, sharding.spec)
    raise ValueError(
        f"load_state: `like` leaf {name} is placed on an abstract mesh ({mesh}), with no "
        "devices to put it on (jax.eval_shape of arrays on explicit mesh axes): call "
        "load_state inside `with jax.set_mesh(mesh):`, or pass `like` leaves with concrete "
        "shardings (gl.state_shardings(tx, params)) or a live state (tx.init(params))"
    )


def _short_text(text: str, limit: int = 300) -> str:
    text = text.removeprefix("PyTreeDef(").removesuffix(")")
    if len(text) > limit:
        half = limit // 2 - 3
        text = f"{text[:half]} ... {text[-half:]}"
    return text
