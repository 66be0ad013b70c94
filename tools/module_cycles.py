#!/usr/bin/env python3
"""Module dependency cycles in a Rust crate's src/ tree.

Builds the graph of references between modules: `use crate::a::b`, `crate::a::b::` paths,
`super::x` paths and `use self::x` are resolved to the deepest module that exists (a file
`a/b.rs`, `a/b/mod.rs` or `a.rs` for `a`), then lists the strongly connected components with
more than one node (cycles). Items named after a module path (`crate::a::Type`) count as a
reference to module `a`. `#[cfg(test)] mod tests` blocks are skipped: tests may reach anywhere.

    python3 tools/module_cycles.py [host-collector/src] [--top] [--graph] [--layers a,b,c]

--top collapses every module to its top-level parent (`ingest::wire` -> `ingest`) before
looking for cycles; --graph prints the edges; --layers lists top-level modules from top to
bottom and also reports every reference from a module to one above it in that list.
Exit status 1 when a cycle (or an upward reference) is found.
"""
import os
import re
import sys

PATH_RE = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
USE_GROUP_RE = re.compile(r"\buse\s+(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^;]*)\};", re.S)


def modules(src):
    mods = {}
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(root, f)
            rel = os.path.relpath(path, src)[:-3].split(os.sep)
            if rel[0] == "bin":
                continue
            if rel[-1] in ("mod", "lib", "main"):
                rel = rel[:-1]
            mods[tuple(rel)] = path
    return mods


def strip_tests(text):
    """Removes `#[cfg(test)] mod x { ... }` blocks and comments."""
    text = re.sub(r"//[^\n]*", "", text)
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", text):
        if m.start() < i:
            continue
        out.append(text[i:m.start()])
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)


def resolve(mods, base, segments):
    """The deepest existing module named by base + segments (None for the crate root)."""
    path = list(base)
    best = None
    for s in segments:
        path.append(s)
        if tuple(path) in mods:
            best = tuple(path)
        else:
            break
    return best


def refs(mods, me, text):
    found = set()
    def add(kind, rest):
        segs = [s for s in rest.split("::") if s]
        if kind == "crate":
            base = ()
        elif kind == "super":
            base = me[:-1]
            while segs and segs[0] == "super":
                base, segs = base[:-1], segs[1:]
        else:
            base = me
        target = resolve(mods, base, segs)
        if target and target != me and target[: len(me)] != me:
            found.add(target)
    for m in USE_GROUP_RE.finditer(text):
        for item in re.split(r"[,\s]+", m.group(3)):
            item = item.split("::{")[0]
            if item and item != "self":
                add(m.group(1), m.group(2) + "::" + item)
    for m in PATH_RE.finditer(text):
        add(m.group(1), m.group(2))
    return found


def sccs(graph):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))
    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main():
    argv = sys.argv[1:]
    layers = []
    if "--layers" in argv:
        i = argv.index("--layers")
        layers = argv[i + 1].split(",")
        del argv[i : i + 2]
    args = [a for a in argv if not a.startswith("--")]
    src = args[0] if args else "host-collector/src"
    top = "--top" in sys.argv
    mods = modules(src)
    graph = {}
    for me, path in mods.items():
        with open(path) as f:
            text = strip_tests(f.read())
        for target in refs(mods, me, text):
            a, b = ("::".join(me[:1]), "::".join(target[:1])) if top else ("::".join(me), "::".join(target))
            if a and b and a != b:
                graph.setdefault(a, set()).add(b)
            graph.setdefault(b, set())
    if "--graph" in sys.argv:
        for a in sorted(graph):
            print(f"{a} -> {', '.join(sorted(graph[a])) or '-'}")
    status = 0
    if layers:
        rank = {name: i for i, name in enumerate(layers)}
        upward = sorted(
            (a, b)
            for a, targets in graph.items()
            for b in targets
            if a.split("::")[0] in rank
            and b.split("::")[0] in rank
            and rank[b.split("::")[0]] < rank[a.split("::")[0]]
        )
        if upward:
            status = 1
            print(f"{src}: {len(upward)} reference(s) to a layer above:")
            for a, b in upward:
                print(f"  {a} -> {b}")
        else:
            print(f"{src}: layers {' > '.join(layers)}: no reference to a layer above")
    cycles = [c for c in sccs(graph) if len(c) > 1]
    level = "top-level modules" if top else "modules"
    if not cycles:
        print(f"{src}: no cycles among {len(graph)} {level}")
        return status
    print(f"{src}: {len(cycles)} cycle(s) among {len(graph)} {level}:")
    for c in cycles:
        print("  " + " <-> ".join(c))
    return 1


if __name__ == "__main__":
    sys.exit(main())
