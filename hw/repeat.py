"""Components repeated many times, emitted once.

Amaranth emits every submodule (and every bit of every net) on its own, so a block repeated
C times costs C times its emission. :func:`place` adds such a block normally; inside
:func:`repeated_as_instances` (what ``python -m hw verilog`` uses) it adds an ``Instance``
of one module per kind of block instead, and the caller emits each kind once. Simulation
and board builds elaborate every copy.
"""

import contextlib
import contextvars

from amaranth.hdl import ClockSignal, Instance, ResetSignal
from amaranth.lib.wiring import In


__all__ = ["place", "repeated_as_instances", "instance_of", "instance_prefix"]

_modules = contextvars.ContextVar("repeated_modules", default=None)


@contextlib.contextmanager
def repeated_as_instances(prefix):
    """While active, :func:`place` makes instances of modules named ``{prefix}_{kind}``.

    Yields ``{module name: component}``, one component per kind, filled as the design is
    elaborated: after converting the design, the caller converts each of them under its
    name.
    """
    modules = {}
    token = _modules.set((prefix, modules))
    try:
        yield modules
    finally:
        _modules.reset(token)


def instance_prefix():
    """The ``prefix`` of the active :func:`repeated_as_instances`, or None outside it."""
    active = _modules.get()
    return None if active is None else active[0]


def place(m, name, kind, build):
    """Add the component ``build()`` to ``m`` as submodule ``name``; returns its ports.

    ``kind`` names what makes two placements interchangeable (the component class and its
    parameters). Inside :func:`repeated_as_instances`, ``build`` runs once per kind and the
    placement is an instance of that module. Its registers then see only the domain's reset
    (a ``ResetInserter`` of the caller does not reach into instances), so a repeated
    component must not rely on one.
    """
    active = _modules.get()
    if active is None:
        component = m.submodules[name] = build()
        return component
    prefix, modules = active
    module_name = f"{prefix}_{kind}"
    if module_name not in modules:
        modules[module_name] = build()
    ports, instance = instance_of(modules[module_name].signature, module_name, name)
    m.submodules[name] = instance
    return ports


def instance_of(signature, module_name, name, reset=None):
    """``(ports, Instance)``: an instance named ``name`` of module ``module_name``, whose
    ports are those of a component with ``signature`` as Amaranth emits it (member paths
    joined with ``__``, plus ``clk`` and ``rst``), and fresh signals for them. ``reset`` is
    ORed into the domain's reset."""
    ports = signature.create(path=(name,))
    connections = {f"{'i' if member.flow == In else 'o'}_{'__'.join(map(str, path))}": value
                   for path, member, value in ports.signature.flatten(ports)}
    rst = ResetSignal() if reset is None else ResetSignal() | reset
    return ports, Instance(module_name, i_clk=ClockSignal(), i_rst=rst, **connections)
