"""zidl's benchmarks: `python bench/run.py` (see bench/README_section.md)."""
