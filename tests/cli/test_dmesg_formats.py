"""Known answers for the print formats tests/cli/test_dmesg.py does not cover: events split over two lines,
the oldest tag, lines cut short, and the per-era differences in what each event prints.

Each text names where the format comes from: a public report (copied verbatim, as pasted there) or, where no
real log was found, the Linux source version whose format strings the line is written from.
"""

from hypothesis import given, strategies as st

from amdvi.frontend.dmesg import EVENT, NOT_ATTACHED, UNKNOWN_EVENT, UNRECOGNISED, parse_dmesg
from amdvi.spec.bitvec import mask
from amdvi.spec.device_table import DTE
from amdvi.spec.events import EVENTS, explain_flags

# ---- printk continuation on its own line -------------------------------------------------------------

# github.com/pcengines/coreboot/issues/285 (2019-03-20; again as pcengines/apu2-documentation#240), Debian
# kernel 4.9: `printk(KERN_ERR "AMD-Vi: Event logged [")` then `printk("INVALID_DEVICE_REQUEST ...]")`. From
# 4.9 on a printk without KERN_CONT starts a new line, so each event takes two lines, each with its own
# timestamp. Syslog form ("kernel: [...]"), first six lines verbatim.
PCENGINES_4_9 = """\
kernel: [   13.134460] AMD-Vi: Event logged [
kernel: [   13.137925] INVALID_DEVICE_REQUEST device=00:00.1 address=0x000000fdf8000020 flags=0x0a00]
kernel: [   11.773399] AMD-Vi: Event logged [
kernel: [   11.776863] INVALID_DEVICE_REQUEST device=00:00.1 address=0x000000fdf8000020 flags=0x0a00]
kernel: [  221.562629] AMD-Vi: Event logged [
kernel: [  221.565929] IO_PAGE_FAULT device=05:00.0 domain=0x0012 address=0x00000000ff6101b0 flags=0x0070]"""


def one(text, kind=EVENT):
    records = parse_dmesg(text)
    assert len(records) == 1, records
    assert records[0].kind == kind, records[0]
    return records[0]


def test_kernel_4_9_continuation_lines_are_one_event_each():
    first, second, fault = parse_dmesg(PCENGINES_4_9)
    assert (first.lines, second.lines, fault.lines) == ((1, 2), (3, 4), (5, 6))
    assert first.timestamp == "13.134460"  # the event's time is its first line's
    assert first.event == "INVALID_DEVICE_REQUEST" and first.raw == "\n".join(PCENGINES_4_9.splitlines()[:2])
    f = first.fields()
    assert (f["DeviceID"], f["Address"], f["Type"]) == (0x0001, 0xFDF8000020, 5)  # flags 0xa00 = Type 101b
    assert {"PASID[15:0]", "PASID[19:16]"} <= set(first.missing)  # this kernel printed no pasid=
    assert (fault.event, fault.device, fault.fields()["DeviceID"]) == ("IO_PAGE_FAULT", "05:00.0", 0x0500)
    assert (fault.fields()["DomainID or PASID[15:0]"], fault.fields()["Address"]) == (0x12, 0xFF6101B0)
    assert {"PR=1: present", "RW=1: write", "PE=1: permission denied"} <= set(
        explain_flags(fault.structure, fault.flags))


def test_continuation_after_another_cpus_message_and_journal_prefixes():
    # The same two printk calls with a message from elsewhere landing between them (printk joins a
    # continuation only while no other message intervenes), as journalctl prints them.
    text = """\
Jan 01 12:00:00 host kernel: AMD-Vi: Event logged [
Jan 01 12:00:00 host kernel: usb 1-1: new high-speed USB device number 2 using xhci_hcd
Jan 01 12:00:00 host kernel: IO_PAGE_FAULT device=00:14.0 domain=0x000a address=0x00000000fdf800ff flags=0x0010]"""
    r = one(text)
    assert (r.lines, r.timestamp, r.device) == ((1, 3), "Jan 01 12:00:00", "00:14.0")
    assert (r.fields()["DeviceID"], r.fields()["DomainID or PASID[15:0]"], r.fields()["PR"]) == (0xA0, 0xA, 1)


