"""Variant runs start each stage as a child process; killing the parent must not leave it running."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pipeline.evaluate.variants import run_child

PARENT = """
import sys
from pipeline.evaluate.variants import run_child
run_child([sys.executable, "-c", "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(120)",
           sys.argv[1]])
"""


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def test_killing_a_variant_run_ends_the_stage_it_started(tmp_path):
    pid_file = tmp_path / "child.pid"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(pid_file)], cwd=Path(__file__).parents[1])
    deadline = time.monotonic() + 60
    while not (pid_file.is_file() and pid_file.read_text()):
        assert time.monotonic() < deadline and parent.poll() is None, "the child never started"
        time.sleep(0.05)
    child = int(pid_file.read_text())
    assert alive(child)
    parent.send_signal(signal.SIGTERM)
    status = parent.wait(timeout=30)
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert not alive(child), "the stage outlived the killed run"
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)
    assert status == 128 + signal.SIGTERM


def test_a_child_s_exit_status_comes_back():
    assert run_child([sys.executable, "-c", "raise SystemExit(3)"]) == 3
    assert run_child([sys.executable, "-c", "pass"]) == 0
