"""Placeholder until the embedded cluster lands."""


def main(argv: list[str]) -> int:
    raise SystemExit("localmesos: not built yet")