def test_a_bare_opener_whose_event_never_came_is_reported_not_guessed():
    text = "[ 1.0] AMD-Vi: Event logged [\n[ 1.1] AMD-Vi: Completion-Wait loop timed out\n"
    cut, timeout = parse_dmesg(text)
    assert cut.kind == UNRECOGNISED and "not in the log" in cut.note and cut.bits is None
    assert timeout.kind == "completion_wait_timeout"
    far = "AMD-Vi: Event logged [\n" + "other\n" * 20 + "IO_PAGE_FAULT device=00:14.0 domain=0x000a address=0x0 flags=0x0000]"
    opener, orphan = parse_dmesg(far)  # too far apart to be one event: both are reported as they are
    assert opener.kind == UNRECOGNISED and orphan.kind == EVENT and orphan.lines == (22,)


def test_event_line_whose_opener_was_cut_off_the_paste():
    r = one("[  221.565929] IO_PAGE_FAULT device=05:00.0 domain=0x0012 address=0x00000000ff6101b0 flags=0x0070]")
    assert r.fields()["Address"] == 0xFF6101B0 and "not in the log" in r.note
    # Xen's own AMD-Vi messages look alike but are not Linux's format: not taken for an event
    assert parse_dmesg("(XEN) AMD-Vi: IO_PAGE_FAULT: 0000:03:00.0 d0 addr fffffffdf8000000 flags 0x8 I") == []


# ---- dev_err on two lines (until upstream 1a21ee1aabf7) --------------------------------------------------

# Upstream commit 1a21ee1aabf7 ("iommu/amd: Fix line-break in error log reporting", backported as 4.19.89,
# <20191211150347.232612062@linuxfoundation.org>): after the switch to dev_err, `dev_err(dev, "AMD-Vi: Event
# logged [")` and `dev_err(dev, "ILLEGAL_DEV_TABLE_ENTRY ...]")` each printed a line with the IOMMU's device
# prefix. Lines written from the format strings that commit removed (4.19: pasid= printed, PAGE_TAB's
# domain= is the 20-bit PASID, INVALID_PPR_REQUEST without tag=); the DTE dump is pr_err("AMD-Vi: DTE[%d]:
# %016llx"). No real log of this form was found.
DEV_ERR_4_19 = """\
[   10.100001] iommu ivhd0: AMD-Vi: Event logged [
[   10.100002] iommu ivhd0: ILLEGAL_DEV_TABLE_ENTRY device=00:14.0 pasid=0x00000 address=0x00000000fdf80000 flags=0x0008]
[   10.100003] AMD-Vi: DTE[0]: 6000000000000003
[   10.100004] AMD-Vi: DTE[1]: 0000000000000001
[   10.100005] AMD-Vi: DTE[2]: 2000003088b3e013
[   10.100006] AMD-Vi: DTE[3]: 0000000000000000
[   10.200001] iommu ivhd0: AMD-Vi: Event logged [
[   10.200002] iommu ivhd0: PAGE_TAB_HARDWARE_ERROR device=03:00.0 domain=0x12345 address=0x0000000012340000 flags=0x0400]
[   10.300001] iommu ivhd0: AMD-Vi: Event logged [
[   10.300002] iommu ivhd0: INVALID_PPR_REQUEST device=03:00.0 pasid=0x10002 address=0x0000000000401000 flags=0x0000]
[   10.400001] iommu ivhd0: AMD-Vi: Event logged [
[   10.400002] iommu ivhd0: UNKNOWN event[0]=0x00000001 event[1]=0xf0000000 event[2]=0x00000000 event[3]=0x00000000"""


def test_dev_err_split_events_with_their_dte_dump():
    idte, ptab, ppr, unknown = parse_dmesg(DEV_ERR_4_19)
    assert (idte.lines, idte.source, idte.timestamp) == ((1, 2, 3, 4, 5, 6), "iommu ivhd0", "10.100001")
    assert (idte.fields()["DeviceID"], idte.fields()["I"], idte.missing) == (0xA0, 1, ("vflags",))
    assert DTE.decode(idte.dte)["IntTabLen"] == 9 and idte.dte_word_bits == 64
    # PAGE_TAB_HARDWARE_ERROR's domain= held the 20-bit PASID in this era
    assert (ptab.fields()["DomainID or PASID[15:0]"], ptab.fields()["PASID[19:16]"]) == (0x2345, 1)
    assert ptab.fields()["Type"] == 2  # flags 0x400: entry bit 58, Type = 10b (target abort)
    assert (ppr.fields()["PASID[15:0]"], ppr.fields()["PASID[19:16]"], ppr.missing) == (2, 1, ("Tag",))
    assert (unknown.kind, unknown.lines, unknown.bits) == (UNKNOWN_EVENT, (11, 12), 0xF << 60 | 1)


