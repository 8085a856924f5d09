"""``translate`` on Python ints through the staged engine (``spec.staged``): what is static, what is traced.

Static (one compiled function each): the hardware choices, the register context, the request's flags
(write, PASID present, user, execute, ATS) and which parts translation caches supply. Traced inputs:
DEV_TAB_BAR, the DeviceID, the address, the PASID and the cached parts' values; the DTE and the
register are specialised on where ``walk_request`` says so (``speculate``). Requests whose fields do not
fit their widths run the reference, which rejects them.
"""

from __future__ import annotations

from typing import Any, Mapping

from . import staged, translation
from .choices import SPEC, Hardware
from .guest_translation import GuestResume
from .staged import ANY, INTEGER

PARAMS = ("dev_tab_bar", "device_id", "address", "pasid", "dte", "gcr3_entry", "host_table", "host_level",
          "host_readable", "host_writable", "guest_table", "guest_level", "guest_writable", "guest_user", "guest_nx")
# what each input is, and its width where the dispatcher checks it (None: unknown)
KINDS = ((INTEGER, None), (INTEGER, 16), (INTEGER, 64), (INTEGER, 20), (INTEGER, None), (INTEGER, None),
         (INTEGER, None), (INTEGER, None), (ANY, None), (ANY, None), (INTEGER, None), (INTEGER, None), (ANY, None),
         (ANY, None), (ANY, None))
_NO_RESUME = (None, None, None, None)
_NO_GUEST_RESUME = (None, None, None, None, None)


def _traced(b: Any, memory: Any, inputs: tuple, static: tuple) -> translation.Outcome:
    """``walk_request`` on the tracer, from the traced inputs and the static part of the call."""
    choices, context, flags, shape = static
    bar, device_id, address, pasid, dte, gcr3_entry, *rest = inputs
    write, has_pasid, user, execute, ats = flags
    has_dte, has_gcr3, has_host, has_guest = shape
    request = translation.Request(device_id=device_id, address=address, write=write, pasid=pasid,
                                  has_pasid=has_pasid, user=user, execute=execute, ats=ats)
    cached = translation.CachedStart(
        dte=dte if has_dte else None, gcr3_entry=gcr3_entry if has_gcr3 else None,
        host_resume=tuple(rest[:4]) if has_host else None,
        guest_resume=GuestResume(*rest[4:]) if has_guest else None)
    return translation.walk_request(b, memory, bar, request, context=context, choices=choices, cached=cached)


STAGER = staged.Stager("translate", _traced, PARAMS, KINDS)


def translate(memory: Mapping[int, int], dev_tab_bar: int, request: translation.Request, *,
              context: Mapping[str, Any] | None = None, choices: Hardware = SPEC,
              cached: translation.CachedStart | None = None) -> translation.Outcome:
    """``translation.translate(INT, ...)`` through the compiled paths (the same Outcome)."""
    r = request

    def reference() -> translation.Outcome:
        return translation.walk_request(translation.INT, memory, dev_tab_bar, r, context=context, choices=choices,
                                        cached=cached)

    device_id, address = r.device_id, r.address
    if not (type(device_id) is int and type(address) is int and type(r.pasid) is int and type(dev_tab_bar) is int
            and 0 <= device_id <= 0xFFFF and 0 <= address >> 64 < 1 and 0 <= r.pasid < 1 << 20):
        return reference()
    ctx = None if context is None else tuple(sorted(context.items()))
    flags = (r.write, r.has_pasid, r.user, r.execute, r.ats)
    if cached is None:
        shape = (False, False, False, False)
        inputs = (dev_tab_bar, device_id, address, r.pasid, None, None, *_NO_RESUME, *_NO_GUEST_RESUME)
    else:
        host, guest = cached.host_resume, cached.guest_resume
        shape = (cached.dte is not None, cached.gcr3_entry is not None, host is not None, guest is not None)
        inputs = (dev_tab_bar, device_id, address, r.pasid, cached.dte, cached.gcr3_entry,
                  *(host if host is not None else _NO_RESUME),
                  *((guest.table, guest.level, guest.writable, guest.user, guest.nx) if guest is not None
                    else _NO_GUEST_RESUME))
        if any(type(v) is not int for v in (cached.dte, cached.gcr3_entry) if v is not None):
            return reference()
    key = (id(choices), ctx, flags, shape)
    return STAGER.run(key, (choices, context, flags, shape), memory, inputs, reference)
