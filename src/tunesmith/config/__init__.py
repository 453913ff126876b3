"""Typed config: schema, YAML loading with dotted overrides, validation with every problem at once."""

from tunesmith.config.load import apply_overrides, load_config, parse_override, read_yaml, validate_config
from tunesmith.config.schema import (
    DataConfig,
    MethodConfig,
    ModelConfig,
    OutputConfig,
    TrainConfig,
    TunesmithConfig,
)

__all__ = [
    "DataConfig", "MethodConfig", "ModelConfig", "OutputConfig", "TrainConfig", "TunesmithConfig",
    "apply_overrides", "load_config", "parse_override", "read_yaml", "validate_config",
]
