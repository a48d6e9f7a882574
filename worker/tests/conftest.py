"""The torch trainer's own tests: `python3 -m pytest worker/tests` (scripts/test.sh runs them)."""
import os
import sys

WORKER = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(WORKER)
sys.path.insert(0, WORKER)
