"""The trainable protocol and the two kinds the engine builds for a user: a Python function and
a command (an existing training script)."""
