"""A model of the Linux AMD IOMMU driver (drivers/iommu/amd) as iommufd drives it: DomainIDs, v1 page
tables, 256-bit DTE updates, invalidations and COMPLETION_WAITs, nested (guest v2 over host v1)
domains and vIOMMUs, emitted as :mod:`amdvi.models.timeline` steps.

Modules by topic: :mod:`.domain_ids` (the IDA), :mod:`.page_table` (generic-PT amdv1 tables),
:mod:`.dte_update` (building and writing DTEs), :mod:`.flush` (invalidations), :mod:`.nested`
(guest DTE validation and the nested DTE), :mod:`.state` (config, state, the operation in progress),
:mod:`.driver` (:class:`AmdDriver`, the IommuDriver operations), :mod:`.choices` (readings, faults).
"""

from .choices import Driver
from .domain_ids import DomainIds
from .driver import IOMMU_HW_INFO_TYPE_AMD, AmdDriver
from .state import DriverConfig, DriverState

__all__ = ["AmdDriver", "Driver", "DomainIds", "DriverConfig", "DriverState", "IOMMU_HW_INFO_TYPE_AMD"]
