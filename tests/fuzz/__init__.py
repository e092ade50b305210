"""Coverage-guided fuzzing (atheris) of code that judges evidence: TESTPLAN T3's optional item."""
