"""JAX compilation settings for phasic: persistent cache, XLA optimisation, precision.

:class:`CompilationConfig` gathers the settings that decide how fast JAX code (such as
``phasic.jax._ops``) compiles and whether a second process can reuse compiled code from
disk. Importing this module does not import jax; only :meth:`CompilationConfig.apply`
does.

What ``apply()`` sets
---------------------
``jax.config`` options (read back with ``jax.config.<name>``):

==============================================  =========================================
``jax_enable_compilation_cache``                ``True``
``jax_compilation_cache_dir``                   :meth:`~CompilationConfig.effective_cache_dir`
``jax_persistent_cache_min_compile_time_secs``  ``min_cache_time``
``jax_persistent_cache_min_entry_size_bytes``   ``min_entry_size_bytes``
``jax_enable_x64``                              ``enable_x64``
``jax_platforms``                               ``platform`` (only when not None)
``jax_persistent_cache_enable_xla_caches``      ``None``, or
                                                ``"xla_gpu_per_fusion_autotune_cache_dir"``
                                                when ``gpu_autotune_cache``
==============================================  =========================================

XLA flags, merged into the environment variable ``XLA_FLAGS`` (a flag of the same name
already there is replaced; other flags are kept):

======================================================  ================================
``--xla_backend_optimization_level=N``                  always, ``N = optimization_level``
``--xla_cpu_parallel_codegen_split_count=1``            ``parallel_compile=False``
``--xla_cpu_multi_thread_eigen=false``                  ``cpu_threads == 1``
``--xla_cpu_multi_thread_eigen=true``                   ``cpu_threads > 1``
======================================================  ================================

XLA reads ``XLA_FLAGS`` once, when the JAX backend starts (the first JAX operation in
the process, not ``import jax``). ``apply()`` after that still updates the environment
(child processes inherit it) and the ``jax.config`` options, but the XLA flags and
``jax_platforms`` no longer change this process: ``apply()`` then warns with a
``RuntimeWarning``. Call it right after start-up. jaxlib rejects unknown XLA flags by
aborting the process, so only the flags above, all checked against jaxlib 0.10, are
ever written. There is no XLA flag for an exact CPU thread count
(``--intra_op_parallelism_threads`` is not an XLA flag); XLA's CPU thread pool follows
the CPUs the process may run on, so cap it with ``taskset`` or Slurm's
``--cpus-per-task``.

The optimisation level and the other XLA flags are part of JAX's cache key: an entry
compiled under one preset is not reused under another. So is, when XLA's GPU autotune
sub-cache is on (JAX's default), the absolute path of the cache directory, which JAX
passes to XLA as the autotune directory: an entry then only hits from a directory of the
same path, never after a copy or under another mount point. ``gpu_autotune_cache=False``
(the default here) turns that sub-cache off, which makes entries portable between
directories and machines; it costs nothing on CPU.

Cache strategies
----------------
``"local"``
    JAX reads and writes ``cache_dir``.
``"shared"``
    JAX reads and writes ``shared_cache_dir`` directly (e.g. a cluster filesystem seen
    by every node); it must be set.
``"layered"``
    JAX reads and writes ``cache_dir`` (fast node-local disk); ``apply()`` first copies
    into it every entry of ``shared_cache_dir`` it lacks, and
    :meth:`~CompilationConfig.push_to_shared` copies new local entries back. Needs
    ``gpu_autotune_cache=False`` (see above), else copied entries would never hit.

When ``cache_strategy`` is not given it is ``"layered"`` if ``shared_cache_dir`` is set
and ``"local"`` otherwise; ``"local"`` together with a ``shared_cache_dir`` is rejected,
since the shared directory would silently go unused. After ``apply()``, the functions
of :mod:`phasic.jax._cache` report on the directory JAX now uses.

A compilation cache is trusted code: do not share it with users you do not trust.

Examples
--------
>>> from phasic.jax._config import CompilationConfig
>>> cfg = CompilationConfig.fast_compile(cache_dir="/tmp/phasic-jax-cache")
>>> cfg.optimization_level, cfg.min_cache_time, cfg.cache_strategy
(1, 0.5, 'local')
>>> cfg.xla_flags()
['--xla_backend_optimization_level=1']
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from phasic.exceptions import CompilationConfigError
from phasic.jax import _cache as jax_cache

__all__ = ["CompilationConfig", "CompilationConfigError", "PRESETS", "last_applied"]

PRESETS: dict[str, dict] = {
    "balanced": {"optimization_level": 2, "min_cache_time": 1.0},
    "max_performance": {"optimization_level": 3, "min_cache_time": 1.0},
    "fast_compile": {"optimization_level": 1, "min_cache_time": 0.5},
}
"""Field values of the named presets; every other field keeps its default."""

CACHE_STRATEGIES = ("local", "shared", "layered")
PLATFORMS = ("cpu", "gpu", "cuda", "rocm", "tpu")

_OPT_FLAG = "--xla_backend_optimization_level"
_SPLIT_FLAG = "--xla_cpu_parallel_codegen_split_count"
_EIGEN_FLAG = "--xla_cpu_multi_thread_eigen"

_last_applied: CompilationConfig | None = None


def _default_cache_dir() -> str:
    return os.environ.get(jax_cache.ENV_VAR) or jax_cache.DEFAULT_JAX_CACHE_DIR


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_dir(name: str, value, optional: bool) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, (str, os.PathLike)) or os.fspath(value) == "":
        raise CompilationConfigError(
            f"{name} must be a non-empty directory path, got {value!r}"
            + ("; use None for no shared cache" if optional else "")
        )
    text = os.fspath(value)
    if not isinstance(text, str):
        text = os.fsdecode(text)
    if "://" in text:
        raise CompilationConfigError(
            f"{name}={text!r} is a URL; phasic supports JAX caches on local or cluster "
            "filesystems only, give a directory path"
        )
    return text


@dataclass
class CompilationConfig:
    """Settings for JAX compilation and its persistent cache.

    Parameters
    ----------
    cache_dir : str or os.PathLike
        Local cache directory. Default ``$JAX_COMPILATION_CACHE_DIR`` if set, else
        ``~/.jax_cache`` (``~`` is expanded when used, not when stored).
    shared_cache_dir : str or os.PathLike, optional
        Cache directory shared between machines, e.g. on a cluster filesystem.
    optimization_level : int
        XLA backend optimisation level, 0 (fastest compile) to 3.
    parallel_compile : bool
        Let XLA split CPU code generation over threads (its default). ``False`` compiles
        each module in one piece.
    min_cache_time : float
        Seconds a compilation must take before its result is written to the cache.
    min_entry_size_bytes : int
        Smallest executable, in bytes, written to the cache (0: JAX's default).
    enable_x64 : bool
        Use 64-bit floats and ints in JAX. On by default because phasic's graphs,
        traces and moments are float64.
    platform : str, optional
        Comma-separated JAX platforms to initialise, from ``cpu``, ``gpu``, ``cuda``,
        ``rocm``, ``tpu``; the first is the default. None lets JAX choose.
    cpu_threads : int, optional
        1 runs XLA's CPU kernels single-threaded; more than 1 turns multi-threaded
        kernels on (see the module notes on thread counts). None leaves XLA's default.
    cache_strategy : {"local", "shared", "layered"}, optional
        Which directory JAX uses; see the module docstring. Default ``"layered"`` when
        `shared_cache_dir` is set, else ``"local"``.
    gpu_autotune_cache : bool
        Keep XLA's GPU per-fusion autotune cache inside the cache directory (JAX's own
        default). Off by default because it ties every cache entry to the directory's
        absolute path; not allowed with ``"layered"``.

    Raises
    ------
    CompilationConfigError
        If a value has the wrong type or is out of range; the message names it.

    Examples
    --------
    >>> cfg = CompilationConfig(cache_dir="/tmp/jc", shared_cache_dir="/cluster/jc")
    >>> cfg.cache_strategy, cfg.optimization_level
    ('layered', 2)
    >>> CompilationConfig(optimization_level=7)
    Traceback (most recent call last):
    ...
    phasic.exceptions.CompilationConfigError: optimization_level must be an integer from 0 to 3, got 7
    """

    cache_dir: str = field(default_factory=_default_cache_dir)
    shared_cache_dir: str | None = None
    optimization_level: int = 2
    parallel_compile: bool = True
    min_cache_time: float = 1.0
    min_entry_size_bytes: int = 0
    enable_x64: bool = True
    platform: str | None = None
    cpu_threads: int | None = None
    cache_strategy: str | None = None
    gpu_autotune_cache: bool = False

    def __post_init__(self) -> None:
        if self.cache_strategy is None:
            self.cache_strategy = "layered" if self.shared_cache_dir is not None else "local"
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> CompilationConfig:
        """Check every field, normalising paths to ``str`` and numbers to their types.

        Returns
        -------
        CompilationConfig
            ``self``.

        Raises
        ------
        CompilationConfigError
            Naming the first offending field and value.
        """
        self.cache_dir = _check_dir("cache_dir", self.cache_dir, optional=False)
        self.shared_cache_dir = _check_dir("shared_cache_dir", self.shared_cache_dir, True)
        level = self.optimization_level
        if not _is_int(level) or not 0 <= level <= 3:
            raise CompilationConfigError(f"optimization_level must be an integer from 0 to 3, got {level!r}")
        self.optimization_level = int(level)
        for name in ("parallel_compile", "enable_x64", "gpu_autotune_cache"):
            if not isinstance(getattr(self, name), bool):
                raise CompilationConfigError(f"{name} must be True or False, got {getattr(self, name)!r}")
        t = self.min_cache_time
        if not isinstance(t, numbers.Real) or isinstance(t, bool) or not math.isfinite(t) or t < 0:
            raise CompilationConfigError(
                f"min_cache_time must be a finite number of seconds >= 0, got {t!r}; use 0 to cache every compilation"
            )
        self.min_cache_time = float(t)
        size = self.min_entry_size_bytes
        if not _is_int(size) or size < 0:
            raise CompilationConfigError(f"min_entry_size_bytes must be an integer >= 0, got {size!r}")
        self.min_entry_size_bytes = int(size)
        self.platform = self._check_platform(self.platform)
        threads = self.cpu_threads
        if threads is not None and (not _is_int(threads) or threads < 1):
            raise CompilationConfigError(f"cpu_threads must be None or an integer >= 1, got {threads!r}")
        strategy = self.cache_strategy
        if strategy not in CACHE_STRATEGIES:
            raise CompilationConfigError(f"cache_strategy must be one of {CACHE_STRATEGIES!r}, got {strategy!r}")
        if strategy == "shared" and self.shared_cache_dir is None:
            raise CompilationConfigError(
                "cache_strategy='shared' needs shared_cache_dir; set it to a directory "
                "every process can reach, or use cache_strategy='local'"
            )
        if strategy == "local" and self.shared_cache_dir is not None:
            raise CompilationConfigError(
                f"cache_strategy='local' would leave shared_cache_dir="
                f"{self.shared_cache_dir!r} unused; use 'layered' or 'shared', or drop "
                "shared_cache_dir"
            )
        if strategy == "layered" and self.gpu_autotune_cache:
            raise CompilationConfigError(
                "cache_strategy='layered' needs gpu_autotune_cache=False: with the "
                "autotune cache on, JAX puts the cache directory's path into every key, "
                "so entries copied from shared_cache_dir would never be used"
            )
        return self

    @staticmethod
    def _check_platform(platform) -> str | None:
        if platform is None:
            return None
        if not isinstance(platform, str):
            raise CompilationConfigError(f"platform must be None or a string such as 'cpu', got {platform!r}")
        names = [p.strip().lower() for p in platform.split(",")]
        bad = [p for p in names if p not in PLATFORMS]
        if bad or not names:
            raise CompilationConfigError(
                f"platform {platform!r} is not a comma-separated list of {PLATFORMS!r}; "
                "use e.g. 'cpu' or 'cuda,cpu', or None to let JAX choose"
            )
        return ",".join(names)

    # ------------------------------------------------------------------ presets
    @classmethod
    def from_preset(cls, name: str, **overrides) -> CompilationConfig:
        """Build a preset configuration, optionally overriding fields.

        Parameters
        ----------
        name : {"balanced", "max_performance", "fast_compile"}
            Preset; see :data:`PRESETS`.
        **overrides
            Field values that replace the preset's.

        Raises
        ------
        CompilationConfigError
            For an unknown preset or field name, or an invalid value.

        Examples
        --------
        >>> CompilationConfig.from_preset("max_performance").optimization_level
        3
        """
        if name not in PRESETS:
            raise CompilationConfigError(f"unknown preset {name!r}; choose one of {tuple(PRESETS)!r}")
        return cls.from_dict({**PRESETS[name], **overrides})

    @classmethod
    def balanced(cls, **overrides) -> CompilationConfig:
        """Default preset: optimisation level 2, cache compilations taking >= 1.0 s."""
        return cls.from_preset("balanced", **overrides)

    @classmethod
    def max_performance(cls, **overrides) -> CompilationConfig:
        """Fastest code: optimisation level 3, cache compilations taking >= 1.0 s."""
        return cls.from_preset("max_performance", **overrides)

    @classmethod
    def fast_compile(cls, **overrides) -> CompilationConfig:
        """Fastest compile: optimisation level 1, cache compilations taking >= 0.5 s."""
        return cls.from_preset("fast_compile", **overrides)

    # ------------------------------------------------------------------ (de)serialise
    def as_dict(self) -> dict:
        """Return the fields as a JSON-ready dict (paths as strings)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> CompilationConfig:
        """Build from a dict of field values; missing fields take their defaults.

        Raises
        ------
        CompilationConfigError
            If `data` is not a dict, has unknown keys, or holds an invalid value.
        """
        if not isinstance(data, dict):
            raise CompilationConfigError(f"a CompilationConfig is built from a dict of fields, got {data!r}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names), key=str)
        if unknown:
            raise CompilationConfigError(f"unknown CompilationConfig field(s) {unknown!r}; valid fields are {names!r}")
        return cls(**data)

    def save_to_file(self, path: str | os.PathLike) -> Path:
        """Write the configuration as JSON (atomically: a failed write leaves any old
        file intact).

        Returns
        -------
        pathlib.Path
            The file written.
        """
        self.validate()
        target = Path(os.fspath(path)).expanduser()
        text = json.dumps(self.as_dict(), indent=2, sort_keys=True) + "\n"
        fd, tmp = tempfile.mkstemp(prefix=".phasic-tmp-", dir=target.parent or ".")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    @classmethod
    def load_from_file(cls, path: str | os.PathLike) -> CompilationConfig:
        """Read a configuration written by :meth:`save_to_file` (or by hand).

        Raises
        ------
        CompilationConfigError
            If the file is not JSON or holds invalid fields.
        OSError
            If the file cannot be read.
        """
        target = Path(os.fspath(path)).expanduser()
        text = target.read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CompilationConfigError(
                f"{str(target)!r} is not a JSON CompilationConfig ({exc}); write it with CompilationConfig.save_to_file"
            ) from exc
        try:
            return cls.from_dict(data)
        except CompilationConfigError as exc:
            raise CompilationConfigError(f"in {str(target)!r}: {exc}") from exc

    # ------------------------------------------------------------------ what apply() does
    def effective_cache_dir(self) -> Path:
        """The absolute directory JAX uses under this configuration's cache strategy."""
        chosen = self.shared_cache_dir if self.cache_strategy == "shared" else self.cache_dir
        return jax_cache.jax_cache_dir(chosen)

    def xla_flags(self) -> list[str]:
        """The XLA flags ``apply()`` merges into ``XLA_FLAGS`` (see the module table)."""
        flags = [f"{_OPT_FLAG}={self.optimization_level}"]
        if not self.parallel_compile:
            flags.append(f"{_SPLIT_FLAG}=1")
        if self.cpu_threads is not None:
            flags.append(f"{_EIGEN_FLAG}={'false' if self.cpu_threads == 1 else 'true'}")
        return flags

    def jax_options(self) -> dict:
        """The ``jax.config`` options ``apply()`` sets, as ``{name: value}``."""
        options = {
            "jax_enable_compilation_cache": True,
            "jax_compilation_cache_dir": str(self.effective_cache_dir()),
            "jax_persistent_cache_min_compile_time_secs": self.min_cache_time,
            "jax_persistent_cache_min_entry_size_bytes": self.min_entry_size_bytes,
            "jax_enable_x64": self.enable_x64,
        }
        options["jax_persistent_cache_enable_xla_caches"] = (
            "xla_gpu_per_fusion_autotune_cache_dir" if self.gpu_autotune_cache else None
        )
        if self.platform is not None:
            options["jax_platforms"] = self.platform
        return options

    def apply(self) -> dict:
        """Apply the configuration to this process's JAX (imports jax).

        Creates the cache directory, seeds it from `shared_cache_dir` under the
        ``"layered"`` strategy, merges :meth:`xla_flags` into ``XLA_FLAGS``, sets
        :meth:`jax_options` through ``jax.config.update`` and makes
        :mod:`phasic.jax._cache` report on the new directory.

        Returns
        -------
        dict
            ``cache_dir`` (str), ``jax_options`` (dict set), ``xla_flags`` (str, the new
            ``XLA_FLAGS``), ``xla_flags_effective`` (bool, False when the backend had
            already started), ``seeded_entries`` (int, copied from the shared cache).

        Raises
        ------
        CompilationConfigError
            If a field is invalid or the cache directory cannot be created.

        Warns
        -----
        RuntimeWarning
            If the JAX backend already started, so changed XLA flags or platform cannot
            take effect in this process, or if the shared cache could not be read.
        """
        global _last_applied
        self.validate()
        target = self.effective_cache_dir()
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CompilationConfigError(
                f"cannot create the JAX cache directory {str(target)!r} ({exc.strerror}); "
                "choose a writable cache_dir / shared_cache_dir"
            ) from exc
        seeded = 0
        if self.cache_strategy == "layered" and self.shared_cache_dir is not None:
            try:
                seeded = jax_cache.sync_jax_cache(self.shared_cache_dir, target)
            except OSError as exc:
                warnings.warn(
                    f"could not copy JAX cache entries from {self.shared_cache_dir!r} "
                    f"({exc}); continuing with the local cache {str(target)!r} alone",
                    RuntimeWarning,
                    stacklevel=2,
                )

        import jax  # heavy; only here

        started = _backend_started()
        old_flags = os.environ.get("XLA_FLAGS", "")
        new_flags = _merge_xla_flags(old_flags, self.xla_flags())
        os.environ["XLA_FLAGS"] = new_flags
        if started and new_flags.split() != old_flags.split():
            warnings.warn(
                f"the JAX backend has already started, so XLA_FLAGS={new_flags!r} only "
                "affects processes started from now on; call CompilationConfig.apply() "
                "before the first JAX operation for it to take effect here",
                RuntimeWarning,
                stacklevel=2,
            )
        options = self.jax_options()
        if started and "jax_platforms" in options:
            current = jax.config.jax_platforms
            if current != options["jax_platforms"]:
                warnings.warn(
                    f"platform={self.platform!r} not applied: the JAX backend has already "
                    f"started (jax_platforms={current!r}); apply the config before the "
                    "first JAX operation",
                    RuntimeWarning,
                    stacklevel=2,
                )
            del options["jax_platforms"]
        old_dir = jax.config.jax_compilation_cache_dir
        for name, value in options.items():
            jax.config.update(name, value)
        if old_dir is not None and old_dir != options["jax_compilation_cache_dir"]:
            # JAX opens its cache once; make the next compilation open the new directory.
            from jax.experimental.compilation_cache import compilation_cache

            compilation_cache.reset_cache()
        jax_cache._set_applied_cache_dir(target)
        _last_applied = dataclasses.replace(self)
        return {
            "cache_dir": str(target),
            "jax_options": options,
            "xla_flags": new_flags,
            "xla_flags_effective": not started,
            "seeded_entries": seeded,
        }

    def push_to_shared(self) -> int:
        """Copy local cache entries missing from `shared_cache_dir` into it.

        Returns
        -------
        int
            Number of entries copied.

        Raises
        ------
        CompilationConfigError
            If the strategy is not ``"layered"`` (under ``"shared"`` JAX already writes
            there; under ``"local"`` there is no shared directory).
        """
        self.validate()
        if self.cache_strategy != "layered" or self.shared_cache_dir is None:
            raise CompilationConfigError(
                f"push_to_shared needs cache_strategy='layered' with a shared_cache_dir, "
                f"got cache_strategy={self.cache_strategy!r}, "
                f"shared_cache_dir={self.shared_cache_dir!r}"
            )
        return jax_cache.sync_jax_cache(self.cache_dir, self.shared_cache_dir)


def last_applied() -> CompilationConfig | None:
    """A copy of the configuration last applied in this process, or None."""
    return None if _last_applied is None else dataclasses.replace(_last_applied)


def _merge_xla_flags(existing: str, flags: list[str]) -> str:
    """Replace flags of the same name in `existing` by `flags`, keeping the others."""
    names = {f.split("=", 1)[0] for f in flags}
    kept = [tok for tok in existing.split() if tok.split("=", 1)[0] not in names]
    return " ".join(kept + flags)


def _backend_started() -> bool:
    """Whether this process's JAX backend is initialised (XLA flags already read)."""
    try:
        from jax._src import xla_bridge
    except ImportError:  # pragma: no cover - jax moved it; assume the worst
        return True
    check = getattr(xla_bridge, "backends_are_initialized", None)
    return True if check is None else bool(check())
