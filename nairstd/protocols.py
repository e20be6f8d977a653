"""Evaluation protocols (SPEC §5): the one list every option, default and check reads.

`resize256`: every image resized to 256x256 (the paper's protocol); `native`: full resolution,
padded to a multiple of the patch size inside the model and scored at the original size.
"""

from __future__ import annotations

RESIZE256 = "resize256"
NATIVE = "native"
PROTOCOLS = (RESIZE256, NATIVE)


def check_protocol(protocol: str) -> str:
    """`protocol` itself, or a ValueError naming the choices."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    return protocol
