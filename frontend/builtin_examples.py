"""Built-in real artefacts for `amdvi demo` (and tests): AMD-Vi kernel log excerpts from public reports.

Each excerpt names where it was published. They are reproduced verbatim (mail-wrapped lines rejoined).
"""

from __future__ import annotations

# Linux upstream commit ef75966abf95 ("iommu/amd: Explicitly enable CNTRL.EPHEn bit in resume path",
# kernel bugzilla 219499): after resume the IOMMU rejects DTEs with PPR set, because Control.EPHEn was lost.
THINKBOOK = """\
Nov 14 11:52:19 Thinkbook kernel: iommu ivhd0: AMD-Vi: Event logged [ILLEGAL_DEV_TABLE_ENTRY device=0000:06:00.0 pasid=0x00000 address=0x135300000 flags=0x0080]
Nov 14 11:52:19 Thinkbook kernel: AMD-Vi: DTE[0]: 7d90000000000003
Nov 14 11:52:19 Thinkbook kernel: AMD-Vi: DTE[1]: 0000100103fc0009
Nov 14 11:52:19 Thinkbook kernel: AMD-Vi: DTE[2]: 2000000117840013
Nov 14 11:52:19 Thinkbook kernel: AMD-Vi: DTE[3]: 0000000000000000"""

# kvm mailing list, Feb 2023: Tasos Sahanidis, "Bug: Completion-Wait loop timed out with vfio"
# <a01fa87d-bd42-e108-606b-78759edcecf8@tasossah.com> (lines 1, 2 and 4 of a longer run).
KVM_2023 = """\
[   73.231661] AMD-Vi: Completion-Wait loop timed out
[   73.231711] ahci 0000:0c:00.0: AMD-Vi: Event logged [IO_PAGE_FAULT domain=0x0017 address=0xc5f3f000 flags=0x0050]
[   74.296484] ata2.00: exception Emask 0x20 SAct 0x7e703fff SErr 0x0 action 0x6 frozen
[   73.500538] iommu ivhd0: AMD-Vi: Event logged [IOTLB_INV_TIMEOUT device=06:00.0 address=0x1001e4600]"""

# github.com/ROCm/ROCm/issues/2642 (Nov 2023, RX 7900 XT): a read and then a write to an unmapped page.
ROCM_2642 = """\
[  262.094625] amdgpu 0000:03:00.0: AMD-Vi: Event logged [IO_PAGE_FAULT domain=0x0010 address=0x64a7f000 flags=0x0000]
[  262.094626] amdgpu 0000:03:00.0: amdgpu:   in page starting at address 0x0000000000000000 from client 10
[  262.094688] amdgpu 0000:03:00.0: AMD-Vi: Event logged [IO_PAGE_FAULT domain=0x0010 address=0x64a7f000 flags=0x0020]"""

DEMO_LOG = "\n".join((THINKBOOK, KVM_2023, ROCM_2642)) + "\n"

# Why the first report happened (the commit's own explanation): EFR.EPHSup = 1 but Control.EPHEn = 0
# after resume, and the DTE has PPR = 1. Register values chosen to show exactly that.
THINKBOOK_DTE_WORDS = ("0x7d90000000000003", "0x0000100103fc0009", "0x2000000117840013", "0x0")
# PPRSup, GTSup, IASup, HATS = 6 levels, GLXSup = 1, PASmax = 15 (16-bit PASIDs), GIoSup, EPHSup.
EFR_WITH_EPHSUP = 0x5000f00004852
CONTROL_AFTER_RESUME = 0x1005  # IommuEn | EventLogEn | CmdBufEn, EPHEn (bit 45) lost

