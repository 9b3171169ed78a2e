"""Compiled programs kept whole on disk, so a warm run neither traces nor lowers them.

JAX's persistent compilation cache (``compile_cache``) skips XLA's compile, but a run still traces each program
(Python, a few tenths of a second for the training step's gradient) and lowers it to find its cache entry. This
store keeps the compiled executable itself (``jax.experimental.serialize_executable``) under a key made of
everything the program depends on: the program's name and static arguments, its arguments' structure, shapes
and dtypes, the source of this package, the versions of Python, JAX, jaxlib, optax and numpy, every JAX setting,
$XLA_FLAGS, the backend, the device and the CPU's features. A warm run reads the entry and calls it.

Off unless ``enable`` named a directory (``compile_cache.enable_compile_cache`` does, for the program: a
subdirectory of its private cache directory). The same warning as the compilation cache's applies: an entry is
machine code, and whoever can write the directory can make this process run theirs. A store problem never fails
a run: an entry that cannot be read is compiled again, and one that cannot be written is not kept. Programs over
several devices or processes are not kept (they compile through jit as before), nor one that JAX's persistent
cache served (an executable read back from it saves as one that fails to run: XLA:CPU "Function ... not found";
JAX's cache keeps serving such a program, traced each run).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import platform
import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax

FORMAT = b"microgpt-jax executable 1\n"
MAX_ENTRY_BYTES = 1 << 30  # an entry larger than this is not read (a program of microgpt's is under a few MB)

_state: dict[str, Any] = {"dir": None, "fingerprint": None, "listening": False}
_memory: dict[tuple, Any] = {}  # this process's executables by (name, statics, avals)
_lock = threading.Lock()
_thread = threading.local()  # .jax_cache_hits: JAX's persistent-cache hits in this thread
JAX_CACHE_HIT = "/jax/compilation_cache/cache_hits"  # the event JAX records, in the compiling thread


def enable(directory: str | os.PathLike | None) -> None:
    """Keep compiled programs in ``directory`` (created private to the user if missing), or stop keeping them
    (None). The caller vouches for the directory, as for JAX's cache (``compile_cache`` checks it)."""
    _state["dir"] = None if directory is None else Path(directory)
    with _lock:
        _memory.clear()
    if directory is not None and not _state["listening"]:
        _state["listening"] = True
        jax.monitoring.register_event_listener(_count_jax_cache_hits)


def _count_jax_cache_hits(event: str, **kwargs: Any) -> None:
    if event == JAX_CACHE_HIT:
        _thread.jax_cache_hits = getattr(_thread, "jax_cache_hits", 0) + 1


def directory() -> Path | None:
    """The store's directory, or None when it is off."""
    return _state["dir"]


def call(program: Callable, name: str, *args: Any, bound: Any = None, **static: Any) -> Any:
    """``program(*args, **static)``: with the store on, by the executable kept for these arguments (read from
    disk, or compiled and written there); otherwise, or for arguments it does not keep, by ``program`` itself.

    ``program`` is a jitted function (or ``xla_options.jit_with_cpu_options``'s) whose keyword arguments are its
    static ones; ``name`` names it in the store, and ``bound`` (its repr) is what the program has fixed already,
    static arguments bound by functools.partial, say."""
    compiled = prepare(program, name, *args, bound=bound, **static)
    if compiled is None:
        return program(*args, **static)
    return compiled(*args)


def compile_ahead(
    program: Callable,
    name: str,
    *args: Any,
    bound: Any = None,
    after_lower: Callable[[], None] | None = None,
    **static: Any,
) -> None:
    """Compile the program ``call`` will run for arguments like ``args`` (arrays or jax.ShapeDtypeStruct)
    without running it: into the store when it is on, else into JAX's own in-process cache. ``after_lower`` is
    called once the program is traced and lowered, while XLA compiles it (at once when it was kept)."""
    if prepare(program, name, *args, bound=bound, after_lower=after_lower, **static) is None:
        _compile(program, args, static, after_lower)


def prepare(
    program: Callable,
    name: str,
    *args: Any,
    bound: Any = None,
    after_lower: Callable[[], None] | None = None,
    **static: Any,
) -> Any:
    """The compiled executable ``call`` would run for arguments like ``args`` (arrays or jax.ShapeDtypeStruct),
    from memory, disk or a compile (``after_lower`` as ``compile_ahead``'s); None when the store is off or does
    not keep such a program (``after_lower`` not called)."""
    if _state["dir"] is None:
        return None
    key = _memory_key(name, args, {**static, "bound": bound})
    if key is None:
        return None
    with _lock:
        compiled = _memory.get(key)
    if compiled is None:
        digest = hashlib.sha256(repr((_fingerprint(), _printable(key))).encode()).hexdigest()
        path = _state["dir"] / f"{name}-{digest}.exe"
        compiled = _read(path, digest)
        if compiled is None:
            hits = getattr(_thread, "jax_cache_hits", 0)
            compiled = _compile(program, args, static, after_lower)
            after_lower = None  # called
            # an executable JAX's cache read back saves as one that cannot run (XLA:CPU: "Function ... not
            # found"): only one compiled here is kept; JAX's entry serves such a program until then
            if getattr(_thread, "jax_cache_hits", 0) == hits:
                _write(path, digest, compiled)
        with _lock:
            _memory[key] = compiled
    if after_lower is not None:
        after_lower()
    return compiled


