#!/ usr / bin / env python3
"""Prints the file-level call graph of a library's object files and any cycle in it.

Usage: call-graph.py OBJ_DIR | OBJ...
  (e.g. build/framework/service/CMakeFiles/taskloop_service.dir/src)
An edge A -> B means A.o uses a global symbol B.o defines. Exits 1 when there is a cycle.
"""
import os
import subprocess
import sys


def symbols(obj):
    out = subprocess.run(["nm", obj], capture_output=True, text=True, check=True).stdout
    defined, used = set(), set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "TDBR":
            defined.add(parts[2])
        elif len(parts) == 2 and parts[0] == "U":
            used.add(parts[1])
    return defined, used


def main():
    if len(sys.argv) == 2 and os.path.isdir(sys.argv[1]):
        root = sys.argv[1]
        objs = sorted(os.path.join(root, f) for f in os.listdir(root) if f.endswith(".o"))
    else:
        objs = sorted(sys.argv[1:])
    table = {os.path.basename(o).split(".")[0]: symbols(o) for o in objs}
    owner = {s: name for name, (d, _) in table.items() for s in d}
    graph = {name: sorted({owner[s] for s in u if s in owner and owner[s] != name})
             for name, (_, u) in table.items()}
    for name in sorted(graph):
        print(f"{name}: {' '.join(graph[name]) or '-'}")
    state, cycles = {}, []

    def visit(n, path):
        state[n] = 1
        for m in graph[n]:
            if state.get(m) == 1:
                cycles.append(path[path.index(m):] + [m])
            elif m not in state:
                visit(m, path + [m])
        state[n] = 2

    for n in graph:
        if n not in state:
            visit(n, [n])
    for c in cycles:
        print("cycle: " + " -> ".join(c))
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main())
