"""Compiled builds of the bot's pure-Python hot spots: the knowledge search and the intent model.

A knowledge message spends about a third of its instructions in these modules (docs/performance/
webhook.md). mypyc, mypy's compiler, turns them into C extensions from the same source and its type
annotations, with the same behaviour; the product works without them, in pure Python.

    python -m acebuddy.speedups build     # `make install` runs it; needs a C compiler
    python -m acebuddy.speedups status

The extensions go to build/speedups/ with a manifest of the sources they were built from. At import,
`use(package)` puts a package's compiled modules ahead of its sources only when every source still
matches its manifest entry and the interpreter is the one they were built for: an edited module is
never shadowed by a stale build, it runs from its source until the next build. ACEBUDDY_SPEEDUPS=0 turns
them off (tests/test_speedups.py compares both).
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
import sysconfig
from pathlib import Path

MODULES = (
    "acebuddy.knowledge.text",
    "acebuddy.knowledge.query",
    "acebuddy.knowledge.extract",
    "acebuddy.knowledge.index",
    "acebuddy.bot.intents",
)
ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "speedups"
MANIFEST = "manifest.json"
# The shared library the compiled modules load (mypyc's group), found on sys.path.
GROUP = "acebuddy_speedups"

_active: set[str] = set()


def source(module: str) -> Path:
    return ROOT.joinpath(*module.split(".")).with_suffix(".py")


def fingerprint() -> dict:
    """What a build must match: each source's digest and the interpreter's extension tag."""
    return {"abi": sysconfig.get_config_var("EXT_SUFFIX"),
            "sources": {m: hashlib.sha256(source(m).read_bytes()).hexdigest() for m in MODULES}}


def current(build: Path = BUILD) -> bool:
    try:
        built = json.loads((build / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return built == fingerprint()


@functools.cache
def _build_current() -> bool:
    """`current()` of the installed build, read once a process: both packages ask at start-up."""
    return current()


def use(package: str, path: list[str]) -> None:
    """Called first in a package's __init__ with its `__path__`: its compiled modules, if current, are
    found before its sources."""
    if os.environ.get("ACEBUDDY_SPEEDUPS", "1").strip().lower() in ("0", "off", "false", "no"):
        return
    if not any(m.rpartition(".")[0] == package for m in MODULES) or not _build_current():
        return
    compiled = str(BUILD.joinpath(*package.split(".")))
    if compiled not in path:
        path.insert(0, compiled)
    if str(BUILD) not in sys.path:
        sys.path.append(str(BUILD))
    _active.update(m for m in MODULES if m.rpartition(".")[0] == package)


def active() -> set[str]:
    """The modules this process runs compiled (once imported)."""
    return {m for m in _active if m in sys.modules and not sys.modules[m].__file__.endswith(".py")}


def build(target: Path = BUILD) -> None:
    """Compile MODULES into `target` (replacing what is there) and write the manifest last."""
    import shutil
    import tempfile

    from mypyc.build import mypycify
    from setuptools import Distribution

    stamp = fingerprint()
    scratch = Path(tempfile.mkdtemp(prefix="acebuddy-speedups-"))
    cwd = os.getcwd()
    try:
        os.chdir(ROOT)  # mypyc names modules by their paths from here
        # Only these modules are type-checked (the rest of the product is not annotated for mypy).
        options = ["--follow-imports=skip", "--ignore-missing-imports"]
        extensions = mypycify([*options, *(str(source(m).relative_to(ROOT)) for m in MODULES)], opt_level="3",
                              group_name=GROUP, target_dir=str(scratch / "c"))
        dist = Distribution({"ext_modules": extensions})
        command = dist.get_command_obj("build_ext")
        command.build_lib, command.build_temp = str(scratch / "lib"), str(scratch / "tmp")
        dist.run_command("build_ext")
        os.chdir(cwd)
        shutil.rmtree(target, ignore_errors=True)  # the manifest with it: no half-replaced build is current
        shutil.copytree(scratch / "lib", target)
    finally:
        os.chdir(cwd)
        shutil.rmtree(scratch, ignore_errors=True)
    if fingerprint() != stamp:  # a source changed while it compiled: leave no build that claims it
        shutil.rmtree(target, ignore_errors=True)
        raise RuntimeError("a source changed during the build; run it again")
    (target / MANIFEST).write_text(json.dumps(stamp, indent=1))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["build"]:
        try:
            build()
        except Exception as exc:  # no compiler, no mypy: the product runs in pure Python
            print(f"speedups not built ({type(exc).__name__}: {exc}); running in pure Python", file=sys.stderr)
            return 1
        print(f"speedups built in {BUILD.relative_to(ROOT)}: {', '.join(MODULES)}")
        return 0
    if args == ["status"]:
        print("current" if current() else "absent or out of date (pure Python)")
        return 0
    print("usage: python -m acebuddy.speedups build|status", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
