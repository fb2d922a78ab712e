"""What a study is: its model (study, hypotheses, arms, presets, trials), its file, its tuning
and the kinds of prediction it can make."""
