#!/usr/bin/env python3
"""Checks kiln-engine's layering: a module (a folder under src/) uses only the modules
before it in LAYERS, and no two files import each other, directly or through others.

It reads every `crate::module::file` path in the sources (use lines, paths in code, doc
links) and fails with the offending path, so a new import that points the wrong way, or a
cycle between files, is caught in CI."""

import pathlib
import re
import sys

LAYERS = ["event", "fs", "cache", "graph", "exec", "container", "build", "watch", "supervise", "up"]
SRC = pathlib.Path(__file__).resolve().parent.parent / "crates" / "kiln-engine" / "src"
PATH = re.compile(r"crate::(\w+)(?:::(\w+))?")


def strip_tests(text: str) -> str:
    """The code before `#[cfg(test)]`: tests may use anything."""
    return text.split("#[cfg(test)]", 1)[0]


def main() -> int:
    errors = []
    edges: dict[str, set[str]] = {}
    files = {}
    for path in sorted(SRC.glob("*/*.rs")):
        module, name = path.parent.name, path.stem
        if module not in LAYERS:
            errors.append(f"{path.relative_to(SRC)}: folder `{module}` is not a layer of {LAYERS}")
            continue
        files[f"{module}::{name}"] = path
    for node, path in files.items():
        module = node.split("::")[0]
        edges[node] = set()
        for line_no, line in enumerate(strip_tests(path.read_text()).splitlines(), 1):
            for used, file in PATH.findall(line):
                if used not in LAYERS:
                    continue
                if LAYERS.index(used) > LAYERS.index(module):
                    errors.append(
                        f"{path.relative_to(SRC)}:{line_no}: `{module}` uses `{used}`, which comes after it"
                        f" (order: {' → '.join(LAYERS)})"
                    )
                target = f"{used}::{file}"
                if file and target in files and target != node:
                    edges[node].add(target)
    # Cycles between files: depth-first search with colours.
    colour = {n: 0 for n in edges}
    stack: list[str] = []

    def visit(n: str) -> None:
        colour[n] = 1
        stack.append(n)
        for m in sorted(edges[n]):
            if colour[m] == 1:
                cycle = stack[stack.index(m):] + [m]
                errors.append("import cycle: " + " → ".join(cycle))
            elif colour[m] == 0:
                visit(m)
        stack.pop()
        colour[n] = 2

    for n in sorted(edges):
        if colour[n] == 0:
            visit(n)
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    if not errors:
        print(f"layers ok: {len(files)} files in {len(LAYERS)} modules, no upward import, no cycle")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
