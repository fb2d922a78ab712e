"""Deciding: collect the runs of every arm, read each prediction's verdict with sequential error
control, audit the comparisons; also for runs logged by any code (a runs file)."""
