"""Option schemas: every arch, loss, dataset and model of the plugin declares its options.

A schema holds, for each key, a default and the constraints a value must meet (type, choices, range,
or the schema of a registered class for a ``{type: Name, ...}`` section). :meth:`OptionSchema.validate`
checks an option mapping from a YAML file, stopping with an :class:`OptionError` that names the YAML
section, the key, the allowed keys (closest match first) and the value received, and returns the
values over the defaults as a frozen yacs ``CfgNode``. All of it before anything is built.

Archs and losses are built by BasicSR as ``Class(**options)``. The :func:`configurable` class
decorator derives their schema from the ``__init__`` signature (its defaults *are* the paper defaults)
plus declared constraints, and validates every construction, so the stock BasicSR route gets the same
errors. Models call :func:`validate_registered` on their ``network_*`` and loss sections first, so the
message names the section (``network_g``) instead of only the class.

This module also owns what every message about names and files needs: :func:`closest_first` (the one
"did you mean" ordering), :func:`registered` (a name looked up in a registry) and
:func:`read_option_file` (an option file, read with basicsr's loader).

Example::

    @ARCH_REGISTRY.register()
    @configurable(scale=Option(type=int, choices=(2, 4)), width=Option(min=1))
    class MyNet(nn.Module):
        def __init__(self, scale=4, width=64): ...
"""
import difflib
import functools
import inspect
import math
import os.path as osp
from collections.abc import Mapping

from yacs.config import CfgNode

from basicsr_lmar.errors import UserError

_REQUIRED = inspect.Parameter.empty


class OptionError(UserError, ValueError):
    """An option in a YAML file (or constructor call) is unknown, mistyped or out of range."""


class Option:
    """Constraints (and optionally the default) of one option key.

    Args:
        default: default value; omitted for a required key or when the default comes from a signature.
        type: a type or tuple of types the value must have. Inferred from the default when omitted
            (``float`` accepts ints; ``bool`` accepts only booleans; ``None`` accepts anything).
        choices: allowed values.
        min, max: inclusive bounds for numbers (for sequences: bounds on every item).
        exclusive_min: when true, ``min`` itself is not allowed.
        length: required length of a list/tuple value.
        nullable: whether ``None`` (``~`` in YAML) is accepted besides the type.
        registry: for a ``{type: Name, ...}`` section (a loss, an arch): the registry ``Name`` must be in;
            the section is validated against that class's schema (:func:`validate_registered`).
        schema: for a mapping of options of its own: the :class:`OptionSchema` that validates it.
        basicsr: a key that basicsr itself reads (``total_iter``, an optimizer's ``lr``): messages name it
            as ``[section] key`` in plain words (``a whole number``, ``at least 1``), without an owner.
        doc: one line that explains the option; shown in errors.
    """

    def __init__(self, default=_REQUIRED, *, type=None, choices=None, min=None, max=None, exclusive_min=False,
                 length=None, nullable=None, registry=None, schema=None, basicsr=False, doc=''):
        self.default, self.type, self.min, self.max, self.exclusive_min = default, type, min, max, exclusive_min
        self.choices = tuple(choices) if choices is not None else None
        self.length, self.nullable, self.registry, self.schema = length, nullable, registry, schema
        self.basicsr, self.doc = basicsr, doc

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
        for kind, accepted in ((bool, (bool, )), (int, (int, )), (float, (float, int)), ((list, tuple), (list, tuple)),
                               (Mapping, (Mapping, ))):
            if isinstance(default, kind):
                return accepted
        return (type(default), )

    def check(self, value):
        """``None`` if ``value`` is acceptable, else ``(what was expected, whether the type is wrong)``."""
        nullable = self.nullable if self.nullable is not None else (self.default is None)
        if value is None:
            return None if nullable else ('a value (not ~/None)', True)
        expected = self._expected_types()
        # bool is a subclass of int; a YAML `true` is never a valid number.
        if expected and (not isinstance(value, expected) or isinstance(value, bool) and bool not in expected):
            return self._type_phrase(expected), True
        if self.choices is not None and value not in self.choices:
            return f'one of {list(self.choices)}', False
        if self.length is not None and isinstance(value, (list, tuple)) and len(value) != self.length:
            return f'a list of length {self.length}', False
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, (int, float)) and not isinstance(item, bool):
                low = self.min is not None and (item < self.min or (self.exclusive_min and item == self.min))
                if low or (self.max is not None and item > self.max) or not math.isfinite(item):
                    return self._range_phrase(), False
        return None

    def _type_phrase(self, expected):
        names = ' or '.join(sorted({t.__name__ for t in expected}))
        if self.basicsr:
            return {'int': 'a whole number', 'float or int': 'a number', 'Mapping': 'a mapping'}.get(names, names)
        return f'type {names}'

    def _range_phrase(self):
        low, high, above = self.min, self.max, self.exclusive_min
        if self.basicsr:
            parts = [] if low is None else ['positive' if above and low == 0 else
                                            f'{"above" if above else "at least"} {low}']
            parts += [] if high is None else [f'at most {high}']
        else:
            parts = [] if low is None else [f'a value {">" if above else ">="} {low}']
            parts += [] if high is None else [f'<= {high}' if parts else f'a value <= {high}']
        return ' and '.join(parts) or 'a finite number'


