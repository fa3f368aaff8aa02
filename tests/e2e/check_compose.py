#!/usr/bin/env python3
"""Checks docker-compose.yml without Docker: its structure, what it refers to, and the
service config it deploys.

  check_compose.py [--taskloop PATH] [REPO_ROOT]

- every service has a pinned image or a build whose Dockerfile exists (FROM pinned,
  every COPY source present in the repository);
- the Dockerfile has a build stage and a runtime stage: the runtime one from
  debian:12-slim, running as a user with a fixed uid (not root), installing no compiler
  nor -dev package; every package any stage installs exists in Debian 12 (apt-cache
  show, when run on Debian 12);
- the broker and the service have healthchecks; every depends_on target exists, uses
  a known condition, and service_healthy targets have a healthcheck;
- named volumes are declared; files the services run from the image
  (/opt/taskloop/..., /etc/taskloop/...) come from files in the repository;
- `taskloop check config/compose.yaml` passes with the taskloop service's environment,
  and the topics that config reads and reroutes to are created by the `topics` job and
  fed by the producer.

Exits 0 when all holds, 1 listing what does not, and 1 without PyYAML.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys

try:
    import yaml
except ImportError:
    print("check_compose: PyYAML is not installed (Debian: python3-yaml; make test installs it)")
    sys.exit(1)

CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
# Packages that compile: none of them may be in the image that runs.
BUILD_TOOLS = {"build-essential", "gcc", "g++", "cpp", "clang", "cmake", "make", "ninja-build",
               "pkg-config", "pkgconf", "binutils", "dpkg-dev", "valgrind"}


class Checker:
    def __init__(self, root):
        self.root = root
        self.problems = []
        self.notes = []

    def bad(self, msg):
        self.problems.append(msg)

    def path(self, rel):
        return os.path.join(self.root, rel)


def pinned(image):
    """True for name:tag (not latest) or name@sha256:..."""
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag not in ("", "latest")


def dockerfile_copies(text):
    """(sources, destination) of each COPY, ignoring --from stages and flags."""
    out = []
    for line in re.sub(r"\\\n", " ", text).splitlines():
        words = line.split()
        if not words or words[0].upper() != "COPY":
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        if any(w.startswith("--from") for w in words[1:]) or len(args) < 2:
            continue
        out.append((args[:-1], args[-1]))
    return out


def stages(text):
    """[(name, base image, lines)] of each FROM stage; continuation lines are joined."""
    out = []
    for line in re.sub(r"\\\n", " ", text).splitlines():
        m = re.match(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.I)
        if m:
            out.append((m.group(2), m.group(1), []))
        elif out:
            out[-1][2].append(line)
    return out


def deps_script_packages(root):
    """The packages scripts/install-deps.sh installs."""
    try:
        text = open(os.path.join(root, "scripts", "install-deps.sh"), encoding="utf-8").read()
    except OSError:
        return []
    m = re.search(r"^packages=\((.*?)\)", text, re.M | re.S)
    return m.group(1).split() if m else []


def stage_packages(root, lines):
    """The packages a stage's RUN lines install (apt-get install, install-deps.sh)."""
    pkgs = []
    for line in lines:
        if not line.startswith("RUN"):
            continue
        for seg in re.split(r"&&|;|\|", line):
            words = seg.split()
            if "install-deps.sh" in seg:
                pkgs += deps_script_packages(root)
            for i, w in enumerate(words):
                if w in ("apt-get", "apt") and "install" in words[i + 1:]:
                    rest = words[words.index("install", i) + 1:]
                    pkgs += [p for p in rest if not p.startswith("-")]
                    break
    return pkgs


