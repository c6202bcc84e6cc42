"""Serving: the ASGI app, deployment strategies and routing, the prediction log, feedback
and the human review queue."""
