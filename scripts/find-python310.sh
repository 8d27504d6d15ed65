#!/usr/bin/env bash
# Prints the path of a working Python 3.10 interpreter (Rasa 3.6 needs <= 3.10).
# Order: $PYTHON310, python3.10 on PATH, any pyenv 3.10.x. pyenv shims exist for versions
# that are not active, so each candidate is actually run, not just found.
set -u
ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 10) else 1)' >/dev/null 2>&1; }
for c in "${PYTHON310:-}" python3.10; do
  [ -n "$c" ] && ok "$c" && { command -v "$c"; exit 0; }
done
if command -v pyenv >/dev/null 2>&1; then
  for c in "$(pyenv root)"/versions/3.10*/bin/python3.10; do
    [ -x "$c" ] && ok "$c" && { echo "$c"; exit 0; }
  done
fi
echo "error: Python 3.10 not found (Rasa 3.6 needs it). Install it (pyenv install 3.10 or apt-get install python3.10) or set PYTHON310=/path/to/python3.10" >&2
exit 1
