"""A deployment can require a blessing (issue 14, finding 13).

``require_blessing`` on an endpoint (``prodml deploy --require-blessing``, the admin deploy
body, or ``PRODML_REQUIRE_BLESSING=1`` for every endpoint) refuses a version without a
passing gate: the CLI exits 1 with one line, the API answers 409 naming the version and the
failed gate. An override with a reason goes ahead and is kept in the history.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from prodml.errors import ProdmlError
from tests.serving.conftest import FEATURES


def _gate(store, data, ref: str, minimum: float) -> None:
    import prodml as pm
    from prodml.tracking import registry

    model = registry.load(ref, store=store)
    result = pm.evaluate(model, data[[*FEATURES, "approved"]], label="approved", bootstrap=0,
                         features=FEATURES)
    verdict = pm.gate(result, {"name": "strict" if minimum > 1 else "holdout",
                               "conditions": [{"metric": "accuracy", "min": minimum}]})
    registry.attach_evaluation(ref, result, verdict, store=store)


def _cli(served, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "prodml", *args], env=served.env,
                          capture_output=True, text=True, timeout=120)


def test_an_unblessed_version_is_refused_over_http_and_the_cli(served):
    from prodml.serving import endpoints as eps

    store = served.store
    _gate(store, served.data, "loan/2", 1.01)  # a gate it fails
    with served.client() as client:
        before = client.get("/endpoints/loan").json()["revision"]
        refused = client.post("/endpoints/loan/deploy", json={
            "model": "loan/2", "strategy": "canary", "require_blessing": True})
        assert refused.status_code == 409, refused.text
        body = refused.json()
        assert body["error"] == "NotBlessedError" and body["value"] == "loan/2"
        assert "loan/2 is not blessed: gate 'strict' failed: accuracy" in body["message"]
        assert client.get("/endpoints/loan").json()["revision"] == before  # nothing written

        # the CLI: exit 1 and one line naming the version and the gate
        ran = _cli(served, "deploy", "cli-ep", "loan/2", "--require-blessing")
        assert ran.returncode == 1, ran.stdout + ran.stderr
        line = ran.stderr.strip()
        assert "\n" not in line and line.startswith("error:"), line
        assert "loan/2 is not blessed: gate 'strict' failed" in line

        # an override goes ahead, with its reason in the history
        ran = _cli(served, "deploy", "cli-ep", "loan/2", "--require-blessing",
                   "--override-blessing", "incident 42: the old model is worse",
                   "--reason", "hotfix")
        assert ran.returncode == 0, ran.stderr
        event = eps.history("cli-ep", store=store)[0]
        assert event.reason.startswith("hotfix [blessing overridden (")
        assert "loan/2" in event.reason and "incident 42: the old model is worse" in event.reason
        assert eps.get_endpoint("cli-ep", store=store).policy["require_blessing"] is True

        # only an admin may override: a deployer's override is refused, nothing written
        with served.client_as("cd-bot", "deployer") as deployer:
            refused = deployer.post("/endpoints/loan/deploy", json={
                "model": "loan/2", "strategy": "canary", "require_blessing": True,
                "override_blessing": "trust me"})
            assert refused.status_code == 403, refused.text
            assert "only an admin may override" in refused.json()["message"]
        assert client.get("/endpoints/loan").json()["revision"] == before
        overridden = client.post("/endpoints/loan/deploy", json={
            "model": "loan/2", "strategy": "canary", "require_blessing": True,
            "override_blessing": "approved by risk", "reason": "try it"})
        assert overridden.status_code == 200, overridden.text
        history = client.get("/endpoints/loan/history").json()
        assert "approved by risk" in history[0]["reason"]
        assert client.post("/endpoints/loan/rollback", json={}).status_code == 200

        # blessed now (the latest gate passes): accepted without an override
        _gate(store, served.data, "loan/2", 0.5)
        accepted = client.post("/endpoints/loan/deploy", json={
            "model": "loan/2", "strategy": "canary"})
        assert accepted.status_code == 200, accepted.text
        assert client.post("/endpoints/loan/rollback", json={}).status_code == 200
        assert client.post("/endpoints/loan/deploy", json={
            "model": "loan/1", "require_blessing": False}).status_code == 409  # an override


def test_the_requirement_holds_for_every_strategy_and_server_wide(served, monkeypatch):
    from prodml.serving import endpoints as eps
    from prodml.tracking import registry
    from prodml.tracking.evaluations import NotBlessedError

    store = served.store
    model = registry.load("loan/1", store=store)
    fresh = registry.register("loan", model, input_example=served.data[FEATURES],
                              store=store).ref  # never gated
    eps.deploy("strict-ep", "loan/1", require_blessing=True, override_reason="bootstrap",
               store=store)
    for strategy in ("direct", "shadow", "canary", "blue-green"):
        with pytest.raises(NotBlessedError, match=f"{fresh} is not blessed: it was never"):
            eps.deploy("strict-ep", fresh, strategy, store=store)
    spec = {"kind": "shadow", "primary": "loan/1", "mirrors": [{"node": fresh}]}
    with pytest.raises(NotBlessedError):
        eps.deploy("strict-ep", spec, store=store)
    # the hook the route layer sets from the caller's role
    with pytest.raises(ProdmlError, match="only an admin may override") as refused:
        eps.deploy("strict-ep", fresh, override_reason="please", allow_override=False,
                   store=store)
    assert refused.value.http_status == 403
    # lifting the requirement is an override too
    with pytest.raises(NotBlessedError, match="lifting the requirement is an override"):
        eps.deploy("strict-ep", "loan/1", require_blessing=False, store=store)

    # server-wide: every endpoint, and an endpoint cannot lower it
    monkeypatch.setenv("PRODML_REQUIRE_BLESSING", "1")
    with pytest.raises(NotBlessedError, match="requires a blessing"):
        eps.deploy("any-ep", fresh, store=store)
    with pytest.raises(NotBlessedError):
        eps.deploy("any-ep", fresh, require_blessing=False, store=store)
    monkeypatch.setenv("PRODML_REQUIRE_BLESSING", "0")
    assert eps.deploy("any-ep", fresh, store=store).describe() == fresh
