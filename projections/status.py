"""Refund status of a contact (SPEC section 5), derived from facts at a time."""

from __future__ import annotations

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
