"""Running trials: the runner plans and records, executors run trials (here or on Ray), workers
train one trial, searches tune an arm's nuisance settings."""
