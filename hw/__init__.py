"""Amaranth gateware of the tensor-core accelerator."""

from .toolchain import use_yowasp_tools

use_yowasp_tools()

from .config import Config, ConfigError  # noqa: E402

__all__ = ["Config", "ConfigError"]