def test_dev_err_split_before_pasid_was_printed_and_the_stray_kern_err():
    # An earlier dev_err era amd_iommu.c (the indexed Linux mirror with `dev_err(dev, "AMD-Vi: Event logged
    # [")`, domid masked to 16 bits): no pasid=, PAGE_TAB prints domain=, and the default branch passes
    # KERN_ERR inside dev_err's format, which reaches the log as \x01 and '3' (dmesg escapes it).
    text = """\
iommu ivhd1: AMD-Vi: Event logged [
iommu ivhd1: PAGE_TAB_HARDWARE_ERROR device=03:00.0 domain=0x0012 address=0x0000000012340000 flags=0x0400]
iommu ivhd1: AMD-Vi: Event logged [
iommu ivhd1: \\x013UNKNOWN event[0]=0x00000001 event[1]=0xf0000000 event[2]=0x00000000 event[3]=0x00000000"""
    ptab, unknown = parse_dmesg(text)
    assert ptab.fields()["DomainID or PASID[15:0]"] == 0x12 and "PASID[19:16]" in ptab.missing  # 16 bits: [19:16] unknown
    assert unknown.kind == UNKNOWN_EVENT and unknown.lines == (3, 4)


# ---- the oldest driver and the oldest default branch -----------------------------------------------------

def test_kernel_2_6_28_amd_iommu_tag_and_unknown_type():
    # Linux 2.6.28 arch/x86/kernel/amd_iommu.c: printk(KERN_ERR "AMD IOMMU: Event logged [") and the event
    # as a continuation, joined on one line by kernels of that time; the default branch printed only the
    # type (with its own KERN_ERR, so it may start a line of its own).
    r = one("AMD IOMMU: Event logged [IO_PAGE_FAULT device=00:12.0 domain=0x0003 "
            "address=0x00000000dfe00000 flags=0x0050]")
    assert (r.fields()["DeviceID"], r.fields()["Address"], r.fields()["PE"]) == (0x90, 0xDFE00000, 1)
    old = parse_dmesg("AMD IOMMU: Event logged [\nUNKNOWN type=0x0a]")
    assert [(x.kind, x.event, x.lines, x.bits) for x in old] == [(EVENT, "EVENT_COUNTER_ZERO", (1, 2), 0xA << 60)]


# ---- what each era prints for the domain ---------------------------------------------------------------

def test_io_page_fault_domain_is_16_bits_in_every_format():
    # amd_iommu_report_page_fault(..., u16 domain_id, ...) in 4.x-6.x, and domid masked to 16 bits before:
    # PASID[19:16] never reaches an IO_PAGE_FAULT line.
    for line in ("AMD-Vi: Event logged [IO_PAGE_FAULT device=0000:05:00.0 domain=0x0017 address=0x1000 flags=0x0000]",
                 "AMD-Vi: Event logged [IO_PAGE_FAULT device=05:00.0 domain=0x0017 address=0x0000000000001000 "
                 "flags=0x0000]"):
        r = one(line)
        assert r.fields()["DomainID or PASID[15:0]"] == 0x17 and "PASID[19:16]" in r.missing
        assert r.known_mask & 0xF << 16 == 0
    assert one("AMD-Vi: Event logged [IO_PAGE_FAULT device=05:00.0 domain=0x10017 address=0x0 flags=0x0]",
               UNRECOGNISED).note.endswith("cannot print")


def test_device_not_attached_keeps_the_domain_to_16_bits():
    # 6.3+ amd_iommu_report_page_fault: pr_err_ratelimited("Event logged [Device not attached to domain
    # properly]") then "  device=%04x:%02x:%02x.%x domain=0x%04x".
    text = "AMD-Vi: Event logged [Device not attached to domain properly]\nAMD-Vi:   device=0000:05:00.0 domain=0x0003\n"
    r = one(text, NOT_ATTACHED)
    assert r.fields()["DomainID or PASID[15:0]"] == 3 and "PASID[19:16]" in r.missing
    cut = one(text.rstrip("\n")[:-2], NOT_ATTACHED)  # "domain=0x00": cut inside a %04x value
    assert cut.value("domain") is None and "DomainID or PASID[15:0]" in cut.missing and "domain" in cut.note


