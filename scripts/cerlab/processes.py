"""Running things: commands (`run`, `ns_run` inside a namespace), and the daemons a lab starts,
recorded by PID in its run dir (`ProcessTable`) and stopped by that PID only, never by name.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from .messages import die

T = TypeVar("T")


def run(
    args: list[str],
    check: bool = True,
    capture: bool = True,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(
        args,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.PIPE if capture else None,
        text=True,
        env=env,
        timeout=timeout,
        input=input,
    )
    if check and p.returncode != 0:
        die(f"{' '.join(args)} failed ({p.returncode}): {(p.stderr or '').strip()} {(p.stdout or '').strip()}")
    return p


def ns_run(ns: str, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return run(["ip", "netns", "exec", ns, *args], check=check, timeout=timeout)


def netns_list() -> list[str]:
    out = run(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def wait_until(what: str, timeout: float, f: Callable[[], T | None], interval: float = 0.2) -> T:
    """Calls f until it returns something true; dies after timeout seconds."""
    end = time.time() + timeout
    while True:
        v = f()
        if v:
            return v
        if time.time() > end:
            die(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def is_zombie(pid: int) -> bool:
    """True when /proc/PID/stat says Z (raises OSError when the process is gone)."""
    with open(f"/proc/{pid}/stat") as fh:
        st = fh.read()
    return st[st.rfind(")") + 2] == "Z"


def pid_matches(pid: int, exe: str) -> bool:
    """PID runs `exe` (one of the first words of its command line) and is not a zombie."""
    try:
        if is_zombie(pid):
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            return False
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().split(b"\0")
    except OSError:
        return False
    names = [os.path.basename(a.decode(errors="replace")) for a in argv[:6] if a]
    return exe in names


def remove_stale_pid_file(path: Path, exe: str) -> None:
    """Removes a daemon's own pid file when the PID in it no longer runs `exe` (gone, or a zombie)."""
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    if not pid_matches(pid, exe):
        path.unlink(missing_ok=True)


def kill_pid(pid: int, sig: int, wait: float) -> None:
    """Sends sig to pid, waits up to `wait` seconds for it to end, then SIGKILLs it."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    end = time.time() + wait
    while time.time() < end:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            pass
        if not os.path.exists(f"/proc/{pid}"):
            return
        try:
            if is_zombie(pid):
                return
        except OSError:
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class ProcessTable:
    """The daemons started for one run dir: each under a key (`aws-dp`, `rr`, ...), with its
    output in `KEY.log` and `PID EXE` in `pids/KEY.pid`, so that any later command finds it."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.pid_dir = run_dir / "pids"
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.log_offset: dict[str, int] = {}

    def f(self, name: str) -> Path:
        return self.run_dir / name

    def pid_file(self, key: str) -> Path:
        return self.pid_dir / f"{key}.pid"

    def spawn(self, key: str, ns: str, argv: list[str], env: Mapping[str, str] | None = None, expect: str | None = None) -> int:
        """Starts argv inside ns (ip netns exec execs it: same PID), logs to KEY.log, records the PID."""
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        logf = open(self.f(f"{key}.log"), "ab")
        self.log_offset[key] = logf.tell()
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        p = subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv],
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=full_env,
        )
        logf.close()
        exe = expect or os.path.basename(argv[0])
        self.pid_file(key).write_text(f"{p.pid} {exe}\n")
        self.children[key] = p
        return p.pid

    def pid_of(self, key: str) -> int | None:
        """The live PID recorded for key, only if it still runs the program we started."""
        try:
            pid_s, exe = self.pid_file(key).read_text().split()
            pid = int(pid_s)
        except (OSError, ValueError):
            return None
        child = self.children.get(key)
        if child is not None and child.pid == pid:
            # Started by this run: between fork and exec its cmdline is not yet the program's.
            return pid if child.poll() is None else None
        return pid if pid_matches(pid, exe) else None

    def alive(self, key: str) -> bool:
        return self.pid_of(key) is not None

    def vrrp_child(self, key: str) -> int | None:
        """The live VRRP child of the keepalived started under `key` (it has its own pid file)."""
        try:
            c = int(self.f(f"{key}-vrrp.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return c if pid_matches(c, "keepalived") else None

    def stop(self, key: str, sig: int = signal.SIGTERM, wait: float = 5.0) -> None:
        pid = self.pid_of(key)
        child = self.vrrp_child(key) if key.endswith("-ka") else None
        for p in ([pid] if pid else []) + ([child] if child else []):
            kill_pid(p, sig, wait)
        try:
            self.pid_file(key).unlink()
        except OSError:
            pass

    def wait_log(self, key: str, needle: str, timeout: float) -> None:
        """Waits for needle in what KEY logged since it was started; dies if it exits first."""
        path = self.f(f"{key}.log")
        start = self.log_offset.get(key, 0)

        def ok() -> bool:
            try:
                with open(path, "rb") as fh:
                    fh.seek(start)
                    if needle.encode() in fh.read():
                        return True
            except OSError:
                pass
            if not self.alive(key):
                tail = "\n".join(path.read_text(errors="replace").splitlines()[-25:]) if path.exists() else ""
                die(f"{key} exited before '{needle}'; {path}:\n{tail}")
            return False

        wait_until(f"{key}: '{needle}' in {path}", timeout, ok, 0.1)
