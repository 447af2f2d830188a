"""Packaging (pyproject.toml: one version, console scripts) and portability: every module imports
where the POSIX-only parts of the standard library are missing (Windows)."""
import ast
import ctypes
import importlib
import importlib.metadata
import os
import subprocess
import sys
import textwrap

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10: tomli, in the dev extra
    import tomli as tomllib

import alae_tf
import tfrecords_tools
from tfrecords_tools import writer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("alae_tf", "tfrecords_tools")
ENV = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
           TF_CPP_MIN_LOG_LEVEL="3")


def _pyproject() -> dict:
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def _entry_modules() -> set[str]:
    """Our modules runnable as `python -m` (they have an `if __name__ == "__main__":` block)."""
    found = set()
    for pkg in PACKAGES:
        for root, _, files in os.walk(os.path.join(REPO, pkg)):
            for fn in files:
                if not fn.endswith(".py"):
                    continue
                path = os.path.join(root, fn)
                for node in ast.parse(open(path, encoding="utf-8").read()).body:
                    if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
                        rel = os.path.relpath(path, REPO)[:-3]
                        found.add(rel.replace(os.sep, ".").removesuffix(".__init__"))
    return found


def test_every_python_m_command_has_a_console_script():
    scripts = _pyproject()["project"]["scripts"]
    assert all(name.startswith("alae-") for name in scripts)
    targets = {}
    for name, target in scripts.items():
        module, attr = target.split(":")
        func = getattr(importlib.import_module(module), attr)
        assert callable(func), f"{name} -> {target} is not callable"
        targets[module] = name
    assert set(targets) == _entry_modules()
    assert len(targets) == len(scripts)  # one script per module
    for must in ("alae-train", "alae-convert", "alae-inspect", "alae-export", "alae-evaluate",
                 "alae-figures", "alae-port", "alae-bench"):
        assert must in scripts


def test_one_version():
    project = _pyproject()
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "tfrecords_tools.__version__"}
    assert alae_tf.__version__ == tfrecords_tools.__version__
    assert not os.path.exists(os.path.join(REPO, "setup.py"))
    try:
        installed = importlib.metadata.version("alae_tf")
    except importlib.metadata.PackageNotFoundError:
        return
    assert installed == alae_tf.__version__


def test_license_and_python_range():
    project = _pyproject()["project"]
    assert project["license"] == "Apache-2.0"
    text = open(os.path.join(REPO, "LICENSE"), encoding="utf-8").read()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert "Copyright 2026 the alae_tf authors" in open(os.path.join(REPO, "NOTICE")).read()
    assert project["requires-python"] == ">=3.10,<3.14"
    assert sys.version_info[:2] in [(3, 10), (3, 11), (3, 12), (3, 13)]


def _console(argv: list[str], target: str):
    """Run `target` (module:function) as pip's console-script wrapper does: the program's
    __main__ is a module without a docstring, sys.argv[0] the script's name."""
    module, func = target.split(":")
    code = (f"import sys; sys.argv = {argv!r}; from {module} import {func}; "
            f"sys.exit({func}())")
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=120)


def test_console_script_help_and_errors(tmp_path):
    scripts = _pyproject()["project"]["scripts"]
    # absl's --help: the module's description and its flags (then exit status 1, as absl does)
    p = _console(["alae-inspect", "--help"], scripts["alae-inspect"])
    assert "describe and check multi-LOD datasets" in p.stdout, p.stderr[-2000:]
    assert "--samples" in p.stdout and "--quick" in p.stdout
    p = _console(["alae-convert", "--help"], scripts["alae-convert"])
    assert "images -> multi-LOD TFRecords" in p.stdout, p.stderr[-2000:]
    assert "--source" in p.stdout and "--output_dir" in p.stdout
    # a user's mistake: one line, no traceback
    for argv in (["alae-inspect"], ["alae-inspect", "--samples=many", str(tmp_path)],
                 ["alae-inspect", str(tmp_path / "nothing")]):
        p = _console(argv, scripts["alae-inspect"])
        assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
        assert [ln for ln in p.stderr.splitlines() if ln.strip()][-1].startswith("error: "), p.stderr


# Each module a Windows Python lacks; and the names of its signal module (the rest is POSIX's).
POSIX_ONLY = ["resource", "fcntl", "pwd", "grp", "termios", "tty", "pty", "posix", "syslog",
              "crypt", "nis", "spwd", "_posixsubprocess", "readline", "curses"]
