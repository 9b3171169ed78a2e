"""Compiled programs kept whole on disk, so a warm run neither traces nor lowers them.

JAX's persistent cache (``compile_cache``) skips only XLA's compile; this store keeps the compiled executable
itself (``jax.experimental.serialize_executable``) under a key of everything the program depends on (its name,
static arguments, argument structure, shapes and dtypes, this package's source, the versions of Python, JAX,
jaxlib, optax and numpy, every JAX setting, $XLA_FLAGS, the backend, the device and the CPU's features).

Off unless ``enable`` named a directory (``compile_cache.enable_compile_cache`` does, for the program). An entry
is machine code: the caller vouches for the directory (docs/security.md). Each entry's key and payload SHA-256
are checked before anything is unpickled; a damaged entry is deleted with one warning line and compiled again.
A store problem never fails a run: an entry that cannot be read is compiled again, one that cannot be written is
not kept, and one that fails on its first call is deleted and the call made by jit instead. Programs over several
devices or processes, and programs whose static arguments show only an object's address, are not kept. A program
compiled for the store is kept out of JAX's persistent cache: an executable read back from there saves as one
that fails to run (XLA:CPU: "Function ... not found").
"""

from __future__ import annotations

import errno
import hashlib
import os
import pickle
import platform
import re
import stat
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import jax

from microgpt_jax.files import temp_prefix

# an entry: FORMAT, the key's digest and the payload's SHA-256 (hex, a line each), the payload (a pickle)
FORMAT = b"microgpt-jax executable 2\n"
MAX_ENTRY_BYTES = 256 << 20  # an entry larger than this is not read (microgpt's programs are under a few MB)

_state: dict[str, Any] = {"dir": None, "fingerprint": None, "listening": False}
_memory: dict[tuple[object, ...], jax.stages.Compiled] = {}  # this process's executables by (name, statics, avals)
_unverified: dict[
    int, tuple[tuple[object, ...], Path]
] = {}  # executables read from disk not yet called: id -> (key, path)
_lock = threading.Lock()
_thread = threading.local()  # .jax_cache_hits: JAX's persistent-cache hits in this thread
JAX_CACHE_HIT = "/jax/compilation_cache/cache_hits"  # the event JAX records, in the compiling thread


def enable(directory: str | os.PathLike[str] | None) -> None:
    """Keep compiled programs in ``directory`` (created private to the user if missing), or stop keeping them
    (None). The caller vouches for the directory, as for JAX's cache (``compile_cache`` checks it)."""
    _state["dir"] = None if directory is None else Path(directory)
    with _lock:
        _memory.clear()
        _unverified.clear()
    if directory is not None and not _state["listening"]:
        _state["listening"] = True
        jax.monitoring.register_event_listener(_count_jax_cache_hits)


def _count_jax_cache_hits(event: str, **kwargs: Any) -> None:
    if event == JAX_CACHE_HIT:
        _thread.jax_cache_hits = getattr(_thread, "jax_cache_hits", 0) + 1


def directory() -> Path | None:
    """The store's directory, or None when it is off."""
    return _state["dir"]


def call(program: Callable[..., Any], name: str, *args: Any, bound: Any = None, **static: Any) -> Any:
    """``program(*args, **static)``: with the store on, by the executable kept for these arguments (read from
    disk, or compiled and written there); otherwise, or for arguments it does not keep, by ``program`` itself.

    ``program`` is a jitted function (or ``xla_options.jit_with_cpu_options``'s) whose keyword arguments are its
    static ones; ``name`` names it in the store, and ``bound`` (its repr) is what the program has fixed already,
    static arguments bound by functools.partial, say."""
    compiled = prepare(program, name, *args, bound=bound, **static)
    if compiled is None:
        return program(*args, **static)
    unverified = _unverified.get(id(compiled))
    if unverified is None:
        return compiled(*args)
    key, path = unverified
    try:  # an entry read from disk runs for the first time: if it cannot, it goes, and jit makes the call
        out = jax.block_until_ready(compiled(*args))
    except Exception:
        with _lock:
            _memory.pop(key, None)
            _unverified.pop(id(compiled), None)
        _unlink(path)
        return program(*args, **static)
    with _lock:
        _unverified.pop(id(compiled), None)
    return out


