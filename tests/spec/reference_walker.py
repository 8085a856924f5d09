"""A deliberately naive second reading of the translation rules (issue 4 design), for tests only.

Plain Python over ints: loops, ``if`` and bit masks written out by hand from the design
document and the 48882 bit positions, sharing no code with ``amdvi.spec`` (the field tables
are used only by the tests, to build memory images). Clarity over speed.

Choices where the design text leaves a detail open are marked ``CHOICE:``; each was then
compared with ``amdvi.spec.translation`` and is pinned by ``test_translation_examples.py``. Two
rules follow the spec where it refines the design note, each with its reason: a level-6 leaf
is invalid, and the DTE's interrupt / port-I/O encodings do not stop a memory request.
"""

from __future__ import annotations

from dataclasses import dataclass

M64 = (1 << 64) - 1

# event codes, 48882 §2.5 (commands-and-events.md §4/§5)
ILLEGAL_DEV_TABLE_ENTRY = 0x1
IO_PAGE_FAULT = 0x2

# flag bits of Q0
GN, NX, US, I_FLAG, PR, RW, PE, RZ, TR = 48, 49, 50, 51, 52, 53, 54, 55, 56

NO_FAULT, DIM_DEVICE_TABLE, DIM_GUEST, DIM_HOST = 0, 1, 2, 3


def bits(x: int, hi: int, lo: int) -> int:
    """x[hi:lo]."""
    return (x >> lo) & ((1 << (hi - lo + 1)) - 1)


def bit(x: int, n: int) -> int:
    return (x >> n) & 1


@dataclass(frozen=True)
class Req:
    device_id: int
    address: int
    write: bool = False
    pasid: int = 0
    has_pasid: bool = False
    user: bool = False
    execute: bool = False
    ats: bool = False


@dataclass
class Result:
    ok: bool
    spa: int = 0
    page_shift: int = 0
    readable: bool = False
    writable: bool = False
    domain_id: int = 0
    logged: bool = False
    event: int = 0
    dimension: int = NO_FAULT


class Fault(Exception):
    """A walk stopped; carries what the record needs."""

    def __init__(self, dimension: int, flags: list[int], address: int, guest_record: bool,
                 code: int = IO_PAGE_FAULT):
        super().__init__(dimension, flags, address)
        self.dimension = dimension
        self.flags = flags  # Q0 bit numbers to set (besides GN/RW/TR which depend on the request)
        self.address = address
        self.guest_record = guest_record  # True: GN = has_pasid, PASID in the record
        self.code = code


def make_record(code: int, device_id: int, gn: bool, pasid: int, domain_id: int, flag_bits: list[int],
                write: bool, ats: bool, address: int) -> int:
    """The 128-bit event, built bit by bit (Q0 = bits 63:0, Q1 = bits 127:64)."""
    q0 = device_id & 0xFFFF
    if gn:
        q0 |= ((pasid >> 16) & 0xF) << 16
        q0 |= (pasid & 0xFFFF) << 32
        q0 |= 1 << GN
    else:
        q0 |= (domain_id & 0xFFFF) << 32
    for b in flag_bits:
        q0 |= 1 << b
    if write:
        q0 |= 1 << RW
    if ats:
        q0 |= 1 << TR
    q0 |= code << 60
    return q0 | ((address & M64) << 64)


# ---- DTE, parsed by hand -------------------------------------------------------------------

def read_dte(memory: dict, address: int) -> int:
    dte = 0
    for i in range(4):
        dte |= memory.get(address + 8 * i, 0) << (64 * i)
    return dte


def dte_is_illegal(dte: int) -> bool:
    """Reserved bits or illegal encodings of the DTE that matter to a memory request.

    The reserved encodings of IoCtl (port I/O) and of IntTabLen / IntCtl (interrupts) do not
    stop a DMA request: the spec scopes those rules to the requests they concern, a refinement
    of the design note's "DTE.check with no context".
    """
    reserved_ranges = [(6, 2), (63, 63), (181, 180), (206, 192), (245, 240)]  # 106 SATS, 187 HPTMode: fields (FreeBSD, OSDev)
    for hi, lo in reserved_ranges:
        if bits(dte, hi, lo) != 0:
            return True
    if bits(dte, 57, 56) == 3:  # GLX
        return True
    if bits(dte, 183, 182) >= 2:  # GPM
        return True
    return False


def gcr3_root(dte: int) -> int:
    return (bits(dte, 60, 58) << 12) | (bits(dte, 95, 80) << 15) | (bits(dte, 127, 107) << 31)


