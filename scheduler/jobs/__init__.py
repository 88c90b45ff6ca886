"""Chronos-style scheduled jobs: schedules, definitions, planning, the runner."""