def compile_ahead(
    program: Callable[..., Any],
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
    program: Callable[..., Any],
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
        try:
            digest = hashlib.sha256(repr((_fingerprint(), _printable(key))).encode()).hexdigest()
        except Exception:  # the package's source unreadable, say: such a program is left to jit
            return None
        path = _state["dir"] / f"{name}-{digest}.exe"
        compiled = _read(path, digest)
        if compiled is not None:
            with _lock:
                _unverified[id(compiled)] = (key, path)
        else:
            hits = getattr(_thread, "jax_cache_hits", 0)
            compiled = _compile_fresh(program, args, static, after_lower)
            after_lower = None  # called
            if getattr(_thread, "jax_cache_hits", 0) == hits:  # compiled here (JAX's cache holds no store program)
                _write(path, digest, compiled)
        with _lock:
            _memory[key] = compiled
    if after_lower is not None:
        after_lower()
    return compiled


def _memory_key(name: str, args: tuple[Any, ...], static: dict[str, Any]) -> tuple[object, ...] | None:
    """What tells this process's programs apart: name, static arguments, structure and avals of the arguments.
    None for arguments the store does not keep: Python scalars (weak types), or arrays on any device but the
    default one, which is also the only one a deserialized executable is loaded onto."""
    if jax.process_count() != 1 or jax.config.jax_default_device is not None:  # type: ignore[attr-defined]  # a jax option: Config declares none
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
    if any(_ADDRESS.search(text) for _, text in statics):  # an object known by its address: not told apart
        return None
    settings = tuple(sorted((k, repr(v)) for k, v in jax.config.values.items()))
    return (name, statics, str(treedef), tuple(avals), _trace_context(), settings)


def _trace_context() -> tuple[object, ...]:
    """The settings in force in this thread that change what tracing makes (``jax.enable_x64(True)`` among
    them), as jit's own cache keys them; the x64 setting alone where JAX keeps them elsewhere."""
    x64 = bool(jax.config.jax_enable_x64)  # type: ignore[attr-defined]  # a jax option: Config declares none
    try:
        from jax._src.config import trace_context

        return (x64, *trace_context())
    except Exception:  # another JAX layout
        return (x64,)


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _printable(key: tuple[object, ...]) -> str:
    """``key`` as text that is the same in every process. Only the trace context can show an object by its
    address (JAX's axis environment, empty outside transformations): its type stands for it."""
    return _ADDRESS.sub("", repr(key))


def _fingerprint() -> tuple[object, ...]:
    """Everything besides the program's own arguments that could change what it computes or where it runs."""
    if _state["fingerprint"] is None:
        import jaxlib
        import numpy as np

        source = hashlib.sha256()
        package = Path(__file__).parent.parent  # every module of the package, its subpackages' too
        files = sorted(package.rglob("*.py"))
        if not files:  # installed without its source (.pyc only): nothing to tell versions apart by
            raise RuntimeError("no source to fingerprint")
        for path in files:
            source.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
        device = jax.local_devices()[0]
        _state["fingerprint"] = (
            FORMAT, source.hexdigest(), sys.version, jax.__version__, jaxlib.__version__, _version("optax"),
            np.__version__, os.environ.get("XLA_FLAGS", ""), device.platform, device.client.platform_version,
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


def _compile_fresh(
    program: Callable[..., Any], args: tuple[Any, ...], static: dict[str, Any], after_lower: Callable[[], None] | None
) -> jax.stages.Compiled:
    """``_compile`` with this thread's programs kept out of JAX's persistent cache (a compile-time floor no
    compile reaches), so it never holds, and never serves, a program of the store's."""
    from jax._src import config as jax_config

    floor = getattr(jax_config, "persistent_cache_min_compile_time_secs", None)
    if floor is None:  # another JAX layout: hits are still caught by their event, and such programs not kept
        return _compile(program, args, static, after_lower)
    with floor(float("inf")):
        return _compile(program, args, static, after_lower)


def _compile(
    program: Callable[..., Any],
    args: tuple[Any, ...],
    static: dict[str, Any],
    after_lower: Callable[[], None] | None = None,
) -> jax.stages.Compiled:
    compile_ahead = getattr(program, "compile_ahead", None)
    if compile_ahead is not None:  # xla_options.jit_with_cpu_options: its options, or the plain program
        return compile_ahead(*args, after_lower=after_lower, **static)
    lowered = cast("jax.stages.Wrapped", program).lower(*args, **static)
    if after_lower is not None:
        after_lower()
    return lowered.compile()


def _entry_payload(path: Path, digest: str) -> bytes | None:
    """The verified payload of the entry in ``path`` (None when there is none); a ValueError saying what is wrong
    with one that is there but damaged: not a regular file (a link is not followed, a FIFO does not block), too
    large, of another format, cut short, stored under another key, or not matching its checksum."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as e:
        link = " (a link is never followed)" if e.errno == errno.ELOOP else ""
        raise ValueError(f"cannot open it: {e.strerror}{link}") from None
    with open(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_ENTRY_BYTES:
            raise ValueError("not a regular file of at most 256 MiB")
        head = f.read(len(FORMAT) + 130)
        if head[: len(FORMAT)] != FORMAT:
            raise ValueError("not an entry of this version")
        if len(head) < len(FORMAT) + 130:
            raise ValueError("cut short")
        key, checksum = head[len(FORMAT) : len(FORMAT) + 64], head[len(FORMAT) + 65 : len(FORMAT) + 129]
        if key != digest.encode() or head[len(FORMAT) + 64 :: 65] != b"\n\n":
            raise ValueError("stored under another key")
        payload = f.read(MAX_ENTRY_BYTES)
    if hashlib.sha256(payload).hexdigest().encode() != checksum:
        raise ValueError("its checksum does not match: damaged")
    return payload


def _read(path: Path, digest: str) -> jax.stages.Compiled | None:
    """The executable in ``path``, or None: missing, or damaged (deleted, with one warning line: ``_entry_payload``
    checks it before anything is unpickled), or not loadable."""
    from jax.experimental import serialize_executable

    try:
        payload = _entry_payload(path, digest)
    except (OSError, ValueError) as e:
        print(f"warning: compiled-program store: deleted the damaged entry {path.name} ({e}); compiling it again",
              file=sys.stderr)  # fmt: skip
        _unlink(path)
        return None
    if payload is None:
        return None
    try:
        serialized, in_tree, out_tree = pickle.loads(payload)
        # loaded onto the default device only, which the key asks every argument to be on (by default it would be
        # loaded for every device of the backend, and a single-device program then wants a shard on each)
        device = jax.local_devices()[0]
        return serialize_executable.deserialize_and_load(serialized, in_tree, out_tree, device.client, [device])
    except Exception:  # missing, cut short by a killed writer, or from a jaxlib that reads it no more
        return None


def _write(path: Path, digest: str, compiled: jax.stages.Compiled) -> None:
    """Keep ``compiled`` in ``path`` (a temporary file renamed into place); nothing on any failure."""
    from jax.experimental import serialize_executable

    tmp = path.with_name(f"{temp_prefix(path.name)}{threading.get_ident()}.tmp")
    try:
        blob = pickle.dumps(serialize_executable.serialize(compiled), protocol=pickle.HIGHEST_PROTOCOL)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
        with open(fd, "wb") as f:
            f.write(FORMAT + digest.encode() + b"\n" + hashlib.sha256(blob).hexdigest().encode() + b"\n" + blob)
        os.replace(tmp, path)
    except Exception:  # a full or read-only disk, or a program this jaxlib cannot serialize: not kept
        _unlink(tmp)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
