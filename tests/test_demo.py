"""The README's demo: Earth and Mars agents over FEC-framed, emulated links on virtual time."""

from tools.demo_main import main


def test_the_demo_delivers_everything_once_despite_loss_and_bit_errors(capsys):
    assert main(["--virtual", "--loss", "0.05", "--ber", "1e-4", "--telemetry", "60"]) == 0
    out = capsys.readouterr().out
    assert "retransmits" in out  # 5% loss costs at least one frame: custody recovers it
    assert "Earth has delivered 60 of 60 bundles sent to it, 0 twice" in out
