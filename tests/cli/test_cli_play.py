"""``gather-envs play`` through a real pseudo-terminal, as a person would type into it.

The terminal's width is set on the pty itself (TIOCSWINSZ, no COLUMNS variable), so the test
sees what a user's terminal would. A read deadline only guards against a hang; nothing is timed.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import gymnasium as gym
import pytest

import gather_envs

PACKAGE_ROOT = Path(gather_envs.__file__).resolve().parent.parent  # the checkout, or the installed wheel
ENV_ID = "Gather-MultiHop-v0"
SEED = 1
HANG_GUARD_S = 120.0
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
CTRL_D = "\x04"


class Terminal:
    """A child process on a pty of a given width; ``expect`` reads until a text appears."""

    def __init__(self, argv: list[str], columns: int) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        env["PYTHONPATH"] = str(PACKAGE_ROOT)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gather_envs.cli", *argv],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
        )
        os.close(slave)
        self.master = master
        self.screen = ""  # everything shown so far, without \r and escape sequences
        self.read_to = 0  # where the next expect starts looking

    def expect(self, text: str) -> str:
        """Read until ``text`` appears after the last match; return what was shown up to it."""
        deadline = time.monotonic() + HANG_GUARD_S
        while text not in self.screen[self.read_to :]:
            remaining = deadline - time.monotonic()
            ready = select.select([self.master], [], [], max(0.0, remaining))[0]
            chunk = self._read() if ready else b""
            if not chunk:
                raise AssertionError(f"never saw {text!r}; the screen:\n{self.screen[self.read_to :]}")
            self.screen += ANSI.sub("", chunk.decode("utf-8", "replace")).replace("\r", "")
        start = self.read_to
        self.read_to = self.screen.index(text, start) + len(text)
        return self.screen[start : self.read_to]

    def _read(self) -> bytes:
        try:
            return os.read(self.master, 65536)
        except OSError:  # EIO: the child closed the terminal
            return b""

    def type(self, line: str) -> None:
        os.write(self.master, (line if line == CTRL_D else line + "\n").encode())

    def exit_code(self) -> int:
        self.expect_end()
        return self.process.wait(timeout=HANG_GUARD_S)

    def expect_end(self) -> None:
        while self._read():
            pass

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.master)


@pytest.fixture
def play() -> object:
    terminals: list[Terminal] = []

    def start(columns: int = 100, *argv: str) -> Terminal:
        terminal = Terminal(["play", ENV_ID, "--seed", str(SEED), *argv], columns)
        terminals.append(terminal)
        return terminal

    yield start
    for terminal in terminals:
        terminal.close()


def test_play_shows_task_seed_and_how_to_quit(play) -> None:
    terminal = play()
    header = terminal.expect("Searches left: 5.")
    task_id = re.search(r"task (bridge-\d+)", header)
    assert task_id is not None
    assert f"seed {SEED}" in header and ":quit" in header
    replay = f"replay: gather-envs play {ENV_ID} --task {task_id.group(1)} --seed {SEED}"
    assert replay in header.splitlines()  # one line, to copy
    terminal.type(":quit")
    assert "episode abandoned" in terminal.expect("--seed")
    assert terminal.exit_code() == 0


def test_meta_commands_and_empty_lines_cost_nothing(play) -> None:
    terminal = play()
    terminal.expect("Searches left: 5.")
    for line in [":help", "", "help", ":nonsense", "", ":task"]:  # more than max_invalid_actions
        terminal.type(line)
    shown = terminal.expect("invalid actions 0")
    assert ":task   the task id" in shown and "unknown command ':nonsense'" in shown
    assert "searches used 0 of 5" in " ".join(shown.split())
    terminal.type("search[Kuxtax Academy]")
    terminal.expect("Searches left: 4.")
    terminal.type(":task")
    assert "searches used 1 of 5" in " ".join(terminal.expect("invalid actions 0").split())
    terminal.type("answer[nowhere]")
    assert "reward=0.0" in terminal.expect("termination=answered")
    assert terminal.exit_code() == 0


def test_output_is_word_wrapped_at_the_terminals_width(play) -> None:
    columns = 50
    terminal = play(columns)
    terminal.expect("Searches left: 5.")
    terminal.type("search[Kuxtax Academy]")
    shown = terminal.expect("Searches left: 4.")
    results = shown[shown.index("Results for") :]
    lines = results.splitlines()
    assert max(len(line) for line in lines) <= columns
    env = gym.make(ENV_ID)
    env.reset(seed=SEED)
    observation = env.step("search[Kuxtax Academy]")[0]
    assert results.split() == observation.split()  # the same words, none cut in two
    assert len(lines) > len(observation.splitlines())  # long lines were wrapped...
    assert all(line.startswith("   ") for line in lines if not re.match(r"\d\.|Results|Searches", line))


def test_end_of_input_abandons_the_episode(play) -> None:
    terminal = play()
    terminal.expect("Searches left: 5.")
    terminal.type(CTRL_D)
    assert "input ended" in terminal.expect("episode abandoned")
    assert terminal.exit_code() == 1
