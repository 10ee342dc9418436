#!/usr/bin/env python3
"""Fails when sibling modules import each other in a cycle (issue 25: imports point one way).

Checks the modules of each listed folder: `a` depends on `b` when `a`'s code (its tests and
doc comments aside) names `super::b` or `crate::…::b`. Prints every cycle found."""
import os, re, sys

FOLDERS = [
    ("server/src/gateway", "crate::gateway::"),
    ("server/src/gateway/admission", "crate::gateway::admission::"),
    ("app/src/ssr/services", "crate::ssr::services::"),
]


def code_of(path):
    src = open(path).read()
    cut = src.find("#[cfg(test)]")
    if cut >= 0:
        src = src[:cut]
    # Doc and line comments name modules without importing them.
    return "\n".join(line for line in src.splitlines() if not line.lstrip().startswith("//"))


def graph(folder, prefix):
    mods = {f[:-3]: [os.path.join(folder, f)] for f in os.listdir(folder) if f.endswith(".rs") and f != "mod.rs"}
    for d in os.listdir(folder):
        sub = os.path.join(folder, d)
        if os.path.isdir(sub):
            mods[d] = [os.path.join(sub, f) for f in os.listdir(sub) if f.endswith(".rs")]
    deps = {m: set() for m in mods}
    for m, files in mods.items():
        nested = len(files) != 1 or os.path.basename(files[0]) != m + ".rs"
        sup = r"\bsuper::super::" if nested else r"\bsuper::"
        code = "\n".join(code_of(f) for f in files)
        for other in mods:
            if other != m and (re.search(sup + other + r"\b", code) or re.search(re.escape(prefix) + other + r"\b", code)):
                deps[m].add(other)
    return deps


def cycles(deps):
    found, state, stack = [], {}, []

    def visit(u):
        state[u] = 1
        stack.append(u)
        for v in sorted(deps[u]):
            if state.get(v) == 1:
                found.append(stack[stack.index(v):] + [v])
            elif not state.get(v):
                visit(v)
        stack.pop()
        state[u] = 2

    for u in sorted(deps):
        if not state.get(u):
            visit(u)
    return found


bad = False
for folder, prefix in FOLDERS:
    for c in cycles(graph(folder, prefix)):
        bad = True
        print(f"{folder}: module cycle {' -> '.join(c)}")
sys.exit(1 if bad else 0)
