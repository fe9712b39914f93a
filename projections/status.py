"""Refund status of a contact (SPEC section 5), derived from facts at a time."""

from __future__ import annotations

import unicodedata

NON_PERMIS = "Non permis"
GERER = "Gérer"
RECTIFIER = "Rectifier"
TRAITE = "Traité"
EXPIRE = "Expiré"
STATUSES = (NON_PERMIS, GERER, RECTIFIER, TRAITE, EXPIRE)


def refund_status(*, charged: int, refunded: int, confirmed: bool, rectified: bool,
                  window_open: bool) -> str:
    assert charged >= 0 and refunded >= 0
    if charged == 0:
        return NON_PERMIS  # nothing charged: guaranteed reply unused, or a zero fee
    if rectified or confirmed:
        return TRAITE
    if refunded:
        return RECTIFIER if window_open else TRAITE
    return GERER if window_open else EXPIRE


def _folded(text: str) -> str:
    """Gérer, gerer, GERER and Ge\u0301rer all fold to "gerer"."""
    decomposed = unicodedata.normalize("NFKD", text.strip())
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold().replace(" ", "")


_BY_FOLDED = {_folded(s): s for s in STATUSES}


def status_named(text: str) -> str | None:
    """The status a user meant, spelt as SPEC 5 does or without accents and in
    any case (``Gerer``, ``non permis``), so a terminal without é still works."""
    return _BY_FOLDED.get(_folded(text))