# ---- lines cut short ------------------------------------------------------------------------------------

def test_a_value_cut_by_the_end_of_the_line_is_not_used():
    whole = "AMD-Vi: Event logged [IO_PAGE_FAULT device=05:00.0 domain=0x0012 address=0x00000000ff6101b0 flags=0x0070]"
    r = one(whole[:-1])  # only the "]" lost: flags= has all of its 4 digits
    assert r.flags == 0x70 and r.note == ""
    r = one(whole[:-3])  # "flags=0x00": could have been 0x0070
    assert r.flags is None and {"PR", "RW", "PE"} <= set(r.missing) and "flags=" in r.note
    r = one(whole[: whole.index("address=") + 14])  # address cut after a few digits
    assert r.value("address") is None and "Address" in r.missing and r.fields()["DeviceID"] == 0x500
    r = one("AMD-Vi: Event logged [UNKNOWN event[0]=0x00000001 event[1]=0xf0000000 event[2]=0x00000000 "
            "event[3]=0x0000", UNRECOGNISED)  # the last dword is short: the entry is not whole
    assert "without its dwords" in r.note


def test_a_dte_word_cut_inside_is_refused_not_read_short():
    text = "AMD-Vi: Event logged [ILLEGAL_DEV_TABLE_ENTRY device=0000:43:00.0 pasid=0x00000 address=0x1 flags=0x0020]\n"
    text += "AMD-Vi: DTE[0]: 6000000000000003\nAMD-Vi: DTE[1]: 00000000000"
    event, cut = parse_dmesg(text)
    assert event.dte_words == (0x6000000000000003,) and event.dte_known_mask == mask(64)
    assert cut.kind == UNRECOGNISED and "11 digits" in cut.note


def test_old_dword_dump_cut_after_five_dwords():
    # 2.6.3x-3.x dump_dte_entry: eight "AMD-Vi: DTE[%d]: %08x" lines; the paste stops after DTE[4].
    words = [0x00000003, 0x60000000, 0x00000001, 0, 0x88B3E013]
    text = "AMD-Vi: Event logged [ILLEGAL_DEV_TABLE_ENTRY device=43:00.0 address=0x0000003737b01000 flags=0x0020]\n"
    text += "\n".join(f"AMD-Vi: DTE[{i}]: {w:08x}" for i, w in enumerate(words))
    r = one(text)
    assert r.dte is None and r.dte_word_bits == 32 and r.dte_known_mask == mask(160)
    assert r.dte_bits == 0x6000000000000003 | 1 << 64 | 0x88B3E013 << 128


# ---- every event in every era's format strings ------------------------------------------------------------
# Lines written from each era's iommu_print_event for random entries, then parsed back. Sources: 2.6.28
# arch/x86/kernel/amd_iommu.c ("AMD IOMMU:", one line); 4.9 torvalds/linux amd_iommu.c (same strings,
# "AMD-Vi:", split by printk); the dev_err era before and in 4.19 (split, see above); 5.5 / 4.19.89 after
# 1a21ee1aabf7 (one dev_err line, 0x%016llx); 5.10 drivers/iommu/amd/iommu.c (0x%llx, no segment, tag=).
# The newest format (with segments) and the HW-vIOMMU branch are covered by tests/cli/test_dmesg.py.

ERAS = ("2.6.28", "4.9", "4.14", "4.19", "5.5", "5.10")
NAMED = {  # the events each era prints by name; the others go through its default branch
    "2.6.28": {"ILLEGAL_DEV_TABLE_ENTRY", "IO_PAGE_FAULT", "DEV_TAB_HARDWARE_ERROR", "PAGE_TAB_HARDWARE_ERROR",
               "ILLEGAL_COMMAND_ERROR", "COMMAND_HARDWARE_ERROR", "IOTLB_INV_TIMEOUT", "INVALID_DEVICE_REQUEST"},
}
NAMED["4.9"] = NAMED["4.14"] = NAMED["2.6.28"]
NAMED["4.19"] = NAMED["5.5"] = NAMED["5.10"] = NAMED["2.6.28"] | {"INVALID_PPR_REQUEST"}


