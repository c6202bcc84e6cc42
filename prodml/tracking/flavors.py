"""Model flavors: how a model becomes bytes in the artifact store and comes back.

- ``sklearn``: scikit-learn estimators and pipelines (LightGBM, XGBoost and CatBoost through
  their scikit-learn API too). Saved with skops, the safe format, when every type in the
  model is one skops trusts; otherwise with pickle. ``serialization="skops"`` with
  ``trusted=[...]`` keeps skops for types you reviewed.
- ``python``: any object with ``predict`` (and optionally ``predict_proba``), pickled.
- ``onnx``: an ONNX model (``onnx.ModelProto`` or its bytes), run with onnxruntime.

Pickle-based bytes are only ever deserialized after the registry's SHA-256 matched them
(the artifact store checks it on every read), so a file swapped on disk is never unpickled.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from prodml.errors import InvalidInputError

FLAVORS = ("sklearn", "python", "onnx")


@dataclass(frozen=True)
class Serialized:
    data: bytes
    flavor: str
    serialization: str
    options: dict[str, Any] = field(default_factory=dict)


def model_class(model: Any) -> str:
    kind = type(model)
    return f"{kind.__module__}.{kind.__qualname__}"


def detect_flavor(model: Any) -> str:
    """The flavor prodml would pick for ``model``.

    >>> from sklearn.linear_model import LogisticRegression
    >>> detect_flavor(LogisticRegression()), detect_flavor(b"onnx bytes")
    ('sklearn', 'onnx')
    """
    if isinstance(model, (bytes, bytearray)) or type(model).__name__ == "ModelProto":
        return "onnx"
    # Checked by name along the class hierarchy so that registering a plain object never
    # pays for importing scikit-learn.
    if any(k.__name__ == "BaseEstimator" and k.__module__.startswith("sklearn.")
           for k in type(model).__mro__):
        return "sklearn"
    if callable(getattr(model, "predict", None)):
        return "python"
    raise InvalidInputError("model", model_class(model), "must be a scikit-learn estimator, an "
                            "object with a predict method, or an ONNX model")


def serialize(model: Any, flavor: str | None = None, serialization: str | None = None,
              trusted: list[str] | None = None) -> Serialized:
    """Turn ``model`` into bytes; ``serialization`` is auto, ``skops``, ``pickle`` or ``onnx``."""
    flavor = flavor or detect_flavor(model)
    if flavor not in FLAVORS:
        raise InvalidInputError("flavor", flavor, f"must be one of {', '.join(FLAVORS)}")
    if flavor == "onnx":
        data = bytes(model) if isinstance(model, (bytes, bytearray)) else model.SerializeToString()
        return Serialized(data, "onnx", "onnx")
    if serialization not in (None, "skops", "pickle"):
        raise InvalidInputError("serialization", serialization, "must be skops or pickle")
    if flavor == "sklearn" and serialization in (None, "skops"):
        import skops.io as sio
        data = sio.dumps(model)
        untrusted = sorted(set(sio.get_untrusted_types(data=data)) - set(trusted or []))
        if not untrusted:
            return Serialized(data, flavor, "skops", {"trusted": sorted(trusted or [])})
        if serialization == "skops":
            raise InvalidInputError("trusted", trusted, "skops needs these types trusted "
                                    f"explicitly: {', '.join(untrusted)}")
    return Serialized(pickle.dumps(model, protocol=5), flavor, "pickle")


def deserialize(data: bytes, flavor: str, serialization: str,
                options: dict[str, Any] | None = None) -> Any:
    """Rebuild a model from verified bytes."""
    if serialization == "skops":
        import skops.io as sio
        return sio.loads(data, trusted=(options or {}).get("trusted") or None)
    if serialization == "pickle":
        return pickle.loads(data)  # noqa: S301 - bytes verified against the registry's SHA-256
    if serialization == "onnx":
        return OnnxModel(data)
    raise InvalidInputError("serialization", serialization, "unknown serialization")


class OnnxModel:
    """An ONNX model behind the scikit-learn ``predict`` / ``predict_proba`` interface.

    A model with one input gets the whole frame as a float32 matrix; a model with one input
    per column (skl2onnx with named inputs) gets each column.
    """

    def __init__(self, data: bytes) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise InvalidInputError("flavor", "onnx", "needs onnxruntime: pip install "
                                    "'prodml[onnx]'") from None
        self.session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        self.inputs = self.session.get_inputs()
        self.outputs = [o.name for o in self.session.get_outputs()]

    def _feed(self, X: Any) -> dict[str, Any]:
        if len(self.inputs) == 1:
            array = np.asarray(X.to_numpy() if hasattr(X, "to_numpy") else X)
            dtype = np.int64 if "int64" in self.inputs[0].type else np.float32
            return {self.inputs[0].name: array.astype(dtype, copy=False)}
        return {i.name: np.asarray(X[i.name]).reshape(-1, 1).astype(
            np.int64 if "int64" in i.type else np.float32) for i in self.inputs}

    def _run(self, X: Any) -> list[Any]:
        return self.session.run(None, self._feed(X))

    def predict(self, X: Any) -> np.ndarray:
        return np.asarray(self._run(X)[0]).reshape(-1)

    def predict_proba(self, X: Any) -> np.ndarray:
        outputs = self._run(X)
        if len(outputs) < 2:
            raise InvalidInputError("model", "onnx", "has no probability output")
        proba = outputs[1]
        if isinstance(proba, list) and proba and isinstance(proba[0], dict):  # ZipMap output
            keys = sorted(proba[0])
            return np.array([[row[k] for k in keys] for row in proba], dtype=float)
        return np.asarray(proba, dtype=float)