def closest_first(key, allowed, cutoff=0.0):
    """``allowed`` sorted by similarity to ``key`` (most similar first, then alphabetically), keeping those at
    least ``cutoff`` similar (0..1): the one "did you mean" ordering of every message of the plugin."""
    ratio = {k: difflib.SequenceMatcher(None, str(key).lower(), str(k).lower()).ratio() for k in allowed}
    return sorted((k for k in ratio if ratio[k] >= cutoff), key=lambda k: (-ratio[k], str(k)))


def _named(section, key):
    """How a message names a key basicsr reads: ``[train] total_iter``, ``[scale]`` at the top level."""
    return f'[{section}] {key}' if section else f'[{key}]'


def _where(section, owner):
    if section and owner:
        return f'[{section}] ({owner})'
    return f'[{section or owner}]'


class OptionSchema:
    """The declared options of one component.

    Args:
        owner: name shown in errors (the class name); None for basicsr's own sections.
        options: key -> :class:`Option`, a nested :class:`OptionSchema`, or a plain default value.
        passthrough: keys that are accepted with any value and not validated here (for example the
            keys BasicSR itself adds to dataset options, such as ``phase`` or ``scale``); ``True``: every
            key the schema does not declare.
    """

    def __init__(self, owner, options, passthrough=()):
        self.owner = owner
        self.options = {key: spec if isinstance(spec, (Option, OptionSchema)) else Option(spec)
                        for key, spec in options.items()}
        self.passthrough = passthrough if passthrough is True else frozenset(passthrough)

    @classmethod
    def from_signature(cls, func, owner, constraints=None, passthrough=()):
        constraints = dict(constraints or {})
        options = {}
        for name, param in inspect.signature(func).parameters.items():
            if name == 'self' or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            options[name] = constraints.pop(name, Option()).with_default(param.default)
        if constraints:
            raise TypeError(f'{owner}: constraints for keys that are not constructor arguments: {sorted(constraints)}')
        return cls(owner, options, passthrough)

    @property
    def allowed_keys(self):
        return sorted(set(self.options) | (set() if self.passthrough is True else self.passthrough))

    def defaults(self, supplied=()):
        """The defaults as a yacs ``CfgNode`` (required keys and ``supplied`` ones are absent)."""
        node = CfgNode()
        for key, spec in self.options.items():
            if isinstance(spec, OptionSchema):
                node[key] = spec.defaults()
            elif not spec.required and key not in supplied:
                node[key] = to_node(spec.default)
        return node

    def check_missing(self, opts, section=None, supplied=()):
        """A required key that ``opts`` lacks is an error (naming a similar key of ``opts``, ``total_iters``)."""
        for key, spec in self.options.items():
            given = key in opts and not (spec.basicsr and opts[key] is None) if isinstance(spec, Option) else True
            if given or not spec.required or key in supplied:
                continue
            close = closest_first(key, [k for k in opts if k not in self.options], cutoff=0.75)[:1]
            hint = f' The file has {close[0]!r}: did you mean {key!r}?' if close else ''
            if spec.basicsr:
                raise OptionError(f'{_named(section, key)} is missing: {spec.doc}.{hint}')
            raise OptionError(f'{_where(section, self.owner)} missing required option {key!r}. Add it to the YAML '
                              f'section.{hint}')

    def check_keys(self, opts, section=None):
        """A key the schema does not declare is an error that lists the allowed keys, closest first."""
        if self.passthrough is True:
            return
        unknown = [key for key in opts if key not in self.options and key not in self.passthrough]
        if unknown:
            key = unknown[0]
            raise OptionError(f'{_where(section, self.owner)} unknown option {key!r} (value {opts[key]!r}). '
                              f'Allowed keys, closest first: {", ".join(closest_first(key, self.allowed_keys))}. '
                              'Fix the spelling or remove the key.')

    def check_value(self, key, value, section=None):
        """Raises an :class:`OptionError` unless ``value`` is acceptable for ``key``; returns the value to
        keep (a validated nested section as a ``CfgNode``, otherwise ``value``)."""
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
                what, wrong_type = problem
                got = f'{value!r} ({type(value).__name__})' if wrong_type or not spec.basicsr else f'{value!r}'
                if spec.basicsr:
                    raise OptionError(f'{_named(section, key)} must be {what}; got {got}.')
                doc = f' ({spec.doc})' if spec.doc else ''
                raise OptionError(f'{_where(section, self.owner)} option {key!r}{doc} must be {what}; got {got}.')
            if value is not None and spec.schema is not None:
                return spec.schema.validate(value, _join(section, key))
            if value is not None and spec.registry is not None:
                validate_registered(value, _join(section, key), spec.registry)
        return value

    def validate(self, opts, section=None, supplied=()):
        """Checks ``opts`` and returns it over the defaults, as a frozen yacs ``CfgNode``.

        ``section`` is the dotted YAML path of ``opts`` (e.g. ``'train.optim_g'``) for messages;
        ``supplied``: required keys that the caller provides itself (not from the YAML). A value replaces
        its default whole (a section such as ``optim_g: {type: SGD, lr: 0.1}`` does not inherit Adam's
        ``betas``); a nested schema fills its own defaults.
        """
        if opts is None:
            opts = {}
        if not isinstance(opts, Mapping):
            raise OptionError(f'{_where(section, self.owner)} expects a mapping of options, got {opts!r}.')
        self.check_missing(opts, section, supplied)
        self.check_keys(opts, section)
        node = self.defaults(supplied)
        for key, value in opts.items():
            node[key] = to_node(self.check_value(key, value, section))
        node.freeze()
        return node


