"""What the checks share (checks.py); setup.sh is the shell side."""
