"""``--help`` is instant: no command's help loads Beam, torch or pandas (each costs a second or more)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("apache_beam", "torch", "pandas")

# In a fresh interpreter: print every command's help (click's own parser, as the shell runs it), then
# report which command paths exist and which heavy modules got imported along the way.
PROBE = """
import contextlib, io, json, sys
import typer
from videonet.cli import app

def paths(command, prefix=()):
    yield prefix
    if hasattr(command, "commands"):  # a group (typer vendors its own click)
        for name, sub in command.commands.items():
            yield from paths(sub, prefix + (name,))

root = typer.main.get_command(app)
seen = []
for path in paths(root):
    with contextlib.redirect_stdout(io.StringIO()) as shown:
        try:
            root.main([*path, "--help"], prog_name="videonet", standalone_mode=False)
        except SystemExit:
            pass
    assert "Usage:" in shown.getvalue(), path
    seen.append(" ".join(path))
print(json.dumps({"commands": seen, "heavy": [m for m in %r if m in sys.modules]}))
""" % (HEAVY,)


def test_no_help_loads_beam_torch_or_pandas():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"", "curate", "report", "show", "train", "eval", "eval knn", "synonyms build"} <= set(found["commands"])
    assert found["heavy"] == [], found