def era_line(era, s, bits):
    """The log text an era prints for one entry (see the sources above)."""
    e = [(bits >> (32 * i)) & mask(32) for i in range(4)]
    devid, flags, address = e[0] & 0xFFFF, (e[1] >> 16) & 0xFFF, e[3] << 32 | e[2]
    domid, pasid = e[1] & 0xFFFF, (e[0] & 0xF0000) | (e[1] & 0xFFFF)
    ppr_pasid = ((bits >> 42) & 0xF) << 16 | (bits >> 16) & 0xFFFF
    d = f"{devid >> 8:02x}:{(devid >> 3) & 0x1F:02x}.{devid & 7:x}"
    a = f"0x{address:x}" if era == "5.10" else f"0x{address:016x}"
    with_pasid = era in ("4.19", "5.5", "5.10")
    body = {
        "ILLEGAL_DEV_TABLE_ENTRY": f"device={d}" + (f" pasid=0x{pasid:05x}" if with_pasid else "")
                                   + f" address={a} flags=0x{flags:04x}",
        "IO_PAGE_FAULT": f"device={d} domain=0x{domid:04x} address={a} flags=0x{flags:04x}",
        "DEV_TAB_HARDWARE_ERROR": f"device={d} address={a} flags=0x{flags:04x}",
        "PAGE_TAB_HARDWARE_ERROR": f"device={d} " + (f"pasid=0x{pasid:04x}" if era == "5.10" else
                                                    f"domain=0x{pasid if with_pasid else domid:04x}")
                                   + f" address={a} flags=0x{flags:04x}",
        "ILLEGAL_COMMAND_ERROR": f"address={a}",
        "COMMAND_HARDWARE_ERROR": f"address={a} flags=0x{flags:04x}",
        "IOTLB_INV_TIMEOUT": f"device={d} address={a}",
        "INVALID_DEVICE_REQUEST": f"device={d}" + (f" pasid=0x{pasid:05x}" if with_pasid else "")
                                  + f" address={a} flags=0x{flags:04x}",
        "INVALID_PPR_REQUEST": f"device={d} pasid=0x{ppr_pasid:05x} address={a} flags=0x{flags:04x}"
                               + (f" tag=0x{e[1] & 0x3FF:03x}" if era == "5.10" else ""),
    }
    if s.name in NAMED[era]:
        event = f"{s.name} {body[s.name]}]"
    elif era in ("2.6.28", "4.9"):
        event = f"UNKNOWN type=0x{e[1] >> 28:02x}]"
    else:
        event = " ".join(f"event[{i}]=0x{w:08x}" for i, w in enumerate(e))
        event = "UNKNOWN " + event
    if era == "2.6.28":
        return f"AMD IOMMU: Event logged [{event}"
    if era == "4.9":
        return f"[  4.900000] AMD-Vi: Event logged [\n[  4.900001] {event}"
    if era in ("4.14", "4.19"):
        return f"iommu ivhd0: AMD-Vi: Event logged [\niommu ivhd0: {event}"
    return f"iommu ivhd0: Event logged [{event}"


def entries(s):
    return st.fixed_dictionaries({
        f.name: st.just(f.fixed) if f.fixed is not None else st.integers(0, mask(f.width))
        for f in s.named_fields
    }).map(s.encode)


@given(st.sampled_from(ERAS), st.sampled_from(EVENTS), st.data())
def test_every_event_in_every_eras_format(era, s, data):
    bits = data.draw(entries(s))
    text = era_line(era, s, bits)
    r = one(text)
    assert r.event == s.name and r.lines == tuple(range(1, text.count("\n") + 2))
    assert r.bits & r.known_mask == bits & r.known_mask  # everything read from the log is right
    known = {f.name for f in s.named_fields if r.known_mask & f.mask == f.mask}
    if s.name not in NAMED[era]:
        assert known >= ({"EventCode"} if "type=" in text else {f.name for f in s.named_fields})
        return
    if "device=" in text:
        assert "DeviceID" in known
    if "address=" in text:
        assert "Address" in known
    if "flags=" in text:
        assert r.flags == (bits >> 48) & 0xFFF
    if s.field("PASID[19:16]") is not None and "pasid=" not in text and not (
            s.name == "PAGE_TAB_HARDWARE_ERROR" and (bits >> 16) & 0xF and era in ("4.19", "5.5")):
        assert "PASID[19:16]" in r.missing  # an era that printed no PASID[19:16] leaves it unknown