# ---- host (v1) walk --------------------------------------------------------------------------

def default_shift(level: int) -> int:
    return 12 + 9 * (level - 1)


def host_walk(memory: dict, root: int, mode: int, iova: int, r: bool, w: bool, write: bool,
              fault_address: int):
    """-> (spa, page_shift, r, w); raises Fault (dimension 3)."""
    def fault(*flags):
        raise Fault(DIM_HOST, list(flags), fault_address, guest_record=False)

    if mode < 6 and (iova >> (12 + 9 * mode)) != 0:
        fault()
    level = mode
    table = root
    reads = 0
    while True:
        index = (iova >> default_shift(level)) & 0x1FF
        entry = memory.get(table + 8 * index, 0)
        reads += 1
        assert reads <= 6
        if bit(entry, 0) == 0:
            fault()
        r = r and bit(entry, 61) == 1
        w = w and bit(entry, 62) == 1
        nl = bits(entry, 11, 9)
        if nl == 0 or nl == 7:
            if level == 6:
                # not in the design note; the spec cites 48882 Table 15: the top level of a 6-level
                # table has no translation entries, so a level-6 leaf is an invalid encoding
                fault(PR, RZ)
            if bits(entry, 58, 52) != 0:
                fault(PR, RZ)
            if nl == 0:
                shift = default_shift(level)
            else:
                z = None
                for pos in range(12, 52):
                    if bit(entry, pos) == 0:
                        z = pos
                        break
                if z is None:
                    fault(PR, RZ)
                shift = z + 1
                if not (default_shift(level) < shift <= default_shift(level + 1)):
                    fault(PR, RZ)
            size = 1 << shift
            base = (bits(entry, 51, 12) << 12) & ~(size - 1)
            spa = base | (iova & (size - 1))
            break
        if nl >= level:
            fault(PR, RZ)
        # a PDE
        if bits(entry, 60, 52) != 0:
            fault(PR, RZ)
        for skipped in range(level - 1, nl, -1):
            if (iova >> default_shift(skipped)) & 0x1FF != 0:
                fault(PR, RZ)
        table = bits(entry, 51, 12) << 12
        level = nl
    if write and not w:
        fault(PR, PE)
    if not write and not r:
        fault(PR, PE)
    return spa, shift, r, w


# ---- guest (v2) walk -------------------------------------------------------------------------

def guest_walk(memory: dict, dte: int, req: Req, nested: bool, host_root: int, mode: int,
               dte_r: bool, dte_w: bool):
    """-> (spa, page_shift, readable, writable); raises Fault (dimension 2 or 3)."""
    gva = req.address
    pasid = req.pasid if req.has_pasid else 0

    def gfault(*flags):
        raise Fault(DIM_GUEST, list(flags), gva, guest_record=True)

    def to_system(gpa: int) -> int:
        """A guest-physical table pointer read through the host table (read access)."""
        if not nested:
            return gpa
        # CHOICE: table reads start from the DTE's IR/IW like every host walk; RW in the
        # record stays the request's direction.
        spa, _, _, _ = host_walk(memory, host_root, mode, gpa, dte_r, dte_w, False, gpa)
        return spa

    # GCR3 table
    glx = bits(dte, 57, 56)
    table = to_system(gcr3_root(dte))
    for j in range(glx, -1, -1):
        index = (pasid >> (9 * j)) & 0x1FF
        entry = memory.get(table + 8 * index, 0)
        if bit(entry, 0) == 0:
            gfault()
        if bits(entry, 11, 1) != 0 or bits(entry, 63, 52) != 0:
            gfault(PR, RZ)  # CHOICE: PR = 1 (the entry is valid)
        table = to_system(bits(entry, 51, 12) << 12)

    levels = 5 if bits(dte, 183, 182) == 1 else 4
    top = 47 if levels == 4 else 56
    sign = bit(gva, top)
    for b in range(top + 1, 64):
        if bit(gva, b) != sign:
            gfault()

    writable = True
    user = True
    nx = False
    level = levels
    while True:
        index = (gva >> default_shift(level)) & 0x1FF
        entry = memory.get(table + 8 * index, 0)
        if bit(entry, 0) == 0:
            gfault()
        writable = writable and bit(entry, 1) == 1
        user = user and bit(entry, 2) == 1
        nx = nx or bit(entry, 63) == 1
        address = bits(entry, 51, 12) << 12
        ps = bit(entry, 7)
        if level == 1:
            shift = 12
            break
        if ps == 1:
            if level >= 4:
                gfault(PR, RZ)
            shift = default_shift(level)
            if bits(address, shift - 1, 12) != 0:
                gfault(PR, RZ)
            break
        table = to_system(address)
        level -= 1
    size = 1 << shift
    gpa = (address & ~(size - 1)) | (gva & (size - 1))

    # CHOICE: every failed check adds its flags to one record (PE for any of them, US for the
    # user check, NX for the execute check). The DTE's IR/IW are part of the guest check only
    # without a host table; when nested they are checked by the host walk of the final GPA.
    r_here = dte_r if not nested else True
    w_here = dte_w if not nested else True
    flags = []
    if req.write and not (writable and w_here):
        flags += [PR, PE]
    if not req.write and not r_here:
        flags += [PR, PE]
    if req.user and not user:
        flags += [PR, PE, US]
    if req.execute and nx:
        flags += [PR, PE, NX]
    if flags:
        gfault(*flags)

    if not nested:
        return gpa, shift, dte_r, writable and dte_w
    spa, hshift, hr, hw = host_walk(memory, host_root, mode, gpa, dte_r, dte_w, req.write, gpa)
    return spa, min(shift, hshift), hr, hw and writable


