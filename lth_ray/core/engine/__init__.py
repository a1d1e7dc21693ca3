"""Lockstep training of a cohort, evaluation under a memory budget, records, instability."""
