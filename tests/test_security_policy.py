"""The security policy from the node config: parsing, matching, key checks."""

import tomllib
from pathlib import Path

import pytest

from dtn.bundle import EID, BlockType
from dtn.security import AesVariant, Keyring, PolicyError, SecurityPolicy, ShaVariant
from dtn.security.keyfile import load_keyring

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def policy(*rules: dict) -> SecurityPolicy:
    return SecurityPolicy.from_config({"rule": list(rules)})


def test_rules_match_first_by_glob_per_direction():
    rules = policy(
        {"destination": "ipn:2.*", "bcb": "A256GCM", "key": "mars"},
        {"destination": "ipn:*", "source": "ipn:*", "bib": "HMAC-SHA-512", "key": "any"},
        {"source": "dtn://relay*/*", "bcb": "A128GCM", "key": "relay"},
    )
    assert rules.outbound(EID.parse("ipn:2.7")).bcb == AesVariant.A256GCM
    assert rules.outbound(EID.parse("ipn:22.7")).bib == ShaVariant.HMAC_SHA_512
    assert rules.outbound(EID.parse("dtn://relay-1/x")) is None
    assert rules.inbound(EID.parse("ipn:2.7")).key == "any"
    assert rules.inbound(EID.parse("dtn://relay-1/x")).key == "relay"
    assert rules.inbound(EID.parse("dtn://Relay-1/x")) is None  # case-sensitive
    assert rules.outbound(EID.parse("ipn:2.7")) is rules.outbound(EID.parse("ipn:2.7"))


def test_key_ids_per_service():
    both = policy(
        {"destination": "*", "bcb": "A128GCM", "bib": "HMAC-SHA-256", "key": "k", "bib_key": "s"}
    ).rules[0]
    assert (both.key_id(BlockType.BCB), both.key_id(BlockType.BIB)) == ("k", "s")
    sign_only = policy({"destination": "*", "bib": "HMAC-SHA-256", "key": "k"}).rules[0]
    assert (sign_only.key_id(BlockType.BCB), sign_only.key_id(BlockType.BIB)) == (None, "k")
    assert both.describe() == "BCB A128GCM + BIB HMAC-SHA-256"


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"bcb": "A256GCM", "key": "k"}, "destination pattern, a source pattern"),
        ({"destination": "*", "key": "k"}, "name a bcb"),
        ({"destination": "*", "bcb": "A512GCM", "key": "k"}, "not one of A128GCM, A256GCM"),
        ({"destination": "*", "bib": "SHA1", "key": "k"}, "not one of HMAC-SHA-256"),
        ({"destination": "*", "bcb": "A256GCM"}, "'key'"),
        ({"destination": "*", "bcb": "A256GCM", "bib": "HMAC-SHA-256", "key": "k"}, "own key"),
        (
            {
                "destination": "*",
                "bcb": "A256GCM",
                "bib": "HMAC-SHA-256",
                "key": "k",
                "bib_key": "k",
            },
            "own key",
        ),
        ({"destination": "*", "bcb": "A256GCM", "key": "k", "bib_key": "s"}, "only for rules"),
        ({"destination": "*", "bcb": "A256GCM", "key": "k", "scope": 8}, "0..7"),
        ({"destination": "*", "bcb": "A256GCM", "key": "k", "key_wrap": "yes"}, "true or false"),
        ({"destination": "", "bcb": "A256GCM", "key": "k"}, "non-empty EID pattern"),
        ({"destination": "*", "bcb": "A256GCM", "key": "k k"}, "letters, digits"),
        ({"destination": "*", "bcb": "A256GCM", "key": "k", "keys": "x"}, "unknown entries"),
    ],
)
def test_bad_rules_name_the_rule_and_the_problem(rule, message):
    with pytest.raises(PolicyError, match=message) as caught:
        policy({"destination": "ipn:9.*", "bcb": "A256GCM", "key": "ok"}, rule)
    assert "security.rule[1]" in str(caught.value)


def test_section_shape():
    assert SecurityPolicy.from_config(None).rules == ()
    assert (
        SecurityPolicy.from_config({"keyfile": "/etc/dtn/keys.toml"}).keyfile
        == "/etc/dtn/keys.toml"
    )
    with pytest.raises(PolicyError, match="unknown entries"):
        SecurityPolicy.from_config({"rules": []})
    with pytest.raises(PolicyError, match="array of tables"):
        SecurityPolicy.from_config({"rule": {"destination": "*"}})


def test_check_keys_reports_every_missing_or_misfit_key():
    rules = policy(
        {"destination": "ipn:2.*", "bcb": "A256GCM", "key": "short"},
        {"destination": "ipn:3.*", "bcb": "A128GCM", "key": "absent"},
        {"destination": "ipn:4.*", "bib": "HMAC-SHA-256", "key": "short", "key_wrap": True},
        {"destination": "ipn:5.*", "bcb": "A128GCM", "key": "long", "key_wrap": True},
        {"destination": "ipn:6.*", "bib": "HMAC-SHA-512", "key": "odd"},
    )
    keyring = Keyring({"short": bytes(16), "long": bytes(32), "odd": bytes(20)})
    with pytest.raises(PolicyError) as caught:
        rules.check_keys(keyring)
    problems = str(caught.value).split("; ")
    assert problems == [
        "security.rule[0]: key 'short' is 16 bytes, BCB here needs 32",
        "security.rule[1]: key 'absent' is not in the key file",
    ]
    policy({"destination": "x", "bcb": "A256GCM", "key": "long"}).check_keys(keyring)  # fits


def test_the_example_config_and_key_file_fit_together(tmp_path):
    config = tomllib.loads((CONFIGS / "security-policy-example.toml").read_text())
    rules = SecurityPolicy.from_config(config["security"])
    assert rules.outbound(EID.parse("ipn:2.1")).bcb == AesVariant.A256GCM
    assert rules.inbound(EID.parse("ipn:3.4")).bib == ShaVariant.HMAC_SHA_256
    copy = tmp_path / "keys.toml"
    copy.write_text((CONFIGS / "keys-example.toml").read_text())
    copy.chmod(0o600)
    rules.check_keys(load_keyring(copy))
