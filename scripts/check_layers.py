#!/usr/bin/env python3
"""Modules of one crate must not import each other in a circle.

Reads every `crate::a::b` and `super::c` path of each crate's non-test code
(comments and `#[cfg(test)]` blocks at a file's end left out), maps it to the
module it names, and reports every strongly connected group of two or more
modules. A module using its own child or parent is not a cycle. Exit status 1
when a cycle is found. Run by scripts/check-artifacts.sh (part of `make test`).
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def module_of(path, src):
    parts = os.path.relpath(path, src)[:-3].split(os.sep)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return "::".join(parts)


def code_of(path):
    text = open(path, encoding="utf-8").read().split("#[cfg(test)]")[0]
    return "\n".join(l for l in text.split("\n") if not l.strip().startswith("//"))


def graph(src):
    files = {}
    for folder, _, names in os.walk(src):
        if os.path.relpath(folder, src).split(os.sep)[0] == "bin":
            continue  # binaries are crates of their own
        for name in names:
            if name.endswith(".rs"):
                path = os.path.join(folder, name)
                files[module_of(path, src)] = path
    edges = {m: set() for m in files}
    for module, path in files.items():
        code = code_of(path)
        refs = re.findall(r"\bcrate::([a-z_0-9:]+)", code)
        is_dir_module = os.path.basename(path) in ("mod.rs", "lib.rs", "main.rs")
        parent = module if is_dir_module else "::".join(module.split("::")[:-1])
        parent = "::".join(parent.split("::")[:-1]) if is_dir_module else parent
        refs += [(parent + "::" if parent else "") + r for r in re.findall(r"\bsuper::([a-z_0-9:]+)", code)]
        for ref in refs:
            parts = ref.split("::")
            target = next(
                ("::".join(parts[:i]) for i in range(len(parts), 0, -1) if "::".join(parts[:i]) in files),
                None,
            )
            related = target is None or target == module
            related = related or module.startswith(target + "::") or target.startswith(module + "::")
            if not related and module:
                edges[module].add(target)
    return edges


def cycles(edges):
    """Tarjan's strongly connected components of two or more modules."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def main():
    crates = [os.path.join(ROOT, "crates", c, "src") for c in sorted(os.listdir(os.path.join(ROOT, "crates")))]
    crates.append(os.path.join(ROOT, "tests", "src"))
    bad = 0
    for src in crates:
        if not os.path.isdir(src):
            continue
        for group in cycles(graph(src)):
            bad += 1
            print(f"[layers] {os.path.relpath(src, ROOT)}: modules import each other: {', '.join(group)}")
    if bad:
        sys.exit(1)
    print("[layers] no import cycles between the modules of a crate")


if __name__ == "__main__":
    main()
