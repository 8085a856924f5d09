"""Systems built from the spec: the IOMMU with its caches, the vIOMMU, the Linux driver, iommufd."""
