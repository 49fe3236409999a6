"""Option schemas: every arch, loss, dataset and model of the plugin declares its options.

A schema holds, for each key, a default and the constraints a value must meet (type, choices, range,
or the schema of a registered class for a ``{type: Name, ...}`` section). Its defaults are a yacs
``CfgNode``; :meth:`OptionSchema.validate` checks an option mapping from a YAML file, stopping with an
:class:`OptionError` that names the YAML section, the key, the allowed keys (closest match first) and
the value received, then merges it into the defaults with yacs' strict merge (a key the schema does
not declare is refused) and returns the result frozen. All of it before anything is built.

Archs and losses are built by BasicSR as ``Class(**options)``. The :func:`configurable` class
decorator derives their schema from the ``__init__`` signature (its defaults *are* the paper defaults)
plus declared constraints, and validates every construction, so the stock BasicSR route gets the same
errors. Models call :func:`validate_registered` on their ``network_*`` and loss sections first, so the
message names the section (``network_g``) instead of only the class.

Example::

    @ARCH_REGISTRY.register()
    @configurable(scale=Option(type=int, choices=(2, 4)), width=Option(min=1))
    class MyNet(nn.Module):
        def __init__(self, scale=4, width=64): ...
"""
import difflib
import functools
import inspect
from collections.abc import Mapping

from yacs.config import CfgNode

from basicsr_lmar.errors import UserError

_REQUIRED = inspect.Parameter.empty


class OptionNode(CfgNode):
    """yacs' ``CfgNode`` for values that YAML has already parsed: a string stays a string (yacs would
    ``literal_eval`` it when merging, turning a file-name template ``'{}'`` into a dict)."""

    @classmethod
    def _decode_cfg_value(cls, value):
        return cls(value) if isinstance(value, dict) else value


class OptionError(UserError, ValueError):
    """An option in a YAML file (or constructor call) is unknown, mistyped or out of range."""


class Option:
    """Constraints (and optionally the default) of one option key.

    Args:
        default: default value; omitted when the default comes from a signature.
        type: a type or tuple of types the value must have. Inferred from the default when omitted
            (``float`` accepts ints; ``bool`` accepts only booleans; ``None`` accepts anything).
        choices: allowed values.
        min, max: inclusive bounds for numbers (for sequences: bounds on every item).
        exclusive_min: when true, ``min`` itself is not allowed.
        length: required length of a list/tuple value.
        nullable: whether ``None`` (``~`` in YAML) is accepted besides the type.
        registry: for a ``{type: Name, ...}`` section (a loss, an arch): the registry ``Name`` must be in;
            the section is validated against that class's schema (:func:`validate_registered`).
        schema: for a mapping of options of its own: the :class:`OptionSchema` that validates it (the
            default is then usually ``None``: the section is optional).
        doc: one line that explains the option; shown in errors.
    """

    def __init__(self, default=_REQUIRED, *, type=None, choices=None, min=None, max=None, exclusive_min=False,
                 length=None, nullable=None, registry=None, schema=None, doc=''):
        self.default = default
        self.type = type
        self.choices = tuple(choices) if choices is not None else None
        self.min = min
        self.max = max
        self.exclusive_min = exclusive_min
        self.length = length
        self.nullable = nullable
        self.registry = registry
        self.schema = schema
        self.doc = doc

    def with_default(self, default):
        option = Option.__new__(Option)
        option.__dict__.update(self.__dict__)
        if option.default is _REQUIRED:
            option.default = default
        return option

    @property
    def required(self):
        return self.default is _REQUIRED

    def _expected_types(self):
        if self.type is not None:
            return self.type if isinstance(self.type, tuple) else (self.type, )
        if self.registry is not None or self.schema is not None:
            return (Mapping, )
        default = self.default
        if default is _REQUIRED or default is None:
            return None
        if isinstance(default, bool):
            return (bool, )
        if isinstance(default, int):
            return (int, )
        if isinstance(default, float):
            return (float, int)
        if isinstance(default, (list, tuple)):
            return (list, tuple)
        if isinstance(default, Mapping):
            return (Mapping, )
        return (type(default), )

    def check(self, value):
        """Returns ``None`` if ``value`` is acceptable, else a phrase describing what was expected."""
        nullable = self.nullable if self.nullable is not None else (self.default is None)
        if value is None:
            return None if nullable else 'a value (not ~/None)'
        expected = self._expected_types()
        if expected is not None:
            # bool is a subclass of int; a YAML `true` is never a valid number.
            if isinstance(value, bool) and bool not in expected:
                return f'type {_type_names(expected)}'
            if not isinstance(value, expected):
                return f'type {_type_names(expected)}'
        if self.choices is not None and value not in self.choices:
            return f'one of {list(self.choices)}'
        if self.length is not None and isinstance(value, (list, tuple)) and len(value) != self.length:
            return f'a list of length {self.length}'
        items = value if isinstance(value, (list, tuple)) else [value]
        for item in items:
            if isinstance(item, (int, float)) and not isinstance(item, bool):
                if self.min is not None and (item < self.min or (self.exclusive_min and item == self.min)):
                    return f'a value {">" if self.exclusive_min else ">="} {self.min}' + _upper(self.max)
                if self.max is not None and item > self.max:
                    return f'a value <= {self.max}' + (f' and >= {self.min}' if self.min is not None else '')
        return None


