"""Issue 23, point 2: ``--check-config`` checks what it can, reports every error at once, exits non-zero."""
from __future__ import annotations

import pytest

from monitor.check_config import check
from monitor.config import ConfigError, load_config
from tests.test_operator_errors import _anomon


def test_every_error_at_once_with_the_bundle_and_the_secrets_sources(tmp_path, daemon_bundle):
    env = {"ANOMON_SCORING__MAX_BATCH": "many", "ANOMON_SCORING__Q": "0.5",
           "ANOMON_KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT", "ANOMON_KAFKA__SASL_MECHANISM": "PLAIN",
           "ANOMON_KAFKA__SASL_PLAIN_USERNAME": "u", "ANOMON_KAFKA__SASL_PLAIN_PASSWORD_ENV": "ANOMON_TEST_NO_SUCH_VAR"}
    _, _, problems = check(None, {"model.dir": str(tmp_path / "nonexistent")}, env=env)
    text = "\n".join(problems)
    assert len(problems) == 4, problems
    assert "scoring.max_batch: expected an integer, got 'many'" in text
    assert "scoring.q: must be in (0, 0.02)" in text
    assert "ANOMON_TEST_NO_SUCH_VAR is not set" in text
    assert "nonexistent" in text and "does not exist" in text
    secret = tmp_path / "pw"
    secret.write_text("hunter2-secret\n")
    env2 = {**env, "ANOMON_SCORING__MAX_BATCH": "8", "ANOMON_SCORING__Q": "0.001",
            "ANOMON_KAFKA__SASL_PLAIN_PASSWORD_ENV": "", "ANOMON_KAFKA__SASL_PLAIN_PASSWORD_FILE": str(secret)}
    cfg, facts, problems = check(None, {"model.dir": str(daemon_bundle)}, env=env2)
    assert problems == []
    assert any("loads" in f for f in facts) and any(f"from file {secret} (readable)" in f for f in facts)
    assert "hunter2" not in "\n".join(facts)


def test_check_config_cli_exits_2_and_prints_no_secret(tmp_path, daemon_bundle):
    p = _anomon("run", "--check-config", "--model-dir", "/nonexistent", env={"ANOMON_SCORING__MAX_BATCH": "x"})
    assert p.returncode == 2, p.stderr
    errs = [ln for ln in p.stderr.splitlines() if ln.startswith("anomon: error:")]
    assert len(errs) == 2 and "Traceback" not in p.stderr
    assert "[input]" in p.stdout
    ok = _anomon("run", "--check-config", "--model-dir", str(daemon_bundle), env={"PW": "s3cr3t-value",
                 "ANOMON_KAFKA__SASL_PLAIN_PASSWORD_ENV": "PW"})
    assert ok.returncode == 0, ok.stderr
    assert "s3cr3t-value" not in ok.stdout + ok.stderr and "check-config: no errors" in ok.stdout


@pytest.mark.parametrize("value", ['["a","b"]', "a,b", " a , b ", '["a", "b"]'])
def test_list_variables_accept_json_and_comma_forms(value):
    assert load_config(None, env={"ANOMON_INPUT__TOPICS": value}).input.topics == ["a", "b"]


def test_a_broken_json_list_says_which_forms_are_wanted():
    with pytest.raises(ConfigError, match=r'input.topics: .* JSON list such as \["a","b"\] or a comma-separated'):
        load_config(None, env={"ANOMON_INPUT__TOPICS": '["a","b"'})


def test_several_errors_outside_check_config_name_the_first_and_count_the_rest():
    with pytest.raises(ConfigError, match=r"^scoring.max_batch: .* \(and 1 more; `anomon run --check-config` lists"):
        load_config(None, env={"ANOMON_SCORING__MAX_BATCH": "x", "ANOMON_WINDOW__STRIDE": "y"})
