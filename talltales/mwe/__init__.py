"""Study 1: model-written "harsh truth" evaluations."""
