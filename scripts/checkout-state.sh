#!/usr/bin/env bash
# A fingerprint of the checkout's tracked and unignored files as they are now (status,
# content changes, untracked names), so `make test` can tell whether the tests changed it.
# Outside a git checkout it prints nothing (and the comparison always agrees).
git rev-parse --is-inside-work-tree >/dev/null 2>&1 || exit 0
{ git status --porcelain --untracked-files=all; git diff --binary HEAD; } 2>/dev/null | sha256sum