def _upper(maximum):
    return f' and <= {maximum}' if maximum is not None else ''


def _type_names(types):
    return ' or '.join(sorted({t.__name__ for t in types}))


def closest_first(key, allowed):
    """Allowed keys sorted by similarity to ``key`` (most similar first), then alphabetically."""
    return sorted(allowed, key=lambda k: (-difflib.SequenceMatcher(None, key.lower(), k.lower()).ratio(), k))


def _where(section, owner):
    if section and owner:
        return f'[{section}] ({owner})'
    return f'[{section or owner}]'


class OptionSchema:
    """The declared options of one component.

    Args:
        owner: name shown in errors (the class name).
        options: key -> :class:`Option`, a nested :class:`OptionSchema`, or a plain default value.
        passthrough: keys that are accepted with any value and not validated here (for example the
            keys BasicSR itself adds to dataset options, such as ``phase`` or ``scale``).
    """

    def __init__(self, owner, options, passthrough=()):
        self.owner = owner
        self.options = {}
        for key, spec in options.items():
            if not isinstance(spec, (Option, OptionSchema)):
                spec = Option(spec)
            self.options[key] = spec
        self.passthrough = frozenset(passthrough)

    @classmethod
    def from_signature(cls, func, owner, constraints=None, passthrough=()):
        constraints = dict(constraints or {})
        options = {}
        for name, param in inspect.signature(func).parameters.items():
            if name == 'self' or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            spec = constraints.pop(name, Option())
            options[name] = spec.with_default(param.default)
        if constraints:
            raise TypeError(f'{owner}: constraints for keys that are not constructor arguments: {sorted(constraints)}')
        return cls(owner, options, passthrough)

    @property
    def allowed_keys(self):
        return sorted(set(self.options) | self.passthrough)

    def defaults(self):
        """The defaults as a yacs ``CfgNode`` (required keys are absent)."""
        node = OptionNode()
        for key, spec in self.options.items():
            if isinstance(spec, OptionSchema):
                node[key] = spec.defaults()
            elif not spec.required:
                node[key] = _to_cfg_value(spec.default)
        return node

    def check_keys(self, opts, section=None):
        unknown = [key for key in opts if key not in self.options and key not in self.passthrough]
        if unknown:
            key = unknown[0]
            raise OptionError(f'{_where(section, self.owner)} unknown option {key!r} (value {opts[key]!r}). '
                              f'Allowed keys, closest first: {", ".join(closest_first(key, self.allowed_keys))}. '
                              'Fix the spelling or remove the key.')
        missing = [key for key, spec in self.options.items()
                   if isinstance(spec, Option) and spec.required and key not in opts]
        return missing

    def check_value(self, key, value, section=None):
        """Raises an :class:`OptionError` unless ``value`` is acceptable for ``key``; returns the value to
        merge (a validated nested or registered section as a ``CfgNode``, otherwise ``value``)."""
        spec = self.options.get(key)
        if isinstance(spec, OptionSchema):
            if value is None:
                return None
            if not isinstance(value, Mapping):
                raise OptionError(f'{_where(_join(section, key), spec.owner)} expects a mapping of options, '
                                  f'got {value!r}.')
            return spec.validate(value, _join(section, key))
        if isinstance(spec, Option):
            problem = spec.check(value)
            if problem is not None:
                doc = f' ({spec.doc})' if spec.doc else ''
                raise OptionError(f'{_where(section, self.owner)} option {key!r}{doc} must be {problem}; '
                                  f'got {value!r} ({type(value).__name__}).')
            if value is not None and spec.schema is not None:
                return spec.schema.validate(value, _join(section, key))
            if value is not None and spec.registry is not None:
                validate_registered(value, _join(section, key), spec.registry)
        return value

    def validate(self, opts, section=None):
        """Checks ``opts`` and returns it merged over the defaults, as a frozen yacs ``CfgNode``.

        ``section`` is the dotted YAML path of ``opts`` (e.g. ``'train.optim_g'``) for messages. The
        readable checks come first; yacs then merges strictly (any key the schema does not declare is
        refused, nested schemas merge key by key) and the result is frozen.
        """
        if opts is None:
            opts = {}
        if not isinstance(opts, Mapping):
            raise OptionError(f'{_where(section, self.owner)} expects a mapping of options, got {opts!r}.')
        missing = self.check_keys(opts, section)
        if missing:
            raise OptionError(f'{_where(section, self.owner)} missing required option {missing[0]!r}. '
                              f'Add it to the YAML section.')
        values = {key: self.check_value(key, value, section) for key, value in opts.items()}
        merged = self.defaults()
        override = OptionNode()
        for key, value in values.items():
            nested = isinstance(self.options.get(key), OptionSchema) and isinstance(value, Mapping)
            if not nested:
                # A value replaces its default whole (a section such as `optim_g: {type: SGD, lr: 0.1}`
                # must not inherit Adam's `betas` from the default), and its type was checked above
                # (yacs' own check knows neither `int` for a float option nor a mapping for a `~`
                # default): the slot is emptied, and yacs fills it.
                merged[key] = OptionNode(new_allowed=True) if isinstance(value, Mapping) else None
            override[key] = _to_cfg_value(value)
        merged.merge_from_other_cfg(override)
        merged.freeze()
        return merged


