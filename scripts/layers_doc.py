"""Write docs/layers.md from fxpq_keras.keras_model.LAYER_TABLE (`--check`: exit 1 if it is stale).

Usage: PYTHONPATH=. python scripts/layers_doc.py [--check]
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv: list[str]) -> int:
    sys.path.insert(0, ROOT)
    from fxpq_keras.keras_model import layer_table_markdown

    path = os.path.join(ROOT, "docs", "layers.md")
    text = layer_table_markdown()
    if "--check" in argv:
        current = open(path).read() if os.path.exists(path) else ""
        if current != text:
            print(f"{path} is stale: run python scripts/layers_doc.py", file=sys.stderr)
            return 1
        return 0
    with open(path, "w") as f:
        f.write(text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
