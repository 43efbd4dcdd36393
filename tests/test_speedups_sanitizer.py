"""The C record decoder (streams/_speedups.c) reads bytes from the network, so it is fuzzed under
AddressSanitizer and UndefinedBehaviorSanitizer (issue 20): this test builds the extension with
``-fsanitize=address,undefined`` and runs the Hypothesis tests of ``tests/test_kafka_fetch.py`` that
feed the C loop damaged, cut and extended batches (and compare it with its Python twin) against that
build, in a child process with the sanitizer runtime preloaded. Any out-of-bounds read, use after
free or undefined behaviour aborts the child and fails this test. Skipped (failed in CI) where no C
compiler or sanitizer runtime is installed."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _need(what: str) -> None:
    if os.environ.get("ANOMON_CI_STRICT") == "1":
        pytest.fail(f"{what} -- required because ANOMON_CI_STRICT=1")
    pytest.skip(what)


@pytest.mark.slow
def test_the_c_decoder_under_address_and_undefined_behaviour_sanitizers(tmp_path):
    cc = shutil.which(os.environ.get("CC", "gcc")) or shutil.which("cc")
    if cc is None:
        _need("no C compiler (gcc) to build the sanitized decoder")
    asan = subprocess.run([cc, "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    if not asan or not Path(asan).is_file():
        _need("no AddressSanitizer runtime (libasan.so; Debian: gcc's libasan)")
    so = tmp_path / ("_speedups" + sysconfig.get_config_var("EXT_SUFFIX"))
    build = subprocess.run(
        [cc, "-shared", "-fPIC", "-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
         "-fno-sanitize-recover=all", f"-I{sysconfig.get_paths()['include']}", str(REPO / "streams" / "_speedups.c"),
         "-o", str(so)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-3000:]
    # the sanitized build stands in for streams._speedups before anything imports it
    (tmp_path / "sitecustomize.py").write_text(
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('streams._speedups', {str(so)!r})\n"
        "m = importlib.util.module_from_spec(spec)\nspec.loader.exec_module(m)\n"
        "sys.modules['streams._speedups'] = m\n")
    # PYTHONMALLOC=malloc: every object from malloc, so a read past a bytes object hits a redzone
    env = dict(os.environ, LD_PRELOAD=asan, PYTHONMALLOC="malloc",
               ASAN_OPTIONS=f"detect_leaks=0:abort_on_error=1:log_path={tmp_path}/asan",
               UBSAN_OPTIONS=f"print_stacktrace=1:halt_on_error=1:log_path={tmp_path}/ubsan", PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO}",
               ANOMON_SANITIZED_SPEEDUPS=str(so))
    check = ("import streams.kafka.fetch as f, os; "
             "assert f._c_decode_records is not None and f.SPEEDUPS; "
             "import streams._speedups as s; assert s.__file__ == os.environ['ANOMON_SANITIZED_SPEEDUPS'], s.__file__; "
             "print('sanitized decoder', s.__file__)")
    pre = subprocess.run([sys.executable, "-c", check], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert pre.returncode == 0, (pre.stdout + pre.stderr)[-3000:]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--hypothesis-seed=0", "-x",
         "tests/test_kafka_fetch.py", "-k", "c_loop or cannot_read or fast_records or loop"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    out = run.stdout + run.stderr
    reports = "".join(p.read_text(errors="replace") for p in sorted(tmp_path.glob("*san.*")))
    assert run.returncode == 0 and not reports, (reports[:3000] or out[-4000:])
    assert " passed" in out
