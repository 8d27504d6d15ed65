"""Reading our YAML files (config, training data, texts, the lexicon), in both runtimes.

Why one reader: libyaml's C loader parses these files about eight times faster than the
pure-Python one with the same safe semantics, which every start of the gateway (and every
test that starts one) feels; where PyYAML was built without libyaml it falls back to the
pure-Python loader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_yaml(text: str) -> Any:
    """yaml.safe_load, on libyaml when it is there."""
    return yaml.load(text, Loader=_LOADER)


def read_yaml(path: Path) -> Any:
    return parse_yaml(path.read_text(encoding="utf-8"))


__all__ = ["parse_yaml", "read_yaml"]
