"""Planning: input files and accepted batches turned into jobs with their keys."""
