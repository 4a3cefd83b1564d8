"""Timestep spellings, canonical names, ordering and rejection messages (DESIGN.md "Timesteps")."""

from __future__ import annotations

import pytest

import lazybars as lb
from lazybars import Timestep

DAY_MINUTES = 24 * 60

# Spelling -> bar length in minutes, written out from the rule in DESIGN.md:
# "<N><unit>" with an optional space, unit one of m, min, minute(s), h, hour(s), d, day(s);
# "minute", "hour", "day" alone mean N = 1.
SPELLINGS = {
    "minute": 1,
    "1m": 1,
    "1min": 1,
    "1 minute": 1,
    "5m": 5,
    "5 minutes": 5,
    "5minutes": 5,
    "15min": 15,
    "15 min": 15,
    "30 Min": 30,
    "45M": 45,
    "60m": 60,
    "90m": 90,
    "hour": 60,
    "1h": 60,
    "1 hour": 60,
    "2 hours": 120,
    "2hours": 120,
    "4h": 240,
    "4H": 240,
    "23h": 23 * 60,
    "1439m": 1439,
    "day": DAY_MINUTES,
    "Day": DAY_MINUTES,
    "1d": DAY_MINUTES,
    "1 day": DAY_MINUTES,
    "days": DAY_MINUTES,
    "1 days": DAY_MINUTES,
    " 5m ": 5,
}


@pytest.mark.parametrize(("spelling", "minutes"), sorted(SPELLINGS.items()))
def test_spelling_parses_to_its_length(spelling: str, minutes: int) -> None:
    step = Timestep.parse(spelling)
    assert step.minutes == minutes
    assert step.nanos == minutes * 60 * 10**9
    assert step.is_day == (minutes == DAY_MINUTES)


def _canonical(minutes: int) -> str:
    if minutes == DAY_MINUTES:
        return "1d"
    if minutes % 60 == 0:
        return f"{minutes // 60}h"
    return f"{minutes}m"


@pytest.mark.parametrize(("spelling", "minutes"), sorted(SPELLINGS.items()))
def test_canonical_str_round_trips(spelling: str, minutes: int) -> None:
    step = Timestep.parse(spelling)
    assert str(step) == _canonical(minutes)
    # The canonical name parses back to the same value.
    assert Timestep.parse(str(step)) == step
    assert repr(step) == f"Timestep('{_canonical(minutes)}')"


def test_equal_lengths_are_equal_and_hash_equal() -> None:
    assert Timestep.parse("60m") == Timestep.parse("hour") == Timestep.parse("1 hour")
    assert hash(Timestep.parse("60m")) == hash(Timestep.parse("1h"))
    assert Timestep.parse("day") == Timestep.parse("1d")
    assert len({Timestep.parse(s) for s in ("minute", "1m", "1min", "1 minute")}) == 1


def test_parse_accepts_a_timestep() -> None:
    step = Timestep.parse("5m")
    assert Timestep.parse(step) is step


def test_ordering_follows_length() -> None:
    spelled = ["day", "4h", "1m", "hour", "15min", "5 minutes", "2 hours"]
    ordered = sorted(Timestep.parse(s) for s in spelled)
    assert [str(t) for t in ordered] == ["1m", "5m", "15m", "1h", "2h", "4h", "1d"]
    assert Timestep.parse("1m") < Timestep.parse("5m") < Timestep.parse("1h")
    assert Timestep.parse("23h") < Timestep.parse("day")
    assert Timestep.parse("4h") > Timestep.parse("90m")
    assert max(Timestep.parse(s) for s in spelled) == Timestep.parse("1d")


def test_timestep_is_immutable() -> None:
    step = Timestep.parse("5m")
    with pytest.raises(AttributeError):
        step.minutes = 10  # type: ignore[misc]


# The accepted forms as the message must show them (any one of these fragments).
ACCEPTED_UNITS = ("m", "min", "h", "hour", "d", "day")

UNKNOWN = ["fortnight", "", "   ", "5x", "5 sec", "30s", "1w", "m5", "-5m", "5.5m", "hourly"]


@pytest.mark.parametrize("value", UNKNOWN)
def test_unknown_spelling_names_value_and_accepted_forms(value: str) -> None:
    with pytest.raises(lb.InvalidRequest) as info:
        Timestep.parse(value)
    message = str(info.value)
    assert repr(value) in message
    # The accepted forms: the unit list and examples.
    for example in ("'1m'", "'5 minutes'", "'4h'", "'day'"):
        assert example in message
    for unit in ACCEPTED_UNITS:
        assert unit in message


@pytest.mark.parametrize("value", [5, None, 1.5, b"5m", ["1m"], 60])
def test_non_string_is_rejected_with_value_and_accepted_forms(value: object) -> None:
    with pytest.raises(lb.InvalidRequest) as info:
        Timestep.parse(value)  # type: ignore[arg-type]
    message = str(info.value)
    assert repr(value) in message
    assert "'1m'" in message
    assert "'day'" in message


@pytest.mark.parametrize(
    "value",
    ["0m", "0 minutes", "0h", "0d", "2d", "2 days", "7d", "1500m", "1440m", "24h", "25 hours"],
)
def test_unsupported_lengths_name_value_and_a_valid_form(value: str) -> None:
    with pytest.raises(lb.InvalidRequest) as info:
        Timestep.parse(value)
    message = str(info.value)
    assert repr(value) in message
    # Points at something that works instead.
    assert "'1m'" in message or "'day'" in message


def test_rejection_is_a_value_error_and_lazybars_error() -> None:
    with pytest.raises(ValueError, match="fortnight"):
        Timestep.parse("fortnight")
    with pytest.raises(lb.LazyBarsError):
        Timestep.parse("fortnight")


def test_timestep_arguments_of_the_public_api_are_parsed() -> None:
    """Every public timestep argument goes through the same rules."""
    frame = lb.synth.minute_bars("MES", "2024-01-02", "2024-01-03", gaps=0)
    store = lb.BarStore.from_frames({"MES": frame}, timestep="1 minute")
    assert store.timesteps("MES") == ["1m"]
    assert store.symbols(timestep="minute") == ["MES"]
    assert store.symbols(timestep="5m") == []
    with pytest.raises(lb.InvalidRequest, match="fortnight"):
        store.symbols(timestep="fortnight")
    with pytest.raises(lb.InvalidRequest, match="2d"):
        store.scan("MES", "2d")
    with pytest.raises(lb.InvalidRequest, match="fortnight"):
        store.write("MES", frame, timestep="fortnight")
    with pytest.raises(lb.InvalidRequest, match="fortnight"):
        store.scan("MES").resample("fortnight")
    assert store.scan("MES", "60 minutes").bars().timestep == "1h"
