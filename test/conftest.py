import sys
from pathlib import Path

# test/reference.py and other test helpers import as top-level modules.
sys.path.insert(0, str(Path(__file__).resolve().parent))
