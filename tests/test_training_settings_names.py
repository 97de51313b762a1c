"""The augmentation names that settings and the command line accept are the presets that exist."""
from ldiff.training.augmentation import AUGMENTATION_PRESETS
from ldiff.training.command import build_parser
from ldiff.training.settings import AUGMENTATION_NAMES


def test_settings_and_the_command_line_accept_exactly_the_augmentation_presets():
    assert AUGMENTATION_NAMES == tuple(AUGMENTATION_PRESETS)
    action = next(a for a in build_parser()._actions if a.dest == "augmentation")
    assert tuple(action.choices) == tuple(AUGMENTATION_PRESETS)