def known_in_debian12(c, packages):
    """Checks with apt-cache that each package exists, when this machine is Debian 12."""
    try:
        release = open("/etc/debian_version", encoding="utf-8").read().strip()
    except OSError:
        release = ""
    if not release.startswith("12") or not shutil.which("apt-cache"):
        c.notes.append("not on Debian 12 with apt-cache: package names not checked")
        return
    wanted = sorted(set(packages))
    r = subprocess.run(["apt-cache", "show", "--no-all-versions"] + wanted,
                       capture_output=True, text=True)
    found = set(re.findall(r"^Package: (\S+)$", r.stdout, re.M))
    for p in wanted:
        if p not in found:
            c.bad("Dockerfile: package %s does not exist in Debian 12" % p)


def check_stages(c, dockerfile, text):
    """A build stage and a runtime stage that runs as a fixed non-root uid, no compiler."""
    st = stages(text)
    if len(st) < 2:
        c.bad("%s: one stage; a build stage and a runtime stage are expected" % dockerfile)
        return
    names = [n for n, _, _ in st if n]
    for i, (_, _, lines) in enumerate(st):
        for line in lines:
            m = re.match(r"^COPY\s+.*--from=(\S+)", line)
            if m and m.group(1) not in names[:i] and not m.group(1).isdigit():
                c.bad("%s: COPY --from=%s names no earlier stage" % (dockerfile, m.group(1)))
    name, base, lines = st[-1]
    if not base.startswith("debian:12"):
        c.bad("%s: the runtime stage is from %s, not debian:12-slim" % (dockerfile, base))
    users = [line.split()[1] for line in lines if re.match(r"^USER\s+\S+", line)]
    user = users[-1].split(":")[0] if users else "root"
    if user in ("root", "0"):
        c.bad("%s: the runtime stage runs as root (no USER, or USER root)" % dockerfile)
    elif not user.isdigit() and not any(
            re.search(r"useradd\b.*--uid\s+\d+.*\s%s(\s|$)" % re.escape(user), line) for line in lines):
        c.bad("%s: USER %s has no fixed uid (USER UID, or useradd --uid)" % (dockerfile, user))
    final_pkgs = stage_packages(c.root, lines)
    for p in sorted(set(final_pkgs)):
        if p in BUILD_TOOLS or p.endswith("-dev"):
            c.bad("%s: the runtime stage installs %s, a build tool or -dev package" % (dockerfile, p))
    all_pkgs = [p for _, _, ls in st for p in stage_packages(c.root, ls)]
    known_in_debian12(c, all_pkgs)


def check_dockerfile(c, svc_name, build):
    context = build if isinstance(build, str) else build.get("context", ".")
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    ctx = os.path.normpath(c.path(context))
    df = os.path.join(ctx, dockerfile)
    if not os.path.isdir(ctx):
        c.bad("%s: build context %s does not exist" % (svc_name, context))
        return {}
    if not os.path.isfile(df):
        c.bad("%s: %s does not exist" % (svc_name, os.path.relpath(df, c.root)))
        return {}
    text = open(df, encoding="utf-8").read()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    if not froms:
        c.bad("%s: no FROM line" % dockerfile)
    for f in froms:
        if not pinned(f):
            c.bad("%s: base image %s is not pinned to a tag" % (dockerfile, f))
    check_stages(c, dockerfile, text)
    installed = {}  # what every stage copies: the build's sources
    final = {}  # what the image that runs holds
    workdir = build_wd = "/"
    for line in text.splitlines():
        if re.match(r"^FROM\s", line):
            final = {}
            workdir = "/"
        m = re.match(r"^WORKDIR\s+(\S+)", line)
        if m:
            workdir = m.group(1)
        if re.match(r"^RUN\s+cmake\s", line):
            build_wd = workdir
        for srcs, dest in dockerfile_copies(line):
            for s in srcs:
                if not os.path.exists(os.path.join(ctx, s)):
                    c.bad("%s: COPY source %s is not in the repository" % (dockerfile, s))
                target = dest if dest.startswith("/") else os.path.join(workdir, dest)
                if dest.endswith("/") or len(srcs) > 1 or os.path.isdir(os.path.join(ctx, s)):
                    target = os.path.join(target, os.path.basename(s.rstrip("/"))) \
                        if not os.path.isdir(os.path.join(ctx, s)) else target
                installed[os.path.normpath(target)] = os.path.normpath(os.path.join(ctx, s))
                final[os.path.normpath(target)] = os.path.normpath(os.path.join(ctx, s))
    # Everything the top-level CMakeLists.txt reads must be in the image.
    top = c.path("CMakeLists.txt")
    if os.path.isfile(top) and os.path.normpath(ctx) == os.path.normpath(c.root):
        wd = os.path.normpath(build_wd)
        for ref in re.findall(r"^\s*(?:add_subdirectory|include)\(\s*([\w./-]+)",
                              open(top, encoding="utf-8").read(), re.M):
            first = ref.split("/")[0]
            if first in ("bench", "tests"):
                continue  # built only with TL_BUILD_BENCH / TL_BUILD_TESTS, both off
            if not in_image(installed, os.path.join(wd, first)):
                c.bad("%s: CMakeLists.txt uses %s, which the Dockerfile does not copy" % (dockerfile, ref))
    if "install-deps.sh" not in text:
        c.bad("%s: does not install the packages of scripts/install-deps.sh" % dockerfile)
    return final