# ---- the whole translation -------------------------------------------------------------------

def reference_translate(memory: dict, dev_tab_bar: int, req: Req) -> Result:
    base = bits(dev_tab_bar, 51, 12) << 12
    length = (bits(dev_tab_bar, 8, 0) + 1) * 4096
    pasid = req.pasid if req.has_pasid else 0

    def record(code, flags, gn, domain, address):
        return make_record(code, req.device_id, gn, pasid, domain, flags, req.write, req.ats, address)

    if req.device_id * 32 + 32 > length:
        # CHOICE: an entry beyond the table is reported like an illegal entry (RZ, no DomainID).
        ev = record(ILLEGAL_DEV_TABLE_ENTRY, [RZ], req.has_pasid, 0, req.address)
        return Result(ok=False, domain_id=0, logged=True, event=ev, dimension=DIM_DEVICE_TABLE)

    dte = read_dte(memory, base + 32 * req.device_id)
    domain = bits(dte, 79, 64)
    suppress = bit(dte, 98) == 1 or bit(dte, 97) == 1  # SA, SE

    if bit(dte, 0) == 0:
        return Result(ok=True, spa=req.address, page_shift=64, readable=True, writable=True,
                      domain_id=domain)

    if dte_is_illegal(dte):
        ev = record(ILLEGAL_DEV_TABLE_ENTRY, [RZ], req.has_pasid, 0, req.address)
        return Result(ok=False, domain_id=domain, logged=True, event=ev, dimension=DIM_DEVICE_TABLE)

    def page_fault(dimension, flags, gn, address):
        ev = record(IO_PAGE_FAULT, flags, gn, domain, address)
        return Result(ok=False, domain_id=domain, logged=not suppress, event=ev, dimension=dimension)

    tv = bit(dte, 1)
    mode = bits(dte, 11, 9)
    gv = bit(dte, 55)
    giov = bit(dte, 54)
    if tv == 0:
        return page_fault(DIM_DEVICE_TABLE, [], req.has_pasid, req.address)
    if mode == 7:
        return page_fault(DIM_DEVICE_TABLE, [RZ], req.has_pasid, req.address)
    if req.has_pasid and gv == 0:
        return page_fault(DIM_DEVICE_TABLE, [], True, req.address)

    r = bit(dte, 61) == 1
    w = bit(dte, 62) == 1
    host_root = bits(dte, 51, 12) << 12
    use_guest = gv == 1 and (req.has_pasid or giov == 1)
    use_host = mode != 0

    try:
        if not use_guest and not use_host:
            # CHOICE: Mode 0 passthrough still checks IR/IW; a denial is a device-table fault with
            # PE = 1 and PR = 0 (no page-table entry was read).
            if (req.write and not w) or (not req.write and not r):
                raise Fault(DIM_DEVICE_TABLE, [PE], req.address, guest_record=False)
            spa, shift = req.address, 64
        elif not use_guest:
            spa, shift, r, w = host_walk(memory, host_root, mode, req.address, r, w, req.write, req.address)
        else:
            spa, shift, r, w = guest_walk(memory, dte, req, use_host, host_root, mode, r, w)
    except Fault as f:
        gn = req.has_pasid if f.guest_record else False
        return page_fault(f.dimension, f.flags, gn, f.address)

    return Result(ok=True, spa=spa, page_shift=shift, readable=r, writable=w, domain_id=domain)
