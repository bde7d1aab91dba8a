"""The methods of the family, one package each.

`implicit_fields.trainer` finds a method by its name in `config.method`
(`implicit_fields.methods.<name>`). A method builds on the core modules, the
data layer and the trainer, never on another method. See `trainer` for what a
method package provides.
"""
