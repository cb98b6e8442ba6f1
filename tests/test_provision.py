"""Provisioning: where sources come from, how binaries are found, which modules load."""

from __future__ import annotations

import subprocess
import sys

from redistutor import provision


def test_apt_mirrors_reads_deb822_and_one_line_sources(tmp_path):
    apt = tmp_path / "etc" / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nEnabled: no\nURIs: http://disabled.example/debian\nSuites: x\n"
    )
    (apt / "sources.list").write_text(
        "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://other.example/ubuntu noble main\n"
        "deb-src http://mirror.example/debian bookworm main\n"
    )
    assert provision.apt_mirrors(tmp_path) == [
        "http://other.example/ubuntu",
        "http://mirror.example/debian",
        "http://mirror.example/debian-security",
    ]


def test_debian_source_urls_use_the_configured_mirror():
    src = next(s for s in provision.SOURCES if s.kind == "debian")
    urls = provision.source_urls(src, ["http://m.example/debian"])
    assert urls == [f"http://m.example/debian/pool/main/r/redis/{src.filename}"]


def test_pinned_sources_are_redis8_with_sha256():
    assert provision.SOURCES[0].kind == "upstream"  # upstream first, then the apt mirror
    for s in provision.SOURCES:
        assert s.version.startswith("8.0.") and len(s.sha256) == 64


def test_found_binary_is_redis8_with_modules():
    binary = provision.ensure(allow_build=False)
    assert binary.version >= (8, 0, 0)
    modules = provision.loadable_modules(binary.path)
    assert {"ReJSON", "bf", "search"} <= set(modules)
    for path in modules.values():
        assert path.stat().st_mode & 0o111, "module copies must be executable"


def test_an_older_server_or_fall_back_build_is_named_on_the_card():
    from redistutor.capabilities import Capabilities

    newest = provision.NEWEST_PINNED
    assert newest == max(tuple(map(int, s.version.split("."))) for s in provision.SOURCES)
    assert provision.older_than_pinned(newest) is None
    older = (8, 0, 1)
    note = provision.older_than_pinned(older)
    assert note == f"Redis 8.0.1 is older than the newest pinned release, {'.'.join(map(str, newest))}"
    card = Capabilities(older, {}, frozenset(), "local").card()
    assert card.endswith(note) and Capabilities(newest, {}, frozenset(), "local").card().count("older") == 0


def test_the_runtime_imports_without_fcntl_as_on_windows():
    """Attach mode must import where there is no fcntl (Windows): only a build takes the file lock."""
    code = "import sys; sys.modules['fcntl'] = None; import redistutor, redistutor.provision, redistutor.server"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
