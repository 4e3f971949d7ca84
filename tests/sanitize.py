"""The compiled extensions under AddressSanitizer and UndefinedBehaviorSanitizer.

`python -m tests.sanitize build DIR` compiles streams/contract/_decode.c, streams/contract/_seen.c,
streams/features/_pairs.c and streams/kafka/_records.c with -fsanitize=address,undefined into DIR (never over the
normal build), and `python -m tests.sanitize run DIR -- PYTEST_ARGS` runs pytest with
them: libasan preloaded into the interpreter (which is not built with it), Python's own
allocator off so that ASan sees every buffer, leak checks off (the interpreter keeps
objects to its exit), and any report fatal. `make sanitize` does both; see the Makefile.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = {
    "streams.contract._decode": "streams/contract/_decode.c",
    "streams.contract._seen": "streams/contract/_seen.c",
    "streams.features._pairs": "streams/features/_pairs.c",
    "streams.kafka._records": "streams/kafka/_records.c",
}
FLAGS = [
    "-O1",
    "-g",
    "-std=c11",
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
    "-fno-omit-frame-pointer",
    "-Wall",
    "-Wextra",
    "-Wno-unused-parameter",
    "-Werror",
    "-shared",
    "-fPIC",
]


def cc() -> str:
    return os.environ.get("CC", "gcc")


def built_path(out: Path, module: str) -> Path:
    return out / (module.replace(".", "/") + sysconfig.get_config_var("EXT_SUFFIX"))


def build(out: Path) -> None:
    include = sysconfig.get_paths()["include"]
    for module, source in MODULES.items():
        target = built_path(out, module)
        target.parent.mkdir(parents=True, exist_ok=True)
        cmd = [cc(), *FLAGS, f"-I{include}", str(ROOT / source), "-o", str(target)]
        try:
            subprocess.run(cmd, check=True)
        except FileNotFoundError:
            sys.exit(f"{cc()} not found: install gcc (apt-get install gcc) for the sanitizer build")
        except subprocess.CalledProcessError:
            sys.exit(f"sanitizer build of {source} failed (needs libasan and libubsan)")
        print(f"built {target.relative_to(out)} with ASan and UBSan")


def runtime(name: str) -> str:
    path = subprocess.run(
        [cc(), f"-print-file-name={name}"], capture_output=True, text=True, check=True
    ).stdout.strip()
    if not os.path.isabs(path):
        sys.exit(f"{name} not found: install gcc's sanitizer runtimes (apt-get install gcc)")
    return path


def run(out: Path, pytest_args: list[str]) -> int:
    env = {
        **os.environ,
        "VIGIL_SANITIZED_EXT": str(out.resolve()),
        "LD_PRELOAD": runtime("libasan.so"),
        "PYTHONMALLOC": "malloc",
        "ASAN_OPTIONS": "detect_leaks=0:halt_on_error=1:abort_on_error=1:"
        "detect_stack_use_after_return=0",
        "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
    }
    cmd = [sys.executable, "-m", "pytest", "-p", "tests.plugins.sanitized", *pytest_args]
    return subprocess.run(cmd, env=env, cwd=ROOT).returncode


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("build", "run"):
        print("usage: python -m tests.sanitize build DIR | run DIR -- PYTEST_ARGS")
        return 2
    out = Path(argv[1])
    if argv[0] == "build":
        build(out)
        return 0
    return run(out, [a for a in argv[2:] if a != "--"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
