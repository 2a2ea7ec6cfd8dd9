"""Emulator configs: the shipped ones load, and bad ones get one clear error line."""

import subprocess
import sys
from pathlib import Path

import pytest

from dtn.emulator.config import ConfigError, load_config, parse_config

CONFIGS = Path(__file__).parent.parent / "configs"
LINK = """
[[link]]
name = "earth-mars"
a = { name = "earth", node = "127.0.0.1:4556", listen = "127.0.0.1:4656" }
b = { name = "mars", node = "127.0.0.1:4557", listen = "127.0.0.1:4657" }
"""


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("earth-mars*.toml")))
def test_shipped_configs_load(name):
    config = load_config(CONFIGS / name)
    assert config.links and config.time_scale in (1, 1000)


def test_ci_config_is_twenty_minutes_at_256_kbits_times_1000():
    config = load_config(CONFIGS / "earth-mars-ci.toml")
    [link] = config.links
    for direction in (link.a_to_b, link.b_to_a):
        assert direction.delay == 1200 and direction.rate == 256_000
    assert config.time_scale == 1000
    assert (link.a.node, link.b.node) == (("127.0.0.1", 4556), ("127.0.0.1", 4557))


def test_link_keys_apply_to_both_directions_and_direction_tables_override():
    config = parse_config(
        "seed = 9\n[clock]\ntime_scale = 10\nepoch = 1000\n"
        + LINK
        + 'delay = "20min"\nrate = "256 kbit/s"\nber = 1e-6\nloss = 0.01\n'
        + 'contacts = { windows = [{ start = 0, end = "1h" }] }\n'
        + '[link.b_to_a]\nrate = "2Mbit/s"\n'
        + "burst = { ber_good = 0, ber_bad = 0.01, mean_good_bits = 1e6, mean_bad_bits = 100 }\n"
    )
    link = config.links[0]
    assert (config.seed, config.time_scale, config.epoch) == (9, 10, 1000)
    assert link.a_to_b.rate == 256_000 and link.b_to_a.rate == 2_000_000
    assert link.a_to_b.delay == link.b_to_a.delay == 1200
    assert link.a_to_b.ber == 1e-6 and link.b_to_a.ber == 0 and link.b_to_a.burst is not None
    assert link.b_to_a.loss == 0.01
    assert link.a_to_b.contacts.windows == ((1000.0, 4600.0),)


def test_auto_delay_with_an_ephemeris_date():
    config = parse_config(
        "[clock]\nepoch = 0\n" + LINK + 'delay = "auto"\nephemeris_date = 2021-10-08T00:00:00Z\n'
    )
    params = config.links[0].a_to_b
    assert params.delay is None and params.ephemeris_offset == 1_633_651_200


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (LINK + "ber = 2", "key `link[0].ber`: expected a probability between 0 and 1, got 2"),
        (LINK + 'rate = "fast"', "key `link[0].rate`: expected a rate"),
        (LINK + 'delay = "20 parsecs"', "key `link[0].delay`: expected a duration"),
        (LINK + "[link.a_to_b]\nloss = -0.1", "key `link[0].a_to_b.loss`: expected a prob"),
        (LINK + "colour = 'red'", "unknown key `link[0].colour`"),
        (LINK.replace("4557", "99999"), "key `link[0].b.node`: expected a port"),
        (LINK.replace('"127.0.0.1:4656"', '"localhost:4656"'), "expected an IPv4 address"),
        (LINK + LINK, "key `link[1].name`: 'earth-mars' is used twice"),
        ("seed = 1", "no [[link]] defined"),
        (
            "[clock]\ntime_scale = 0\n" + LINK,
            "key `clock.time_scale`: expected `float` > 0.0, got 0",
        ),
        (
            LINK + "ber = 1e-6\nburst = { ber_good = 0, ber_bad = 0.1, mean_good_bits = 10, "
            "mean_bad_bits = 10 }",
            "set ber or burst, not both",
        ),
        (LINK + 'ephemeris_date = "2021-10-08"', 'ephemeris_date needs delay = "auto"'),
        (
            LINK + "contacts = { passes = { period = 10, duration = 20 } }",
            "need 0 < duration <= period",
        ),
        (LINK + "contacts = { outages = [{ start = 10, end = 5 }] }", "start must come before end"),
        (LINK + 'contacts = "no-such-file.toml"', "key `link[0].contacts`: contacts file"),
        (LINK + 'contacts = "no-such-file.toml"', "cannot read"),
        (
            LINK + "[link.b_to_a]\ncontacts = { passes = { period = 1 } }",
            "`link[0].b_to_a.contacts",
        ),
        ("seed = -1\n" + LINK, "key `seed`: expected `int` >= 0, got -1"),
        ("seed = [", "not valid TOML"),
    ],
)
def test_bad_configs_name_the_place_and_the_problem(text, message):
    with pytest.raises(ConfigError) as raised:
        parse_config(text)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value).strip()


def test_cli_reports_a_bad_config_on_one_line_and_exits_2(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text(LINK + "loss = 1.5\n")
    result = subprocess.run(
        [sys.executable, "-m", "dtn.cli", "emulate", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert (
        str(config) in result.stderr
        and "loss" in result.stderr
        and "between 0 and 1" in (result.stderr)
    )
