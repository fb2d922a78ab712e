"""The store: MLflow is the system of record, and only this package knows it (its tags, filters,
writes and read-back)."""
