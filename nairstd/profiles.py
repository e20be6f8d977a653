"""Run profiles (SPEC §4): `smoke` (plumbing, seconds), `quick` (2-core CPU), `paper` (GPU)."""

from __future__ import annotations

PROFILES = ("smoke", "quick", "paper")
DEFAULT_PROFILE = "quick"


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    return profile
