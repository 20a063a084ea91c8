"""How the lab speaks: `LabError` (and `die`) for a failure the user acts on, `log` for progress."""

from typing import NoReturn


class LabError(Exception):
    """A failure of a lab command, with a message that says what to do."""


def die(msg: str) -> NoReturn:
    raise LabError(msg)


def log(msg: str) -> None:
    print(f"lab: {msg}", flush=True)
