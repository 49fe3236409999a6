from basicsr_lmar.utils.options import Option, OptionError, OptionSchema, configurable, validate_registered

__all__ = ['Option', 'OptionError', 'OptionSchema', 'configurable', 'validate_registered']
