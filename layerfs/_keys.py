"""Validation of snapshot keys and names."""

from __future__ import annotations

from . import errors

MAX_KEY_BYTES = 255


def validate_key(key: object, what: str = "key") -> str:
    """Return ``key`` if it is a usable snapshot key or name.

    A key is a non-empty string of at most 255 UTF-8 bytes, with no NUL or
    other control character, that does not start with ``/``. Keys are never
    used as paths on disk (storage is named by id), so other characters,
    slashes inside included, are allowed as containerd allows them.

    Raises:
        errors.InvalidArgument: for anything else, naming the problem.
    """
    if not isinstance(key, str):
        raise errors.InvalidArgument(f"snapshot {what} must be a string, got {type(key).__name__}")
    if not key:
        raise errors.InvalidArgument(f"snapshot {what} is empty; give a non-empty {what}")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise errors.InvalidArgument(
            f"snapshot {what} {key[:40]!r}... is over {MAX_KEY_BYTES} bytes; use a shorter {what}"
        )
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
        raise errors.InvalidArgument(
            f"snapshot {what} {key!r} contains a control character (NUL, newline...); remove it"
        )
    if key.startswith("/"):
        raise errors.InvalidArgument(
            f"snapshot {what} {key!r} starts with '/'; keys are names, not paths"
        )
    return key