def in_image(installed, path):
    """The repository file an absolute path in the image comes from, or None."""
    p = os.path.normpath(path)
    for target, src in installed.items():
        if p == target:
            return src
        if p.startswith(target + "/") and os.path.isdir(src):
            return os.path.join(src, os.path.relpath(p, target))
    return None


def command_words(svc):
    cmd = svc.get("command", [])
    if isinstance(cmd, str):
        cmd = cmd.split()
    ep = svc.get("entrypoint", [])
    if isinstance(ep, str):
        ep = ep.split()
    return [str(w) for w in list(ep) + list(cmd)]


def check_services(c, doc):
    services = doc.get("services")
    if not isinstance(services, dict) or not services:
        c.bad("no services")
        return {}
    for want in ("kafka", "taskloop", "producer", "checker"):
        if want not in services:
            c.bad("no %s service" % want)
    declared_volumes = set((doc.get("volumes") or {}).keys())
    installed = {}
    for name, svc in services.items():
        if "image" not in svc and "build" not in svc:
            c.bad("%s: neither image nor build" % name)
        if "build" in svc:
            installed.update(check_dockerfile(c, name, svc["build"]))
        elif "image" in svc and not pinned(svc["image"]):
            c.bad("%s: image %s is not pinned to a tag" % (name, svc["image"]))
        deps = svc.get("depends_on", {})
        if isinstance(deps, list):
            deps = {d: {"condition": "service_started"} for d in deps}
        for dep, spec in deps.items():
            if dep not in services:
                c.bad("%s: depends on %s, which is not a service" % (name, dep))
                continue
            cond = (spec or {}).get("condition", "service_started")
            if cond not in CONDITIONS:
                c.bad("%s: depends_on %s: unknown condition %s" % (name, dep, cond))
            if cond == "service_healthy" and "healthcheck" not in services[dep]:
                c.bad("%s: waits for %s to be healthy, but it has no healthcheck" % (name, dep))
        for vol in svc.get("volumes", []):
            src = str(vol).split(":")[0]
            if src.startswith((".", "/")):
                if src.startswith(".") and not os.path.exists(c.path(src)):
                    c.bad("%s: bind mount %s does not exist" % (name, src))
            elif src not in declared_volumes:
                c.bad("%s: volume %s is not declared" % (name, src))
    for name in ("kafka", "taskloop"):
        hc = services.get(name, {}).get("healthcheck", {})
        if not hc.get("test"):
            c.bad("%s: no healthcheck" % name)
    # The image's own files that the services run or read.
    for name, svc in services.items():
        if svc.get("image") != services.get("taskloop", {}).get("image"):
            continue
        for w in command_words(svc):
            if w.startswith(("/opt/taskloop/", "/etc/taskloop/")) and not in_image(installed, w):
                c.bad("%s: runs %s, which the Dockerfile does not copy from the repository" % (name, w))
            elif w.startswith(("/opt/taskloop/", "/etc/taskloop/")):
                src = in_image(installed, w)
                if not os.path.exists(src):
                    c.bad("%s: %s comes from %s, which does not exist" % (name, w, os.path.relpath(src, c.root)))
    return services


