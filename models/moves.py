from amdvi.models.iommu import CpuWrite, Dma, Evict, Fill, ProcessCommand, Retire, SetTail, TranslatedDma

MOVE_KINDS: dict[str, type] = {cls.__name__: cls for cls in (
    CpuWrite, SetTail, ProcessCommand, Retire, Fill, Evict, Dma, TranslatedDma)}
