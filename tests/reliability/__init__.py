"""TESTPLAN T1, the crash hammer (docs/reliability.md): hammer.py runs it, checker.py judges
it, client.py is one supplier. ``make reliability`` runs the full plan on both backends;
``make test`` runs the checker's negative controls and a short SQLite smoke run."""
