#!/usr/bin/env python3
"""check_compose.py refuses a Dockerfile that breaks the image's rules: each case below
changes the repository's Dockerfile one way, in a copy of the repository's top level
(its folders linked), and expects check_compose.py to fail naming the fault; the
Dockerfile as it is must pass.

  test_check_compose.py [REPO_ROOT]
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", ".."))
RUNTIME = "# ---------------------------------------------------------------- runtime"


def one_stage(text):
    return text[:text.index(RUNTIME)] + 'CMD ["taskloop"]\n'


CASES = [
    ("one stage", one_stage, "one stage; a build stage and a runtime stage are expected"),
    ("no USER", lambda t: t.replace("USER 10001:10001\n", ""), "runs as root"),
    ("USER root", lambda t: t.replace("USER 10001:10001", "USER root"), "runs as root"),
    ("USER without a fixed uid", lambda t: t.replace("USER 10001:10001", "USER daemon2"),
     "USER daemon2 has no fixed uid"),
    ("gcc in the runtime", lambda t: t.replace("libsodium23 ca-certificates",
                                               "libsodium23 gcc ca-certificates"),
     "the runtime stage installs gcc"),
    ("-dev package in the runtime", lambda t: t.replace("libzmq5 ", "libzmq3-dev "),
     "the runtime stage installs libzmq3-dev"),
    ("build-essential in the runtime", lambda t: t.replace("curl kcat", "curl kcat build-essential"),
     "the runtime stage installs build-essential"),
    ("a package Debian 12 lacks", lambda t: t.replace("librdkafka1 ", "librdkafka9 "),
     "package librdkafka9 does not exist in Debian 12"),
    ("COPY from no stage", lambda t: t.replace("--from=build", "--from=builder"),
     "COPY --from=builder names no earlier stage"),
    ("runtime not Debian 12", lambda t: re.sub(r"FROM debian:12-slim\n\n# The shared",
                                               "FROM debian:11-slim\n\n# The shared", t),
     "the runtime stage is from debian:11-slim"),
]


def run_check(dockerfile_text):
    with tempfile.TemporaryDirectory() as root:
        for name in os.listdir(ROOT):
            if name in ("Dockerfile", ".git") or name.startswith("build"):
                continue
            os.symlink(os.path.join(ROOT, name), os.path.join(root, name))
        with open(os.path.join(root, "Dockerfile"), "w", encoding="utf-8") as f:
            f.write(dockerfile_text)
        r = subprocess.run([sys.executable, os.path.join(HERE, "check_compose.py"), root],
                           capture_output=True, text=True)
        return r.returncode, r.stdout + r.stderr


def main():
    text = open(os.path.join(ROOT, "Dockerfile"), encoding="utf-8").read()
    failures = 0
    rc, out = run_check(text)
    if rc != 0:
        print("FAIL: the repository's Dockerfile does not pass:\n" + out)
        failures += 1
    else:
        print("ok - the repository's Dockerfile passes")
    for name, change, want in CASES:
        changed = change(text)
        if changed == text:
            print("FAIL: %s: the change did not apply to the Dockerfile" % name)
            failures += 1
            continue
        rc, out = run_check(changed)
        if rc == 0 or want not in out:
            print("FAIL: %s: want a failure saying %r, got (exit %d):\n%s" % (name, want, rc, out))
            failures += 1
        else:
            print("ok - %s is refused: %s" % (name, want))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
