"""The fuzz targets (tools/fuzz_targets) without atheris: each replays its seed corpus, a fixed
set of deterministic mutations of it, and the crash inputs saved in tests/vectors/fuzz/. A
target raises only for a crash, so every input here must pass."""

import pytest

from tools import fuzz_targets
from tools.fuzz_targets import _seeds

MUTATIONS = 500


@pytest.fixture(scope="module", params=fuzz_targets.NAMES)
def target(request):
    return request.param, fuzz_targets.load(request.param)


def test_seeds_pass(target):
    _name, module = target
    seeds = module.seeds()
    assert seeds
    for seed in seeds:
        module.test_one_input(seed)


def test_mutations_pass(target):
    _name, module = target
    for data in _seeds.mutations(module.seeds(), MUTATIONS, seed=9171):
        module.test_one_input(data)


def test_saved_crashes_pass(target):
    name, module = target
    for path in _seeds.regressions(name):
        module.test_one_input(path.read_bytes())


def test_every_saved_crash_names_a_target():
    names = {path.name.split("-")[0] for path in _seeds.REGRESSIONS.glob("*.bin")}
    assert names <= set(fuzz_targets.NAMES)
