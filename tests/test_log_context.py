"""Context in every log line that matters (issue 23.5): text logs carry the fields the JSON logs
have (model, topics, group, partitions) as key=value; progress bars only on a terminal."""
from __future__ import annotations

import io
import logging
import subprocess
import sys


def test_text_log_lines_name_model_topics_and_partitions():
    from monitor.logs import TextFormatter

    out = io.StringIO()
    h = logging.StreamHandler(out)
    h.setFormatter(TextFormatter("%(levelname)s %(name)s: %(message)s"))
    log = logging.getLogger("anomon.test-context")
    log.addHandler(h)
    log.setLevel(logging.INFO)
    try:
        log.info("anomon run started", extra={"model": "ecg-vrae 1.0", "topics": "ecg,press", "group": "g"})
        log.info("partitions assigned", extra={"partitions": ["ecg:0", "ecg:1"], "model": "ecg-vrae"})
        log.info("plain line")
    finally:
        log.removeHandler(h)
    lines = out.getvalue().splitlines()
    assert lines[0] == "INFO anomon.test-context: anomon run started model='ecg-vrae 1.0' topics=ecg,press group=g"
    assert lines[1] == "INFO anomon.test-context: partitions assigned partitions=ecg:0,ecg:1 model=ecg-vrae"
    assert lines[2] == "INFO anomon.test-context: plain line"


def test_progress_bars_write_nothing_into_a_file():
    code = ("import os; os.environ.pop('PYTEST_CURRENT_TEST', None)\n"
            "from models.torch_base import progress\n"
            "for _ in progress(range(50), desc='fit'): pass\n")
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert got.returncode == 0, got.stderr
    assert "\r" not in got.stderr and "fit" not in got.stderr