def _memory_key(name: str, args: tuple, static: dict) -> tuple | None:
    """What tells this process's programs apart: name, static arguments, structure and avals of the arguments.
    None for arguments the store does not keep: Python scalars (weak types), or arrays on any device but the
    default one, which is also the only one a deserialized executable is loaded onto."""
    if jax.process_count() != 1 or jax.config.jax_default_device is not None:
        return None
    leaves, treedef = jax.tree.flatten(args)
    avals = []
    device = None
    for x in leaves:
        if isinstance(x, jax.ShapeDtypeStruct):
            if x.sharding is not None:
                return None
            avals.append((x.shape, x.dtype.name, bool(getattr(x, "weak_type", False))))
            continue
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            return None
        if isinstance(x, jax.Array):
            devices = x.sharding.device_set
            if len(devices) != 1:
                return None
            device = device or jax.local_devices()[0]
            if next(iter(devices)) != device:
                return None
        aval = jax.typeof(x)
        avals.append((tuple(aval.shape), aval.dtype.name, bool(aval.weak_type)))
    statics = tuple(sorted((k, repr(v)) for k, v in static.items()))
    return (name, statics, str(treedef), tuple(avals), _trace_context())


def _trace_context() -> tuple:
    """The settings in force in this thread that change what tracing makes (``jax.enable_x64(True)`` among
    them), as jit's own cache keys them; the x64 setting alone where JAX keeps them elsewhere."""
    x64 = bool(jax.config.jax_enable_x64)
    try:
        from jax._src.config import trace_context

        return (x64, *trace_context())
    except Exception:  # another JAX layout
        return (x64,)


def _printable(key: tuple) -> str:
    """``key`` as text that is the same in every process: objects shown by their type, not their address."""
    return re.sub(r" object at 0x[0-9a-fA-F]+", " object", repr(key))


def _fingerprint() -> tuple:
    """Everything besides the program's own arguments that could change what it computes or where it runs."""
    if _state["fingerprint"] is None:
        import jaxlib
        import numpy as np

        source = hashlib.sha256()
        for path in sorted(Path(__file__).parent.glob("*.py")):
            source.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        device = jax.local_devices()[0]
        settings = sorted((k, repr(v)) for k, v in jax.config.values.items())
        _state["fingerprint"] = (
            FORMAT, source.hexdigest(), sys.version, jax.__version__, jaxlib.__version__, _version("optax"),
            np.__version__, settings, os.environ.get("XLA_FLAGS", ""), device.platform, device.client.platform_version,
            device.device_kind, jax.local_device_count(), platform.machine(), _cpu_features(),
        )  # fmt: skip
    return _state["fingerprint"]


def _version(package: str) -> str:
    """An installed package's version, without importing it when it is not imported yet."""
    module = sys.modules.get(package)
    if module is not None and hasattr(module, "__version__"):
        return str(module.__version__)
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "none"


def _cpu_features() -> str:
    """The CPU's instruction-set flags (Linux), so a store shared between machines never runs code built for
    another CPU; elsewhere the processor's name."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _compile(program: Callable, args: tuple, static: dict, after_lower: Callable[[], None] | None = None) -> Any:
    compile_ahead = getattr(program, "compile_ahead", None)
    if compile_ahead is not None:  # xla_options.jit_with_cpu_options: its options, or the plain program
        return compile_ahead(*args, after_lower=after_lower, **static)
    lowered = program.lower(*args, **static)
    if after_lower is not None:
        after_lower()
    return lowered.compile()


def _read(path: Path, digest: str) -> Any:
    """The executable in ``path``, or None: missing, too large, written for another key, or not loadable."""
    from jax.experimental import serialize_executable

    try:
        with open(path, "rb") as f:
            head = f.read(len(FORMAT) + 65)
            if head != FORMAT + digest.encode() + b"\n":
                return None
            if os.fstat(f.fileno()).st_size > MAX_ENTRY_BYTES:
                return None
            serialized, in_tree, out_tree = pickle.loads(f.read(MAX_ENTRY_BYTES))
        # loaded onto the default device only, which the key asks every argument to be on (by default it would be
        # loaded for every device of the backend, and a single-device program then wants a shard on each)
        device = jax.local_devices()[0]
        return serialize_executable.deserialize_and_load(serialized, in_tree, out_tree, device.client, [device])
    except Exception:  # missing, cut short by a killed writer, or from a jaxlib that reads it no more
        return None


def _write(path: Path, digest: str, compiled: Any) -> None:
    """Keep ``compiled`` in ``path`` (a temporary file renamed into place); nothing on any failure."""
    from jax.experimental import serialize_executable

    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        blob = pickle.dumps(serialize_executable.serialize(compiled), protocol=pickle.HIGHEST_PROTOCOL)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(tmp, "xb") as f:
            f.write(FORMAT + digest.encode() + b"\n" + blob)
        os.replace(tmp, path)
    except Exception:  # a full or read-only disk, or a program this jaxlib cannot serialize: not kept
        try:
            tmp.unlink()
        except OSError:
            pass
