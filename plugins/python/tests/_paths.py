"""Where the tests find the SDK and the shared vectors (run from anywhere: `python3 -m unittest discover -s
plugins/python/tests`)."""

import sys
from pathlib import Path

PYTHON_DIR = Path(__file__).resolve().parent.parent
REPO = PYTHON_DIR.parent.parent
VECTORS = REPO / "tests" / "vectors" / "signatures"
WIT = REPO / "wit"

if str(PYTHON_DIR) not in sys.path:
    sys.path.insert(0, str(PYTHON_DIR))
