"""What an endpoint keeps whatever it is asked later (SQLite and PostgreSQL): the PII marks
of every version it ever served, and its fallback rule when a deployment is refused."""

from __future__ import annotations

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from prodml.data.schema import Schema
from prodml.serving import endpoints as eps
from prodml.tracking import registry
from prodml.tracking.evaluations import NotBlessedError


def _register(store, email_pii: bool) -> str:
    X = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]})
    schema = Schema.from_dict({"columns": {
        "x": {"type": "float"}, "email": {"type": "string", "required": False,
                                          "pii": email_pii}}})
    model = LogisticRegression().fit(X, [0, 0, 1, 1])
    return registry.register("cust", model, input_example=X, schema=schema, store=store).ref


def test_a_versions_pii_marks_stay_with_the_endpoint(store):
    marked, unmarked = _register(store, True), _register(store, False)
    eps.deploy("cust", marked, store=store)
    assert eps.pii_columns("cust", store=store) == {"email"}
    # a direct replacement by a version that marks nothing keeps the column hashed
    eps.deploy("cust", unmarked, store=store)
    assert eps.get_endpoint("cust", store=store).spec.model == unmarked
    assert eps.pii_columns("cust", store=store) == {"email"}
    assert eps.get_endpoint("cust", store=store).policy["pii"] == ["email"]


def test_a_refused_deployment_leaves_the_fallback_rule_as_it_was(store):
    first, fresh = _register(store, False), _register(store, False)  # fresh: never gated
    eps.deploy("cust", first, fallback="0", require_blessing=True, override_reason="start",
               store=store)
    before = eps.get_endpoint("cust", store=store)
    with pytest.raises(NotBlessedError):
        eps.deploy("cust", fresh, fallback="1", store=store)
    after = eps.get_endpoint("cust", store=store)
    assert (after.fallback, after.revision, after.spec) == ("0", before.revision, before.spec)
