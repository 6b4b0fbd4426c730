"""One exception type for mistakes a user can fix; the CLI prints it as one line and exits 2; and
:func:`printable`, what any text from outside is turned into before it reaches a terminal."""

import re


class UserError(Exception):
    """Bad input or a missing resource, described in one line that says what to do."""


class DamagedRunFile(UserError):
    """A file of a run directory cannot be read (truncated, emptied, corrupt) or is missing where the
    others need it: the message names it and says how to rebuild what can be rebuilt."""

    def __init__(self, path: str, problem: str, more: int = 0):
        also = f" (and {more} more damaged files)" if more else ""
        super().__init__(f"{path}: {problem}{also}; run the same `videonet curate` command with --repair to "
                         "rebuild what can be rebuilt and judge the rest again")
        self.path, self.problem = path, problem


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` for a terminal: control characters (escape sequences that recolour it, retitle the
    window or move the cursor; line breaks; bidirectional overrides that reorder what follows) as
    Python escapes (``\\x1b``, ``\\n``, ``\\u202e``). Titles, paths and reasons come from catalogs
    and websites: anyone can put bytes there."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
