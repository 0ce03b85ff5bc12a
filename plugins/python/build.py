#!/usr/bin/env python3
"""Build the Python example plugins into components: `python build.py OUT_DIR`.

Writes OUT_DIR/py-hmac-verify.wasm, py-json-transform.wasm and py-passthrough.wasm (names the Rust build of
the test components relies on), one line per component on stdout, and exits non-zero with a message on the
first failure. Uses the componentize-py next to this interpreter (run it with the venv's python:
`plugins/python/.venv/bin/python plugins/python/build.py OUT_DIR`), else the one on PATH.

componentize-py generates the bindings of wit/plugin.wit itself, inside the build (the `wit_world` package the
SDK imports), so no generated code is committed; and nothing is written into the source tree: the app and the
SDK are copied to a temporary directory first (Python would leave `__pycache__` next to them otherwise).
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WIT = HERE.parent.parent / "wit"
WORLD = "trigger-plugin"
SDK = HERE / "weir_plugin"
# example directory -> component file name (a contract with tests/components/build.rs)
EXAMPLES = {
    "hmac_verify": "py-hmac-verify.wasm",
    "json_transform": "py-json-transform.wasm",
    "passthrough": "py-passthrough.wasm",
}


def componentize_py():
    """The componentize-py executable: next to this interpreter (a venv), else on PATH."""
    for name in ("componentize-py", "componentize-py.exe"):
        beside = Path(sys.executable).parent / name
        if beside.is_file():
            return str(beside)
    found = shutil.which("componentize-py")
    if found is None:
        sys.exit(
            "build.py: componentize-py not found next to "
            f"{sys.executable} nor on PATH; install it with:\n"
            "  python3 -m venv plugins/python/.venv\n"
            "  plugins/python/.venv/bin/pip install --require-hashes -r plugins/python/requirements.txt\n"
            "and run build.py with plugins/python/.venv/bin/python"
        )
    return found


def build(tool, example, out, scratch):
    """Componentize examples/EXAMPLE/app.py with the SDK into `out`; raises RuntimeError with its output."""
    src = scratch / example
    shutil.copytree(HERE / "examples" / example, src, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(SDK, src / "weir_plugin", ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    # A VIRTUAL_ENV would add its site-packages (componentize-py itself) to the component.
    env.pop("VIRTUAL_ENV", None)
    cmd = [tool, "-q", "-d", str(WIT), "-w", WORLD, "componentize", "-p", str(src), "-o", str(out), "app"]
    done = subprocess.run(cmd, cwd=src, env=env, capture_output=True, text=True)
    if done.returncode != 0 or not out.is_file():
        raise RuntimeError(f"{' '.join(cmd)} exited with {done.returncode}:\n{done.stdout}{done.stderr}")


def main(argv):
    if len(argv) != 2 or argv[1].startswith("-"):
        sys.exit(f"usage: {argv[0]} OUT_DIR")
    out_dir = Path(argv[1]).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    tool = componentize_py()
    with tempfile.TemporaryDirectory(prefix="weir-py-build-") as tmp:
        for example, name in EXAMPLES.items():
            out = out_dir / name
            started = time.monotonic()
            try:
                build(tool, example, out, Path(tmp))
            except (RuntimeError, OSError) as e:
                sys.exit(f"build.py: building examples/{example} failed: {e}")
            took = time.monotonic() - started
            print(f"{out} ({out.stat().st_size} bytes, {took:.1f} s)", flush=True)


if __name__ == "__main__":
    main(sys.argv)
