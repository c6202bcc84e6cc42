"""Fallback rules can't run arbitrary code or freeze the server (issue 14, findings 1 and 8):
imports only from the server's allow-list, expressions bounded in size and cost, evaluation
off the event loop within a time limit."""

from __future__ import annotations

import asyncio
import sys
import textwrap
import time

import pytest

from prodml.config import Settings
from prodml.errors import InvalidInputError
from prodml.serving.fallback import FallbackError, answer_records, compile_rule


@pytest.fixture
def rules_dir(tmp_path, monkeypatch):
    """Modules on sys.path: ``trap_rules`` leaves a marker file when it is imported."""
    marker = tmp_path / "imported.marker"
    (tmp_path / "trap_rules.py").write_text(textwrap.dedent(f"""
        import pathlib
        pathlib.Path({str(marker)!r}).write_text("imported")
        def run(record):
            return 1
    """))
    (tmp_path / "good_rules.py").write_text(textwrap.dedent("""
        import time
        from os import getcwd
        def approve(record):
            return 1 if record["salary"] > 100 else 0
        def slow(record):
            time.sleep(1.0)
            return 0
        def broken(record):
            raise KeyError("salary")
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield marker
    for name in ("trap_rules", "good_rules"):
        sys.modules.pop(name, None)


def test_an_import_path_outside_the_allow_list_imports_nothing(rules_dir, monkeypatch):
    monkeypatch.delenv("PRODML_FALLBACK_ALLOW", raising=False)
    for allow in (None, (), ("good_rules:*",), ("trap_rules:other",)):
        with pytest.raises(InvalidInputError, match="not in the server's allow-list") as err:
            compile_rule("trap_rules:run", allow=allow)
        assert err.value.field == "fallback" and err.value.value == "trap_rules:run"
    with pytest.raises(InvalidInputError, match="allow-list"):
        compile_rule("subprocess:run")
    assert not rules_dir.exists() and "trap_rules" not in sys.modules


def test_allow_listed_functions_by_name_or_module(rules_dir, monkeypatch):
    rule = compile_rule("good_rules:approve", allow=["good_rules:approve"])
    assert rule({"salary": 500}) == 1 and rule({"salary": 5}) == 0
    with pytest.raises(FallbackError, match="KeyError"):
        rule({})
    monkeypatch.setenv("PRODML_FALLBACK_ALLOW", "good_rules:*")
    assert compile_rule("good_rules:approve")({"salary": 500}) == 1
    with pytest.raises(FallbackError, match="broken failed: KeyError"):
        compile_rule("good_rules:broken")({})
    # module:* covers what the module defines, not what it imported, nor private names
    with pytest.raises(InvalidInputError, match="must be defined in good_rules"):
        compile_rule("good_rules:getcwd")
    with pytest.raises(InvalidInputError, match="allow-list"):
        compile_rule("good_rules:_hidden")


def test_settings_read_and_check_the_allow_list():
    assert Settings.from_env({}).fallback_allow == ()
    s = Settings.from_env({"PRODML_FALLBACK_ALLOW": "a.b:c,d:*",
                           "PRODML_FALLBACK_TIMEOUT_MS": "20"})
    assert s.fallback_allow == ("a.b:c", "d:*") and s.fallback_timeout_ms == 20.0
    for bad in ({"PRODML_FALLBACK_ALLOW": "os.system"}, {"PRODML_FALLBACK_ALLOW": "a:b c"},
                {"PRODML_FALLBACK_TIMEOUT_MS": "-1"}, {"PRODML_FALLBACK_TIMEOUT_MS": "x"}):
        with pytest.raises(InvalidInputError, match="PRODML_FALLBACK"):
            Settings.from_env(bad)


@pytest.mark.parametrize("rule, why", [
    ("9 ** 9 ** 8", "exponent"),
    ("2 ** 10000", "exponent"),
    ("(10 ** 60) ** 60", "bits"),
    ("'x' * 10 ** 9", "items"),
    ("('a', 'b') * 10 ** 8", "items"),
    ("1 if salary > 1 else 9 ** 9 ** 8", "exponent"),
    ("round(1, -10 ** 7)", "digits"),
    ("x + " * 400 + "1", "at most"),
    ("-" * 60 + "x", "nested too deep"),
    ("1" + " " * 1200, "at most 1,000 characters"),
])
def test_costly_expressions_are_refused_when_compiled(rule, why):
    started = time.perf_counter()
    with pytest.raises(InvalidInputError, match=why) as err:
        compile_rule(rule)
    assert err.value.field == "fallback"
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize("rule, record, why", [
    ("salary ** e", {"salary": 9, "e": 9 ** 8}, "exponent"),
    ("salary ** 64", {"salary": 10 ** 300}, "bits"),
    ("name * n", {"name": "x", "n": 10 ** 9}, "items"),
    ("'%0999999999d' % salary", {"salary": 1}, "numbers only"),
    ("round(salary, n)", {"salary": 10 ** 100, "n": -10 ** 7}, "digits"),
    # str() of a sequence copies every item: a 2,000-character field made 200 MB
    ("str((name,) * 100000)", {"name": "x" * 2000}, "str\\(\\) takes one"),
    ("str(('x' * 100000,) * 100000)", {}, "str\\(\\) takes one"),
    ("name + name + name", {"name": "x" * 60_000}, "at most 100,000"),
])
def test_costly_operations_on_fields_fail_fast_at_runtime(rule, record, why):
    compiled = compile_rule(rule)
    started = time.perf_counter()
    with pytest.raises(FallbackError, match=why):
        compiled(record)
    assert time.perf_counter() - started < 0.1


def test_bounded_rules_still_answer():
    assert compile_rule("2 ** 64 + salary * 2")({"salary": 1}) == 2 ** 64 + 2
    assert compile_rule("'ab' * 3 + name")({"name": "c"}) == "abababc"
    assert compile_rule("salary % 7")({"salary": 10}) == 3
    assert compile_rule("round(salary / 3, 2)")({"salary": 10}) == 3.33
    assert compile_rule("1 / 0 if salary < 0 else 1")({"salary": 1}) == 1  # compiles


def test_rules_run_off_the_event_loop_within_a_time_limit(rules_dir):
    slow = compile_rule("good_rules:slow", allow=["good_rules:slow"])
    fast = compile_rule("1 if salary > 100 else 0")

    async def scenario():
        ticks = 0

        async def heartbeat():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.005)

        beat = asyncio.get_running_loop().create_task(heartbeat())
        started = time.perf_counter()
        with pytest.raises(FallbackError, match="time limit"):
            await answer_records(slow, [{"salary": 1}], 50)
        waited = time.perf_counter() - started
        answers = await answer_records(fast, [{"salary": 500}, {"salary": 5}], 50)
        beat.cancel()
        return waited, ticks, answers

    waited, ticks, answers = asyncio.run(scenario())
    assert waited < 0.5 and ticks >= 3 and answers == [1, 0]
