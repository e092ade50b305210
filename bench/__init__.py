"""Filiera's benchmark suite (``make bench``): ingest, batch and proof speed on this machine.

Every speed is printed beside a baseline measured in the same run (the raw PyNaCl Ed25519
verify rate of the same cores), so that figures from different machines can be compared as
ratios. Results go to ``bench/out/results.json``; see ``bench/README.md`` for what each figure
means. Benchmarks only: nothing here asserts on time.
"""
