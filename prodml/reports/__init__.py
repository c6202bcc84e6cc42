"""HTML rendering shared by data, evaluation and monitoring: self-contained pages that open
offline (plotly.js inlined once per page, charts drawn when scrolled into view)."""

from prodml.reports.html import escape, json_script, page, plotly_js, table

__all__ = ["escape", "json_script", "page", "plotly_js", "table"]
