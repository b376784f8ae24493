"""Wiegand out: a grant handed on to an existing access panel as a card frame (``[door] mode``).

The keeper (edge.keeper) owns these two output lines like every other door line; the gate only names
the person's card in its grant request. The frame is edge.wiegand's (its encoder, its
``WiegandSender``: 50 us pulses, 2 ms apart). A person without a card gets ``door.wiegand_default``
when one is configured, else nothing is sent; a number too big for the frame is refused, never cut.
Either way the keeper logs and audits what it did and the relay does what the mode says.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from edge.claim.credentials import ClaimError, normalise_card
from edge.config import DoorConfig
from edge.wiegand import WiegandError, WiegandSender, encode

log = logging.getLogger(__name__)


class WiegandOut:
    """The D0/D1 outputs to the panel, and the rule for which number a grant sends."""

    def __init__(self, cfg: DoorConfig, pin_factory: Any = None) -> None:
        self.bits = cfg.wiegand_bits
        self.default = normalise_card(cfg.wiegand_default) if cfg.wiegand_default else None
        self._lock = threading.Lock()  # one frame at a time: two interleaved would both be garbage
        self.sender = WiegandSender(cfg.wiegand_d0_pin, cfg.wiegand_d1_pin, backend=cfg.backend,
                                    gpiochip=cfg.gpiochip, pin_factory=pin_factory)

    def send(self, card: Any) -> dict[str, Any]:
        """Send the frame for ``card`` (the vault's canonical number, or None for no card). Returns what
        was done, for the reply and the audit line: ``sent`` True, or False with ``error``."""
        source = "card"
        if card is None:
            if self.default is None:
                return {"sent": False, "bits": self.bits,
                        "error": "the person has no card and door.wiegand_default is empty: nothing sent"}
            card, source = self.default, "default"
        try:
            frame = encode(int(normalise_card(str(card))), self.bits)
        except (ClaimError, WiegandError) as e:
            return {"sent": False, "bits": self.bits, "source": source, "error": str(e)}
        with self._lock:
            self.sender.send(frame)
        return {"sent": True, "bits": self.bits, "source": source}

    def close(self) -> None:
        self.sender.close()