def _join(section, key):
    return f'{section}.{key}' if section else key


def to_node(value):
    """A mapping as a yacs ``CfgNode`` (attribute access; frozen with its parent), anything else as it is."""
    if isinstance(value, CfgNode) or not isinstance(value, Mapping):
        return value
    node = CfgNode()
    for key, item in value.items():
        node[key] = to_node(item)
    return node


def to_plain(value):
    """A validated ``CfgNode`` (or anything inside it) as plain, mutable dicts and lists: the one way back
    for the code that receives options as BasicSR passes them (its builders pop ``type`` from sections)."""
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
            for key, value in signature.bind_partial(self, *args, **kwargs).arguments.items():
                if key in schema.options:
                    schema.check_value(key, value)
            init(self, *args, **kwargs)

        cls.__init__ = checked_init
        cls.option_schema = schema
        return cls

    return decorate


def registered(registry, name, where, what=None):
    """``registry.get(name)``; a name it lacks is an :class:`OptionError` naming ``where`` (``'[network_g]
    type'``) and the closest registered names. ``what`` the registry holds, in words (default: its own)."""
    if not isinstance(name, str) or name not in registry:
        what = what or getattr(registry, 'what', None) or f'registered in {registry._name}'
        known = [key for key, _ in registry]
        raise OptionError(f'{where} {name!r} is not {what}. Closest: {", ".join(closest_first(name, known)[:5])}.')
    return registry.get(name)


class ClassTable:
    """Another library's classes by name, looked up like a basicsr registry (``{type: Adam, lr: ...}``).

    ``what``: what it holds, for messages; ``section_schema``: the keys every section of it must have."""

    def __init__(self, name, classes, what, section_schema):
        self._name, self._classes, self.what, self.section_schema = name, dict(classes), what, section_schema

    def __contains__(self, name):
        return name in self._classes

    def __iter__(self):
        return iter(self._classes.items())

    def get(self, name):
        return self._classes[name]


def validate_registered(opts, section, registry, extra_keys=(), supplied=()):
    """Validates an option section of the form ``{type: Name, ...}`` against ``Name``'s schema.

    Used by models for ``network_*`` and loss sections so that messages name the YAML section. Classes
    without a schema (stock BasicSR archs) are accepted as they are. ``extra_keys``: keys of the section
    that are not constructor arguments (the model reads them); ``supplied``: constructor arguments that
    the caller gives (a rescaler adapter's networks).
    """
    if not isinstance(opts, Mapping) or 'type' not in opts:
        raise OptionError(f'[{section}] needs a mapping with a `type` key naming a registered class; got {opts!r}.')
    cls = registered(registry, opts['type'], f'[{section}] type')
    schema = getattr(cls, 'option_schema', None) or getattr(registry, 'section_schema', None)
    options = {key: value for key, value in opts.items() if key != 'type' and key not in extra_keys}
    return options if schema is None else schema.validate(options, section, supplied)


def option_file_argument(argv):
    """The ``-opt`` argument of basicsr's command line ``argv`` (None when absent)."""
    import argparse

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument('-opt', type=str)
    return parser.parse_known_args(argv)[0].opt


def read_option_file(path, flag='-opt'):
    """The mapping in a YAML option file, read with basicsr's ordered loader (as basicsr reads it); a missing,
    unparsable or non-mapping file is an :class:`OptionError` naming ``flag`` and the file."""
    import yaml
    from basicsr.utils.options import ordered_yaml

    if not path:
        raise OptionError(f'{flag}: give the option file ({flag} options/train_X.yml)')
    if not osp.isfile(path):
        raise OptionError(f'{flag} {path}: no such option file')
    try:
        with open(path) as handle:
            opt = yaml.load(handle, Loader=ordered_yaml()[0])
    except yaml.YAMLError as error:
        raise OptionError(f'{flag} {path} is not valid YAML: {error}') from None
    if not isinstance(opt, Mapping):
        raise OptionError(f'{flag} {path} holds {type(opt).__name__}, not a mapping of option sections (name, '
                          'model_type, datasets, ...)')
    return opt
