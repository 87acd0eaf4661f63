from bprlab.config.loader import from_dict, load_config, to_dict, to_yaml
from bprlab.config.schema import RunConfig

__all__ = ["RunConfig", "from_dict", "load_config", "to_dict", "to_yaml"]
