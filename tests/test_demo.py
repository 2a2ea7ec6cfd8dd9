"""The README's demo: Earth and Mars agents over FEC-framed, emulated links on virtual time."""

import subprocess
from pathlib import Path

from tools.demo_main import main


def test_the_demo_delivers_everything_once_despite_loss_and_bit_errors(capsys):
    assert main(["--virtual", "--loss", "0.05", "--ber", "1e-4", "--telemetry", "60"]) == 0
    out = capsys.readouterr().out
    assert "retransmits" in out  # 5% loss costs at least one frame: custody recovers it
    assert "Earth has delivered 60 of 60 bundles sent to it, 0 twice" in out


def test_the_demo_script_passes_its_options_to_the_demo_not_to_the_installer():
    """tools/demo sources the venv bootstrap: its own arguments must not become pip extras."""
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run([str(root / "tools" / "demo"), "--virtual", "--telemetry", "7"],
                            capture_output=True, text=True, timeout=300, cwd=root)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Earth has delivered 7 of 7 bundles sent to it, 0 twice" in result.stdout
