"""Units of account. Amounts are integers in the minor unit; this says how many
decimal digits the major unit has, for people and for accounting exports."""

MINOR_UNIT_DIGITS = {"USD": 2, "EUR": 2, "CRONO": 0}


def major(value: int, unit: str, thousands: bool = False) -> str:
    """12345 USD -> "123.45"; 7 CRONO -> "7". Exact: no floats involved."""
    digits = MINOR_UNIT_DIGITS.get(unit, 0)
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(value), 10**digits)
    text = f"{whole:,}" if thousands else str(whole)
    return f"{sign}{text}.{frac:0{digits}d}" if digits else f"{sign}{text}"