def _join(section, key):
    return f'{section}.{key}' if section else key


def _to_cfg_value(value):
    if isinstance(value, Mapping):
        node = OptionNode(new_allowed=True)  # the contents of a free-form mapping (a loss section, say)
        for key, item in value.items():
            node[key] = _to_cfg_value(item)
        return node
    return value


def to_plain(value):
    """A validated ``CfgNode`` (or anything inside it) as plain, mutable dicts and lists, for the
    code that receives options as BasicSR passes them (it pops ``type`` from sections, for one)."""
    if isinstance(value, Mapping):
        return {key: to_plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_plain(item) for item in value)
    return value


def configurable(passthrough=(), **constraints):
    """Class decorator: derive the option schema from ``__init__`` and validate every construction.

    Keyword arguments are :class:`Option` constraints for constructor arguments of the same name. The
    schema is stored as ``cls.option_schema``.
    """

    def decorate(cls):
        init = cls.__init__
        schema = OptionSchema.from_signature(init, cls.__name__, constraints, passthrough)
        signature = inspect.signature(init)

        @functools.wraps(init)
        def checked_init(self, *args, **kwargs):
            schema.check_keys(kwargs)
            bound = signature.bind_partial(self, *args, **kwargs)
            for key, value in bound.arguments.items():
                if key in schema.options:
                    schema.check_value(key, value)
            init(self, *args, **kwargs)

        cls.__init__ = checked_init
        cls.option_schema = schema
        return cls

    return decorate


def validate_registered(opts, section, registry, extra_keys=()):
    """Validates an option section of the form ``{type: Name, ...}`` against ``Name``'s schema.

    Used by models for ``network_*`` and loss sections so that messages name the YAML section. Classes
    without a schema (stock BasicSR archs) are accepted as they are.
    """
    if not isinstance(opts, Mapping) or 'type' not in opts:
        raise OptionError(f'[{section}] needs a mapping with a `type` key naming a registered class; got {opts!r}.')
    name = opts['type']
    if name not in registry:
        known = [key for key, _ in registry]
        raise OptionError(f'[{section}] type {name!r} is not registered in {registry._name}. '
                          f'Closest: {", ".join(closest_first(name, known)[:5])}.')
    cls = registry.get(name)
    schema = getattr(cls, 'option_schema', None)
    options = {key: value for key, value in opts.items() if key != 'type' and key not in extra_keys}
    if schema is None:
        return options
    return schema.validate(options, section)