WINDOWS_SIGNAL = ["SIGABRT", "SIGFPE", "SIGILL", "SIGINT", "SIGSEGV", "SIGTERM", "SIGBREAK",
                  "CTRL_C_EVENT", "CTRL_BREAK_EVENT", "SIG_DFL", "SIG_IGN", "NSIG", "Signals",
                  "Handlers", "default_int_handler", "signal", "getsignal", "set_wakeup_fd",
                  "raise_signal", "strsignal", "valid_signals"]

HIDDEN_IMPORTS = textwrap.dedent("""
    import builtins, importlib, json, os, pkgutil, signal, sys
    HIDDEN, OURS = set(json.loads(sys.argv[1])), {"alae_tf", "tfrecords_tools"}
    for name in dir(signal):
        if not name.startswith("_") and name not in json.loads(sys.argv[2]):
            delattr(signal, name)
    real_import = builtins.__import__

    def hiding_import(name, globals=None, locals=None, fromlist=(), level=0):
        # Hidden from our modules only (the third parties run on POSIX here).
        ours = (globals or {}).get("__name__", "").split(".")[0] in OURS
        if ours and level == 0 and name.split(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, globals, locals, fromlist, level)

    builtins.__import__ = hiding_import
    names = []
    for pkg in sorted(OURS):
        importlib.import_module(pkg)
        names += [pkg] + [m.name for m in pkgutil.walk_packages(
            sys.modules[pkg].__path__, pkg + ".")]
    for name in names:
        importlib.import_module(name)
    assert "pthread_sigmask" not in dir(signal) and "SIGKILL" not in dir(signal)
    from tfrecords_tools import writer
    assert writer.resource is None
    with writer._sigint_blocked(), writer._interrupts_deferred():
        pass
    assert writer.peak_rss_mib() >= 0
    out = sys.argv[3]
    writer.convert(source="mnist5k", output_dir=out, name="m", max_images=6, workers=1)
    print("imported", len(names), "converted", sorted(os.listdir(out))[0])
""")


def test_every_module_imports_without_posix_modules(tmp_path):
    import json

    p = subprocess.run([sys.executable, "-c", HIDDEN_IMPORTS, json.dumps(POSIX_ONLY),
                        json.dumps(WINDOWS_SIGNAL), str(tmp_path)],
                       cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    line = p.stdout.strip().splitlines()[-1]
    assert line.startswith("imported ") and line.endswith("converted m-r02.tfrecords.000"), line
    assert int(line.split()[1]) >= 50  # every module of both packages


def test_peak_rss_without_proc(monkeypatch):
    def no_proc(*a, **k):
        raise OSError("no /proc")

    class Usage:
        ru_maxrss = 3 << 20

    class FakeResource:
        RUSAGE_SELF = 0

        @staticmethod
        def getrusage(who):
            return Usage

    monkeypatch.setattr("builtins.open", no_proc)
    monkeypatch.setattr(writer, "resource", FakeResource)
    monkeypatch.setattr(sys, "platform", "darwin")  # ru_maxrss in bytes
    assert writer.peak_rss_mib() == 3.0
    monkeypatch.setattr(sys, "platform", "linux")  # in KiB
    assert writer.peak_rss_mib() == 3072.0
    monkeypatch.setattr(writer, "resource", None)  # Windows
    assert writer.peak_rss_mib() == 0.0


def test_pid_alive_on_windows_never_signals(monkeypatch):
    """os.kill(pid, 0) ends the process on Windows: the writer asks OpenProcess instead."""
    state = {}

    class Kernel32:
        def OpenProcess(self, access, inherit, pid):
            return 0 if pid in (7, 8) else 99

        def GetExitCodeProcess(self, handle, ref):
            ref._obj.value = state["code"]
            return 1

        def CloseHandle(self, handle):
            state["closed"] = True

    def kill(*a):
        raise AssertionError("os.kill called")

    monkeypatch.setattr(ctypes, "WinDLL", lambda *a, **k: Kernel32(), raising=False)
    monkeypatch.setattr(ctypes, "get_last_error", lambda: {7: 87, 8: 5}[state["pid"]], raising=False)
    monkeypatch.setattr(writer.os, "kill", kill)
    monkeypatch.setattr(writer.os, "name", "nt")
    for pid, code, alive in [(5, 259, True), (5, 0, False), (7, 0, False), (8, 0, True)]:
        state.update(pid=pid, code=code)
        assert writer._pid_alive(pid) is alive, (pid, code)
    assert state["closed"]
