"""The loan-approval lifecycle demo: one place that shows prodml end to end."""
