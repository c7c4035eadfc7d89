"""Example rule programs, one per task family (installed as `ruledsl.examples`; the teacher's prompt quotes them)."""
