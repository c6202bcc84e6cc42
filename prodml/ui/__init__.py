"""The dashboard: server-rendered pages under ``/ui`` over the store, with Plotly charts.

It holds no logic of its own: pages read through the library (endpoints, history, review
queue, runs, registry, monitors) and :mod:`prodml.ui.queries` (bounded aggregates of the
prediction log); changes go through the existing HTTP API. ``prodml serve`` mounts it
(``create_app`` includes :data:`prodml.ui.routes.router`); ``prodml ui`` serves the same app.
"""