def env_of(svc):
    env = svc.get("environment", {})
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env if "=" in e)
    return {k: str(v) for k, v in env.items()}


def check_service_config(c, services, taskloop):
    svc = services.get("taskloop", {})
    words = command_words(svc)
    cfg_in_image = next((w for w in words if w.endswith((".yaml", ".yml"))), None)
    if not cfg_in_image:
        c.bad("taskloop: its command names no config file")
        return
    cfg = c.path("config/compose.yaml")
    if not os.path.isfile(cfg):
        c.bad("config/compose.yaml does not exist")
        return
    if not taskloop:
        c.notes.append("no taskloop program given: `taskloop check` not run")
        return
    env = dict(os.environ)
    env.update(env_of(svc))
    r = subprocess.run([taskloop, "check", cfg], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        c.bad("taskloop check config/compose.yaml failed:\n" + r.stderr.strip())
        return
    c.notes.append("taskloop check config/compose.yaml: ok (environment of the taskloop service)")
    dump = yaml.safe_load(r.stdout)
    topics = set()
    for src in (dump.get("sources") or {}).values():
        if src.get("type") == "kafka":
            topics.update(src.get("topics") or [])
            if src.get("brokers") != env_of(svc).get("KAFKA", src.get("brokers")):
                c.bad("config/compose.yaml: brokers %s are not the service's KAFKA" % src.get("brokers"))
    for route in dump.get("routes") or []:
        for t in ((route.get("on_stall") or {}).get("reroute"), (route.get("on_error") or {}).get("then")):
            if t and t.startswith("kafka:"):
                topics.add(t[len("kafka:"):])
    made = " ".join(command_words(services.get("topics", {})))
    for t in sorted(topics):
        if not re.search(r"(^|[\s])%s:\d+" % re.escape(t), made):
            c.bad("topic %s of config/compose.yaml is not created by the topics job" % t)
    produced = " ".join(command_words(services.get("producer", {})))
    m = re.search(r"kafka:(\S+)", produced)
    input_topics = {t for s in (dump.get("sources") or {}).values() for t in (s.get("topics") or [])}
    if not m or m.group(1) not in input_topics:
        c.bad("the producer does not feed the service's input topic %s" % sorted(input_topics))
    checker_env = env_of(services.get("checker", {}))
    n = re.search(r"-n\s+(\d+)", produced)
    if n and checker_env.get("E2E_N") != n.group(1):
        c.bad("the checker expects E2E_N=%s, the producer sends %s" % (checker_env.get("E2E_N"), n.group(1)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", nargs="?", default=os.path.join(os.path.dirname(__file__), "..", ".."))
    ap.add_argument("--taskloop", default=os.environ.get("TASKLOOP"))
    a = ap.parse_args()
    c = Checker(os.path.abspath(a.root))
    compose = c.path("docker-compose.yml")
    try:
        doc = yaml.safe_load(open(compose, encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        print("check_compose: cannot read docker-compose.yml: %s" % e)
        return 1
    services = check_services(c, doc or {})
    check_service_config(c, services, a.taskloop)
    for n in c.notes:
        print("check_compose: " + n)
    if c.problems:
        for p in c.problems:
            print("check_compose: FAIL: " + p)
        return 1
    print("check_compose: docker-compose.yml ok: %d services (%s)" % (len(services), ", ".join(services)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
