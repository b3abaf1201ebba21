"""The bottom floor every package imports: the seams' contracts (`vla_core.schema`), the one bad-input
exception (`vla_core.errors`) and whole-file writes (`vla_core.atomic`).

Standard library only; it imports nothing from `scaling`, `sweeps` or `analysis`
(tests/test_import_layers.py holds to it).
"""
